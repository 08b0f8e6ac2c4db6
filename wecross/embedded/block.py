"""Block, transaction and receipt records of the embedded chain and their canonical byte encoding.

Hashes and Merkle roots are only as good as the bytes under them: two routers (or a router and a verifier years
later) must turn the same record into the same bytes. So every record is encoded as a msgpack *array* with a fixed
field order, maps inside values are written with their keys sorted, and floats never appear in hashed fields
(timestamps are integer milliseconds). Any value that cannot be encoded this way is refused at the edge with a
clear message instead of producing a hash nobody can reproduce.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from wecross.chain.merkle import EMPTY_ROOT, HASH_SIZE, from_hex
from wecross.stub.interfaces import BlockHeader

#: Version of the header/transaction/receipt layout; part of every hashed header so a change cannot go unnoticed.
FORMAT_VERSION = 1
ZERO_HASH = bytes(HASH_SIZE)
#: Values nested deeper than this are refused: they serve no resource and would make decoding a stack hazard.
MAX_DEPTH = 32
STATUS_OK = "ok"


class EncodingError(ValueError):
    """A value that has no canonical encoding (unsupported type, non-string map key, too deep, too large)."""


def canonical(value: Any, _depth: int = 0) -> Any:
    """Return ``value`` as plain wire values with every map's keys in sorted order; EncodingError otherwise."""
    if _depth > MAX_DEPTH:
        raise EncodingError(f"value nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str, bytes, float)):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise EncodingError(f"integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, (list, tuple)):
        return [canonical(item, _depth + 1) for item in value]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in sorted(value, key=_map_key):
            out[key] = canonical(value[key], _depth + 1)
        return out
    raise EncodingError(f"values of type {type(value).__name__} cannot be stored (use null, bool, int, float, "
                        "string, bytes, lists and string-keyed maps)")


def _map_key(key: object) -> str:
    if not isinstance(key, str):
        raise EncodingError(f"map keys must be strings, not {type(key).__name__}")
    return key


def encode(value: Any) -> bytes:
    """Canonical msgpack bytes of ``value``."""
    return msgpack.packb(canonical(value), use_bin_type=True)  # type: ignore[no-any-return]


def _pack(fields: list[Any]) -> bytes:
    """Pack a record whose fields are already canonical (callers canonicalise the free-form ones)."""
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


def decode(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _check_digest(name: str, value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ValueError(f"{name} must be {HASH_SIZE} bytes")
    return value


def _check_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return value


def _check_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


@dataclass(frozen=True, slots=True)
class Header:
    """A block header. ``hash`` is SHA-256 of :meth:`encode`; it commits to the chain, the previous block and the
    three roots, so a header is all a verifier needs besides a proof."""

    chain_id: str
    number: int
    prev_hash: bytes
    timestamp_ms: int
    tx_root: bytes
    receipt_root: bytes
    state_root: bytes
    tx_count: int

    def encode(self) -> bytes:
        return _pack([
            FORMAT_VERSION, self.chain_id, self.number, self.prev_hash, self.timestamp_ms,
            self.tx_root, self.receipt_root, self.state_root, self.tx_count,
        ])

    @property
    def hash(self) -> bytes:
        return sha256(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Header:
        """Parse a stored header; ValueError when the bytes are not a header of this format."""
        try:
            fields = decode(data)
        except Exception as exc:
            raise ValueError(f"undecodable header: {exc}") from None
        if not isinstance(fields, list) or len(fields) != 9:
            raise ValueError("a header must be a 9-element array")
        if fields[0] != FORMAT_VERSION:
            raise ValueError(f"unknown header format version {fields[0]!r}")
        return cls(
            chain_id=_check_str("chain_id", fields[1]),
            number=_check_int("number", fields[2]),
            prev_hash=_check_digest("prev_hash", fields[3]),
            timestamp_ms=_check_int("timestamp_ms", fields[4]),
            tx_root=_check_digest("tx_root", fields[5]),
            receipt_root=_check_digest("receipt_root", fields[6]),
            state_root=_check_digest("state_root", fields[7]),
            tx_count=_check_int("tx_count", fields[8]),
        )

    def to_abstract(self) -> BlockHeader:
        """The chain-independent header the router stores; ``extras`` holds what the hash needs besides it."""
        return BlockHeader(
            number=self.number,
            hash=self.hash.hex(),
            prev_hash=self.prev_hash.hex(),
            tx_root=self.tx_root.hex(),
            receipt_root=self.receipt_root.hex(),
            state_root=self.state_root.hex(),
            timestamp=self.timestamp_ms / 1000.0,
            extras={
                "version": FORMAT_VERSION,
                "chain": self.chain_id,
                "timestamp_ms": self.timestamp_ms,
                "tx_count": self.tx_count,
            },
        )

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Header:
        """Rebuild a header from :meth:`BlockHeader.to_wire` output (to recompute its hash); ValueError if it is
        not an embedded-chain header."""
        extras = wire.get("extras")
        if not isinstance(extras, Mapping):
            raise ValueError("header extras missing")
        if extras.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown header format version {extras.get('version')!r}")
        return cls(
            chain_id=_check_str("chain", extras.get("chain")),
            number=_check_int("number", wire.get("number")),
            prev_hash=from_hex(wire.get("prev_hash")),  # type: ignore[arg-type]
            timestamp_ms=_check_int("timestamp_ms", extras.get("timestamp_ms")),
            tx_root=from_hex(wire.get("tx_root")),  # type: ignore[arg-type]
            receipt_root=from_hex(wire.get("receipt_root")),  # type: ignore[arg-type]
            state_root=from_hex(wire.get("state_root")),  # type: ignore[arg-type]
            tx_count=_check_int("tx_count", extras.get("tx_count")),
        )


def genesis_header(chain_id: str, state_root: bytes) -> Header:
    """Block 0: no transactions, timestamp 0, the configured initial state. Deterministic from the config."""
    return Header(chain_id, 0, ZERO_HASH, 0, EMPTY_ROOT, EMPTY_ROOT, state_root, 0)


@dataclass(frozen=True, slots=True)
class Transaction:
    """One state-changing operation as it is recorded in a block.

    ``nonce`` is the transaction's position in the whole chain (0 for the first one ever included); together with
    ``chain_id`` it makes two otherwise identical operations distinct transactions with distinct hashes.
    ``args`` is already canonical (see :func:`canonical`).
    """

    chain_id: str
    nonce: int
    timestamp_ms: int
    sender: str
    resource: str
    op: str
    method: str
    args: list[Any]

    def encode(self) -> bytes:
        return _pack([
            FORMAT_VERSION, self.chain_id, self.nonce, self.timestamp_ms, self.sender,
            self.resource, self.op, self.method, canonical(self.args),
        ])

    @classmethod
    def decode(cls, data: bytes) -> Transaction:
        fields = decode(data)
        if not isinstance(fields, list) or len(fields) != 9 or fields[0] != FORMAT_VERSION:
            raise ValueError("not an embedded-chain transaction")
        if not isinstance(fields[8], list):
            raise ValueError("transaction args must be a list")
        return cls(
            chain_id=_check_str("chain_id", fields[1]),
            nonce=_check_int("nonce", fields[2]),
            timestamp_ms=_check_int("timestamp_ms", fields[3]),
            sender=_check_str("sender", fields[4]),
            resource=_check_str("resource", fields[5]),
            op=_check_str("op", fields[6]),
            method=_check_str("method", fields[7]),
            args=fields[8],
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "chain": self.chain_id,
            "nonce": self.nonce,
            "timestamp_ms": self.timestamp_ms,
            "sender": self.sender,
            "resource": self.resource,
            "op": self.op,
            "method": self.method,
            "args": self.args,
        }


@dataclass(frozen=True, slots=True)
class Event:
    """Something a transaction reports besides its output (``Transfer``, ``Set``...), recorded in its receipt."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "data": dict(self.data)}


@dataclass(frozen=True, slots=True)
class Receipt:
    """The outcome of one included transaction."""

    tx_hash: bytes
    status: str
    output: Any
    events: tuple[Event, ...]
    block_number: int
    index: int

    def encode(self) -> bytes:
        return _pack([
            FORMAT_VERSION, self.tx_hash, self.status, canonical(self.output),
            [[event.name, canonical(event.data)] for event in self.events], self.block_number, self.index,
        ])

    @classmethod
    def decode(cls, data: bytes) -> Receipt:
        fields = decode(data)
        if not isinstance(fields, list) or len(fields) != 7 or fields[0] != FORMAT_VERSION:
            raise ValueError("not an embedded-chain receipt")
        return cls(
            tx_hash=_check_digest("tx_hash", fields[1]),
            status=_check_str("status", fields[2]),
            output=fields[3],
            events=tuple(Event(name, data) for name, data in fields[4]),
            block_number=_check_int("block_number", fields[5]),
            index=_check_int("index", fields[6]),
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "output": self.output,
            "events": [event.to_wire() for event in self.events],
            "tx_hash": self.tx_hash.hex(),
            "block_number": self.block_number,
            "index": self.index,
        }

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Receipt:
        """Rebuild a receipt from its wire dict (to compare it with the proven receipt bytes)."""
        events = wire.get("events")
        if not isinstance(events, Sequence):
            raise ValueError("receipt events must be a list")
        parsed: list[Event] = []
        for event in events:
            if not isinstance(event, Mapping) or not isinstance(event.get("name"), str):
                raise ValueError("each receipt event needs a name")
            data = event.get("data", {})
            if not isinstance(data, Mapping):
                raise ValueError("receipt event data must be a map")
            parsed.append(Event(event["name"], dict(data)))
        return cls(
            tx_hash=from_hex(wire.get("tx_hash")),  # type: ignore[arg-type]
            status=_check_str("status", wire.get("status")),
            output=wire.get("output"),
            events=tuple(parsed),
            block_number=_check_int("block_number", wire.get("block_number")),
            index=_check_int("index", wire.get("index")),
        )
