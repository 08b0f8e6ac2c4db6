"""The chain engine: runs transactions, groups them into blocks, persists blocks, serves headers and proofs.

Threads. Everything in :class:`Ledger` runs on the reactor thread except what it hands to its one writer thread
(a one-thread pool, so jobs run in submission order): opening the database, writing blocks, reading old blocks.
Reads (call/getData) are answered from the in-memory :class:`~wecross.embedded.state.WorldState` and never wait
for the disk.

Read proofs. A read is answered at the head block and proven against the head's state root: the writer thread
hands a frozen copy of each committed block's state tree (:class:`~wecross.embedded.state.StateSnapshot`) to the
reactor thread, which installs it together with the block's state changes and the new head in one callback. So the
values a read sees, the tree its proof comes from and the header it names always belong to the same block, without
a lock: the reactor thread is the only one that touches them.

Blocks. At most one block is being written at a time. A write that arrives while none is in flight starts a block
at once; writes that arrive while one is in flight queue up and all go into the next block (up to
``max_block_txs``), so under load blocks grow instead of queueing up fsyncs. A block's transactions run on the
reactor thread against an overlay of the committed state; the overlay is installed, and every caller's Deferred
fires, only after the writer thread reports the block durable. Until then reads see the previous block's state.

Failed transactions (bad arguments, unknown method, insufficient funds, not the issuer) are not recorded: the
caller gets the StubError at once, the state is untouched and no block is made for them. The receipt status is
therefore always ``ok`` for this chain; the field exists because other chains record reverted transactions.

Rounds and 2PC. The writer works in rounds: a round takes the queued work (writes, HTLC operations, and the 2PC
hooks prepare / commit / rollback) in arrival order, runs all of it on the reactor thread against one overlay, and
hands the writer thread one SQLite transaction: the block (if the round made any chain transaction) together with
the round's 2PC records (prepared participants' steps, tentative changes and locks; outcomes of commits and
rollbacks), so one fsync makes the whole round durable, however many prepares and commits it holds (group
commit). The round is installed, and its callers answered, only once it is durable: a prepare answers after its
record is on disk, so a prepared participant survives a crash with its locks.

One transaction's content never fails its block. Arguments are checked when a request arrives
(:meth:`Contract.check`, which refuses text UTF-8 cannot encode), and before an item joins its round
:func:`_unstorable` encodes what the writer thread will encode for it (arguments, sender, output, events, every
changed key and value) with the same encoder: an item that fails there fails alone with ``bad_args`` and its changes
are dropped, so the writer thread only ever sees encodable content (``tests.test_hostile_input.LedgerIsolation``).

Locks. The lock table (state key -> participant) lives on the reactor thread. A prepared step runs in a
:class:`~wecross.embedded.txn.GuardedOverlay` over its participant's tentative changes and locks every key it reads
or writes; writes, HTLC operations and reads outside any transaction fail with ``locked`` when they touch a locked
key. A commit applies the participant's tentative changes as one chain transaction (op ``commit``) in the round's
block: every key they depend on has been locked since its prepare, so replaying the steps over the state before
the commit gives the very same changes and outputs.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from wecross.chain.merkle import MerkleTree
from wecross.embedded.block import (
    STATUS_OK,
    Event,
    Header,
    Receipt,
    Transaction,
    canonical,
    encode,
    genesis_header,
    sha256,
)
from wecross.embedded.resources import KIND_KEY, NS_META, OP_HTLC, Contract, Outcome, check_text, genesis_state
from wecross.embedded.state import (
    Overlay,
    RecordingState,
    ResourceView,
    StateKey,
    StateProofError,
    StateSnapshot,
    StateTree,
    WorldState,
    decode_key,
    encode_changes,
    encode_key,
    state_root_of,
)
from wecross.embedded.store import BlockRecord, ChainStore, Finished, LoadedChain, TxRecords, TxWritten
from wecross.embedded.txn import (
    COMMITTED,
    OP_COMMIT,
    ROLLED_BACK,
    GuardedOverlay,
    Owner,
    PreparedTx,
    Step,
    TxLayer,
    check_tx_id,
    locked_error,
)
from wecross.logs import untrusted
from wecross.stub.interfaces import (
    OP_GET_DATA,
    OP_SEND_TRANSACTION,
    OP_SET_DATA,
    ChainState,
    Result,
    StubError,
)

_T = TypeVar("_T")
log = Logger()

CHAIN_TYPE = "embedded"
DB_FILE_NAME = "chain.sqlite"
#: Most blocks one :meth:`Ledger.events` call spans.
MAX_EVENT_RANGE = 128
#: Blocks whose events (with proofs) are kept in memory...
EVENT_CACHE_BLOCKS = 128
#: ... and at most this many of their transactions with events (about 0.8 kB each: ~13 MB at most).
EVENT_CACHE_TXS = 16384


#: Kinds of queued work.
_WRITE, _HTLC, _PREPARE, _COMMIT, _ROLLBACK = "write", "htlc", "prepare", "commit", "rollback"


@dataclass(slots=True)
class _Work:
    """Something waiting for a round: a write, an HTLC operation or a 2PC hook."""

    kind: str
    resource: str
    op: str
    method: str
    args: list[Any]
    sender: str
    timestamp_ms: int
    deferred: Deferred[Result]
    tx_id: str = ""

    @property
    def owner(self) -> Owner:
        return (self.tx_id, self.resource)


@dataclass(frozen=True, slots=True)
class _BlockJob:
    """A block handed to the writer thread: everything decided, only encoding, hashing and writing left."""

    number: int
    prev_hash: bytes
    timestamp_ms: int
    transactions: list[Transaction]
    outcomes: list[Outcome]
    changes: Mapping[bytes, bytes | None]


@dataclass(frozen=True, slots=True)
class _Job:
    """One round for the writer thread: its block (if any) and its 2PC records, written in one SQLite transaction."""

    block: _BlockJob | None
    upserts: list[tuple[str, str, int, bytes, bool]]
    #: (tx_id, resource, state, index of the commit transaction in the block or None, finished_ms)
    finished: list[tuple[str, str, str, int | None, int]]
    rollbacks: list[tuple[str, str, int]]
    #: Participants whose commit found them not prepared: their outcome is looked up after the write.
    lookups: list[Owner]


@dataclass(frozen=True, slots=True)
class _BlockWritten:
    header: Header
    receipts: list[Receipt]
    proofs: list[dict[str, Any]]
    snapshot: StateSnapshot


@dataclass(frozen=True, slots=True)
class _Written:
    block: _BlockWritten | None
    tx: TxWritten
    #: Per lookup: the commit's Result again, the outcome of a participant that did not commit, or None (unknown).
    lookups: list[Result | Finished | None]


class _Round:
    """One round being built on the reactor thread; nothing in it is visible to anyone until it is durable.

    ``locks`` and ``txs`` shadow the ledger's lock table and prepared participants for the rest of the round (None:
    released / ended in this round), so a later item of the round sees what an earlier one did.
    """

    __slots__ = ("_installed_locks", "answers", "block_work", "changes", "ending", "finished", "later", "locks",
                 "lookups", "new", "number", "outcomes", "overlay", "prepares", "rollbacks", "timestamp_ms",
                 "transactions", "txs")

    def __init__(self, number: int, timestamp_ms: int, world: WorldState, locks: dict[StateKey, Owner]) -> None:
        self.number = number
        #: The block's timestamp, fixed before its transactions run: HTLC operations compare time locks with it.
        self.timestamp_ms = timestamp_ms
        self.overlay = Overlay(world)
        self.block_work: list[_Work] = []
        self.transactions: list[Transaction] = []
        self.outcomes: list[Outcome] = []
        self.locks: dict[StateKey, Owner | None] = {}
        self.txs: dict[Owner, PreparedTx | None] = {}
        #: Participants first prepared in this round (the writer refuses them if they already ended: a late prepare).
        self.new: set[Owner] = set()
        #: Participants committed or rolled back in this round.
        self.ending: dict[Owner, str] = {}
        self.finished: list[tuple[str, str, str, int | None, int]] = []
        self.prepares: list[tuple[_Work, Owner, Result]] = []
        self.answers: list[tuple[_Work, Result]] = []
        self.lookups: list[_Work] = []
        self.rollbacks: list[_Work] = []
        #: Commits and rollbacks of a participant prepared further in this round: they go to the next round.
        self.later: list[_Work] = []
        self.changes: dict[StateKey, Any] = {}
        self._installed_locks = locks

    def owner_of(self, key: StateKey) -> Owner | None:
        if key in self.locks:
            return self.locks[key]
        return self._installed_locks.get(key)

    def include(self, work: _Work, transaction: Transaction, outcome: Outcome) -> None:
        self.block_work.append(work)
        self.transactions.append(transaction)
        self.outcomes.append(outcome)

    def works(self) -> list[_Work]:
        """Every item waiting for this round's write."""
        return [*self.block_work, *(w for w, _, _ in self.prepares), *(w for w, _ in self.answers), *self.lookups,
                *self.rollbacks]

    def empty(self) -> bool:
        return not (self.transactions or self.txs or self.finished or self.rollbacks or self.lookups)


def _unstorable(work: _Work, outcome: Outcome, changes: Mapping[StateKey, Any]) -> str | None:
    """Why one item's content could not be written to the chain, or None when it can.

    Encodes, with the chain's own canonical encoder, everything of the item that the writer thread encodes later
    (the transaction's free fields, the receipt's output and events, each changed state key and value): run on the
    reactor thread before the item joins its round, so a value no check caught fails this item alone instead of
    the block write of every other caller in the round.
    """
    try:
        encode([work.sender, work.method, work.args, outcome.output, [[e.name, e.data] for e in outcome.events]])
        for key, value in changes.items():
            encode_key(key)
            if value is not None:
                encode(value)
    except Exception as exc:  # EncodingError, msgpack's UnicodeEncodeError/TypeError/OverflowError
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def _proof_bundle(header_wire: dict[str, Any], tx_tree: MerkleTree, tx_leaf: bytes, receipt_tree: MerkleTree,
                  receipt_leaf: bytes, index: int) -> dict[str, Any]:
    """The ``proof`` of a write: both inclusion proofs (each with its leaf bytes) and the header they prove into."""
    tx_proof = tx_tree.proof_wire(index)
    tx_proof["leaf"] = tx_leaf.hex()
    receipt_proof = receipt_tree.proof_wire(index)
    receipt_proof["leaf"] = receipt_leaf.hex()
    header_copy = dict(header_wire)
    header_copy["extras"] = dict(header_wire["extras"])  # every Result gets its own, callers may annotate theirs
    return {"tx": tx_proof, "receipt": receipt_proof, "header": header_copy}


@dataclass(frozen=True, slots=True)
class _EventTx:
    """A transaction whose receipt has events, with the receipt's Merkle path, kept compact: a cached block may
    hold a thousand of these (the path is its sibling digests back to back and their sides as ``L``/``R``)."""

    resource: str
    tx_leaf: bytes
    receipt_leaf: bytes
    index: int
    siblings: bytes
    sides: str


@dataclass(frozen=True, slots=True)
class _EventBlock:
    """What serving a block's events needs: its header and its transactions with events. Blocks never change, so
    this is built once (one receipt tree per block, however many events) and kept in a small cache."""

    number: int
    header_wire: dict[str, Any]
    tx_count: int
    txs: tuple[_EventTx, ...]

    def events_of(self, resource: str) -> list[dict[str, Any]]:
        """The resource's events in this block, each with its own ``proof`` (see :meth:`Ledger.events`). Every
        call builds new dicts (the receipt is decoded again), so callers may edit theirs."""
        found: list[dict[str, Any]] = []
        header_wire = self.header_wire
        for tx in self.txs:
            if tx.resource != resource:
                continue
            receipt = Receipt.decode(tx.receipt_leaf)
            tx_hash, tx_hex, receipt_hex = receipt.tx_hash.hex(), tx.tx_leaf.hex(), tx.receipt_leaf.hex()
            siblings = tx.siblings
            for position, event in enumerate(receipt.events):
                header = dict(header_wire)
                header["extras"] = dict(header_wire["extras"])
                found.append({
                    "name": event.name, "args": event.data,
                    "block_number": self.number, "tx_hash": tx_hash, "resource": resource,
                    "proof": {
                        "header": header,
                        "tx": {"leaf": tx_hex},
                        "receipt": {"leaf": receipt_hex, "index": tx.index, "size": self.tx_count,
                                    "siblings": [[side, siblings[32 * i:32 * i + 32].hex()]
                                                 for i, side in enumerate(tx.sides)]},
                        "event_index": position,
                    },
                })
        return found


def _event_block(header: Header, transactions: list[bytes], receipts: list[bytes],
                 names: Mapping[str, str]) -> _EventBlock:
    """Writer thread: a stored block's events with their proofs; the receipt tree is built only if it has any.
    ``names`` interns resource names (one string per resource, not one per cached transaction)."""
    with_events = [i for i, raw in enumerate(receipts) if Receipt.decode(raw).events]
    txs: list[_EventTx] = []
    if with_events:
        tree = MerkleTree.from_leaves(receipts)
        for index in with_events:
            resource = Transaction.decode(transactions[index]).resource
            path = tree.proof(index).siblings
            txs.append(_EventTx(names.get(resource, resource), transactions[index], receipts[index], index,
                                b"".join(digest for _, digest in path), "".join(side for side, _ in path)))
    return _EventBlock(header.number, header.to_abstract().to_wire(), len(receipts), tuple(txs))


class Ledger:
    """One embedded chain. Not thread-safe by design: call it from the reactor thread only."""

    def __init__(
        self,
        chain_id: str,
        contracts: Mapping[str, Contract],
        data_dir: Path,
        *,
        reactor: Any = None,
        max_block_txs: int = 1000,
        max_pending: int = 10000,
        header_cache: int = 1024,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        #: Needs IReactorTime (timestamps) and IReactorFromThreads (writer thread results).
        self._reactor: Any = reactor
        self.chain_id = chain_id
        self.contracts = dict(contracts)
        self.path = data_dir / DB_FILE_NAME
        self.max_block_txs = max_block_txs
        self.max_pending = max_pending
        self._header_cache_size = max(2, header_cache)
        self._genesis_state = genesis_state(self.contracts)
        #: The genesis the config describes; the database must hold the same one.
        self.genesis = genesis_header(chain_id, state_root_of(self._genesis_state.items()))
        self._store = ChainStore(self.path)
        self._world = WorldState()
        self._head = self.genesis
        #: The head's state tree and header wire, replaced together with ``_world`` and ``_head``.
        self._snapshot = StateTree().snapshot()
        self._head_wire: dict[str, Any] = self.genesis.to_abstract().to_wire()
        self._headers: collections.OrderedDict[int, Header] = collections.OrderedDict()
        #: Recent blocks' events with their proofs (reactor thread only; blocks never change once written).
        self._event_blocks: collections.OrderedDict[int, _EventBlock] = collections.OrderedDict()
        self._resource_names = {name: name for name in self.contracts}
        self._tx_total = 0
        self._queue: collections.deque[_Work] = collections.deque()
        #: The lock table (state key -> the participant holding it) and the prepared participants.
        self._locks: dict[StateKey, Owner] = {}
        self._prepared: dict[Owner, PreparedTx] = {}
        self._writing = False
        self._idle_waiters: list[Deferred[None]] = []
        self._status = "new"
        self._pool: ThreadPool | None = None
        self._inline = False
        self._shutdown_trigger: Any = None
        self._start_waiters: list[Deferred[None]] = []
        self._stop_waiters: list[Deferred[None]] = []

    # -- life cycle --------------------------------------------------------------------------------------------
    def simulate(self, clock: Any) -> None:
        """Write on the calling thread and stamp blocks with ``clock``'s time, before :meth:`start`.

        For the simulator: hundreds of chains share one thread and a virtual clock there, and a run must repeat bit
        for bit, which a writer thread racing the reactor cannot promise. The database work is the same.
        """
        if self._status != "new":
            raise StubError("internal", f"chain {self.chain_id}: simulate() must come before start()")
        self._reactor = clock
        self._inline = True

    def start(self) -> Deferred[None]:
        """Open the database on the writer thread; fails with StoreError when the file cannot be used."""
        if self._status != "new":
            return defer.fail(StubError("internal", f"chain {self.chain_id} was already started"))
        self._status = "starting"
        if self._inline:
            return self._in_writer(self._store.open, self.genesis, self._genesis_state,
                                   self._header_cache_size).addCallbacks(self._opened, self._open_failed)
        pool = ThreadPool(minthreads=1, maxthreads=1, name=f"wecross-chain-{self.chain_id}")
        pool.start()
        self._pool = pool
        if IReactorCore.providedBy(self._reactor):
            self._shutdown_trigger = self._reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
        opened = self._in_writer(self._store.open, self.genesis, self._genesis_state, self._header_cache_size)
        return opened.addCallbacks(self._opened, self._open_failed)

    def _opened(self, loaded: LoadedChain) -> None:
        self._world = WorldState(loaded.state)
        self._set_head(loaded.head, loaded.snapshot)
        self._tx_total = loaded.tx_total
        for tx in loaded.prepared:
            self._prepared[tx.owner] = tx
            for key in tx.locks:
                self._locks[key] = tx.owner
        self._remember(loaded.genesis)
        for header in loaded.recent:
            self._remember(header)
        self._status = "running"
        log.info("chain {chain} {how} at block {height} ({head}) from {path}; {prepared} prepared transaction(s)",
                 chain=self.chain_id, how="created" if loaded.created else "loaded", height=self._head.number,
                 head=self._head.hash.hex()[:16], path=str(self.path), prepared=len(self._prepared))
        self._fire_start_waiters()

    def _open_failed(self, failure: Failure) -> Failure:
        self._status = "failed"
        self._release_pool()
        self._fire_start_waiters()
        return failure

    def _fire_start_waiters(self) -> None:
        waiters, self._start_waiters = self._start_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def stop(self) -> Deferred[None]:
        """Refuse new writes, let queued ones finish in blocks, then close the database and the writer thread.

        Always succeeds (a failure to close is logged): by then every caller has had its answer.
        """
        waiter: Deferred[None] = Deferred()
        if self._status == "stopped":
            waiter.callback(None)
            return waiter
        self._stop_waiters.append(waiter)
        if self._status == "starting":
            opening: Deferred[None] = Deferred()
            self._start_waiters.append(opening)
            opening.addCallback(lambda _: self._begin_stop())
        else:
            self._begin_stop()
        return waiter

    def _begin_stop(self) -> None:
        if self._status in ("stopping", "stopped"):
            return
        if self._status in ("new", "failed"):
            self._finish_stop(None)
            return
        self._status = "stopping"
        done = self._when_idle()
        done.addCallback(lambda _: self._in_writer(self._store.close))
        done.addBoth(self._finish_stop)

    def _finish_stop(self, result: object) -> None:
        if isinstance(result, Failure):
            log.failure("chain {chain}: error while closing {path}", result, chain=self.chain_id, path=str(self.path))
        self._status = "stopped"
        self._release_pool()
        waiters, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _release_pool(self) -> None:
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.stop()

    def _when_idle(self) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        if not self._writing and not self._queue:
            waiter.callback(None)
        else:
            self._idle_waiters.append(waiter)
        return waiter

    def _in_writer(self, fn: Callable[..., _T], *args: Any) -> Deferred[_T]:
        if self._inline:
            if self._status not in ("starting", "running", "stopping"):
                return defer.fail(StubError("unavailable", f"chain {self.chain_id} is not running"))
            return defer.maybeDeferred(fn, *args)
        if self._pool is None:
            return defer.fail(StubError("unavailable", f"chain {self.chain_id} is not running"))
        return deferToThreadPool(self._reactor, self._pool, fn, *args)

    # -- reading -----------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._status in ("running", "stopping")

    @property
    def head(self) -> Header:
        return self._head

    def chain_state(self) -> ChainState:
        return ChainState(CHAIN_TYPE, self._head.number, self._head.hash.hex(), self.genesis.hash.hex())

    def _check_running(self) -> None:
        if self._status not in ("running", "stopping"):
            code = "shutting_down" if self._status == "stopped" else "unavailable"
            raise StubError(code, f"chain {self.chain_id} is not running ({self._status})")

    def _contract(self, resource: str) -> Contract:
        contract = self.contracts.get(resource)
        if contract is None:
            raise StubError("unknown_resource", f"chain {self.chain_id} has no resource {resource!r}")
        return contract

    def read(self, resource: str, op: str, method: str, args: Any, sender: str) -> Any:
        """Answer call/getData from memory; raises StubError. This is the hot path: no I/O, no Deferred."""
        self._check_running()
        contract = self._contract(resource)
        if not self._locks:
            return contract.answer(ResourceView(self._world, resource), op, method, args, sender)
        recorder = RecordingState(self._world)
        output = contract.answer(ResourceView(recorder, resource), op, method, args, sender)
        self._check_unlocked(recorder.touched)
        return output

    def _check_unlocked(self, keys: Iterable[StateKey]) -> None:
        """A read outside any transaction may not see a key a prepared transaction holds: StubError("locked")."""
        locks = self._locks
        for key in keys:
            owner = locks.get(key)
            if owner is not None:
                raise locked_error(key, owner)

    def read_proven(self, resource: str, op: str, method: str, args: Any, sender: str) -> Result:
        """Answer call/getData at the head block with a state proof of every key the read touched; StubError.

        The Result names ``block_number``; its ``proof`` is ``{"header", "read", "state"}``: the head's header
        (wire form), the read as answered (``resource``, ``op``, ``method``, ``args``; getData's method is
        ``"getData"``) and one proof entry (:class:`~wecross.embedded.state.StateSnapshot`) per state key read,
        the resource's kind key first. Synchronous, so values, tree and header cannot change underneath it.
        """
        self._check_running()
        contract = self._contract(resource)
        recorder = RecordingState(self._world)
        output = contract.answer(ResourceView(recorder, resource), op, method, args, sender)
        if self._locks:
            self._check_unlocked(recorder.touched)
        touched = [(resource, NS_META, KIND_KEY), *recorder.touched]
        snapshot = self._snapshot
        try:
            state = [snapshot.prove(encode_key(key), self._encoded_value) for key in dict.fromkeys(touched)]
        except StateProofError as exc:
            log.error("chain {chain}: cannot prove a read: {why}", chain=self.chain_id, why=exc.message)
            raise StubError("internal", f"chain {self.chain_id}: cannot prove the read") from None
        header = dict(self._head_wire)
        header["extras"] = dict(self._head_wire["extras"])  # every Result gets its own, callers may annotate theirs
        read = {"resource": resource, "op": op, "method": OP_GET_DATA if op == OP_GET_DATA else method,
                "args": canonical(list(args))}
        return Result(output=output, block_number=self._head.number,
                      proof={"header": header, "read": read, "state": state})

    def _encoded_value(self, key_bytes: bytes) -> bytes | None:
        value = self._world.get(decode_key(key_bytes))
        return None if value is None else encode(value)

    def _set_head(self, header: Header, snapshot: StateSnapshot) -> None:
        self._head = header
        self._snapshot = snapshot
        self._head_wire = header.to_abstract().to_wire()

    def _remember(self, header: Header) -> None:
        self._headers[header.number] = header
        self._headers.move_to_end(header.number)
        while len(self._headers) > self._header_cache_size:
            self._headers.popitem(last=False)

    def header(self, number: int) -> Deferred[Header]:
        """A header from the cache, else from the database on the writer thread."""
        try:
            self._check_running()
        except StubError as exc:
            return defer.fail(exc)
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= self._head.number:
            return defer.fail(StubError("no_such_block", f"chain {self.chain_id} has no block {number!r}; "
                                                         f"height is {self._head.number}"))
        cached = self._headers.get(number)
        if cached is not None:
            return defer.succeed(cached)
        return self._in_writer(self._stored_header, number)

    def _stored_header(self, number: int) -> Header:
        header = self._store.header(number)
        if header is None:
            raise StubError("no_such_block", f"chain {self.chain_id} has no block {number}")
        return header

    def block(self, number: int) -> Deferred[dict[str, Any]]:
        """A whole block (header, transactions, receipts) as wire values, for explorers and audits."""
        return self.header(number).addCallback(lambda _: self._in_writer(self._stored_block, number))

    def _stored_block(self, number: int) -> dict[str, Any]:
        found = self._store.block(number)
        if found is None:
            raise StubError("no_such_block", f"chain {self.chain_id} has no block {number}")
        header, transactions, receipts = found
        return {
            "header": header.to_abstract().to_wire(),
            "transactions": [Transaction.decode(raw).to_wire() | {"hash": sha256(raw).hex()} for raw in transactions],
            "receipts": [Receipt.decode(raw).to_wire() for raw in receipts],
            "raw_transactions": [raw.hex() for raw in transactions],
            "raw_receipts": [raw.hex() for raw in receipts],
        }

    def events(self, resource: str, first: int, last: int) -> Deferred[list[dict[str, Any]]]:
        """Events that transactions of ``resource`` emitted in blocks ``first``..``last`` (inclusive), oldest first.

        Each is ``{"name", "args", "block_number", "tx_hash", "resource", "proof"}``; ``proof`` is
        ``{"header", "tx": {"leaf"}, "receipt": {"leaf", "index", "size", "siblings"}, "event_index"}``: the block's
        header (wire form), the transaction's encoding (it hashes to the receipt's ``tx_hash`` and names the
        resource), the receipt's encoding with its Merkle path under the header's ``receipt_root``, and the event's
        position in the receipt. :func:`~wecross.embedded.verify.check_event_proof` checks it. Blocks not in the
        cache are read (and their receipt trees built, once) on the writer thread.
        """
        try:
            self._check_running()
        except StubError as exc:
            return defer.fail(exc)
        if isinstance(first, bool) or not isinstance(first, int) or not isinstance(last, int) or first < 0:
            return defer.fail(StubError("bad_args", f"not a block range: {first!r}..{last!r}"))
        first = max(first, 1)  # the genesis block has no transactions
        last = min(last, self._head.number)
        if last < first:
            return defer.succeed([])
        if last - first >= MAX_EVENT_RANGE:
            return defer.fail(StubError("bad_args", f"at most {MAX_EVENT_RANGE} blocks of events at a time"))
        have: dict[int, _EventBlock] = {}
        missing: list[int] = []
        for number in range(first, last + 1):
            block = self._event_blocks.get(number)
            if block is None:
                missing.append(number)
            else:
                have[number] = block
        if not missing:
            return defer.succeed(self._collect_events(resource, have))
        return self._in_writer(self._stored_event_blocks, missing).addCallback(
            lambda read: self._collect_events(resource, have | read))

    def _collect_events(self, resource: str, blocks: Mapping[int, _EventBlock]) -> list[dict[str, Any]]:
        """The resource's events of ``blocks`` in block order; (re)installs them in the cache."""
        cache = self._event_blocks
        events: list[dict[str, Any]] = []
        for number in sorted(blocks):
            block = blocks[number]
            cache[number] = block
            cache.move_to_end(number)
            events.extend(block.events_of(resource))
        held = sum(len(block.txs) for block in cache.values())
        while cache and (len(cache) > EVENT_CACHE_BLOCKS or held > EVENT_CACHE_TXS):
            held -= len(cache.popitem(last=False)[1].txs)
        return events

    def _stored_event_blocks(self, numbers: list[int]) -> dict[int, _EventBlock]:
        """Writer thread: the events of stored blocks with their proofs."""
        blocks: dict[int, _EventBlock] = {}
        for number in numbers:
            found = self._store.block(number)
            if found is None:
                raise StubError("no_such_block", f"chain {self.chain_id} has no block {number}")
            blocks[number] = _event_block(*found, self._resource_names)
        return blocks

    def receipt(self, tx_hash: str) -> Deferred[Result | None]:
        """The Result (receipt and proofs) of an included transaction, or None: lets a retried write be answered."""
        try:
            self._check_running()
            raw_hash = bytes.fromhex(tx_hash)
        except (StubError, ValueError, TypeError) as exc:
            error = exc if isinstance(exc, StubError) else StubError("bad_args", f"not a transaction hash: {tx_hash!r}")
            return defer.fail(error)
        return self._in_writer(self._stored_receipt, raw_hash)

    def _stored_receipt(self, tx_hash: bytes) -> Result | None:
        where = self._store.transaction(tx_hash)
        if where is None:
            return None
        number, index = where
        found = self._store.block(number)
        assert found is not None
        header, transactions, receipts = found
        tx_tree = MerkleTree.from_leaves(transactions)
        receipt_tree = MerkleTree.from_leaves(receipts)
        receipt = Receipt.decode(receipts[index])
        return Result(
            output=receipt.output,
            tx_hash=tx_hash.hex(),
            block_number=number,
            receipt=receipt.to_wire(),
            proof=_proof_bundle(header.to_abstract().to_wire(), tx_tree, transactions[index], receipt_tree,
                                receipts[index], index),
        )

    # -- writing -----------------------------------------------------------------------------------------------
    def _admit(self, sender: Any = "") -> None:
        """Refuse new work when the chain is not running or the queue is full; StubError."""
        if self._status == "stopping":
            raise StubError("shutting_down", f"chain {self.chain_id} is shutting down")
        self._check_running()
        if not isinstance(sender, str):
            raise StubError("bad_args", "the sender must be a string")
        try:
            check_text(sender)
        except ValueError as exc:
            raise StubError("bad_args", f"the sender {exc}") from None
        if len(self._queue) >= self.max_pending:
            raise StubError("overloaded", f"chain {self.chain_id} has {len(self._queue)} transactions "
                                          "waiting for a block; try again later")

    @staticmethod
    def _check_tx_id(tx_id: Any) -> None:
        """check_tx_id, and text SQLite can store: the id is written with the round's 2PC records."""
        check_tx_id(tx_id)
        try:
            check_text(tx_id)
        except ValueError as exc:
            raise StubError("bad_args", f"the transaction id {exc}") from None

    def _enqueue(self, work: _Work) -> Deferred[Result]:
        self._queue.append(work)
        self._next_round()
        return work.deferred

    def submit(self, resource: str, op: str, method: str, args: Any, sender: str) -> Deferred[Result]:
        """Queue a sendTransaction/setData; fires with its Result once its block is durable."""
        try:
            self._admit(sender)
            contract = self._contract(resource)
            if op == OP_SEND_TRANSACTION:
                normal = contract.check(op, method, args)
            elif op == OP_SET_DATA:
                if not isinstance(args, (list, tuple)) or len(args) != 2:
                    raise StubError("bad_args", "setData takes a key and a value")
                normal = contract.check_set_data(args[0], args[1])
                method = OP_SET_DATA
            else:
                raise StubError("bad_request", f"{op} is not a write operation")
        except StubError as exc:
            return defer.fail(exc)
        return self._enqueue(_Work(_WRITE, resource, op, method, normal, sender, self._now_ms(), Deferred()))

    def htlc(self, resource: str, method: str, args: Any, sender: str) -> Deferred[Result]:
        """Queue an HTLC operation (``lock``, ``unlock``, ``timeout``; see AssetContract.htlc): a chain transaction
        of op ``htlc`` in the next block, whose timestamp is the time the time lock is compared with."""
        try:
            self._admit(sender)
            normal = self._contract(resource).check_htlc(method, args)
        except StubError as exc:
            return defer.fail(exc)
        return self._enqueue(_Work(_HTLC, resource, OP_HTLC, method, normal, sender, self._now_ms(), Deferred()))

    def prepare(self, tx_id: str, resource: str, method: str, args: Any, sender: str) -> Deferred[Result]:
        """Run one step of ``tx_id`` tentatively on ``resource`` and lock what it touches; fires with the step's
        output once the step, the participant's changes and its locks are on disk."""
        try:
            self._admit(sender)
            self._check_tx_id(tx_id)
            normal = self._contract(resource).check(OP_SEND_TRANSACTION, method, args)
        except StubError as exc:
            return defer.fail(exc)
        return self._enqueue(_Work(_PREPARE, resource, OP_SEND_TRANSACTION, method, normal, sender, self._now_ms(),
                                   Deferred(), tx_id))

    def commit(self, tx_id: str, resource: str) -> Deferred[Result]:
        """Make ``tx_id``'s steps on ``resource`` permanent as one chain transaction and release its locks; the
        same Result again for a participant already committed; StubError("unknown_tx") for one never prepared."""
        return self._end(_COMMIT, tx_id, resource)

    def rollback(self, tx_id: str, resource: str) -> Deferred[Result]:
        """Drop ``tx_id``'s tentative changes on ``resource`` and release its locks (durably recorded, so a
        prepare arriving later is refused); idempotent; StubError("already_committed") after a commit."""
        return self._end(_ROLLBACK, tx_id, resource)

    def _end(self, kind: str, tx_id: str, resource: str) -> Deferred[Result]:
        try:
            self._admit()
            self._check_tx_id(tx_id)
            self._contract(resource)
        except StubError as exc:
            return defer.fail(exc)
        return self._enqueue(_Work(kind, resource, kind, kind, [], "", self._now_ms(), Deferred(), tx_id))

    def prepared_transactions(self) -> list[dict[str, Any]]:
        """Every prepared participant (durable, not yet committed or rolled back), oldest first: ``{"tx_id",
        "resource", "steps": [{"method", "args", "sender", "output"}], "locks": ["balance:alice", ...],
        "since": unix seconds}``."""
        return [tx.to_wire() for tx in sorted(self._prepared.values(), key=lambda tx: tx.since_ms)]

    def lock_owner(self, key: StateKey) -> str | None:
        """The transaction holding a state key, or None."""
        owner = self._locks.get(key)
        return None if owner is None else owner[0]

    def _now_ms(self) -> int:
        return max(0, int(self._reactor.seconds() * 1000))

    def _next_round(self) -> None:
        """Start a round from the queue unless one is being written."""
        while not self._writing and self._queue:
            batch = [self._queue.popleft() for _ in range(min(self.max_block_txs, len(self._queue)))]
            rnd = _Round(self._head.number + 1, max(self._head.timestamp_ms, self._now_ms()), self._world,
                         self._locks)
            # Callers failed while the round runs may queue more work at once: it must wait for the next round.
            self._writing = True
            for work in batch:
                self._run(rnd, work)
            if rnd.empty():
                self._writing = False
                continue  # everything failed at once (and nothing waits for a later round: that needs a prepare)
            try:
                job = self._job(rnd)
            except Exception:
                written = defer.fail()
            else:
                written = self._in_writer(self._write_round, job)
            written.addCallbacks(self._round_written, self._round_failed, callbackArgs=(rnd,), errbackArgs=(rnd,))
            written.addErrback(self._bug, rnd.number)
        if not self._writing and not self._queue:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _run(self, rnd: _Round, work: _Work) -> None:
        try:
            if work.kind == _PREPARE:
                self._run_prepare(rnd, work)
            elif work.kind == _COMMIT:
                self._run_commit(rnd, work)
            elif work.kind == _ROLLBACK:
                self._run_rollback(rnd, work)
            else:
                self._run_write(rnd, work)
        except Exception:  # a bug here must not stop the chain: the item fails, the round goes on
            log.failure("chain {chain}: {kind} on {resource} crashed", chain=self.chain_id, kind=work.kind,
                        resource=work.resource)
            if not work.deferred.called:
                work.deferred.errback(StubError("internal", f"internal error in {work.kind} on {work.resource}"))

    def _apply(self, work: _Work, state: Overlay, now_ms: int) -> Outcome | None:
        """Run a write, an HTLC operation or a prepared step in ``state``; on failure fail its caller, None."""
        contract = self.contracts[work.resource]
        view = ResourceView(state, work.resource)
        try:
            if work.kind == _HTLC:
                return contract.htlc(view, work.method, work.args, work.sender, now_ms)
            if work.op == OP_SET_DATA:
                return contract.set_data(view, work.args[0], work.args[1], work.sender)
            return contract.write(view, work.method, work.args, work.sender)
        except StubError as exc:
            work.deferred.errback(exc)
        except Exception:
            log.failure("transaction on {chain}.{resource} crashed", chain=self.chain_id, resource=work.resource)
            work.deferred.errback(StubError("internal", f"internal error in {work.resource}.{work.method}"))
        return None

    def _refused_content(self, work: _Work, outcome: Outcome, changes: Mapping[StateKey, Any]) -> bool:
        """Fail ``work`` alone (``bad_args``) when its content could not be stored; True if it was failed."""
        problem = _unstorable(work, outcome, changes)
        if problem is None:
            return False
        log.warn("chain {chain}: {resource}.{method} refused: its content cannot be stored ({problem})",
                 chain=self.chain_id, resource=work.resource, method=untrusted(work.method, 64),
                 problem=untrusted(problem))
        work.deferred.errback(StubError("bad_args", f"{work.resource}.{work.method}: the transaction's content "
                                                    f"cannot be stored on chain {self.chain_id} ({problem})"))
        return True

    def _run_write(self, rnd: _Round, work: _Work) -> None:
        """A write or HTLC operation outside any transaction: in the block unless it fails or meets a lock."""
        state = GuardedOverlay(rnd.overlay, rnd.owner_of, None)
        outcome = self._apply(work, state, rnd.timestamp_ms)
        if outcome is None or self._refused_content(work, outcome, state.changes()):
            return
        state.merge_into_parent()
        rnd.include(work, Transaction(self.chain_id, self._tx_total + len(rnd.transactions), work.timestamp_ms,
                                      work.sender, work.resource, work.op, work.method, work.args), outcome)

    def _run_prepare(self, rnd: _Round, work: _Work) -> None:
        owner = work.owner
        ended = rnd.ending.get(owner)
        if ended is not None:
            work.deferred.errback(self._ended_error(owner, ended))
            return
        tx = rnd.txs.get(owner)
        fresh = tx is None
        if tx is None:
            installed = self._prepared.get(owner)
            tx = installed.copy() if installed is not None else PreparedTx(work.tx_id, work.resource,
                                                                           work.timestamp_ms)
        state = GuardedOverlay(TxLayer(tx.changes, rnd.overlay), rnd.owner_of, owner)
        outcome = self._apply(work, state, rnd.timestamp_ms)
        if outcome is None or self._refused_content(work, outcome, state.changes()):
            return  # the participant's earlier steps stay prepared; the coordinator decides
        tx.steps.append(Step(work.method, work.args, work.sender, outcome.output, outcome.events))
        tx.changes.update(state.changes())
        for key in state.touched:
            tx.locks[key] = None
            rnd.locks[key] = owner
        if fresh:
            rnd.txs[owner] = tx
            if owner not in self._prepared:
                rnd.new.add(owner)
        rnd.prepares.append((work, owner, Result(output=outcome.output)))

    def _run_commit(self, rnd: _Round, work: _Work) -> None:
        owner = work.owner
        if owner in rnd.txs and owner not in rnd.ending:
            rnd.later.append(work)  # prepared further in this round, not even answered yet: commit after it
            return
        tx = None if owner in rnd.ending else self._prepared.get(owner)
        if tx is None:
            rnd.lookups.append(work)  # already ended (or unknown): the outcome on disk answers
            return
        for key, value in tx.changes.items():
            rnd.overlay.put(key, value)
        for key in tx.locks:
            rnd.locks[key] = None
        rnd.txs[owner] = None
        rnd.ending[owner] = COMMITTED
        rnd.finished.append((tx.tx_id, tx.resource, COMMITTED, len(rnd.transactions), rnd.timestamp_ms))
        transaction = Transaction(
            self.chain_id, self._tx_total + len(rnd.transactions), work.timestamp_ms, "", tx.resource, OP_COMMIT,
            OP_COMMIT, [tx.tx_id, [[step.method, step.args, step.sender] for step in tx.steps]])
        outcome = Outcome({"committed": tx.tx_id, "outputs": [step.output for step in tx.steps]},
                          tuple(event for step in tx.steps for event in step.events))
        rnd.include(work, transaction, outcome)

    def _run_rollback(self, rnd: _Round, work: _Work) -> None:
        owner = work.owner
        if owner in rnd.txs and owner not in rnd.ending:
            rnd.later.append(work)
            return
        tx = None if owner in rnd.ending else self._prepared.get(owner)
        if tx is None:
            rnd.rollbacks.append(work)  # the writer finds the outcome, or records this rollback (known: False)
            rnd.ending.setdefault(owner, ROLLED_BACK)
            return
        for key in tx.locks:
            rnd.locks[key] = None
        rnd.txs[owner] = None
        rnd.ending[owner] = ROLLED_BACK
        rnd.finished.append((tx.tx_id, tx.resource, ROLLED_BACK, None, rnd.timestamp_ms))
        rnd.answers.append((work, Result(output={"rolled_back": tx.tx_id, "known": True})))

    @staticmethod
    def _ended_error(owner: Owner, state: str) -> StubError:
        if state == COMMITTED:
            return StubError("already_committed", f"transaction {owner[0]} is already committed on {owner[1]}")
        return StubError("rolled_back", f"transaction {owner[0]} was rolled back on {owner[1]}")

    def _job(self, rnd: _Round) -> _Job:
        block = None
        if rnd.transactions:
            rnd.changes = rnd.overlay.changes()
            block = _BlockJob(rnd.number, self._head.hash, rnd.timestamp_ms, rnd.transactions, rnd.outcomes,
                              encode_changes(rnd.changes))
        upserts = [(tx.tx_id, tx.resource, tx.since_ms, tx.record(), owner in rnd.new)
                   for owner, tx in rnd.txs.items() if tx is not None]
        return _Job(block, upserts, rnd.finished, [(w.tx_id, w.resource, rnd.timestamp_ms) for w in rnd.rollbacks],
                    [w.owner for w in rnd.lookups])

    def _write_round(self, job: _Job) -> _Written:
        """Writer thread: encode, hash, build the trees, write the block and the 2PC records in one SQLite
        transaction and fsync; then answer the lookups. The state tree is reverted on failure."""
        built, record, tx_hashes = None, None, []
        if job.block is not None:
            built, record = self._build_block(job.block)
            tx_hashes = record.tx_hashes
        records = TxRecords(job.upserts, [(tx_id, resource, state, None if index is None else tx_hashes[index], ms)
                                          for tx_id, resource, state, index, ms in job.finished], job.rollbacks)
        try:
            tx_written = self._store.append(record, records) if records else self._store.append(record)
        except BaseException:
            if record is not None:
                self._store.state_tree.revert()
            raise
        block = None
        if built is not None:
            self._store.state_tree.commit()
            block = _BlockWritten(*built, self._store.state_tree.snapshot())
        return _Written(block, tx_written, [self._stored_outcome(*owner) for owner in job.lookups])

    def _build_block(self, job: _BlockJob) -> tuple[tuple[Header, list[Receipt], list[dict[str, Any]]], BlockRecord]:
        """Writer thread: receipts, trees, header and proofs of a block; moves the state tree to its state."""
        tx_leaves = [tx.encode() for tx in job.transactions]
        tx_hashes = [sha256(leaf) for leaf in tx_leaves]
        receipts = [
            Receipt(tx_hash, STATUS_OK, outcome.output, tuple(Event(e.name, e.data) for e in outcome.events),
                    job.number, index)
            for index, (tx_hash, outcome) in enumerate(zip(tx_hashes, job.outcomes, strict=True))
        ]
        receipt_leaves = [receipt.encode() for receipt in receipts]
        tx_tree = MerkleTree.from_leaves(tx_leaves)
        receipt_tree = MerkleTree.from_leaves(receipt_leaves)
        state_root = self._store.state_tree.apply(job.changes)
        header = Header(self.chain_id, job.number, job.prev_hash, job.timestamp_ms, tx_tree.root,
                        receipt_tree.root, state_root, len(tx_leaves))
        header_wire = header.to_abstract().to_wire()
        proofs = [_proof_bundle(header_wire, tx_tree, tx_leaves[i], receipt_tree, receipt_leaves[i], i)
                  for i in range(len(tx_leaves))]
        return (header, receipts, proofs), BlockRecord(header, tx_hashes, tx_leaves, receipt_leaves, job.changes)

    def _stored_outcome(self, tx_id: str, resource: str) -> Result | Finished | None:
        """Writer thread: a committed participant's commit Result again, another outcome, or None."""
        found = self._store.finished(tx_id, resource)
        if found is not None and found.state == COMMITTED and found.tx_hash is not None:
            return self._stored_receipt(found.tx_hash) or found
        return found

    def _round_written(self, written: _Written, rnd: _Round) -> None:
        if written.block is not None:
            self._world.apply(rnd.changes)
            self._set_head(written.block.header, written.block.snapshot)
            self._tx_total += len(rnd.transactions)
            self._remember(written.block.header)
        refused = written.tx.refused
        for owner, tx in rnd.txs.items():
            if tx is None:
                self._prepared.pop(owner, None)
            elif owner not in refused:
                self._prepared[owner] = tx
        for key, holder in rnd.locks.items():
            if holder is None or holder in refused:
                self._locks.pop(key, None)
            else:
                self._locks[key] = holder
        self._writing = False
        if written.block is not None:
            header = written.block.header
            for work, receipt, proof in zip(rnd.block_work, written.block.receipts, written.block.proofs, strict=True):
                work.deferred.callback(Result(output=receipt.output, tx_hash=receipt.tx_hash.hex(),
                                              block_number=header.number, receipt=receipt.to_wire(), proof=proof))
        for work, owner, result in rnd.prepares:
            if owner in refused:
                work.deferred.errback(self._ended_error(owner, refused[owner].state))
            else:
                work.deferred.callback(result)
        for work, result in rnd.answers:
            work.deferred.callback(result)
        for work, found in zip(rnd.lookups, written.lookups, strict=True):
            if isinstance(found, Result):
                work.deferred.callback(found)
            elif found is None:
                work.deferred.errback(StubError("unknown_tx", f"transaction {work.tx_id} is not prepared on "
                                                              f"{work.resource} of chain {self.chain_id}"))
            else:
                work.deferred.errback(self._ended_error(work.owner, found.state))
        for work, outcome in zip(rnd.rollbacks, written.tx.rollbacks, strict=True):
            if outcome is not None and outcome.state == COMMITTED:
                work.deferred.errback(self._ended_error(work.owner, COMMITTED))
            else:
                known = outcome is not None and outcome.known
                work.deferred.callback(Result(output={"rolled_back": work.tx_id, "known": known}))
        self._queue.extendleft(reversed(rnd.later))
        self._next_round()

    def _bug(self, failure: Failure, number: int) -> None:
        log.failure("chain {chain}: error after writing round {number}", failure, chain=self.chain_id, number=number)

    def _round_failed(self, failure: Failure, rnd: _Round) -> None:
        log.failure("chain {chain}: block {number} could not be written to {path}", failure, chain=self.chain_id,
                    number=rnd.number, path=str(self.path))
        self._writing = False
        what = f"block {rnd.number}" if rnd.transactions else "the transaction records"
        error = StubError("storage_error", f"chain {self.chain_id}: {what} could not be written to "
                                           f"{self.path}: {failure.getErrorMessage()}")
        for work in rnd.works():
            work.deferred.errback(error)
        self._queue.extendleft(reversed(rnd.later))
        self._next_round()
