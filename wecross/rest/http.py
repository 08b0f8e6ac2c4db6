"""The REST API's HTTP/1.1 connections: framing errors in the JSON envelope, a deadline for each request head, and
a cap on connections per client address.

twisted.web's HTTPChannel answers a malformed request (a bad request line, a header without a colon, too many or
too large headers, broken chunked framing) with a bare ``400 Bad Request`` and no body, and drops a line over its
length limit without a word; docs/rest-api.md promises every answer in the JSON envelope, so :class:`RestChannel`
answers those in it too (``bad_request``, status from :mod:`wecross.errors`) before it closes.

Its idle timeout restarts on every byte, so a client that sends its request head one byte at a time is never
dropped: each such connection holds a socket and a parser for as long as it likes. :class:`RestChannel` therefore
gives every request head a deadline of its own (``rest.header_timeout``), counted from the head's first byte (from
the connection's start for its first request), which no trickle of bytes extends, and every body one from the end
of its head (``rest.body_timeout``). And :class:`ClientConnections`
caps the connections one client address holds at once (``rest.max_connections_per_client``), so one client cannot
take every socket the process may open. ``tests.test_hostile_input.HttpFraming`` holds all three.
"""

from __future__ import annotations

from collections import Counter
from http import HTTPStatus
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.http import HTTPChannel

from wecross.errors import RouterError
from wecross.rest.json_body import JSON_CONTENT_TYPE, error_body

_log = Logger(namespace="wecross.rest")

#: Defaults of the [rest] settings of the same names (docs/configuration.md).
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 64


def error_response(error: RouterError) -> bytes:
    """A whole HTTP/1.1 answer carrying ``error`` in the JSON envelope, announcing that the connection closes."""
    payload = error_body(error)
    status = error.http_status
    try:
        phrase = HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        phrase = b"Error"
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % (status, phrase, JSON_CONTENT_TYPE, len(payload))
    ) + payload


class ClientConnections:
    """How many connections each client address holds (sans-IO: the site calls it as connections come and go)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the connection cap per client must be at least 1, got {limit}")
        self.limit = limit
        self.open: Counter[str] = Counter()
        self.refused = 0

    def admit(self, client: str) -> bool:
        """Count one more connection from ``client``; False (and nothing counted) if it holds ``limit`` already."""
        if self.open[client] >= self.limit:
            self.refused += 1
            return False
        self.open[client] += 1
        return True

    def release(self, client: str) -> None:
        left = self.open[client] - 1
        if left > 0:
            self.open[client] = left
        else:
            del self.open[client]


class RefusedConnection(Protocol):
    """What a client over its connection cap gets: one JSON ``overloaded`` answer, then the connection closes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(error_response(RouterError(
            "overloaded", f"this client address already holds {self.limit} connections to the REST API; close some "
                          "or reuse them (keep-alive)", {"limit": self.limit})))
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """Whatever the client sent is dropped: the answer was given at connect."""


class RestChannel(HTTPChannel):
    """An HTTP/1.1 connection that remembers its two addresses, answers framing errors in the JSON envelope and
    enforces a deadline on each request head.

    twisted.web's Request asks its channel for both addresses on every request; a connection's addresses never
    change, and asking the socket for the local one is a getsockname system call each time.
    """

    _host: Any = None
    _peer: Any = None
    #: Seconds a request head (request line and headers) may take from its first byte; None: no deadline.
    header_timeout: float | None = DEFAULT_HEADER_TIMEOUT
    #: Seconds a request body may take from the end of its head; None: no deadline.
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT
    _body_call: Any = None
    #: When the current body must be in (the clock's seconds); None: no body deadline running.
    _body_deadline: float | None = None
    #: Called once when the connection is gone (the site's per-client count).
    on_close: Any = None
    _head_call: Any = None
    #: When the current head must be in (the clock's seconds); None: no head deadline running.
    _head_deadline: float | None = None
    _awaiting_head = True
    _refusing = False
    _why = ""

    def getHost(self) -> Any:
        host = self._host
        if host is None:
            host = self._host = super().getHost()  # type: ignore[no-untyped-call]
        return host

    def getPeer(self) -> Any:
        peer = self._peer
        if peer is None:
            peer = self._peer = super().getPeer()  # type: ignore[no-untyped-call]
        return peer

    # -- the head deadline ------------------------------------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]
        self._arm_head_deadline()  # a connection that never sends a byte is held to it as well

    # Both deadlines are kept as a time, not as a timer per request: arming one is setting a float, disarming it is
    # clearing it, and one timer per connection and deadline (set when none is pending) checks the time when it
    # fires, re-aiming itself at a deadline that has moved on since. A request whose head and body arrive in one read,
    # the usual case, would otherwise create and cancel two reactor timers (a heap push each, and the cancelled
    # entries' later purge) for deadlines that never fire. The deadlines themselves are the same:
    # tests.test_hostile_input.HttpFraming, tests.test_rest_channel.DeadlineTimers.

    def _now(self) -> float:
        # The clock behind callLater (Site.buildProtocol sets it: the reactor, or a test's or the simulator's Clock).
        seconds = getattr(getattr(self.callLater, "__self__", None), "seconds", None)
        if seconds is None:  # pragma: no cover - a callLater that is not a clock's bound method
            from twisted.internet import reactor
            seconds = reactor.seconds  # type: ignore[attr-defined]
        now: float = seconds()
        return now

    def _arm_head_deadline(self) -> None:
        if self.header_timeout is not None and self._head_deadline is None:
            self._head_deadline = self._now() + self.header_timeout
            if self._head_call is None:  # a pending timer is due no later than this deadline: it re-aims itself
                self._head_call = self.callLater(self.header_timeout, self._head_due)

    def _disarm_head_deadline(self) -> None:
        self._head_deadline = None  # a pending timer finds nothing due and lapses (cancelled at connectionLost)

    def _head_due(self) -> None:
        self._head_call = None
        deadline = self._head_deadline
        if deadline is None:
            return
        left = deadline - self._now()
        if left > 0:
            self._head_call = self.callLater(left, self._head_due)
            return
        self._head_deadline = None
        self._head_too_slow()

    def _stop_timers(self) -> None:
        self._head_deadline = self._body_deadline = None
        for call in (self._head_call, self._body_call):
            if call is not None and call.active():
                call.cancel()
        self._head_call = self._body_call = None

    def dataReceived(self, data: bytes) -> None:
        if self._refusing:
            return
        if self._awaiting_head and data:
            self._arm_head_deadline()
        super().dataReceived(data)  # type: ignore[no-untyped-call]

    def allHeadersReceived(self) -> None:
        self._awaiting_head = False
        self._disarm_head_deadline()
        if self.body_timeout is not None and self._body_deadline is None:
            # The body gets its own deadline: the idle timeout restarts on every byte, so a client trickling a
            # body of max_body bytes would otherwise hold the connection and its buffer for hours.
            self._body_deadline = self._now() + self.body_timeout
            if self._body_call is None:
                self._body_call = self.callLater(self.body_timeout, self._body_due)
        super().allHeadersReceived()  # type: ignore[no-untyped-call]

    def allContentReceived(self) -> None:
        self._disarm_body_deadline()
        super().allContentReceived()  # type: ignore[no-untyped-call]

    def _disarm_body_deadline(self) -> None:
        self._body_deadline = None

    def _body_due(self) -> None:
        self._body_call = None
        deadline = self._body_deadline
        if deadline is None:
            return
        left = deadline - self._now()
        if left > 0:
            self._body_call = self.callLater(left, self._body_due)
            return
        self._body_deadline = None
        self._body_too_slow()

    def _body_too_slow(self) -> None:
        self._refuse(f"the request body did not arrive within {self.body_timeout:g} s", abort_after=1.0)

    def requestDone(self, request: Any) -> None:
        self._awaiting_head = True  # the next head's deadline starts with its first byte (the idle timeout till then)
        super().requestDone(request)  # type: ignore[no-untyped-call]

    def _head_too_slow(self) -> None:
        if not self._awaiting_head:
            return
        self._refuse(f"the request line and headers did not arrive within {self.header_timeout:g} s",
                     abort_after=1.0)

    # -- framing errors ---------------------------------------------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._why = f"the request line and headers exceed {self.totalHeadersSize} bytes"
        super().lineReceived(line)  # type: ignore[no-untyped-call]

    def lineLengthExceeded(self, line: bytes) -> None:
        # LineReceiver would close without a word.
        self._refuse(f"a request line or header line is longer than {self.MAX_LENGTH} bytes")

    def _respondToBadRequestAndDisconnect(self) -> None:
        why, self._why = self._why, ""
        self._refuse(why or "malformed HTTP request (request line, header syntax, header count or chunked framing)")

    def _refuse(self, why: str, abort_after: float | None = None) -> None:
        """Answer ``bad_request`` in the JSON envelope and close; only once per connection."""
        if self._refusing:
            return
        self._refusing = True
        self._stop_timers()
        self.setRawMode()  # stop parsing what else arrives: the connection is closing
        self.dataReceived = lambda data: None  # type: ignore[method-assign]
        transport = self.transport
        if transport is None:
            return
        transport.write(error_response(RouterError("bad_request", why)))
        if abort_after is not None:
            # A client too slow for its head may be too slow to read the answer: do not wait on it for long.
            self.callLater(abort_after, self._abort)
        self.loseConnection()  # type: ignore[no-untyped-call]

    def _abort(self) -> None:
        transport: Any = self.transport
        if transport is not None and self.connected:
            transport.abortConnection()

    def connectionLost(self, reason: Any) -> None:
        self._stop_timers()
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]
