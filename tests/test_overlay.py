"""The overlay for real: 7 routers on 127.0.0.1 with mutual TLS, in two zones joined by two border routers.

```
zone za:  a1 -- a2 --+-- x --+-- b1 -- b2   zone zb       (x and y belong to both zones)
                     +-- y --+
```

b2 serves the chain zb.ledger. Requests from a1 cross a2, one border router and b1. Tests: the multi-hop path is
taken and recorded; killing the border in use moves traffic to the other one, with reads in flight retried and
writes answered with a clear error, never run twice; the border's return heals the routes; a slowed link makes the
route move, once, to the cheaper border; a router that refuses transit is never used as a relay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests import support
from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.ipath import IPath

ROUTERS = {
    "router-a": {"zones": ["za"]},            # a1
    "router-b": {"zones": ["za"]},            # a2
    "router-c": {"zones": ["za", "zb"]},      # x, border
    "router-d": {"zones": ["za", "zb"]},      # y, border
    "router-e": {"zones": ["zb"]},            # b1
    "router-f": {"zones": ["zb"], "chain": "ledger"},  # b2
}
LINKS = [("router-a", "router-b"), ("router-b", "router-c"), ("router-b", "router-d"),
         ("router-c", "router-e"), ("router-d", "router-e"), ("router-e", "router-f")]
CHAIN = "zb.ledger"


def slow_down(test: TestCase, node: Any, peer: str, delay: float) -> None:
    """Delay everything this router writes on its link to ``peer`` (an injected one-way delay)."""
    transport = node.peers.links[peer].transport
    real_write = transport.write
    pending: list[Any] = []

    def delayed(data: bytes) -> None:
        pending[:] = [call for call in pending if call.active()]
        pending.append(reactor.callLater(delay, real_write, data))

    def undo() -> None:
        for call in pending:
            if call.active():
                call.cancel()
        transport.write = real_write

    transport.write = delayed
    test.addCleanup(undo)


class Overlay(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        work = Path(self.mktemp())
        work.mkdir()
        self.net = support.Network(work, ROUTERS, LINKS)
        self.addCleanup(self.net.stop)
        yield self.net.start()
        # Converged means every router on the way has its route, not only the entry: a relay that has not yet
        # rebuilt its table answers "unreachable" and the entry has no other path to try.
        yield support.until(lambda: self.net.linked() and all(
            self.route(rid) is not None for rid in ROUTERS if rid != "router-f"), timeout=30)

    def route(self, rid: str) -> Any:
        return self.net.nodes[rid].router.table.route(CHAIN)

    def call(self, rid: str = "router-a", op: str = "call", method: str = "balanceOf",
             args: list[Any] | None = None, resource: str = "asset") -> defer.Deferred[Any]:
        invocation = Invocation(IPath.parse(f"{CHAIN}.{resource}"), op, method, ["alice"] if args is None else args)
        return self.net.nodes[rid].router.invoke(invocation)

    @defer.inlineCallbacks
    def test_multi_hop_across_two_zones(self) -> Any:
        got = yield self.call()
        self.assertEqual(got["output"], 1000)
        self.assertEqual(got["path"][0], "router-a")
        self.assertEqual(got["path"][-1], "router-f")
        self.assertEqual(len(got["path"]), 5)  # a1 a2 border b1 b2
        self.assertIn(got["path"][2], ("router-c", "router-d"))
        sent = yield self.call(op="sendTransaction", method="set", args=["k", "v"], resource="hello")
        self.assertEqual(sent["router"], "router-f")
        # Every router learnt every other one through gossip, not only its neighbours.
        for node in self.net.nodes.values():
            self.assertEqual(len(node.router.directory), 6)
        # The route table says what the request did.
        self.assertEqual(list(self.route("router-a").path), got["path"])
        routes = self.net.nodes["router-a"].router.routes()
        chain_rows = [r for r in routes["routes"] if r["kind"] == "chain"]
        self.assertEqual(chain_rows[0]["chain"], CHAIN)

    @defer.inlineCallbacks
    def test_wecross_routes_command(self) -> Any:
        import sys

        from twisted.internet.utils import getProcessOutputAndValue

        port = self.net.nodes["router-a"].rest_port
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ["-m", "wecross.cli", "routes", "--router", f"http://127.0.0.1:{port}"])
        self.assertEqual(code, 0, err)
        text = out.decode()
        self.assertIn("routes of router-a", text)
        line = next(row for row in text.splitlines() if row.startswith(CHAIN))
        self.assertIn("router-b", line)  # the next hop
        self.assertIn("router-a -> router-b -> ", line)
        self.assertTrue(line.rstrip().endswith("router-f"))

    @defer.inlineCallbacks
    def test_border_failure_moves_traffic_and_routes_heal(self) -> Any:
        first = yield self.call()
        border = first["path"][2]
        other = "router-d" if border == "router-c" else "router-c"
        writes_before = self.net.nodes["router-f"].router.outcomes["served_ok"]
        yield self.net.stop(border)
        got = yield self.call()  # at once: the relay routes around the dead link
        self.assertEqual(got["path"][2], other)
        yield support.until(lambda: self.route("router-a") is not None and other in self.route("router-a").path)
        # the border comes back: the directory and the table learn it again
        yield self.net.start(border)
        yield support.until(lambda: self.net.linked() and border in self.net.nodes["router-a"].router.directory
                            and self.net.nodes["router-a"].router.table.next_hop(border) is not None, timeout=30)
        got = yield self.call()
        self.assertEqual(got["output"], 1000)
        self.assertGreaterEqual(self.net.nodes["router-f"].router.outcomes["served_ok"], writes_before + 2)

    @defer.inlineCallbacks
    def test_reads_in_flight_fail_over_writes_fail_clearly(self) -> Any:
        first = yield self.call()
        border = first["path"][2]
        node = self.net.nodes[border]
        # The border stops reading: requests reach it and go no further. Then it dies.
        for link in node.peers.links.values():
            link.transport.pauseProducing()
        read = self.call()
        write = self.call(op="sendTransaction", method="set", args=["once", 1], resource="hello")
        yield deferLater(reactor, 0.1, lambda: None)
        height_before = (yield self.net.nodes["router-f"].stubs.chain_states())["zb.ledger"].height
        # It crashes: its connections drop without a word.
        for link in list(node.peers.links.values()):
            link.transport.abortConnection()
        yield self.net.stop(border)
        got = yield read
        self.assertEqual(got["output"], 1000)
        self.assertNotIn(border, got["path"])
        failure = yield self.assertFailure(write, RouterError)
        self.assertEqual(failure.code, "peer_lost")
        self.assertIn("not retried", failure.message)
        yield deferLater(reactor, 0.3, lambda: None)
        height_after = (yield self.net.nodes["router-f"].stubs.chain_states())["zb.ledger"].height
        self.assertEqual(height_after, height_before)  # the write never ran, and certainly not twice

    @defer.inlineCallbacks
    def test_slow_link_moves_the_route_once(self) -> Any:
        first = self.route("router-a")
        border = first.path[2]
        other = "router-d" if border == "router-c" else "router-c"
        changes_before = self.net.nodes["router-a"].router.route_changes
        # 25 ms each way on the border's link into zone zb.
        slow_down(self, self.net.nodes[border], "router-e", 0.025)
        slow_down(self, self.net.nodes["router-e"], border, 0.025)
        yield support.until(lambda: other in self.route("router-a").path, timeout=30)
        got = yield self.call()
        self.assertIn(other, got["path"])
        # Hysteresis: the route moved once and stays put while measurements wobble.
        yield deferLater(reactor, 1.5, lambda: None)
        self.assertIn(other, self.route("router-a").path)
        self.assertEqual(self.net.nodes["router-a"].router.route_changes, changes_before + 1)


class Transit(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_router_refusing_transit_is_not_a_relay(self) -> Any:
        work = Path(self.mktemp())
        work.mkdir()
        # a -- b -- d  and  a -- c -- d, where b is cheaper but refuses transit.
        routers = {"router-a": {"zones": ["z"]}, "router-b": {"zones": ["z"]}, "router-c": {"zones": ["z"]},
                   "router-d": {"zones": ["z"], "chain": "chain"}}
        from dataclasses import replace

        net = support.Network(work, routers, [("router-a", "router-b"), ("router-b", "router-d"),
                                              ("router-a", "router-c"), ("router-c", "router-d")],
                              adjust=lambda rid, s: replace(s, transit=False) if rid == "router-b" else s)
        self.addCleanup(net.stop)
        yield net.start()
        yield support.until(lambda: net.linked() and net.nodes["router-a"].router.table.route("z.chain"), timeout=30)
        route = net.nodes["router-a"].router.table.route("z.chain")
        self.assertEqual(route.path, ("router-a", "router-c", "router-d"))
        # ...and b refuses to relay if asked directly.
        from wecross.wire.messages import Request

        link = net.nodes["router-a"].peers.links["router-b"]
        request = Request(request_id=b"\x09" * 16, origin="router-a", destination="router-d", hop_limit=4,
                          deadline_ms=2000, path=["router-a"], op="call", ipath="z.chain.asset", method="balanceOf",
                          args=["alice"], sender="anonymous")
        failure = yield self.assertFailure(link.request(request, 2), RouterError)
        self.assertEqual(failure.code, "forbidden")


class ChainClash(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_two_routers_claiming_one_chain_with_different_genesis(self) -> Any:
        work = Path(self.mktemp())
        work.mkdir()
        # router-b and router-c both say they serve z.chain, but their chains began differently.
        routers = {"router-a": {"zones": ["z"]}, "router-b": {"zones": ["z"], "chain": "chain"},
                   "router-c": {"zones": ["z"], "chain": "chain",
                                "resources": [{"name": "asset", "kind": "asset", "initial": {"mallory": 10**6}}]}}
        net = support.Network(work, routers, [("router-a", "router-b"), ("router-a", "router-c")])
        self.addCleanup(net.stop)
        yield net.start()
        a = net.nodes["router-a"].router
        yield support.until(lambda: net.linked() and len(a.directory) == 3 and a.directory.clashes(), timeout=30)
        clash = a.directory.clashes()[0]
        self.assertEqual(clash.path, "z.chain")
        self.assertEqual(sorted(clash.genesis_by_router), ["router-b", "router-c"])
        self.assertEqual(a.status()["chain_clashes"][0]["path"], "z.chain")
        failure = yield self.assertFailure(
            a.invoke(Invocation(IPath.parse("z.chain.asset"), "call", "balanceOf", ["alice"])), RouterError)
        self.assertEqual(failure.code, "chain_clash")
