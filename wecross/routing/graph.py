"""The overlay as a directed graph of routers, built from the routers' own descriptions of themselves.

The input is the gossip directory: one record per router, with its zones, whether it relays for others, and the
links it measures. Only a link both ends report becomes an edge (one router's word is not enough: a stale record,
or a router claiming a link the other side refuses, must not attract traffic). Links between routers of different
zones are edges too (operators linked them on purpose); which of them may *relay* is the routing table's rule.

This module reads records through :class:`RecordLike` / :class:`LinkLike` rather than importing the gossip types,
so real records, the simulator's and test fakes all fit. networkx is untyped: the graph is ``Any`` to mypy, and
only this module and :mod:`wecross.routing.table` touch it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import networkx as nx  # type: ignore[import-untyped,unused-ignore]

from wecross.routing.cost import link_cost


class LinkLike(Protocol):
    """One end's view of a link (what ``wecross.gossip.record.LinkInfo`` carries)."""

    @property
    def peer(self) -> str: ...

    @property
    def srtt_ms(self) -> float | None: ...

    @property
    def loss(self) -> float | None: ...

    @property
    def bandwidth_bps(self) -> float | None: ...

    @property
    def flaps(self) -> int: ...


class RecordLike(Protocol):
    """The parts of a router record routing reads (``wecross.gossip.record.RouterRecord`` has them all)."""

    @property
    def router_id(self) -> str: ...

    @property
    def zones(self) -> Sequence[str]: ...

    @property
    def transit(self) -> bool: ...

    @property
    def links(self) -> Sequence[LinkLike]: ...


Measured = tuple[float | None, float | None, float | None, int]
_INF = float("inf")


def _measured(link: LinkLike) -> Measured:
    """One end's figures with everything unusable (None, NaN, negative, infinite RTT or loss, a bandwidth that is
    not positive) turned into None, so that combining two ends below is plain comparisons."""
    srtt, loss, bandwidth = link.srtt_ms, link.loss, link.bandwidth_bps
    return (
        srtt if srtt is not None and 0.0 <= srtt < _INF else None,
        loss if loss is not None and 0.0 <= loss < _INF else None,
        bandwidth if bandwidth is not None and bandwidth > 0.0 else None,
        max(int(link.flaps), 0),
    )


def build_graph(
    records: Mapping[str, RecordLike], *, size_bytes: int = 1024, hop_overhead_ms: float = 0.2
) -> nx.DiGraph:
    """A ``networkx.DiGraph`` of the routers in ``records`` (keyed by router id).

    Nodes carry ``zones`` (a tuple) and ``transit`` (whether the router relays for others). An edge ``u -> v`` exists
    when both ``u`` and ``v`` list each other as links; links to routers without a
    record, and a router's link to itself, are ignored. Both directions get the same ``weight``,
    :func:`~wecross.routing.cost.link_cost` of the worse of the two ends' measurements (highest RTT, loss and flap
    count, lowest bandwidth): a path then costs the same both ways, and a router cannot make a link look better than
    its far end sees it. The combined metrics are kept as edge attributes ``srtt_ms``, ``loss``, ``bandwidth_bps``
    and ``flaps`` for ``GET /routes`` and debugging. ``size_bytes`` and ``hop_overhead_ms`` go to ``link_cost``.

    Nodes and edges are inserted in an order fixed by the router ids, so the graph (and anything iterating it) is the
    same in every run, whatever order the records arrived in.
    """
    links: dict[str, dict[str, Measured]] = {}
    graph = nx.DiGraph()
    for rid in sorted(records):
        record = records[rid]
        links[rid] = {link.peer: _measured(link) for link in record.links}
        graph.add_node(rid, zones=tuple(record.zones), transit=bool(record.transit))

    # The worse end of each figure; one end's missing figure (its side has not measured yet) says nothing about the
    # link, so the other end's figure stands alone. Written out inline: this loop visits every link of the network.
    edges: list[tuple[str, str, dict[str, Any]]] = []
    for u, ends in links.items():
        for v, (srtt, loss, bandwidth, flaps) in ends.items():
            if v <= u:  # each pair once, from its lower id; v == u is a self-link
                continue
            far = links.get(v)
            back = far.get(u) if far is not None else None
            if back is None:
                continue
            srtt2, loss2, bandwidth2, flaps2 = back
            if srtt is None or (srtt2 is not None and srtt2 > srtt):
                srtt = srtt2
            if loss is None or (loss2 is not None and loss2 > loss):
                loss = loss2
            if bandwidth is None or (bandwidth2 is not None and bandwidth2 < bandwidth):
                bandwidth = bandwidth2
            if flaps2 > flaps:
                flaps = flaps2
            weight = link_cost(srtt, loss, bandwidth, flaps, size_bytes=size_bytes, hop_overhead_ms=hop_overhead_ms)
            attrs = {"weight": weight, "srtt_ms": srtt, "loss": loss, "bandwidth_bps": bandwidth, "flaps": flaps}
            edges.append((u, v, attrs))
            edges.append((v, u, dict(attrs)))
    graph.add_edges_from(edges)
    return graph
