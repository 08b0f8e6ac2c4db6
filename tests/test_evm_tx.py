"""EVM chains as transaction-layer participants, on a real anvil: two-phase commit on the built-in kv and asset
contracts (tentative steps, locks, commit, rollback, their idempotence, a restart with a transaction prepared) and
HTLCs on the asset (unlock with the secret, a wrong secret, refund once the chain's clock passed the time lock).

Every hook's Result is checked the way an entry router checks a write: the proof against the block's hash, and
the proven calldata against :func:`wecross.evm.builtin.contract_call` of the operation.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet import defer

from tests import support
from tests.test_evm_stub import EvmStubBase
from wecross.evm.builtin import contract_call
from wecross.evm.checks import check_write
from wecross.stub.interfaces import (
    OP_HTLC_LOCK,
    OP_HTLC_TIMEOUT,
    OP_HTLC_UNLOCK,
    OP_TX_COMMIT,
    OP_TX_PREPARE,
    OP_TX_ROLLBACK,
    Result,
    StubError,
)

TX_A = "r1:" + "a" * 32
TX_B = "r1:" + "b" * 32
TX_C = "r2:" + "c" * 32


class TxBase(EvmStubBase):
    timeout = 30

    def verified(self, result: Result, kind: str, op: str, method: str, args: list[Any], sender: str = "") -> None:
        """The entry router's check of a transaction-layer write, given the operation as the router carries it."""
        name, call_args = contract_call(kind, op, method, args, sender)
        block = self.anvil.rpc("eth_getBlockByNumber", [hex(result.block_number), False])
        checks = check_write(result.to_wire(), block["hash"][2:], resource_kind=kind, method=name, args=call_args,
                             sender=sender)
        self.assertIn("tx_matches_request", checks)

    def height(self) -> int:
        return int(self.anvil.rpc("eth_blockNumber"), 16)

    def chain_time(self) -> int:
        return int(self.anvil.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)


class TwoPhaseCommit(TxBase):
    @defer.inlineCallbacks
    def test_prepare_then_commit(self) -> Any:
        """Steps accumulate on the state as the transaction changed it (bob spends what he only receives in the
        same transaction), everything they touch is locked until the commit, and the commit is one mined write."""
        stub = yield self.started()
        hello, asset = stub.resource("hello"), stub.resource("asset")
        started = self.chain_time()
        first = yield hello.prepare(TX_A, "set", ["k", "v1"], "alice")
        self.assertIsNone(first.output)
        self.verified(first, "kv", OP_TX_PREPARE, "set", [TX_A, ["k", "v1"]], "alice")
        yield hello.prepare(TX_A, "set", ["k", "v2"], "alice")
        yield hello.prepare(TX_A, "set", ["k2", "w"], "alice")
        moved = yield asset.prepare(TX_A, "transfer", ["bob", 300], "alice")
        self.verified(moved, "asset", OP_TX_PREPARE, "transfer", [TX_A, ["bob", 300]], "alice")
        yield asset.prepare(TX_A, "transfer", ["bob", "carol", 200], "bob")

        listed = stub.prepared_transactions()
        self.assertEqual([(e["tx_id"], e["resource"]) for e in listed], [(TX_A, "hello"), (TX_A, "asset")])
        kv, ledger = listed
        self.assertEqual([(step["method"], step["args"], step["sender"]) for step in kv["steps"]],
                         [("set", ["k", "v1"], None), ("set", ["k", "v2"], None), ("set", ["k2", "w"], None)])
        self.assertEqual(kv["locks"], ["key:k", "key:k2"])
        self.assertEqual(ledger["steps"], [
            {"method": "transfer", "args": ["alice", "bob", 300], "sender": "alice", "output": None},
            {"method": "transfer", "args": ["bob", "carol", 200], "sender": "bob", "output": None}])
        self.assertEqual(ledger["locks"], ["balance:alice", "balance:bob", "balance:carol"])
        self.assertGreaterEqual(kv["since"], started)

        # Locked while prepared, for reads and writes outside the transaction; other keys are not.
        yield self.assert_stub_error(hello.get_data("k", "x"), "locked",
                                     f"payment.eth.hello: key 'k' is locked by transaction {TX_A}")
        yield self.assert_stub_error(asset.call("balanceOf", ["carol"], "x"), "locked",
                                     f"balance of 'carol' is locked by transaction {TX_A}")
        got = yield hello.get_data("greeting", "x")
        self.assertEqual(got.output, "hi")

        committed = yield asset.commit(TX_A)
        self.assertEqual(committed.output, {"committed": TX_A, "outputs": [None, None]})
        self.assertEqual(committed.receipt["output"], committed.output)
        self.verified(committed, "asset", OP_TX_COMMIT, "", [TX_A])
        self.assertEqual([log["name"] for log in committed.receipt["logs"]], ["Transfer", "Transfer", "TxCommitted"])
        done = yield hello.commit(TX_A)
        self.verified(done, "kv", OP_TX_COMMIT, "", [TX_A])
        self.assertEqual(stub.prepared_transactions(), [])
        for key, value in (("k", "v2"), ("k2", "w")):
            got = yield hello.get_data(key, "x")
            self.assertEqual((got.output, got.proof["kind"]), (value, "state"))
        for account, balance in (("alice", 700), ("bob", 100), ("carol", 200)):
            got = yield asset.get_data(account, "x")
            self.assertEqual(got.output, balance)
        supply = yield asset.call("totalSupply", [], "x")
        self.assertEqual(supply.output, 1000)

        # Committing again answers the same Result (the same mined transaction), concurrently too.
        again = yield defer.gatherResults([asset.commit(TX_A), asset.commit(TX_A)])
        for result in again:
            self.assertEqual((result.tx_hash, result.block_number, result.output),
                             (committed.tx_hash, committed.block_number, committed.output))
            self.verified(result, "asset", OP_TX_COMMIT, "", [TX_A])
        yield self.assert_stub_error(asset.rollback(TX_A), "already_committed", TX_A)
        yield self.assert_stub_error(asset.prepare(TX_A, "transfer", ["bob", 1], "alice"), "tx_state",
                                     "already committed")

    @defer.inlineCallbacks
    def test_rollback_restores_and_is_idempotent(self) -> Any:
        stub = yield self.started()
        hello, asset = stub.resource("hello"), stub.resource("asset")
        yield hello.prepare(TX_A, "set", ["greeting", "bye"], "alice")
        yield asset.prepare(TX_A, "transfer", ["bob", 999], "alice")
        rolled = yield asset.rollback(TX_A)
        self.assertEqual(rolled.output, {"rolled_back": TX_A, "known": True})
        self.verified(rolled, "asset", OP_TX_ROLLBACK, "", [TX_A])
        yield hello.rollback(TX_A)
        self.assertEqual(stub.prepared_transactions(), [])
        got = yield hello.get_data("greeting", "x")
        self.assertEqual(got.output, "hi")
        got = yield asset.get_data("alice", "x")
        self.assertEqual(got.output, 1000)
        yield asset.send_transaction("transfer", ["bob", 1], "alice")  # unlocked

        again = yield asset.rollback(TX_A)
        self.assertEqual((again.tx_hash, again.output), (rolled.tx_hash, rolled.output))
        unknown = yield asset.rollback(TX_B)
        self.assertEqual((unknown.output, unknown.tx_hash), ({"rolled_back": TX_B, "known": False}, None))
        yield self.assert_stub_error(asset.commit(TX_A), "rolled_back", "rolled back")
        yield self.assert_stub_error(asset.commit(TX_B), "unknown_tx", "never prepared")
        height = self.height()
        yield self.assert_stub_error(hello.prepare(TX_A, "set", ["k", "v"], "alice"), "tx_state",
                                     f"transaction {TX_A} is already rolled back")
        self.assertEqual(self.height(), height)  # refused at gas estimation: a late prepare locks nothing

    @defer.inlineCallbacks
    def test_conflicts(self) -> Any:
        stub = yield self.started()
        hello, asset = stub.resource("hello"), stub.resource("asset")
        yield hello.prepare(TX_A, "set", ["k", "a"], "alice")
        yield asset.prepare(TX_A, "transfer", ["bob", 10], "alice")
        height = self.height()
        locked_k = f"key 'k' is locked by transaction {TX_A}"
        yield self.assert_stub_error(hello.prepare(TX_B, "set", ["k", "b"], "bob"), "locked", locked_k)
        yield self.assert_stub_error(hello.set_data("k", "plain", "bob"), "locked", locked_k)
        yield self.assert_stub_error(hello.send_transaction("set", ["k", "plain"], "bob"), "locked", locked_k)
        yield self.assert_stub_error(asset.prepare(TX_B, "transfer", ["carol", 1], "bob"), "locked",
                                     f"balance of 'bob' is locked by transaction {TX_A}")
        yield self.assert_stub_error(asset.send_transaction("transfer", ["dave", 1], "alice"), "locked", "alice")
        yield self.assert_stub_error(asset.send_transaction("mint", ["bob", 1], "bank"), "locked", "bob")
        self.assertEqual(self.height(), height)  # every refusal at gas estimation: nothing mined, nothing changed

        # A failing step leaves the transaction's earlier steps prepared; other keys and transactions go on.
        yield self.assert_stub_error(asset.prepare(TX_A, "transfer", ["carol", 991], "alice"), "insufficient_funds",
                                     "alice holds 990, cannot transfer 991")
        yield hello.prepare(TX_B, "set", ["other", "b"], "bob")
        self.assertEqual([(e["tx_id"], e["resource"], len(e["steps"])) for e in stub.prepared_transactions()],
                         [(TX_A, "hello", 1), (TX_A, "asset", 1), (TX_B, "hello", 1)])

        # Who may do what, and what is not a step.
        yield self.assert_stub_error(asset.prepare(TX_B, "transfer", ["alice", "bob", 1], "bob"), "forbidden",
                                     "only from its own account")
        yield self.assert_stub_error(asset.prepare(TX_B, "mint", ["bob", 1], "bank"), "unsupported", "transfer")
        yield self.assert_stub_error(hello.prepare(TX_B, "get", ["k"], "bob"), "unsupported", "set")
        yield self.assert_stub_error(hello.prepare(TX_B, "set", ["k"], "bob"), "bad_args", "[key, value]")
        yield self.assert_stub_error(hello.prepare("", "set", ["k", "v"], "bob"), "bad_args", "id")
        yield self.assert_stub_error(hello.send_transaction("prepareSet", [TX_C, "k", "v"], "bob"), "unknown_method")
        yield self.assert_stub_error(hello.send_transaction("commit", [TX_A], "bob"), "unknown_method")
        yield self.assert_stub_error(asset.call("txInfo", [TX_A], "bob"), "unknown_method")
        self.assertEqual(set(asset.info.methods), {"balanceOf", "totalSupply", "owner", "transfer", "mint"})

        yield hello.rollback(TX_A)
        got = yield hello.set_data("k", "plain", "bob")  # free again
        self.assertEqual(got.receipt["status"], "ok")

    @defer.inlineCallbacks
    def test_conflict_mined_on_chain(self) -> Any:
        """Two transactions racing for a key with a fixed gas limit (no estimation): both are mined, the second
        reverts on chain, and the replay of its block still tells it apart as 'locked'."""
        stub = yield self.started()
        fixed = yield self.started(options=self.options(gas_limit=400_000, deploy=False),
                                   resources=[{"name": "hello", "kind": "kv",
                                               "address": stub.resource("hello").address}],
                                   data_dir=self.work / "fixed")
        hello = fixed.resource("hello")
        # The stub's thread pool may submit either first: whichever is mined first wins, the other reverts.
        outcomes = yield defer.DeferredList([hello.prepare(TX_A, "set", ["k", "a"], "alice"),
                                             hello.prepare(TX_B, "set", ["k", "b"], "bob")], consumeErrors=True)
        self.assertEqual(sorted(ok for ok, _ in outcomes), [False, True])
        winner, loser = (TX_A, 1) if outcomes[0][0] else (TX_B, 0)
        error = outcomes[loser][1].value
        self.assertIsInstance(error, StubError)
        self.assertEqual(error.code, "locked")
        self.assertIn(f"locked by transaction {winner}", error.message)
        self.assertIn("reverted in block", error.message)
        self.assertEqual([e["tx_id"] for e in fixed.prepared_transactions()], [winner])

    @defer.inlineCallbacks
    def test_a_restarted_stub_lists_and_finishes_what_it_prepared(self) -> Any:
        stub = self.build()
        yield stub.start()
        yield stub.resource("hello").prepare(TX_A, "set", ["k", "v"], "alice")
        yield stub.resource("asset").prepare(TX_C, "transfer", ["bob", 5], "alice")
        yield stub.resource("hello").prepare(TX_C, "set", ["c", "x"], "alice")
        before = stub.prepared_transactions()
        yield stub.stop()

        again = yield self.started()  # same data_dir: the same contracts, reused
        self.assertEqual(again.resource("hello").address, stub.resource("hello").address)
        self.assertEqual(sorted(again.prepared_transactions(), key=repr), sorted(before, key=repr))
        yield self.assert_stub_error(again.resource("hello").get_data("k", "x"), "locked", TX_A)
        yield again.resource("hello").commit(TX_A)
        yield again.resource("asset").rollback(TX_C)
        self.assertEqual([(e["tx_id"], e["resource"]) for e in again.prepared_transactions()], [(TX_C, "hello")])
        got = yield again.resource("hello").get_data("k", "x")
        self.assertEqual(got.output, "v")

    @defer.inlineCallbacks
    def test_a_prepare_mined_after_its_timeout_is_listed(self) -> Any:
        """The prepare's answer is 'timeout' but the transaction is mined later: the stub keeps asking the contract
        about it, so the participant-side timeout still sees it and releases its locks."""
        stub = yield self.started(options=self.options(receipt_timeout=0.3))
        hello = stub.resource("hello")
        self.anvil.rpc("evm_setAutomine", [False])
        yield self.assert_stub_error(hello.prepare(TX_A, "set", ["k", "v"], "alice"), "timeout")
        self.assertEqual(stub._doubtful.keys(), {("hello", TX_A)})
        self.anvil.rpc("anvil_mine", ["0x1"])
        self.anvil.rpc("evm_setAutomine", [True])
        self.assertEqual(stub.prepared_transactions(), [])  # asks the contract again, in the background
        yield support.until(lambda: stub.prepared_transactions() != [])
        self.assertEqual(stub.prepared_transactions()[0]["locks"], ["key:k"])
        yield hello.rollback(TX_A)
        self.assertEqual((stub.prepared_transactions(), stub._doubtful), ([], {}))

    @defer.inlineCallbacks
    def test_a_generic_contract_takes_no_part(self) -> Any:
        stub = yield self.started()
        path = self.work / "Hello.json"
        from wecross.evm.abi import ARTIFACT_DIR

        path.write_text((ARTIFACT_DIR / "HelloWeCross.json").read_text())
        generic = yield self.started(resources=[{"name": "x", "kind": "contract", "abi": str(path),
                                                 "address": stub.resource("hello").address}],
                                     data_dir=self.work / "generic")
        yield self.assert_stub_error(generic.resource("x").prepare(TX_A, "set", ["k", "v"], "a"), "unsupported",
                                     "built-in")
        yield self.assert_stub_error(generic.resource("x").commit(TX_A), "unsupported")
        self.assertEqual(generic.prepared_transactions(), [])


class Htlc(TxBase):
    SECRET = bytes(range(32))
    HASH = hashlib.sha256(SECRET).hexdigest()

    @defer.inlineCallbacks
    def test_unlock_with_the_secret(self) -> Any:
        stub = yield self.started()
        asset = stub.resource("asset")
        timelock = self.chain_time() + 3600
        locked = yield asset.lock("h1", self.HASH, timelock + 0.5, ["bob", 100], "alice")
        record = {"state": "locked", "sender": "alice", "receiver": "bob", "amount": 100, "hash_lock": self.HASH,
                  "timelock": timelock + 1}
        self.assertEqual(locked.output, record)
        self.verified(locked, "asset", OP_HTLC_LOCK, "", ["h1", self.HASH, timelock + 0.5, ["bob", 100]], "alice")
        got = yield asset.get_data("alice", "x")
        self.assertEqual(got.output, 900)
        status = yield asset.call("htlcStatus", ["h1"], "x")
        self.assertEqual(status.output, record)

        height = self.height()
        yield self.assert_stub_error(asset.unlock("h1", "00" * 32, "bob"), "bad_secret", "'h1'")
        yield self.assert_stub_error(asset.timeout("h1", "alice"), "too_early", "'h1'", str(timelock + 1))
        yield self.assert_stub_error(asset.lock("h1", self.HASH, timelock, ["bob", 1], "alice"), "htlc_state",
                                     "already exists")
        self.assertEqual(self.height(), height)

        unlocked = yield asset.unlock("h1", "0x" + self.SECRET.hex(), "bob")
        self.assertEqual(unlocked.output, {**record, "state": "unlocked", "secret": self.SECRET.hex()})
        self.verified(unlocked, "asset", OP_HTLC_UNLOCK, "", ["h1", "0x" + self.SECRET.hex()])
        got = yield asset.get_data("bob", "x")
        self.assertEqual(got.output, 100)
        status = yield asset.call("htlcStatus", ["h1"], "x")
        self.assertEqual(status.output, unlocked.output)
        yield self.assert_stub_error(asset.unlock("h1", self.SECRET.hex(), "bob"), "htlc_state",
                                     "HTLC 'h1' is unlocked, not locked")
        yield self.assert_stub_error(asset.timeout("h1", "alice"), "htlc_state", "is unlocked")
        status = yield asset.call("htlcStatus", ["nope"], "x")
        self.assertIsNone(status.output)
        yield self.assert_stub_error(asset.unlock("nope", self.SECRET.hex(), "x"), "htlc_state",
                                     "there is no HTLC 'nope'")

    @defer.inlineCallbacks
    def test_refund_after_the_timelock(self) -> Any:
        stub = yield self.started()
        asset = stub.resource("asset")
        timelock = self.chain_time() + 600
        yield asset.lock("h2", "0x" + self.HASH, timelock, ["bob", 250], "alice")
        yield self.assert_stub_error(asset.timeout("h2", "alice"), "too_early")
        self.anvil.rpc("evm_increaseTime", [601])
        self.anvil.rpc("evm_mine")
        yield self.assert_stub_error(asset.unlock("h2", self.SECRET.hex(), "bob"), "too_late", "expired")
        refunded = yield asset.timeout("h2", "anyone")
        self.assertEqual(refunded.output, {"state": "refunded", "sender": "alice", "receiver": "bob", "amount": 250,
                                           "hash_lock": self.HASH, "timelock": timelock})
        self.verified(refunded, "asset", OP_HTLC_TIMEOUT, "", ["h2"])
        got = yield asset.get_data("alice", "x")
        self.assertEqual(got.output, 1000)
        yield self.assert_stub_error(asset.timeout("h2", "alice"), "htlc_state", "is refunded")
        yield self.assert_stub_error(asset.lock("h3", self.HASH, self.chain_time() - 1, ["bob", 1], "alice"),
                                     "too_late", "not after the chain's time")

    @defer.inlineCallbacks
    def test_htlcs_and_transaction_locks(self) -> Any:
        """An account a transaction holds cannot be escrowed from, but an unlock still pays into it: the HTLC's
        deadline does not wait on the transaction, and the transaction's debits stay covered."""
        stub = yield self.started()
        asset = stub.resource("asset")
        timelock = self.chain_time() + 600
        yield asset.lock("h4", self.HASH, timelock, ["bob", 400], "alice")
        yield asset.prepare(TX_A, "transfer", ["bob", "carol", 0], "bob")
        yield asset.prepare(TX_A, "transfer", ["carol", 600], "alice")
        yield self.assert_stub_error(asset.lock("h5", self.HASH, timelock, ["bob", 1], "alice"), "locked",
                                     f"balance of 'alice' is locked by transaction {TX_A}")
        yield asset.unlock("h4", self.SECRET.hex(), "bob")
        yield asset.commit(TX_A)
        for account, balance in (("alice", 0), ("bob", 400), ("carol", 600)):
            got = yield asset.get_data(account, "x")
            self.assertEqual(got.output, balance)

    @defer.inlineCallbacks
    def test_bad_arguments(self) -> Any:
        stub = yield self.started()
        asset, hello = stub.resource("asset"), stub.resource("hello")
        later = self.chain_time() + 600
        yield self.assert_stub_error(asset.lock("h", "12", later, ["bob", 1], "alice"), "bad_args", "32 bytes")
        yield self.assert_stub_error(asset.lock("h", "zz" * 32, later, ["bob", 1], "alice"), "bad_args", "hex")
        yield self.assert_stub_error(asset.lock("h", self.HASH, float("nan"), ["bob", 1], "alice"), "bad_args",
                                     "timelock")
        yield self.assert_stub_error(asset.lock("h", self.HASH, later, ["bob"], "alice"), "bad_args",
                                     "[receiver, amount]")
        yield self.assert_stub_error(asset.lock("h", self.HASH, later, ["bob", -1], "alice"), "bad_args", "amount")
        yield self.assert_stub_error(asset.lock("h", self.HASH, later, ["bob", 2000], "alice"), "insufficient_funds",
                                     "alice holds 1000, cannot lock 2000")
        yield self.assert_stub_error(asset.lock("h", self.HASH, later, ["bob", 0], "alice"), "bad_args", "positive")
        yield self.assert_stub_error(asset.unlock("h", "abc", "bob"), "bad_args", "even")
        yield self.assert_stub_error(hello.lock("h", self.HASH, later, ["bob", 1], "alice"), "unsupported", "asset")
