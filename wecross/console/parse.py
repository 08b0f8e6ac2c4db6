"""Reading a console line: words split like a POSIX shell, commands separated by ``;``, arguments read as JSON.

The splitter follows ``shlex.split`` (posix mode, no comments): ``'...'`` is literal, ``"..."`` honours ``\\"`` and
``\\\\``, a backslash outside quotes escapes the next character. It is written out here rather than taken from
``shlex`` for two reasons: a ``;`` inside quotes must stay an argument while a bare one separates commands (shlex
returns both as the same token), and tab completion needs the half-typed last word with its position and an
unclosed quote tolerated, which shlex cannot give.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


class ParseError(ValueError):
    """A line that cannot be split (an unclosed quote, a backslash at the end)."""


@dataclass(frozen=True)
class Word:
    """One word of a line: ``text`` after quote removal; ``start``/``end`` locate its raw form in the line."""

    text: str
    start: int
    end: int
    separator: bool = False  # a bare ";" between commands


@dataclass(frozen=True)
class Lexed:
    """A line split into words. ``open_quote`` is the quote left unclosed by the last word (None: all closed);
    ``trailing_space`` says whether the line ends between words (so a new word is being started)."""

    words: tuple[Word, ...]
    open_quote: str | None
    dangling_escape: bool
    trailing_space: bool


def lex(line: str) -> Lexed:
    """Split ``line`` tolerantly: never raises, reports unfinished quoting instead (for completion)."""
    words: list[Word] = []
    buf: list[str] = []
    start: int | None = None
    quote: str | None = None
    i, n = 0, len(line)

    def finish(end: int) -> None:
        nonlocal start
        if start is not None:
            words.append(Word("".join(buf), start, end))
            buf.clear()
            start = None

    while i < n:
        ch = line[i]
        if quote == "'":
            if ch == "'":
                quote = None
            else:
                buf.append(ch)
        elif quote == '"':
            if ch == '"':
                quote = None
            elif ch == "\\" and i + 1 < n and line[i + 1] in '"\\':
                buf.append(line[i + 1])
                i += 1
            else:
                buf.append(ch)
        elif ch.isspace():
            finish(i)
        elif ch == ";":
            finish(i)
            words.append(Word(";", i, i + 1, separator=True))
        else:
            if start is None:
                start = i
            if ch in "'\"":
                quote = ch
            elif ch == "\\":
                if i + 1 == n:
                    return Lexed((*words, Word("".join(buf), start, n)), None, True, False)
                buf.append(line[i + 1])
                i += 1
            else:
                buf.append(ch)
        i += 1
    trailing = start is None and quote is None
    finish(n)
    return Lexed(tuple(words), quote, False, trailing)


def split_commands(line: str) -> list[list[str]]:
    """The commands of a line, each as its list of words; empty commands (``;;``, a blank line) are dropped."""
    lexed = lex(line)
    if lexed.open_quote is not None:
        raise ParseError(f"no closing quotation ({lexed.open_quote})")
    if lexed.dangling_escape:
        raise ParseError("the line ends with a backslash")
    commands: list[list[str]] = [[]]
    for word in lexed.words:
        if word.separator:
            commands.append([])
        else:
            commands[-1].append(word.text)
    return [c for c in commands if c]


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


def value(word: str) -> Any:
    """An argument as JSON when it parses (``10`` -> 10, ``[1,2]`` -> [1, 2], ``true`` -> True), else the word
    itself as a string (``alice`` -> "alice"). To pass a string that looks like JSON, quote it as JSON:
    ``'"10"'`` -> "10". NaN, Infinity and numbers that overflow to them stay strings: JSON cannot carry them."""
    try:
        return json.loads(word, parse_constant=_refuse_constant, parse_float=_finite_float)
    except ValueError:
        return word


__all__ = ["Lexed", "ParseError", "Word", "lex", "split_commands", "value"]
