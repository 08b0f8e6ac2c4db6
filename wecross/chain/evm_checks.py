"""What the entry router checks on an EVM write: the header against its RLP, the Merkle-Patricia proofs of the
transaction and receipt against the trusted header, and, for the built-in contracts, that the proven transaction is
the call this client asked for.

Kept apart from :mod:`wecross.chain.trust` because it needs the EVM codecs (rlp, keccak, the built-in ABIs), which
a router without EVM chains never has to import.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def check_write(result: Mapping[str, Any], expected_header_hash: str, *, resource_kind: str | None,
                method: str, args: list[Any], sender: str = "") -> list[str]:
    """The checks passed (raises EvmCheckError naming the one that failed)."""
    proof = result.get("proof")
    if not isinstance(proof, Mapping) or proof.get("kind") != "mpt":
        raise EvmCheckError("no_proof", "the result carries no Merkle-Patricia proof")
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
