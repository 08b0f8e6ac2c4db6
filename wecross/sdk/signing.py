"""A client's signature of each resource operation it sends (docs/sdk.md, "Signed operations").

Used by both clients through :meth:`wecross.sdk.protocol.Call.headers`. ``cryptography`` and the router's body
parser are imported only when a signer is made or signs: a client that does not sign imports nothing outside the
standard library.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wecross.sdk.errors import BadRequest, ConfigError

#: The request headers of a signed resource operation (docs/rest-api.md, "Signed operations").
NONCE_HEADER = "WeCross-Nonce"
EXPIRES_HEADER = "WeCross-Expires"
SIGNATURE_HEADER = "WeCross-Signature"
#: How long after signing an operation may still be run, in seconds. Routers refuse signatures that expire more
#: than their request deadline plus their allowed clock skew ahead (30 + 30 s unless configured otherwise).
SIGNATURE_LIFETIME = 30.0


class OperationSigner:
    """Signs resource operations with the client's key (``wecross.attest.client_body``, sent as three headers): the
    router that serves the resource runs the operation in this client's name only if the signature is the client's,
    so no router on the way, the one the client talks to included, can change it or act as this user.

    The signed (method, args) are what the router reads from the request: they come from the router's own parser
    (``wecross.rest.json_body``) applied to the very bytes sent, so a value that JSON changes on its way (a tuple
    sent as a list, say) is signed as the router sees it, and the signature matches what the owner checks. The
    sender is the common name of the certificate, as the router takes it from the TLS connection.

    ``clock`` is the wall clock (seconds since the epoch, the expiry is compared with the routers' clocks) and
    ``random`` the source of nonces; both are parameters for tests.
    """

    def __init__(self, cert: Path, key: Path | None, *, lifetime: float = SIGNATURE_LIFETIME,
                 clock: Callable[[], float] = time.time, random: Callable[[int], bytes] = os.urandom) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
        from cryptography.x509.oid import NameOID

        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or not 0 < lifetime < 86400:
            raise ConfigError(f"signature_lifetime must be a positive number of seconds, got {lifetime!r}")
        key_file = key or cert
        try:
            leaf = x509.load_pem_x509_certificates(cert.read_bytes())[0]
        except (OSError, ValueError) as exc:
            raise ConfigError(f"client certificate {str(cert)!r} cannot be read ({exc})", {"cert": str(cert)}) from None
        names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        identity = names[0].value if names else ""
        if isinstance(identity, bytes):
            identity = identity.decode("utf-8", "replace")
        if not identity:
            raise ConfigError(f"client certificate {str(cert)!r} names no user (no common name): nothing to sign "
                              "operations as", {"cert": str(cert)})
        try:
            private = load_pem_private_key(key_file.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"client key {str(key_file)!r} cannot be read ({exc})", {"key": str(key_file)}) from None
        if not isinstance(private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ConfigError(f"client key {str(key_file)!r} must be an EC or RSA key to sign operations",
                              {"key": str(key_file)})

        def spki(public: Any) -> bytes:
            encoded: bytes = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            return encoded

        if spki(private.public_key()) != spki(leaf.public_key()):
            raise ConfigError(f"client certificate {str(cert)!r} and key {str(key_file)!r} do not match",
                              {"cert": str(cert), "key": str(key_file)})
        self.identity: str = str(identity)
        self.lifetime = float(lifetime)
        self._key = private
        self._clock = clock
        self._random = random

    def __repr__(self) -> str:
        return f"OperationSigner({self.identity!r})"

    def sign(self, op: str, ipath: str, body: bytes) -> dict[str, str]:
        """The three signature headers for one operation (``body``: the exact bytes sent); a new nonce each time.
        BadRequest (nothing sent) for a body the router would refuse anyway or whose values cannot be signed."""
        from wecross import attest
        from wecross.errors import RouterError
        from wecross.rest.json_body import parse_json_object, parse_operation_body

        try:
            method, args = parse_operation_body(op, parse_json_object(body))
        except RouterError as exc:
            raise BadRequest(exc.code, exc.message, None, {**exc.details, "client_side": True}) from None
        nonce = self._random(16)
        expires_ms = int((self._clock() + self.lifetime) * 1000)
        try:
            signed = attest.client_body(self.identity, ipath, op, method, args, nonce, expires_ms)
        except attest.AttestError as exc:
            raise BadRequest("bad_args", f"the operation cannot be signed: {exc.message}", None,
                             {"client_side": True}) from None
        signature = attest.sign(self._key, signed)
        return {NONCE_HEADER: nonce.hex(), EXPIRES_HEADER: str(expires_ms),
                SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii")}


__all__ = ["EXPIRES_HEADER", "NONCE_HEADER", "SIGNATURE_HEADER", "SIGNATURE_LIFETIME", "OperationSigner"]
