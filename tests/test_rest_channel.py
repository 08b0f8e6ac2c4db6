"""RestChannel's head and body deadlines kept as times rather than a pair of reactor timers per request.

A request whose head and body arrive in one read used to create and cancel two timers; now only a connection's
first head (and first body) sets one, and a timer that finds its deadline moved on re-aims itself. These tests hold
the deadlines to the same instants as before (``tests.test_hostile_input.HttpFraming`` holds the messages).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.test_rest import FakeRouter, parse_response
from wecross.rest.api import make_site

_DEADLINE_METHODS = frozenset({"_head_due", "_body_due", "_head_too_slow", "_body_too_slow"})


class CountingClock(Clock):
    """A Clock that counts the timers set for the channel's deadlines (not the idle timeout's, nor the API's)."""

    def __init__(self) -> None:
        super().__init__()
        self.deadline_timers = 0

    def callLater(self, delay: float, callable: Any, *args: Any, **kw: Any) -> Any:
        if getattr(callable, "__name__", "") in _DEADLINE_METHODS:
            self.deadline_timers += 1
        return super().callLater(delay, callable, *args, **kw)


def _post(body: bytes = b'{"method": "get", "args": []}') -> bytes:
    return (b"POST /z/c/r/call HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


class DeadlineTimers(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = CountingClock()
        self.site = make_site(FakeRouter(), max_body=100, reactor=self.clock, header_timeout=5.0, body_timeout=8.0)

    def connect(self) -> tuple[Any, StringTransport]:
        transport = StringTransport()
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        channel.makeConnection(transport)
        self.addCleanup(lambda: transport.disconnected or channel.connectionLost(Failure(ConnectionDone())))
        return channel, transport

    def test_whole_requests_set_no_timer_each(self) -> None:
        channel, transport = self.connect()
        for _ in range(20):
            channel.dataReceived(_post())
            self.assertEqual(parse_response(transport.value())[0], 200)
            transport.clear()
        # The connection's first head deadline (set at connect) and its first body deadline; before, 2 per request.
        self.assertEqual(self.clock.deadline_timers, 2)

    def test_a_later_head_is_cut_at_its_own_deadline(self) -> None:
        channel, transport = self.connect()
        self.clock.advance(1.0)
        channel.dataReceived(_post())
        transport.clear()
        self.clock.advance(3.0)  # t = 4: a new head starts; the timer set at connect is due at t = 5
        channel.dataReceived(b"GET /status HTTP/1.1\r\n")
        self.clock.advance(1.0)  # t = 5: the old deadline has passed, this head's (t = 9) has not
        self.assertFalse(transport.disconnecting)
        self.clock.advance(3.9)  # t = 8.9
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)  # t = 9
        self.assertTrue(transport.disconnecting)
        self.assertIn("within 5 s", json.loads(parse_response(transport.value())[2])["error"]["message"])

    def test_a_later_body_is_cut_at_its_own_deadline(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(_post())
        transport.clear()
        self.clock.advance(6.0)  # t = 6: the body timer set for the first request is due at t = 8
        channel.dataReceived(_post()[:-5])  # a whole head, a body short of 5 bytes: its deadline is t = 14
        self.clock.advance(2.0)  # t = 8
        self.assertFalse(transport.disconnecting)
        self.clock.advance(5.9)  # t = 13.9
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)  # t = 14
        self.assertTrue(transport.disconnecting)
        self.assertIn("body did not arrive within 8 s",
                      json.loads(parse_response(transport.value())[2])["error"]["message"])

    def test_closing_cancels_the_timers(self) -> None:
        channel, _ = self.connect()
        channel.dataReceived(_post()[:-5])
        self.assertTrue(self.clock.getDelayedCalls())
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([call for call in self.clock.getDelayedCalls()
                          if getattr(call.func, "__name__", "") in _DEADLINE_METHODS], [])
