"""Routers linked for real: TCP on 127.0.0.1, mutual TLS, the wire protocol, the embedded chain.

These tests start whole RouterNodes in this process and talk to them as peers and users do. Each bad-input test
checks two things: the offender gets a clear refusal, and the router goes on serving its good peer.
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from tests import support
from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.ipath import IPath
from wecross.peer.tls import TLSMaterial, client_options, load_tls_material
from wecross.wire.codec import encode_frame
from wecross.wire.messages import Hello, Request


class RawPeer(Protocol):
    """A TLS client that speaks whatever bytes a test wants, and records how the router answers."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.closed.callback(None)


class TwoRoutersBase(TestCase):
    """router-a (zone payment, chain bank-a) dials router-b (zone evidence, chain court)."""

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

    def invoke(self, node: Any, ipath: str, op: str, method: str, args: list[Any]) -> defer.Deferred[Any]:
        return node.router.invoke(Invocation(IPath.parse(ipath), op, method, args))

    def raw_peer(self, router_id: str = "router-c") -> defer.Deferred[RawPeer]:
        certs = support.pki() / router_id
        material = load_tls_material(support.pki() / "ca.crt", certs / "chain.pem", certs / "key.pem")
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", self.a.p2p_port, client_options(material))
        return connectProtocol(endpoint, RawPeer())

    @defer.inlineCallbacks
    def assert_still_serving(self) -> Any:
        got = yield self.invoke(self.a, "evidence.court.asset", "call", "balanceOf", ["alice"])
        self.assertEqual(got["output"], 1000)
        self.assertIn("router-b", self.a.peers.links)


class TwoRouters(TwoRoutersBase):
    @defer.inlineCallbacks
    def test_call_and_send_transaction_across_zones(self) -> Any:
        sent = yield self.invoke(self.a, "evidence.court.hello", "sendTransaction", "set", ["k", "v1"])
        self.assertEqual(sent["path"], ["router-a", "router-b"])
        self.assertEqual(sent["router"], "router-b")
        self.assertGreaterEqual(sent["block_number"], 1)
        self.assertTrue(sent["tx_hash"])
        got = yield self.invoke(self.a, "evidence.court.hello", "call", "get", ["k"])
        self.assertEqual(got["output"], "v1")
        data = yield self.invoke(self.a, "evidence.court.hello", "getData", "", ["k"])
        self.assertEqual(data["output"], "v1")
        # and the other way round, on the same link
        back = yield self.invoke(self.b, "payment.bank-a.asset", "call", "balanceOf", ["alice"])
        self.assertEqual(back["output"], 1000)
        self.assertEqual(back["path"], ["router-b", "router-a"])

    @defer.inlineCallbacks
    def test_rest_through_one_hop(self) -> Any:
        agent = Agent(reactor)
        url = f"http://127.0.0.1:{self.a.rest_port}/evidence/court/hello/sendTransaction".encode()
        body = json.dumps({"method": "set", "args": ["x", 42]}).encode()
        response = yield agent.request(b"POST", url, Headers({b"Content-Type": [b"application/json"]}),
                                       FileBodyProducer(BytesIO(body)))
        reply = json.loads((yield readBody(response)))
        self.assertEqual(response.code, 200, reply)
        self.assertEqual(reply["data"]["path"], ["router-a", "router-b"])
        response = yield agent.request(b"GET", f"http://127.0.0.1:{self.a.rest_port}/peers".encode())
        peers = json.loads((yield readBody(response)))["data"]
        self.assertEqual([p["id"] for p in peers], ["router-b"])
        self.assertEqual(peers[0]["state"], "up")
        response = yield agent.request(b"GET", f"http://127.0.0.1:{self.a.rest_port}/resources".encode())
        ipaths = {r["ipath"]: r for r in json.loads((yield readBody(response)))["data"]}
        self.assertTrue(ipaths["payment.bank-a.hello"]["local"])
        self.assertEqual(ipaths["evidence.court.asset"]["routers"], ["router-b"])

    @defer.inlineCallbacks
    def test_stub_errors_keep_their_code_across_the_link(self) -> Any:
        failure = yield self.assertFailure(
            self.invoke(self.a, "evidence.court.asset", "sendTransaction", "transfer", ["bob", 10**9]), RouterError)
        self.assertEqual(failure.code, "insufficient_funds")
        failure = yield self.assertFailure(
            self.invoke(self.a, "evidence.court.hello", "call", "nope", []), RouterError)
        self.assertEqual(failure.code, "unknown_method")
        failure = yield self.assertFailure(
            self.invoke(self.a, "evidence.court.nothing", "call", "get", []), RouterError)
        self.assertEqual(failure.code, "unknown_resource")
        failure = yield self.assertFailure(
            self.invoke(self.a, "evidence.elsewhere.hello", "call", "get", []), RouterError)
        self.assertEqual(failure.code, "unknown_chain")

    @defer.inlineCallbacks
    def test_many_requests_in_flight_on_one_link(self) -> Any:
        results = yield defer.gatherResults([
            self.invoke(self.a, "evidence.court.asset", "call", "balanceOf", ["alice"]) for _ in range(200)
        ])
        self.assertEqual({r["output"] for r in results}, {1000})
        writes = yield defer.gatherResults([
            self.invoke(self.a, "evidence.court.hello", "sendTransaction", "set", [f"k{i}", i]) for i in range(20)
        ])
        self.assertEqual(len({w["tx_hash"] for w in writes}), 20)

    @defer.inlineCallbacks
    def test_write_replayed_under_same_request_id_runs_once(self) -> Any:
        link = self.a.peers.links["router-b"]
        request = support.signed_request(
            self.a, request_id=b"\x01" * 16, origin="router-a", destination="router-b", hop_limit=4,
            deadline_ms=5000, path=["router-a"], op="sendTransaction", ipath="evidence.court.hello", method="set",
            args=["once", 1], sender="anonymous")
        first, second = yield defer.gatherResults([link.request(request, 5), link.request(request, 5)])
        self.assertEqual(first.result["tx_hash"], second.result["tx_hash"])
        self.assertTrue(second.result.get("replayed"))
        third = yield link.request(request, 5)
        self.assertEqual(third.result["block_number"], first.result["block_number"])
        self.assertGreaterEqual(self.b.router.replays.replays, 2)

    @defer.inlineCallbacks
    def test_loops_and_hop_limit_refused(self) -> Any:
        link = self.a.peers.links["router-b"]
        base = dict(request_id=b"\x02" * 16, origin="router-a", destination="router-x", deadline_ms=5000,
                    op="call", ipath="other.chain.res", method="get", args=[], sender="anonymous")
        failure = yield self.assertFailure(
            link.request(Request(hop_limit=1, path=["router-a"], **base), 5), RouterError)
        self.assertEqual(failure.code, "hop_limit")
        failure = yield self.assertFailure(
            link.request(Request(hop_limit=5, path=["router-b", "router-a"], **base), 5), RouterError)
        self.assertEqual(failure.code, "hop_limit")
        self.assertIn("loop", failure.message)
        failure = yield self.assertFailure(
            link.request(Request(hop_limit=5, path=["router-a"], **dict(base, deadline_ms=0)), 5), RouterError)
        self.assertEqual(failure.code, "timeout")

    @defer.inlineCallbacks
    def test_dead_link_detected_by_heartbeats(self) -> Any:
        link = self.a.peers.links["router-b"]
        link.transport.pauseProducing()  # router-a stops reading: it hears nothing from router-b any more
        yield support.until(lambda: "router-b" not in self.a.peers.links, timeout=5)
        self.assertEqual(self.a.peers.counters.links_down, 1)
        # ...and the dialler brings the link back.
        yield support.until(lambda: "router-b" in self.a.peers.links
                            and self.a.router.table.route("evidence.court"), timeout=10)
        got = yield self.invoke(self.a, "evidence.court.asset", "call", "balanceOf", ["alice"])
        self.assertEqual(got["output"], 1000)

    @defer.inlineCallbacks
    def test_reconnects_after_peer_restart(self) -> Any:
        port = self.b.p2p_port
        yield support.stop(self.b)
        yield support.until(lambda: "router-b" not in self.a.peers.links)
        failure = yield self.assertFailure(
            self.invoke(self.a, "evidence.court.hello", "call", "get", ["k"]), RouterError)
        # router-b's record lives on until its ttl, but no link leads to it any more
        self.assertEqual(failure.code, "unreachable")
        self.b = yield support.start(support.router_settings("router-b", self.work, zone="evidence", chain="court",
                                                             p2p_port=port))
        self.addCleanup(support.stop, self.b)
        yield support.until(lambda: "router-b" in self.a.peers.links and self.a.router.table.route("evidence.court"),
                            timeout=15)
        got = yield self.invoke(self.a, "evidence.court.asset", "call", "balanceOf", ["alice"])
        self.assertEqual(got["output"], 1000)

    # -- bad input from peers ---------------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_garbage_closes_only_that_link(self) -> Any:
        peer = yield self.raw_peer()
        peer.transport.write(b"\x00\x00\x00\x10" + b"\xc1" * 16)  # 0xc1 is never valid msgpack
        yield peer.closed
        self.assertGreaterEqual(self.a.peers.counters.bad_frames["malformed"], 1)
        self.assertIn(b"bad frame", peer.received)  # the BYE says why
        yield self.assert_still_serving()

    @defer.inlineCallbacks
    def test_oversize_frame_refused_from_its_prefix(self) -> Any:
        peer = yield self.raw_peer()
        peer.transport.write(b"\x7f\xff\xff\xff")
        yield peer.closed
        self.assertEqual(self.a.peers.counters.bad_frames["oversize"], 1)
        yield self.assert_still_serving()

    @defer.inlineCallbacks
    def test_wrong_protocol_version(self) -> Any:
        peer = yield self.raw_peer()
        frame = bytearray(encode_frame(1, Hello(router_id="router-c", versions=[1], zones=[], features=[],
                                                listen="", epoch=1)))
        # The envelope is [version, type, id, body]: byte 4 is the array header, byte 5 the version.
        frame[5] = 9
        peer.transport.write(bytes(frame))
        yield peer.closed
        self.assertEqual(self.a.peers.counters.bad_frames["version"], 1)
        yield self.assert_still_serving()

    @defer.inlineCallbacks
    def test_no_common_version_in_hello(self) -> Any:
        peer = yield self.raw_peer()
        peer.transport.write(encode_frame(1, Hello(router_id="router-c", versions=[7], zones=[], features=[],
                                                   listen="", epoch=1)))
        yield peer.closed
        self.assertIn(b"no common protocol version", peer.received)
        yield self.assert_still_serving()

    @defer.inlineCallbacks
    def test_hello_with_a_foreign_id_refused(self) -> Any:
        peer = yield self.raw_peer("router-c")
        # router-c's certificate, but it claims to be router-b
        peer.transport.write(encode_frame(1, Hello(router_id="router-b", versions=[1], zones=[], features=[],
                                                   listen="", epoch=1)))
        yield peer.closed
        self.assertEqual(self.a.peers.counters.refused["identity"], 1)
        self.assertIn(b"refused", peer.received)
        yield self.assert_still_serving()

    @defer.inlineCallbacks
    def test_request_before_hello_refused(self) -> Any:
        peer = yield self.raw_peer()
        peer.transport.write(encode_frame(1, Request(
            request_id=b"\x03" * 16, origin="router-c", destination="router-a", hop_limit=2, deadline_ms=100,
            path=["router-c"], op="call", ipath="payment.bank-a.hello", method="get", args=["k"], sender="x")))
        yield peer.closed
        self.assertIn(b"before HELLO", peer.received)
        yield self.assert_still_serving()

    @defer.inlineCallbacks
    def test_certificate_from_another_ca_refused(self) -> Any:
        stranger = support.pki() / "stranger" / "router-a"
        # The stranger trusts our CA, so it gets as far as the router's check of *its* certificate.
        ours = load_tls_material(support.pki() / "ca.crt", support.pki() / "router-c" / "chain.pem",
                                 support.pki() / "router-c" / "key.pem")
        theirs = load_tls_material(support.pki() / "stranger" / "ca.crt", stranger / "chain.pem",
                                   stranger / "key.pem")
        material = TLSMaterial(trust_roots=ours.trust_roots, certificate=theirs.certificate,
                               private_key=theirs.private_key, chain=theirs.chain)
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", self.a.p2p_port, client_options(material))
        peer = yield connectProtocol(endpoint, RawPeer())
        peer.transport.write(encode_frame(1, Hello(router_id="router-a", versions=[1], zones=[], features=[],
                                                   listen="", epoch=1)))
        yield peer.closed
        self.assertEqual(peer.received, b"")  # no application data ever reaches a peer the CA did not admit
        self.assertNotIn("router-a", self.a.peers.links)
        yield self.assert_still_serving()

    @defer.inlineCallbacks
    def test_plain_tcp_without_tls(self) -> Any:
        peer = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.a.p2p_port), RawPeer())
        peer.transport.write(b"GET / HTTP/1.0\r\n\r\n")
        yield peer.closed
        yield self.assert_still_serving()


class DuplicateLinks(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_both_dial_one_link_survives(self) -> Any:
        work = Path(self.mktemp())
        work.mkdir()
        pa, pb = support.free_port(), support.free_port()
        a = support.router_settings("router-a", work, chain="bank-a", p2p_port=pa,
                                    peers=[{"address": f"127.0.0.1:{pb}", "id": "router-b"}])
        b = support.router_settings("router-b", work, zone="payment", chain="bank-b", p2p_port=pb,
                                    peers=[{"address": f"127.0.0.1:{pa}", "id": "router-a"}])
        na, nb = yield defer.gatherResults([support.start(a), support.start(b)])
        self.addCleanup(support.stop, na)
        self.addCleanup(support.stop, nb)
        # The surviving link is the one router-a (the lower id) dialled, on both ends...
        yield support.until(lambda: "router-b" in na.peers.links and na.peers.links["router-b"].outbound
                            and "router-a" in nb.peers.links and not nb.peers.links["router-a"].outbound)
        # ...and it stays the one link while both dialers would have had time to try again many times.
        first = na.peers.links["router-b"]
        yield deferLater(reactor, 1.5, lambda: None)
        self.assertIs(na.peers.links["router-b"], first)
        self.assertLessEqual(na.peers.counters.links_up, 2)
        self.assertLessEqual(nb.peers.counters.links_up, 2)
        got = yield nb.router.invoke(Invocation(IPath.parse("payment.bank-a.asset"), "call", "balanceOf", ["alice"]))
        self.assertEqual(got["output"], 1000)


class _Capture(ProcessProtocol):
    """Collects a process's output; closes its stdin at once so s_client ends after the handshake."""

    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.closeStdin()  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(self.output)


def s_client(port: int, certs: Path, *extra: str) -> defer.Deferred[bytes]:
    capture = _Capture()
    args = ["openssl", "s_client", "-brief", *extra, "-connect", f"127.0.0.1:{port}",
            "-CAfile", str(support.pki() / "ca.crt"),
            "-cert", str(certs / "chain.pem"), "-cert_chain", str(certs / "chain.pem"), "-key", str(certs / "key.pem")]
    reactor.spawnProcess(capture, "/usr/bin/openssl", args, env={})
    return capture.ended


class OpenSSLClient(TwoRoutersBase):
    """A foreign TLS implementation, the openssl command, against a router."""

    @defer.inlineCallbacks
    def test_openssl_s_client_with_foreign_ca_refused(self) -> Any:
        # TLS 1.2: the server's verdict on the client certificate arrives inside the handshake. (Under TLS 1.3 the
        # client may finish and leave before the alert reaches it; the router refuses it all the same.)
        server_tls = self.a.peers.transports._server_options  # type: ignore[attr-defined]
        before = server_tls.refusals
        output = yield s_client(self.a.p2p_port, support.pki() / "stranger" / "router-a", "-tls1_2")
        self.assertIn("unknown ca", output.decode(errors="replace").lower())
        yield s_client(self.a.p2p_port, support.pki() / "stranger" / "router-a")
        yield support.until(lambda: server_tls.refusals == before + 2)
        self.assertNotIn("router-a", self.a.peers.links)
        yield self.assert_still_serving()

    @defer.inlineCallbacks
    def test_openssl_s_client_with_our_ca_gets_through_tls(self) -> Any:
        output = yield s_client(self.a.p2p_port, support.pki() / "router-c")
        text = output.decode(errors="replace").lower()
        self.assertIn("verification: ok", text)
        self.assertNotIn("unknown ca", text)
        yield self.assert_still_serving()
