"""GET /metrics on a live router: Prometheus text with requests by outcome, latency and hops, links, gossip, routes,
verification and transactions; parsed back with prometheus-client's own parser."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from tests import support
from wecross.facade import Invocation
from wecross.ipath import IPath

ROUTERS = {"router-a": {"zones": ["z"]}, "router-b": {"zones": ["z"], "chain": "one"}}


class MetricsTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_metrics_of_a_router_at_work(self) -> Any:
        work = Path(self.mktemp())
        work.mkdir()
        net = support.Network(work, ROUTERS, [("router-a", "router-b")])
        self.addCleanup(net.stop)
        yield net.start()
        yield support.until(lambda: net.linked() and net.nodes["router-a"].router.table.route("z.one") is not None)
        port = net.nodes["router-a"].rest_port
        agent = Agent(reactor)
        for path in ("/status", "/z/one/asset/call"):
            method = b"POST" if path.endswith("call") else b"GET"
            body = FileBodyProducer(BytesIO(b'{"method": "balanceOf", "args": ["alice"]}')) if method == b"POST" \
                else None
            response = yield agent.request(method, f"http://127.0.0.1:{port}{path}".encode(),
                                           Headers({b"Content-Type": [b"application/json"]}), body)
            yield readBody(response)
        coordinator = net.nodes["router-a"].router.transactions()
        yield coordinator.start([])
        yield net.nodes["router-a"].router.invoke(Invocation(IPath.parse("z.one.hello"), "getData", "", ["k"]))
        router_a = net.nodes["router-a"].router
        router_a.auth_refused["result_signature"] += 1  # as a refused answer counts it
        response = yield agent.request(b"GET", f"http://127.0.0.1:{port}/metrics".encode())
        text = (yield readBody(response)).decode()
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}

        def value(name: str, **labels: str) -> float:
            return samples[(name, tuple(sorted({"router": "router-a", **labels}.items())))]

        self.assertGreaterEqual(value("wecross_requests_total", kind="forwarded", outcome="ok"), 2)
        self.assertGreater(value("wecross_link_rtt_seconds", peer="router-b"), 0)
        self.assertEqual(value("wecross_transactions", state="started"), 1)
        self.assertGreaterEqual(value("wecross_verifications_total", outcome="verified"), 2)
        self.assertGreaterEqual(value("wecross_gossip_total", event="published"), 1)
        self.assertEqual(samples[("wecross_request_seconds_count", (("op", "call"), ("outcome", "ok")))], 1)
        self.assertEqual(samples[("wecross_request_hops_count", ())], 1)
        self.assertEqual(value("wecross_auth_refused_total", check="result_signature"), 1)
        self.assertEqual(value("wecross_transactions_unlogged"), 0)
        self.assertEqual(value("wecross_transaction_events_total", event="log_failures"), 0)
        self.assertEqual(value("wecross_participant_events_total", event="heuristic_decisions"), 0)
