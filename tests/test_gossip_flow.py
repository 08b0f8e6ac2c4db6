"""Flow-controlled gossip: the push log, the gossip service waiting for paused links, and simulated links pausing
their senders like a TCP window."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.test_gossip_record import make_record, signer, verifier
from wecross.gossip import Directory
from wecross.gossip.pushlog import PushLog
from wecross.gossip.service import GossipService, LocalContent
from wecross.sim.clock import SimClock
from wecross.sim.links import RESUME_BELOW, SEND_WINDOW, SimConnection, SimNet
from wecross.sim.model import LinkSpec
from wecross.wire.messages import GossipDigest, GossipRecords


class PushLogTests(SynchronousTestCase):
    def test_each_peer_gets_the_newest_entry_once_never_its_own(self) -> None:
        log = PushLog()
        log.add_peer("b")
        log.add_peer("c")
        log.append("x", "b")
        log.append("y", None)
        log.append("x", "c")  # a newer x, from c
        self.assertEqual(log.take("b", 10), ["y", "x"])
        self.assertEqual(log.take("c", 10), ["y"])
        self.assertFalse(log.pending("b"))
        self.assertEqual(len(log), 0)  # everyone read everything: trimmed

    def test_take_is_bounded_and_resumable(self) -> None:
        log = PushLog()
        log.add_peer("b")
        for i in range(10):
            log.append(f"r{i}", None)
        self.assertEqual(log.take("b", 4), ["r0", "r1", "r2", "r3"])
        self.assertTrue(log.pending("b"))
        self.assertEqual(log.take("b", 100), [f"r{i}" for i in range(4, 10)])

    def test_new_peer_starts_at_the_end_and_removed_peers_release_entries(self) -> None:
        log = PushLog()
        log.add_peer("slow")
        log.append("x", None)
        log.add_peer("new")
        self.assertEqual(log.take("new", 10), [])
        self.assertEqual(len(log), 1)  # held for "slow"
        log.remove_peer("slow")
        self.assertEqual(len(log), 0)
        self.assertEqual(log.take("gone", 10), [])

    def test_a_peer_falling_off_the_front_is_lagging(self) -> None:
        log = PushLog(limit=3)
        log.add_peer("slow")
        log.add_peer("fast")
        for i in range(5):
            log.append(f"r{i}", None)
            log.take("fast", 10)
        self.assertTrue(log.lagging("slow"))
        self.assertFalse(log.lagging("fast"))
        self.assertEqual(log.dropped, 2)
        self.assertTrue(log.pending("slow"))
        log.resynced("slow")
        self.assertEqual(log.take("slow", 10), ["r2", "r3", "r4"])
        with self.assertRaises(ValueError):
            PushLog(limit=0)


class FakeLink:
    """What GossipService uses of a PeerLink."""

    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id
        self.established = True
        self.closing_reason: str | None = None
        self.write_paused = False
        self.sent: list[Any] = []
        self._waiters: list[Any] = []

    @property
    def writable(self) -> bool:
        return self.established and self.closing_reason is None and not self.write_paused

    def send(self, message: Any) -> None:
        self.sent.append(message)

    def when_writable(self, callback: Any) -> None:
        self._waiters.append(callback)

    def resume(self) -> None:
        self.write_paused = False
        waiters, self._waiters = self._waiters, []
        for callback in waiters:
            callback()

    def records(self) -> list[str]:
        from wecross.gossip.record import SignedRecord

        return [SignedRecord.from_bytes(blob).router_id for m in self.sent if isinstance(m, GossipRecords)
                for blob in m.records]


class GossipFlowTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.directory = Directory("router-a", verifier())
        self.links: dict[str, FakeLink] = {"router-b": FakeLink("router-b"), "router-c": FakeLink("router-c")}
        content = LocalContent(zones=("payment",), transit=True, listen="127.0.0.1:9000", chains=(), resources=(),
                               links=())
        self.service = GossipService(
            directory=self.directory, signer=signer("router-a"), clock=self.clock, epoch=1,
            content=lambda: content, links=lambda: dict(self.links), on_change=lambda: None,  # type: ignore[arg-type]
        )
        self.service.startService()
        for link in self.links.values():
            self.service.link_up(link)  # type: ignore[arg-type]
        self.clock.advance(0)
        for link in self.links.values():
            link.sent.clear()

    def tearDown(self) -> None:
        self.service.stopService()

    def records_from(self, peer: str, *router_ids: str, seq: int = 1) -> None:
        blobs = [signer(r).sign(make_record(r, 1, seq)).to_bytes() for r in router_ids]
        self.service.on_records(self.links[peer], GossipRecords(records=blobs))  # type: ignore[arg-type]

    def test_fresh_records_go_to_the_other_neighbours_in_one_frame(self) -> None:
        self.records_from("router-b", "router-x", "router-y")
        self.clock.advance(0)
        self.assertEqual(self.links["router-c"].records(), ["router-x", "router-y"])
        self.assertEqual(len(self.links["router-c"].sent), 1)
        self.assertEqual(self.links["router-b"].sent, [])

    def test_a_paused_link_gets_only_the_newest_version_once_it_drains(self) -> None:
        slow = self.links["router-c"]
        slow.write_paused = True
        self.records_from("router-b", "router-x", seq=1)
        self.clock.advance(0)
        self.records_from("router-b", "router-x", seq=2)
        self.clock.advance(0)
        self.assertEqual(slow.sent, [])
        self.assertEqual(self.service.counters["flow_waits"], 1)
        slow.resume()
        from wecross.gossip.record import SignedRecord

        [frame] = slow.sent
        assert isinstance(frame, GossipRecords)
        self.assertEqual([SignedRecord.from_bytes(b).version for b in frame.records], [(1, 2)])

    def test_digest_answers_wait_for_the_link_too(self) -> None:
        self.records_from("router-b", *[f"router-{i:02}" for i in range(100)])
        self.clock.advance(0)
        slow = self.links["router-c"]
        slow.sent.clear()
        slow.write_paused = True
        self.service.on_digest(slow, GossipDigest(entries={}))  # type: ignore[arg-type]
        self.assertFalse(any(isinstance(m, GossipRecords) for m in slow.sent))
        slow.resume()
        self.assertEqual(len(slow.records()), 101)  # everything we hold, ours included, in two frames
        self.assertEqual(sum(isinstance(m, GossipRecords) for m in slow.sent), 2)

    def test_a_link_that_goes_down_is_forgotten(self) -> None:
        slow = self.links["router-c"]
        slow.write_paused = True
        self.records_from("router-b", "router-x")
        self.clock.advance(0)
        del self.links["router-c"]
        self.service.link_down(slow)  # type: ignore[arg-type]
        slow.resume()
        self.assertEqual(slow.sent, [])


class Recorder:
    def __init__(self) -> None:
        self.pauses = 0
        self.resumes = 0

    def pauseProducing(self) -> None:
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.resumes += 1

    def dataReceived(self, data: bytes) -> None:
        pass

    def makeConnection(self, transport: Any) -> None:
        pass


class SimWindowTests(SynchronousTestCase):
    def test_sender_paused_above_the_window_and_resumed_once_drained(self) -> None:
        clock = SimClock()
        spec = LinkSpec("a", "b", latency_ms=10.0)
        net = SimNet(clock, (spec,), seed=1)
        link = net.link("a", "b")
        assert link is not None
        producer = Recorder()
        connection = SimConnection(net, link, ("a", "b"), (Recorder(), Recorder()))  # type: ignore[arg-type]
        connection.transports[0].registerProducer(producer, True)
        with self.assertRaises(RuntimeError):
            connection.transports[0].registerProducer(producer, True)
        chunk = b"x" * (SEND_WINDOW // 4)
        for _ in range(4):
            connection.send(0, chunk)
        self.assertEqual(producer.pauses, 0)  # at the window, not above it
        connection.send(0, chunk)
        self.assertEqual(producer.pauses, 1)
        connection.send(0, chunk)  # overrunning is allowed, and pauses once
        self.assertEqual(producer.pauses, 1)
        clock.advance(0.011)
        self.assertEqual(producer.resumes, 1)
        self.assertLessEqual(connection.in_flight[0], RESUME_BELOW)


class OwnAuthorityWarningTests(SynchronousTestCase):
    """A router whose own certificate lacks a chain it serves is told so, once per change, not per re-signing."""

    def test_warned_once(self) -> None:
        from twisted.logger import globalLogPublisher

        from wecross.gossip import ChainInfo

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        clock = Clock()
        directory = Directory("router-y", verifier())
        chains = [(ChainInfo("payment.bank-a", "embedded", 1, "g"), ChainInfo("evidence.court", "embedded", 1, "h"))]
        service = GossipService(
            directory=directory, signer=signer("router-y", serves=("payment.bank-a",)), clock=clock, epoch=1,
            content=lambda: LocalContent(zones=("payment", "evidence"), transit=True, listen="", chains=chains[0],
                                         resources=(), links=()),
            links=lambda: {}, on_change=lambda: None,
        )
        service.startService()
        self.addCleanup(service.stopService)

        def warnings() -> list[dict[str, Any]]:
            return [e for e in events if "does not authorise" in e.get("log_format", "")]

        clock.advance(0)
        self.assertEqual(directory.unauthorized_of("router-y"), ("evidence.court",))
        self.assertEqual(len(warnings()), 1)
        self.assertEqual(warnings()[0]["chains"], "evidence.court")
        self.assertEqual(warnings()[0]["allowed"], "payment.bank-a")
        service.publish("refresh")
        self.assertEqual(len(warnings()), 1)
        chains[0] = chains[0][:1]
        service.publish("chain dropped")
        self.assertEqual((directory.unauthorized_of("router-y"), len(warnings())), ((), 1))
