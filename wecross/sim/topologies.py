"""Where simulated networks come from: topology files (TOML, JSON, GraphML) and seeded generators.

Files let an operator try the network they mean to deploy: the TOML format is the one ``wecross configs`` expands,
extended with the physical properties of each link, so the same file feeds both. JSON is what generated networks
are saved as, so a run can be repeated on exactly the same graph. GraphML lets networks drawn in graph editors or
taken from topology collections be used as they are.

Generators build the standard shapes (line, ring, star, tree, grid, random geometric, Barabási-Albert, several
zones joined by border routers) at any size. Everything random is drawn from ``random.Random(seed)`` (and networkx
generators seeded from it), so one seed is one network.

```toml
[defaults.link]              # link properties every [[links]] entry starts from
latency_ms = 5.0
distribution = "normal"      # fixed | uniform | normal | exponential
jitter_ms = 1.0

[routers.router-a]
zones = ["payment"]
chains = ["bank-a"]

[[links]]
between = ["router-a", "router-b"]   # the first dials the second
latency_ms = 40.0                    # overrides the default
loss = 0.01
bandwidth_mbps = 10.0
up = false                           # starts cut
```
"""

from __future__ import annotations

import json
import math
import random
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypedDict, Unpack
from xml.etree.ElementTree import ParseError

import networkx as nx

from wecross.config import ConfigError
from wecross.sim.model import DISTRIBUTIONS, NAME, ROUTER_ID, LinkSpec, SimRouter, SimTopology

__all__ = [
    "INNER_KINDS",
    "KINDS",
    "LINK_KEYS",
    "GeneratorOptions",
    "barabasi_albert",
    "dump_json",
    "generate",
    "grid",
    "line",
    "load",
    "multi_zone",
    "random_geometric",
    "ring",
    "star",
    "tree",
]

#: Link properties a file may give per link or as defaults; the names and defaults are LinkSpec's.
LINK_KEYS = ("latency_ms", "distribution", "jitter_ms", "loss", "bandwidth_mbps", "up")
_BASE_LINK = LinkSpec("a", "b")
_LINK_DEFAULTS: dict[str, Any] = {key: getattr(_BASE_LINK, key) for key in LINK_KEYS}
#: Keys of [defaults] that only `wecross configs` uses; the simulator has no ports nor certificates.
_CONFIGS_ONLY = ("host", "p2p_base_port", "rest_base_port", "certs")


# --------------------------------------------------------------------------------------------------- loading


def load(path: str | Path) -> SimTopology:
    """A topology file, by its suffix: ``.toml``, ``.json`` or ``.graphml``.

    Every problem is a ConfigError naming the key, so the CLI can point at the line to fix.
    """
    source = Path(path)
    readers: dict[str, Callable[[Path], SimTopology]] = {
        ".toml": _load_toml, ".json": _load_json, ".graphml": _load_graphml,
    }
    reader = readers.get(source.suffix.lower())
    if reader is None:
        raise ConfigError(str(source), "", f"unknown topology format {source.suffix or '(no suffix)'!r}: "
                                           "expected a .toml, .json or .graphml file")
    return reader(source)


def _read_text(source: Path) -> str:
    try:
        return source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(source), "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(source), "", f"is not UTF-8 text: {exc}") from None


def _load_toml(source: Path) -> SimTopology:
    file = str(source)
    try:
        document = tomllib.loads(_read_text(source))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"is not valid TOML: {exc}") from None
    _only(file, "", document, ("defaults", "routers", "links"))
    link_defaults = _defaults(file, document.get("defaults", {}), allow_configs_keys=True)
    return _build(file, name=source.stem, source=file, routers=document.get("routers"),
                  links=document.get("links", []), link_defaults=link_defaults,
                  router_keys=("zones", "chains", "transit"), extra={})


def _load_json(source: Path) -> SimTopology:
    file = str(source)
    try:
        document = json.loads(_read_text(source))
    except json.JSONDecodeError as exc:
        raise ConfigError(file, "", f"is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(file, "", "expected a JSON object with routers and links")
    _only(file, "", document, ("name", "source", "extra", "defaults", "routers", "links"))
    name = document.get("name", source.stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(file, "name", "expected a non-empty string")
    extra = document.get("extra", {})
    if not isinstance(extra, dict):
        raise ConfigError(file, "extra", "expected an object")
    extra = dict(extra)
    origin = document.get("source")
    if origin is not None:
        if not isinstance(origin, str):
            raise ConfigError(file, "source", "expected a string")
        # The run's report names the file it was loaded from; where the network was first made stays visible.
        extra.setdefault("origin", origin)
    link_defaults = _defaults(file, document.get("defaults", {}), allow_configs_keys=True)
    return _build(file, name=name, source=file, routers=document.get("routers"), links=document.get("links", []),
                  link_defaults=link_defaults, router_keys=("zones", "chains", "transit", "pos"), extra=extra)


def _load_graphml(source: Path) -> SimTopology:
    """GraphML through networkx: zones and chains as comma-separated strings, x/y as the position.

    networkx forgets which end of an undirected edge came first, so there the router declared first among the nodes
    dials; a directed graph (edgedefault="directed") says it per edge, source dialling target.
    """
    file = str(source)
    try:
        graph = nx.read_graphml(source)
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror or exc}") from None
    except (ParseError, nx.NetworkXError, ValueError, KeyError) as exc:
        raise ConfigError(file, "", f"is not valid GraphML: {exc}") from None
    graph_data: dict[str, Any] = dict(graph.graph)
    node_defaults: dict[str, Any] = dict(graph_data.pop("node_default", {}) or {})
    edge_defaults: dict[str, Any] = dict(graph_data.pop("edge_default", {}) or {})
    _only(file, "graph", graph_data, ("name",))
    name = graph_data.get("name") or source.stem
    if not isinstance(name, str):
        raise ConfigError(file, "graph.name", "expected a string")
    # GraphML key defaults (<key><default>) are the format's own way of saying "every edge unless it says otherwise".
    edge_defaults.pop("id", None)
    link_defaults = _link_properties(file, "edge_default", edge_defaults)
    routers: dict[str, dict[str, Any]] = {}
    for node, attributes in graph.nodes(data=True):
        rid = str(node)
        key = f"routers.{rid}"
        data = {**node_defaults, **attributes}
        _only(file, key, data, ("zones", "chains", "transit", "x", "y"))
        router: dict[str, Any] = {}
        if "zones" in data:
            router["zones"] = _comma_list(file, f"{key}.zones", data["zones"])
        if "chains" in data:
            router["chains"] = _comma_list(file, f"{key}.chains", data["chains"])
        if "transit" in data:
            transit = data["transit"]
            if isinstance(transit, str) and transit.strip().lower() in ("true", "false"):
                transit = transit.strip().lower() == "true"
            router["transit"] = transit
        if "x" in data or "y" in data:
            if "x" not in data or "y" not in data:
                raise ConfigError(file, f"{key}.{'y' if 'x' in data else 'x'}", "x and y go together")
            router["pos"] = [_finite(file, f"{key}.x", data["x"]), _finite(file, f"{key}.y", data["y"])]
        routers[rid] = router
    links: list[dict[str, Any]] = []
    for u, v, attributes in graph.edges(data=True):
        entry = {k: val for k, val in attributes.items() if k != "id"}  # the edge element's id: only a label
        entry["between"] = [str(u), str(v)]
        links.append(entry)
    return _build(file, name=name, source=file, routers=routers, links=links, link_defaults=link_defaults,
                  router_keys=("zones", "chains", "transit", "pos"), extra={})


def _comma_list(file: str, key: str, value: object) -> list[str]:
    if not isinstance(value, str):
        raise ConfigError(file, key, "expected a comma-separated string of names")
    return [part.strip() for part in value.split(",") if part.strip()]


def _only(file: str, prefix: str, table: Mapping[str, object], known: Sequence[str]) -> None:
    unknown = sorted(str(k) for k in table if k not in known)
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(file, key, f"unknown key (known: {', '.join(known)})")


def _defaults(file: str, table: object, *, allow_configs_keys: bool) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(file, "defaults", "expected a table")
    known = ("link", *_CONFIGS_ONLY) if allow_configs_keys else ("link",)
    _only(file, "defaults", table, known)
    link = table.get("link", {})
    if not isinstance(link, dict):
        raise ConfigError(file, "defaults.link", "expected a table of link properties")
    return _link_properties(file, "defaults.link", link)


def _finite(file: str, key: str, value: object) -> float:
    # bool is an int to Python, never a number to a person writing a file.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(file, key, "expected a number")
    return float(value)


def _link_properties(file: str, prefix: str, table: Mapping[str, object]) -> dict[str, Any]:
    """Checked link properties, only those given (merging defaults is the caller's job)."""
    _only(file, prefix, table, LINK_KEYS)
    props: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}.{name}"
        if name in ("latency_ms", "jitter_ms"):
            number = _finite(file, key, value)
            if number < 0:
                raise ConfigError(file, key, "expected milliseconds >= 0")
            props[name] = number
        elif name == "loss":
            number = _finite(file, key, value)
            if not 0.0 <= number < 1.0:
                raise ConfigError(file, key, "expected a share of lost transmissions in [0, 1)")
            props[name] = number
        elif name == "bandwidth_mbps":
            if value is None:  # JSON null: unlimited, even when the defaults set a rate
                props[name] = None
                continue
            number = _finite(file, key, value)
            if not number > 0:
                raise ConfigError(file, key, "expected megabits per second > 0 (leave it out for unlimited)")
            props[name] = number
        elif name == "distribution":
            if value not in DISTRIBUTIONS:
                raise ConfigError(file, key, f"expected one of {', '.join(DISTRIBUTIONS)}")
            props[name] = value
        else:  # up
            if not isinstance(value, bool):
                raise ConfigError(file, key, "expected true or false")
            props[name] = value
    return props


def _build(file: str, *, name: str, source: str, routers: object, links: object, link_defaults: Mapping[str, Any],
           router_keys: Sequence[str], extra: dict[str, object]) -> SimTopology:
    """The checks every format shares, on a document already shaped like the JSON format."""
    if not isinstance(routers, dict) or not routers:
        raise ConfigError(file, "routers", "expected at least one router")
    parsed: dict[str, SimRouter] = {}
    served: dict[str, str] = {}
    for rid, spec in routers.items():
        key = f"routers.{rid}"
        if not isinstance(rid, str) or not ROUTER_ID.match(rid):
            raise ConfigError(file, key, "router ids are lowercase DNS labels (letters, digits, '-')")
        if not isinstance(spec, dict):
            raise ConfigError(file, key, "expected a table")
        _only(file, key, spec, router_keys)
        zones = _names(file, f"{key}.zones", spec.get("zones"), "zone")
        if not zones:
            raise ConfigError(file, f"{key}.zones", "expected a non-empty list of zone names")
        chains = _names(file, f"{key}.chains", spec.get("chains", []), "chain")
        for chain in chains:
            # A chain lives in its router's first zone; two routers serving one zone.chain would be a clash.
            path = f"{zones[0]}.{chain}"
            if path in served:
                raise ConfigError(file, f"{key}.chains", f"chain {path} is already served by {served[path]}")
            served[path] = rid
        transit = spec.get("transit", True)
        if not isinstance(transit, bool):
            raise ConfigError(file, f"{key}.transit", "expected true or false")
        pos: tuple[float, float] | None = None
        if "pos" in spec:
            raw = spec["pos"]
            if not isinstance(raw, list | tuple) or len(raw) != 2:
                raise ConfigError(file, f"{key}.pos", "expected [x, y]")
            pos = (_finite(file, f"{key}.pos", raw[0]), _finite(file, f"{key}.pos", raw[1]))
        parsed[rid] = SimRouter(rid, zones, chains, transit, pos)
    if not isinstance(links, list):
        raise ConfigError(file, "links", "expected a list of links")
    specs: list[LinkSpec] = []
    seen: set[frozenset[str]] = set()
    for i, entry in enumerate(links):
        key = f"links[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(file, key, "expected a table with between = [a, b]")
        pair = entry.get("between")
        if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(p, str) for p in pair):
            raise ConfigError(file, f"{key}.between", "expected two router ids")
        a, b = pair
        if a == b:
            raise ConfigError(file, f"{key}.between", f"a link joins two different routers, not {a} to itself")
        for rid in pair:
            if rid not in parsed:
                raise ConfigError(file, f"{key}.between", f"unknown router {rid!r}")
        if frozenset(pair) in seen:
            raise ConfigError(file, f"{key}.between", f"link {a} - {b} is listed twice")
        seen.add(frozenset(pair))
        props = {**_LINK_DEFAULTS, **link_defaults,
                 **_link_properties(file, key, {k: v for k, v in entry.items() if k != "between"})}
        try:
            specs.append(LinkSpec(a, b, **props))
        except ValueError as exc:  # every property was checked above; this is only a safety net
            raise ConfigError(file, key, str(exc)) from None
    return SimTopology(name=name, routers=parsed, links=tuple(specs), source=source, extra=extra)


def _names(file: str, key: str, value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and NAME.match(v) for v in value):
        raise ConfigError(file, key, f"expected a list of {what} names (letters, digits, '_', '-')")
    if len(set(value)) != len(value):
        raise ConfigError(file, key, f"a {what} is listed twice")
    return tuple(value)


# --------------------------------------------------------------------------------------------------- saving


def dump_json(topology: SimTopology, path: str | Path) -> None:
    """Write the JSON format, one router or link a line, so a generated network can be kept, diffed and reloaded.

    The most common value of each link property goes to ``defaults.link`` and links only say how they differ, which
    keeps a thousand-router file readable without losing a digit: floats are written with repr, which round-trips.
    """
    defaults: dict[str, Any] = {}
    for key in LINK_KEYS:
        values = [getattr(link, key) for link in topology.links]
        if values:
            counts: dict[Any, int] = {}
            for value in values:
                counts[value] = counts.get(value, 0) + 1
            common = max(counts, key=lambda v: (counts[v], v == _LINK_DEFAULTS[key]))
            if common != _LINK_DEFAULTS[key]:
                defaults[key] = common
    effective = {**_LINK_DEFAULTS, **defaults}
    head: dict[str, Any] = {"name": topology.name,
                            "source": str(topology.extra.get("origin", topology.source))}
    extra = {k: v for k, v in topology.extra.items() if k != "origin" and _jsonable(v)}
    if extra:
        head["extra"] = extra
    if defaults:
        head["defaults"] = {"link": defaults}
    lines = ["{"]
    lines += [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append('  "routers": {')
    rows = []
    for rid, router in topology.routers.items():
        entry: dict[str, Any] = {"zones": list(router.zones)}
        if router.chains:
            entry["chains"] = list(router.chains)
        if not router.transit:
            entry["transit"] = False
        if router.pos is not None:
            entry["pos"] = list(router.pos)
        rows.append(f"    {json.dumps(rid)}: {json.dumps(entry)}")
    lines.append(",\n".join(rows))
    lines.append("  },")
    lines.append('  "links": [')
    rows = []
    for link in topology.links:
        item: dict[str, Any] = {"between": [link.a, link.b]}
        item.update({k: getattr(link, k) for k in LINK_KEYS if getattr(link, k) != effective[k]})
        rows.append(f"    {json.dumps(item)}")
    if rows:
        lines.append(",\n".join(rows))
    lines.append("  ]")
    lines.append("}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# --------------------------------------------------------------------------------------------------- generators


class GeneratorOptions(TypedDict, total=False):
    """Options every generator takes: the seed, the links' physical properties, and how many chains to embed."""

    seed: int
    latency_ms: float
    distribution: str
    jitter_ms: float
    loss: float
    bandwidth_mbps: float | None
    #: > 0: each link's latency is drawn uniformly in latency_ms * (1 ± spread), so links differ.
    latency_spread: float
    #: How many routers serve an embedded chain ("ledger0", "ledger1", ...); 0 for none.
    chains: int


KINDS = ("line", "ring", "star", "tree", "grid", "geometric", "ba", "multizone")
#: Shapes multi_zone can build inside each zone.
INNER_KINDS = ("ba", "line", "ring", "star", "tree")


class _Style:
    """The generator options, checked once, and the link factory they define."""

    def __init__(self, options: GeneratorOptions) -> None:
        unknown = sorted(set(options) - set(GeneratorOptions.__optional_keys__))
        if unknown:
            known = ", ".join(sorted(GeneratorOptions.__optional_keys__))
            raise ValueError(f"unknown option {unknown[0]!r} (known: {known})")
        self.seed = _int_option("seed", options.get("seed", 0), minimum=None)
        self.chains = _int_option("chains", options.get("chains", 1), minimum=0)
        self.latency_ms = _float_option("latency_ms", options.get("latency_ms", 1.0))
        self.jitter_ms = _float_option("jitter_ms", options.get("jitter_ms", 0.0))
        self.loss = _float_option("loss", options.get("loss", 0.0))
        if not self.loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        self.spread = _float_option("latency_spread", options.get("latency_spread", 0.0))
        if self.spread > 1.0:
            raise ValueError("latency_spread must be in [0, 1] (a share of latency_ms)")
        self.distribution = options.get("distribution", "fixed")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}")
        bandwidth = options.get("bandwidth_mbps")
        self.bandwidth_mbps = None if bandwidth is None else _float_option("bandwidth_mbps", bandwidth)
        if self.bandwidth_mbps is not None and not self.bandwidth_mbps > 0:
            raise ValueError("bandwidth_mbps must be > 0 (or None: unlimited)")

    def link(self, a: str, b: str, rng: random.Random) -> LinkSpec:
        latency = self.latency_ms
        if self.spread > 0:
            latency = rng.uniform(latency * (1 - self.spread), latency * (1 + self.spread))
        return LinkSpec(a, b, latency_ms=latency, distribution=self.distribution, jitter_ms=self.jitter_ms,
                        loss=self.loss, bandwidth_mbps=self.bandwidth_mbps)


def _int_option(name: str, value: object, minimum: int | None = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
    return value


def _float_option(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, not {value!r}")
    return float(value)


def _call(function: str, params: Mapping[str, object]) -> str:
    return f"{function}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


def _assemble(name: str, function: str, params: dict[str, object], style: _Style, rng: random.Random, count: int,
              edges: Iterable[tuple[int, int]], zones: Sequence[tuple[str, ...]], chain_hosts: Sequence[int],
              pos: Sequence[tuple[float, float]] | None = None) -> SimTopology:
    """Numbered nodes to a SimTopology: ids zero-padded so they sort in numeric order, links from the lower id."""
    width = max(4, len(str(count - 1)))
    ids = [f"r{i:0{width}d}" for i in range(count)]
    chains_at: dict[int, list[str]] = {}
    for k, host in enumerate(chain_hosts):
        chains_at.setdefault(host, []).append(f"ledger{k}")
    routers = {
        ids[i]: SimRouter(ids[i], zones[i], tuple(chains_at.get(i, ())), True, None if pos is None else pos[i])
        for i in range(count)
    }
    pairs = sorted({(min(u, v), max(u, v)) for u, v in edges if u != v})
    # Latencies are drawn after the shape, in link order, so the shape does not depend on latency_spread.
    links = tuple(style.link(ids[a], ids[b], rng) for a, b in pairs)
    params = {**params, "seed": style.seed}
    return SimTopology(name=name, routers=routers, links=links, source=_call(function, params),
                       extra={"generator": function, "seed": style.seed})


def _far_hosts(count: int, edges: Iterable[tuple[int, int]], chains: int) -> list[int]:
    """Chain hosts far from r0000 (ties: the highest index), so requests from the first routers cross the network."""
    if chains == 0:
        return []
    adjacency: dict[int, list[int]] = {i: [] for i in range(count)}
    for u, v in edges:
        adjacency[u].append(v)
        adjacency[v].append(u)
    distance = {0: 0}
    frontier = [0]
    while frontier:
        following = []
        for node in frontier:
            for other in adjacency[node]:
                if other not in distance:
                    distance[other] = distance[node] + 1
                    following.append(other)
        frontier = following
    order = sorted(range(count), key=lambda i: (-distance.get(i, count), -i))
    return [order[k % count] for k in range(chains)]


def _single_zone(name: str, function: str, params: dict[str, object], count: int,
                 shape: Callable[[random.Random], list[tuple[int, int]]], options: GeneratorOptions,
                 pos: Callable[[random.Random], list[tuple[float, float]]] | None = None) -> SimTopology:
    style = _Style(options)
    rng = random.Random(style.seed)
    positions = pos(rng) if pos is not None else None
    edges = shape(rng)
    return _assemble(name, function, params, style, rng, count, edges, [("z0",)] * count,
                     _far_hosts(count, edges, style.chains), positions)


def _edges(graph: Any) -> list[tuple[int, int]]:
    return [(int(u), int(v)) for u, v in graph.edges()]


def _line_edges(n: int) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(n - 1)]


def _ring_edges(n: int) -> list[tuple[int, int]]:
    # Below three routers a ring is a line (two routers would otherwise get the same link twice).
    return _line_edges(n) + ([(n - 1, 0)] if n >= 3 else [])


def _star_edges(n: int) -> list[tuple[int, int]]:
    return [(0, i) for i in range(1, n)]


def _tree_edges(n: int, branching: int) -> list[tuple[int, int]]:
    return _edges(nx.full_rary_tree(branching, n))


def _ba_edges(n: int, m: int, seed: int) -> list[tuple[int, int]]:
    if n <= m:  # too few routers for m links each: everyone links to everyone
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    return _edges(nx.barabasi_albert_graph(n, m, seed=seed))


def _inner_edges(kind: str, n: int, rng: random.Random, m: int, branching: int) -> list[tuple[int, int]]:
    if kind == "ba":
        return _ba_edges(n, m, rng.randrange(2**32))
    if kind == "line":
        return _line_edges(n)
    if kind == "ring":
        return _ring_edges(n)
    if kind == "star":
        return _star_edges(n)
    if kind == "tree":
        return _tree_edges(n, branching)
    raise ValueError(f"inner must be one of {', '.join(INNER_KINDS)}, not {kind!r}")


def line(n: int, **options: Unpack[GeneratorOptions]) -> SimTopology:
    """r0000 - r0001 - ... : the longest paths, for convergence time against hop count."""
    _int_option("n", n)
    return _single_zone(f"line-{n}", "line", {"n": n}, n, lambda _: _line_edges(n), options)


def ring(n: int, **options: Unpack[GeneratorOptions]) -> SimTopology:
    """A line closed on itself: every router has two ways out, so one cut link reroutes instead of partitioning."""
    _int_option("n", n)
    return _single_zone(f"ring-{n}", "ring", {"n": n}, n, lambda _: _ring_edges(n), options)


def star(n: int, **options: Unpack[GeneratorOptions]) -> SimTopology:
    """r0000 is the hub every leaf links to: the load on one router, and what its failure does."""
    _int_option("n", n)
    return _single_zone(f"star-{n}", "star", {"n": n}, n, lambda _: _star_edges(n), options)


def tree(n: int, branching: int = 3, **options: Unpack[GeneratorOptions]) -> SimTopology:
    """A full ``branching``-ary tree rooted at r0000, filled level by level: no redundancy, logarithmic depth."""
    _int_option("n", n)
    _int_option("branching", branching)
    return _single_zone(f"tree-{n}", "tree", {"n": n, "branching": branching}, n,
                        lambda _: _tree_edges(n, branching), options)


def grid(rows: int, cols: int, **options: Unpack[GeneratorOptions]) -> SimTopology:
    """A rows x cols mesh, router ``row * cols + col`` at (col, row): many equal-cost paths."""
    _int_option("rows", rows)
    _int_option("cols", cols)

    def shape(_: random.Random) -> list[tuple[int, int]]:
        edges = [(r * cols + c, r * cols + c + 1) for r in range(rows) for c in range(cols - 1)]
        return edges + [(r * cols + c, (r + 1) * cols + c) for r in range(rows - 1) for c in range(cols)]

    def positions(_: random.Random) -> list[tuple[float, float]]:
        return [(float(c), float(r)) for r in range(rows) for c in range(cols)]

    return _single_zone(f"grid-{rows}x{cols}", "grid", {"rows": rows, "cols": cols}, rows * cols, shape, options,
                        positions)


def _geometric_radius(n: int) -> float:
    # The connectivity threshold of a random geometric graph is pi r^2 n = ln n; the margin (+4) makes a
    # disconnected draw rare even with the square's border effects, leaving few links to add afterwards.
    if n <= 1:
        return 1.0
    return min(1.0, math.sqrt((math.log(n) + 4.0) / (math.pi * n)))


def random_geometric(n: int, radius: float | None = None, **options: Unpack[GeneratorOptions]) -> SimTopology:
    """Routers at random points of the unit square, linked when within ``radius``: a physical, local network.

    Latency here does not follow distance (``latency_spread`` varies it); ``pos`` is kept for drawing. A draw that
    comes out disconnected gets the shortest missing links added, smallest component first, so it is always
    connected.
    """
    _int_option("n", n)
    if radius is not None and (isinstance(radius, bool) or not isinstance(radius, int | float) or not radius > 0):
        raise ValueError(f"radius must be a number > 0, not {radius!r}")
    r = float(radius) if radius is not None else _geometric_radius(n)
    points: list[tuple[float, float]] = []

    def positions(rng: random.Random) -> list[tuple[float, float]]:
        points.extend((rng.random(), rng.random()) for _ in range(n))
        return points

    def shape(_: random.Random) -> list[tuple[int, int]]:
        return _geometric_edges(points, r)

    return _single_zone(f"geometric-{n}", "random_geometric", {"n": n, "radius": r}, n, shape, options, positions)


def _geometric_edges(points: Sequence[tuple[float, float]], radius: float) -> list[tuple[int, int]]:
    # Buckets of side `radius`: only the 3x3 cells around a point can hold its neighbours, so this is linear in n
    # (no scipy needed for the KD-tree networkx would use).
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (x, y) in enumerate(points):
        cells.setdefault((int(x / radius), int(y / radius)), []).append(i)
    limit = radius * radius
    edges: list[tuple[int, int]] = []
    for i, (x, y) in enumerate(points):
        cx, cy = int(x / radius), int(y / radius)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for j in cells.get((cx + dx, cy + dy), ()):
                    if j > i and (points[j][0] - x) ** 2 + (points[j][1] - y) ** 2 <= limit:
                        edges.append((i, j))
    graph: nx.Graph[int] = nx.Graph()
    graph.add_nodes_from(range(len(points)))
    graph.add_edges_from(edges)
    components: list[set[int]] = [set(c) for c in nx.connected_components(graph)]
    while len(components) > 1:
        smallest = min(components, key=lambda c: (len(c), min(c)))
        _, u, v = min(
            ((points[u][0] - points[v][0]) ** 2 + (points[u][1] - points[v][1]) ** 2, u, v)
            for u in sorted(smallest) for v in range(len(points)) if v not in smallest
        )
        edges.append((u, v))
        other = next(c for c in components if v in c)
        components = [c for c in components if c is not smallest and c is not other] + [smallest | other]
    return edges


def barabasi_albert(n: int, m: int = 2, **options: Unpack[GeneratorOptions]) -> SimTopology:
    """Preferential attachment, each new router linking to ``m`` others: hubs and a long tail, like the Internet."""
    _int_option("n", n)
    _int_option("m", m)
    return _single_zone(f"ba-{n}", "barabasi_albert", {"n": n, "m": m}, n,
                        lambda rng: _ba_edges(n, m, rng.randrange(2**32)), options)


def multi_zone(sizes: Sequence[int], borders: int = 2, inner: str = "ba", *, m: int = 2, branching: int = 3,
               **options: Unpack[GeneratorOptions]) -> SimTopology:
    """Zones z0, z1, ... each shaped by ``inner``, every zone joined to the next by ``borders`` border routers.

    Border routers are extra (``sizes`` counts each zone's own routers), numbered after all zone routers, belong to
    both zones and link to two routers on each side (fewer in a one-router zone). Chains go one per zone first, on
    the zone's last router, then round again on the routers before it.
    """
    if isinstance(sizes, str | bytes) or not isinstance(sizes, Sequence) or not sizes:
        raise ValueError("sizes must be a non-empty list of zone sizes")
    for size in sizes:
        _int_option("zone size", size)
    if inner not in INNER_KINDS:
        raise ValueError(f"inner must be one of {', '.join(INNER_KINDS)}, not {inner!r}")
    _int_option("borders", borders, minimum=1 if len(sizes) > 1 else 0)
    _int_option("m", m)
    _int_option("branching", branching)
    style = _Style(options)
    rng = random.Random(style.seed)
    members: list[list[int]] = []
    zones: list[tuple[str, ...]] = []
    edges: list[tuple[int, int]] = []
    for z, size in enumerate(sizes):
        offset = len(zones)
        members.append(list(range(offset, offset + size)))
        zones.extend([(f"z{z}",)] * size)
        edges.extend((offset + u, offset + v) for u, v in _inner_edges(inner, size, rng, m, branching))
    for z in range(len(sizes) - 1):
        # Shuffled once per side, so the borders of one pair of zones attach to different routers when there are
        # enough of them: one router failing then cuts at most one border's links on that side.
        left = rng.sample(members[z], len(members[z]))
        right = rng.sample(members[z + 1], len(members[z + 1]))
        for k in range(borders):
            border = len(zones)
            zones.append((f"z{z}", f"z{z + 1}"))
            for side in (left, right):
                for target in {side[(2 * k) % len(side)], side[(2 * k + 1) % len(side)]}:
                    edges.append((target, border))
    chain_hosts = []
    for k in range(style.chains):
        zone = members[k % len(sizes)]
        chain_hosts.append(zone[-1 - (k // len(sizes)) % len(zone)])
    total = len(zones)
    name = f"{inner}-{total}" if len(sizes) == 1 else f"{inner}-{total}-{len(sizes)}zones"
    params: dict[str, object] = {"sizes": list(sizes), "borders": borders, "inner": inner}
    if inner == "ba":
        params["m"] = m
    if inner == "tree":
        params["branching"] = branching
    return _assemble(name, "multi_zone", params, style, rng, total, edges, zones, chain_hosts)


# --------------------------------------------------------------------------------------------------- CLI entry


_KIND_OPTIONS: dict[str, tuple[str, ...]] = {
    "line": (), "ring": (), "star": (), "tree": ("branching",), "grid": (), "geometric": ("radius",),
    "ba": ("m",), "multizone": ("borders", "inner", "m", "branching"),
}


def generate(kind: str, n: int, *, zones: int = 1, seed: int = 0, **options: Any) -> SimTopology:
    """The CLI's generator: a kind and a router count, ``zones > 1`` splitting it into joined zones.

    ``grid`` rounds n to a near-square rows x cols; with zones, every kind but multizone becomes a multi-zone
    network of that shape per zone (grid and geometric fall back to ba), the border routers included in n. Options
    given as None are left out, so a CLI can pass every flag it has.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown topology kind {kind!r} (kinds: {', '.join(KINDS)})")
    n = _int_option("n", n)
    zones = _int_option("zones", zones)
    given = {k: v for k, v in options.items() if v is not None}
    common = sorted(GeneratorOptions.__optional_keys__ - {"seed"})
    if kind == "multizone" and zones < 2:
        raise ValueError("multizone needs zones >= 2")
    if zones > 1:
        # Every kind becomes the shape inside each zone; those that make no sense cut into zones become ba.
        inner = kind if kind in INNER_KINDS else "ba"
        if kind == "multizone":
            inner = given.get("inner", "ba")
        allowed = {"borders", *(("inner",) if kind == "multizone" else ()),
                   *(("m",) if inner == "ba" else ()), *(("branching",) if inner == "tree" else ())}
    else:
        allowed = set(_KIND_OPTIONS[kind])
    unknown = sorted(k for k in given if k not in allowed and k not in common)
    if unknown:
        where = f"{kind} with {zones} zones" if zones > 1 else kind
        raise ValueError(f"unknown option {unknown[0]!r} for {where} (known: {', '.join(sorted({*common, *allowed}))})")
    call = f"generate({kind!r}, {n}, zones={zones}, seed={seed}{''.join(f', {k}={v!r}' for k, v in given.items())})"
    given["seed"] = seed
    topology: SimTopology
    if zones > 1:
        borders = _int_option("borders", given.pop("borders", 2))
        own = n - borders * (zones - 1)
        if own < zones:
            raise ValueError(f"n = {n} is too small for {zones} zones joined by {borders} border routers each")
        base, rest = divmod(own, zones)
        sizes = [base + 1] * rest + [base] * (zones - rest)
        given.pop("inner", None)
        topology = multi_zone(sizes, borders, inner, **given)
    elif kind == "grid":
        rows = max(1, round(math.sqrt(n)))
        cols = max(1, round(n / rows))
        topology = grid(rows, cols, **given)
    else:
        makers: dict[str, Callable[..., SimTopology]] = {
            "line": line, "ring": ring, "star": star, "tree": tree, "geometric": random_geometric,
            "ba": barabasi_albert,
        }
        topology = makers[kind](n, **given)
    return replace(topology, source=call)
