"""The gossip directory: newest-wins storage, anti-entropy digests, our own record, expiry, queries, convergence."""

from __future__ import annotations

import dataclasses
import math
import random

from twisted.trial.unittest import SynchronousTestCase

from tests.test_gossip_record import make_record, pki, router_key, sign_with, signer, verifier
from wecross.gossip import (
    ChainClash,
    ChainInfo,
    Directory,
    LinkInfo,
    RecordError,
    RecordSigner,
    RecordVerifier,
    ResourceEntry,
    RouterRecord,
    SignedRecord,
)
from wecross.pki import authority

ASSET = ResourceEntry("payment.bank-a.asset", "asset", {"transfer": "move funds"})


def blob_of(record: RouterRecord) -> bytes:
    return signer(record.router_id).sign(record).to_bytes()


def signed_of(record: RouterRecord) -> SignedRecord:
    return signer(record.router_id).sign(record)


def exchange(a: Directory, b: Directory, now: float = 0.0) -> None:
    """One push-pull exchange as GossipService runs it: A's digest, B's newer records (and B's digest if B wants
    something), A's newer records."""
    digest_a = a.digest()
    for blob in b.newer_than(digest_a):
        a.accept(blob, now)
    if b.wanted(digest_a):
        for blob in a.newer_than(b.digest()):
            b.accept(blob, now)


class DirectoryBasicsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Directory("router-a", verifier())
        self.directory.set_local(signed_of(make_record("router-a", 5, 0)))

    def test_local_record(self) -> None:
        d = self.directory
        self.assertEqual(d.digest(), {"router-a": [5, 0]})
        self.assertEqual(d.version, 1)
        self.assertEqual(list(d.records()), ["router-a"])
        self.assertEqual(d.local_version_floor, (5, 0))
        self.assertFalse(d.local_outdated)
        self.assertEqual(d.received_at("router-a"), math.inf)
        self.assertIn("router-a", d)
        self.assertEqual(len(d), 1)

    def test_local_record_rules(self) -> None:
        d = self.directory
        self.assertRaises(ValueError, d.set_local, signed_of(make_record("router-a", 5, 0)))
        self.assertRaises(ValueError, d.set_local, signed_of(make_record("router-a", 4, 9)))
        self.assertRaises(ValueError, d.set_local, signed_of(make_record("router-b", 6, 0)))
        d.set_local(signed_of(make_record("router-a", 5, 1)))
        self.assertEqual(d.digest(), {"router-a": [5, 1]})
        self.assertEqual(d.version, 2)
        self.assertRaises(ValueError, Directory, "Router-A", verifier())
        self.assertRaises(ValueError, Directory, "router-a", verifier(), max_records=0)

    def test_local_record_must_verify(self) -> None:
        stranger = authority.issue_router_cert(pki().stranger_root, "router-a")
        foreign = RecordSigner(stranger.key, stranger.full_chain).sign(make_record("router-a", 6, 0))
        error = self.assertRaises(RecordError, self.directory.set_local, foreign)
        self.assertEqual(error.reason, "certificate")

    def test_accept_newest_wins(self) -> None:
        d = self.directory
        first = make_record("router-b", 1, 1, chains=(ChainInfo("payment.bank-a", "embedded", 1, "g"),))
        self.assertEqual(d.accept(blob_of(first), 10.0), first)
        self.assertEqual((d.accepted, d.version), (1, 2))
        self.assertIsNone(d.accept(blob_of(first), 11.0))
        self.assertIsNone(d.accept(blob_of(make_record("router-b", 1, 0)), 11.0))
        self.assertIsNone(d.accept(blob_of(make_record("router-b", 0, 99)), 11.0))
        self.assertEqual((d.stale, d.version), (3, 2))
        self.assertEqual(d.received_at("router-b"), 10.0)
        self.assertEqual(d.routers_for_chain("payment.bank-a"), {"router-b"})
        moved = make_record("router-b", 2, 0, chains=(ChainInfo("payment.bank-b", "embedded", 1, "g"),))
        blob = blob_of(moved)
        self.assertEqual(d.accept(blob, 12.0), moved)
        self.assertEqual(d.routers_for_chain("payment.bank-a"), frozenset())
        self.assertEqual(d.routers_for_chain("payment.bank-b"), {"router-b"})
        self.assertEqual(d.blob("router-b"), blob)
        self.assertEqual(d.records()["router-b"], moved)
        self.assertEqual(d.digest(), {"router-a": [5, 0], "router-b": [2, 0]})
        self.assertIsNone(d.blob("router-z"))
        self.assertIsNone(d.received_at("router-z"))

    def test_records_view_is_read_only(self) -> None:
        view = self.directory.records()

        def write() -> None:
            view["router-x"] = make_record("router-x")  # type: ignore[index]

        self.assertRaises(TypeError, write)
        self.directory.accept(blob_of(make_record("router-b")), 0.0)
        self.assertIn("router-b", view)  # a live view

    def test_invalid_blobs_are_counted_by_reason(self) -> None:
        d = self.directory
        genuine = signed_of(make_record("router-b", 1, 1))
        altered = make_record("router-b", 1, 2, zones=("evil",))
        forged = dataclasses.replace(genuine, record=altered, body=altered.encode())
        self.assertEqual(self.assertRaises(RecordError, d.accept, forged.to_bytes(), 0.0).reason, "signature")
        self.assertEqual(self.assertRaises(RecordError, d.accept, b"\x00junk", 0.0).reason, "malformed")
        impersonation = sign_with(router_key("router-c"), make_record("router-b", 9, 9))
        self.assertEqual(self.assertRaises(RecordError, d.accept, impersonation.to_bytes(), 0.0).reason, "identity")
        self.assertEqual((d.rejected["signature"], d.rejected["malformed"], d.rejected["identity"]), (1, 1, 1))
        self.assertEqual((d.accepted, d.version), (0, 1))
        self.assertNotIn("router-b", d)
        stats = d.stats()
        self.assertEqual(stats["rejected_signature"], 1)
        self.assertEqual(stats["records"], 1)

    def test_stale_blobs_are_not_verified(self) -> None:
        v = verifier()
        d = Directory("router-a", v)
        d.accept(blob_of(make_record("router-b", 1, 5)), 0.0)
        checks = v.cache_hits + v.cache_misses
        forged_old = dataclasses.replace(signed_of(make_record("router-b", 1, 1)), signature=b"not a signature")
        self.assertIsNone(d.accept(forged_old.to_bytes(), 0.0))
        self.assertEqual(v.cache_hits + v.cache_misses, checks)

    def test_max_records(self) -> None:
        d = Directory("router-a", verifier(), max_records=2)
        d.accept(blob_of(make_record("router-b")), 0.0)
        d.accept(blob_of(make_record("router-c")), 0.0)
        error = self.assertRaises(RecordError, d.accept, blob_of(make_record("router-d")), 0.0)
        self.assertEqual(error.reason, "too_large")
        self.assertEqual(d.full, 1)
        self.assertIsNotNone(d.accept(blob_of(make_record("router-b", 1, 2)), 0.0))  # known routers still update


class AntiEntropyTests(SynchronousTestCase):
    def test_newer_than_and_wanted(self) -> None:
        a = Directory("router-a", verifier())
        a.set_local(signed_of(make_record("router-a", 1, 0)))
        a.accept(blob_of(make_record("router-c", 1, 4)), 0.0)
        a.accept(blob_of(make_record("router-d", 1, 1)), 0.0)
        theirs = {"router-a": [1, 0], "router-c": [1, 2], "router-d": [1, 7], "router-e": [3, 3]}
        sent = {SignedRecord.from_bytes(b).router_id for b in a.newer_than(theirs)}
        self.assertEqual(sent, {"router-c"})
        self.assertEqual(a.wanted(theirs), {"router-d": [1, 7], "router-e": [3, 3]})
        self.assertEqual(len(a.newer_than({})), 3)
        self.assertEqual(a.wanted(a.digest()), {})
        self.assertEqual(a.newer_than(a.digest()), [])

    def test_malformed_digest_entries(self) -> None:
        a = Directory("router-a", verifier())
        a.set_local(signed_of(make_record("router-a", 1, 0)))
        garbage = {"router-a": [1], "router-b": ["x", 1], "router-c": [True, 0], "router-d": [-1, 0]}
        self.assertEqual(a.wanted(garbage), {})
        self.assertEqual(len(a.newer_than(garbage)), 1)  # our record: the peer's entry for it is unusable

    def test_a_newer_record_of_ours_is_wanted(self) -> None:
        a = Directory("router-a", verifier())
        a.set_local(signed_of(make_record("router-a", 1, 0)))
        self.assertEqual(a.wanted({"router-a": [1, 3]}), {"router-a": [1, 3]})
        self.assertEqual(a.wanted({"router-a": [0, 9]}), {})

    def test_one_exchange_reconciles_both_sides(self) -> None:
        a = Directory("router-a", verifier())
        b = Directory("router-b", verifier())
        a.set_local(signed_of(make_record("router-a")))
        b.set_local(signed_of(make_record("router-b")))
        a.accept(blob_of(make_record("router-c", 1, 1)), 0.0)
        b.accept(blob_of(make_record("router-c", 1, 2)), 0.0)
        b.accept(blob_of(make_record("router-d")), 0.0)
        exchange(a, b)
        self.assertEqual(a.digest(), b.digest())
        self.assertEqual(a.digest()["router-c"], [1, 2])
        self.assertEqual(len(a.digest()), 4)
        before = (a.version, b.version)
        exchange(b, a)
        self.assertEqual((a.version, b.version), before)


class OwnRecordTests(SynchronousTestCase):
    """Records claiming our id never replace ours; our own from an earlier life make us outbid them."""

    def setUp(self) -> None:
        self.directory = Directory("router-a", verifier())
        self.mine = signed_of(make_record("router-a", 5, 2))
        self.directory.set_local(self.mine)

    def test_echo_of_our_record(self) -> None:
        d = self.directory
        self.assertIsNone(d.accept(self.mine.to_bytes(), 0.0))
        self.assertIsNone(d.accept(blob_of(make_record("router-a", 5, 1)), 0.0))
        self.assertEqual((d.stale, d.own_stale, d.impostor), (2, 0, 0))
        self.assertFalse(d.local_outdated)

    def test_our_record_from_an_earlier_life(self) -> None:
        d = self.directory
        self.assertIsNone(d.accept(blob_of(make_record("router-a", 5, 9, zones=("old",))), 0.0))
        self.assertEqual(d.local, self.mine)
        self.assertEqual(d.own_stale, 1)
        self.assertTrue(d.local_outdated)
        self.assertEqual(d.local_version_floor, (5, 9))
        self.assertEqual(d.next_local_version(5), (5, 10))
        self.assertEqual(d.next_local_version(4), (5, 10))
        self.assertEqual(d.next_local_version(6), (6, 0))
        d.set_local(signed_of(make_record("router-a", *d.next_local_version(5))))
        self.assertFalse(d.local_outdated)
        self.assertEqual(d.digest()["router-a"], [5, 10])

    def test_same_version_other_body(self) -> None:
        d = self.directory
        self.assertIsNone(d.accept(blob_of(make_record("router-a", 5, 2, zones=("other",))), 0.0))
        self.assertTrue(d.local_outdated)
        self.assertEqual(d.next_local_version(5), (5, 3))

    def test_impostor_with_a_certificate_for_our_id(self) -> None:
        d = self.directory
        twin = authority.issue_router_cert(pki().issuer, "router-a")  # same id, another key
        claim = RecordSigner(twin.key, twin.full_chain).sign(make_record("router-a", 99, 0))
        self.assertIsNone(d.accept(claim.to_bytes(), 0.0))
        self.assertEqual((d.impostor, d.own_stale), (1, 0))
        self.assertEqual(d.local, self.mine)
        self.assertFalse(d.local_outdated)
        self.assertEqual(d.local_version_floor, (5, 2))

    def test_forged_claims_of_our_id_are_rejected(self) -> None:
        d = self.directory
        forged = sign_with(router_key("router-b"), make_record("router-a", 99, 0))
        self.assertEqual(self.assertRaises(RecordError, d.accept, forged.to_bytes(), 0.0).reason, "identity")
        self.assertEqual(d.local, self.mine)

    def test_own_records_before_our_own_is_set(self) -> None:
        d = Directory("router-a", verifier())
        twin = authority.issue_router_cert(pki().issuer, "router-a")
        self.assertIsNone(d.accept(blob_of(make_record("router-a", 10, 3)), 0.0))
        self.assertIsNone(d.accept(blob_of(make_record("router-a", 10, 1)), 0.0))
        self.assertIsNone(d.accept(RecordSigner(twin.key, twin.full_chain).sign(make_record("router-a")).to_bytes(), 0))
        self.assertEqual(d.digest(), {})
        self.assertFalse(d.local_outdated)
        d.set_local(signed_of(make_record("router-a", 10, 0)))
        self.assertTrue(d.local_outdated)
        self.assertEqual((d.own_stale, d.impostor), (1, 1))
        self.assertEqual(d.next_local_version(10), (10, 4))


class SummaryTests(SynchronousTestCase):
    """GossipSummary's checksum: equal exactly when the digests are, whatever order records arrived in."""

    def test_summaries_follow_the_digest(self) -> None:
        a = Directory("router-a", verifier())
        b = Directory("router-b", verifier())
        a.set_local(signed_of(make_record("router-a")))
        b.set_local(signed_of(make_record("router-b")))
        c1, c2, d1 = (blob_of(make_record("router-c", 1, 1)), blob_of(make_record("router-c", 1, 2)),
                      blob_of(make_record("router-d")))
        self.assertNotEqual(a.summary(), b.summary())
        a.accept(c1, 0.0)
        a.accept(d1, 0.0)
        a.accept(c2, 0.0)
        b.accept(d1, 0.0)
        b.accept(c2, 0.0)
        exchange(a, b)
        self.assertEqual(a.digest(), b.digest())
        self.assertEqual(a.summary(), b.summary())
        self.assertEqual(a.summary()[0], 4)
        self.assertEqual(len(a.summary()[1]), 16)
        before = a.summary()
        a.accept(blob_of(make_record("router-d", 1, 5)), 0.0)
        self.assertNotEqual(a.summary(), before)

    def test_routing_version_ignores_refreshes_with_the_same_content(self) -> None:
        d = Directory("router-a", verifier())
        d.accept(blob_of(make_record("router-c", 1, 1)), 0.0)
        version = d.routing_version
        d.accept(blob_of(make_record("router-c", 1, 2)), 0.0)
        self.assertEqual(d.routing_version, version)
        d.accept(blob_of(make_record("router-c", 1, 3, zones=("elsewhere",))), 0.0)
        self.assertEqual(d.routing_version, version + 1)


class ExpiryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Directory("router-a", verifier())
        self.directory.set_local(signed_of(make_record("router-a", ttl=1.0)))
        self.record = make_record("router-b", 1, 1, ttl=10.0, chains=(ChainInfo("payment.bank-a", "t", 1, "g"),),
                                  resources=(ASSET,))
        self.blob = blob_of(self.record)
        self.directory.accept(self.blob, 100.0)

    def test_expiry_by_receive_time(self) -> None:
        d = self.directory
        self.assertEqual(d.expire(110.0), [])
        version = d.version
        self.assertEqual(d.expire(110.5), ["router-b"])
        self.assertEqual(d.version, version + 1)
        self.assertEqual(d.expired, 1)
        self.assertNotIn("router-b", d)
        self.assertEqual(d.routers_for_chain("payment.bank-a"), frozenset())
        self.assertIsNone(d.resource(ASSET.ipath))
        self.assertEqual(d.expire(10**9), [])  # never our own
        self.assertIn("router-a", d)

    def test_a_refresh_restarts_the_clock(self) -> None:
        d = self.directory
        d.accept(blob_of(dataclasses.replace(self.record, seq=2)), 108.0)
        self.assertEqual(d.expire(115.0), [])
        self.assertEqual(d.expire(118.5), ["router-b"])

    def test_expired_versions_do_not_come_back(self) -> None:
        d = self.directory
        d.expire(111.0)
        self.assertIsNone(d.accept(self.blob, 112.0))
        self.assertEqual(d.wanted({"router-b": [1, 1]}), {})
        self.assertEqual(d.wanted({"router-b": [1, 2]}), {"router-b": [1, 2]})
        self.assertEqual(d.stats()["tombstones"], 1)
        newer = dataclasses.replace(self.record, seq=2)
        self.assertEqual(d.accept(blob_of(newer), 113.0), newer)
        self.assertEqual(d.stats()["tombstones"], 0)

    def test_tombstones_lapse_after_a_ttl(self) -> None:
        d = self.directory
        d.expire(111.0)
        d.expire(121.0)
        self.assertEqual(d.accept(self.blob, 122.0), self.record)


class QueryTests(SynchronousTestCase):
    def setUp(self) -> None:
        d = self.directory = Directory("router-a", verifier())
        d.set_local(signed_of(make_record("router-a", chains=(ChainInfo("payment.bank-a", "t", 7, "g1"),),
                                          resources=(ASSET,))))
        other_asset = ResourceEntry(ASSET.ipath, "asset", {"transfer": "move funds", "burn": "new in v2"})
        d.accept(blob_of(make_record("router-b", chains=(ChainInfo("payment.bank-a", "t", 8, "g1"),),
                                     resources=(other_asset,))), 0.0)
        d.accept(blob_of(make_record("router-c", chains=(ChainInfo("payment.bank-a", "t", 8, "g2"),
                                                         ChainInfo("payment.bank-c", "t", 1, "")),
                                     resources=(ASSET, ResourceEntry("payment.bank-c.kv", "kv", {}))
                                     )), 0.0)
        d.accept(blob_of(make_record("router-d", chains=(ChainInfo("payment.bank-c", "t", 1, "g3"),))), 0.0)
        self.other_asset = other_asset

    def test_routers_for_chain(self) -> None:
        d = self.directory
        self.assertEqual(d.routers_for_chain("payment.bank-a"), {"router-a", "router-b", "router-c"})
        self.assertEqual(d.routers_for_chain("payment.nothing"), frozenset())
        self.assertEqual(d.chain_claims("payment.bank-c"), {"router-c": "", "router-d": "g3"})

    def test_resources(self) -> None:
        d = self.directory
        self.assertEqual(d.resource(ASSET.ipath), ASSET)  # router-a's, the lowest id
        self.assertIsNone(d.resource("payment.bank-a.nothing"))
        self.assertEqual(
            d.resources(),
            [
                (ASSET, ("router-a", "router-c")),
                (self.other_asset, ("router-b",)),
                (ResourceEntry("payment.bank-c.kv", "kv", {}), ("router-c",)),
            ],
        )

    def test_clashes(self) -> None:
        d = self.directory
        self.assertEqual(
            d.clashes(),
            [ChainClash("payment.bank-a", {"router-a": "g1", "router-b": "g1", "router-c": "g2"})],
        )  # payment.bank-c: "" (unknown) next to g3 is no clash
        self.assertTrue(d.clashing("payment.bank-a"))
        self.assertFalse(d.clashing("payment.bank-c"))
        self.assertFalse(d.clashing("payment.nowhere"))
        d.accept(blob_of(make_record("router-c", 1, 2)), 0.0)
        self.assertEqual(d.clashes(), [])
        self.assertFalse(d.clashing("payment.bank-a"))


def restricted_blob(record: RouterRecord, serves: tuple[str, ...]) -> bytes:
    """A record signed with a certificate for the same router id that authorises only ``serves``."""
    return signer(record.router_id, serves=serves).sign(record).to_bytes()


BANK_A = ChainInfo("payment.bank-a", "embedded", 8, "g1")
COURT = ChainInfo("evidence.court", "embedded", 3, "g9")
COURT_KV = ResourceEntry("evidence.court.kv", "kv", {})


class ChainAuthorityTests(SynchronousTestCase):
    """Chain claims count only where the signing certificate names the chain (wecross certs --serves)."""

    def setUp(self) -> None:
        d = self.directory = Directory("router-a", verifier())
        d.set_local(signed_of(make_record("router-a", chains=(BANK_A,), resources=(ASSET,))))
        # router-x may serve nowhere.* only, yet claims payment.bank-a (with another genesis) and evidence.court.
        self.greedy = make_record("router-x", 1, 1, zones=("payment", "evidence"), transit=True,
                                  chains=(ChainInfo("payment.bank-a", "embedded", 99, "evil"), COURT),
                                  resources=(ASSET, COURT_KV), links=(LinkInfo("router-a", 1.0, 0.0, 0.0, 0),))
        self.stored = d.accept(restricted_blob(self.greedy, ("nowhere.*",)), 0.0)

    def test_unauthorised_claims_are_ignored_and_counted(self) -> None:
        d = self.directory
        self.assertIsNotNone(self.stored)  # the record itself is accepted: links, zones, transit still count
        view = d.records()["router-x"]
        self.assertEqual((view.chains, view.resources), ((), ()))
        self.assertEqual((view.links, view.zones, view.transit, view.version),
                         (self.greedy.links, self.greedy.zones, True, (1, 1)))
        signed = d.signed("router-x")
        assert signed is not None
        self.assertEqual(signed.record, self.greedy)  # as signed, for whoever must see it whole
        self.assertEqual(d.routers_for_chain("payment.bank-a"), {"router-a"})
        self.assertEqual(d.routers_for_chain("evidence.court"), frozenset())
        self.assertEqual(d.chain_claims("payment.bank-a"), {"router-a": "g1"})
        self.assertEqual(d.clashes(), [])  # a different genesis without authority takes nothing down
        self.assertFalse(d.clashing("payment.bank-a"))
        self.assertEqual(d.resources(), [(ASSET, ("router-a",))])
        self.assertIsNone(d.resource(COURT_KV.ipath))
        self.assertEqual(d.unauthorized(), {"router-x": ["evidence.court", "payment.bank-a"]})
        stats = d.stats()
        self.assertEqual((stats["unauthorized_claims"], stats["unauthorized_chains"], stats["unauthorized_routers"]),
                         (2, 2, 1))
        # Every newer record with the same claims is counted again; the current set stays the same.
        d.accept(restricted_blob(dataclasses.replace(self.greedy, seq=2), ("nowhere.*",)), 0.0)
        self.assertEqual((d.stats()["unauthorized_claims"], d.stats()["unauthorized_chains"]), (4, 2))

    def test_queries_for_the_router_core(self) -> None:
        d = self.directory
        self.assertTrue(d.authorized("router-a", "payment.bank-a"))
        self.assertTrue(d.authorized("router-x", "nowhere.chain"))  # authority, whether claimed or not
        self.assertFalse(d.authorized("router-x", "payment.bank-a"))
        self.assertFalse(d.authorized("router-q", "payment.bank-a"))  # unknown router
        self.assertEqual(d.serves_patterns("router-x"), ("nowhere.*",))
        self.assertEqual(d.genesis_of("payment.bank-a", "router-a"), "g1")
        self.assertIsNone(d.genesis_of("payment.bank-a", "router-x"))  # claimed, but not authorised
        self.assertIsNone(d.genesis_of("payment.bank-a", "router-q"))
        key = d.signing_key("router-x")
        assert key is not None
        self.assertEqual(key.public_numbers(), router_key("router-x", serves=("nowhere.*",)).key.public_key()
                         .public_numbers())
        local_key = d.signing_key("router-a")
        assert local_key is not None
        self.assertEqual(local_key.public_numbers(), router_key("router-a").key.public_key().public_numbers())
        self.assertIsNone(d.signing_key("router-q"))

    def test_empty_genesis_is_none(self) -> None:
        d = self.directory
        d.accept(blob_of(make_record("router-b", chains=(ChainInfo("payment.bank-b", "t", 1, ""),))), 0.0)
        self.assertIsNone(d.genesis_of("payment.bank-b", "router-b"))
        self.assertEqual(d.routers_for_chain("payment.bank-b"), {"router-b"})

    def test_zone_wildcard_and_exact_patterns(self) -> None:
        d = self.directory
        archive = ChainInfo("evidence.archive", "t", 1, "")
        record = make_record("router-z", chains=(COURT, archive), resources=(COURT_KV,))
        d.accept(restricted_blob(record, ("evidence.*",)), 0.0)
        self.assertEqual(d.routers_for_chain("evidence.court"), {"router-z"})
        self.assertEqual(d.routers_for_chain("evidence.archive"), {"router-z"})
        self.assertEqual(d.resources(), [(COURT_KV, ("router-z",)), (ASSET, ("router-a",))])
        record = make_record("router-y", chains=(BANK_A, COURT), resources=(ASSET, COURT_KV))
        d.accept(restricted_blob(record, ("payment.bank-a",)), 0.0)
        self.assertEqual(d.routers_for_chain("payment.bank-a"), {"router-a", "router-y"})
        self.assertEqual(d.routers_for_chain("evidence.court"), {"router-z"})
        self.assertEqual(d.unauthorized(), {"router-x": ["evidence.court", "payment.bank-a"],
                                            "router-y": ["evidence.court"]})

    def test_a_new_certificate_changes_routing(self) -> None:
        """Same content, another certificate: what routing believes changed, so routes must be rebuilt."""
        d = self.directory
        before = d.routing_version
        d.accept(restricted_blob(dataclasses.replace(self.greedy, seq=2), ("*",)), 0.0)
        self.assertEqual(d.routing_version, before + 1)
        self.assertEqual(d.routers_for_chain("evidence.court"), {"router-x"})
        self.assertEqual(d.unauthorized(), {})
        self.assertEqual(d.stats()["unauthorized_chains"], 0)
        self.assertTrue(d.clashing("payment.bank-a"))  # now an authorised claim with another genesis: a clash
        d.accept(restricted_blob(dataclasses.replace(self.greedy, seq=3), ("nowhere.*",)), 0.0)
        self.assertEqual(d.routing_version, before + 2)
        self.assertFalse(d.clashing("payment.bank-a"))

    def test_expiry_forgets_the_claims(self) -> None:
        d = self.directory
        self.assertEqual(d.expire(1000.0), ["router-x"])
        self.assertEqual(d.unauthorized(), {})
        self.assertEqual(d.stats()["unauthorized_chains"], 0)
        self.assertEqual(d.stats()["unauthorized_claims"], 2)  # the total stays
        self.assertIsNone(d.signing_key("router-x"))
        self.assertFalse(d.authorized("router-x", "nowhere.x"))

    def test_our_own_record_is_held_to_the_same_rule(self) -> None:
        """Our own certificate without the chain: the other routers ignore it, and /status says so here too."""
        d = Directory("router-y", verifier())
        d.set_local(signer("router-y", serves=("payment.bank-a",)).sign(
            make_record("router-y", chains=(BANK_A, COURT), resources=(ASSET, COURT_KV))))
        self.assertEqual(d.unauthorized(), {"router-y": ["evidence.court"]})
        self.assertEqual(d.routers_for_chain("payment.bank-a"), {"router-y"})
        self.assertEqual(d.routers_for_chain("evidence.court"), frozenset())


class ConvergenceTests(SynchronousTestCase):
    N = 50

    def network(self, seed: int) -> tuple[list[Directory], dict[int, list[int]]]:
        rng = random.Random(seed)
        ids = [f"node-{i:02d}" for i in range(self.N)]
        shared = RecordVerifier([pki().root.cert])  # one chain cache for all: only speeds the test up
        directories = []
        for router_id in ids:
            directory = Directory(router_id, shared)
            directory.set_local(signer(router_id).sign(make_record(router_id)))
            directories.append(directory)
        neighbours: dict[int, set[int]] = {i: set() for i in range(self.N)}
        for i in range(1, self.N):  # a random spanning tree keeps the graph connected...
            j = rng.randrange(i)
            neighbours[i].add(j)
            neighbours[j].add(i)
        while sum(len(n) for n in neighbours.values()) < 4 * self.N:  # ...and random chords, average degree 4
            i, j = rng.sample(range(self.N), 2)
            neighbours[i].add(j)
            neighbours[j].add(i)
        return directories, {i: sorted(n) for i, n in neighbours.items()}

    def test_push_pull_converges_in_logarithmic_rounds(self) -> None:
        bound = 2 * math.log2(self.N) + 2
        for seed in (1, 2, 3):
            directories, neighbours = self.network(seed)
            rng = random.Random(seed)
            rounds = 0
            while any(len(d) < self.N for d in directories):
                rounds += 1
                self.assertLessEqual(rounds, bound, f"seed {seed}: not converged after {rounds - 1} rounds")
                # Synchronous rounds: every exchange of a round sees the directories as they were when it began.
                digests = [d.digest() for d in directories]
                deliveries: list[tuple[int, list[bytes]]] = []
                for i, directory in enumerate(directories):
                    for j in rng.sample(neighbours[i], min(3, len(neighbours[i]))):
                        deliveries.append((i, directories[j].newer_than(digests[i])))  # pull
                        if directories[j].wanted(digests[i]):
                            deliveries.append((j, directory.newer_than(digests[j])))  # push
                for target, blobs in deliveries:
                    for blob in blobs:
                        directories[target].accept(blob, float(rounds))
            reference = directories[0].digest()
            for directory in directories:
                self.assertEqual(directory.digest(), reference)
                self.assertEqual(sum(directory.rejected.values()), 0)
