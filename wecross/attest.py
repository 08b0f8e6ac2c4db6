"""End-to-end signatures: requests by their entry router, results by their owner, headers by the chain's authority.

Links are mutual TLS, but TLS only authenticates the next hop: a request or a result crossing three routers is
handled in the clear by the middle one. So everything whose integrity matters end to end is signed by the router
that stands behind it, with the key of its CA-issued certificate (the same key that signs its gossip record), and
checked by the router that acts on it against the public key from that router's verified gossip record
(:meth:`wecross.gossip.directory.Directory.signing_key`):

- a **request** by the entry router that originates it (:func:`request_body`: request id, origin, destination,
  expiry, operation, iPath, method, arguments, sender). The owner runs nothing whose signature fails, so a relay can
  neither rewrite nor redirect a request, nor invent one, nor name another user; the signed expiry bounds how long
  a captured request can be replayed, and the owner's replay guard (keyed by origin and request id) covers that
  window;
- a **result** by the owner that produced it (:func:`result_body`: request id, origin, owner, and the result
  itself less the fields relays legitimately add). It binds an answer to the request it answers, so an earlier
  genuine receipt cannot be passed off as the answer to a later identical write;
- a **header** by a router the chain's authority admits (:func:`header_body`: the chain and the header's whole
  wire form), once per block. A relay can neither extend nor rewrite a trusted header chain.

Every body starts with its own context string, so a signature of one kind can never be taken for another.
Sans-IO: no clock, no network; callers pass the keys. Signing: ECDSA P-256 with SHA-256 (RFC 6979, so one body
always gives one signature) for EC keys, RSA-PSS-SHA256 for RSA keys, as for gossip records.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

REQUEST_CONTEXT = b"wecross-request-v1\x00"
RESULT_CONTEXT = b"wecross-result-v1\x00"
HEADER_CONTEXT = b"wecross-header-v1\x00"

#: Result fields a relay or the entry router adds or rewrites on the way back; never signed.
UNSIGNED_RESULT_FIELDS = frozenset({"path", "router", "attestation", "verified", "header_sig"})

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
_ECDSA = ec.ECDSA(hashes.SHA256())
_ECDSA_DETERMINISTIC = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


class AttestError(Exception):
    """A signature that does not hold, with the check that failed: ``unknown_signer`` (no verified key for the
    router named), ``bad_signature`` (the body was altered or the signer is not who it claims), ``no_authority``
    (a genuine signature by a router the chain's authority does not admit), ``unencodable`` (values no signature
    can cover)."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


def _pack(value: Any) -> bytes:
    """One encoding for signer and verifier: msgpack keeps map order and gives a value decoded from the wire back
    byte for byte, so both sides encode the same values to the same bytes."""
    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True)
    except (OverflowError, UnicodeEncodeError, TypeError, ValueError) as exc:
        raise AttestError("unencodable", f"the values cannot be signed: {type(exc).__name__}") from None
    return packed


def request_body(request_id: bytes, origin: str, destination: str, expires_ms: int, op: str, ipath: str,
                 method: str, args: Sequence[Any], sender: str) -> bytes:
    """What an entry router signs for a request: every field the owner acts on. The hop limit, the remaining
    deadline and the path are per hop (relays lower or extend them) and are not covered: a relay may shorten a
    request's life, which is the delay it can cause anyway."""
    return REQUEST_CONTEXT + _pack([request_id, origin, destination, expires_ms, op, ipath, method, list(args),
                                    sender])


def result_body(request_id: bytes, origin: str, owner: str, result: Mapping[str, Any]) -> bytes:
    """What an owner signs for its answer to a request: the request it answers and the result's own fields."""
    content = {key: value for key, value in result.items() if key not in UNSIGNED_RESULT_FIELDS}
    return RESULT_CONTEXT + _pack([request_id, origin, owner, content])


def header_body(chain: str, wire: Mapping[str, Any]) -> bytes:
    """What a chain's authority signs for a block header: the chain and the header's whole wire form (so even a
    chain type whose header hash cannot be recomputed here has every field covered)."""
    return HEADER_CONTEXT + _pack([chain, dict(wire)])


def sign(key: PrivateKey, body: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(body, _ECDSA_DETERMINISTIC)
    return key.sign(body, _PSS, hashes.SHA256())


def verify(key: PublicKey | None, signature: Any, body: bytes, signer: str) -> None:
    """Raises :class:`AttestError` unless ``signature`` is ``signer``'s (whose verified key is ``key``) over
    ``body``."""
    if key is None:
        raise AttestError("unknown_signer", f"no verified key for router {signer!r} (its signed gossip record is "
                                            f"not known here)")
    if type(signature) is not bytes or not signature:
        raise AttestError("bad_signature", f"no signature by {signer!r}")
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, body, _ECDSA)
        else:
            key.verify(signature, body, _PSS, hashes.SHA256())
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        raise AttestError("bad_signature", f"the signature is not {signer!r}'s over what was received") from None


class HeaderSigner:
    """A chain authority's header signatures, made once per block: the same header is asked for by every router
    that verifies a result of that block, and by every result's proof, so signatures are kept (bounded LRU)."""

    def __init__(self, key: PrivateKey, capacity: int = 4096) -> None:
        self._key = key
        self._memo: OrderedDict[bytes, bytes] = OrderedDict()
        self._capacity = capacity

    def sign(self, chain: str, wire: Mapping[str, Any]) -> bytes:
        body = header_body(chain, wire)
        digest = hashlib.sha256(body).digest()
        signature = self._memo.get(digest)
        if signature is None:
            signature = sign(self._key, body)
            self._memo[digest] = signature
            if len(self._memo) > self._capacity:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(digest)
        return signature
