"""EVM block headers in the abstract form (:class:`~wecross.stub.interfaces.BlockHeader`), with the RLP that
lets an entry router recompute the block hash from every field (:func:`wecross.evm.checks.header_hash`).
"""

from __future__ import annotations

from typing import Any

import rlp  # type: ignore[import-untyped]
from eth_utils.crypto import keccak

from wecross.evm.abi import hex_str
from wecross.stub.interfaces import (
    BlockHeader,
)


def abstract_header(block: Any, chain_id: int) -> BlockHeader:
    extras: dict[str, Any] = {
        "chain_id": chain_id,
        "gas_used": int(block["gasUsed"]),
        "miner": hex_str(block.get("miner") or "0x" + "00" * 20),
    }
    encoded = _header_rlp(block)
    if encoded is not None:
        extras["rlp"] = encoded.hex()
    return BlockHeader(
        number=int(block["number"]),
        hash=hex_str(block["hash"]),
        prev_hash=hex_str(block["parentHash"]),
        tx_root=hex_str(block["transactionsRoot"]),
        receipt_root=hex_str(block["receiptsRoot"]),
        state_root=hex_str(block["stateRoot"]),
        timestamp=float(block["timestamp"]),
        extras=extras,
    )


#: Header fields after the fifteen pre-London ones, in the order forks appended them.
_LATER_HEADER_FIELDS = ("baseFeePerGas", "withdrawalsRoot", "blobGasUsed", "excessBlobGas", "parentBeaconBlockRoot",
                        "requestsHash")


def _header_rlp(block: Any) -> bytes | None:
    """The RLP header whose keccak is the block hash, so a verifier can check every field against the hash.

    None when the node's hash is not keccak(RLP(header)) (chains with their own header format, e.g. FISCO BCOS).
    """
    try:
        fields: list[Any] = [
            bytes(block["parentHash"]), bytes(block["sha3Uncles"]), bytes.fromhex(hex_str(block["miner"])),
            bytes(block["stateRoot"]), bytes(block["transactionsRoot"]), bytes(block["receiptsRoot"]),
            bytes(block["logsBloom"]), int(block["difficulty"]), int(block["number"]), int(block["gasLimit"]),
            int(block["gasUsed"]), int(block["timestamp"]), bytes(block["extraData"]), bytes(block["mixHash"]),
            bytes(block["nonce"]),
        ]
        for name in _LATER_HEADER_FIELDS:
            if block.get(name) is None:
                break
            value = block[name]
            fields.append(int(value) if isinstance(value, int) else bytes(value))
        encoded = rlp.encode(fields)
    except (KeyError, TypeError, ValueError):
        return None
    return encoded if keccak(encoded) == bytes(block["hash"]) else None
