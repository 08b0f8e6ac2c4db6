"""Merkle-Patricia inclusion proofs for EVM chains: transactions, receipts and accounts against a block header.

Over 600 lines as one concern: the proof builder and the verifier must agree byte for byte on every encoding, and
keeping both beside the encodings is what makes that checkable in one place (tests/test_mpt.py).

An EVM block header commits to three hexary Merkle-Patricia tries (Yellow Paper, appendix D): the transactions
trie, the receipts trie and the state trie. A router that holds a trusted header can check that a transaction or a
receipt a stub reports really is in that block, with no trust in the stub, by walking a short list of trie nodes
from the header's root down to the value. This module builds those tries exactly as Ethereum does, makes the
proofs, and checks them. It is sans-IO: callers fetch blocks, receipts and ``eth_getProof`` results themselves.

The tries and the RLP codec are the ``trie`` (``HexaryTrie``) and ``rlp`` packages; nothing here re-implements
them. What this module adds is the Ethereum encoding of the values and a strict, total verifier:

* Transactions trie: key ``rlp(index)``, value the transaction's canonical encoding -- ``type || rlp(payload)`` for
  typed (EIP-2718) transactions, ``rlp([...])`` for legacy ones. That is exactly the signed envelope a node returns
  from ``eth_getRawTransactionByHash`` (web3: ``w3.eth.get_raw_transaction``), so transactions are taken as raw
  bytes and never re-encoded from JSON (which would be one more place to get a field wrong).
* Receipts trie: key ``rlp(index)``, value ``type || rlp([status, cumulativeGasUsed, logsBloom, logs])`` for
  typed receipts (types 1 to 4: the receipt payload is the same for access-list, dynamic-fee, blob and set-code
  transactions) and the bare ``rlp([...])`` for legacy ones; each log is ``[address, [topics], data]``. Nodes
  do not return receipts raw, so :func:`encode_receipt` builds them from the JSON-RPC fields. Pre-Byzantium
  receipts carry a 32-byte post-state ``root`` instead of ``status``; both are supported. Other types (e.g. L2
  deposit receipts with extra fields) are refused rather than encoded wrongly.
* State trie: key ``keccak(address)``, value ``rlp([nonce, balance, storageRoot, codeHash])``; storage tries: key
  ``keccak(slot as 32 bytes)``, value ``rlp(value)``. :func:`state_proof_check` checks an ``eth_getProof`` result.

Wire form of a proof (msgpack/JSON friendly)::

    {"index": 3, "key": "03", "value": "02f8...", "nodes": ["f891...", "f8b1...", ...]}

``nodes`` are the RLP-encoded trie nodes from the root down, as ``eth_getProof`` lists them: the root node first,
then every node reached through a hash reference (nodes shorter than 32 bytes are embedded in their parent and not
listed). All hex this module *writes* is lowercase without ``0x`` (like :class:`wecross.stub.interfaces.BlockHeader`);
all hex it *reads* may carry ``0x``, and bytes are accepted wherever hex is.

Verification is total: whatever the input, the verifiers return the proven value or raise :class:`ProofError`,
whose ``check`` names the test that failed (see :data:`CHECKS`). A proof is also canonical: it must list exactly the
nodes on the path, in path order, so two different proofs of one value are never both accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import rlp  # type: ignore[import-untyped,unused-ignore]
from eth_hash.auto import keccak
from trie.exceptions import MissingTrieNode  # type: ignore[import-untyped,unused-ignore]
from trie.hexary import HexaryTrie  # type: ignore[import-untyped,unused-ignore]

__all__ = [
    "CHECKS",
    "EMPTY_CODE_HASH",
    "EMPTY_TRIE_ROOT",
    "IndexedTrie",
    "ProofError",
    "decode_receipt",
    "encode_receipt",
    "index_key",
    "prove",
    "receipts_root",
    "state_proof_check",
    "transactions_root",
    "trie_root",
    "verify",
    "verify_path",
    "verify_receipt",
    "verify_transaction",
]

#: Root of the empty trie, keccak(rlp(b"")): the transactions/receipts root of an empty block, the storage root of
#: an account without storage.
EMPTY_TRIE_ROOT: bytes = keccak(rlp.encode(b""))
_EMPTY_NODE: bytes = rlp.encode(b"")
#: Code hash of an account without code, keccak(b"").
EMPTY_CODE_HASH: bytes = keccak(b"")

#: Every ``ProofError.check``, and what it means.
CHECKS: dict[str, str] = {
    "malformed": "the proof, root or claimed data is not of the expected shape (type, hex, size, count, order)",
    "root_mismatch": "the first proof node does not hash to the trusted root",
    "key_mismatch": "the proof's key is not the key of its index, or not the index the caller expects",
    "missing_node": "the path needs a node the proof does not hold (truncated proof, or an altered node)",
    "bad_node": "a node on the path is not a valid trie node",
    "extra_node": "the proof lists a node twice or a node that is not on the path",
    "value_mismatch": "the trie holds another value at the key than the proof claims (or none)",
    "bad_value": "the proven value does not decode as the record it should be",
    "hash_mismatch": "the proven transaction does not hash to the expected transaction hash",
    "receipt_mismatch": "the proven receipt differs from the receipt the caller was given",
    "account_mismatch": "the proven account differs from the account fields of the eth_getProof result",
    "storage_mismatch": "a proven storage value differs from the value of the eth_getProof result",
}

#: Bounds a proof may not exceed, so a hostile proof stays cheap to refuse. A path has at most 65 hashed nodes
#: (64 nibbles of a keccak key, then the leaf); a node carries at most a whole transaction.
_MAX_NODES = 128
_MAX_PROOF_BYTES = 16 * 1024 * 1024
_MAX_STORAGE_PROOFS = 1024
#: Receipt types whose payload is ``[status, cumulativeGasUsed, logsBloom, logs]``: legacy, EIP-2930, EIP-1559,
#: EIP-4844, EIP-7702.
RECEIPT_TYPES = frozenset({0, 1, 2, 3, 4})
_BLOOM_SIZE = 256


class ProofError(ValueError):
    """A proof that does not hold, with ``check`` naming the test that failed (a key of :data:`CHECKS`).

    A ValueError, so that bad input to the encoders (which raise it with ``check="malformed"``) is a ValueError
    too.
    """

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message


# --- small converters -----------------------------------------------------------------------------------------


def _hex(data: bytes) -> str:
    return bytes(data).hex()


def _bytes(value: object, what: str, size: int | None = None) -> bytes:
    """Bytes from bytes-like or hex text (``0x`` optional); ProofError("malformed") otherwise."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    elif isinstance(value, str):
        body = value[2:] if value[:2] in ("0x", "0X") else value
        if len(body) % 2:
            raise ProofError("malformed", f"{what} has an odd number of hex digits")
        try:
            raw = bytes.fromhex(body)
        except ValueError:
            raise ProofError("malformed", f"{what} is not hex") from None
    else:
        raise ProofError("malformed", f"{what} must be bytes or a hex string, not {type(value).__name__}")
    if size is not None and len(raw) != size:
        raise ProofError("malformed", f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def _quantity(value: object, what: str) -> int:
    """A non-negative integer from an int, a JSON-RPC quantity (``"0x1a"``) or big-endian bytes (HexBytes)."""
    if isinstance(value, bool):
        raise ProofError("malformed", f"{what} must be an integer, not a bool")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        if value[:2] not in ("0x", "0X"):
            raise ProofError("malformed", f"{what} must be an integer or a 0x-prefixed hex quantity")
        try:
            number = int(value[2:] or "0", 16)
        except ValueError:
            raise ProofError("malformed", f"{what} is not a hex quantity") from None
    elif isinstance(value, (bytes, bytearray, memoryview)):
        number = int.from_bytes(bytes(value), "big")
    else:
        raise ProofError("malformed", f"{what} must be an integer, not {type(value).__name__}")
    if number < 0:
        raise ProofError("malformed", f"{what} must not be negative")
    return number


def _root(value: object, what: str = "root") -> bytes:
    return _bytes(value, what, 32)


def _field(record: Mapping[str, Any], *names: str) -> Any:
    """The first of ``names`` present in ``record`` (JSON-RPC camelCase first, then snake_case), else KeyError."""
    for name in names:
        if name in record:
            return record[name]
    raise KeyError(names[0])


def index_key(index: int) -> bytes:
    """The trie key of position ``index`` in a block's transactions or receipts trie: ``rlp(index)``."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ProofError("malformed", f"index must be a non-negative integer, not {index!r}")
    key: bytes = rlp.encode(index)
    return key


# --- building ---------------------------------------------------------------------------------------------------


class _RecordingDB(Mapping[bytes, bytes]):
    """A read-only view of a node store that remembers the hashes of the nodes a lookup read, in order: those
    nodes are the proof.

    Recording a real lookup (rather than asking the trie library for its decoded path) yields the nodes exactly as
    stored -- hashed nodes only, embedded ones stay inside their parents -- which is the ``eth_getProof`` format.
    """

    __slots__ = ("_store", "read")

    def __init__(self, store: Mapping[bytes, bytes]) -> None:
        self._store = store
        self.read: list[bytes] = []

    def __getitem__(self, key: bytes) -> bytes:
        value = self._store[key]
        self.read.append(key)
        return value

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)


class IndexedTrie:
    """The trie of one block's transactions or receipts, built once so that every position's proof is a lookup.

    Values are the trie values (raw transactions, encoded receipts), in block order.
    """

    __slots__ = ("_db", "_root", "_values")

    def __init__(self, values: Iterable[bytes]) -> None:
        self._values: list[bytes] = []
        for position, value in enumerate(values):
            if not isinstance(value, (bytes, bytearray, memoryview)) or not value:
                raise ProofError("malformed", f"value {position} must be non-empty bytes")
            self._values.append(bytes(value))
        self._db: dict[bytes, bytes] = {}
        trie = HexaryTrie(self._db)
        with trie.squash_changes() as batch:  # keeps only the final nodes, not every intermediate version
            for position, value in enumerate(self._values):
                batch[index_key(position)] = value
        self._root: bytes = bytes(trie.root_hash)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def root(self) -> bytes:
        return self._root

    def nodes_for(self, key: bytes) -> list[bytes]:
        """The encoded nodes from the root to ``key`` (also for an absent key: then they prove the absence)."""
        recorder = _RecordingDB(self._db)
        HexaryTrie(recorder, root_hash=self._root).get(key)
        return [self._db[node_hash] for node_hash in recorder.read]

    def prove(self, index: int) -> dict[str, Any]:
        """The wire proof that ``values[index]`` sits at position ``index``."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self._values):
            raise IndexError(f"index {index!r} out of range for a trie of {len(self._values)} values")
        key = index_key(index)
        return {
            "index": index,
            "key": _hex(key),
            "value": _hex(self._values[index]),
            "nodes": [_hex(node) for node in self.nodes_for(key)],
        }


def trie_root(values: Iterable[bytes]) -> bytes:
    """Root of the trie with ``values[i]`` at key ``rlp(i)``; :data:`EMPTY_TRIE_ROOT` for no values."""
    return IndexedTrie(values).root


def transactions_root(raw_txs: Iterable[bytes]) -> bytes:
    """A block header's ``transactionsRoot`` from its raw signed transactions in block order."""
    return trie_root(raw_txs)


def receipts_root(receipts_encoded: Iterable[bytes]) -> bytes:
    """A block header's ``receiptsRoot`` from its receipts, each encoded by :func:`encode_receipt`, in block order."""
    return trie_root(receipts_encoded)


def prove(values: Sequence[bytes], index: int) -> dict[str, Any]:
    """Proof for one position; build an :class:`IndexedTrie` instead when proving several of one block."""
    return IndexedTrie(values).prove(index)


# --- verifying ----------------------------------------------------------------------------------------------------


def _parse_nodes(nodes: object) -> list[bytes]:
    if not isinstance(nodes, (list, tuple)):
        raise ProofError("malformed", "proof nodes must be a list")
    if len(nodes) > _MAX_NODES:
        raise ProofError("malformed", f"a proof may hold at most {_MAX_NODES} nodes, not {len(nodes)}")
    parsed = [_bytes(node, f"proof node {position}") for position, node in enumerate(nodes)]
    if sum(len(node) for node in parsed) > _MAX_PROOF_BYTES:
        raise ProofError("malformed", f"proof nodes exceed {_MAX_PROOF_BYTES} bytes")
    return parsed


def _lookup(root: bytes, key: bytes, nodes: Sequence[bytes]) -> bytes:
    """The value at ``key`` in the trie with ``root`` as the proof nodes show it; b"" when the key is absent."""
    if root == EMPTY_TRIE_ROOT:
        # The empty trie has no node to walk; nodes prove a key absent from it with no node or with the empty
        # node itself (rlp(b""), whose hash is this root) -- anvil does the latter for an empty storage trie.
        if len(nodes) > 1 or (nodes and nodes[0] != _EMPTY_NODE):
            raise ProofError("extra_node", "the empty trie has no nodes but the empty node, yet the proof lists some")
        return b""
    if not nodes:
        raise ProofError("missing_node", "the proof holds no node, not even the root")
    hashes = [keccak(node) for node in nodes]
    if hashes[0] != root:
        raise ProofError("root_mismatch", f"the first proof node hashes to {_hex(hashes[0])}, not {_hex(root)}")
    store = dict(zip(hashes, nodes, strict=True))
    if len(store) != len(nodes):
        raise ProofError("extra_node", "the proof lists a node more than once")
    recorder = _RecordingDB(store)
    try:
        value = HexaryTrie(recorder, root_hash=root).get(key)
    except MissingTrieNode as exc:
        missing = _hex(exc.missing_node_hash)
        raise ProofError("missing_node", f"the path needs node {missing}, absent from the proof") from None
    except Exception as exc:  # a hostile node may break the trie walk in any way; it is simply not a valid node
        raise ProofError("bad_node", f"a node on the path is not a valid trie node ({type(exc).__name__})") from None
    if not isinstance(value, bytes):
        raise ProofError("bad_node", "the node at the key holds a list, not a value")
    path = list(dict.fromkeys(recorder.read))
    if len(path) != len(store):
        raise ProofError("extra_node", f"{len(store) - len(path)} proof node(s) are not on the path to the key")
    if path != hashes:
        raise ProofError("malformed", "the proof nodes are not listed in path order, root first")
    return value


def verify_path(root: bytes | str, key: bytes | str, nodes: object) -> bytes:
    """The value at ``key`` under ``root`` proven by ``nodes`` (encoded nodes, root first), b"" if proven absent.

    The general form behind every verifier here, for tries other than a block's (e.g. an ``eth_getProof`` path).
    """
    try:
        return _lookup(_root(root), _bytes(key, "key"), _parse_nodes(nodes))
    except ProofError:
        raise
    except Exception as exc:  # never let a hostile input surface as another exception type
        raise ProofError("malformed", f"unreadable proof ({type(exc).__name__})") from None


def verify(root: bytes | str, proof: object, *, index: int | None = None) -> bytes:
    """The value a wire proof proves under the trusted ``root`` (a header's transactions or receipts root).

    ``index``, when given, is the position the caller expects (e.g. a receipt's ``transactionIndex``); a proof for
    any other position is refused. Raises :class:`ProofError` on any failure, never another exception.
    """
    try:
        return _verify(root, proof, index)
    except ProofError:
        raise
    except Exception as exc:  # never let a hostile input surface as another exception type
        raise ProofError("malformed", f"unreadable proof ({type(exc).__name__})") from None


def _verify(root: object, proof: object, index: int | None) -> bytes:
    if not isinstance(proof, Mapping):
        raise ProofError("malformed", "a proof must be a mapping with index, key, value and nodes")
    missing = [name for name in ("index", "key", "value", "nodes") if name not in proof]
    if missing:
        raise ProofError("malformed", f"the proof lacks {', '.join(missing)}")
    trusted_root = _root(root)
    proven_index = proof["index"]
    key = index_key(proven_index)
    if _bytes(proof["key"], "key") != key:
        raise ProofError("key_mismatch", f"the proof's key is not rlp({proven_index})")
    if index is not None and index != proven_index:
        raise ProofError("key_mismatch", f"the proof is for position {proven_index}, not {index}")
    claimed = _bytes(proof["value"], "value")
    found = _lookup(trusted_root, key, _parse_nodes(proof["nodes"]))
    if not found:
        raise ProofError("value_mismatch", f"the trie holds no value at position {proven_index}")
    if found != claimed:
        raise ProofError("value_mismatch", f"the trie holds another value at position {proven_index}")
    return found


def verify_transaction(
    header_tx_root: bytes | str, proof: object, expected_tx_hash: bytes | str, *, index: int | None = None
) -> bytes:
    """The raw transaction proven under a header's ``transactionsRoot``, checked to hash to ``expected_tx_hash``.

    The hash check ties the proof to the transaction the caller was told about: the transaction hash is
    ``keccak`` of exactly the trie value, legacy and typed alike.
    """
    value = verify(header_tx_root, proof, index=index)
    try:
        expected = _bytes(expected_tx_hash, "expected transaction hash", 32)
    except Exception as exc:
        raise ProofError("malformed", f"unreadable transaction hash ({type(exc).__name__})") from None
    actual = keccak(value)
    if actual != expected:
        raise ProofError("hash_mismatch", f"the proven transaction hashes to {_hex(actual)}, not {_hex(expected)}")
    return value


# --- receipts ---------------------------------------------------------------------------------------------------


def _normal_log(log: object, position: int) -> dict[str, Any]:
    if not isinstance(log, Mapping):
        raise ProofError("malformed", f"log {position} must be a mapping")
    topics = log.get("topics")
    if not isinstance(topics, (list, tuple)):
        raise ProofError("malformed", f"log {position} topics must be a list")
    return {
        "address": _hex(_bytes(log.get("address"), f"log {position} address", 20)),
        "topics": [_hex(_bytes(topic, f"log {position} topic", 32)) for topic in topics],
        "data": _hex(_bytes(log.get("data", b""), f"log {position} data")),
    }


def _normal_receipt(receipt: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """The receipt's consensus fields in the form :func:`decode_receipt` returns; only those present if ``partial``.

    Reads JSON-RPC camelCase names (web3 AttributeDicts, raw JSON) and their snake_case forms (wire dicts).
    """
    if not isinstance(receipt, Mapping):
        raise ProofError("malformed", f"a receipt must be a mapping, not {type(receipt).__name__}")
    normal: dict[str, Any] = {}
    readers: list[tuple[str, tuple[str, ...], Any]] = [
        ("cumulativeGasUsed", ("cumulativeGasUsed", "cumulative_gas_used"), lambda v: _quantity(v, "cumulative gas")),
        ("logsBloom", ("logsBloom", "logs_bloom"), lambda v: _hex(_bytes(v, "logs bloom", _BLOOM_SIZE))),
        ("logs", ("logs",), _normal_logs),
    ]
    for name, names, read in readers:
        try:
            raw = _field(receipt, *names)
        except KeyError:
            if partial:
                continue
            raise ProofError("malformed", f"the receipt lacks {name}") from None
        normal[name] = read(raw)
    kind = receipt.get("type")
    if kind is not None:
        normal["type"] = _quantity(kind, "receipt type")
    elif not partial:
        normal["type"] = 0  # nodes older than EIP-2718 omit the type of legacy receipts
    if "type" in normal and normal["type"] not in RECEIPT_TYPES:
        raise ProofError("malformed", f"receipt type {normal['type']} is not supported")
    status = receipt.get("status")
    root = receipt.get("root")
    if status is not None:
        normal["status"] = _quantity(status, "status")
        if normal["status"] not in (0, 1):
            raise ProofError("malformed", f"status must be 0 or 1, not {normal['status']}")
        normal["root"] = None
    elif root is not None:
        normal["root"] = _hex(_bytes(root, "post-state root", 32))
        normal["status"] = None
    elif not partial:
        raise ProofError("malformed", "the receipt has neither status nor a pre-Byzantium root")
    return normal


def _normal_logs(logs: object) -> list[dict[str, Any]]:
    if not isinstance(logs, (list, tuple)):
        raise ProofError("malformed", "receipt logs must be a list")
    return [_normal_log(log, position) for position, log in enumerate(logs)]


def encode_receipt(receipt: Mapping[str, Any]) -> bytes:
    """A receipt's trie value from its JSON-RPC fields (web3 AttributeDict, raw JSON dict, or snake_case dict).

    Needs ``status`` (or the pre-Byzantium ``root``), ``cumulativeGasUsed``, ``logsBloom`` and ``logs``; ``type``
    defaults to 0. Raises ProofError("malformed") when a field is missing or of the wrong shape.
    """
    normal = _normal_receipt(receipt, partial=False)
    outcome: object = normal["status"] if normal["status"] is not None else bytes.fromhex(normal["root"])
    logs = [
        [bytes.fromhex(log["address"]), [bytes.fromhex(topic) for topic in log["topics"]], bytes.fromhex(log["data"])]
        for log in normal["logs"]
    ]
    payload: bytes = rlp.encode([outcome, normal["cumulativeGasUsed"], bytes.fromhex(normal["logsBloom"]), logs])
    return payload if normal["type"] == 0 else bytes([normal["type"]]) + payload


def _int_item(item: object, what: str) -> int:
    """An RLP integer: big-endian bytes without leading zeros (zero is the empty string)."""
    if not isinstance(item, bytes) or item[:1] == b"\x00":
        raise ProofError("bad_value", f"{what} is not a canonical RLP integer")
    return int.from_bytes(item, "big")


def decode_receipt(value: bytes) -> dict[str, Any]:
    """A receipt trie value as a dict: ``type``, ``status`` (0/1, None before Byzantium), ``root`` (hex, None
    after), ``cumulativeGasUsed``, ``logsBloom`` (hex), ``logs`` ([{address, topics, data}], hex). Raises
    ProofError("bad_value") when the value is not a receipt."""
    try:
        return _decode_receipt(bytes(value))
    except ProofError:
        raise
    except Exception as exc:
        raise ProofError("bad_value", f"the value is not a receipt ({type(exc).__name__})") from None


def _decode_receipt(value: bytes) -> dict[str, Any]:
    if not value:
        raise ProofError("bad_value", "an empty value is not a receipt")
    kind = 0 if value[0] >= 0xC0 else value[0]
    if kind not in RECEIPT_TYPES or (kind == 0 and value[0] < 0xC0):
        raise ProofError("bad_value", f"receipt type {value[0]} is not supported")
    fields = rlp.decode(value if kind == 0 else value[1:])
    if not isinstance(fields, list) or len(fields) != 4:
        raise ProofError("bad_value", "a receipt is a list of 4 fields")
    outcome, gas, bloom, logs = fields
    if not isinstance(outcome, bytes) or not isinstance(bloom, bytes) or len(bloom) != _BLOOM_SIZE:
        raise ProofError("bad_value", "the receipt's status or bloom is malformed")
    if len(outcome) == 32:
        status, root = None, _hex(outcome)
    elif outcome in (b"", b"\x01"):
        status, root = len(outcome), None
    else:
        raise ProofError("bad_value", "the receipt's status is neither 0, 1 nor a 32-byte root")
    if not isinstance(logs, list):
        raise ProofError("bad_value", "the receipt's logs are not a list")
    decoded_logs: list[dict[str, Any]] = []
    for log in logs:
        if not isinstance(log, list) or len(log) != 3:
            raise ProofError("bad_value", "a log is a list of address, topics and data")
        address, topics, data = log
        if not isinstance(address, bytes) or len(address) != 20 or not isinstance(data, bytes):
            raise ProofError("bad_value", "a log's address or data is malformed")
        if not isinstance(topics, list) or not all(isinstance(t, bytes) and len(t) == 32 for t in topics):
            raise ProofError("bad_value", "a log's topics are malformed")
        decoded_logs.append({"address": _hex(address), "topics": [_hex(t) for t in topics], "data": _hex(data)})
    return {
        "type": kind,
        "status": status,
        "root": root,
        "cumulativeGasUsed": _int_item(gas, "cumulativeGasUsed"),
        "logsBloom": _hex(bloom),
        "logs": decoded_logs,
    }


def verify_receipt(
    header_receipt_root: bytes | str,
    proof: object,
    expected: Mapping[str, Any] | None = None,
    *,
    index: int | None = None,
) -> dict[str, Any]:
    """The receipt proven under a header's ``receiptsRoot``, decoded (see :func:`decode_receipt`).

    ``expected`` is the receipt the caller was given (JSON-RPC or snake_case fields); each consensus field it has
    (``type``, ``status``/``root``, ``cumulativeGasUsed``, ``logsBloom``, ``logs``) must equal the proven one, else
    ProofError("receipt_mismatch") naming the field. Fields it lacks are not compared -- a caller that relies on
    e.g. the logs must make sure they are there. Pass ``index`` (the transaction's position, as proven by its
    transaction proof) to bind the receipt to that transaction.
    """
    value = verify(header_receipt_root, proof, index=index)
    decoded = decode_receipt(value)
    if expected is None:
        return decoded
    try:
        claimed = _normal_receipt(expected, partial=True)
    except ProofError:
        raise
    except Exception as exc:
        raise ProofError("malformed", f"unreadable expected receipt ({type(exc).__name__})") from None
    if not claimed:
        raise ProofError("malformed", "the expected receipt has none of the fields a proof covers")
    for name in ("type", "status", "root", "cumulativeGasUsed", "logsBloom", "logs"):
        if name in claimed and claimed[name] != decoded[name]:
            raise ProofError("receipt_mismatch", f"the proven receipt's {name} differs from the given one")
    return decoded


# --- state ------------------------------------------------------------------------------------------------------


def state_proof_check(state_root: bytes | str, account_proof: Mapping[str, Any]) -> dict[str, Any]:
    """Check an ``eth_getProof`` result (web3 AttributeDict or raw JSON) against a header's ``stateRoot``.

    The account proof must show the account fields the result states (an absent account proves as nonce 0,
    balance 0, empty storage and no code), and each storage proof the stated value under the proven
    ``storageHash`` (an absent slot proves as 0). Returns ``{"address", "nonce", "balance", "storageHash",
    "codeHash", "storage": {slot hex (64 digits): value}}``, hex without ``0x``; balances and storage values may
    exceed 64 bits. Raises :class:`ProofError` on any failure, never another exception.
    """
    try:
        return _state_proof_check(state_root, account_proof)
    except ProofError:
        raise
    except Exception as exc:
        raise ProofError("malformed", f"unreadable eth_getProof result ({type(exc).__name__})") from None


def _decode_account(value: bytes) -> tuple[int, int, bytes, bytes]:
    if not value:
        return 0, 0, EMPTY_TRIE_ROOT, EMPTY_CODE_HASH
    try:
        fields = rlp.decode(value)
    except Exception:
        raise ProofError("bad_value", "the account value is not RLP") from None
    if not isinstance(fields, list) or len(fields) != 4:
        raise ProofError("bad_value", "an account is a list of nonce, balance, storage root and code hash")
    nonce, balance, storage_root, code_hash = fields
    for item in (storage_root, code_hash):
        if not isinstance(item, bytes) or len(item) != 32:
            raise ProofError("bad_value", "the account's storage root or code hash is not 32 bytes")
    return _int_item(nonce, "nonce"), _int_item(balance, "balance"), storage_root, code_hash


def _state_proof_check(state_root: object, result: object) -> dict[str, Any]:
    root = _root(state_root, "state root")
    if not isinstance(result, Mapping):
        raise ProofError("malformed", "an eth_getProof result must be a mapping")
    for name in ("address", "accountProof", "nonce", "balance", "storageHash", "codeHash"):
        if name not in result:
            raise ProofError("malformed", f"the eth_getProof result lacks {name}")
    address = _bytes(result["address"], "address", 20)
    value = _lookup(root, keccak(address), _parse_nodes(result["accountProof"]))
    nonce, balance, storage_root, code_hash = _decode_account(value)
    stated = {
        "nonce": (_quantity(result["nonce"], "nonce"), nonce),
        "balance": (_quantity(result["balance"], "balance"), balance),
        "storageHash": (_root(result["storageHash"], "storageHash"), storage_root),
        "codeHash": (_root(result["codeHash"], "codeHash"), code_hash),
    }
    for name, (claimed, proven) in stated.items():
        if claimed != proven:
            raise ProofError("account_mismatch", f"the proven account's {name} differs from the stated one")
    storage: dict[str, int] = {}
    entries = result.get("storageProof", [])
    if not isinstance(entries, (list, tuple)) or len(entries) > _MAX_STORAGE_PROOFS:
        raise ProofError("malformed", f"storageProof must be a list of at most {_MAX_STORAGE_PROOFS} entries")
    for position, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not {"key", "value", "proof"} <= set(entry):
            raise ProofError("malformed", f"storage proof {position} must have key, value and proof")
        slot = _quantity(entry["key"], f"storage proof {position} key")
        if slot >= 1 << 256:
            raise ProofError("malformed", f"storage proof {position} key exceeds 32 bytes")
        slot_bytes = slot.to_bytes(32, "big")
        claimed_value = _quantity(entry["value"], f"storage proof {position} value")
        raw = _lookup(storage_root, keccak(slot_bytes), _parse_nodes(entry["proof"]))
        proven_value = _storage_value(raw) if raw else 0
        if claimed_value != proven_value:
            raise ProofError("storage_mismatch", f"slot {_hex(slot_bytes)} holds another value than stated")
        storage[_hex(slot_bytes)] = proven_value
    return {
        "address": _hex(address),
        "nonce": nonce,
        "balance": balance,
        "storageHash": _hex(storage_root),
        "codeHash": _hex(code_hash),
        "storage": storage,
    }


def _storage_value(raw: bytes) -> int:
    try:
        item = rlp.decode(raw)
    except Exception:
        raise ProofError("bad_value", "the storage value is not RLP") from None
    if not isinstance(item, bytes) or len(item) > 32:
        raise ProofError("bad_value", "a storage value is at most 32 bytes")
    return _int_item(item, "storage value")
