"""SQLite persistence of one embedded chain: one database file per chain, used from one thread only.

Every method here blocks (disk I/O, fsync) and is meant to run on the chain's writer thread; the sqlite3
connection is created there and never leaves it. A block and the state changes it makes are written in one SQLite
transaction, in WAL mode with ``synchronous=FULL``, so after :meth:`ChainStore.append` returns the block survives
a crash or power loss, and a crash in the middle leaves the previous block as the head.

The same database holds the chain's 2PC bookkeeping (schema version 2): ``tx_prepared`` (one row per prepared
participant: its steps, tentative changes and locks) and ``tx_finished`` (the outcome of every participant that
committed or rolled back, so a repeated commit or rollback gets the same answer and a late prepare is refused).
They are written in the same SQLite transaction as the block of the same round (:meth:`ChainStore.append`), so a
commit's block and the end of its prepared record cannot be separated by a crash.

Opening checks the file before trusting it: the genesis block must be the one the config describes, every header
must hash to its stored hash and link to its predecessor, the transaction count must add up and the stored state
must hash to the head's state root. Anything else is refused with a message that names the file.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wecross.embedded.block import Header, encode
from wecross.embedded.block import decode as decode_value
from wecross.embedded.state import StateKey, StateSnapshot, StateTree, decode_key, encode_key
from wecross.embedded.txn import ROLLED_BACK, Owner, PreparedTx
from wecross.stub.interfaces import StubError

#: Version of the table layout; a database of another version is refused rather than misread. Version 1 (before
#: the 2PC tables) is upgraded in place on open: the new tables start empty.
SCHEMA_VERSION = 2
_UPGRADABLE = (1,)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    number INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    header BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS transactions (
    hash BLOB PRIMARY KEY,
    block_number INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    body BLOB NOT NULL,
    receipt BLOB NOT NULL,
    UNIQUE (block_number, idx)
);
CREATE TABLE IF NOT EXISTS state (k BLOB PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tx_prepared (
    tx_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (tx_id, resource)
);
CREATE TABLE IF NOT EXISTS tx_finished (
    tx_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    state TEXT NOT NULL,
    tx_hash BLOB,
    known INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    PRIMARY KEY (tx_id, resource)
);
"""


class StoreError(StubError):
    """The chain database cannot be used (unreadable, corrupt, from another chain); the message names the file."""

    error_code = "chain_store"

    def __init__(self, message: str) -> None:
        super().__init__(self.error_code, message)


class GenesisMismatchError(StoreError):
    """The database holds a chain whose genesis is not the configured one."""

    error_code = "genesis_mismatch"


@dataclass(frozen=True, slots=True)
class LoadedChain:
    """What opening a database hands to the reactor thread (once; it is not shared afterwards)."""

    genesis: Header
    head: Header
    recent: list[Header]
    tx_total: int
    state: dict[StateKey, Any]
    created: bool
    #: The head's state tree, for proving reads on the reactor thread.
    snapshot: StateSnapshot
    #: Participants prepared and not yet committed or rolled back, with their tentative changes and locks.
    prepared: list[PreparedTx]


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One block ready to be written: header, encoded transactions and receipts in block order, state changes."""

    header: Header
    tx_hashes: list[bytes]
    transactions: list[bytes]
    receipts: list[bytes]
    state_changes: Mapping[bytes, bytes | None]


@dataclass(frozen=True, slots=True)
class Finished:
    """How a participant ended: ``committed`` (with the hash of its commit transaction) or ``rolled_back``
    (``known``: it had been prepared here, rather than rolled back before any prepare arrived)."""

    state: str
    tx_hash: bytes | None
    known: bool


@dataclass(frozen=True, slots=True)
class TxRecords:
    """The 2PC bookkeeping of one writer round, written in the block's SQLite transaction (or alone)."""

    #: (tx_id, resource, since_ms, record, new): a participant's whole record after this round's steps. A ``new``
    #: one (first prepared in this round) is refused if the participant already finished: a late prepare.
    upserts: list[tuple[str, str, int, bytes, bool]]
    #: (tx_id, resource, state, tx_hash or None, finished_ms) of participants that committed or rolled back.
    finished: list[tuple[str, str, str, bytes | None, int]]
    #: Rollbacks of participants not prepared here: recorded (known=False) unless an outcome exists already.
    rollbacks: list[tuple[str, str, int]]

    def __bool__(self) -> bool:
        return bool(self.upserts or self.finished or self.rollbacks)


@dataclass(slots=True)
class TxWritten:
    """What :meth:`ChainStore.append` found while writing :class:`TxRecords`."""

    #: New prepares not written because the participant had already finished, with its outcome.
    refused: dict[Owner, Finished]
    #: Per entry of ``TxRecords.rollbacks``: the outcome found, or None when this rollback was recorded.
    rollbacks: list[Finished | None]


class ChainStore:
    """The database of one chain; every method runs on the chain's writer thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        #: The committed state's Merkle tree; kept here because only this thread touches it.
        self.state_tree = StateTree()

    # -- opening -----------------------------------------------------------------------------------------------
    def open(self, genesis: Header, genesis_state: Mapping[StateKey, Any], recent_headers: int) -> LoadedChain:
        """Open (creating if new) and check the database; StoreError naming the file when it cannot be used."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=True)
            return self._open(genesis, genesis_state, recent_headers)
        except StoreError:
            self.close()
            raise
        except (sqlite3.Error, OSError, ValueError) as exc:
            self.close()
            raise StoreError(f"chain database {self.path} is unreadable or corrupt: {exc}") from None

    def _open(self, genesis: Header, genesis_state: Mapping[StateKey, Any], recent_headers: int) -> LoadedChain:
        db = self._conn()
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"chain database {self.path}: cannot switch to WAL journal mode (got {mode})")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            created = db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0] == 0
            if created:
                self._create(genesis, genesis_state)
            else:
                self._upgrade()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return self._load(genesis, recent_headers, created)

    def _create(self, genesis: Header, genesis_state: Mapping[StateKey, Any]) -> None:
        db = self._conn()
        if db.execute("SELECT COUNT(*) FROM transactions").fetchone()[0] or db.execute(
                "SELECT COUNT(*) FROM state").fetchone()[0]:
            raise StoreError(f"chain database {self.path} has transactions or state but no blocks: it is corrupt")
        db.executemany("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", [
            ("schema_version", encode(SCHEMA_VERSION)),
            ("chain_id", encode(genesis.chain_id)),
            ("genesis_hash", genesis.hash),
        ])
        db.execute("INSERT INTO blocks (number, hash, header) VALUES (0, ?, ?)", (genesis.hash, genesis.encode()))
        db.executemany("INSERT INTO state (k, v) VALUES (?, ?)",
                       [(encode_key(key), encode(value)) for key, value in genesis_state.items()])

    def _upgrade(self) -> None:
        """Move an older schema to this one (inside the opening transaction; the new tables exist by now)."""
        row = self._conn().execute("SELECT v FROM meta WHERE k = 'schema_version'").fetchone()
        try:
            version = None if row is None else decode_value(bytes(row[0]))
        except Exception:
            return  # _load names the problem
        if version in _UPGRADABLE:
            self._conn().execute("UPDATE meta SET v = ? WHERE k = 'schema_version'", (encode(SCHEMA_VERSION),))

    def _meta(self, key: str) -> Any:
        row = self._conn().execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        if row is None:
            raise StoreError(f"chain database {self.path} lacks its '{key}' entry: it is corrupt or not a chain db")
        return row[0]

    def _load(self, genesis: Header, recent_headers: int, created: bool) -> LoadedChain:
        db = self._conn()
        version = decode_value(self._meta("schema_version"))
        if version != SCHEMA_VERSION:
            raise StoreError(f"chain database {self.path} has schema version {version!r}; this version of "
                             f"WeCross reads version {SCHEMA_VERSION}")
        chain_id = decode_value(self._meta("chain_id"))
        if chain_id != genesis.chain_id:
            raise GenesisMismatchError(f"chain database {self.path} belongs to chain {chain_id!r}, not "
                                       f"{genesis.chain_id!r}: use another data directory")
        stored_genesis = bytes(self._meta("genesis_hash"))
        if stored_genesis != genesis.hash:
            raise GenesisMismatchError(
                f"chain database {self.path} holds a chain with genesis {stored_genesis.hex()}, but the "
                f"configuration describes genesis {genesis.hash.hex()} (a resource, its kind or its initial state "
                "changed). Restore the old configuration, or move the data directory away to start a new chain."
            )
        recent: collections.deque[Header] = collections.deque(maxlen=max(1, recent_headers))
        previous: Header | None = None
        genesis_header: Header | None = None
        tx_count = 0
        for number, stored_hash, raw in db.execute("SELECT number, hash, header FROM blocks ORDER BY number"):
            header = self._check_header(number, bytes(stored_hash), bytes(raw), previous)
            if genesis_header is None:
                genesis_header = header
                if header != genesis:
                    raise StoreError(f"chain database {self.path} is corrupt: its block 0 is not the genesis "
                                     "block its metadata names")
            tx_count += header.tx_count
            recent.append(header)
            previous = header
        if previous is None or genesis_header is None:
            raise StoreError(f"chain database {self.path} has no genesis block")
        stored_txs = db.execute("SELECT COUNT(*) FROM transactions").fetchone()[0]
        if stored_txs != tx_count:
            raise StoreError(f"chain database {self.path} is corrupt: headers count {tx_count} transactions, "
                             f"the transactions table holds {stored_txs}")
        state: dict[StateKey, Any] = {}
        encoded: list[tuple[bytes, bytes]] = []
        for key_raw, value_raw in db.execute("SELECT k, v FROM state"):
            key_bytes, value_bytes = bytes(key_raw), bytes(value_raw)
            try:
                state[decode_key(key_bytes)] = decode_value(value_bytes)
            except Exception as exc:
                raise StoreError(f"chain database {self.path} is corrupt: undecodable state entry ({exc})") from None
            encoded.append((key_bytes, value_bytes))
        self.state_tree = StateTree(encoded)
        if self.state_tree.root != previous.state_root:
            raise StoreError(f"chain database {self.path} is corrupt: the stored state does not match the state "
                             f"root of head block {previous.number}")
        return LoadedChain(genesis_header, previous, list(recent), tx_count, state, created,
                           self.state_tree.snapshot(), self._load_prepared())

    def _load_prepared(self) -> list[PreparedTx]:
        prepared: list[PreparedTx] = []
        locked: dict[StateKey, Owner] = {}
        rows = self._conn().execute("SELECT tx_id, resource, since_ms, record FROM tx_prepared ORDER BY since_ms")
        for tx_id, resource, since_ms, record in rows:
            try:
                tx = PreparedTx.from_record(str(tx_id), str(resource), int(since_ms), bytes(record))
            except Exception as exc:
                raise StoreError(f"chain database {self.path} is corrupt: the prepared record of transaction "
                                 f"{tx_id!r} on {resource!r} is unreadable ({exc})") from None
            for key in tx.locks:
                other = locked.setdefault(key, tx.owner)
                if other != tx.owner:
                    raise StoreError(f"chain database {self.path} is corrupt: transactions {other[0]!r} and "
                                     f"{tx_id!r} both lock {key!r}")
            prepared.append(tx)
        return prepared

    def _check_header(self, number: int, stored_hash: bytes, raw: bytes, previous: Header | None) -> Header:
        where = f"chain database {self.path} is corrupt at block {number}"
        try:
            header = Header.decode(raw)
        except ValueError as exc:
            raise StoreError(f"{where}: {exc}") from None
        expected_number = 0 if previous is None else previous.number + 1
        if number != expected_number or header.number != number:
            raise StoreError(f"{where}: expected block {expected_number}, found {header.number}")
        if header.hash != stored_hash:
            raise StoreError(f"{where}: the header does not hash to its stored hash")
        if previous is not None and header.prev_hash != previous.hash:
            raise StoreError(f"{where}: it does not link to block {previous.number}")
        return header

    # -- writing -----------------------------------------------------------------------------------------------
    def append(self, record: BlockRecord | None, tx: TxRecords | None = None) -> TxWritten:
        """Write one round atomically and durably (returns after the fsync): a block with its state changes, the
        round's 2PC records, or both. Either may be missing; with neither nothing is written."""
        written = TxWritten({}, [])
        if record is None and not tx:
            return written
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            if record is not None:
                self._insert_block(record)
            if tx:
                self._write_tx_records(tx, written)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return written

    def _write_tx_records(self, tx: TxRecords, written: TxWritten) -> None:
        db = self._conn()
        if tx.finished:
            db.executemany("DELETE FROM tx_prepared WHERE tx_id = ? AND resource = ?",
                           [(tx_id, resource) for tx_id, resource, *_ in tx.finished])
            db.executemany("INSERT INTO tx_finished (tx_id, resource, state, tx_hash, known, finished_ms) "
                           "VALUES (?, ?, ?, ?, 1, ?)", tx.finished)
        for tx_id, resource, finished_ms in tx.rollbacks:
            found = self.finished(tx_id, resource)
            if found is None:
                db.execute("INSERT INTO tx_finished (tx_id, resource, state, tx_hash, known, finished_ms) "
                           "VALUES (?, ?, ?, NULL, 0, ?)", (tx_id, resource, ROLLED_BACK, finished_ms))
            written.rollbacks.append(found)
        rows = []
        for tx_id, resource, since_ms, data, new in tx.upserts:
            if new:
                found = self.finished(tx_id, resource)
                if found is not None:
                    written.refused[(tx_id, resource)] = found
                    continue
            rows.append((tx_id, resource, since_ms, data))
        db.executemany("INSERT INTO tx_prepared (tx_id, resource, since_ms, record) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT(tx_id, resource) DO UPDATE SET record = excluded.record", rows)

    def _insert_block(self, record: BlockRecord) -> None:
        db = self._conn()
        header = record.header
        db.execute("INSERT INTO blocks (number, hash, header) VALUES (?, ?, ?)",
                   (header.number, header.hash, header.encode()))
        db.executemany(
            "INSERT INTO transactions (hash, block_number, idx, body, receipt) VALUES (?, ?, ?, ?, ?)",
            [(tx_hash, header.number, index, body, receipt) for index, (tx_hash, body, receipt)
             in enumerate(zip(record.tx_hashes, record.transactions, record.receipts, strict=True))],
        )
        upserts = [(key, value) for key, value in record.state_changes.items() if value is not None]
        deletes = [(key,) for key, value in record.state_changes.items() if value is None]
        if upserts:
            db.executemany("INSERT INTO state (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                           upserts)
        if deletes:
            db.executemany("DELETE FROM state WHERE k = ?", deletes)

    # -- reading -----------------------------------------------------------------------------------------------
    def header(self, number: int) -> Header | None:
        row = self._conn().execute("SELECT header FROM blocks WHERE number = ?", (number,)).fetchone()
        return None if row is None else Header.decode(bytes(row[0]))

    def block(self, number: int) -> tuple[Header, list[bytes], list[bytes]] | None:
        """A block's header with its encoded transactions and receipts in block order."""
        header = self.header(number)
        if header is None:
            return None
        rows = self._conn().execute(
            "SELECT body, receipt FROM transactions WHERE block_number = ? ORDER BY idx", (number,)).fetchall()
        return header, [bytes(row[0]) for row in rows], [bytes(row[1]) for row in rows]

    def transaction(self, tx_hash: bytes) -> tuple[int, int] | None:
        """(block number, index) of a transaction, or None."""
        row = self._conn().execute(
            "SELECT block_number, idx FROM transactions WHERE hash = ?", (tx_hash,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def finished(self, tx_id: str, resource: str) -> Finished | None:
        """How a participant ended, or None if it never committed or rolled back here."""
        row = self._conn().execute("SELECT state, tx_hash, known FROM tx_finished WHERE tx_id = ? AND resource = ?",
                                   (tx_id, resource)).fetchone()
        if row is None:
            return None
        return Finished(str(row[0]), None if row[1] is None else bytes(row[1]), bool(row[2]))

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            finally:
                self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"chain database {self.path} is not open")
        return self._db
