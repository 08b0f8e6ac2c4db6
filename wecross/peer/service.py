"""PeerService: the router's links to other routers.

It listens for peers, dials every configured peer through its own :class:`ClientService` (exponential back-off with
jitter), keeps exactly one link per peer router (which one, when a second arrives, is
:func:`~wecross.peer.link.judge_duplicate`'s rule: a live link is never displaced by a newcomer presenting the same
certificate, except in the simultaneous-dial tie-break), and tells the router when links come and go. How bytes
travel is the business of a :class:`LinkTransports` object: real TCP + mutual TLS in a daemon, in-memory links in the
simulator. Everything above (handshake, heartbeats, duplicate resolution, request handling) is the same code.

Admission changes at run time: :meth:`PeerService.add_peer` and :meth:`PeerService.remove_peer` start and stop a
peer's dialler (an administrator's addPeer/removePeer; not written back to the config file), and
:meth:`PeerService.apply_revocation` ends the live links whose peer's certificate a newer revocation list names.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509
from twisted.application.internet import ClientService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from wecross.config import Address, PeerSettings, Timing, parse_address
from wecross.logs import untrusted
from wecross.peer.link import LinkMeasure, judge_duplicate
from wecross.peer.protocol import LinkOwner, PeerLink
from wecross.pki.authority import InvalidNameError, validate_router_id
from wecross.pki.revocation import RevocationList
from wecross.wire.errors import WireError
from wecross.wire.limits import Limits as WireLimits
from wecross.wire.messages import SUPPORTED_VERSIONS, GossipDigest, GossipRecords, GossipSummary, Hello, Request

log = Logger()

#: A link that went down this many seconds ago no longer counts as a flap.
_FLAP_WINDOW = 600.0
#: The BYE reason (and refused_links counter) of a link whose peer's certificate is revoked.
REVOKED = "revoked"


class LinkTransports(Protocol):
    """How links are carried: endpoints to listen on and to dial, and how a peer proves its id."""

    def server_endpoint(self) -> IStreamServerEndpoint | None:
        """Where to accept peers, or None for a router that only dials out."""

    def client_endpoint(self, peer: PeerSettings) -> IStreamClientEndpoint:
        """How to reach one configured peer."""

    def identify(self, link: PeerLink, hello: Hello) -> str | None:
        """None if the link's authenticated identity is ``hello.router_id``; else the reason to refuse."""


class CertifiedTransports(Protocol):
    """Transports whose links carry certificates (TLS): what revocation is enforced on. The simulator's are not."""

    def peer_chain(self, link: PeerLink) -> tuple[x509.Certificate, ...]:
        """The certificates the link's peer presented, leaf first; () when unknown."""


@dataclass(frozen=True, slots=True)
class PeerChange:
    """What :meth:`PeerService.add_peer` or :meth:`PeerService.remove_peer` did (``changed`` False: nothing)."""

    changed: bool
    message: str
    peer_id: str | None = None
    address: str | None = None
    closed_links: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "message": self.message, "id": self.peer_id, "address": self.address,
                "closed_links": self.closed_links}


class RequestHandler(Protocol):
    """The router side of the peer service."""

    def handle_request(self, link: PeerLink, request: Request) -> Deferred[dict[str, Any]]: ...

    def handle_gossip(self, link: PeerLink, message: GossipDigest | GossipRecords | GossipSummary) -> None: ...

    def peer_up(self, link: PeerLink) -> None: ...

    def peer_down(self, link: PeerLink) -> None: ...

    def peer_measured(self, link: PeerLink) -> None: ...


def backoff_delays(
    initial: float, maximum: float, factor: float, jitter: float, rng: random.Random
) -> Callable[[int], float]:
    """Delay before reconnect attempt ``n`` (0-based): exponential, capped, with proportional jitter.

    Jitter takes up to ``jitter`` of the delay away at random, so routers that lost a common neighbour do not all
    redial in the same instant, and a run seeded alike in the simulator redials alike.
    """

    def delay(attempt: int) -> float:
        base = min(maximum, initial * factor ** min(attempt, 64))
        return base * (1.0 - jitter * rng.random())

    return delay


@dataclass
class Dialer:
    """One configured peer: its ClientService and what we know of its attempts."""

    settings: PeerSettings
    service: ClientService | None = None
    attempts: int = 0
    last_error: str = ""
    peer_id: str | None = None
    paused_for: PeerLink | None = None
    connected: bool = False


@dataclass
class PeerCounters:
    bad_frames: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    links_up: int = 0
    links_down: int = 0


class _LinkFactory(Factory):
    def __init__(self, owner: PeerService, outbound: bool, dialer: Dialer | None) -> None:
        self.owner = owner
        self.outbound = outbound
        self.dialer = dialer

    def buildProtocol(self, addr: Any) -> PeerLink:
        link = self.owner.new_link(outbound=self.outbound, dialer=self.dialer)
        link.factory = self
        return link


class PeerService(MultiService, LinkOwner):
    """All of one router's peer links."""

    def __init__(
        self,
        *,
        local_id: str,
        zones: tuple[str, ...],
        listen: Address | None,
        peers: tuple[PeerSettings, ...],
        transports: LinkTransports,
        handler: RequestHandler,
        timing: Timing,
        wire_limits: WireLimits,
        max_in_flight: int,
        clock: IReactorTime,
        rng: random.Random | None = None,
        epoch: int | None = None,
    ) -> None:
        super().__init__()
        self.local_id = local_id
        self.zones = zones
        self.listen = listen
        self.transports = transports
        self.handler = handler
        self.timing = timing
        self.wire_limits = wire_limits
        self.max_in_flight = max_in_flight
        self.clock = clock
        self.rng = rng or random.Random()
        self.epoch = epoch if epoch is not None else int(time.time() * 1000)
        self.links: dict[str, PeerLink] = {}
        self.pending: set[PeerLink] = set()
        self.dialers = [Dialer(p) for p in peers]
        self.counters = PeerCounters()
        self.port: IListeningPort | None = None
        self._downs: dict[str, deque[float]] = {}
        #: The revocation list in force (:meth:`apply_revocation`); None: nothing is revoked.
        self.revocation: RevocationList | None = None

    # -- service lifecycle ------------------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for dialer in self.dialers:
            self._start_dialer(dialer)

    def listen_now(self) -> Deferred[IListeningPort | None]:
        """Start accepting peers; fires with the port (its real number matters when the config said port 0)."""
        endpoint = self.transports.server_endpoint()
        if endpoint is None:
            d: Deferred[IListeningPort | None] = Deferred()
            d.callback(None)
            return d

        def listening(port: IListeningPort) -> IListeningPort:
            self.port = port
            log.info("router {id}: accepting peers on {addr}", id=self.local_id, addr=port.getHost())
            return port

        return endpoint.listen(_LinkFactory(self, outbound=False, dialer=None)).addCallback(listening)

    def stopService(self) -> Deferred[None]:
        for dialer in self.dialers:
            dialer.paused_for = None
        for link in list(self.links.values()) + list(self.pending):
            # abort: a peer that stopped reading must not hold our shutdown (the BYE gets half a second to leave)
            link.close("router shutting down", abort=True)
        d = super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            d.addCallback(lambda _: port.stopListening())
        return d

    def _start_dialer(self, dialer: Dialer) -> None:
        policy = backoff_delays(
            self.timing.backoff_initial, self.timing.backoff_max, self.timing.backoff_factor,
            self.timing.backoff_jitter, self.rng,
        )

        def retry_policy(_failed_attempts: int) -> float:
            # ClientService resets its count on every TCP connect; a peer that accepts TCP but refuses the
            # handshake must still be backed off, so count our own attempts until a link is really up.
            delay = policy(dialer.attempts)
            dialer.attempts += 1
            return delay

        service = ClientService(
            self.transports.client_endpoint(dialer.settings),
            _LinkFactory(self, outbound=True, dialer=dialer),
            retryPolicy=retry_policy,
            clock=self.clock,
        )
        dialer.service = service
        service.setServiceParent(self)

    def _pause_dialer(self, dialer: Dialer, survivor: PeerLink) -> None:
        """Stop redialling a peer we are already linked to through its own dial; resume when that link drops."""
        if dialer.service is None or dialer.paused_for is not None:
            return
        dialer.paused_for = survivor
        service, dialer.service = dialer.service, None
        service.disownServiceParent()
        log.debug("router {id}: not dialling {peer}: linked through its own connection", id=self.local_id,
                  peer=survivor.peer_id)

    # -- LinkOwner --------------------------------------------------------------------------------------------------

    def new_link(self, *, outbound: bool, dialer: Dialer | None) -> PeerLink:
        link = PeerLink(
            self,
            self.clock,
            outbound=outbound,
            expected_id=dialer.settings.id if dialer else None,
            heartbeat_interval=self.timing.heartbeat_interval,
            dead_after=self.timing.dead_after,
            handshake_timeout=self.timing.handshake_timeout,
            wire_limits=self.wire_limits,
            max_in_flight=self.max_in_flight,
        )
        link.dialer = dialer  # type: ignore[attr-defined]
        self.pending.add(link)
        return link

    def hello(self) -> Hello:
        return Hello(
            router_id=self.local_id,
            versions=list(SUPPORTED_VERSIONS),
            zones=list(self.zones),
            features=[],
            listen=self.advertised_listen(),
            epoch=self.epoch,
        )

    def advertised_listen(self) -> str:
        """Where peers can reach us: the configured address, with the real port once bound (config may say 0)."""
        if self.listen is None:
            return ""
        port = self.port.getHost().port if self.port is not None else self.listen.port
        if port == 0:
            return ""
        host = f"[{self.listen.host}]" if ":" in self.listen.host else self.listen.host
        return f"{host}:{port}"

    def identify(self, link: PeerLink, hello: Hello) -> str | None:
        if hello.router_id == self.local_id:
            return "the peer has our own router id (a router dialling itself, or a stolen identity)"
        refusal = self.transports.identify(link, hello)
        if refusal is not None:
            self.counters.refused["identity"] += 1
            return refusal
        if self._revoked_peer(link) is not None:
            # The handshake checked the list in force then; this catches a list that changed since.
            self.counters.refused[REVOKED] += 1
            return REVOKED
        return None

    def link_up(self, link: PeerLink) -> str | None:
        peer_id = link.peer_id
        assert peer_id is not None
        existing = self.links.get(peer_id)
        if existing is not None and existing is not link:
            now = self.clock.seconds()
            verdict = judge_duplicate(
                self.local_id, peer_id, existing_outbound=existing.outbound,
                existing_alive=existing.closing_reason is None and not existing.lost and not existing.health.dead(now),
                existing_age=now - existing.connected_at, newcomer_outbound=link.outbound,
                simultaneous_window=self.timing.handshake_timeout,
            )
            loser, survivor = (existing, link) if verdict.newcomer_wins else (link, existing)
            self.counters.refused[verdict.kind] += 1
            if verdict.kind != "duplicate":  # the tie-break of a simultaneous dial is routine; the rest is not
                log.warn("router {id}: {peer}: {reason}; kept the link {kept} ({kept_addr}), closing the one "
                         "{closed} ({closed_addr})", id=self.local_id, peer=untrusted(peer_id, 64),
                         reason=verdict.reason, kept="out" if survivor.outbound else "in", kept_addr=survivor.address,
                         closed="out" if loser.outbound else "in", closed_addr=loser.address)
            loser_dialer: Dialer | None = getattr(loser, "dialer", None)
            if loser.outbound and loser_dialer is not None:
                # Linked through the other connection: redialling would only be refused again until it drops.
                self._pause_dialer(loser_dialer, survivor)
            if not verdict.newcomer_wins:
                return verdict.reason
            self.links.pop(peer_id, None)
            loser.close(verdict.reason)
        self.pending.discard(link)
        self.links[peer_id] = link
        dialer: Dialer | None = getattr(link, "dialer", None)
        if dialer is not None:
            dialer.attempts = 0
            dialer.peer_id = peer_id
            dialer.connected = True
            dialer.last_error = ""
        self.counters.links_up += 1
        self.handler.peer_up(link)
        return None

    def link_down(self, link: PeerLink, reason: str) -> None:
        self.pending.discard(link)
        dialer: Dialer | None = getattr(link, "dialer", None)
        if dialer is not None:
            dialer.connected = False
            dialer.last_error = reason
        if link.peer_id is not None and self.links.get(link.peer_id) is link:
            del self.links[link.peer_id]
            self.counters.links_down += 1
            self._downs.setdefault(link.peer_id, deque(maxlen=64)).append(self.clock.seconds())
            log.info("router {id}: link to {peer} down: {reason}", id=self.local_id, peer=link.peer_id,
                     reason=reason)
            self.handler.peer_down(link)
            for paused in self.dialers:
                if paused.paused_for is link:
                    paused.paused_for = None
                    if self.running:
                        self._start_dialer(paused)

    # -- revocation -------------------------------------------------------------------------------------------------

    def note_tls_refusal(self, kind: str) -> None:
        """Count a handshake the TLS layer refused (``kind``: "revoked" or "tls") in ``/status`` refused_links."""
        self.counters.refused[kind] += 1

    def _revoked_peer(self, link: PeerLink) -> x509.Certificate | None:
        revocation = self.revocation
        chain_of = getattr(self.transports, "peer_chain", None)
        if not revocation or chain_of is None:
            return None
        chain: tuple[x509.Certificate, ...] = chain_of(link)
        index = revocation.first_revoked(chain)
        return None if index is None else chain[index]

    def apply_revocation(self, revocation: RevocationList) -> list[str]:
        """Put a new revocation list in force: links (up or in their handshake) whose peer presented a certificate
        it names are closed with a BYE saying "revoked", and counted (refused_links "revoked_live"; handshakes the
        TLS layer refuses count as "revoked"). Returns the router ids (or addresses) cut.

        Their diallers keep running: the next handshake is refused by the TLS layer with the same list, and backs
        off, so a certificate un-revoked later links again without anyone re-adding the peer.
        """
        self.revocation = revocation
        closed: list[str] = []
        for link in [*self.links.values(), *self.pending]:
            if link.closing_reason is not None or self._revoked_peer(link) is None:
                continue
            who = link.peer_id or link.address
            log.warn("router {id}: closing the link to {peer}: its certificate is revoked", id=self.local_id,
                     peer=untrusted(who, 64))
            self.counters.refused["revoked_live"] += 1
            link.close(REVOKED)
            closed.append(who)
        return sorted(closed)

    # -- admission at run time --------------------------------------------------------------------------------------

    def add_peer(self, address: Address | str, peer_id: str | None = None) -> PeerChange:
        """Start dialling a peer (and keep redialling it, as for a configured one). Idempotent: a peer already
        dialled at that address with that id changes nothing. Raises ValueError for a bad address or id, our own
        id, or an address already dialled under another id (remove it first)."""
        addr = address if isinstance(address, Address) else parse_address(address)
        if peer_id is not None:
            try:
                validate_router_id(peer_id)
            except InvalidNameError as exc:
                raise ValueError(exc.message) from None
            if peer_id == self.local_id:
                raise ValueError("a router cannot peer with itself")
        for dialer in self.dialers:
            if dialer.settings.address != addr:
                continue
            if dialer.settings.id == peer_id:
                return PeerChange(False, f"already dialling {addr}" + (f" ({peer_id})" if peer_id else ""),
                                  peer_id, str(addr))
            raise ValueError(f"{addr} is already dialled as {dialer.settings.id or 'a peer of unstated id'}: "
                             "remove it first")
        dialer = Dialer(PeerSettings(addr, peer_id))
        self.dialers.append(dialer)
        if self.running:
            self._start_dialer(dialer)
        log.info("router {id}: peer {peer} at {addr} added", id=self.local_id, peer=peer_id or "?", addr=str(addr))
        return PeerChange(True, f"dialling {addr}" + (f" ({peer_id})" if peer_id else ""), peer_id, str(addr))

    def remove_peer(self, peer: str) -> PeerChange:
        """Stop dialling a peer (by router id or ``host:port``) and close our links to it. Idempotent: an unknown
        peer changes nothing. The peer may still dial us (remove us there too, or revoke its certificate)."""
        try:
            addr: Address | None = parse_address(peer)
        except ValueError:
            addr = None
        matches = [d for d in self.dialers
                   if (addr is not None and d.settings.address == addr) or peer in (d.settings.id, d.peer_id)]
        ids = {peer} if addr is None else set()
        ids.update(i for d in matches for i in (d.settings.id, d.peer_id) if i is not None)
        for dialer in matches:
            self.dialers.remove(dialer)
            dialer.paused_for = None
            service, dialer.service = dialer.service, None
            if service is not None:
                service.disownServiceParent()  # stops it: no redial, and it drops a connection still in handshake
        closed = 0
        for link in [*self.links.values(), *self.pending]:
            if link.closing_reason is None and (link.peer_id in ids or getattr(link, "dialer", None) in matches):
                link.close("removed by an administrator")
                closed += 1
        peer_id = next(iter(sorted(i for i in ids if i)), None)
        address = str(matches[0].settings.address) if matches else (str(addr) if addr else None)
        if not matches and not closed:
            return PeerChange(False, f"no peer {peer!r} to remove", peer_id, address)
        log.info("router {id}: peer {peer} removed ({n} diallers stopped, {m} links closed)", id=self.local_id,
                 peer=untrusted(peer, 64), n=len(matches), m=closed)
        return PeerChange(True, f"removed {peer}: {len(matches)} dialler(s) stopped, {closed} link(s) closed",
                          peer_id, address, closed)

    def link_measured(self, link: PeerLink) -> None:
        if link.peer_id is not None and self.links.get(link.peer_id) is link:
            self.handler.peer_measured(link)

    def frame_error(self, link: PeerLink, error: WireError) -> None:
        self.counters.bad_frames[error.reason] += 1

    def handle_request(self, link: PeerLink, request: Request) -> Deferred[dict[str, Any]]:
        return self.handler.handle_request(link, request)

    def handle_gossip(self, link: PeerLink, message: GossipDigest | GossipRecords | GossipSummary) -> None:
        self.handler.handle_gossip(link, message)

    def link_infos(self) -> tuple[LinkMeasure, ...]:
        """Our links as our gossip record states them: measured RTT, loss and recent flaps per peer.

        A link without an RTT sample yet is left out: it cannot be weighed, and it is stated as soon as its first
        pong arrives (``link_measured``), a millisecond or so after it came up.
        """
        now = self.clock.seconds()
        infos = []
        for peer_id, link in sorted(self.links.items()):
            snap = link.health.snapshot()
            if snap.srtt is None:
                continue
            infos.append(LinkMeasure(
                peer=peer_id,
                srtt_ms=snap.srtt * 1000.0,
                loss=min(1.0, max(0.0, snap.loss)),
                bandwidth_bps=snap.bandwidth_bps,  # 0 until the link has carried over 1 Mbit/s: unknown
                flaps=self._flaps(peer_id, now),
            ))
        return tuple(infos)

    def _flaps(self, peer_id: str, now: float) -> int:
        downs = self._downs.get(peer_id)
        if not downs:
            return 0
        while downs and now - downs[0] > _FLAP_WINDOW:
            downs.popleft()
        return len(downs)

    # -- views ------------------------------------------------------------------------------------------------------

    def peer_table(self) -> list[dict[str, Any]]:
        """What ``GET /peers`` shows: established links, then configured peers that are not linked."""
        now = self.clock.seconds()
        rows: list[dict[str, Any]] = []
        for peer_id, link in sorted(self.links.items()):
            snap = link.health.snapshot()
            rows.append({
                "id": peer_id,
                "address": link.address,
                "listen": link.peer_hello.listen if link.peer_hello else "",
                "zones": list(link.peer_hello.zones) if link.peer_hello else [],
                "state": "up",
                "direction": "outbound" if link.outbound else "inbound",
                "srtt_ms": None if snap.srtt is None else round(snap.srtt * 1000, 3),
                "rttvar_ms": None if snap.rttvar is None else round(snap.rttvar * 1000, 3),
                "last_rtt_ms": None if snap.last_rtt is None else round(snap.last_rtt * 1000, 3),
                "loss": round(snap.loss, 4),
                "bandwidth_bps": round(snap.bandwidth_bps),
                "last_heard_s": round(now - snap.last_heard, 3),
                "up_for_s": round(now - link.connected_at, 3),
                "in_flight": link.in_flight,
                "bytes_in": link.bytes_in,
                "bytes_out": link.bytes_out,
                "frames_in": link.frames_in,
                "frames_out": link.frames_out,
                "protocol": link.version,
            })
        linked = set(self.links)
        for dialer in self.dialers:
            if dialer.peer_id in linked or dialer.connected:
                continue
            rows.append({
                "id": dialer.settings.id or dialer.peer_id,
                "address": str(dialer.settings.address),
                "state": "connecting",
                "direction": "outbound",
                "attempts": dialer.attempts,
                "last_error": dialer.last_error,
            })
        return rows
