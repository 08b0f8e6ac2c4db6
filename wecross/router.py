"""The router core: where a resource operation is decided to run here, or travels to the router that owns it.

It implements both faces of a router: :class:`~wecross.facade.RouterFacade` for users (REST, SDK) and the
:class:`~wecross.peer.service.RequestHandler` for peers. Requests a peer sends are checked (deadline, hop limit,
loops) before anything runs; writes run at most once per request id (:class:`~wecross.routing.replay.ReplayGuard`);
every failure leaves as a :class:`~wecross.errors.RouterError` with a stable code.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

import wecross
from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.ipath import IPath, IPathError
from wecross.routing.neighbours import NeighbourDirectory
from wecross.routing.replay import ReplayGuard
from wecross.stub.interfaces import OPERATIONS, WRITE_OPERATIONS, ChainState, Result, StubError
from wecross.wire.messages import Advertise, ChainAd, Request, ResourceAd, Response

if TYPE_CHECKING:
    from wecross.config import Settings
    from wecross.peer.protocol import PeerLink
    from wecross.peer.service import PeerService
    from wecross.stub.service import StubService

log = Logger()


def _as_router_error(failure: Failure) -> Failure:
    """Stub errors keep their code across the network; anything unexpected becomes 'internal' (and is logged)."""
    if isinstance(failure.value, RouterError):
        return failure
    if isinstance(failure.value, StubError):
        return Failure(RouterError(failure.value.code, failure.value.message))
    log.failure("unexpected error while serving a request", failure)
    return Failure(RouterError("internal", "internal error in the router"))


class Router:
    def __init__(self, settings: Settings, stubs: StubService, clock: IReactorTime) -> None:
        self.settings = settings
        self.local_id = settings.router_id
        self.stubs = stubs
        self.clock = clock
        self.peer_service: PeerService | None = None
        self.directory = NeighbourDirectory()
        self.replays = ReplayGuard(clock.seconds)
        self.started_at = clock.seconds()
        self.outcomes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.chain_states: dict[str, ChainState] = {}
        self._advert_seq = int(time.time() * 1000)
        self._refresher = LoopingCall(self._refresh_chains)
        self._refresher.clock = clock

    # -- lifecycle (driven by the node) -----------------------------------------------------------------------------

    def start(self) -> Deferred[None]:
        d = self._refresh_chains()
        self._refresher.start(max(1.0, self.settings.timing.heartbeat_interval), now=False)
        return d

    def stop(self) -> None:
        if self._refresher.running:
            self._refresher.stop()

    def _refresh_chains(self) -> Deferred[None]:
        def store(states: dict[str, ChainState]) -> None:
            self.chain_states = dict(states)

        def failed(failure: Failure) -> None:
            log.failure("reading chain states failed", failure)

        return self.stubs.chain_states().addCallbacks(store, failed)

    # -- RouterFacade -----------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        peers = self.peer_service
        return {
            "router_id": self.local_id,
            "zones": list(self.settings.zones),
            "version": wecross.__version__,
            "uptime_s": round(self.clock.seconds() - self.started_at, 3),
            "chains": [
                {"path": path, "type": st.chain_type, "height": st.height, "head_hash": st.head_hash,
                 "genesis_hash": st.genesis_hash}
                for path, st in sorted(self.chain_states.items())
            ],
            "peers_up": len(peers.links) if peers else 0,
            "peers_configured": len(peers.dialers) if peers else 0,
            "requests": dict(self.outcomes),
            "errors": dict(self.errors),
            "bad_frames": dict(peers.counters.bad_frames) if peers else {},
            "refused_links": dict(peers.counters.refused) if peers else {},
            "replayed_writes": self.replays.replays,
        }

    def peers(self) -> list[dict[str, Any]]:
        rows = self.peer_service.peer_table() if self.peer_service else []
        for row in rows:
            advert_chains = [path for path, entries in self.directory.chains().items()
                             if any(rid == row.get("id") for rid, _ in entries)]
            row["chains"] = advert_chains
        return rows

    def resources(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [
            {"ipath": str(path), "kind": info.kind, "methods": dict(info.methods), "description": info.description,
             "local": True, "routers": [self.local_id]}
            for path, info in self.stubs.local_resources()
        ]
        local = {row["ipath"] for row in rows}
        for remote in self.directory.resources():
            if remote.ipath not in local:
                rows.append({"ipath": remote.ipath, "kind": remote.kind, "methods": dict(remote.methods),
                             "local": False, "routers": list(remote.routers)})
        rows.sort(key=lambda r: r["ipath"])
        return rows

    def invoke(self, invocation: Invocation) -> Deferred[dict[str, Any]]:
        if invocation.op not in OPERATIONS:
            return self._count(defer.fail(RouterError("bad_request", f"unknown operation {invocation.op!r}; use one "
                                                                     f"of {', '.join(OPERATIONS)}")), "rest")
        path = invocation.path
        if self._serves(path.chain_path):
            d = self._run_local(path, invocation.op, invocation.method, invocation.args, invocation.sender)
            d.addCallback(lambda result: dict(result, path=[self.local_id]))
            return self._count(d, "local")
        deadline = self.clock.seconds() + self.settings.limits.request_deadline
        request_id = os.urandom(16)
        d = self._forward_first(path, invocation.op, invocation.method, invocation.args, invocation.sender,
                                request_id, deadline, [self.local_id], self.settings.limits.hop_limit, set())
        return self._count(d, "forwarded")

    def _serves(self, chain_path: str) -> bool:
        return chain_path in self.stubs.stubs()

    # -- running and forwarding -------------------------------------------------------------------------------------

    def _run_local(self, path: IPath, op: str, method: str, args: list[Any], sender: str) -> Deferred[dict[str, Any]]:
        try:
            d: Deferred[Result] = self.stubs.invoke(path, op, method, args, sender)
        except Exception:
            d = defer.fail()

        def to_wire(result: Result) -> dict[str, Any]:
            return dict(result.to_wire(), router=self.local_id)

        return d.addCallback(to_wire).addErrback(_as_router_error)

    def _candidates(self, chain_path: str, exclude: set[str]) -> list[PeerLink]:
        """Links to routers serving the chain, best (lowest smoothed RTT) first."""
        if self.peer_service is None:
            return []
        links = self.peer_service.links
        candidates = [links[rid] for rid in self.directory.routers_for_chain(chain_path)
                      if rid in links and rid not in exclude]
        return sorted(candidates, key=lambda link: (link.health.srtt if link.health.srtt is not None else 1e9,
                                               link.peer_id or ""))

    def _forward_first(
        self, path: IPath, op: str, method: str, args: list[Any], sender: str, request_id: bytes,
        deadline: float, trail: list[str], hop_limit: int, tried: set[str],
    ) -> Deferred[dict[str, Any]]:
        """Send to the best router serving the chain; read-only calls fail over to the next one."""
        candidates = self._candidates(path.chain_path, tried | set(trail))
        if not candidates:
            if tried:
                return defer.fail(RouterError("unreachable", f"every router serving {path.chain_path} failed: "
                                                              f"tried {sorted(tried)}"))
            if not self.directory.routers_for_chain(path.chain_path):
                return defer.fail(RouterError("unknown_chain", f"no router known to serve chain {path.chain_path} "
                                                               f"(asked for {path})"))
            return defer.fail(RouterError("unreachable", f"no usable link to a router serving {path.chain_path}"))
        if self.directory.resource(str(path)) is None:
            return defer.fail(RouterError("unknown_resource", f"chain {path.chain_path} has no resource "
                                                              f"{path.resource!r}"))
        link = candidates[0]
        remaining = deadline - self.clock.seconds()
        if remaining <= 0:
            return defer.fail(RouterError("timeout", "the request's deadline passed before it could be sent"))
        assert link.peer_id is not None
        request = Request(
            request_id=request_id, origin=trail[0], destination=link.peer_id, hop_limit=hop_limit,
            deadline_ms=int(remaining * 1000), path=list(trail), op=op, ipath=str(path), method=method,
            args=list(args), sender=sender,
        )

        def answered(response: Response) -> dict[str, Any]:
            return dict(response.result, path=list(response.path))

        def failed(failure: Failure) -> Deferred[dict[str, Any]] | Failure:
            error = failure.value
            if (isinstance(error, RouterError) and error.code == "peer_lost" and op not in WRITE_OPERATIONS
                    and link.peer_id is not None):
                log.info("read {rid} failed over: {error}", rid=request_id.hex(), error=error.message)
                return self._forward_first(path, op, method, args, sender, request_id, deadline, trail,
                                           hop_limit, tried | {link.peer_id})
            if isinstance(error, RouterError) and error.code == "peer_lost" and op in WRITE_OPERATIONS:
                return Failure(RouterError(
                    "peer_lost",
                    f"{error.message}; the write may or may not have run on {path.chain_path}: it is not retried "
                    f"elsewhere (request id {request_id.hex()})",
                    {"request_id": request_id.hex()},
                ))
            return failure

        return link.request(request, remaining).addCallbacks(answered, failed)

    def _count(self, d: Deferred[dict[str, Any]], kind: str) -> Deferred[dict[str, Any]]:
        def ok(result: dict[str, Any]) -> dict[str, Any]:
            self.outcomes[f"{kind}_ok"] += 1
            return result

        def failed(failure: Failure) -> Failure:
            failure = _as_router_error(failure)
            self.outcomes[f"{kind}_failed"] += 1
            self.errors[failure.value.code] += 1
            return failure

        return d.addCallbacks(ok, failed)

    # -- RequestHandler (requests from peers) -----------------------------------------------------------------------

    def handle_request(self, link: PeerLink, request: Request) -> Deferred[dict[str, Any]]:
        try:
            return self._count(self._serve(link, request), "served")
        except RouterError as exc:
            return self._count(defer.fail(exc), "served")

    def _serve(self, link: PeerLink, request: Request) -> Deferred[dict[str, Any]]:
        if request.deadline_ms <= 0:
            raise RouterError("timeout", "the request arrived after its deadline")
        if self.local_id in request.path:
            raise RouterError("hop_limit", f"routing loop: {self.local_id} is already on the path {request.path}")
        if not request.path or request.path[-1] != link.peer_id:
            raise RouterError("bad_request", f"the path {request.path} must end with the sending router "
                                             f"{link.peer_id}")
        if request.op not in OPERATIONS:
            raise RouterError("bad_request", f"unknown operation {request.op!r}")
        try:
            path = IPath.parse(request.ipath)
        except IPathError as exc:
            raise RouterError("bad_ipath", str(exc)) from None
        trail = [*request.path, self.local_id]
        if request.destination == self.local_id or self._serves(path.chain_path):
            if not self._serves(path.chain_path):
                raise RouterError("unknown_chain", f"router {self.local_id} does not serve {path.chain_path}")

            def with_path(failure: Failure) -> Failure:
                if isinstance(failure.value, RouterError):
                    failure.value.details.setdefault("path", trail)
                return failure

            def execute() -> Deferred[dict[str, Any]]:
                d = self._run_local(path, request.op, request.method, list(request.args), request.sender)
                return d.addCallbacks(lambda result: dict(result, path=trail), with_path)

            if request.op in WRITE_OPERATIONS:
                return self.replays.run(request.request_id, execute)
            return execute()
        if request.hop_limit <= 1:
            raise RouterError("hop_limit", f"hop limit reached at {self.local_id} on the way to "
                                           f"{request.destination}")
        deadline = self.clock.seconds() + request.deadline_ms / 1000.0
        return self._forward_first(path, request.op, request.method, list(request.args), request.sender,
                                   request.request_id, deadline, trail, request.hop_limit - 1, set())

    def handle_advertise(self, link: PeerLink, advert: Advertise) -> None:
        if self.directory.update(advert):
            log.info("router {id}: {peer} serves {chains}", id=self.local_id, peer=advert.router_id,
                     chains=[c.path for c in advert.chains])

    def peer_up(self, link: PeerLink) -> None:
        link.send_advertise(self.advertisement())

    def peer_down(self, link: PeerLink) -> None:
        if link.peer_id is not None:
            self.directory.drop(link.peer_id)

    def advertisement(self) -> Advertise:
        self._advert_seq += 1
        chains = [
            ChainAd(path=p, chain_type=st.chain_type, height=st.height, genesis_hash=st.genesis_hash)
            for p, st in sorted(self.chain_states.items())
        ]
        resources = [
            ResourceAd(ipath=str(path), kind=info.kind, methods=dict(info.methods))
            for path, info in self.stubs.local_resources()
        ]
        return Advertise(router_id=self.local_id, seq=self._advert_seq, chains=chains, resources=resources)
