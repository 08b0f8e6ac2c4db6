"""Structured logs: every log event as one JSON object per line, for log shippers (Loki, ELK, Vector...).

twistd chooses its observer with ``--logger``::

    twistd -n --logger wecross.logs.json_stdout wecross --config conf/router.toml

Each line is Twisted's JSON form of the event (``log_format``, ``log_level``, ``log_namespace``, ``log_time`` and
the event's own fields: router ids, peers, chains, error codes...), separated by the record separator twisted's
``eventsFromJSONLogFile`` reads back.

twistd's own ``--logfile`` rotates at 1 MB and keeps every rotated file (its LogFile has no cap by default), so a
peer that makes a router log a lot fills the disk. :func:`rotating_text` and :func:`rotating_json` write the same
text or JSON events to a file that rotates at ``WECROSS_LOG_ROTATE_BYTES`` (default 10 MB) and keeps at most
``WECROSS_LOG_KEEP`` rotated files (default 10); the file is ``WECROSS_LOG_FILE`` (default ``wecross.log``)::

    WECROSS_LOG_FILE=/var/log/wecross/router-a.log twistd --logger wecross.logs.rotating_text wecross --config ...

Text that a peer or a client chose (a BYE reason, an ERROR message, a request path, a router id in a HELLO) goes
through :func:`untrusted` before it is put in a log event: a peer could otherwise write up to a frame's worth of
characters (1 Mi) per event, or forge log lines with newlines and control characters. The bound and the escaping
are checked by ``tests.test_hostile_input.UntrustedText``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from twisted.logger import ILogObserver, jsonFileLogObserver, textFileLogObserver
from twisted.python.logfile import LogFile

#: Longest piece of untrusted text kept in a log event, in characters after escaping (the rest is counted, not kept).
UNTRUSTED_MAX = 200
#: Control characters (C0, DEL, C1), line and paragraph separators and lone surrogates: shown as escapes, never
#: written as they are (a newline would start a forged log line, a NUL or a surrogate breaks log shippers).
_ESCAPED = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_ESCAPED.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0xD800, 0xE000))})
_ESCAPED.update({ord("\\"): "\\\\"})


def untrusted(value: Any, limit: int = UNTRUSTED_MAX) -> str:
    """``value`` as a bounded, single-line, printable string for a log event.

    Control characters, separators, backslashes and lone surrogates are escaped; anything past ``limit`` characters
    is cut and the cut is stated with the original length, so an operator sees that a peer sent 1 MiB without the
    log holding it. Non-strings (a list of path entries, an int) are rendered with ``repr`` and bounded alike; only
    the first ``4 * limit`` characters of a long string are ever escaped, so the cost is bounded too.
    """
    text = value if isinstance(value, str) else _bounded_repr(value, limit)
    head = text[: 4 * limit].translate(_ESCAPED)
    if len(head) <= limit and len(text) <= 4 * limit:
        return head
    return f"{head[:limit]}... ({len(text)} characters)"


def _bounded_repr(value: Any, limit: int) -> str:
    if isinstance(value, list | tuple) and len(value) > limit:
        # A path of 100,000 router ids is not rendered whole only to be cut.
        return f"{repr(list(value[:limit]))[:-1]}, ...] ({len(value)} items)"
    try:
        return repr(value)
    except Exception:  # a hostile __repr__ cannot come from a peer, but a log call must never raise
        return f"<{type(value).__name__}>"


def json_stdout() -> ILogObserver:
    """The observer factory for ``twistd --logger``: JSON events on standard output."""
    return jsonFileLogObserver(sys.stdout)


#: Defaults of the rotating observers: 10 files of 10 MB, so a router's log never takes more than ~110 MB.
DEFAULT_ROTATE_BYTES = 10 * 1000 * 1000
DEFAULT_KEEP = 10


def rotating_log_file(environ: dict[str, str] | None = None) -> LogFile:
    """The log file the rotating observers write to, bounded in size and number of files by the environment.

    ``maxRotatedFiles`` is what bounds the number: LogFile deletes rotated files past it. A value that is not a
    positive integer is refused (ValueError) rather than read as "no bound".
    """
    env = os.environ if environ is None else environ
    path = Path(env.get("WECROSS_LOG_FILE", "wecross.log")).absolute()
    rotate = _positive(env, "WECROSS_LOG_ROTATE_BYTES", DEFAULT_ROTATE_BYTES)
    keep = _positive(env, "WECROSS_LOG_KEEP", DEFAULT_KEEP)
    path.parent.mkdir(parents=True, exist_ok=True)
    return LogFile(path.name, str(path.parent), rotateLength=rotate, maxRotatedFiles=keep)


def _positive(env: Any, name: str, default: int) -> int:
    text = env.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {text!r}")
    return value


def rotating_text() -> ILogObserver:
    """The observer factory for ``twistd --logger``: twistd's text format, to a bounded rotating file."""
    return textFileLogObserver(rotating_log_file())


def rotating_json() -> ILogObserver:
    """The observer factory for ``twistd --logger``: JSON events, to a bounded rotating file."""
    return jsonFileLogObserver(rotating_log_file())
