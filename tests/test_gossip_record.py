"""Router records: canonical encoding, strict decoding, signing, and a verifier that relays cannot fool."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import time
from functools import cache
from types import SimpleNamespace
from typing import Any

import msgpack
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import crypto
from twisted.trial.unittest import SynchronousTestCase

from wecross.gossip import (
    MAX_TTL,
    ChainInfo,
    LinkInfo,
    RecordError,
    RecordLimits,
    RecordSigner,
    RecordVerifier,
    ResourceEntry,
    RouterRecord,
    SignedRecord,
)
from wecross.gossip.record import SIGNATURE_CONTEXT, id_matches_names
from wecross.pki import authority

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DAY = 86400.0


# ------------------------------------------------------------------------------------------------ shared fixtures


@dataclasses.dataclass(frozen=True)
class TestPKI:
    root: authority.CertifiedKey
    issuer: authority.CertifiedKey  # the intermediate that issues router certs
    stranger_root: authority.CertifiedKey
    old_root: authority.CertifiedKey  # a CA made two years ago, for certificates that have expired since


@cache
def pki() -> TestPKI:
    root, intermediate = authority.create_ca_chain(1)
    (stranger,) = authority.create_ca_chain(0, root_name="Stranger CA")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=730)
    (old_root,) = authority.create_ca_chain(0, root_name="Old CA", now=past)
    return TestPKI(root, intermediate, stranger, old_root)


def router_key(
    router_id: str, key_type: authority.KeyType = "ec", serves: tuple[str, ...] = ("*",)
) -> authority.CertifiedKey:
    """A router certificate from the network's intermediate CA (one per id, key type and serves patterns, made
    once per run); by default it may serve any chain."""
    return _router_key(router_id, key_type, serves)


@cache
def _router_key(router_id: str, key_type: authority.KeyType, serves: tuple[str, ...]) -> authority.CertifiedKey:
    return authority.issue_router_cert(pki().issuer, router_id, key_type=key_type, serves=serves)


def signer(router_id: str, key_type: authority.KeyType = "ec", serves: tuple[str, ...] = ("*",)) -> RecordSigner:
    return _signer(router_id, key_type, serves)


@cache
def _signer(router_id: str, key_type: authority.KeyType, serves: tuple[str, ...]) -> RecordSigner:
    leaf = router_key(router_id, key_type, serves)
    return RecordSigner(leaf.key, leaf.full_chain)


def verifier(now: Any = None, **kwargs: Any) -> RecordVerifier:
    return RecordVerifier([pki().root.cert], now, **kwargs)


def make_record(
    router_id: str = "router-a",
    epoch: int = 1,
    seq: int = 1,
    *,
    zones: tuple[str, ...] = ("payment",),
    chains: tuple[ChainInfo, ...] = (),
    resources: tuple[ResourceEntry, ...] = (),
    links: tuple[LinkInfo, ...] = (),
    ttl: float = 60.0,
    listen: str = "127.0.0.1:9000",
    transit: bool = False,
) -> RouterRecord:
    return RouterRecord(router_id, epoch, seq, zones, transit, listen, chains, resources, links, ttl)


def rich_record(router_id: str = "router-a", epoch: int = 1, seq: int = 1) -> RouterRecord:
    return make_record(
        router_id,
        epoch,
        seq,
        zones=("payment", "bank"),
        chains=(ChainInfo("payment.bank-a", "embedded", 12, "ab" * 32), ChainInfo("bank.ledger", "evm", 0, "")),
        resources=(
            ResourceEntry("payment.bank-a.asset", "asset", {"transfer": "move funds", "balance": "read one"}),
            ResourceEntry("bank.ledger.kv", "kv", {}),
        ),
        links=(LinkInfo("router-c", 3.5, 0.0, 1e9, 0), LinkInfo("router-b", 12, 0.25, 0, 3)),
    )


def der(cert: Any) -> bytes:
    return bytes(cert.public_bytes(Encoding.DER))


def sign_with(key_of: authority.CertifiedKey, record: RouterRecord) -> SignedRecord:
    """Sign ``record`` with any key and chain, bypassing RecordSigner's own refusal of foreign router ids."""
    body = record.encode()
    signature = key_of.key.sign(SIGNATURE_CONTEXT + body, *_sig_args(key_of))  # the signer's algorithms
    return SignedRecord(record, body, signature, tuple(der(c) for c in key_of.full_chain))


def _sig_args(key_of: authority.CertifiedKey) -> tuple[Any, ...]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from wecross.gossip.record import _PSS

    if isinstance(key_of.key, ec.EllipticCurvePrivateKey):
        return (ec.ECDSA(hashes.SHA256()),)
    return (_PSS, hashes.SHA256())


def raw_body(record: RouterRecord) -> list[Any]:
    return list(msgpack.unpackb(record.encode(), raw=False))


# ------------------------------------------------------------------------------------------------ the record


class RecordValueTests(SynchronousTestCase):
    def test_collections_are_sorted_and_the_encoding_is_canonical(self) -> None:
        a = rich_record()
        shuffled = dataclasses.replace(
            a,
            zones=tuple(reversed(a.zones)),
            chains=tuple(reversed(a.chains)),
            resources=tuple(reversed(a.resources)),
            links=tuple(reversed(a.links)),
        )
        self.assertEqual(a, shuffled)
        self.assertEqual(a.encode(), shuffled.encode())
        self.assertEqual(a.zones, ("bank", "payment"))
        self.assertEqual([c.path for c in a.chains], ["bank.ledger", "payment.bank-a"])
        self.assertEqual([k.peer for k in a.links], ["router-b", "router-c"])
        self.assertEqual(list(a.resources[1].methods), ["balance", "transfer"])

    def test_round_trip(self) -> None:
        record = rich_record()
        decoded = RouterRecord.decode(record.encode())
        self.assertEqual(decoded, record)
        self.assertEqual(hash(decoded), hash(record))

    def test_numbers_are_normalised(self) -> None:
        link = LinkInfo("router-b", 3, 0, 10, 0)
        self.assertIs(type(link.srtt_ms), float)
        self.assertIs(type(make_record(ttl=5).ttl), float)

    def test_version_orders_epoch_before_seq(self) -> None:
        restarted = make_record(epoch=2, seq=0)
        old = make_record(epoch=1, seq=10**9)
        self.assertGreater(restarted.version, old.version)
        self.assertEqual(old.version, (1, 10**9))

    def test_lists_are_accepted_as_sequences(self) -> None:
        record = make_record(zones=["payment"], chains=[ChainInfo("payment.c", "t", 1, "")])  # type: ignore[arg-type]
        self.assertEqual(record.zones, ("payment",))
        self.assertIsInstance(record.chains, tuple)

    def test_invalid_fields(self) -> None:
        cases: list[Any] = [
            lambda: make_record("Router-A"),
            lambda: make_record("10.0.0.1"),
            lambda: make_record(epoch=-1),
            lambda: make_record(seq=True),
            lambda: make_record(seq=2**64),
            lambda: make_record(zones=("bad.zone",)),
            lambda: make_record(zones=("a", "a")),
            lambda: make_record(listen="nohost"),
            lambda: make_record(listen="h:70000"),
            lambda: make_record(transit=1),  # type: ignore[arg-type]
            lambda: make_record(ttl=0),
            lambda: make_record(ttl=MAX_TTL + 1),
            lambda: make_record(ttl=math.nan),
            lambda: make_record(chains=(ChainInfo("a.b", "t", 1, ""), ChainInfo("a.b", "u", 2, ""))),
            lambda: make_record(chains=("a.b",)),  # type: ignore[arg-type]
            lambda: make_record(links=(LinkInfo("router-b", 1, 0, 0, 0),) * 2),
            lambda: ChainInfo("payment", "t", 1, ""),
            lambda: ChainInfo("a.b.c", "t", 1, ""),
            lambda: ChainInfo("a.b", "", 1, ""),
            lambda: ChainInfo("a.b", "t", -1, ""),
            lambda: ChainInfo("a.b", "t", 1, "x" * 257),
            lambda: ResourceEntry("a.b", "kv", {}),
            lambda: ResourceEntry("a.b.c", "kv", {"": "empty name"}),
            lambda: ResourceEntry("a.b.c", "kv", {"m": 1}),  # type: ignore[dict-item]
            lambda: ResourceEntry("a.b.c", "kv", {"m": "\ud800"}),
            lambda: ResourceEntry("a.b.c", "kv", ["m"]),  # type: ignore[arg-type]
            lambda: LinkInfo("router-b", -1, 0, 0, 0),
            lambda: LinkInfo("router-b", math.inf, 0, 0, 0),
            lambda: LinkInfo("router-b", 1, 1.5, 0, 0),
            lambda: LinkInfo("router-b", 1, 0, math.nan, 0),
            lambda: LinkInfo("router-b", 1, 0, 0, -1),
            lambda: LinkInfo("Router-B", 1, 0, 0, 0),
        ]
        for index, build in enumerate(cases):
            with self.subTest(case=index):
                error = self.assertRaises(RecordError, build)
                self.assertEqual(error.reason, "schema", error)

    def test_reason_codes_are_checked(self) -> None:
        self.assertRaises(ValueError, RecordError, "typo", "x")
        self.assertEqual(repr(RecordError("schema", "m")), "RecordError('schema', 'm')")


class DecodeTests(SynchronousTestCase):
    def assertReason(self, reason: str, data: bytes, limits: RecordLimits | None = None) -> RecordError:
        args = () if limits is None else (limits,)
        error = self.assertRaises(RecordError, RouterRecord.decode, data, *args)
        self.assertEqual(error.reason, reason, error)
        return error

    def pack(self, body: list[Any]) -> bytes:
        return bytes(msgpack.packb(body, use_bin_type=True))

    def test_not_msgpack(self) -> None:
        self.assertReason("malformed", b"\xc1")
        self.assertReason("malformed", b"")
        self.assertReason("malformed", self.pack([1, 2])[:-1])
        self.assertReason("malformed", self.pack([1]) + b"\x00")  # trailing data
        self.assertReason("malformed", self.pack({"a": 1}))  # type: ignore[arg-type]
        self.assertReason("malformed", b"\xd4\x01\x00")  # an extension type
        self.assertReason("malformed", bytearray(b"\x90"))  # type: ignore[arg-type]

    def test_wrong_shape(self) -> None:
        body = raw_body(rich_record())
        self.assertReason("schema", self.pack([2, *body[1:]]))  # a future format
        self.assertReason("schema", self.pack(body[:-1]))
        self.assertReason("schema", self.pack([*body, 0]))
        for index, bad in ((1, b"router-a"), (2, 1.0), (4, "payment"), (5, 0), (7, [["a.b", "t", 1]]), (8, [[]])):
            with self.subTest(field=index):
                self.assertReason("schema", self.pack([*body[:index], bad, *body[index + 1 :]]))
        methods_not_map = [*body[:8], [["payment.bank-a.asset", "asset", []]], *body[9:]]
        self.assertReason("schema", self.pack(methods_not_map))

    def test_non_canonical_bodies(self) -> None:
        body = raw_body(rich_record())
        self.assertReason("schema", self.pack([*body[:4], list(reversed(body[4])), *body[5:]]))
        self.assertReason("schema", self.pack([*body[:10], 60]))  # an int where the float goes
        # A map with a duplicate key decodes to one entry and would re-encode differently.
        packer = msgpack.Packer(use_bin_type=True)
        fields = raw_body(make_record(resources=(ResourceEntry("payment.c.r", "kv", {"m": "x"}),)))
        data = packer.pack_array_header(11) + b"".join(packer.pack(f) for f in fields[:8])
        data += packer.pack_array_header(1) + packer.pack_array_header(3) + packer.pack("payment.c.r")
        data += packer.pack("kv") + packer.pack_map_header(2)
        data += packer.pack("m") + packer.pack("x") + packer.pack("m") + packer.pack("y")
        data += b"".join(packer.pack(f) for f in fields[9:])
        self.assertReason("schema", data)

    def test_limits(self) -> None:
        record = rich_record()
        data = record.encode()
        self.assertReason("too_large", data, RecordLimits(max_chains=1))
        self.assertReason("too_large", data, RecordLimits(max_zones=1))
        self.assertReason("too_large", data, RecordLimits(max_resources=1))
        self.assertReason("too_large", data, RecordLimits(max_links=1))
        self.assertReason("too_large", data, RecordLimits(max_methods=1))
        self.assertReason("too_large", data, RecordLimits(max_text=3))
        self.assertReason("too_large", data, RecordLimits(max_blob=len(data) - 1))
        self.assertEqual(RouterRecord.decode(data, RecordLimits(max_blob=len(data))), record)
        self.assertRaises(ValueError, RecordLimits, max_blob=0)
        self.assertRaises(ValueError, RecordLimits, max_certs=True)


# ------------------------------------------------------------------------------------------------ signed records


class SignedRecordTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        signed = signer("router-a").sign(rich_record())
        again = SignedRecord.from_bytes(signed.to_bytes())
        self.assertEqual(again, signed)
        self.assertEqual(again.router_id, "router-a")
        self.assertEqual(again.version, (1, 1))
        self.assertEqual(len(again.cert_chain), 2)  # leaf and intermediate, no root
        self.assertEqual(again.cert_chain[0], der(router_key("router-a").cert))
        self.assertEqual(len(again.leaf_fingerprint), 64)

    def test_envelope_errors(self) -> None:
        signed = signer("router-a").sign(make_record())
        certs = list(signed.cert_chain)

        def blob(*parts: Any) -> bytes:
            return bytes(msgpack.packb(list(parts), use_bin_type=True))

        cases = [
            ("malformed", blob(signed.body, signed.signature)),
            ("malformed", blob(signed.body, signed.signature, certs, b"")),
            ("malformed", blob(signed.body.decode("latin-1"), signed.signature, certs)),
            ("malformed", blob(signed.body, b"", certs)),
            ("malformed", blob(signed.body, signed.signature, [])),
            ("malformed", blob(signed.body, signed.signature, [b""])),
            ("malformed", blob(signed.body, signed.signature, certs[0])),
            ("too_large", blob(signed.body, signed.signature, certs * 5)),
            ("too_large", blob(signed.body, b"s" * 1025, certs)),
            ("schema", blob(signed.body[:-9] + msgpack.packb(-1.0), signed.signature, certs)),
        ]
        for index, (reason, data) in enumerate(cases):
            with self.subTest(case=index):
                error = self.assertRaises(RecordError, SignedRecord.from_bytes, data)
                self.assertEqual(error.reason, reason, error)
        error = self.assertRaises(RecordError, SignedRecord.from_bytes, blob(*[signed.body, signed.signature, certs]),
                                  RecordLimits(max_cert_bytes=100))
        self.assertEqual(error.reason, "too_large")
        self.assertEqual(self.assertRaises(RecordError, SignedRecord.from_bytes, "x").reason, "malformed")


class SignerTests(SynchronousTestCase):
    def test_ec_and_rsa_keys_verify(self) -> None:
        v = verifier()
        for key_type in ("ec", "rsa"):
            with self.subTest(key_type=key_type):
                signed = signer("router-k", key_type).sign(make_record("router-k"))
                self.assertEqual(v.verify(signed.to_bytes()), signed)

    def test_refuses_foreign_ids_and_mismatched_keys(self) -> None:
        a = router_key("router-a")
        b = router_key("router-b")
        error = self.assertRaises(ValueError, signer("router-a").sign, make_record("router-b"))
        self.assertIn("router-b", str(error))
        self.assertRaises(ValueError, RecordSigner, b.key, a.full_chain)
        self.assertRaises(ValueError, RecordSigner, a.key, ())
        self.assertRaises(ValueError, RecordSigner, a.key, [der(a.cert)])
        self.assertRaises(ValueError, RecordSigner, "key", a.full_chain)

    def test_refuses_records_peers_would_refuse(self) -> None:
        error = self.assertRaises(RecordError, signer("router-a").sign, rich_record(), RecordLimits(max_links=1))
        self.assertEqual(error.reason, "too_large")

    def test_from_tls_material(self) -> None:
        from wecross.peer.tls import TLSMaterial

        leaf = router_key("router-a")
        material = TLSMaterial((pki().root.cert,), leaf.cert, leaf.key, leaf.chain)
        from_material = RecordSigner.from_material(material)
        self.assertEqual(from_material.router_ids, ("router-a",))
        self.assertEqual(from_material.leaf, leaf.cert)
        verifier().verify(from_material.sign(make_record()).to_bytes())

    def test_from_pyopenssl_objects(self) -> None:
        leaf = router_key("router-a")
        material = SimpleNamespace(
            private_key=crypto.PKey.from_cryptography_key(leaf.key),
            certificate=crypto.X509.from_cryptography(leaf.cert),
            chain=[crypto.X509.from_cryptography(c) for c in leaf.chain],
        )
        signed = RecordSigner.from_material(material).sign(make_record())
        verifier().verify(signed.to_bytes())

    def test_leaf_issued_by_the_root_and_longer_chains(self) -> None:
        root, *intermediates = authority.create_ca_chain(2)
        for issuer in (root, intermediates[-1]):
            leaf = authority.issue_router_cert(issuer, "router-z")
            signed = RecordSigner(leaf.key, leaf.full_chain).sign(make_record("router-z"))
            RecordVerifier([root.cert]).verify(signed.to_bytes())

    def test_id_matching_rule(self) -> None:
        self.assertTrue(id_matches_names(["router-a"], "router-a"))
        self.assertTrue(id_matches_names(["ROUTER-A"], "router-a"))
        self.assertTrue(id_matches_names(["*.zone-a.net"], "r1.zone-a.net"))
        self.assertFalse(id_matches_names(["*.zone-a.net"], "zone-a.net"))
        self.assertFalse(id_matches_names(["router-a"], "Router-A"))
        self.assertFalse(id_matches_names(["router-a"], "router-b"))
        self.assertFalse(id_matches_names([], "router-a"))
        self.assertFalse(id_matches_names(["10.0.0.1", "r\u00e9"], "router-a"))


# ------------------------------------------------------------------------------------------------ verification


class VerifierAttackTests(SynchronousTestCase):
    """Everything a relay (or a stranger) could do to a record is refused with the right reason."""

    def setUp(self) -> None:
        self.verifier = verifier()
        self.signed = signer("router-a").sign(rich_record())
        self.blob = self.signed.to_bytes()

    def assertReason(self, reason: str, blob: bytes, v: RecordVerifier | None = None) -> RecordError:
        error = self.assertRaises(RecordError, (v or self.verifier).verify, blob)
        self.assertEqual(error.reason, reason, error)
        return error

    def test_genuine_record_verifies(self) -> None:
        self.assertEqual(self.verifier.verify(self.blob).record, rich_record())

    def test_altered_body(self) -> None:
        for changed in (
            dataclasses.replace(self.signed.record, seq=2),
            dataclasses.replace(self.signed.record, chains=()),
            dataclasses.replace(self.signed.record, links=(LinkInfo("router-x", 0.1, 0, 0, 0),)),
        ):
            forged = dataclasses.replace(self.signed, record=changed, body=changed.encode())
            self.assertReason("signature", forged.to_bytes())

    def test_swapped_signature(self) -> None:
        other = signer("router-a").sign(dataclasses.replace(self.signed.record, seq=9))
        swapped = dataclasses.replace(self.signed, signature=other.signature)
        self.assertReason("signature", swapped.to_bytes())
        flipped = bytearray(self.signed.signature)
        flipped[-1] ^= 1
        self.assertReason("signature", dataclasses.replace(self.signed, signature=bytes(flipped)).to_bytes())

    def test_signature_without_the_context_prefix(self) -> None:
        bare = router_key("router-a").key.sign(self.signed.body, *_sig_args(router_key("router-a")))
        self.assertReason("signature", dataclasses.replace(self.signed, signature=bare).to_bytes())

    def test_record_of_another_router(self) -> None:
        # router-b signs a record claiming to be router-a, with its own genuine certificate.
        forged = sign_with(router_key("router-b"), rich_record("router-a"))
        error = self.assertReason("identity", forged.to_bytes())
        self.assertIn("router-b", str(error))
        # router-b's signature under router-a's certificate chain.
        borrowed = dataclasses.replace(forged, cert_chain=self.signed.cert_chain)
        self.assertReason("signature", borrowed.to_bytes())

    def test_certificate_from_a_foreign_ca(self) -> None:
        stranger = authority.issue_router_cert(pki().stranger_root, "router-a")
        self.assertReason("certificate", sign_with(stranger, rich_record()).to_bytes())

    def test_missing_intermediate(self) -> None:
        leaf_only = dataclasses.replace(self.signed, cert_chain=self.signed.cert_chain[:1])
        self.assertReason("certificate", leaf_only.to_bytes())

    def test_garbage_certificate(self) -> None:
        garbage = dataclasses.replace(self.signed, cert_chain=(b"\x30\x03\x02\x01\x01",))
        self.assertReason("certificate", garbage.to_bytes())

    def test_certificate_with_an_unknown_key_algorithm(self) -> None:
        # id-ecPublicKey (1.2.840.10045.2.1) turned into 1.3.840.10045.2.1: the DER still parses, the key does not.
        # Found by test_mutated_blobs_never_verify_as_something_else, which once saw UnsupportedAlgorithm escape.
        leaf = self.signed.cert_chain[0]
        oid = b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01"
        self.assertIn(oid, leaf)
        mutated = leaf.replace(oid, b"\x06\x07\x2b\x86\x48\xce\x3d\x02\x01", 1)
        odd = dataclasses.replace(self.signed, cert_chain=(mutated, *self.signed.cert_chain[1:]))
        self.assertReason("certificate", odd.to_bytes())

    def test_ca_and_client_certificates_cannot_sign_records(self) -> None:
        issuer = pki().issuer
        ca_signed = SignedRecord(
            self.signed.record,
            self.signed.body,
            issuer.key.sign(SIGNATURE_CONTEXT + self.signed.body, *_sig_args(issuer)),
            (der(issuer.cert),),
        )
        self.assertReason("certificate", ca_signed.to_bytes())
        alice = authority.issue_client_cert(issuer, "alice")
        self.assertReason("identity", sign_with(alice, rich_record()).to_bytes())

    def test_expired_certificate(self) -> None:
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=700)
        old = authority.issue_router_cert(pki().old_root, "router-a", days=30, now=past)
        both = RecordVerifier([pki().root.cert, pki().old_root.cert])
        error = self.assertReason("expired_cert", sign_with(old, rich_record()).to_bytes(), both)
        self.assertIn("expired", str(error))
        later = verifier(lambda: time.time() + 400 * DAY)
        self.assertReason("expired_cert", self.blob, later)

    def test_not_yet_valid_certificate(self) -> None:
        self.assertReason("expired_cert", self.blob, verifier(lambda: time.time() - 2 * DAY))

    def test_truncated_blobs(self) -> None:
        for length in range(len(self.blob)):
            with self.subTest(length=length):
                self.assertRaises(RecordError, self.verifier.verify, self.blob[:length])
        self.assertReason("malformed", self.blob[: len(self.blob) // 2])

    def test_random_bytes(self) -> None:
        self.assertReason("malformed", bytes(range(256)))
        self.assertReason("malformed", b"")

    def test_oversized_blob(self) -> None:
        self.assertReason("too_large", self.blob, verifier(limits=RecordLimits(max_blob=len(self.blob) - 1)))

    def test_hand_built_record_must_match_its_body(self) -> None:
        mismatched = dataclasses.replace(self.signed, record=dataclasses.replace(self.signed.record, seq=5))
        error = self.assertRaises(RecordError, self.verifier.verify_signed, mismatched)
        self.assertEqual(error.reason, "signature")

    def test_needs_trust_roots(self) -> None:
        self.assertRaises(ValueError, RecordVerifier, [])
        self.assertRaises(ValueError, RecordVerifier, [pki().root.cert], cache_size=0)


class VerifierCacheTests(SynchronousTestCase):
    def test_chain_is_verified_once_signatures_every_time(self) -> None:
        v = verifier()
        first = signer("router-a").sign(make_record(seq=1))
        v.verify(first.to_bytes())
        v.verify(signer("router-a").sign(make_record(seq=2)).to_bytes())
        self.assertEqual((v.cache_misses, v.cache_hits), (1, 1))
        forged = dataclasses.replace(first, signature=signer("router-a").sign(make_record(seq=3)).signature)
        error = self.assertRaises(RecordError, v.verify, forged.to_bytes())
        self.assertEqual(error.reason, "signature")
        self.assertEqual(v.cache_hits, 2)

    def test_identity_is_checked_on_cache_hits(self) -> None:
        v = verifier()
        v.verify(signer("router-b").sign(make_record("router-b")).to_bytes())
        forged = sign_with(router_key("router-b"), make_record("router-a"))
        self.assertEqual(self.assertRaises(RecordError, v.verify, forged.to_bytes()).reason, "identity")
        self.assertEqual(v.cache_hits, 1)

    def test_cache_is_bounded(self) -> None:
        v = verifier(cache_size=2)
        blobs = [signer(r).sign(make_record(r)).to_bytes() for r in ("router-a", "router-b", "router-c")]
        for blob in blobs:
            v.verify(blob)
        v.verify(blobs[0])  # evicted by router-c
        self.assertEqual((v.cache_misses, v.cache_hits), (4, 0))
        v.verify(blobs[2])
        self.assertEqual(v.cache_hits, 1)
        v.clear_cache()
        v.verify(blobs[2])
        self.assertEqual(v.cache_misses, 5)

    def test_trusted_leaf_carries_the_chain_authority(self) -> None:
        v = verifier()
        signed = signer("router-x", serves=("nowhere.*", "payment.bank-a")).sign(make_record("router-x"))
        self.assertIs(v.verify_signed(signed), signed)  # callers keep getting the record back
        leaf = v.trusted_leaf(signed)
        self.assertEqual(leaf.serves, ("nowhere.*", "payment.bank-a"))
        self.assertTrue(leaf.authority.authorizes("nowhere.x"))
        self.assertFalse(leaf.authority.authorizes("payment.bank-b"))
        self.assertEqual(leaf.public_key.public_numbers(),
                         router_key("router-x", serves=("nowhere.*", "payment.bank-a")).key.public_key()
                         .public_numbers())
        self.assertEqual((v.cache_misses, v.cache_hits), (1, 1))  # the second look is the cached verdict
        bare = authority.issue_router_cert(pki().issuer, "router-w")  # no --serves: no authority
        self.assertEqual(v.trusted_leaf(RecordSigner(bare.key, bare.full_chain).sign(make_record("router-w")))
                         .serves, ())

    def test_trusted_leaf_checks_the_chain_when_not_cached(self) -> None:
        stranger = authority.issue_router_cert(pki().stranger_root, "router-a", serves=("*",))
        forged = sign_with(stranger, make_record())
        self.assertEqual(self.assertRaises(RecordError, verifier().trusted_leaf, forged).reason, "certificate")

    def test_cached_chain_expires(self) -> None:
        clock = [time.time()]
        v = verifier(lambda: clock[0])
        blob = signer("router-a").sign(make_record()).to_bytes()
        v.verify(blob)
        clock[0] += 400 * DAY
        self.assertEqual(self.assertRaises(RecordError, v.verify, blob).reason, "expired_cert")
        clock[0] -= 400 * DAY
        v.verify(blob)
        self.assertEqual(v.cache_misses, 3)


# ------------------------------------------------------------------------------------------------ properties

PART = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=10).filter(lambda p: p[0] not in "-_")
ROUTER = st.sampled_from(["router-a", "router-b", "r1.zone-a", "x"])
TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
NAME = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=20)
FINITE = st.floats(min_value=0, max_value=1e12, allow_nan=False)
CHAINS = st.lists(st.builds(ChainInfo, st.builds("{}.{}".format, PART, PART), NAME,
                            st.integers(0, 2**64 - 1), TEXT), max_size=4)
RESOURCES = st.lists(st.builds(ResourceEntry, st.builds("{}.{}.{}".format, PART, PART, PART), NAME,
                               st.dictionaries(NAME, TEXT, max_size=4)), max_size=4)
LINKS = st.lists(st.builds(LinkInfo, ROUTER, FINITE, st.floats(0, 1), FINITE, st.integers(0, 2**64 - 1)), max_size=4)


def _unique(items: list[Any], key: str) -> tuple[Any, ...]:
    seen: dict[str, Any] = {}
    for item in items:
        seen.setdefault(getattr(item, key), item)
    return tuple(seen.values())


RECORDS = st.builds(
    lambda rid, epoch, seq, zones, transit, chains, resources, links, ttl: RouterRecord(
        rid, epoch, seq, tuple(set(zones)), transit, "", _unique(chains, "path"), _unique(resources, "ipath"),
        _unique(links, "peer"), ttl,
    ),
    st.just("router-a"),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.lists(PART, max_size=4),
    st.booleans(),
    CHAINS,
    RESOURCES,
    LINKS,
    st.floats(min_value=1e-3, max_value=MAX_TTL),
)
ANY_MSGPACK = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | TEXT | st.binary(max_size=30),
    lambda children: st.lists(children, max_size=12) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=40,
)


class PropertyTests(SynchronousTestCase):
    @SETTINGS
    @given(RECORDS)
    def test_any_valid_record_round_trips_and_verifies(self, record: RouterRecord) -> None:
        self.assertEqual(RouterRecord.decode(record.encode()), record)
        signed = signer("router-a").sign(record)
        self.assertEqual(_verifier().verify(signed.to_bytes()).record, record)

    @SETTINGS
    @given(st.binary(max_size=300))
    def test_random_bytes_raise_record_error_only(self, data: bytes) -> None:
        for parse in (RouterRecord.decode, SignedRecord.from_bytes, _verifier().verify):
            with contextlib.suppress(RecordError):
                parse(data)

    @SETTINGS
    @given(ANY_MSGPACK)
    def test_random_msgpack_raises_record_error_only(self, value: Any) -> None:
        data = msgpack.packb(value, use_bin_type=True)
        for parse in (RouterRecord.decode, SignedRecord.from_bytes):
            with contextlib.suppress(RecordError):
                parse(data)

    @SETTINGS
    @given(st.lists(ANY_MSGPACK, min_size=11, max_size=11))
    def test_record_shaped_garbage_raises_record_error_only(self, fields: list[Any]) -> None:
        with contextlib.suppress(RecordError):
            RouterRecord.decode(msgpack.packb([1, *fields[1:]], use_bin_type=True))

    @SETTINGS
    @given(st.data())
    def test_mutated_blobs_never_verify_as_something_else(self, data: st.DataObject) -> None:
        signed = _signed_rich()
        blob = bytearray(signed.to_bytes())
        for _ in range(data.draw(st.integers(1, 3))):
            action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
            index = data.draw(st.integers(0, len(blob) - 1))
            if action == "flip":
                blob[index] ^= data.draw(st.integers(1, 255))
            elif action == "delete":
                del blob[index]
            else:
                blob.insert(index, data.draw(st.integers(0, 255)))
        try:
            result = _verifier().verify(bytes(blob))
        except RecordError:
            return
        self.assertEqual(result.record, signed.record)  # only a no-op on the signed content may pass

    @SETTINGS
    @given(st.data())
    def test_mutated_bodies_fail_decoding_or_signature(self, data: st.DataObject) -> None:
        signed = _signed_rich()
        body = bytearray(signed.body)
        index = data.draw(st.integers(0, len(body) - 1))
        body[index] ^= data.draw(st.integers(1, 255))
        forged = msgpack.packb([bytes(body), signed.signature, list(signed.cert_chain)], use_bin_type=True)
        error = self.assertRaises(RecordError, _verifier().verify, forged)
        self.assertIn(error.reason, ("malformed", "schema", "too_large", "identity", "signature"))


@cache
def _verifier() -> RecordVerifier:
    return verifier()


@cache
def _signed_rich() -> SignedRecord:
    return signer("router-a").sign(rich_record())
