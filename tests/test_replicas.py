"""The replica filter of route rebuilds (wecross.routing.replicas): chain authority first, then clashes settled by
what this router knows for sure (the chain it serves, a pinned genesis), never by a majority."""

from __future__ import annotations

from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from tests.test_gossip_record import make_record
from wecross.gossip import ChainInfo, RouterRecord
from wecross.pki.serves import ChainAuthority
from wecross.routing.replicas import ClashVerdict, replicas

BANK = "payment.bank-a"
COURT = "evidence.court"


def records(claims: dict[str, list[tuple[str, str]]]) -> dict[str, RouterRecord]:
    """Router id -> record claiming (chain path, genesis) pairs."""
    return {rid: make_record(rid, chains=tuple(ChainInfo(path, "embedded", 1, genesis) for path, genesis in chains))
            for rid, chains in claims.items()}


def authority(patterns: dict[str, tuple[str, ...]]) -> Callable[[str, str], bool]:
    compiled = {rid: ChainAuthority.of(p) for rid, p in patterns.items()}
    return lambda rid, path: rid in compiled and compiled[rid].authorizes(path)


ANY = authority({r: ("*",) for r in ("router-a", "router-b", "router-c", "router-d", "router-e")})


class ReplicaTests(SynchronousTestCase):
    def test_plain_replicas(self) -> None:
        recs = records({"router-b": [(BANK, "g1")], "router-c": [(BANK, "g1"), (COURT, "")], "router-a": []})
        out = replicas(recs, ANY, {}, {})
        self.assertEqual(out, {BANK: ["router-b", "router-c"], COURT: ["router-c"]})
        self.assertEqual((out.clashes, out.unresolved), ({}, []))

    def test_unauthorised_claims_never_count(self) -> None:
        recs = records({"router-b": [(BANK, "g1")], "router-x": [(BANK, "g1"), (COURT, "g2")],
                        "router-z": [(COURT, "g2"), ("evidence.archive", "")]})
        auth = authority({"router-b": ("payment.*",), "router-x": ("nowhere.*",), "router-z": ("evidence.court",)})
        out = replicas(recs, auth, {}, {})
        self.assertEqual(out, {BANK: ["router-b"], COURT: ["router-z"]})

    def test_unauthorised_other_genesis_is_no_clash(self) -> None:
        """A router without authority announcing another genesis cannot take the chain down for everyone."""
        recs = records({"router-b": [(BANK, "g1")], "router-x": [(BANK, "evil")]})
        out = replicas(recs, authority({"router-b": ("*",)}), {}, {})
        self.assertEqual(out, {BANK: ["router-b"]})
        self.assertEqual(out.clashes, {})

    def test_clash_settled_by_the_chain_served_here(self) -> None:
        recs = records({"router-a": [(BANK, "g1")], "router-b": [(BANK, "g1")], "router-c": [(BANK, "g2")],
                        "router-d": [(BANK, "g2")], "router-e": [(BANK, "")], "router-f": [(COURT, "g5")]})
        auth = authority({r: ("*",) for r in recs})
        # The served genesis wins over a checkpoint saying otherwise, and over a majority of one.
        out = replicas(recs, auth, {BANK: "g1"}, {BANK: "g2"})
        self.assertEqual(out, {BANK: ["router-a", "router-b"], COURT: ["router-f"]})  # router-e: unknown, dropped
        verdict = out.clashes[BANK]
        self.assertEqual((verdict.by, verdict.genesis), ("served", "g1"))
        self.assertEqual(verdict.claims, {"router-a": "g1", "router-b": "g1", "router-c": "g2", "router-d": "g2",
                                          "router-e": ""})
        self.assertIn("served", verdict.describe())
        self.assertEqual(out.unresolved, [])

    def test_clash_settled_by_a_checkpoint(self) -> None:
        recs = records({"router-b": [(BANK, "0xAB")], "router-c": [(BANK, "cd")], "router-d": [(BANK, "cd")]})
        out = replicas(recs, ANY, {}, {BANK: "ab"})
        self.assertEqual(out, {BANK: ["router-b"]})  # hex compares without 0x and case
        self.assertEqual(out.clashes[BANK].by, "checkpoint")

    def test_clash_without_a_pin_keeps_no_replica_and_says_so(self) -> None:
        recs = records({"router-b": [(BANK, "g1"), (COURT, "g5")], "router-c": [(BANK, "g2"), (COURT, "g5")]})
        out = replicas(recs, ANY, {COURT: ""}, {BANK: "12:ff"})
        self.assertEqual(out, {COURT: ["router-b", "router-c"]})  # only the clashing chain loses its replicas
        self.assertEqual(out.unresolved, [BANK])
        self.assertEqual(out.clashes[BANK], ClashVerdict(BANK, "unresolved", "", {"router-b": "g1", "router-c": "g2"}))
        self.assertIn("no replica", out.clashes[BANK].describe())

    def test_a_pin_without_a_clash_still_filters(self) -> None:
        """The only router announcing the chain serves another genesis than the one we pinned: not a replica."""
        recs = records({"router-b": [(BANK, "g2")], "router-c": [(BANK, "")]})
        self.assertEqual(replicas(recs, ANY, {}, {BANK: "g1"}), {BANK: ["router-c"]})
        self.assertEqual(replicas(recs, ANY, {}, {}), {BANK: ["router-b", "router-c"]})
