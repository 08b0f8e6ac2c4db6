"""Sans-IO health of one peer link: heartbeat bookkeeping, smoothed RTT, loss, liveness.

The Twisted protocol feeds it events (a ping sent, a pong or any frame received, a heartbeat tick) with timestamps
from whatever clock drives it, real or virtual; it answers "send a ping with this seq" and "the link is dead". Keeping
this free of the reactor lets the simulator and the tests drive thousands of links on a fake clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

#: RFC 6298 gains: srtt moves 1/8 of the way to each sample, rttvar 1/4.
_ALPHA = 0.125
_BETA = 0.25
#: Loss is measured over this many most recent heartbeats.
_LOSS_WINDOW = 32
#: Throughput windows (one per heartbeat interval) kept for the bandwidth estimate.
_RATE_WINDOWS = 32
#: Below this observed peak (bits/s) the bandwidth is reported as unknown (0): an idle link has shown nothing about
#: its capacity, and the cost function's default for "unknown" must not be undercut by an idle link's trickle.
_RATE_FLOOR_BPS = 1_000_000.0


@dataclass(frozen=True, slots=True)
class LinkSnapshot:
    srtt: float | None
    rttvar: float | None
    last_rtt: float | None
    loss: float
    bandwidth_bps: float
    missed: int
    pings_sent: int
    pongs_received: int
    last_heard: float


class LinkHealth:
    """Heartbeats and RTT of one link.

    A link is *dead* once nothing at all has been heard from the peer for ``dead_after`` heartbeat intervals: any
    frame proves the peer alive, so a link busy with large responses is not declared dead because a pong
    queued behind them arrived late. RTT samples come only from pongs, which the peer answers at once.
    """

    def __init__(self, now: float, dead_after: int, interval: float) -> None:
        if dead_after < 1:
            raise ValueError("dead_after must be at least 1")
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.dead_after = dead_after
        self.interval = interval
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.last_rtt: float | None = None
        self.missed = 0
        self.pings_sent = 0
        self.pongs_received = 0
        self.last_heard = now
        self._seq = 0
        # seq of each recent ping -> answered? (most recent last)
        self._window: deque[tuple[int, bool]] = deque(maxlen=_LOSS_WINDOW)
        self._bytes_in_window = 0
        self._window_start = now
        self._rates: deque[float] = deque(maxlen=_RATE_WINDOWS)

    def received(self, size: int) -> None:
        """``size`` bytes arrived from the peer (counted towards the throughput of the current interval)."""
        self._bytes_in_window += size

    def heard(self, now: float) -> None:
        """Any frame arrived from the peer."""
        self.last_heard = max(self.last_heard, now)

    def tick(self, now: float) -> int | None:
        """A heartbeat interval elapsed. Returns the seq of the ping to send, or None when the link is dead."""
        elapsed = now - self._window_start
        if elapsed > 0:
            self._rates.append(self._bytes_in_window * 8.0 / elapsed)
        self._bytes_in_window = 0
        self._window_start = now
        # Whole heartbeat intervals of silence; the epsilon keeps 3 x 0.1 s of float time from counting as 2.
        self.missed = int((now - self.last_heard) / self.interval + 1e-6)
        if self.missed >= self.dead_after:
            return None
        self._seq += 1
        self.pings_sent += 1
        self._window.append((self._seq, False))
        return self._seq

    def deadline(self) -> float:
        """When the link is dead unless the peer is heard from before: a watchdog checks it then, so death is
        noticed ``dead_after`` intervals after the last frame, not at the next heartbeat after that."""
        return self.last_heard + self.dead_after * self.interval

    def dead(self, now: float) -> bool:
        return now - self.last_heard + 1e-6 * self.interval >= self.dead_after * self.interval

    def pong(self, seq: int, sent_at: float, now: float) -> float | None:
        """A pong echoing ``seq``/``sent_at`` arrived; returns the RTT sample (None if it is not plausible)."""
        self.heard(now)
        for i, (s, answered) in enumerate(self._window):
            if s == seq:
                if answered:
                    return None  # a duplicated pong must not count twice
                self._window[i] = (s, True)
                break
        else:
            if seq > self._seq or seq <= 0:
                return None  # a pong for a ping we never sent
        rtt = now - sent_at
        if rtt < 0:
            return None
        self.pongs_received += 1
        self.last_rtt = rtt
        if self.srtt is None or self.rttvar is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - rtt)
            self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * rtt
        return rtt

    @property
    def loss(self) -> float:
        """Share of recent pings never answered; the newest one is still in flight and not counted."""
        settled = list(self._window)[:-1]
        if not settled:
            return 0.0
        return sum(1 for _, answered in settled if not answered) / len(settled)

    @property
    def bandwidth_bps(self) -> float:
        """The highest throughput seen from the peer over one heartbeat interval lately: a lower bound of the link's
        capacity, reported once it exceeds 1 Mbit/s (0 = unknown until then). Passive, so it costs no probes."""
        peak = max(self._rates, default=0.0)
        return peak if peak >= _RATE_FLOOR_BPS else 0.0

    def snapshot(self) -> LinkSnapshot:
        return LinkSnapshot(
            srtt=self.srtt,
            rttvar=self.rttvar,
            last_rtt=self.last_rtt,
            loss=self.loss,
            bandwidth_bps=self.bandwidth_bps,
            missed=self.missed,
            pings_sent=self.pings_sent,
            pongs_received=self.pongs_received,
            last_heard=self.last_heard,
        )


def keep_dialled_by(local_id: str, peer_id: str) -> str:
    """Which router's dialled connection survives when two routers dial each other at once.

    Both ends evaluate this with the same two ids and so close the same connection; the lower id's dial wins.
    """
    return min(local_id, peer_id)


@dataclass(frozen=True, slots=True)
class DuplicateVerdict:
    """What to do with a second link to a router we are already linked to."""

    newcomer_wins: bool
    #: The counter (``/status`` ``refused_links``) and the words of the BYE sent to the loser.
    kind: str
    reason: str


def judge_duplicate(
    local_id: str, peer_id: str, *, existing_outbound: bool, existing_alive: bool, existing_age: float,
    newcomer_outbound: bool, simultaneous_window: float,
) -> DuplicateVerdict:
    """Which of two links to the same router survives.

    Presenting a router's certificate is not enough to take its place: a replayed or stolen session that completes a
    handshake while the router's real link lives must not cut that link (nor the requests in flight on it). So:

    * the existing link loses only when it is dead (closed, or silent past ``dead_after``: the liveness rule);
    * or when the two links are a *simultaneous dial*: opposite directions, and the existing link came up less than
      ``simultaneous_window`` (the handshake timeout) ago. Then :func:`keep_dialled_by` decides, as both ends
      evaluate it alike. Outside that window the existing link wins even if the tie-break would favour the
      newcomer, so an attacker cannot reach the tie-break by dialling later;
    * otherwise the newcomer is refused and the live link stays.
    """
    if not existing_alive:
        return DuplicateVerdict(True, "duplicate_replaced_dead", "a newer link replaced a dead one")
    if existing_outbound != newcomer_outbound and existing_age < simultaneous_window:
        winner = keep_dialled_by(local_id, peer_id)
        newcomer_dialler = local_id if newcomer_outbound else peer_id
        if newcomer_dialler == winner:
            return DuplicateVerdict(True, "duplicate", "duplicate link (the other connection is kept)")
        return DuplicateVerdict(False, "duplicate", "duplicate link (the other connection is kept)")
    return DuplicateVerdict(False, "duplicate_live",
                            "duplicate link: this router already has a live link to that router")


@dataclass(frozen=True, slots=True)
class LinkMeasure:
    """One link as this router measures it (what its gossip record then states: the router core turns it into
    ``wecross.gossip.record.LinkInfo``; peer and gossip do not import each other)."""

    peer: str
    srtt_ms: float
    loss: float  # fraction of heartbeats lost, 0..1
    bandwidth_bps: float  # 0 when unknown
    flaps: int  # times the link went down recently
