"""REST fuzz against a live router (issue 12): hypothesis-drawn methods, paths, query strings, headers and bodies,
sent as raw HTTP/1.1 over TCP to router-a, which serves chain bank-a and reaches chain court through router-b.

Asserted, and nothing else: every answer is 2xx or 4xx in the JSON envelope (never a 5xx, never a bare or missing
answer), the router's log holds no traceback, no unhandled error and no unbounded event, its memory stays within
:data:`~tests.fuzz_support.RSS_GROWTH_BOUND`, and an honest client's requests (a local write, a remote read, the
status page) keep succeeding during and after the fuzz. Bounded: a fixed, derandomized example set (a few seconds).
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes

from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from tests import support
from tests.fuzz_support import RSS_GROWTH_BOUND, LogWatch, RawClient, examples, rss_bytes, within

#: Examples per run and how many are in flight at once (with one honest request beside each batch).
EXAMPLES = 240
BATCH = 8

SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
TEXT = st.text(max_size=12) | st.builds(lambda a, s, b: a + s + b, st.text(max_size=4), SURROGATES,
                                        st.text(max_size=4))
INTS = st.integers(-(2**70), 2**70) | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INTS | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
KNOWN_SEGMENTS = ["status", "peers", "resources", "routes", "chains", "metrics", "openapi.json", "ui", "tx", "htlc",
                  "start", "exec", "commit", "rollback", "lock", "unlock", "events", "headers", "payment", "bank-a",
                  "evidence", "court", "hello", "asset", "nope", "call", "sendTransaction", "getData", "setData",
                  "..", ".", "", "*"]
SEGMENT = (
    st.sampled_from(KNOWN_SEGMENTS)
    | st.text(max_size=10).map(lambda t: quote(t, safe=""))
    | st.binary(max_size=10).map(lambda b: quote_from_bytes(b, safe=""))
    | st.binary(max_size=6).map(lambda b: b.decode("latin-1"))  # raw bytes in the request line, unescaped
)
OPERATIONS = st.sampled_from([
    "/payment/bank-a/hello/sendTransaction", "/payment/bank-a/hello/call", "/payment/bank-a/hello/setData",
    "/payment/bank-a/hello/getData", "/payment/bank-a/asset/sendTransaction", "/payment/bank-a/asset/call",
    "/evidence/court/hello/sendTransaction", "/evidence/court/asset/call", "/evidence/court/hello/getData",
    "/tx/start", "/status", "/resources", "/peers", "/routes", "/chains",
])
PATHS = OPERATIONS | st.lists(SEGMENT, max_size=6).map(lambda parts: "/" + "/".join(parts))
QUERY_KEYS = st.sampled_from(["zone", "chain", "proof", "from", "wait", "resource", "x"]) | st.text(max_size=6)
QUERIES = st.lists(st.tuples(QUERY_KEYS, st.text(max_size=10) | st.binary(max_size=8).map(
    lambda b: b.decode("latin-1"))), max_size=4).map(
    lambda pairs: "&".join(f"{quote(k, safe='')}={quote(v, safe='=&%')}" for k, v in pairs))
BODIES = st.one_of(
    st.just(b""),
    st.binary(max_size=200),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda m, a: json.dumps({"method": m, "args": a}).encode(),
              st.sampled_from(["set", "get", "transfer", "balanceOf", "mint", "totalSupply"]) | TEXT,
              st.lists(JSON_VALUES, max_size=4)),
    st.builds(lambda k, v: json.dumps({"key": k, "value": v}).encode(), JSON_VALUES, JSON_VALUES),
    st.builds(lambda r, t: json.dumps({"resources": r, "timeout": t}).encode(), st.lists(TEXT, max_size=3),
              JSON_VALUES),
    st.integers(200, 400).map(lambda n: b"[" * n + b"]" * n),
)
METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH"]) | st.binary(
    min_size=1, max_size=8)
CONTENT_TYPES = st.sampled_from([None, b"application/json", b"text/plain", b"application/x-www-form-urlencoded",
                                 b"application/json; charset=latin-1", b"application/vnd.x+json", b"\x00\xff"])
OP_BODIES = st.one_of(
    st.builds(lambda m, a: json.dumps({"method": m, "args": a}).encode(),
              st.sampled_from(["set", "get", "transfer", "balanceOf", "mint", "totalSupply"]),
              st.lists(JSON_VALUES, max_size=3)),
    st.builds(lambda k, v: json.dumps({"key": k, "value": v}).encode(), TEXT, JSON_VALUES),
)
#: Weighted towards requests that get past parsing into the router and the chains: half are JSON operations on
#: real resources, a quarter reads with query strings, a quarter anything at all.
REQUESTS = st.one_of(
    st.builds(lambda p, b: (b"POST", p, None, b"application/json", b), OPERATIONS, OP_BODIES),
    st.builds(lambda p, b: (b"POST", p, None, b"application/json", b), OPERATIONS, BODIES),
    st.builds(lambda p, q: (b"GET", p, q, None, b""), OPERATIONS | PATHS, QUERIES),
    st.builds(lambda m, p, q, ct, b: (m, p, q, ct, b), METHODS, PATHS, st.none() | QUERIES, CONTENT_TYPES, BODIES),
)


def raw_request(method: bytes, path: str, query: str | None, ctype: bytes | None, body: bytes) -> bytes:
    target = (path + ("?" + query if query is not None else "")).encode("utf-8", "surrogateescape")
    head = method + b" " + target + b" HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n"
    if ctype is not None:
        head += b"Content-Type: " + ctype + b"\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def parse_answer(raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


class RestFuzz(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        # Drawn before any router starts: drawing takes a while and blocks the reactor, which would make the
        # routers' links miss their heartbeats.
        self.cases = examples(REQUESTS, EXAMPLES)
        work = Path(self.mktemp())
        work.mkdir()
        self.net = support.Network(work, {"router-a": {"zones": ["payment"], "chain": "bank-a"},
                                          "router-b": {"zones": ["evidence"], "chain": "court"}},
                                   [("router-a", "router-b")])
        self.addCleanup(self.net.stop)
        yield self.net.start()
        self.a = self.net.nodes["router-a"]
        b = self.net.nodes["router-b"]
        # Both ways: router-b checks router-a's requests against router-a's record, which it must have first.
        yield support.until(lambda: self.net.linked() and self.a.router.table.route("evidence.court")
                            and b.router.table.route("payment.bank-a"), timeout=30)
        pool = HTTPConnectionPool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        self.agent = Agent(reactor, pool=pool)
        self.base = f"http://127.0.0.1:{self.a.rest_port}"
        self.honest_writes = 0

    async def honest(self) -> None:
        """One round of honest traffic; fails the test if any of it does not succeed."""
        self.honest_writes += 1
        calls = [
            (b"GET", "/status", None),
            (b"POST", "/payment/bank-a/hello/sendTransaction",
             {"method": "set", "args": [f"honest-{self.honest_writes}", self.honest_writes]}),
            (b"POST", "/evidence/court/asset/call", {"method": "balanceOf", "args": ["alice"]}),
        ]
        for method, path, body in calls:
            producer = FileBodyProducer(BytesIO(json.dumps(body).encode())) if body is not None else None
            headers = Headers({b"Content-Type": [b"application/json"]}) if body is not None else None
            response = await self.agent.request(method, (self.base + path).encode(), headers, producer)
            answer = json.loads(await readBody(response))
            self.assertEqual((response.code, answer["ok"]), (200, True), f"honest {method!r} {path}: {answer}")

    async def fuzz_one(self, example: tuple[bytes, str, str | None, bytes | None, bytes]) -> None:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.a.rest_port)
        client = await connectProtocol(endpoint, RawClient(raw_request(*example)))
        await within(client.closed, 10.0, lambda: client.transport.abortConnection())  # type: ignore[union-attr]
        raw = bytes(client.received)
        self.assertTrue(raw.startswith(b"HTTP/1.1 "), f"no HTTP answer to {example!r}: {raw[:200]!r}")
        status, headers, body = parse_answer(raw)
        self.assertTrue(200 <= status < 500, f"{status} for {example!r}: {body[:300]!r}")
        if example[0] == b"HEAD" and not body:
            return
        self.assertEqual(headers.get(b"content-type"), b"application/json; charset=utf-8", repr(example))
        envelope = json.loads(body)
        self.assertIsInstance(envelope.get("ok"), bool, repr(example))
        if status >= 400:
            self.assertFalse(envelope["ok"])
            self.assertIsInstance(envelope["error"]["code"], str)
            self.assertIsInstance(envelope["error"]["message"], str)

    @defer.inlineCallbacks
    def test_fuzz(self) -> Any:
        cases = self.cases
        yield defer.ensureDeferred(self.honest())  # warmed up: first-use allocations are not counted as growth
        watch = LogWatch(self)
        before = rss_bytes()
        for start in range(0, len(cases), BATCH):
            batch = [defer.ensureDeferred(self.fuzz_one(case)) for case in cases[start:start + BATCH]]
            batch.append(defer.ensureDeferred(self.honest()))
            yield defer.gatherResults(batch, consumeErrors=True).addErrback(lambda f: f.value.subFailure)
        grown = rss_bytes() - before
        yield defer.ensureDeferred(self.honest())
        self.assertEqual(watch.problems(), [])
        self.assertLess(grown, RSS_GROWTH_BOUND, f"RSS grew {grown / 2**20:.1f} MiB over {len(cases)} requests")
        self.assertEqual(self.a.site.counters["server_error"], 0)
