"""Bench-only hooks inside the real ``twistd wecross`` processes that ``bench/forward.py`` starts.

Python imports ``sitecustomize`` at start-up from any ``sys.path`` entry; the benchmark puts this directory on
``PYTHONPATH`` of its routers, and nothing here acts unless one of these variables is set, so without them the
router code runs untouched:

- ``WECROSS_BENCH_CPROFILE=DIR``: SIGUSR1 starts a cProfile of the process, SIGUSR2 stops it and writes
  ``DIR/<pid>.prof``; the benchmark profiles exactly the load it chooses.
- ``WECROSS_BENCH_NODELAY=1``: a what-if, not a fix: every Twisted TCP connection sets TCP_NODELAY, so the effect
  of that proposed router change can be measured before anyone writes it (``forward.py --routers-nodelay``).
"""

from __future__ import annotations

import os
from pathlib import Path

_target = os.environ.get("WECROSS_BENCH_CPROFILE")

if _target is not None and _target != "":
    import cProfile
    import signal
    from types import FrameType

    _directory = Path(_target)
    _profile: list[cProfile.Profile] = []

    def _start(signum: int, frame: FrameType | None) -> None:
        if not _profile:
            profile = cProfile.Profile()
            _profile.append(profile)
            profile.enable()

    def _stop(signum: int, frame: FrameType | None) -> None:
        if _profile:
            profile = _profile.pop()
            profile.disable()
            out = _directory / f"{os.getpid()}.prof"
            profile.dump_stats(str(out.with_suffix(".tmp")))
            out.with_suffix(".tmp").replace(out)

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)

if os.environ.get("WECROSS_BENCH_NODELAY") == "1":
    import contextlib
    import socket
    from typing import Any

    from twisted.internet import tcp

    _plain_init = tcp.Connection.__init__

    def _init_no_delay(self: Any, skt: socket.socket, protocol: Any, reactor: Any = None) -> None:
        _plain_init(self, skt, protocol, reactor)
        with contextlib.suppress(OSError):  # not a TCP socket after all: leave it as it is
            skt.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    tcp.Connection.__init__ = _init_no_delay  # type: ignore[method-assign]
