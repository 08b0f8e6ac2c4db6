"""What a simulated network is made of: routers with zones and chains, links with their physical properties.

Plain frozen data, shared by the topology loaders and generators, the scenario resolver, the simulated links and
the plots. Times are in milliseconds here because that is how people write link latencies; the simulator's clock
counts seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import networkx as nx  # type: ignore[import-untyped,unused-ignore]

#: Router ids end up in certificate names: lowercase DNS labels.
ROUTER_ID = re.compile(r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?$")
#: Zone and chain names, as in router configs.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
DISTRIBUTIONS = ("fixed", "uniform", "normal", "exponential")


@dataclass(frozen=True, slots=True)
class SimRouter:
    router_id: str
    zones: tuple[str, ...]
    #: Embedded chains this router serves (each with the "hello" key-value store and the "asset" ledger).
    chains: tuple[str, ...] = ()
    transit: bool = True
    #: Where to draw it, when the topology has a geometry (grid, random geometric); None lets the plot lay it out.
    pos: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One undirected link; ``a`` dials ``b``. Latency is one-way; the same properties hold in both directions."""

    a: str
    b: str
    latency_ms: float = 1.0
    #: How the one-way latency varies per frame: "fixed", or "uniform"/"normal"/"exponential" with spread
    #: ``jitter_ms`` (half-width, standard deviation, or mean of the exponential extra delay). Frames never overtake
    #: each other on one link, whatever the draw: it is a TCP connection.
    distribution: str = "fixed"
    jitter_ms: float = 0.0
    #: Share of transmissions lost; on a stream this costs a retransmission timeout, not the bytes.
    loss: float = 0.0
    #: None: unlimited. Otherwise frames are serialised at this rate, one after another, per direction.
    bandwidth_mbps: float | None = None
    up: bool = True

    def __post_init__(self) -> None:
        if self.a == self.b:
            raise ValueError(f"link {self.a} - {self.b} joins a router to itself")
        if not self.latency_ms >= 0 or not self.jitter_ms >= 0:
            raise ValueError(f"link {self.a} - {self.b}: latency_ms and jitter_ms must be >= 0")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"link {self.a} - {self.b}: distribution must be one of {', '.join(DISTRIBUTIONS)}")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"link {self.a} - {self.b}: loss must be in [0, 1)")
        if self.bandwidth_mbps is not None and not self.bandwidth_mbps > 0:
            raise ValueError(f"link {self.a} - {self.b}: bandwidth_mbps must be > 0 (or absent: unlimited)")

    @property
    def key(self) -> frozenset[str]:
        return frozenset((self.a, self.b))


@dataclass(frozen=True, slots=True)
class SimTopology:
    name: str
    routers: dict[str, SimRouter]
    links: tuple[LinkSpec, ...]
    #: Where it came from (a file path or a generator call), for the report.
    source: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def graph(self) -> nx.Graph:
        """The undirected physical graph: nodes carry ``zones``/``chains``/``transit``/``pos``, edges their LinkSpec."""
        g = nx.Graph()
        for rid, router in self.routers.items():
            g.add_node(rid, zones=router.zones, chains=router.chains, transit=router.transit, pos=router.pos)
        for link in self.links:
            g.add_edge(link.a, link.b, spec=link)
        return g

    def zones(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for router in self.routers.values():
            for zone in router.zones:
                counts[zone] = counts.get(zone, 0) + 1
        return dict(sorted(counts.items()))

    def chain_paths(self) -> dict[str, str]:
        """``zone.chain`` → the router serving it (a chain lives in its router's first zone)."""
        return {f"{r.zones[0]}.{chain}": rid for rid, r in sorted(self.routers.items()) for chain in r.chains}

    def borders(self) -> list[str]:
        return sorted(rid for rid, r in self.routers.items() if len(r.zones) > 1)
