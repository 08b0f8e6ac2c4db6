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
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
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
from wecross.embedded.resources import KIND_KEY, NS_META, Contract, Outcome, genesis_state
from wecross.embedded.state import (
    Overlay,
    RecordingState,
    ResourceView,
    StateProofError,
    StateSnapshot,
    StateTree,
    WorldState,
    decode_key,
    encode_changes,
    encode_key,
    state_root_of,
)
from wecross.embedded.store import BlockRecord, ChainStore, LoadedChain
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


@dataclass(slots=True)
class _Pending:
    """A write waiting for its block."""

    resource: str
    op: str
    method: str
    args: list[Any]
    sender: str
    timestamp_ms: int
    deferred: Deferred[Result]


@dataclass(frozen=True, slots=True)
class _Job:
    """A block handed to the writer thread: everything decided, only encoding, hashing and writing left."""

    number: int
    prev_hash: bytes
    timestamp_ms: int
    transactions: list[Transaction]
    outcomes: list[Outcome]
    changes: Mapping[bytes, bytes | None]


@dataclass(frozen=True, slots=True)
class _Written:
    header: Header
    receipts: list[Receipt]
    proofs: list[dict[str, Any]]
    snapshot: StateSnapshot


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
        self._tx_total = 0
        self._queue: collections.deque[_Pending] = collections.deque()
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
        self._remember(loaded.genesis)
        for header in loaded.recent:
            self._remember(header)
        self._status = "running"
        log.info("chain {chain} {how} at block {height} ({head}) from {path}", chain=self.chain_id,
                 how="created" if loaded.created else "loaded", height=self._head.number,
                 head=self._head.hash.hex()[:16], path=str(self.path))
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
        return contract.answer(ResourceView(self._world, resource), op, method, args, sender)

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
    def submit(self, resource: str, op: str, method: str, args: Any, sender: str) -> Deferred[Result]:
        """Queue a sendTransaction/setData; fires with its Result once its block is durable."""
        try:
            if self._status == "stopping":
                raise StubError("shutting_down", f"chain {self.chain_id} is shutting down")
            self._check_running()
            if not isinstance(sender, str):
                raise StubError("bad_args", "the sender must be a string")
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
            if len(self._queue) >= self.max_pending:
                raise StubError("overloaded", f"chain {self.chain_id} has {len(self._queue)} transactions "
                                              "waiting for a block; try again later")
        except StubError as exc:
            return defer.fail(exc)
        pending = _Pending(resource, op, method, normal, sender, self._now_ms(), Deferred())
        self._queue.append(pending)
        self._next_block()
        return pending.deferred

    def _now_ms(self) -> int:
        return max(0, int(self._reactor.seconds() * 1000))

    def _next_block(self) -> None:
        """Start writing a block from the queue unless one is in flight."""
        while not self._writing and self._queue:
            batch = [self._queue.popleft() for _ in range(min(self.max_block_txs, len(self._queue)))]
            number = self._head.number + 1
            block_overlay = Overlay(self._world)
            included: list[_Pending] = []
            transactions: list[Transaction] = []
            outcomes: list[Outcome] = []
            for pending in batch:
                outcome = self._execute(pending, block_overlay)
                if outcome is None:
                    continue
                transactions.append(Transaction(
                    self.chain_id, self._tx_total + len(included), pending.timestamp_ms, pending.sender,
                    pending.resource, pending.op, pending.method, pending.args,
                ))
                outcomes.append(outcome)
                included.append(pending)
            if not included:
                continue
            changes = block_overlay.changes()
            job = _Job(number, self._head.hash, max(self._head.timestamp_ms, self._now_ms()), transactions,
                       outcomes, encode_changes(changes))
            self._writing = True
            written = self._in_writer(self._write_block, job)
            written.addCallbacks(self._block_written, self._block_failed, callbackArgs=(included, changes),
                                 errbackArgs=(included, number))
            written.addErrback(self._bug, number)
        if not self._writing and not self._queue:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _execute(self, pending: _Pending, block_overlay: Overlay) -> Outcome | None:
        """Run one transaction in its own overlay; on failure fail its caller and leave the block untouched."""
        tx_overlay = Overlay(block_overlay)
        contract = self.contracts[pending.resource]
        view = ResourceView(tx_overlay, pending.resource)
        try:
            if pending.op == OP_SET_DATA:
                outcome = contract.set_data(view, pending.args[0], pending.args[1], pending.sender)
            else:
                outcome = contract.write(view, pending.method, pending.args, pending.sender)
        except StubError as exc:
            pending.deferred.errback(exc)
            return None
        except Exception:
            log.failure("transaction on {chain}.{resource} crashed", chain=self.chain_id, resource=pending.resource)
            pending.deferred.errback(StubError("internal", f"internal error in {pending.resource}.{pending.method}"))
            return None
        tx_overlay.merge_into_parent()
        return outcome

    def _write_block(self, job: _Job) -> _Written:
        """Writer thread: encode, hash, build the trees, write and fsync. The state tree is reverted on failure."""
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
        try:
            self._store.append(BlockRecord(header, tx_hashes, tx_leaves, receipt_leaves, job.changes))
        except BaseException:
            self._store.state_tree.revert()
            raise
        self._store.state_tree.commit()
        header_wire = header.to_abstract().to_wire()
        proofs = [_proof_bundle(header_wire, tx_tree, tx_leaves[i], receipt_tree, receipt_leaves[i], i)
                  for i in range(len(tx_leaves))]
        return _Written(header, receipts, proofs, self._store.state_tree.snapshot())

    def _block_written(self, written: _Written, included: list[_Pending], changes: Mapping[Any, Any]) -> None:
        self._world.apply(changes)
        self._set_head(written.header, written.snapshot)
        self._tx_total += len(included)
        self._remember(written.header)
        self._writing = False
        for pending, receipt, proof in zip(included, written.receipts, written.proofs, strict=True):
            pending.deferred.callback(Result(
                output=receipt.output,
                tx_hash=receipt.tx_hash.hex(),
                block_number=written.header.number,
                receipt=receipt.to_wire(),
                proof=proof,
            ))
        self._next_block()

    def _bug(self, failure: Failure, number: int) -> None:
        log.failure("chain {chain}: error after writing block {number}", failure, chain=self.chain_id, number=number)

    def _block_failed(self, failure: Failure, included: list[_Pending], number: int) -> None:
        log.failure("chain {chain}: block {number} could not be written to {path}", failure, chain=self.chain_id,
                    number=number, path=str(self.path))
        self._writing = False
        error = StubError("storage_error", f"chain {self.chain_id}: block {number} could not be written to "
                                           f"{self.path}: {failure.getErrorMessage()}")
        for pending in included:
            pending.deferred.errback(error)
        self._next_block()
