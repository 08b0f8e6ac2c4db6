"""At-most-once execution of writes at the owning router.

A client, or a router failing over to another path, may send the same sendTransaction twice under one request id.
The owner remembers the outcome of every write by id for ``ttl`` seconds (bounded in count), so a repeat gets the
first answer instead of a second transaction; a repeat that arrives while the first is still running waits for it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


class ReplayGuard:
    def __init__(self, now: Callable[[], float], ttl: float = 600.0, capacity: int = 100_000) -> None:
        self._now = now
        self.ttl = ttl
        self.capacity = capacity
        # request id -> (expiry, outcome: result dict | Failure | None while running, waiters)
        self._entries: OrderedDict[bytes, list[Any]] = OrderedDict()
        self.replays = 0

    def run(self, request_id: bytes, execute: Callable[[], Deferred[dict[str, Any]]]) -> Deferred[dict[str, Any]]:
        self._expire()
        entry = self._entries.get(request_id)
        if entry is not None:
            self.replays += 1
            outcome, waiters = entry[1], entry[2]
            d: Deferred[dict[str, Any]] = Deferred()
            if outcome is None:
                waiters.append(d)
            elif isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(dict(outcome, replayed=True))
            return d
        entry = [self._now() + self.ttl, None, []]
        self._entries[request_id] = entry
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

        def settle(outcome: dict[str, Any] | Failure) -> dict[str, Any] | Failure:
            entry[1] = outcome
            waiters, entry[2] = entry[2], []
            for waiter in waiters:
                if isinstance(outcome, Failure):
                    waiter.errback(outcome)
                else:
                    waiter.callback(dict(outcome, replayed=True))
            return outcome

        return execute().addBoth(settle)

    def seen(self, request_id: bytes) -> bool:
        """Whether a write under this id ran (or runs) here and is still remembered."""
        return request_id in self._entries

    def _expire(self) -> None:
        now = self._now()
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry[0] > now or entry[1] is None:
                break
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
