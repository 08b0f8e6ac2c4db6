"""Files a router reads at start and keeps re-reading while it runs (the ACL, the revocation list): one rule for
when new content takes over.

- At start the file must read and parse, or the router does not start (the subclass's error type says why): a
  router must never run on rules or revocations it could not read.
- Afterwards, content that changed (by SHA-256) and parses is in force at once; content that does not parse, or a
  file that cannot be read for a moment (an editor's rename), leaves the previous content in force, and the
  problem is reported once per distinct content (``errors`` keeps it), not at every look.
- An optional ``stat`` (mtime, size) skips reading an unchanged file, but the file is read again every
  ``recheck_after`` seconds anyway: a rewrite of the same size within one timestamp tick keeps both.

Sans-IO: the subclass is given ``read_bytes`` and the clock's readings; a LoopingCall in the node drives it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    #: "unchanged", "reloaded" (the new content is in force) or "rejected" (the old stays; see errors).
    status: str
    errors: tuple[str, ...] = ()


UNCHANGED = ReloadResult("unchanged")


class ReloadingFile(Generic[T]):
    """The parsed content of one file, kept current by :meth:`maybe_reload`. Subclasses say how to read it
    (:meth:`_read`, raising their own error for an unreadable or oversized file), how to parse it (:meth:`_parse`),
    which exceptions mean "not this content" (``problem_types``) and what their lines are (:meth:`_lines`)."""

    #: The exceptions _read and _parse raise for a file that cannot be taken.
    problem_types: tuple[type[Exception], ...] = ()

    def __init__(self, read_bytes: Callable[[], bytes], source: str, now: float, *,
                 stat: Callable[[], tuple[float, int]] | None = None, recheck_after: float = 30.0) -> None:
        self._read_bytes = read_bytes
        self._stat = stat
        self.source = source
        self.recheck_after = recheck_after

    def _start(self, now: float) -> None:
        """Read and parse for the first time; the subclass's error propagates (the router must not start)."""
        self._last_stat = self._stat() if self._stat is not None else None
        data = self._read()
        self.value: T = self._parse(data)
        self._digest = hashlib.sha256(data).digest()
        #: The last content looked at (a digest) or the last read failure: what was already reported.
        self._seen: bytes | str = self._digest
        self._last_read = now
        self.loaded_at = now
        #: The problems of the newest version of the file, when it was rejected; () while the file is in force.
        self.errors: tuple[str, ...] = ()

    def _read(self) -> bytes:
        raise NotImplementedError

    def _parse(self, data: bytes) -> T:
        raise NotImplementedError

    def _lines(self, problem: Exception) -> tuple[str, ...]:
        raise NotImplementedError

    def _replaced(self, old: T) -> None:
        """Called after new content took over from ``old`` (a cache to drop, for instance)."""

    def maybe_reload(self, now: float) -> ReloadResult:
        """Re-read the file if it may have changed; put its content in force if it did and is valid."""
        if self._stat is not None:
            try:
                current = self._stat()
            except OSError:
                current = None  # gone for a moment: let the read below report it
            if current is not None and current == self._last_stat and now - self._last_read < self.recheck_after:
                return UNCHANGED
            self._last_stat = current
        self._last_read = now
        try:
            data = self._read()
        except self.problem_types as exc:
            return self._reject(str(exc), self._lines(exc))
        digest = hashlib.sha256(data).digest()
        if digest == self._digest:
            # Back to (or still) the content in force: nothing to load, and any earlier rejection is moot.
            self._seen = digest
            self.errors = ()
            return UNCHANGED
        try:
            value = self._parse(data)
        except self.problem_types as exc:
            return self._reject(digest, self._lines(exc))
        old, self.value = self.value, value
        self._replaced(old)
        self._digest = self._seen = digest
        self.loaded_at = now
        self.errors = ()
        return ReloadResult("reloaded")

    def _reject(self, seen: bytes | str, errors: tuple[str, ...]) -> ReloadResult:
        if seen == self._seen:
            return UNCHANGED  # already reported; self.errors still says why the old content is in force
        self._seen = seen
        self.errors = errors
        return ReloadResult("rejected", errors)
