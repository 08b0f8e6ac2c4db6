"""Router records: what one router tells the whole network about itself, signed so that relays cannot lie.

A :class:`RouterRecord` says which zones, chains and resources a router serves and how good its links are. It
travels far beyond the router's own peers (every router relays every record), so the receiver cannot rely on the
TLS link for authenticity: the record is signed by the origin's router certificate, and the certificate chain rides
along with it (:class:`SignedRecord`). :class:`RecordVerifier` accepts a record only when

* the chain leads to one of our trust roots (checked by OpenSSL exactly as for a TLS link, so a router that may link
  may also gossip, and the other way round),
* the record's ``router_id`` is a DNS subjectAltName of the leaf (the rule the link handshake applies to HELLO),
* the signature over the exact body bytes checks with the leaf's key.

The verified leaf also says which chains the router may serve (the serves patterns of its certificate extension,
wecross.pki.serves): :meth:`RecordVerifier.trusted_leaf` hands them out with the leaf's key, and the directory
ignores chain claims they do not cover.

The body is a canonical msgpack array (fixed field order, sorted collections), so one record has exactly one
encoding and decoding can insist on it: a body that decodes but would not re-encode to the same bytes is refused.

Nothing here does I/O or reads a clock on its own; :class:`RecordVerifier` takes its clock as an argument.

Why one long module: the field rules, the canonical encoding, signing and verification are one contract (what a
signer may produce is exactly what a verifier accepts); kept together, a change to one side cannot miss the other.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NoReturn, Protocol

import msgpack
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto
from service_identity.hazmat import DNSPattern

from wecross.ipath import IPath, IPathError
from wecross.pki.authority import InvalidNameError, PrivateKey, common_name, dns_names, public_key_der
from wecross.pki.authority import validate_router_id as _validate_router_id
from wecross.pki.names import dns_patterns, patterns_match, router_id_mismatch
from wecross.pki.serves import NO_AUTHORITY, ChainAuthority, serves_patterns

__all__ = [
    "DEFAULT_RECORD_LIMITS",
    "FORMAT_VERSION",
    "MAX_TTL",
    "REASONS",
    "SIGNATURE_CONTEXT",
    "ChainInfo",
    "LinkInfo",
    "RecordError",
    "RecordLimits",
    "RecordSigner",
    "RecordVerifier",
    "ResourceEntry",
    "RouterRecord",
    "SignedRecord",
    "TrustedLeaf",
    "Version",
    "check_limits",
    "id_matches_names",
    "leaf_key_der",
]

#: First element of every record body. A reader refuses other formats: it could not re-encode them canonically.
FORMAT_VERSION = 1
#: Prefixed to the body before signing, so a record signature can never pass for a signature made with the same
#: key in another protocol (or the other way round).
SIGNATURE_CONTEXT = b"wecross-router-record-v1\x00"
#: Longest lifetime a record may ask for, in seconds: a router that dies must vanish from every directory in time.
MAX_TTL = 7 * 24 * 3600.0
#: Largest unsigned 64-bit integer (epochs, sequence numbers, heights, flap counts).
U64_MAX = 2**64 - 1
#: Upper bound on short name fields (chain types, kinds, method names, genesis hashes, listen addresses).
NAME_MAX = 256

#: (epoch, seq): compared as a tuple, so a restarted router (larger epoch) beats any seq of its former life.
Version = tuple[int, int]

#: Every reason code, with what it means; used as counter labels by the directory and in log lines.
REASONS: dict[str, str] = {
    "malformed": "bytes that are not msgpack, or not shaped like a signed record",
    "schema": "a record field has the wrong type or an invalid value, or the body is not in canonical form",
    "signature": "the signature does not match the body and the signer's key",
    "certificate": "the certificate chain is unreadable or does not lead to a trusted root",
    "identity": "the record's router id is not a DNS name of the signing certificate",
    "too_large": "the record or one of its parts exceeds a RecordLimits bound",
    "expired_cert": "a certificate of the chain is expired or not yet valid",
    "revoked": "a certificate of the chain is on the revocation list (wecross.pki.revocation)",
}


class RecordError(ValueError):
    """A record that cannot be accepted (or built); ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            # A typo would silently create a new counter label; fail where the bug is.
            raise ValueError(f"unknown RecordError reason {reason!r}; expected one of {sorted(REASONS)}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"RecordError({self.reason!r}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class RecordLimits:
    """Bounds on what a received record may make us allocate; a record beyond them is refused as 'too_large'.

    ``max_blob`` bounds the whole signed blob (body, signature and certificates) in bytes.
    """

    max_blob: int = 1024 * 1024
    max_zones: int = 64
    max_chains: int = 256
    max_resources: int = 4096
    max_links: int = 1024
    max_methods: int = 256
    max_text: int = 4096
    max_certs: int = 8
    max_cert_bytes: int = 16 * 1024
    max_signature: int = 1024

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"RecordLimits.{spec.name} must be a positive integer, got {value!r}")


DEFAULT_RECORD_LIMITS = RecordLimits()


# --------------------------------------------------------------------------------------------------- field rules

#: A zone or chain name: the iPath part rule (see wecross.ipath), since both end up in iPaths.
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


def _show(value: Any) -> str:
    """A short description of a rejected value; it may come from a hostile peer, so never print it whole."""
    kind = type(value).__name__
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"{kind} of {len(value)} items"
    if isinstance(value, (str, bytes)):
        return f"{kind} {value[:40]!r}" + ("..." if len(value) > 40 else "")
    return f"{kind} {repr(value)[:60]}"


def _schema(where: str, problem: str) -> NoReturn:
    raise RecordError("schema", f"{where}: {problem}")


def _too_large(where: str, problem: str) -> NoReturn:
    raise RecordError("too_large", f"{where}: {problem}")


def _u64(value: Any, where: str) -> None:
    # type() rather than isinstance(): True is not a sequence number.
    if type(value) is not int or not 0 <= value <= U64_MAX:
        _schema(where, f"expected an integer from 0 to 2**64-1, got {_show(value)}")


def _real(value: Any, where: str, low: float, high: float) -> float:
    """A finite float in [low, high]; ints are taken (as floats) so callers may write ``srtt_ms=0``."""
    if type(value) is int:
        value = float(value)
    if type(value) is not float or not math.isfinite(value) or not low <= value <= high:
        _schema(where, f"expected a finite number from {low} to {high}, got {_show(value)}")
    return value


def _utf8(value: str, where: str) -> None:
    # Lone surrogates are valid str but have no UTF-8 form: msgpack could not encode the record at all.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _schema(where, "string is not encodable as UTF-8")


def _name(value: Any, where: str) -> None:
    if type(value) is not str or not value or len(value) > NAME_MAX:
        _schema(where, f"expected a non-empty string of at most {NAME_MAX} characters, got {_show(value)}")
    _utf8(value, where)


def _short(value: Any, where: str) -> None:
    if type(value) is not str or len(value) > NAME_MAX:
        _schema(where, f"expected a string of at most {NAME_MAX} characters, got {_show(value)}")
    _utf8(value, where)


def _router_id(value: Any, where: str) -> None:
    if type(value) is not str:
        _schema(where, f"expected a router id, got {_show(value)}")
    try:
        _validate_router_id(value)
    except InvalidNameError as exc:
        _schema(where, str(exc))


def _part(value: Any, where: str) -> None:
    if type(value) is not str or not _PART.match(value):
        _schema(where, f"expected 1-64 letters, digits, '_' or '-' starting with a letter or digit, got {_show(value)}")


def _chain_path(value: Any, where: str) -> None:
    if type(value) is not str:
        _schema(where, f"expected 'zone.chain', got {_show(value)}")
    pieces = value.split(".")
    if len(pieces) != 2 or not all(_PART.match(piece) for piece in pieces):
        _schema(where, f"expected 'zone.chain' (each part 1-64 letters, digits, '_' or '-'), got {_show(value)}")


def _listen(value: Any, where: str) -> None:
    _short(value, where)
    if not value:
        return
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit() and len(port) <= 5) or not 0 < int(port) < 65536:
        _schema(where, f"expected 'host:port' or an empty string, got {_show(value)}")


def _sorted_unique(items: Iterable[Any], key: Callable[[Any], str], where: str) -> tuple[Any, ...]:
    ordered = tuple(sorted(items, key=key))
    for before, after in itertools.pairwise(ordered):
        if key(before) == key(after):
            _schema(where, f"{key(after)!r} appears twice")
    return ordered


def _as_tuple(value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, (tuple, list)):
        _schema(where, f"expected a sequence, got {_show(value)}")
    return tuple(value)


# --------------------------------------------------------------------------------------------------- the record


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """One of the router's links as it measures it; the routing graph weighs edges with these."""

    peer: str
    srtt_ms: float
    loss: float  # fraction of heartbeats lost, 0..1
    bandwidth_bps: float  # 0 when unknown
    flaps: int  # times the link went down recently

    def __post_init__(self) -> None:
        _router_id(self.peer, "LinkInfo.peer")
        object.__setattr__(self, "srtt_ms", _real(self.srtt_ms, "LinkInfo.srtt_ms", 0.0, math.inf))
        object.__setattr__(self, "loss", _real(self.loss, "LinkInfo.loss", 0.0, 1.0))
        object.__setattr__(self, "bandwidth_bps", _real(self.bandwidth_bps, "LinkInfo.bandwidth_bps", 0.0, math.inf))
        _u64(self.flaps, "LinkInfo.flaps")


@dataclass(frozen=True, slots=True)
class ChainInfo:
    """One chain the router serves. Two routers claiming one path with different genesis hashes is a clash."""

    path: str  # "zone.chain"
    chain_type: str
    height: int
    genesis_hash: str  # empty when the stub does not know it

    def __post_init__(self) -> None:
        _chain_path(self.path, "ChainInfo.path")
        _name(self.chain_type, "ChainInfo.chain_type")
        _u64(self.height, "ChainInfo.height")
        _short(self.genesis_hash, "ChainInfo.genesis_hash")


@dataclass(frozen=True, slots=True)
class ResourceEntry:
    """One resource the router serves, with its methods (name -> description).

    ``methods`` is copied into a new dict sorted by name: that is its canonical order on the wire. Treat it as
    read-only (the dataclass is frozen, the dict cannot be).
    """

    ipath: str  # "zone.chain.resource"
    kind: str
    methods: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if type(self.ipath) is not str:
            _schema("ResourceEntry.ipath", f"expected 'zone.chain.resource', got {_show(self.ipath)}")
        try:
            IPath.parse(self.ipath)
        except IPathError as exc:
            _schema("ResourceEntry.ipath", str(exc))
        _name(self.kind, "ResourceEntry.kind")
        if not isinstance(self.methods, Mapping):
            _schema("ResourceEntry.methods", f"expected a map of method name to description, got {_show(self.methods)}")
        for method, description in self.methods.items():
            _name(method, "ResourceEntry.methods key")
            if type(description) is not str:
                _schema(f"ResourceEntry.methods[{method!r}]", f"expected a string, got {_show(description)}")
            _utf8(description, f"ResourceEntry.methods[{method!r}]")
        object.__setattr__(self, "methods", dict(sorted(self.methods.items())))

    def __hash__(self) -> int:
        return hash((self.ipath, self.kind, tuple(self.methods.items())))


@dataclass(frozen=True, slots=True)
class RouterRecord:
    """Everything one router tells the network about itself, at one version.

    Collections are stored sorted (zones by name, chains by path, resources by iPath, links by peer) whatever
    order they are given in, and duplicates are refused: that is what makes the encoding canonical.
    ``ttl`` (seconds) is how long a receiver keeps the record without hearing a newer one; the origin re-signs
    well within it even when nothing changed.
    """

    router_id: str
    epoch: int
    seq: int
    zones: tuple[str, ...]
    transit: bool
    listen: str
    chains: tuple[ChainInfo, ...]
    resources: tuple[ResourceEntry, ...]
    links: tuple[LinkInfo, ...]
    ttl: float

    def __post_init__(self) -> None:
        _router_id(self.router_id, "RouterRecord.router_id")
        _u64(self.epoch, "RouterRecord.epoch")
        _u64(self.seq, "RouterRecord.seq")
        zones = _as_tuple(self.zones, "RouterRecord.zones")
        for zone in zones:
            _part(zone, "RouterRecord.zones")
        if type(self.transit) is not bool:
            _schema("RouterRecord.transit", f"expected true or false, got {_show(self.transit)}")
        _listen(self.listen, "RouterRecord.listen")
        for where, value, kind in (
            ("RouterRecord.chains", self.chains, ChainInfo),
            ("RouterRecord.resources", self.resources, ResourceEntry),
            ("RouterRecord.links", self.links, LinkInfo),
        ):
            for item in _as_tuple(value, where):
                if type(item) is not kind:
                    _schema(where, f"expected {kind.__name__} items, got {_show(item)}")
        ttl = _real(self.ttl, "RouterRecord.ttl", 0.0, MAX_TTL)
        if ttl <= 0.0:
            _schema("RouterRecord.ttl", "must be more than 0 seconds")
        object.__setattr__(self, "zones", _sorted_unique(zones, str, "RouterRecord.zones"))
        object.__setattr__(self, "chains", _sorted_unique(self.chains, _by_path, "RouterRecord.chains"))
        object.__setattr__(self, "resources", _sorted_unique(self.resources, _by_ipath, "RouterRecord.resources"))
        object.__setattr__(self, "links", _sorted_unique(self.links, _by_peer, "RouterRecord.links"))
        object.__setattr__(self, "ttl", ttl)

    @property
    def version(self) -> Version:
        """(epoch, seq); larger wins."""
        return (self.epoch, self.seq)

    def encode(self) -> bytes:
        """The canonical body: the bytes that are signed and that :meth:`decode` accepts back."""
        return bytes(msgpack.packb(_body(self), use_bin_type=True))

    @classmethod
    def decode(cls, data: bytes, limits: RecordLimits = DEFAULT_RECORD_LIMITS) -> RouterRecord:
        """Parse and check a body; raises :class:`RecordError` ('malformed', 'schema' or 'too_large') only."""
        if type(data) is not bytes:
            raise RecordError("malformed", f"record body must be bytes, got {_show(data)}")
        if len(data) > limits.max_blob:
            _too_large("record body", f"{len(data)} bytes exceed max_blob {limits.max_blob}")
        record = _from_body(_unpack(data, limits, "record body"), limits)
        if record.encode() != data:
            _schema("record body", "not in canonical form (unsorted or duplicate entries, or non-minimal encoding)")
        return record


def _by_path(chain: ChainInfo) -> str:
    return chain.path


def _by_ipath(resource: ResourceEntry) -> str:
    return resource.ipath


def _by_peer(link: LinkInfo) -> str:
    return link.peer


def _body(record: RouterRecord) -> list[Any]:
    return [
        FORMAT_VERSION,
        record.router_id,
        record.epoch,
        record.seq,
        list(record.zones),
        record.transit,
        record.listen,
        [[c.path, c.chain_type, c.height, c.genesis_hash] for c in record.chains],
        [[r.ipath, r.kind, r.methods] for r in record.resources],
        [[k.peer, k.srtt_ms, k.loss, k.bandwidth_bps, k.flaps] for k in record.links],
        record.ttl,
    ]


_BODY_FIELDS = 11


def _unpack(data: bytes, limits: RecordLimits, what: str) -> Any:
    """msgpack -> Python with msgpack's own length caps as a first guard; any failure becomes a RecordError."""
    widest = max(limits.max_resources, limits.max_links, limits.max_chains, limits.max_zones, limits.max_certs, 16)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_refuse_ext,
            max_str_len=4 * max(limits.max_text, NAME_MAX),
            max_bin_len=limits.max_blob,
            max_array_len=widest,
            max_map_len=limits.max_methods,
            max_ext_len=limits.max_blob,  # lets _refuse_ext name the problem
        )
    except RecordError:
        raise
    except Exception as exc:
        # msgpack reports its length caps as ValueError "... exceeds max_..._len(...)".
        if isinstance(exc, ValueError) and "exceeds max_" in str(exc):
            raise RecordError("too_large", f"{what}: {exc}") from None
        raise RecordError("malformed", f"{what} is not valid msgpack ({type(exc).__name__})") from None


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    raise RecordError("malformed", f"msgpack extension type {code} is not allowed in a record")


def _items(value: Any, width: int, where: str) -> list[list[Any]]:
    """The arrays of a list field, each checked to have ``width`` fields."""
    if type(value) is not list:
        _schema(where, f"expected an array, got {_show(value)}")
    for index, item in enumerate(value):
        if type(item) is not list or len(item) != width:
            _schema(f"{where}[{index}]", f"expected an array of {width} fields, got {_show(item)}")
    return value


def _from_body(body: Any, limits: RecordLimits) -> RouterRecord:
    if type(body) is not list or not body:
        raise RecordError("malformed", f"record body must be a msgpack array, got {_show(body)}")
    if type(body[0]) is not int or body[0] != FORMAT_VERSION:
        _schema("record body", f"record format {_show(body[0])} is not supported (this router reads {FORMAT_VERSION})")
    if len(body) != _BODY_FIELDS:
        _schema("record body", f"expected {_BODY_FIELDS} fields, got {len(body)}")
    _, router_id, epoch, seq, zones, transit, listen, chains, resources, links, ttl = body
    for where, value, bound, name in (
        ("zones", zones, limits.max_zones, "max_zones"),
        ("chains", chains, limits.max_chains, "max_chains"),
        ("resources", resources, limits.max_resources, "max_resources"),
        ("links", links, limits.max_links, "max_links"),
    ):
        if type(value) is not list:
            _schema(f"RouterRecord.{where}", f"expected an array, got {_show(value)}")
        if len(value) > bound:
            _too_large(f"RouterRecord.{where}", f"{len(value)} entries exceed {name} {bound}")
    built_resources = []
    for index, (ipath, kind, methods) in enumerate(_items(resources, 3, "RouterRecord.resources")):
        if type(methods) is not dict:
            _schema(f"RouterRecord.resources[{index}].methods", f"expected a map, got {_show(methods)}")
        built_resources.append(ResourceEntry(ipath, kind, methods))
    record = RouterRecord(
        router_id=router_id,
        epoch=epoch,
        seq=seq,
        zones=tuple(zones),
        transit=transit,
        listen=listen,
        chains=tuple(ChainInfo(*item) for item in _items(chains, 4, "RouterRecord.chains")),
        resources=tuple(built_resources),
        links=tuple(LinkInfo(*item) for item in _items(links, 5, "RouterRecord.links")),
        ttl=ttl,
    )
    check_limits(record, limits)
    return record


def check_limits(record: RouterRecord, limits: RecordLimits = DEFAULT_RECORD_LIMITS) -> None:
    """Raise RecordError('too_large') if ``record`` exceeds ``limits`` (the signer checks its own records too)."""
    for where, count, bound, name in (
        ("zones", len(record.zones), limits.max_zones, "max_zones"),
        ("chains", len(record.chains), limits.max_chains, "max_chains"),
        ("resources", len(record.resources), limits.max_resources, "max_resources"),
        ("links", len(record.links), limits.max_links, "max_links"),
    ):
        if count > bound:
            _too_large(f"RouterRecord.{where}", f"{count} entries exceed {name} {bound}")
    for resource in record.resources:
        if len(resource.methods) > limits.max_methods:
            count = len(resource.methods)
            _too_large(f"resource {resource.ipath!r}", f"{count} methods exceed max_methods {limits.max_methods}")
        for method, description in resource.methods.items():
            if len(description) > limits.max_text:
                _too_large(
                    f"resource {resource.ipath!r} method {method!r}",
                    f"description of {len(description)} characters exceeds max_text {limits.max_text}",
                )


# --------------------------------------------------------------------------------------------------- signed form


@dataclass(frozen=True, slots=True)
class SignedRecord:
    """A record with its exact body bytes, the origin's signature over them and its certificate chain (DER, leaf
    first, then intermediates; never needed: the root, which every verifier holds already).

    :meth:`from_bytes` only parses; whether the signature and chain hold is :class:`RecordVerifier`'s business.
    """

    record: RouterRecord
    body: bytes
    signature: bytes
    cert_chain: tuple[bytes, ...]
    #: The blob this was parsed from (None when built by signing): kept so a directory stores and resends that one
    #: object instead of a copy per holder.
    raw: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def router_id(self) -> str:
        return self.record.router_id

    @property
    def version(self) -> Version:
        return self.record.version

    @property
    def leaf_fingerprint(self) -> str:
        """SHA-256 of the leaf certificate's DER, lower-case hex (as PeerIdentity.fingerprint_sha256)."""
        return hashlib.sha256(self.cert_chain[0]).hexdigest()

    def to_bytes(self) -> bytes:
        """The blob that travels in GossipRecords.records: msgpack ``[body, signature, [der, ...]]``."""
        return bytes(msgpack.packb([self.body, self.signature, list(self.cert_chain)], use_bin_type=True))

    @classmethod
    def from_bytes(cls, blob: bytes, limits: RecordLimits = DEFAULT_RECORD_LIMITS) -> SignedRecord:
        """Parse a blob and decode its body; raises :class:`RecordError` only, whatever the bytes."""
        if type(blob) is not bytes:
            raise RecordError("malformed", f"signed record must be bytes, got {_show(blob)}")
        if len(blob) > limits.max_blob:
            _too_large("signed record", f"{len(blob)} bytes exceed max_blob {limits.max_blob}")
        outer = _unpack(blob, limits, "signed record")
        if type(outer) is not list or len(outer) != 3:
            raise RecordError("malformed", f"signed record must be [body, signature, certificates], got {_show(outer)}")
        body, signature, certs = outer
        if type(body) is not bytes or type(signature) is not bytes or type(certs) is not list:
            raise RecordError("malformed", "signed record must be [bytes, bytes, [bytes, ...]]")
        if not signature:
            raise RecordError("malformed", "signed record has an empty signature")
        if len(signature) > limits.max_signature:
            _too_large("signature", f"{len(signature)} bytes exceed max_signature {limits.max_signature}")
        if not certs:
            raise RecordError("malformed", "signed record carries no certificate")
        if len(certs) > limits.max_certs:
            _too_large("certificate chain", f"{len(certs)} certificates exceed max_certs {limits.max_certs}")
        for index, der in enumerate(certs):
            if type(der) is not bytes or not der:
                raise RecordError("malformed", f"certificate {index} must be non-empty bytes, got {_show(der)}")
            if len(der) > limits.max_cert_bytes:
                _too_large(f"certificate {index}", f"{len(der)} bytes exceed max_cert_bytes {limits.max_cert_bytes}")
        record = RouterRecord.decode(body, limits)
        return cls(record, body, signature, tuple(certs), blob)


# --------------------------------------------------------------------------------------------------- identity


def id_matches_names(names: Iterable[str], router_id: str) -> bool:
    """Whether ``router_id`` is one of the DNS ``names``: the link handshake's rule (wecross.pki.names)."""
    return router_id_mismatch(names, router_id) is None


def leaf_key_der(signed: SignedRecord) -> bytes:
    """DER SubjectPublicKeyInfo of the signing key: "was this signed by the same key as that?" without trusting
    the certificate's other fields. Raises RecordError('certificate') for an unreadable leaf."""
    try:
        return public_key_der(x509.load_der_x509_certificate(signed.cert_chain[0]))
    except (ValueError, TypeError) as exc:
        raise RecordError("certificate", f"leaf certificate is unreadable ({exc})") from None


# --------------------------------------------------------------------------------------------------- signing


class _TLSMaterialLike(Protocol):
    """What :meth:`RecordSigner.from_material` reads (wecross.peer.tls.TLSMaterial, without importing Twisted)."""

    @property
    def private_key(self) -> Any: ...

    @property
    def certificate(self) -> Any: ...

    @property
    def chain(self) -> Sequence[Any]: ...


def _to_cryptography(obj: Any) -> Any:
    """pyOpenSSL X509/PKey -> cryptography object; cryptography objects pass through."""
    for name in ("to_cryptography", "to_cryptography_key"):
        convert = getattr(obj, name, None)
        if callable(convert):
            return convert()
    return obj


#: RSA signatures are RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (fixed, so verifiers need no
#: salt-length discovery). PKCS#1 v1.5 is not accepted.
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def _sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        # RFC 6979: no per-signature randomness to get wrong, and one body always gives one blob (a simulated
        # network then repeats bit for bit).
        return key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    return key.sign(data, _PSS, hashes.SHA256())


class RecordSigner:
    """Signs this router's records with its router key: ECDSA-SHA256 for EC keys, RSA-PSS-SHA256 for RSA keys.

    ``cert_chain`` is leaf first, then the intermediates (the root is left out: every verifier holds it).
    """

    def __init__(self, private_key: PrivateKey, cert_chain: Sequence[x509.Certificate]) -> None:
        if not isinstance(private_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise ValueError(f"record signing needs an EC or RSA key, got {type(private_key).__name__}")
        chain = tuple(cert_chain)
        if not chain or not all(isinstance(cert, x509.Certificate) for cert in chain):
            raise ValueError("record signing needs the certificate chain (leaf first) as x509.Certificate objects")
        if public_key_der(private_key) != public_key_der(chain[0]):
            raise ValueError(f"the private key does not belong to the certificate {common_name(chain[0])!r}")
        self._key = private_key
        self._leaf = chain[0]
        self._names = dns_names(chain[0])
        self._ders = tuple(cert.public_bytes(_DER) for cert in chain)

    @classmethod
    def from_material(cls, material: _TLSMaterialLike) -> RecordSigner:
        """The router's TLS key and chain are its record-signing key and chain."""
        key = _to_cryptography(material.private_key)
        leaf = _to_cryptography(material.certificate)
        return cls(key, (leaf, *(_to_cryptography(cert) for cert in material.chain)))

    @property
    def leaf(self) -> x509.Certificate:
        return self._leaf

    @property
    def router_ids(self) -> tuple[str, ...]:
        """The DNS names of the signing certificate: the router ids this signer may sign for."""
        return self._names

    def sign(self, record: RouterRecord, limits: RecordLimits = DEFAULT_RECORD_LIMITS) -> SignedRecord:
        """Sign ``record``. Refuses (ValueError) a router id the certificate does not name, and (RecordError
        'too_large') a record that peers with ``limits`` would refuse: either would only be dropped everywhere."""
        if not id_matches_names(self._names, record.router_id):
            shown = ", ".join(self._names) or "none"
            raise ValueError(f"cannot sign a record for {record.router_id!r}: the certificate is for [{shown}]")
        check_limits(record, limits)
        body = record.encode()
        return SignedRecord(record, body, _sign_bytes(self._key, SIGNATURE_CONTEXT + body), self._ders)


# --------------------------------------------------------------------------------------------------- verifying


_DER = Encoding.DER
_CODES = SSL.X509VerificationCodes
_DATE_CODES = frozenset({_CODES.ERR_CERT_HAS_EXPIRED, _CODES.ERR_CERT_NOT_YET_VALID})


@dataclass(frozen=True, slots=True)
class TrustedLeaf:
    """What a successful chain verification proved about one leaf, reused until the chain's dates run out.

    ``authority`` holds the chains the CA allows this router to serve (the leaf's serves patterns): what a record
    signed with this leaf may claim and be believed.
    """

    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    names: tuple[str, ...]
    patterns: tuple[DNSPattern, ...]
    not_before: float  # latest notBefore of the verified chain (POSIX seconds)
    not_after: float  # earliest notAfter of the verified chain
    authority: ChainAuthority = NO_AUTHORITY

    @property
    def serves(self) -> tuple[str, ...]:
        """The certificate's serves patterns, sorted."""
        return self.authority.patterns


_TrustedLeaf = TrustedLeaf  # the name it had while it was private


def _label(cert: x509.Certificate) -> str:
    return common_name(cert) or cert.subject.rfc4514_string() or "(no subject)"


class RecordVerifier:
    """Decides whether a signed record really comes from the router it names.

    Chain verification (OpenSSL, as for a TLS link) is the costly part and the same routers' records arrive again
    and again, so its result is kept per leaf (SHA-256 of the DER) in a bounded LRU cache, and reused only while
    ``now`` lies inside every certificate's validity. The identity and the signature are checked every time.
    ``now`` returns POSIX seconds (default: ``time.time``); certificate dates are wall-clock dates, so this is the
    one clock here that must be the real one (a simulator may pass its own).
    """

    def __init__(
        self,
        trust_roots: Sequence[x509.Certificate],
        now: Callable[[], float] | None = None,
        *,
        limits: RecordLimits = DEFAULT_RECORD_LIMITS,
        cache_size: int = 1024,
    ) -> None:
        roots = tuple(trust_roots)
        if not roots:
            raise ValueError("a record verifier needs at least one trust root")
        if type(cache_size) is not int or cache_size < 1:
            raise ValueError(f"cache_size must be a positive integer, got {cache_size!r}")
        self.limits = limits
        self._now = now if now is not None else time.time
        self._roots = tuple(crypto.X509.from_cryptography(root) for root in roots)
        self._cache: OrderedDict[bytes, TrustedLeaf] = OrderedDict()
        self._cache_size = cache_size
        self.cache_hits = 0
        self.cache_misses = 0

    def clear_cache(self) -> None:
        """Forget every verified chain (for instance after the trust roots' policy changed, or a revocation)."""
        self._cache.clear()

    def verify(self, blob: bytes) -> SignedRecord:
        """Parse and verify a blob; returns the SignedRecord or raises :class:`RecordError` (never anything else)."""
        return self.verify_signed(SignedRecord.from_bytes(blob, self.limits))

    def trusted_leaf(self, signed: SignedRecord) -> TrustedLeaf:
        """What the (verified) certificate chain of ``signed`` proves: the leaf's key, names and chain authority.

        Call it after :meth:`verify_signed` accepted the record: it comes from the same cache, so it costs a hash of
        the leaf. It checks the chain (RecordError) when the cache has forgotten it; it does not check the record's
        identity or signature, which is :meth:`verify_signed`'s job.
        """
        return self._trusted_leaf(signed.cert_chain)

    def verify_chain(self, ders: tuple[bytes, ...]) -> TrustedLeaf:
        """Any certificate chain (leaf first, DER) checked against the CA like a record's, from the same cache: for
        a user's certificate that came with a signed operation (wecross.attest.ClientProof). RecordError when it
        does not chain to the CA, is a CA certificate or may not sign."""
        if not ders:
            raise RecordError("certificate", "no certificate")
        return self._trusted_leaf(tuple(ders))

    def verify_signed(self, signed: SignedRecord) -> SignedRecord:
        """Verify an already parsed record (see :meth:`verify`)."""
        if signed.record.encode() != signed.body:
            # from_bytes guarantees this; a SignedRecord assembled by hand might pair a body with another record.
            raise RecordError("signature", f"record of {signed.router_id!r} does not match the signed body")
        trusted = self._trusted_leaf(signed.cert_chain)
        if not patterns_match(trusted.patterns, signed.router_id):
            shown = ", ".join(trusted.names) or "none"
            raise RecordError(
                "identity",
                f"record claims router id {signed.router_id!r} but its certificate is for DNS names [{shown}]",
            )
        try:
            message = SIGNATURE_CONTEXT + signed.body
            key = trusted.public_key
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signed.signature, message, ec.ECDSA(hashes.SHA256()))
            else:
                key.verify(signed.signature, message, _PSS, hashes.SHA256())
        except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
            raise RecordError(
                "signature", f"signature of {signed.router_id!r}'s record {signed.version} does not match its body"
            ) from None
        return signed

    def _trusted_leaf(self, ders: tuple[bytes, ...]) -> TrustedLeaf:
        now = self._now()
        key = hashlib.sha256(ders[0]).digest()
        cached = self._cache.get(key)
        if cached is not None:
            if cached.not_before <= now <= cached.not_after:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return cached
            del self._cache[key]  # dates ran out: verify again, which words the error precisely
        self.cache_misses += 1
        trusted = self._verify_chain(ders, now)
        self._cache[key] = trusted
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return trusted

    def _verify_chain(self, ders: tuple[bytes, ...], now: float) -> TrustedLeaf:
        try:
            return self._verify_chain_unguarded(ders, now)
        except RecordError:
            raise
        except (ValueError, TypeError, crypto.Error, SSL.Error, UnicodeError, UnsupportedAlgorithm) as exc:
            # Certificates that parse lazily can still fail on a malformed extension or key deep inside (a mutated
            # key's algorithm parameters: UnsupportedAlgorithm, found by the property tests).
            raise RecordError("certificate", f"certificate chain is unreadable ({type(exc).__name__}: {exc})") from None

    def _verify_chain_unguarded(self, ders: tuple[bytes, ...], now: float) -> TrustedLeaf:
        certs = []
        for index, der in enumerate(ders):
            try:
                certs.append(x509.load_der_x509_certificate(der))
            except ValueError:
                raise RecordError("certificate", f"certificate {index} of the chain is not valid DER") from None
        leaf = certs[0]
        try:
            constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is not None and constraints.ca:
            raise RecordError("certificate", f"{_label(leaf)!r} is a CA certificate, not a router certificate")
        try:
            usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.digital_signature:
            raise RecordError("certificate", f"{_label(leaf)!r} may not sign (keyUsage lacks digitalSignature)")
        public_key = leaf.public_key()
        if not isinstance(public_key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
            raise RecordError("certificate", f"{_label(leaf)!r} has an unsupported {type(public_key).__name__}")
        # A fresh store each time: OpenSSL keeps the first verification time set on a store and ignores later ones.
        store = crypto.X509Store()
        for root in self._roots:
            store.add_cert(root)
        store.set_time(datetime.datetime.fromtimestamp(now, datetime.UTC))
        context = crypto.X509StoreContext(
            store, crypto.X509.from_cryptography(leaf), [crypto.X509.from_cryptography(c) for c in certs[1:]]
        )
        try:
            verified = [c.to_cryptography() for c in context.get_verified_chain()]
        except crypto.X509StoreContextError as exc:
            code = exc.errors[0] if exc.errors else None
            at = _label(exc.certificate.to_cryptography()) if exc.certificate is not None else _label(leaf)
            reason = "expired_cert" if code in _DATE_CODES else "certificate"
            raise RecordError(reason, f"certificate chain refused: {exc} (at {at!r})") from None
        names = dns_names(leaf)
        return TrustedLeaf(
            public_key=public_key,
            names=names,
            patterns=dns_patterns(names),
            not_before=max(c.not_valid_before_utc.timestamp() for c in verified),
            not_after=min(c.not_valid_after_utc.timestamp() for c in verified),
            authority=ChainAuthority.of(serves_patterns(leaf)),
        )
