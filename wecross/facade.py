"""What the user-facing layers (REST, later the SDK server side and the console) need from a router.

REST is written against this Protocol, not against the node's internals, so it can be tested with a fake router and
so the node can change shape without touching the HTTP layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from wecross.attest import ClientProof
from wecross.governance.identity import Identity
from wecross.ipath import IPath


@dataclass(frozen=True, slots=True)
class Invocation:
    """One resource operation as the router handles it, wherever it came from.

    ``args`` is normalised: for getData it is ``[key]``, for setData ``[key, value]``, for call and
    sendTransaction the method's arguments.
    """

    path: IPath
    op: str
    method: str
    args: list[Any] = field(default_factory=list)
    sender: str = "anonymous"
    #: The user's own signature of this operation (wecross.attest.ClientProof), when the client holds a key: the
    #: owner then runs it in ``sender``'s name only if the signature is ``sender``'s.
    client_proof: ClientProof | None = None
    #: Who the caller is as permissions see it (wecross.governance): set by the REST layer from the TLS client
    #: certificate; None for in-process callers, taken as the entry router vouching for ``sender``.
    identity: Identity | None = field(default=None, compare=False)


class RouterFacade(Protocol):
    def status(self) -> dict[str, Any]:
        """Router id, zones, version, uptime, counters (requests, errors, bad frames), chains served."""

    def peers(self) -> list[dict[str, Any]]:
        """One dict per known peer: id, address, state, direction, srtt_ms, rtt_var_ms, loss, last_seen, resources."""

    def routes(self) -> dict[str, Any]:
        """The routing table: router_id, rebuilds, changes, and rows (per chain and per reachable router) with
        destination, next_hop, path, hops and cost."""

    def resources(self) -> list[dict[str, Any]]:
        """Every resource reachable from here: ipath, kind, methods, local (bool), routers (ids serving it)."""

    def chains(self) -> dict[str, Any]:
        """Chains served here, the header chains trusted for remote chains, and verification counters."""

    def header(self, chain: str, number: int) -> Deferred[dict[str, Any]]:
        """Block header ``number`` of ``chain`` (zone.chain): served here, or trusted by this router's header store."""

    def events(self, path: IPath, from_block: int, wait: float) -> Deferred[dict[str, Any]]:
        """A resource's events from ``from_block`` on: ``{"events": [...], "next_block": n}``, waiting up to ``wait``
        seconds for the first one."""

    def transactions(self) -> Any:
        """The 2PC coordinator (wecross.tx.coordinator.Coordinator); RouterError ``unsupported`` without one."""

    def htlc(self) -> Any:
        """The HTLC service (wecross.tx.htlc.HtlcService); RouterError ``unsupported`` without one."""

    def invoke(self, invocation: Invocation) -> Deferred[dict[str, Any]]:
        """Run the operation on the owning router (here or over the overlay).

        Fires with the Result's wire dict plus ``router`` (who executed it) and ``path`` (routers traversed);
        fails with wecross.errors.RouterError.
        """
