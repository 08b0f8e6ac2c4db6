"""What one router-to-router link costs a request, in milliseconds of expected time.

Every path the overlay chooses is the sum of these costs, so they have to be comparable across links measured by
different routers and monotonic in every measurement (worse measurement, never a cheaper link); otherwise the
shortest-path search would prefer a link for the wrong reason. The inputs come from gossip records written by other
routers: missing or nonsensical values never raise, they get a pessimistic stand-in, so one bad record cannot stop
a router from routing.
"""

from __future__ import annotations

import math

#: Stand-in for a link whose smoothed RTT is not known yet (no pong so far, or a record without it). Higher than
#: almost any round trip on the Internet, so any measured path wins, yet finite: an unmeasured link still connects
#: the graph when it is the only way.
UNKNOWN_SRTT_MS = 500.0

#: Stand-in for an unknown loss rate: a noticeably lossy link, so a measured one of the same RTT wins.
UNKNOWN_LOSS = 0.1

#: Stand-in for an unknown (or zero) bandwidth: 1 Mbit/s, i.e. about 8 ms to put a 1 KiB request on the wire.
UNKNOWN_BANDWIDTH_BPS = 1_000_000.0

#: Loss at or above this makes a link "effectively unusable": it gets :data:`UNUSABLE_PENALTY_MS` on top.
UNUSABLE_LOSS = 0.5

#: Added to a link at :data:`UNUSABLE_LOSS` or worse. Large enough that any path of usable links is cheaper, finite
#: so that such a link is still taken when nothing else reaches the destination (a poor chance beats none).
UNUSABLE_PENALTY_MS = 1_000_000.0

#: Loss is clamped here before dividing by ``(1 - loss)^2``, so a 100 % loss report gives a large, finite cost.
MAX_LOSS = 0.99

#: Expected extra time per flap (link down/up) in the reporting window. A flap costs the requests in flight on the
#: link a dead-link detection and a failover; the more often a link flaps, the likelier a request meets one.
FLAP_PENALTY_MS = 25.0

_INF = math.inf


def link_cost(
    srtt_ms: float | None,
    loss: float | None,
    bandwidth_bps: float | None,
    flaps: int,
    *,
    size_bytes: int = 1024,
    hop_overhead_ms: float = 0.2,
) -> float:
    """Expected time, in milliseconds, for a request of ``size_bytes`` to cross this link and be answered.

    ``cost = (srtt + 8 * size / bandwidth * 1000) / (1 - loss)^2 + hop_overhead + FLAP_PENALTY_MS * flaps``,
    plus :data:`UNUSABLE_PENALTY_MS` when ``loss >= 0.5``.

    Why this shape:

    - ``srtt`` plus the serialisation time of the request is what one clean attempt takes: latency dominates small
      requests, bandwidth dominates big ones, and the request size lets the caller weigh the two.
    - A request succeeds only if it and its answer both get through, each with probability ``1 - loss``; retrying
      until both do takes ``1 / (1 - loss)^2`` attempts on average (geometric), hence the division. Loss is clamped
      to :data:`MAX_LOSS` so the cost stays finite; at 50 % loss the expected attempts are already 4 and the link
      is marked unusable with a fixed penalty, so it is chosen only when no usable path exists.
    - ``hop_overhead_ms`` is a relay's own processing (decode, route look-up, encode). It is not inflated by loss:
      it is paid once per hop, not per attempt. It also makes a path with fewer hops win among near-equal ones.
    - Flaps add a fixed expected stall per recent flap; they make a link less *available* even when its RTT,
      measured while it is up, looks fine.

    Unknown or invalid measurements (None, NaN, infinite, negative) take the pessimistic stand-ins
    :data:`UNKNOWN_SRTT_MS`, :data:`UNKNOWN_LOSS` and :data:`UNKNOWN_BANDWIDTH_BPS`; a bandwidth of 0 also means
    "not measured yet" (what a fresh link reports), an infinite one means no serialisation time. The cost is
    non-decreasing in ``srtt_ms``, ``loss`` and ``flaps`` and non-increasing in a (positive) ``bandwidth_bps``.
    """
    if size_bytes < 0:
        raise ValueError(f"size_bytes must be >= 0, not {size_bytes}")
    if not 0.0 <= hop_overhead_ms < _INF:
        raise ValueError(f"hop_overhead_ms must be a finite number >= 0, not {hop_overhead_ms}")

    # ``0 <= x < inf`` is False for NaN, infinities and negatives alike: one test per input, since
    # this runs for every link of the network on every rebuild.
    rtt = srtt_ms if srtt_ms is not None and 0.0 <= srtt_ms < _INF else UNKNOWN_SRTT_MS
    lost = loss if loss is not None and 0.0 <= loss < _INF else UNKNOWN_LOSS
    if lost > MAX_LOSS:
        lost = MAX_LOSS
    if bandwidth_bps is not None and bandwidth_bps > 0.0:  # NaN compares False: unknown, like None and 0
        serialisation = size_bytes * 8000.0 / bandwidth_bps  # 0 for an infinite bandwidth
    else:
        serialisation = size_bytes * 8000.0 / UNKNOWN_BANDWIDTH_BPS

    cost = (rtt + serialisation) / ((1.0 - lost) * (1.0 - lost)) + hop_overhead_ms
    if flaps > 0:
        cost += FLAP_PENALTY_MS * int(flaps)
    if lost >= UNUSABLE_LOSS:
        cost += UNUSABLE_PENALTY_MS
    return cost
