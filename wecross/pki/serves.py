"""Chain authority: which chains a router certificate allows its router to serve.

A router's signed gossip record says which chains it serves, but the router writes that record itself: a dishonest
router admitted by the CA could claim any chain and pull its traffic. The claim is therefore only believed when the
router's certificate, signed by the CA operator, names the chain. The certificate carries one subjectAltName URI per
pattern, ``wecross:serves:<pattern>`` (visible with ``openssl x509 -text``), where a pattern is

* ``zone.chain``: that one chain;
* ``zone.*``: every chain of the zone;
* ``*``: any chain (test networks and single-organisation deployments).

A certificate without such URIs authorises no chain at all: authority must be granted, never assumed. Chain paths
compare exactly (chain and zone names are case-sensitive in iPaths).

This module has no dependency on the rest of ``wecross.pki`` so that ``authority`` (issuing) and the gossip
verifier (reading) can both use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

__all__ = [
    "ANY_CHAIN",
    "NO_AUTHORITY",
    "SERVES_URI_PREFIX",
    "ChainAuthority",
    "ServesPatternError",
    "authorizes",
    "serves_patterns",
    "serves_uri",
    "validate_serves_pattern",
]

#: The subjectAltName URI scheme and prefix of a serves pattern.
SERVES_URI_PREFIX = "wecross:serves:"
#: The pattern that authorises every chain.
ANY_CHAIN = "*"
#: A zone or chain name: the iPath part rule (wecross.ipath), since both end up in chain paths.
_PART = r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}"
_PATTERN = re.compile(rf"^(?:\*|{_PART}\.\*|{_PART}\.{_PART})$")
_CHAIN_PATH = re.compile(rf"^({_PART})\.{_PART}$")


class ServesPatternError(ValueError):
    """A serves pattern that is not ``zone.chain``, ``zone.*`` or ``*``."""


def validate_serves_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid serves pattern, else raise :class:`ServesPatternError` saying why."""
    if not isinstance(pattern, str) or not _PATTERN.match(pattern):
        shown = repr(pattern[:80]) if isinstance(pattern, str) else type(pattern).__name__
        raise ServesPatternError(
            f"serves pattern {shown} is not valid: use 'zone.chain', 'zone.*' or '*' (zone and chain names are "
            "1-64 letters, digits, '_' or '-', starting with a letter or digit)"
        )
    return pattern


def serves_uri(pattern: str) -> str:
    """The subjectAltName URI that carries ``pattern`` in a certificate."""
    return SERVES_URI_PREFIX + validate_serves_pattern(pattern)


def serves_patterns(cert: x509.Certificate) -> tuple[str, ...]:
    """The serves patterns a certificate grants, sorted and without duplicates.

    A ``wecross:serves:`` URI that is not a valid pattern grants nothing (it is skipped, never widened): the CA
    signed it, but an unreadable grant cannot be read as any particular chain.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    found = set()
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(SERVES_URI_PREFIX):
            pattern = uri[len(SERVES_URI_PREFIX):]
            if _PATTERN.match(pattern):
                found.add(pattern)
    return tuple(sorted(found))


@dataclass(frozen=True, slots=True)
class ChainAuthority:
    """Serves patterns compiled for quick questions (asked for every chain of every record a directory stores)."""

    patterns: tuple[str, ...]
    any_chain: bool
    zones: frozenset[str]
    chains: frozenset[str]

    @classmethod
    def of(cls, patterns: Iterable[str]) -> ChainAuthority:
        """Compile ``patterns``; invalid ones are dropped (they authorise nothing), as in :func:`serves_patterns`."""
        valid = tuple(sorted({p for p in patterns if isinstance(p, str) and _PATTERN.match(p)}))
        return cls(
            patterns=valid,
            any_chain=ANY_CHAIN in valid,
            zones=frozenset(p[:-2] for p in valid if p.endswith(".*")),
            chains=frozenset(p for p in valid if p != ANY_CHAIN and not p.endswith(".*")),
        )

    def authorizes(self, chain_path: str) -> bool:
        """Whether the patterns cover ``chain_path`` (``zone.chain``); anything else is never authorised."""
        if chain_path in self.chains:
            return True
        if not (self.any_chain or self.zones):
            return False
        match = _CHAIN_PATH.match(chain_path) if isinstance(chain_path, str) else None
        if match is None:
            return False
        return self.any_chain or match.group(1) in self.zones


#: A certificate without serves patterns authorises nothing.
NO_AUTHORITY = ChainAuthority.of(())


def authorizes(patterns: Iterable[str], chain_path: str) -> bool:
    """Whether serves ``patterns`` (as read by :func:`serves_patterns`) authorise the chain ``zone.chain``."""
    return ChainAuthority.of(patterns).authorizes(chain_path)
