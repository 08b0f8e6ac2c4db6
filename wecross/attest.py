"""End-to-end signatures: requests by their entry router, results by their owner, headers by the chain's authority.

Links are mutual TLS, but TLS only authenticates the next hop: a request or a result crossing three routers is
handled in the clear by the middle one. So everything whose integrity matters end to end is signed by the router
that stands behind it, with the key of its CA-issued certificate (the same key that signs its gossip record), and
checked by the router that acts on it against the public key from that router's verified gossip record
(:meth:`wecross.gossip.directory.Directory.signing_key`):

- a **request** by the entry router that originates it (:func:`request_body`: request id, origin, destination,
  expiry, operation, iPath, method, arguments, sender, and the user's own signature when the client holds a key:
  :class:`ClientProof`). The owner runs nothing whose signature fails, so a relay can
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

**Two kinds of authenticator** (:class:`Authenticator`), told apart by their first byte:

- ``0x01`` + a **signature**: anyone holding the signer's certificate can check it, including a third party later
  (an auditor): the signer cannot deny it. Used for everything that changes state (writes, transaction and HTLC
  operations) and for txStatus answers, on which participants commit or roll back.
- ``0x02`` + an **HMAC-SHA256** under a key only the two routers can compute: static ECDH between the two
  certified keys, through HKDF bound to both router ids and both public keys (cached per peer key, so a new
  certificate gives a new key). A relay knows neither private key, so it can forge a MAC no more than a
  signature; but either end could have made it, so it proves nothing to a third party. Used on the hot path of
  reads (and their answers, events polls and header fetches), where a signature and its check cost about 80 µs of
  CPU per request and a MAC about 2 µs. Between routers without two EC keys on one curve (RSA), signatures are
  used instead.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PAIR_CONTEXT = b"wecross-pairwise-mac-v1\x00"
#: First byte of an authenticator: a signature, or a MAC under the pairwise key.
SCHEME_SIGNATURE = 1
SCHEME_MAC = 2
REQUEST_CONTEXT = b"wecross-request-v1\x00"
CLIENT_CONTEXT = b"wecross-client-request-v1\x00"
TX_RECORD_CONTEXT = b"wecross-tx-record-v1\x00"
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
                 method: str, args: Sequence[Any], sender: str, client_auth: bytes = b"",
                 sender_org: str = "") -> bytes:
    """What an entry router signs for a request: every field the owner acts on. The hop limit, the remaining
    deadline and the path are per hop (relays lower or extend them) and are not covered: a relay may shorten a
    request's life, which is the delay it can cause anyway."""
    return REQUEST_CONTEXT + _pack([request_id, origin, destination, expires_ms, op, ipath, method, list(args),
                                    sender, client_auth, sender_org])


def client_body(sender: str, ipath: str, op: str, method: str, args: Sequence[Any], nonce: bytes,
                expires_ms: int) -> bytes:
    """What a user holding a client certificate signs for one resource operation (``method`` and ``args``
    normalised as wecross.rest.json_body.parse_operation_body does), so that no router, the entry router included,
    can run an operation in that user's name that the user did not ask for: the owner checks it against the user's
    certificate. ``nonce`` (16 random bytes) makes each signed operation usable once; ``expires_ms`` (the client's
    wall clock, ms) bounds how long the owner must remember the nonce."""
    return CLIENT_CONTEXT + _pack([sender, ipath, op, method, list(args), nonce, expires_ms])


@dataclass(frozen=True, slots=True)
class ClientProof:
    """A user's signature of one operation, carried from the entry router to the owner (Request.client_auth):
    the user's certificate chain (leaf first, DER), the nonce, the expiry and the signature over
    :func:`client_body`."""

    chain: tuple[bytes, ...]
    nonce: bytes
    expires_ms: int
    signature: bytes

    def encode(self) -> bytes:
        return _pack([list(self.chain), self.nonce, self.expires_ms, self.signature])

    @classmethod
    def decode(cls, blob: bytes) -> ClientProof:
        """Raises :class:`AttestError` ('bad_client_proof') for anything but the four fields with their types."""
        try:
            value = msgpack.unpackb(blob, raw=False, strict_map_key=True, max_bin_len=1 << 16, max_str_len=1 << 10,
                                    max_array_len=16, max_map_len=0)
        except Exception:
            raise AttestError("bad_client_proof", "the client's proof is not readable") from None
        if type(value) is not list or len(value) != 4:
            raise AttestError("bad_client_proof", "the client's proof must be [chain, nonce, expires_ms, signature]")
        chain, nonce, expires_ms, signature = value
        if type(chain) is not list or not 1 <= len(chain) <= 8 or not all(type(c) is bytes and c for c in chain) \
                or type(nonce) is not bytes or len(nonce) != 16 or type(expires_ms) is not int \
                or not 0 <= expires_ms < 1 << 63 or type(signature) is not bytes or not signature:
            raise AttestError("bad_client_proof", "the client's proof has a field of the wrong type or size")
        return cls(tuple(chain), nonce, expires_ms, signature)


def result_body(request_id: bytes, origin: str, owner: str, result: Mapping[str, Any]) -> bytes:
    """What an owner signs for its answer to a request: the request it answers and the result's own fields."""
    content = {key: value for key, value in result.items() if key not in UNSIGNED_RESULT_FIELDS}
    return RESULT_CONTEXT + _pack([request_id, origin, owner, content])


def tx_record_body(record: Mapping[str, Any]) -> bytes:
    """What a 2PC coordinator signs for a transaction's record (the whitepaper's step record, every field but the
    signature itself): the evidence another router needs to adopt the transaction, and that participants need to
    take a decision from the adopter instead of the coordinator named in the transaction id."""
    return TX_RECORD_CONTEXT + _pack({key: value for key, value in record.items() if key != "signature"})


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


def _key_id(key: PublicKey) -> bytes:
    return hashlib.sha256(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()


class Authenticator:
    """One router's end-to-end authenticators (see the module docstring): signatures with its key, and MACs under
    pairwise keys shared with one other router each, derived once per peer key and kept (bounded LRU)."""

    def __init__(self, router_id: str, key: PrivateKey, capacity: int = 4096) -> None:
        self.router_id = router_id
        self._key = key
        self._key_id = _key_id(key.public_key())
        self._pairs: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()
        #: peer id -> (the peer key object last used with it, the pair key derived for it): see _pair_key.
        self._recent: dict[str, tuple[PublicKey, bytes]] = {}
        self._capacity = capacity

    def _pair_key(self, peer_id: str, peer_key: PublicKey) -> bytes | None:
        """The key this router shares with ``peer_id`` (None when the two keys cannot agree: not both EC keys on
        one curve).

        Hot path first: the directory hands out one key object per verified record, so the same peer mostly comes
        with the very same object. A hit in ``_recent`` needs that identical object (``is``, and the entry holds a
        reference, so its id cannot be reused meanwhile) for that peer id: key objects are immutable, so the pair
        key derived for it is still the right one. Anything else (a new record, a key parsed elsewhere) goes the
        fingerprint way below, which hashes the key's DER encoding (about 5 µs, more than the MAC itself).
        """
        recent = self._recent.get(peer_id)
        if recent is not None and recent[0] is peer_key:
            return recent[1]
        key = self._key
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(peer_key, ec.EllipticCurvePublicKey) \
                or peer_key.curve.name != key.curve.name:
            return None
        fingerprint = _key_id(peer_key)
        cached = self._pairs.get((peer_id, fingerprint))
        if cached is not None:
            self._pairs.move_to_end((peer_id, fingerprint))
            self._remember(peer_id, peer_key, cached)
            return cached
        shared = key.exchange(ec.ECDH(), peer_key)
        # Bound to both ends (ids and keys, in a fixed order): the same key whichever end derives it, and another
        # key for any other pair or certificate.
        ends = sorted([(self.router_id.encode(), self._key_id), (peer_id.encode(), fingerprint)])
        info = PAIR_CONTEXT + b"".join(name + b"\x00" + digest for name, digest in ends)
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)
        self._pairs[(peer_id, fingerprint)] = derived
        if len(self._pairs) > self._capacity:
            self._pairs.popitem(last=False)
        self._remember(peer_id, peer_key, derived)
        return derived

    def _remember(self, peer_id: str, peer_key: PublicKey, derived: bytes) -> None:
        recent = self._recent
        recent.pop(peer_id, None)  # re-inserted last: the oldest peer is the one dropped at capacity
        recent[peer_id] = (peer_key, derived)
        if len(recent) > self._capacity:
            del recent[next(iter(recent))]

    def tag(self, peer_id: str, peer_key: PublicKey | None, body: bytes, *, signed: bool) -> bytes:
        """An authenticator of ``body`` for ``peer_id``: a signature when ``signed`` (or no pairwise key can be
        had), else a MAC under the pairwise key."""
        if not signed and peer_key is not None:
            pair = self._pair_key(peer_id, peer_key)
            if pair is not None:
                return bytes((SCHEME_MAC,)) + hmac.digest(pair, body, "sha256")
        return bytes((SCHEME_SIGNATURE,)) + sign(self._key, body)

    def check(self, peer_id: str, peer_key: PublicKey | None, tag: Any, body: bytes, *,
              signed: bool = False) -> None:
        """Raises :class:`AttestError` unless ``tag`` is ``peer_id``'s authenticator of ``body`` (a signature when
        ``signed``: a MAC is refused there, since it would not bind ``peer_id`` for a third party)."""
        if peer_key is None:
            raise AttestError("unknown_signer", f"no verified key for router {peer_id!r} (its signed gossip record "
                                                f"is not known here)")
        if type(tag) is not bytes or len(tag) < 2:
            raise AttestError("bad_signature", f"no signature by {peer_id!r}")
        scheme, value = tag[0], tag[1:]
        if scheme == SCHEME_SIGNATURE:
            verify(peer_key, value, body, peer_id)
            return
        if scheme != SCHEME_MAC or signed:
            raise AttestError("bad_signature", f"{peer_id!r} must sign this, not only authenticate it")
        pair = self._pair_key(peer_id, peer_key)
        if pair is None or not hmac.compare_digest(value, hmac.digest(pair, body, "sha256")):
            raise AttestError("bad_signature", f"the authenticator is not {peer_id!r}'s over what was received")
