"""Which routers are replicas of a chain: the chain -> routers map a route rebuild hands to the routing table.

A pure function of the directory's records and what this router knows for sure, so the rules can be tested without
a network:

* **Authority.** A claim counts only when ``authorized(router id, chain path)`` says the router's certificate names
  the chain (wecross.pki.serves; :meth:`wecross.gossip.directory.Directory.authorized`). A router admitted by the CA
  but not given the chain cannot pull its traffic by announcing it.
* **Clashes.** Authorised routers announcing one chain with two or more different genesis hashes serve different
  chains under one name. A majority proves nothing (a dishonest operator can run many routers), so the chain's
  replicas are those agreeing with what this router knows: the genesis of the chain it serves itself, else the
  genesis pinned by configuration or the trusted header store (``checkpoints``), else nobody, and the clash is
  reported as unresolved: requests for the chain then fail with a clear error instead of reaching an impostor.
  Only the clashing chain is affected; every other chain keeps its routes.
* **Pins without a clash.** When we know the genesis (served here or pinned), a router announcing another known
  genesis serves some other chain even if nobody else claims this one: it is left out as well. Routers that do
  not know their genesis (an empty hash) are kept when there is no clash, as before.

Genesis hashes compare as lower-case hex without a ``0x`` prefix. A checkpoint above the genesis
(``"<number>:<hash>"`` in the trust settings) says nothing about the genesis and is not used as a pin here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ClashVerdict", "Replicas", "replicas"]


@dataclass(frozen=True, slots=True)
class ClashVerdict:
    """How a clashing chain was settled: ``by`` is ``"served"`` (our own chain's genesis), ``"checkpoint"`` (a
    pinned genesis) or ``"unresolved"`` (no replica kept); ``claims`` is router id -> announced genesis hash."""

    path: str
    by: str
    genesis: str
    claims: dict[str, str]

    def describe(self) -> str:
        """One line for a log: which chain, how it was settled, and who claimed what (bounded by the directory)."""
        shown = ", ".join(f"{rid}={genesis[:16] or '?'}" for rid, genesis in sorted(self.claims.items()))
        if self.by == "unresolved":
            return (f"routers disagree on the genesis of {self.path} ({shown}) and neither a chain served here nor a "
                    "checkpoint tells which is right: no replica")
        return f"routers disagree on the genesis of {self.path} ({shown}): kept those matching the {self.by} genesis"


class Replicas(dict[str, list[str]]):
    """Chain path -> sorted ids of its replica routers, plus ``clashes``: chain path -> :class:`ClashVerdict` for
    every chain announced with different genesis hashes (settled or not). A plain dict for the routing table."""

    clashes: dict[str, ClashVerdict]

    def __init__(self) -> None:
        super().__init__()
        self.clashes = {}

    @property
    def unresolved(self) -> list[str]:
        """Clashing chains left without replicas, sorted."""
        return sorted(path for path, verdict in self.clashes.items() if verdict.by == "unresolved")


class ChainClaim(Protocol):
    """A chain as a router record announces it (``wecross.gossip.record.ChainInfo`` has these)."""

    @property
    def path(self) -> str: ...

    @property
    def genesis_hash(self) -> str: ...


class ClaimsChains(Protocol):
    """The part of a router record this module reads (routing stays below gossip: no import of its types)."""

    @property
    def chains(self) -> Sequence[ChainClaim]: ...


def _norm(genesis: str) -> str:
    return genesis.lower().removeprefix("0x")


def replicas(
    records: Mapping[str, ClaimsChains],
    authorized: Callable[[str, str], bool],
    served_here: Mapping[str, str],
    checkpoints: Mapping[str, str],
) -> Replicas:
    """The replicas of every chain announced in ``records`` (router id -> record, ours included).

    ``authorized(router_id, chain_path)``: whether that router's certificate authorises the chain.
    ``served_here``: chain path -> genesis hash of the chains this router serves itself ("" when unknown).
    ``checkpoints``: chain path -> genesis hash pinned by configuration or the trusted header store.
    """
    claims: dict[str, dict[str, str]] = {}
    for router_id, record in records.items():
        for chain in record.chains:
            if authorized(router_id, chain.path):
                claims.setdefault(chain.path, {})[router_id] = _norm(chain.genesis_hash)
    out = Replicas()
    for path in sorted(claims):
        by_router = claims[path]
        known = {genesis for genesis in by_router.values() if genesis}
        clash = len(known) > 1
        pin, by = _norm(served_here.get(path, "")), "served"
        if not pin:
            pinned = checkpoints.get(path, "")
            pin, by = ("" if ":" in pinned else _norm(pinned)), "checkpoint"
        if pin:
            kept = [rid for rid, genesis in by_router.items() if genesis == pin or (not genesis and not clash)]
        elif clash:
            kept, by = [], "unresolved"
        else:
            kept = list(by_router)
        if clash:
            out.clashes[path] = ClashVerdict(path, by if pin else "unresolved", pin, dict(sorted(by_router.items())))
        if kept:
            out[path] = sorted(kept)
    return out
