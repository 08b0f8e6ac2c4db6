"""How long a router takes to rebuild its routes from the directory, against bare networkx Dijkstra in the same run.

A rebuild is what a router does when the gossip directory changes: ``build_graph`` over every router record, then
``RoutingTable.rebuild`` (adjacency with the transit rule, one Dijkstra with deterministic ties, a route to every
router with hysteresis, the best replica of every chain). About 10 % of the routers serve chains (one or two
replicas each). Networks:

- ``ba``: Barabási-Albert (m = 2), one zone, every router relays: the scale-free shape of overlays that grow by
  joining well-connected routers.
- ``zones``: one BA (m = 2) network of about 100 routers per zone; zones joined in a ring (plus chords) by border
  routers that belong to both zones and link into the other; a fifth of the other routers do not relay.

Link figures are random but fixed by a seed (RTT 1-150 ms, mostly no loss, 1 Mbit/s - 1 Gbit/s, a few flapping
links), each end measuring a little differently, as in life.

Figures per network, each the median over ``--rounds`` rounds (rounds interleave the networks so a burst of load on
this shared machine hits them alike):

- ``build``: ``build_graph`` of all records; ``table``: ``RoutingTable.rebuild`` on a fresh table;
  ``rebuild`` = build + table: the headline (goal < 50 ms at 1,000 routers).
- ``update``: the steady state: build the graph from re-measured records (every RTT moved by up to 10 %) and
  rebuild a table that already has routes, so hysteresis checks run on every route.
- ``failover``: ``alternatives(chain, avoid={its next hop})`` on a fresh table: one on-demand search.
- ``nx``: the baseline, ``networkx.single_source_dijkstra`` from the same router on the same graph (it returns the
  costs and paths to every router, i.e. the core of a routing table with none of our rules); the ratios
  ``table / nx`` and ``rebuild / nx`` are the figures to compare across machines.

Every case also checks that the chosen routes cost what networkx's shortest paths cost (stretch 1.0).

Run from the repository root: ``.venv/bin/python bench/routes.py`` (about a minute; ``--quick``: a few seconds).
Prints a table and writes ``bench/results/routes.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import networkx as nx  # noqa: E402

from bench._common import machine_info  # noqa: E402
from wecross.routing.graph import build_graph  # noqa: E402
from wecross.routing.table import RoutingTable  # noqa: E402

GOAL_REBUILD_MS_AT_1000 = 50.0
SIZES = (100, 1000, 5000)
ROUTERS_PER_ZONE = 100
CHAIN_SHARE = 0.10


@dataclass(frozen=True, slots=True)
class Link:
    """What ``wecross.gossip.record.LinkInfo`` carries, without its validation (records here are ours)."""

    peer: str
    srtt_ms: float
    loss: float
    bandwidth_bps: float
    flaps: int


@dataclass(frozen=True, slots=True)
class Record:
    router_id: str
    zones: tuple[str, ...]
    transit: bool
    links: tuple[Link, ...]


@dataclass
class Network:
    name: str
    routers: int
    records: dict[str, Record]
    remeasured: dict[str, Record]
    chains: dict[str, list[str]]
    local: str


def name(i: int) -> str:
    return f"r{i:05d}"


def link_pair(rnd: random.Random) -> tuple[float, float, float, int]:
    """Figures of one link as its first end measures them."""
    srtt = rnd.uniform(1.0, 150.0)
    loss = 0.0 if rnd.random() < 0.8 else rnd.uniform(0.0, 0.05)
    bandwidth = 10 ** rnd.uniform(6.0, 9.0)
    flaps = 0 if rnd.random() < 0.95 else rnd.randint(1, 4)
    return srtt, loss, bandwidth, flaps


def make_records(
    edges: list[tuple[int, int]], zones: dict[int, set[str]], transit: dict[int, bool], rnd: random.Random
) -> dict[str, Record]:
    ends: dict[int, list[Link]] = {node: [] for node in zones}
    for u, v in edges:
        srtt, loss, bandwidth, flaps = link_pair(rnd)
        ends[u].append(Link(name(v), srtt, loss, bandwidth, flaps))
        # The far end measures the same link a little differently.
        ends[v].append(Link(name(u), srtt * rnd.uniform(0.95, 1.05), loss, bandwidth, flaps))
    return {name(node): Record(name(node), tuple(sorted(zones[node])), transit[node], tuple(ends[node]))
            for node in zones}


def remeasure(records: dict[str, Record], rnd: random.Random) -> dict[str, Record]:
    """The same network a few heartbeats later: every RTT moved by up to 10 %."""
    return {rid: replace(record, links=tuple(replace(link, srtt_ms=link.srtt_ms * rnd.uniform(0.9, 1.1))
                                             for link in record.links))
            for rid, record in records.items()}


def serving(routers: list[str], rnd: random.Random) -> dict[str, list[str]]:
    """About 10 % of the routers serve a chain; every other chain has a second replica."""
    hosts = rnd.sample(routers, max(2, int(len(routers) * CHAIN_SHARE)))
    chains: dict[str, list[str]] = {}
    for i, host in enumerate(hosts):
        replicas = [host] if i % 2 else [host, hosts[(i + 1) % len(hosts)]]
        chains[f"z{i % 7}.chain-{i}"] = replicas
    return chains


def ba_network(n: int, seed: int) -> Network:
    rnd = random.Random(seed)
    ba = nx.barabasi_albert_graph(n, 2, seed=seed)
    zones = {node: {"z"} for node in ba}
    records = make_records(sorted(ba.edges()), zones, dict.fromkeys(ba, True), rnd)
    routers = sorted(records)
    return Network("ba", n, records, remeasure(records, rnd), serving(routers, rnd), name(n // 2))


def zoned_network(n: int, seed: int) -> Network:
    rnd = random.Random(seed)
    count = max(2, n // ROUTERS_PER_ZONE)
    size = n // count
    zones: dict[int, set[str]] = {}
    edges: list[tuple[int, int]] = []
    members: list[list[int]] = []
    for z in range(count):
        base = z * size
        local = nx.barabasi_albert_graph(size, 2, seed=seed + z)
        edges += [(base + u, base + v) for u, v in local.edges()]
        members.append(list(range(base, base + size)))
        for node in members[-1]:
            zones[node] = {f"zone{z}"}
    pairs = {(z, (z + 1) % count) for z in range(count)}
    for _ in range(count // 3):
        a, b = rnd.sample(range(count), 2)
        pairs.add((a, b))
    borders: set[int] = set()
    for a, b in sorted(pairs):
        if a == b:
            continue
        for node in rnd.sample(members[a], 2):
            zones[node].add(f"zone{b}")
            borders.add(node)
            edges += [(node, peer) for peer in rnd.sample(members[b], 2)]
    transit = {node: node in borders or rnd.random() >= 0.2 for node in zones}
    records = make_records(edges, zones, transit, rnd)
    routers = sorted(records)
    local = name(members[0][size // 2])
    return Network("zones", n, records, remeasure(records, rnd), serving(routers, rnd), local)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    value = fn()
    return (time.perf_counter() - start) * 1000.0, value


def check_stretch(network: Network, graph: Any, table: RoutingTable) -> float:
    """Largest ratio of a chosen chain route's cost to the shortest path's cost by networkx (1.0 = always the
    shortest), on a copy of the graph where routers that do not relay have lost their out-edges."""
    relaying = graph.copy()
    relaying.remove_edges_from([(u, v) for u, v in graph.edges if u != network.local
                                and not graph.nodes[u]["transit"]])
    costs = nx.single_source_dijkstra_path_length(relaying, network.local, weight="weight")
    worst = 1.0
    for chain, replicas in network.chains.items():
        route = table.route(chain)
        reachable = [costs[r] for r in replicas if r in costs]
        if route is None:
            assert not reachable, f"{chain} is reachable but has no route"
            continue
        best = min(reachable)
        worst = max(worst, route.cost / best if best else 1.0)
    return worst


def measure_round(network: Network) -> dict[str, float]:
    build_ms, graph = timed(lambda: build_graph(network.records))
    table = RoutingTable(network.local)
    table_ms, _ = timed(lambda: table.rebuild(graph, network.chains))
    nx_ms, _ = timed(lambda: nx.single_source_dijkstra(graph, network.local, weight="weight"))

    chain = next((c for c in sorted(network.chains) if (r := table.route(c)) is not None and len(r.path) > 2), None)
    failover_ms = 0.0
    if chain is not None:
        route = table.route(chain)
        assert route is not None
        failover_ms, _ = timed(lambda: table.alternatives(chain, {route.next_hop}))

    def update() -> None:
        table.rebuild(build_graph(network.remeasured), network.chains)

    update_ms, _ = timed(update)
    return {"build_ms": build_ms, "table_ms": table_ms, "rebuild_ms": build_ms + table_ms, "update_ms": update_ms,
            "failover_ms": failover_ms, "nx_ms": nx_ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=9, help="rounds per network; figures are medians")
    parser.add_argument("--quick", action="store_true", help="3 rounds, no 5,000-router networks")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rounds = 3 if args.quick else max(1, args.rounds)
    sizes = SIZES[:2] if args.quick else SIZES

    started = time.perf_counter()
    networks = [make(n, args.seed) for n in sizes for make in (ba_network, zoned_network)]
    shapes: dict[str, dict[str, Any]] = {}
    for network in networks:
        graph = build_graph(network.records)
        table = RoutingTable(network.local)
        table.rebuild(graph, network.chains)
        key = f"{network.name}-{network.routers}"
        shapes[key] = {
            "routers": graph.number_of_nodes(), "links": graph.number_of_edges() // 2,
            "zones": len({z for r in network.records.values() for z in r.zones}),
            "non_transit": sum(1 for r in network.records.values() if not r.transit),
            "chains": len(network.chains), "local": network.local, "reachable": table.reachable(),
            "stretch": check_stretch(network, graph, table),
        }

    samples: dict[str, list[dict[str, float]]] = {f"{n.name}-{n.routers}": [] for n in networks}
    for _ in range(rounds):
        for network in networks:
            samples[f"{network.name}-{network.routers}"].append(measure_round(network))

    results: dict[str, dict[str, Any]] = {}
    for key, runs in samples.items():
        result: dict[str, Any] = dict(shapes[key])
        for figure in runs[0]:
            result[figure] = statistics.median(run[figure] for run in runs)
        result["table_over_nx"] = result["table_ms"] / result["nx_ms"]
        result["rebuild_over_nx"] = result["rebuild_ms"] / result["nx_ms"]
        result["rebuild_ms_all_rounds"] = [round(run["rebuild_ms"], 3) for run in runs]
        results[key] = result

    print(f"route table rebuild, median of {rounds} rounds, networkx {nx.__version__}")
    header = (f"{'network':12s} {'routers':>7s} {'links':>6s} {'chains':>6s} {'build':>8s} {'table':>8s} "
              f"{'rebuild':>8s} {'update':>8s} {'failover':>8s} {'nx':>8s} {'table/nx':>8s} {'rebuild/nx':>10s} "
              f"{'stretch':>7s}")
    print(header)
    print(f"{'':12s} {'':>7s} {'':>6s} {'':>6s} {'ms':>8s} {'ms':>8s} {'ms':>8s} {'ms':>8s} {'ms':>8s} {'ms':>8s}")
    for key, r in results.items():
        print(f"{key:12s} {r['routers']:7d} {r['links']:6d} {r['chains']:6d} {r['build_ms']:8.2f} "
              f"{r['table_ms']:8.2f} {r['rebuild_ms']:8.2f} {r['update_ms']:8.2f} {r['failover_ms']:8.2f} "
              f"{r['nx_ms']:8.2f} {r['table_over_nx']:8.2f} {r['rebuild_over_nx']:10.2f} {r['stretch']:7.3f}")
    headline = [results[k]["rebuild_ms"] for k in ("ba-1000", "zones-1000") if k in results]
    goal_met = bool(headline) and max(headline) < GOAL_REBUILD_MS_AT_1000
    print(f"\nheadline: rebuild at 1,000 routers {max(headline):.1f} ms (worst of ba / zones); goal "
          f"< {GOAL_REBUILD_MS_AT_1000:.0f} ms {'met' if goal_met else 'NOT met on this machine'}")

    out = ROOT / "bench" / "results" / "routes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "routes",
        "command": "python bench/routes.py" + (" --quick" if args.quick else ""),
        "machine": machine_info(),
        "networkx": nx.__version__,
        "settings": {"rounds": rounds, "seed": args.seed, "chain_share": CHAIN_SHARE,
                     "routers_per_zone": ROUTERS_PER_ZONE, "hysteresis": RoutingTable("x").hysteresis},
        "goal_rebuild_ms_at_1000": GOAL_REBUILD_MS_AT_1000,
        "goal_met": goal_met,
        "results": results,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)} in {report['elapsed_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
