"""Does a certificate name a router? One rule for TLS links and for gossip records.

A router id must be one of the certificate's DNS subjectAltNames under service_identity's host-name rule (RFC 6125
wildcards, case-insensitive); the common name is never consulted. Router ids themselves are lower-case DNS names,
so ``Router-A`` cannot pass as ``router-a`` and count as a second router.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from service_identity import CertificateError, VerificationError
from service_identity.hazmat import DNS_ID, DNSPattern, verify_service_identity

from wecross.pki.authority import InvalidNameError, validate_router_id


def dns_patterns(names: Iterable[str]) -> tuple[DNSPattern, ...]:
    """The usable DNS names of a certificate, parsed once (a verifier may cache them per certificate)."""
    patterns = []
    for name in names:
        try:
            patterns.append(DNSPattern.from_bytes(name.encode("ascii")))
        except (CertificateError, UnicodeEncodeError):
            continue  # IP-like or non-ASCII names can never match a router id
    return tuple(patterns)


def patterns_match(patterns: Sequence[DNSPattern], router_id: str) -> bool:
    if not patterns:
        return False
    try:
        verify_service_identity(patterns, obligatory_ids=[DNS_ID(router_id)], optional_ids=[])
    except (VerificationError, CertificateError, ValueError):
        return False
    return True


def router_id_mismatch(names: Iterable[str], router_id: str) -> str | None:
    """None when ``router_id`` is one of the DNS ``names``, else the reason why not (for logs and errors)."""
    try:
        validate_router_id(router_id)
    except InvalidNameError as exc:
        return str(exc)
    patterns = dns_patterns(names)
    if not patterns:
        return "the certificate has no DNS subjectAltName"
    if not patterns_match(patterns, router_id):
        return "no DNS subjectAltName matches"
    return None
