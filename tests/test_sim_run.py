"""The simulator as a whole: runs repeat from their seed, the network survives a border crash and a partition, routes
are optimal where they can be judged exactly, the simulator chooses the routes a real-socket network chooses; and the
engine underneath (virtual clock, simulated links, convergence tracker) does what the measurements rely on.

Every simulated run here is small and short in virtual time; the whole file runs in seconds. The one real-socket
test starts five routers on 127.0.0.1, as tests/test_overlay.py does.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests import support
from wecross.facade import Invocation
from wecross.node import RouterNode
from wecross.routing.cost import UNKNOWN_SRTT_MS
from wecross.routing.table import Route
from wecross.sim import topologies
from wecross.sim.clock import SimClock
from wecross.sim.links import SimNet
from wecross.sim.measure import ConvergenceTracker
from wecross.sim.model import LinkSpec, SimRouter, SimTopology
from wecross.sim.network import SimNetwork
from wecross.sim.runner import Run, RunOptions
from wecross.sim.scenario import default_scenario, scenario_from_dict

#: Result fields that measure the machine running the simulation, not the simulated network (wherever they are:
#: the run's totals, and the wall time each convergence entry was reached at).
WALL_CLOCK_FIELDS = ("wall_s", "peak_memory_mb")


def workdir(test: SynchronousTestCase) -> Path:
    """A fresh directory per run: a run's embedded chains persist under it, and a second run in the same directory
    would continue those chains instead of starting from their genesis."""
    path = Path(test.mktemp())
    path.mkdir(parents=True)
    return path


def comparable(result: dict[str, Any], *, bytes_too: bool = True) -> dict[str, Any]:
    """The result without what depends on the machine (and, with ``bytes_too=False``, without byte counts; see
    Reproducible.test_same_seed_same_bytes)."""
    out = copy.deepcopy(result)

    def strip(value: Any) -> None:
        if isinstance(value, dict):
            for name in WALL_CLOCK_FIELDS:
                value.pop(name, None)
            value = list(value.values())
        if isinstance(value, list):
            for item in value:
                strip(item)

    strip(out)
    if not bytes_too:
        out["load"].pop("bytes_per_router_per_s")
        for counts in out["load"]["per_router"].values():
            counts.pop("bytes")
    return out


@dataclass
class Sent:
    sender: str
    op: str
    at: float
    done: float | None = None
    #: "served", or the error code it failed with; None while in flight.
    outcome: str | None = None


class RequestLog:
    """One row per request the scenario's traffic sends (sender "sim-client"): the result dict only has totals, and
    these tests need to know which request failed, when it was sent, from where and with what code.

    Attached through SimNetwork.started_hooks, so a router restarted during the run is followed too.
    """

    def __init__(self, run: Run) -> None:
        self.clock = run.clock
        self.rows: list[Sent] = []
        run.network.started_hooks.append(self._attach)

    def _attach(self, router_id: str, node: RouterNode) -> None:
        router = node.router
        invoke = router.invoke

        def logged(invocation: Invocation) -> defer.Deferred[dict[str, Any]]:
            d = invoke(invocation)
            if invocation.sender != "sim-client":
                return d
            row = Sent(router_id, invocation.op, self.clock.seconds())
            self.rows.append(row)

            def served(result: dict[str, Any]) -> dict[str, Any]:
                row.done, row.outcome = self.clock.seconds(), "served"
                return result

            def failed(failure: Failure) -> Failure:
                row.done = self.clock.seconds()
                row.outcome = str(getattr(failure.value, "code", type(failure.value).__name__))
                return failure

            return d.addCallbacks(served, failed)

        router.invoke = logged  # type: ignore[method-assign]

    def failed(self) -> list[Sent]:
        return [row for row in self.rows if row.outcome not in ("served", None)]

    def codes(self, rows: list[Sent] | None = None) -> Counter[str]:
        return Counter(row.outcome for row in (self.failed() if rows is None else rows) if row.outcome != "served")


def border_crash(topology: SimTopology, *, duration: float, crash_at: float, reads: float, writes: float) -> Any:
    """border-failure.toml in small: zone z1 reads from and writes to the chains of zone z0; the first border
    router crashes at ``crash_at``."""
    return scenario_from_dict({
        "name": "border-crash", "duration": duration, "settle": 2.0,
        "events": [{"at": crash_at, "action": "crash", "router": "border"}],
        "traffic": [
            {"start": 2.0, "stop": duration - 1.0, "rate": reads, "op": "call", "from": "zone:z1", "to": "zone:z0"},
            {"start": 2.0, "stop": duration - 1.0, "rate": writes, "op": "sendTransaction", "from": "zone:z1",
             "to": "zone:z0"},
        ],
    }, topology)


# --------------------------------------------------------------------------------------------------- whole runs


class Reproducible(SynchronousTestCase):
    """A run is a function of its topology, scenario and seed."""

    def setUp(self) -> None:
        self.topology = topologies.generate("ba", 20, zones=2, seed=3)
        self.scenario = border_crash(self.topology, duration=12.0, crash_at=6.0, reads=20.0, writes=3.0)

    def run_with(self, seed: int, topology: SimTopology | None = None) -> dict[str, Any]:
        return Run(topology or self.topology, self.scenario, workdir(self), RunOptions(seed=seed)).execute()

    def test_same_seed_same_result(self) -> None:
        first, second = self.run_with(7), self.run_with(7)
        # The run did something worth repeating: traffic, a crash, a failover, a reconvergence.
        self.assertGreater(first["requests"]["sent"], 100)
        self.assertEqual(len(first["convergence"]), 2)
        self.assertIsNotNone(first["failover"][0]["time_s"])
        self.assertEqual(comparable(first, bytes_too=False), comparable(second, bytes_too=False))

    def test_different_seed_different_requests(self) -> None:
        """Same topology, same scenario, another run seed: the traffic's arrivals differ, hence what it measured."""
        first, other = self.run_with(7), self.run_with(8)
        self.assertEqual(first["topology"], other["topology"])
        self.assertEqual(first["scenario"], other["scenario"])
        self.assertNotEqual(first["requests"]["latency_samples_ms"], other["requests"]["latency_samples_ms"])
        self.assertNotEqual(first["timeline"]["messages"], other["timeline"]["messages"])

    def test_same_seed_same_bytes(self) -> None:
        """Bytes too, and so timing on links with a bandwidth (where a frame's size decides when it arrives)."""
        limited = topologies.generate("ba", 20, zones=2, seed=3, bandwidth_mbps=0.5)
        first, second = self.run_with(7, limited), self.run_with(7, limited)
        self.assertEqual(comparable(first), comparable(second))


class BorderCrash(SynchronousTestCase):
    """50 routers in two zones joined by two border routers; the first border crashes (issue 3's goal: traffic
    moves to the other border within dead_after x heartbeat + 100 ms)."""

    CRASH_AT = 10.0

    def test_fifty_routers_survive_a_border_crash(self) -> None:
        topology = topologies.generate("ba", 50, zones=2, seed=3)
        self.assertEqual(len(topology.routers), 50)
        self.assertEqual(len(topology.borders()), 2)
        options = RunOptions(seed=1)
        run = Run(topology, border_crash(topology, duration=20.0, crash_at=self.CRASH_AT, reads=20.0, writes=5.0),
                  workdir(self), options)
        log = RequestLog(run)
        result = run.execute()
        detection = options.dead_after * options.heartbeat_interval

        start, crash = result["convergence"]
        self.assertEqual(start["label"], "start")
        self.assertIsNotNone(start["converged_at_s"])
        self.assertLess(start["converged_at_s"], self.CRASH_AT)
        self.assertIn("crash", crash["label"])
        self.assertEqual(crash["at_s"], self.CRASH_AT)
        self.assertIsNotNone(crash["converged_at_s"])
        # Noticing the crash, then a couple of gossip rounds to tell everyone.
        self.assertLessEqual(crash["time_s"], detection + 2 * options.gossip_interval)

        (failover,) = result["failover"]
        self.assertGreater(failover["probed_routers"], 0)
        self.assertIsNotNone(failover["time_s"])
        self.assertLessEqual(failover["time_s"], detection + 0.1 + options.sample)

        requests = result["requests"]
        self.assertGreater(requests["served"], 0)
        self.assertEqual(requests["duplicated"], 0)
        self.assertEqual(result["run"]["errors"], 0)
        # The runner's totals agree with what each request did.
        self.assertEqual(requests["sent"], len(log.rows))
        self.assertEqual(requests["served"], sum(row.outcome == "served" for row in log.rows))
        self.assertEqual(requests["failed_by_code"], dict(log.codes()))
        self.assertNotIn(None, [row.outcome for row in log.rows])

        # What failed: requests caught by the crash, sent before the network could know about it.
        window_end = self.CRASH_AT + detection + options.gossip_interval
        for row in log.failed():
            self.assertTrue(self.CRASH_AT <= row.at <= window_end, row)
        self.assertTrue(all(row.outcome == "served" for row in log.rows if row.at > window_end))
        # Writes in flight are not retried (they may have run): peer_lost, never run twice (duplicated == 0).
        # Reads fail over instead, so they never end with peer_lost; nor with hop_limit: a relay whose only detour
        # is longer than the hops left says so at once, and the router before it tries a shorter path.
        writes = log.codes([row for row in log.failed() if row.op == "sendTransaction"])
        reads = log.codes([row for row in log.failed() if row.op == "call"])
        self.assertLessEqual(set(writes), {"peer_lost", "timeout"})
        self.assertLessEqual(set(reads), {"timeout"})
        self.assertGreater(writes["peer_lost"], 0)
        self.assertLess(len(log.failed()), len(log.rows) * 0.15)


class Partition(SynchronousTestCase):
    """Zone z0 loses every link to zone z1 for a while, then gets them back."""

    def test_partition_then_heal(self) -> None:
        topology = topologies.generate("ba", 20, zones=2, seed=1)
        scenario = scenario_from_dict({
            "name": "partition", "duration": 24.0, "settle": 1.0,
            "events": [{"at": 8.0, "action": "partition", "groups": [["zone:z0"], ["zone:z1"]]},
                       {"at": 16.0, "action": "heal_partition"}],
            "traffic": [{"start": 2.0, "stop": 24.0, "rate": 10.0, "op": "call", "from": "zone:z1",
                         "to": "zone:z0"}],
        }, topology)
        partition, heal = scenario.events
        self.assertTrue(partition.links)
        self.assertEqual(heal.links, partition.links)
        run = Run(topology, scenario, workdir(self), RunOptions(seed=1))
        log = RequestLog(run)
        result = run.execute()

        start, _, healed = result["convergence"]
        self.assertIsNotNone(start["converged_at_s"])
        self.assertIn("heal_partition", healed["label"])
        self.assertIsNotNone(healed["converged_at_s"])

        # Senders only in z1 (the border routers went with z0, the first group, and still reach z0's chains).
        cut_off = {rid for rid, r in topology.routers.items() if r.zones == ("z1",)}
        before = [row for row in log.rows if row.at < 8.0]
        during = [row for row in log.rows if 8.0 <= row.at < 16.0 and row.sender in cut_off]
        after = [row for row in log.rows if row.at >= healed["converged_at_s"]]
        self.assertTrue(before and during and after)
        self.assertTrue(all(row.outcome == "served" for row in before))
        self.assertEqual(log.codes(during), Counter({"unreachable": len(during)}))
        self.assertTrue(all(row.outcome == "served" for row in after))
        self.assertEqual(set(result["requests"]["failed_by_code"]), {"unreachable"})
        self.assertEqual(result["requests"]["duplicated"], 0)


class UniformLinks(SynchronousTestCase):
    """All links alike: the best route is a fewest-hops one whatever the cost model, so the routes chosen must be
    exactly optimal, and hop-by-hop forwarding must follow them."""

    def check_optimal(self, topology: SimTopology, chains: int) -> None:
        result = Run(topology, default_scenario(topology, 10.0), workdir(self), RunOptions(seed=1)).execute()
        self.assertIsNotNone(result["convergence"][0]["converged_at_s"])
        routes = result["routes"]
        self.assertEqual(routes["sampled_routers"], len(topology.routers))
        self.assertEqual(routes["pairs"], len(topology.routers) * chains - chains)
        self.assertEqual(routes["unreachable"], 0)
        self.assertEqual(routes["agreement"], 1.0)
        self.assertEqual(routes["stretch_mean"], 1.0)
        self.assertEqual(routes["stretch_max"], 1.0)
        for chosen in routes["chosen"]:
            self.assertEqual(chosen["cost"], chosen["optimal_cost"], chosen)

    def test_grid(self) -> None:
        """Many equal-cost paths: ties must be broken alike by every router on the way."""
        self.check_optimal(topologies.generate("grid", 25, seed=0, chains=3), 3)

    def test_two_zones(self) -> None:
        self.check_optimal(topologies.generate("ba", 30, zones=2, seed=1, chains=2), 2)


# ----------------------------------------------------------------------------------- simulator vs real sockets

#: Five routers in a ring, two zones joined by border router-c; router-e serves zb.ledger.
#:
#:     router-a (za) -- router-b (za) -- router-c (za, zb) -- router-e (zb, ledger)
#:         |                                                        |
#:         +------------------------ router-d (zb) -----------------+
#:
#: On loopback every link costs about the same, so hop counts decide. From router-a the shortest way to router-e is
#: a-d-e, which the zone rule forbids (router-d shares no zone with router-a, so it may not relay for it); the route
#: must be a-b-c-e. Every other route is unique too, and where two allowed paths compete (router-b to router-d: b-a-d
#: or b-c-e-d) one has 2 hops and the other 3, far apart next to the noise of real measurements.
RING_ROUTERS: dict[str, dict[str, Any]] = {
    "router-a": {"zones": ["za"]},
    "router-b": {"zones": ["za"]},
    "router-c": {"zones": ["za", "zb"]},
    "router-d": {"zones": ["zb"]},
    "router-e": {"zones": ["zb"], "chain": "ledger"},
}
RING_LINKS = [("router-a", "router-b"), ("router-b", "router-c"), ("router-c", "router-e"),
              ("router-d", "router-e"), ("router-a", "router-d")]
RING_CHAIN = "zb.ledger"
RING_CHAIN_ROUTES = {
    "router-a": ("router-a", "router-b", "router-c", "router-e"),
    "router-b": ("router-b", "router-c", "router-e"),
    "router-c": ("router-c", "router-e"),
    "router-d": ("router-d", "router-e"),
}

Paths = dict[str, tuple[str, ...] | None]


def ring_topology() -> SimTopology:
    routers = {rid: SimRouter(rid, tuple(spec["zones"]), (spec["chain"],) if "chain" in spec else ())
               for rid, spec in RING_ROUTERS.items()}
    return SimTopology("ring", routers, tuple(LinkSpec(a, b) for a, b in RING_LINKS), source="test_sim_run")


def routes(nodes: dict[str, RouterNode]) -> dict[str, Route | None]:
    """Each router's route to the chain, and to every other router."""
    out: dict[str, Route | None] = {}
    for rid, node in sorted(nodes.items()):
        table = node.router.table
        if rid != "router-e":
            out[f"{rid} -> {RING_CHAIN}"] = table.route(RING_CHAIN)
        for other in sorted(nodes):
            if other != rid:
                out[f"{rid} -> {other}"] = table.path_to(other)
    return out


def chosen_paths(nodes: dict[str, RouterNode]) -> Paths:
    return {key: None if route is None else tuple(route.path) for key, route in routes(nodes).items()}


def measured(nodes: dict[str, RouterNode]) -> bool:
    """Every route found, over links whose round trip is measured (an unmeasured one costs UNKNOWN_SRTT_MS): the
    routes of a settled network, not of the first records."""
    return all(route is not None and route.cost < UNKNOWN_SRTT_MS for route in routes(nodes).values())


class SimulatorMatchesSockets(TestCase):
    timeout = 60

    def simulated(self) -> Paths:
        network = SimNetwork(ring_topology(), workdir(self), seed=1)
        network.start_all()
        network.clock.advance(10.0)
        self.assertTrue(network.converged())
        self.assertTrue(measured(network.nodes))
        paths = chosen_paths(network.nodes)
        network.stop_all()
        return paths

    @defer.inlineCallbacks
    def test_same_routes_as_real_routers(self) -> Any:
        simulated = self.simulated()
        for rid, path in RING_CHAIN_ROUTES.items():
            self.assertEqual(simulated[f"{rid} -> {RING_CHAIN}"], path)
        self.assertNotIn(None, simulated.values())

        real = support.Network(workdir(self), RING_ROUTERS, RING_LINKS)
        self.addCleanup(real.stop)
        yield real.start()
        # Measurements settle at their own pace: wait for the routes to get there, then compare whatever they are.
        with contextlib.suppress(AssertionError):
            yield support.until(lambda: real.linked() and measured(real.nodes)
                                and chosen_paths(real.nodes) == simulated, timeout=30)
        self.assertEqual(chosen_paths(real.nodes), simulated)
        self.assertTrue(measured(real.nodes))
        # And they stay there: five heartbeats and gossip rounds later, with every link re-measured.
        yield deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(chosen_paths(real.nodes), simulated)


# --------------------------------------------------------------------------------------------------- the engine


class Clock(SynchronousTestCase):
    def test_same_time_calls_run_in_scheduling_order(self) -> None:
        clock = SimClock()
        ran: list[str] = []
        for name in ("a", "b", "c"):
            clock.callLater(1.0, ran.append, name)
        clock.callLater(0.5, ran.append, "early")
        clock.callLater(2.0, ran.append, "late")
        # Scheduled while t = 1 runs, for now: after everything already due at t = 1.
        clock.callLater(1.0, lambda: clock.callLater(0.0, ran.append, "nested"))
        clock.callLater(1.0, ran.append, "d")
        clock.run_until(3.0)
        self.assertEqual(ran, ["early", "a", "b", "c", "d", "nested", "late"])

    def test_cancel(self) -> None:
        clock = SimClock()
        ran: list[str] = []
        keep = clock.callLater(1.0, ran.append, "kept")
        gone = clock.callLater(0.5, ran.append, "cancelled")
        gone.cancel()
        self.assertEqual(clock.getDelayedCalls(), [keep])
        self.assertEqual(clock.next_time(), 1.0)
        self.assertEqual(clock.run_until(5.0), 1)
        self.assertEqual(ran, ["kept"])
        self.assertIsNone(clock.next_time())

    def test_reset_sooner(self) -> None:
        clock = SimClock()
        ran: list[tuple[float, str]] = []
        call = clock.callLater(5.0, lambda: ran.append((clock.seconds(), "moved")))
        clock.advance(1.0)
        call.reset(1.0)
        self.assertEqual(call.getTime(), 2.0)
        self.assertEqual(clock.next_time(), 2.0)
        clock.run_until(10.0)
        self.assertEqual(ran, [(2.0, "moved")])  # once: the entry it left at t = 5 is skipped

    def test_reset_later(self) -> None:
        clock = SimClock()
        ran: list[tuple[float, str]] = []
        reset = clock.callLater(1.0, lambda: ran.append((clock.seconds(), "reset")))
        delayed = clock.callLater(1.0, lambda: ran.append((clock.seconds(), "delayed")))
        reset.reset(3.0)
        delayed.delay(1.0)
        clock.run_until(1.5)
        self.assertEqual(ran, [])
        self.assertEqual(sorted(c.getTime() for c in clock.getDelayedCalls()), [2.0, 3.0])
        clock.run_until(10.0)
        self.assertEqual(ran, [(2.0, "delayed"), (3.0, "reset")])

    def test_run_until_advances_the_time(self) -> None:
        clock = SimClock(start=10.0)
        seen: list[float] = []
        clock.callLater(1.0, lambda: seen.append(clock.seconds()))
        clock.callLater(2.0, lambda: seen.append(clock.seconds()))
        self.assertEqual(clock.run_until(11.0), 1)  # due exactly at ``until``: runs
        self.assertEqual(seen, [11.0])
        self.assertEqual(clock.seconds(), 11.0)
        self.assertEqual(clock.run_until(11.5), 0)
        self.assertEqual(clock.seconds(), 11.5)  # with nothing due, the clock still reads ``until``
        self.assertEqual(clock.advance(1.0), 1)
        self.assertEqual((seen, clock.seconds(), clock.calls_run), ([11.0, 12.0], 12.5, 2))
        clock.run_until(1.0)  # never backwards
        self.assertEqual(clock.seconds(), 12.5)

    def test_a_failing_call_does_not_stop_the_run(self) -> None:
        clock = SimClock()
        ran: list[str] = []
        clock.callLater(1.0, lambda: 1 / 0)
        clock.callLater(2.0, ran.append, "after")
        clock.run_until(3.0)
        self.assertEqual((ran, clock.errors), (["after"], 1))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class Recorder(Protocol):
    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.frames: list[tuple[float, bytes]] = []
        self.lost: list[Failure] = []

    def dataReceived(self, data: bytes) -> None:
        self.frames.append((self.clock.seconds(), data))

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost.append(reason)


class Recorders(Factory):
    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.built: list[Recorder] = []

    def buildProtocol(self, addr: Any) -> Recorder:
        protocol = Recorder(self.clock)
        self.built.append(protocol)
        return protocol


class Links(SynchronousTestCase):
    """SimNet with plain protocols on both ends: what the link itself does to bytes."""

    def connect(self, spec: LinkSpec) -> tuple[SimNet, Recorder, Recorder, float]:
        """A connection from spec.a to spec.b; returns the net, both ends and when the connection was made."""
        clock = SimClock()
        net = SimNet(clock, (spec,), seed=1)
        servers, clients = Recorders(clock), Recorders(clock)
        net.listeners[spec.b] = servers
        made: list[float] = []
        net.dial(spec.a, spec.b, clients).addCallback(lambda _: made.append(clock.seconds()))
        clock.advance(1.0)
        self.assertEqual(len(made), 1)
        return net, clients.built[0], servers.built[0], made[0]

    def test_connecting_takes_one_round_trip(self) -> None:
        _, _, _, made = self.connect(LinkSpec("a", "b", latency_ms=10.0))
        self.assertAlmostEqual(made, 0.020)

    def test_bandwidth_serialises_frames(self) -> None:
        net, client, server, _ = self.connect(LinkSpec("a", "b", latency_ms=10.0, bandwidth_mbps=1.0))
        clock = net.clock
        sent = clock.seconds()
        client.transport.write(b"x" * 125_000)  # 1 Mbit: 1 s on the wire at 1 Mbit/s
        client.transport.write(b"y")  # queued behind it
        server.transport.write(b"z")  # the other direction has its own queue
        clock.advance(5.0)
        (big, big_at), (small, small_at) = ((data, at) for at, data in server.frames)
        self.assertEqual((len(big), small), (125_000, b"y"))
        self.assertAlmostEqual(big_at - sent, 1.0 + 0.010, places=9)
        self.assertAlmostEqual(small_at - sent, 1.0 + 8 / 1e6 + 0.010, places=9)
        ((back_at, back),) = client.frames
        self.assertEqual(back, b"z")
        self.assertAlmostEqual(back_at - sent, 8 / 1e6 + 0.010, places=9)

    def test_a_cut_link_delivers_nothing_and_tells_nobody(self) -> None:
        net, client, server, _ = self.connect(LinkSpec("a", "b", latency_ms=10.0))
        clock = net.clock
        client.transport.write(b"in flight")
        clock.advance(0.005)
        net.cut("a", "b")
        client.transport.write(b"after the cut")
        server.transport.write(b"the other way")
        clock.advance(0.005)
        net.heal("a", "b")  # before "in flight" would have arrived: it is lost all the same
        client.transport.write(b"after the heal")  # the connection died with the cut; only a new one carries bytes
        clock.advance(5.0)
        self.assertEqual((server.frames, client.frames), ([], []))
        self.assertEqual((server.lost, client.lost), ([], []))  # silence: only heartbeats can tell
        self.assertEqual(net.traffic.dropped, 3)

    def two_routers(self) -> SimNetwork:
        topology = SimTopology("pair", {"ra": SimRouter("ra", ("z",)), "rb": SimRouter("rb", ("z",), ("chain",))},
                               (LinkSpec("ra", "rb", latency_ms=5.0),))
        network = SimNetwork(topology, workdir(self), seed=1)
        network.start_all()
        network.clock.advance(3.0)
        self.assertIn("rb", network.nodes["ra"].peers.links)
        return network

    def link_gone_after(self, network: SimNetwork, event: Callable[[str], None]) -> float:
        """How long after ``event("rb")`` router ra drops its link to rb, to the nearest millisecond."""
        clock = network.clock
        at = clock.seconds()
        event("rb")
        while "rb" in network.nodes["ra"].peers.links:
            self.assertLess(clock.seconds() - at, 30.0)
            clock.advance(0.001)
        return clock.seconds() - at

    def test_a_crash_is_noticed_by_heartbeats_only(self) -> None:
        network = self.two_routers()
        timing = network.timing
        noticed = self.link_gone_after(network, network.crash)
        # Silence for dead_after heartbeat intervals since the last frame heard, which left rb before the crash.
        self.assertGreater(noticed, (timing.dead_after - 1) * timing.heartbeat_interval)
        self.assertLessEqual(noticed, timing.dead_after * timing.heartbeat_interval + 0.1)

    def test_a_graceful_stop_is_heard_at_once(self) -> None:
        network = self.two_routers()
        self.assertLessEqual(self.link_gone_after(network, network.stop), 0.010)  # one way is 5 ms


class Tracker(SynchronousTestCase):
    def test_publish_store_and_router_down(self) -> None:
        directories: dict[tuple[str, str], tuple[int, int]] = {}
        tracker = ConvergenceTracker(lambda holder, rid: directories.get((holder, rid)))
        stored = tracker.stored

        def store(holder: str, rid: str, version: tuple[int, int]) -> None:
            """As a directory does: only a newer version is stored, and the observer hears of it."""
            if version > directories.get((holder, rid), (0, 0)):
                directories[(holder, rid)] = version
                stored(holder, rid, version)

        tracker.stored = store  # type: ignore[method-assign]
        for rid in ("a", "b", "c"):
            tracker.router_up(rid)
        self.assertFalse(tracker.records_converged)
        for rid in ("a", "b", "c"):
            tracker.stored(rid, rid, (1, 1))  # each publishes its first record
        self.assertEqual((tracker.publishes, tracker.total_current, tracker.complete), (3, 3, 0))
        self.assertAlmostEqual(tracker.share, 3 / 9)
        for holder, rid in itertools.permutations(("a", "b", "c"), 2):
            tracker.stored(holder, rid, (1, 1))
        self.assertTrue(tracker.records_converged)
        self.assertEqual((tracker.total_current, tracker.complete, tracker.share), (9, 3, 1.0))

        tracker.stored("a", "a", (1, 2))  # a new version: b and c now hold a stale record of a
        self.assertEqual((tracker.publishes, tracker.total_current, tracker.complete), (4, 7, 1))
        self.assertFalse(tracker.records_converged)
        tracker.stored("b", "a", (1, 1))  # an old version arriving late changes nothing
        self.assertEqual(tracker.current["b"], 2)
        tracker.stored("b", "a", (1, 2))
        tracker.stored("b", "a", (1, 2))  # stored twice, counted once
        self.assertEqual((tracker.current["b"], tracker.complete), (3, 2))

        tracker.router_down("c")  # c holds the stale record; with c gone, everyone left is up to date
        self.assertEqual(tracker.live, {"a", "b"})
        self.assertEqual((tracker.total_current, tracker.complete), (4, 2))
        self.assertTrue(tracker.records_converged)

        for key in [key for key in directories if key[0] == "c"]:
            del directories[key]
        tracker.router_up("c")  # back, with an empty directory and a new epoch to publish
        self.assertFalse(tracker.records_converged)
        tracker.stored("c", "c", (2, 1))
        for holder, rid in (("c", "a"), ("c", "b")):
            tracker.stored(holder, rid, tracker.latest[rid])
        self.assertFalse(tracker.records_converged)  # a and b do not have c's new record yet
        tracker.stored("a", "c", (2, 1))
        tracker.stored("b", "c", (2, 1))
        self.assertTrue(tracker.records_converged)
        self.assertEqual(tracker.share, 1.0)
