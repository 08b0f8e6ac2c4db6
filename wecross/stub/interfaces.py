"""UBI/HIP: the one interface every chain adapter (stub) and every resource on it offers.

A router never talks to a chain SDK directly; it talks to these interfaces, so a request for any chain travels the
same way. Every method that may touch the chain returns a Deferred: a stub whose SDK blocks runs it in a thread pool,
never on the reactor thread.

Values crossing these interfaces are "wire values": None, bool, int, float, str, bytes, lists and str-keyed dicts of
them, because they are carried in msgpack frames and JSON bodies unchanged.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

#: Operations of the resource interface (UBI, whitepaper 3.1), as named on the wire and in REST URLs.
OP_CALL = "call"
OP_SEND_TRANSACTION = "sendTransaction"
OP_GET_DATA = "getData"
OP_SET_DATA = "setData"
OPERATIONS = (OP_CALL, OP_SEND_TRANSACTION, OP_GET_DATA, OP_SET_DATA)
#: Operations that change chain state: never retried blindly, deduplicated by request id at the owner.
WRITE_OPERATIONS = frozenset({OP_SEND_TRANSACTION, OP_SET_DATA})
#: Transaction-layer operations on a resource (the coordinator and HTLC watcher send them; REST clients use /tx and
#: /htlc). Arguments: txPrepare method = the step's method, args = [tx_id, step args]; txCommit / txRollback
#: args = [tx_id]; htlcLock args = [htlc_id, hash_lock hex, timelock unix s, lock args]; htlcUnlock args =
#: [htlc_id, secret hex]; htlcTimeout args = [htlc_id]. All change state: they are deduplicated and never retried
#: blindly, like writes.
#: Whether the read being run needs a proof: True (the default) unless the REST layer is answering its own client
#: from a local chain without ``?proof=1``, where a proof would be built and encoded for nobody to check. Set for the
#: duration of one synchronous invocation; a stub that cannot tell may ignore it and prove anyway.
PROOFS_WANTED: ContextVar[bool] = ContextVar("wecross_proofs_wanted", default=True)
OP_TX_PREPARE = "txPrepare"
OP_TX_COMMIT = "txCommit"
OP_TX_ROLLBACK = "txRollback"
OP_HTLC_LOCK = "htlcLock"
OP_HTLC_UNLOCK = "htlcUnlock"
OP_HTLC_TIMEOUT = "htlcTimeout"
TX_OPERATIONS = frozenset({OP_TX_PREPARE, OP_TX_COMMIT, OP_TX_ROLLBACK, OP_HTLC_LOCK, OP_HTLC_UNLOCK,
                           OP_HTLC_TIMEOUT})

#: The 2PC participant contract: what a resource's ``commit`` and ``rollback`` hooks answer, whatever the chain.
#: The coordinator (wecross.tx.coordinator) acts on these codes and nothing else, and
#: ``tests.test_tx_contract`` checks every participant kind (embedded kv and asset, EVM kv and asset) against them.
#:
#: - ``commit`` of a transaction prepared here: the commit's Result; again after it committed: a Result again
#:   (the same commit), never an error (idempotent repeat).
#: - ``rollback`` of a transaction prepared here, or again after it rolled back, or of one never prepared here
#:   (a rollback may overtake its prepare): a Result (``{"rolled_back": tx_id, "known": bool}``), never an error.
#: - ``commit`` of a transaction this participant rolled back: StubError("rolled_back").
#: - ``commit`` of a transaction never prepared here: StubError("unknown_tx").
#: - ``rollback`` of a transaction committed here: StubError("already_committed").
#:
#: A coordinator that holds a decision treats those three codes as the participant contradicting it (a heuristic
#: outcome, recorded and reported, never retried): by the time a commit is decided every participant answered its
#: prepare, so it can only have lost the transaction by deciding alone (or by losing its data).
TX_COMMIT_CONTRADICTIONS = frozenset({"rolled_back", "unknown_tx"})
TX_ROLLBACK_CONTRADICTIONS = frozenset({"already_committed"})
TX_CONTRADICTIONS = {OP_TX_COMMIT: TX_COMMIT_CONTRADICTIONS, OP_TX_ROLLBACK: TX_ROLLBACK_CONTRADICTIONS}


class StubError(Exception):
    """A failure a stub reports to the caller, with a stable code (e.g. ``unknown_method``, ``bad_args``,
    ``insufficient_funds``) and a human message. Anything else a stub raises is an internal error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ChainState:
    """What a router advertises about a chain it serves."""

    chain_type: str
    height: int
    head_hash: str
    genesis_hash: str


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """The abstract block header (whitepaper 3.1.2): chain-structure fields and the three verification roots.

    Hashes and roots are lowercase hex strings without ``0x``. ``extras`` carries chain-specific fields.
    """

    number: int
    hash: str
    prev_hash: str
    tx_root: str
    receipt_root: str
    state_root: str
    timestamp: float
    extras: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "hash": self.hash,
            "prev_hash": self.prev_hash,
            "tx_root": self.tx_root,
            "receipt_root": self.receipt_root,
            "state_root": self.state_root,
            "timestamp": self.timestamp,
            "extras": dict(self.extras),
        }


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """What the network learns about one resource: its name, its kind and the methods it offers."""

    name: str
    kind: str
    methods: dict[str, str]  # method name -> "read" (call) or "write" (sendTransaction)
    description: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "methods": dict(self.methods), "description": self.description}


@dataclass(frozen=True, slots=True)
class Result:
    """The answer of a resource operation.

    ``output`` is the decoded return value. Write operations also carry the transaction hash, the number of the
    block that holds it and the receipt (a wire-value dict); ``proof`` is filled by stubs that can prove inclusion.
    """

    output: Any
    tx_hash: str | None = None
    block_number: int | None = None
    receipt: dict[str, Any] | None = None
    proof: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"output": self.output}
        if self.tx_hash is not None:
            wire["tx_hash"] = self.tx_hash
        if self.block_number is not None:
            wire["block_number"] = self.block_number
        if self.receipt is not None:
            wire["receipt"] = self.receipt
        if self.proof is not None:
            wire["proof"] = self.proof
        return wire


class IResource(Interface):
    """One contract, asset, table or channel on a chain."""

    info = Attribute("ResourceInfo")

    def call(method: str, args: list[Any], sender: str) -> Deferred[Result]:
        """Read-only invocation; changes no state and makes no block."""

    def send_transaction(method: str, args: list[Any], sender: str) -> Deferred[Result]:
        """State-changing invocation; the Result carries tx hash, block number and receipt."""

    def get_data(key: str, sender: str) -> Deferred[Result]:
        """Read one value by key."""

    def set_data(key: str, value: Any, sender: str) -> Deferred[Result]:
        """Write one value by key (a transaction on chains that need one)."""

    # Transaction hooks (2PC and HTLC). Declared here so every stub states what it supports; implemented with the
    # transaction layer. A stub that does not take part raises StubError("unsupported", ...).
    def prepare(tx_id: str, method: str, args: list[Any], sender: str) -> Deferred[Result]:
        """Execute tentatively under tx_id and lock what it touches."""

    def commit(tx_id: str) -> Deferred[Result]:
        """Make a prepared tx_id permanent and release its locks; the answers are the participant contract above
        (TX_COMMIT_CONTRADICTIONS)."""

    def rollback(tx_id: str) -> Deferred[Result]:
        """Undo a prepared tx_id and release its locks; the answers are the participant contract above
        (TX_ROLLBACK_CONTRADICTIONS)."""

    def lock(htlc_id: str, hash_lock: str, timelock: float, args: list[Any], sender: str) -> Deferred[Result]:
        """HTLC: lock an amount until a secret with sha256 == hash_lock is shown or timelock passes."""

    def unlock(htlc_id: str, secret: str, sender: str) -> Deferred[Result]:
        """HTLC: release the locked amount to its receiver by showing the secret."""

    def timeout(htlc_id: str, sender: str) -> Deferred[Result]:
        """HTLC: return the locked amount to its sender after the time lock passed."""


class IStub(Interface):
    """The adapter to one chain."""

    name = Attribute("str: the chain's name, the middle part of its iPaths")
    zone = Attribute("str: the zone the chain belongs to")
    chain_type = Attribute("str: e.g. 'embedded', 'evm'")

    def start() -> Deferred[None]:
        """Open the chain (database, RPC connection)."""

    def stop() -> Deferred[None]:
        """Close it; pending work finishes or fails cleanly."""

    def chain_state() -> Deferred[ChainState]:
        """Height, head and genesis hash."""

    def header(number: int) -> Deferred[BlockHeader]:
        """The abstract header of block ``number``; StubError('no_such_block') if there is none."""

    def resources() -> list[IResource]:
        """The resources this stub serves."""

    def resource(name: str) -> IResource | None:
        """One resource by name, or None."""


@dataclass(frozen=True, slots=True)
class EventPage:
    """One answer to an events poll: the events found and the block the next poll starts at (``next_block``)."""

    events: list[dict[str, Any]]
    next_block: int


class IUserAccounts(Interface):
    """A stub that can act on its chain from each user's own account (wecross.governance.keystore): the node hands
    it the router's keystore before start."""

    def use_keystore(keystore: Any) -> None:
        """The keystore to take users' keys from (before start)."""


class IEventSource(Interface):
    """A stub that serves its resources' events (an optional capability beside IStub; test it with
    ``IEventSource.providedBy(stub)``). The stub decides how far one poll scans, so that the router needs to know
    nothing of the chain type: it forwards the page as it is."""

    def events(resource: str, from_block: int) -> Deferred[list[dict[str, Any]]]:
        """Events of ``resource`` from block ``from_block`` up, each with its ``block_number`` (and a proof where
        the chain gives one); StubError ``unknown_resource`` or ``bad_args``."""

    def event_page(resource: str, from_block: int) -> Deferred[EventPage]:
        """:meth:`events` and where the next poll starts: past every block this one scanned (never before
        ``from_block``), so a poll that found nothing still moves on."""


class EventPages:
    """:meth:`IEventSource.event_page` for a stub with ``events`` and ``chain_state``: the head is read first, the
    events scanned from ``from_block``, and the next poll starts after the head (or after the last event, if the
    chain grew meanwhile). A stub whose ``events`` scans at most ``events_window`` blocks a call sets that
    attribute, and the next poll starts after the window instead."""

    #: Most blocks one ``events`` call scans; None: up to the head.
    events_window: int | None = None

    def event_page(self, resource: str, from_block: int) -> Deferred[EventPage]:
        stub: Any = self

        def scanned(state: ChainState) -> Deferred[EventPage]:
            def page(events: list[dict[str, Any]]) -> EventPage:
                last = max([state.height, *(e.get("block_number", 0) for e in events)])
                if self.events_window is not None:
                    last = min(last, from_block + self.events_window - 1)
                return EventPage(events, max(from_block, last + 1))

            found: Deferred[list[dict[str, Any]]] = stub.events(resource, from_block)
            return found.addCallback(page)

        state: Deferred[ChainState] = stub.chain_state()
        return state.addCallback(scanned)


@dataclass(frozen=True, slots=True)
class StubSettings:
    """What the router's config says about one stub (see wecross.config)."""

    name: str
    zone: str
    type: str
    options: dict[str, Any]
    resources: list[dict[str, Any]]

    def checked_where(self) -> str:
        """``stub zone.chain``, the name messages use, once zone and name are known to make valid iPath parts
        (ValueError otherwise): every stub type checks this before anything else."""
        from wecross.ipath import IPath, IPathError

        where = f"stub {self.zone}.{self.name}"
        try:
            IPath.parse(f"{self.zone}.{self.name}.x")
        except IPathError as exc:
            raise ValueError(f"{where}: {exc}") from None
        return where


class IStubFactory(Interface):
    """Found by ``twisted.plugin.getPlugins`` in the stub plugin directories; makes stubs of one chain type."""

    stub_type = Attribute("str: the value of ``type`` in a stub's config that selects this factory")
    description = Attribute("str: one line for `wecross stubs`")

    def build(settings: StubSettings, data_dir: Path) -> IStub:
        """Make (not start) a stub; raise ValueError naming the option that is wrong."""


class NoTransactionHooks:
    """The transaction hooks of IResource for a resource that takes no part in 2PC or HTLC: each fails with
    ``unsupported`` and says why (``transaction_hooks_reason``)."""

    transaction_hooks_reason = "this resource takes no part in the transaction layer (2PC/HTLC)"

    def _unsupported(self) -> Deferred[Result]:
        d: Deferred[Result] = Deferred()
        d.errback(StubError("unsupported", self.transaction_hooks_reason))
        return d

    def prepare(self, tx_id: str, method: str, args: list[Any], sender: str) -> Deferred[Result]:
        return self._unsupported()

    def commit(self, tx_id: str) -> Deferred[Result]:
        return self._unsupported()

    def rollback(self, tx_id: str) -> Deferred[Result]:
        return self._unsupported()

    def lock(self, htlc_id: str, hash_lock: str, timelock: float, args: list[Any], sender: str) -> Deferred[Result]:
        return self._unsupported()

    def unlock(self, htlc_id: str, secret: str, sender: str) -> Deferred[Result]:
        return self._unsupported()

    def timeout(self, htlc_id: str, sender: str) -> Deferred[Result]:
        return self._unsupported()
