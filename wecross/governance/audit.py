"""The audit trail's core: what one record holds, the hash chain that links records, and sealing to a regulator.

Sans-IO: no clock, no disk, no reactor. Callers pass the time; :mod:`wecross.governance.audit_store` is the shell
that makes records durable (SQLite, group commit on a thread).

**What a record proves.** Each :class:`AuditRecord` carries the SHA-256 of the record before it (``prev_hash``) and
its own ``hash`` over every other field (:func:`record_hash`), the first one chained onto a genesis value bound to
the router id (:func:`genesis_hash`). :func:`verify_records` recomputes every hash and checks every link and every
sequence number, so a record altered, removed, inserted or moved anywhere *before the last one* breaks the chain at
a named sequence number. A hash chain has no secret, though: whoever can write the file can rewrite the whole tail
from any point, recomputing every hash, or simply cut the tail off; the chain alone cannot tell. That needs the head
(:meth:`AuditChain.head`: the last sequence number and its hash) anchored somewhere the writer does not control:
published in the router's ``/status`` or its signed gossip record, copied by an auditor, or written to a chain.
:func:`verify_records` given that ``expected_head`` then also catches a truncated tail and a rewritten history.

**Bounded.** Everything a client or a peer chooses is clipped before it is hashed (:data:`LIMITS`: characters
per string field, :data:`MAX_PATH` router ids per path), the arguments are kept only as a digest (and, when a
regulator is configured, sealed, at most :data:`MAX_SEALED_ARGS` bytes of them), so one request costs the log at
most about 70 KiB with sealing and 3 KiB without, whatever was sent (``test_audit.BoundsTest`` checks it).

**Supervision.** With a regulator key, each record's arguments are sealed (:class:`Sealer`) so that only the
holder of the regulator's private key can read them (:func:`open_sealed`); the digest lets the regulator check
that what it opened is what was recorded. EC P-256 keys: ephemeral-static ECDH, HKDF-SHA256, AES-256-GCM. RSA keys:
an AES-256-GCM data key wrapped with RSA-OAEP-SHA256. One ephemeral key (or data key) serves
:data:`SEAL_ROTATE_AFTER` records with a fresh random nonce each, so sealing costs an AES-GCM call per record, not a
key agreement; each blob still carries everything needed to open it alone.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

RECORD_CONTEXT = b"wecross-audit-record-v1\x00"
GENESIS_CONTEXT = b"wecross-audit-genesis-v1\x00"
SEAL_CONTEXT = b"wecross-audit-seal-v1\x00"

#: Characters kept of each string field; a longer value keeps its first ``limit - 1`` characters and ends in "…".
LIMITS: dict[str, int] = {
    "initiator": 256,
    "org": 128,
    "entry_router": 253,  # a DNS name
    "ipath": 400,  # three parts of at most 128 characters and two dots
    "interface": 64,
    "method": 256,
    "outcome": 64,  # "ok" or an error code
    "tx_hash": 130,  # 0x + 128 hex digits covers every chain we serve
}
#: Router ids kept of a request's path (each clipped to 253 characters); a longer path keeps its first ones.
MAX_PATH = 16
#: Bytes of packed arguments a seal holds; larger arguments are sealed clipped (:class:`ClippedArgs`).
MAX_SEALED_ARGS = 64 * 1024
#: Seals made under one ephemeral key (EC) or data key (RSA) before a new one is drawn.
SEAL_ROTATE_AFTER = 4096

_SEAL_VERSION = 1
_SCHEME_ECDH_P256 = 1
_SCHEME_RSA_OAEP = 2
_PLAIN_WHOLE = 0
_PLAIN_CLIPPED = 1
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
Head = tuple[int, str]


class SealError(Exception):
    """A seal that cannot be made or opened: wrong key, wrong key type, altered or malformed blob."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A record's content before it is chained: already clipped, the arguments already digested (and sealed)."""

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
    path: tuple[str, ...]
    sealed: bytes | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited request. ``hash`` covers every other field (:func:`record_hash`)."""

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
    path: tuple[str, ...]
    sealed: bytes | None
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (``sealed`` as hex), for REST and the CLI."""
        return {"seq": self.seq, "time": self.time, "initiator": self.initiator, "org": self.org,
                "entry_router": self.entry_router, "ipath": self.ipath, "interface": self.interface,
                "method": self.method, "args_digest": self.args_digest, "outcome": self.outcome,
                "tx_hash": self.tx_hash, "block": self.block, "path": list(self.path),
                "sealed": None if self.sealed is None else self.sealed.hex(),
                "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """``count``: records that checked out before the first break (all of them when ``ok``). ``first_broken``: the
    sequence number expected where the chain breaks (for a missing tail: the first missing one)."""

    ok: bool
    count: int
    first_broken: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class ClippedArgs:
    """What :func:`open_sealed` returns for arguments larger than :data:`MAX_SEALED_ARGS`: their packed size and
    the first bytes of their msgpack form (which may end mid-value)."""

    size: int
    head: bytes


def genesis_hash(router_id: str) -> str:
    """``prev_hash`` of a router's first record: binds the chain to its router, so one router's log cannot be
    passed off as another's."""
    return hashlib.sha256(GENESIS_CONTEXT + router_id.encode("utf-8", "replace")).hexdigest()


def encode_record(seq: int, entry: AuditEntry | AuditRecord, prev_hash: str) -> bytes:
    """The canonical bytes a record's hash covers: :data:`RECORD_CONTEXT` followed by the msgpack encoding
    (``use_bin_type=True``: str as msgpack str, bytes as bin; a float always as float 64; an int in its shortest
    form) of the list ``[seq, time, initiator, org, entry_router, ipath, interface, method, args_digest, outcome,
    tx_hash, block, path (as a list), sealed, prev_hash]``, absent values as nil. Every field is clipped and
    surrogate-free by then (:func:`make_entry`), so the encoding cannot fail."""
    packed: bytes = msgpack.packb(
        [seq, entry.time, entry.initiator, entry.org, entry.entry_router, entry.ipath, entry.interface, entry.method,
         entry.args_digest, entry.outcome, entry.tx_hash, entry.block, list(entry.path), entry.sealed, prev_hash],
        use_bin_type=True)
    return RECORD_CONTEXT + packed


def record_hash(seq: int, entry: AuditEntry | AuditRecord, prev_hash: str) -> str:
    """Hex SHA-256 of :func:`encode_record`."""
    return hashlib.sha256(encode_record(seq, entry, prev_hash)).hexdigest()


_SURROGATES = re.compile("[\ud800-\udfff]")


def clip(value: Any, limit: int) -> str:
    """``value`` as a string of at most ``limit`` characters that msgpack can encode (lone surrogates, which a JSON
    body can carry, become U+FFFD)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    if not text.isascii():
        text = _SURROGATES.sub("\ufffd", text)
    return text


def _clip_optional(value: Any, limit: int) -> str | None:
    return None if value is None else clip(value, limit)


def pack_args(args: Any) -> bytes | None:
    """The msgpack form of the arguments (``use_bin_type=True``), or None when msgpack cannot hold them (an int
    past 64 bits, a lone surrogate, an object)."""
    try:
        packed: bytes = msgpack.packb(args, use_bin_type=True)
    except (OverflowError, UnicodeEncodeError, TypeError, ValueError):
        return None
    return packed


#: ``args_digest`` of arguments msgpack cannot encode (no real packing hashes to this: it is a hash of a context).
UNENCODABLE_DIGEST = hashlib.sha256(b"wecross-audit-unencodable-args-v1\x00").hexdigest()


def digest_args(packed: bytes | None) -> str:
    """Hex SHA-256 of the packed arguments (:func:`pack_args`)."""
    return UNENCODABLE_DIGEST if packed is None else hashlib.sha256(packed).hexdigest()


#: A request as the store queues it: every field already clipped and the arguments digested, exactly the content
#: of an :class:`AuditEntry` except ``sealed``, for which it holds the bounded plaintext to seal (None: no sealing).
#: A plain tuple because the reactor thread builds one per request: (time, initiator, org, entry_router, ipath,
#: interface, method, args_digest, outcome, tx_hash, block, path, seal_plaintext).
Pending = tuple[float, str, str | None, str, str, str, str, str, str, str | None, int | None, tuple[str, ...],
                bytes | None]


def _fit(value: Any, limit: int) -> str:
    """:func:`clip`, with the common case (a short ASCII string, which needs nothing) answered without a copy."""
    if type(value) is str and len(value) <= limit and value.isascii():
        return value
    return clip(value, limit)


_PATH_LIMIT = LIMITS["entry_router"]


def clip_path(path: Sequence[str]) -> tuple[str, ...]:
    """At most :data:`MAX_PATH` router ids, each clipped like ``entry_router``."""
    return tuple(_fit(hop, _PATH_LIMIT) for hop in list(path)[:MAX_PATH])


def pending_entry(time: float, initiator: str, org: str | None, entry_router: str, ipath: str, interface: str,
                  method: str, args: Any, outcome: str, tx_hash: str | None, block: int | None,
                  path: tuple[str, ...], seal: bool) -> Pending:
    """Clip every field to :data:`LIMITS` and digest the arguments (keeping their sealing plaintext when ``seal``):
    what :func:`make_entry` does, as a tuple, so that the per-request work is a few string checks and one hash.
    ``path`` must already be :func:`clip_path`'ed (the store memoises that: paths repeat)."""
    packed = pack_args(args)
    if not isinstance(block, int) or isinstance(block, bool) or not 0 <= block < 1 << 63:
        block = None
    when = float(time)
    return (when if math.isfinite(when) else 0.0,  # SQLite keeps NaN as NULL: the hash would not survive a reload
            _fit(initiator, LIMITS["initiator"]), None if org is None else _fit(org, LIMITS["org"]),
            _fit(entry_router, LIMITS["entry_router"]), _fit(ipath, LIMITS["ipath"]),
            _fit(interface, LIMITS["interface"]), _fit(method, LIMITS["method"]),
            UNENCODABLE_DIGEST if packed is None else hashlib.sha256(packed).hexdigest(),
            _fit(outcome, LIMITS["outcome"]), None if tx_hash is None else _fit(tx_hash, LIMITS["tx_hash"]), block,
            path, seal_plaintext(packed) if seal else None)


class PendingMaker:
    """:func:`pending_entry` for a stream of requests, with what repeats remembered: the text fields that are
    already within their limits (a router sees the same few users, resources and methods over and over) and the
    digests of small argument lists. Each memo holds at most ``size`` items and starts over when full; only values
    that needed no clipping are kept, so a memo holds at most ``size`` times the :data:`LIMITS`. The result is
    exactly :func:`pending_entry`'s (``test_audit.BatchTest``)."""

    def __init__(self, seal: bool, size: int = 1024) -> None:
        self.seal = seal
        self.size = size
        self._texts: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._digests: dict[bytes, str] = {}

    def make(self, time: float, initiator: str, org: str | None, entry_router: str, ipath: str, interface: str,
             method: str, args: Any, outcome: str, tx_hash: str | None, block: int | None,
             path: tuple[str, ...]) -> Pending:
        key = (initiator, org, entry_router, ipath, interface, method, outcome)
        try:
            texts = self._texts[key]
        except (KeyError, TypeError):  # new, or a value that cannot be a key
            texts = (_fit(initiator, LIMITS["initiator"]), None if org is None else _fit(org, LIMITS["org"]),
                     _fit(entry_router, LIMITS["entry_router"]), _fit(ipath, LIMITS["ipath"]),
                     _fit(interface, LIMITS["interface"]), _fit(method, LIMITS["method"]),
                     _fit(outcome, LIMITS["outcome"]))
            if texts == key:
                if len(self._texts) >= self.size:
                    self._texts.clear()
                self._texts[key] = texts
        packed = pack_args(args)
        if packed is None:
            digest = UNENCODABLE_DIGEST
        elif len(packed) > 256:
            digest = hashlib.sha256(packed).hexdigest()
        else:
            known = self._digests.get(packed)
            if known is None:
                if len(self._digests) >= self.size:
                    self._digests.clear()
                known = self._digests[packed] = hashlib.sha256(packed).hexdigest()
            digest = known
        if block is not None and (not isinstance(block, int) or isinstance(block, bool) or not 0 <= block < 1 << 63):
            block = None
        when = float(time)
        return (when if math.isfinite(when) else 0.0, texts[0], texts[1], texts[2], texts[3], texts[4], texts[5],
                digest, texts[6], None if tx_hash is None else _fit(tx_hash, LIMITS["tx_hash"]), block, path,
                seal_plaintext(packed) if self.seal else None)


def make_entry(*, time: float, initiator: str, org: str | None, entry_router: str, ipath: str, interface: str,
               method: str, args: Any, outcome: str, tx_hash: str | None = None, block: int | None = None,
               path: Sequence[str] = (), sealer: Sealer | None = None) -> AuditEntry:
    """Clip every field to :data:`LIMITS`, digest (and seal, with a ``sealer``) the arguments."""
    fields = pending_entry(time, initiator, org, entry_router, ipath, interface, method, args, outcome, tx_hash,
                           block, clip_path(path), sealer is not None)
    plain = fields[12]
    return AuditEntry(*fields[:12], sealed=None if sealer is None or plain is None else sealer.seal(plain))


#: msgpack's str 8 header for the 64 hex digits of ``prev_hash``, the last item of :func:`encode_record`'s list.
_PREV_HEADER = b"\xd9\x40"


def link_pending(head: Head, entries: Sequence[Pending], sealer: Sealer | None,
                 path_column: Callable[[tuple[str, ...]], Any]) -> list[tuple[Any, ...]]:
    """Chain a batch onto ``head`` in one pass: each entry's row in :class:`AuditRecord` field order (``seq`` ...
    ``hash``), its path given as ``path_column(path)`` (the store's column form), sealed with ``sealer`` when the
    entry carries a plaintext. The hash is :func:`record_hash`'s, computed from the same msgpack encoding:
    everything but ``prev_hash`` is packed as a 14-item list and then completed to the 15-item one (the array
    header is one byte either way); ``test_audit.BatchTest`` holds the two to the same records."""
    seq, prev = head
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    packb = msgpack.packb
    sha256 = hashlib.sha256
    for (when, initiator, org, entry_router, ipath, interface, method, digest, outcome, tx_hash, block, path,
         plain) in entries:
        seq += 1
        sealed = None if sealer is None or plain is None else sealer.seal(plain)
        body = packb([seq, when, initiator, org, entry_router, ipath, interface, method, digest, outcome, tx_hash,
                      block, path, sealed], use_bin_type=True)
        if len(prev) == 64 and prev.isascii():  # always, but for a head read from a file edited by hand
            this = sha256(RECORD_CONTEXT + b"\x9f" + body[1:] + _PREV_HEADER + prev.encode()).hexdigest()
        else:
            this = sha256(RECORD_CONTEXT + b"\x9f" + body[1:] + packb(prev, use_bin_type=True)).hexdigest()
        append((seq, when, initiator, org, entry_router, ipath, interface, method, digest, outcome, tx_hash, block,
                path_column(path), sealed, prev, this))
        prev = this
    return rows


class AuditChain:
    """Assigns sequence numbers and links records; remembers only the head, so it costs nothing as the log grows.

    ``head`` continues an existing log (the last durable record's (seq, hash)); None starts a new one at seq 1.
    """

    def __init__(self, router_id: str, head: Head | None = None, sealer: Sealer | None = None) -> None:
        self.router_id = router_id
        self.sealer = sealer
        self.reset(head)

    def reset(self, head: Head | None) -> None:
        """Continue from ``head`` (the store does this when a batch could not be written)."""
        self._seq, self._hash = head if head is not None else (0, genesis_hash(self.router_id))

    def head(self) -> Head:
        """(seq, hash) of the last record: what a router publishes so that its log's tail can be checked."""
        return self._seq, self._hash

    def append(self, *, time: float, initiator: str, org: str | None, entry_router: str, ipath: str,
               interface: str, method: str, args: Any, outcome: str, tx_hash: str | None = None,
               block: int | None = None, path: Sequence[str] = ()) -> AuditRecord:
        """Record one request (clipped, digested, sealed with the chain's sealer) as the next link."""
        return self.append_entry(make_entry(
            time=time, initiator=initiator, org=org, entry_router=entry_router, ipath=ipath, interface=interface,
            method=method, args=args, outcome=outcome, tx_hash=tx_hash, block=block, path=path, sealer=self.sealer))

    def append_entry(self, entry: AuditEntry) -> AuditRecord:
        seq = self._seq + 1
        prev = self._hash
        digest = record_hash(seq, entry, prev)
        self._seq, self._hash = seq, digest
        return AuditRecord(seq, entry.time, entry.initiator, entry.org, entry.entry_router, entry.ipath,
                           entry.interface, entry.method, entry.args_digest, entry.outcome, entry.tx_hash,
                           entry.block, entry.path, entry.sealed, prev, digest)

    def verify(self, records: Iterable[AuditRecord], expected_head: Head | None = None) -> VerifyReport:
        return verify_records(records, self.router_id, expected_head)


def verify_records(records: Iterable[AuditRecord], router_id: str, expected_head: Head | None = None) -> VerifyReport:
    """Check a whole log from seq 1, in order: every seq is the one expected, every ``prev_hash`` is the hash of
    the record before (the genesis value for seq 1), every ``hash`` recomputes. Streams: memory stays constant.

    With ``expected_head`` (a head published earlier), also checks that the record of that seq is still there with
    that hash: a log cut short or rewritten since fails here. Records past the head (appended since) are fine."""
    expected_seq, prev = 1, genesis_hash(router_id)
    count = 0
    head_seen = False
    for record in records:
        if record.seq != expected_seq:
            what = ("a record is missing or the records are out of order" if record.seq > expected_seq
                    else "a record is inserted, repeated or out of order")
            return VerifyReport(False, count, expected_seq, f"seq {expected_seq} expected, found {record.seq}: {what}")
        if record.prev_hash != prev:
            return VerifyReport(False, count, expected_seq,
                                f"record {expected_seq} does not link to the record before it (prev_hash differs)")
        if record_hash(record.seq, record, record.prev_hash) != record.hash:
            return VerifyReport(False, count, expected_seq,
                                f"record {expected_seq} was altered (its hash does not match its content)")
        if expected_head is not None and record.seq == expected_head[0]:
            if record.hash != expected_head[1]:
                return VerifyReport(False, count, expected_seq,
                                    f"record {expected_seq} is not the one anchored (hash differs from the head)")
            head_seen = True
        count += 1
        prev = record.hash
        expected_seq += 1
    if expected_head is not None and expected_head[0] > 0 and not head_seen:
        return VerifyReport(False, count, expected_seq,
                            f"the log ends at seq {expected_seq - 1} but the anchored head is seq {expected_head[0]}: "
                            "its tail was cut off")
    return VerifyReport(True, count, None, "ok")


# -- sealing ---------------------------------------------------------------------------------------------------------


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _ecdh_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=SEAL_CONTEXT + ephemeral + recipient).derive(shared)


def check_regulator_key(key: Any) -> PublicKey:
    """The key if it can be sealed to (EC on P-256, or RSA of at least 2048 bits), else :class:`SealError`."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise SealError(f"regulator key is EC on {key.curve.name}; sealing needs P-256 (secp256r1) or RSA")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise SealError(f"regulator RSA key has {key.key_size} bits; at least 2048 are needed")
        return key
    raise SealError(f"regulator key of type {type(key).__name__} cannot be sealed to (use EC P-256 or RSA)")


class Sealer:
    """Seals arguments to one regulator public key. Holds the current ephemeral key (or data key) and its AES-GCM
    context, drawn anew every ``rotate_after`` seals."""

    def __init__(self, regulator: PublicKey, rotate_after: int = SEAL_ROTATE_AFTER) -> None:
        self.regulator = check_regulator_key(regulator)
        self.rotate_after = max(1, rotate_after)
        self._left = 0
        self._header = b""
        self._aead: AESGCM | None = None

    def _rotate(self) -> None:
        if isinstance(self.regulator, ec.EllipticCurvePublicKey):
            ephemeral = ec.generate_private_key(ec.SECP256R1())
            point = _point(ephemeral.public_key())
            key = _ecdh_key(ephemeral.exchange(ec.ECDH(), self.regulator), point, _point(self.regulator))
            scheme, material = _SCHEME_ECDH_P256, point
        else:
            key = AESGCM.generate_key(bit_length=256)
            scheme, material = _SCHEME_RSA_OAEP, self.regulator.encrypt(key, _OAEP)
        self._header = struct.pack(">BBH", _SEAL_VERSION, scheme, len(material)) + material
        self._aead = AESGCM(key)
        self._left = self.rotate_after

    def seal(self, plaintext: bytes) -> bytes:
        """``version(1) scheme(1) len(2, big-endian) key-material nonce(12) AES-GCM(ciphertext || tag(16))``; the
        AES-GCM associated data is :data:`SEAL_CONTEXT` plus everything before the nonce. Key material: the
        ephemeral P-256 point, uncompressed (scheme 1), or the RSA-OAEP-SHA256 wrapped data key (scheme 2)."""
        if self._left <= 0:
            self._rotate()
        self._left -= 1
        assert self._aead is not None
        nonce = os.urandom(12)
        return self._header + nonce + self._aead.encrypt(nonce, plaintext, SEAL_CONTEXT + self._header)

    def seal_args(self, packed: bytes | None) -> bytes:
        """Seal packed arguments (:func:`pack_args`): whole up to :data:`MAX_SEALED_ARGS` bytes, else clipped."""
        return self.seal(seal_plaintext(packed))


def seal_plaintext(packed: bytes | None) -> bytes:
    """What a seal of packed arguments holds (:func:`open_sealed` reads it): a form byte, then the arguments whole up
    to :data:`MAX_SEALED_ARGS` bytes, else their size and first :data:`MAX_SEALED_ARGS` bytes. Bounded, so that a
    record waiting for its seal holds no more than that."""
    if packed is None:
        packed = b""  # unencodable: the digest says so; nothing to seal
    if len(packed) <= MAX_SEALED_ARGS:
        return bytes((_PLAIN_WHOLE,)) + packed
    return bytes((_PLAIN_CLIPPED,)) + struct.pack(">Q", len(packed)) + packed[:MAX_SEALED_ARGS]


def open_sealed_bytes(private_key: PrivateKey, sealed: bytes) -> bytes:
    """The plaintext of a seal (:meth:`Sealer.seal`); :class:`SealError` for a wrong key or an altered blob."""
    if len(sealed) < 4:
        raise SealError("sealed blob is too short")
    version, scheme, size = struct.unpack(">BBH", sealed[:4])
    if version != _SEAL_VERSION:
        raise SealError(f"unknown seal version {version}")
    header_end = 4 + size
    if len(sealed) < header_end + 12 + 16:
        raise SealError("sealed blob is truncated")
    material = sealed[4:header_end]
    if scheme == _SCHEME_ECDH_P256:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise SealError("this record was sealed to an EC key; the key given is RSA")
        try:
            ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(private_key.curve, material)
            shared = private_key.exchange(ec.ECDH(), ephemeral)
        except ValueError as exc:
            raise SealError(f"sealed blob holds no usable ephemeral key for this key's curve ({exc})") from None
        key = _ecdh_key(shared, material, _point(private_key.public_key()))
    elif scheme == _SCHEME_RSA_OAEP:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise SealError("this record was sealed to an RSA key; the key given is EC")
        try:
            key = private_key.decrypt(material, _OAEP)
        except ValueError:
            raise SealError("the data key does not decrypt: the record was sealed to another key") from None
        if len(key) != 32:
            raise SealError("the wrapped data key has the wrong length")
    else:
        raise SealError(f"unknown seal scheme {scheme}")
    nonce = sealed[header_end:header_end + 12]
    try:
        return AESGCM(key).decrypt(nonce, sealed[header_end + 12:], SEAL_CONTEXT + sealed[:header_end])
    except InvalidTag:
        raise SealError("the seal does not open: sealed to another key, or altered") from None


def open_sealed(private_key: PrivateKey, sealed: bytes) -> Any:
    """The regulator's side: the arguments sealed in a record (as msgpack decodes them), or :class:`ClippedArgs`
    when they were too large to seal whole. Their :func:`pack_args` digest equals the record's ``args_digest``."""
    plain = open_sealed_bytes(private_key, sealed)
    if plain[:1] == bytes((_PLAIN_CLIPPED,)) and len(plain) >= 9:
        (size,) = struct.unpack(">Q", plain[1:9])
        return ClippedArgs(size, plain[9:])
    if plain[:1] != bytes((_PLAIN_WHOLE,)):
        raise SealError("sealed plaintext has an unknown form")
    if len(plain) == 1:
        return None  # the arguments could not be encoded at all (see UNENCODABLE_DIGEST)
    try:
        return msgpack.unpackb(plain[1:], raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise SealError(f"sealed arguments do not decode ({type(exc).__name__})") from None
