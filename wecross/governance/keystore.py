"""Chain accounts: each user's account on each chain a router serves, with EVM private keys encrypted at rest.

Why a keystore. With one router key, ``msg.sender`` is the router for every user, and a contract cannot enforce
its own rules per user. Here an identity (the ``sender`` name REST and signed requests carry) maps to its own
account per chain: on the embedded chain the identity itself (the ledger already names accounts by user), on an EVM
chain a secp256k1 key per (user, chain), created on first use or by an admin (``wecross accounts``).

At rest. One SQLite file under the router's data_dir (``keystore.sqlite``), one row per (user, chain): the address
in clear (listing needs no key) and the private key sealed with AES-256-GCM under a key-encryption key (KEK) from
the environment (``WECROSS_KEYSTORE_KEY``) or a file (``[keystore] key_file``). What a sealed key is bound to:

- its row: the GCM associated data is (format version, user, chain, address), so a ciphertext copied into another
  row, or a row whose address was edited, fails authentication (``test_keystore.AtRest.test_swapped_rows_fail``);
- the KEK: a check value sealed at creation (table ``meta``) makes a keystore opened with another KEK fail at
  once, naming the cause, not at the first write (``test_keystore.AtRest.test_other_kek_fails``).

Neither the KEK nor a private key is ever printed or logged: :class:`Kek` and :class:`AccountKey` hide their
secret in ``repr`` (``test_keystore.Core.test_repr_hides_secrets``), and every message names the variable or file a
KEK came from, never its value. A keystore opened without a KEK still lists and removes accounts; creating or
handing out a key then fails with ``unavailable`` and says how to set one.

Threads. The SQLite part is synchronous on purpose: its one caller at run time is the EVM stub, and only on the
stub's own worker pool (the thread that is about to sign), where a look-up costs well under a millisecond beside
the JSON-RPC round trips of the write it serves; the CLI runs no reactor. One connection guarded by a lock serves
every thread; a REST handler must reach it through ``deferToThread``, never from the reactor thread. Several
processes (a router and ``wecross accounts``) may share the file: SQLite's locking and a busy timeout order them,
and creation is insert-if-absent then read back, so two creators of one account end with the same key.

Layout: the sans-IO core first (KEK parsing, sealing, names, row binding), then the SQLite shell :class:`Keystore`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_keys.datatypes import PrivateKey

from wecross.governance.identity import RESERVED_NAMES
from wecross.ipath import IPath, IPathError
from wecross.pki.authority import InvalidNameError, validate_user_name

#: The environment variable a KEK is read from when the config names no ``[keystore] key_file``.
KEK_ENV = "WECROSS_KEYSTORE_KEY"

#: The keystore file in a router's data_dir.
KEYSTORE_FILE = "keystore.sqlite"

#: Chain types whose account is the identity itself (nothing stored).
IDENTITY_CHAINS = frozenset({"embedded"})

_FORMAT = 1
_NONCE = 12
_KEY_BYTES = 32
_CHECK_PLAINTEXT = b"wecross keystore kek check"
_CHECK_AAD = b"wecross-keystore\x00kek-check"
#: secp256k1's group order: a private key is an integer in [1, n).
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

HOW_TO_SET_KEK = (f"set the environment variable {KEK_ENV} to 32 random bytes in base64 or hex "
                  "(e.g. `openssl rand -base64 32`), or name a file holding them in the router config "
                  "([keystore] key_file, readable by its owner only)")


class KeystoreError(ValueError):
    """A keystore failure; ``code`` is one of the router's error codes (wecross.errors), so a stub passes it on:
    ``bad_args`` (a name that is not a user or chain), ``forbidden`` (no account and creation not allowed, or a
    caller that is nobody in particular), ``unknown_chain``, ``unsupported`` (a key on an embedded chain),
    ``unavailable`` (no KEK), ``storage_error`` (the file, a wrong KEK, a row that fails authentication). A
    ValueError, so that a router start that meets a bad KEK reports it like any other configuration mistake."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- the sans-IO core --------------------------------------------------------------------------------------------


class Kek:
    """A key-encryption key: 32 bytes for AES-256-GCM. ``source`` says where it came from, for messages."""

    __slots__ = ("_aead", "_key", "source")

    def __init__(self, key: bytes, source: str = "a key-encryption key") -> None:
        if len(key) != _KEY_BYTES:
            raise KeystoreError("bad_args", f"{source}: a key-encryption key is {_KEY_BYTES} bytes, "
                                            f"not {len(key)}")
        self._key = bytes(key)
        self._aead = AESGCM(self._key)
        self.source = source

    @classmethod
    def generate(cls, source: str = "a generated key-encryption key") -> Kek:
        return cls(secrets.token_bytes(_KEY_BYTES), source)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """``format || nonce || AES-GCM(plaintext, aad)``; a fresh random nonce each time."""
        nonce = secrets.token_bytes(_NONCE)
        return bytes([_FORMAT]) + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def unseal(self, sealed: bytes, aad: bytes) -> bytes:
        """The plaintext; KeystoreError('storage_error') when the tag does not verify (another KEK, another row's
        ciphertext, an edited row or address)."""
        if len(sealed) < 1 + _NONCE + 16 or sealed[0] != _FORMAT:
            raise KeystoreError("storage_error", "a sealed value has an unknown format")
        try:
            return self._aead.decrypt(sealed[1:1 + _NONCE], sealed[1 + _NONCE:], aad)
        except InvalidTag:
            raise KeystoreError("storage_error", "a sealed value does not authenticate") from None

    def check_value(self) -> bytes:
        """What the keystore stores to recognise this KEK later."""
        return self.seal(_CHECK_PLAINTEXT, _CHECK_AAD)

    def opens(self, check: bytes) -> bool:
        try:
            return self.unseal(check, _CHECK_AAD) == _CHECK_PLAINTEXT
        except KeystoreError:
            return False

    def __repr__(self) -> str:
        return f"<Kek from {self.source}>"


def parse_kek(text: str, source: str) -> Kek:
    """A KEK written as hex or base64 (standard or URL-safe alphabet, padded or not) of 32 bytes; the error names
    ``source`` and never repeats ``text``."""
    value = text.strip()
    candidates: list[bytes] = []
    if len(value) == 2 * _KEY_BYTES:
        with contextlib.suppress(ValueError):
            candidates.append(bytes.fromhex(value))
    padded = (value + "=" * (-len(value) % 4)).encode("ascii", "replace")
    for altchars in (None, b"-_"):
        try:
            candidates.append(base64.b64decode(padded, altchars=altchars, validate=True))
        except (binascii.Error, ValueError):
            continue
    for raw in candidates:
        if len(raw) == _KEY_BYTES:
            return Kek(raw, source)
    raise KeystoreError("bad_args", f"{source}: not 32 bytes in base64 or hex ({HOW_TO_SET_KEK})")


def check_user(user: object) -> str:
    """A user's name as certificates carry it; the names the router uses for nobody in particular (``anonymous``)
    or for itself (``router``, ``router:ID``) have no account: all of them would share it."""
    if not isinstance(user, str):
        raise KeystoreError("bad_args", "a user name must be a string")
    if user in RESERVED_NAMES or user.startswith("router:"):
        raise KeystoreError("forbidden", f"{user[:80]!r} has no chain account: only a named user (a client "
                                         "certificate of the network's CA) has one")
    try:
        return validate_user_name(user)
    except InvalidNameError:
        raise KeystoreError("bad_args", f"{user[:80]!r} is not a user name (1-64 characters from letters, digits, "
                                        "'.', '_', '@', '-')") from None


def check_chain(chain: object) -> str:
    """A chain path ``zone.chain``."""
    if not isinstance(chain, str) or chain.count(".") != 1:
        raise KeystoreError("bad_args", f"{str(chain)[:80]!r} is not a chain path zone.chain")
    try:
        IPath.parse(f"{chain}.x")
    except IPathError as exc:
        raise KeystoreError("bad_args", f"{chain[:80]!r} is not a chain path zone.chain: {exc}") from None
    return chain


def row_aad(user: str, chain: str, address: str) -> bytes:
    """The associated data that binds a sealed key to its row; each part length-prefixed, so no two rows share it."""
    parts = [b"wecross-keystore", str(_FORMAT).encode(), user.encode(), chain.encode(), address.encode()]
    return b"".join(len(part).to_bytes(2, "big") + part for part in parts)


def new_private_key() -> bytes:
    """32 random bytes that are a valid secp256k1 private key (in [1, n): redrawn otherwise, about never)."""
    while True:
        key = secrets.token_bytes(_KEY_BYTES)
        if 0 < int.from_bytes(key, "big") < _SECP256K1_N:
            return key


def address_of(private_key: bytes) -> str:
    """The checksummed Ethereum address of a private key."""
    return str(PrivateKey(private_key).public_key.to_checksum_address())


@dataclass(frozen=True, slots=True)
class AccountKey:
    """What a stub signs with: the address and the private key (32 bytes), which ``repr`` never shows."""

    address: str
    secret: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"AccountKey({self.address}, secret hidden)"


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """One stored account, as listings show it (no key material)."""

    user: str
    chain: str
    address: str
    created: float

    def to_json(self) -> dict[str, object]:
        return {"user": self.user, "chain": self.chain, "address": self.address, "created": self.created}


def load_kek(key_file: Path | None = None, environ: Mapping[str, str] | None = None) -> Kek | None:
    """The KEK from ``key_file`` if given (refused when others than its owner may read it), else from the
    environment variable :data:`KEK_ENV`; None when neither is set."""
    if key_file is not None:
        try:
            mode = key_file.stat().st_mode
            if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeystoreError("bad_args", f"keystore key file {key_file}: others than its owner may read it; "
                                                f"run `chmod 600 {key_file}`")
            text = key_file.read_text()
        except OSError as exc:
            raise KeystoreError("bad_args", f"keystore key file {key_file}: cannot read it: "
                                            f"{exc.strerror or type(exc).__name__}") from None
        except UnicodeDecodeError:
            raise KeystoreError("bad_args", f"keystore key file {key_file}: not text (base64 or hex of 32 bytes)") \
                from None
        return parse_kek(text, f"keystore key file {key_file}")
    value = (os.environ if environ is None else environ).get(KEK_ENV)
    if not value:
        return None
    return parse_kek(value, f"environment variable {KEK_ENV}")


# -- the SQLite shell --------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    user TEXT NOT NULL,
    chain TEXT NOT NULL,
    address TEXT NOT NULL,
    sealed BLOB NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (user, chain)
);
"""


class Keystore:
    """The accounts of one router (see the module docstring). Every method blocks: call it off the reactor.

    ``chain_types`` (``zone.chain`` -> stub type), when given, says which chains this router serves: an embedded
    chain's account is the user's name, and a chain not listed is ``unknown_chain``. Without it (the CLI, which
    may run without the config) every chain is taken for a key chain. ``create_on_first_use``: whether
    :meth:`account` and :meth:`signer` create a missing account (else only :meth:`create` does).
    """

    def __init__(self, path: Path, kek: Kek | None, *, chain_types: Mapping[str, str] | None = None,
                 create_on_first_use: bool = True) -> None:
        self.path = Path(path)
        self.chain_types = None if chain_types is None else dict(chain_types)
        self.create_on_first_use = create_on_first_use
        self._kek = kek
        self._lock = threading.Lock()
        self._now = time.time
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.exists()
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10.0)
            if fresh and os.name == "posix":
                os.chmod(self.path, 0o600)  # sealed keys and who has accounts: nobody else's business
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")  # a created key is funded and used: it must not vanish
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE name = 'kek_check'").fetchone()
        except sqlite3.Error as exc:
            raise KeystoreError("storage_error", f"keystore {self.path}: {exc}") from None
        if row is not None and kek is not None and not kek.opens(bytes(row[0])):
            db.close()
            raise KeystoreError("storage_error", f"keystore {self.path}: the key-encryption key from {kek.source} "
                                                 "does not open it (it was sealed with another one)")
        self._db: sqlite3.Connection | None = db

    @classmethod
    def in_data_dir(cls, data_dir: Path, kek: Kek | None, *, chain_types: Mapping[str, str] | None = None,
                    create_on_first_use: bool = True) -> Keystore:
        """The keystore of the router whose data_dir is ``data_dir``."""
        return cls(Path(data_dir) / KEYSTORE_FILE, kek, chain_types=chain_types,
                   create_on_first_use=create_on_first_use)

    @property
    def unlocked(self) -> bool:
        """Whether this keystore holds a KEK (may create and hand out keys)."""
        return self._kek is not None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- the API
    def account(self, user: str, chain: str) -> str:
        """``user``'s account on ``chain``: the name itself on an embedded chain, else the address of its key
        (created if allowed; creation needs the KEK). KeystoreError('forbidden') when there is none and creation is
        not allowed."""
        user, chain = check_user(user), self._chain(chain)
        if self._is_identity_chain(chain):
            return user
        with self._lock:
            row = self._row(user, chain)
        if row is not None:
            return row[0]
        if not self.create_on_first_use:
            raise self._no_account(user, chain)
        return self.create(user, chain).address

    def signer(self, user: str, chain: str) -> AccountKey:
        """The key ``user`` signs with on ``chain`` (created if allowed), for the stub that is about to sign."""
        user, chain = check_user(user), self._chain(chain)
        if self._is_identity_chain(chain):
            raise KeystoreError("unsupported", f"{chain} is an embedded chain: its accounts are names, not keys")
        kek = self._require_kek("hand out a key")
        with self._lock:
            row = self._row(user, chain)
        if row is None:
            if not self.create_on_first_use:
                raise self._no_account(user, chain)
            self.create(user, chain)
            with self._lock:
                row = self._row(user, chain)
            assert row is not None
        address, sealed = row
        return self._opened(kek, user, chain, address, sealed)

    def create(self, user: str, chain: str) -> AccountInfo:
        """Create ``user``'s key on ``chain``; an existing account is returned unchanged (creating is idempotent,
        so two routers' CLIs or two threads racing end with one key)."""
        user, chain = check_user(user), self._chain(chain)
        if self._is_identity_chain(chain):
            raise KeystoreError("unsupported", f"{chain} is an embedded chain: a user's account there is its name, "
                                               "nothing to create")
        kek = self._require_kek("create a key")
        secret = new_private_key()
        address = address_of(secret)
        sealed = kek.seal(secret, row_aad(user, chain, address))
        db = self._open_db()
        with self._lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    check = db.execute("SELECT value FROM meta WHERE name = 'kek_check'").fetchone()
                    if check is None:
                        db.execute("INSERT INTO meta (name, value) VALUES ('kek_check', ?)", (kek.check_value(),))
                    elif not kek.opens(bytes(check[0])):
                        raise KeystoreError("storage_error", f"keystore {self.path}: the key-encryption key from "
                                                             f"{kek.source} does not open it")
                    db.execute("INSERT INTO accounts (user, chain, address, sealed, created) VALUES (?, ?, ?, ?, ?) "
                               "ON CONFLICT (user, chain) DO NOTHING", (user, chain, address, sealed, self._now()))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                found = db.execute("SELECT address, created FROM accounts WHERE user = ? AND chain = ?",
                                   (user, chain)).fetchone()
            except sqlite3.Error as exc:
                raise KeystoreError("storage_error", f"keystore {self.path}: {exc}") from None
        return AccountInfo(user, chain, str(found[0]), float(found[1]))

    def list(self, user: str | None = None) -> list[AccountInfo]:
        """Stored accounts (of ``user`` if given), by user then chain. Needs no KEK."""
        if user is not None:
            user = check_user(user)
        query = "SELECT user, chain, address, created FROM accounts"
        params: tuple[str, ...] = ()
        if user is not None:
            query, params = query + " WHERE user = ?", (user,)
        db = self._open_db()
        with self._lock:
            try:
                rows = db.execute(query + " ORDER BY user, chain", params).fetchall()
            except sqlite3.Error as exc:
                raise KeystoreError("storage_error", f"keystore {self.path}: {exc}") from None
        return [AccountInfo(str(u), str(c), str(a), float(t)) for u, c, a, t in rows]

    def remove(self, user: str, chain: str) -> AccountInfo | None:
        """Forget ``user``'s key on ``chain`` (what it held on chain is then out of reach); the removed account, or
        None if there was none. Needs no KEK."""
        user, chain = check_user(user), check_chain(chain)
        db = self._open_db()
        with self._lock:
            try:
                found = db.execute("SELECT address, created FROM accounts WHERE user = ? AND chain = ?",
                                   (user, chain)).fetchone()
                db.execute("DELETE FROM accounts WHERE user = ? AND chain = ?", (user, chain))
            except sqlite3.Error as exc:
                raise KeystoreError("storage_error", f"keystore {self.path}: {exc}") from None
        return None if found is None else AccountInfo(user, chain, str(found[0]), float(found[1]))

    def rotate_kek(self, new: Kek) -> int:
        """Re-seal every key under ``new`` in one SQLite transaction (all rows or none: a row that does not open
        under the current KEK aborts it, naming the row); from then on this keystore uses ``new``. The number of
        keys re-sealed."""
        old = self._require_kek("rotate its key-encryption key")
        db = self._open_db()
        with self._lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    rows = db.execute("SELECT user, chain, address, sealed FROM accounts").fetchall()
                    resealed = []
                    for user, chain, address, sealed in rows:
                        secret = self._opened(old, user, chain, address, bytes(sealed)).secret
                        resealed.append((new.seal(secret, row_aad(user, chain, address)), user, chain))
                    db.executemany("UPDATE accounts SET sealed = ? WHERE user = ? AND chain = ?", resealed)
                    db.execute("INSERT INTO meta (name, value) VALUES ('kek_check', ?) "
                               "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (new.check_value(),))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise KeystoreError("storage_error", f"keystore {self.path}: {exc}") from None
            self._kek = new
        return len(resealed)

    # -- helpers
    def _open_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise KeystoreError("unavailable", f"keystore {self.path} is closed")
        return self._db

    def _row(self, user: str, chain: str) -> tuple[str, bytes] | None:
        """Called under the lock."""
        try:
            row = self._open_db().execute("SELECT address, sealed FROM accounts WHERE user = ? AND chain = ?",
                                          (user, chain)).fetchone()
        except sqlite3.Error as exc:
            raise KeystoreError("storage_error", f"keystore {self.path}: {exc}") from None
        return None if row is None else (str(row[0]), bytes(row[1]))

    def _opened(self, kek: Kek, user: str, chain: str, address: str, sealed: bytes) -> AccountKey:
        try:
            secret = kek.unseal(sealed, row_aad(user, chain, address))
        except KeystoreError:
            raise KeystoreError("storage_error", f"keystore {self.path}: the key of {user} on {chain} does not "
                                                 "authenticate (another KEK, or the row was altered or moved)") \
                from None
        return AccountKey(address, secret)

    def _chain(self, chain: str) -> str:
        chain = check_chain(chain)
        if self.chain_types is not None and chain not in self.chain_types:
            raise KeystoreError("unknown_chain", f"this router serves no chain {chain}; it serves: "
                                                 f"{', '.join(sorted(self.chain_types)) or 'none'}")
        return chain

    def _is_identity_chain(self, chain: str) -> bool:
        return self.chain_types is not None and self.chain_types.get(chain) in IDENTITY_CHAINS

    def _require_kek(self, what: str) -> Kek:
        if self._kek is None:
            raise KeystoreError("unavailable", f"keystore {self.path} has no key-encryption key, so it cannot "
                                               f"{what}: {HOW_TO_SET_KEK}")
        return self._kek

    @staticmethod
    def _no_account(user: str, chain: str) -> KeystoreError:
        return KeystoreError("forbidden", f"{user} has no account on {chain}, and this router creates accounts "
                                          "only by an admin (`wecross accounts create`)")

    def __repr__(self) -> str:
        return f"<Keystore {self.path} {'unlocked' if self.unlocked else 'locked'}>"
