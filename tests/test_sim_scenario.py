"""Simulation scenarios: parsing, selector resolution, every user mistake as a ConfigError naming its key; the
terminal summary and progress bar."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from wecross.config import ConfigError
from wecross.sim.model import LinkSpec, SimRouter, SimTopology
from wecross.sim.report import Progress, summary_table
from wecross.sim.scenario import (
    Event,
    Scenario,
    Traffic,
    default_scenario,
    load_scenario,
    scenario_from_dict,
)

SCENARIOS = Path(__file__).resolve().parent.parent / "conf" / "scenarios"

LINKS = [("a0", "a1"), ("a0", "a2"), ("a1", "a2"), ("a1", "x0"), ("a1", "x1"), ("a2", "x1"),
         ("x0", "b1"), ("x1", "b2"), ("b1", "b0"), ("b2", "b0")]


def two_zones() -> SimTopology:
    """z0 = a0..a2, z1 = b0..b2, borders x0 and x1 in both; a0 serves z0.ledger0, b0 serves z1.ledger1; hub a1."""
    routers = {
        "a0": SimRouter("a0", ("z0",), ("ledger0",)),
        "a1": SimRouter("a1", ("z0",)),
        "a2": SimRouter("a2", ("z0",)),
        "b0": SimRouter("b0", ("z1",), ("ledger1",)),
        "b1": SimRouter("b1", ("z1",)),
        "b2": SimRouter("b2", ("z1",)),
        "x0": SimRouter("x0", ("z0", "z1")),
        "x1": SimRouter("x1", ("z0", "z1")),
    }
    return SimTopology("two-zones", routers, tuple(LinkSpec(a, b) for a, b in LINKS), source="test")


def no_borders() -> SimTopology:
    routers = {"r1": SimRouter("r1", ("z0",), ("c",)), "r2": SimRouter("r2", ("z0",))}
    return SimTopology("pair", routers, (LinkSpec("r1", "r2"),))


def two_zones_two_borders() -> SimTopology:
    """conf/topologies/two-zones-two-borders.toml, by hand (the topology loader is not this module's business)."""
    routers = {
        "router-a": SimRouter("router-a", ("payment",), ("bank-a",)),
        "router-b": SimRouter("router-b", ("payment",)),
        "router-c": SimRouter("router-c", ("payment", "evidence")),
        "router-d": SimRouter("router-d", ("payment", "evidence")),
        "router-e": SimRouter("router-e", ("evidence",)),
        "router-f": SimRouter("router-f", ("evidence",), ("court",)),
    }
    pairs = [("router-a", "router-b"), ("router-b", "router-c"), ("router-b", "router-d"), ("router-c", "router-e"),
             ("router-d", "router-e"), ("router-e", "router-f")]
    return SimTopology("two-zones-two-borders", routers, tuple(LinkSpec(a, b) for a, b in pairs))


def doc(*events: dict[str, Any], traffic: list[dict[str, Any]] | None = None, **top: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"duration": 60.0, **top}
    if events:
        document["events"] = list(events)
    if traffic is not None:
        document["traffic"] = traffic
    return document


class ParseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.topology = two_zones()

    def one(self, event: dict[str, Any], seed: int = 0) -> Event:
        scenario = scenario_from_dict(doc(event), self.topology, seed)
        self.assertEqual(len(scenario.events), 1)
        return scenario.events[0]

    def test_minimal(self) -> None:
        scenario = scenario_from_dict({"duration": 10}, self.topology)
        self.assertEqual(scenario, Scenario("scenario", 10.0, (), (), 0.0))
        self.assertIsInstance(scenario.duration, float)

    def test_name_and_settle(self) -> None:
        scenario = scenario_from_dict(doc(name="x", settle=5), self.topology)
        self.assertEqual((scenario.name, scenario.settle), ("x", 5.0))

    def test_crash_border(self) -> None:
        event = self.one({"at": 20, "action": "crash", "router": "border"})
        self.assertEqual(event.at, 20.0)
        self.assertEqual(event.action, "crash")
        self.assertEqual(event.routers, ("x0",))
        self.assertEqual(event.label, "t=20 crash x0")

    def test_stop_zone_means_all_of_it(self) -> None:
        event = self.one({"at": 1.5, "action": "stop", "router": "zone:z0"})
        self.assertEqual(event.routers, ("a0", "a1", "a2", "x0", "x1"))
        self.assertIn("5 routers", event.label)
        self.assertTrue(event.label.startswith("t=1.5 stop"))

    def test_start_all(self) -> None:
        event = self.one({"at": 0, "action": "start", "router": "all"})
        self.assertEqual(event.routers, tuple(sorted(self.topology.routers)))

    def test_router_list(self) -> None:
        event = self.one({"at": 1, "action": "crash", "router": ["b1", "border:1", "b1"]})
        self.assertEqual(event.routers, ("b1", "x1"))

    def test_selectors(self) -> None:
        cases = {"a2": "a2", "border": "x0", "border:0": "x0", "border:1": "x1", "chain:z1.ledger1": "b0",
                 "chain:z0.ledger0": "a0", "hub": "a1"}
        for selector, expected in cases.items():
            event = self.one({"at": 1, "action": "crash", "router": selector})
            self.assertEqual(event.routers, (expected,), selector)

    def test_random_never_a_chain_router_and_seeded(self) -> None:
        picks = set()
        for seed in range(40):
            event = self.one({"at": 1, "action": "crash", "router": "random"}, seed=seed)
            self.assertNotIn(event.routers[0], ("a0", "b0"))
            self.assertEqual(event, self.one({"at": 1, "action": "crash", "router": "random"}, seed=seed))
            picks.add(event.routers[0])
        self.assertGreater(len(picks), 1)

    def test_cut_and_heal(self) -> None:
        cut = self.one({"at": 3, "action": "cut", "link": ["x0", "a1"]})
        self.assertEqual(cut.link, ("a1", "x0"))
        self.assertEqual(cut.label, "t=3 cut a1 - x0")
        heal = self.one({"at": 4, "action": "heal", "link": ["hub", "border"]})
        self.assertEqual(heal.link, ("a1", "x0"))

    def test_set_link(self) -> None:
        event = self.one({"at": 31, "action": "set_link", "link": ["a0", "a1"], "latency_ms": 50, "jitter_ms": 5,
                          "distribution": "normal", "loss": 0.1, "bandwidth_mbps": 10})
        self.assertEqual(event.link, ("a0", "a1"))
        self.assertEqual(event.changes, {"latency_ms": 50.0, "jitter_ms": 5.0, "distribution": "normal",
                                         "loss": 0.1, "bandwidth_mbps": 10.0})
        self.assertIn("latency_ms=50", event.label)
        unlimited = self.one({"at": 31, "action": "set_link", "link": ["a0", "a1"], "bandwidth_mbps": 0})
        self.assertEqual(unlimited.changes, {"bandwidth_mbps": None})

    def test_partition_and_heal(self) -> None:
        scenario = scenario_from_dict(doc(
            {"at": 50, "action": "heal_partition"},
            {"at": 40, "action": "partition", "groups": [["zone:z0"], ["zone:z1"]]},
        ), self.topology)
        partition, heal = scenario.events
        self.assertEqual(partition.action, "partition")
        # Borders are in both zones: they stay in the first group.
        self.assertEqual(partition.groups, (("a0", "a1", "a2", "x0", "x1"), ("b0", "b1", "b2")))
        self.assertEqual(partition.links, (("b1", "x0"), ("b2", "x1")))
        self.assertEqual(heal.action, "heal_partition")
        self.assertEqual(heal.links, partition.links)

    def test_partition_leaves_ungrouped_routers_linked(self) -> None:
        event = self.one({"at": 1, "action": "partition", "groups": [["a0"], ["a1"]]})
        self.assertEqual(event.links, (("a0", "a1"),))

    def test_events_sorted_stably(self) -> None:
        scenario = scenario_from_dict(doc(
            {"at": 30, "action": "crash", "router": "b1"},
            {"at": 10, "action": "crash", "router": "b2"},
            {"at": 30, "action": "start", "router": "b1"},
            {"at": 10, "action": "start", "router": "b2"},
            {"at": 0, "action": "stop", "router": "a2"},
        ), self.topology)
        self.assertEqual([(e.at, e.action) for e in scenario.events],
                         [(0, "stop"), (10, "crash"), (10, "start"), (30, "crash"), (30, "start")])

    def test_traffic_defaults(self) -> None:
        scenario = scenario_from_dict(doc(traffic=[{"rate": 5}]), self.topology)
        (traffic,) = scenario.traffic
        self.assertEqual((traffic.start, traffic.stop, traffic.op), (0.0, 60.0, "call"))
        self.assertEqual((traffic.resource, traffic.method), ("asset", "balanceOf"))
        self.assertEqual(traffic.senders, tuple(sorted(self.topology.routers)))
        self.assertEqual(traffic.targets, ("z0.ledger0", "z1.ledger1"))
        self.assertEqual(traffic.target_routers, ("a0", "b0"))
        self.assertEqual(traffic.args("1"), ["alice"])

    def test_traffic_send_transaction(self) -> None:
        scenario = scenario_from_dict(doc(traffic=[{"start": 5, "stop": 55, "rate": 20, "op": "sendTransaction",
                                                    "from": "zone:z0", "to": "zone:z1"}]), self.topology)
        (traffic,) = scenario.traffic
        self.assertEqual((traffic.resource, traffic.method), ("hello", "set"))
        self.assertEqual(traffic.senders, ("a0", "a1", "a2", "x0", "x1"))
        self.assertEqual(traffic.targets, ("z1.ledger1",))
        self.assertNotEqual(traffic.args("0-1"), traffic.args("0-2"))
        self.assertEqual(len(traffic.args("0-1")), 2)

    def test_traffic_targets(self) -> None:
        for to, expected in [("z1.ledger1", ("z1.ledger1",)), ("chain:z0.ledger0", ("z0.ledger0",)),
                             (["z1.ledger1", "any"], ("z1.ledger1", "z0.ledger0"))]:
            scenario = scenario_from_dict(doc(traffic=[{"rate": 1, "to": to}]), self.topology)
            self.assertEqual(scenario.traffic[0].targets, expected, to)

    def test_traffic_method(self) -> None:
        scenario = scenario_from_dict(doc(traffic=[
            {"rate": 1, "resource": "hello"},
            {"rate": 1, "op": "sendTransaction", "resource": "asset", "method": "mint"},
        ]), self.topology)
        self.assertEqual([t.method for t in scenario.traffic], ["get", "mint"])

    def test_default_scenario(self) -> None:
        scenario = default_scenario(self.topology)
        self.assertEqual((scenario.duration, scenario.events, scenario.traffic), (30.0, (), ()))
        self.assertEqual(default_scenario(self.topology, 5).duration, 5.0)

    def test_load_file(self) -> None:
        path = Path(self.mktemp() + "-mine.toml")
        path.write_text('duration = 12\n[[events]]\nat = 2\naction = "crash"\nrouter = "border:1"\n')
        scenario = load_scenario(path, self.topology)
        self.assertEqual(scenario.name, path.stem)
        self.assertEqual(scenario.events[0].routers, ("x1",))


class TrafficTests(SynchronousTestCase):
    def traffic(self, **kw: Any) -> Traffic:
        values: dict[str, Any] = {"start": 0.0, "stop": 100.0, "rate": 50.0, "op": "call",
                                  "senders": ("a0", "a1", "b0"), "targets": ("z0.ledger0", "z1.ledger1"),
                                  "resource": "asset", "method": "balanceOf", "target_routers": ("a0", "b0")}
        values.update(kw)
        return Traffic(**values)

    def test_arrivals_deterministic_and_rate(self) -> None:
        traffic = self.traffic(start=10.0, stop=110.0)
        first = list(traffic.arrivals(random.Random(7)))
        self.assertEqual(first, list(traffic.arrivals(random.Random(7))))
        self.assertNotEqual(first, list(traffic.arrivals(random.Random(8))))
        self.assertEqual(first, sorted(first))
        self.assertTrue(all(10.0 <= t < 110.0 for t in first))
        # 5000 expected, standard deviation ~71.
        self.assertTrue(4600 < len(first) < 5400, len(first))

    def test_arrivals_low_rate(self) -> None:
        counts = [len(list(self.traffic(rate=0.5, stop=20.0).arrivals(random.Random(s)))) for s in range(200)]
        mean = sum(counts) / len(counts)  # 10 expected; the mean of 200 draws has a standard deviation ~0.22
        self.assertTrue(9.0 < mean < 11.0, mean)

    def test_pick_skips_own_chain_and_down_routers(self) -> None:
        traffic = self.traffic()
        rng = random.Random(1)
        seen = set()
        for _ in range(300):
            picked = traffic.pick(rng, down={"a1"})
            assert picked is not None
            sender, target = picked
            self.assertNotEqual(sender, "a1")
            self.assertNotEqual(dict(zip(traffic.targets, traffic.target_routers, strict=True))[target], sender)
            seen.add(picked)
        self.assertEqual(seen, {("a0", "z1.ledger1"), ("b0", "z0.ledger0")})
        self.assertIsNone(traffic.pick(rng, down={"a0", "a1", "b0"}))
        only_own = self.traffic(senders=("a0",), targets=("z0.ledger0",), target_routers=("a0",))
        self.assertIsNone(only_own.pick(rng))


class ErrorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.topology = two_zones()

    def fails(self, document: dict[str, Any], key: str, words: str = "",
              topology: SimTopology | None = None) -> ConfigError:
        with self.assertRaises(ConfigError) as caught:
            scenario_from_dict(document, topology or self.topology, source="s.toml")
        error = caught.exception
        self.assertEqual(error.file, "s.toml")
        self.assertEqual(error.key, key, str(error))
        self.assertIn(words, error.message)
        return error

    def event(self, key: str, words: str = "", **event: Any) -> ConfigError:
        base: dict[str, Any] = {"at": 1, "action": "crash", "router": "a1"}
        base.update(event)
        filler = {"at": 0, "action": "start", "router": "a1"}
        return self.fails(doc(filler, filler, {k: v for k, v in base.items() if v is not None}),
                          f"events[2].{key}" if key else "events[2]", words)

    def test_top_level(self) -> None:
        self.fails({}, "duration", "required")
        self.fails({"duration": 0}, "duration", "> 0")
        self.fails({"duration": -3}, "duration")
        self.fails({"duration": "long"}, "duration", "number")
        self.fails({"duration": True}, "duration", "number")
        self.fails({"duration": 5, "durration": 3}, "durration", "unknown key")
        self.fails({"duration": 5, "settle": -1}, "settle")
        self.fails({"duration": 5, "events": {"at": 1}}, "events")
        self.fails({"duration": 5, "traffic": "lots"}, "traffic")
        self.fails({"duration": 5, "events": ["x"]}, "events[0]")

    def test_event_basics(self) -> None:
        self.event("action", "unknown action", action="explode")
        self.event("action", "required", action=None)
        self.event("at", "required", at=None)
        self.event("at", "between 0 and the duration", at=61)
        self.event("at", "between 0 and the duration", at=-1)
        self.event("routers", "unknown key", routers=["a1"])
        self.event("router", "required", router=None)

    def test_selectors(self) -> None:
        self.fails(doc({"at": 1, "action": "crash", "router": "border"}), "events[0].router",
                   "no router matches 'border': the topology has no border routers", topology=no_borders())
        self.event("router", "has 2 border", router="border:2")
        self.event("router", "border:N", router="border:x")
        self.event("router", "no zone 'z9'", router="zone:z9")
        self.event("router", "no router serves chain", router="chain:z1.nope")
        self.event("router", "no router matches 'nobody'", router="nobody")
        self.event("router[1]", "no router matches", router=["a1", "nobody"])
        self.event("router", "selector", router=3)
        self.fails(doc({"at": 1, "action": "crash", "router": "random"}), "events[0].router", "every router serves",
                   topology=SimTopology("one", {"r1": SimRouter("r1", ("z",), ("c",))}, ()))

    def test_links(self) -> None:
        self.event("link", "no link between a0 and b0", action="cut", router=None, link=["a0", "b0"])
        self.event("link", "both ends", action="heal", router=None, link=["a0", "a0"])
        self.event("link", "two router selectors", action="cut", router=None, link="a0")
        self.event("link", "two router selectors", action="cut", router=None, link=["a0", "a1", "a2"])
        self.event("link[1]", "matches 5 routers", action="cut", router=None, link=["a0", "zone:z0"])
        self.event("router", "unknown key", action="cut", link=["a0", "a1"])
        self.event("link", "got None", action="cut", router=None)

    def test_set_link(self) -> None:
        link = ["a0", "a1"]
        self.event("", "changes nothing", action="set_link", router=None, link=link)
        self.event("loss", "loss must be in [0, 1)", action="set_link", router=None, link=link, loss=1.5)
        self.event("latency_ms", ">= 0", action="set_link", router=None, link=link, latency_ms=-1)
        self.event("distribution", "must be one of", action="set_link", router=None, link=link,
                   distribution="pareto")
        self.event("bandwidth_mbps", "> 0", action="set_link", router=None, link=link, bandwidth_mbps=-1)
        self.event("latency_ms", "number", action="set_link", router=None, link=link, latency_ms="fast")
        self.event("latency", "unknown key", action="set_link", router=None, link=link, latency=5)
        self.event("latency_ms", "unknown key", action="cut", router=None, link=link, latency_ms=5)

    def test_partitions(self) -> None:
        self.event("groups", "at least two groups", action="partition", router=None, groups=[["zone:z0"]])
        self.event("groups", "at least two groups", action="partition", router=None)
        self.event("groups[1]", "already in an earlier group", action="partition", router=None,
                   groups=[["zone:z0"], ["border"]])
        self.event("groups[1][0]", "no zone", action="partition", router=None, groups=[["zone:z0"], ["zone:q"]])
        self.fails(doc({"at": 5, "action": "heal_partition"},
                       {"at": 9, "action": "partition", "groups": [["a0"], ["a1"]]}),
                   "events[0].action", "no partition before it")
        self.event("router", "unknown key", action="heal_partition")

    def test_traffic(self) -> None:
        def traffic(key: str, words: str = "", **entry: Any) -> None:
            base: dict[str, Any] = {"rate": 5}
            base.update(entry)
            self.fails(doc(traffic=[{"rate": 1}, {k: v for k, v in base.items() if v is not None}]),
                       f"traffic[1].{key}", words)

        traffic("rate", "> 0", rate=0)
        traffic("rate", "> 0", rate=-2)
        traffic("rate", "required", rate=None)
        traffic("to", "no router serves chain 'z9.ledger'", to="z9.ledger")
        traffic("to", "no chain lives in zone", to="zone:z9")
        traffic("to[1]", "no router serves chain", to=["any", "z0.nope"])
        traffic("to", "served by the sending router", **{"from": "chain:z0.ledger0", "to": "z0.ledger0"})
        traffic("from", "no router matches", **{"from": "zone:nowhere"})
        traffic("op", "must be one of", op="deploy")
        traffic("stop", "at most the duration", stop=61)
        traffic("stop", "after start", start=10, stop=10)
        traffic("start", "between 0", start=-1)
        traffic("resource", "asset or hello", resource="ledger")
        traffic("method", "takes one of", method="transfer")
        traffic("method", "required", op="sendTransaction", resource="asset")
        traffic("rat", "unknown key", rat=3)
        self.fails(doc(traffic=[{"rate": 1}]), "traffic[0].to", "no router of the topology serves a chain",
                   topology=SimTopology("bare", {"r1": SimRouter("r1", ("z",))}, ()))

    def test_files(self) -> None:
        missing = self.mktemp() + ".toml"
        with self.assertRaises(ConfigError) as caught:
            load_scenario(missing, self.topology)
        self.assertIn("cannot read", str(caught.exception))
        bad = Path(self.mktemp() + ".toml")
        bad.write_text("duration = \n")
        with self.assertRaises(ConfigError) as caught:
            load_scenario(bad, self.topology)
        self.assertIn("not valid TOML", str(caught.exception))
        self.assertEqual(caught.exception.file, str(bad))


class SampleScenarioTests(SynchronousTestCase):
    def test_generic_samples(self) -> None:
        topology = two_zones()
        failure = load_scenario(SCENARIOS / "border-failure.toml", topology)
        self.assertEqual((failure.name, failure.duration), ("border-failure", 40.0))
        self.assertEqual([(e.at, e.action, e.routers) for e in failure.events], [(20.0, "crash", ("x0",))])
        self.assertEqual({t.op for t in failure.traffic}, {"call", "sendTransaction"})
        steady = load_scenario(SCENARIOS / "steady.toml", topology)
        self.assertEqual((steady.duration, steady.events, len(steady.traffic)), (30.0, (), 1))
        partition = load_scenario(SCENARIOS / "partition.toml", topology)
        self.assertEqual([e.action for e in partition.events], ["partition", "heal_partition"])
        self.assertEqual(partition.duration, 45.0)
        self.assertTrue(partition.events[0].links)

    def test_slow_link_sample(self) -> None:
        scenario = load_scenario(SCENARIOS / "slow-link.toml", two_zones_two_borders())
        (event,) = scenario.events
        self.assertEqual((event.action, event.link), ("set_link", ("router-b", "router-c")))
        self.assertEqual(scenario.traffic[0].targets, ("evidence.court",))


def full_result() -> dict[str, Any]:
    return {
        "version": 1, "seed": 3,
        "topology": {"name": "two-zones", "source": "gen", "routers": 8, "links": 10, "zones": {"z0": 5, "z1": 5},
                     "chains": {"z0.ledger0": "a0", "z1.ledger1": "b0"}},
        "scenario": {"name": "border-failure", "duration_s": 40.0,
                     "events": [{"at_s": 20.0, "label": "t=20 crash x0"}]},
        "settings": {"gossip_interval_s": 1.0, "heartbeat_s": 1.0, "dead_after": 3},
        "convergence": [
            {"label": "start", "at_s": 0.0, "converged_at_s": 4.25, "time_s": 4.25, "rounds": 4.25},
            {"label": "t=20 crash x0", "at_s": 20.0, "converged_at_s": None, "time_s": None, "rounds": None},
        ],
        "timeline": {"t_s": [0.0, 1.0], "current_share": [0.0, 1.0], "converged_routers": [0, 8], "messages": [5, 9]},
        "routes": {"pairs": 16, "sampled_routers": 8, "agreement": 0.9375, "stretch_mean": 1.05, "stretch_max": 1.5,
                   "unreachable": 1, "chosen": []},
        "failover": [{"label": "t=20 crash x0", "at_s": 20.0, "first_success_s": 23.5, "time_s": 3.5}],
        "requests": {"sent": 1000, "served": 990, "failed": 10, "duplicated": 0,
                     "failed_by_code": {"timeout": 2, "no_route": 8},
                     "latency_ms": {"p50": 12.5, "p90": 30.0, "p99": 80.25, "max": None},
                     "latency_samples_ms": [12.5]},
        "load": {"messages_per_router_per_s": {"mean": 3.5, "p50": 3.0, "max": 9.0},
                 "bytes_per_router_per_s": {"mean": 2048.0, "p50": 1900.0, "max": 8000.0},
                 "messages_per_router_per_round": 3.5, "per_router": {"a0": {"messages": 10, "bytes": 100}}},
        "run": {"virtual_s": 40.0, "wall_s": 2.5, "peak_memory_mb": 120.5, "calls_run": 12345},
    }


class SummaryTests(SynchronousTestCase):
    def test_full(self) -> None:
        text = summary_table(full_result())
        for words in ("two-zones", "8 routers", "10 links", "z0=5", "border-failure", "t=20 crash x0",
                      "Convergence", "4.25", "Routes", "93.8%", "1.050", "Failover", "23.50", "Requests", "1000",
                      "990", "no_route=8, timeout=2", "80.2", "Load", "2048", "messages per router per gossip round",
                      "12345", "120.5 MB"):
            self.assertIn(words, text)
        # None is "-", not "None".
        self.assertNotIn("None", text)
        convergence = text.split("Convergence\n", 1)[1].split("\n\n", 1)[0].splitlines()
        self.assertEqual(len(convergence), 3)
        # Columns are aligned: numbers are right-aligned under their headers, so rows end where the header ends.
        self.assertEqual(len(convergence[1]), len(convergence[0]))
        self.assertEqual(len(convergence[2]), len(convergence[0]))
        self.assertTrue(convergence[2].endswith("-"))

    def test_empty(self) -> None:
        text = summary_table({})
        for section in ("Convergence", "Routes", "Failover", "Requests", "Load", "Run"):
            self.assertIn(section, text)
        self.assertNotIn("None", text)

    def test_empty_sections(self) -> None:
        result = full_result()
        result.update(convergence=[], failover=[], routes={"pairs": 0, "agreement": None, "chosen": []},
                      requests={"sent": 0, "served": 0, "failed": 0, "duplicated": 0, "failed_by_code": {},
                                "latency_ms": {"p50": None, "p90": None, "p99": None, "max": None},
                                "latency_samples_ms": []},
                      settings=None, topology={"name": "x"})
        text = summary_table(result)
        self.assertIn("(no traffic)", text)
        self.assertIn("(no failures injected)", text)
        self.assertNotIn("None", text)


class ProgressTests(SynchronousTestCase):
    def test_disabled_writes_nothing(self) -> None:
        stream = io.StringIO()
        progress = Progress(30.0, stream)  # a StringIO is not a terminal
        progress.update(5.0, "note")
        progress.close()
        self.assertEqual(stream.getvalue(), "")
        explicit = Progress(30.0, stream, enabled=False)
        explicit.update(5.0)
        explicit.close()
        self.assertEqual(stream.getvalue(), "")

    def test_enabled(self) -> None:
        stream = io.StringIO()
        now = [100.0]
        progress = Progress(30.0, stream, enabled=True, clock=lambda: now[0])
        now[0] = 103.1
        progress.update(12.0, "1234 routers up")
        first = stream.getvalue()
        self.assertTrue(first.startswith("\r["))
        self.assertIn("[############..................]  40% t=12.0/30s wall 3.1s 1234 routers up", first)
        now[0] = 103.15
        progress.update(13.0)  # too soon: not redrawn
        self.assertEqual(stream.getvalue(), first)
        now[0] = 104.0
        progress.update(14.0)
        second = stream.getvalue()[len(first):]
        self.assertTrue(second.startswith("\r["))
        self.assertIn("t=14.0/30s wall 4.0s", second)
        self.assertEqual(len(second), len(first))  # padded over the longer line before it
        progress.update(30.0)
        progress.close()
        text = stream.getvalue()
        self.assertTrue(text.endswith("\n"))
        self.assertIn("100% t=30.0/30s", text)
        self.assertIn("[" + "#" * 30 + "]", text)
