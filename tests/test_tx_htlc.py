"""HTLC exchanges: the decision core (terms, time locks, who unlocks or refunds when)."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from wecross.tx.htlc import INITIATOR, PARTICIPANT, Htlc, HtlcState, Leg, decide, sha256_hex, terms_problem

SECRET = "11" * 32
HASH = sha256_hex(SECRET)


def initiator(now: float = 0.0) -> Htlc:
    own = Leg("z.one.asset", "alice", "bob", 10, timelock=600.0, chain_state="locked")
    other = Leg("z.two.asset", "bob", "alice", 5)
    return Htlc("a:1", INITIATOR, HASH, own, other, 60.0, now, HtlcState.LOCKED, secret=SECRET)


def participant() -> Htlc:
    own = Leg("z.two.asset", "bob", "alice", 5, timelock=300.0, chain_state="locked")
    other = Leg("z.one.asset", "alice", "bob", 10, timelock=600.0)
    return Htlc("a:1", PARTICIPANT, HASH, own, other, 60.0, 0.0, HtlcState.LOCKED)


def lock(state: str = "locked", **over: Any) -> dict[str, Any]:
    status = {"state": state, "sender": "bob", "receiver": "alice", "amount": 5, "hash_lock": HASH,
              "timelock": 300.0}
    status.update(over)
    return status


class TermsTests(SynchronousTestCase):
    def test_agreed_terms(self) -> None:
        self.assertIsNone(terms_problem(initiator(), lock(), 10.0))

    def test_every_wrong_term_is_named(self) -> None:
        h = initiator()
        cases = {
            "another hash": lock(hash_lock="00" * 32),
            "pays 'mallory'": lock(receiver="mallory"),
            "funded by 'carol'": lock(sender="carol"),
            "less than the agreed": lock(amount=4),
            "before ours": lock(timelock=590.0),
            "not locked": lock("refunded"),
        }
        for words, status in cases.items():
            problem = terms_problem(h, status, 10.0)
            self.assertIsNotNone(problem, words)
            assert problem is not None
            self.assertIn(words, problem)
        self.assertIn("too soon", terms_problem(h, lock(), 290.0) or "")

    def test_participant_needs_the_initiator_lock_a_margin_later(self) -> None:
        h = participant()
        status = {"state": "locked", "sender": "alice", "receiver": "bob", "amount": 10, "hash_lock": HASH,
                  "timelock": 600.0}
        self.assertIsNone(terms_problem(h, status, 0.0))
        self.assertIn("margin", terms_problem(h, dict(status, timelock=350.0), 0.0) or "")


class DecideTests(SynchronousTestCase):
    def test_initiator_unlocks_once_the_other_lock_is_right(self) -> None:
        h = initiator()
        self.assertEqual(decide(h, {"state": "locked"}, None, 10.0)[0], "wait")
        self.assertEqual(decide(h, {"state": "locked"}, lock(), 10.0)[0], "unlock")
        self.assertEqual(decide(h, {"state": "locked"}, lock(amount=1), 10.0)[0], "wait")

    def test_participant_unlocks_with_the_published_secret(self) -> None:
        h = participant()
        initiator_lock = {"state": "locked", "timelock": 600.0}
        self.assertEqual(decide(h, {"state": "locked"}, initiator_lock, 10.0)[0], "wait")
        self.assertEqual(decide(h, {"state": "unlocked", "secret": SECRET}, initiator_lock, 10.0)[0], "unlock")
        self.assertEqual(decide(h, {"state": "unlocked", "secret": SECRET}, initiator_lock, 600.0)[0], "wait")

    def test_refund_after_the_time_lock_and_done_when_settled(self) -> None:
        h = initiator()
        self.assertEqual(decide(h, {"state": "locked"}, None, 600.0)[0], "refund")
        h.state = HtlcState.CLAIMED
        self.assertEqual(decide(h, {"state": "unlocked"}, {"state": "unlocked"}, 20.0)[0], "done")
        h.state = HtlcState.REFUNDED
        self.assertEqual(decide(h, {"state": "refunded"}, None, 700.0)[0], "done")

    def test_record_round_trip_hides_the_initiator_secret(self) -> None:
        h = initiator()
        self.assertNotIn("secret", h.to_record(with_secret=False))
        self.assertEqual(Htlc.from_record(h.to_record()).to_record(), h.to_record())
        h.state = HtlcState.CLAIMED
        self.assertEqual(h.to_record(with_secret=False)["secret"], SECRET)  # public on chain two by now
