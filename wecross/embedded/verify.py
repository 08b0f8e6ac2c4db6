"""Checking the proofs that come with an embedded-chain result, far from the chain that made them.

An entry router receives a write's Result over the overlay from the owning router. With this module (pure: no I/O,
no chain access) it can convince itself that the transaction and its receipt are in the block whose header came
along, that the header hashes to what it claims, and, given the header hash from its own header store, that the
block is the one it already knows.

A read's Result is proven the same way against the block's state root: every state key the read touched comes
with its value (or a proof that the key is absent), and the verifier replays the read itself, with the resource's
own code (:meth:`~wecross.embedded.resources.Contract.answer`), over exactly those proven values. The output is
believed only if the replay gives it, so nothing the relays say about the output needs to be trusted.

Facts, once proven, stay true: "this header hashes to H" and "under state root R, key K has value V (or is
absent)". Two small bounded memos keep them, so that reads of the same block (the head, between writes) do not
re-hash its header or re-walk the proof of the resource's kind key, which every read of a resource carries. A
memo hit needs the claim and its proof to be exactly the ones proven before (a relay that alters a proof node is
caught even when the claim is true), and then costs a few comparisons instead of the hashing. A third memo keeps
whole read checks that passed (the same read of the same block, asked again and again between writes): see
:func:`_read_input_digest` for what a hit needs.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import struct
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any

import msgpack

from wecross.chain.merkle import verify_inclusion
from wecross.embedded.block import Header, Receipt, Transaction, canonical, decode, encode, sha256
from wecross.embedded.resources import KIND_KEY, KINDS, NS_META, Contract
from wecross.embedded.state import ResourceView, StateKey, StateProofError, check_state_entry, decode_key
from wecross.embedded.txn import OP_COMMIT
from wecross.stub.interfaces import OP_CALL, OP_GET_DATA, StubError

#: What a read Result that passes :func:`check_read_proof` has been checked for (for ``verified.checks``).
READ_PROOF_CHECKS = ("header_matches", "read_matches_request", "state_inclusion", "output_matches")
#: What an event that passes :func:`check_event_proof` has been checked for (for ``verified.checks``).
EVENT_PROOF_CHECKS = ("header_matches", "receipt_inclusion", "tx_of_resource", "event_matches")
#: Keys :func:`check_read_proof` accepts in ``expected_read``.
_READ_FIELDS = frozenset({"resource", "op", "method", "args", "chain", "sender"})
#: Entries of each memo of proven facts (see the module docstring).
MEMO_SIZE = 4096


class _Memo:
    """A bounded set of proven facts, oldest forgotten first (reactor thread only)."""

    def __init__(self, size: int) -> None:
        self._facts: OrderedDict[Hashable, Any] = OrderedDict()
        self._size = size

    def get(self, key: Hashable) -> Any:
        value = self._facts.get(key)
        if value is not None:
            self._facts.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        self._facts[key] = value
        if len(self._facts) > self._size:
            self._facts.popitem(last=False)


#: header hash -> (the header's wire dict as proven, its Header)
_HEADERS = _Memo(MEMO_SIZE)
#: (state root, key hex, value hex or None for absent) -> the proof entry as proven
_STATE = _Memo(MEMO_SIZE)
#: (receipt root, tx count, receipt leaf hex) -> (the receipt proof as proven, the decoded receipt)
_RECEIPTS = _Memo(MEMO_SIZE)
#: SHA-256 of a read check's whole input (:func:`_read_input_digest`) -> True: read checks that passed
_READS = _Memo(MEMO_SIZE)
#: One msgpack Packer per thread for _read_input_digest (a Packer keeps a buffer).
_packers = threading.local()


def _proven_header(header_wire: Mapping[str, Any]) -> Header | None:
    known = _HEADERS.get(header_wire.get("hash"))
    if known is not None and known[0] == header_wire:
        return known[1]  # type: ignore[no-any-return]
    return None


def explain_write_proof(
    result: Mapping[str, Any],
    *,
    expected_header_hash: str | None = None,
    expected_tx: Mapping[str, Any] | None = None,
) -> str | None:
    """Why ``result`` (a write Result's wire dict) does not prove itself, or None when it does.

    ``expected_tx`` optionally names transaction fields the caller knows (``resource``, ``op``, ``method``,
    ``args``, ``sender``, ``chain``) so a proof of some other transaction is refused. Never raises.
    """
    failed = check_write_proof(result, expected_header_hash=expected_header_hash, expected_tx=expected_tx)
    return None if failed is None else failed[1]


def check_write_proof(
    result: Mapping[str, Any],
    *,
    expected_header_hash: str | None = None,
    expected_tx: Mapping[str, Any] | None = None,
) -> tuple[str, str] | None:
    """(the check that failed, why) for a write Result that does not prove itself, or None. Never raises.

    Checks, in order: ``no_proof``, ``malformed``, ``header_hash``, ``header_mismatch`` (not the header the store
    trusts), ``block_number``, ``tx_hash``, ``tx_inclusion``, ``receipt_inclusion``, ``proof_index``, ``tx_chain``,
    ``receipt_mismatch``, ``output_mismatch``, ``tx_mismatch`` (a valid proof of another transaction: a replay).
    """
    try:
        return _explain(result, expected_header_hash, expected_tx)
    except Exception as exc:  # anything malformed is an invalid proof, not a crash
        return ("malformed", f"malformed proof: {exc}")


def verify_write_proof(
    result: Mapping[str, Any],
    *,
    expected_header_hash: str | None = None,
    expected_tx: Mapping[str, Any] | None = None,
) -> bool:
    return explain_write_proof(result, expected_header_hash=expected_header_hash, expected_tx=expected_tx) is None


def _explain(result: Mapping[str, Any], expected_header_hash: str | None,
             expected_tx: Mapping[str, Any] | None) -> tuple[str, str] | None:
    proof = result.get("proof")
    if not isinstance(proof, Mapping):
        return ("no_proof", "no proof")
    header_wire, tx_proof, receipt_proof = proof.get("header"), proof.get("tx"), proof.get("receipt")
    if not (isinstance(header_wire, Mapping) and isinstance(tx_proof, Mapping) and isinstance(receipt_proof, Mapping)):
        return ("malformed", "the proof needs header, tx and receipt parts")
    header = Header.from_wire(header_wire)
    if header.hash.hex() != header_wire.get("hash"):
        return ("header_hash", "the header does not hash to its stated hash")
    if header_wire.get("timestamp") != header.timestamp_ms / 1000.0:
        return ("header_hash", "the header's timestamp disagrees with its hashed timestamp_ms")
    if expected_header_hash is not None and header.hash.hex() != expected_header_hash.lower():
        return ("header_mismatch", "the header is not the one the header store holds for this block")
    if result.get("block_number") != header.number:
        return ("block_number", "block_number does not match the header")
    tx_leaf = bytes.fromhex(tx_proof["leaf"])
    receipt_leaf = bytes.fromhex(receipt_proof["leaf"])
    tx_hash = result.get("tx_hash")
    if sha256(tx_leaf).hex() != tx_hash:
        return ("tx_hash", "the proven transaction does not hash to tx_hash")
    if not verify_inclusion(tx_leaf, tx_proof, header.tx_root, size=header.tx_count):
        return ("tx_inclusion", "the transaction is not in the block's tx_root")
    if not verify_inclusion(receipt_leaf, receipt_proof, header.receipt_root, size=header.tx_count):
        return ("receipt_inclusion", "the receipt is not in the block's receipt_root")
    if tx_proof.get("index") != receipt_proof.get("index"):
        return ("proof_index", "the transaction and receipt proofs are for different positions")
    transaction = Transaction.decode(tx_leaf)
    if transaction.chain_id != header.chain_id:
        return ("tx_chain", "the transaction belongs to another chain")
    proven = Receipt.decode(receipt_leaf)
    receipt_wire = result.get("receipt")
    if not isinstance(receipt_wire, Mapping) or Receipt.from_wire(receipt_wire).encode() != receipt_leaf:
        return ("receipt_mismatch", "the receipt differs from the proven receipt")
    if proven.tx_hash.hex() != tx_hash or proven.block_number != header.number:
        return ("receipt_mismatch", "the proven receipt is for another transaction or block")
    if proven.index != tx_proof.get("index"):
        return ("proof_index", "the receipt's index differs from its position in the block")
    # _equal_values: the canonical encodings compared, skipped when the values are identical (_same), which here
    # also means encodable: the proven side was decoded from a chain encoding, so it holds wire values only.
    if not _equal_values(result.get("output"), proven.output):
        return ("output_mismatch", "output differs from the receipt's output")
    if expected_tx:
        actual = transaction.to_wire()
        for field, value in expected_tx.items():
            if field not in actual or not _equal_values(actual[field], value):
                return ("tx_mismatch", f"the proven transaction's {field} is not the expected one")
    return None


def check_commit_proof(
    result: Mapping[str, Any],
    *,
    tx_id: str,
    resource: str | None = None,
    expected_header_hash: str | None = None,
) -> tuple[str, str] | None:
    """(the check that failed, why) for the Result of a 2PC commit (wire dict) that does not prove that ``tx_id``
    was committed (on ``resource``, if given), or None. Never raises.

    A commit is one chain transaction of op ``commit`` whose first argument is the transaction id; on top of
    :func:`check_write_proof`'s checks this refuses a valid proof of some other commit (``tx_mismatch``) and an
    output that does not name the transaction (``output_mismatch``).
    """
    expected: dict[str, Any] = {"op": OP_COMMIT, "method": OP_COMMIT}
    if resource is not None:
        expected["resource"] = resource
    failed = check_write_proof(result, expected_header_hash=expected_header_hash, expected_tx=expected)
    if failed is not None:
        return failed
    try:
        transaction = Transaction.decode(bytes.fromhex(result["proof"]["tx"]["leaf"]))
        output = result.get("output")
    except Exception as exc:
        return ("malformed", f"malformed proof: {exc}")
    if not transaction.args or transaction.args[0] != tx_id:
        return ("tx_mismatch", f"the proven commit is not of transaction {tx_id}")
    if not isinstance(output, Mapping) or output.get("committed") != tx_id:
        return ("output_mismatch", f"the output does not name transaction {tx_id} as committed")
    return None


def _header_problem(result: Mapping[str, Any], header_wire: Mapping[str, Any],
                    expected_header_hash: str | None) -> tuple[Header, tuple[str, str] | None]:
    """The proof's header, and what is wrong with it (hash, trust, block number), if anything."""
    header = _proven_header(header_wire)
    if header is None:
        header = Header.from_wire(header_wire)
        if header.hash.hex() != header_wire.get("hash"):
            return header, ("header_hash", "the header does not hash to its stated hash")
        if header_wire.get("timestamp") != header.timestamp_ms / 1000.0:
            return header, ("header_hash", "the header's timestamp disagrees with its hashed timestamp_ms")
        _HEADERS.put(header_wire["hash"], (_frozen_copy(header_wire), header))
    # header_wire["hash"] is the header's own hash here: checked above, or when the memo entry was made.
    if expected_header_hash is not None and header_wire["hash"] != expected_header_hash.lower():
        return header, ("header_mismatch", "the header is not the one the header store holds for this block")
    if result.get("block_number") != header.number:
        return header, ("block_number", "block_number does not match the header")
    return header, None


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (so 1, 1.0 and True differ, as their encodings do): when this
    holds the canonical encodings are equal too, and the encoding (the costly part of a check) is skipped. Floats
    are compared by their bits (0.0 == -0.0 in Python, but the two encode differently)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, float):
        return _FLOAT_BITS.pack(a) == _FLOAT_BITS.pack(b)
    return bool(a == b)


_FLOAT_BITS = struct.Struct(">d")


def _equal_values(a: Any, b: Any) -> bool:
    return _same(a, b) or encode(canonical(a)) == encode(canonical(b))


def check_read_proof(
    result: Mapping[str, Any],
    *,
    expected_header_hash: str | None = None,
    expected_read: Mapping[str, Any],
) -> tuple[str, str] | None:
    """(the check that failed, why) for a read Result (wire dict) that does not prove itself, or None.

    ``expected_read`` is the read the client asked for: ``resource`` (the resource's name on its chain), ``op``
    (``"call"`` or ``"getData"``), ``method`` (ignored for getData), ``args`` (for getData ``[key]``), and
    optionally ``chain`` (``"zone.chain"``, compared with the header's chain) and ``sender`` (accepted and
    ignored: no built-in read depends on who asks). A malformed ``expected_read`` is the caller's bug and raises
    ValueError; anything wrong with ``result`` is reported, never raised.

    Checks, in order: ``no_proof``, ``malformed``, ``header_hash``, ``header_mismatch`` (not the header the store
    trusts), ``block_number``, ``read_mismatch`` (the proof is of another read or chain), ``state_inclusion`` (a
    proven key/value is not under the header's state root), ``state_absence`` (a key claimed absent may be
    present), ``state_incomplete`` (the replayed read needs a key that has no proof), ``unknown_kind`` (a resource
    kind this verifier cannot replay), ``output_mismatch`` (the replay over the proven state gives another output,
    or fails, or the resource does not exist at that block).
    """
    expected = _checked_expected_read(expected_read)
    digest = _read_input_digest(result, expected_header_hash, expected)
    if digest is not None and _READS.get(digest) is not None:
        return None
    try:
        failed = _explain_read(result, expected_header_hash, expected)
    except StateProofError as exc:
        return (exc.check, exc.message)
    except Exception as exc:  # anything malformed is an invalid proof, not a crash
        return ("malformed", f"malformed proof: {exc}")
    if failed is None and digest is not None:
        _READS.put(digest, True)
    return failed


def _read_input_digest(result: Mapping[str, Any], expected_header_hash: str | None,
                       expected: Mapping[str, Any]) -> bytes | None:
    """SHA-256 of everything :func:`_explain_read` looks at: the trusted header hash, the normalised expected read,
    and the result's block number, output (and whether it has one) and whole proof; None when they do not pack.

    The check is a pure function of exactly these values (the other memos and the replayer only ever give the
    answer the full check would), so a digest equal to one whose check passed means the same input, and the same
    verdict. msgpack with ``strict_types`` spells every value of the wire's data model one way and no two values
    alike (1, 1.0, True, "1" and b"1" differ; map order counts, which can only cost a miss), and a collision of
    SHA-256 is out of reach. Anything that is not exactly a wire value (a tuple, a subclass, an object) does not
    pack, and is checked in full every time. Costs about 2 µs against about 9 µs for the check of a small read.
    """
    try:
        packer: msgpack.Packer = _packers.packer
    except AttributeError:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True, datetime=False, strict_types=True)
    try:
        packed: bytes = packer.pack([
            expected_header_hash, expected["resource"], expected["op"], expected["method"], expected["args"],
            expected["chain"], result.get("block_number"), "output" in result, result.get("output"),
            result.get("proof"),
        ])
    except Exception:
        packer.reset()  # a failed pack may leave part of the value in the Packer's buffer
        return None
    return hashlib.sha256(packed).digest()


def _checked_expected_read(expected_read: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(expected_read, Mapping):
        raise ValueError("expected_read must be a mapping")
    unknown = set(expected_read) - _READ_FIELDS
    if unknown:
        raise ValueError(f"expected_read has unknown field(s) {sorted(unknown)}; allowed: {sorted(_READ_FIELDS)}")
    op, resource, args = expected_read.get("op"), expected_read.get("resource"), expected_read.get("args")
    if op not in (OP_CALL, OP_GET_DATA):
        raise ValueError(f"expected_read op must be {OP_CALL!r} or {OP_GET_DATA!r}, not {op!r}")
    if not isinstance(resource, str) or not isinstance(args, (list, tuple)):
        raise ValueError("expected_read needs resource (a string) and args (a list)")
    method = OP_GET_DATA if op == OP_GET_DATA else expected_read.get("method")
    if not isinstance(method, str):
        raise ValueError("expected_read needs method (a string) for a call")
    chain = expected_read.get("chain")
    if chain is not None and not isinstance(chain, str):
        raise ValueError("expected_read chain must be a string")
    return {"resource": resource, "op": op, "method": method, "args": list(args), "chain": chain}


@functools.lru_cache(maxsize=64)
def _replayer(kind: str) -> Contract:
    """A resource of ``kind`` with no options: reads never depend on options (initial state, issuer), only on
    state, so one instance per kind serves every resource of that kind."""
    return KINDS[kind]("replay", {})


class _Unproven(Exception):
    def __init__(self, key: StateKey) -> None:
        super().__init__(key)
        self.key = key


class _ProvenState:
    """The state a verifier knows: exactly the proven keys. Reading any other key is an incomplete proof."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[StateKey, Any]) -> None:
        self._values = values

    def get(self, key: StateKey) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise _Unproven(key) from None


def _frozen_copy(wire: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a header's wire dict, so a caller editing its own later cannot change the memo."""
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in wire.items()}


def _claim(root: bytes, entry: object) -> tuple[bytes, str, str | None] | None:
    """What a state proof entry claims, as a memo key: (root, key hex, value hex or None when absent); None for an
    entry too malformed to name a claim (the full check then says what is wrong)."""
    if not isinstance(entry, Mapping):
        return None
    key = entry.get("key")
    if not isinstance(key, str):
        return None
    if entry.get("absent") is True:
        return (root, key.lower(), None)
    value = entry.get("value")
    return (root, key.lower(), value.lower()) if isinstance(value, str) else None


def _explain_read(result: Mapping[str, Any], expected_header_hash: str | None,
                  expected: Mapping[str, Any]) -> tuple[str, str] | None:
    proof = result.get("proof")
    if not isinstance(proof, Mapping):
        return ("no_proof", "no proof")
    header_wire, read, entries = proof.get("header"), proof.get("read"), proof.get("state")
    if not (isinstance(header_wire, Mapping) and isinstance(read, Mapping) and isinstance(entries, list)):
        return ("malformed", "the proof needs header, read and state parts")
    header, problem = _header_problem(result, header_wire, expected_header_hash)
    if problem is not None:
        return problem
    if expected["chain"] is not None and expected["chain"] != header.chain_id:
        return ("read_mismatch", f"the proof is of chain {header.chain_id!r}, not {expected['chain']!r}")
    for field in ("resource", "op", "method", "args"):
        if field not in read or not _equal_values(read[field], expected[field]):
            return ("read_mismatch", f"the proven read's {field} is not the requested one")
    values: dict[StateKey, Any] = {}
    root = header.state_root
    for entry in entries:
        claim = _claim(root, entry)
        if claim is not None and _STATE.get(claim) == entry:
            key_bytes = bytes.fromhex(claim[1])
            value_bytes = None if claim[2] is None else bytes.fromhex(claim[2])
        else:
            key_bytes, value_bytes = check_state_entry(entry, root)
            if claim is not None:
                _STATE.put(claim, copy.deepcopy(entry))
        values[decode_key(key_bytes)] = None if value_bytes is None else decode(value_bytes)
    resource = expected["resource"]
    state = _ProvenState(values)
    try:
        kind = state.get((resource, NS_META, KIND_KEY))
    except _Unproven:
        return ("state_incomplete", f"the kind of resource {resource!r} is not proven")
    if kind is None:
        return ("output_mismatch", f"chain {header.chain_id} has no resource {resource!r} at block {header.number}")
    if kind not in KINDS:
        return ("unknown_kind", f"resource {resource!r} is of kind {kind!r}, which this router cannot replay")
    try:
        output = _replayer(kind).answer(ResourceView(state, resource), expected["op"], expected["method"],
                                        expected["args"], "")
    except _Unproven as exc:
        return ("state_incomplete", f"the read needs state key {exc.key!r}, which has no proof")
    except StubError as exc:
        return ("output_mismatch", f"over the proven state the read fails: {exc.message}")
    try:
        same = "output" in result and _equal_values(output, result["output"])
    except ValueError:  # an output no chain value encodes to
        same = False
    if not same:
        return ("output_mismatch", "output differs from the read replayed over the proven state")
    return None


def check_event_proof(
    event: Mapping[str, Any],
    *,
    expected_header_hash: str | None,
    resource: str,
) -> tuple[str, str] | None:
    """(the check that failed, why) for an event (one dict of :meth:`EmbeddedStub.events`) that does not prove
    itself to be an event of ``resource`` (its name on its chain), or None. ``expected_header_hash`` is the hash the
    caller's header store holds for the event's ``block_number`` (None: the header is only checked to hash right).
    A ``resource`` that is not a string is the caller's bug and raises ValueError; anything wrong with ``event``
    is reported, never raised.

    Checks, in order: ``no_proof``, ``malformed``, ``header_hash``, ``header_mismatch``, ``block_number``,
    ``receipt_inclusion`` (the receipt is not under the header's receipt root at its stated position),
    ``tx_inclusion`` (the transaction is not the one the proven receipt names), ``tx_mismatch`` (the event names
    another transaction, or the transaction is of another resource or chain: an event moved between streams),
    ``event_mismatch`` (name or args differ from the proven receipt's event at ``event_index``).

    The transaction needs no Merkle path of its own: the proven receipt commits to its hash. Events of one block
    share a header and events of one receipt share the receipt: the header and receipt memos make the second and
    later ones cheap, and a memo hit needs the identical leaf and path, as for reads.
    """
    if not isinstance(resource, str):
        raise ValueError("resource must be a string")
    try:
        return _explain_event(event, expected_header_hash, resource)
    except Exception as exc:  # anything malformed is an invalid proof, not a crash
        return ("malformed", f"malformed proof: {exc}")


def _frozen_path(part: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a (verified) receipt proof for the memo, so a caller editing its own later cannot change it:
    cheaper than a deep copy, and enough, as a verified path's siblings are pairs of strings."""
    return {key: [list(pair) for pair in value] if key == "siblings" else copy.deepcopy(value)
            for key, value in part.items()}


def _explain_event(event: Mapping[str, Any], expected_header_hash: str | None,
                   resource: str) -> tuple[str, str] | None:
    if not isinstance(event, Mapping):
        return ("malformed", "an event must be a map")
    proof = event.get("proof")
    if not isinstance(proof, Mapping):
        return ("no_proof", "no proof")
    header_wire, tx_part, receipt_part = proof.get("header"), proof.get("tx"), proof.get("receipt")
    if not (isinstance(header_wire, Mapping) and isinstance(tx_part, Mapping) and isinstance(receipt_part, Mapping)):
        return ("malformed", "the proof needs header, tx and receipt parts")
    position = proof.get("event_index")
    if isinstance(position, bool) or not isinstance(position, int):
        return ("malformed", "the proof's event_index must be an integer")
    receipt_hex, tx_hex = receipt_part.get("leaf"), tx_part.get("leaf")
    if not (isinstance(receipt_hex, str) and isinstance(tx_hex, str)):
        return ("malformed", "the receipt and the transaction must be given as hex leaves")
    header, problem = _header_problem(event, header_wire, expected_header_hash)
    if problem is not None:
        return problem
    memo_key = (header.receipt_root, header.tx_count, receipt_hex)
    known = _RECEIPTS.get(memo_key)
    if known is not None and known[0] == receipt_part:
        receipt: Receipt = known[1]
    else:
        receipt_leaf = bytes.fromhex(receipt_hex)
        if not verify_inclusion(receipt_leaf, receipt_part, header.receipt_root, size=header.tx_count):
            return ("receipt_inclusion", "the receipt is not in the block's receipt_root")
        receipt = Receipt.decode(receipt_leaf)
        if receipt.block_number != header.number or receipt.index != receipt_part.get("index"):
            return ("receipt_inclusion", "the proven receipt names another block or position")
        _RECEIPTS.put(memo_key, (_frozen_path(receipt_part), receipt))
    tx_leaf = bytes.fromhex(tx_hex)
    if sha256(tx_leaf) != receipt.tx_hash:
        return ("tx_inclusion", "the transaction is not the one whose receipt is proven")
    tx_hash = event.get("tx_hash")
    if not isinstance(tx_hash, str) or tx_hash.lower() != receipt.tx_hash.hex():
        return ("tx_mismatch", "the event names another transaction than the proven receipt's")
    transaction = Transaction.decode(tx_leaf)
    if transaction.chain_id != header.chain_id:
        return ("tx_mismatch", "the transaction belongs to another chain")
    if transaction.resource != resource:
        return ("tx_mismatch", f"the event is of resource {transaction.resource!r}, not {resource!r}")
    if event.get("resource") != resource:
        return ("tx_mismatch", f"the event names resource {event.get('resource')!r}, not {resource!r}")
    if not 0 <= position < len(receipt.events):
        return ("event_mismatch", f"the receipt has no event {position} (it has {len(receipt.events)})")
    proven = receipt.events[position]
    if event.get("name") != proven.name:
        return ("event_mismatch", f"the event's name is not the proven one ({proven.name!r})")
    try:
        same = "args" in event and _equal_values(event["args"], proven.data)
    except ValueError:  # args no chain value encodes to
        same = False
    if not same:
        return ("event_mismatch", "the event's args differ from the proven event's")
    return None
