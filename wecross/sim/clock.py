"""The simulator's virtual clock: an ``IReactorTime`` whose calls are kept in a heap.

``twisted.internet.task.Clock`` re-sorts its whole list of calls on every ``callLater`` and pops from the front of
a list; with a thousand routers, each holding heartbeat, watchdog, gossip and request timers, that is quadratic.
Here scheduling and running are O(log n). Cancelled and rescheduled calls leave stale heap entries behind, which
are skipped when they surface (lazy deletion). Calls due at the same instant run in the order they were scheduled,
so a run is reproducible bit for bit.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()


@implementer(IReactorTime)
class SimClock:
    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._seq = itertools.count()
        #: Calls that ran, and calls that raised (logged, never stopping the run: one router's bug is a finding).
        self.calls_run = 0
        self.errors = 0

    def seconds(self) -> float:
        return self._now

    def callLater(self, delay: float, callable: Callable[..., Any], *args: object, **kw: object) -> DelayedCall:
        call = DelayedCall(self._now + max(0.0, delay), callable, args, kw, _ignore, self._rescheduled,
                           seconds=self.seconds)
        heapq.heappush(self._heap, (call.time, next(self._seq), call))
        return call

    def _rescheduled(self, call: DelayedCall) -> None:
        heapq.heappush(self._heap, (call.getTime(), next(self._seq), call))

    def getDelayedCalls(self) -> list[DelayedCall]:
        seen: dict[int, DelayedCall] = {}
        for _, _, call in self._heap:
            if call.active():
                seen[id(call)] = call
        return list(seen.values())

    def next_time(self) -> float | None:
        """When the next live call is due (None: nothing is scheduled)."""
        heap = self._heap
        while heap:
            when, _, call = heap[0]
            if call.cancelled or call.called:
                heapq.heappop(heap)
                continue
            if call.delayed_time:
                heapq.heappop(heap)
                call.activate_delay()
                heapq.heappush(heap, (call.time, next(self._seq), call))
                continue
            if call.time != when:
                heapq.heappop(heap)
                continue
            return when
        return None

    def run_until(self, until: float) -> int:
        """Run every call due up to ``until`` in time order (calls they schedule meanwhile included); then the
        clock reads ``until``. Returns how many calls ran."""
        heap = self._heap
        ran = 0
        while heap and heap[0][0] <= until:
            when, _, call = heapq.heappop(heap)
            if call.cancelled or call.called:
                continue
            if call.delayed_time:
                # Moved later with reset()/delay(): Twisted tells the scheduler only about moves to an earlier time.
                call.activate_delay()
                heapq.heappush(heap, (call.time, next(self._seq), call))
                continue
            if call.time != when:
                continue  # a stale entry: the call was moved earlier and has a newer one
            self._now = when
            call.called = 1
            try:
                call.func(*call.args, **call.kw)
            except Exception:
                self.errors += 1
                log.failure("simulated call {call!r} raised", call=call)
            ran += 1
        if until > self._now:
            self._now = until
        self.calls_run += ran
        return ran

    def advance(self, seconds: float) -> int:
        return self.run_until(self._now + seconds)

    def pending(self) -> int:
        """Heap entries, stale ones included (a measure of the simulator's own memory, not of work to do)."""
        return len(self._heap)


def _ignore(call: DelayedCall) -> None:
    """Cancelled calls stay in the heap and are skipped when they come up."""
