"""Checking the proofs that come with an embedded-chain write, far from the chain that made them.

An entry router receives a write's Result over the overlay from the owning router. With this module (pure: no I/O,
no chain access) it can convince itself that the transaction and its receipt are in the block whose header came
along, that the header hashes to what it claims, and, given the header hash from its own header store, that the
block is the one it already knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wecross.chain.merkle import verify_inclusion
from wecross.embedded.block import Header, Receipt, Transaction, canonical, encode, sha256


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
    if encode(result.get("output")) != encode(proven.output):
        return ("output_mismatch", "output differs from the receipt's output")
    if expected_tx:
        actual = transaction.to_wire()
        for field, value in expected_tx.items():
            if field not in actual or encode(canonical(actual[field])) != encode(canonical(value)):
                return ("tx_mismatch", f"the proven transaction's {field} is not the expected one")
    return None
