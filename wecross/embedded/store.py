"""SQLite persistence of one embedded chain: one database file per chain, used from one thread only.

Every method here blocks (disk I/O, fsync) and is meant to run on the chain's writer thread; the sqlite3
connection is created there and never leaves it. A block and the state changes it makes are written in one SQLite
transaction, in WAL mode with ``synchronous=FULL``, so after :meth:`ChainStore.append` returns the block survives
a crash or power loss, and a crash in the middle leaves the previous block as the head.

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
from wecross.stub.interfaces import StubError

#: Version of the table layout; a database of another version is refused rather than misread.
SCHEMA_VERSION = 1

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


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One block ready to be written: header, encoded transactions and receipts in block order, state changes."""

    header: Header
    tx_hashes: list[bytes]
    transactions: list[bytes]
    receipts: list[bytes]
    state_changes: Mapping[bytes, bytes | None]


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
                           self.state_tree.snapshot())

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
    def append(self, record: BlockRecord) -> None:
        """Write one block and its state changes atomically and durably (returns after the fsync)."""
        db = self._conn()
        header = record.header
        db.execute("BEGIN IMMEDIATE")
        try:
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
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

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
