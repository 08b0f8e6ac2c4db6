"""Overlay routing: link cost, the graph built from router records, and the routing table's choices."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import networkx as nx
from twisted.trial.unittest import SynchronousTestCase

from wecross.routing.cost import (
    FLAP_PENALTY_MS,
    UNKNOWN_SRTT_MS,
    UNUSABLE_PENALTY_MS,
    link_cost,
)
from wecross.routing.graph import RecordLike, build_graph
from wecross.routing.table import CACHE_LIMIT, Route, RoutingTable

INF = math.inf


@dataclass(frozen=True)
class FakeLink:
    peer: str
    srtt_ms: float | None = 10.0
    loss: float | None = 0.0
    bandwidth_bps: float | None = INF
    flaps: int = 0


@dataclass(frozen=True)
class FakeRecord:
    router_id: str
    zones: tuple[str, ...] = ("z",)
    transit: bool = True
    links: tuple[FakeLink, ...] = field(default=())


def records(
    links: Iterable[tuple[str, str, float]],
    zones: dict[str, tuple[str, ...]] | None = None,
    transit: dict[str, bool] | None = None,
) -> dict[str, RecordLike]:
    """Records of a network where both ends report every link in ``links`` (u, v, srtt) the same way."""
    ends: dict[str, list[FakeLink]] = {}
    for u, v, srtt in links:
        ends.setdefault(u, []).append(FakeLink(v, srtt))
        ends.setdefault(v, []).append(FakeLink(u, srtt))
    zones = zones or {}
    transit = transit or {}
    return {rid: FakeRecord(rid, zones.get(rid, ("z",)), transit.get(rid, True), tuple(ls))
            for rid, ls in ends.items()}


def weighted(edges: Iterable[tuple[str, str, float]], non_transit: Iterable[str] = ()) -> Any:
    """A graph with exactly these symmetric edge weights, for tests that need exact costs."""
    graph = nx.DiGraph()
    for u, v, w in edges:
        graph.add_edge(u, v, weight=w)
        graph.add_edge(v, u, weight=w)
    nx.set_node_attributes(graph, True, "transit")
    for node in non_transit:
        graph.nodes[node]["transit"] = False
    return graph


def path_weight(graph: Any, path: Sequence[str]) -> float:
    return sum(graph[u][v]["weight"] for u, v in pairwise(path))


class LinkCostTests(SynchronousTestCase):
    def test_formula(self) -> None:
        """1000 bytes at 1 Mbit/s take 8 ms on the wire; 10 % loss costs 1/0.81 of the clean attempt."""
        self.assertAlmostEqual(link_cost(10.0, 0.0, 1e6, 0, size_bytes=1000, hop_overhead_ms=0.2), 18.2)
        self.assertAlmostEqual(link_cost(10.0, 0.1, INF, 0, hop_overhead_ms=0.0), 10.0 / 0.81)
        self.assertAlmostEqual(link_cost(10.0, 0.0, INF, 2, hop_overhead_ms=0.0), 10.0 + 2 * FLAP_PENALTY_MS)

    def test_increasing_in_srtt(self) -> None:
        costs = [link_cost(srtt, 0.01, 1e7, 0) for srtt in (0.0, 0.5, 1.0, 10.0, 100.0, 1000.0)]
        self.assertEqual(costs, sorted(set(costs)))

    def test_increasing_in_loss(self) -> None:
        costs = [link_cost(20.0, loss, 1e7, 0) for loss in (0.0, 0.01, 0.1, 0.3, 0.49, 0.5, 0.7, 0.99)]
        self.assertEqual(costs, sorted(set(costs)))
        # Past the clamp the cost stops growing but stays finite and never drops.
        self.assertEqual(link_cost(20.0, 1.0, 1e7, 0), link_cost(20.0, 0.99, 1e7, 0))
        self.assertTrue(math.isfinite(link_cost(20.0, 7.0, 1e7, 0)))

    def test_increasing_in_flaps(self) -> None:
        costs = [link_cost(20.0, 0.0, 1e7, flaps) for flaps in range(6)]
        self.assertEqual(costs, sorted(set(costs)))
        self.assertEqual(link_cost(20.0, 0.0, 1e7, -3), link_cost(20.0, 0.0, 1e7, 0))

    def test_decreasing_in_bandwidth(self) -> None:
        costs = [link_cost(20.0, 0.0, bw, 0) for bw in (1e3, 1e5, 1e6, 1e8, 1e10, INF)]
        self.assertEqual(costs, sorted(set(costs), reverse=True))
        # Bigger requests feel the bandwidth more.
        self.assertGreater(link_cost(20.0, 0.0, 1e6, 0, size_bytes=65536), link_cost(20.0, 0.0, 1e6, 0))

    def test_unknown_measurements_are_pessimistic(self) -> None:
        expected = link_cost(UNKNOWN_SRTT_MS, 0.0, 1e7, 0)
        for unknown in (None, math.nan, -1.0, INF):
            self.assertEqual(link_cost(unknown, 0.0, 1e7, 0), expected, unknown)
        self.assertGreater(expected, link_cost(300.0, 0.0, 1e7, 0))
        self.assertGreater(link_cost(20.0, None, 1e7, 0), link_cost(20.0, 0.0, 1e7, 0))
        self.assertEqual(link_cost(20.0, 0.0, None, 0), link_cost(20.0, 0.0, 0.0, 0))
        self.assertEqual(link_cost(20.0, 0.0, math.nan, 0), link_cost(20.0, 0.0, 0.0, 0))
        self.assertGreater(link_cost(20.0, 0.0, None, 0), link_cost(20.0, 0.0, 1e8, 0))

    def test_half_loss_is_unusable(self) -> None:
        """A single link at 50 % loss costs more than a long path of poor but usable links."""
        bad = link_cost(1.0, 0.5, INF, 0)
        self.assertGreater(bad, UNUSABLE_PENALTY_MS)
        self.assertGreater(bad, 100 * link_cost(500.0, 0.3, 1e6, 5))
        self.assertTrue(math.isfinite(bad))

    def test_bad_local_parameters_raise(self) -> None:
        self.assertRaises(ValueError, link_cost, 1.0, 0.0, 1e6, 0, size_bytes=-1)
        self.assertRaises(ValueError, link_cost, 1.0, 0.0, 1e6, 0, hop_overhead_ms=math.nan)
        self.assertRaises(ValueError, link_cost, 1.0, 0.0, 1e6, 0, hop_overhead_ms=-0.1)


class GraphTests(SynchronousTestCase):
    def test_link_needs_both_ends(self) -> None:
        one_sided = {"a": FakeRecord("a", links=(FakeLink("b"),)), "b": FakeRecord("b")}
        graph = build_graph(one_sided)
        self.assertEqual(sorted(graph.nodes), ["a", "b"])
        self.assertEqual(graph.number_of_edges(), 0)
        both = {"a": FakeRecord("a", links=(FakeLink("b"),)), "b": FakeRecord("b", links=(FakeLink("a"),))}
        self.assertEqual(sorted(build_graph(both).edges), [("a", "b"), ("b", "a")])

    def test_links_between_zones_are_edges(self) -> None:
        recs = records([("a", "b", 5.0), ("a", "x", 5.0), ("x", "b", 5.0)],
                       zones={"a": ("z1",), "b": ("z2",), "x": ("z1", "z2")})
        graph = build_graph(recs)
        self.assertTrue(graph.has_edge("a", "b"))
        self.assertTrue(graph.has_edge("a", "x"))
        self.assertEqual(graph.nodes["x"]["zones"], ("z1", "z2"))

    def test_unknown_peers_and_self_links_are_ignored(self) -> None:
        recs = {"a": FakeRecord("a", links=(FakeLink("a"), FakeLink("ghost"), FakeLink("b"))),
                "b": FakeRecord("b", links=(FakeLink("a"),))}
        self.assertEqual(sorted(build_graph(recs).edges), [("a", "b"), ("b", "a")])

    def test_weight_is_the_worse_end_and_symmetric(self) -> None:
        recs = {
            "a": FakeRecord("a", links=(FakeLink("b", srtt_ms=10.0, loss=0.2, bandwidth_bps=1e9, flaps=0),)),
            "b": FakeRecord("b", links=(FakeLink("a", srtt_ms=30.0, loss=0.0, bandwidth_bps=1e6, flaps=3),)),
        }
        graph = build_graph(recs, size_bytes=2048, hop_overhead_ms=0.5)
        ab, ba = graph["a"]["b"], graph["b"]["a"]
        self.assertEqual(ab, ba)
        self.assertEqual((ab["srtt_ms"], ab["loss"], ab["bandwidth_bps"], ab["flaps"]), (30.0, 0.2, 1e6, 3))
        self.assertEqual(ab["weight"], link_cost(30.0, 0.2, 1e6, 3, size_bytes=2048, hop_overhead_ms=0.5))

    def test_one_unmeasured_end_defers_to_the_other(self) -> None:
        recs = {
            "a": FakeRecord("a", links=(FakeLink("b", srtt_ms=None, loss=math.nan, bandwidth_bps=0.0),)),
            "b": FakeRecord("b", links=(FakeLink("a", srtt_ms=12.0, loss=0.01, bandwidth_bps=1e7),)),
        }
        edge = build_graph(recs)["a"]["b"]
        self.assertEqual((edge["srtt_ms"], edge["loss"], edge["bandwidth_bps"]), (12.0, 0.01, 1e7))
        neither = {"a": FakeRecord("a", links=(FakeLink("b", srtt_ms=None),)),
                   "b": FakeRecord("b", links=(FakeLink("a", srtt_ms=math.nan),))}
        edge = build_graph(neither)["a"]["b"]
        self.assertIsNone(edge["srtt_ms"])
        self.assertEqual(edge["weight"], link_cost(None, 0.0, INF, 0))

    def test_transit_attribute(self) -> None:
        graph = build_graph(records([("a", "b", 1.0)], transit={"b": False}))
        self.assertEqual((graph.nodes["a"]["transit"], graph.nodes["b"]["transit"]), (True, False))

    def test_record_order_does_not_matter(self) -> None:
        recs = records(ba_links(60, seed=3))
        shuffled = list(recs.items())
        random.Random(5).shuffle(shuffled)
        one, two = build_graph(recs), build_graph(dict(shuffled))
        self.assertEqual(list(one.nodes(data=True)), list(two.nodes(data=True)))
        self.assertEqual(list(one.edges(data=True)), list(two.edges(data=True)))


def ba_links(n: int, seed: int) -> list[tuple[str, str, float]]:
    rnd = random.Random(seed)
    ba = nx.barabasi_albert_graph(n, 2, seed=seed)
    return [(f"r{u:03d}", f"r{v:03d}", round(rnd.uniform(1.0, 80.0), 3)) for u, v in sorted(ba.edges())]


class TopologyTests(SynchronousTestCase):
    """Routes on small networks built from records, as a router would see them."""

    def test_line_of_four(self) -> None:
        graph = build_graph(records([("a", "b", 5.0), ("b", "c", 5.0), ("c", "d", 5.0)]))
        table = RoutingTable("a")
        changes = table.rebuild(graph, {"z.chain": ["d"]})
        route = table.route("z.chain")
        assert route is not None
        self.assertEqual((route.destination, route.next_hop, route.path), ("d", "b", ("a", "b", "c", "d")))
        self.assertAlmostEqual(route.cost, path_weight(graph, route.path))
        self.assertEqual([(c.chain, c.kind) for c in changes], [("z.chain", "added")])
        self.assertEqual([table.next_hop(r) for r in "abcd"], ["a", "b", "b", "b"])
        self.assertIsNone(table.next_hop("nowhere"))
        self.assertIsNone(table.route("z.other"))

    def test_star(self) -> None:
        graph = build_graph(records([("hub", leaf, 3.0) for leaf in ("l1", "l2", "l3", "l4")]))
        table = RoutingTable("l1")
        table.rebuild(graph, {"z.c3": ["l3"], "z.c4": ["l4"]})
        for chain, leaf in (("z.c3", "l3"), ("z.c4", "l4")):
            route = table.route(chain)
            assert route is not None
            self.assertEqual(route.path, ("l1", "hub", leaf))
        self.assertEqual(table.reachable(), 5)

    def test_two_zones_one_border(self) -> None:
        recs = records(
            [("a1", "a2", 5.0), ("a2", "x", 5.0), ("x", "b1", 5.0), ("b1", "b2", 5.0), ("a1", "b2", 1.0)],
            zones={"a1": ("za",), "a2": ("za",), "x": ("za", "zb"), "b1": ("zb",), "b2": ("zb",)},
        )
        table = RoutingTable("a1")
        table.rebuild(build_graph(recs), {"zb.chain": ["b2"], "zb.other": ["b1"]})
        route = table.route("zb.chain")
        assert route is not None
        # Two routers of different zones linked directly talk directly...
        self.assertEqual(route.path, ("a1", "b2"))
        # ...but b2 (zone zb only) does not relay for a1 (zone za): traffic to b1 crosses the border router x.
        route = table.route("zb.other")
        assert route is not None
        self.assertEqual(route.path, ("a1", "a2", "x", "b1"))
        self.assertEqual(table.path_to("b1", avoid={"a2"}), None)
        from_b2 = RoutingTable("b2")
        from_b2.rebuild(build_graph(recs), {"za.chain": ["a2"]})
        route = from_b2.route("za.chain")
        assert route is not None
        self.assertEqual(route.path, ("b2", "b1", "x", "a2"))

    def two_border_network(self, cheap_border_up: bool = True) -> dict[str, RecordLike]:
        links = [("a1", "x", 5.0), ("x", "b1", 5.0), ("a1", "y", 20.0), ("y", "b1", 20.0)]
        if not cheap_border_up:
            links = links[2:]
        return records(links, zones={"a1": ("za",), "b1": ("zb",), "x": ("za", "zb"), "y": ("za", "zb")})

    def test_two_borders_cheaper_one_and_failover(self) -> None:
        table = RoutingTable("a1", hysteresis=0.2)
        table.rebuild(build_graph(self.two_border_network()), {"zb.chain": ["b1"]})
        route = table.route("zb.chain")
        assert route is not None
        self.assertEqual(route.path, ("a1", "x", "b1"))
        # x's links die: the route is broken, so it moves at once even though the new one is 4x dearer.
        changes = table.rebuild(build_graph(self.two_border_network(cheap_border_up=False)), {"zb.chain": ["b1"]})
        route = table.route("zb.chain")
        assert route is not None
        self.assertEqual(route.path, ("a1", "y", "b1"))
        [change] = changes.changes
        self.assertEqual(change.kind, "moved")
        assert change.old is not None and change.new is not None
        self.assertEqual((change.old.next_hop, change.new.next_hop), ("x", "y"))
        self.assertEqual(table.next_hop("b1"), "y")

    def test_one_sided_link_drop_breaks_the_path(self) -> None:
        """A link only one end still reports is gone: the route moves although nothing else changed."""
        recs = dict(self.two_border_network())
        table = RoutingTable("a1")
        table.rebuild(build_graph(recs), {"zb.chain": ["b1"]})
        x = recs["x"]
        assert isinstance(x, FakeRecord)
        recs["x"] = FakeRecord("x", x.zones, x.transit, tuple(link for link in x.links if link.peer != "b1"))
        table.rebuild(build_graph(recs), {"zb.chain": ["b1"]})
        self.assertEqual(table.next_hop("b1"), "y")

    def test_non_transit_router_never_relays(self) -> None:
        recs = records([("a", "n", 1.0), ("n", "b", 1.0), ("a", "c", 10.0), ("c", "b", 10.0)],
                       transit={"n": False})
        table = RoutingTable("a")
        table.rebuild(build_graph(recs), {"z.chain": ["b"], "z.at-n": ["n"]})
        via = table.route("z.chain")
        assert via is not None
        self.assertEqual(via.path, ("a", "c", "b"))
        # n is still reachable as a destination.
        self.assertEqual(table.next_hop("n"), "n")
        # Without the detour, b is unreachable rather than reached through n.
        only_n = records([("a", "n", 1.0), ("n", "b", 1.0)], transit={"n": False})
        table.rebuild(build_graph(only_n), {"z.chain": ["b"]})
        self.assertIsNone(table.route("z.chain"))
        self.assertIsNone(table.next_hop("b"))

    def test_local_router_may_send_even_when_not_transit(self) -> None:
        recs = records([("n", "a", 1.0), ("a", "b", 1.0)], transit={"n": False})
        table = RoutingTable("n")
        table.rebuild(build_graph(recs), {"z.chain": ["b"]})
        route = table.route("z.chain")
        assert route is not None
        self.assertEqual(route.path, ("n", "a", "b"))

    def test_locally_served_chain(self) -> None:
        table = RoutingTable("a")
        table.rebuild(build_graph(records([("a", "b", 1.0)])), {"z.chain": ["a", "b"]})
        self.assertEqual(table.route("z.chain"), Route("z.chain", "a", "a", ("a",), 0.0))


class ChoiceTests(SynchronousTestCase):
    """Choices that depend on exact costs, on graphs with given weights."""

    def test_hysteresis_between_paths(self) -> None:
        """Two ways from s to d; the other way gets 10 % cheaper (stay), then 30 % cheaper (move)."""
        table = RoutingTable("s", hysteresis=0.2)
        table.rebuild(weighted([("s", "p", 10.0), ("p", "d", 10.0), ("s", "q", 12.0), ("q", "d", 12.0)]),
                      {"z.chain": ["d"]})
        self.assertEqual(table.next_hop("d"), "p")
        changes = table.rebuild(weighted([("s", "p", 10.0), ("p", "d", 10.0), ("s", "q", 9.0), ("q", "d", 9.0)]),
                                {"z.chain": ["d"]})
        self.assertEqual(table.next_hop("d"), "p")
        self.assertFalse(changes)
        self.assertEqual(changes.next_hops_changed, 0)
        kept = table.route("z.chain")
        assert kept is not None
        self.assertEqual((kept.path, kept.cost), (("s", "p", "d"), 20.0))  # cost re-measured on the kept path
        changes = table.rebuild(weighted([("s", "p", 10.0), ("p", "d", 10.0), ("s", "q", 7.0), ("q", "d", 7.0)]),
                                {"z.chain": ["d"]})
        self.assertEqual(table.next_hop("d"), "q")
        self.assertEqual(changes.chains, ("z.chain",))
        self.assertEqual(changes.next_hops_changed, 1)

    def test_hysteresis_follows_the_current_path_getting_worse(self) -> None:
        table = RoutingTable("s", hysteresis=0.2)
        table.rebuild(weighted([("s", "p", 10.0), ("p", "d", 10.0), ("s", "q", 12.0), ("q", "d", 12.0)]), {})
        # The current path degrades until the other one is > 20 % cheaper than it.
        table.rebuild(weighted([("s", "p", 14.0), ("p", "d", 14.0), ("s", "q", 12.0), ("q", "d", 12.0)]), {})
        self.assertEqual(table.next_hop("d"), "p")
        table.rebuild(weighted([("s", "p", 16.0), ("p", "d", 16.0), ("s", "q", 12.0), ("q", "d", 12.0)]), {})
        self.assertEqual(table.next_hop("d"), "q")

    def test_relay_that_stops_relaying_breaks_the_path(self) -> None:
        edges = [("s", "p", 10.0), ("p", "d", 10.0), ("s", "q", 12.0), ("q", "d", 12.0)]
        table = RoutingTable("s", hysteresis=0.5)
        table.rebuild(weighted(edges), {"z.chain": ["d"]})
        self.assertEqual(table.next_hop("d"), "p")
        changes = table.rebuild(weighted(edges, non_transit=["p"]), {"z.chain": ["d"]})
        self.assertEqual(table.next_hop("d"), "q")
        self.assertEqual(changes.chains, ("z.chain",))

    def test_hysteresis_between_replicas(self) -> None:
        table = RoutingTable("s", hysteresis=0.2)
        chains = {"z.chain": ["r1", "r2"]}
        table.rebuild(weighted([("s", "r1", 10.0), ("s", "r2", 12.0)]), chains)
        self.assertEqual(self.destination(table), "r1")
        table.rebuild(weighted([("s", "r1", 10.0), ("s", "r2", 9.0)]), chains)
        self.assertEqual(self.destination(table), "r1")
        table.rebuild(weighted([("s", "r1", 10.0), ("s", "r2", 7.0)]), chains)
        self.assertEqual(self.destination(table), "r2")

    def test_zero_hysteresis_moves_on_any_improvement_but_not_on_ties(self) -> None:
        table = RoutingTable("s", hysteresis=0.0)
        chains = {"z.chain": ["r1", "r2"]}
        table.rebuild(weighted([("s", "r1", 10.0), ("s", "r2", 12.0)]), chains)
        table.rebuild(weighted([("s", "r1", 10.0), ("s", "r2", 9.99)]), chains)
        self.assertEqual(self.destination(table), "r2")
        table.rebuild(weighted([("s", "r1", 10.0), ("s", "r2", 10.0)]), chains)
        self.assertEqual(self.destination(table), "r2")

    def test_replica_chosen_by_cost(self) -> None:
        graph = weighted([("s", "a", 5.0), ("a", "r1", 5.0), ("s", "r2", 12.0), ("s", "r3", 30.0)])
        table = RoutingTable("s")
        table.rebuild(graph, {"z.chain": ["r3", "r2", "r1", "absent"]})
        self.assertEqual(self.destination(table), "r1")
        self.assertEqual(table.replicas("z.chain"), ("absent", "r1", "r2", "r3"))

    def test_equal_costs_broken_by_router_id(self) -> None:
        """Same routes whatever order the graph was built in: replicas and paths tie-break on the smaller id."""
        edges = [("s", "m2", 5.0), ("m2", "d", 5.0), ("s", "m1", 5.0), ("m1", "d", 5.0),
                 ("s", "rb", 7.0), ("s", "ra", 7.0)]
        chains = {"z.chain": ["rb", "ra"]}
        snapshots = []
        for order in (edges, list(reversed(edges)), sorted(edges)):
            table = RoutingTable("s")
            table.rebuild(weighted(order), chains)
            self.assertEqual(table.next_hop("d"), "m1")
            self.assertEqual(self.destination(table), "ra")
            snapshots.append(table.snapshot())
        self.assertEqual(snapshots[0], snapshots[1])
        self.assertEqual(snapshots[0], snapshots[2])

    def test_alternatives_avoid_routers(self) -> None:
        graph = weighted([("s", "a", 1.0), ("a", "r1", 1.0), ("s", "b", 2.0), ("b", "r1", 2.0),
                          ("b", "r2", 10.0), ("s", "c", 20.0), ("c", "r2", 20.0)])
        table = RoutingTable("s")
        table.rebuild(graph, {"z.chain": ["r1", "r2"]})
        best = table.alternatives("z.chain", set())
        self.assertEqual([(r.destination, r.path) for r in best],
                         [("r1", ("s", "a", "r1")), ("r2", ("s", "b", "r2"))])
        self.assertEqual({r.chain for r in best}, {"z.chain"})
        self.assertEqual([r.path for r in table.alternatives("z.chain", {"a"})],
                         [("s", "b", "r1"), ("s", "b", "r2")])
        self.assertEqual([r.path for r in table.alternatives("z.chain", {"a", "b"})], [("s", "c", "r2")])
        # A replica on the avoid list is not a destination either; the local router is never avoided.
        self.assertEqual([r.path for r in table.alternatives("z.chain", {"s", "r1"})], [("s", "b", "r2")])
        self.assertEqual(table.alternatives("z.chain", {"a", "b", "c"}), [])
        self.assertEqual(table.alternatives("z.unknown", set()), [])

    def test_path_to_avoids_routers_and_caches(self) -> None:
        graph = weighted([("s", "a", 1.0), ("a", "d", 1.0), ("s", "b", 2.0), ("b", "d", 2.0)])
        table = RoutingTable("s")
        table.rebuild(graph, {})
        current = table.path_to("d", set())
        assert current is not None
        self.assertEqual(current.path, ("s", "a", "d"))
        detour = table.path_to("d", {"a"})
        assert detour is not None
        self.assertEqual((detour.next_hop, detour.path, detour.cost), ("b", ("s", "b", "d"), 4.0))
        self.assertIs(table.path_to("d", ["a"]), detour)
        self.assertIsNone(table.path_to("d", {"a", "b"}))
        self.assertIsNone(table.path_to("d", {"d"}))
        self.assertIsNone(table.path_to("elsewhere", set()))
        # The cache lives until the next rebuild.
        table.rebuild(weighted([("s", "a", 1.0), ("a", "d", 1.0), ("s", "b", 3.0), ("b", "d", 3.0)]), {})
        moved = table.path_to("d", {"a"})
        assert moved is not None
        self.assertEqual(moved.cost, 6.0)

    def test_path_to_cache_is_bounded(self) -> None:
        graph = weighted([("s", "a", 1.0), ("a", "d", 1.0), ("s", "b", 2.0), ("b", "d", 2.0)])
        table = RoutingTable("s")
        table.rebuild(graph, {})
        for i in range(CACHE_LIMIT + 10):
            table.path_to("d", {"a", f"elsewhere-{i}"})
        self.assertLessEqual(len(table._cache), CACHE_LIMIT)

    def test_relay_never_sends_back_along_the_path(self) -> None:
        """A relay asked by 'a' must not send back to 'a' even when its best route to the replica goes there."""
        graph = weighted([("m", "a", 1.0), ("a", "r", 1.0), ("m", "c", 5.0), ("c", "r", 5.0)])
        table = RoutingTable("m")
        table.rebuild(graph, {"z.chain": ["r"]})
        self.assertEqual(table.next_hop("r"), "a")
        [route] = table.alternatives("z.chain", ["a", "m"])
        self.assertEqual(route.path, ("m", "c", "r"))

    def test_lost_chain_is_reported(self) -> None:
        table = RoutingTable("s")
        table.rebuild(weighted([("s", "r", 1.0)]), {"z.chain": ["r"], "z.gone": ["r"]})
        changes = table.rebuild(weighted([("s", "q", 1.0)]), {"z.chain": ["r"]})
        self.assertEqual([(c.chain, c.kind) for c in changes], [("z.chain", "lost"), ("z.gone", "lost")])
        self.assertEqual(len(changes), 2)

    def test_snapshot(self) -> None:
        table = RoutingTable("s")
        table.rebuild(weighted([("s", "a", 1.5), ("a", "r", 2.0)]), {"z.chain": ["r"], "z.nowhere": ["ghost"]})
        rows = table.snapshot()
        self.assertEqual(rows[0], {"kind": "chain", "chain": "z.chain", "replicas": ["r"], "reachable": True,
                                   "destination": "r", "next_hop": "a", "path": ["s", "a", "r"], "hops": 2,
                                   "cost": 3.5})
        self.assertEqual(rows[1], {"kind": "chain", "chain": "z.nowhere", "replicas": ["ghost"],
                                   "reachable": False})
        self.assertEqual([(row["kind"], row["destination"], row["next_hop"]) for row in rows[2:]],
                         [("router", "a", "a"), ("router", "r", "a"), ("router", "s", "s")])

    def test_bad_arguments(self) -> None:
        self.assertRaises(ValueError, RoutingTable, "s", hysteresis=1.0)
        self.assertRaises(ValueError, RoutingTable, "s", hysteresis=-0.1)
        self.assertRaises(ValueError, RoutingTable("s").rebuild, weighted([("s", "a", -1.0)]), {})
        self.assertRaises(ValueError, RoutingTable("s").rebuild, weighted([("s", "a", math.nan)]), {})
        self.assertRaises(TypeError, RoutingTable("s").rebuild, weighted([("s", "a", 1.0)]), {"z.chain": "a"})

    def test_local_router_missing_from_graph(self) -> None:
        table = RoutingTable("s")
        table.rebuild(weighted([("a", "b", 1.0)]), {"z.chain": ["a"]})
        self.assertIsNone(table.route("z.chain"))
        self.assertEqual(table.reachable(), 1)

    @staticmethod
    def destination(table: RoutingTable) -> str | None:
        route = table.route("z.chain")
        return route.destination if route is not None else None


class StretchTests(SynchronousTestCase):
    def test_paths_are_networkx_shortest_paths(self) -> None:
        """On a random scale-free network of 300 routers every route costs what networkx's Dijkstra says."""
        recs = records(ba_links(300, seed=11))
        graph = build_graph(recs)
        rnd = random.Random(2)
        routers = sorted(graph.nodes)
        chains = {f"z.c{i}": rnd.sample(routers, rnd.randint(1, 3)) for i in range(30)}
        for local in ("r000", "r150", "r299"):
            table = RoutingTable(local)
            table.rebuild(graph, chains)
            expected = nx.single_source_dijkstra_path_length(graph, local, weight="weight")
            self.assertEqual(table.reachable(), len(expected))
            for row in table.snapshot():
                if row["kind"] != "router":
                    continue
                route = table.path_to(row["destination"], ())
                assert route is not None
                self.assertAlmostEqual(route.cost, expected[route.destination], places=6)
                self.assertAlmostEqual(path_weight(graph, route.path), route.cost, places=6)
                self.assertEqual(table.next_hop(route.destination), route.path[1] if len(route.path) > 1 else local)
            for chain, serving in chains.items():
                route = table.route(chain)
                assert route is not None
                self.assertAlmostEqual(route.cost, min(expected[r] for r in serving), places=6)
                self.assertIn(route.destination, serving)
