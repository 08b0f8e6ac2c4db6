"""The router core: where a resource operation is decided to run here, or travels to the router that owns it.

It implements both faces of a router: :class:`~wecross.facade.RouterFacade` for users (REST, SDK) and the
:class:`~wecross.peer.service.RequestHandler` for peers. Requests a peer sends are checked (deadline, hop limit,
loops) before anything runs; writes run at most once per request id (:class:`~wecross.routing.replay.ReplayGuard`);
every failure leaves as a :class:`~wecross.errors.RouterError` with a stable code. Whether what arrived is what its
signer sent is wecross.authn's (EndToEnd); who may do it, wecross.governance's.

Over 600 lines: it is the whole request path of a router (originating, relaying, serving, router-level operations,
the events long poll, header fetches, route rebuilds). Splitting it further (a table of router-level operations,
the events poll and header serving in modules of their own) is issue 14's next step.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

import wecross
from wecross import attest
from wecross.authn import (
    OP_TX_STATUS,
    PROVABLE_READS,
    SIGNED,
    STATEFUL,
    TX_DECISIONS,
    EndToEnd,
    drop_marks,
    is_router,
    replay_key,
)
from wecross.chain.trust import TrustedResults
from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.gossip.directory import Directory
from wecross.gossip.record import ChainInfo, LinkInfo, ResourceEntry, RouterRecord
from wecross.gossip.service import GossipService, LocalContent
from wecross.governance.enforce import OWNER_INTERFACES, Governance
from wecross.governance.identity import Identity
from wecross.ipath import IPath, IPathError
from wecross.logs import untrusted
from wecross.routing.graph import build_graph
from wecross.routing.replay import ReplayGuard
from wecross.routing.replicas import ClashVerdict, replicas
from wecross.routing.table import Route, RoutingTable
from wecross.stub.interfaces import (
    OP_TX_COMMIT,
    OPERATIONS,
    TX_OPERATIONS,
    ChainState,
    EventPage,
    IEventSource,
    Result,
    StubError,
)
from wecross.wire.errors import WireError
from wecross.wire.messages import GossipDigest, GossipRecords, GossipSummary, Request, Response

#: Router-level operation (not a resource's): block headers of a chain, for other routers' header stores.
OP_HEADERS = "headers"
#: Router-level operation: a resource's events from a block on (one poll; the entry router does the long poll).
OP_EVENTS = "events"
#: Longest a client may wait for events in one request, and how often the entry router looks again meanwhile.
MAX_EVENTS_WAIT = 60.0
EVENTS_POLL_INTERVAL = 0.5

if TYPE_CHECKING:
    from wecross.config import Settings
    from wecross.peer.protocol import PeerLink
    from wecross.peer.service import PeerService
    from wecross.stub.service import StubService

log = Logger()


def _audit_failed(failure: Failure) -> None:
    log.warn("audit record not written: {why}", why=untrusted(failure.getErrorMessage()))


def _as_router_error(failure: Failure) -> Failure:
    """Stub errors keep their code across the network; anything unexpected becomes 'internal' (and is logged)."""
    if isinstance(failure.value, RouterError):
        return failure
    if isinstance(failure.value, defer.CancelledError):
        # The caller went away (a REST client disconnected) and cancelled its request: nothing went wrong here.
        return Failure(RouterError("cancelled", "the request was cancelled by its caller"))
    if isinstance(failure.value, StubError):
        return Failure(RouterError(failure.value.code, failure.value.message))
    log.failure("unexpected error while serving a request", failure)
    return Failure(RouterError("internal", "internal error in the router"))


@dataclass(frozen=True, slots=True)
class Outbound:
    """One request on its way out of this router, as the origin made it or as a relay received it.

    ``destination`` None: the origin picks the best replica of the chain (and may pick another when a read fails
    over); otherwise the request goes to that router only (relays, retried writes, txStatus, header fetches).
    ``signature`` is the origin's (wecross.attest.request_body): a relay passes it on unchanged, the origin signs
    each attempt for the destination it chose.
    """

    path: IPath
    op: str
    method: str
    args: list[Any]
    sender: str
    request_id: bytes
    #: Local clock time after which the request is not sent on.
    deadline: float
    #: The signed expiry, origin's wall clock, milliseconds.
    expires_ms: int
    #: Routers crossed so far, this one last.
    trail: list[str]
    hop_limit: int
    destination: str | None
    signature: bytes = b""
    #: The user's own signature (wecross.attest.ClientProof, encoded) or empty; passed on unchanged.
    client_auth: bytes = b""
    #: The organisation the origin vouches the sender belongs to ("" unknown); signed, passed on unchanged.
    sender_org: str = ""

    @property
    def originated_here(self) -> bool:
        return len(self.trail) == 1


class Router:
    def __init__(self, settings: Settings, stubs: StubService, clock: IReactorTime, directory: Directory,
                 signing_key: attest.PrivateKey | None = None) -> None:
        self.settings = settings
        self.local_id = settings.router_id
        self.stubs = stubs
        self.clock = clock
        self.peer_service: PeerService | None = None
        self.gossip: GossipService | None = None
        self.directory = directory
        self.table = RoutingTable(self.local_id, hysteresis=settings.routing.hysteresis)
        self.replays = ReplayGuard(clock.seconds)
        self.started_at = clock.seconds()
        self.outcomes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.route_changes = 0
        self.chain_states: dict[str, ChainState] = {}
        # Request ids: a random prefix per router life and a counter, unique without a syscall per request.
        #: Request ids are this prefix and a counter: unique across routers and restarts (the simulator sets it
        #: from its seed).
        self.id_prefix = os.urandom(8)
        self._id_counter = itertools.count(1)
        self._rebuild_call: IDelayedCall | None = None
        self._stopped = False
        self._built_version = -1
        #: records -> routing graph; the simulator swaps in one that shares graphs between routers whose
        #: directories hold the same records (a pure function of them).
        self.graph_builder: Callable[[Mapping[str, RouterRecord]], Any] = build_graph
        self._refresher = LoopingCall(self._refresh_chains)
        self._refresher.clock = clock
        #: Verifies results that crossed other routers (set by the node; None: results pass unverified).
        self.trust: TrustedResults | None = None
        #: The 2PC coordinator (wecross.tx.coordinator.Coordinator), set by the node.
        self.coordinator: Any = None
        #: The HTLC service (wecross.tx.htlc.HtlcService), set by the node.
        self.htlc_service: Any = None
        #: End-to-end authentication (wecross.authn): this router's keys, the checks, what they remember.
        self.e2e = EndToEnd(self.local_id, settings, clock, directory, signing_key, self.replays, self.outcomes)
        #: Who may do what (wecross.governance); open until the node gives it the configured policy.
        self.governance = Governance()
        #: The audit trail's record (wecross.governance.audit_store.AuditStore.record), set by the node; None: off.
        self.audit: Callable[..., object] | None = None
        #: chain -> how the last route rebuild settled routers disagreeing on its genesis.
        self._clash_verdicts: dict[str, ClashVerdict] = {}

    @property
    def signing_key(self) -> attest.PrivateKey | None:
        return self.e2e.signing_key

    @property
    def auth_refused(self) -> Counter[str]:
        """End-to-end checks refused, by check (/status, /metrics)."""
        return self.e2e.auth_refused

    def authenticate_header(self, chain: str, wire: Mapping[str, Any], signer: str, signature: Any) -> None:
        self.e2e.authenticate_header(chain, wire, signer, signature)

    def sign_tx_record(self, record: dict[str, Any]) -> bytes:
        return self.e2e.sign_tx_record(record)

    def verify_tx_record(self, record: Any) -> None:
        self.e2e.verify_tx_record(record)

    # -- lifecycle (driven by the node) -----------------------------------------------------------------------------

    def start(self) -> Deferred[None]:
        d = self._refresh_chains()
        self._refresher.start(max(1.0, self.settings.timing.heartbeat_interval), now=False)
        return d

    def stop(self) -> None:
        self._stopped = True
        if self._refresher.running:
            self._refresher.stop()
        if self._rebuild_call is not None and self._rebuild_call.active():
            self._rebuild_call.cancel()

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
            "auth_refused": dict(self.auth_refused),
            "routers_known": len(self.directory),
            "routes": self.table.reachable(),
            "route_changes": self.route_changes,
            "gossip": dict(self.gossip.counters) if self.gossip else {},
            "directory": self.directory.stats(),
            "chain_clashes": [{"path": c.path, "genesis_by_router": dict(c.genesis_by_router)}
                              for c in self.directory.clashes()],
        }

    def peers(self) -> list[dict[str, Any]]:
        rows = self.peer_service.peer_table() if self.peer_service else []
        records = self.directory.records()
        for row in rows:
            record = records.get(row.get("id") or "")
            row["chains"] = [chain.path for chain in record.chains] if record else []
        return rows

    def routes(self) -> dict[str, Any]:
        """What ``GET /routes`` shows: the route of every chain and of every reachable router, with costs."""
        return {"router_id": self.local_id, "rebuilds": self.table.rebuilds, "changes": self.route_changes,
                "routes": self.table.snapshot(), "graph": self.overlay_graph()}

    def overlay_graph(self) -> dict[str, Any]:
        """The overlay as the signed records describe it: each router's zones, each link once with the RTT and loss
        its two ends measure (the larger of the two, when both report it): what the web page draws."""
        records = self.directory.records()
        routers = {rid: list(record.zones) for rid, record in sorted(records.items())}
        links: dict[tuple[str, str], dict[str, Any]] = {}
        for rid, record in records.items():
            for link in record.links:
                a, b = sorted((rid, link.peer))
                seen = links.get((a, b))
                if seen is None:
                    links[(a, b)] = {"a": a, "b": b, "srtt_ms": round(link.srtt_ms, 3), "loss": round(link.loss, 4)}
                else:
                    seen["srtt_ms"] = max(seen["srtt_ms"], round(link.srtt_ms, 3))
                    seen["loss"] = max(seen["loss"], round(link.loss, 4))
        return {"routers": routers, "links": [links[key] for key in sorted(links)]}

    def resources(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [
            {"ipath": str(path), "kind": info.kind, "methods": dict(info.methods), "description": info.description,
             "local": True, "routers": [self.local_id]}
            for path, info in self.stubs.local_resources()
        ]
        local = {row["ipath"] for row in rows}
        for entry, routers in self.directory.resources():
            if entry.ipath not in local:
                route = self.table.route(IPath.parse(entry.ipath).chain_path)
                rows.append({"ipath": entry.ipath, "kind": entry.kind, "methods": dict(entry.methods),
                             "local": False, "routers": [r for r in routers if r != self.local_id],
                             "route": list(route.path) if route else None})
        rows.sort(key=lambda r: r["ipath"])
        return rows

    def invoke(self, invocation: Invocation) -> Deferred[dict[str, Any]]:
        if invocation.op not in OPERATIONS:
            return self._count(defer.fail(RouterError("bad_request", f"unknown operation {invocation.op!r}; use one "
                                                                     f"of {', '.join(OPERATIONS)}")), "rest")
        org = ""
        if not is_router(invocation.sender):  # this router's own services act as themselves, not as a user
            try:
                identity = self.caller(invocation)
                org = identity.org or ""
                # Early refusal at the entry router; the owner decides again (its rules are the ones that count).
                self.governance.authorize(identity, invocation.path, invocation.op, f"router {self.local_id}")
            except RouterError as exc:
                return self._audited(self._count(defer.fail(exc), "rest"), invocation.sender, org, self.local_id,
                                     str(invocation.path), invocation.op, invocation.method, invocation.args)
        return self._audited(self._invoke(invocation, org), invocation.sender, org, self.local_id,
                             str(invocation.path), invocation.op, invocation.method, invocation.args)

    def _audited(self, d: Deferred[dict[str, Any]], initiator: str, org: str, entry: str, ipath: str,
                 interface: str, method: str, args: Any) -> Deferred[dict[str, Any]]:
        """Append the request's outcome to the audit trail (every request originated or served here, allowed or
        refused); the answer passes through unchanged, and a failing audit log never fails a request. The trail's
        ``record`` returns no Deferred (it logs what it cannot write itself); a callable that returns one (the
        store's ``append``) gets its failure logged here."""
        append = self.audit
        if append is None:
            return d
        owner_org = org or None

        def record(outcome: dict[str, Any] | Failure) -> dict[str, Any] | Failure:
            try:
                if isinstance(outcome, Failure):
                    error = outcome.value
                    if isinstance(error, RouterError):
                        path = error.details.get("path", ())
                        written = append(initiator=initiator, org=owner_org, entry_router=entry, ipath=ipath,
                                         interface=interface, method=method, args=args, outcome=error.code,
                                         path=path if isinstance(path, list) else ())
                    else:
                        written = append(initiator=initiator, org=owner_org, entry_router=entry, ipath=ipath,
                                         interface=interface, method=method, args=args, outcome="internal")
                else:
                    block = outcome.get("block_number")
                    tx_hash = outcome.get("tx_hash")
                    written = append(initiator=initiator, org=owner_org, entry_router=entry, ipath=ipath,
                                     interface=interface, method=method, args=args, outcome="ok",
                                     path=outcome.get("path") or (),
                                     tx_hash=tx_hash if isinstance(tx_hash, str) else None,
                                     block=block if type(block) is int else None)
                if isinstance(written, Deferred):
                    written.addErrback(_audit_failed)
            except Exception:
                log.failure("the audit trail refused a record")
            return outcome

        return d.addBoth(record)

    def _invoke(self, invocation: Invocation, org: str) -> Deferred[dict[str, Any]]:
        path = invocation.path
        if self._serves(path.chain_path):
            d = self._run_local(path, invocation.op, invocation.method, invocation.args, invocation.sender,
                                [self.local_id])
            return self._count(d, "local")
        proof = invocation.client_proof
        d = self._originate(path, invocation.op, invocation.method, list(invocation.args), invocation.sender,
                            client_auth=proof.encode() if proof is not None else b"", sender_org=org)
        d.addCallback(self._checked, invocation, path.chain_path)
        return self._count(d, "forwarded")

    def _checked(self, result: dict[str, Any], invocation: Invocation,
                 chain: str) -> Deferred[dict[str, Any]] | dict[str, Any]:
        """A forwarded answer's checks, in their order: the proof against trusted headers (``trust.verify``), then
        no downgrade (``e2e.proven_or_attested``). One callback rather than two: each layer a fired Deferred passes
        through costs a trip through _runCallbacks, and this runs for every forwarded request. A proof whose header
        must be fetched first leaves ``verify`` with a Deferred; the second check then waits on it, as before."""
        trust = self.trust
        if trust is not None:
            verified = trust.verify(result, invocation)
            if isinstance(verified, Deferred):
                return verified.addCallback(self.e2e.proven_or_attested, chain)
            result = verified
        return self.e2e.proven_or_attested(result, chain)

    def caller(self, invocation: Invocation) -> Identity:
        """The caller's identity: the REST layer's (from the TLS client certificate), else ``sender`` as this
        router vouches for it."""
        if invocation.identity is not None:
            return invocation.identity
        return self.governance.identity_of(invocation.sender, None)

    def _originate(self, path: IPath, op: str, method: str, args: list[Any], sender: str,
                   destination: str | None = None, client_auth: bytes = b"",
                   sender_org: str = "") -> Deferred[dict[str, Any]]:
        """The one way a request leaves its entry router: a new request id, its deadline and signed expiry."""
        now = self.clock.seconds()
        lifetime = self.settings.limits.request_deadline
        out = Outbound(path=path, op=op, method=method, args=args, sender=sender,
                       request_id=self.id_prefix + next(self._id_counter).to_bytes(8, "big"),
                       deadline=now + lifetime, expires_ms=int((now + lifetime) * 1000), trail=[self.local_id],
                       hop_limit=self.settings.limits.hop_limit, destination=destination, client_auth=client_auth,
                       sender_org=sender_org)
        return self._forward(out, set())

    def _serves(self, chain_path: str) -> bool:
        return self.stubs.serves(chain_path)

    # -- running and forwarding -------------------------------------------------------------------------------------

    def _run_local(
        self, path: IPath, op: str, method: str, args: list[Any], sender: str, trail: list[str]
    ) -> Deferred[dict[str, Any]]:
        """Run on a local stub; the answer (or the error's details) carries ``trail``, the routers it crossed.

        One pair of callbacks: every layer a fired Deferred passes through costs a trip through _runCallbacks, and
        this runs for every request a router serves.
        """
        try:
            d: Deferred[Result] = self.stubs.invoke(path, op, method, args, sender)
        except Exception:
            d = defer.fail()

        def to_wire(result: Result) -> dict[str, Any]:
            return dict(result.to_wire(), router=self.local_id, path=trail)

        def with_path(failure: Failure) -> Failure:
            failure = _as_router_error(failure)
            failure.value.details.setdefault("path", trail)
            return failure

        return d.addCallbacks(to_wire, with_path)

    def _choose(self, path: IPath, destination: str | None, avoid: set[str]) -> Route | None:
        """The route for a request: towards its fixed destination (relays, and retries of writes, which only the
        same owner may deduplicate), else to the best replica of the chain; never through ``avoid``."""
        if destination is not None:
            route = self.table.path_to(destination, avoid)
            if route is None and destination not in avoid and self.peer_service is not None \
                    and destination in self.peer_service.links:
                # A live link to the destination is a path even while the table, rebuilt from gossip a moment
                # behind the links, does not show it yet (just after a reconnect).
                route = Route(None, destination, destination, (self.local_id, destination), 1.0)
            return route
        chain = path.chain_path
        if not avoid - {self.local_id}:
            return self.table.route(chain)
        alternatives = self.table.alternatives(chain, avoid)
        return alternatives[0] if alternatives else None

    def _clashing(self, chain: str) -> bool:
        """Routers disagree on the chain's genesis and the last rebuild could not tell who is right (by the chain
        we serve or a pinned genesis: wecross.routing.replicas); a clash newer than that rebuild counts too."""
        if not self.directory.clashing(chain) or self._serves(chain):
            return False
        verdict = self._clash_verdicts.get(chain)
        return verdict is None or verdict.by == "unresolved"

    def _no_route(self, path: IPath, destination: str | None, tried: set[str]) -> RouterError:
        chain = path.chain_path
        if self._clashing(chain):
            return RouterError("chain_clash", f"routers disagree on the genesis of {chain}: "
                                              f"{self.directory.chain_claims(chain)}; refusing to guess")
        if destination is not None:
            return RouterError("unreachable", f"no path from {self.local_id} to {destination} avoiding "
                                              f"{sorted(tried)}")
        if not self.directory.routers_for_chain(chain):
            return RouterError("unknown_chain", f"no router known to serve chain {chain} (asked for {path})")
        if tried:
            return RouterError("unreachable", f"every path to {chain} failed or was excluded: {sorted(tried)}")
        return RouterError("unreachable", f"no path to a router serving {chain}")

    def _forward(self, out: Outbound, tried: set[str]) -> Deferred[dict[str, Any]]:
        """Send towards the router that serves the chain, along the routing table; reads fail over."""
        if self.peer_service is None:
            return defer.fail(RouterError("unreachable", "this router has no peer links"))
        path, destination, trail = out.path, out.destination, out.trail
        avoid = set(trail) | tried
        avoid.discard(self.local_id)
        if destination is None and self._clashing(path.chain_path):
            # Checked per request, not only at the (debounced) rebuild: a clash must stop traffic at once.
            return defer.fail(self._no_route(path, destination, tried))
        route = self._choose(path, destination, avoid)
        if route is None:
            return defer.fail(self._no_route(path, destination, tried))
        if len(route.path) - 1 > out.hop_limit:
            # Say so here rather than let the request die hops later: the router before us can still try a path
            # with fewer hops (a relay routing around a dead link may have only a long detour left).
            return defer.fail(RouterError(
                "hop_limit", f"the path from {self.local_id} to {route.destination} takes {len(route.path) - 1} "
                             f"hops, more than the {out.hop_limit} the request has left"))
        if destination is None and self.directory.resource(str(path)) is None:
            # Only the entry router checks: relays carry what the entry already resolved.
            return defer.fail(RouterError("unknown_resource", f"chain {path.chain_path} has no resource "
                                                              f"{path.resource!r}"))
        link = self.peer_service.links.get(route.next_hop)
        if link is None:  # the table is a rebuild behind a link that just died: route around it now
            return self._forward(out, tried | {route.next_hop})
        remaining = out.deadline - self.clock.seconds()
        if remaining <= 0:
            return defer.fail(RouterError("timeout", "the request's deadline passed before it could be sent"))
        signature = out.signature
        if out.originated_here:
            auth = self.e2e.auth
            if auth is None:
                return defer.fail(RouterError("internal", "this router has no key to sign requests with"))
            try:
                signature = auth.tag(
                    route.destination, self.directory.signing_key(route.destination),
                    attest.request_body(out.request_id, self.local_id, route.destination, out.expires_ms, out.op,
                                        str(path), out.method, out.args, out.sender, out.client_auth,
                                        out.sender_org),
                    signed=out.op in SIGNED)
            except attest.AttestError as exc:
                return defer.fail(RouterError("bad_args", f"the request cannot be sent: {exc.message}"))
        try:
            request = Request(
                request_id=out.request_id, origin=trail[0], destination=route.destination, hop_limit=out.hop_limit,
                deadline_ms=int(remaining * 1000), path=list(trail), op=out.op, ipath=str(path), method=out.method,
                args=list(out.args), sender=out.sender, expires_ms=out.expires_ms, signature=signature,
                client_auth=out.client_auth, sender_org=out.sender_org,
            )
        except WireError as exc:  # values the wire cannot carry: the caller's mistake, refused before anything
            return defer.fail(RouterError("bad_args", f"the request cannot be sent: {exc}"))
        owner = route.destination

        def answered(response: Response) -> dict[str, Any]:
            result = dict(response.result, path=list(response.path))
            if out.originated_here:
                # The owner is the router this request was signed for, whatever the answer says about itself.
                result["router"] = owner
                self.e2e.authenticate_result(result, out.request_id, out.op, owner)
            return result

        def failed(failure: Failure) -> Deferred[dict[str, Any]] | Failure:
            error = failure.value
            if not isinstance(error, RouterError) or error.code not in ("peer_lost", "unreachable", "hop_limit"):
                return failure
            if out.op not in STATEFUL or error.code != "peer_lost":
                # Try the next path, never the one that failed. Safe for reads whatever happened; safe for writes
                # when the request provably never reached the chain (no route or hop limit on the way).
                log.info("{kind} {rid} fails over from {hop}: {error}", rid=out.request_id.hex(),
                         hop=route.next_hop, error=untrusted(error.message),
                         kind="write" if out.op in STATEFUL else "read")
                self.outcomes["failovers"] += 1
                return self._forward(out, tried | {route.next_hop})
            if not out.originated_here:
                return failure  # a relay passes the loss back as it is; the entry router words it, once
            return Failure(RouterError(
                "peer_lost",
                f"{error.message}; the write may or may not have run on {path.chain_path}: it is not retried "
                f"(request id {out.request_id.hex()}; sending it again with the same id runs it at most once)",
                {"request_id": out.request_id.hex(), **error.details},
            ))

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
            d = self._count(self._serve(link, request), "served")
        except RouterError as exc:
            d = self._count(defer.fail(exc), "served")
        if request.destination == self.local_id and request.op in OWNER_INTERFACES:
            d = self._audited(d, request.sender, request.sender_org, request.origin, request.ipath,
                              OWNER_INTERFACES[request.op], request.method, request.args)
        return d

    def _serve(self, link: PeerLink, request: Request) -> Deferred[dict[str, Any]]:
        if request.deadline_ms <= 0:
            raise RouterError("timeout", "the request arrived after its deadline")
        if self.local_id in request.path:
            raise RouterError("hop_limit", f"routing loop: {self.local_id} is already on the path {request.path}")
        if not request.path or request.path[-1] != link.peer_id:
            raise RouterError("bad_request", f"the path {request.path} must end with the sending router "
                                             f"{link.peer_id}")
        if request.op not in OPERATIONS and request.op not in TX_OPERATIONS \
                and request.op not in (OP_HEADERS, OP_EVENTS, OP_TX_STATUS):
            raise RouterError("bad_request", f"unknown operation {request.op!r}")
        try:
            path = IPath.parse(request.ipath)
        except IPathError as exc:
            raise RouterError("bad_ipath", str(exc)) from None
        trail = [*request.path, self.local_id]
        if request.destination == self.local_id:
            # Only the router the origin signed the request for runs it (a replica on the way relays it): nothing
            # runs before the signature, the expiry and the signer check out.
            certificate = self.e2e.authenticate_request(request)
            interface = OWNER_INTERFACES.get(request.op)
            if interface is not None and not is_router(request.sender):
                # The decision that counts: this router's rules, for the identity the signed request proves.
                identity = self.governance.identity_of(request.sender, request.sender_org, certificate)
                self.governance.authorize(identity, path, interface, f"router {self.local_id} (owner)")
            if request.op in TX_DECISIONS:
                request = self.e2e.from_coordinator(request)
            return self._execute(request, path, trail).addCallback(self.e2e.attest_result, request)
        if not self.settings.transit:
            raise RouterError("forbidden", f"router {self.local_id} does not relay for others (transit = false)")
        if request.hop_limit <= 1:
            raise RouterError("hop_limit", f"hop limit reached at {self.local_id} on the way to "
                                           f"{request.destination}")
        # A relay keeps the destination, expiry and signature the origin chose: a write must reach the owner that
        # deduplicates it, and the owner checks that nothing was changed on the way.
        out = Outbound(path=path, op=request.op, method=request.method, args=list(request.args),
                       sender=request.sender, request_id=request.request_id,
                       deadline=self.clock.seconds() + request.deadline_ms / 1000.0, expires_ms=request.expires_ms,
                       trail=trail, hop_limit=request.hop_limit - 1, destination=request.destination,
                       signature=request.signature, client_auth=request.client_auth,
                       sender_org=request.sender_org)
        return self._forward(out, set())

    def _execute(self, request: Request, path: IPath, trail: list[str]) -> Deferred[dict[str, Any]]:
        """Run an authenticated request addressed to this router."""
        if request.op == OP_TX_STATUS:
            return self._answer_tx_status(list(request.args), trail)
        if not self._serves(path.chain_path):
            raise RouterError("unknown_chain", f"router {self.local_id} does not serve {path.chain_path}")
        if request.op == OP_HEADERS:
            return self._answer_headers(path.chain_path, list(request.args), trail)
        if request.op == OP_EVENTS:
            return self._answer_events(path, list(request.args), trail)

        def execute() -> Deferred[dict[str, Any]]:
            d = self._run_local(path, request.op, request.method, list(request.args), request.sender, trail)
            if request.op in PROVABLE_READS:
                # A proven read goes back unsigned: its header needs a signature of its own. Any other answer is
                # authenticated whole by this router (EndToEnd.attest_result), its proof's header included.
                d.addCallback(self.e2e.sign_proof_header, path.chain_path)
            return d

        if request.op in STATEFUL:
            # Keyed by origin too: one origin cannot pick another's request id to be answered with its result.
            return self.replays.run(replay_key(request), execute)
        return execute()

    # -- the transaction layer ---------------------------------------------------------------------------------------

    def transactions(self) -> Any:
        if self.coordinator is None:
            raise RouterError("unsupported", f"router {self.local_id} runs no transaction coordinator")
        return self.coordinator

    def htlc(self) -> Any:
        if self.htlc_service is None:
            raise RouterError("unsupported", f"router {self.local_id} runs no HTLC service")
        return self.htlc_service

    def tx_call(self, path: IPath, op: str, method: str, args: list[Any], sender: str) -> Deferred[dict[str, Any]]:
        """A transaction operation (TX_OPERATIONS) on a resource, here or on the router serving it. Results are not
        put through the read/write verifier: the coordinator acts on acknowledgements, and HTLC watchers check the
        counterparty's proofs themselves."""
        if op not in TX_OPERATIONS:
            return defer.fail(RouterError("bad_request", f"{op!r} is not a transaction operation"))
        if self._serves(path.chain_path):
            return self._count(self._run_local(path, op, method, args, sender, [self.local_id]), "local")
        d = self._originate(path, op, method, list(args), sender)
        if self.trust is not None and op == OP_TX_COMMIT:
            d.addCallback(self.trust.verify_commit, path, list(args), sender)
        d.addCallback(drop_marks)
        return self._count(d, "forwarded")

    def tx_status(self, coordinator: str, tx_id: str, path: IPath) -> Deferred[dict[str, Any]]:
        """Ask ``coordinator`` (a router id) for the state of ``tx_id``; ``path`` is the asking participant's
        resource (any valid iPath: the request is routed to the coordinator router, not to a chain)."""
        if coordinator == self.local_id:
            try:
                return defer.succeed(self._answer_tx_status_now([tx_id]))
            except RouterError as exc:
                return defer.fail(exc)
        return self._originate(path, OP_TX_STATUS, "", [tx_id], f"router:{self.local_id}", coordinator) \
            .addCallback(drop_marks)

    def _answer_tx_status(self, args: list[Any], trail: list[str]) -> Deferred[dict[str, Any]]:
        return defer.succeed(dict(self._answer_tx_status_now(args), router=self.local_id, path=trail))

    def _answer_tx_status_now(self, args: list[Any]) -> dict[str, Any]:
        if len(args) != 1 or not isinstance(args[0], str):
            raise RouterError("bad_args", "txStatus takes [tx_id]")
        if self.coordinator is None:
            raise RouterError("unknown_tx", f"router {self.local_id} coordinates no transactions")
        return {"output": self.coordinator.status(args[0])}

    # -- block headers for other routers' header stores ------------------------------------------------------------

    def _answer_headers(self, chain: str, args: list[Any], trail: list[str]) -> Deferred[dict[str, Any]]:
        """Headers ``start`` .. ``start + count - 1`` of a chain we serve (fewer at the head)."""
        if len(args) != 2 or any(type(a) is not int for a in args) or args[0] < 0 or not 1 <= args[1] <= 4096:
            raise RouterError("bad_args", "headers takes [start >= 0, count in 1..4096]")
        start, count = args
        stub: Any = self.stubs.stubs().get(chain)
        if stub is None:
            raise RouterError("unknown_chain", f"router {self.local_id} does not serve {chain}")

        def headers(state: ChainState) -> Deferred[list[Any]]:
            last = min(state.height, start + count - 1)
            if last < start:
                return defer.succeed([])
            batch = getattr(stub, "headers", None)
            if batch is not None:  # one round trip to the node for the whole range (EVM)
                found: Deferred[list[Any]] = batch(start, last - start + 1)
                return found
            return defer.gatherResults([stub.header(n) for n in range(start, last + 1)], consumeErrors=True)

        signer = self.e2e.header_signer

        def answer(found: list[Any]) -> dict[str, Any]:
            wires = [h.to_wire() for h in found]
            # Each header signed by us, the chain's authority, once per block (HeaderSigner keeps them).
            signatures = [signer.sign(chain, wire) for wire in wires] if signer is not None else []
            return {"output": {"headers": wires, "signatures": signatures}, "router": self.local_id, "path": trail}

        return stub.chain_state().addCallback(headers).addCallback(answer)

    def _answer_events(self, path: IPath, args: list[Any], trail: list[str]) -> Deferred[dict[str, Any]]:
        """One poll of a served resource's events: those from block ``args[0]`` up, and where to ask next (the
        stub's page: how far one poll scans is the chain's business, IEventSource)."""
        if len(args) != 1 or type(args[0]) is not int or args[0] < 0:
            raise RouterError("bad_args", "events takes [from_block >= 0]")
        stub: Any = self.stubs.stubs().get(path.chain_path)
        if stub is None or not IEventSource.providedBy(stub):
            raise RouterError("unsupported", f"chain {path.chain_path} does not offer events")
        page: Deferred[EventPage] = stub.event_page(path.resource, args[0])
        return page.addCallback(lambda p: {"output": {"events": p.events, "next_block": p.next_block},
                                           "router": self.local_id, "path": trail})

    def events(self, path: IPath, from_block: int, wait: float,
               identity: Identity | None = None) -> Deferred[dict[str, Any]]:
        """``GET /{zone}/{chain}/{resource}/events``: a long poll. Answers as soon as there are events from
        ``from_block`` on, else after ``wait`` seconds with none; ``next_block`` says where to continue. Polls
        travel in the caller's name (``identity``: the owner decides whether it may read these events)."""
        caller = identity if identity is not None else self.governance.identity_of("anonymous", None)
        try:
            self.governance.authorize(caller, path, "events", f"router {self.local_id}")
        except RouterError as exc:
            return defer.fail(exc)
        wait = min(max(wait, 0.0), MAX_EVENTS_WAIT)
        deadline = self.clock.seconds() + wait
        timers: list[IDelayedCall] = []

        def cancel(_: Deferred[dict[str, Any]]) -> None:  # the client went away: no poll stays scheduled
            for timer in timers:
                if timer.active():
                    timer.cancel()

        result: Deferred[dict[str, Any]] = Deferred(cancel)

        def poll() -> None:
            if result.called:  # the client went away (cancelled): stop polling
                return
            if self._serves(path.chain_path):
                d = self._answer_events(path, [from_block], [self.local_id])
            else:
                d = self._originate(path, OP_EVENTS, "poll", [from_block], caller.name, sender_org=caller.org or "")
                d.addCallback(drop_marks)
                if self.trust is not None:
                    d.addCallback(self.trust.verify_events, path)
            d.addCallbacks(polled, lambda failure: None if result.called else result.errback(failure))

        def polled(answer: dict[str, Any]) -> None:
            if result.called:
                return
            output = answer.get("output", {})
            events = output.get("events", []) if isinstance(output, dict) else []
            if events or self.clock.seconds() + EVENTS_POLL_INTERVAL > deadline or self._stopped:
                result.callback({"events": events, "next_block": output.get("next_block", from_block),
                                 "router": answer.get("router")})
                return
            timers[:] = [self.clock.callLater(EVENTS_POLL_INTERVAL, poll)]

        try:
            poll()
        except RouterError as exc:
            return defer.fail(exc)
        return result

    def fetch_headers(self, chain: str, source: str, start: int, count: int) -> Deferred[list[Any]]:
        """Ask router ``source`` (over the overlay, like any request) for headers of a chain it serves."""
        path = IPath.parse(f"{chain}.headers")
        if source == self.local_id:
            d = self._answer_headers(chain, [start, count], [self.local_id])
        else:
            d = self._originate(path, OP_HEADERS, "range", [start, count], f"router:{self.local_id}", source) \
                .addCallback(drop_marks)

        def unpack(result: dict[str, Any]) -> list[Any]:
            output = result.get("output")
            headers = output.get("headers") if isinstance(output, dict) else None
            signatures = output.get("signatures") if isinstance(output, dict) else None
            if not isinstance(headers, list) or not all(isinstance(h, dict) for h in headers):
                raise RouterError("proof_invalid", f"{source} answered headers of {chain} with no header list",
                                  {"check": "malformed"})
            if source != self.local_id:
                if not isinstance(signatures, list) or len(signatures) != len(headers):
                    self.e2e.refuse("proof_invalid", "header_signature",
                                    f"headers of {chain} from {source} are not each signed", router=source)
                for wire, signature in zip(headers, signatures, strict=True):
                    self.authenticate_header(chain, wire, source, signature)
            return headers

        return d.addCallback(unpack)

    def header(self, chain: str, number: int) -> Deferred[dict[str, Any]]:
        """``GET /chains/<zone>/<chain>/headers/<n>``: a header of a chain we serve, or one our header store trusts
        (fetched and checked now if need be)."""
        if number < 0:
            return defer.fail(RouterError("bad_request", "block numbers start at 0"))
        stub: Any = self.stubs.stubs().get(chain)
        if stub is not None:
            return stub.header(number).addCallback(
                lambda h: {"chain": chain, "header": h.to_wire(), "trust": {"source": "served here"}})
        if self.trust is None:
            return defer.fail(RouterError("not_found", "this router keeps no header store"))
        route = self.table.route(chain)
        owners = self.replicas_of(chain)
        if not owners:
            return defer.fail(RouterError("unknown_chain", f"no router known to serve chain {chain}"))
        owner = route.destination if route is not None else owners[0]
        chain_type = self.chain_type_of(chain, owner) or "unknown"
        trust = self.trust

        def found(digest: str) -> dict[str, Any]:
            header_chain = trust.store.chains[chain]
            trusted = header_chain.headers[number]
            return {"chain": chain, "header": dict(trusted.wire),
                    "trust": {**header_chain.describe(), "sources": sorted(trusted.sources)}}

        return trust.trusted_hash(chain, chain_type, number, owner).addCallback(found)

    def chains(self) -> dict[str, Any]:
        """``GET /chains``: chains served here, and the header chains this router trusts for remote chains."""
        served = [{"chain": path, "type": st.chain_type, "height": st.height, "head": st.head_hash,
                   "genesis": st.genesis_hash} for path, st in sorted(self.chain_states.items())]
        remote = self.trust.store.describe() if self.trust is not None else []
        verified = dict(self.trust.counters) if self.trust is not None else {}
        return {"served": served, "trusted_headers": remote, "verification": verified}

    def chain_type_of(self, chain: str, router_id: str) -> str | None:
        """The chain type ``router_id`` announces for ``chain`` in its signed gossip record."""
        record = self.directory.records().get(router_id)
        if record is None:
            return None
        for info in record.chains:
            if info.path == chain:
                return info.chain_type
        return None

    def resource_kind(self, ipath: str) -> str | None:
        entry = self.directory.resource(ipath)
        return None if entry is None else entry.kind

    def replicas_of(self, chain: str) -> list[str]:
        return sorted(self.directory.routers_for_chain(chain))

    def handle_gossip(self, link: PeerLink, message: GossipDigest | GossipRecords | GossipSummary) -> None:
        if self.gossip is None:
            return
        if isinstance(message, GossipDigest):
            self.gossip.on_digest(link, message)
        elif isinstance(message, GossipSummary):
            self.gossip.on_summary(link, message)
        else:
            self.gossip.on_records(link, message)

    def peer_up(self, link: PeerLink) -> None:
        if self.gossip is not None:
            self.gossip.link_up(link)

    def peer_down(self, link: PeerLink) -> None:
        if self.gossip is not None:
            self.gossip.link_down(link)

    def peer_measured(self, link: PeerLink) -> None:
        if self.gossip is not None:
            self.gossip.publish_soon("link measured")

    # -- our gossip record and the routing table ------------------------------------------------------------------

    def local_content(self) -> LocalContent:
        """What our gossip record says about us (GossipService signs and spreads it)."""
        peers = self.peer_service
        return LocalContent(
            zones=tuple(self.settings.zones),
            transit=self.settings.transit,
            listen=peers.advertised_listen() if peers else "",
            chains=tuple(ChainInfo(path=p, chain_type=st.chain_type, height=st.height, genesis_hash=st.genesis_hash)
                         for p, st in sorted(self.chain_states.items())),
            resources=tuple(ResourceEntry(ipath=str(path), kind=info.kind, methods=dict(info.methods))
                            for path, info in self.stubs.local_resources()),
            links=tuple(LinkInfo(m.peer, m.srtt_ms, m.loss, m.bandwidth_bps, m.flaps)
                        for m in peers.link_infos()) if peers else (),
        )

    def directory_changed(self) -> None:
        """Debounce: a burst of gossip (a router's restart reaching us from every side) makes one rebuild."""
        if self._stopped or (self._rebuild_call is not None and self._rebuild_call.active()):
            return
        self._rebuild_call = self.clock.callLater(self.settings.routing.rebuild_delay, self.rebuild_routes)

    def rebuild_routes(self) -> None:
        self._rebuild_call = None
        if self.directory.routing_version == self._built_version:
            return
        self._built_version = self.directory.routing_version
        records = self.directory.records()
        served = {path: state.genesis_hash for path, state in self.chain_states.items()}
        pinned = dict(self.settings.trust.checkpoints)
        if self.trust is not None:
            for header_chain in self.trust.store.chains.values():
                if header_chain.checkpoint is not None and header_chain.checkpoint_number == 0:
                    pinned.setdefault(header_chain.chain, header_chain.checkpoint)
        chosen = replicas(records, self.directory.authorized, served, pinned)
        for verdict in chosen.clashes.values():
            if self._clash_verdicts.get(verdict.path) != verdict:
                log.warn("router {id}: {verdict}", id=self.local_id, verdict=verdict.describe())
        self._clash_verdicts = dict(chosen.clashes)
        changes = self.table.rebuild(self.graph_builder(records), chosen)
        for change in changes:
            self.route_changes += 1
            old = " -> ".join(change.old.path) if change.old else "none"
            new = " -> ".join(change.new.path) if change.new else "none"
            log.info("router {id}: route to {chain} {kind}: {old} => {new}", id=self.local_id, chain=change.chain,
                     kind=change.kind, old=old, new=new)

    # -- peers added and removed at run time (admin.peers: the REST layer decides who may) -------------------------

    def add_peer(self, address: str, peer_id: str | None) -> dict[str, Any]:
        """Dial ``address`` now and keep redialling it as a configured peer (PeerService.add_peer, idempotent):
        what changed, as a dict. RouterError ``bad_request`` for what the peer service refuses (a bad address or
        id, this router's own id, an address dialled under another id), ``unsupported`` without a peer service."""
        if self.peer_service is None:
            raise RouterError("unsupported", "this router has no peer service")
        try:
            return self.peer_service.add_peer(address, peer_id).as_dict()
        except ValueError as exc:
            raise RouterError("bad_request", f"cannot add peer: {str(exc)[:300]}") from None

    def remove_peer(self, peer: str) -> dict[str, Any]:
        """Stop dialling ``peer`` (router id or host:port) and close the links to it (PeerService.remove_peer,
        idempotent: ``changed`` False when there was none); ``unsupported`` without a peer service."""
        if self.peer_service is None:
            raise RouterError("unsupported", "this router has no peer service")
        return self.peer_service.remove_peer(peer).as_dict()
