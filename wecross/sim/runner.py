"""One simulation run: a topology, a scenario, a seed in; a result dict (docs/simulator.md) out.

The run owns the virtual clock. It starts every router at t = 0, applies the scenario's events at their times,
sends its traffic through the real ``Router.invoke`` of the sending router, and every ``sample`` virtual seconds
notes how far the directories have converged. After each event it measures how long the network took to converge
again and, for failures, how long until a request from a router whose route crossed the failure was served on
another path (probe calls, every 50 ms, from up to five such routers). At the end it compares the routes the
routers chose with the optimal ones computed from the simulator's ground truth.
"""

from __future__ import annotations

import itertools
import random
import resource
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.python.failure import Failure

from wecross.config import GossipSettings, Limits, RoutingSettings, Timing
from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.ipath import IPath
from wecross.node import RouterNode
from wecross.sim.measure import optimal_cost, path_cost, percentile, truth_graph
from wecross.sim.model import SimTopology
from wecross.sim.network import SimNetwork
from wecross.sim.report import Progress
from wecross.sim.scenario import Event, Scenario, Traffic

#: Probes after a failure: how often, from how many routers, for how long at most.
PROBE_INTERVAL = 0.05
PROBE_ROUTERS = 5
PROBE_FOR = 60.0
#: Latency samples kept in the result (all requests count in the percentiles).
LATENCY_SAMPLES = 10_000
_FAILURES = ("crash", "stop", "cut", "partition")


@dataclass(frozen=True, slots=True)
class RunOptions:
    seed: int = 0
    #: Virtual seconds between convergence samples (the resolution of every measured time).
    sample: float = 0.05
    #: Routers whose routes are checked at the end (all of them up to this many).
    route_sample: int = 100
    heartbeat_interval: float = 1.0
    dead_after: int = 3
    gossip_interval: float = 1.0
    gossip_fanout: int = 3
    record_ttl: float = 60.0
    rebuild_delay: float = 0.1
    request_deadline: float = 10.0
    hop_limit: int = 16
    #: Routers start one after another over this many virtual seconds (0: all at once).
    start_spread: float = 0.0


class Run:
    def __init__(self, topology: SimTopology, scenario: Scenario, workdir: Path, options: RunOptions | None = None,
                 progress: Progress | None = None) -> None:
        self.topology = topology
        self.scenario = scenario
        self.options = options or RunOptions()
        self.progress = progress
        opts = self.options
        self.network = SimNetwork(
            topology, workdir, seed=opts.seed,
            timing=Timing(heartbeat_interval=opts.heartbeat_interval, dead_after=opts.dead_after,
                          handshake_timeout=5.0, backoff_initial=0.5, backoff_max=8.0),
            gossip=GossipSettings(interval=opts.gossip_interval, fanout=opts.gossip_fanout,
                                  record_ttl=opts.record_ttl),
            routing=RoutingSettings(rebuild_delay=opts.rebuild_delay),
            limits=Limits(request_deadline=opts.request_deadline, hop_limit=opts.hop_limit),
        )
        self.network.started_hooks.append(self._count_writes)
        self.clock = self.network.clock
        self.rng = random.Random(f"{opts.seed}/run")
        self.convergence: list[dict[str, Any]] = []
        self.failover: list[dict[str, Any]] = []
        self.timeline: dict[str, list[Any]] = {"t_s": [], "current_share": [], "converged_routers": [], "messages": []}
        self.requests: Counter[str] = Counter()
        self.failed_by_code: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.executions: Counter[str] = Counter()
        self.probes = 0
        self._must_republish: dict[str, Any] = {}
        self._wall0 = time.monotonic()
        self._components: list[set[str]] = []
        self._next_partition_check = 0.0

    # -- the run --------------------------------------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        wall0 = self._wall0 = time.monotonic()
        scenario, clock = self.scenario, self.clock
        spread = self.options.start_spread
        self.convergence.append({"label": "start", "at_s": spread, "converged_at_s": None, "time_s": None,
                                 "rounds": None})
        if spread > 0:
            # Routers boot over ``spread`` seconds in a seeded order, as a real network does; convergence counts
            # from the last one up.
            order = sorted(self.topology.routers)
            self.rng.shuffle(order)
            for index, rid in enumerate(order):
                clock.callLater(spread * index / max(1, len(order) - 1), self.network.start, rid)
        else:
            self.network.start_all()
        for event in scenario.events:
            clock.callLater(event.at, self._apply, event)
        for index, traffic in enumerate(scenario.traffic):
            self._schedule_traffic(index, traffic, random.Random(f"{self.options.seed}/traffic/{index}"))
        end = scenario.duration + scenario.settle
        step = self.options.sample
        t = 0.0
        while t < end - 1e-9:
            t = min(end, t + step)
            clock.run_until(t)
            self._sample(t)
            if self.progress is not None:
                window = self.convergence[-1]
                state = "converged" if window["converged_at_s"] is not None else "converging"
                self.progress.update(t, f"{len(self.network.tracker.live)} routers, {state}")
        if self.progress is not None:
            self.progress.close()
        routes = self._routes()
        result = self._result(routes, time.monotonic() - wall0)
        self.network.stop_all()
        return result

    def _sample(self, t: float) -> None:
        tracker = self.network.tracker
        self.timeline["t_s"].append(round(t, 6))
        self.timeline["current_share"].append(round(tracker.share, 6))
        self.timeline["converged_routers"].append(tracker.complete)
        self.timeline["messages"].append(self.network.net.traffic.total_frames)
        window = self.convergence[-1]
        if self._must_republish and all(tracker.latest.get(rid, v) > v for rid, v in self._must_republish.items()):
            self._must_republish = {}
        if window["converged_at_s"] is None and t + 1e-9 >= window["at_s"] and not self._must_republish \
                and self._records_converged(t) \
                and self.network.physically_consistent():
            window["converged_at_s"] = round(t, 6)
            window["time_s"] = round(t - window["at_s"], 6)
            window["rounds"] = round((t - window["at_s"]) / self.options.gossip_interval, 3)
            window["wall_s"] = round(time.monotonic() - self._wall0, 3)

    def _records_converged(self, t: float) -> bool:
        """One component: the tracker's O(1) answer. Partitioned: each router needs only the newest records of
        the routers it can reach (the others' cannot get to it), checked once per gossip interval (costly)."""
        if len(self._components) <= 1:
            return self.network.tracker.records_converged
        if t + 1e-9 < self._next_partition_check:
            return False
        self._next_partition_check = t + self.options.gossip_interval / 4
        return self.network.records_converged_within(self._components)

    # -- events ---------------------------------------------------------------------------------------------------

    def _apply(self, event: Event) -> None:
        net, links = self.network, self.network.net
        failed_routers: set[str] = set()
        failed_links: set[frozenset[str]] = set()
        if event.action in _FAILURES:
            before = self._routes_now()
        match event.action:
            case "start":
                for rid in event.routers:
                    net.start(rid)
            case "stop" | "crash":
                for rid in event.routers:
                    (net.stop if event.action == "stop" else net.crash)(rid)
                    failed_routers.add(rid)
            case "cut" | "heal" | "set_link":
                assert event.link is not None
                if event.action == "cut":
                    links.cut(*event.link)
                    failed_links.add(frozenset(event.link))
                elif event.action == "heal":
                    links.heal(*event.link)
                else:
                    links.change(*event.link, **event.changes)
            case "partition":
                for a, b in event.links:
                    links.cut(a, b)
                    failed_links.add(frozenset((a, b)))
            case "heal_partition":
                for a, b in event.links:
                    links.heal(a, b)
        self._components = self.network.components()
        self._next_partition_check = 0.0
        now = self.clock.seconds()
        self.convergence.append({"label": event.label, "at_s": round(now, 6), "converged_at_s": None,
                                 "time_s": None, "rounds": None})
        # A changed link is "known" once both its ends have published since; before that, every directory holding
        # the newest records would look converged on the old figures.
        tracker = self.network.tracker
        self._must_republish = {rid: tracker.latest[rid] for rid in (event.link or ())
                                if event.action == "set_link" and rid in tracker.latest}
        if event.action in _FAILURES:
            self._probe_failover(event, now, before, failed_routers, failed_links)

    def _routes_now(self) -> list[tuple[str, str, tuple[str, ...]]]:
        out = []
        chains = sorted(self.topology.chain_paths())
        for rid in sorted(self.network.tracker.live):
            table = self.network.nodes[rid].router.table
            for chain in chains:
                route = table.route(chain)
                if route is not None and len(route.path) > 1:
                    out.append((rid, chain, route.path))
        return out

    def _probe_failover(self, event: Event, at: float, before: list[tuple[str, str, tuple[str, ...]]],
                        routers: set[str], links: set[frozenset[str]]) -> None:
        def crosses(path: tuple[str, ...]) -> bool:
            return any(r in routers for r in path) or any(
                frozenset(pair) in links for pair in itertools.pairwise(path))

        live = self.network.tracker.live
        affected = [(rid, chain) for rid, chain, path in before
                    if rid in live and path[-1] not in routers and crosses(path)]
        entry: dict[str, Any] = {"label": event.label, "at_s": round(at, 6), "first_success_s": None,
                                 "time_s": None, "probed_routers": 0}
        self.failover.append(entry)
        if not affected:
            return
        chosen = self.rng.sample(affected, min(PROBE_ROUTERS, len(affected)))
        entry["probed_routers"] = len(chosen)
        for rid, chain in chosen:
            self._probe(entry, rid, chain, routers, links, at)

    def _probe(self, entry: dict[str, Any], rid: str, chain: str, routers: set[str], links: set[frozenset[str]],
               at: float) -> None:
        if entry["first_success_s"] is not None or self.clock.seconds() - at > PROBE_FOR:
            return
        if not self.network.running(rid):
            return
        self.probes += 1
        d = self.network.nodes[rid].router.invoke(
            Invocation(IPath.parse(f"{chain}.asset"), "call", "balanceOf", ["alice"], sender="sim-probe"))

        def served(answer: dict[str, Any]) -> None:
            path = answer.get("path", [])
            if entry["first_success_s"] is None and not any(r in routers for r in path) and not any(
                    frozenset(pair) in links for pair in itertools.pairwise(path)):
                now = self.clock.seconds()
                entry["first_success_s"] = round(now, 6)
                entry["time_s"] = round(now - at, 6)

        def again(result: object) -> None:
            if entry["first_success_s"] is None:
                self.clock.callLater(PROBE_INTERVAL, self._probe, entry, rid, chain, routers, links, at)

        d.addCallback(served)
        d.addErrback(lambda _: None)
        d.addBoth(again)

    # -- traffic ----------------------------------------------------------------------------------------------------

    def _schedule_traffic(self, index: int, traffic: Traffic, rng: random.Random) -> None:
        arrivals = traffic.arrivals(rng)
        counter = iter(range(1, 1 << 62))

        def next_request() -> None:
            when = next(arrivals, None)
            if when is not None:
                self.clock.callLater(when - self.clock.seconds(), fire)

        def fire() -> None:
            self._send(traffic, f"{index}-{next(counter)}", rng)
            next_request()

        next_request()

    def _send(self, traffic: Traffic, key: str, rng: random.Random) -> None:
        live = self.network.tracker.live
        down = frozenset(r for r in traffic.senders if r not in live)
        picked = traffic.pick(rng, down)
        if picked is None:
            self.requests["not_sent"] += 1
            return
        sender, chain = picked
        self.requests["sent"] += 1
        started = self.clock.seconds()
        invocation = Invocation(IPath.parse(f"{chain}.{traffic.resource}"), traffic.op, traffic.method,
                                traffic.args(key), sender="sim-client")
        d = self.network.nodes[sender].router.invoke(invocation)

        def served(_: object) -> None:
            self.requests["served"] += 1
            self.latencies.append((self.clock.seconds() - started) * 1000.0)

        def failed(failure: Failure) -> None:
            self.requests["failed"] += 1
            code = failure.value.code if isinstance(failure.value, RouterError) else type(failure.value).__name__
            self.failed_by_code[code] += 1

        d.addCallbacks(served, failed)

    def _count_writes(self, router_id: str, node: RouterNode) -> None:
        """Count executions of every write at the chain itself: a write run twice shows up here, whatever the
        router layers above believed."""
        stubs = node.stubs
        invoke = stubs.invoke

        def counted(path: IPath, op: str, method: str, args: list[Any], sender: str) -> Any:
            if op == "sendTransaction" and sender == "sim-client":
                self.executions[f"{path}|{args[:1]}"] += 1
            return invoke(path, op, method, args, sender)

        stubs.invoke = counted  # type: ignore[method-assign]

    # -- results ----------------------------------------------------------------------------------------------------

    def _routes(self) -> dict[str, Any]:
        net = self.network
        live = set(net.tracker.live)
        servers = {chain: rid for chain, rid in self.topology.chain_paths().items() if rid in live}
        out: dict[str, Any] = {"pairs": 0, "sampled_routers": 0, "agreement": None, "stretch_mean": None,
                               "stretch_max": None, "unreachable": 0, "chosen": []}
        if not servers:
            return out
        routers = {rid: (r.zones, r.transit) for rid, r in self.topology.routers.items()}
        truth = truth_graph(routers, [link.spec for link in net.net.links.values()], live)
        sources = sorted(live)
        if len(sources) > self.options.route_sample:
            sources = sorted(self.rng.sample(sources, self.options.route_sample))
        stretches: list[float] = []
        agree = pairs = unreachable = 0
        chosen: list[dict[str, Any]] = []
        for source in sources:
            table = net.nodes[source].router.table
            wanted = {chain: server for chain, server in servers.items() if server != source}
            for chain in sorted(wanted):
                best = optimal_cost(truth, source, chain, [wanted[chain]])
                if best is None:
                    continue  # no path in reality either (a partition): nothing to judge
                pairs += 1
                route = table.route(chain)
                if route is None:
                    unreachable += 1
                    continue
                cost = path_cost(truth, route.path)
                if cost is None:
                    unreachable += 1  # a route over a link or router that is gone
                    continue
                stretches.append(cost / best if best > 0 else 1.0)
                if self._consistent(route.path, route.destination):
                    agree += 1
                if len(chosen) < 50:
                    chosen.append({"from": source, "chain": chain, "path": list(route.path), "cost": round(cost, 4),
                                   "optimal_cost": round(best, 4)})
        out.update({
            "pairs": pairs, "sampled_routers": len(sources), "unreachable": unreachable, "chosen": chosen,
            "agreement": round(agree / pairs, 6) if pairs else None,
            "stretch_mean": round(sum(stretches) / len(stretches), 6) if stretches else None,
            "stretch_max": round(max(stretches), 6) if stretches else None,
        })
        return out

    def _consistent(self, path: tuple[str, ...], destination: str) -> bool:
        """Whether hop-by-hop forwarding follows the entry's path: each relay's next hop to the destination is the
        next router on it."""
        nodes = self.network.nodes
        return all(nodes[here].router.table.next_hop(destination) == there for here, there in itertools.pairwise(path))

    def _result(self, routes: dict[str, Any], wall: float) -> dict[str, Any]:
        topology, scenario, opts = self.topology, self.scenario, self.options
        virtual = scenario.duration + scenario.settle
        traffic = self.network.net.traffic
        per_router = {rid: {"messages": traffic.frames.get(rid, 0), "bytes": traffic.bytes.get(rid, 0)}
                      for rid in sorted(topology.routers)}

        def spread(values: list[float]) -> dict[str, float]:
            if not values:
                return {"mean": 0.0, "p50": 0.0, "max": 0.0}
            return {"mean": round(sum(values) / len(values), 3), "p50": round(percentile(values, 50) or 0.0, 3),
                    "max": round(max(values), 3)}

        frames = [v["messages"] / virtual for v in per_router.values()] if virtual else []
        octets = [v["bytes"] / virtual for v in per_router.values()] if virtual else []
        rounds = virtual / opts.gossip_interval if virtual else 0.0
        latencies = self.latencies

        def pct(q: float) -> float | None:
            value = percentile(latencies, q)
            return None if value is None else round(value, 3)

        samples = latencies if len(latencies) <= LATENCY_SAMPLES else random.Random(opts.seed).sample(
            latencies, LATENCY_SAMPLES)
        return {
            "version": 1,
            "seed": opts.seed,
            "topology": {"name": topology.name, "source": topology.source, "routers": len(topology.routers),
                         "links": len(topology.links), "zones": topology.zones(), "chains": topology.chain_paths()},
            "scenario": {"name": scenario.name, "duration_s": scenario.duration,
                         "events": [{"at_s": e.at, "label": e.label} for e in scenario.events]},
            "settings": {"gossip_interval_s": opts.gossip_interval, "heartbeat_s": opts.heartbeat_interval,
                         "dead_after": opts.dead_after, "gossip_fanout": opts.gossip_fanout,
                         "rebuild_delay_s": opts.rebuild_delay},
            "convergence": self.convergence,
            "timeline": self.timeline,
            "routes": routes,
            "failover": self.failover,
            "requests": {
                "sent": self.requests["sent"], "served": self.requests["served"],
                "failed": self.requests["failed"], "not_sent": self.requests["not_sent"],
                "duplicated": sum(n - 1 for n in self.executions.values() if n > 1),
                "failed_by_code": dict(sorted(self.failed_by_code.items())),
                "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99),
                               "max": round(max(latencies), 3) if latencies else None},
                "latency_samples_ms": [round(v, 3) for v in samples],
                "probes": self.probes,
            },
            "load": {
                "messages_per_router_per_s": spread(frames),
                "bytes_per_router_per_s": spread(octets),
                "messages_per_router_per_round": round(sum(v["messages"] for v in per_router.values())
                                                       / max(1, len(per_router)) / rounds, 3) if rounds else 0.0,
                "per_router": per_router,
                "frames_dropped": traffic.dropped,
            },
            "run": {"virtual_s": virtual, "wall_s": round(wall, 3),
                    "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                    "calls_run": self.clock.calls_run, "errors": self.clock.errors,
                    "verifier_memo_hits": self.network.verifier.memo_hits},
        }
