"""The transaction layer end to end: real routers on 127.0.0.1 with mutual TLS, embedded chains behind different
routers, 2PC coordinated by the entry router and HTLC exchanges between two parties' routers.

```
router-b (z.one: alice, bob) -- router-a (entry, coordinator) -- router-c (z.two: alice, bob)
```
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests import support
from wecross.config import TxSettings
from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.ipath import IPath
from wecross.stub.interfaces import OP_TX_ROLLBACK

ACCOUNTS = {"alice": 1000, "bob": 1000}
RESOURCES = [{"name": "hello", "kind": "kv"}, {"name": "asset", "kind": "asset", "initial": ACCOUNTS}]
ROUTERS = {"router-a": {"zones": ["z"]}, "router-b": {"zones": ["z"], "chain": "one", "resources": RESOURCES},
           "router-c": {"zones": ["z"], "chain": "two", "resources": RESOURCES}}
LINKS = [("router-a", "router-b"), ("router-a", "router-c")]
ONE, TWO = "z.one.asset", "z.two.asset"


class TxNetwork(TestCase):
    timeout = 60
    tx_settings = TxSettings(participant_timeout=300.0, check_interval=0.2, htlc_interval=0.1, htlc_margin=1.0)

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        work = Path(self.mktemp())
        work.mkdir()
        tx = self.tx_settings
        self.net = support.Network(work, ROUTERS, LINKS, adjust=lambda rid, s: replace(s, tx=tx))
        self.addCleanup(self.net.stop)
        yield self.net.start()
        yield self.until_routed()

    def until_routed(self) -> Any:
        return support.until(lambda: self.net.linked() and all(
            self.net.nodes[r].router.table.route(chain) is not None
            for r in self.net.nodes for chain in ("z.one", "z.two")
            if not self.net.nodes[r].router._serves(chain)), timeout=30)

    def router(self, rid: str = "router-a") -> Any:
        return self.net.nodes[rid].router

    @defer.inlineCallbacks
    def balances(self, via: str = "router-a") -> Any:
        out = {}
        for path in (ONE, TWO):
            for account in ACCOUNTS:
                result = yield self.router(via).invoke(Invocation(IPath.parse(path), "call", "balanceOf", [account]))
                out[(path, account)] = result["output"]
        return out

    @defer.inlineCallbacks
    def prepared_swap(self, amount: int = 10) -> Any:
        """alice pays bob on chain one, bob pays alice on chain two, in one transaction."""
        coordinator = self.router().transactions()
        tx = yield coordinator.start([ONE, TWO])
        yield coordinator.execute(tx["tx_id"], ONE, "transfer", ["bob", amount], "alice")
        yield coordinator.execute(tx["tx_id"], TWO, "transfer", ["alice", amount], "bob")
        return tx["tx_id"]


class TwoPhaseCommit(TxNetwork):
    @defer.inlineCallbacks
    def test_commit_on_two_chains_behind_two_routers(self) -> Any:
        before = yield self.balances()
        tx_id = yield self.prepared_swap()
        # Locked while prepared: a plain read of alice's balance on chain one is refused, through the overlay.
        failure = yield self.assertFailure(self.router().invoke(
            Invocation(IPath.parse(ONE), "call", "balanceOf", ["alice"])), RouterError)
        self.assertEqual(failure.code, "locked")
        self.assertIn(tx_id, failure.message)
        record = yield self.router().transactions().commit(tx_id)
        self.assertEqual(record["state"], "committed")
        self.assertEqual(set(record["outcomes"]), {ONE, TWO})
        after = yield self.balances()
        self.assertEqual(after[(ONE, "alice")], before[(ONE, "alice")] - 10)
        self.assertEqual(after[(TWO, "alice")], before[(TWO, "alice")] + 10)
        self.assertEqual(sum(after.values()), sum(before.values()))
        for rid, chain in (("router-b", "z.one"), ("router-c", "z.two")):
            self.assertEqual(self.net.nodes[rid].stubs.stubs()[chain].prepared_transactions(), [])

    @defer.inlineCallbacks
    def test_rollback_restores_and_unlocks(self) -> Any:
        before = yield self.balances()
        tx_id = yield self.prepared_swap()
        record = yield self.router().transactions().rollback(tx_id)
        self.assertEqual(record["state"], "rolled_back")
        self.assertEqual((yield self.balances()), before)

    @defer.inlineCallbacks
    def test_failed_step_leaves_only_rollback(self) -> Any:
        coordinator = self.router().transactions()
        tx = yield coordinator.start([])
        yield coordinator.execute(tx["tx_id"], ONE, "transfer", ["bob", 10], "alice")
        failure = yield self.assertFailure(coordinator.execute(tx["tx_id"], TWO, "transfer", ["bob", 10 ** 6],
                                                               "alice"), RouterError)
        self.assertEqual(failure.code, "insufficient_funds")
        yield self.assertFailure(coordinator.commit(tx["tx_id"]), RouterError)
        yield coordinator.rollback(tx["tx_id"])
        balances = yield self.balances()
        self.assertEqual(balances[(ONE, "alice")], 1000)

    @defer.inlineCallbacks
    def test_a_participant_router_down_at_commit_gets_it_when_back(self) -> Any:
        tx_id = yield self.prepared_swap()
        yield self.net.stop("router-c")
        record = yield self.router().transactions().commit(tx_id, wait=0.5)
        self.assertEqual(record["state"], "committing")
        yield self.net.start("router-c")
        yield self.until_routed()
        yield support.until(lambda: self.router().transactions().get(tx_id)["state"] == "committed", timeout=30)
        balances = yield self.balances()
        self.assertEqual(balances[(TWO, "alice")], 1010)
        self.assertEqual(sum(balances.values()), 4000)

    @defer.inlineCallbacks
    def test_partition_during_commit_heals_into_commit(self) -> Any:
        tx_id = yield self.prepared_swap()
        peers = self.net.nodes["router-a"].peers
        dialer = next(d for d in peers.dialers if d.settings.id == "router-c")
        service, dialer.service = dialer.service, None
        service.disownServiceParent()  # router-c is alive but cut off from the coordinator
        peers.links["router-c"].close("partition", bye=False, abort=True)
        yield support.until(lambda: "router-c" not in peers.links)
        record = yield self.router().transactions().commit(tx_id, wait=1.0)
        self.assertEqual(record["state"], "committing")
        self.assertEqual(record["acked"], [ONE])
        # On the far side of the partition the transaction still holds its locks: nothing half-done is visible.
        failure = yield self.assertFailure(self.router("router-c").invoke(
            Invocation(IPath.parse(TWO), "call", "balanceOf", ["bob"])), RouterError)
        self.assertEqual(failure.code, "locked")
        peers._start_dialer(dialer)  # the partition heals
        yield support.until(lambda: self.router().transactions().get(tx_id)["state"] == "committed", timeout=30)
        balances = yield self.balances()
        self.assertEqual((balances[(ONE, "bob")], balances[(TWO, "alice")]), (1010, 1010))
        self.assertEqual(sum(balances.values()), 4000)

    @defer.inlineCallbacks
    def test_rest_and_errors(self) -> Any:
        import json
        from io import BytesIO

        from twisted.internet import reactor
        from twisted.web.client import Agent, FileBodyProducer, readBody
        from twisted.web.http_headers import Headers

        port = self.net.nodes["router-a"].rest_port
        agent = Agent(reactor)

        @defer.inlineCallbacks
        def post(path: str, body: Any) -> Any:
            response = yield agent.request(b"POST", f"http://127.0.0.1:{port}{path}".encode(),
                                           Headers({b"Content-Type": [b"application/json"]}),
                                           FileBodyProducer(BytesIO(json.dumps(body).encode())))
            return response.code, json.loads((yield readBody(response)))

        code, body = yield post("/tx/start", {"resources": ["z.one.hello"]})
        self.assertEqual(code, 200, body)
        tx_id = body["data"]["tx_id"]
        code, body = yield post(f"/tx/{tx_id}/exec", {"path": "z.one.hello", "method": "set", "args": ["k", "v"]})
        self.assertEqual((code, body["data"]["state"]), (200, "prepared"), body)
        code, body = yield post(f"/tx/{tx_id}/exec", {"path": "z.one.hello", "args": []})
        self.assertEqual((code, body["error"]["code"]), (400, "bad_request"))
        code, body = yield post(f"/tx/{tx_id}/exec", {"path": TWO, "method": "transfer", "args": ["bob", 1]})
        self.assertEqual((code, body["error"]["code"]), (400, "bad_args"))  # not one of the declared resources
        code, body = yield post(f"/tx/{tx_id}/exec", {"path": "z.one.hello", "method": "set", "args": "x"})
        self.assertEqual(code, 400)
        code, body = yield post(f"/tx/{tx_id}/commit", {})
        self.assertEqual((code, body["data"]["state"]), (200, "committed"))
        code, body = yield post(f"/tx/{tx_id}/rollback", {})
        self.assertEqual((code, body["error"]["code"]), (409, "tx_state"))
        code, body = yield post("/tx/nope/commit", {})
        self.assertEqual((code, body["error"]["code"]), (404, "unknown_tx"))
        response = yield agent.request(b"GET", f"http://127.0.0.1:{port}/tx?state=committed".encode())
        listing = json.loads((yield readBody(response)))
        self.assertEqual(listing["data"]["transactions"][0]["tx_id"], tx_id)


class ParticipantTimeout(TxNetwork):
    """Issue 12, finding 4: a prepared participant whose coordinator is silent stays prepared (it voted yes, the
    decision may be commit); deciding alone is an operator's act or an opt-in setting, reported either way."""

    tx_settings = TxSettings(participant_timeout=0.5, check_interval=0.2)

    def prepared_here(self) -> list[Any]:
        return [self.net.nodes["router-b"].stubs.stubs()["z.one"], self.net.nodes["router-c"].stubs.stubs()["z.two"]]

    @defer.inlineCallbacks
    def test_a_coordinator_that_is_down_leaves_participants_prepared(self) -> Any:
        tx_id = yield self.prepared_swap()
        yield self.net.stop("router-a")  # the coordinator is gone
        watcher = self.net.nodes["router-b"].participant
        yield support.until(lambda: watcher.counters["unanswered"] >= 3, timeout=30)
        self.assertTrue(all(s.prepared_transactions() for s in self.prepared_here()))  # blocked, as 2PC requires
        self.assertEqual(watcher.counters["heuristic_decisions"], 0)
        self.assertEqual(watcher.heuristics, [])
        # The operator decides: a heuristic outcome, reported.
        yield watcher.decide_alone(tx_id, ONE, OP_TX_ROLLBACK, "the operator gave up on router-a")
        self.assertEqual(self.prepared_here()[0].prepared_transactions(), [])
        [report] = watcher.heuristics
        self.assertEqual((report["tx_id"], report["ipath"], report["op"]), (tx_id, ONE, OP_TX_ROLLBACK))
        self.assertEqual(watcher.counters["heuristic_decisions"], 1)
        self.assertTrue(self.prepared_here()[1].prepared_transactions())  # router-c still waits


class OptInHeuristic(TxNetwork):
    tx_settings = TxSettings(participant_timeout=0.5, check_interval=0.2, participant_heuristic="rollback",
                             participant_heuristic_after=0.5)

    @defer.inlineCallbacks
    def test_a_participant_may_be_set_to_roll_back_alone(self) -> Any:
        tx_id = yield self.prepared_swap()
        yield self.net.stop("router-a")
        stubs = [self.net.nodes["router-b"].stubs.stubs()["z.one"], self.net.nodes["router-c"].stubs.stubs()["z.two"]]
        yield support.until(lambda: all(not s.prepared_transactions() for s in stubs), timeout=30)
        for rid in ("router-b", "router-c"):
            watcher = self.net.nodes[rid].participant
            self.assertEqual([r["tx_id"] for r in watcher.heuristics], [tx_id])
            self.assertEqual(watcher.counters["heuristic_decisions"], 1)
        result = yield self.router("router-b").invoke(Invocation(IPath.parse(ONE), "call", "balanceOf", ["alice"]))
        self.assertEqual(result["output"], 1000)


class HashTimeLock(TxNetwork):
    def htlc(self, rid: str) -> Any:
        return self.router(rid).htlc()

    @defer.inlineCallbacks
    def start_exchange(self, *, alice_time: float = 60.0, bob_time: float = 30.0) -> Any:
        """Alice's router is router-b (chain one), Bob's router-c (chain two)."""
        alice = yield self.htlc("router-b").start(
            {"role": "initiator", "own": {"path": ONE, "receiver": "bob", "amount": 10},
             "other": {"path": TWO, "sender": "bob", "amount": 5}, "timelock": alice_time, "margin": 1.0}, "alice")
        self.assertNotIn("secret", alice)
        bob = yield self.htlc("router-c").start(
            {"role": "participant", "htlc_id": alice["htlc_id"], "hash_lock": alice["hash_lock"],
             "own": {"path": TWO, "receiver": "alice", "amount": 5},
             "other": {"path": ONE, "sender": "alice", "amount": 10}, "timelock": bob_time, "margin": 1.0}, "bob")
        return alice["htlc_id"], bob

    @defer.inlineCallbacks
    def test_exchange_completes_on_both_chains(self) -> Any:
        htlc_id, bob = yield self.start_exchange()
        self.assertTrue(bob["other_verified"]["proof"], bob["other_verified"])  # alice's lock, proven
        yield support.until(lambda: self.htlc("router-b").get(htlc_id)["state"] in ("claimed", "done")
                            and self.htlc("router-c").get(htlc_id)["state"] in ("claimed", "done"), timeout=30)
        balances = yield self.balances()
        self.assertEqual(balances[(ONE, "bob")], 1010)
        self.assertEqual(balances[(TWO, "alice")], 1005)
        self.assertEqual(sum(balances.values()), 4000)
        self.assertTrue(self.htlc("router-b").get(htlc_id)["other_verified"]["proof"])

    @defer.inlineCallbacks
    def test_a_party_that_never_unlocks_gets_both_refunded(self) -> Any:
        alice_service = self.htlc("router-b")
        alice_service._unlock = lambda h, secret: defer.succeed(None)  # alice keeps her secret to herself
        htlc_id, _ = yield self.start_exchange(alice_time=3.0, bob_time=1.5)
        yield support.until(lambda: alice_service.get(htlc_id)["state"] in ("refunded", "done")
                            and self.htlc("router-c").get(htlc_id)["state"] in ("refunded", "done"), timeout=30)
        balances = yield self.balances()
        self.assertEqual(balances, {(p, a): 1000 for p in (ONE, TWO) for a in ACCOUNTS})

    @defer.inlineCallbacks
    def test_participant_refuses_a_lock_on_other_terms(self) -> Any:
        alice = yield self.htlc("router-b").start(
            {"role": "initiator", "own": {"path": ONE, "receiver": "bob", "amount": 10},
             "other": {"path": TWO, "sender": "bob", "amount": 5}, "timelock": 60, "margin": 1.0}, "alice")
        failure = yield self.assertFailure(self.htlc("router-c").start(
            {"role": "participant", "htlc_id": alice["htlc_id"], "hash_lock": alice["hash_lock"],
             "own": {"path": TWO, "receiver": "alice", "amount": 5},
             "other": {"path": ONE, "sender": "alice", "amount": 50}, "timelock": 30, "margin": 1.0}, "bob"),
            RouterError)
        self.assertEqual(failure.code, "htlc_state")
        self.assertIn("less than the agreed 50", failure.message)
        balances = yield self.balances()
        self.assertEqual(balances[(TWO, "bob")], 1000)  # bob locked nothing
