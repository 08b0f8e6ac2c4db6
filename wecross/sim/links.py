"""Simulated links: in-memory connections between routers on the virtual clock.

The peer layer cannot tell these from TCP + TLS: it gets endpoints to listen on and to dial, transports with
``write``/``loseConnection``/``abortConnection``, and a way to learn the peer's authenticated id (here the
simulator's word for who is at the other end, which stands in for the certificate check; gossip records are still
signed and verified for real).

What a link does to bytes, per direction:
- serialisation: a frame occupies the link for ``size * 8 / bandwidth`` seconds, frames queue behind each other;
- propagation: ``latency`` (fixed, or drawn per frame from the link's distribution);
- loss: a stream cannot lose bytes, so a lost transmission costs a retransmission timeout (max(200 ms, 2 * RTT))
  and the frame arrives late; several losses in a row cost several timeouts;
- order: frames never overtake each other (it is one TCP connection);
- flow control: a sender with more than ``SEND_WINDOW`` bytes written and not yet delivered is paused (its
  registered producer's ``pauseProducing``) until deliveries bring that below ``RESUME_BELOW``, as a TCP send
  buffer and window would; writes while paused are still accepted (a producer may overrun, as with Twisted).
Connection set-up costs one round trip. A link that is cut delivers nothing (what was in flight is lost) and tells
nobody: the routers at its ends find out from their heartbeats, as they would in a real network. A crashed router
likewise goes silent; a router that stops gracefully closes its connections, and the other ends hear it.

Every random draw comes from a generator seeded by (run seed, link, direction), so a run repeats bit for bit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet.address import HostnameAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from wecross.config import PeerSettings
from wecross.peer.protocol import PeerLink
from wecross.sim.clock import SimClock
from wecross.sim.model import LinkSpec
from wecross.wire.messages import Hello

#: Bytes in flight per direction above which the sender's producer is paused, and below which it is resumed.
SEND_WINDOW = 64 * 1024
RESUME_BELOW = 16 * 1024
#: The smallest retransmission timeout a lost transmission costs (Linux's minimum RTO).
MIN_RTO = 0.2
#: How long a dial towards a silent router (crashed, or behind a cut link) takes to fail.
CONNECT_TIMEOUT = 3.0


@dataclass
class Direction:
    """One direction of a link: when it is free to send again, and when its last frame arrives."""

    rng: random.Random
    busy_until: float = 0.0
    last_arrival: float = 0.0


@dataclass
class SimLink:
    spec: LinkSpec
    forward: Direction  # spec.a -> spec.b
    backward: Direction
    #: Bumped when the link is cut: frames sent before a cut never arrive, even if it heals before they would.
    generation: int = 0

    def direction(self, sender: str) -> Direction:
        return self.forward if sender == self.spec.a else self.backward

    def one_way(self, rng: random.Random) -> float:
        spec = self.spec
        base = spec.latency_ms
        jitter = spec.jitter_ms
        if spec.distribution == "uniform" and jitter > 0:
            base += rng.uniform(-jitter, jitter)
        elif spec.distribution == "normal" and jitter > 0:
            base += rng.gauss(0.0, jitter)
        elif spec.distribution == "exponential" and jitter > 0:
            base += rng.expovariate(1.0 / jitter)
        return max(0.0, base) / 1000.0

    def arrival(self, sender: str, size: int, now: float) -> float:
        """When a frame of ``size`` bytes written now by ``sender`` arrives at the other end."""
        way = self.direction(sender)
        spec = self.spec
        start = now if now > way.busy_until else way.busy_until
        if spec.bandwidth_mbps is not None:
            start += size * 8 / (spec.bandwidth_mbps * 1e6)
            way.busy_until = start
        arrive = start + self.one_way(way.rng)
        if spec.loss > 0:
            rto = max(MIN_RTO, 4 * spec.latency_ms / 1000.0)
            while way.rng.random() < spec.loss:
                arrive += rto
        if arrive < way.last_arrival:
            arrive = way.last_arrival
        way.last_arrival = arrive
        return arrive


class Traffic:
    """Frames and bytes each router wrote (what the report calls messages and bytes per router), and the frames a
    cut link or a crashed router swallowed."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.total_frames = 0
        self.dropped = 0

    def sent(self, router_id: str, size: int) -> None:
        self.frames[router_id] = self.frames.get(router_id, 0) + 1
        self.bytes[router_id] = self.bytes.get(router_id, 0) + size
        self.total_frames += 1


class SimNet:
    """The physical network: links and their state, who listens, who is alive."""

    def __init__(self, clock: SimClock, links: tuple[LinkSpec, ...], seed: int) -> None:
        self.clock = clock
        self.seed = seed
        self.links: dict[frozenset[str], SimLink] = {}
        for spec in links:
            self.links[spec.key] = SimLink(spec, Direction(self._rng(spec, "fwd")), Direction(self._rng(spec, "bwd")))
        self.listeners: dict[str, Factory] = {}
        #: Routers whose machine is gone: they send nothing and receive nothing until started again.
        self.silent: set[str] = set()
        self.traffic = Traffic()

    def _rng(self, spec: LinkSpec, way: str) -> random.Random:
        return random.Random(f"{self.seed}/{spec.a}/{spec.b}/{way}")

    def link(self, a: str, b: str) -> SimLink | None:
        return self.links.get(frozenset((a, b)))

    def usable(self, link: SimLink, a: str, b: str) -> bool:
        return link.spec.up and a not in self.silent and b not in self.silent

    # -- events ---------------------------------------------------------------------------------------------------

    def cut(self, a: str, b: str) -> None:
        link = self._existing(a, b)
        if link.spec.up:
            link.spec = replace(link.spec, up=False)
            link.generation += 1

    def heal(self, a: str, b: str) -> None:
        link = self._existing(a, b)
        if not link.spec.up:
            link.spec = replace(link.spec, up=True)

    def change(self, a: str, b: str, **changes: Any) -> None:
        """New physical properties (latency, jitter, distribution, loss, bandwidth) from now on."""
        link = self._existing(a, b)
        link.spec = replace(link.spec, **changes)

    def _existing(self, a: str, b: str) -> SimLink:
        link = self.link(a, b)
        if link is None:
            raise KeyError(f"no link between {a} and {b}")
        return link

    # -- connections ----------------------------------------------------------------------------------------------

    def dial(self, source: str, target: str, factory: Factory) -> Deferred[Protocol]:
        """A connection attempt: succeeds after one round trip, is refused if nobody listens, times out if silent."""
        clock = self.clock
        link = self.link(source, target)
        timer: list[Any] = []

        def cancel(d: Deferred[Protocol]) -> None:
            for call in timer:
                if call.active():
                    call.cancel()

        d: Deferred[Protocol] = Deferred(cancel)
        if link is None or not self.usable(link, source, target):
            timer.append(clock.callLater(CONNECT_TIMEOUT, _fail, d, ConnectTimeout(string=f"{target} does not answer")))
            return d
        rtt = 2 * link.one_way(link.direction(source).rng)

        def establish() -> None:
            if d.called:
                return
            if not self.usable(link, source, target):
                timer.append(clock.callLater(CONNECT_TIMEOUT, _fail, d, ConnectTimeout(string=f"{target} is silent")))
                return
            server_factory = self.listeners.get(target)
            if server_factory is None:
                d.errback(ConnectionRefusedError(f"{target} is not listening"))
                return
            server = server_factory.buildProtocol(HostnameAddress(source.encode(), 0))
            client = factory.buildProtocol(HostnameAddress(target.encode(), 0))
            if server is None or client is None:
                d.errback(ConnectionRefusedError(f"{target} refused the connection"))
                return
            connection = SimConnection(self, link, (source, target), (client, server))
            connection.start()
            d.callback(client)

        timer.append(clock.callLater(rtt, establish))
        return d


def _fail(d: Deferred[Any], error: Exception) -> None:
    if not d.called:
        d.errback(error)


class SimConnection:
    """Both ends of one connection over a SimLink; end 0 dialled, end 1 accepted."""

    def __init__(self, net: SimNet, link: SimLink, routers: tuple[str, str], protocols: tuple[Protocol, Protocol]):
        self.net = net
        self.link = link
        self.routers = routers
        self.protocols = protocols
        self.open = [True, True]
        self.paused = [False, False]
        self.held: tuple[list[bytes], list[bytes]] = ([], [])
        self.transports = (SimTransport(self, 0), SimTransport(self, 1))
        self.generation = link.generation
        #: Per side: bytes it wrote that are not delivered yet, its registered producer, and whether it is paused.
        self.in_flight = [0, 0]
        self.producers: list[Any] = [None, None]
        self.producer_paused = [False, False]

    def start(self) -> None:
        self.protocols[1].makeConnection(self.transports[1])
        self.protocols[0].makeConnection(self.transports[0])

    def _alive(self) -> bool:
        return self.link.generation == self.generation and self.net.usable(self.link, *self.routers)

    def send(self, side: int, data: bytes) -> None:
        if not self.open[side]:
            return
        net = self.net
        sender = self.routers[side]
        if sender in net.silent:
            return
        net.traffic.sent(sender, len(data))
        if not self._alive():
            net.traffic.dropped += 1
            return
        now = net.clock.seconds()
        arrive = self.link.arrival(sender, len(data), now)
        net.clock.callLater(arrive - now, self._deliver, 1 - side, data, self.generation)
        self.in_flight[side] += len(data)
        producer = self.producers[side]
        if producer is not None and not self.producer_paused[side] and self.in_flight[side] > SEND_WINDOW:
            self.producer_paused[side] = True
            producer.pauseProducing()

    def _deliver(self, side: int, data: bytes, generation: int) -> None:
        sender = 1 - side
        self.in_flight[sender] -= len(data)
        if self.producer_paused[sender] and self.in_flight[sender] <= RESUME_BELOW and self.open[sender]:
            self.producer_paused[sender] = False
            producer = self.producers[sender]
            if producer is not None:
                producer.resumeProducing()
        if generation != self.link.generation or not self.open[side] or self.routers[side] in self.net.silent:
            return
        if self.paused[side]:
            self.held[side].append(data)
            return
        self.protocols[side].dataReceived(data)

    def close(self, side: int, reason: Failure) -> None:
        """``side`` closes: it learns at once, the other end one propagation delay later (if anything gets there)."""
        if not self.open[side]:
            return
        self.open[side] = False
        net = self.net
        clock = net.clock
        clock.callLater(0, self.protocols[side].connectionLost, reason)
        if self.routers[side] in net.silent or not self._alive():
            return
        now = clock.seconds()
        arrive = self.link.arrival(self.routers[side], 0, now)
        remote = Failure(ConnectionDone("the peer closed the connection")) if reason.check(ConnectionDone) \
            else Failure(ConnectionLost("the peer reset the connection"))
        clock.callLater(arrive - now, self._remote_closed, 1 - side, remote, self.generation)

    def _remote_closed(self, side: int, reason: Failure, generation: int) -> None:
        if generation != self.link.generation or not self.open[side] or self.routers[side] in self.net.silent:
            return
        self.open[side] = False
        self.protocols[side].connectionLost(reason)

    def resume(self, side: int) -> None:
        self.paused[side] = False
        held = self.held[side]
        while held and not self.paused[side] and self.open[side]:
            self.protocols[side].dataReceived(held.pop(0))


class SimTransport:
    """One end of a SimConnection, as its protocol sees it."""

    disconnecting = False

    def __init__(self, connection: SimConnection, side: int) -> None:
        self.connection = connection
        self.side = side
        self._host = HostnameAddress(connection.routers[side].encode(), 0)
        self._peer = HostnameAddress(connection.routers[1 - side].encode(), 0)

    @property
    def peer_router(self) -> str:
        return self.connection.routers[1 - self.side]

    def write(self, data: bytes) -> None:
        self.connection.send(self.side, data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.connection.send(self.side, b"".join(data))

    def loseConnection(self) -> None:
        self.disconnecting = True
        self.connection.close(self.side, Failure(ConnectionDone("connection closed")))

    def abortConnection(self) -> None:
        self.disconnecting = True
        self.connection.close(self.side, Failure(ConnectionAborted("connection aborted")))

    def getPeer(self) -> HostnameAddress:
        return self._peer

    def getHost(self) -> HostnameAddress:
        return self._host

    def pauseProducing(self) -> None:
        self.connection.paused[self.side] = True

    def resumeProducing(self) -> None:
        self.connection.resume(self.side)

    def stopProducing(self) -> None:
        self.loseConnection()

    def registerProducer(self, producer: object, streaming: bool) -> None:
        if self.connection.producers[self.side] is not None:
            raise RuntimeError("a producer is registered already")
        self.connection.producers[self.side] = producer

    def unregisterProducer(self) -> None:
        self.connection.producers[self.side] = None
        self.connection.producer_paused[self.side] = False


@implementer(IListeningPort)
class SimPort:
    def __init__(self, net: SimNet, router_id: str) -> None:
        self.net = net
        self.router_id = router_id

    def startListening(self) -> None:
        pass

    def stopListening(self) -> Deferred[None]:
        self.net.listeners.pop(self.router_id, None)
        return succeed(None)

    def getHost(self) -> HostnameAddress:
        return HostnameAddress(self.router_id.encode(), 1)


@implementer(IStreamServerEndpoint)
class SimServerEndpoint:
    def __init__(self, net: SimNet, router_id: str) -> None:
        self.net = net
        self.router_id = router_id

    def listen(self, factory: Factory) -> Deferred[IListeningPort]:
        self.net.listeners[self.router_id] = factory
        return succeed(SimPort(self.net, self.router_id))


@implementer(IStreamClientEndpoint)
class SimClientEndpoint:
    def __init__(self, net: SimNet, source: str, target: str) -> None:
        self.net = net
        self.source = source
        self.target = target

    def connect(self, factory: Factory) -> Deferred[Protocol]:
        return self.net.dial(self.source, self.target, factory)


class SimTransports:
    """The LinkTransports of one simulated router."""

    def __init__(self, net: SimNet, router_id: str) -> None:
        self.net = net
        self.router_id = router_id

    def server_endpoint(self) -> IStreamServerEndpoint:
        return SimServerEndpoint(self.net, self.router_id)

    def client_endpoint(self, peer: PeerSettings) -> IStreamClientEndpoint:
        assert peer.id is not None, "simulated peers are configured by id"
        return SimClientEndpoint(self.net, self.router_id, peer.id)

    def identify(self, link: PeerLink, hello: Hello) -> str | None:
        transport = link.transport
        actual = transport.peer_router if isinstance(transport, SimTransport) else None
        if actual != hello.router_id:
            return f"HELLO says {hello.router_id!r} but the link leads to {actual!r}"
        return None

