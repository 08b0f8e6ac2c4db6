"""What the entry router checks on an EVM result.

A write: the header against its RLP, the Merkle-Patricia proofs of the transaction and receipt against the trusted
header, and, for the built-in contracts, that the proven transaction is the call this client asked for.

A read of a built-in contract: the header against its RLP, the ``eth_getProof`` account proof against the header's
state root, the storage proofs against the account's storage root, and that the value those slots encode (by the
contract's Solidity storage layout, :data:`LAYOUT`) is the output returned. The stub uses the same layout to know
which slots to ask its node for, so the two sides cannot disagree on where a value lives.

An event: the header against its RLP, the receipt of its transaction under the header's receipts root, the
transaction under the transactions root (so ``tx_hash`` is the proven one), and the log at the proven position in that
receipt, which must be the event's contract, topics and data (its decoding re-done with the built-in ABI).

Kept apart from :mod:`wecross.chain.trust` (and imported by :mod:`wecross.evm.verifier` on first use) because it
needs the EVM codecs (rlp, keccak, the built-in ABIs), which a router without EVM chains never has to import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rlp  # type: ignore[import-untyped,unused-ignore]
from eth_utils.crypto import keccak

from wecross.chain.verifier import VerificationError
from wecross.evm import mpt
from wecross.evm.abi import WRITE, builtin_abi
from wecross.evm.builtin import HTLC_STATES, embedded_style

#: Where the calldata sits in each transaction type's RLP payload.
_DATA_POSITION = {0: 5, 1: 6, 2: 7, 3: 7, 4: 7}
#: The abstract header's fields and their place in the Ethereum header's RLP list.
_RLP_FIELDS = {"prev_hash": 0, "state_root": 3, "tx_root": 4, "receipt_root": 5}


#: The checks here fail with the one exception every chain verifier raises (the name stays for their callers).
EvmCheckError = VerificationError


# -- storage layout of the built-in contracts ------------------------------------------------------------------
#: Where each provable read of a built-in contract finds its value: kind -> method -> (slot of the state variable,
#: value type, key). ``key`` is None for a plain variable, ``"string"`` for a mapping keyed by the method's one
#: string argument (its UTF-8 bytes), ``"keccak"`` for a mapping keyed by keccak256 of that string (a bytes32 key).
#: solc lays state variables out from slot 0 in declaration order; ``immutable`` ones (AssetLedger.owner) live in the
#: code, not in storage, so they take no slot and cannot be proven this way.
#:
#: - HelloWeCross: ``mapping(string => string) values`` at slot 0.
#: - AssetLedger: ``uint256 totalSupply`` at slot 0, ``mapping(string => uint256) balances`` at slot 1, TxBook's
#:   ``Book`` at slots 2 to 4, ``steps``, ``credited``, ``debited`` at 5 to 7, ``mapping(bytes32 => Htlc) htlcs``
#:   at slot 8 (checked against solc's storageLayout output). An ``Htlc`` takes six consecutive slots from
#:   keccak(keccak(id) . 8): see :data:`HTLC_SLOTS`.
LAYOUT: dict[str, dict[str, tuple[int, str, str | None]]] = {
    "kv": {"get": (0, "string", "string")},
    "asset": {"totalSupply": (0, "uint", None), "balanceOf": (1, "uint", "string"),
              "htlcStatus": (8, "htlc", "keccak")},
}
#: The canonical signatures of those methods: a client may name a method either way.
_SIGNATURES = {"get(string)": "get", "totalSupply()": "totalSupply", "balanceOf(string)": "balanceOf",
               "htlcStatus(string)": "htlcStatus"}
#: The method getData reads, per kind (what the stub's get_data calls).
GET_DATA_METHOD = {"kv": "get", "asset": "balanceOf"}
#: Most data slots a read proof carries beyond the value's own slots (within mpt's 1024 storage proofs): a string
#: longer than 32,000 bytes (or an HTLC whose strings together are) is returned without a proof.
MAX_STRING_SLOTS = 1000
_WORD = 1 << 256
#: AssetLedger's ``struct Htlc``, slot by slot from its base: ``uint8 state`` and ``uint64 timelock`` packed in the
#: first (state in the lowest byte, timelock in the next eight), then ``bytes32 hashLock``, ``uint256 amount``,
#: ``string sender``, ``string receiver``, ``bytes secret`` (each string/bytes a length word with its data, if 32
#: bytes or more, at keccak(its slot) + i).
HTLC_SLOTS = 6
_HTLC_HASH_LOCK, _HTLC_AMOUNT, _HTLC_SENDER, _HTLC_RECEIVER, _HTLC_SECRET = 1, 2, 3, 4, 5
#: AssetLedger's HTLC states as htlcStatus outputs name them (0: no such HTLC, output None).
HTLC_STATE_NAMES = HTLC_STATES
_HTLC_UNLOCKED = 2
_UINT64 = (1 << 64) - 1


class TooLong(ValueError):
    """A string longer than a read proof may carry (:data:`MAX_STRING_SLOTS` data slots)."""


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """The storage slot that holds a read's value (a string's length word, an HTLC record's first slot) and how to
    decode it."""

    slot: int
    value_type: str  # "string", "uint" or "htlc"


def mapping_slot(key: bytes, base: int) -> int:
    """The slot of ``mapping[key]`` for a string/bytes key (or a bytes32 one: its 32 bytes), the mapping at slot
    ``base``: keccak(key . base)."""
    return int.from_bytes(keccak(key + base.to_bytes(32, "big")), "big")


def read_plan(resource_kind: str | None, method: str, args: Sequence[Any]) -> ReadPlan | None:
    """Where the value of ``method(*args)`` on a built-in contract lives; None when it cannot be proven from storage
    (unknown kind or method, or arguments the method does not take)."""
    method = _SIGNATURES.get(method.replace(" ", ""), method) if isinstance(method, str) else ""
    layout = LAYOUT.get(resource_kind or "", {}).get(method)
    if layout is None:
        return None
    base, value_type, key = layout
    if key is None:
        return ReadPlan(base, value_type) if len(args) == 0 else None
    if len(args) != 1 or not isinstance(args[0], str):
        return None
    try:
        raw = args[0].encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no call could have been made with it
        return None
    return ReadPlan(mapping_slot(raw if key == "string" else keccak(raw), base), value_type)


def first_slots(plan: ReadPlan) -> list[int]:
    """The slots a proof of ``plan`` always covers: the value's own (six for an HTLC record). What else it needs
    (:func:`more_slots`) depends on what these hold."""
    if plan.value_type == "htlc":
        return [(plan.slot + offset) % _WORD for offset in range(HTLC_SLOTS)]
    return [plan.slot]


def more_slots(plan: ReadPlan, storage: Mapping[int, int]) -> list[int]:
    """The data slots of the plan's long strings, given the words of :func:`first_slots` (KeyError for one
    missing): those of a string value, or of an HTLC's sender, receiver and (once unlocked) secret; [] for an
    unknown HTLC. :class:`TooLong` when they are more than :data:`MAX_STRING_SLOTS`."""
    if plan.value_type == "string":
        return string_data_slots(plan.slot, storage[plan.slot])
    if plan.value_type != "htlc" or storage[plan.slot] & 0xFF == 0:
        return []
    fields = [_HTLC_SENDER, _HTLC_RECEIVER]
    if storage[plan.slot] & 0xFF == _HTLC_UNLOCKED:
        fields.append(_HTLC_SECRET)
    found: list[int] = []
    for offset in fields:
        slot = (plan.slot + offset) % _WORD
        found.extend(string_data_slots(slot, storage[slot]))
        if len(found) > MAX_STRING_SLOTS:
            raise TooLong(f"the HTLC's strings need {len(found)} data slots, more than the {MAX_STRING_SLOTS} a "
                          "proof carries")
    return found


def string_data_slots(slot: int, word: int) -> list[int]:
    """The slots holding a long string's bytes (keccak(slot) + i), given its length word; [] for a short string.

    :class:`TooLong` when the string is longer than a proof may carry.
    """
    if not word & 1:
        return []
    count = ((word - 1) // 2 + 31) // 32
    if count > MAX_STRING_SLOTS:
        raise TooLong(f"the string needs {count} data slots, more than the {MAX_STRING_SLOTS} a proof carries")
    first = int.from_bytes(keccak(slot.to_bytes(32, "big")), "big")
    return [(first + i) % _WORD for i in range(count)]


def decode_string(word: int, data: Sequence[int]) -> bytes:
    """A Solidity storage string from its length word and data words. Short (< 32 bytes): the bytes left-aligned in
    the word, 2 * length in its lowest byte. Long: 2 * length + 1 in the word, the bytes from keccak(slot) on.
    ValueError for an encoding Solidity never writes."""
    if not word & 1:
        length = (word & 0xFF) // 2
        if length > 31:
            raise ValueError("a short string's length byte says more than 31 bytes")
        return word.to_bytes(32, "big")[:length]
    length = (word - 1) // 2
    if length < 32:
        raise ValueError("a long string's length word says fewer than 32 bytes")
    if len(data) != (length + 31) // 32:
        raise ValueError("the number of data words does not fit the length")
    return b"".join(part.to_bytes(32, "big") for part in data)[:length]


def decode_value(plan: ReadPlan, storage: Mapping[int, int]) -> bytes | int | dict[str, Any] | None:
    """The value a plan's slots hold: bytes for a string, an int for a uint, an HTLC record (see
    :func:`decode_htlc`) for an HTLC. KeyError naming a missing slot, ValueError for an encoding Solidity never
    writes."""
    word = storage[plan.slot]
    if plan.value_type == "uint":
        return word
    if plan.value_type == "htlc":
        return decode_htlc(plan.slot, storage)
    return decode_string(word, [storage[slot] for slot in string_data_slots(plan.slot, word)])


def _stored_string(slot: int, storage: Mapping[int, int]) -> bytes:
    word = storage[slot]
    return decode_string(word, [storage[data] for data in string_data_slots(slot, word)])


def decode_htlc(base: int, storage: Mapping[int, int]) -> dict[str, Any] | None:
    """The HTLC record whose struct starts at slot ``base``: None if its state is 0 (never locked), else
    {state (name), sender, receiver (bytes), amount, timelock (ints), hash_lock (32 bytes), secret (bytes, only once
    unlocked)}. Only the first slot is needed for an unknown HTLC."""
    head = storage[base]
    state, timelock = head & 0xFF, (head >> 8) & _UINT64
    if head >> 72:
        raise ValueError("the HTLC's first slot has bits beyond its state and time lock")
    if state == 0:
        if head:
            raise ValueError("an unknown HTLC has a time lock")
        return None
    name = HTLC_STATE_NAMES.get(state)
    if name is None:
        raise ValueError(f"HTLC state {state} is not one AssetLedger writes")

    def at(offset: int) -> int:
        return (base + offset) % _WORD

    record: dict[str, Any] = {
        "state": name,
        "sender": _stored_string(at(_HTLC_SENDER), storage),
        "receiver": _stored_string(at(_HTLC_RECEIVER), storage),
        "amount": storage[at(_HTLC_AMOUNT)],
        "hash_lock": storage[at(_HTLC_HASH_LOCK)].to_bytes(32, "big"),
        "timelock": timelock,
    }
    if state == _HTLC_UNLOCKED:
        record["secret"] = _stored_string(at(_HTLC_SECRET), storage)
    return record


def output_is(value: bytes | int | dict[str, Any] | None, output: Any) -> bool:
    """Whether a decoded storage value is the output a stub reports (strings as text, integers as wire values:
    a number, or a decimal string beyond msgpack's range; an HTLC record as htlcStatus gives it, hashes and
    secrets as lowercase hex without 0x; an unknown HTLC as None)."""
    if value is None:
        return output is None
    if isinstance(value, dict):
        if not isinstance(output, Mapping) or set(output) != set(value):
            return False
        for name, field in value.items():
            shown = output[name]
            if name in ("hash_lock", "secret"):
                if not isinstance(shown, str) or shown != field.hex():
                    return False
            elif name == "state":
                if shown != field or not isinstance(shown, str):
                    return False
            elif not output_is(field, shown):
                return False
        return True
    if isinstance(value, bytes):
        return isinstance(output, str) and output.encode("utf-8", "surrogatepass") == value
    if isinstance(output, bool):
        return False
    if isinstance(output, str):
        return output.isdecimal() and int(output) == value
    return isinstance(output, int) and output == value


def header_hash(wire: Mapping[str, Any]) -> str:
    """The hash an EVM header really has: keccak of its RLP, whose fields must be the abstract header's. A header
    without its RLP (a node that hashes headers its own way) can only be trusted by linkage and quorum."""
    extras = wire.get("extras")
    encoded = extras.get("rlp") if isinstance(extras, Mapping) else None
    if not isinstance(encoded, str):
        stated = wire.get("hash")
        return str(stated)
    raw = bytes.fromhex(encoded)
    fields = rlp.decode(raw)
    for name, position in _RLP_FIELDS.items():
        if bytes(fields[position]).hex() != str(wire.get(name, "")).lower().removeprefix("0x"):
            raise ValueError(f"the header's RLP has another {name}")
    if int.from_bytes(bytes(fields[8]), "big") != wire.get("number"):
        raise ValueError("the header's RLP has another number")
    return bytes(keccak(raw)).hex()


def calldata(raw_tx: bytes) -> bytes:
    """The input data of a signed transaction (legacy or typed)."""
    if raw_tx and raw_tx[0] < 0x7F:
        kind, payload = raw_tx[0], raw_tx[1:]
    else:
        kind, payload = 0, raw_tx
    position = _DATA_POSITION.get(kind)
    if position is None:
        raise ValueError(f"transaction type {kind} is not known here")
    return bytes(rlp.decode(payload)[position])


def _checked_header(proof: Mapping[str, Any], expected_header_hash: str) -> Mapping[str, Any]:
    """The proof's header, once it is the trusted one and its RLP (where it has one) hashes to it."""
    header = proof.get("header")
    if not isinstance(header, Mapping):
        raise EvmCheckError("malformed", "the proof has no header")
    if str(header.get("hash", "")).lower() != expected_header_hash:
        raise EvmCheckError("header_mismatch", "the header is not the one the header store holds for this block")
    try:
        if header_hash(header) != expected_header_hash:
            raise EvmCheckError("header_hash", "the header does not hash to its stated hash")
    except (ValueError, TypeError, IndexError, rlp.exceptions.DecodingError) as exc:
        raise EvmCheckError("header_hash", f"the header's RLP does not match it: {exc}") from None
    return header


def check_write(result: Mapping[str, Any], expected_header_hash: str, *, resource_kind: str | None,
                method: str, args: list[Any], sender: str = "") -> list[str]:
    """The checks passed (raises EvmCheckError naming the one that failed)."""
    proof = result.get("proof")
    if not isinstance(proof, Mapping) or proof.get("kind") != "mpt":
        raise EvmCheckError("no_proof", "the result carries no Merkle-Patricia proof")
    header = _checked_header(proof, expected_header_hash)
    if result.get("block_number") != header.get("number"):
        raise EvmCheckError("block_number", "block_number does not match the header")
    tx_hash = result.get("tx_hash")
    try:
        raw = mpt.verify_transaction(str(header.get("tx_root")), proof.get("tx"), str(tx_hash))
    except mpt.ProofError as exc:
        raise EvmCheckError("tx_hash" if exc.check == "hash_mismatch" else "tx_inclusion", exc.message) from None
    tx_proof = proof.get("tx")
    index = tx_proof.get("index") if isinstance(tx_proof, Mapping) else None
    try:
        proven = mpt.verify_receipt(str(header.get("receipt_root")), proof.get("receipt"), {"status": 1},
                                    index=index if isinstance(index, int) else None)
    except mpt.ProofError as exc:
        check = "receipt_mismatch" if exc.check == "receipt_mismatch" else "receipt_inclusion"
        raise EvmCheckError(check, exc.message) from None
    receipt = result.get("receipt")
    logs = receipt.get("logs") if isinstance(receipt, Mapping) else None
    if not isinstance(logs, list) or len(logs) != len(proven["logs"]):
        raise EvmCheckError("receipt_mismatch", "the receipt's logs are not the proven receipt's")
    for shown, real in zip(logs, proven["logs"], strict=True):
        address = str(shown.get("address", "")).lower().removeprefix("0x") if isinstance(shown, Mapping) else ""
        if address != str(real["address"]).lower().removeprefix("0x"):
            raise EvmCheckError("receipt_mismatch", "a log of the receipt comes from another contract than proven")
    checks = ["header_linked", "header_rlp", "tx_inclusion", "receipt_inclusion", "receipt_matches"]
    if resource_kind in ("kv", "asset"):
        args = embedded_style(resource_kind, method, list(args), sender)
        abi = builtin_abi(resource_kind)
        try:
            function = abi.lookup("verify", method, args, WRITE)
            wanted, _ = abi.encode("verify", function, list(args))
        except Exception:
            raise EvmCheckError("tx_mismatch", f"{method}{args} is not a call the {resource_kind} contract "
                                               f"takes") from None
        try:
            data = calldata(raw)
        except (ValueError, IndexError, rlp.exceptions.DecodingError) as exc:
            raise EvmCheckError("malformed", f"the proven transaction does not decode: {exc}") from None
        if data != wanted:
            raise EvmCheckError("tx_mismatch", "the proven transaction is another call than the one asked for")
        checks.append("tx_matches_request")
    return checks


def check_read(result: Mapping[str, Any], expected_header_hash: str, *, resource_kind: str | None,
               key: str | None = None, method: str | None = None, args: Sequence[Any] = (),
               address: str | None = None) -> list[str]:
    """The checks a read's result passed (raises EvmCheckError naming the one that failed).

    ``key`` for getData (the method is the kind's :data:`GET_DATA_METHOD`), else ``method`` and ``args`` for a
    call. ``expected_header_hash`` is the trusted hash of block ``result["block_number"]``. ``address``, when the
    caller knows the resource's contract address from elsewhere, pins the proven account to it; without it the
    proof shows the value held by *an* account of the chain, the one the owner says is the resource.

    Check names: ``unprovable`` (the method's value is not in storage, or a kind without a layout: no check can be
    made), ``no_proof``, ``malformed``, ``header_mismatch``, ``header_hash``, ``block_number``, ``address_mismatch``,
    ``account_proof`` (not in the state trie under the header's state root), ``storage_proof`` (a slot not in the
    account's storage trie, or a long string's data slot missing), ``key_mismatch`` (the proof does not cover the
    slot of the key or method asked for), ``value_mismatch`` (the output is not the value the slots hold).

    ``htlcStatus [id]`` on an asset is proven like the others: the record's six slots (and its strings' data
    slots), decoded by AssetLedger's layout and compared field by field with the output; an unknown id is proven
    by its first slot holding 0 (output None).
    """
    if key is not None:
        method, args = GET_DATA_METHOD.get(resource_kind or "", ""), [key]
    plan = read_plan(resource_kind, method or "", list(args))
    if plan is None:
        raise EvmCheckError("unprovable", f"{method}{list(args)} on a {resource_kind} resource is not a read this "
                                          "router can prove from storage")
    proof = result.get("proof")
    if not isinstance(proof, Mapping) or proof.get("kind") != "state":
        raise EvmCheckError("no_proof", "the result carries no state proof")
    header = _checked_header(proof, expected_header_hash)
    if result.get("block_number") != header.get("number"):
        raise EvmCheckError("block_number", "block_number does not match the header")
    account = proof.get("account")
    if not isinstance(account, Mapping):
        raise EvmCheckError("malformed", "the proof has no account (eth_getProof result)")
    checks = ["header_linked", "header_rlp"]
    if address is not None:
        if str(account.get("address", "")).lower().removeprefix("0x") != address.lower().removeprefix("0x"):
            raise EvmCheckError("address_mismatch", "the proven account is not the resource's contract")
        checks.append("address_matches")
    state_root = str(header.get("state_root"))
    try:
        mpt.state_proof_check(state_root, {**account, "storageProof": []})
    except mpt.ProofError as exc:
        raise EvmCheckError("account_proof", exc.message) from None
    try:
        proven = mpt.state_proof_check(state_root, account)
    except mpt.ProofError as exc:
        raise EvmCheckError("storage_proof", exc.message) from None
    storage = {int(slot, 16): value for slot, value in proven["storage"].items()}
    if plan.slot not in storage:
        raise EvmCheckError("key_mismatch", "the proof does not cover the storage slot of the value asked for")
    try:
        value = decode_value(plan, storage)
    except KeyError:
        raise EvmCheckError("storage_proof", "the proof lacks a slot the value needs (a field of the record, or a "
                                             "data slot of a long string)") from None
    except ValueError as exc:
        raise EvmCheckError("value_mismatch", f"the proven slots do not hold a {plan.value_type}: {exc}") from None
    if not output_is(value, result.get("output")):
        raise EvmCheckError("value_mismatch", "the output is not the value the proven storage holds")
    return [*checks, "account_proof", "storage_proof", "value_matches"]


# -- events ------------------------------------------------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (a list and a tuple count as one type: msgpack makes both
    lists), so 1, True and "1" differ."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(value, b[key]) for key, value in a.items())
    return bool(a == b)


def _bare(value: Any) -> str:
    return str(value).lower().removeprefix("0x")


def _raw_log_is(event: Mapping[str, Any], log: Mapping[str, Any]) -> bool:
    """Whether the event's raw ``topics`` and ``data`` (0x hex, as the stub writes them) are the proven log's."""
    topics, data = event.get("topics"), event.get("data")
    if not isinstance(topics, list) or not isinstance(data, str) or not all(isinstance(t, str) for t in topics):
        return False
    return bool([_bare(t) for t in topics] == log["topics"] and _bare(data) == log["data"])


def check_event(event: Mapping[str, Any], expected_header_hash: str, *, address: str | None = None,
                resource_kind: str | None = None) -> list[str]:
    """The checks an event (as :meth:`wecross.evm.stub.EvmStub.events` reports it, with its ``proof``) passed;
    raises EvmCheckError naming the one that failed. ``expected_header_hash`` is the trusted hash of block
    ``event["block_number"]``; ``address``, when the caller knows the resource's contract address, pins the log's
    contract to it.

    Proven: the block (number and hash), the transaction (``tx_hash``, ``transaction_index``), the log's contract,
    topics and data, and so its decoding. ``log_index`` (the position among the block's logs) is proven exactly for
    the block's first transaction and bounded below by the log's position in its receipt otherwise (the logs of the
    earlier receipts would be needed). ``resource`` is a name the entry router compares itself.

    Decoding: for a built-in ``resource_kind`` (``kv``, ``asset``) the proven log is decoded again with the built-in
    ABI and must give the event's name and args (and raw topics/data for a log the ABI does not describe). For a
    generic ``contract`` the entry router has no ABI: the event's raw ``topics`` and ``data`` (which the stub adds
    to every event of a generic contract) must be the log's, and name/args stay the owner's reading (the checks say
    ``raw_log_matches``, not ``event_matches``). Without a kind, an event matching its log under a built-in ABI, or
    by its raw fields, passes.

    Check names: ``no_proof``, ``malformed``, ``header_mismatch``, ``header_hash``, ``block_number``,
    ``receipt_proof`` (the receipt is not in the block at ``transaction_index``), ``tx_inclusion`` / ``tx_hash``
    (the transaction is not in the block, or is not ``tx_hash``), ``log_mismatch`` (no log at the proof's position,
    or another contract, or a ``log_index`` the position rules out), ``event_mismatch`` (name, args or raw fields
    are not the log's), ``address_mismatch``.
    """
    if not isinstance(event, Mapping):
        raise EvmCheckError("malformed", "an event must be a mapping")
    proof = event.get("proof")
    if not isinstance(proof, Mapping) or proof.get("kind") != "mpt":
        raise EvmCheckError("no_proof", "the event carries no Merkle-Patricia proof")
    header = _checked_header(proof, expected_header_hash)
    if event.get("block_number") != header.get("number"):
        raise EvmCheckError("block_number", "block_number does not match the header")
    if _bare(event.get("block_hash", "")) != expected_header_hash:
        raise EvmCheckError("header_mismatch", "block_hash is not the trusted hash of the event's block")
    index = event.get("transaction_index")
    if type(index) is not int or index < 0:
        raise EvmCheckError("malformed", "the event has no transaction_index")
    try:
        receipt = mpt.decode_receipt(mpt.verify(str(header.get("receipt_root")), proof.get("receipt"), index=index))
    except mpt.ProofError as exc:
        raise EvmCheckError("receipt_proof", exc.message) from None
    try:
        mpt.verify_transaction(str(header.get("tx_root")), proof.get("tx"), str(event.get("tx_hash")), index=index)
    except mpt.ProofError as exc:
        raise EvmCheckError("tx_hash" if exc.check == "hash_mismatch" else "tx_inclusion", exc.message) from None
    position = proof.get("log_position")
    logs = receipt["logs"]
    if type(position) is not int or not 0 <= position < len(logs):
        raise EvmCheckError("log_mismatch", f"the proven receipt has no log at position {position!r}")
    log = logs[position]
    log_index = event.get("log_index")
    if type(log_index) is not int or log_index < position or (index == 0 and log_index != position):
        raise EvmCheckError("log_mismatch", f"log_index {log_index!r} cannot be the log at position {position} of "
                                            f"transaction {index}'s receipt")
    if _bare(event.get("address", "")) != log["address"]:
        raise EvmCheckError("log_mismatch", "the event names another contract than the proven log's")
    checks = ["header_linked", "header_rlp", "receipt_inclusion", "tx_inclusion", "log_matches",
              _event_matches(event, log, resource_kind)]
    if address is not None:
        if _bare(address) != log["address"]:
            raise EvmCheckError("address_mismatch", "the proven log is not of the resource's contract")
        checks.append("address_matches")
    return checks


def _event_matches(event: Mapping[str, Any], log: Mapping[str, Any], resource_kind: str | None) -> str:
    """The decoding check passed (``event_matches`` or ``raw_log_matches``); EvmCheckError('event_mismatch')."""
    if resource_kind in ("kv", "asset"):
        kinds: tuple[str, ...] = (resource_kind,)
    elif resource_kind is None:
        kinds = ("kv", "asset")
    else:
        kinds = ()
    if kinds:
        entry = {"address": "0x" + log["address"], "topics": [bytes.fromhex(t) for t in log["topics"]],
                 "data": bytes.fromhex(log["data"])}
        for kind in kinds:
            decoded = builtin_abi(kind).decode_log(entry)
            if decoded["name"] is None:
                continue
            if event.get("name") == decoded["name"] and _same(event.get("args"), decoded["args"]):
                return "event_matches"
            if resource_kind is not None:
                raise EvmCheckError("event_mismatch", f"the proven log is {decoded['name']} with other arguments "
                                                      f"than the event's {event.get('name')}")
    if event.get("name") is None and event.get("args") is not None:
        raise EvmCheckError("event_mismatch", "an undecoded event has args")
    if _raw_log_is(event, log):
        return "event_matches" if event.get("name") is None else "raw_log_matches"
    raise EvmCheckError("event_mismatch", "the event's name, args or raw topics and data are not the proven log's")
