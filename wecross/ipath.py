"""iPath: the one name of a resource in the whole network, ``zone.chain.resource``.

Every layer (config, wire, routing, REST, permissions) passes :class:`IPath` values rather than strings so that a
malformed name is rejected once, at the edge, with a message that says which part is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: One part of an iPath: starts with a letter or digit, then letters, digits, ``_`` or ``-`` (at most 64 chars).
#: Dots separate parts, slashes separate them in URLs, so neither may appear inside one.
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


class IPathError(ValueError):
    """A string that is not a valid iPath or iPath pattern."""


def _check_part(kind: str, value: str, text: str) -> None:
    if not _PART.match(value):
        raise IPathError(
            f"invalid {kind} {value!r} in iPath {text!r}: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )


@dataclass(frozen=True, slots=True, order=True)
class IPath:
    zone: str
    chain: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> IPath:
        parts = text.split(".")
        if len(parts) != 3:
            raise IPathError(f"iPath {text!r} must have three dot-separated parts: zone.chain.resource")
        zone, chain, resource = parts
        _check_part("zone", zone, text)
        _check_part("chain", chain, text)
        _check_part("resource", resource, text)
        return cls(zone, chain, resource)

    @classmethod
    def from_url_parts(cls, zone: str, chain: str, resource: str) -> IPath:
        return cls.parse(f"{zone}.{chain}.{resource}")

    @property
    def chain_path(self) -> str:
        """``zone.chain``: the unit that routing resolves (a chain is served by one or more routers)."""
        return f"{self.zone}.{self.chain}"

    def __str__(self) -> str:
        return f"{self.zone}.{self.chain}.{self.resource}"


@dataclass(frozen=True, slots=True)
class IPathPattern:
    """A pattern such as ``payment.*``, ``payment.bank-a.*`` or ``*.*.asset``.

    ``*`` matches exactly one part; a trailing ``*`` on a shorter pattern matches every remaining part, so
    ``payment.*`` covers all chains and resources of the zone ``payment``.
    """

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> IPathPattern:
        parts = tuple(text.split("."))
        if not 1 <= len(parts) <= 3:
            raise IPathError(f"iPath pattern {text!r} must have one to three dot-separated parts")
        if len(parts) < 3 and parts[-1] != "*":
            raise IPathError(f"iPath pattern {text!r} with fewer than three parts must end with '*'")
        for kind, part in zip(("zone", "chain", "resource"), parts, strict=False):
            if part != "*":
                _check_part(kind, part, text)
        return cls(parts)

    def matches(self, path: IPath) -> bool:
        values = (path.zone, path.chain, path.resource)
        for i, part in enumerate(self.parts):
            if part == "*" and i == len(self.parts) - 1:
                return True
            if part != "*" and part != values[i]:
                return False
        return len(self.parts) == 3

    def __str__(self) -> str:
        return ".".join(self.parts)
