"""Who among our direct peers serves which chains and resources.

This is the one-hop view that the router core needs to forward a request: peers send ADVERTISE when the link comes
up and whenever what they serve changes. The signed, network-wide gossip directory builds on the same questions
("which routers serve chain X?", "which resources exist?") and will answer them for routers further away.
"""

from __future__ import annotations

from dataclasses import dataclass

from wecross.wire.messages import Advertise, ChainAd, ResourceAd


@dataclass(frozen=True, slots=True)
class RemoteResource:
    ipath: str
    kind: str
    methods: dict[str, str]
    routers: tuple[str, ...]


class NeighbourDirectory:
    """Advertisements of directly linked peers, newest per peer; a peer's entries vanish with its link."""

    def __init__(self) -> None:
        self._adverts: dict[str, Advertise] = {}
        self._chain_index: dict[str, set[str]] = {}

    def update(self, advert: Advertise) -> bool:
        """Take an advertisement; returns False if it is older than the one we hold for that peer."""
        current = self._adverts.get(advert.router_id)
        if current is not None and advert.seq <= current.seq:
            return False
        self.drop(advert.router_id)
        self._adverts[advert.router_id] = advert
        for chain in advert.chains:
            self._chain_index.setdefault(chain.path, set()).add(advert.router_id)
        return True

    def drop(self, router_id: str) -> None:
        advert = self._adverts.pop(router_id, None)
        if advert is None:
            return
        for chain in advert.chains:
            routers = self._chain_index.get(chain.path)
            if routers is not None:
                routers.discard(router_id)
                if not routers:
                    del self._chain_index[chain.path]

    def routers_for_chain(self, chain_path: str) -> frozenset[str]:
        return frozenset(self._chain_index.get(chain_path, ()))

    def chains(self) -> dict[str, list[tuple[str, ChainAd]]]:
        """chain path -> [(router id, its advertisement of the chain)]."""
        out: dict[str, list[tuple[str, ChainAd]]] = {}
        for router_id, advert in sorted(self._adverts.items()):
            for chain in advert.chains:
                out.setdefault(chain.path, []).append((router_id, chain))
        return out

    def resource(self, ipath: str) -> ResourceAd | None:
        for advert in self._adverts.values():
            for res in advert.resources:
                if res.ipath == ipath:
                    return res
        return None

    def resources(self) -> list[RemoteResource]:
        merged: dict[str, tuple[ResourceAd, list[str]]] = {}
        for router_id, advert in sorted(self._adverts.items()):
            for res in advert.resources:
                entry = merged.setdefault(res.ipath, (res, []))
                entry[1].append(router_id)
        return [
            RemoteResource(ipath, res.kind, dict(res.methods), tuple(routers))
            for ipath, (res, routers) in sorted(merged.items())
        ]
