"""One router's routes: for every chain the replica to use and the next hop towards it, for every router the next hop.

Rebuilt from the overlay graph (:func:`wecross.routing.graph.build_graph`) whenever the directory changes; between
rebuilds, forwarding is a dict look-up. Three rules shape the choices:

- **Transit.** A router whose record says ``transit = False`` can be a destination but never relays: its out-edges
  are ignored (except our own, since we are the source, not a relay).
- **Zones.** A router relays only between neighbours of its own zones: a hop into a router that shares no zone with
  the previous one ends there (that router can be the destination, not a relay). So two routers of different
  zones linked directly talk to each other, but traffic between zones crosses routers that belong to both (border
  routers). The search runs on a graph where each router has a second, terminal copy (``id`` + ``#``, never a
  valid router id) entered by such inter-zone hops.
- **Stability.** Measurements wobble; routes must not. A route stays while its path is intact and the best new one
  is not cheaper by more than ``hysteresis`` (a fraction of the current route's cost, re-measured). A route whose
  path broke (a link or router gone, a relay no longer transit) moves to the best one at once.
- **Determinism.** Equal costs are broken by router id (smallest first), both between paths and between replicas,
  so two runs over the same inputs choose the same routes bit for bit, whatever order the graph was built in. The
  shortest-path search is written out here rather than taken from networkx because networkx breaks ties by
  insertion order.

Sans-IO: no clock, no reactor; the caller decides when to rebuild (debounced on directory change).
"""

from __future__ import annotations

import heapq
import weakref
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NamedTuple

#: Routes computed on demand (:meth:`RoutingTable.path_to`, :meth:`RoutingTable.alternatives`) are cached until the
#: next rebuild; a relay asks with each request's path, so the cache is bounded and forgets the oldest first.
CACHE_LIMIT = 4096

Adjacency = dict[str, dict[str, float]]
_INF = float("inf")
#: Suffix of a router's terminal copy in the search graph: reached by an inter-zone hop, it cannot relay.
_TERMINAL = "#"


def _real(key: str) -> str:
    return key[:-1] if key.endswith(_TERMINAL) else key


class Route(NamedTuple):
    """A way to ``destination``: ``path`` runs from the local router to it, ``next_hop`` is ``path[1]``.

    For the local router itself the path is just ``(local,)``, the next hop is the local router and the cost 0:
    "serve it here". ``chain`` is the chain path the route was chosen for, None for a route to a router. A named
    tuple rather than a dataclass: a rebuild makes one per reachable router, and tuples are built several times
    faster.
    """

    chain: str | None
    destination: str
    next_hop: str
    path: tuple[str, ...]
    cost: float

    def as_row(self) -> dict[str, Any]:
        return {"destination": self.destination, "next_hop": self.next_hop, "path": list(self.path),
                "hops": len(self.path) - 1, "cost": round(self.cost, 3)}


@dataclass(frozen=True, slots=True)
class RouteChange:
    """A chain whose route is new, moved (another destination, next hop or path) or lost."""

    chain: str
    old: Route | None
    new: Route | None

    @property
    def kind(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "lost"
        return "moved"


@dataclass(frozen=True, slots=True)
class RouteChanges:
    """What a rebuild changed, for the router to log and count: chain routes (in chain order) and how many routers'
    next hops changed."""

    changes: tuple[RouteChange, ...] = ()
    next_hops_changed: int = 0
    reachable: int = 0

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def __iter__(self) -> Iterator[RouteChange]:
        return iter(self.changes)

    @property
    def chains(self) -> tuple[str, ...]:
        return tuple(change.chain for change in self.changes)


#: graph -> {None or a non-transit local id: adjacency}. The adjacency depends on the local router only when that
#: router does not relay (its own out-edges are kept); routers reading the same graph object (the simulator shares
#: graphs between routers with equal directories) share one read-only adjacency instead of one each.
_ADJACENCIES: weakref.WeakKeyDictionary[Any, dict[str | None, Adjacency]] = weakref.WeakKeyDictionary()


def _shared_adjacency(graph: Any, local_id: str) -> Adjacency:
    local_transit = graph.nodes[local_id].get("transit", True) if local_id in graph else True
    key = None if local_transit else local_id
    try:
        per_graph = _ADJACENCIES.setdefault(graph, {})
    except TypeError:  # a graph type without weak references: no sharing
        return _adjacency(graph, local_id)
    adj = per_graph.get(key)
    if adj is None:
        adj = per_graph[key] = _adjacency(graph, local_id)
    return adj


def _adjacency(graph: Any, local_id: str) -> Adjacency:
    """The graph as plain dicts of edge weights for the search: the out-edges of non-transit routers (other than the
    local one) and edges of infinite weight left out, and an edge to a router sharing no zone with its tail pointing
    at the head's terminal copy. Read once per rebuild so that searches and path checks are plain dict look-ups. An
    edge without a weight counts 1; a router without zones shares a zone with everyone (zones unused)."""
    transit = dict(graph.nodes(data="transit", default=True))
    zones = {node: frozenset(z or ()) for node, z in graph.nodes(data="zones", default=())}
    adj: Adjacency = {}
    for u, neighbours in graph.adjacency():
        out: dict[str, float] = {}
        adj[u] = out
        if u != local_id and not transit[u]:
            continue
        zones_u = zones[u]
        for v, data in neighbours.items():
            weight = data.get("weight", 1.0)
            if 0.0 <= weight < _INF:
                if v != u:
                    zones_v = zones[v]
                    same_zone = not zones_u or not zones_v or not zones_u.isdisjoint(zones_v)
                    out[v if same_zone else v + _TERMINAL] = weight
            elif not weight >= 0.0:  # negative or NaN: Dijkstra would be wrong, and silently
                raise ValueError(f"edge {u} -> {v} has weight {weight!r}; weights must be numbers >= 0")
    return adj


def _dijkstra(
    adj: Adjacency, source: str, blocked: Collection[str] = (), targets: set[str] | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """Costs of the routers reached from ``source`` (in the order they were settled) and each one's predecessor.

    ``blocked`` routers are treated as absent. With ``targets`` the search stops once all of them are settled.
    Ties: the heap orders equal costs by router id, and among equal-cost predecessors the smallest id wins, so the
    result does not depend on the order of the adjacency dicts.
    """
    settled: dict[str, float] = {}
    tentative: dict[str, float] = {source: 0.0}
    pred: dict[str, str] = {}
    heap: list[tuple[float, str]] = [(0.0, source)]
    remaining = set(targets) if targets is not None else None
    empty: dict[str, float] = {}
    while heap:
        cost, u = heapq.heappop(heap)
        if u in settled:
            continue
        settled[u] = cost
        if remaining is not None:
            remaining.discard(u)
            if not remaining:
                break
        for v, weight in adj.get(u, empty).items():
            if v in settled or v in blocked:
                continue
            new = cost + weight
            old = tentative.get(v)
            if old is None or new < old:
                tentative[v] = new
                pred[v] = u
                heapq.heappush(heap, (new, v))
            elif new == old and u < pred[v]:
                pred[v] = u
    return settled, pred


def _walk(pred: Mapping[str, str], source: str, target: str) -> tuple[str, ...]:
    path = [target]
    while path[-1] != source:
        path.append(pred[path[-1]])
    path.reverse()
    return tuple(_real(key) for key in path)


def _path_cost(adj: Adjacency, path: tuple[str, ...]) -> float | None:
    """What ``path`` costs in the current graph, or None when it broke (a link gone, or a relay that stopped
    relaying: its out-edges are absent from ``adj``)."""
    total = 0.0
    last = len(path) - 2
    for i, (u, v) in enumerate(pairwise(path)):
        out = adj.get(u, {})
        weight = out.get(v)
        if weight is None and i == last:  # only the final hop may enter a router of another zone
            weight = out.get(v + _TERMINAL)
        if weight is None:
            return None
        total += weight
    return total


class RoutingTable:
    """Routes from ``local_id`` to every reachable router and to the best replica of every chain.

    ``hysteresis`` is the fraction by which a new path must beat the current one before a route moves (0.2: the
    new path must be more than 20 % cheaper); 0 moves on any strict improvement and keeps the current route on ties.
    """

    def __init__(self, local_id: str, *, hysteresis: float = 0.2) -> None:
        if not 0.0 <= hysteresis < 1.0:
            raise ValueError(f"hysteresis must be a fraction in [0, 1), not {hysteresis!r}")
        self.local_id = local_id
        self.hysteresis = hysteresis
        self._local = Route(None, local_id, local_id, (local_id,), 0.0)
        self._adj: Adjacency = {}
        self._dest: dict[str, Route] = {local_id: self._local}
        self._replicas: dict[str, tuple[str, ...]] = {}
        self._chains: dict[str, Route] = {}
        self._cache: dict[tuple[str, frozenset[str]], Route | None] = {}
        self.rebuilds = 0

    # -- rebuilding -------------------------------------------------------------------------------------------------

    def _beats(self, new_cost: float, current_cost: float) -> bool:
        """Whether a new route is worth moving to: cheaper by more than the hysteresis fraction."""
        return new_cost < current_cost * (1.0 - self.hysteresis)

    def rebuild(self, graph: Any, chains: Mapping[str, Iterable[str]]) -> RouteChanges:
        """Recompute every route from ``graph`` (a ``networkx.DiGraph`` with ``weight`` on edges and ``transit`` on
        nodes, as :func:`~wecross.routing.graph.build_graph` makes) and ``chains`` (chain path -> routers serving
        it); returns the chains whose route changed."""
        local = self.local_id
        adj = _shared_adjacency(graph, local)
        settled, pred = _dijkstra(adj, local)

        dest: dict[str, Route] = {local: self._local}
        paths: dict[str, tuple[str, ...]] = {local: (local,)}
        next_hops_changed = 0
        for key, cost in settled.items():
            if key == local:
                continue
            v = _real(key)
            path = paths[pred[key]] + (v,)
            paths[key] = path
            if v in dest:
                continue  # settled in cost order: the router's other copy was reached at least as cheaply
            route = Route(None, v, path[1], path, cost)
            current = self._dest.get(v)
            if current is not None and current.path != path:
                current_cost = _path_cost(adj, current.path)
                if current_cost is not None and not self._beats(cost, current_cost):
                    route = current._replace(cost=current_cost)
            if current is None or current.next_hop != route.next_hop:
                next_hops_changed += 1
            dest[v] = route
        next_hops_changed += sum(1 for v in self._dest if v not in dest)

        replicas: dict[str, tuple[str, ...]] = {}
        for chain, routers in chains.items():
            if isinstance(routers, str):  # would silently become a set of one-letter router ids
                raise TypeError(f"chains[{chain!r}] must be a collection of router ids, not the string {routers!r}")
            replicas[chain] = tuple(sorted(set(routers)))
        chain_routes: dict[str, Route] = {}
        changes: list[RouteChange] = []
        for chain in sorted(replicas):
            old = self._chains.get(chain)
            candidates = [dest[r] for r in replicas[chain] if r in dest]
            new: Route | None = None
            if candidates:
                best = min(candidates, key=lambda r: (r.cost, r.destination))
                if old is not None and old.destination != best.destination and old.destination in replicas[chain]:
                    current = dest.get(old.destination)
                    # Only an intact route is worth keeping: the destination's route must still be the same path.
                    if current is not None and current.path == old.path and not self._beats(best.cost, current.cost):
                        best = current
                new = best._replace(chain=chain)
                chain_routes[chain] = new
            if (old is None) != (new is None) or (
                old is not None and new is not None and (old.destination, old.path) != (new.destination, new.path)
            ):
                changes.append(RouteChange(chain, old, new))
        changes.extend(RouteChange(chain, self._chains[chain], None)
                       for chain in sorted(self._chains) if chain not in replicas)
        changes.sort(key=lambda c: c.chain)

        self._adj = adj
        self._dest = dest
        self._replicas = replicas
        self._chains = chain_routes
        self._cache = {}
        self.rebuilds += 1
        return RouteChanges(tuple(changes), next_hops_changed, len(dest))

    # -- forwarding -------------------------------------------------------------------------------------------------

    def route(self, chain_path: str) -> Route | None:
        """The route for a chain: its chosen replica and the next hop there; None when no replica is reachable."""
        return self._chains.get(chain_path)

    def next_hop(self, destination_router: str) -> str | None:
        """The neighbour to send to for ``destination_router`` (the local id for the local router), or None when
        it is unreachable."""
        route = self._dest.get(destination_router)
        return route.next_hop if route is not None else None

    def replicas(self, chain_path: str) -> tuple[str, ...]:
        """The routers serving ``chain_path`` as of the last rebuild, reachable or not, by id."""
        return self._replicas.get(chain_path, ())

    def path_to(self, destination: str, avoid: Iterable[str] = ()) -> Route | None:
        """A route to ``destination`` through none of the ``avoid`` routers (the local router is never avoided).

        The current route is returned when it already avoids them (so a relay's choice is as stable as the
        table's); otherwise a shortest path on the graph without them is computed and cached until the next
        rebuild. None when ``destination`` is avoided or cannot be reached.
        """
        blocked = frozenset(avoid) - {self.local_id}
        current = self._dest.get(destination)
        if current is None or destination in blocked:
            return None
        if blocked.isdisjoint(current.path):
            return current
        key = (destination, blocked)
        if key in self._cache:
            return self._cache[key]
        return self._search(blocked, [destination])[destination]

    def alternatives(self, chain_path: str, avoid: Iterable[str] = ()) -> list[Route]:
        """Routes to every reachable replica of ``chain_path`` that pass through none of the ``avoid`` routers
        (neither as next hop, relay nor destination), best first.

        For failover (avoid the next hop that just failed) and for relays, which pass the request's path so a
        request never goes back the way it came. Each route is the current one when it avoids ``avoid``, else the
        shortest path without them (cached until the next rebuild, like :meth:`path_to`).
        """
        blocked = frozenset(avoid) - {self.local_id}
        found: list[Route | None] = []
        missing: list[str] = []
        for replica in self._replicas.get(chain_path, ()):
            current = self._dest.get(replica)
            if current is None or replica in blocked:
                continue
            if blocked.isdisjoint(current.path):
                found.append(current)
            elif (replica, blocked) in self._cache:
                found.append(self._cache[(replica, blocked)])
            else:
                missing.append(replica)
        if missing:
            found.extend(self._search(blocked, missing).values())
        routes = [route._replace(chain=chain_path) for route in found if route is not None]
        routes.sort(key=lambda r: (r.cost, r.destination))
        return routes

    def _search(self, blocked: frozenset[str], targets: list[str]) -> dict[str, Route | None]:
        """One shortest-path search without ``blocked`` for all ``targets``; the routes (None where unreachable)
        are returned and cached."""
        terminal = frozenset(t + _TERMINAL for t in blocked)
        keys = {t for target in targets for t in (target, target + _TERMINAL)}
        settled, pred = _dijkstra(self._adj, self.local_id, blocked | terminal, keys)
        found: dict[str, Route | None] = {}
        for target in targets:
            route: Route | None = None
            reached = [key for key in (target, target + _TERMINAL) if key in settled]
            if reached:
                key = min(reached, key=lambda k: (settled[k], k))
                path = _walk(pred, self.local_id, key)
                route = Route(None, target, path[1] if len(path) > 1 else self.local_id, path, settled[key])
            found[target] = route
            while len(self._cache) >= CACHE_LIMIT:
                del self._cache[next(iter(self._cache))]
            self._cache[(target, blocked)] = route
        return found

    # -- inspection -------------------------------------------------------------------------------------------------

    def reachable(self) -> int:
        """How many routers (the local one included) have a route."""
        return len(self._dest)

    def snapshot(self) -> list[dict[str, Any]]:
        """The table for ``GET /routes``: one ``kind = "chain"`` row per known chain (unreachable ones included,
        with ``reachable: false``), then one ``kind = "router"`` row per reachable router, each sorted by name."""
        rows: list[dict[str, Any]] = []
        for chain in sorted(self._replicas):
            route = self._chains.get(chain)
            row: dict[str, Any] = {"kind": "chain", "chain": chain, "replicas": list(self._replicas[chain]),
                                   "reachable": route is not None}
            if route is not None:
                row.update(route.as_row())
            rows.append(row)
        for destination in sorted(self._dest):
            rows.append({"kind": "router", **self._dest[destination].as_row()})
        return rows
