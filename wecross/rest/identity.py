"""Who a REST client is, and the client's own signature of a resource operation.

The sender of an operation is the CN of the client's TLS certificate (:func:`client_identity`), never a field of
the body. A client that holds that certificate's key may also sign the operation itself (three request headers,
docs/rest-api.md "Signed operations"): the entry router then hands the owner a :class:`wecross.attest.ClientProof`
with the client's certificate chain, and the owner runs the operation in the client's name only if that signature
is the client's (wecross/facade.py ``Invocation.client_proof``). So no router, not even the entry router, can act as
that user in ways the user did not ask for.

The entry router checks the signature too, before anything leaves it: a request that was changed after signing,
has expired, or carries the headers without a client certificate is refused here (401) rather than one or more
hops later. This check is for early refusal and clear errors only; the owner's check is the one that protects the
user.

Two halves, as everywhere in this code base: :func:`parse_signature_headers` and :func:`check_signature` are plain
functions of their inputs (the wall clock comes in as ``now_ms``), and :func:`peer_chain` / :func:`client_proof`
read the TLS connection of a twisted.web request.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet.interfaces import ISSLTransport

from wecross import attest
from wecross.attest import ClientProof
from wecross.config import Limits
from wecross.errors import RouterError
from wecross.governance.identity import Identity, RoleGrants

ANONYMOUS = "anonymous"

#: The three request headers of a signed operation (HTTP header names are case-insensitive; twisted.web looks
#: them up in lower case).
NONCE_HEADER = b"wecross-nonce"
EXPIRES_HEADER = b"wecross-expires"
SIGNATURE_HEADER = b"wecross-signature"
SIGNATURE_HEADERS = (NONCE_HEADER, EXPIRES_HEADER, SIGNATURE_HEADER)
#: As they are spelled in messages and documents.
HEADER_NAMES = {NONCE_HEADER: "WeCross-Nonce", EXPIRES_HEADER: "WeCross-Expires",
                SIGNATURE_HEADER: "WeCross-Signature"}

_NONCE = re.compile(rb"[0-9a-f]{32}")
_EXPIRES = re.compile(rb"[0-9]{1,19}")
#: Standard base64 (RFC 4648 section 4) with its padding; checked before decoding so that nothing else is accepted.
_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
#: Longest signature accepted: an RSA-8192 signature has 1,024 bytes, an ECDSA P-521 one about 140.
MAX_SIGNATURE = 1024
#: Longest certificate chain handed on (ClientProof.decode at the owner takes at most 8).
MAX_CHAIN = 8


@dataclass(frozen=True, slots=True)
class SignatureHeaders:
    """The three headers of a signed operation, decoded."""

    nonce: bytes
    expires_ms: int
    signature: bytes


def _bad_header(name: bytes, why: str) -> RouterError:
    shown = HEADER_NAMES[name]
    return RouterError("bad_request", f"header {shown} {why}", {"header": shown})


def parse_signature_headers(values: dict[bytes, list[bytes] | None]) -> SignatureHeaders | None:
    """The signature headers from their raw values (header name -> every value received, or None when absent):
    None when none of the three was sent, else all three decoded; RouterError ``bad_request`` naming the header
    otherwise (one missing, given twice, or not in its format). A header's value never goes into a message."""
    present = {name: raw for name in SIGNATURE_HEADERS if (raw := values.get(name))}
    if not present:
        return None
    single: dict[bytes, bytes] = {}
    for name in SIGNATURE_HEADERS:
        raw = present.get(name)
        if raw is None:
            given = ", ".join(HEADER_NAMES[n] for n in SIGNATURE_HEADERS if n in present)
            raise _bad_header(name, f"is missing: a signed operation needs WeCross-Nonce, WeCross-Expires and "
                                    f"WeCross-Signature together (got {given})")
        if len(raw) != 1:
            raise _bad_header(name, f"is given {len(raw)} times; send it once")
        single[name] = raw[0].strip(b" \t")
    nonce = single[NONCE_HEADER]
    if _NONCE.fullmatch(nonce) is None:
        raise _bad_header(NONCE_HEADER, "must be 32 lowercase hexadecimal characters (16 random bytes)")
    expires = single[EXPIRES_HEADER]
    if _EXPIRES.fullmatch(expires) is None or int(expires) >= 1 << 63:
        raise _bad_header(EXPIRES_HEADER, "must be a decimal integer: the expiry in milliseconds since the epoch")
    signature = single[SIGNATURE_HEADER]
    if not signature or len(signature) > (MAX_SIGNATURE + 2) // 3 * 4 or _BASE64.fullmatch(signature) is None:
        raise _bad_header(SIGNATURE_HEADER, f"must be standard base64 (with padding) of a signature of at most "
                                            f"{MAX_SIGNATURE} bytes")
    try:
        decoded = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):  # pragma: no cover - the pattern above admits only decodable text
        raise _bad_header(SIGNATURE_HEADER, "must be standard base64") from None
    if len(decoded) > MAX_SIGNATURE:
        raise _bad_header(SIGNATURE_HEADER, f"holds more than {MAX_SIGNATURE} bytes")
    return SignatureHeaders(bytes.fromhex(nonce.decode("ascii")), int(expires), decoded)


def _unauthenticated(check: str, message: str) -> RouterError:
    return RouterError("unauthenticated", message, {"check": check})


def check_signature(public_key: Any, headers: SignatureHeaders, *, sender: str, ipath: str, op: str, method: str,
                    args: Sequence[Any], now_ms: int, limits: Limits) -> None:
    """Raises RouterError ``unauthenticated`` (details.check names the check) unless ``headers`` sign exactly this
    operation with the key of the client's certificate and are within their time: not more than ``clock_skew``
    past their expiry, and not expiring more than ``request_deadline + clock_skew`` ahead (a signature meant to
    be kept for later)."""
    skew_ms = int(limits.clock_skew * 1000)
    if headers.expires_ms + skew_ms < now_ms:
        raise _unauthenticated("expired", f"the operation's signature expired {now_ms - headers.expires_ms} ms ago "
                                          f"(WeCross-Expires; clocks may differ by {limits.clock_skew:g} s): sign "
                                          f"it again")
    ahead_ms = int((limits.request_deadline + limits.clock_skew) * 1000)
    if headers.expires_ms - now_ms > ahead_ms:
        raise _unauthenticated("expired", f"the operation's signature expires too far ahead (WeCross-Expires is "
                                          f"{headers.expires_ms - now_ms} ms from now; at most {ahead_ms} ms)")
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise _unauthenticated("signature", "the client certificate's key can sign nothing this router checks "
                                            "(use an EC P-256 or RSA key)")
    try:
        body = attest.client_body(sender, ipath, op, method, args, headers.nonce, headers.expires_ms)
    except attest.AttestError as exc:  # an integer msgpack cannot hold: nobody can have signed these arguments
        raise RouterError("bad_args", f"a signed operation's arguments must be signable: {exc.message}") from None
    try:
        attest.verify(public_key, headers.signature, body, sender)
    except attest.AttestError:
        raise _unauthenticated("signature", f"the signature (WeCross-Signature) is not {sender[:64]!r}'s over this "
                                            f"operation: the request differs from what was signed, or another key "
                                            f"signed it") from None


# --- the TLS connection ---------------------------------------------------------------------------------------------


def _tls_transport(request: Any) -> Any:
    transport = getattr(request, "transport", None)
    if transport is None or not ISSLTransport.providedBy(transport):
        return None
    return transport


def client_identity(request: Any) -> str:
    """The CN of the client's TLS certificate, or ``anonymous`` on plain HTTP or when no certificate was presented.

    Whether the certificate was verified against the network's CA is the listener's business (its TLS context must
    require verification of any certificate offered); this function only reads what the TLS layer accepted.
    """
    transport = _tls_transport(request)
    if transport is None:
        return ANONYMOUS
    try:
        cert = transport.getPeerCertificate()
    except Exception:  # a transport torn down mid-request has no TLS connection left to ask
        return ANONYMOUS
    if cert is None:
        return ANONYMOUS
    try:
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)
    except Exception:  # not a pyOpenSSL certificate: read it without the cache
        return _common_name(cert)
    identity = _IDENTITIES.get(der)
    if identity is None:
        identity = _common_name(cert)
        if len(_IDENTITIES) >= _IDENTITY_CACHE_SIZE:
            _IDENTITIES.clear()
        _IDENTITIES[der] = identity
    return identity


#: Certificate (DER) -> identity. Parsing the subject costs some 20 µs and a keep-alive client sends the same
#: certificate with every request; the identity is a function of the certificate's bytes alone, so this cannot go
#: stale. Bounded, so a stream of distinct certificates cannot grow it.
_IDENTITIES: dict[bytes, str] = {}
#: Certificate (DER) -> its public key, for the same reason.
_KEYS: dict[bytes, Any] = {}
_IDENTITY_CACHE_SIZE = 1024


def _common_name(cert: Any) -> str:
    try:
        names = cert.to_cryptography().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except Exception:
        return ANONYMOUS
    if not names:
        return ANONYMOUS
    value = names[0].value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value) or ANONYMOUS


def peer_chain(request: Any) -> tuple[bytes, ...] | None:
    """The client's certificate chain as the TLS layer verified it, leaf first, DER, without the self-signed root
    at its end (the owner holds that one already: it is the network's CA); None when the request came without a
    client certificate (plain HTTP, or TLS where the client sent none).

    The verified chain (OpenSSL's, pyOpenSSL ``get_verified_chain``) rather than whatever the client sent: it holds
    exactly the certificates that link the leaf to the CA, never extra ones a client added. Where it is not to be
    had, the leaf and the certificates the client sent are used instead."""
    transport = _tls_transport(request)
    if transport is None:
        return None
    try:
        leaf = transport.getPeerCertificate()
        if leaf is None:
            return None
        connection = transport.getHandle()
        verified = getattr(connection, "get_verified_chain", None)
        chain = list(verified() or []) if verified is not None else []
        if not chain:
            sent = connection.get_peer_cert_chain() or []
            chain = [leaf, *sent]
        leaf_der = crypto.dump_certificate(crypto.FILETYPE_ASN1, leaf)
        certs = [(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert), cert) for cert in chain]
    except Exception:  # a connection torn down mid-request: nothing to read from it any more
        return None
    # Leaf first, each certificate once; the root, which signs itself, left out.
    ders = [leaf_der]
    for der, cert in certs:
        if der not in ders and not _self_signed(cert):
            ders.append(der)
    return tuple(ders[:MAX_CHAIN])


_NOT_READ: Any = object()


def client_chain(request: Any) -> tuple[bytes, ...] | None:
    """:func:`peer_chain`, read once per connection and remembered by its channel: a TLS connection's client
    certificates never change, and reading them costs a chain walk and a DER encoding per certificate. What the
    chain is worth (revoked or not) is not remembered: the revocation list may change between two requests."""
    channel = getattr(request, "channel", None)
    known = getattr(channel, "client_chain", _NOT_READ)
    if known is not _NOT_READ:
        return cast("tuple[bytes, ...] | None", known)
    chain = peer_chain(request)
    if channel is not None:
        with contextlib.suppress(AttributeError):  # a channel that takes no attributes reads the chain each time
            channel.client_chain = chain
    return chain


def _self_signed(cert: Any) -> bool:
    try:
        return bool(cert.get_subject() == cert.get_issuer())
    except Exception:
        return False


def _leaf_key(der: bytes) -> Any:
    key = _KEYS.get(der)
    if key is None:
        key = x509.load_der_x509_certificate(der).public_key()
        if len(_KEYS) >= _IDENTITY_CACHE_SIZE:
            _KEYS.clear()
        _KEYS[der] = key
    return key


def has_signature_headers(request: Any) -> bool:
    """Whether the request carries any of the three headers (the common unsigned request answers False after three
    dictionary look-ups)."""
    has = request.requestHeaders.hasHeader
    return bool(has(NONCE_HEADER) or has(EXPIRES_HEADER) or has(SIGNATURE_HEADER))


def client_proof(request: Any, *, sender: str, ipath: str, op: str, method: str, args: Sequence[Any],
                 now_ms: int, limits: Limits) -> ClientProof | None:
    """The client's signature of this operation as the proof the owner checks, or None when the request is not
    signed. RouterError ``bad_request`` for malformed headers, ``unauthenticated`` for headers without a client
    certificate, an expired signature, or a signature that does not hold (see :func:`check_signature`)."""
    headers = request.requestHeaders
    parsed = parse_signature_headers({name: headers.getRawHeaders(name) for name in SIGNATURE_HEADERS})
    if parsed is None:
        return None
    chain = peer_chain(request)
    if chain is None:
        raise _unauthenticated("client_certificate", "a signed operation (WeCross-Signature) must come over HTTPS "
                                                     "with the client certificate whose key signed it; this "
                                                     "request has no client certificate")
    if sender == ANONYMOUS:
        raise _unauthenticated("client_certificate", "the client certificate names no user (no common name), so "
                                                     "nobody can be named as the signer")
    try:
        key = _leaf_key(chain[0])
    except Exception:
        raise _unauthenticated("client_certificate", "the client certificate's key cannot be read") from None
    check_signature(key, parsed, sender=sender, ipath=ipath, op=op, method=method, args=args, now_ms=now_ms,
                    limits=limits)
    return ClientProof(chain, parsed.nonce, parsed.expires_ms, parsed.signature)


__all__ = [
    "ANONYMOUS",
    "EXPIRES_HEADER",
    "HEADER_NAMES",
    "NONCE_HEADER",
    "SIGNATURE_HEADER",
    "SignatureHeaders",
    "check_signature",
    "client_chain",
    "client_identity",
    "client_proof",
    "has_signature_headers",
    "parse_signature_headers",
    "peer_chain",
]


#: Certificate (DER) -> the identity it names before this router's role grants (Identity.from_certificate), or the
#: reason it names none. Bounded like _IDENTITIES.
_CALLERS: dict[bytes, Identity | str] = {}


def caller_identity(request: Any, grants: RoleGrants | None = None) -> Identity:
    """The caller as permissions see it (wecross.governance): the TLS client certificate's CN, O and roles
    (``wecross:ROLE`` units, plus ``grants``), or the anonymous caller on plain HTTP or without a certificate.
    A certificate that names no usable identity (no CN, a reserved name) is refused: 401 unauthenticated."""
    transport = _tls_transport(request)
    if transport is None:
        return Identity.nobody()
    try:
        cert = transport.getPeerCertificate()
    except Exception:
        return Identity.nobody()
    if cert is None:
        return Identity.nobody()
    try:
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)
    except Exception:
        der = b""
    known = _CALLERS.get(der) if der else None
    if known is None:
        try:
            known = Identity.from_certificate(cert.to_cryptography(), proven="tls")
        except (ValueError, AttributeError) as exc:
            known = str(exc)[:200]
        if der:
            if len(_CALLERS) >= _IDENTITY_CACHE_SIZE:
                _CALLERS.clear()
            _CALLERS[der] = known
    if isinstance(known, str):
        raise RouterError("unauthenticated", f"the client certificate names no usable identity: {known}")
    if grants is None:
        return known
    extra = grants.roles_for(known.name, known.org)
    return known if extra <= known.roles else Identity(known.name, known.org, known.roles | extra, known.proven)
