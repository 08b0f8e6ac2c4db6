"""What happens during a simulation run: timed events (crashes, cut links, partitions) and request traffic.

A scenario is a small TOML script. It names routers with *selectors* ("border", "zone:z0", "hub", ...) rather
than ids so that one script works on any generated topology; :func:`load_scenario` resolves every selector against
the topology up front, so a typo or an impossible request ("crash the border" on a topology without one) is a
:class:`~wecross.config.ConfigError` before the run starts instead of a surprise half way through it. The runner
then only sees router ids and chain paths.

Selectors: a router id (wins over the names below, should a router be called "hub"); "border" / "border:N" (the
first / N-th, from 0, by sorted id, of the routers in more than one zone); "zone:Z" (every router in zone Z);
"chain:Z.C" (the router serving that chain); "hub" (most links, smallest id on a tie); "random" (a seeded pick among
routers serving no chain); "all". Wherever a selector goes, a list of them is accepted too (their union), except at
the two ends of a link, which must each be one router.

Everything random here (the "random" selector, Poisson arrivals, which sender sends) draws from a
:class:`random.Random` the caller seeds, so a run is reproducible from its seed.
"""

from __future__ import annotations

import dataclasses
import random
import tomllib
from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wecross.config import ConfigError
from wecross.sim.model import DISTRIBUTIONS, LinkSpec, SimTopology

#: Actions acting on routers; these may name several routers at once ("zone:z0", "all").
ROUTER_ACTIONS = ("start", "stop", "crash")
#: Actions acting on one existing link.
LINK_ACTIONS = ("cut", "heal", "set_link")
ACTIONS = (*ROUTER_ACTIONS, *LINK_ACTIONS, "partition", "heal_partition")
#: Link properties a set_link event may change.
LINK_CHANGES = ("latency_ms", "jitter_ms", "distribution", "loss", "bandwidth_mbps")
OPS = ("call", "sendTransaction")

#: Methods traffic may use on the two resources every simulated chain has, by (resource, op). Their arguments come
#: from :meth:`Traffic.args`.
METHODS: dict[tuple[str, str], tuple[str, ...]] = {
    ("asset", "call"): ("balanceOf", "totalSupply"),
    ("hello", "call"): ("get",),
    ("hello", "sendTransaction"): ("set",),
    ("asset", "sendTransaction"): ("transfer", "mint"),
}
#: No default for sendTransaction on asset: a transfer needs funds and a mint an issuer, which a chain may not have.
DEFAULT_METHOD = {("asset", "call"): "balanceOf", ("hello", "call"): "get", ("hello", "sendTransaction"): "set"}
DEFAULT_RESOURCE = {"call": "asset", "sendTransaction": "hello"}

_TOP_KEYS = frozenset({"name", "duration", "settle", "events", "traffic"})
_TRAFFIC_KEYS = frozenset({"start", "stop", "rate", "op", "from", "to", "resource", "method"})


@dataclass(frozen=True, slots=True)
class Event:
    """One resolved event. Which fields matter depends on ``action``:

    - start / stop / crash: ``routers``;
    - cut / heal / set_link: ``link`` (sorted pair of ids of a link of the topology), ``changes`` for set_link;
    - partition: ``groups`` (disjoint: a router listed in several groups belongs to the first) and ``links``, the
      topology links joining two different groups, i.e. what to cut;
    - heal_partition: ``links``, copied from the latest partition before it, i.e. what to heal.
    """

    at: float
    action: str
    routers: tuple[str, ...] = ()
    link: tuple[str, str] | None = None
    groups: tuple[tuple[str, ...], ...] = ()
    changes: dict[str, object] = field(default_factory=dict)
    label: str = ""
    links: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Traffic:
    """A stream of requests with Poisson arrivals between ``start`` and ``stop``.

    ``target_routers[i]`` serves ``targets[i]``; a request never goes to a chain its own sender serves (that would
    measure nothing cross-chain), which :meth:`pick` enforces. When ``target_routers`` is empty (built by hand) no
    such exclusion is made.
    """

    start: float
    stop: float
    rate: float
    op: str
    senders: tuple[str, ...]
    targets: tuple[str, ...]
    resource: str
    method: str
    target_routers: tuple[str, ...] = ()

    def arrivals(self, rng: random.Random) -> Iterator[float]:
        """Request times in [start, stop): exponential gaps of mean 1/rate, the usual model of independent clients."""
        t = self.start
        while True:
            t += rng.expovariate(self.rate)
            if t >= self.stop:
                return
            yield t

    def pick(self, rng: random.Random, down: Set[str] = frozenset()) -> tuple[str, str] | None:
        """A (sender, chain path) for one request, or None when no live sender has a chain to ask.

        Routers in ``down`` (stopped or crashed) do not send: a client talks to a router that is up.
        """
        served = dict(zip(self.targets, self.target_routers, strict=True)) if self.target_routers else {}
        senders = [s for s in self.senders if s not in down]
        while senders:
            i = rng.randrange(len(senders))
            sender = senders[i]
            candidates = [t for t in self.targets if served.get(t) != sender]
            if candidates:
                return sender, rng.choice(candidates)
            senders.pop(i)  # this sender serves every target: try another
        return None

    def args(self, key: str) -> list[object]:
        """Arguments for ``method``; ``key`` must be unique per request so writes never collide (e.g. "3-1207")."""
        match self.method:
            case "balanceOf":
                return ["alice"]
            case "totalSupply":
                return []
            case "get":
                return [f"sim-{key}"]
            case "set":
                return [f"sim-{key}", f"v-{key}"]
            case "transfer" | "mint":
                return ["alice", 1]
        return []


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    duration: float
    events: tuple[Event, ...] = ()
    traffic: tuple[Traffic, ...] = ()
    #: Extra virtual seconds after ``duration`` with no new events or requests, so that what is in flight (requests,
    #: reconvergence after a late event) can finish and be measured. 0 by default.
    settle: float = 0.0


def default_scenario(topology: SimTopology, duration: float = 30.0) -> Scenario:
    """Nothing happens: the run only measures how long the network takes to converge after it starts."""
    if not duration > 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    return Scenario(name="default", duration=float(duration))


def load_scenario(path: str | Path, topology: SimTopology, seed: int = 0) -> Scenario:
    """Read a scenario file and resolve it against ``topology``. Raises ConfigError."""
    source = Path(path)
    file = str(source)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, "", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"is not valid TOML: {exc}") from None
    return scenario_from_dict(document, topology, seed, source=file)


def scenario_from_dict(document: Mapping[str, Any], topology: SimTopology, seed: int = 0,
                       source: str = "<dict>") -> Scenario:
    """Validate a parsed scenario document and resolve its selectors. Raises ConfigError naming ``source``."""
    return _Resolver(source, topology, seed).scenario(document)


# --- implementation --------------------------------------------------------------------------------------------


def _link_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _t(value: float) -> str:
    return f"t={value:g}"


class _Resolver:
    """Holds what every check needs (file name for errors, the topology, the seeded rng for "random")."""

    def __init__(self, file: str, topology: SimTopology, seed: int) -> None:
        self.file = file
        self.topology = topology
        self.rng = random.Random(seed)
        self.borders = topology.borders()
        self.links: dict[tuple[str, str], LinkSpec] = {_link_key(s.a, s.b): s for s in topology.links}
        self.chains = topology.chain_paths()

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.file, key, message)

    # -- values --

    def number(self, table: Mapping[str, Any], name: str, key: str, default: float | None = None) -> float:
        value = table.get(name, default)
        if value is None:
            raise self.fail(key, "is required")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {type(value).__name__} {value!r}")
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise self.fail(key, f"expected a finite number, got {value!r}")
        return number

    def string(self, table: Mapping[str, Any], name: str, key: str, default: str | None = None) -> str:
        value = table.get(name, default)
        if value is None:
            raise self.fail(key, "is required")
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {type(value).__name__} {value!r}")
        return value

    def strings(self, value: Any, key: str) -> list[str]:
        """A selector or a list of them; a list lets one event name several unrelated routers."""
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return list(value)
        raise self.fail(key, f"expected a selector string or a non-empty list of them, got {value!r}")

    def unknown(self, table: Mapping[str, Any], known: Set[str], prefix: str) -> None:
        extra = sorted(set(table) - set(known))
        if extra:
            raise self.fail(f"{prefix}{extra[0]}", f"unknown key (known keys here: {', '.join(sorted(known))}); "
                                                   "check the spelling")

    # -- selectors --

    def select(self, selector: str, key: str) -> list[str]:
        """Router ids for one selector, sorted (except "random", one id). Never empty."""
        routers = self.topology.routers
        if selector in routers:
            return [selector]
        if selector == "all":
            if not routers:
                raise self.fail(key, "no router matches 'all': the topology has no routers")
            return sorted(routers)
        if selector == "border" or selector.startswith("border:"):
            index_text = selector.partition(":")[2] if ":" in selector else "0"
            if not index_text.isdigit():
                raise self.fail(key, f"{selector!r}: expected 'border' or 'border:N' with N a number from 0")
            if not self.borders:
                raise self.fail(key, f"no router matches {selector!r}: the topology has no border routers "
                                     "(routers in more than one zone)")
            index = int(index_text)
            if index >= len(self.borders):
                raise self.fail(key, f"no router matches {selector!r}: the topology has {len(self.borders)} border "
                                     f"router(s), numbered from 0")
            return [self.borders[index]]
        if selector.startswith("zone:"):
            zone = selector[5:]
            members = sorted(rid for rid, r in routers.items() if zone in r.zones)
            if not members:
                zones = ", ".join(self.topology.zones()) or "none"
                raise self.fail(key, f"no router matches {selector!r}: no zone {zone!r} (zones: {zones})")
            return members
        if selector.startswith("chain:"):
            path = selector[6:]
            if path not in self.chains:
                raise self.fail(key, f"no router matches {selector!r}: no router serves chain {path!r}")
            return [self.chains[path]]
        if selector == "hub":
            if not routers:
                raise self.fail(key, "no router matches 'hub': the topology has no routers")
            degree = dict.fromkeys(routers, 0)
            for spec in self.topology.links:
                degree[spec.a] = degree.get(spec.a, 0) + 1
                degree[spec.b] = degree.get(spec.b, 0) + 1
            return [min(sorted(routers), key=lambda rid: -degree[rid])]  # most links, then smallest id
        if selector == "random":
            # Crashing a chain's only router would just make its requests fail: pick a router that only relays.
            candidates = sorted(rid for rid, r in routers.items() if not r.chains)
            if not candidates:
                raise self.fail(key, "no router matches 'random': every router serves a chain")
            return [self.rng.choice(candidates)]
        raise self.fail(key, f"no router matches {selector!r} (selectors: a router id, border, border:N, zone:Z, "
                             "chain:Z.C, hub, random, all)")

    def select_all(self, value: Any, key: str) -> list[str]:
        """Union of a selector or list of selectors, in first-seen order."""
        seen: dict[str, None] = {}
        selectors = self.strings(value, key)
        for i, selector in enumerate(selectors):
            item_key = key if isinstance(value, str) else f"{key}[{i}]"
            for rid in self.select(selector, item_key):
                seen.setdefault(rid, None)
        return list(seen)

    def select_one(self, selector: Any, key: str) -> str:
        if not isinstance(selector, str):
            raise self.fail(key, f"expected a selector string, got {selector!r}")
        found = self.select(selector, key)
        if len(found) != 1:
            raise self.fail(key, f"{selector!r} matches {len(found)} routers; a link end must be one router")
        return found[0]

    def targets(self, value: Any, key: str) -> list[str]:
        """Chain paths for a traffic ``to``: "any", "zone:Z", "chain:Z.C" or "Z.C", or a list of those."""
        seen: dict[str, None] = {}
        selectors = self.strings(value, key)
        for i, selector in enumerate(selectors):
            item_key = key if isinstance(value, str) else f"{key}[{i}]"
            if selector == "any":
                found = sorted(self.chains)
                if not found:
                    raise self.fail(item_key, "no chain matches 'any': no router of the topology serves a chain")
            elif selector.startswith("zone:"):
                zone = selector[5:]
                found = sorted(p for p in self.chains if p.split(".", 1)[0] == zone)
                if not found:
                    raise self.fail(item_key, f"no chain matches {selector!r}: no chain lives in zone {zone!r}")
            else:
                path = selector[6:] if selector.startswith("chain:") else selector
                if path not in self.chains:
                    raise self.fail(item_key, f"no chain matches {selector!r}: no router serves chain {path!r} "
                                              "(expected any, zone:Z or a chain path zone.chain)")
                found = [path]
            for path in found:
                seen.setdefault(path, None)
        return list(seen)

    # -- document --

    def scenario(self, document: Mapping[str, Any]) -> Scenario:
        if not isinstance(document, Mapping):
            raise self.fail("", "expected a table at the top level")
        self.unknown(document, _TOP_KEYS, "")
        default_name = Path(self.file).stem if not self.file.startswith("<") else "scenario"
        name = self.string(document, "name", "name", default_name)
        if not name:
            raise self.fail("name", "must not be empty")
        duration = self.number(document, "duration", "duration")
        if not duration > 0:
            raise self.fail("duration", f"must be > 0, got {duration:g}")
        settle = self.number(document, "settle", "settle", 0.0)
        if settle < 0:
            raise self.fail("settle", f"must be >= 0, got {settle:g}")

        raw_events = document.get("events", [])
        if not isinstance(raw_events, list):
            raise self.fail("events", "expected a list of tables ([[events]])")
        events = [(self.event(entry, f"events[{i}]", duration), f"events[{i}]") for i, entry in enumerate(raw_events)]
        events.sort(key=lambda item: item[0].at)  # stable: same-time events keep their file order
        events = self.link_partitions(events)

        raw_traffic = document.get("traffic", [])
        if not isinstance(raw_traffic, list):
            raise self.fail("traffic", "expected a list of tables ([[traffic]])")
        traffic = tuple(self.traffic(entry, f"traffic[{i}]", duration) for i, entry in enumerate(raw_traffic))
        return Scenario(name=name, duration=duration, events=tuple(e for e, _ in events), traffic=traffic,
                        settle=settle)

    def event(self, entry: Any, prefix: str, duration: float) -> Event:
        if not isinstance(entry, Mapping):
            raise self.fail(prefix, "expected a table")
        dot = prefix + "."
        at = self.number(entry, "at", dot + "at")
        if not 0 <= at <= duration:
            raise self.fail(dot + "at", f"must be between 0 and the duration ({duration:g}), got {at:g}")
        action = self.string(entry, "action", dot + "action")
        if action not in ACTIONS:
            raise self.fail(dot + "action", f"unknown action {action!r} (actions: {', '.join(ACTIONS)})")

        if action in ROUTER_ACTIONS:
            self.unknown(entry, {"at", "action", "router"}, dot)
            if "router" not in entry:
                raise self.fail(dot + "router", f"is required for {action}")
            routers = self.select_all(entry["router"], dot + "router")
            what = routers[0] if len(routers) == 1 else f"{len(routers)} routers ({_describe(entry['router'])})"
            return Event(at, action, routers=tuple(routers), label=f"{_t(at)} {action} {what}")

        if action in LINK_ACTIONS:
            known = {"at", "action", "link"} | (set(LINK_CHANGES) if action == "set_link" else set())
            self.unknown(entry, known, dot)
            link = self.link(entry.get("link"), dot + "link")
            label = f"{_t(at)} {action} {link[0]} - {link[1]}"
            if action != "set_link":
                return Event(at, action, link=link, label=label)
            changes = self.changes(entry, dot, self.links[link])
            label += " " + " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in changes.items())
            return Event(at, action, link=link, changes=changes, label=label)

        if action == "partition":
            self.unknown(entry, {"at", "action", "groups"}, dot)
            groups = self.groups(entry.get("groups"), dot + "groups")
            member = {rid: g for g, group in enumerate(groups) for rid in group}
            cut = sorted(key for key in self.links
                         if key[0] in member and key[1] in member and member[key[0]] != member[key[1]])
            sizes = "|".join(str(len(g)) for g in groups)
            return Event(at, action, groups=groups, links=tuple(cut),
                         label=f"{_t(at)} partition {sizes} routers, {len(cut)} links cut")

        self.unknown(entry, {"at", "action"}, dot)  # heal_partition; its links are filled in link_partitions
        return Event(at, action, label=f"{_t(at)} heal_partition")

    def link(self, value: Any, key: str) -> tuple[str, str]:
        if not (isinstance(value, list) and len(value) == 2):
            raise self.fail(key, f"expected two router selectors, e.g. [\"r0001\", \"r0002\"], got {value!r}")
        a = self.select_one(value[0], f"{key}[0]")
        b = self.select_one(value[1], f"{key}[1]")
        if a == b:
            raise self.fail(key, f"both ends are {a}: a link joins two different routers")
        pair = _link_key(a, b)
        if pair not in self.links:
            raise self.fail(key, f"the topology has no link between {a} and {b}")
        return pair

    def changes(self, entry: Mapping[str, Any], dot: str, spec: LinkSpec) -> dict[str, object]:
        changes: dict[str, object] = {}
        for name in LINK_CHANGES:
            if name not in entry:
                continue
            if name == "distribution":
                value = self.string(entry, name, dot + name)
                if value not in DISTRIBUTIONS:
                    raise self.fail(dot + name, f"must be one of {', '.join(DISTRIBUTIONS)}, got {value!r}")
                changes[name] = value
            elif name == "bandwidth_mbps":
                bandwidth = self.number(entry, name, dot + name)
                if bandwidth < 0:
                    raise self.fail(dot + name, f"must be > 0, or 0 for unlimited, got {bandwidth:g}")
                changes[name] = bandwidth or None  # TOML has no null: 0 lifts the limit
            else:
                changes[name] = self.number(entry, name, dot + name)
        if not changes:
            raise self.fail(dot.rstrip("."), f"set_link changes nothing: give any of {', '.join(LINK_CHANGES)}")
        try:  # the link's own checks say what a valid value is; run them on the changed link
            replaced: dict[str, Any] = dict(changes)
            dataclasses.replace(spec, **replaced)
        except ValueError as exc:
            raise self.fail(dot + next(iter(changes)), str(exc)) from None
        return changes

    def groups(self, value: Any, key: str) -> tuple[tuple[str, ...], ...]:
        if not isinstance(value, list) or len(value) < 2:
            raise self.fail(key, "expected at least two groups, each a list of selectors, "
                                 "e.g. [[\"zone:z0\"], [\"zone:z1\"]]")
        taken: set[str] = set()
        groups: list[tuple[str, ...]] = []
        for i, raw in enumerate(value):
            # A border router is in both zones of "zone:z0" vs "zone:z1"; it must land on one side, the first.
            members = [rid for rid in self.select_all(raw, f"{key}[{i}]") if rid not in taken]
            if not members:
                raise self.fail(f"{key}[{i}]", "every router of this group is already in an earlier group")
            taken.update(members)
            groups.append(tuple(sorted(members)))
        return tuple(groups)

    def link_partitions(self, events: list[tuple[Event, str]]) -> list[tuple[Event, str]]:
        """Give each heal_partition the links its partition cut, now that events are in time order."""
        last: Event | None = None
        out: list[tuple[Event, str]] = []
        for event, key in events:
            if event.action == "partition":
                last = event
            elif event.action == "heal_partition":
                if last is None:
                    raise self.fail(f"{key}.action", "heal_partition with no partition before it")
                event = dataclasses.replace(event, links=last.links)
            out.append((event, key))
        return out

    def traffic(self, entry: Any, prefix: str, duration: float) -> Traffic:
        if not isinstance(entry, Mapping):
            raise self.fail(prefix, "expected a table")
        dot = prefix + "."
        self.unknown(entry, _TRAFFIC_KEYS, dot)
        start = self.number(entry, "start", dot + "start", 0.0)
        stop = self.number(entry, "stop", dot + "stop", duration)
        if not 0 <= start <= duration:
            raise self.fail(dot + "start", f"must be between 0 and the duration ({duration:g}), got {start:g}")
        if not start < stop <= duration:
            raise self.fail(dot + "stop", f"must be after start ({start:g}) and at most the duration "
                                          f"({duration:g}), got {stop:g}")
        rate = self.number(entry, "rate", dot + "rate")
        if not rate > 0:
            raise self.fail(dot + "rate", f"must be > 0 requests per second, got {rate:g}")
        op = self.string(entry, "op", dot + "op", "call")
        if op not in OPS:
            raise self.fail(dot + "op", f"must be one of {', '.join(OPS)}, got {op!r}")
        resource = self.string(entry, "resource", dot + "resource", DEFAULT_RESOURCE[op])
        if (resource, op) not in METHODS:
            raise self.fail(dot + "resource", f"must be asset or hello (the resources of every simulated chain), "
                                              f"got {resource!r}")
        allowed = METHODS[resource, op]
        if "method" in entry:
            method = self.string(entry, "method", dot + "method")
            if method not in allowed:
                raise self.fail(dot + "method", f"{op} on {resource} takes one of {', '.join(allowed)}, "
                                                f"got {method!r}")
        elif (resource, op) in DEFAULT_METHOD:
            method = DEFAULT_METHOD[resource, op]
        else:
            raise self.fail(dot + "method", f"is required for {op} on {resource} (one of {', '.join(allowed)})")

        senders = self.select_all(entry.get("from", "all"), dot + "from")
        targets = self.targets(entry.get("to", "any"), dot + "to")
        target_routers = [self.chains[t] for t in targets]
        if all(set(target_routers) == {s} for s in senders):
            raise self.fail(dot + "to", "every target chain is served by the sending router itself; "
                                        "traffic goes to chains on other routers")
        return Traffic(start=start, stop=stop, rate=rate, op=op, senders=tuple(senders), targets=tuple(targets),
                       resource=resource, method=method, target_routers=tuple(target_routers))


def _describe(value: Sequence[str] | str) -> str:
    return value if isinstance(value, str) else ", ".join(value)
