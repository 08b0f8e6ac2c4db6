"""The messages two routers exchange, with the rules every field must obey.

Each message is a frozen, slotted dataclass with explicit fields. On the wire its body is a msgpack array of those
fields in declaration order (no field names: they cost bytes and time on every frame, and the order is fixed by the
protocol version anyway).

Validation happens in two places and uses the same rules:

* when a message is constructed (``__post_init__``, against :data:`DEFAULT_LIMITS`), so a bug in the sending code
  fails where it is written instead of making the peer close the link;
* when a frame is decoded (against the decoder's limits), so nothing a peer sends reaches the router unchecked.

The checks are written out per message rather than derived from type hints at run time: a Request is encoded and
decoded for every hop of every call, and a generic reflective validator costs several times more per field.
Messages are treated as immutable values: the list and dict fields are not copied, so don't mutate them after
construction (a mutated message is encoded as it is, unchecked).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, make_dataclass
from operator import attrgetter
from typing import Any, ClassVar, NoReturn, TypeAlias, TypeVar

from wecross.wire.errors import WireError
from wecross.wire.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "HOP_LIMIT_MAX",
    "MESSAGE_TYPES",
    "NAME_MAX",
    "PROTOCOL_VERSION",
    "REQUEST_ID_LEN",
    "SUPPORTED_VERSIONS",
    "U64_MAX",
    "Bye",
    "Error",
    "Event",
    "GossipDigest",
    "GossipRecords",
    "GossipSummary",
    "Hello",
    "Message",
    "Ping",
    "Pong",
    "Request",
    "Response",
    "negotiate_version",
    "validate",
]

#: The version this code sends once a link has agreed on it.
PROTOCOL_VERSION = 1
#: Every envelope version this code can read and write, lowest first.
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)

#: Largest unsigned 64-bit integer (sequence numbers, epochs, heights, message ids).
U64_MAX = 2**64 - 1
#: msgpack integers cover -2**63 .. 2**64-1; free-form integers must fit.
I64_MIN = -(2**63)
#: Upper bound on the length of typed name fields (router ids, zones, features, op and method names...).
NAME_MAX = 256
#: Upper bound on Request.hop_limit (one byte, as in IP's TTL).
HOP_LIMIT_MAX = 255
#: Length of a request id (a UUID's worth of random bytes).
REQUEST_ID_LEN = 16
#: Longest Request.signature: an RSA-4096 signature (ECDSA P-256 signatures are about 72 bytes).
SIGNATURE_MAX = 512
#: Longest Request.client_auth: a user's certificate chain (a few certificates) with its signature.
CLIENT_AUTH_MAX = 16 * 1024
#: Protocol versions are small positive integers.
VERSION_MAX = 65535

_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------------------------------
# Field checks. Each raises WireError naming the message type and field; the happy path is a few type() tests.
# --------------------------------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """Describe a rejected value briefly: error messages end up in logs, and the value came from a peer.

    Containers are described by size only: their repr could be megabytes long or nested deeper than repr recurses.
    """
    kind = type(value).__name__
    if isinstance(value, (list, dict, tuple, set, frozenset)):
        return f"{kind} of {len(value)} items"
    if isinstance(value, (str, bytes, bytearray)):
        text = repr(value[:60])
        return f"{kind} {text}" + ("..." if len(value) > 60 else "")
    text = repr(value)
    return f"{kind} {text[:57]}..." if len(text) > 60 else f"{kind} {text}"


def _fail(reason: str, where: str, problem: str) -> NoReturn:
    raise WireError(reason, f"{where}: {problem}")


def _u64(value: Any, where: str) -> None:
    # type() rather than isinstance(): bool is an int subclass and True is not a sequence number.
    if type(value) is not int or value < 0 or value > U64_MAX:
        _fail("schema", where, f"expected an integer from 0 to 2**64-1, got {_show(value)}")


def _finite_float(value: Any, where: str) -> None:
    if type(value) is not float or not math.isfinite(value):
        _fail("schema", where, f"expected a finite float, got {_show(value)}")


def _name(value: Any, where: str) -> None:
    """A required short string: router ids, zone names, error codes."""
    if type(value) is not str or not value or len(value) > NAME_MAX:
        _fail("schema", where, f"expected a non-empty string of at most {NAME_MAX} characters, got {_show(value)}")


def _short(value: Any, where: str) -> None:
    """An optional short string (may be empty): ops, method names, addresses."""
    if type(value) is not str or len(value) > NAME_MAX:
        _fail("schema", where, f"expected a string of at most {NAME_MAX} characters, got {_show(value)}")


def _text(value: Any, limits: Limits, where: str) -> None:
    """Free text bounded only by Limits.max_str: messages, reasons, sender identities."""
    if type(value) is not str:
        _fail("schema", where, f"expected a string, got {_show(value)}")
    if len(value) > limits.max_str:
        _fail("limits", where, f"string of {len(value)} characters exceeds max_str {limits.max_str}")


def _request_id(value: Any, where: str, *, empty_ok: bool = False) -> None:
    if type(value) is not bytes or (len(value) != REQUEST_ID_LEN and not (empty_ok and not value)):
        allowed = f"{REQUEST_ID_LEN} bytes" + (" or empty bytes" if empty_ok else "")
        _fail("schema", where, f"expected {allowed}, got {_show(value)}")


def _ipath(value: Any, where: str) -> None:
    """A resource path: three non-empty dot-separated parts (``zone.chain.resource``)."""
    _name(value, where)
    pieces = value.split(".")
    if len(pieces) != 3 or not all(pieces):
        _fail("schema", where, f"expected 'zone.chain.resource', got {_show(value)}")


def _listen_address(value: Any, where: str) -> None:
    _short(value, where)
    if not value:
        return
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit() and len(port) <= 5) or not 0 < int(port) < 65536:
        _fail("schema", where, f"expected 'host:port' or an empty string, got {_show(value)}")


def _position(items: list[Any], item: Any) -> int:
    """Index of ``item`` in ``items`` by identity; only used to word an error, never on the happy path."""
    return next(i for i, candidate in enumerate(items) if candidate is item)


def _list_header(value: Any, limits: Limits, where: str) -> list[Any]:
    if type(value) is not list:
        _fail("schema", where, f"expected a list, got {_show(value)}")
    if len(value) > limits.max_list:
        _fail("limits", where, f"list of {len(value)} items exceeds max_list {limits.max_list}")
    return value


def _dict_header(value: Any, limits: Limits, where: str) -> dict[Any, Any]:
    if type(value) is not dict:
        _fail("schema", where, f"expected a map, got {_show(value)}")
    if len(value) > limits.max_map:
        _fail("limits", where, f"map of {len(value)} entries exceeds max_map {limits.max_map}")
    return value


def _names(value: Any, limits: Limits, where: str) -> None:
    """A list of required short strings (a path of router ids, zone names, features)."""
    for item in _list_header(value, limits, where):
        if type(item) is not str or not item or len(item) > NAME_MAX:
            _name(item, f"{where}[{_position(value, item)}]")


def _versions(value: Any, limits: Limits, where: str) -> None:
    if not _list_header(value, limits, where):
        _fail("schema", where, "expected at least one protocol version")
    for item in value:
        if type(item) is not int or not 0 < item <= VERSION_MAX:
            _fail("schema", f"{where}[{_position(value, item)}]", f"expected 1..{VERSION_MAX}, got {_show(item)}")


# Free-form values (Request.args, Response.result, Event.payload): msgpack's data model minus extension types, with
# str-only map keys, bounded nesting and sizes.

_FLAT_TYPES = frozenset({type(None), bool, float})


def _free_ok(value: Any, limits: Limits, enclosing: int) -> bool:
    """Whether one free-form value that sits inside ``enclosing`` containers passes every rule of :func:`_free`.

    The hot-path form of those rules (a RESPONSE carrying a read proof nests about fifteen containers, and it is
    checked twice per hop: built by the owner, decoded by the entry router). It walks the containers level by
    level in one call, with every leaf and header test inline, where the reference spends two calls per container
    (itself and its header check) and recurses. Each test here is the reference's test for the same value at the
    same depth (the level counter is the reference's ``enclosing``), so the two accept exactly the same values;
    ``test_free_walk_agrees_with_reference`` holds them to that. It only answers yes or no: the callers hand a
    refused value to :func:`_free`, which words the error.
    """
    kind = type(value)
    if kind is not list and kind is not dict:
        if kind is str:
            return len(value) <= limits.max_str
        if kind is int:
            return bool(I64_MIN <= value <= U64_MAX)
        if kind is bytes:
            return len(value) <= limits.max_bin
        return kind in _FLAT_TYPES
    max_str, max_bin, max_list, max_map = limits.max_str, limits.max_bin, limits.max_list, limits.max_map
    depth, max_depth = enclosing, limits.max_depth
    level: list[Any] = [value]
    while level:
        if depth >= max_depth:
            return False
        inner: list[Any] = []
        for container in level:
            if type(container) is list:
                if len(container) > max_list:
                    return False
                items = container
            else:
                if len(container) > max_map:
                    return False
                for key in container:
                    if type(key) is not str or len(key) > max_str:
                        return False
                items = container.values()
            for item in items:
                kind = type(item)
                if kind is str:
                    if len(item) > max_str:
                        return False
                elif kind is int:
                    if not I64_MIN <= item <= U64_MAX:
                        return False
                elif kind is list or kind is dict:
                    inner.append(item)
                elif kind is bytes:
                    if len(item) > max_bin:
                        return False
                elif kind not in _FLAT_TYPES:
                    return False
        level = inner
        depth += 1
    return True


def _free(value: Any, limits: Limits, where: str, enclosing: int) -> None:
    """The reference rules for one free-form value that sits inside ``enclosing`` containers (0 for a field's own
    value): says exactly what is wrong. Callers on the hot path ask :func:`_free_ok` first."""
    kind = type(value)
    if kind is str:
        if len(value) > limits.max_str:
            _fail("limits", where, f"string of {len(value)} characters exceeds max_str {limits.max_str}")
    elif kind is int:
        if value < I64_MIN or value > U64_MAX:
            _fail("schema", where, f"integer {value} does not fit in 64 bits")
    elif kind is bytes:
        if len(value) > limits.max_bin:
            _fail("limits", where, f"bytes of length {len(value)} exceed max_bin {limits.max_bin}")
    elif kind is list:
        if enclosing >= limits.max_depth:
            _fail("limits", where, f"nesting deeper than max_depth {limits.max_depth}")
        for item in _list_header(value, limits, where):
            _free(item, limits, where, enclosing + 1)
    elif kind is dict:
        if enclosing >= limits.max_depth:
            _fail("limits", where, f"nesting deeper than max_depth {limits.max_depth}")
        for key, item in _dict_header(value, limits, where).items():
            _free_key(key, limits, where)
            _free(item, limits, where, enclosing + 1)
    elif kind not in _FLAT_TYPES:
        _fail(
            "schema", where, f"{kind.__name__} is not a wire value (use None, bool, int, float, str, bytes, list, dict)"
        )


def _free_key(key: Any, limits: Limits, where: str) -> None:
    if type(key) is not str:
        _fail("schema", where, f"map keys must be strings, got {_show(key)}")
    if len(key) > limits.max_str:
        _fail("limits", where, f"map key of {len(key)} characters exceeds max_str {limits.max_str}")


def _free_list(value: Any, limits: Limits, where: str) -> None:
    """A list of free-form values (the reference rules; a call's arguments)."""
    for item in _list_header(value, limits, where):
        _free(item, limits, where, 1)


def _free_map(value: Any, limits: Limits, where: str) -> None:
    """A str-keyed map of free-form values (the reference rules; a call's result)."""
    for key, item in _dict_header(value, limits, where).items():
        _free_key(key, limits, where)
        _free(item, limits, where, 1)


def _digest_entries(value: Any, limits: Limits, where: str) -> None:
    for key, item in _dict_header(value, limits, where).items():
        _name(key, f"{where} key")
        if type(item) is not list or len(item) != 2:
            _fail("schema", f"{where}[{key!r}]", f"expected [epoch, seq], got {_show(item)}")
        _u64(item[0], f"{where}[{key!r}][0] (epoch)")
        _u64(item[1], f"{where}[{key!r}][1] (seq)")


def _records(value: Any, limits: Limits, where: str) -> None:
    for item in _list_header(value, limits, where):
        if type(item) is not bytes or not item:
            _fail("schema", f"{where}[{_position(value, item)}]", f"expected non-empty bytes, got {_show(item)}")
        if len(item) > limits.max_bin:
            _fail("limits", f"{where}[{_position(value, item)}]", f"{len(item)} bytes exceed max_bin {limits.max_bin}")


# --------------------------------------------------------------------------------------------------------------------
# Per-message checks. Each takes the fields in declaration order (the wire body, or the values of a constructed
# message) and the limits to apply.
# --------------------------------------------------------------------------------------------------------------------


def _check_hello(v: Sequence[Any], limits: Limits) -> None:
    router_id, versions, zones, features, listen, epoch = v
    _name(router_id, "Hello.router_id")
    _versions(versions, limits, "Hello.versions")
    _names(zones, limits, "Hello.zones")
    _names(features, limits, "Hello.features")
    _listen_address(listen, "Hello.listen")
    _u64(epoch, "Hello.epoch")


def _check_ping(v: Sequence[Any], limits: Limits) -> None:
    seq, sent_at = v
    _u64(seq, "Ping.seq")
    _finite_float(sent_at, "Ping.sent_at")


def _check_pong(v: Sequence[Any], limits: Limits) -> None:
    seq, sent_at = v
    _u64(seq, "Pong.seq")
    _finite_float(sent_at, "Pong.sent_at")


def _check_gossip_digest(v: Sequence[Any], limits: Limits) -> None:
    (entries,) = v
    _digest_entries(entries, limits, "GossipDigest.entries")


#: Length of a GossipSummary checksum.
SUMMARY_LEN = 16


def _check_gossip_summary(v: Sequence[Any], limits: Limits) -> None:
    count, checksum = v
    _u64(count, "GossipSummary.count")
    if type(checksum) is not bytes or len(checksum) != SUMMARY_LEN:
        _fail("schema", "GossipSummary.checksum", f"expected {SUMMARY_LEN} bytes, got {_show(checksum)}")


def _check_gossip_records(v: Sequence[Any], limits: Limits) -> None:
    (records,) = v
    _records(records, limits, "GossipRecords.records")


def _explain_request(v: Sequence[Any], limits: Limits) -> None:
    """The reference rules for Request, one helper per field; slow but says exactly what is wrong."""
    request_id, origin, destination, hop_limit, deadline_ms, path, op, ipath, method, args, sender, expires_ms, \
        signature, client_auth, sender_org = v
    _request_id(request_id, "Request.request_id")
    _name(origin, "Request.origin")
    _name(destination, "Request.destination")
    if type(hop_limit) is not int or not 0 <= hop_limit <= HOP_LIMIT_MAX:
        _fail("schema", "Request.hop_limit", f"expected an integer from 0 to {HOP_LIMIT_MAX}, got {_show(hop_limit)}")
    _u64(deadline_ms, "Request.deadline_ms")
    _names(path, limits, "Request.path")
    _name(op, "Request.op")
    _short(ipath, "Request.ipath")
    _short(method, "Request.method")
    _free_list(args, limits, "Request.args")
    _text(sender, limits, "Request.sender")
    _u64(expires_ms, "Request.expires_ms")
    if type(signature) is not bytes or len(signature) > SIGNATURE_MAX:
        _fail("schema", "Request.signature", f"expected at most {SIGNATURE_MAX} bytes, got {_show(signature)}")
    if type(client_auth) is not bytes or len(client_auth) > CLIENT_AUTH_MAX:
        _fail("schema", "Request.client_auth", f"expected at most {CLIENT_AUTH_MAX} bytes, got {_show(client_auth)}")
    _short(sender_org, "Request.sender_org")


def _check_request(v: Sequence[Any], limits: Limits) -> None:
    """Request is on the hot path of every hop: test everything inline and fall back to the reference rules
    (:func:`_explain_request`) only when something looks wrong. The inline tests are each at least as strict as the
    reference, so the fallback decides every doubtful case."""
    request_id, origin, destination, hop_limit, deadline_ms, path, op, ipath, method, args, sender, expires_ms, \
        signature, client_auth, sender_org = v
    if not (
        type(request_id) is bytes
        and len(request_id) == REQUEST_ID_LEN
        and type(origin) is str
        and 0 < len(origin) <= NAME_MAX
        and type(destination) is str
        and 0 < len(destination) <= NAME_MAX
        and type(hop_limit) is int
        and 0 <= hop_limit <= HOP_LIMIT_MAX
        and type(deadline_ms) is int
        and 0 <= deadline_ms <= U64_MAX
        and type(path) is list
        and len(path) <= limits.max_list
        and type(op) is str
        and 0 < len(op) <= NAME_MAX
        and type(ipath) is str
        and len(ipath) <= NAME_MAX
        and type(method) is str
        and len(method) <= NAME_MAX
        and type(args) is list
        and len(args) <= limits.max_list
        and type(sender) is str
        and len(sender) <= limits.max_str
        and type(expires_ms) is int
        and 0 <= expires_ms <= U64_MAX
        and type(signature) is bytes
        and len(signature) <= SIGNATURE_MAX
        and type(client_auth) is bytes
        and len(client_auth) <= CLIENT_AUTH_MAX
        and type(sender_org) is str
        and len(sender_org) <= NAME_MAX
    ):
        _explain_request(v, limits)
    for hop in path:
        if type(hop) is not str or not 0 < len(hop) <= NAME_MAX:
            _names(path, limits, "Request.path")
    if not _free_ok(args, limits, 0):
        _free_list(args, limits, "Request.args")


def _explain_response(v: Sequence[Any], limits: Limits) -> None:
    """The reference rules for Response (see :func:`_check_request` for why there are two versions)."""
    reply_to, request_id, result, path = v
    if type(reply_to) is not int or not 0 < reply_to <= U64_MAX:
        _fail("schema", "Response.reply_to", f"expected the id of the request's frame (>= 1), got {_show(reply_to)}")
    _request_id(request_id, "Response.request_id")
    _free_map(result, limits, "Response.result")
    _names(path, limits, "Response.path")


def _check_response(v: Sequence[Any], limits: Limits) -> None:
    reply_to, request_id, result, path = v
    if not (
        type(reply_to) is int
        and 0 < reply_to <= U64_MAX
        and type(request_id) is bytes
        and len(request_id) == REQUEST_ID_LEN
        and type(result) is dict
        and len(result) <= limits.max_map
        and type(path) is list
        and len(path) <= limits.max_list
    ):
        _explain_response(v, limits)
    if not _free_ok(result, limits, 0):
        _free_map(result, limits, "Response.result")
    for hop in path:
        if type(hop) is not str or not 0 < len(hop) <= NAME_MAX:
            _names(path, limits, "Response.path")


def _check_error(v: Sequence[Any], limits: Limits) -> None:
    reply_to, request_id, code, message, path = v
    _u64(reply_to, "Error.reply_to")
    # reply_to 0 is a link-level error (not about one request), which may not have a request id to quote.
    _request_id(request_id, "Error.request_id", empty_ok=reply_to == 0)
    _name(code, "Error.code")
    _text(message, limits, "Error.message")
    _names(path, limits, "Error.path")


def _check_event(v: Sequence[Any], limits: Limits) -> None:
    ipath, topic, payload = v
    _ipath(ipath, "Event.ipath")
    _name(topic, "Event.topic")
    if not _free_ok(payload, limits, 0):
        _free(payload, limits, "Event.payload", 0)


def _check_bye(v: Sequence[Any], limits: Limits) -> None:
    (reason,) = v
    _text(reason, limits, "Bye.reason")


# --------------------------------------------------------------------------------------------------------------------
# The messages.
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame each side sends: who it is, which protocol versions it speaks, and where it can be dialled."""

    TYPE: ClassVar[int] = 0x01
    NAME: ClassVar[str] = "HELLO"

    router_id: str
    versions: list[int]
    zones: list[str]
    features: list[str]
    listen: str
    epoch: int

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class Bye:
    """Last frame before a deliberate close, so the peer logs a reason instead of a connection loss."""

    TYPE: ClassVar[int] = 0x02
    NAME: ClassVar[str] = "BYE"

    reason: str

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class Ping:
    """Heartbeat; the peer answers with a Pong carrying the same values, which yields the round-trip time."""

    TYPE: ClassVar[int] = 0x03
    NAME: ClassVar[str] = "PING"

    seq: int
    sent_at: float

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class Pong:
    """Answer to a Ping, echoing its seq and sent_at."""

    TYPE: ClassVar[int] = 0x04
    NAME: ClassVar[str] = "PONG"

    seq: int
    sent_at: float

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class GossipDigest:
    """Anti-entropy summary: router id -> [epoch, seq] of the newest record this side holds."""

    TYPE: ClassVar[int] = 0x11
    NAME: ClassVar[str] = "GOSSIP_DIGEST"

    entries: dict[str, list[int]]

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class GossipRecords:
    """Signed router records the peer lacks; opaque here, verified by the gossip layer."""

    TYPE: ClassVar[int] = 0x12
    NAME: ClassVar[str] = "GOSSIP_RECORDS"

    records: list[bytes]

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class GossipSummary:
    """A whole directory in 24 bytes: how many records and a checksum of their versions.

    Sent each anti-entropy round instead of the full digest, which grows with the network; in a converged overlay
    the checksums match and nothing more is said. Only a mismatch costs the full digest exchange.
    """

    TYPE: ClassVar[int] = 0x13
    NAME: ClassVar[str] = "GOSSIP_SUMMARY"

    count: int
    checksum: bytes

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class Request:
    """An operation on a resource, forwarded hop by hop towards the router that serves it."""

    TYPE: ClassVar[int] = 0x20
    NAME: ClassVar[str] = "REQUEST"

    request_id: bytes  # exactly 16 bytes; the owner deduplicates on it
    origin: str  # entry router
    destination: str  # router that serves the resource
    hop_limit: int  # 0..255, decremented per hop
    deadline_ms: int  # time left, not a timestamp (clocks of two routers disagree)
    path: list[str]  # routers traversed so far
    op: str
    ipath: str
    method: str
    args: list[Any]
    sender: str  # identity of the client on whose behalf the request runs
    #: When the request expires, in the origin's wall-clock milliseconds since the epoch: signed (unlike
    #: ``deadline_ms``, which relays lower hop by hop), so that a signed request cannot be replayed after it.
    expires_ms: int = 0
    #: The origin router's signature over the request's end-to-end fields (wecross.attest.request_body): the owner
    #: runs nothing a relay altered. Empty only in tests of the codec.
    signature: bytes = b""
    #: The user's own signature of the operation (wecross.attest.ClientProof, encoded), or empty: covered by the
    #: origin's signature, so no relay can strip or swap it.
    client_auth: bytes = b""
    #: The organisation the entry router vouches the sender belongs to ("" when it does not say): signed with the
    #: rest, for the owner's organisation rules (wecross.governance).
    sender_org: str = ""

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class Response:
    """Successful answer to a Request, travelling back along the path."""

    TYPE: ClassVar[int] = 0x21
    NAME: ClassVar[str] = "RESPONSE"

    reply_to: int  # msg_id of the Request frame on this link
    request_id: bytes
    result: dict[str, Any]
    path: list[str]

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class Error:
    """Failed answer to a Request (reply_to >= 1), or a link-level complaint (reply_to 0)."""

    TYPE: ClassVar[int] = 0x22
    NAME: ClassVar[str] = "ERROR"

    reply_to: int
    request_id: bytes  # 16 bytes, or b"" when reply_to is 0
    code: str  # a code from wecross.errors (or a stub's own code)
    message: str
    path: list[str]

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class Event:
    """An event a resource emitted, pushed to subscribers."""

    TYPE: ClassVar[int] = 0x30
    NAME: ClassVar[str] = "EVENT"

    ipath: str
    topic: str
    payload: Any

    def __post_init__(self) -> None:
        validate(self)


Message: TypeAlias = (
    Hello | Bye | Ping | Pong | GossipDigest | GossipRecords | GossipSummary | Request | Response | Error | Event
)

#: type code -> message class. Code 0x10 is retired and must never be reused (docs/wire-protocol.md says why); a
#: frame carrying it is refused as unknown_type like any other unassigned code.
MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (Hello, Bye, Ping, Pong, GossipDigest, GossipRecords, GossipSummary, Request, Response, Error, Event)
}


# --------------------------------------------------------------------------------------------------------------------
# Building instances without __init__, turning them into bodies and back.
# --------------------------------------------------------------------------------------------------------------------


def _twin(cls: type[Any]) -> Any:
    """A mutable class with the same slots as ``cls``, or None if this interpreter can't re-label its instances.

    Why decoders build messages this way: the values were just checked against the link's limits, so the frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` call per field, then ``__post_init__`` validating it all
    again) is pure waste there. A decoder instead fills a twin instance with plain slot stores and re-labels it
    (``__class__`` assignment, which CPython allows between classes with identical slot layouts); the result is an
    ordinary, frozen, hashable instance of ``cls``. Measured ways to build a Request from its 11 checked values
    (CPython 3.11, best of 25 runs, development VM):

    - twin: ``object.__new__`` + slot stores + ``__class__`` assignment: 370 ns;
    - ``object.__new__`` + generated code calling each slot descriptor's ``__set__``: 962 ns;
    - the frozen ``__init__`` with ``__post_init__`` removed: 1677 ns;
    - ``object.__new__`` + ``object.__setattr__`` per field: 2087 ns;
    - ``Request(*values)``, which validates again: 3002 ns;
    - for comparison, a non-frozen slotted dataclass's ``__init__``: 244 ns, but then messages are mutable.

    So the twin is 2.6 times faster than the best plain way that keeps messages immutable, on the path every hop of
    every call takes; an Envelope likewise takes 235 ns instead of 581 ns through its ``__init__``. Where
    re-labelling is refused (another interpreter), decoders fall back to ``object.__setattr__`` and ``__init__``.
    """
    names = [f.name for f in fields(cls)]
    twin: Any = make_dataclass(f"_{cls.__name__}Twin", names, slots=True, eq=False, repr=False)
    try:
        probe = twin(*([None] * len(names)))
        probe.__class__ = cls
    except TypeError:
        return None
    return twin if type(probe) is cls else None


def _builder(cls: type[_T]) -> Callable[[Sequence[Any]], _T]:
    """A constructor for already-validated field values that skips ``__init__`` (see :func:`_twin` for why)."""
    twin = _twin(cls)
    if twin is not None:

        def build(values: Sequence[Any]) -> _T:
            obj = twin(*values)
            obj.__class__ = cls
            return obj  # type: ignore[no-any-return]

        return build
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]

    def build_slowly(values: Sequence[Any]) -> _T:
        obj = object.__new__(cls)
        for name, value in zip(names, values, strict=True):
            object.__setattr__(obj, name, value)
        return obj

    return build_slowly


def _getter(cls: type[Any]) -> Callable[[Any], list[Any]]:
    """Field values of an instance, in order, as a list: the body in wire form (the packer runs with
    ``strict_types``, which packs lists, not tuples, as arrays)."""
    names = [f.name for f in fields(cls)]
    if len(names) == 1:
        # attrgetter with one name returns the bare value, not a 1-tuple.
        single = attrgetter(names[0])
        return lambda obj: [single(obj)]
    get = attrgetter(*names)
    return lambda obj: list(get(obj))


#: message class -> (body fields in wire form) for encoding.
BODY_ENCODERS: dict[type[Any], Callable[[Any], list[Any]]] = {}
#: type code -> decoder turning a body list into a validated message.
BODY_DECODERS: dict[int, Callable[[list[Any], Limits], Any]] = {}
#: message class -> check of a constructed instance.
_OBJECT_CHECKS: dict[type[Any], Callable[[Any, Limits], None]] = {}


def _register(
    cls: type[Any],
    check: Callable[[Sequence[Any], Limits], None],
    *,
    extensible: bool = False,
    encode: Callable[[Any], list[Any]] | None = None,
    decode: Callable[[list[Any], Limits], Any] | None = None,
) -> None:
    """Register a message; its body is its fields in declaration order.

    ``encode`` and ``decode`` replace the generic ones with hand-unrolled versions (the hand-written decoder needs
    the twin, so it is only used where :func:`_twin` found one).
    """
    get = _getter(cls) if encode is None else encode
    count = len(fields(cls))
    name = cls.NAME
    twin = _twin(cls)
    build = _builder(cls) if twin is None else None

    def decode_generic(body: list[Any], limits: Limits) -> Any:
        if len(body) != count:
            # An extensible message may gain trailing fields in a later version; an older reader ignores them.
            if not (extensible and len(body) > count):
                _fail("schema", name, f"expected {count} fields, got {len(body)}")
            body = body[:count]
        check(body, limits)
        if build is not None:
            return build(body)
        obj = twin(*body)  # _builder inlined: this runs for every frame
        obj.__class__ = cls
        return obj

    BODY_ENCODERS[cls] = get
    BODY_DECODERS[cls.TYPE] = decode if decode is not None and twin is not None else decode_generic
    _OBJECT_CHECKS[cls] = lambda obj, limits: check(get(obj), limits)


# Request and Response travel on every hop of every call, so their bodies are unrolled by hand: a list display of
# attribute loads costs less than half as much as attrgetter + list(), and storing into a bare twin instance saves a
# call to the twin's __init__. test_hand_unrolled_bodies pins both field orders to the dataclass's.

_REQUEST_TWIN: Any = _twin(Request)
_RESPONSE_TWIN: Any = _twin(Response)
_new = object.__new__


def _encode_request(m: Request) -> list[Any]:
    return [
        m.request_id, m.origin, m.destination, m.hop_limit, m.deadline_ms, m.path, m.op, m.ipath, m.method, m.args,
        m.sender, m.expires_ms, m.signature, m.client_auth, m.sender_org,
    ]  # fmt: skip


def _decode_request(body: list[Any], limits: Limits) -> Request:
    if len(body) != 15:
        _fail("schema", "REQUEST", f"expected 15 fields, got {len(body)}")
    _check_request(body, limits)
    m = _new(_REQUEST_TWIN)
    (
        m.request_id, m.origin, m.destination, m.hop_limit, m.deadline_ms, m.path, m.op, m.ipath, m.method, m.args,
        m.sender, m.expires_ms, m.signature, m.client_auth, m.sender_org,
    ) = body  # fmt: skip
    m.__class__ = Request
    return m  # type: ignore[no-any-return]


def _encode_response(m: Response) -> list[Any]:
    return [m.reply_to, m.request_id, m.result, m.path]


def _decode_response(body: list[Any], limits: Limits) -> Response:
    if len(body) != 4:
        _fail("schema", "RESPONSE", f"expected 4 fields, got {len(body)}")
    _check_response(body, limits)
    m = _new(_RESPONSE_TWIN)
    (m.reply_to, m.request_id, m.result, m.path) = body
    m.__class__ = Response
    return m  # type: ignore[no-any-return]


_register(Hello, _check_hello, extensible=True)
_register(Bye, _check_bye)
_register(Ping, _check_ping)
_register(Pong, _check_pong)
_register(GossipDigest, _check_gossip_digest)
_register(GossipRecords, _check_gossip_records)
_register(GossipSummary, _check_gossip_summary)
_register(Request, _check_request, encode=_encode_request, decode=_decode_request)
_register(Response, _check_response, encode=_encode_response, decode=_decode_response)
_register(Error, _check_error)
_register(Event, _check_event)


def validate(message: Message, limits: Limits = DEFAULT_LIMITS) -> None:
    """Check a message against ``limits``; raises WireError ('schema' or 'limits').

    Construction already checks against :data:`DEFAULT_LIMITS`; call this (or pass ``limits`` to ``encode_frame``)
    when a link runs with tighter limits.
    """
    try:
        check = _OBJECT_CHECKS[type(message)]
    except KeyError:
        raise WireError("schema", f"{type(message).__name__} is not a wire message") from None
    try:
        check(message, limits)
    except RecursionError:
        raise WireError("limits", f"{type(message).__name__}: value nested too deeply") from None


def negotiate_version(offered: Sequence[int], supported: Sequence[int] = SUPPORTED_VERSIONS) -> int | None:
    """The highest version both sides speak, or None (then send Bye and close).

    Both sides run this on the other's Hello.versions and so agree without another round trip.
    """
    common = set(offered).intersection(supported)
    return max(common) if common else None
