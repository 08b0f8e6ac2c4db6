"""Pictures of a simulation run: convergence over time, request latency, per-router load and the topology.

The numbers in the report say *whether* a network converged; the plots say *how* (a slow tail, one overloaded
border, a route that detours through another zone). Every plot is written even when its data is missing, as a
placeholder that says so, so a reader of a results directory never wonders whether a plot failed or was skipped.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas directly rather than through pyplot: the
simulator may run inside a process that has its own idea of matplotlib's backend, and pyplot's global figure
registry would keep every figure alive until closed. The result dict is read defensively (``.get`` with
defaults) because it may come back from a JSON file written by an older or partial run.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import networkx as nx  # type: ignore[import-untyped,unused-ignore]
import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, MaxNLocator

from wecross.sim.model import SimTopology

__all__ = ["write_plots"]

DPI = 100
WIDE = (10.0, 6.0)
#: Above this many routers networkx's spring layout is too slow (and needs scipy); zones are laid out separately.
SPRING_MAX = 300
#: Largest zone laid out by networkx's spring layout inside the per-zone layout; bigger zones get a radial BFS
#: layout refined by a sampled force pass (:func:`_refine`).
ZONE_SPRING_MAX = 200
MAX_ROUTES = 10
#: Latency samples spanning more than this ratio (max / min) get a logarithmic axis.
LOG_SPREAD = 50.0

Pos = dict[str, tuple[float, float]]


def write_plots(result: Mapping[str, Any], topology: SimTopology, out: Path, *, max_labels: int = 60) -> list[Path]:
    """Write ``convergence.png``, ``latency.png``, ``messages.png`` and ``topology.png`` into ``out``.

    One figure at a time is built, saved and cleared, so a 5,000-router topology plot is not held while the next
    figure is drawn.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    heading = f"{topology.name} ({len(topology.routers)} routers)"
    builders: list[tuple[str, Callable[[], Figure]]] = [
        ("convergence.png", lambda: _convergence(result, heading, len(topology.routers))),
        ("latency.png", lambda: _latency(result, heading)),
        ("messages.png", lambda: _messages(result, topology, heading)),
        ("topology.png", lambda: _topology(result, topology, max_labels)),
    ]
    paths: list[Path] = []
    for name, build in builders:
        fig = build()
        path = out / name
        FigureCanvasAgg(fig)  # attaches itself as fig.canvas
        fig.savefig(path, dpi=DPI)
        fig.clear()  # drop the artists now; nothing else holds the figure (no pyplot registry)
        paths.append(path)
    return paths


# --- reading the result ---------------------------------------------------------------------------------------------


def _section(result: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = result.get(key)
    return value if isinstance(value, Mapping) else {}


def _floats(values: Any) -> list[float]:
    """Finite numbers from a JSON-ish list; anything else (None, NaN, strings) is not a measurement."""
    if not isinstance(values, Sequence) or isinstance(values, str):
        return []
    numbers: list[float] = []
    for v in values:
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            numbers.append(float(v))
    return numbers


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _events(result: Mapping[str, Any]) -> list[tuple[float, str]]:
    events: list[tuple[float, str]] = []
    raw = _section(result, "scenario").get("events", [])
    for event in raw if isinstance(raw, Sequence) else []:
        if isinstance(event, Mapping) and (at := _number(event.get("at_s"))) is not None:
            events.append((at, str(event.get("label", ""))))
    return sorted(events)


def _figure(size: tuple[float, float] = WIDE) -> Figure:
    return Figure(figsize=size, dpi=DPI, layout="constrained")


def _placeholder(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=14, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


# --- convergence ----------------------------------------------------------------------------------------------------


def _convergence(result: Mapping[str, Any], heading: str, routers: int) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title(f"convergence — {heading}")
    timeline = _section(result, "timeline")
    t = _floats(timeline.get("t_s"))
    share = _floats(timeline.get("current_share"))
    converged = _floats(timeline.get("converged_routers"))
    n = min(len(t), len(share))
    events = _events(result)
    if n == 0:
        _placeholder(ax, "no timeline")
        return fig

    t, share = t[:n], share[:n]
    ax.plot(t, share, color="tab:blue", lw=1.6, label="current (router, record) pairs")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("virtual time (s)")
    ax.set_ylabel("share of (router, record) pairs current")
    ax.grid(True, alpha=0.3)
    handles: list[Any] = [Line2D([], [], color="tab:blue", lw=1.6, label="current share")]

    m = min(len(t), len(converged))
    if m:
        ax2 = ax.twinx()
        ax2.step(t[:m], converged[:m], where="post", color="tab:green", lw=1.2, alpha=0.8)
        ax2.set_ylim(0, max(routers, max(converged[:m]), 1) * 1.05)
        ax2.set_ylabel("converged routers")
        handles.append(Line2D([], [], color="tab:green", lw=1.2, label="converged routers"))

    for i, (at, label) in enumerate(events):
        ax.axvline(at, color="0.35", ls="--", lw=0.9)
        if i < 30:  # beyond that the labels are an unreadable smear; the lines still show the rhythm
            ax.text(at, 0.99, f" {label}", transform=ax.get_xaxis_transform(), rotation=90, va="top", ha="right",
                    fontsize=7, color="0.25")
    if events:
        handles.append(Line2D([], [], color="0.35", ls="--", lw=0.9, label="scenario event"))

    entries = _section_list(result, "convergence")
    done_x: list[float] = []
    missed_x: list[float] = []
    for entry in entries:
        at_conv = _number(entry.get("converged_at_s"))
        if at_conv is not None:
            y = float(np.interp(at_conv, t, share))
            done_x.append(at_conv)
            if len(entries) <= 15:
                took = _number(entry.get("time_s"))
                note = f"{entry.get('label', '')}" + (f" +{took:.3g}s" if took is not None else "")
                ax.annotate(note, (at_conv, y), xytext=(4, -12), textcoords="offset points", fontsize=7)
        elif (started := _number(entry.get("at_s"))) is not None:
            missed_x.append(started)
    if done_x:
        ax.plot(done_x, np.interp(done_x, t, share), "o", color="tab:red", ms=6, zorder=5)
        handles.append(Line2D([], [], marker="o", color="tab:red", ls="", label="converged"))
    if missed_x:
        ax.plot(missed_x, [0.0] * len(missed_x), "x", color="tab:red", ms=9, mew=2, zorder=5)
        handles.append(Line2D([], [], marker="x", color="tab:red", ls="", mew=2, label="never converged"))
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    return fig


def _section_list(result: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    raw = result.get(key)
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        return []
    return [entry for entry in raw if isinstance(entry, Mapping)]


# --- latency --------------------------------------------------------------------------------------------------------


def _latency(result: Mapping[str, Any], heading: str) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    requests = _section(result, "requests")
    samples = [s for s in _floats(requests.get("latency_samples_ms")) if s >= 0]
    counts = ", ".join(f"{key} {requests[key]}" for key in ("sent", "served", "failed") if key in requests)
    ax.set_title(f"request latency — {heading}" + (f"\n{counts}" if counts else ""))
    if not samples:
        _placeholder(ax, "no requests")
        return fig

    lo, hi = min(samples), max(samples)
    bins_n = max(5, min(60, int(math.sqrt(len(samples))) * 2))
    if lo > 0 and hi / lo > LOG_SPREAD:
        ax.hist(samples, bins=[float(b) for b in np.geomspace(lo, hi, bins_n + 1)], color="tab:blue", alpha=0.75)
        ax.set_xscale("log")
    else:
        ax.hist(samples, bins=bins_n, color="tab:blue", alpha=0.75)
    given = _section(requests, "latency_ms")
    for name, q, style in (("p50", 50.0, "--"), ("p99", 99.0, ":")):
        value = _number(given.get(name))
        if value is None:
            value = float(np.percentile(samples, q))
        ax.axvline(value, color="tab:red", ls=style, lw=1.5, label=f"{name} {value:.3g} ms")
    ax.set_xlabel("latency (ms, virtual time)")
    ax.set_ylabel("requests")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9)
    return fig


# --- per-router load ------------------------------------------------------------------------------------------------


def _messages(result: Mapping[str, Any], topology: SimTopology, heading: str) -> Figure:
    fig = _figure()
    per_router = _section(_section(result, "load"), "per_router")
    virtual_s = _number(_section(result, "run").get("virtual_s"))
    if not per_router:
        ax = fig.add_subplot()
        ax.set_title(f"per-router load — {heading}")
        _placeholder(ax, "no load data")
        return fig

    ids = sorted(set(topology.routers) | set(per_router))
    # Without a run length the totals are still worth a histogram; the axis says which it is.
    divisor, unit = (virtual_s, "/s") if virtual_s is not None and virtual_s > 0 else (1.0, " per run")
    msgs: list[float] = []
    sizes: list[float] = []
    for rid in ids:
        entry = per_router.get(rid)
        entry = entry if isinstance(entry, Mapping) else {}
        msgs.append((_number(entry.get("messages")) or 0.0) / divisor)
        sizes.append((_number(entry.get("bytes")) or 0.0) / divisor)

    fig.suptitle(f"per-router load — {heading}")
    left, right = fig.subplots(1, 2)
    _load_panel(left, ids, msgs, f"messages{unit}", "")
    _load_panel(right, ids, sizes, f"bytes{unit}", "B")
    return fig


def _load_panel(ax: Axes, ids: Sequence[str], values: Sequence[float], what: str, unit: str) -> None:
    ax.hist(values, bins=max(5, min(50, int(math.sqrt(len(values))) * 2)), color="tab:purple", alpha=0.75)
    mean = float(np.mean(values))
    top = int(np.argmax(values))
    short = EngFormatter(unit=unit, places=2)
    ax.axvline(mean, color="tab:orange", ls="--", lw=1.5, label=f"mean {short(mean)}")
    ax.axvline(values[top], color="tab:red", ls=":", lw=1.5,
               label=f"max {short(values[top])} ({ids[top]})")
    ax.xaxis.set_major_formatter(EngFormatter(unit=unit))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"{what} per router")
    ax.set_ylabel("routers")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


# --- topology -------------------------------------------------------------------------------------------------------


def _topology(result: Mapping[str, Any], topology: SimTopology, max_labels: int) -> Figure:
    fig = _figure((10.0, 8.0))
    ax = fig.add_subplot()
    n = len(topology.routers)
    zones = dict(sorted(topology.zones().items(), key=lambda item: _natural(item[0])))
    ax.set_title(f"{topology.name} — {n} routers, {len(topology.links)} links, {len(zones)} zones")
    ax.set_axis_off()
    if n == 0:
        _placeholder(ax, "no routers")
        return fig

    pos = layout(topology)
    colour = _zone_colours(list(zones))

    up = [(pos[ln.a], pos[ln.b]) for ln in topology.links if ln.up and ln.a in pos and ln.b in pos]
    down = [(pos[ln.a], pos[ln.b]) for ln in topology.links if not ln.up and ln.a in pos and ln.b in pos]
    thin = n > SPRING_MAX
    ax.add_collection(LineCollection(up, colors="0.55", linewidths=0.3 if thin else 0.8, alpha=0.35 if thin else 0.7,
                                     zorder=1))
    if down:
        ax.add_collection(LineCollection(down, colors="tab:red", linewidths=0.8, linestyles=":", alpha=0.7, zorder=1))

    size = 120.0 if n <= 100 else 50.0 if n <= SPRING_MAX else 18.0 if n <= 1000 else 6.0
    legend_handles: list[Any] = []
    for i, zone in enumerate(zones):
        members = [rid for rid, r in topology.routers.items() if r.zones[0] == zone and len(r.zones) == 1]
        if members:
            ax.scatter([pos[m][0] for m in members], [pos[m][1] for m in members], s=size, color=colour[zone],
                       edgecolors="none", zorder=2)
        if i < 12:
            legend_handles.append(Line2D([], [], marker="o", ls="", color=colour[zone],
                                         label=f"{zone} ({zones[zone]})"))
    if len(zones) > 12:
        legend_handles.append(Line2D([], [], ls="", label=f"… {len(zones) - 12} more zones"))

    borders = topology.borders()
    if borders:
        ax.scatter([pos[b][0] for b in borders], [pos[b][1] for b in borders], s=size * 2.5, marker="D",
                   color=[colour[topology.routers[b].zones[0]] for b in borders], edgecolors="black",
                   linewidths=0.8, zorder=3)
        legend_handles.append(Line2D([], [], marker="D", ls="", color="white", markeredgecolor="black",
                                     label=f"border ({len(borders)})"))
    serving = sorted(rid for rid, r in topology.routers.items() if r.chains)
    if serving:
        ax.scatter([pos[s][0] for s in serving], [pos[s][1] for s in serving], s=max(size * 3.5, 60.0), marker="*",
                   color=[colour[topology.routers[s].zones[0]] for s in serving], edgecolors="black",
                   linewidths=0.9, zorder=4)
        legend_handles.append(Line2D([], [], marker="*", ms=11, ls="", color="white", markeredgecolor="black",
                                     label=f"serves a chain ({len(serving)})"))

    route_handles = _draw_routes(ax, _section_list(_section(result, "routes"), "chosen"), pos)

    if n <= max_labels:
        for rid, (x, y) in pos.items():
            ax.annotate(rid, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7, zorder=6)

    ax.autoscale_view()
    ax.set_aspect("equal", adjustable="datalim")
    nodes_legend = ax.legend(handles=legend_handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
                             title="routers", title_fontsize=8)
    if route_handles:
        ax.add_artist(nodes_legend)
        ax.legend(handles=route_handles, loc="lower left", bbox_to_anchor=(1.0, 0.0), fontsize=8,
                  title="chosen routes", title_fontsize=8)
    return fig


def _draw_routes(ax: Axes, chosen: Sequence[Mapping[str, Any]], pos: Pos) -> list[Any]:
    """Overlay the sampled routes; earlier ones drawn thicker so a later route on the same links stays visible."""
    palette = colormaps["tab10"]
    handles: list[Any] = []
    for i, route in enumerate(chosen[:MAX_ROUTES]):
        path = route.get("path")
        hops = [str(h) for h in path] if isinstance(path, Sequence) and not isinstance(path, str) else []
        # A hop the topology does not know (a stale id) breaks the line instead of the plot.
        segments = [(pos[a], pos[b]) for a, b in pairwise(hops) if a in pos and b in pos]
        c = palette(i % 10)
        width = max(1.2, 4.0 - 0.3 * i)
        if segments:
            ax.add_collection(LineCollection(segments, colors=[c], linewidths=width, alpha=0.85, zorder=5,
                                             capstyle="round"))
        if hops and hops[0] in pos:
            ax.plot(*pos[hops[0]], "o", color=c, ms=width + 4, mec="black", mew=0.6, zorder=5)
        label = f"{route.get('from', hops[0] if hops else '?')} -> {route.get('chain', '?')}"
        cost, best = _number(route.get("cost")), _number(route.get("optimal_cost"))
        if cost is not None and best is not None and cost > best + 1e-9:
            label += f" (cost {cost:.3g} > {best:.3g})"
        handles.append(Line2D([], [], color=c, lw=width, label=label))
    return handles


def _zone_colours(zones: Sequence[str]) -> dict[str, Any]:
    """Distinct colours for up to 20 zones, then evenly spread hues (neighbouring zones still differ)."""
    if len(zones) <= 10:
        cmap = colormaps["tab10"]
        return {z: cmap(i) for i, z in enumerate(zones)}
    if len(zones) <= 20:
        cmap = colormaps["tab20"]
        return {z: cmap(i) for i, z in enumerate(zones)}
    cmap = colormaps["hsv"]
    return {z: cmap((i * 0.618034) % 1.0) for i, z in enumerate(zones)}


# --- layout ---------------------------------------------------------------------------------------------------------


def layout(topology: SimTopology) -> Pos:
    """Router positions: the topology's own geometry when it has one, else a layout that finishes in seconds.

    Up to :data:`SPRING_MAX` routers a force-directed layout reads best. Above that it is quadratic (and needs
    scipy), so each zone is laid out on its own and the zones are placed around a circle; a border router is
    pulled from its first zone towards the others, so the links between zones run between the clusters.
    """
    routers = topology.routers
    if routers and all(r.pos is not None for r in routers.values()):
        return {rid: (float(r.pos[0]), float(r.pos[1])) for rid, r in routers.items() if r.pos is not None}
    graph = topology.graph()
    if len(routers) <= SPRING_MAX:
        raw = nx.spring_layout(graph, seed=1)
        return {str(rid): (float(p[0]), float(p[1])) for rid, p in raw.items()}
    return _zoned_layout(topology, graph)


def _zoned_layout(topology: SimTopology, graph: Any) -> Pos:
    by_zone: dict[str, list[str]] = {}
    for rid in sorted(topology.routers):
        by_zone.setdefault(topology.routers[rid].zones[0], []).append(rid)
    zones = _circle_order(topology, by_zone)
    radius = {z: math.sqrt(len(by_zone[z])) for z in zones}
    centre: dict[str, tuple[float, float]] = {}
    if len(zones) == 1:
        centre[zones[0]] = (0.0, 0.0)
    else:
        ring = max(sum(2.4 * radius[z] for z in zones) / (2 * math.pi), 2.4 * max(radius.values()))
        for i, z in enumerate(zones):
            angle = 2 * math.pi * i / len(zones)
            centre[z] = (ring * math.cos(angle), ring * math.sin(angle))

    pos: Pos = {}
    for z in zones:
        members = by_zone[z]
        sub = graph.subgraph(members)
        if len(members) <= ZONE_SPRING_MAX:
            raw = nx.spring_layout(sub, seed=1, iterations=30)
            local = {str(k): (float(v[0]), float(v[1])) for k, v in raw.items()}
        else:
            local = _refine(members, sub, _radial_bfs(members, sub))
        cx, cy = centre[z]
        for rid, (x, y) in local.items():
            pos[rid] = (cx + radius[z] * x, cy + radius[z] * y)

    for rid in topology.borders():
        zs = topology.routers[rid].zones
        others = [centre[z] for z in zs[1:] if z in centre]
        if others:
            home = centre[zs[0]]
            tx = sum(c[0] for c in others) / len(others)
            ty = sum(c[1] for c in others) / len(others)
            x, y = pos[rid]
            pos[rid] = (x + 0.45 * (tx - home[0]), y + 0.45 * (ty - home[1]))
    return pos


def _circle_order(topology: SimTopology, by_zone: Mapping[str, Sequence[str]]) -> list[str]:
    """Zones in an order where each is followed by the unplaced zone it has most links with.

    Neighbouring zones then sit next to each other on the circle, so inter-zone links are short instead of a web
    across the middle. Greedy, quadratic in zones (there are tens, not thousands).
    """
    first = {rid: r.zones[0] for rid, r in topology.routers.items()}
    weight: dict[tuple[str, str], int] = {}
    for link in topology.links:
        za, zb = first.get(link.a), first.get(link.b)
        if za is not None and zb is not None and za != zb:
            weight[(za, zb)] = weight.get((za, zb), 0) + 1
            weight[(zb, za)] = weight.get((zb, za), 0) + 1
    left = sorted(by_zone, key=lambda z: (-len(by_zone[z]), _natural(z)))
    order = [left.pop(0)]
    while left:
        best = max(left, key=lambda z: (weight.get((order[-1], z), 0), -left.index(z)))
        left.remove(best)
        order.append(best)
    return order


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key putting z2 before z10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _radial_bfs(members: Sequence[str], sub: Any) -> Pos:
    """Breadth-first rings in the unit disc: linear time, and neighbours land on the same or the next ring.

    Each ring is ordered by the angle of the node's BFS parent, so a subtree stays in one sector. Separate
    components hang off an imaginary centre, all starting on the first ring.
    """
    degree = {m: sub.degree(m) for m in members}
    seen: set[str] = set()
    depth: dict[str, int] = {}
    parent: dict[str, str | None] = {}
    roots: list[str] = []
    for start in sorted(members, key=lambda m: (-degree[m], m)):
        if start in seen:
            continue
        roots.append(start)
        seen.add(start)
        depth[start] = 0
        parent[start] = None
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for nb in sorted(str(x) for x in sub.neighbors(node)):
                if nb not in seen:
                    seen.add(nb)
                    depth[nb] = depth[node] + 1
                    parent[nb] = node
                    queue.append(nb)
    offset = 1 if len(roots) > 1 else 0
    layers: dict[int, list[str]] = {}
    for m in members:
        layers.setdefault(depth[m] + offset, []).append(m)
    deepest = max(layers)
    angle: dict[str, float] = {}
    pos: Pos = {}
    for d in sorted(layers):
        nodes = layers[d]
        nodes.sort(key=lambda m: (_parent_angle(parent[m], angle), m))
        r = d / deepest if deepest else 0.0
        for k, m in enumerate(nodes):
            a = 2 * math.pi * (k + 0.5) / len(nodes)
            angle[m] = a
            pos[m] = (r * math.cos(a), r * math.sin(a))
    return pos


def _parent_angle(parent: str | None, angle: Mapping[str, float]) -> float:
    return angle.get(parent, 0.0) if parent is not None else 0.0



def _refine(members: Sequence[str], sub: Any, start: Pos, iterations: int = 60) -> Pos:
    """A force-directed pass over a big zone, linear per step: repulsion from a random sample of routers only.

    The radial BFS start already has neighbours close; the forces untangle the spokes it draws for rings and
    meshes. Exact repulsion is quadratic in memory and time, a sample of 64 gives the same spreading on average.
    """
    index = {m: i for i, m in enumerate(members)}
    n = len(members)
    xy = np.array([start[m] for m in members], dtype=float)
    edges = np.array([(index[str(a)], index[str(b)]) for a, b in sub.edges() if str(a) in index and str(b) in index],
                     dtype=int).reshape(-1, 2)
    rng = np.random.default_rng(1)
    k = 1.0 / math.sqrt(n)
    sample = min(n, 64)
    for step in range(iterations):
        heat = 0.1 * (1.0 - step / iterations) + 0.002
        others = xy[rng.choice(n, size=sample, replace=False)]
        delta = xy[:, None, :] - others[None, :, :]
        dist2 = np.maximum((delta**2).sum(axis=2), 1e-6)
        shift = (delta * (k * k / dist2)[:, :, None]).sum(axis=1) * (n / sample)
        if len(edges):
            d = xy[edges[:, 0]] - xy[edges[:, 1]]
            pull = d * (np.sqrt((d**2).sum(axis=1)) / k)[:, None]
            np.add.at(shift, edges[:, 0], -pull)
            np.add.at(shift, edges[:, 1], pull)
        length = np.maximum(np.sqrt((shift**2).sum(axis=1)), 1e-9)
        xy += shift / length[:, None] * np.minimum(length, heat)[:, None]
    xy -= xy.mean(axis=0)
    xy /= max(float(np.abs(xy).max()), 1e-9)
    return {m: (float(xy[i, 0]), float(xy[i, 1])) for i, m in enumerate(members)}
