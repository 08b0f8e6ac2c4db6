"""The coordinator's durable log: one SQLite row per transaction, its whole record, fsync'd before it is acted on.

Write-ahead is the whole point: the coordinator tells no participant "commit" until the record saying "committing"
is on disk, so a crash at any moment leaves a log from which recovery does the right thing (finish what was
decided, roll back what was not). Writes are grouped: every record written during one reactor turn goes to disk in
one SQLite transaction with ``synchronous = FULL`` on the log's own thread, and each writer's Deferred fires when
that transaction is durable. Under load that is one fsync for many transactions instead of one each, which is how
the log stays on without costing the throughput.

A record that cannot be written fails its Deferred with ``storage_error``; the coordinator then does not act.

Fault injection (tests and ``bench/chaos.py`` only; off unless ``[tx] test_log_fault_file`` is set): while the file
named there exists, every group commit fails, with the text it holds choosing where: ``before`` (nothing reaches
the disk) or ``after`` (the records are durable, yet the writers hear of a failure: the ambiguous case a failing
disk can produce). A held SQLite lock (another process in a write transaction on the database past SQLite's busy
timeout) fails writes the ordinary way.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from wecross.errors import RouterError
from wecross.tx.model import Tx

log = Logger()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tx (
    tx_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tx_state ON tx (state);
"""


class TxLog:
    def __init__(self, path: Path, reactor: Any, *, synchronous: str = "FULL",
                 parse: Callable[[dict[str, Any]], Any] = Tx.from_record, fault_file: Path | None = None) -> None:
        """``parse`` turns a stored record back into its object (the HTLC service keeps its exchanges here too);
        objects written need ``tx_id``, ``state`` (a str enum), ``updated_at`` and ``to_json()``."""
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise ValueError("synchronous must be FULL, NORMAL or OFF")
        self.path = path
        self.reactor = reactor
        self.synchronous = synchronous
        self.parse = parse
        self.fault_file = fault_file
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=f"txlog-{path.name}")
        self._queue: dict[str, tuple[str, float, str]] = {}
        self._waiters: list[Deferred[None]] = []
        self._flushing = False
        self._scheduled = False
        self.flushes = 0
        self.records_written = 0

    def open(self) -> list[Any]:
        """Open (creating) the log and return every transaction in it. Runs on the caller's thread, once, at start."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {self.synchronous}")
        db.executescript(_SCHEMA)
        self._db = db
        found: list[Any] = []
        for tx_id, record in db.execute("SELECT tx_id, record FROM tx ORDER BY rowid"):
            try:
                found.append(self.parse(json.loads(record)))
            except (ValueError, RouterError) as exc:
                log.error("transaction log {path}: record of {tx} is unreadable ({error}); skipped",
                          path=str(self.path), tx=tx_id, error=str(exc))
        self._pool.start()
        return found

    def write(self, tx: Any) -> Deferred[None]:
        """Queue ``tx``'s current record; the Deferred fires once it is on disk (with every record of this turn)."""
        if self._db is None:
            return defer.fail(RouterError("storage_error", "the transaction log is not open"))
        self._queue[tx.tx_id] = (str(getattr(tx.state, "value", tx.state)), tx.updated_at, tx.to_json())
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        if not self._flushing and not self._scheduled:
            self._scheduled = True
            self.reactor.callLater(0, self._flush)
        return d

    def _flush(self) -> None:
        self._scheduled = False
        if self._flushing or not self._queue:
            return
        batch, self._queue = self._queue, {}
        waiters, self._waiters = self._waiters, []
        self._flushing = True

        def done(result: object) -> None:
            self._flushing = False
            if isinstance(result, Failure):
                if result.check(sqlite3.Error):  # the disk or the database: one line, no traceback
                    log.error("transaction log {path}: write failed: {error}", path=str(self.path),
                              error=result.getErrorMessage())
                else:
                    log.failure("transaction log {path}: write failed", result, path=str(self.path))
                error = RouterError("storage_error", f"the transaction log could not be written: "
                                                     f"{result.getErrorMessage()}")
                for d in waiters:
                    d.errback(error)
            else:
                self.flushes += 1
                self.records_written += len(batch)
                for d in waiters:
                    d.callback(None)
            if self._queue and not self._scheduled:
                self._scheduled = True
                self.reactor.callLater(0, self._flush)

        deferToThreadPool(self.reactor, self._pool, self._write_batch, batch).addBoth(done)

    def _write_batch(self, batch: dict[str, tuple[str, float, str]]) -> None:
        db = self._db
        assert db is not None
        fault = self._injected_fault()
        if fault == "before":
            raise sqlite3.OperationalError("disk I/O error (injected before the write)")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO tx (tx_id, state, updated_at, record) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT(tx_id) DO UPDATE SET state = excluded.state, "
                           "updated_at = excluded.updated_at, record = excluded.record",
                           [(tx_id, state, updated, record) for tx_id, (state, updated, record) in batch.items()])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if fault == "after":
            raise sqlite3.OperationalError("disk I/O error (injected after the write)")

    def _injected_fault(self) -> str | None:
        if self.fault_file is None:
            return None
        try:
            return self.fault_file.read_text().strip() or "before"
        except OSError:
            return None  # no file: no fault

    def close(self) -> Deferred[None]:
        """Wait for queued writes, then close."""
        pending = list(self._waiters)

        def shut(_: object) -> None:
            if self._pool.started:
                self._pool.stop()
            if self._db is not None:
                self._db.close()
                self._db = None

        # Not consumeErrors: these are the writers' own Deferreds, and consuming a failure here would turn a write
        # that failed at close into a success for whoever waits on it (a decision taken for durable).
        d = defer.DeferredList(pending) if pending else defer.succeed(None)
        return d.addBoth(shut)
