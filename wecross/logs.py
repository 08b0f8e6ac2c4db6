"""Structured logs: every log event as one JSON object per line, for log shippers (Loki, ELK, Vector...).

twistd chooses its observer with ``--logger``::

    twistd -n --logger wecross.logs.json_stdout wecross --config conf/router.toml

Each line is Twisted's JSON form of the event (``log_format``, ``log_level``, ``log_namespace``, ``log_time`` and
the event's own fields: router ids, peers, chains, error codes...), separated by the record separator twisted's
``eventsFromJSONLogFile`` reads back.
"""

from __future__ import annotations

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver


def json_stdout() -> ILogObserver:
    """The observer factory for ``twistd --logger``: JSON events on standard output."""
    return jsonFileLogObserver(sys.stdout)
