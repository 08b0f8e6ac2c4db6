"""The router's public REST API on twisted.web.

Written against :class:`wecross.facade.RouterFacade` only, so it runs the same against a real node, a simulated one
or a test fake. Every answer is one JSON envelope (see :mod:`wecross.rest.json_body`), every failure has a stable
code from :mod:`wecross.errors`, and nothing a client sends can make a traceback reach it.

Three decisions shape this module:

* One leaf resource dispatches every path itself. twisted.web's resource tree would answer unknown paths and wrong
  methods with HTML pages; doing the routing here keeps every answer in the JSON envelope.
* Oversized bodies are refused by :class:`RestRequest` while the headers are being parsed (Content-Length) or while
  chunks arrive (chunked encoding), before twisted.web would have buffered the whole body to memory or disk.
* The sender of an operation is the CN of the client's TLS certificate, never a field of the body: the body is
  whatever the client chose to write, the certificate is what the TLS layer verified. A client holding that
  certificate's key may sign the operation too (:mod:`wecross.rest.identity`), and the owner then checks that the
  user asked for exactly this.

The request path is also kept lean, because a router's REST entry is its busiest code (see bench/rest_micro.py and
bench/forward.py): :class:`RestRequest` routes straight to the API and writes each answer in one piece with a
pre-joined header block, :class:`RestChannel` remembers its socket addresses, and the API remembers validated
iPaths and certificate identities. Each shortcut gives the same answer as the general route it skips; the tests
hold them to that.
"""

from __future__ import annotations

import contextlib
import io
import re
import secrets
import time
import weakref
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.server import version as _SERVER_VERSION

from wecross.config import Limits
from wecross.errors import RouterError
from wecross.facade import Invocation, RouterFacade
from wecross.governance.audit_store import AuditStore
from wecross.governance.enforce import Governance
from wecross.governance.identity import Identity
from wecross.governance.keystore import Keystore
from wecross.ipath import IPath, IPathError, IPathPattern
from wecross.logs import untrusted
from wecross.rest import governance as gov
from wecross.rest.http import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    ClientConnections,
    RefusedConnection,
    RestChannel,
)
from wecross.rest.identity import (
    ANONYMOUS,
    caller_identity,
    client_chain,
    client_identity,
    client_proof,
    has_signature_headers,
)
from wecross.rest.json_body import (
    JSON_CONTENT_TYPE,
    check_content_type,
    error_body,
    parse_json_object,
    parse_operation_body,
    success_body,
)
from wecross.stub.interfaces import OPERATIONS, PROOFS_WANTED, StubError
from wecross.wire.errors import WireError

#: The wrapper twisted.web's Site puts around each HTTPChannel (it picks HTTP/1.1 or HTTP/2 per connection). Private,
#: so looked up softly: a Twisted without it leaves RestSite on the stock channel, which only loses RestChannel.
_CHANNEL_WRAPPER: Any = getattr(http, "_GenericHTTPChannelProtocol", None)

DEFAULT_MAX_BODY = 1024 * 1024

_log = Logger(namespace="wecross.rest")

#: The paths that take no URL parameters, and the query parameters each accepts.
_GET_ENDPOINTS: dict[str, frozenset[str]] = {
    "": frozenset(),
    "status": frozenset(),
    "peers": frozenset(),
    "routes": frozenset(),
    "resources": frozenset({"zone", "chain"}),
    "chains": frozenset(),
    "openapi.json": frozenset(),
    "metrics": frozenset(),
    "whoami": frozenset(),
    "audit": gov.AUDIT_PARAMETERS,
}
#: Label values of the latency histogram (anything else is "other": URLs must not create label values).
_OBSERVED_OPS = frozenset({*OPERATIONS, "status", "peers", "routes", "resources", "chains", "tx", "htlc", "index",
                           "metrics", "openapi.json", "events", "exec", "commit", "rollback", "start",
                           "whoami", "audit", "admin"})
_GET_METHODS = (b"GET", b"HEAD")
_POST_METHODS = (b"POST",)
_DELETE_METHODS = (b"DELETE",)
#: A non-negative integer in ASCII digits: str.isdigit() also admits digits int() refuses ("²").
_DIGITS = re.compile(r"[0-9]{1,18}")
_OPS_BY_SEGMENT: dict[bytes, str] = {op.encode("ascii"): op for op in OPERATIONS}
#: Content-Type values clients send most, all of which check_content_type accepts; others go through it.
_PLAIN_JSON_TYPES = frozenset({
    b"application/json",
    b"application/json; charset=utf-8",
    b"application/json;charset=utf-8",
    b"application/json; charset=UTF-8",
    b"application/json;charset=UTF-8",
})
_IPATH_CACHE_SIZE = 4096

_INDEX: dict[str, Any] = {
    "service": "wecross router REST API",
    "envelope": {
        "success": {"ok": True, "data": "..."},
        "error": {"ok": False, "error": {"code": "...", "message": "...", "details": "(optional)"}},
    },
    "endpoints": [
        {"method": "GET", "path": "/", "summary": "this index"},
        {"method": "GET", "path": "/status", "summary": "router id, zones, version, uptime, counters"},
        {"method": "GET", "path": "/openapi.json", "summary": "this API as an OpenAPI 3 document"},
        {"method": "GET", "path": "/metrics", "summary": "Prometheus metrics (text exposition format)"},
        {"method": "GET", "path": "/ui/", "summary": "the web page of the network, served by this router"},
        {"method": "GET", "path": "/peers", "summary": "known peers and link metrics"},
        {"method": "GET", "path": "/whoami", "summary": "the caller as this router sees it: name, org, roles"},
        {"method": "GET", "path": "/audit",
         "query": ["initiator", "ipath", "interface", "outcome", "since", "until", "after", "limit"],
         "summary": "records of the audit trail, oldest first, and its head (interface audit.read)"},
        {"method": "POST", "path": "/admin/peers", "body": {"address": "host:port", "id": "router-x"},
         "summary": "dial a new peer now and keep it (interface admin.peers)"},
        {"method": "DELETE", "path": "/admin/peers/{id}",
         "summary": "stop dialling a peer (router id or host:port) and close its links (interface admin.peers)"},
        {"method": "GET", "path": "/admin/accounts", "query": ["user", "chain"],
         "summary": "users' chain accounts in this router's keystore: user, chain, address (interface admin.accounts)"},
        {"method": "POST", "path": "/admin/accounts", "body": {"user": "alice", "chain": "zone.chain"},
         "summary": "create a user's account on a chain, or return the existing one (interface admin.accounts)"},
        {"method": "DELETE", "path": "/admin/accounts/{user}/{chain_path}",
         "summary": "forget a user's account on a chain (chain_path: zone.chain), its key included "
                    "(interface admin.accounts)"},
        {"method": "GET", "path": "/routes", "summary": "routing table: next hop, path, cost per chain and router"},
        {"method": "GET", "path": "/chains", "summary": "chains served here, trusted header chains, verifications"},
        {"method": "GET", "path": "/{zone}/{chain}/{resource}/events", "query": ["from_block", "wait"],
         "summary": "a resource's events from a block on; waits up to `wait` seconds for the first (long poll)"},
        {"method": "GET", "path": "/chains/{zone}/{chain}/headers/{n}",
         "summary": "block header n: served here, or trusted (linked to the pinned genesis) by this router"},
        {
            "method": "GET",
            "path": "/resources",
            "query": ["zone", "chain"],
            "summary": "resources reachable from this router, optionally filtered",
        },
        {"method": "POST", "path": "/tx/start", "body": {"resources": ["zone.chain.resource"], "timeout": 60},
         "summary": "start a 2PC transaction coordinated by this router"},
        {"method": "POST", "path": "/tx/{id}/exec", "body": {"path": "zone.chain.resource", "method": "...",
                                                             "args": []},
         "summary": "run one step inside the transaction (executed tentatively, what it touches locked)"},
        {"method": "POST", "path": "/tx/{id}/commit", "summary": "log the commit decision and carry it out"},
        {"method": "POST", "path": "/tx/{id}/rollback", "summary": "roll the transaction back everywhere"},
        {"method": "GET", "path": "/tx/{id}", "summary": "the transaction's record: state, steps, outcomes"},
        {"method": "GET", "path": "/tx", "query": ["state", "limit"], "summary": "transactions, newest first"},
        {"method": "POST", "path": "/tx/adopt", "summary": "take over a transaction from its record"},
        {"method": "POST", "path": "/htlc/start", "summary": "start a hash time-locked exchange"},
        {"method": "POST", "path": "/htlc/{id}/unlock", "summary": "reveal the secret and unlock"},
        {"method": "POST", "path": "/htlc/{id}/refund", "summary": "reclaim after the time lock"},
        {"method": "GET", "path": "/htlc/{id}", "summary": "the exchange's state on both chains"},
        {"method": "GET", "path": "/htlc", "query": ["state", "limit"], "summary": "exchanges, newest first"},
        {
            "method": "POST",
            "path": "/{zone}/{chain}/{resource}/{op}",
            "ops": list(OPERATIONS),
            "summary": "run an operation on a resource",
        },
    ],
}


def _without_proof(result: Any) -> Any:
    if isinstance(result, dict):
        result.pop("proof", None)
    return result


class RawJson:
    """An answer sent as it is, outside the envelope (the OpenAPI document and the metrics: tools expect them
    bare); ``content_type`` None means JSON."""

    __slots__ = ("content_type", "headers", "payload", "status")

    def __init__(self, payload: bytes, content_type: bytes | None = None, *, status: int = 200,
                 headers: dict[bytes, bytes] | None = None) -> None:
        self.payload = payload
        self.content_type = content_type
        self.status = status
        self.headers = headers or {}




def new_counters() -> dict[str, int]:
    """The request counters a site keeps; ``requests`` counts arrivals, the others outcomes."""
    return {"requests": 0, "ok": 0, "client_error": 0, "server_error": 0, "client_gone": 0}


def _count_status(counters: dict[str, int], status: int) -> None:
    if status >= 500:
        counters["server_error"] += 1
    elif status >= 400:
        counters["client_error"] += 1
    else:
        counters["ok"] += 1


def _reason(status: int) -> bytes | None:
    # twisted.web has no phrase for some codes (422 would go out as "Unknown Status").
    try:
        return _REASONS[status]
    except KeyError:
        pass
    try:
        reason: bytes | None = HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        reason = None
    _REASONS[status] = reason
    return reason


_REASONS: dict[int, bytes | None] = {}


class _HeaderBlock:
    """The response headers every answer shares, encoded once per second (the Date header changes each second).

    twisted.web would add Server and Date to each request's header object, then canonicalise, sanitise and join
    every header of every answer; these never change between answers, so they are joined once.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._block = b""

    def get(self) -> bytes:
        now = int(self._clock())
        if now != self._second:
            self._block = (
                b"Server: " + _SERVER_VERSION + b"\r\n"
                b"Date: " + http.datetimeToString(now) + b"\r\n"  # type: ignore[no-untyped-call]
                b"Content-Type: " + JSON_CONTENT_TYPE + b"\r\n"
                b"Cache-Control: no-store\r\n"
                b"X-Content-Type-Options: nosniff\r\n"
            )
            self._second = now
        return self._block


_HEADERS = _HeaderBlock()


def _status(status: int) -> tuple[bytes, bytes]:
    """The reason phrase and the ``b"200 OK"`` part of the status line, chosen as
    ``setResponseCode(status, _reason(status))`` would choose them."""
    known = _STATUS_LINES.get(status)
    if known is None:
        reason = _reason(status)
        if reason is None:
            reason = http.RESPONSES.get(status, b"Unknown Status")
        known = _STATUS_LINES[status] = (reason, b"%d %s" % (status, reason))
    return known


_STATUS_LINES: dict[int, tuple[bytes, bytes]] = {}


def _new_ref() -> str:
    """A short id tying a 500 answer to its log entry, so a user's report can be matched without a traceback."""
    return secrets.token_hex(4)


def _internal_error(ref: str) -> RouterError:
    return RouterError("internal", f"internal error; see the router log (ref {ref})", {"ref": ref})


def _decode_segment(segment: bytes) -> str | None:
    try:
        return segment.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _check_single_part(kind: str, value: str, where: str) -> None:
    # The iPath parser splits on dots; a dot inside one URL segment would otherwise yield a message about a
    # four-part iPath the client never wrote.
    if "." in value or "*" in value:
        raise RouterError(
            "bad_ipath",
            f"{where} {kind} {value!r} must be one iPath part: 1-64 letters, digits, '_' or '-' (no '.' or '*')",
            {kind: value},
        )


def _url_ipath(zone: str, chain: str, resource: str) -> IPath:
    for kind, value in (("zone", zone), ("chain", chain), ("resource", resource)):
        _check_single_part(kind, value, "URL")
    try:
        return IPath.from_url_parts(zone, chain, resource)
    except IPathError as exc:
        raise RouterError("bad_ipath", str(exc), {"zone": zone, "chain": chain, "resource": resource}) from None


def _query(request: Any, allowed: frozenset[str]) -> dict[str, str]:
    """Single-valued, known query parameters only: a typo such as ``?zones=`` must not silently mean 'no filter'."""
    raw: dict[bytes, list[bytes]] = getattr(request, "args", None) or {}
    result: dict[str, str] = {}
    for key_bytes, values in raw.items():
        key = _decode_segment(key_bytes)
        if key is None or key not in allowed:
            shown = key if key is not None else key_bytes.decode("utf-8", "replace")
            accepted = ", ".join(sorted(allowed)) or "none"
            raise RouterError(
                "bad_request",
                f"unknown query parameter {shown!r}; accepted: {accepted}",
                {"unknown": [shown], "allowed": sorted(allowed)},
            )
        if len(values) != 1:
            raise RouterError("bad_request", f"query parameter {key!r} given {len(values)} times", {"field": key})
        value = _decode_segment(values[0])
        if value is None:
            raise RouterError("bad_request", f"query parameter {key!r} is not valid UTF-8", {"field": key})
        result[key] = value
    return result


class _Exchange:
    """One request from arrival to answer: tracks whether the client is still there and answers exactly once.

    Kept lean because there is one per request: no Deferred of its own (a facade that answers synchronously is
    answered synchronously), one pair of callbacks on the facade's Deferred, and over a :class:`RestRequest` the
    client's departure is reported by the request itself instead of through a notifyFinish Deferred.
    """

    __slots__ = ("answered", "api", "gone", "pending", "request", "started")

    def __init__(self, api: RestApi, request: Any) -> None:
        # Any: twisted.web's Request is largely unannotated, and tests drive this with DummyRequest.
        self.api = api
        self.request = request
        self.started = time.monotonic() if api.metrics is not None else 0.0
        self.gone = False
        self.answered = False
        self.pending: Deferred[Any] | None = None

    @property
    def label(self) -> str:
        """How log events name the request; built only when something is logged."""
        # The client chose both (a request line may be 16 KiB of anything): bounded and escaped like peer text.
        return f"{untrusted(self.request.method.decode('latin-1'), 16)} {untrusted(self.request.uri.decode('latin-1'))}"

    def start(self) -> None:
        api = self.api
        api.counters["requests"] += 1
        request = self.request
        if isinstance(request, RestRequest):
            request.exchange = self
        else:
            request.notifyFinish().addErrback(self._client_left)
        try:
            result = api.dispatch(request)
        except BaseException:  # as maybeDeferred would: whatever dispatch raises is answered, never propagated
            self._failed(Failure())  # type: ignore[no-untyped-call]
            return
        if isinstance(result, Deferred):
            self.pending = result
            result.addCallbacks(self._succeeded, self._failed)
        else:
            self._succeeded(result)

    def _client_left(self, reason: Failure) -> None:
        if self.answered:
            return
        self.gone = True
        self.api.counters["client_gone"] += 1
        if self.api.log_requests:
            _log.info("{request} client left before the answer", request=self.label)
        pending, self.pending = self.pending, None
        if pending is not None:
            # Lets the router stop waiting for a far-away peer; harmless when the facade has no canceller.
            pending.cancel()

    def _succeeded(self, data: object) -> None:
        self.pending = None
        if self.gone:
            return
        try:
            payload = data.payload if isinstance(data, RawJson) else success_body(data)
        except Exception:
            self._failed(Failure())  # type: ignore[no-untyped-call]
            return
        if self.api.metrics is not None:
            self._observe("ok", data)
        if isinstance(data, RawJson) and (data.content_type is not None or data.headers or data.status != 200):
            headers = dict(data.headers)
            headers[b"Content-Type"] = data.content_type or JSON_CONTENT_TYPE
            self._send(data.status, payload, headers)
            return
        self._send(200, payload, None)

    def _observe(self, outcome: str, data: object) -> None:
        """Latency (and hops of a forwarded result) for /metrics; the op is the URL's last segment."""
        try:
            segments = self.request.postpath or [b""]
            op = segments[-1].decode("latin-1") if len(segments) == 4 and self.request.method == b"POST" \
                else (segments[0].decode("latin-1") or "index")
            if op not in _OBSERVED_OPS:
                op = "other"
            self.api.metrics.observe(op, outcome, time.monotonic() - self.started, data)
        except Exception:  # metrics must never break an answer
            _log.failure("metrics: could not observe a request")

    def _failed(self, failure: Failure) -> None:
        self.pending = None
        if self.api.metrics is not None:
            error = failure.value
            self._observe(error.code if isinstance(error, RouterError) else "internal", None)
        error = failure.value
        if self.gone:
            if not isinstance(error, RouterError | StubError | CancelledError):
                _log.failure("{request} failed after the client left", failure=failure, request=self.label)
            return
        if isinstance(error, RouterError):
            routed = error
        elif isinstance(error, StubError):
            routed = RouterError(error.code, error.message)
        else:
            ref = _new_ref()
            _log.failure("{request} failed (ref {ref})", failure=failure, request=self.label, ref=ref)
            routed = _internal_error(ref)
        headers = {b"Allow": error.allow} if isinstance(error, _MethodNotAllowed) else None
        self._send(routed.http_status, lambda: error_body(routed), headers)

    def _send(self, status: int, payload: bytes | Callable[[], bytes], headers: dict[bytes, bytes] | None) -> None:
        # The last stop of both outcomes: what fails here (rendering an error body, writing) must be logged, since
        # nothing more can be sent and no Deferred is left to carry it.
        try:
            self._answer(status, payload if isinstance(payload, bytes) else payload(), headers)
        except Exception:
            _log.failure("{request}: could not send the answer", request=self.label)

    def _answer(self, status: int, payload: bytes, headers: dict[bytes, bytes] | None) -> None:
        request = self.request
        if self.answered or self.gone or getattr(request, "_disconnected", False):
            return
        self.answered = True
        if isinstance(request, RestRequest) and not (headers and b"Content-Type" in headers):
            request.exchange = None
            request.write_json(status, payload, headers)
        elif isinstance(request, RestRequest):
            request.exchange = None
            _write_json_stock(request, status, payload, headers)
        else:
            _write_json_stock(request, status, payload, headers)
        _count_status(self.api.counters, status)
        if self.api.log_requests:
            _log.info("{request} -> {status}", request=self.label, status=status)


def _write_json_stock(request: Any, status: int, payload: bytes, headers: dict[bytes, bytes] | None) -> None:
    """A JSON answer through twisted.web's own Request methods, for requests RestRequest.write_json cannot take."""
    request.setResponseCode(status, _reason(status))
    request.setHeader(b"Content-Type", JSON_CONTENT_TYPE)
    request.setHeader(b"Content-Length", str(len(payload)).encode("ascii"))
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    request.write(payload)
    if not getattr(request, "_disconnected", False):  # finish() raises if the client left during write()
        request.finish()


class _MethodNotAllowed(RouterError):
    """Carries the Allow header value to the exchange, which must send it with the 405."""

    def __init__(self, method: bytes, allowed: tuple[bytes, ...], path: str) -> None:
        names = [m.decode("ascii") for m in allowed]
        super().__init__(
            "method_not_allowed",
            f"{method.decode('latin-1')} is not allowed on {path}; use {' or '.join(names)}",
            {"allowed": names},
        )
        self.allow = b", ".join(allowed)


class RestApi(Resource):
    """The whole API as one leaf resource (see the module docstring for why)."""

    isLeaf = True

    def __init__(
        self,
        router: RouterFacade,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        counters: dict[str, int] | None = None,
        log_requests: bool = False,
        metrics: Any = None,
        limits: Limits | None = None,
        wall_clock: Callable[[], float] = time.time,
        governance: Governance | None = None,
        audit: AuditStore | None = None,
        is_revoked: Callable[[bytes], bool] | None = None,
        keystore: Keystore | None = None,
        blocking: gov.Blocking = deferToThread,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.router = router
        #: The router's permissions (wecross.governance.enforce); open when none are given.
        self.governance = governance if governance is not None else Governance()
        #: The router's audit trail, read by GET /audit and appended to by the admin endpoints; None: none kept.
        self.audit = audit
        #: The users' chain accounts (/admin/accounts); None: this router keeps none (404).
        self.keystore = keystore
        #: Runs the keystore's blocking SQLite calls off the reactor thread.
        self.blocking = blocking
        #: Whether the router's revocation list names a certificate (DER); None: no list, nothing checked.
        self.is_revoked = is_revoked
        #: clock_skew and request_deadline bound the life of a client's signature (wecross.rest.identity).
        self.limits = limits if limits is not None else Limits()
        #: The wall clock a client's signed expiry is compared with (seconds since the epoch).
        self.wall_clock = wall_clock
        #: wecross.metrics.RouterMetrics, or None (no /metrics, nothing observed).
        self.metrics = metrics
        self.max_body = max_body
        self.counters = counters if counters is not None else new_counters()
        self.log_requests = log_requests
        #: URL iPath parts (as received, still bytes) -> the validated IPath: parsing and checking the three parts
        #: is the same work for every call to the same resource. Bounded, so odd URLs cannot grow it.
        self._ipaths: dict[tuple[bytes, bytes, bytes], IPath] = {}

    def render(self, request: Request) -> bytes:
        exchange = _Exchange(self, request)
        try:
            exchange.start()
        except Exception:  # start() itself failing is a bug here, still not the client's business
            exchange._failed(Failure())  # type: ignore[no-untyped-call]
        return cast(bytes, NOT_DONE_YET)

    # --- routing -----------------------------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Any:
        """Route one request; returns the data (or a Deferred of it), raises RouterError for anything refused."""
        if self.is_revoked is not None:
            self._refuse_revoked(request)
        raw = request.postpath
        if raw is not None and len(raw) == 4 and request.method == b"POST" and not getattr(request, "args", None):
            # An operation on a resource seen before: nothing here can be refused except by _operation, so the
            # general route below (which decodes every segment and spells the path for its messages) is skipped.
            op = _OPS_BY_SEGMENT.get(raw[3])
            path = self._ipaths.get((raw[0], raw[1], raw[2]))
            if op is not None and path is not None:
                return self._operation(request, path, op)
        return self._dispatch(request)

    def _dispatch(self, request: Request) -> Any:
        raw_segments = list(request.postpath or [b""])
        if len(raw_segments) > 1 and raw_segments[-1] == b"":
            raw_segments.pop()  # "/status/" means "/status"
        segments = [_decode_segment(s) for s in raw_segments]
        shown_path = "/" + "/".join(s if s is not None else "?" for s in segments)
        method = request.method

        if len(segments) == 1 and segments[0] in _GET_ENDPOINTS:
            name = segments[0]
            assert name is not None
            if method not in _GET_METHODS:
                raise _MethodNotAllowed(method, _GET_METHODS, shown_path)
            query = _query(request, _GET_ENDPOINTS[name])
            if name == "whoami":
                return gov.whoami(self._caller(request))
            if name == "audit":
                return self._audit(request, query)
            return self._get(name, query)

        if len(segments) == 5 and segments[0] == "chains" and segments[3] == "headers":
            if method not in _GET_METHODS:
                raise _MethodNotAllowed(method, _GET_METHODS, shown_path)
            zone, chain, number = segments[1], segments[2], segments[4]
            if zone is None or chain is None:
                raise RouterError("bad_ipath", "chain path parts in the URL must be valid UTF-8")
            _check_single_part("zone", zone, "URL")
            _check_single_part("chain", chain, "URL")
            if number is None or _DIGITS.fullmatch(number) is None:
                raise RouterError("bad_request", f"block number must be a non-negative integer, got {number!r}")
            _query(request, frozenset())
            return self.router.header(f"{zone}.{chain}", int(number))

        if len(segments) == 4 and segments[3] == "events":
            if method not in _GET_METHODS:
                raise _MethodNotAllowed(method, _GET_METHODS, shown_path)
            zone, chain, resource = segments[:3]
            if zone is None or chain is None or resource is None:
                raise RouterError("bad_ipath", "iPath parts in the URL must be valid UTF-8")
            query = _query(request, frozenset({"from_block", "wait"}))
            from_block, wait = query.get("from_block", "0"), query.get("wait", "0")
            if _DIGITS.fullmatch(from_block) is None:
                raise RouterError("bad_request", f"from_block must be a non-negative integer, got {from_block!r}",
                                  {"field": "from_block"})
            try:
                seconds = float(wait)
            except ValueError:
                seconds = -1.0
            if not 0.0 <= seconds <= 60.0:
                raise RouterError("bad_request", f"wait must be a number of seconds from 0 to 60, got {wait!r}",
                                  {"field": "wait"})
            return self.router.events(_url_ipath(zone, chain, resource), int(from_block), seconds,
                                      self._caller(request))

        if segments and segments[0] in ("tx", "htlc"):
            return self._transactions(request, segments, shown_path)

        if segments and segments[0] == "ui":
            return self._ui(request, segments, shown_path)

        if segments and segments[0] == "admin":
            return self._admin(request, segments, shown_path)

        if len(segments) == 4:
            op = segments[3]
            if op not in OPERATIONS:
                raise RouterError(
                    "not_found",
                    f"unknown operation {op!r}; use one of {', '.join(OPERATIONS)}",
                    {"operations": list(OPERATIONS)},
                )
            if method not in _POST_METHODS:
                raise _MethodNotAllowed(method, _POST_METHODS, shown_path)
            zone, chain, resource = segments[:3]
            if zone is None or chain is None or resource is None:
                raise RouterError("bad_ipath", "iPath parts in the URL must be valid UTF-8")
            path = _url_ipath(zone, chain, resource)
            if len(self._ipaths) >= _IPATH_CACHE_SIZE:
                self._ipaths.clear()
            self._ipaths[(raw_segments[0], raw_segments[1], raw_segments[2])] = path
            query = _query(request, frozenset({"proof"}))
            proof = query.get("proof", "0")
            if proof not in ("0", "1", "true", "false"):
                raise RouterError("bad_request", f"proof must be 1 or 0, got {proof!r}", {"field": "proof"})
            return self._operation(request, path, op, with_proof=proof in ("1", "true"))

        raise RouterError(
            "not_found",
            f"no endpoint at {shown_path}; GET / lists the endpoints",
            {"endpoints": ["/", "/status", "/peers", "/routes", "/resources", "/chains", "/tx", "/htlc", "/whoami",
                           "/audit", "/admin/peers", "/admin/accounts",
                           "/chains/{zone}/{chain}/headers/{n}", "/{zone}/{chain}/{resource}/events",
                           "/{zone}/{chain}/{resource}/{op}"]},
        )

    def _transactions(self, request: Request, segments: list[str | None], shown_path: str) -> Any:
        """``/tx`` (2PC) and ``/htlc``: see the index for the endpoints."""
        method = request.method
        if any(s is None for s in segments):
            raise RouterError("bad_request", "path segments must be valid UTF-8")
        parts = [s for s in segments if s is not None]
        kind = parts[0]
        identity = self._caller(request)
        sender = identity.name

        def allow(interface: str, ipath: IPath | None = None) -> None:
            self.governance.authorize(identity, ipath, interface, "this router")

        if len(parts) == 1:
            if method not in _GET_METHODS:
                raise _MethodNotAllowed(method, _GET_METHODS, shown_path)
            query = _query(request, frozenset({"state", "limit"}))
            limit = query.get("limit", "100")
            if _DIGITS.fullmatch(limit) is None or not 1 <= int(limit) <= 10000:
                raise RouterError("bad_request", f"limit must be an integer from 1 to 10000, got {limit!r}")
            allow(f"{kind}.read")
            service = self.router.transactions() if kind == "tx" else self.router.htlc()
            return {"transactions" if kind == "tx" else "htlcs": service.list(query.get("state"), int(limit)),
                    "stats": service.stats()}
        if len(parts) == 2 and parts[1] in ("start", "adopt"):
            if method not in _POST_METHODS:
                raise _MethodNotAllowed(method, _POST_METHODS, shown_path)
            body = self._json_body(request)
            allow(f"{kind}.{parts[1]}")
            if kind == "tx" and parts[1] == "start":
                resources, timeout = body.get("resources", []), body.get("timeout")
                return self.router.transactions().start(resources, timeout, sender)
            if kind == "tx":
                return self.router.transactions().adopt(body)
            if parts[1] == "start":
                return self.router.htlc().start(body, sender)
            raise RouterError("not_found", f"no endpoint at {shown_path}")
        if len(parts) == 2:
            if method not in _GET_METHODS:
                raise _MethodNotAllowed(method, _GET_METHODS, shown_path)
            _query(request, frozenset())
            allow(f"{kind}.read")
            service = self.router.transactions() if kind == "tx" else self.router.htlc()
            return service.get(parts[1])
        actions = {"tx": ("exec", "commit", "rollback"), "htlc": ("unlock", "refund")}[kind]
        if len(parts) == 3 and parts[2] in actions:
            if method not in _POST_METHODS:
                raise _MethodNotAllowed(method, _POST_METHODS, shown_path)
            tx_id, action = parts[1], parts[2]
            body = self._json_body(request, optional=action != "exec")
            if kind == "htlc":
                allow("htlc.act")
                # The same control plane as 2PC: only the party that started this exchange here (whose lock it
                # is) or an admin acts on it.
                party = self.router.htlc().get(tx_id).get("own", {}).get("sender")
                if party != sender and "admin" not in identity.roles:
                    raise RouterError("forbidden", f"exchange {tx_id} is {party!r}'s: only that identity or an admin "
                                                   f"may {action} it, not {sender!r}",
                                      {"interface": "htlc.act", "identity": sender})
                return self.router.htlc().act(tx_id, action, body, sender)
            coordinator = self.router.transactions()
            if action != "exec":
                allow(f"tx.{action}")
            # The transaction control plane: only whoever started it (or an admin) drives it.
            started_by = coordinator.get(tx_id).get("sender")
            if started_by != sender and "admin" not in identity.roles:
                raise RouterError("forbidden", f"transaction {tx_id} was started by {started_by!r}: only that "
                                               f"identity or an admin may {action} it, not {sender!r}",
                                  {"interface": f"tx.{action}", "identity": sender})
            if action == "exec":
                ipath, step_method, args = body.get("path"), body.get("method"), body.get("args", [])
                if not isinstance(ipath, str) or not isinstance(step_method, str) or not isinstance(args, list):
                    raise RouterError("bad_request", 'exec takes {"path": "zone.chain.resource", "method": "...", '
                                                     '"args": [...]}')
                try:
                    allow("tx.exec", IPath.parse(ipath))
                except IPathError as exc:
                    raise RouterError("bad_ipath", str(exc)) from None
                return coordinator.execute(tx_id, ipath, step_method, args, sender)
            if action == "commit":
                return coordinator.commit(tx_id)
            reason = body.get("reason", "rolled back by the client")
            if not isinstance(reason, str):
                raise RouterError("bad_request", "reason must be a string")
            return coordinator.rollback(tx_id, reason[:500])
        raise RouterError("not_found", f"no endpoint at {shown_path}; GET / lists the endpoints")

    def _ui(self, request: Request, segments: list[str | None], shown_path: str) -> Any:
        """The web page (wecross/ui): static files, same origin as the API they read."""
        if request.method not in _GET_METHODS:
            raise _MethodNotAllowed(request.method, _GET_METHODS, shown_path)
        raw = list(request.postpath or [])
        if raw == [b"ui"]:  # "/ui": the page's relative URLs need the trailing slash
            return RawJson(b"", None, status=301, headers={b"Location": b"/ui/"})
        if len(segments) == 1:
            segments = [*segments, ""]  # "/ui/": the page itself
        if len(segments) != 2 or segments[1] is None:
            raise RouterError("not_found", f"no file at {shown_path}")
        try:
            from wecross.ui.assets import asset
        except ImportError:  # an installation without the page
            raise RouterError("not_found", "this router serves no web page") from None
        found = asset(segments[1])
        if found is None:
            raise RouterError("not_found", f"no file at {shown_path}")
        content, content_type = found
        return RawJson(content, content_type, headers={
            b"Cache-Control": b"no-cache",
            b"Content-Security-Policy": b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        })

    def _json_body(self, request: Request, optional: bool = False) -> dict[str, Any]:
        content_type = request.getHeader(b"Content-Type")
        if content_type is not None and content_type not in _PLAIN_JSON_TYPES:
            check_content_type(content_type)
        body = self._read_body(request)
        if optional and (not body or body.isspace()):
            return {}
        return parse_json_object(body)

    def _openapi_document(self) -> RawJson:
        import json

        from wecross.rest.openapi import document

        example = None
        with contextlib.suppress(Exception):  # the examples are a courtesy; a facade without resources has none
            local = [row["ipath"] for row in self.router.resources() if row.get("local")]
            example = local[0] if local else None
        return RawJson(json.dumps(document(example), separators=(",", ":")).encode())

    def _get(self, name: str, query: dict[str, str]) -> Any:
        if name == "":
            return _INDEX
        if name == "openapi.json":
            return self._openapi_document()
        if name == "metrics":
            if self.metrics is None:
                raise RouterError("not_found", "this router serves no metrics")
            from wecross.metrics import CONTENT_TYPE

            return RawJson(self.metrics.render(), CONTENT_TYPE)
        if name == "status":
            return self.router.status()
        if name == "peers":
            return self.router.peers()
        if name == "routes":
            return self.router.routes()
        if name == "chains":
            return self.router.chains()
        pattern = self._resource_filter(query)
        d: Deferred[Any] = maybeDeferred(self.router.resources)
        if pattern is not None:
            d.addCallback(_filter_resources, pattern)
        return d

    @staticmethod
    def _resource_filter(query: dict[str, str]) -> IPathPattern | None:
        if not query:
            return None
        for kind in ("zone", "chain"):
            if kind in query:
                _check_single_part(kind, query[kind], "query parameter")
        text = f"{query.get('zone', '*')}.{query.get('chain', '*')}.*"
        try:
            return IPathPattern.parse(text)
        except IPathError as exc:
            raise RouterError("bad_ipath", str(exc), dict(query)) from None

    def _operation(self, request: Request, path: IPath, op: str, with_proof: bool = False) -> Deferred[Any]:
        """Run an operation for this client. The proof that came with a result has done its job once this router
        verified it (the answer says what was checked in ``verified``): it is left out of the answer unless the
        client asks for it (``?proof=1``), and a read of a chain served here is then answered without building one.
        """
        content_type = request.getHeader(b"Content-Type")
        if content_type is not None and content_type not in _PLAIN_JSON_TYPES:
            check_content_type(content_type)
        body = self._read_body(request)
        method, args = parse_operation_body(op, parse_json_object(body))
        identity = self._caller(request)
        sender = identity.name
        proof = None
        if has_signature_headers(request):
            # The client signed the (method, args) it sent: checked here against this very body, so a request
            # changed on its way to this router is refused before it goes anywhere.
            proof = client_proof(request, sender=sender, ipath=str(path), op=op, method=method, args=args,
                                 now_ms=int(self.wall_clock() * 1000), limits=self.limits)
        invocation = Invocation(path=path, op=op, method=method, args=args, sender=sender, client_proof=proof,
                                identity=identity)
        if with_proof:
            return self._invoke(invocation)
        token = PROOFS_WANTED.set(False)
        try:
            d = self._invoke(invocation)
        finally:
            PROOFS_WANTED.reset(token)
        return d.addCallback(_without_proof)

    def _caller(self, request: Request) -> Identity:
        """The caller's identity from its TLS client certificate (anonymous on plain HTTP), with this router's
        role grants. A revoked certificate never gets here: :meth:`dispatch` refuses it first, on every endpoint."""
        return caller_identity(request, self.governance.grants)

    def _refuse_revoked(self, request: Request) -> None:
        """401 ``unauthenticated`` when the router's revocation list names the client's certificate or a CA
        certificate of its chain. The chain is read once per connection (:func:`client_chain`), the list is asked
        on every request: a list reloaded mid-connection applies to the connection's next request
        (``tests.test_governance_rest.RevokedUserTests``)."""
        chain = client_chain(request)
        if not chain:
            return
        assert self.is_revoked is not None
        for index, der in enumerate(chain):
            if self.is_revoked(der):
                which = "the client certificate" if index == 0 else f"CA certificate {index} of the client's chain"
                raise RouterError("unauthenticated", f"certificate revoked: {which} is on this router's revocation "
                                                     f"list", {"check": "revoked"})

    def _audit(self, request: Request, query: dict[str, str]) -> Deferred[dict[str, Any]]:
        """``GET /audit``: records of the trail (interface ``audit.read``); a refusal is itself recorded."""
        identity = self._caller(request)
        try:
            self.governance.authorize(identity, None, "audit.read", "this router")
        except RouterError as exc:
            gov.record(self.audit, identity, "audit.read", "audit", [sorted(query.items())], exc.code)
            raise
        return gov.read_audit(self.audit, gov.audit_query(query))

    def _admin(self, request: Request, segments: list[str | None], shown_path: str) -> Any:
        """``POST /admin/peers`` and ``DELETE /admin/peers/{id}`` (interface ``admin.peers``), each recorded in
        the audit trail with its outcome, refused or not; ``/admin/accounts`` goes to :meth:`_accounts`."""
        if len(segments) >= 2 and segments[1] == "accounts":
            return self._accounts(request, segments, shown_path)
        if len(segments) not in (2, 3) or segments[1] != "peers":
            raise RouterError("not_found", f"no endpoint at {shown_path}; GET / lists the endpoints")
        if any(s is None for s in segments):
            raise RouterError("bad_request", "path segments must be valid UTF-8")
        allowed = _POST_METHODS if len(segments) == 2 else _DELETE_METHODS
        if request.method not in allowed:
            raise _MethodNotAllowed(request.method, allowed, shown_path)
        _query(request, frozenset())
        identity = self._caller(request)
        method = "addPeer" if len(segments) == 2 else "removePeer"
        args: list[Any] = [] if len(segments) == 2 else [str(segments[2])[:300]]
        try:
            self.governance.authorize(identity, None, "admin.peers", "this router")
            if len(segments) == 2:
                address, peer_id = gov.peer_to_add(self._json_body(request))
                args = [address, peer_id]
                answer = self._peer_admin("add_peer")(address, peer_id)
            else:
                answer = self._peer_admin("remove_peer")(gov.peer_to_remove(str(segments[2])))
        except RouterError as exc:
            gov.record(self.audit, identity, "admin.peers", method, args, exc.code)
            raise
        gov.record(self.audit, identity, "admin.peers", method, args, "ok")
        return answer

    def _accounts(self, request: Request, segments: list[str | None], shown_path: str) -> Any:
        """``GET``/``POST /admin/accounts`` and ``DELETE /admin/accounts/{user}/{zone}.{chain}`` (interface
        ``admin.accounts``), each recorded in the audit trail with its outcome, refused or not."""
        if len(segments) not in (2, 4):
            raise RouterError("not_found", f"no endpoint at {shown_path}; GET / lists the endpoints")
        if any(s is None for s in segments):
            raise RouterError("bad_request", "path segments must be valid UTF-8")
        allowed = (*_GET_METHODS, *_POST_METHODS) if len(segments) == 2 else _DELETE_METHODS
        if request.method not in allowed:
            raise _MethodNotAllowed(request.method, allowed, shown_path)
        listing = request.method in _GET_METHODS
        query = _query(request, gov.ACCOUNTS_PARAMETERS if listing else frozenset())
        identity = self._caller(request)
        method = "listAccounts" if listing else "createAccount" if len(segments) == 2 else "removeAccount"
        args: list[Any] = ([sorted(query.items())] if listing else
                           [] if len(segments) == 2 else [str(segments[2])[:80], str(segments[3])[:160]])

        def done(result: Any) -> Any:
            gov.record(self.audit, identity, "admin.accounts", method, args, gov.outcome_of(result))
            return result

        try:
            self.governance.authorize(identity, None, "admin.accounts", "this router")
            if listing:
                user, chain = gov.accounts_filter(query)
                d = gov.list_accounts(self.keystore, self.blocking, user, chain)
            elif len(segments) == 2:
                user, chain = gov.account_to_create(self._json_body(request))
                args = [user, chain]
                d = gov.create_account(self.keystore, self.blocking, user, chain)
            else:
                user, chain = gov.account_to_remove(str(segments[2]), str(segments[3]))
                d = gov.remove_account(self.keystore, self.blocking, user, chain)
        except RouterError as exc:
            done(exc)
            raise
        return d.addBoth(done)

    def _peer_admin(self, name: str) -> Callable[..., dict[str, Any]]:
        # Not part of RouterFacade: a facade without it (the simulator's, a test fake) answers 422 unsupported.
        method: Callable[..., dict[str, Any]] | None = getattr(self.router, name, None)
        if method is None:
            raise RouterError("unsupported", "this router does not manage peers at run time")
        return method

    def _invoke(self, invocation: Invocation) -> Deferred[Any]:
        try:
            return self.router.invoke(invocation)
        except WireError as exc:
            # Building the REQUEST for a remote chain refused a value the wire cannot carry (an integer outside
            # -2**63 .. 2**64-1): the client's arguments are at fault, not the router.
            raise RouterError("bad_args", f"the arguments cannot be sent to the router serving "
                                          f"{invocation.path.chain_path}: {exc.message[:300]}") from None

    def _read_body(self, request: Request) -> bytes:
        # RestRequest already stopped storing at the limit; reading one byte more tells a full body from an
        # oversized one when this resource sits behind another request class.
        content = request.content
        if content is None:
            return b""
        content.seek(0)
        body = content.read(self.max_body + 1)
        if len(body) > self.max_body:
            raise _too_large(self.max_body, None)
        return cast(bytes, body)


def _filter_resources(items: list[dict[str, Any]], pattern: IPathPattern) -> list[dict[str, Any]]:
    kept = []
    for item in items:
        try:
            path = IPath.parse(str(item.get("ipath", "")))
        except IPathError:
            continue
        if pattern.matches(path):
            kept.append(item)
    return kept


def _too_large(limit: int, declared: int | None) -> RouterError:
    size = f" of {declared} bytes" if declared is not None else ""
    return RouterError(
        "too_large",
        f"request body{size} exceeds the limit of {limit} bytes",
        {"limit": limit, **({"length": declared} if declared is not None else {})},
    )


class RestRequest(Request):
    """A request that refuses a body over the site's limit as soon as it knows, instead of buffering it first.

    twisted.web reads the whole body before the resource sees the request; this class answers 413 from the header
    (Content-Length) or from the running byte count (chunked encoding), so the router never holds more than
    ``max_body`` bytes of one body.

    After the 413 the connection is not closed at once. A client that writes its whole body before reading (urllib,
    requests) would get a TCP reset instead of the answer if the server closed with unread data in its socket, so
    the rest of the body is read and dropped, until the body has reached ``site.drain_limit`` bytes in all or
    ``site.drain_timeout`` seconds have passed; a declared length above the drain limit closes the connection at once.
    """

    _rejected = False
    _received = 0
    _drain_call: Any = None  # an IDelayedCall; zope interfaces do not type-check as classes
    #: The exchange waiting to answer this request, told directly when the client leaves (see _Exchange).
    exchange: _Exchange | None = None
    #: Set when process() took the lean route; only then does write_json send its own header block (after the stock
    #: route, Server and Date are already among the response headers, and an encoder may be waiting for the body).
    _lean = False

    def _site(self) -> RestSite | None:
        site = getattr(self.channel, "site", None)
        return site if isinstance(site, RestSite) else None

    def gotLength(self, length: int | None) -> None:
        site = self._site()
        if site is not None and length is not None and length > site.max_body:
            # Refuse before twisted.web answers "100 Continue": a client that waits for it never sends the body.
            self.requestHeaders.removeHeader(b"Expect")
            self._reject(site, _too_large(site.max_body, length), drain=length <= site.drain_limit)
            return
        super().gotLength(length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        site = self._site()
        self._received += len(data)
        if self._rejected:
            if site is None or self._received > site.drain_limit:
                self._close()
            return
        if site is not None and self._received > site.max_body:
            self._reject(site, _too_large(site.max_body, None), drain=True)
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]

    def _reject(self, site: RestSite, error: RouterError, *, drain: bool) -> None:
        self._rejected = True
        if self.content is not None:
            self.content.close()
        self.content = io.BytesIO()
        payload = error_body(error)
        head = (
            b"HTTP/1.1 413 Request Entity Too Large\r\n"
            b"Content-Type: " + JSON_CONTENT_TYPE + b"\r\n"
            b"Content-Length: " + str(len(payload)).encode("ascii") + b"\r\n"
            b"Connection: close\r\n\r\n"
        )
        # Written directly: the request line's method and version are not parsed into this object yet, and the
        # connection closes after it, so no later response can interleave with this one.
        transport = self.channel.transport
        if transport is not None:
            cast(Any, transport).write(head + payload)
        site.counters["requests"] += 1
        _count_status(site.counters, 413)
        if site.log_requests:
            _log.info("request refused: {message}", message=error.message)
        if drain:
            clock: Any = site.reactor  # IReactorTime: zope interface methods do not type-check as methods
            self._drain_call = clock.callLater(site.drain_timeout, self._close)
        else:
            self._close()

    def _close(self) -> None:
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
        if self.channel is not None:
            self.channel.loseConnection()  # type: ignore[no-untyped-call]

    def process(self) -> None:
        """Hand the request straight to the site's RestApi.

        twisted.web's own process() would set Server and Date headers (formatting the date anew for every request),
        unquote every path segment and walk the resource tree; here the tree is one leaf, the segments are unquoted
        only when they hold a '%', and the fixed headers go out as one pre-joined block with the answer
        (:meth:`write_json`). Anything other than a RestSite serving its RestApi, and ``*`` requests, take the stock
        route.
        """
        if self._rejected:
            self._close()  # the refused body has been read to its end; the 413 said the connection closes
            return
        site = self._site()
        path = self.path
        if site is None or site.resource is not site.api or path == b"*" or not self._lean_channel():
            super().process()  # type: ignore[no-untyped-call]
            return
        self._lean = True
        self.site = site
        self.prepath = []
        self.sitepath: list[bytes] = []
        self.postpath = [unquote_to_bytes(s) if b"%" in s else s for s in path[1:].split(b"/")]
        try:
            site.api.render(self)  # always NOT_DONE_YET: the exchange answers through write_json
        except BaseException:
            self.processingFailed(Failure())  # type: ignore[no-untyped-call]

    def write_json(self, status: int, payload: bytes, headers: dict[bytes, bytes] | None = None) -> None:
        """Send a whole JSON answer in one write and finish the request (through twisted.web's own methods when
        process() took the stock route).

        The same status line and headers as setResponseCode + setHeader + write + finish would send (plus the Server
        and Date headers process() no longer sets), without building them header by header: the shared headers are
        one cached block, and whatever twisted.web has already put in ``responseHeaders`` (``Connection: close``
        for a client that asked for it) is kept. One write also means one TLS record over HTTPS, not two.
        """
        if self.finished or self._disconnected:
            return
        if not self._lean or self.startedWriting:
            _write_json_stock(self, status, payload, headers)
            return
        reason, line = _status(status)
        self.code = status
        self.code_message = reason
        parts = [self.clientproto, b" ", line, b"\r\n"]
        for name, values in self.responseHeaders.getAllRawHeaders():
            for value in values:
                parts += (name, b": ", value, b"\r\n")
        parts.append(_HEADERS.get())
        if headers:
            for name, value in headers.items():
                parts += (name, b": ", value, b"\r\n")
        parts.append(b"Content-Length: %d\r\n\r\n" % len(payload))
        self.startedWriting = 1
        if self.method != b"HEAD":
            parts.append(payload)
            self.sentLength = len(payload)
        self.channel.write(b"".join(parts))  # type: ignore[no-untyped-call]
        if not self._disconnected:
            self.finish()  # type: ignore[no-untyped-call]

    def _lean_channel(self) -> bool:
        # write_json writes HTTP/1.x bytes itself; another channel (an HTTP/2 stream) frames answers its own way.
        return isinstance(self.channel, HTTPChannel)

    def connectionLost(self, reason: Failure) -> None:
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
        super().connectionLost(reason)  # type: ignore[no-untyped-call]
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange._client_left(reason)

    def processingFailed(self, reason: Failure) -> Failure:
        """A failure that escaped the resource: answered in the JSON envelope, never as twisted.web's HTML page."""
        ref = _new_ref()
        _log.failure("{uri} failed (ref {ref})", failure=reason, uri=untrusted(self.uri.decode("latin-1")), ref=ref)
        if self.finished or self._disconnected:
            return reason
        payload = error_body(_internal_error(ref))
        site = self._site()  # before the answer: finishing the request detaches it from its channel
        self.write_json(500, payload)
        if site is not None:
            _count_status(site.counters, 500)
        return reason


class RestSite(Site):
    """The Site serving :class:`RestApi`; holds the counters /status reports and the body limits."""

    #: How much of a refused body is read and dropped so that the client can see the 413 (see RestRequest).
    drain_limit: int = 16 * 1024 * 1024
    #: How long the connection stays open for that, in seconds.
    drain_timeout: float = 10.0

    def __init__(
        self, api: RestApi, *, max_body: int, log_requests: bool, reactor: IReactorTime | None = None,
        header_timeout: float | None = DEFAULT_HEADER_TIMEOUT,
        max_connections_per_client: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            api, requestFactory=RestRequest, parsePOSTFormSubmission=False, reactor=reactor
        )
        self.api = api
        self.counters: dict[str, int] = api.counters
        self.max_body = max_body
        self.log_requests = log_requests
        self.displayTracebacks = False
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        #: Connections per client address (rest/http.py): one client cannot take every socket.
        self.clients = ClientConnections(max_connections_per_client)
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()

    def log(self, request: http.Request) -> None:
        """Silences twisted.web's access log; the API emits its own structured events when ``log_requests``."""

    def buildProtocol(self, addr: Any) -> Any:
        client = str(getattr(addr, "host", addr))
        if not self.clients.admit(client):
            return RefusedConnection(self.clients.limit)
        protocol = super().buildProtocol(addr)
        if protocol is None:
            self.clients.release(client)
            return None
        channel = getattr(protocol, "_channel", protocol)
        if isinstance(channel, RestChannel):
            channel.header_timeout = self.header_timeout
            channel.body_timeout = self.body_timeout
            channel.on_close = lambda: self.clients.release(client)
        else:  # pragma: no cover - a Twisted without the generic wrapper: no per-client count on this connection
            self.clients.release(client)
        self._open.add(protocol)
        return protocol

    def close_connections(self) -> None:
        """Close the clients' connections (kept alive between requests): a stopping router must not leave them
        open after it stopped listening."""
        for protocol in list(self._open):
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.loseConnection()

    if _CHANNEL_WRAPPER is not None:

        def protocol(self) -> Any:  # what Factory.buildProtocol calls; the stock one wraps a plain HTTPChannel
            return _CHANNEL_WRAPPER(RestChannel())  # type: ignore[no-untyped-call]


def make_site(
    router: RouterFacade,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    log_requests: bool = False,
    reactor: IReactorTime | None = None,
    metrics: Any = None,
    header_timeout: float | None = DEFAULT_HEADER_TIMEOUT,
    max_connections_per_client: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    limits: Limits | None = None,
    governance: Governance | None = None,
    audit: AuditStore | None = None,
    is_revoked: Callable[[bytes], bool] | None = None,
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
    keystore: Keystore | None = None,
) -> RestSite:
    """The REST API for one router, ready to be given to a TCP or TLS listener.

    For client identity, listen with TLS and a context that verifies offered client certificates against the
    network's CA; plain HTTP (or TLS without a client certificate) makes every caller ``anonymous``.
    ``reactor`` only drives connection timeouts; the simulator passes its virtual clock. ``header_timeout``,
    ``body_timeout`` and ``max_connections_per_client`` are the [rest] settings of those names (see
    :mod:`wecross.rest.http`); ``limits`` the router's [limits] (clock_skew and request_deadline bound a client's
    signed expiry; the defaults when None); ``governance`` its permissions; ``audit`` its audit trail (GET /audit;
    None: 404); ``is_revoked`` whether its revocation list names a certificate (DER), asked about each client's
    chain (None: nothing checked); ``keystore`` its users' chain accounts (/admin/accounts; None: 404).
    """
    if max_body < 0:
        raise ValueError(f"max_body must be >= 0, got {max_body}")
    api = RestApi(router, max_body=max_body, counters=new_counters(), log_requests=log_requests, metrics=metrics,
                  limits=limits, governance=governance, audit=audit, is_revoked=is_revoked,
                  keystore=keystore)
    return RestSite(api, max_body=max_body, log_requests=log_requests, reactor=reactor, header_timeout=header_timeout,
                    max_connections_per_client=max_connections_per_client,
                    body_timeout=body_timeout)


__all__ = [
    "ANONYMOUS",
    "DEFAULT_MAX_BODY",
    "RestApi",
    "RestChannel",
    "RestRequest",
    "RestSite",
    "client_identity",
    "make_site",
    "new_counters",
]
