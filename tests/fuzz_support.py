"""What the REST and wire fuzz tests share: fixed example sets from hypothesis, a raw client, and the watchers that
say whether the router stayed healthy (its log, its memory, its honest traffic).

Examples are drawn before any I/O (:func:`examples`), derandomized: the same examples every run, so the fuzz is a
bounded, repeatable test rather than a flaky one; a failure names the example that caused it. Hypothesis' shrinking
is given up for that (the I/O runs on the reactor, which hypothesis' synchronous runner cannot wait on).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisWarning
from twisted.internet import defer, reactor
from twisted.internet.protocol import Protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

_T = TypeVar("_T")

#: How much the router's process may grow (resident set) over one fuzz run. The fuzz keeps nothing alive on purpose,
#: so what stays is allocator slack and caches: a leak per example (pending requests, links, buffers) exceeds it.
RSS_GROWTH_BOUND = 64 * 1024 * 1024
#: Longest log event the fuzz accepts: peer- and client-supplied text is bounded to a few hundred characters
#: (wecross.logs.untrusted), so a longer event means some text reached a log unbounded.
LOG_EVENT_BOUND = 4096


def examples(strategy: st.SearchStrategy[_T], count: int) -> list[_T]:
    """``count`` examples of ``strategy``, the same ones every run (derandomized, no example database)."""
    drawn: list[_T] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: _T) -> None:
        drawn.append(value)

    with warnings.catch_warnings():
        # Hypothesis warns that a large example (a 60 kB frame) makes an expensive repr; it is never shown here.
        warnings.simplefilter("ignore", HypothesisWarning)
        collect()
    return drawn[:count]


def rss_bytes() -> int:
    """The resident set of this process now (Linux /proc; 0 where it is missing, which makes the check vacuous)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


class LogWatch:
    """Every log event while installed; :meth:`problems` lists tracebacks, unhandled errors and unbounded events."""

    def __init__(self, case: TestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def problems(self) -> list[str]:
        found = []
        for event in self.events:
            text = formatEvent(event)
            if event.get("log_failure") is not None or event.get("isError") or "Unhandled error" in text \
                    or "Traceback" in text:
                found.append(f"error event: {text[:500]}")
            elif len(text) > LOG_EVENT_BOUND:
                found.append(f"event of {len(text)} characters: {text[:200]}")
        return found


class RawClient(Protocol):
    """Writes what a test gives it and keeps everything it receives until the connection closes."""

    def __init__(self, payload: bytes = b"") -> None:
        self.payload = payload
        self.received = bytearray()
        self.closed: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        if self.payload:
            assert self.transport is not None
            self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        if not self.closed.called:
            self.closed.callback(None)


def within(d: defer.Deferred[_T], seconds: float, on_timeout: Callable[[], None]) -> defer.Deferred[_T]:
    """``d``, with ``on_timeout`` called (to close the connection, which fires ``d``) if it has not fired in time."""
    call = reactor.callLater(seconds, on_timeout)  # type: ignore[attr-defined]

    def done(result: _T) -> _T:
        if call.active():
            call.cancel()
        return result

    return d.addBoth(done)
