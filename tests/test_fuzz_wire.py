"""Wire fuzz against a live router over real mutual TLS (issue 12): hypothesis-drawn frame streams from a peer that
holds a valid certificate (router-c's), sent to router-a while router-a and router-b keep an honest link.

The streams: valid messages after a HELLO with bytes flipped, inserted or cut (valid-prefix mutations); frames with
random bodies; envelopes with oversized or ill-typed fields; messages before any HELLO. Messages are built with the
constructors of :mod:`wecross.wire.messages`, through tests.test_wire_properties' strategies, so the fuzz follows
the message definitions as they change.

Asserted, and nothing else: each connection ends in a clean close (router-a sends a BYE saying why, or the fuzzer's
own BYE reached it first) within a bound, what router-a wrote is well-formed frames, its log holds no traceback, no
unhandled error and no unbounded event, its memory stays within :data:`~tests.fuzz_support.RSS_GROWTH_BOUND`, and
the honest link stays up and keeps serving both ways throughout. Bounded: a fixed, derandomized example set.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase

from tests import support
from tests.fuzz_support import RSS_GROWTH_BOUND, LogWatch, RawClient, examples, rss_bytes, within
from tests.test_wire_properties import FREE, MESSAGES, REQUESTS
from wecross.config import Settings
from wecross.facade import Invocation
from wecross.ipath import IPath
from wecross.peer.tls import client_options, load_tls_material
from wecross.wire.codec import FrameDecoder, encode_frame
from wecross.wire.errors import WireError
from wecross.wire.limits import Limits
from wecross.wire.messages import BODY_DECODERS, Bye, Error, Hello

EXAMPLES = 150
#: router-a's max_frame in this test: small, so that the padding below can always complete a pending frame.
MAX_FRAME = 64 * 1024
#: Sent after every fuzzed stream: completes whatever frame the stream left pending (its bytes then fail to decode)
#: or, as a prefix, announces a frame far over max_frame. Either way router-a must close the link with a BYE now.
PADDING = b"\xc1" * (MAX_FRAME + 8)
HONEST_EVERY = 10


def hello(router_id: str = "router-c") -> bytes:
    return encode_frame(1, Hello(router_id=router_id, versions=[1], zones=["payment"], features=[], listen="",
                                 epoch=1))


def stream(frames: list[Any]) -> bytes:
    return b"".join(encode_frame(i, message) for i, message in enumerate(frames, start=2))


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 flips a byte, 1 inserts one, 2 deletes one, 3 cuts the stream."""
    buf = bytearray(data)
    for kind, position, value in edits:
        if not buf:
            break
        at = position % len(buf)
        if kind == 0:
            buf[at] ^= value or 1
        elif kind == 1:
            buf.insert(at, value)
        elif kind == 2:
            del buf[at]
        else:
            del buf[at:]
    return bytes(buf)


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=4)
# Each case is (whether a HELLO goes first, the bytes after it).
MUTATED = st.builds(lambda frames, edits: (True, mutate(stream(frames), edits)),
                    st.lists(MESSAGES, min_size=1, max_size=3), EDITS)
RANDOM_BODIES = st.builds(lambda body: (True, len(body).to_bytes(4, "big") + body), st.binary(max_size=300))
TYPE_CODES = st.sampled_from(sorted(BODY_DECODERS)) | st.integers(0, 255)
ODD_FIELDS = st.one_of(
    st.builds(lambda c, n: c * (MAX_FRAME + n), st.characters(codec="utf-8"), st.integers(0, 10)),  # over max_frame
    st.integers(1, 60).map(lambda n: _nest(n)),  # nested up to and past max_depth
    st.just([None] * 20_000),  # a long list
    st.integers(-(2**63), 2**64 - 1),
    st.binary(max_size=64),
    FREE,
)
ENVELOPES = st.builds(
    lambda version, code, msg_id, body: (True, _framed([version, code, msg_id, body])),
    st.integers(0, 3) | st.just(1),
    TYPE_CODES,
    st.integers(-(2**63), 2**64 - 1),
    st.lists(ODD_FIELDS, max_size=12),
)
# Valid messages with the largest text fields the frame limit allows: what a peer could make a router log or echo.
BIG = st.integers(20_000, 60_000)
FILLERS = st.sampled_from(["\x00", "\n", "a\r\n", "\u2028", "é"])
LOUD = st.one_of(
    st.builds(lambda n, c: Error(reply_to=0, request_id=b"", code="flood", message=(c * n)[:n],
                                  path=[]), BIG, FILLERS),
    st.builds(lambda n, c: Bye(reason=(c * n)[:n]), BIG, FILLERS),
    # A path that does not end with the sender: the refusal quotes it, and must still fit the frame limit.
    st.builds(lambda request, n: replace(request, path=[f"hop-{i:05d}" for i in range(n // 12)]), REQUESTS, BIG),
    st.builds(lambda request, n: replace(request, args=["\x00\n" * (n // 2)]), REQUESTS, BIG),
).map(lambda message: (True, stream([message])))
BEFORE_HELLO = st.lists(MESSAGES, min_size=1, max_size=3).map(lambda frames: (False, stream(frames)))
STREAMS = st.one_of(MUTATED, MUTATED, RANDOM_BODIES, ENVELOPES, LOUD, BEFORE_HELLO)


def _nest(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def _framed(envelope: list[Any]) -> bytes:
    body: bytes = msgpack.packb(envelope, use_bin_type=True)
    return len(body).to_bytes(4, "big") + body


def _limit_frames(router_id: str, settings: Settings) -> Settings:
    return replace(settings, limits=replace(settings.limits, max_frame=MAX_FRAME))


class WireFuzz(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        # Drawn before any router starts: drawing takes a while and blocks the reactor, which would make the
        # routers' links miss their heartbeats.
        self.cases = examples(STREAMS, EXAMPLES)
        work = Path(self.mktemp())
        work.mkdir()
        self.net = support.Network(work, {"router-a": {"zones": ["payment"], "chain": "bank-a"},
                                          "router-b": {"zones": ["evidence"], "chain": "court"}},
                                   [("router-a", "router-b")], adjust=_limit_frames)
        self.addCleanup(self.net.stop)
        yield self.net.start()
        self.a, self.b = self.net.nodes["router-a"], self.net.nodes["router-b"]
        yield support.until(lambda: self.net.linked() and self.a.router.table.route("evidence.court")
                            and self.b.router.table.route("payment.bank-a"), timeout=30)
        certs = support.pki() / "router-c"
        material = load_tls_material(support.pki() / "ca.crt", certs / "chain.pem", certs / "key.pem")
        self.options = client_options(material)
        self.honest_link = self.a.peers.links["router-b"]

    async def honest(self) -> None:
        """Both directions over the honest link; fails the test if the link changed or a request failed."""
        self.assertIs(self.a.peers.links.get("router-b"), self.honest_link)
        got = await self.b.router.invoke(Invocation(IPath.parse("payment.bank-a.asset"), "call", "balanceOf",
                                                    ["alice"]))
        self.assertEqual(got["output"], 1000)
        got = await self.a.router.invoke(Invocation(IPath.parse("evidence.court.asset"), "call", "balanceOf",
                                                    ["alice"]))
        self.assertEqual(got["output"], 1000)

    async def fuzz_one(self, case: tuple[bool, bytes], watch: LogWatch) -> None:
        with_hello, data = case
        # One fuzzing connection at a time: a router-c link still closing would make the next one a duplicate.
        await support.until(lambda: "router-c" not in self.a.peers.links, timeout=10)
        seen = len(watch.events)
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", self.a.p2p_port, self.options)
        client = await connectProtocol(endpoint, RawClient())
        transport: Any = client.transport
        if with_hello:
            # The HELLO, the stream and the padding go in three steps, each once router-a has read the one before:
            # in one piece, a decoding error further on would close the link before the valid frames were served.
            transport.write(hello())
            await support.until(lambda: "router-c" in self.a.peers.links or client.closed.called, timeout=10)
        link = self.a.peers.links.get("router-c")
        expected = (link.bytes_in if link is not None else 0) + len(data)
        transport.write(data)
        if link is not None:
            await support.until(lambda: link.bytes_in >= expected or link.lost or client.closed.called, timeout=10)
        if not client.closed.called:
            transport.write(PADDING)
        await within(client.closed, 10.0, transport.abortConnection)
        frames = []
        decoder = FrameDecoder(Limits())
        try:
            frames = [envelope.message for envelope in decoder.feed(bytes(client.received))]
        except WireError as exc:
            self.fail(f"router-a wrote a malformed stream ({exc.reason}: {exc.message}) for {case!r:.200}")
        said_bye = any("peer closed" in str(event.get("log_format", "")) for event in watch.events[seen:])
        self.assertTrue(any(isinstance(m, Bye) for m in frames) or said_bye,
                        f"closed without a BYE after {case!r:.200}: {frames}")

    @defer.inlineCallbacks
    def test_fuzz(self) -> Any:
        cases = self.cases
        yield defer.ensureDeferred(self.honest())
        watch = LogWatch(self)
        before = rss_bytes()
        for i, case in enumerate(cases):
            yield defer.ensureDeferred(self.fuzz_one(case, watch))
            if i % HONEST_EVERY == 0:
                yield defer.ensureDeferred(self.honest())
        grown = rss_bytes() - before
        yield defer.ensureDeferred(self.honest())
        self.assertEqual(watch.problems(), [])
        self.assertLess(grown, RSS_GROWTH_BOUND, f"RSS grew {grown / 2**20:.1f} MiB over {len(cases)} connections")
        self.assertGreater(sum(self.a.peers.counters.bad_frames.values()), EXAMPLES // 2)
