"""GossipService: drives the sans-IO :class:`~wecross.gossip.directory.Directory` on a clock, over peer links.

Protocol (docs/gossip.md): every ``interval`` the service sends a summary of its directory (record count and a
checksum of the versions, 24 bytes whatever the network's size) to ``fanout`` random linked peers. A peer whose own
summary differs answers with its full digest, and push-pull anti-entropy follows: a digest is answered with the
records held newer than it, and, if the digest showed something the receiver lacks, with the receiver's own digest,
which the first side answers with records in turn; after that exchange both hold the newer of every record. A new
neighbour gets the full digest at once. A record that is new to a router is pushed on at once to every
other neighbour (eager push), so a change crosses the network in about its diameter, while anti-entropy repairs
whatever a push missed. Pushes and digest answers are flow-controlled: what a neighbour is owed is kept as router
ids (:class:`~wecross.gossip.pushlog.PushLog`), turned into frames only while its link is writable, and always
in the newest version held, so a slow link never queues superseded records. Our own record is re-signed when
our links or what we serve change, when link metrics move noticeably, and well within its ttl.
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from wecross.gossip.directory import Directory
from wecross.gossip.pushlog import PushLog
from wecross.gossip.record import ChainInfo, LinkInfo, RecordError, RecordSigner, ResourceEntry, RouterRecord
from wecross.logs import untrusted
from wecross.wire.messages import GossipDigest, GossipRecords, GossipSummary


class PeerLink(Protocol):
    """What gossip needs of a link (wecross.peer.protocol.PeerLink has it): gossip and peer do not import each
    other, the router core hands links over."""

    established: bool
    closing_reason: str | None

    @property
    def peer_id(self) -> str | None: ...

    @property
    def writable(self) -> bool: ...

    def when_writable(self, callback: Callable[[], None]) -> None: ...

    def send(self, message: Any) -> None: ...

log = Logger()

#: Records and bytes per GOSSIP_RECORDS frame: keeps frames far below the frame limit whatever the directory size.
_RECORDS_PER_FRAME = 64
_BYTES_PER_FRAME = 1024 * 1024
#: A link's RTT must move by this share (and by _RTT_MIN_MS) before our record is re-signed for it.
_RTT_CHANGE = 0.25
_RTT_MIN_MS = 0.5


@dataclass(frozen=True, slots=True)
class LocalContent:
    """What our own record says, apart from its version: assembled by the router from its stubs and links."""

    zones: tuple[str, ...]
    transit: bool
    listen: str
    chains: tuple[ChainInfo, ...]
    resources: tuple[ResourceEntry, ...]
    links: tuple[LinkInfo, ...]


class GossipService(Service):
    def __init__(
        self,
        *,
        directory: Directory,
        signer: RecordSigner,
        clock: IReactorTime,
        epoch: int,
        content: Callable[[], LocalContent],
        links: Callable[[], dict[str, PeerLink]],
        on_change: Callable[[], None],
        interval: float = 1.0,
        fanout: int = 3,
        ttl: float = 60.0,
        rng: random.Random | None = None,
        push_log_limit: int = 16384,
    ) -> None:
        self.directory = directory
        self.signer = signer
        self.clock = clock
        self.epoch = epoch
        self.content = content
        self.links = links
        self.on_change = on_change
        self.interval = interval
        self.fanout = fanout
        self.ttl = ttl
        self.rng = rng or random.Random()
        self.counters: Counter[str] = Counter()
        self._published: LocalContent | None = None
        self._warned_unauthorized: tuple[str, ...] = ()  # our chains the certificate does not name, as last logged
        self._published_at = -math.inf
        self._loop = LoopingCall(self.round)
        self._loop.clock = clock
        self._pending_publish: IDelayedCall | None = None
        self._log = PushLog(push_log_limit)
        #: Digest answers owed: router ids whose newest records a neighbour lacks, sent before the log's entries.
        self._replies: dict[str, deque[str]] = {}
        #: Neighbours whose link is paused and that we asked to wake us (one callback each).
        self._waiting: set[str] = set()
        self._flush_call: IDelayedCall | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.publish("start")
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        if self._pending_publish is not None and self._pending_publish.active():
            self._pending_publish.cancel()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        for peer in self._log.peers():
            self._log.remove_peer(peer)
        self._replies = {}
        self._waiting = set()

    # -- our own record ---------------------------------------------------------------------------------------------

    def publish(self, reason: str) -> None:
        """Sign our record at a new version, install it and push it to every neighbour."""
        content = self.content()
        epoch, seq = self.directory.next_local_version(self.epoch)
        record = RouterRecord(
            router_id=self.directory.local_id, epoch=epoch, seq=seq, zones=content.zones, transit=content.transit,
            listen=content.listen, chains=content.chains, resources=content.resources, links=content.links,
            ttl=self.ttl,
        )
        signed = self.signer.sign(record)
        self.directory.set_local(signed)
        unauthorized = self.directory.unauthorized_of(self.directory.local_id)
        if unauthorized != self._warned_unauthorized:
            self._warned_unauthorized = unauthorized
            if unauthorized:
                # Once per change, not per re-signing: the operator must issue a new certificate (docs/certificates.md).
                log.warn("gossip: our certificate does not authorise chain(s) {chains} (it allows: {allowed}); other "
                         "routers will ignore them: issue a certificate with `wecross certs --serves`",
                         chains=", ".join(unauthorized),
                         allowed=", ".join(self.directory.serves_patterns(self.directory.local_id)) or "none")
        self._published = content
        self._published_at = self.clock.seconds()
        self.counters["published"] += 1
        log.debug("gossip: published our record v{v} ({reason})", v=(epoch, seq), reason=reason)
        self._push([self.directory.local_id], source=None)
        self.on_change()

    def publish_soon(self, reason: str) -> None:
        """Links came or went: publish once for a burst of changes, and not sooner than half a gossip interval
        after the last publish.

        Every version of our record floods the whole overlay, so a router whose links come up one by one (a hub at
        start-up: a hundred links within a few milliseconds) must not sign a version per link: the hold-off makes
        that one or two versions, and costs a change at most half an interval of delay.
        """
        if not self.running or (self._pending_publish is not None and self._pending_publish.active()):
            return
        delay = max(0.0, self._published_at + self.interval / 2 - self.clock.seconds())
        self._pending_publish = self.clock.callLater(delay, self._publish_pending, reason)

    def _publish_pending(self, reason: str) -> None:
        self._pending_publish = None
        if self.running:
            self.publish(reason)

    def _needs_publish(self, now: float) -> str | None:
        if self.directory.local_outdated:
            return "a record of ours from an earlier life is out there"
        if now - self._published_at >= self.ttl / 3:
            return "refresh"
        current, last = self.content(), self._published
        if last is None:
            return "first"
        if (current.zones, current.transit, current.listen, current.chains, current.resources) != (
                last.zones, last.transit, last.listen, last.chains, last.resources):
            return "what we serve changed"
        before = {link.peer: link for link in last.links}
        now_links = {link.peer: link for link in current.links}
        if set(before) != set(now_links):
            return "links changed"
        for peer, link in now_links.items():
            old = before[peer]
            delta = abs(link.srtt_ms - old.srtt_ms)
            if delta > _RTT_MIN_MS and delta > _RTT_CHANGE * max(old.srtt_ms, 1e-9):
                return f"RTT to {peer} moved"
            if abs(link.loss - old.loss) >= 0.1 or link.flaps != old.flaps:
                return f"loss or flaps of {peer} changed"
        return None

    # -- anti-entropy rounds ----------------------------------------------------------------------------------------

    def round(self) -> None:
        now = self.clock.seconds()
        dropped = self.directory.expire(now)
        if dropped:
            log.info("gossip: records expired: {ids}", ids=dropped)
            self.on_change()
        reason = self._needs_publish(now)
        if reason is not None:
            self.publish(reason)
        links = sorted(self.links().items())
        if not links:
            return
        chosen = self.rng.sample(links, min(self.fanout, len(links)))
        count, checksum = self.directory.summary()
        summary = GossipSummary(count=count, checksum=checksum)
        for _, link in chosen:
            link.send(summary)
        self.counters["rounds"] += 1

    def link_up(self, link: PeerLink) -> None:
        """A new neighbour: sync with it at once. Our record states the link once it has an RTT (peer_measured)."""
        peer = link.peer_id
        if peer is not None:
            self._forget(peer)
            self._log.add_peer(peer)
        link.send(GossipDigest(entries=self.directory.digest()))

    def link_down(self, link: PeerLink) -> None:
        peer = link.peer_id
        if peer is not None and self.links().get(peer) in (None, link):
            self._forget(peer)
        self.publish_soon("link down")

    def _forget(self, peer: str) -> None:
        self._log.remove_peer(peer)
        self._replies.pop(peer, None)
        self._waiting.discard(peer)

    # -- messages from peers ----------------------------------------------------------------------------------------

    def on_summary(self, link: PeerLink, summary: GossipSummary) -> None:
        """Equal summaries: nothing to exchange. Otherwise our full digest starts the push-pull exchange."""
        self.counters["summaries_in"] += 1
        if (summary.count, summary.checksum) != self.directory.summary():
            link.send(GossipDigest(entries=self.directory.digest()))

    def on_digest(self, link: PeerLink, digest: GossipDigest) -> None:
        self.counters["digests_in"] += 1
        owed = self.directory.newer_ids(digest.entries)
        peer = link.peer_id
        if owed and peer is not None:
            self._replies.setdefault(peer, deque()).extend(owed)
            self._drain(link)
        if self.directory.wanted(digest.entries):
            link.send(GossipDigest(entries=self.directory.digest()))

    def on_records(self, link: PeerLink, message: GossipRecords) -> None:
        now = self.clock.seconds()
        fresh: list[str] = []
        for blob in message.records:
            try:
                record = self.directory.accept(blob, now)
            except RecordError as exc:  # counted by reason in directory.rejected
                log.warn("gossip: record from {peer} refused ({reason}): {message}", peer=link.peer_id,
                         reason=exc.reason, message=untrusted(exc.message))
                continue
            if record is not None:
                fresh.append(record.router_id)
        if self.directory.local_outdated:
            self.publish("a record of ours from an earlier life came back")
        if fresh:
            self.counters["records_accepted"] += len(fresh)
            self._push(fresh, source=link.peer_id)
            self.on_change()

    # -- sending ----------------------------------------------------------------------------------------------------

    def _push(self, router_ids: list[str], source: str | None) -> None:
        """Owe fresh records to every neighbour but the one they came from; sent at the end of this turn.

        Records arrive in bursts (a restart is heard from every side at once); one frame per neighbour per turn
        instead of one per record cuts the framing work on both ends several times over.
        """
        for router_id in router_ids:
            self._log.append(router_id, source)
        if self.running and (self._flush_call is None or not self._flush_call.active()):
            self._flush_call = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        links = self.links()
        for peer_id in self._log.peers():
            link = links.get(peer_id)
            if link is not None and self._log.pending(peer_id):
                self._drain(link)

    def _drain(self, link: PeerLink) -> None:
        """Send what ``link``'s peer is owed while the link is writable; when it is not, wait for it to drain."""
        peer = link.peer_id
        if peer is None or not self.running:
            return
        log_ = self._log
        replies = self._replies.get(peer)
        while link.writable:
            if log_.lagging(peer):
                log_.resynced(peer)
                self.counters["resyncs"] += 1
                link.send(GossipDigest(entries=self.directory.digest()))
                continue
            if replies:
                ids = [replies.popleft() for _ in range(min(_RECORDS_PER_FRAME, len(replies)))]
            else:
                ids = log_.take(peer, _RECORDS_PER_FRAME)
                if not ids:
                    if not log_.pending(peer):
                        break
                    continue
            blobs = [blob for blob in map(self.directory.blob, ids) if blob is not None]
            if blobs:
                self._send_records(link, blobs)
        if replies is not None and not replies:
            del self._replies[peer]
        if (replies or log_.pending(peer)) and not link.writable and link.established \
                and link.closing_reason is None and peer not in self._waiting:
            self._waiting.add(peer)
            self.counters["flow_waits"] += 1
            link.when_writable(lambda: self._writable(link))

    def _writable(self, link: PeerLink) -> None:
        peer = link.peer_id
        if peer is not None:
            self._waiting.discard(peer)
            if self.links().get(peer) is link:
                self._drain(link)

    def _send_records(self, link: PeerLink, blobs: Iterable[bytes]) -> None:
        """In frames of at most _RECORDS_PER_FRAME records and _BYTES_PER_FRAME bytes (one record may be larger)."""
        batch: list[bytes] = []
        size = 0
        for blob in blobs:
            if batch and (len(batch) >= _RECORDS_PER_FRAME or size + len(blob) > _BYTES_PER_FRAME):
                link.send(GossipRecords(records=batch))
                self.counters["records_out"] += len(batch)
                batch, size = [], 0
            batch.append(blob)
            size += len(blob)
        if batch:
            link.send(GossipRecords(records=batch))
            self.counters["records_out"] += len(batch)
