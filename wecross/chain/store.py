"""The router's header store: the trusted header chains of remote chains, kept in SQLite under the data directory.

The checks live in :mod:`wecross.chain.headers`; this module keeps what passed them across restarts (a router that
restarts must not have to fetch and check a chain's whole history again, nor forget which genesis it pinned on first
sight). Database work runs on a thread of its own, never on the reactor thread.
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
from twisted.python.threadpool import ThreadPool

from wecross.chain.headers import HeaderChain, Rehash, TrustedHeader
from wecross.config import TrustSettings

DB_FILE_NAME = "headers.sqlite"
#: Seconds between accepting headers and writing them.
FLUSH_DELAY = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS headers (
    chain TEXT NOT NULL,
    number INTEGER NOT NULL,
    hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    wire TEXT NOT NULL,
    sources TEXT NOT NULL,
    PRIMARY KEY (chain, number)
);
CREATE TABLE IF NOT EXISTS pins (chain TEXT PRIMARY KEY, checkpoint TEXT NOT NULL, pinned_by TEXT NOT NULL);
"""


class HeaderStore:
    """Every remote chain's HeaderChain, loaded at start and written through as headers are accepted."""

    def __init__(self, data_dir: Path, trust: TrustSettings, reactor: Any,
                 rehash_for: Callable[[str], Rehash | None]) -> None:
        self.path = data_dir / DB_FILE_NAME
        self.trust = trust
        self._reactor = reactor
        self._rehash_for = rehash_for
        self.chains: dict[str, HeaderChain] = {}
        self._stored: dict[str, list[TrustedHeader]] = {}
        self._pins: dict[str, tuple[str, str]] = {}
        self._db: sqlite3.Connection | None = None
        self._pool: ThreadPool | None = None
        self._inline = False
        self._running = False
        self._dirty: dict[str, int] = {}
        self._flush_call: Any = None

    def simulate(self, clock: Any) -> None:
        """Database work on the calling thread (the simulator's routers share one thread and a virtual clock)."""
        self._reactor = clock
        self._inline = True

    def _run(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if self._inline:
            return defer.maybeDeferred(fn, *args)
        assert self._pool is not None
        return deferToThreadPool(self._reactor, self._pool, fn, *args)

    def start(self) -> Deferred[None]:
        self._running = True
        if not self._inline:
            pool = ThreadPool(minthreads=1, maxthreads=1, name="wecross-headers")
            pool.start()
            self._pool = pool
        return self._run(self._open)

    def stop(self) -> Deferred[None]:
        if not self._running:
            return defer.succeed(None)
        d = self.flush()
        self._running = False

        def close(_: object) -> Deferred[None]:
            closed = self._run(self._close)
            pool, self._pool = self._pool, None
            if pool is not None:
                closed.addBoth(lambda _: pool.stop())
            return closed

        return d.addBoth(close)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # No fsync per commit: headers lost to a power cut are fetched and checked again, while an fsync per
        # verified write would queue behind (and delay) the chain's own block writes on the same disk.
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        return db

    def _open(self) -> None:
        """Read what an earlier life trusted. No file yet: nothing to read, and none made until a header is
        accepted (most routers of a large network never verify anything themselves)."""
        if not self.path.exists():
            return
        db = self._connect()
        for chain, number, digest, prev, wire, sources in db.execute(
                "SELECT chain, number, hash, prev_hash, wire, sources FROM headers ORDER BY chain, number"):
            self._stored.setdefault(chain, []).append(
                TrustedHeader(number, digest, prev, json.loads(wire), frozenset(json.loads(sources))))
        for chain, checkpoint, pinned_by in db.execute("SELECT chain, checkpoint, pinned_by FROM pins"):
            self._pins[chain] = (checkpoint, pinned_by)
        self._db = db

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def chain(self, chain_path: str, chain_type: str) -> HeaderChain:
        """The header chain of ``chain_path``, made on first use with the configured checkpoint (or the pinned one)."""
        chain = self.chains.get(chain_path)
        if chain is None:
            configured = self.trust.checkpoints.get(chain_path)
            pinned = self._pins.get(chain_path)
            number = 0
            if configured is not None and ":" in configured:  # "number:hash": a checkpoint above the genesis
                text, configured = configured.split(":", 1)
                number = int(text)
            checkpoint = configured or (pinned[0] if pinned else None)
            chain = HeaderChain(chain_path, checkpoint=checkpoint, quorum=self.trust.quorum,
                                rehash=self._rehash_for(chain_type), checkpoint_number=number)
            if configured is None and pinned is not None:
                chain.pinned_by = pinned[1]
            chain.load(self._stored.pop(chain_path, []))
            self.chains[chain_path] = chain
        return chain

    def persist(self, chain: HeaderChain, first: int) -> None:
        """Headers from block ``first`` up were just accepted: written within a second, in one transaction with
        whatever else was accepted meanwhile (a run of verified writes adds a header each; a write per header
        cost the entry router more than the checks themselves)."""
        if not self._running:
            return
        self._dirty[chain.chain] = min(first, self._dirty.get(chain.chain, first))
        if self._flush_call is None or not self._flush_call.active():
            self._flush_call = self._reactor.callLater(FLUSH_DELAY, self.flush)

    def flush(self) -> Deferred[None]:
        """Write what was accepted since the last flush (also on stop)."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        dirty, self._dirty = self._dirty, {}
        rows: list[tuple[Any, ...]] = []
        pins: list[tuple[str, str, str]] = []
        for name, first in dirty.items():
            chain = self.chains[name]
            rows += [(name, h.number, h.hash, h.prev_hash, json.dumps(dict(h.wire), sort_keys=True),
                      json.dumps(sorted(h.sources))) for n, h in sorted(chain.headers.items()) if n >= first]
            pins.append((name, chain.checkpoint or "", chain.pinned_by))
        if not rows or (self._pool is None and not self._inline):
            return defer.succeed(None)
        return self._run(self._write, rows, pins)

    def _write(self, rows: list[tuple[Any, ...]], pins: list[tuple[str, str, str]]) -> None:
        db = self._db
        if db is None:
            db = self._db = self._connect()
        with db:
            db.executemany("INSERT OR REPLACE INTO headers VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.executemany("INSERT OR REPLACE INTO pins VALUES (?, ?, ?)", pins)

    def describe(self) -> list[dict[str, Any]]:
        return [chain.describe() for _, chain in sorted(self.chains.items())]
