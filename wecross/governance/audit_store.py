"""The audit trail on disk: an append-only SQLite table of :class:`~wecross.governance.audit.AuditRecord`.

The shell around the sans-IO core (:mod:`wecross.governance.audit`), following the transaction log's pattern
(:mod:`wecross.tx.log`), and shaped by what a record may cost: the issue 13 goal is 50 ACL rules plus the trail
on both routers for under 10 % more CPU per forwarded request (``bench/governance.py``, docs/benchmarks.md
"Governance"), and every thread of the process counts. So:

- the reactor thread's share per record is :meth:`AuditStore.record`: clip the text fields and digest the
  arguments (both memoised: :class:`~wecross.governance.audit.PendingMaker`), append a tuple to the queue. No
  Deferred, no record object (:meth:`AuditStore.append` adds those, for callers that wait for the disk);
- the store's own thread takes everything queued since the last commit as one batch, assigns the sequence numbers
  and hashes the chain in one pass (:func:`~wecross.governance.audit.link_pending`: the same hashes as
  :class:`~wecross.governance.audit.AuditChain`, ``test_audit.BatchTest``), seals, and writes the batch in one
  transaction (WAL, ``synchronous = FULL`` by default) with a few multi-row INSERTs, each of which gives up the GIL
  once, rather than once per row. The queue's order is the order of the seqs, since batches are written one at a
  time and in order;
- a record that finds the trail idle is committed at the end of the reactor turn; records that queue up behind a
  commit wait until ``commit_interval`` (10 ms) after it started, so a burst costs one fsync, not one each
  (``test_audit.StoreTest.test_burst_is_group_committed``, ``test_busy_trail_commits_once_per_interval``). A
  record is durable within that interval plus one commit; the answer to its request never waits for it.

**Append-only, and what enforces it.** Triggers refuse every UPDATE and DELETE of the table, which stops any code
path of ours (or a careless operator) from editing it; someone who can write the file can drop them, which is what
the hash chain is for (:func:`verify_file`; ``test_audit.FileTamperTest``).

**No gaps.** A group commit that fails fails its records' Deferreds with ``storage_error`` (and is logged once,
with its size); the chain then continues from the last record actually on disk (read back on the store's thread,
so a commit that reported an error yet reached the disk counts as written): the records queued behind the failed
batch are not chained yet, and are chained onto that record when their batch is written. The file never holds a
record whose predecessor is missing (``test_audit.StoreTest.test_failed_batch_leaves_no_gap``).

**Bounded.** Each record is bounded (:data:`~wecross.governance.audit.LIMITS`), and at most ``max_pending``
records wait for the disk: past that, appends fail at once with ``overloaded`` (``record`` returns False, counts it
in ``refused`` and logs the first refusal of each episode) rather than the queue growing while the disk is stuck.
What waits is clipped and digested already (the arguments only as their sealing plaintext, itself bounded), so a
queued record holds no more than a written one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from wecross.errors import RouterError
from wecross.governance.audit import (
    AuditChain,
    AuditRecord,
    Head,
    Pending,
    PendingMaker,
    Sealer,
    SealError,
    VerifyReport,
    check_regulator_key,
    clip_path,
    link_pending,
    record_hash,
    verify_records,
)

log = Logger()

#: Seconds between the starts of two commits while records keep coming (an idle trail commits at once).
COMMIT_INTERVAL = 0.01

#: Most records one query returns.
MAX_QUERY_LIMIT = 1000

_COLUMNS = ("seq, time, initiator, org, entry_router, ipath, interface, method, args_digest, outcome, tx_hash, "
            "block, path, sealed, prev_hash, hash")

#: Rows per INSERT statement, largest first: a batch is written as a few multi-row INSERTs (powers of two, so
#: that a handful of statements serve every batch size and stay in the connection's statement cache) instead of one
#: statement per row. Each statement releases and retakes the GIL once; one per row made the store's thread trade
#: the GIL with the reactor thread for every record, which cost more CPU than writing the records
#: (docs/benchmarks.md, "Governance"). 256 rows x 16 columns stays under SQLite's 32,766 variables.
_CHUNKS = (256, 128, 64, 32, 16, 8, 4, 2, 1)
_INSERT = {size: f"INSERT INTO audit ({_COLUMNS}) VALUES " + ", ".join([f"({', '.join('?' * 16)})"] * size)
           for size in _CHUNKS}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    initiator TEXT NOT NULL,
    org TEXT,
    entry_router TEXT NOT NULL,
    ipath TEXT NOT NULL,
    interface TEXT NOT NULL,
    method TEXT NOT NULL,
    args_digest TEXT NOT NULL,
    outcome TEXT NOT NULL,
    tx_hash TEXT,
    block INTEGER,
    path TEXT NOT NULL,
    sealed BLOB,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_initiator ON audit (initiator);
CREATE INDEX IF NOT EXISTS audit_ipath ON audit (ipath);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
"""


class AuditStoreError(Exception):
    """The file cannot serve as this router's audit log (unreadable, another router's, not an audit log)."""


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters, all optional, combined with AND. ``ipath``: with a ``*``, an iPath pattern as in ACL rules
    (``payment.*``, ``*.*.asset``); without, the iPath itself or any iPath under it (``payment.bank-a``). Times
    are seconds, ``since`` inclusive and ``until`` exclusive. Records come in seq order, those after ``after_seq``
    (paging: pass the last seq of the previous page), at most ``limit`` (capped at :data:`MAX_QUERY_LIMIT`)."""

    initiator: str | None = None
    ipath: str | None = None
    interface: str | None = None
    outcome: str | None = None
    since: float | None = None
    until: float | None = None
    after_seq: int = 0
    limit: int = 100


def _pattern_matches(pattern: str, ipath: str) -> bool:
    """``*`` stands for one part; a trailing ``*`` for all remaining parts (as :class:`wecross.ipath.IPathPattern`,
    but total: a stored iPath was clipped, not validated)."""
    want, have = pattern.split("."), ipath.split(".")
    for i, part in enumerate(want):
        if part == "*" and i == len(want) - 1:
            return i < len(have)
        if i >= len(have) or (part != "*" and part != have[i]):
            return False
    return len(want) == len(have)


def _sql_pattern_match(pattern: Any, ipath: Any) -> int:
    return int(isinstance(pattern, str) and isinstance(ipath, str) and _pattern_matches(pattern, ipath))


def _where(query: AuditQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = ["seq > ?"]
    params: list[Any] = [max(0, int(query.after_seq))]
    for column in ("initiator", "interface", "outcome"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.ipath is not None:
        if "*" in query.ipath:
            clauses.append("audit_ipath_match(?, ipath)")
            params.append(query.ipath)
        else:  # the iPath itself, or a range scan of the index for everything under it ('/' follows '.')
            clauses.append("(ipath = ? OR (ipath >= ? AND ipath < ?))")
            params += [query.ipath, query.ipath + ".", query.ipath + "/"]
    if query.since is not None:
        clauses.append("time >= ?")
        params.append(float(query.since))
    if query.until is not None:
        clauses.append("time < ?")
        params.append(float(query.until))
    return " AND ".join(clauses), params


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    if read_only:
        if not path.is_file():
            raise AuditStoreError(f"{path}: no such file")
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
    else:
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.create_function("audit_ipath_match", 2, _sql_pattern_match, deterministic=True)
    return db


def _row_record(row: Sequence[Any]) -> AuditRecord:
    """A stored row as a record; ValueError when the row cannot be one (edited by hand into another type)."""
    path = json.loads(row[12])
    if not isinstance(path, list) or not all(isinstance(hop, str) for hop in path):
        raise ValueError("path is not a list of router ids")
    record = AuditRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10],
                         row[11], tuple(path), row[13], row[14], row[15])
    if not isinstance(record.seq, int) or not isinstance(record.hash, str):
        raise ValueError("seq or hash has the wrong type")
    return record


def _select(db: sqlite3.Connection, query: AuditQuery) -> list[AuditRecord]:
    where, params = _where(query)
    limit = max(0, min(int(query.limit), MAX_QUERY_LIMIT))
    rows = db.execute(f"SELECT {_COLUMNS} FROM audit WHERE {where} ORDER BY seq LIMIT ?", [*params, limit])
    return [_row_record(row) for row in rows]


def _read_head(db: sqlite3.Connection) -> Head | None:
    row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def _router_id(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT value FROM audit_meta WHERE key = 'router_id'").fetchone()
    return None if row is None else str(row[0])


class _BatchFailed(Exception):
    """A batch whose commit raised. ``head``: the last record on disk after it, if read back (``head_known``);
    ``written``: the batch's rows when that is the batch's own last record (it reached the disk after all)."""

    def __init__(self, message: str, head: Head | None, head_known: bool,
                 written: list[tuple[Any, ...]] | None) -> None:
        super().__init__(message)
        self.head = head
        self.head_known = head_known
        self.written = written


class AuditStore:
    """One router's audit log. ``open`` once at start (on the caller's thread), then ``record`` or ``append`` from
    the reactor thread; ``close`` waits for every queued record."""

    def __init__(self, path: Path, reactor: Any, router_id: str, *, sealer: Sealer | None = None,
                 synchronous: str = "FULL", max_pending: int = 100_000,
                 commit_interval: float = COMMIT_INTERVAL) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        if not 0 <= commit_interval <= 1:
            raise ValueError("commit_interval must be between 0 and 1 second")
        self.commit_interval = commit_interval
        self._last_commit = float("-inf")
        self.path = path
        self.reactor = reactor
        self.router_id = router_id
        self.sealer = sealer
        self.synchronous = synchronous
        self.max_pending = max_pending
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=f"audit-{path.name}")
        # Clipped and digested, not yet chained, in arrival order (the order of their seqs); the Deferreds of
        # append() by their index in the queue; the Deferreds of sync() waiting for the queue to be written.
        self._queue: list[Pending] = []
        self._waiters: list[tuple[int, Deferred[AuditRecord]]] = []
        self._syncs: list[Deferred[None]] = []
        self._flight_syncs: list[Deferred[None]] = []  # those of the batch being written
        self._in_flight, self._closing, self._refusing = 0, False, False
        self._next: Any = None  # the timer of the next commit (IDelayedCall), while one is set
        self._durable: Head = AuditChain(router_id).head()
        self._drained: list[Deferred[None]] = []
        self._paths: dict[Any, tuple[tuple[str, ...], str]] = {}
        self._maker = PendingMaker(seal=sealer is not None)
        self.flushes = self.records_written = self.failed_batches = self.refused = 0

    # -- life cycle ----------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Open (creating) the log and continue its chain from the last record, whose hash is checked first: a log
        whose last record does not hash right is refused (``wecross audit verify`` says more), since chaining
        onto it would hide the damage."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = _connect(self.path, read_only=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            db.executescript(_SCHEMA)
            owner = _router_id(db)
            if owner is None:
                db.execute("INSERT INTO audit_meta (key, value) VALUES ('router_id', ?)", (self.router_id,))
            elif owner != self.router_id:
                db.close()
                raise AuditStoreError(f"{self.path} is the audit log of router {owner!r}, not {self.router_id!r}")
            last = db.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            raise AuditStoreError(f"{self.path}: cannot open the audit log: {exc}") from None
        if last is not None:
            try:
                record = _row_record(last)
                intact = record_hash(record.seq, record, record.prev_hash) == record.hash
            except (ValueError, TypeError):
                intact = False
            if not intact:
                db.close()
                raise AuditStoreError(f"{self.path}: the last audit record (seq {last[0]}) is damaged; "
                                      f"run 'wecross audit verify {self.path}'")
            self._durable = (record.seq, record.hash)
        self._db = db
        self._pool.start()

    def close(self) -> Deferred[None]:
        """Refuse new appends, wait until every queued record is written (or failed), then close."""
        self._closing = True
        if self._next is not None and self._queue:
            self._flush()  # what waits is written now, not at the end of its interval
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        self._check_drained()

        def shut(_: object) -> None:
            if self._pool.started:
                self._pool.stop()
            if self._db is not None:
                self._db.close()
                self._db = None

        return d.addCallback(shut)

    def _check_drained(self) -> None:
        if not self._queue and not self._in_flight and self._next is None:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    # -- writing -------------------------------------------------------------------------------------------------

    def head(self) -> Head:
        """(seq, hash) of the last record known to be on disk: the value to publish (``/status``, gossip)."""
        return self._durable

    def record(self, *, initiator: str, org: str | None, entry_router: str, ipath: str, interface: str,
               method: str, args: Any, outcome: str, tx_hash: str | None = None, block: int | None = None,
               path: Sequence[str] = (), time: float | None = None) -> bool:
        """Queue one record, for a caller that does not wait for the disk (the router, per request): no Deferred,
        no record object. False when it was refused (log closed, or ``max_pending`` records already waiting:
        counted in ``refused`` and logged once per episode); a batch that cannot be written is logged by the store
        (:meth:`_batch_failed`)."""
        refusal = self._enqueue(initiator, org, entry_router, ipath, interface, method, args, outcome, tx_hash,
                                block, path, time)
        if refusal is None:
            return True
        self.refused += 1
        if not self._refusing:
            self._refusing = True
            log.warn("audit log {path}: records refused: {why}", path=str(self.path), why=refusal.message)
        return False

    def append(self, *, initiator: str, org: str | None, entry_router: str, ipath: str, interface: str,
               method: str, args: Any, outcome: str, tx_hash: str | None = None, block: int | None = None,
               path: Sequence[str] = (), time: float | None = None) -> Deferred[AuditRecord]:
        """Queue one record; the Deferred fires with it (chained) once it is durable, or fails with
        ``storage_error`` (not written: see the module's "No gaps") or ``overloaded`` (too many records waiting for
        the disk)."""
        refusal = self._enqueue(initiator, org, entry_router, ipath, interface, method, args, outcome, tx_hash,
                                block, path, time)
        if refusal is not None:
            return defer.fail(refusal)
        d: Deferred[AuditRecord] = Deferred()
        self._waiters.append((len(self._queue) - 1, d))
        return d

    def sync(self) -> Deferred[None]:
        """Fires once every record queued so far is written (or its batch failed)."""
        if not self._queue and not self._in_flight:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()
        # With nothing queued, the batch in flight is the last one to wait for.
        (self._syncs if self._queue else self._flight_syncs).append(d)
        return d

    def _enqueue(self, initiator: str, org: str | None, entry_router: str, ipath: str, interface: str, method: str,
                 args: Any, outcome: str, tx_hash: str | None, block: int | None, path: Sequence[str],
                 time: float | None) -> RouterError | None:
        """The reactor thread's whole share of a record: clip, digest the arguments (so that what waits for the
        disk is bounded and no longer refers to the caller's objects), queue a tuple. Chaining, sealing and
        encoding happen on the store's thread, a batch at a time (:func:`link_pending`)."""
        if self._db is None or self._closing:
            return RouterError("storage_error", "the audit log is not open")
        if len(self._queue) + self._in_flight >= self.max_pending:
            return RouterError("overloaded", "the audit log is behind: too many records wait for disk")
        try:
            clipped = self._paths[path if type(path) is tuple else tuple(path)][0]
        except (KeyError, TypeError):  # a new path, or one that cannot be a key (a list, odd items)
            clipped = self._path_of(path)
        self._queue.append(self._maker.make(
            self.reactor.seconds() if time is None else time, initiator, org, entry_router, ipath, interface,
            method, args, outcome, tx_hash, block, clipped))
        self._schedule()
        return None

    def _path_of(self, path: Sequence[str]) -> tuple[str, ...]:
        """The clipped path, memoised with its column text (paths repeat: a router has few neighbours), at most
        1,024 of them (the memo starts over when full). Keyed by the clipped path, so a path that needed clipping
        is clipped each time, and the memo holds nothing larger than a record."""
        clipped = clip_path(path)
        if len(self._paths) >= 1024:
            self._paths.clear()
        self._paths[clipped] = (clipped, json.dumps(list(clipped)))
        return clipped

    def _path_column(self, path: tuple[str, ...]) -> str:
        known = self._paths.get(path)  # on the store's thread: the memo's text, else the JSON made here
        return known[1] if known is not None else json.dumps(list(path))

    def _schedule(self, busy: bool = False) -> None:
        """The next commit: at the end of this reactor turn, or, for records that queued up behind a commit
        (``busy``), ``commit_interval`` after that commit started, so that a busy trail pays one commit per
        interval rather than one per fsync, while a caller that waits for each record pays no interval."""
        if not self._in_flight and self._next is None:
            delay = self._last_commit + self.commit_interval - self.reactor.seconds() if busy else 0
            delay = 0 if self._closing else delay
            self._next = self.reactor.callLater(delay if delay > 0 else 0, self._flush)

    def _flush(self) -> None:
        if self._next is not None and self._next.active():  # called before its time (close, a test)
            self._next.cancel()
        self._next = None
        if self._in_flight or not self._queue:
            self._check_drained()
            return
        batch, self._queue = self._queue, []
        waiters, self._waiters = self._waiters, []
        self._flight_syncs, self._syncs = self._syncs, []
        self._in_flight = len(batch)
        self._last_commit = self.reactor.seconds()
        d = deferToThreadPool(self.reactor, self._pool, self._write_batch, self._durable, batch)
        d.addBoth(self._written, batch, waiters)

    def _written(self, result: list[tuple[Any, ...]] | Failure, batch: list[Pending],
                 waiters: list[tuple[int, Deferred[AuditRecord]]]) -> None:
        self._in_flight = 0
        if isinstance(result, Failure):
            failed = result.value
            if isinstance(failed, _BatchFailed) and failed.written is not None:
                result, failed = failed.written, None  # the commit reported an error, yet the rows are on disk
        if isinstance(result, Failure):
            self._batch_failed(result.value or Exception("unknown"), batch, waiters)
        else:
            last = result[-1]
            self._durable = (last[0], last[15])
            self._refusing = False
            self.flushes += 1
            self.records_written += len(batch)
            for index, d in waiters:
                row, entry = result[index], batch[index]
                d.callback(AuditRecord(row[0], *entry[:12], row[13], row[14], row[15]))
        syncs, self._flight_syncs = self._flight_syncs, []
        for sync in syncs:
            sync.callback(None)
        if self._queue:
            self._schedule(busy=True)
        else:
            self._check_drained()

    def _batch_failed(self, failed: BaseException, batch: list[Pending],
                      waiters: list[tuple[int, Deferred[AuditRecord]]]) -> None:
        self.failed_batches += 1
        log.error("audit log {path}: {n} records not written: {error}", path=str(self.path), n=len(batch),
                  error=str(failed))
        if isinstance(failed, _BatchFailed) and failed.head_known:
            # What waits behind the failed batch is chained onto what is really on disk (chaining happens when
            # a batch is written, so nothing queued needs redoing).
            self._durable = failed.head if failed.head is not None else AuditChain(self.router_id).head()
        error = RouterError("storage_error", f"the audit log could not be written: {failed}")
        for _, d in waiters:
            d.errback(error)

    def _write_batch(self, head: Head, batch: list[Pending]) -> list[tuple[Any, ...]]:
        """On the store's thread: chain the batch onto ``head`` (:func:`link_pending`) and write it in one
        transaction. On failure, reads back the head, so the reactor side knows where the chain really ends."""
        db = self._db
        assert db is not None
        rows = link_pending(head, batch, self.sealer, self._path_column)
        try:
            self._insert(db, rows)
        except Exception as exc:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                on_disk, known = _read_head(db), True
            except sqlite3.Error:
                on_disk, known = None, False
            landed = known and on_disk == (rows[-1][0], rows[-1][15])
            raise _BatchFailed(f"{type(exc).__name__}: {exc}", on_disk, known, rows if landed else None) from exc
        return rows

    def _insert(self, db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        db.execute("BEGIN IMMEDIATE")
        done = 0
        while done < len(rows):
            size = next(size for size in _CHUNKS if size <= len(rows) - done)
            db.execute(_INSERT[size], list(chain.from_iterable(rows[done:done + size])))
            done += size
        db.execute("COMMIT")

    # -- reading -------------------------------------------------------------------------------------------------

    def query(self, query: AuditQuery) -> Deferred[list[AuditRecord]]:
        """Records matching ``query``, read on the store's thread (after the writes queued before it)."""
        if self._db is None:
            return defer.fail(RouterError("storage_error", "the audit log is not open"))
        db = self._db
        return deferToThreadPool(self.reactor, self._pool, _select, db, query)


def regulator_sealer(path: Path) -> Sealer:
    """The :class:`Sealer` for ``[audit] regulator_cert``: a PEM file holding the regulator's certificate (the first
    one counts) or its bare public key. :class:`AuditStoreError` names the file and the problem (missing, not PEM,
    a key that cannot be sealed to: ``check_regulator_key``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditStoreError(f"{path}: cannot read the regulator certificate ({exc.strerror})") from None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: Any = x509.load_pem_x509_certificates(data)[0].public_key()
        elif b"-----BEGIN PUBLIC KEY-----" in data:
            key = serialization.load_pem_public_key(data)
        else:
            what = "a private key: give the regulator's certificate" if b"PRIVATE KEY-----" in data else "not PEM"
            raise AuditStoreError(f"{path}: no certificate or public key found ({what})")
        return Sealer(check_regulator_key(key))
    except (ValueError, SealError) as exc:
        raise AuditStoreError(f"{path}: {exc}") from None


def query_file(path: Path, query: AuditQuery) -> list[AuditRecord]:
    """:meth:`AuditStore.query` on a file, read-only, without a reactor (the CLI)."""
    db = _open_read_only(path)
    try:
        return _select(db, query)
    except (sqlite3.Error, ValueError, TypeError) as exc:
        raise AuditStoreError(f"{path}: cannot read the audit log: {exc}") from None
    finally:
        db.close()


def read_record(path: Path, seq: int) -> AuditRecord | None:
    db = _open_read_only(path)
    try:
        row = db.execute(f"SELECT {_COLUMNS} FROM audit WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else _row_record(row)
    except (sqlite3.Error, ValueError, TypeError) as exc:
        raise AuditStoreError(f"{path}: cannot read record {seq}: {exc}") from None
    finally:
        db.close()


def _open_read_only(path: Path) -> sqlite3.Connection:
    try:
        db = _connect(path, read_only=True)
        db.execute("SELECT 1 FROM audit LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise AuditStoreError(f"{path}: not a readable audit log: {exc}") from None
    return db


class _Malformed(Exception):
    pass


class _Rows:
    """Records of a file in seq order, counting those handed out (each of which has checked out by the time the
    next is asked for)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.last_seq = 0

    def __iter__(self) -> Iterator[AuditRecord]:
        for row in self.db.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq"):
            try:
                record = _row_record(row)
            except (ValueError, TypeError) as exc:
                raise _Malformed(f"record {row[0]!r} is malformed ({exc})") from None
            yield record
            self.last_seq = record.seq


def verify_file(path: Path, expected_head: Head | None = None) -> VerifyReport:
    """Check a whole audit file's hash chain (:func:`~wecross.governance.audit.verify_records`), streaming, from
    the router id stored with it. Raises :class:`AuditStoreError` when the file cannot be read at all."""
    db = _open_read_only(path)
    rows = _Rows(db)
    try:
        router_id = _router_id(db)
        if router_id is None:
            return VerifyReport(False, 0, 1, "the file names no router (audit_meta.router_id is missing)")
        return verify_records(rows, router_id, expected_head)
    except _Malformed as exc:
        return VerifyReport(False, rows.last_seq, rows.last_seq + 1, str(exc))
    except sqlite3.Error as exc:  # e.g. text that is not UTF-8, written behind the store's back
        return VerifyReport(False, rows.last_seq, rows.last_seq + 1, f"the file cannot be read past here: {exc}")
    finally:
        db.close()
