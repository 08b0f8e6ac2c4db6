"""Mutual TLS for router links and for the REST listener.

Trust is a private CA (see :mod:`wecross.pki`): both ends of a link present their certificate *and* the
intermediates above it, and accept the other end only if that chain ends at one of the configured roots. Which
router is on the other end is decided by the certificate's DNS subjectAltNames, matched with the standard
host-name rule of ``service_identity``; the router id in HELLO must be one of them (:func:`verify_peer_id`).

Twisted's ``optionsForClientTLS`` cannot send intermediates with a client certificate, and its
``CertificateOptions`` would share one cached context without telling us *why* a peer was refused, so the two
connection creators here build their own ``OpenSSL.SSL.Context`` once, at configuration time (a bad cipher string
or key fails at start-up, not at the first connection), and hand out one ``Connection`` per TCP connection.

Why one module over 600 lines: loading our material, the two connection creators and their refusal bookkeeping
(revocation included) share the same error wording and helpers; splitting them would scatter one handshake's rules.
"""

from __future__ import annotations

import datetime
import hashlib
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from wecross.pki.authority import (
    InvalidNameError,
    PKIError,
    PrivateKey,
    common_name,
    dns_names,
    is_self_signed,
    public_key_der,
    read_certificates,
    read_private_key,
    validate_router_id,
)
from wecross.pki.names import router_id_mismatch
from wecross.pki.revocation import RevocationList

__all__ = [
    "DEFAULT_CIPHERS",
    "ClientTLS",
    "PeerCertificateError",
    "PeerIdentity",
    "PeerIdentityError",
    "ServerTLS",
    "TLSConfigError",
    "TLSMaterial",
    "TLSRefusal",
    "check_tls_material",
    "client_options",
    "identity_of",
    "load_tls_material",
    "peer_chain",
    "peer_identity",
    "rest_server_options",
    "server_options",
    "verify_peer_id",
]

#: TLS 1.2 suites: forward secret AEAD only, for EC and RSA keys alike. TLS 1.3 keeps OpenSSL's own (all AEAD).
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

_log = Logger(namespace="wecross.peer.tls")


# --------------------------------------------------------------------------------------------------- errors


class TLSConfigError(ValueError):
    """The router's own TLS files are unusable; names the file and the problem so the operator can fix it."""

    code = "tls_config"

    def __init__(self, path: Path | str | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class PeerIdentityError(Exception):
    """The other end is not the router it claims to be (router id not among its certificate's DNS names)."""

    code = "peer_identity"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PeerCertificateError(PeerIdentityError):
    """The other end's certificate does not chain to our CA (or is expired, or unfit for its role)."""

    code = "peer_certificate"


# --------------------------------------------------------------------------------------------------- material


@dataclass(frozen=True)
class TLSMaterial:
    """What one router (or REST server/client) needs for TLS, as ``cryptography`` objects.

    ``chain`` holds the intermediates above ``certificate`` nearest first; they are sent to the peer, which only
    holds ``trust_roots``. Build it with :func:`load_tls_material`, which checks that the pieces fit together.
    """

    trust_roots: tuple[x509.Certificate, ...]
    certificate: x509.Certificate
    private_key: PrivateKey
    chain: tuple[x509.Certificate, ...] = field(default=())

    @property
    def identity(self) -> PeerIdentity:
        """Our own identity as peers will see it: compare with the configured router id at start-up."""
        return identity_of(self.certificate)


def _cert_label(cert: x509.Certificate) -> str:
    return common_name(cert) or cert.subject.rfc4514_string() or "(no subject)"


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _check_dates(cert: x509.Certificate, path: Path | str, now: datetime.datetime, what: str) -> None:
    if now > cert.not_valid_after_utc:
        raise TLSConfigError(
            path, f"{what} {_cert_label(cert)!r} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if now < cert.not_valid_before_utc:
        raise TLSConfigError(
            path,
            f"{what} {_cert_label(cert)!r} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
            "(check this machine's clock)",
        )


def _x509(cert: x509.Certificate) -> crypto.X509:
    return crypto.X509.from_cryptography(cert)


def _chain_problem(
    roots: Iterable[x509.Certificate], leaf: x509.Certificate, intermediates: Iterable[x509.Certificate]
) -> str | None:
    """Why ``leaf`` + ``intermediates`` do not verify against ``roots`` the way OpenSSL will check it, or None."""
    store = crypto.X509Store()
    for root in roots:
        store.add_cert(_x509(root))
    try:
        crypto.X509StoreContext(store, _x509(leaf), [_x509(c) for c in intermediates]).verify_certificate()
    except crypto.X509StoreContextError as exc:
        bad = exc.certificate.to_cryptography() if exc.certificate is not None else leaf
        return f"{exc} (at certificate {_cert_label(bad)!r})"
    return None


def check_tls_material(
    material: TLSMaterial,
    *,
    ca_path: Path | str | None = None,
    cert_path: Path | str | None = None,
    key_path: Path | str | None = None,
    router_id: str | None = None,
) -> TLSMaterial:
    """Raise :class:`TLSConfigError` unless ``material`` would give a handshake the other side can accept.

    With ``router_id``, also require it to be a DNS name of our own certificate: otherwise every peer would refuse
    our HELLO, and the operator is better told at start-up, here, than by N peers later.
    """
    now = datetime.datetime.now(datetime.UTC)
    if not material.trust_roots:
        raise TLSConfigError(ca_path, "no CA certificate to trust")
    for root in material.trust_roots:
        if not _is_ca(root):
            raise TLSConfigError(
                ca_path, f"{_cert_label(root)!r} is not a CA certificate (basicConstraints CA:TRUE missing)"
            )
        _check_dates(root, ca_path or "CA", now, "CA certificate")
    if public_key_der(material.private_key) != public_key_der(material.certificate):
        hint = ""
        if any(public_key_der(material.private_key) == public_key_der(c) for c in material.chain):
            hint = " (it matches a later certificate: the chain file must start with the leaf)"
        raise TLSConfigError(
            key_path, f"private key does not match the certificate {_cert_label(material.certificate)!r}"
            f" in {cert_path or 'the certificate file'}{hint}"
        )
    where = cert_path or "certificate"
    _check_dates(material.certificate, where, now, "certificate")
    for inter in material.chain:
        _check_dates(inter, where, now, "intermediate CA certificate")
    problem = _chain_problem(material.trust_roots, material.certificate, material.chain)
    if problem is not None:
        raise TLSConfigError(
            where,
            f"certificate is not signed by the CA chain of {ca_path or 'the trust roots'}: {problem}; "
            "a chain file must hold the leaf first, then every intermediate up to (not including) the root",
        )
    if router_id is not None:
        mismatch = router_id_mismatch(dns_names(material.certificate), router_id)
        if mismatch is not None:
            shown = ", ".join(dns_names(material.certificate)) or "none"
            raise TLSConfigError(
                where, f"certificate is for DNS names [{shown}], not for this router's id {router_id!r}: {mismatch}"
            )
    return material


def load_tls_material(
    ca_path: Path | str, cert_path: Path | str, key_path: Path | str, *, router_id: str | None = None
) -> TLSMaterial:
    """Read and check the CA bundle, own certificate (or chain file, leaf first) and own key.

    ``router_id``, when given, must be a DNS name of the certificate (see :func:`check_tls_material`). Blocking
    file I/O: call at start-up (or in a thread), not from a connection callback.
    """
    try:
        roots = tuple(read_certificates(ca_path))
        certs = read_certificates(cert_path)
        key = read_private_key(key_path)
    except PKIError as exc:
        raise TLSConfigError(exc.path, _strip_path(exc)) from None
    if Path(key_path).stat().st_mode & 0o077:
        _log.warn("private key {path} is readable by group or others; chmod 600 it", path=str(key_path))
    # A root appended at the end of a chain file is harmless but useless to send; peers have their own copy.
    chain = tuple(c for c in certs[1:] if not is_self_signed(c))
    material = TLSMaterial(trust_roots=roots, certificate=certs[0], private_key=key, chain=chain)
    return check_tls_material(
        material, ca_path=ca_path, cert_path=cert_path, key_path=key_path, router_id=router_id
    )


def _strip_path(exc: PKIError) -> str:
    """PKI errors already start with "path: "; TLSConfigError adds it again, so keep only the problem."""
    prefix = f"{exc.path}: "
    return exc.message[len(prefix):] if exc.path is not None and exc.message.startswith(prefix) else exc.message


# --------------------------------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class PeerIdentity:
    """Who is on the other end, from its verified certificate. ``fingerprint_sha256`` is lower-case hex of the DER."""

    common_name: str
    dns_names: tuple[str, ...]
    fingerprint_sha256: str


def identity_of(cert: x509.Certificate) -> PeerIdentity:
    der = cert.public_bytes(serialization.Encoding.DER)
    return PeerIdentity(common_name(cert), dns_names(cert), hashlib.sha256(der).hexdigest())


def peer_identity(transport: Any) -> PeerIdentity | None:
    """The peer's identity from an ``ISSLTransport`` after the handshake; None before it, or without TLS.

    Wait for ``IHandshakeListener.handshakeCompleted`` before asking: Twisted calls ``connectionMade`` first.
    """
    getter = getattr(transport, "getPeerCertificate", None)
    if getter is None:
        return None
    try:
        cert = getter()
    except SSL.Error:
        return None
    if cert is None:
        return None
    if isinstance(cert, crypto.X509):
        cert = cert.to_cryptography()
    if not isinstance(cert, x509.Certificate):
        return None
    return identity_of(cert)


def peer_chain(transport: Any) -> tuple[x509.Certificate, ...]:
    """The certificates the peer presented after the handshake (leaf first), or () before it or without TLS.

    For checking a live link against a newer revocation list: the handshake checked the chain once, and a
    certificate revoked since must still end the link.
    """
    handle = getattr(transport, "getHandle", None)
    if handle is None:
        return ()
    try:
        conn = handle()
        if not isinstance(conn, SSL.Connection):
            return ()
        # The verified chain (leaf to root) on both sides: a server's get_peer_cert_chain leaves the leaf out.
        chain: list[Any] = list(conn.get_verified_chain() or ())
        if not chain:
            leaf = conn.get_peer_certificate()
            chain = [leaf, *(conn.get_peer_cert_chain() or ())] if leaf is not None else []
    except SSL.Error:
        return ()
    return tuple(c.to_cryptography() if isinstance(c, crypto.X509) else c for c in chain)


def verify_peer_id(transport_or_identity: Any, router_id: str) -> None:
    """Raise :class:`PeerIdentityError` unless ``router_id`` (from HELLO) is a DNS SAN of the peer's certificate.

    The common name is never consulted (as in HTTPS): a certificate proves only the names in its SAN.
    """
    identity = (
        transport_or_identity
        if isinstance(transport_or_identity, PeerIdentity)
        else peer_identity(transport_or_identity)
    )
    if identity is None:
        raise PeerIdentityError(f"peer claims router id {router_id!r} but presented no TLS certificate")
    reason = router_id_mismatch(identity.dns_names, router_id)
    if reason is not None:
        shown = ", ".join(identity.dns_names) or "none"
        raise PeerIdentityError(
            f"peer claims router id {router_id!r} but its certificate (CN {identity.common_name!r}, "
            f"fingerprint {identity.fingerprint_sha256[:16]}...) is for DNS names [{shown}]: {reason}"
        )


# --------------------------------------------------------------------------------------------------- contexts


_CODES = SSL.X509VerificationCodes
#: OpenSSL's own wording for the failures operators will actually meet, so log lines can be searched for.
_VERIFY_TEXT: dict[int, str] = {
    _CODES.ERR_UNABLE_TO_GET_ISSUER_CERT: "unable to get issuer certificate",
    _CODES.ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "unable to get local issuer certificate",
    _CODES.ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: "unable to verify the first certificate",
    _CODES.ERR_DEPTH_ZERO_SELF_SIGNED_CERT: "self-signed certificate",
    _CODES.ERR_SELF_SIGNED_CERT_IN_CHAIN: "self-signed certificate in certificate chain",
    _CODES.ERR_CERT_HAS_EXPIRED: "certificate has expired",
    _CODES.ERR_CERT_NOT_YET_VALID: "certificate is not yet valid",
    _CODES.ERR_CERT_SIGNATURE_FAILURE: "certificate signature failure",
    _CODES.ERR_INVALID_CA: "invalid CA certificate",
    _CODES.ERR_PATH_LENGTH_EXCEEDED: "path length constraint exceeded",
    _CODES.ERR_INVALID_PURPOSE: "unsuitable certificate purpose",
    _CODES.ERR_CERT_REVOKED: "certificate revoked",
}
for _name, _value in vars(_CODES).items():
    if _name.startswith("ERR_") and isinstance(_value, int):
        _VERIFY_TEXT.setdefault(_value, _name.removeprefix("ERR_").replace("_", " ").lower())

_ALERTS: dict[int, str] = {
    10: "unexpected message",
    20: "bad record MAC",
    40: "handshake failure",
    42: "bad certificate",
    43: "unsupported certificate",
    44: "certificate revoked",
    45: "certificate expired",
    46: "certificate unknown",
    47: "illegal parameter",
    48: "unknown CA",
    49: "access denied",
    50: "decode error",
    51: "decrypt error",
    70: "protocol version",
    71: "insufficient security",
    80: "internal error",
    86: "inappropriate fallback",
    109: "missing extension",
    110: "unsupported extension",
    112: "unrecognized name",
    116: "certificate required",
    120: "no application protocol",
}

_FATAL = 2


def _verify_reason(cert: crypto.X509, errnum: int, depth: int) -> str:
    label = _cert_label(cert.to_cryptography())
    what = _VERIFY_TEXT.get(errnum, f"X509 verify error {errnum}")
    return f"{what} (depth {depth}, {label!r})"


def _new_context(material: TLSMaterial, ciphers: str | None) -> SSL.Context:
    """A context with our chain, our roots and TLS 1.2+; verification mode is set by the caller."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(
        SSL.OP_NO_COMPRESSION | SSL.OP_NO_TICKET | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION
    )
    try:
        ctx.use_certificate(material.certificate)
        for inter in material.chain:
            ctx.add_extra_chain_cert(inter)
        ctx.use_privatekey(material.private_key)
        ctx.check_privatekey()
    except SSL.Error as exc:
        raise TLSConfigError(None, f"OpenSSL refused the certificate or key: {exc}") from None
    store = ctx.get_cert_store()
    assert store is not None
    for root in material.trust_roots:
        store.add_cert(_x509(root))
    cipher_string = ciphers if ciphers is not None else DEFAULT_CIPHERS
    try:
        ctx.set_cipher_list(cipher_string.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError):
        raise TLSConfigError(None, f"cipher string {cipher_string!r} selects no usable TLS 1.2 cipher") from None
    # Needed by OpenSSL whenever a server asks for client certificates, even with sessions off.
    ctx.set_session_id(b"wecross")
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return ctx


@dataclass(frozen=True)
class TLSRefusal:
    """One handshake we refused: for the log line, a counter, and an operator's question "why".

    On the client side ``error`` is the :class:`PeerCertificateError` or :class:`PeerIdentityError` that made us
    refuse the server; the connection itself ends with OpenSSL's generic "certificate verify failed".
    """

    peer: str
    reason: str
    error: PeerIdentityError | None = None
    #: What kind of refusal, for counters (``/status`` refused_links): "revoked" for a certificate on the
    #: revocation list, "tls" for everything else.
    kind: str = "tls"


def _revoked_reason(cert: crypto.X509, depth: int) -> str:
    try:
        label = _cert_label(cert.to_cryptography())
    except Exception:
        label = "?"
    what = "the peer's certificate" if depth == 0 else f"a CA certificate of the peer's chain (depth {depth})"
    return f"certificate revoked: {what} {label!r} is on the revocation list"


def _peer_address(conn: SSL.Connection) -> str:
    try:
        proto = conn.get_app_data()
        addr = proto.transport.getPeer()
        return f"{addr.host}:{addr.port}"
    except Exception:
        return "unknown"


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """Server side of mutual TLS: presents leaf + intermediates, verifies the client's chain against our roots.

    Every refused handshake is logged, counted in :attr:`refusals` and passed to ``on_refusal``; the listener
    itself is unaffected and keeps accepting other clients.
    """

    def __init__(
        self,
        material: TLSMaterial,
        *,
        require_client_cert: bool = True,
        ciphers: str | None = None,
        on_refusal: Callable[[TLSRefusal], None] | None = None,
        revocation: RevocationList | None = None,
    ) -> None:
        self.material = material
        #: Certificates refused even though they chain to our CA; replaced whole when the list reloads (the next
        #: handshake uses the new one, links already up are the peer service's business).
        self.revocation = revocation
        self.require_client_cert = require_client_cert
        self.refusals = 0
        self.rejected_by_peer = 0
        self.last_refusal: TLSRefusal | None = None
        self._on_refusal = on_refusal
        # Per-connection facts, keyed weakly so a dropped connection leaves nothing behind.
        self._verify_errors: weakref.WeakKeyDictionary[SSL.Connection, str] = weakref.WeakKeyDictionary()
        self._revoked: weakref.WeakSet[SSL.Connection] = weakref.WeakSet()
        self._done: weakref.WeakSet[SSL.Connection] = weakref.WeakSet()
        ctx = _new_context(material, ciphers)
        mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if require_client_cert else 0)
        ctx.set_verify(mode, self._verify)
        for root in material.trust_roots:
            ctx.add_client_ca(root)  # tells clients which CA we accept, so they can pick the right certificate
        ctx.set_info_callback(self._info)
        self._ctx = ctx

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self._ctx, None)

    def _verify(self, conn: SSL.Connection, cert: crypto.X509, errnum: int, depth: int, ok: int) -> bool:
        if not ok:
            try:
                self._verify_errors.setdefault(conn, _verify_reason(cert, errnum, depth))
            except Exception:
                self._verify_errors.setdefault(conn, f"verify error {errnum} at depth {depth}")
            return False
        revocation = self.revocation
        if revocation is not None and revocation.is_revoked(cert):
            # OpenSSL calls this for every certificate of the verified chain, root down to leaf: a revoked CA
            # anywhere above the client refuses it as surely as a revoked leaf.
            self._verify_errors.setdefault(conn, _revoked_reason(cert, depth))
            self._revoked.add(conn)
            return False
        return True

    def _info(self, conn: SSL.Connection, where: int, ret: int) -> None:
        try:
            if where & SSL.SSL_CB_HANDSHAKE_DONE:
                self._done.add(conn)
                return
            if not where & SSL.SSL_CB_ALERT or (ret >> 8) != _FATAL or conn in self._done:
                return
            alert = _ALERTS.get(ret & 0xFF, f"alert {ret & 0xFF}")
            if where & SSL.SSL_CB_READ:
                # The client refused *us*: not a refusal of ours, but the operator must hear about it.
                self.rejected_by_peer += 1
                what = "refused our certificate" if 42 <= (ret & 0xFF) <= 49 else "aborted the handshake"
                _log.warn("TLS peer {peer} {what} (alert: {alert})", peer=_peer_address(conn), what=what, alert=alert)
                return
            reason = self._verify_errors.pop(conn, None)
            if reason is None:
                no_cert = (ret & 0xFF) in (40, 116) and conn.get_peer_certificate() is None
                reason = "no client certificate" if no_cert else f"handshake failed ({alert})"
            else:
                reason = f"client certificate refused: {reason}"
            kind = "revoked" if conn in self._revoked else "tls"
            self._refused(TLSRefusal(_peer_address(conn), reason, kind=kind))
        except Exception:
            _log.failure("while recording a TLS refusal")

    def _refused(self, refusal: TLSRefusal) -> None:
        self.refusals += 1
        self.last_refusal = refusal
        _log.warn("refused TLS peer {peer}: {reason}", peer=refusal.peer, reason=refusal.reason)
        if self._on_refusal is not None:
            self._on_refusal(refusal)


@implementer(IOpenSSLClientConnectionCreator)
class ClientTLS:
    """Client side of mutual TLS: sends leaf + intermediates, verifies the server's chain against our roots and,
    when ``expected_peer_id`` is given, that it is a DNS SAN of the server's certificate.

    A refused server gets the proper TLS alert (so its operator learns that we refused it) and our connection ends
    with OpenSSL's "certificate verify failed"; the precise reason is logged, counted in :attr:`refusals`, kept in
    :attr:`last_refusal` and passed to ``on_refusal``. Use one instance per configured peer so these are per peer.
    """

    def __init__(
        self,
        material: TLSMaterial,
        expected_peer_id: str | None = None,
        *,
        ciphers: str | None = None,
        on_refusal: Callable[[TLSRefusal], None] | None = None,
        revocation: RevocationList | None = None,
    ) -> None:
        if expected_peer_id is not None:
            try:
                validate_router_id(expected_peer_id)
            except InvalidNameError as exc:
                raise TLSConfigError(None, f"expected peer id: {exc}") from None
        self.material = material
        #: As ServerTLS.revocation: the server's chain is refused when any certificate of it is listed.
        self.revocation = revocation
        self.expected_peer_id = expected_peer_id
        self.refusals = 0
        self.last_refusal: TLSRefusal | None = None
        self._on_refusal = on_refusal
        ctx = _new_context(material, ciphers)
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)
        self._ctx = ctx

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        conn = SSL.Connection(self._ctx, None)
        if self.expected_peer_id is not None:
            conn.set_tlsext_host_name(self.expected_peer_id.encode("ascii"))
        return conn

    def _verify(self, conn: SSL.Connection, cert: crypto.X509, errnum: int, depth: int, ok: int) -> bool:
        try:
            if not ok:
                why = _verify_reason(cert, errnum, depth)
                return self._refuse(conn, PeerCertificateError(f"server certificate refused: {why}"))
            revocation = self.revocation
            if revocation is not None and revocation.is_revoked(cert):
                error = PeerCertificateError(f"server certificate refused: {_revoked_reason(cert, depth)}")
                return self._refuse(conn, error, kind="revoked")
            expected = self.expected_peer_id
            if depth == 0 and expected is not None:
                identity = identity_of(cert.to_cryptography())
                if router_id_mismatch(identity.dns_names, expected) is not None:
                    shown = ", ".join(identity.dns_names) or "none"
                    return self._refuse(
                        conn,
                        PeerIdentityError(
                            f"expected router {expected!r} but the server's certificate (CN "
                            f"{identity.common_name!r}) is for DNS names [{shown}]"
                        ),
                    )
            return True
        except Exception:
            _log.failure("while verifying a server certificate")
            return False

    def _refuse(self, conn: SSL.Connection, error: PeerIdentityError, kind: str = "tls") -> bool:
        refusal = TLSRefusal(_peer_address(conn), error.reason, error, kind)
        self.refusals += 1
        self.last_refusal = refusal
        _log.warn("refused TLS server {peer}: {reason}", peer=refusal.peer, reason=refusal.reason)
        if self._on_refusal is not None:
            self._on_refusal(refusal)
        return False


def server_options(
    material: TLSMaterial,
    *,
    require_client_cert: bool = True,
    ciphers: str | None = None,
    on_refusal: Callable[[TLSRefusal], None] | None = None,
    revocation: RevocationList | None = None,
) -> ServerTLS:
    """Connection creator for the router's P2P listener (``SSL4ServerEndpoint`` / ``listenSSL``)."""
    return ServerTLS(material, require_client_cert=require_client_cert, ciphers=ciphers, on_refusal=on_refusal,
                     revocation=revocation)


def client_options(
    material: TLSMaterial,
    expected_peer_id: str | None = None,
    *,
    ciphers: str | None = None,
    on_refusal: Callable[[TLSRefusal], None] | None = None,
    revocation: RevocationList | None = None,
) -> ClientTLS:
    """Connection creator for dialling a peer (``SSL4ClientEndpoint`` / ``connectSSL``).

    Without ``expected_peer_id`` only the chain is checked here and the caller must check the id from HELLO with
    :func:`verify_peer_id`.
    """
    return ClientTLS(material, expected_peer_id, ciphers=ciphers, on_refusal=on_refusal, revocation=revocation)


def rest_server_options(
    material: TLSMaterial,
    require_client_cert: bool,
    *,
    ciphers: str | None = None,
    on_refusal: Callable[[TLSRefusal], None] | None = None,
) -> ServerTLS:
    """TLS for the REST listener. With optional client certificates a client may present none, but one that it
    does present must still chain to our CA (a bad certificate is refused, never silently ignored)."""
    return ServerTLS(material, require_client_cert=require_client_cert, ciphers=ciphers, on_refusal=on_refusal)
