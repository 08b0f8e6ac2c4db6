"""PushLog: which fresh records each neighbour still has to be sent, in O(records) memory rather than O(records x
neighbours).

Eager push sends every record new to us on to every other neighbour. Queuing the bytes per neighbour made a
start-up flood hold every frame of every link at once (5,000 simulated routers needed over 24 GB), and a slow link
would carry versions that were already superseded. Instead, a fresh record appends one entry (its router id and
the neighbour it came from) to a single log; each neighbour has a cursor into it, and what is sent when the link
can take it is the *newest* version held at that moment. An entry superseded by a later entry for the same router
is skipped, and so is an entry back to the neighbour it came from.

The log keeps what the slowest neighbour has not read, up to ``limit`` entries. A neighbour whose cursor falls off
the front (a link stalled through a long flood) is reported as lagging: the caller resynchronises it by
anti-entropy (a digest exchange), which is cheaper than replaying a long log and is what gossip repairs with
anyway.

Sans-IO: no clock, no links; the gossip service appends, takes and resets.
"""

from __future__ import annotations

from collections import deque


class PushLog:
    def __init__(self, limit: int = 65536) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._entries: deque[tuple[str, str | None]] = deque()
        self._base = 0  # position of _entries[0]
        self._latest: dict[str, int] = {}  # router id -> position of its newest entry
        self._cursors: dict[str, int] = {}  # neighbour -> position of the next entry it has not been offered
        self._lagging: set[str] = set()
        self.dropped = 0  # entries pushed off the front before every neighbour read them

    @property
    def end(self) -> int:
        return self._base + len(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def add_peer(self, peer: str) -> None:
        """A new neighbour starts at the end: what came before reaches it by the digest sent on link-up."""
        self._cursors[peer] = self.end
        self._lagging.discard(peer)

    def remove_peer(self, peer: str) -> None:
        self._cursors.pop(peer, None)
        self._lagging.discard(peer)
        self._trim()

    def peers(self) -> list[str]:
        return sorted(self._cursors)

    def append(self, router_id: str, source: str | None) -> None:
        """A record of ``router_id`` is new to us (from neighbour ``source``; None: our own)."""
        position = self.end
        self._entries.append((router_id, source))
        self._latest[router_id] = position
        if len(self._entries) > self.limit:
            self._drop_front()

    def pending(self, peer: str) -> bool:
        cursor = self._cursors.get(peer)
        return cursor is not None and (cursor < self.end or peer in self._lagging)

    def lagging(self, peer: str) -> bool:
        """The neighbour missed entries pushed off the front: resynchronise it, then :meth:`resynced`."""
        return peer in self._lagging

    def resynced(self, peer: str) -> None:
        self._lagging.discard(peer)

    def take(self, peer: str, count: int) -> list[str]:
        """Up to ``count`` router ids whose records ``peer`` is owed, oldest first; advances its cursor past them
        (and past every skipped entry)."""
        cursor = self._cursors.get(peer)
        if cursor is None:
            return []
        out: list[str] = []
        entries, base, latest, end = self._entries, self._base, self._latest, self.end
        while cursor < end and len(out) < count:
            router_id, source = entries[cursor - base]
            if source != peer and latest[router_id] == cursor:
                out.append(router_id)
            cursor += 1
        self._cursors[peer] = cursor
        self._trim()
        return out

    def _drop_front(self) -> None:
        router_id, _ = self._entries.popleft()
        if self._latest.get(router_id) == self._base:
            del self._latest[router_id]
        self._base += 1
        self.dropped += 1
        for peer, cursor in self._cursors.items():
            if cursor < self._base:
                self._cursors[peer] = self._base
                self._lagging.add(peer)

    def _trim(self) -> None:
        """Forget the entries every neighbour has read."""
        low = min(self._cursors.values(), default=self.end)
        entries, latest = self._entries, self._latest
        while self._base < low:
            router_id, _ = entries.popleft()
            if latest.get(router_id) == self._base:
                del latest[router_id]
            self._base += 1
