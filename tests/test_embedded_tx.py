"""The embedded chain as a transaction-layer participant: 2PC hooks (prepare / commit / rollback) with key-level
locks that survive restarts, and HTLCs on the asset ledger.

The stub is driven directly (no router). HTLC and property tests run the chain in simulation mode (writes on the
test's thread, blocks stamped by a task.Clock), so time locks can be passed without waiting.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from wecross.embedded.block import Transaction
from wecross.embedded.stub import EmbeddedStub
from wecross.embedded.verify import check_commit_proof, check_read_proof, check_write_proof, verify_write_proof
from wecross.stub.interfaces import IResource, Result, StubError, StubSettings

RESOURCES: list[dict[str, Any]] = [
    {"name": "hello", "kind": "kv", "initial": {"greeting": "hello wecross"}},
    {"name": "asset", "kind": "asset", "initial": {"alice": 100, "bob": 5}, "issuer": "central"},
]
SUPPLY = 105
T1, T2, T3 = "router-a:" + "1" * 32, "router-a:" + "2" * 32, "router-b:" + "3" * 32


def new_stub(data_dir: Path, resources: list[dict[str, Any]] = RESOURCES) -> EmbeddedStub:
    return EmbeddedStub(StubSettings(name="bank-a", zone="payment", type="embedded", options={},
                                     resources=resources), data_dir)


def res(stub: EmbeddedStub, name: str) -> IResource:
    found = stub.resource(name)
    assert found is not None
    return found


def balances(stub: EmbeddedStub) -> dict[str, int]:
    """Committed balances, straight from the world state (not through the lock-checked reads)."""
    return {key[2]: value for key, value in stub.ledger._world.items() if key[:2] == ("asset", "b")}


def escrowed(stub: EmbeddedStub) -> int:
    return sum(value["amount"] for key, value in stub.ledger._world.items()
               if key[:2] == ("asset", "h") and value["state"] == "locked")


class TxCase(TestCase):
    async def open_stub(self, data_dir: Path | None = None) -> EmbeddedStub:
        stub = new_stub(data_dir or Path(self.mktemp()))
        await stub.start()
        self.addCleanup(stub.stop)
        return stub

    async def fails(self, code: str, d: Deferred[Any]) -> StubError:
        with self.assertRaises(StubError) as caught:
            await d
        self.assertEqual(caught.exception.code, code, caught.exception.message)
        return caught.exception

    async def output(self, d: Deferred[Result]) -> Any:
        return (await d).output

    async def height(self, stub: EmbeddedStub) -> int:
        return int((await stub.chain_state()).height)


class CommitTests(TxCase):
    async def test_steps_on_kv_and_asset_commit_as_proven_blocks(self) -> None:
        stub = await self.open_stub()
        hello, asset = res(stub, "hello"), res(stub, "asset")
        self.assertIsNone(await self.output(hello.prepare(T1, "set", ["k", {"b": 1, "a": 2}], "carol")))
        self.assertEqual(await self.output(asset.prepare(T1, "transfer", ["bob", 30], "alice")), 70)
        # the transaction's own later steps see its tentative state
        self.assertEqual(await self.output(asset.prepare(T1, "transfer", ["carol", 10], "alice")), 60)
        self.assertEqual(await self.output(asset.prepare(T1, "transfer", ["alice", 35], "bob")), 0)
        self.assertEqual(await self.height(stub), 0, "prepares make no block")
        self.assertEqual(balances(stub), {"alice": 100, "bob": 5})
        listed = {entry["resource"]: entry for entry in stub.prepared_transactions()}
        self.assertEqual(set(listed), {"hello", "asset"})
        self.assertEqual(listed["hello"]["locks"], ["key:k"])
        self.assertEqual(listed["asset"]["locks"], ["balance:alice", "balance:bob", "balance:carol"])
        self.assertEqual([(s["method"], s["args"], s["sender"], s["output"]) for s in listed["asset"]["steps"]],
                         [("transfer", ["bob", 30], "alice", 70), ("transfer", ["carol", 10], "alice", 60),
                          ("transfer", ["alice", 35], "bob", 0)])
        self.assertEqual(listed["asset"]["tx_id"], T1)
        self.assertIsInstance(listed["asset"]["since"], float)

        result = await asset.commit(T1)
        self.assertEqual(result.output, {"committed": T1, "outputs": [70, 60, 0]})
        self.assertEqual(result.block_number, 1)
        assert result.receipt is not None and result.tx_hash is not None
        self.assertEqual([e["name"] for e in result.receipt["events"]], ["Transfer"] * 3)
        self.assertTrue(verify_write_proof(result.to_wire()))
        header = await stub.header(1)
        self.assertIsNone(check_commit_proof(result.to_wire(), tx_id=T1, resource="asset",
                                             expected_header_hash=header.hash))
        self.assertEqual(check_commit_proof(result.to_wire(), tx_id=T2)[0], "tx_mismatch")  # type: ignore[index]
        self.assertEqual(check_commit_proof(result.to_wire(), tx_id=T1, resource="hello")[0],  # type: ignore[index]
                         "tx_mismatch")
        proven = Transaction.decode(bytes.fromhex(result.proof["tx"]["leaf"]))  # type: ignore[index]
        self.assertEqual((proven.op, proven.method, proven.resource), ("commit", "commit", "asset"))
        self.assertEqual(proven.args, [T1, [["transfer", ["bob", 30], "alice"], ["transfer", ["carol", 10], "alice"],
                                            ["transfer", ["alice", 35], "bob"]]])
        kv_result = await hello.commit(T1)
        self.assertTrue(verify_write_proof(kv_result.to_wire()))
        self.assertIsNone(check_commit_proof(kv_result.to_wire(), tx_id=T1, resource="hello"))

        self.assertEqual(balances(stub), {"alice": 95, "carol": 10})
        self.assertEqual(await self.output(asset.call("balanceOf", ["alice"], "x")), 95)
        self.assertEqual(await self.output(hello.get_data("k", "x")), {"a": 2, "b": 1})
        self.assertEqual(stub.prepared_transactions(), [])
        self.assertEqual(stub.ledger._locks, {})
        events = await stub.events("asset", 1)
        self.assertEqual([(e["name"], e["args"]["to"]) for e in events], [("Transfer", "bob"), ("Transfer", "carol"),
                                                                         ("Transfer", "alice")])
        # a read after the commit is proven against the commit's block
        read = await asset.call("balanceOf", ["carol"], "x")
        self.assertIsNone(check_read_proof(read.to_wire(), expected_read={
            "resource": "asset", "op": "call", "method": "balanceOf", "args": ["carol"]}))

    async def test_concurrent_transactions_prepare_and_commit_in_shared_rounds(self) -> None:
        stub = await self.open_stub()
        hello = res(stub, "hello")
        tx_ids = [f"router-a:{i:032x}" for i in range(40)]
        await defer.gatherResults([hello.prepare(t, "set", [f"k{i}", i], "x") for i, t in enumerate(tx_ids)],
                                  consumeErrors=True)
        self.assertEqual(await self.height(stub), 0)
        self.assertEqual(len(stub.prepared_transactions()), 40)
        results: list[Result] = await defer.gatherResults([hello.commit(t) for t in tx_ids], consumeErrors=True)
        self.assertEqual({r.block_number for r in results}, {1, 2}, "the first commit alone, 39 in the next block")
        for result in results:
            self.assertTrue(verify_write_proof(result.to_wire()))
        self.assertEqual(await self.output(hello.get_data("k39", "x")), 39)

    async def test_failed_step_leaves_earlier_steps_prepared(self) -> None:
        stub = await self.open_stub()
        asset = res(stub, "asset")
        await asset.prepare(T1, "transfer", ["bob", 60], "alice")
        await self.fails("insufficient_funds", asset.prepare(T1, "transfer", ["bob", 60], "alice"))
        await self.fails("forbidden", asset.prepare(T1, "mint", ["bob", 1], "alice"))
        await self.fails("bad_args", asset.prepare(T1, "transfer", ["bob"], "alice"))
        await self.fails("unknown_method", asset.prepare(T1, "balanceOf", ["bob"], "alice"))
        await self.fails("bad_args", asset.prepare("", "transfer", ["bob", 1], "alice"))
        (entry,) = stub.prepared_transactions()
        self.assertEqual(len(entry["steps"]), 1)
        self.assertEqual(entry["locks"], ["balance:alice", "balance:bob"])
        self.assertEqual((await asset.commit(T1)).output, {"committed": T1, "outputs": [40]})
        self.assertEqual(balances(stub), {"alice": 40, "bob": 65})

    async def test_mint_locks_the_supply(self) -> None:
        stub = await self.open_stub()
        asset = res(stub, "asset")
        self.assertEqual(await self.output(asset.prepare(T1, "mint", ["dave", 7], "central")), 112)
        error = await self.fails("locked", asset.call("totalSupply", [], "x"))
        self.assertIn(f"asset supply is locked by transaction {T1}", error.message)
        await asset.commit(T1)
        self.assertEqual(await self.output(asset.call("totalSupply", [], "x")), 112)
        self.assertEqual(sum(balances(stub).values()), 112)


class RollbackTests(TxCase):
    async def test_rollback_restores_everything(self) -> None:
        stub = await self.open_stub()
        hello, asset = res(stub, "hello"), res(stub, "asset")
        before = dict(stub.ledger._world.items())
        await hello.prepare(T1, "set", ["greeting", None], "x")  # a tentative delete
        await hello.prepare(T1, "set", ["new", 1], "x")
        await asset.prepare(T1, "transfer", ["bob", 100], "alice")
        await asset.prepare(T1, "mint", ["carol", 5], "central")
        self.assertIsNone(await self.output(hello.prepare(T1, "set", ["greeting", "again"], "x")))
        for resource in (hello, asset):
            self.assertEqual((await resource.rollback(T1)).output, {"rolled_back": T1, "known": True})
        self.assertEqual(dict(stub.ledger._world.items()), before)
        self.assertEqual((stub.ledger._locks, stub.prepared_transactions()), ({}, []))
        self.assertEqual(await self.height(stub), 0)
        self.assertEqual(await self.output(hello.get_data("greeting", "x")), "hello wecross")
        self.assertEqual(await self.output(asset.call("balanceOf", ["alice"], "x")), 100)
        # idempotent, and remembered: a late prepare or a commit of a rolled-back transaction is refused
        self.assertEqual((await asset.rollback(T1)).output, {"rolled_back": T1, "known": True})
        await self.fails("rolled_back", asset.prepare(T1, "transfer", ["bob", 1], "alice"))
        await self.fails("rolled_back", asset.commit(T1))
        # a rollback that arrives before any prepare (presumed abort) is recorded: the late prepare is refused
        self.assertEqual((await asset.rollback(T2)).output, {"rolled_back": T2, "known": False})
        self.assertEqual((await asset.rollback(T2)).output, {"rolled_back": T2, "known": False})
        await self.fails("rolled_back", asset.prepare(T2, "transfer", ["bob", 1], "alice"))
        self.assertEqual((stub.ledger._locks, stub.prepared_transactions()), ({}, []))

    async def test_idempotent_commit(self) -> None:
        stub = await self.open_stub()
        asset = res(stub, "asset")
        await asset.prepare(T1, "transfer", ["bob", 1], "alice")
        first, twin = await defer.gatherResults([asset.commit(T1), asset.commit(T1)])  # the second while in flight
        again = await asset.commit(T1)
        self.assertEqual(first.to_wire(), again.to_wire())
        self.assertEqual(first.to_wire(), twin.to_wire())
        await self.fails("already_committed", asset.rollback(T1))
        await self.fails("already_committed", asset.prepare(T1, "transfer", ["bob", 1], "alice"))
        error = await self.fails("unknown_tx", asset.commit(T2))
        self.assertIn(T2, error.message)
        await self.fails("unknown_tx", res(stub, "hello").commit(T1))  # each resource is a participant of its own
        self.assertEqual(await self.height(stub), 1)
        self.assertEqual(balances(stub), {"alice": 99, "bob": 6})

    async def test_commit_and_rollback_in_the_same_round_as_a_prepare_wait_for_it(self) -> None:
        stub = await self.open_stub()
        asset = res(stub, "asset")
        await asset.prepare(T1, "transfer", ["bob", 1], "alice")
        blocker = res(stub, "hello").send_transaction("set", ["x", 1], "x")  # a round in flight: the rest queue
        prepared = asset.prepare(T1, "transfer", ["bob", 2], "alice")
        committed = asset.commit(T1)
        self.assertEqual((await prepared).output, 97)
        self.assertEqual((await committed).output, {"committed": T1, "outputs": [99, 97]})
        await blocker
        self.assertEqual(balances(stub), {"alice": 97, "bob": 8})


class LockTests(TxCase):
    async def test_conflicts_between_transactions_and_with_plain_operations(self) -> None:
        stub = await self.open_stub()
        hello, asset = res(stub, "hello"), res(stub, "asset")
        await asset.prepare(T1, "transfer", ["bob", 30], "alice")
        await hello.prepare(T1, "set", ["k", "v"], "x")
        # another transaction: refused on every locked key, and changes nothing
        error = await self.fails("locked", asset.prepare(T2, "transfer", ["carol", 1], "alice"))
        self.assertEqual(error.message, f"asset balance of 'alice' is locked by transaction {T1}")
        await self.fails("locked", asset.prepare(T2, "transfer", ["bob", 0], "dave"))
        error = await self.fails("locked", hello.prepare(T2, "set", ["k", "w"], "x"))
        self.assertEqual(error.message, f"hello key 'k' is locked by transaction {T1}")
        self.assertEqual([e["tx_id"] for e in stub.prepared_transactions()], [T1, T1])
        # plain writes and reads of locked keys fail, naming the transaction
        await self.fails("locked", asset.send_transaction("transfer", ["carol", 1], "alice"))
        await self.fails("locked", asset.send_transaction("transfer", ["bob", 0], "dave"))
        await self.fails("locked", asset.send_transaction("mint", ["bob", 1], "central"))
        error = await self.fails("locked", asset.get_data("alice", "x"))
        self.assertIn(T1, error.message)
        await self.fails("locked", asset.call("balanceOf", ["bob"], "x"))
        await self.fails("locked", hello.set_data("k", 1, "x"))
        await self.fails("locked", hello.call("get", ["k"], "x"))
        self.assertEqual(stub.ledger.read("hello", "getData", "", ["greeting"], "x"), "hello wecross")
        with self.assertRaises(StubError):
            stub.ledger.read("hello", "getData", "", ["k"], "x")
        # keys not locked are unaffected, by other transactions and plain operations alike
        self.assertEqual(await self.output(asset.prepare(T2, "transfer", ["erin", 0], "dave")), 0)
        self.assertEqual(await self.output(asset.call("balanceOf", ["frank"], "x")), 0)
        self.assertEqual(await self.output(hello.get_data("greeting", "x")), "hello wecross")
        result = await hello.send_transaction("set", ["other", 1], "x")
        self.assertEqual(result.block_number, 1)
        self.assertEqual(await self.output(asset.call("totalSupply", [], "x")), SUPPLY)
        # after the commit the keys are free again, and the state is the committed one
        await asset.commit(T1)
        await hello.commit(T1)
        self.assertEqual(await self.output(asset.prepare(T2, "transfer", ["carol", 70], "alice")), 0)
        await asset.rollback(T2)
        self.assertEqual(await self.output(asset.get_data("alice", "x")), 70)
        self.assertEqual(await self.output(hello.call("get", ["k"], "x")), "v")

    async def test_prepare_sees_writes_of_earlier_rounds_and_blocks_later_ones(self) -> None:
        stub = await self.open_stub()
        asset = res(stub, "asset")
        write = asset.send_transaction("transfer", ["bob", 50], "alice")  # in flight
        prepared = asset.prepare(T1, "transfer", ["bob", 50], "alice")  # next round: runs after the write
        late = asset.send_transaction("transfer", ["bob", 1], "alice")  # same round as the prepare, after it
        self.assertEqual((await write).output, 50)
        self.assertEqual((await prepared).output, 0)
        await self.fails("locked", late)
        await asset.commit(T1)
        self.assertEqual(balances(stub), {"bob": 105})


class RestartTests(TxCase):
    async def test_prepared_transactions_survive_a_restart(self) -> None:
        data_dir = Path(self.mktemp())
        stub = await self.open_stub(data_dir)
        await res(stub, "asset").prepare(T1, "transfer", ["bob", 30], "alice")
        await res(stub, "hello").prepare(T1, "set", ["greeting", None], "x")
        listed = stub.prepared_transactions()
        await stub.stop()

        again = await self.open_stub(data_dir)
        self.assertEqual(again.prepared_transactions(), listed)
        asset, hello = res(again, "asset"), res(again, "hello")
        await self.fails("locked", asset.call("balanceOf", ["alice"], "x"))
        await self.fails("locked", hello.get_data("greeting", "x"))
        await self.fails("locked", asset.send_transaction("transfer", ["x", 1], "bob"))
        await self.fails("locked", asset.prepare(T2, "transfer", ["x", 1], "bob"))
        # the tentative state came back too: the next step sees it
        self.assertEqual(await self.output(asset.prepare(T1, "transfer", ["carol", 70], "alice")), 0)
        committed = await asset.commit(T1)
        self.assertEqual(committed.output, {"committed": T1, "outputs": [70, 0]})
        await hello.commit(T1)
        self.assertEqual(balances(again), {"bob": 35, "carol": 70})
        self.assertIsNone(await self.output(hello.get_data("greeting", "x")))
        await again.stop()

        third = await self.open_stub(data_dir)
        self.assertEqual(third.prepared_transactions(), [])
        self.assertEqual((await res(third, "asset").commit(T1)).to_wire(), committed.to_wire())
        await self.fails("already_committed", res(third, "asset").prepare(T1, "transfer", ["x", 1], "bob"))
        self.assertEqual(await self.output(res(third, "asset").call("balanceOf", ["bob"], "x")), 35)

    async def test_rollback_survives_a_restart(self) -> None:
        data_dir = Path(self.mktemp())
        stub = await self.open_stub(data_dir)
        await res(stub, "asset").prepare(T1, "transfer", ["bob", 30], "alice")
        await res(stub, "asset").rollback(T1)
        await res(stub, "asset").rollback(T3)
        await stub.stop()
        again = await self.open_stub(data_dir)
        self.assertEqual(again.prepared_transactions(), [])
        self.assertEqual((await res(again, "asset").rollback(T1)).output, {"rolled_back": T1, "known": True})
        await self.fails("rolled_back", res(again, "asset").prepare(T3, "transfer", ["x", 1], "bob"))

    async def test_a_version_1_database_is_upgraded(self) -> None:
        data_dir = Path(self.mktemp())
        stub = await self.open_stub(data_dir)
        await res(stub, "asset").send_transaction("transfer", ["bob", 1], "alice")
        await stub.stop()
        with sqlite3.connect(data_dir / "chain.sqlite") as db:
            db.execute("DROP TABLE tx_prepared")
            db.execute("DROP TABLE tx_finished")
            db.execute("UPDATE meta SET v = X'01' WHERE k = 'schema_version'")
        db.close()
        again = await self.open_stub(data_dir)
        await res(again, "asset").prepare(T1, "transfer", ["bob", 1], "alice")
        self.assertEqual((await res(again, "asset").commit(T1)).block_number, 2)

    async def test_a_corrupt_prepared_record_is_refused(self) -> None:
        data_dir = Path(self.mktemp())
        stub = await self.open_stub(data_dir)
        await res(stub, "asset").prepare(T1, "transfer", ["bob", 1], "alice")
        await stub.stop()
        with sqlite3.connect(data_dir / "chain.sqlite") as db:
            db.execute("UPDATE tx_prepared SET record = X'c0'")
        db.close()
        broken = new_stub(data_dir)
        with self.assertRaises(StubError) as caught:
            await broken.start()
        self.assertIn("prepared record", caught.exception.message)
        await broken.stop()


class SimulatedChain:
    """A chain in simulation mode: every Deferred has fired when the call returns."""

    def __init__(self, data_dir: Path, now: float = 1_000_000.0, resources: list[dict[str, Any]] = RESOURCES
                 ) -> None:
        self.clock = task.Clock()
        self.clock.advance(now)
        self.stub = new_stub(data_dir, resources)
        self.stub.ledger.simulate(self.clock)
        self.run(self.stub.start())

    @staticmethod
    def run(d: Deferred[Any]) -> Any:
        """The result of an already fired Deferred; a StubError is raised."""
        box: list[Any] = []
        d.addBoth(box.append)
        assert box, "the Deferred has not fired"
        if isinstance(box[0], Exception) or hasattr(box[0], "raiseException"):
            box[0].raiseException()
        return box[0]

    def stop(self) -> None:
        self.run(self.stub.stop())


class HtlcTests(TestCase):
    def setUp(self) -> None:
        self.chain = SimulatedChain(Path(self.mktemp()))
        self.addCleanup(self.chain.stop)
        self.asset = res(self.chain.stub, "asset")
        self.secret = bytes(range(32))
        self.hash_lock = hashlib.sha256(self.secret).hexdigest()
        self.now = self.chain.clock.seconds()

    def fails(self, code: str, d: Deferred[Any]) -> StubError:
        with self.assertRaises(StubError) as caught:
            self.chain.run(d)
        self.assertEqual(caught.exception.code, code, caught.exception.message)
        return caught.exception

    def lock(self, htlc_id: str, amount: int = 30, timelock: float | None = None) -> Result:
        result: Result = self.chain.run(self.asset.lock(htlc_id, self.hash_lock, timelock or self.now + 100,
                                                        ["bob", amount], "alice"))
        return result

    def status(self, htlc_id: str) -> Any:
        return self.chain.run(self.asset.call("htlcStatus", [htlc_id], "x")).output

    def assert_conserved(self) -> None:
        self.assertEqual(sum(balances(self.chain.stub).values()) + escrowed(self.chain.stub), SUPPLY)

    def test_unlock_with_the_secret(self) -> None:
        locked = self.lock("h1")
        self.assertIsNone(check_write_proof(locked.to_wire(), expected_tx={
            "op": "htlc", "method": "lock", "args": ["h1", self.hash_lock, self.now + 100, "bob", 30],
            "sender": "alice"}))
        self.assertEqual(locked.output, {"state": "locked", "sender": "alice", "receiver": "bob", "amount": 30,
                                         "hash_lock": self.hash_lock, "timelock": self.now + 100})
        self.assertEqual(balances(self.chain.stub), {"alice": 70, "bob": 5})
        self.assert_conserved()
        self.assertEqual(self.chain.run(self.asset.call("totalSupply", [], "x")).output, SUPPLY)
        self.fails("bad_secret", self.asset.unlock("h1", "00" * 32, "bob"))
        self.fails("bad_args", self.asset.unlock("h1", "not hex", "bob"))
        self.assertEqual(self.status("h1")["state"], "locked")
        unlocked: Result = self.chain.run(self.asset.unlock("h1", self.secret.hex(), "anyone"))
        self.assertTrue(verify_write_proof(unlocked.to_wire()))
        self.assertEqual(unlocked.output["state"], "unlocked")
        self.assertEqual(unlocked.output["secret"], self.secret.hex())
        self.assertEqual(balances(self.chain.stub), {"alice": 70, "bob": 35})
        self.assert_conserved()
        self.fails("htlc_state", self.asset.unlock("h1", self.secret.hex(), "bob"))  # no double unlock
        self.chain.clock.advance(1000)
        self.fails("htlc_state", self.asset.timeout("h1", "alice"))  # nor a refund of what was paid
        read = self.chain.run(self.asset.call("htlcStatus", ["h1"], "x"))
        self.assertEqual(read.output, {**locked.output, "state": "unlocked", "secret": self.secret.hex()})
        self.assertIsNone(check_read_proof(read.to_wire(), expected_read={
            "resource": "asset", "op": "call", "method": "htlcStatus", "args": ["h1"]}))
        self.assertIsNone(self.status("unknown"))

    def test_too_late_and_refund_after_the_timelock(self) -> None:
        self.lock("h2", timelock=self.now + 10)
        self.fails("too_early", self.asset.timeout("h2", "alice"))
        self.chain.clock.advance(9.999)
        self.fails("too_early", self.asset.timeout("h2", "alice"))
        self.chain.clock.advance(0.001)  # the block's time reaches the time lock
        self.fails("too_late", self.asset.unlock("h2", self.secret.hex(), "bob"))
        refunded: Result = self.chain.run(self.asset.timeout("h2", "anyone"))
        self.assertTrue(verify_write_proof(refunded.to_wire()))
        self.assertEqual(refunded.output["state"], "refunded")
        self.assertEqual(balances(self.chain.stub), {"alice": 100, "bob": 5})
        self.fails("htlc_state", self.asset.timeout("h2", "alice"))
        self.fails("htlc_state", self.asset.unlock("h2", self.secret.hex(), "bob"))
        self.assert_conserved()

    def test_bad_requests(self) -> None:
        self.lock("h3")
        self.fails("htlc_state", self.asset.lock("h3", self.hash_lock, self.now + 5, ["bob", 1], "alice"))
        self.fails("insufficient_funds", self.asset.lock("h4", self.hash_lock, self.now + 5, ["bob", 71], "alice"))
        self.fails("bad_args", self.asset.lock("h4", "abc", self.now + 5, ["bob", 1], "alice"))
        self.fails("bad_args", self.asset.lock("h4", self.hash_lock, -1, ["bob", 1], "alice"))
        self.fails("bad_args", self.asset.lock("h4", self.hash_lock, True, ["bob", 1], "alice"))  # type: ignore
        self.fails("bad_args", self.asset.lock("h4", self.hash_lock, self.now + 5, ["bob", 0], "alice"))
        self.fails("bad_args", self.asset.lock("h4", self.hash_lock, self.now + 5, ["bob"], "alice"))
        self.fails("htlc_state", self.asset.unlock("nope", self.secret.hex(), "bob"))
        self.fails("unsupported", res(self.chain.stub, "hello").lock("h5", self.hash_lock, self.now + 5, ["b", 1],
                                                                   "alice"))
        self.assertEqual(balances(self.chain.stub), {"alice": 70, "bob": 5})

    def test_htlc_meets_2pc_locks(self) -> None:
        self.chain.run(self.asset.prepare(T1, "transfer", ["carol", 1], "alice"))
        error = self.fails("locked", self.asset.lock("h6", self.hash_lock, self.now + 5, ["bob", 1], "alice"))
        self.assertIn(T1, error.message)
        self.chain.run(self.asset.rollback(T1))
        self.lock("h6", amount=1)


class ConservationTests(TestCase):
    """Random interleavings of 2PC transactions, plain transfers and HTLCs never create or destroy value."""

    accounts = ("alice", "bob", "carol")
    resources = [RESOURCES[0], {"name": "asset", "kind": "asset", "initial": {"alice": 50, "bob": 30, "carol": 25}}]

    @staticmethod
    def step(asset: IResource, op: str, tx_id: str, sender: str, to: str, amount: int) -> Deferred[Result]:
        if op == "prepare":
            return asset.prepare(tx_id, "transfer", [to, amount], sender)
        if op == "commit":
            return asset.commit(tx_id)
        if op == "rollback":
            return asset.rollback(tx_id)
        return asset.send_transaction("transfer", [to, amount], sender)

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.sampled_from(["prepare", "prepare", "commit", "commit", "rollback", "transfer",
                                               "restart"]),
                              st.integers(0, 5), st.sampled_from(accounts), st.sampled_from(accounts),
                              st.integers(0, 30)), max_size=20))
    def test_total_balance_is_conserved(self, ops: list[tuple[str, int, str, str, int]]) -> None:
        data_dir = Path(tempfile.mkdtemp(prefix="wecross-tx-"))
        chain = SimulatedChain(data_dir, resources=self.resources)
        # A model of the committed balances: a transaction's transfers count only once it commits, in commit order.
        model: dict[str, int] = {"alice": 50, "bob": 30, "carol": 25}
        steps: dict[str, list[tuple[str, str, int]]] = {}
        try:
            for op, n, sender, to, amount in ops:
                if op == "restart":
                    chain.stop()
                    chain = SimulatedChain(data_dir, chain.clock.seconds(), self.resources)
                    continue
                tx_id = f"router-a:{n:032x}"
                prepared = [entry["tx_id"] for entry in chain.stub.prepared_transactions()]
                if op in ("commit", "rollback") and prepared and n < 4:  # mostly end a prepared one
                    tx_id = prepared[n % len(prepared)]
                try:
                    chain.run(self.step(res(chain.stub, "asset"), op, tx_id, sender, to, amount))
                except StubError as exc:
                    self.assertIn(exc.code, {"locked", "insufficient_funds", "unknown_tx", "rolled_back",
                                             "already_committed"})
                else:
                    transfers: list[tuple[str, str, int]] = []
                    if op == "prepare":
                        steps.setdefault(tx_id, []).append((sender, to, amount))
                    elif op == "transfer":
                        transfers = [(sender, to, amount)]
                    else:
                        transfers = steps.pop(tx_id, []) if op == "commit" else steps.pop(tx_id, []) and []
                    for source, target, value in transfers:
                        model[source] -= value
                        model[target] += value
                self.assertEqual(sum(balances(chain.stub).values()), SUPPLY)
                self.assertEqual(balances(chain.stub), {k: v for k, v in model.items() if v})
            for entry in chain.stub.prepared_transactions():
                chain.run(res(chain.stub, "asset").rollback(entry["tx_id"]))
            self.assertEqual((chain.stub.ledger._locks, chain.stub.prepared_transactions()), ({}, []))
            self.assertEqual(chain.run(res(chain.stub, "asset").call("totalSupply", [], "x")).output, SUPPLY)
        finally:
            chain.stop()
