"""Simulator topologies: the files load with their link properties or fail naming the key; the generators make
connected, deterministic networks of the asked size and zones."""

from __future__ import annotations

import json
import time
from pathlib import Path

import networkx as nx
from twisted.trial.unittest import SynchronousTestCase

from wecross.config import ConfigError
from wecross.sim import topologies
from wecross.sim.model import ROUTER_ID, LinkSpec, SimRouter, SimTopology
from wecross.topology import load_topology

SAMPLES = Path(__file__).resolve().parent.parent / "conf" / "topologies"


class Checks(SynchronousTestCase):
    def assertWellFormed(self, topology: SimTopology, count: int) -> None:
        """Connected, ``count`` valid ids, links from the lower id, none twice."""
        self.assertEqual(len(topology.routers), count)
        for rid, router in topology.routers.items():
            self.assertTrue(ROUTER_ID.match(rid), rid)
            self.assertEqual(router.router_id, rid)
        keys = [link.key for link in topology.links]
        self.assertEqual(len(keys), len(set(keys)))
        for link in topology.links:
            self.assertLess(link.a, link.b)
            self.assertIn(link.a, topology.routers)
            self.assertIn(link.b, topology.routers)
        self.assertTrue(nx.is_connected(topology.graph()))


class SingleZoneGeneratorTests(Checks):
    def test_shapes(self) -> None:
        for topology, count, links in [
            (topologies.line(7), 7, 6),
            (topologies.ring(7), 7, 7),
            (topologies.star(7), 7, 6),
            (topologies.tree(13, branching=3), 13, 12),
            (topologies.grid(3, 4), 12, 3 * 3 + 2 * 4),
            (topologies.barabasi_albert(50, m=2, seed=1), 50, 2 * 48),
            (topologies.random_geometric(60, seed=1), 60, None),
        ]:
            self.assertWellFormed(topology, count)
            if links is not None:
                self.assertEqual(len(topology.links), links, topology.name)
            self.assertEqual(topology.zones(), {"z0": count})
            self.assertEqual(topology.borders(), [])

    def test_ids_and_names(self) -> None:
        self.assertEqual(list(topologies.line(3).routers), ["r0000", "r0001", "r0002"])
        wide = topologies.star(10001, chains=0)
        self.assertEqual(sorted(wide.routers)[-1], "r10000")
        self.assertTrue(all(len(rid) == 6 for rid in wide.routers))
        self.assertEqual(topologies.barabasi_albert(30).name, "ba-30")

    def test_star_hub_is_r0000(self) -> None:
        degrees = dict(topologies.star(9).graph().degree())
        self.assertEqual(degrees["r0000"], 8)

    def test_tiny_networks(self) -> None:
        for topology in (topologies.line(1), topologies.ring(2), topologies.barabasi_albert(2, m=2),
                         topologies.tree(1), topologies.random_geometric(1), topologies.grid(1, 1)):
            self.assertGreaterEqual(len(topology.routers), 1)
            self.assertTrue(nx.is_connected(topology.graph()))

    def test_grid_and_geometric_positions(self) -> None:
        grid = topologies.grid(2, 3)
        self.assertEqual(grid.routers["r0005"].pos, (2.0, 1.0))
        geometric = topologies.random_geometric(40, seed=3)
        for router in geometric.routers.values():
            assert router.pos is not None
            self.assertTrue(0 <= router.pos[0] <= 1 and 0 <= router.pos[1] <= 1)

    def test_geometric_too_small_radius_is_still_connected(self) -> None:
        topology = topologies.random_geometric(150, radius=0.02, seed=5)
        self.assertWellFormed(topology, 150)

    def test_seeded(self) -> None:
        for make in (lambda s: topologies.barabasi_albert(80, seed=s),
                     lambda s: topologies.random_geometric(80, seed=s)):
            self.assertEqual(make(4), make(4))
            self.assertNotEqual(make(4).links, make(5).links)

    def test_link_options_and_spread(self) -> None:
        topology = topologies.ring(50, latency_ms=10.0, distribution="normal", jitter_ms=2.0, loss=0.01,
                                   bandwidth_mbps=5.0, latency_spread=0.5, seed=2)
        latencies = {link.latency_ms for link in topology.links}
        self.assertGreater(len(latencies), 40)
        self.assertTrue(all(5.0 <= lat <= 15.0 for lat in latencies))
        link = topology.links[0]
        self.assertEqual((link.distribution, link.jitter_ms, link.loss, link.bandwidth_mbps, link.up),
                         ("normal", 2.0, 0.01, 5.0, True))
        self.assertEqual(topology, topologies.ring(50, latency_ms=10.0, distribution="normal", jitter_ms=2.0,
                                                   loss=0.01, bandwidth_mbps=5.0, latency_spread=0.5, seed=2))
        self.assertEqual({lk.latency_ms for lk in topologies.ring(5, latency_ms=3.0).links}, {3.0})

    def test_chains_far_from_r0000(self) -> None:
        self.assertEqual(topologies.line(10, chains=2).chain_paths(), {"z0.ledger0": "r0009", "z0.ledger1": "r0008"})
        self.assertEqual(topologies.ring(10).chain_paths(), {"z0.ledger0": "r0005"})
        star = topologies.star(6, chains=3).chain_paths()
        self.assertNotIn("r0000", star.values())
        self.assertEqual(topologies.line(5, chains=0).chain_paths(), {})

    def test_bad_parameters(self) -> None:
        for call in (lambda: topologies.line(0), lambda: topologies.tree(5, branching=0),
                     lambda: topologies.ring(5, loss=1.0), lambda: topologies.ring(5, distribution="pareto"),
                     lambda: topologies.ring(5, latency_spread=2.0), lambda: topologies.ring(5, chains=-1),
                     lambda: topologies.random_geometric(5, radius=0),
                     lambda: topologies.line(5, colour="red")):  # type: ignore[call-arg]
            self.assertRaises(ValueError, call)


class MultiZoneTests(Checks):
    def test_borders_join_consecutive_zones(self) -> None:
        topology = topologies.multi_zone([5, 6, 7], borders=2, seed=1, chains=3)
        self.assertWellFormed(topology, 5 + 6 + 7 + 2 * 2)
        self.assertEqual(topology.zones(), {"z0": 5 + 2, "z1": 6 + 4, "z2": 7 + 2})
        borders = topology.borders()
        self.assertEqual(borders, ["r0018", "r0019", "r0020", "r0021"])  # numbered after the zones' own routers
        graph = topology.graph()
        for rid in borders:
            zones = topology.routers[rid].zones
            self.assertIn(zones, [("z0", "z1"), ("z1", "z2")])
            sides = [topology.routers[n].zones[0] for n in graph[rid]]
            self.assertEqual(sorted(sides), sorted(list(zones) * 2))  # two neighbours on each side
        # Each zone is connected on its own, and only the borders join zones.
        for zone in ("z0", "z1", "z2"):
            own = [rid for rid, r in topology.routers.items() if r.zones == (zone,)]
            self.assertTrue(nx.is_connected(graph.subgraph(own)))
        for link in topology.links:
            za, zb = topology.routers[link.a].zones, topology.routers[link.b].zones
            self.assertTrue(za == zb or len(za) == 2 or len(zb) == 2)
        without = graph.copy()
        without.remove_nodes_from(borders)
        self.assertEqual(nx.number_connected_components(without), 3)

    def test_chains_one_per_zone_first(self) -> None:
        topology = topologies.multi_zone([4, 4], borders=1, chains=3)
        self.assertEqual(topology.chain_paths(), {"z0.ledger0": "r0003", "z1.ledger1": "r0007", "z0.ledger2": "r0002"})

    def test_inner_shapes_and_tiny_zones(self) -> None:
        for inner in topologies.INNER_KINDS:
            topology = topologies.multi_zone([1, 2, 9], borders=2, inner=inner, seed=3)
            self.assertWellFormed(topology, 12 + 4)
        self.assertRaises(ValueError, topologies.multi_zone, [3, 3], inner="grid")
        self.assertRaises(ValueError, topologies.multi_zone, [3, 3], borders=0)
        self.assertRaises(ValueError, topologies.multi_zone, [])

    def test_seeded(self) -> None:
        self.assertEqual(topologies.multi_zone([20, 20], seed=1), topologies.multi_zone([20, 20], seed=1))
        self.assertNotEqual(topologies.multi_zone([20, 20], seed=1).links,
                            topologies.multi_zone([20, 20], seed=2).links)


class GenerateTests(Checks):
    def test_every_kind(self) -> None:
        for kind in topologies.KINDS:
            topology = topologies.generate(kind, 30, zones=2 if kind == "multizone" else 1, seed=1)
            count = len(topology.routers)
            self.assertWellFormed(topology, count)
            self.assertTrue(25 <= count <= 36, (kind, count))
            self.assertTrue(topology.source.startswith(f"generate('{kind}', 30"))

    def test_zones_split_n(self) -> None:
        for kind in ("ba", "line", "ring", "tree", "star", "grid", "geometric"):
            topology = topologies.generate(kind, 40, zones=3, seed=2)
            self.assertWellFormed(topology, 40)
            self.assertEqual(sorted(topology.zones()), ["z0", "z1", "z2"])
            self.assertEqual(len(topology.borders()), 4)

    def test_ba_thousand_in_four_zones_is_quick(self) -> None:
        start = time.perf_counter()
        topology = topologies.generate("ba", 1000, zones=4, seed=7)
        self.assertLess(time.perf_counter() - start, 1.0)
        self.assertWellFormed(topology, 1000)
        self.assertEqual(len(topology.zones()), 4)
        self.assertIn("z0.ledger0", topology.chain_paths())

    def test_options_pass_through(self) -> None:
        topology = topologies.generate("tree", 20, branching=2, latency_ms=7.0, chains=2, radius=None)
        self.assertEqual(len(topology.links), 19)
        self.assertEqual({link.latency_ms for link in topology.links}, {7.0})
        self.assertEqual(len(topology.chain_paths()), 2)
        multi = topologies.generate("multizone", 30, zones=3, inner="line", borders=1)
        self.assertEqual(len(multi.borders()), 2)

    def test_errors(self) -> None:
        error = self.assertRaises(ValueError, topologies.generate, "mesh", 10)
        self.assertIn("line, ring, star, tree, grid, geometric, ba, multizone", str(error))
        self.assertIn("radius", str(self.assertRaises(ValueError, topologies.generate, "ba", 10, radius=0.3)))
        self.assertRaises(ValueError, topologies.generate, "ba", 0)
        self.assertRaises(ValueError, topologies.generate, "multizone", 10)
        self.assertRaises(ValueError, topologies.generate, "ba", 5, zones=4)
        self.assertRaises(ValueError, topologies.generate, "ba", 10, zones=0)


TOML = """
[defaults]
host = "10.0.0.1"          # for `wecross configs` only
p2p_base_port = 1
rest_base_port = 2
certs = "x"

[defaults.link]
latency_ms = 5
distribution = "normal"
jitter_ms = 1.5

[routers.r1]
zones = ["a"]
chains = ["bank"]

[routers.r2]
zones = ["a", "b"]
transit = false

[routers.r3]
zones = ["b"]

[[links]]
between = ["r1", "r2"]

[[links]]
between = ["r3", "r2"]
latency_ms = 40.0
loss = 0.1
bandwidth_mbps = 2
up = false
distribution = "fixed"
"""

GRAPHML = """<?xml version="1.0" encoding="UTF-8"?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
  <key id="z" for="node" attr.name="zones" attr.type="string"><default>core</default></key>
  <key id="c" for="node" attr.name="chains" attr.type="string"/>
  <key id="t" for="node" attr.name="transit" attr.type="boolean"/>
  <key id="x" for="node" attr.name="x" attr.type="double"/>
  <key id="y" for="node" attr.name="y" attr.type="double"/>
  <key id="l" for="edge" attr.name="latency_ms" attr.type="double"><default>3.0</default></key>
  <key id="s" for="edge" attr.name="loss" attr.type="double"/>
  <key id="u" for="edge" attr.name="up" attr.type="boolean"/>
  <graph edgedefault="{edges}">
    <node id="n1">
      <data key="z">core, edge</data><data key="c">one,two</data><data key="x">1</data><data key="y">2.5</data>
    </node>
    <node id="n2"><data key="t">false</data></node>
    <node id="n3"/>
    <edge source="n2" target="n1"><data key="l">9.5</data><data key="s">0.25</data></edge>
    <edge id="e7" source="n3" target="n2"><data key="u">false</data></edge>
  </graph>
</graphml>
"""


class LoadTests(SynchronousTestCase):
    def write(self, name: str, text: str) -> Path:
        path = Path(self.mktemp())
        path.mkdir()
        path = path / name
        path.write_text(text, encoding="utf-8")
        return path

    def test_toml_with_link_properties(self) -> None:
        topology = topologies.load(self.write("net.toml", TOML))
        self.assertEqual(topology.name, "net")
        self.assertTrue(topology.source.endswith("net.toml"))
        self.assertEqual(topology.routers["r2"], SimRouter("r2", ("a", "b"), (), False, None))
        self.assertEqual(topology.chain_paths(), {"a.bank": "r1"})
        self.assertEqual(topology.links, (
            LinkSpec("r1", "r2", latency_ms=5.0, distribution="normal", jitter_ms=1.5),
            LinkSpec("r3", "r2", latency_ms=40.0, distribution="fixed", jitter_ms=1.5, loss=0.1, bandwidth_mbps=2.0,
                     up=False),
        ))

    def test_json(self) -> None:
        document = {
            "name": "mine", "defaults": {"link": {"latency_ms": 2, "bandwidth_mbps": 8}},
            "routers": {"a1": {"zones": ["z"], "pos": [0, 1.5]}, "a2": {"zones": ["z"], "chains": ["c"]}},
            "links": [{"between": ["a2", "a1"], "bandwidth_mbps": None, "jitter_ms": 1,
                       "distribution": "exponential"}],
        }
        topology = topologies.load(self.write("t.json", json.dumps(document)))
        self.assertEqual(topology.name, "mine")
        self.assertEqual(topology.routers["a1"].pos, (0.0, 1.5))
        self.assertEqual(topology.links, (LinkSpec("a2", "a1", latency_ms=2.0, distribution="exponential",
                                                   jitter_ms=1.0),))

    def test_graphml(self) -> None:
        topology = topologies.load(self.write("g.graphml", GRAPHML.format(edges="undirected")))
        self.assertEqual(topology.name, "g")
        self.assertEqual(topology.routers["n1"], SimRouter("n1", ("core", "edge"), ("one", "two"), True, (1.0, 2.5)))
        self.assertEqual(topology.routers["n2"], SimRouter("n2", ("core",), (), False, None))
        links = {link.key: link for link in topology.links}
        self.assertEqual(len(links), 2)
        first = links[frozenset(("n1", "n2"))]
        self.assertEqual((first.latency_ms, first.loss, first.up), (9.5, 0.25, True))
        second = links[frozenset(("n2", "n3"))]
        self.assertEqual((second.latency_ms, second.up), (3.0, False))
        # Undirected: the router declared first dials. Directed: the source dials.
        self.assertEqual((first.a, first.b), ("n1", "n2"))
        directed = topologies.load(self.write("d.graphml", GRAPHML.format(edges="directed")))
        self.assertEqual(sorted((link.a, link.b) for link in directed.links), [("n2", "n1"), ("n3", "n2")])

    def test_existing_samples_load_as_wecross_configs_sees_them(self) -> None:
        samples = sorted(SAMPLES.glob("*.toml"))
        self.assertGreaterEqual(len(samples), 5)
        for sample in samples:
            sim = topologies.load(sample)
            deployed = load_topology(sample)
            self.assertEqual(set(sim.routers), set(deployed.routers))
            for rid, spec in deployed.routers.items():
                router = sim.routers[rid]
                self.assertEqual((router.zones, router.chains, router.transit), (spec.zones, spec.chains, spec.transit))
            self.assertEqual([(link.a, link.b) for link in sim.links], list(deployed.links))
            self.assertTrue(nx.is_connected(sim.graph()), sample.name)

    def test_sim_samples(self) -> None:
        two = topologies.load(SAMPLES / "sim-two-zones.toml")
        self.assertEqual(two.borders(), ["router-d", "router-e"])
        self.assertEqual(two.chain_paths(), {"payment.bank-a": "router-a", "evidence.court": "router-h"})
        self.assertGreater(len({link.latency_ms for link in two.links}), 2)
        self.assertIn(False, {link.up for link in two.links})
        ring = topologies.load(SAMPLES / "sim-ring-wan.graphml")
        self.assertEqual(ring.zones(), {"wan": 6})
        self.assertTrue(all(r.pos is not None for r in ring.routers.values()))

    def assertBad(self, name: str, text: str, key: str, words: str = "") -> None:
        error = self.assertRaises(ConfigError, topologies.load, self.write(name, text))
        self.assertEqual(error.key, key, str(error))
        self.assertIn(words, error.message)
        self.assertTrue(error.file.endswith(name))

    def test_bad_toml(self) -> None:
        routers = '[routers.r1]\nzones = ["a"]\n[routers.r2]\nzones = ["a"]\n'
        link = '[[links]]\nbetween = ["r1", "r2"]\n'
        self.assertBad("a.toml", "routers = {}\n", "routers")
        self.assertBad("a.toml", routers + "[extra]\n", "extra", "unknown key")
        self.assertBad("a.toml", routers + link + link.replace('"r1", "r2"', '"r2", "r1"'), "links[1].between",
                       "twice")
        self.assertBad("a.toml", routers + link + '[[links]]\nbetween = ["r1", "r1"]\n', "links[1].between",
                       "itself")
        self.assertBad("a.toml", routers + '[[links]]\nbetween = ["r1", "r9"]\n', "links[0].between", "'r9'")
        self.assertBad("a.toml", routers + link + "loss = 1.5\n", "links[0].loss", "[0, 1)")
        self.assertBad("a.toml", routers + link + 'latency_ms = "5"\n', "links[0].latency_ms", "number")
        self.assertBad("a.toml", routers + link + "latency = 5\n", "links[0].latency", "unknown key")
        self.assertBad("a.toml", routers + link + "up = 1\n", "links[0].up", "true or false")
        self.assertBad("a.toml", '[defaults.link]\ndistribution = "pareto"\n' + routers, "defaults.link.distribution",
                       "fixed, uniform")
        self.assertBad("a.toml", "[defaults]\nport = 1\n" + routers, "defaults.port", "unknown key")
        self.assertBad("a.toml", '[routers.r1]\nzones = []\n', "routers.r1.zones")
        self.assertBad("a.toml", '[routers.r1]\nchains = ["c"]\n', "routers.r1.zones")
        self.assertBad("a.toml", '[routers.R1]\nzones = ["a"]\n', "routers.R1", "lowercase")
        self.assertBad("a.toml", routers.replace('zones = ["a"]', 'zones = ["a"]\ntransit = "no"', 1),
                       "routers.r1.transit")
        self.assertBad("a.toml", routers.replace('zones = ["a"]', 'zones = ["a"]\npos = [1, 2]', 1),
                       "routers.r1.pos", "unknown key")
        self.assertBad("a.toml", routers.replace('zones = ["a"]', 'zones = ["a"]\nchains = ["c"]'),
                       "routers.r2.chains", "a.c is already served by r1")
        self.assertBad("a.toml", "[routers.r1\n", "", "not valid TOML")

    def test_bad_json_and_graphml(self) -> None:
        good = {"routers": {"a1": {"zones": ["z"]}, "a2": {"zones": ["z"]}}, "links": [{"between": ["a1", "a2"]}]}
        self.assertBad("t.json", "[1, 2]", "", "JSON object")
        self.assertBad("t.json", "{", "", "not valid JSON")
        self.assertBad("t.json", json.dumps({**good, "links": [{"between": ["a1", "a2"], "loss": True}]}),
                       "links[0].loss", "number")
        self.assertBad("t.json", json.dumps({**good, "links": [{"between": ["a1"]}]}), "links[0].between")
        self.assertBad("t.json", json.dumps({**good, "routers": {"a1": {"zones": ["z"], "pos": [1]}}, "links": []}),
                       "routers.a1.pos")
        self.assertBad("t.json", json.dumps({**good, "defaults": {"link": {"bandwidth_mbps": 0}}}),
                       "defaults.link.bandwidth_mbps")
        bad_node = GRAPHML.format(edges="undirected").replace(
            '<key id="c" for="node" attr.name="chains"', '<key id="c" for="node" attr.name="colour"')
        self.assertBad("g.graphml", bad_node, "routers.n1.colour", "unknown key")
        no_zones = GRAPHML.format(edges="undirected").replace("<default>core</default>", "")
        self.assertBad("g.graphml", no_zones, "routers.n2.zones")
        bad_loss = GRAPHML.format(edges="undirected").replace('<data key="s">0.25', '<data key="s">2')
        self.assertBad("g.graphml", bad_loss, "links[0].loss")
        self.assertBad("g.graphml", "<graphml><graph", "", "not valid GraphML")
        self.assertBad("t.yaml", "routers: {}", "", ".toml, .json or .graphml")
        missing = Path(self.mktemp()) / "none.toml"
        self.assertEqual(self.assertRaises(ConfigError, topologies.load, missing).key, "")


class DumpTests(SynchronousTestCase):
    def round_trip(self, topology: SimTopology) -> SimTopology:
        path = Path(self.mktemp() + ".json")
        topologies.dump_json(topology, path)
        json.loads(path.read_text())  # plain JSON
        loaded = topologies.load(path)
        self.assertEqual(loaded.name, topology.name)
        self.assertEqual(loaded.routers, topology.routers)
        self.assertEqual(loaded.links, topology.links)
        self.assertEqual(loaded.extra["origin"], topology.extra.get("origin", topology.source))
        self.assertEqual({k: v for k, v in loaded.extra.items() if k != "origin"},
                         {k: v for k, v in topology.extra.items() if k != "origin"})
        self.assertEqual(loaded.source, str(path))
        return loaded

    def test_generated(self) -> None:
        self.round_trip(topologies.generate("geometric", 120, seed=3, latency_spread=0.3, chains=4))
        self.round_trip(topologies.generate("ba", 200, zones=3, seed=1, loss=0.01, bandwidth_mbps=50.0))

    def test_mixed_properties_and_reload(self) -> None:
        routers = {rid: SimRouter(rid, ("z",), ("c",) if rid == "a" else (), rid != "b") for rid in "abcd"}
        links = (
            LinkSpec("a", "b", latency_ms=4.0, bandwidth_mbps=10.0),
            LinkSpec("b", "c", latency_ms=4.0, bandwidth_mbps=10.0, up=False),
            LinkSpec("c", "d", latency_ms=0.1, distribution="uniform", jitter_ms=0.05, loss=0.3),
        )
        topology = SimTopology("hand", routers, links, source="by hand", extra={"note": [1, 2]})
        loaded = self.round_trip(topology)
        again = self.round_trip(loaded)  # the first origin survives a second save
        self.assertEqual(again.extra["origin"], "by hand")
        path = Path(self.mktemp() + ".json")
        topologies.dump_json(topology, path)
        document = json.loads(path.read_text())
        self.assertEqual(document["defaults"], {"link": {"latency_ms": 4.0, "bandwidth_mbps": 10.0}})
        self.assertEqual(document["links"][2]["bandwidth_mbps"], None)
