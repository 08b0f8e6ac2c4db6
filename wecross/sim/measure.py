"""What the simulator measures, from its ground truth: convergence of the directories, and the routes chosen.

Convergence has a precise meaning here: every running router holds the newest record of every running router, and
those records describe the network as it physically is (each running router lists exactly its established links
to running routers, once measured). The first condition alone is reached trivially right after a crash, before
anyone has noticed it; the second makes "converged" mean "the overlay knows what happened".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wecross.gossip.record import Version
from wecross.routing.graph import build_graph
from wecross.routing.table import RoutingTable
from wecross.sim.model import LinkSpec


class ConvergenceTracker:
    """Follows, incrementally, how many routers hold the newest record of how many others.

    Fed by every directory's observer (holder, router id, version stored). ``current[h]`` counts the running routers
    whose newest record ``h`` holds; the network's record state is converged when that count is the number of
    running routers for every running router. A store costs O(1). A publish costs one look-up per running router:
    which of them held the version it supersedes is read from their directories (``held``) rather than kept in a
    set per record, which at 5,000 routers would be 25 million entries.
    """

    def __init__(self, held: Callable[[str, str], Version | None] | None = None) -> None:
        #: (holder, router id) -> the version the holder's directory holds, or None.
        self.held = held or (lambda holder, router_id: None)
        self.live: set[str] = set()
        self.latest: dict[str, Version] = {}
        self.current: dict[str, int] = {}
        self.total_current = 0
        self.complete = 0  # running routers whose current == len(live)
        self.publishes = 0

    def _add(self, holder: str, delta: int) -> None:
        old = self.current.get(holder, 0)
        value = old + delta
        self.current[holder] = value
        if holder in self.live:
            self.total_current += delta
            n = len(self.live)
            self.complete += (value == n) - (old == n)

    def _recount(self) -> None:
        n = len(self.live)
        self.complete = sum(1 for h in self.live if self.current.get(h, 0) == n)
        self.total_current = sum(self.current.get(h, 0) for h in self.live)

    def observer(self, holder: str) -> Callable[[str, Version], None]:
        def stored(router_id: str, version: Version) -> None:
            self.stored(holder, router_id, version)

        return stored

    def stored(self, holder: str, router_id: str, version: Version) -> None:
        if router_id not in self.live:
            return
        if holder == router_id:
            self.publishes += 1
            previous = self.latest.get(router_id)
            self.latest[router_id] = version
            if previous is None:
                self._add(holder, 1)
                return
            # Everyone else who held the superseded version no longer holds the newest one. The publisher's own
            # directory already holds the new version, so it is skipped (it stays current).
            for other in self.live:
                if other != holder and self.held(other, router_id) == previous:
                    self._add(other, -1)
            return
        if self.latest.get(router_id) == version:
            self._add(holder, 1)

    def router_up(self, router_id: str) -> None:
        """A router (re)starts with an empty directory; its own record arrives through ``stored``."""
        self.live.add(router_id)
        self.current[router_id] = 0
        self.latest.pop(router_id, None)
        self._recount()

    def router_down(self, router_id: str) -> None:
        latest = self.latest.pop(router_id, None)
        self.live.discard(router_id)
        if latest is not None:
            for other in self.live:
                if self.held(other, router_id) == latest:
                    self.current[other] = self.current.get(other, 0) - 1
        self.current.pop(router_id, None)
        self._recount()

    @property
    def records_converged(self) -> bool:
        return bool(self.live) and self.complete == len(self.live)

    @property
    def share(self) -> float:
        n = len(self.live)
        return self.total_current / (n * n) if n else 0.0


@dataclass(frozen=True, slots=True)
class _TruthLink:
    peer: str
    srtt_ms: float | None
    loss: float | None
    bandwidth_bps: float | None
    flaps: int = 0


@dataclass(frozen=True, slots=True)
class _TruthRecord:
    router_id: str
    zones: tuple[str, ...]
    transit: bool
    links: tuple[_TruthLink, ...]


def truth_graph(
    routers: Mapping[str, tuple[tuple[str, ...], bool]], links: Iterable[LinkSpec], live: set[str]
) -> Any:
    """The routing graph as it would be with perfect measurements: RTT twice the one-way latency, the true loss
    and bandwidth (unlimited: no serialisation time), no flaps; only running routers and links that are up."""
    adjacent: dict[str, list[_TruthLink]] = {rid: [] for rid in routers if rid in live}
    for spec in links:
        if not spec.up or spec.a not in live or spec.b not in live:
            continue
        bandwidth = spec.bandwidth_mbps * 1e6 if spec.bandwidth_mbps is not None else math.inf
        for u, v in ((spec.a, spec.b), (spec.b, spec.a)):
            adjacent[u].append(_TruthLink(v, 2 * spec.latency_ms, spec.loss, bandwidth))
    records = {rid: _TruthRecord(rid, routers[rid][0], routers[rid][1], tuple(ls)) for rid, ls in adjacent.items()}
    return build_graph(records)


def optimal_cost(graph: Any, source: str, chain: str, servers: Iterable[str]) -> float | None:
    table = RoutingTable(source, hysteresis=0.0)
    table.rebuild(graph, {chain: list(servers)})
    route = table.route(chain)
    return None if route is None else route.cost


def path_cost(graph: Any, path: Iterable[str]) -> float | None:
    """The true cost of a path, None if one of its links does not exist (down, or a router is gone)."""
    nodes = list(path)
    total = 0.0
    for u, v in itertools.pairwise(nodes):
        data = graph.get_edge_data(u, v)
        if data is None:
            return None
        total += float(data["weight"])
    return total


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100.0 * len(ordered)) - 1))
    return ordered[index]
