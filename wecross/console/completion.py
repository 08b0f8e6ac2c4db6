"""Tab completion: command names, then each argument by its kind (iPath, method of that iPath, transaction id...).

:func:`candidates` is pure (a session and the text before the cursor in, suggestions out) so it can be tested
without a terminal; :class:`ConsoleCompleter` adapts it to prompt_toolkit. iPaths and methods come from the
resources the session last read (``GET /resources`` at start and on ``refresh``), so completing costs no request
unless nothing has been read yet.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from wecross.console import parse
from wecross.console.commands import AUDIT_FILTERS, TX_STATES, Session, lookup, names
from wecross.sdk import WeCrossError

_SAFE = re.compile(r"[A-Za-z0-9_.:@%+=,/-]+")


@dataclass(frozen=True)
class Candidate:
    """Replace the ``-start`` characters before the cursor by ``text``; ``meta`` is shown beside it in the menu."""

    text: str
    start: int
    meta: str = ""


def _quoted(text: str) -> str:
    return text if _SAFE.fullmatch(text) else shlex.quote(text)


def _matching(prefix: str, options: Iterable[tuple[str, str]], *, fold: bool = False,
              substring: bool = False) -> list[tuple[str, str]]:
    """Options starting with ``prefix``; if none do and ``substring``, those containing it (``asset`` finds
    ``z.one.asset``)."""
    items = list(options)

    def key(text: str) -> str:
        return text.lower() if fold else text

    found = [o for o in items if key(o[0]).startswith(key(prefix))]
    if not found and substring and prefix:
        found = [o for o in items if key(prefix) in key(o[0])]
    return found


def _param(kinds: tuple[str, ...], index: int) -> str | None:
    """The kind of argument ``index`` (0-based), repeating a trailing ``kind*``."""
    if index < len(kinds):
        return kinds[index].rstrip("*")
    if kinds and kinds[-1].endswith("*"):
        return kinds[-1].rstrip("*")
    return None


def _resources(session: Session) -> list[tuple[str, str]]:
    if session.resources is None:
        try:
            session.refresh()
        except WeCrossError:
            return []
    return sorted((str(r.get("ipath", "")), str(r.get("kind", ""))) for r in session.known_resources())


def _methods(session: Session, ipath: str, wanted: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The resource's methods of the wanted kind (read for call, write for a transaction), and all of them."""
    _resources(session)
    info = session.resource(ipath)
    methods = sorted((info.get("methods") or {}).items()) if info is not None else []
    return [m for m in methods if m[1] == wanted], methods


def _arguments(session: Session, kind: str, previous: list[str], prefix: str) -> list[tuple[str, str]]:
    if kind == "command":
        return _matching(prefix, ((n, "") for n in names()), fold=True)
    if kind == "ipath":
        return _matching(prefix, _resources(session), substring=True)
    if kind.startswith("method."):
        preferred, every = _methods(session, previous[-1] if previous else "", kind.split(".", 1)[1])
        return _matching(prefix, preferred) or _matching(prefix, every)
    if kind == "zone":
        zones = sorted({ipath.split(".")[0] for ipath, _ in _resources(session)})
        return _matching(prefix, ((z, "zone") for z in zones))
    if kind == "chain_name":
        zone = previous[-1] if previous else ""
        chains = sorted({ipath.split(".")[1] for ipath, _ in _resources(session)
                         if ipath.count(".") == 2 and ipath.split(".")[0] == zone})
        return _matching(prefix, ((c, "chain") for c in chains))
    if kind == "chain":
        chains = sorted({ipath.rsplit(".", 1)[0] for ipath, _ in _resources(session) if ipath.count(".") == 2})
        return _matching(prefix, ((c, "chain") for c in chains))
    if kind == "tx_id":
        return _matching(prefix, ((t, "transaction") for t in session.tx_ids), substring=True)
    if kind == "tx_state":
        return _matching(prefix, ((s, "state") for s in TX_STATES))
    if kind == "audit_filter":
        return _matching(prefix, ((f"{name}=", "filter") for name in AUDIT_FILTERS))
    if kind == "onoff":
        return _matching(prefix, (("on", ""), ("off", "")))
    return []


def candidates(session: Session, text: str) -> list[Candidate]:
    """What may complete the word at the end of ``text`` (the line up to the cursor)."""
    lexed = parse.lex(text)
    segment: list[parse.Word] = []
    for word in lexed.words:
        segment = [] if word.separator else [*segment, word]
    if lexed.trailing_space or not lexed.words or lexed.words[-1].separator:
        words, prefix, start = [w.text for w in segment], "", 0
    else:
        words, prefix, start = [w.text for w in segment[:-1]], segment[-1].text, len(text) - segment[-1].start
    if not words:
        found = [(n, c.summary if (c := lookup(n)) else "") for n, _ in _arguments(session, "command", [], prefix)]
    else:
        command = lookup(words[0])
        kind = _param(command.params, len(words) - 1) if command is not None else None
        found = _arguments(session, kind, words[1:], prefix) if kind is not None else []
    return [Candidate(_quoted(text_), -start, meta) for text_, meta in found]


class ConsoleCompleter(Completer):
    """prompt_toolkit's view of :func:`candidates`."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        for c in candidates(self.session, document.text_before_cursor):
            yield Completion(c.text, start_position=c.start, display_meta=c.meta or None)


__all__ = ["Candidate", "ConsoleCompleter", "candidates"]
