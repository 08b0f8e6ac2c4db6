"""Types of what the router answers, for type checkers and editors; at run time every result is a plain dict.

The results are the router's own JSON, passed through unchanged: plain dicts cost nothing to build, print as the
API documents them (docs/rest-api.md) and keep any field a newer router adds. The TypedDicts below name the fields
the router sends today (``total=False``: a field may be absent, e.g. ``tx_hash`` on a read). Answers whose field
lists are long and operational (``/status``, ``/peers``, ``/routes``, ``/chains``) are typed as :data:`JsonObject`.

Bytes in results arrive as ``"0x"`` + hex strings (the REST API's rule); the SDK does not guess which strings were
bytes.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

#: A JSON object as decoded (``/status``, ``/routes``, ``/chains``, one row of ``/peers``...).
JsonObject = dict[str, Any]


class Verified(TypedDict, total=False):
    """What the entry router checked before answering (docs/trusted-results.md)."""

    proof: bool
    checks: list[str]
    block: int
    header_hash: str
    trust: dict[str, Any]
    reason: str


class OperationResult(TypedDict, total=False):
    """The answer to call / sendTransaction / getData / setData."""

    output: Any
    tx_hash: str
    block_number: int
    receipt: dict[str, Any]
    proof: Any
    router: str
    path: list[str]
    verified: Verified


class ResourceInfo(TypedDict, total=False):
    """One row of ``GET /resources``."""

    ipath: str
    kind: str
    methods: dict[str, str]
    description: str
    local: bool
    routers: list[str]
    route: list[str] | None


class Event(TypedDict, total=False):
    """One event of a resource; ``verified`` when it came from another router."""

    name: str
    args: Any
    block_number: int
    tx_hash: str
    resource: str
    proof: dict[str, Any]
    verified: Verified


class EventsPage(TypedDict, total=False):
    """``GET /{zone}/{chain}/{resource}/events``: ask again from ``next_block`` for what follows."""

    events: list[Event]
    next_block: int
    router: str


class HeaderInfo(TypedDict, total=False):
    """``GET /chains/{zone}/{chain}/headers/{n}``: the header and why this router trusts it."""

    chain: str
    header: dict[str, Any]
    trust: dict[str, Any]


TxState = Literal["started", "committing", "committed", "rolling_back", "rolled_back"]


class TxStep(TypedDict, total=False):
    """One step of a 2PC transaction (``POST /tx/{id}/exec`` adds ``tx_state``)."""

    number: int
    ipath: str
    method: str
    args: list[Any]
    state: str
    output: Any
    error: Any
    at: float
    tx_state: str


class TxRecord(TypedDict, total=False):
    """A 2PC transaction's record (``GET /tx/{id}``, and the answer to start / commit / rollback / adopt)."""

    tx_id: str
    coordinator: str
    state: str
    resources: list[str]
    created_at: float
    deadline: float
    steps: list[TxStep]
    acked: list[str]
    reason: str | None
    decided_at: float | None
    finished_at: float | None
    updated_at: float
    heuristic: list[Any]
    sender: str
    outcomes: dict[str, Any]


class TxSummary(TypedDict, total=False):
    """One row of ``GET /tx``."""

    tx_id: str
    state: str
    steps: int
    participants: list[str]
    created_at: float
    updated_at: float
    reason: str | None


class TxList(TypedDict, total=False):
    """``GET /tx``: newest first, with the coordinator's counters."""

    transactions: list[TxSummary]
    stats: dict[str, Any]


class OwnLeg(TypedDict):
    """Your side of an exchange: what you lock on your chain, and for whom."""

    path: str
    receiver: str
    amount: int


class OtherLeg(TypedDict):
    """The other party's side: what they lock for you on their chain."""

    path: str
    sender: str
    amount: int


class HtlcLeg(TypedDict, total=False):
    """One lock of an exchange, as the router last read it from its chain."""

    path: str
    sender: str
    receiver: str
    amount: int
    timelock: float
    chain_state: str


class HtlcRecord(TypedDict, total=False):
    """An exchange's record (``GET /htlc/{id}`` and the answers to start / unlock / refund).

    ``secret`` appears once it is public (the initiator's router never shows it before).
    """

    htlc_id: str
    role: str
    hash_lock: str
    own: HtlcLeg
    other: HtlcLeg
    margin: float
    created_at: float
    state: str
    updated_at: float
    events: list[dict[str, Any]]
    other_verified: Any
    problem: str | None
    secret: str | None


class HtlcSummary(TypedDict, total=False):
    """One row of ``GET /htlc``."""

    htlc_id: str
    role: str
    state: str
    own: HtlcLeg
    other: HtlcLeg
    created_at: float


class HtlcList(TypedDict, total=False):
    """``GET /htlc``: newest first, with the service's counters."""

    htlcs: list[HtlcSummary]
    stats: dict[str, Any]


class Identity(TypedDict, total=False):
    """``GET /whoami``: the caller as the router's permissions see it."""

    name: str
    org: str | None
    roles: list[str]
    #: "tls" (the TLS client certificate) or "none" (plain HTTP, or no certificate: anonymous).
    proven: str


class AuditRecord(TypedDict, total=False):
    """One record of a router's audit trail (docs/governance.md, "Audit")."""

    seq: int
    time: float
    initiator: str
    org: str | None
    entry_router: str
    ipath: str
    interface: str
    method: str
    args_digest: str
    outcome: str
    tx_hash: str | None
    block: int | None
    path: list[str]
    sealed: str | None
    prev_hash: str
    hash: str


class AuditHead(TypedDict):
    seq: int
    hash: str


class AuditPage(TypedDict, total=False):
    """``GET /audit``: matching records oldest first, and the head of the trail (page on with ``after``)."""

    records: list[AuditRecord]
    head: AuditHead


class PeerChange(TypedDict, total=False):
    """What ``POST /admin/peers`` or ``DELETE /admin/peers/{id}`` did (``changed`` False: nothing to do)."""

    changed: bool
    message: str
    id: str | None
    address: str | None
    closed_links: int


class Account(TypedDict, total=False):
    """One user's account on one chain, as ``/admin/accounts`` answers it (never a key)."""

    user: str
    chain: str
    address: str
    created: float


__all__ = [
    "Account",
    "AuditHead",
    "AuditPage",
    "AuditRecord",
    "Event",
    "EventsPage",
    "HeaderInfo",
    "HtlcLeg",
    "HtlcList",
    "HtlcRecord",
    "HtlcSummary",
    "Identity",
    "JsonObject",
    "OperationResult",
    "OtherLeg",
    "OwnLeg",
    "PeerChange",
    "ResourceInfo",
    "TxList",
    "TxRecord",
    "TxState",
    "TxStep",
    "TxSummary",
    "Verified",
]
