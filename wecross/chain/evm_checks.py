"""What the entry router checks on an EVM result.

A write: the header against its RLP, the Merkle-Patricia proofs of the transaction and receipt against the trusted
header, and, for the built-in contracts, that the proven transaction is the call this client asked for.

A read of a built-in contract: the header against its RLP, the ``eth_getProof`` account proof against the header's
state root, the storage proofs against the account's storage root, and that the value those slots encode (by the
contract's Solidity storage layout, :data:`LAYOUT`) is the output returned. The stub uses the same layout to know
which slots to ask its node for, so the two sides cannot disagree on where a value lives.

Kept apart from :mod:`wecross.chain.trust` because it needs the EVM codecs (rlp, keccak, the built-in ABIs), which
a router without EVM chains never has to import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rlp  # type: ignore[import-untyped,unused-ignore]
from eth_utils.crypto import keccak

from wecross.chain import mpt

#: Where the calldata sits in each transaction type's RLP payload.
_DATA_POSITION = {0: 5, 1: 6, 2: 7, 3: 7, 4: 7}
#: The abstract header's fields and their place in the Ethereum header's RLP list.
_RLP_FIELDS = {"prev_hash": 0, "state_root": 3, "tx_root": 4, "receipt_root": 5}


class EvmCheckError(Exception):
    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


# -- storage layout of the built-in contracts ------------------------------------------------------------------
#: Where each provable read of a built-in contract finds its value: kind -> method -> (slot of the state variable,
#: value type, whether the variable is a mapping keyed by the method's one string argument). solc lays state
#: variables out from slot 0 in declaration order; ``immutable`` ones (AssetLedger.owner) live in the code, not in
#: storage, so they take no slot and cannot be proven this way.
#:
#: - HelloWeCross: ``mapping(string => string) values`` at slot 0.
#: - AssetLedger: ``uint256 totalSupply`` at slot 0, ``mapping(string => uint256) balances`` at slot 1.
LAYOUT: dict[str, dict[str, tuple[int, str, bool]]] = {
    "kv": {"get": (0, "string", True)},
    "asset": {"totalSupply": (0, "uint", False), "balanceOf": (1, "uint", True)},
}
#: The canonical signatures of those methods: a client may name a method either way.
_SIGNATURES = {"get(string)": "get", "totalSupply()": "totalSupply", "balanceOf(string)": "balanceOf"}
#: The method getData reads, per kind (what the stub's get_data calls).
GET_DATA_METHOD = {"kv": "get", "asset": "balanceOf"}
#: Most data slots of a long string a read proof carries (with its length slot, within mpt's 1024 storage proofs):
#: values longer than 32,000 bytes are returned without a proof.
MAX_STRING_SLOTS = 1000
_WORD = 1 << 256


class TooLong(ValueError):
    """A string longer than a read proof may carry (:data:`MAX_STRING_SLOTS` data slots)."""


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """The storage slot that holds a read's value (a string's length word) and how to decode it."""

    slot: int
    value_type: str  # "string" or "uint"


def mapping_slot(key: bytes, base: int) -> int:
    """The slot of ``mapping[key]`` for a string/bytes key, the mapping at slot ``base``: keccak(key . base)."""
    return int.from_bytes(keccak(key + base.to_bytes(32, "big")), "big")


def read_plan(resource_kind: str | None, method: str, args: Sequence[Any]) -> ReadPlan | None:
    """Where the value of ``method(*args)`` on a built-in contract lives; None when it cannot be proven from storage
    (unknown kind or method, or arguments the method does not take)."""
    method = _SIGNATURES.get(method.replace(" ", ""), method) if isinstance(method, str) else ""
    layout = LAYOUT.get(resource_kind or "", {}).get(method)
    if layout is None:
        return None
    base, value_type, keyed = layout
    if not keyed:
        return ReadPlan(base, value_type) if len(args) == 0 else None
    if len(args) != 1 or not isinstance(args[0], str):
        return None
    return ReadPlan(mapping_slot(args[0].encode("utf-8"), base), value_type)


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


def decode_value(plan: ReadPlan, storage: Mapping[int, int]) -> bytes | int:
    """The value a plan's slots hold: bytes for a string, an int for a uint. KeyError naming a missing slot,
    ValueError for a malformed string."""
    word = storage[plan.slot]
    if plan.value_type == "uint":
        return word
    return decode_string(word, [storage[slot] for slot in string_data_slots(plan.slot, word)])


def output_is(value: bytes | int, output: Any) -> bool:
    """Whether a decoded storage value is the output a stub reports (strings as text, integers as wire values:
    a number, or a decimal string beyond msgpack's range)."""
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
        from wecross.evm.stub import WRITE, builtin_abi, embedded_style

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
        raise EvmCheckError("storage_proof", "the proof lacks a data slot of the long string") from None
    except ValueError as exc:
        raise EvmCheckError("value_mismatch", f"the proven slots do not hold a string: {exc}") from None
    if not output_is(value, result.get("output")):
        raise EvmCheckError("value_mismatch", "the output is not the value the proven storage holds")
    return [*checks, "account_proof", "storage_proof", "value_matches"]
