"""Simulation plots: every PNG is written for a full result, an empty one and a large topology without geometry."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from wecross.sim.model import LinkSpec, SimRouter, SimTopology
from wecross.sim.plots import layout, write_plots

PNG = b"\x89PNG\r\n\x1a\n"
NAMES = ["convergence.png", "latency.png", "messages.png", "topology.png"]


def small_topology(with_pos: bool = False) -> SimTopology:
    """Two zones of three routers joined by two borders; a chain in each zone."""
    ids = ["a1", "a2", "a3", "b1", "b2", "b3", "x1", "x2"]
    zones: dict[str, tuple[str, ...]] = {
        **{r: ("za",) for r in ids[:3]},
        **{r: ("zb",) for r in ids[3:6]},
        "x1": ("za", "zb"),
        "x2": ("zb", "za"),
    }
    chains = {"a3": ("hello",), "b3": ("hello", "asset")}
    routers = {
        rid: SimRouter(rid, zones[rid], chains.get(rid, ()), pos=(float(i), float(i % 3)) if with_pos else None)
        for i, rid in enumerate(ids)
    }
    pairs = [("a1", "a2"), ("a2", "a3"), ("a1", "x1"), ("a3", "x2"), ("x1", "b1"), ("x2", "b3"), ("b1", "b2"),
             ("b2", "b3"), ("x1", "x2")]
    links = tuple(LinkSpec(a, b, latency_ms=5.0, up=(a, b) != ("x1", "x2")) for a, b in pairs)
    return SimTopology("two-zones", routers, links, source="test")


def full_result(topology: SimTopology) -> dict[str, Any]:
    t = [i * 0.5 for i in range(41)]
    share = [min(1.0, (i % 20) / 10) for i in range(41)]
    return {
        "version": 1,
        "seed": 7,
        "topology": {"name": topology.name, "source": "test", "routers": len(topology.routers),
                     "links": len(topology.links), "zones": topology.zones(), "chains": topology.chain_paths()},
        "scenario": {"name": "s", "duration_s": 20.0,
                     "events": [{"at_s": 0.0, "label": "start"}, {"at_s": 10.0, "label": "link x1-b1 down"}]},
        "settings": {"gossip_interval_s": 1.0, "heartbeat_s": 1.0, "dead_after": 3},
        "convergence": [
            {"label": "start", "at_s": 0.0, "converged_at_s": 5.0, "time_s": 5.0, "rounds": 5.0},
            {"label": "link x1-b1 down", "at_s": 10.0, "converged_at_s": None, "time_s": None, "rounds": None},
        ],
        "timeline": {"t_s": t, "current_share": share, "converged_routers": [int(8 * s) for s in share],
                     "messages": [10 * i for i in range(41)]},
        "routes": {"pairs": 16, "sampled_routers": 8, "agreement": 1.0, "stretch_mean": 1.1, "stretch_max": 1.5,
                   "unreachable": 0,
                   "chosen": [
                       {"from": "a1", "chain": "zb.hello", "path": ["a1", "x1", "b1", "b2", "b3"], "cost": 20.0,
                        "optimal_cost": 15.0},
                       {"from": "b1", "chain": "za.hello", "path": ["b1", "x1", "a1", "a2", "a3"], "cost": 20.0,
                        "optimal_cost": 20.0},
                       {"from": "a2", "chain": "zb.asset", "path": ["a2", "gone", "b3"], "cost": 1.0,
                        "optimal_cost": 1.0},
                   ]},
        "failover": [{"label": "link x1-b1 down", "at_s": 10.0, "first_success_s": 11.0, "time_s": 1.0}],
        "requests": {"sent": 200, "served": 198, "failed": 2, "duplicated": 0, "failed_by_code": {"timeout": 2},
                     "latency_ms": {"p50": 12.0, "p90": 40.0, "p99": None, "max": 900.0},
                     "latency_samples_ms": [1.0 + (i * 37 % 200) * (4.5 if i % 10 == 0 else 0.2)
                                            for i in range(198)]},
        "load": {"messages_per_router_per_s": {"mean": 3.0, "p50": 3.0, "max": 6.0},
                 "bytes_per_router_per_s": {"mean": 900.0, "p50": 800.0, "max": 3000.0},
                 "messages_per_router_per_round": 3.0,
                 "per_router": {rid: {"messages": 40 + 7 * i, "bytes": 12000 + 3000 * i}
                                for i, rid in enumerate(sorted(topology.routers))}},
        "run": {"virtual_s": 20.0, "wall_s": 1.5, "peak_memory_mb": 80.0, "calls_run": 1234},
    }


def empty_result() -> dict[str, Any]:
    return {
        "version": 1, "seed": 1,
        "scenario": {"name": "idle", "duration_s": 0.0, "events": []},
        "convergence": [],
        "timeline": {"t_s": [], "current_share": [], "converged_routers": [], "messages": []},
        "routes": {"pairs": 0, "sampled_routers": 0, "agreement": None, "stretch_mean": None, "stretch_max": None,
                   "unreachable": 0, "chosen": []},
        "failover": [],
        "requests": {"sent": 0, "served": 0, "failed": 0, "duplicated": 0, "failed_by_code": {},
                     "latency_ms": {"p50": None, "p90": None, "p99": None, "max": None}, "latency_samples_ms": []},
        "load": {"per_router": {}},
        "run": {"virtual_s": 0.0, "wall_s": 0.0, "peak_memory_mb": 0.0, "calls_run": 0},
    }


def ring_topology(n: int, zones: int) -> SimTopology:
    """A ring with chords every 50 routers, cut into ``zones`` arcs; the router at each arc's start is a border."""
    ids = [f"r{i}" for i in range(n)]
    per = n // zones
    routers: dict[str, SimRouter] = {}
    for i, rid in enumerate(ids):
        z = min(i // per, zones - 1)
        zs = (f"z{z}", f"z{(z - 1) % zones}") if i % per == 0 and zones > 1 else (f"z{z}",)
        routers[rid] = SimRouter(rid, zs, ("hello",) if i % per == per // 2 else ())
    links = [LinkSpec(ids[i], ids[(i + 1) % n]) for i in range(n)]
    links += [LinkSpec(ids[i], ids[(i + n // 3) % n]) for i in range(0, n, 50)]
    return SimTopology(f"ring-{n}", routers, tuple(links), source="test")


class WritePlotsTests(SynchronousTestCase):
    def check_pngs(self, paths: list[Path], out: Path, min_size: int) -> None:
        self.assertEqual([p.name for p in paths], NAMES)
        for path in paths:
            self.assertEqual(path.parent, out)
            data = path.read_bytes()
            self.assertTrue(data.startswith(PNG), path.name)
            self.assertGreater(len(data), min_size, path.name)

    def test_full_result_writes_four_pngs(self) -> None:
        topology = small_topology()
        out = Path(self.mktemp()) / "plots"  # nested: write_plots creates the directories
        paths = write_plots(full_result(topology), topology, out)
        self.check_pngs(paths, out, 8_000)

    def test_positions_from_the_topology_are_used(self) -> None:
        topology = small_topology(with_pos=True)
        self.assertEqual(layout(topology)["a2"], (1.0, 1.0))
        out = Path(self.mktemp())
        self.check_pngs(write_plots(full_result(topology), topology, out, max_labels=0), out, 8_000)

    def test_empty_result_still_writes_placeholders(self) -> None:
        topology = small_topology()
        out = Path(self.mktemp())
        self.check_pngs(write_plots(empty_result(), topology, out), out, 2_000)

    def test_missing_sections_are_not_an_error(self) -> None:
        topology = SimTopology("nothing", {}, ())
        out = Path(self.mktemp())
        self.check_pngs(write_plots({}, topology, out), out, 2_000)

    def test_large_topology_without_positions_is_fast(self) -> None:
        topology = ring_topology(2000, 8)
        result = empty_result()
        result["routes"]["chosen"] = [{"from": "r10", "chain": "z1.hello", "path": ["r10", "r9", "r0"],
                                       "cost": 2.0, "optimal_cost": 2.0}]
        out = Path(self.mktemp())
        started = time.perf_counter()
        paths = write_plots(result, topology, out)
        elapsed = time.perf_counter() - started
        self.check_pngs(paths, out, 2_000)
        self.assertGreater((out / "topology.png").stat().st_size, 20_000)
        self.assertLess(elapsed, 10.0)

    def test_large_single_zone_layout_covers_every_router(self) -> None:
        topology = ring_topology(1000, 1)
        pos = layout(topology)
        self.assertEqual(set(pos), set(topology.routers))
        self.assertGreater(len(set(pos.values())), 990)  # the radial layout does not stack routers on each other
