"""One router-to-router link on Twisted: handshake, heartbeats, request multiplexing.

The protocol is a thin shell: frames come from the sans-IO :class:`~wecross.wire.codec.FrameDecoder`, link health from
:class:`~wecross.peer.link.LinkHealth`; what a request *means* is the business of the :class:`LinkOwner` (the peer
service, which passes requests on to the router). Every frame problem closes this one connection, is counted by
reason and is logged with the peer's address; nothing from a peer can raise into the reactor.

What a peer wrote (BYE reasons, ERROR messages, its router id) reaches a log only through
:func:`wecross.logs.untrusted` (bounded, escaped). What this link writes is encoded before anything is registered:
a REQUEST the wire cannot carry fails its caller with ``bad_args`` and leaves no pending entry or timer behind
(:meth:`PeerLink.request`), and an ERROR answer is clamped until it fits the wire's limits (:func:`error_frame`);
``tests.test_hostile_input`` holds both.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import defer
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wecross.errors import RouterError
from wecross.logs import untrusted
from wecross.peer.link import LinkHealth
from wecross.wire.codec import Envelope, FrameDecoder, encode_frame
from wecross.wire.errors import WireError
from wecross.wire.limits import Limits as WireLimits
from wecross.wire.messages import (
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Bye,
    Error,
    GossipDigest,
    GossipRecords,
    GossipSummary,
    Hello,
    Ping,
    Pong,
    Request,
    Response,
)

if TYPE_CHECKING:
    from wecross.peer.tls import PeerIdentity

log = Logger()

#: Longest ERROR message this router writes: a message quoting a request's path or arguments is cut here, which
#: keeps the frame far inside any ``max_frame`` (Limits' floor is 64 bytes only for the envelope-less tests).
ERROR_MESSAGE_MAX = 1024
#: Path entries an ERROR frame keeps when the whole path does not fit (the last ones: the hops nearest the answer).
ERROR_PATH_KEEP = 16
#: Frames a link writes between two sends it forces (see :meth:`PeerLink._write`).
FLUSH_EVERY = 4


def error_frame(
    msg_id: int, reply_to: int, request_id: bytes, code: str, message: str, path: list[Any],
    limits: WireLimits,
) -> bytes:
    """An encoded ERROR answer that always fits ``limits``: the message is cut to :data:`ERROR_MESSAGE_MAX`
    characters (and made encodable), and if the frame is still refused (a code or path the wire rejects, a frame
    over ``max_frame``) the path is cut to its last entries and then the code becomes ``internal``. The last form
    holds only constants and the request id the peer itself sent, so it always encodes."""
    text = message if len(message) <= ERROR_MESSAGE_MAX else f"{message[:ERROR_MESSAGE_MAX]}... (cut)"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    entries = [str(p) for p in path]
    attempts: tuple[tuple[str, str, list[str]], ...] = (
        (code, text, entries),
        (code, text[:200], entries[-ERROR_PATH_KEEP:]),
        ("internal", "the router's answer did not fit the wire's limits", []),
    )
    for attempt_code, attempt_message, attempt_path in attempts:
        try:
            error = Error(reply_to=reply_to, request_id=request_id, code=attempt_code, message=attempt_message,
                          path=attempt_path)
            return encode_frame(msg_id, error, limits=limits)
        except WireError:
            continue
    raise AssertionError("the constant ERROR frame did not encode")  # pragma: no cover


class LinkOwner(Protocol):
    """What a link needs from the service that owns it."""

    local_id: str

    def hello(self) -> Hello:
        """The HELLO this router sends."""

    def identify(self, link: PeerLink, hello: Hello) -> str | None:
        """Check the peer's claimed id against its certificate; return a refusal reason or None."""

    def link_up(self, link: PeerLink) -> str | None:
        """The handshake finished; return a reason to refuse the link (e.g. duplicate) or None to keep it."""

    def link_down(self, link: PeerLink, reason: str) -> None:
        """The link is gone (after link_up, or refused during the handshake)."""

    def link_measured(self, link: PeerLink) -> None:
        """The link has its first RTT sample: from now on it can be weighed for routing."""

    def frame_error(self, link: PeerLink, error: WireError) -> None:
        """A frame could not be decoded; the link is being closed."""

    def handle_request(self, link: PeerLink, request: Request) -> Deferred[dict[str, Any]]:
        """Serve a REQUEST; fire with the result dict or fail with RouterError."""

    def handle_gossip(self, link: PeerLink, message: GossipDigest | GossipRecords | GossipSummary) -> None:
        """Anti-entropy and pushed records for the gossip directory."""


@implementer(IPushProducer)
class PeerLink(TwistedProtocol):
    """The protocol of one TLS connection to another router (either direction).

    The link is also the push producer of its own transport: when the send buffer fills (a slow or congested link),
    the transport pauses it, and :attr:`writable` turns False until the buffer drains. Requests and answers are
    written regardless (they are few and latency-bound); bulk senders (gossip) check :attr:`writable` and wait with
    :meth:`when_writable`, so that what a slow link cannot carry yet stays as a list of record ids rather than as
    queued bytes, and a record superseded meanwhile is sent once, in its newest version.
    """

    def __init__(
        self,
        owner: LinkOwner,
        clock: IReactorTime,
        *,
        outbound: bool,
        expected_id: str | None,
        heartbeat_interval: float,
        dead_after: int,
        handshake_timeout: float,
        wire_limits: WireLimits,
        max_in_flight: int,
    ) -> None:
        self.owner = owner
        self.clock = clock
        self.outbound = outbound
        self.expected_id = expected_id
        self.heartbeat_interval = heartbeat_interval
        self.handshake_timeout = handshake_timeout
        self.max_in_flight = max_in_flight
        self.wire_limits = wire_limits
        self.decoder = FrameDecoder(wire_limits)
        self.health = LinkHealth(clock.seconds(), dead_after, heartbeat_interval)
        self.peer_hello: Hello | None = None
        self.peer_identity: PeerIdentity | None = None
        self.version = PROTOCOL_VERSION
        self.established = False
        self.closing_reason: str | None = None
        self.connected_at = clock.seconds()
        self.bytes_in = 0
        self.bytes_out = 0
        self.frames_in = 0
        self.frames_out = 0
        self._ids = itertools.count(1)
        #: msg_id -> (the caller's Deferred, the timeout it was given) of each request awaiting its answer.
        self._pending: dict[int, tuple[Deferred[Response], float]] = {}
        #: (deadline, msg_id) of requests sent, earliest first, and the one timer set for the earliest: see request.
        self._deadlines: list[tuple[float, int]] = []
        self._deadline_timer: IDelayedCall | None = None
        self._deadline_at = math.inf
        self._handshake_timer: IDelayedCall | None = None
        self._heartbeat_timer: IDelayedCall | None = None
        self._abort_timer: IDelayedCall | None = None
        self._watchdog_timer: IDelayedCall | None = None
        self.late_replies = 0
        self.lost = False
        self.write_paused = False
        self.pauses = 0
        self._writable_waiters: list[Callable[[], None]] = []
        #: The socket's transport under TLS (None over in-memory transports), frames written since the last
        #: forced send, and whether one is under way: see _write.
        self._socket: FileDescriptor | None = None
        self._unflushed = 0
        self._flushing = False

    # -- identity ---------------------------------------------------------------------------------------------------

    @property
    def peer_id(self) -> str | None:
        return self.peer_hello.router_id if self.peer_hello else None

    @property
    def address(self) -> str:
        transport = self.transport
        if transport is None:
            return "?"
        peer = transport.getPeer()
        host = getattr(peer, "host", "?")
        port = getattr(peer, "port", "?")
        return f"{host}:{port}"

    def describe(self) -> str:
        direction = "to" if self.outbound else "from"
        # The peer id comes from the peer's HELLO (checked against its certificate, but still its own text).
        return f"link {direction} {untrusted(self.peer_id or '?', 64)} ({self.address})"

    # -- Twisted events ---------------------------------------------------------------------------------------------

    def connectionMade(self) -> None:
        # Requests and answers are small and latency-bound: without TCP_NODELAY, Nagle's algorithm and delayed ACKs
        # held some answers for ~40 ms (bench/forward.py, p99.9). In-memory transports may not have the option.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        below: Any = self.transport
        for _ in range(4):  # this link's transport is TLS (maybe wrapped once more), whose transport is the socket
            if below is None or isinstance(below, FileDescriptor):
                break
            below = getattr(below, "transport", None)
        self._socket = below if isinstance(below, FileDescriptor) else None
        register = getattr(self.transport, "registerProducer", None)
        if register is not None:
            with contextlib.suppress(RuntimeError):  # a producer is registered already (test transports)
                register(self, True)
        # Written now, sent by the TLS layer as soon as the handshake completes.
        self._send(self.owner.hello())
        self._handshake_timer = self.clock.callLater(self.handshake_timeout, self._handshake_timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self.closing_reason is not None:
            return
        self.bytes_in += len(data)
        self.health.received(len(data))
        try:
            envelopes = self.decoder.feed(data)
        except WireError as exc:
            log.warn("{link}: bad frame ({reason}): {message}; closing this link",
                     link=self.describe(), reason=exc.reason, message=untrusted(exc.message))
            self.owner.frame_error(self, exc)
            self.close(f"bad frame: {exc.reason}", bye=True, abort=True)
            return
        now = self.clock.seconds()
        for envelope in envelopes:
            if self.closing_reason is not None:
                return
            self.frames_in += 1
            self.health.heard(now)
            self._dispatch(envelope)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = True
        self.established = False
        why = self.closing_reason or reason.getErrorMessage()
        self.closing_reason = why
        for timer in (self._handshake_timer, self._heartbeat_timer, self._abort_timer, self._watchdog_timer,
                      self._deadline_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._deadlines, self._deadline_timer, self._deadline_at = [], None, math.inf
        self._writable_waiters = []
        pending, self._pending = self._pending, {}
        for deferred, _ in pending.values():
            deferred.errback(RouterError("peer_lost", f"link to {self.peer_id or self.address} closed: {why}"))
        self.owner.link_down(self, why)

    # -- sending ----------------------------------------------------------------------------------------------------

    def _send(self, message: Any, msg_id: int | None = None) -> int:
        if msg_id is None:
            msg_id = next(self._ids)
        self._write(encode_frame(msg_id, message))
        return msg_id

    def _write(self, frame: bytes) -> None:
        """Write a frame; every FLUSH_EVERY frames, send what the socket holds at once.

        Why: a socket transport only sends at the reactor's next turn, so a router that reads a burst (16 REST
        requests, or 16 REQUEST frames in one TLS record) sends all of its frames after the whole burst, and the
        two routers of a forwarded call then take turns: the owner idles while the entry handles a burst, the entry
        while the owner does. bench/forward.py showed it: router-a busy 61 % and router-b 31 % of the time at 16
        connections, never both at once. Sending every few frames lets the next router start on the first ones
        while this one handles the rest (one_hop throughput +15-19 % there for a few µs of CPU per request in
        send calls; FLUSH_EVERY 2 and 8 gained less). A lone frame still leaves at the reactor's next turn, as
        before. ``doWrite`` is what the reactor itself calls when the socket is writable; it is not called while
        the transport is closing (its return value then asks the reactor to close, which only the reactor may
        do) or from within itself (it may resume this producer, which may write).
        """
        self.bytes_out += len(frame)
        self.frames_out += 1
        assert self.transport is not None
        self.transport.write(frame)
        self._unflushed += 1
        if self._unflushed >= FLUSH_EVERY:
            self._unflushed = 0
            socket = self._socket
            if socket is not None and not self._flushing and not socket.disconnecting and not socket.disconnected \
                    and not getattr(socket, "_writeDisconnecting", False):
                self._flushing = True
                try:
                    socket.doWrite()
                finally:
                    self._flushing = False

    # -- flow control (IPushProducer: the transport calls these) --------------------------------------------------

    @property
    def writable(self) -> bool:
        """Whether bulk data should be written now: the link is up and its send buffer is not full."""
        return self.established and self.closing_reason is None and not self.write_paused

    def when_writable(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, the next time the transport resumes us (never if the link closes first)."""
        self._writable_waiters.append(callback)

    def pauseProducing(self) -> None:
        if not self.write_paused:
            self.write_paused = True
            self.pauses += 1

    def resumeProducing(self) -> None:
        self.write_paused = False
        waiters, self._writable_waiters = self._writable_waiters, []
        for callback in waiters:
            if self.write_paused or self.closing_reason is not None:
                self._writable_waiters.append(callback)
                continue
            try:
                callback()
            except Exception:
                log.failure("{link}: a writable callback raised", link=self.describe())

    def stopProducing(self) -> None:
        """The connection is going away; connectionLost follows and cleans up."""
        self._writable_waiters = []

    def close(self, reason: str, *, bye: bool = True, abort: bool = False) -> None:
        """Close with a reason the peer can read (BYE) and we log; idempotent."""
        if self.closing_reason is not None or self.transport is None:
            return
        self.closing_reason = reason
        # TLS waits for a registered producer to unregister before it sends its close alert: without this, a
        # closing link would stay open until the peer gave up.
        unregister = getattr(self.transport, "unregisterProducer", None)
        if unregister is not None:
            with contextlib.suppress(Exception):
                unregister()
        if bye:
            # A transport already half gone must not stop the close.
            with contextlib.suppress(Exception):
                self._send(Bye(reason=reason[:200]))
        if abort and not bye:
            # A dead peer will never answer TLS's close: drop the connection now, which fails pending requests at
            # once so they can move to another path.
            self.transport.loseConnection()
            self._abort()
            return
        if abort:
            # After a framing error the stream cannot be trusted: drop it, but let TLS flush the BYE first.
            self._abort_timer = self.clock.callLater(0.5, self._abort)
        self.transport.loseConnection()

    def _abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def request(self, request: Request, timeout: float) -> Deferred[Response]:
        """Send a REQUEST and fire with its RESPONSE; fail with RouterError (ERROR, timeout, link lost)."""
        if not self.established or self.closing_reason is not None:
            return defer.fail(RouterError("peer_lost", f"link to {self.peer_id} is not up"))
        if len(self._pending) >= self.max_in_flight:
            return defer.fail(RouterError("overloaded", f"{self.max_in_flight} requests already in flight to "
                                                        f"{self.peer_id}"))
        msg_id = next(self._ids)
        try:
            # Encoded before anything is registered: a value the wire cannot carry (a lone surrogate, a list
            # mutated after construction) fails this caller alone, with no pending entry or timer left behind.
            frame = encode_frame(msg_id, request)
        except WireError as exc:
            return defer.fail(RouterError("bad_args", f"the request cannot be sent to {self.peer_id}: "
                                                      f"{exc.message[:ERROR_MESSAGE_MAX]}"))

        def cancel(d: Deferred[Response]) -> None:
            self._pending.pop(msg_id, None)  # its deadline entry is dropped when reached or compacted

        deferred: Deferred[Response] = Deferred(cancel)
        # One timer per link, set for the earliest deadline, instead of one per request (a callLater and its cancel
        # cost more than the rest of sending a request on the entry router): answered requests leave their entry
        # in the heap, skipped when reached, and the heap is rebuilt when such entries are over half of it. Each
        # request still fails at its own deadline, to the tick: the timer is set for exactly that time.
        now = self.clock.seconds()
        delay = max(timeout, 0.0)
        deadline = now + delay
        self._pending[msg_id] = (deferred, timeout)
        heapq.heappush(self._deadlines, (deadline, msg_id))
        if deadline < self._deadline_at:
            self._set_deadline_timer(deadline, delay)
        elif len(self._deadlines) > 2 * len(self._pending) + 64:
            self._deadlines = [entry for entry in self._deadlines if entry[1] in self._pending]
            heapq.heapify(self._deadlines)
        self._write(frame)
        return deferred

    def _set_deadline_timer(self, deadline: float, delay: float) -> None:
        if self._deadline_timer is not None and self._deadline_timer.active():
            self._deadline_timer.cancel()
        self._deadline_at = deadline
        self._deadline_timer = self.clock.callLater(delay, self._deadlines_reached)

    def _deadlines_reached(self) -> None:
        """Fail every request whose deadline has come (the timer's own time counts as reached, whatever rounding
        the clock did), then set the timer for the next one still waiting."""
        due = max(self.clock.seconds(), self._deadline_at)
        self._deadline_timer, self._deadline_at = None, math.inf
        heap, pending = self._deadlines, self._pending
        expired: list[tuple[Deferred[Response], float]] = []
        while heap and heap[0][0] <= due:
            entry = pending.pop(heapq.heappop(heap)[1], None)
            if entry is not None:
                expired.append(entry)
        while heap and heap[0][1] not in pending:
            heapq.heappop(heap)
        if heap:
            self._set_deadline_timer(heap[0][0], max(heap[0][0] - self.clock.seconds(), 0.0))
        for deferred, timeout in expired:
            deferred.errback(RouterError("timeout", f"no answer from {self.peer_id} within {timeout:.3f} s"))

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # -- receiving --------------------------------------------------------------------------------------------------

    def _dispatch(self, envelope: Envelope) -> None:
        message = envelope.message
        if self.peer_hello is None:
            if isinstance(message, Hello):
                self._on_hello(message)
            elif isinstance(message, Bye):
                log.info("{link}: peer closed during handshake: {reason}", link=self.describe(),
                         reason=untrusted(message.reason))
                self.close(f"peer said bye: {untrusted(message.reason)}", bye=False)
            else:
                self._protocol_violation(f"{type(message).__name__} before HELLO")
            return
        if isinstance(message, Request):
            self._on_request(envelope.msg_id, message)
        elif isinstance(message, Response | Error):
            self._settle(message.reply_to, message)
        elif isinstance(message, Ping):
            self._send(Pong(seq=message.seq, sent_at=message.sent_at))
        elif isinstance(message, Pong):
            first = self.health.srtt is None
            if self.health.pong(message.seq, message.sent_at, self.clock.seconds()) is not None and first:
                self.owner.link_measured(self)
        elif isinstance(message, GossipDigest | GossipRecords | GossipSummary):
            self.owner.handle_gossip(self, message)
        elif isinstance(message, Bye):
            log.info("{link}: peer closed the link: {reason}", link=self.describe(), reason=untrusted(message.reason))
            self.close(f"peer said bye: {untrusted(message.reason)}", bye=False)
        elif isinstance(message, Hello):
            self._protocol_violation("second HELLO")
        # EVENT is served by a later layer; until then it is ignored, not fatal.

    def _protocol_violation(self, what: str) -> None:
        log.warn("{link}: protocol violation: {what}; closing", link=self.describe(), what=untrusted(what))
        self.owner.frame_error(self, WireError("schema", what))
        self.close(f"protocol violation: {what}")

    def _on_hello(self, hello: Hello) -> None:
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        common = set(hello.versions) & set(SUPPORTED_VERSIONS)
        if not common:
            log.warn("{link}: no common protocol version (peer {theirs}, ours {ours})", link=self.describe(),
                     theirs=untrusted(hello.versions), ours=list(SUPPORTED_VERSIONS))
            self.close(f"no common protocol version (ours {list(SUPPORTED_VERSIONS)})")
            return
        self.version = max(common)
        if self.expected_id is not None and hello.router_id != self.expected_id:
            self._refuse(f"expected router {self.expected_id!r}, peer says it is {untrusted(hello.router_id, 64)!r}")
            return
        refusal = self.owner.identify(self, hello)
        if refusal is not None:
            self._refuse(refusal)
            return
        self.peer_hello = hello
        self.established = True  # before link_up: the owner may send on the link at once (ADVERTISE)
        refusal = self.owner.link_up(self)
        if refusal is not None:
            self.established = False
            self.close(refusal)
            return
        log.info("{link}: up (protocol v{version})", link=self.describe(), version=self.version)
        # Ping at once, so the link has an RTT (which routing wants) before the first interval passes.
        self._heartbeat()
        self._watchdog_timer = self.clock.callLater(self.health.deadline() - self.clock.seconds(), self._watchdog)

    def _refuse(self, reason: str) -> None:
        log.warn("{link}: refused: {reason}", link=self.describe(), reason=untrusted(reason))
        self.close(f"refused: {reason}")

    def _handshake_timed_out(self) -> None:
        log.warn("{link}: no HELLO within {t} s; closing", link=self.describe(), t=self.handshake_timeout)
        self.close("handshake timeout")

    def _watchdog(self) -> None:
        """Fires at the link's deadline; the peer was usually heard from since, so it mostly just re-arms."""
        now = self.clock.seconds()
        if self.health.dead(now):
            self._declare_dead()
            return
        self._watchdog_timer = self.clock.callLater(max(self.health.deadline() - now, 0.0), self._watchdog)

    def _declare_dead(self) -> None:
        silent = self.clock.seconds() - self.health.last_heard
        log.warn("{link}: dead: nothing heard for {s:.3f} s ({n} heartbeat intervals)", link=self.describe(),
                 s=silent, n=self.health.dead_after)
        self.close("dead: heartbeats missed", bye=False, abort=True)

    def _heartbeat(self) -> None:
        now = self.clock.seconds()
        seq = self.health.tick(now)
        if seq is None:
            self._declare_dead()
            return
        self._send(Ping(seq=seq, sent_at=now))
        self._heartbeat_timer = self.clock.callLater(self.heartbeat_interval, self._heartbeat)

    def _settle(self, reply_to: int, message: Response | Error) -> None:
        entry = self._pending.pop(reply_to, None)
        if entry is None:
            # An answer after its deadline (or a link-level ERROR): harmless, but worth a counter.
            self.late_replies += 1
            if reply_to == 0 and isinstance(message, Error):
                log.warn("{link}: peer reports {code}: {message}", link=self.describe(),
                         code=untrusted(message.code, 64), message=untrusted(message.message))
            return
        deferred = entry[0]
        if isinstance(message, Response):
            deferred.callback(message)
        else:
            deferred.errback(RouterError(message.code, message.message, {"path": list(message.path)}))

    def _on_request(self, msg_id: int, request: Request) -> None:
        try:
            d = self.owner.handle_request(self, request)
        except Exception as exc:  # the owner's own bug must not kill the link
            d = defer.fail(exc)

        def answer(result: dict[str, Any]) -> None:
            if self.closing_reason is None:
                body = dict(result)  # the handler may keep its dict (replay cache): never mutate it
                path = body.pop("path", list(request.path))
                reply_id = next(self._ids)
                try:
                    frame = encode_frame(reply_id, Response(reply_to=msg_id, request_id=request.request_id,
                                                            result=body, path=path), limits=self.wire_limits)
                except WireError as exc:
                    # A result the wire cannot carry (too large, a value out of range) is this request's failure,
                    # answered as one, not a traceback and a request left to time out.
                    log.warn("{link}: the answer to request {rid} cannot be sent: {why}", link=self.describe(),
                             rid=request.request_id.hex()[:32], why=untrusted(exc.message))
                    frame = error_frame(reply_id, msg_id, request.request_id, "bad_response",
                                        f"the result cannot be carried by the wire: {exc.message}", path,
                                        self.wire_limits)
                self._write(frame)

        def failed(failure: Failure) -> None:
            if isinstance(failure.value, RouterError):
                code, message = failure.value.code, failure.value.message
                path = failure.value.details.get("path", list(request.path))
            else:
                log.failure("{link}: serving request {rid} failed", failure, link=self.describe(),
                            rid=request.request_id.hex()[:32])
                code, message, path = "internal", "internal error in the router", list(request.path)
            if self.closing_reason is None:
                # Clamped to fit: an answer the wire refused would leave the request unanswered until it times out.
                self._write(error_frame(next(self._ids), msg_id, request.request_id, code, message, path,
                                        self.wire_limits))

        d.addCallback(answer)
        d.addErrback(failed)

    def send(self, message: Any) -> None:
        """Send a message that expects no answer (gossip); dropped once the link is closing."""
        if self.established and self.closing_reason is None:
            self._send(message)
