"""One peer link driven on a fake clock over in-memory transports (twisted.test.iosim), no sockets.

Covers what the link itself promises: handshake and version negotiation, heartbeats and death, many requests in
flight matched by id, deadlines, link loss, the in-flight cap, and that a failing handler never kills the link.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from wecross.errors import RouterError
from wecross.peer.protocol import FLUSH_EVERY, PeerLink
from wecross.wire.codec import encode_frame
from wecross.wire.errors import WireError
from wecross.wire.limits import Limits
from wecross.wire.messages import GossipDigest, GossipRecords, Hello, Ping, Request


class FakeOwner:
    def __init__(self, local_id: str, versions: list[int] | None = None) -> None:
        self.local_id = local_id
        self.versions = versions or [1]
        self.up: list[PeerLink] = []
        self.down: list[tuple[PeerLink, str]] = []
        self.frame_errors: list[WireError] = []
        self.requests: list[tuple[Request, Deferred[dict[str, Any]]]] = []
        self.gossip: list[GossipDigest | GossipRecords] = []
        self.measured: list[PeerLink] = []
        self.refuse_identity: str | None = None
        self.handler: Any = None

    def hello(self) -> Hello:
        return Hello(router_id=self.local_id, versions=self.versions, zones=["z"], features=[], listen="", epoch=1)

    def identify(self, link: PeerLink, hello: Hello) -> str | None:
        return self.refuse_identity

    def link_up(self, link: PeerLink) -> str | None:
        self.up.append(link)
        return None

    def link_down(self, link: PeerLink, reason: str) -> None:
        self.down.append((link, reason))

    def frame_error(self, link: PeerLink, error: WireError) -> None:
        self.frame_errors.append(error)

    def handle_request(self, link: PeerLink, request: Request) -> Deferred[dict[str, Any]]:
        if self.handler is not None:
            return self.handler(request)  # type: ignore[no-any-return]
        d: Deferred[dict[str, Any]] = Deferred()
        self.requests.append((request, d))
        return d

    def handle_gossip(self, link: PeerLink, message: GossipDigest | GossipRecords) -> None:
        self.gossip.append(message)

    def link_measured(self, link: PeerLink) -> None:
        self.measured.append(link)


def request(n: int = 1, **overrides: Any) -> Request:
    fields: dict[str, Any] = dict(
        request_id=n.to_bytes(16, "big"), origin="a", destination="b", hop_limit=4, deadline_ms=1000, path=["a"],
        op="call", ipath="z.c.r", method="get", args=[n], sender="x")
    fields.update(overrides)
    return Request(**fields)


class LinkTests(SynchronousTestCase):
    def make(self, client_versions: list[int] | None = None, **kw: Any) -> None:
        self.clock = Clock()
        self.a_owner = FakeOwner("a", client_versions)
        self.b_owner = FakeOwner("b")
        params: dict[str, Any] = dict(heartbeat_interval=1.0, dead_after=3, handshake_timeout=5.0,
                                      wire_limits=Limits(), max_in_flight=kw.get("max_in_flight", 100))
        self.a = PeerLink(self.a_owner, self.clock, outbound=True, expected_id=kw.get("expected_id"), **params)
        self.b = PeerLink(self.b_owner, self.clock, outbound=False, expected_id=None, **params)
        self.pump = iosim.connect(self.b, iosim.makeFakeServer(self.b), self.a, iosim.makeFakeClient(self.a),
                                  clock=self.clock)

    def test_handshake(self) -> None:
        self.make()
        self.assertTrue(self.a.established and self.b.established)
        self.assertEqual((self.a.peer_id, self.b.peer_id), ("b", "a"))
        self.assertEqual(self.a_owner.up, [self.a])

    def test_no_common_version(self) -> None:
        self.make(client_versions=[7])
        self.assertFalse(self.b.established)
        self.pump.flush()
        self.assertIn("no common protocol version", self.b_owner.down[0][1])

    def test_expected_id_mismatch(self) -> None:
        self.make(expected_id="c")
        self.pump.flush()
        self.assertFalse(self.a_owner.up)
        self.assertIn("expected router 'c'", self.a_owner.down[0][1])

    def test_identity_refused(self) -> None:
        self.clock = Clock()
        owner = FakeOwner("b")
        owner.refuse_identity = "certificate says otherwise"
        self.b_owner = owner
        self.a_owner = FakeOwner("a")
        params: dict[str, Any] = dict(heartbeat_interval=1.0, dead_after=3, handshake_timeout=5.0,
                                      wire_limits=Limits(), max_in_flight=10)
        a = PeerLink(self.a_owner, self.clock, outbound=True, expected_id=None, **params)
        b = PeerLink(owner, self.clock, outbound=False, expected_id=None, **params)
        pump = iosim.connect(b, iosim.makeFakeServer(b), a, iosim.makeFakeClient(a), clock=self.clock)
        pump.flush()
        self.assertFalse(owner.up)
        self.assertIn("refused: certificate says otherwise", owner.down[0][1])

    def test_handshake_timeout(self) -> None:
        clock = Clock()
        owner = FakeOwner("b")
        link = PeerLink(owner, clock, outbound=False, expected_id=None, heartbeat_interval=1.0, dead_after=3,
                        handshake_timeout=5.0, wire_limits=Limits(), max_in_flight=10)
        transport = iosim.makeFakeServer(link)
        link.makeConnection(transport)
        clock.advance(5.0)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(link.closing_reason, "handshake timeout")

    def test_heartbeats_measure_and_keep_alive(self) -> None:
        self.make()
        for _ in range(10):
            self.clock.advance(1.0)
            self.pump.flush(advanceClock=False)
        self.assertTrue(self.a.established)
        self.assertGreaterEqual(self.a.health.pongs_received, 9)
        self.assertEqual(self.a.health.loss, 0.0)

    def test_dead_after_silence(self) -> None:
        self.make()
        for _ in range(3):
            self.clock.advance(1.0)  # nothing is pumped: the peer is silent
        self.assertIsNotNone(self.a.closing_reason)
        self.assertIn("dead", self.a.closing_reason or "")

    def test_requests_matched_by_id_out_of_order(self) -> None:
        self.make()
        d1 = self.a.request(request(1), timeout=10)
        d2 = self.a.request(request(2), timeout=10)
        self.pump.flush()
        (_, served1), (_, served2) = self.b_owner.requests
        served2.callback({"output": 2})
        served1.callback({"output": 1})
        self.pump.flush()
        self.assertEqual(self.successResultOf(d1).result, {"output": 1})
        self.assertEqual(self.successResultOf(d2).result, {"output": 2})
        self.assertEqual(self.a.in_flight, 0)

    def test_errors_keep_their_code(self) -> None:
        self.make()
        d = self.a.request(request(), timeout=10)
        self.pump.flush()
        self.b_owner.requests[0][1].errback(RouterError("insufficient_funds", "not enough"))
        self.pump.flush()
        error = self.failureResultOf(d, RouterError).value
        self.assertEqual((error.code, error.message), ("insufficient_funds", "not enough"))

    def test_handler_bug_answers_internal_and_link_stays(self) -> None:
        self.make()

        def broken(req: Request) -> Deferred[dict[str, Any]]:
            raise ZeroDivisionError("bug")

        self.b_owner.handler = broken
        d = self.a.request(request(), timeout=10)
        self.pump.flush()
        self.assertEqual(self.failureResultOf(d, RouterError).value.code, "internal")
        self.flushLoggedErrors(ZeroDivisionError)
        self.assertTrue(self.b.established)

    def test_unencodable_result_answers_bad_response(self) -> None:
        self.make()
        self.b_owner.handler = lambda req: defer.succeed({"output": object()})
        d = self.a.request(request(), timeout=10)
        self.pump.flush()
        self.assertEqual(self.failureResultOf(d, RouterError).value.code, "bad_response")
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertTrue(self.b.established)

    def test_timeout_and_late_reply(self) -> None:
        self.make()
        d = self.a.request(request(), timeout=0.5)
        self.pump.flush(advanceClock=False)
        self.clock.advance(0.5)
        self.assertEqual(self.failureResultOf(d, RouterError).value.code, "timeout")
        self.b_owner.requests[0][1].callback({"output": "late"})
        self.pump.flush()
        self.assertEqual(self.a.late_replies, 1)
        self.assertTrue(self.a.established)

    def test_each_request_fails_at_its_own_deadline_with_one_timer(self) -> None:
        """Requests in flight share one timer (set for the earliest deadline) instead of a callLater each, and
        still each fail at exactly its own deadline; an answered one never does."""
        self.make()
        timers = len(self.clock.getDelayedCalls())
        timeouts = [3.0, 1.0, 2.0, 0.25, 1.0]
        pending = [self.a.request(request(n + 1), timeout=t) for n, t in enumerate(timeouts)]
        self.assertEqual(len(self.clock.getDelayedCalls()), timers + 1)
        self.pump.flush(advanceClock=False)
        self.b_owner.requests[2][1].callback({"output": "in time"})
        self.pump.flush(advanceClock=False)
        self.assertEqual(self.successResultOf(pending[2]).result, {"output": "in time"})

        def failed() -> list[int]:
            return [n for n, d in enumerate(pending) if n != 2 and d.called]

        for step, expected in ((0.2, []), (0.05, [3]), (0.7, [3]), (0.05, [1, 3, 4]), (1.9, [1, 3, 4]),
                               (0.1, [0, 1, 3, 4])):
            self.clock.advance(step)
            self.pump.flush(advanceClock=False)  # heartbeats answered: only the requests' deadlines pass
            self.assertEqual(failed(), expected, f"after {step}")
        errors = [self.failureResultOf(pending[n], RouterError).value for n in (0, 1, 3, 4)]
        self.assertEqual([e.code for e in errors], ["timeout"] * 4)
        self.assertEqual([e.message for e in errors],
                         [f"no answer from b within {t:.3f} s" for t in (3.0, 1.0, 0.25, 1.0)])
        self.assertTrue(self.a.established)
        self.assertEqual(self.a.in_flight, 0)

    def test_answered_requests_leave_no_deadlines_behind(self) -> None:
        """Answered requests' deadline entries are dropped in bulk, so a busy link holds a bounded number."""
        self.make(max_in_flight=1000)
        for n in range(300):
            self.a.request(request(n + 1), timeout=10)
        self.pump.flush(advanceClock=False)
        for _, served in self.b_owner.requests:
            served.callback({"output": 1})
        self.pump.flush(advanceClock=False)
        self.assertEqual(self.a.in_flight, 0)
        self.a.request(request(301), timeout=10)
        self.assertLessEqual(len(self.a._deadlines), 2 * self.a.in_flight + 64 + 1)

    def test_link_loss_fails_pending(self) -> None:
        self.make()
        d = self.a.request(request(), timeout=10)
        self.pump.flush()
        self.b.transport.loseConnection()
        self.pump.flush()
        self.assertEqual(self.failureResultOf(d, RouterError).value.code, "peer_lost")
        self.assertEqual(self.a.request(request(2), timeout=1).result.value.code, "peer_lost")  # type: ignore
        self.flushLoggedErrors()

    def test_in_flight_cap(self) -> None:
        self.make(max_in_flight=2)
        self.a.request(request(1), timeout=10)
        self.a.request(request(2), timeout=10)
        self.assertEqual(self.failureResultOf(self.a.request(request(3), timeout=10), RouterError).value.code,
                         "overloaded")

    def test_cancel_forgets_request(self) -> None:
        self.make()
        d = self.a.request(request(), timeout=10)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(self.a.in_flight, 0)

    def test_garbage_closes_and_counts(self) -> None:
        self.make()
        self.b.dataReceived(b"\x00\x00\x00\x02\xc1\xc1")
        self.assertEqual([e.reason for e in self.b_owner.frame_errors], ["malformed"])
        self.assertEqual(self.b.closing_reason, "bad frame: malformed")

    def test_message_before_hello_is_a_violation(self) -> None:
        clock = Clock()
        owner = FakeOwner("b")
        link = PeerLink(owner, clock, outbound=False, expected_id=None, heartbeat_interval=1.0, dead_after=3,
                        handshake_timeout=5.0, wire_limits=Limits(), max_in_flight=10)
        link.makeConnection(iosim.makeFakeServer(link))
        link.dataReceived(encode_frame(1, Ping(seq=1, sent_at=0.0)))
        self.assertIn("before HELLO", link.closing_reason or "")

    def test_gossip_reaches_the_owner(self) -> None:
        self.make()
        self.a.send(GossipDigest(entries={"a": [1, 2]}))
        self.pump.flush()
        self.assertEqual(self.b_owner.gossip, [GossipDigest(entries={"a": [1, 2]})])

    def test_link_is_its_transports_producer(self) -> None:
        """A full send buffer pauses the link: bulk senders see writable False and are called back on resume."""
        self.make()
        transport = self.a.transport
        assert transport is not None
        self.assertIs(transport.producer, self.a)  # type: ignore[attr-defined]
        self.assertTrue(self.a.writable)
        woken: list[bool] = []
        self.a.pauseProducing()
        self.assertFalse(self.a.writable)
        self.a.when_writable(lambda: woken.append(self.a.writable))
        self.a.resumeProducing()
        self.assertEqual(woken, [True])
        self.a.resumeProducing()  # a waiter is called once
        self.assertEqual(woken, [True])
        self.a.pauseProducing()
        self.a.when_writable(lambda: woken.append(False))
        self.a.close("test")
        self.a.resumeProducing()  # closing: never called
        self.assertEqual(woken, [True])
        self.assertEqual(self.a.pauses, 2)

    def test_first_rtt_sample_is_reported_once(self) -> None:
        self.make()  # the handshake pings at once: the first pong measures the link
        self.assertEqual(self.a_owner.measured, [self.a])
        self.clock.advance(1.0)
        self.pump.flush(advanceClock=False)
        self.assertEqual(self.a_owner.measured, [self.a])

    def test_death_noticed_at_the_deadline_not_the_next_heartbeat(self) -> None:
        self.make()
        self.clock.advance(0.5)
        self.b.send(GossipDigest(entries={}))
        self.pump.flush(advanceClock=False)  # router a last heard b at t = 0.5
        pending = self.a.request(request(), timeout=60)
        for _ in range(29):
            self.clock.advance(0.1)  # nothing is pumped from now on: b is silent
        self.assertIsNone(self.a.closing_reason)  # t = 3.4
        self.clock.advance(0.1)  # t = 3.5 = last heard + 3 intervals (a heartbeat tick would only see it at 4.0)
        self.assertIn("dead", self.a.closing_reason or "")
        # the connection is dropped at once, so waiting requests fail now and can move to another path
        self.pump.flush(advanceClock=False)
        self.assertEqual(self.failureResultOf(pending, RouterError).value.code, "peer_lost")


class _NoReactor:
    """Enough of a reactor for a FileDescriptor that is never polled."""

    def addWriter(self, _: object) -> None:
        pass

    def removeWriter(self, _: object) -> None:
        pass


class _Socket(FileDescriptor):
    """A socket transport that records what reaches the wire: only what doWrite sends (the reactor's turn, or a
    send the link forces)."""

    def __init__(self) -> None:
        super().__init__(reactor=_NoReactor())  # type: ignore[arg-type]
        self.connected = 1
        self.sent: list[bytes] = []

    def writeSomeData(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)


class _Layer:
    """A pass-through layer standing for TLS between the link and its socket."""

    def __init__(self, below: _Socket) -> None:
        self.transport = below

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def getPeer(self) -> Any:
        return None


class ForcedSendTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.socket = _Socket()
        self.link = PeerLink(FakeOwner("a"), Clock(), outbound=True, expected_id=None, heartbeat_interval=1.0,
                             dead_after=3, handshake_timeout=5.0, wire_limits=Limits(), max_in_flight=10)
        self.link.makeConnection(_Layer(self.socket))  # writes the HELLO: frame 1
        self.frames = [encode_frame(1, FakeOwner("a").hello())]

    def write(self, count: int) -> None:
        for n in range(count):
            ping = Ping(seq=n, sent_at=0.0)
            self.frames.append(encode_frame(len(self.frames) + 1, ping))
            self.link._send(ping)

    def test_every_few_frames_the_socket_sends_at_once(self) -> None:
        """A burst of frames is sent every FLUSH_EVERY frames, not only at the reactor's next turn (two routers
        forwarding bursts otherwise take turns instead of working at once)."""
        self.assertEqual(FLUSH_EVERY, 4)
        self.assertEqual(self.socket.sent, [])  # a lone frame waits for the reactor, as before
        self.write(3)
        self.assertEqual(b"".join(self.socket.sent), b"".join(self.frames[:4]))
        self.write(3)
        self.assertEqual(b"".join(self.socket.sent), b"".join(self.frames[:4]))
        self.write(1)
        self.assertEqual(b"".join(self.socket.sent), b"".join(self.frames[:8]))

    def test_no_forced_send_on_a_closing_socket(self) -> None:
        """Closing is the reactor's business: doWrite's answer then asks it to close, so the link leaves it be."""
        self.socket.disconnecting = True
        self.write(7)
        self.assertEqual(self.socket.sent, [])
