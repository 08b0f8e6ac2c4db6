"""Hostile input at the edges (issue 12, findings 5-8 and 10): one client's or one peer's bad input costs nobody else
anything, is answered with a clear error, and reaches a log bounded and escaped.

Each class names the finding it holds; every test here failed before its fix.
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, globalLogPublisher, textFileLogObserver
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from tests import support
from tests.test_embedded_chain import make_settings
from tests.test_peer_protocol import FakeOwner, request
from tests.test_rest import FakeRouter, parse_response
from tests.test_router_network import RawPeer
from wecross.embedded.stub import EmbeddedStub
from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.ipath import IPath
from wecross.logs import UNTRUSTED_MAX, rotating_log_file, untrusted
from wecross.peer.protocol import ERROR_MESSAGE_MAX, PeerLink, error_frame
from wecross.peer.tls import client_options, load_tls_material
from wecross.rest.api import make_site
from wecross.stub.interfaces import Result, StubError
from wecross.wire.codec import FrameDecoder, encode_frame
from wecross.wire.limits import Limits
from wecross.wire.messages import Error, Hello

SURROGATE = "\ud800"


class CapturedLog:
    """Every log event emitted while it is installed (the global publisher: what twistd's observers would see)."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def texts(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(event) for event in self.events]


class UntrustedText(SynchronousTestCase):
    """Finding 7: the helper every peer- or client-supplied text goes through before a log."""

    def test_bounded_and_single_line(self) -> None:
        text = untrusted("a\x00b\nc" * 300_000)
        self.assertLessEqual(len(text), UNTRUSTED_MAX + 40)
        self.assertNotIn("\n", text)
        self.assertNotIn("\x00", text)
        self.assertIn("(1500000 characters)", text)

    def test_escapes_controls_separators_and_surrogates(self) -> None:
        self.assertEqual(untrusted("ok é"), "ok é")
        self.assertEqual(untrusted("a\r\nb\u2028" + SURROGATE + "\\"), "a\\x0d\\x0ab\\u2028\\ud800\\\\")
        untrusted(SURROGATE).encode("utf-8")  # what a log file can hold

    def test_long_lists_are_not_rendered_whole(self) -> None:
        text = untrusted(["router"] * 100_000)
        self.assertLessEqual(len(text), UNTRUSTED_MAX + 40)


class LedgerIsolation(TestCase):
    """Finding 5: a key or account with a lone surrogate is refused at the edge, and a block write never fails because
    of one transaction's content: the others in its block commit."""

    async def open_stub(self) -> EmbeddedStub:
        stub = EmbeddedStub(make_settings(), Path(self.mktemp()))
        await stub.start()
        self.addCleanup(stub.stop)
        return stub

    async def code_of(self, d: Deferred[Any]) -> str:
        try:
            await d
        except StubError as exc:
            return exc.code
        return "ok"

    async def test_surrogates_refused_at_the_edge(self) -> None:
        stub = await self.open_stub()
        kv, asset = stub.resource("hello"), stub.resource("asset")
        assert kv is not None and asset is not None
        attempts = [
            kv.send_transaction("set", [SURROGATE, "v"], "alice"),
            kv.send_transaction("set", ["k", {SURROGATE: 1}], "alice"),
            kv.send_transaction("set", ["k", [SURROGATE]], "alice"),
            kv.set_data(SURROGATE, "v", "alice"),
            kv.set_data("k", SURROGATE, "alice"),
            asset.send_transaction("transfer", [SURROGATE, 1], "alice"),
            asset.send_transaction("transfer", ["bob", 1], SURROGATE),
            kv.call("get", [SURROGATE], "alice"),
            kv.prepare("tx" + SURROGATE, "set", ["k", "v"], "alice"),
            kv.commit("tx" + SURROGATE),
        ]
        codes = [await self.code_of(d) for d in attempts]
        self.assertEqual(codes, ["bad_args"] * len(attempts))
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_one_bad_transaction_fails_alone(self) -> None:
        stub = await self.open_stub()
        kv = stub.resource("hello")
        assert kv is not None
        ledger = kv._ledger  # type: ignore[attr-defined]
        contract = ledger.contracts["hello"]
        # A check that misses something (the edge is not the only line of defence): the ledger must still refuse
        # the one item whose content cannot be stored, not fail the block of everyone else.
        contract.check = lambda op, method, args: list(args)
        honest = [kv.send_transaction("set", [f"k{i}", i], "alice") for i in range(5)]
        bad = kv.send_transaction("set", [SURROGATE, "v"], "mallory")
        honest += [kv.send_transaction("set", [f"k{i}", i], "alice") for i in range(5, 10)]
        self.assertEqual(await self.code_of(bad), "bad_args")
        results: list[Result] = [await d for d in honest]
        self.assertEqual(len({r.tx_hash for r in results}), 10)
        self.assertEqual(self.flushLoggedErrors(), [])
        del contract.check
        self.assertEqual((await kv.call("get", ["k9"], "alice")).output, 9)


class LinkLimits(SynchronousTestCase):
    """Findings 6 and 8 on one link over in-memory transports: what the wire cannot carry fails its own request."""

    def make(self, limits: Limits | None = None) -> None:
        self.clock = Clock()
        self.a_owner, self.b_owner = FakeOwner("a"), FakeOwner("b")
        params: dict[str, Any] = dict(heartbeat_interval=1.0, dead_after=3, handshake_timeout=5.0,
                                      wire_limits=limits or Limits(), max_in_flight=10)
        self.a = PeerLink(self.a_owner, self.clock, outbound=True, expected_id=None, **params)
        self.b = PeerLink(self.b_owner, self.clock, outbound=False, expected_id=None, **params)
        self.pump = iosim.connect(self.b, iosim.makeFakeServer(self.b), self.a, iosim.makeFakeClient(self.a),
                                  clock=self.clock)

    def test_unencodable_request_registers_nothing(self) -> None:
        self.make()
        timers = len(self.clock.getDelayedCalls())
        d = self.a.request(request(args=[SURROGATE]), timeout=30)
        self.assertEqual(self.failureResultOf(d, RouterError).value.code, "bad_args")
        self.assertEqual(self.a.in_flight, 0)
        self.assertEqual(len(self.clock.getDelayedCalls()), timers)
        self.pump.flush()
        self.assertTrue(self.a.established)
        self.assertEqual(self.b_owner.requests, [])

    def test_error_answer_too_large_is_clamped(self) -> None:
        self.make()
        huge = "x" * (2 * 1024 * 1024)  # over max_str: the ERROR as built could not be encoded at all
        self.b_owner.handler = lambda req: defer.fail(RouterError("bad_request", huge, {"path": ["a"] * 50_000}))
        d = self.a.request(request(), timeout=30)
        self.pump.flush()
        error = self.failureResultOf(d, RouterError).value
        self.assertEqual(error.code, "bad_request")
        self.assertLessEqual(len(error.message), ERROR_MESSAGE_MAX + 10)
        self.assertTrue(self.b.established)

    def test_error_frame_fits_tight_limits(self) -> None:
        limits = Limits(max_frame=2048, max_str=256)
        path = [f"router-{i:04d}" for i in range(1000)]
        frame = error_frame(7, 3, b"r" * 16, "bad_request", "x" * 5000 + SURROGATE, path, limits)
        (envelope,) = FrameDecoder(limits).feed(frame)
        self.assertIsInstance(envelope.message, Error)
        self.assertEqual(envelope.message.reply_to, 3)

    def test_unencodable_result_answers_bad_response(self) -> None:
        self.make()
        self.b_owner.handler = lambda req: defer.succeed({"output": "y" * (2 * 1024 * 1024)})
        d = self.a.request(request(), timeout=30)
        self.pump.flush()
        self.assertEqual(self.failureResultOf(d, RouterError).value.code, "bad_response")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_link_level_error_is_logged_bounded(self) -> None:
        """Finding 7: a peer's link-level ERROR of 1 Mi characters with NULs and newlines."""
        self.make()
        captured = CapturedLog(self)
        flood = ("\x00\n" * 1024 * 512)[: 1024 * 1024 - 1]
        self.b._send(Error(reply_to=0, request_id=b"", code="bad\ncode", message=flood, path=[]))
        self.pump.flush()
        texts = [t for t in captured.texts() if "peer reports" in t]
        self.assertEqual(len(texts), 1)
        self.assertLess(len(texts[0]), 600)
        self.assertNotIn("\n", texts[0])
        self.assertNotIn("\x00", texts[0])

    def test_bye_reason_is_logged_bounded(self) -> None:
        self.make()
        captured = CapturedLog(self)
        from wecross.wire.messages import Bye

        self.b._send(Bye(reason="\n" * 100_000))
        self.pump.flush()
        texts = [t for t in captured.texts() if "peer closed" in t]
        self.assertTrue(texts)
        self.assertTrue(all(len(t) < 600 and "\n" not in t for t in texts))
        self.assertLess(len(self.a.closing_reason or ""), 600)




class TwoLiveRouters(TestCase):
    """router-a (chain bank-a) dials router-b (chain court), for real: TLS on 127.0.0.1, REST on its own port."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.work = Path(self.mktemp())
        self.work.mkdir()
        self.b = yield support.start(support.router_settings("router-b", self.work, zone="evidence", chain="court"))
        self.addCleanup(support.stop, self.b)
        self.a = yield support.start(support.router_settings(
            "router-a", self.work, zone="payment", chain="bank-a",
            peers=[{"address": f"127.0.0.1:{self.b.p2p_port}", "id": "router-b"}]))
        self.addCleanup(support.stop, self.a)
        yield support.until(lambda: self.a.router.table.route("evidence.court")
                            and self.b.router.table.route("payment.bank-a"))
        self.log = CapturedLog(self)

    def assert_clean_log(self) -> None:
        bad = [t for t in self.log.texts() if "Traceback" in t or "Unhandled error" in t]
        bad += [t for e, t in zip(self.log.events, self.log.texts(), strict=True) if e.get("log_failure")]
        self.assertEqual(bad, [])

    async def post(self, path: str, body: bytes) -> tuple[int, Any]:
        pool = HTTPConnectionPool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent(reactor, pool=pool)
        response = await agent.request(b"POST", f"http://127.0.0.1:{self.a.rest_port}{path}".encode(),
                                       Headers({b"Content-Type": [b"application/json"]}),
                                       FileBodyProducer(BytesIO(body)))
        return response.code, json.loads(await readBody(response))

    @defer.inlineCallbacks
    def test_values_the_wire_cannot_carry_are_refused_with_400(self) -> Any:
        """Finding 6 at the REST edge: an integer >= 2**64 or a lone surrogate for a remote chain."""
        remote = "/evidence/court/hello/sendTransaction"
        big = json.dumps({"method": "set", "args": ["k", 2**64]}).encode()
        code, body = yield defer.ensureDeferred(self.post(remote, big))
        self.assertEqual((code, body["error"]["code"]), (400, "bad_args"))
        lone = b'{"method": "set", "args": ["\\ud800", "v"]}'
        for path in (remote, "/payment/bank-a/hello/sendTransaction"):
            code, body = yield defer.ensureDeferred(self.post(path, lone))
            self.assertEqual((code, body["error"]["code"]), (400, "bad_json"))
        links = list(self.a.peers.links.values())
        self.assertEqual(sum(link.in_flight for link in links), 0)
        code, body = yield defer.ensureDeferred(self.post(remote, b'{"method": "set", "args": ["k", "v"]}'))
        self.assertEqual(code, 200)
        self.assert_clean_log()

    @defer.inlineCallbacks
    def test_second_link_with_a_routers_certificate_does_not_displace_it(self) -> Any:
        """Finding 10: router-b holds router-a's live link (inbound: router-a dialled it, the tie-break's winner).
        A connection presenting router-a's certificate is refused, and the live link stays."""
        live = self.b.peers.links["router-a"]
        certs = support.pki() / "router-a"
        material = load_tls_material(support.pki() / "ca.crt", certs / "chain.pem", certs / "key.pem")
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", self.b.p2p_port, client_options(material))
        peer = yield connectProtocol(endpoint, RawPeer())
        peer.transport.write(encode_frame(1, Hello(router_id="router-a", versions=[1], zones=["payment"],
                                                   features=[], listen="", epoch=2**40)))
        yield peer.closed
        self.assertIn(b"already has a live link", peer.received)
        self.assertIs(self.b.peers.links["router-a"], live)
        self.assertEqual(self.b.peers.counters.refused["duplicate_live"], 1)
        self.assertEqual(self.b.router.status()["refused_links"].get("duplicate_live"), 1)
        got = yield self.b.router.invoke(Invocation(IPath.parse("payment.bank-a.asset"), "call", "balanceOf",
                                                    ["alice"]))
        self.assertEqual(got["output"], 1000)
        self.assertTrue(any("already has a live link" in t for t in self.log.texts()))


class HttpFraming(SynchronousTestCase):
    """Finding 9: framing errors answered in the JSON envelope, a deadline per request head, a cap per client."""

    def setUp(self) -> None:
        self.router = FakeRouter()
        self.clock = Clock()
        self.site = make_site(self.router, max_body=100, reactor=self.clock, header_timeout=5.0,
                              max_connections_per_client=3, body_timeout=8.0)

    def connect(self, host: str = "127.0.0.1", port: int = 40000) -> tuple[Any, StringTransport]:
        transport = StringTransport()
        channel = self.site.buildProtocol(IPv4Address("TCP", host, port))
        channel.makeConnection(transport)
        self.addCleanup(lambda: transport.disconnected or channel.connectionLost(Failure(ConnectionDone())))
        return channel, transport

    def envelope(self, transport: StringTransport, status: int = 400, code: str = "bad_request") -> str:
        got_status, headers, body = parse_response(transport.value())
        self.assertEqual((got_status, headers[b"content-type"]), (status, b"application/json; charset=utf-8"))
        error = json.loads(body)["error"]
        self.assertEqual(error["code"], code)
        self.assertTrue(transport.disconnecting)
        return str(error["message"])

    def test_framing_errors_get_the_envelope(self) -> None:
        cases = [
            b"NONSENSE\r\n\r\n",
            b"GET /status HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n",  # a line over MAX_LENGTH: twisted closed silently
            b"GET /status HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(200)) + b"\r\n",
            b"POST /z/c/r/call HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ]
        for raw in cases:
            channel, transport = self.connect(port=40000 + len(raw))
            channel.dataReceived(raw)
            self.envelope(transport)
            channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.router.invocations, [])

    def test_slow_head_is_cut_at_its_deadline(self) -> None:
        channel, transport = self.connect()
        head = b"GET /status HTTP/1.1\r\nHost: x\r\n"
        for byte in head:
            channel.dataReceived(bytes([byte]))
            self.clock.advance(0.25)  # each byte well inside the idle timeout, the head as a whole too slow
        message = self.envelope(transport)
        self.assertIn("within 5 s", message)

    def test_slow_body_is_cut_at_its_deadline(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"POST /z/c/r/call HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n")
        for _ in range(40):  # a byte every 0.25 s: inside the idle timeout, too slow for the body as a whole
            channel.dataReceived(b" ")
            self.clock.advance(0.25)
        message = self.envelope(transport)
        self.assertIn("body did not arrive within 8 s", message)
        self.assertEqual(self.router.invocations, [])

    def test_a_prompt_body_is_not_cut(self) -> None:
        channel, transport = self.connect()
        body = b'{"method": "get", "args": []}'
        channel.dataReceived(b"POST /z/c/r/call HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.clock.advance(20.0)
        self.assertFalse(transport.disconnecting and b"did not arrive" in transport.value())

    def test_deadline_does_not_cut_an_idle_keepalive_or_a_prompt_head(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(parse_response(transport.value())[0], 200)
        transport.clear()
        self.clock.advance(30.0)  # idle between requests: the site's idle timeout governs that, not the head's
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(parse_response(transport.value())[0], 200)

    def test_connection_cap_per_client(self) -> None:
        kept = [self.connect(port=41000 + i) for i in range(3)]
        refused = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 41010))
        transport = StringTransport()
        refused.makeConnection(transport)
        self.envelope(transport, 503, "overloaded")
        self.connect(host="127.0.0.2")  # another client is not affected
        kept[0][0].connectionLost(Failure(ConnectionDone()))  # one closes: room for one more
        channel, transport = self.connect(port=41020)
        channel.dataReceived(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(parse_response(transport.value())[0], 200)


class BoundedLogFiles(SynchronousTestCase):
    """Finding 7: the rotating log observers keep a bounded number of files however much is logged."""

    def test_rotation_keeps_a_bounded_number_of_files(self) -> None:
        directory = Path(self.mktemp())
        env = {"WECROSS_LOG_FILE": str(directory / "router.log"), "WECROSS_LOG_ROTATE_BYTES": "2000",
               "WECROSS_LOG_KEEP": "3"}
        log_file = rotating_log_file(env)
        self.addCleanup(log_file.close)
        observer = textFileLogObserver(log_file)
        for i in range(500):
            observer({"log_format": "event {i}: {text}", "i": i, "text": untrusted("\n" * 1000),
                      "log_time": 0.0, "log_level": LogLevel.info, "log_namespace": "test"})
        names = sorted(p.name for p in directory.iterdir())
        self.assertEqual(names, ["router.log", "router.log.1", "router.log.2", "router.log.3"])
        self.assertLess(sum(p.stat().st_size for p in directory.iterdir()), 4 * 2000 + 2000)

    def test_bad_settings_are_refused(self) -> None:
        with self.assertRaises(ValueError):
            rotating_log_file({"WECROSS_LOG_FILE": self.mktemp(), "WECROSS_LOG_KEEP": "0"})
