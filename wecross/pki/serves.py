"""Chain authority: which chains a router certificate allows its router to serve.

A router's signed gossip record says which chains it serves, but the router writes that record itself: a dishonest
router admitted by the CA could claim any chain and pull its traffic. The claim is therefore only believed when the
router's certificate, signed by the CA operator, names the chain. A pattern is

* ``zone.chain``: that one chain;
* ``zone.*``: every chain of the zone;
* ``*``: any chain (test networks and single-organisation deployments).

A certificate without patterns authorises no chain at all: authority must be granted, never assumed. Chain paths
compare exactly (chain and zone names are case-sensitive in iPaths).

**Encoding.** The patterns travel in one non-critical private X.509 extension, :data:`SERVES_OID`, whose value is the
DER encoding of ``SEQUENCE OF UTF8String`` (one string per pattern). Not in the subjectAltName: SANs are identities,
and TLS clients check every SAN entry when they verify a host name (``service_identity`` refuses a whole certificate
over a URI it cannot parse), whereas an unknown non-critical extension is ignored by every verifier but ours.
A value that is not exactly that DER (bad tag, non-minimal or overlong length, trailing bytes, invalid UTF-8)
authorises nothing (:func:`decode_serves_value` raises, :func:`serves_patterns` reads no pattern), and a
well-formed string that is not a valid pattern grants nothing while its valid neighbours still do: an unreadable
grant is never widened into some chain.

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
    "SERVES_OID",
    "ChainAuthority",
    "ServesEncodingError",
    "ServesPatternError",
    "authorizes",
    "decode_serves_value",
    "encode_serves_value",
    "serves_extension",
    "serves_patterns",
    "validate_serves_pattern",
]

#: The extension carrying the serves patterns. An OID under the ``2.25`` arc is a UUID written as one decimal integer
#: (ITU-T X.667 / ISO/IEC 9834-8): anyone may mint one from a random UUID without registering it, which is why a
#: private extension can live there. This one is UUID 16198a7d-6e72-4083-94cb-69a995f1d1bc, drawn once with
#: ``uuid.uuid4()``; it must never change, or every issued certificate would lose its chains.
SERVES_OID = x509.ObjectIdentifier("2.25.29375632238958611390641903761928343996")
#: The pattern that authorises every chain.
ANY_CHAIN = "*"
#: A zone or chain name: the iPath part rule (wecross.ipath), since both end up in chain paths.
_PART = r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}"
_PATTERN = re.compile(rf"^(?:\*|{_PART}\.\*|{_PART}\.{_PART})$")
_CHAIN_PATH = re.compile(rf"^({_PART})\.{_PART}$")

_SEQUENCE = 0x30
_UTF8_STRING = 0x0C
#: The longest DER length field decoded (4 bytes: up to 4 GiB, far beyond any certificate).
_MAX_LENGTH_BYTES = 4


class ServesPatternError(ValueError):
    """A serves pattern that is not ``zone.chain``, ``zone.*`` or ``*``."""


class ServesEncodingError(ValueError):
    """A serves extension value that is not the DER of ``SEQUENCE OF UTF8String``."""


def validate_serves_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid serves pattern, else raise :class:`ServesPatternError` saying why."""
    if not isinstance(pattern, str) or not _PATTERN.match(pattern):
        shown = repr(pattern[:80]) if isinstance(pattern, str) else type(pattern).__name__
        raise ServesPatternError(
            f"serves pattern {shown} is not valid: use 'zone.chain', 'zone.*' or '*' (zone and chain names are "
            "1-64 letters, digits, '_' or '-', starting with a letter or digit)"
        )
    return pattern


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _read_tlv(data: bytes, pos: int, tag: int) -> tuple[bytes, int]:
    """The content of the DER element of type ``tag`` at ``pos`` and the position after it; refuses BER freedoms
    (indefinite, non-minimal or overlong lengths) so that one value has exactly one encoding."""
    if pos + 2 > len(data):
        raise ServesEncodingError("truncated element")
    if data[pos] != tag:
        raise ServesEncodingError(f"expected tag 0x{tag:02x} at offset {pos}, found 0x{data[pos]:02x}")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > _MAX_LENGTH_BYTES:
            raise ServesEncodingError(f"unsupported length form 0x{first:02x} at offset {pos - 1}")
        if pos + count > len(data):
            raise ServesEncodingError("truncated length")
        length = int.from_bytes(data[pos:pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise ServesEncodingError(f"non-minimal length at offset {pos - 1}")
        pos += count
    end = pos + length
    if end > len(data):
        raise ServesEncodingError("element longer than the value")
    return data[pos:end], end


def encode_serves_value(patterns: Iterable[str]) -> bytes:
    """The extension value for ``patterns``: DER ``SEQUENCE OF UTF8String``, in the order given, duplicates dropped.

    Raises :class:`ServesPatternError` for an invalid pattern: the CA never signs a grant no router could read."""
    unique: list[str] = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        if validate_serves_pattern(pattern) not in unique:
            unique.append(pattern)
    return _der(_SEQUENCE, b"".join(_der(_UTF8_STRING, p.encode("utf-8")) for p in unique))


def decode_serves_value(value: bytes) -> tuple[str, ...]:
    """The strings of a serves extension value, in order; :class:`ServesEncodingError` unless ``value`` is exactly
    one DER ``SEQUENCE OF UTF8String`` of valid UTF-8. The strings are not checked as patterns here."""
    content, end = _read_tlv(value, 0, _SEQUENCE)
    if end != len(value):
        raise ServesEncodingError(f"{len(value) - end} bytes after the SEQUENCE")
    strings: list[str] = []
    pos = 0
    while pos < len(content):
        raw, pos = _read_tlv(content, pos, _UTF8_STRING)
        try:
            strings.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ServesEncodingError(f"string {len(strings)} is not valid UTF-8") from None
    return tuple(strings)


def serves_extension(patterns: Iterable[str]) -> x509.UnrecognizedExtension:
    """The extension a router certificate carries for ``patterns`` (add it with ``critical=False``: a TLS library
    that does not know it must still accept the certificate)."""
    return x509.UnrecognizedExtension(SERVES_OID, encode_serves_value(patterns))


def serves_patterns(cert: x509.Certificate) -> tuple[str, ...]:
    """The serves patterns a certificate grants, sorted and without duplicates.

    A malformed extension value grants nothing at all; a well-formed string that is not a valid pattern is skipped
    (never widened): the CA signed it, but an unreadable grant cannot be read as any particular chain. A certificate
    whose extensions cannot be parsed (a duplicate extension, say) grants nothing either.
    """
    try:
        ext = cert.extensions.get_extension_for_oid(SERVES_OID).value
    except x509.ExtensionNotFound:
        return ()
    except (x509.DuplicateExtension, ValueError):  # an extension list cryptography cannot parse
        return ()
    if not isinstance(ext, x509.UnrecognizedExtension):
        return ()
    try:
        strings = decode_serves_value(ext.value)
    except ServesEncodingError:
        return ()
    return tuple(sorted({s for s in strings if _PATTERN.match(s)}))


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
