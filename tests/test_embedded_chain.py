"""The embedded chain: blocks, roots, proofs, resource semantics, persistence, integrity checks and batching."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from wecross.chain.merkle import EMPTY_ROOT, merkle_root
from wecross.embedded.block import Header, Receipt, Transaction, encode
from wecross.embedded.state import encode_key, state_root_of
from wecross.embedded.store import GenesisMismatchError, StoreError
from wecross.embedded.stub import EmbeddedStub
from wecross.embedded.verify import explain_write_proof, verify_write_proof
from wecross.stub.interfaces import IResource, IStub, Result, StubError, StubSettings

RESOURCES: list[dict[str, Any]] = [
    {"name": "hello", "kind": "kv", "initial": {"greeting": "hello wecross"}},
    {"name": "asset", "kind": "asset", "initial": {"alice": 100, "bob": 5}, "issuer": "central"},
]


def make_settings(resources: list[dict[str, Any]] | None = None, options: dict[str, Any] | None = None,
                  zone: str = "payment", name: str = "bank-a") -> StubSettings:
    return StubSettings(name=name, zone=zone, type="embedded", options=options or {},
                        resources=RESOURCES if resources is None else resources)


class ChainTestCase(TestCase):
    async def open_stub(self, data_dir: Path | None = None, **kwargs: Any) -> EmbeddedStub:
        stub = EmbeddedStub(make_settings(**kwargs), data_dir or Path(self.mktemp()))
        await stub.start()
        self.addCleanup(stub.stop)
        return stub

    async def send(self, stub: EmbeddedStub, resource: str, method: str, args: list[Any],
                   sender: str = "alice") -> Result:
        target = stub.resource(resource)
        assert target is not None
        result: Result = await target.send_transaction(method, args, sender)
        return result

    async def call(self, stub: EmbeddedStub, resource: str, method: str, args: list[Any],
                   sender: str = "alice") -> Any:
        target = stub.resource(resource)
        assert target is not None
        result: Result = await target.call(method, args, sender)
        return result.output

    async def height(self, stub: EmbeddedStub) -> int:
        state = await stub.chain_state()
        return int(state.height)

    async def fails(self, code: str, d: defer.Deferred[Any]) -> StubError:
        with self.assertRaises(StubError) as caught:
            await d
        self.assertEqual(caught.exception.code, code, caught.exception.message)
        return caught.exception


class GenesisTests(ChainTestCase):
    async def test_interfaces(self) -> None:
        stub = await self.open_stub()
        self.assertTrue(verifyObject(IStub, stub))
        for resource in stub.resources():
            self.assertTrue(verifyObject(IResource, resource))
        self.assertEqual(stub.chain_type, "embedded")
        self.assertEqual((stub.zone, stub.name), ("payment", "bank-a"))
        self.assertIsNone(stub.resource("nope"))
        asset = stub.resource("asset")
        assert asset is not None
        self.assertEqual(asset.info.kind, "asset")
        self.assertEqual(asset.info.methods, {"balanceOf": "read", "totalSupply": "read", "transfer": "write",
                                              "mint": "write", "htlcStatus": "read"})

    async def test_genesis_is_deterministic_from_config(self) -> None:
        one = await self.open_stub()
        two = await self.open_stub()
        state_one, state_two = await one.chain_state(), await two.chain_state()
        self.assertEqual(state_one.genesis_hash, state_two.genesis_hash)
        self.assertEqual(state_one.height, 0)
        self.assertEqual(state_one.head_hash, state_one.genesis_hash)
        # resource order in the config does not matter, the initial state does
        three = await self.open_stub(resources=list(reversed(RESOURCES)))
        self.assertEqual((await three.chain_state()).genesis_hash, state_one.genesis_hash)
        other = [RESOURCES[0], {**RESOURCES[1], "initial": {"alice": 101, "bob": 5}}]
        four = await self.open_stub(resources=other)
        self.assertNotEqual((await four.chain_state()).genesis_hash, state_one.genesis_hash)
        # so does the chain's name
        five = await self.open_stub(name="bank-b")
        self.assertNotEqual((await five.chain_state()).genesis_hash, state_one.genesis_hash)

    async def test_genesis_header(self) -> None:
        stub = await self.open_stub()
        header = await stub.header(0)
        self.assertEqual(header.number, 0)
        self.assertEqual(header.prev_hash, "00" * 32)
        self.assertEqual(header.timestamp, 0)
        self.assertEqual(header.tx_root, EMPTY_ROOT.hex())
        self.assertEqual(header.receipt_root, EMPTY_ROOT.hex())
        self.assertEqual(Header.from_wire(header.to_wire()).hash.hex(), header.hash)

    async def test_no_such_block(self) -> None:
        stub = await self.open_stub()
        for number in (1, -1, "0"):
            await self.fails("no_such_block", stub.header(number))  # type: ignore[arg-type]


class BlockTests(ChainTestCase):
    async def test_blocks_link_and_roots_match_recomputation(self) -> None:
        stub = await self.open_stub()
        await self.send(stub, "asset", "transfer", ["bob", 10])
        await self.send(stub, "hello", "set", ["k", {"b": [1, 2], "a": None}], sender="carol")
        await stub.resource("hello").set_data("k2", "v2", "dave")  # type: ignore[union-attr]
        self.assertEqual(await self.height(stub), 3)
        previous = await stub.header(0)
        for number in range(1, 4):
            header = await stub.header(number)
            self.assertEqual(header.prev_hash, previous.hash)
            self.assertEqual(header.number, number)
            self.assertGreaterEqual(header.timestamp, previous.timestamp)
            self.assertEqual(Header.from_wire(header.to_wire()).hash.hex(), header.hash)
            block = await stub.block(number)
            raw_txs = [bytes.fromhex(raw) for raw in block["raw_transactions"]]
            raw_receipts = [bytes.fromhex(raw) for raw in block["raw_receipts"]]
            self.assertEqual(merkle_root(raw_txs).hex(), header.tx_root)
            self.assertEqual(merkle_root(raw_receipts).hex(), header.receipt_root)
            self.assertEqual(len(raw_txs), header.extras["tx_count"])
            previous = header
        head = await stub.header(3)
        world = stub.ledger._world  # the in-memory state must be exactly what the head's state root commits to
        self.assertEqual(state_root_of(world.items()).hex(), head.state_root)

    async def test_write_result_carries_receipt_and_proofs(self) -> None:
        stub = await self.open_stub()
        result = await self.send(stub, "asset", "transfer", ["bob", 30])
        self.assertEqual(result.output, 70)
        self.assertEqual(result.block_number, 1)
        assert result.receipt is not None and result.proof is not None
        self.assertEqual(result.receipt["status"], "ok")
        self.assertEqual(result.receipt["tx_hash"], result.tx_hash)
        self.assertEqual(result.receipt["index"], 0)
        self.assertEqual(result.receipt["events"],
                         [{"name": "Transfer", "data": {"from": "alice", "to": "bob", "amount": 30}}])
        wire = result.to_wire()
        header = await stub.header(1)
        self.assertEqual(wire["proof"]["header"], header.to_wire())
        self.assertIsNone(explain_write_proof(wire, expected_header_hash=header.hash, expected_tx={
            "resource": "asset", "op": "sendTransaction", "method": "transfer", "args": ["bob", 30],
            "sender": "alice", "chain": "payment.bank-a"}))
        self.assertFalse(verify_write_proof(wire, expected_header_hash="00" * 32))
        self.assertFalse(verify_write_proof(wire, expected_tx={"args": ["bob", 31]}))
        self.assertFalse(verify_write_proof({**wire, "output": 71}))
        self.assertFalse(verify_write_proof({**wire, "block_number": 2}))
        self.assertFalse(verify_write_proof({**wire, "tx_hash": "ab" * 32}))
        self.assertFalse(verify_write_proof({**wire, "receipt": {**wire["receipt"], "output": 1}}))
        bad_header = {**wire["proof"]["header"], "state_root": "00" * 32}
        self.assertFalse(verify_write_proof({**wire, "proof": {**wire["proof"], "header": bad_header}}))
        bad_tx = {**wire["proof"]["tx"], "leaf": wire["proof"]["tx"]["leaf"][:-2] + "00"}
        self.assertFalse(verify_write_proof({**wire, "proof": {**wire["proof"], "tx": bad_tx}}))
        self.assertFalse(verify_write_proof({**wire, "proof": None}))
        self.assertFalse(verify_write_proof({}))
        # the proven transaction is the one that was asked for
        tx = Transaction.decode(bytes.fromhex(wire["proof"]["tx"]["leaf"]))
        self.assertEqual((tx.resource, tx.method, tx.args, tx.sender), ("asset", "transfer", ["bob", 30], "alice"))

    async def test_receipt_lookup_gives_the_same_proof(self) -> None:
        stub = await self.open_stub()
        result = await self.send(stub, "hello", "set", ["a", 1])
        assert result.tx_hash is not None
        again = await stub.receipt(result.tx_hash)
        assert again is not None
        self.assertEqual(again.to_wire(), result.to_wire())
        self.assertIsNone(await stub.receipt("ab" * 32))
        await self.fails("bad_args", stub.receipt("xyz"))

    async def test_call_and_get_data_make_no_block(self) -> None:
        stub = await self.open_stub()
        asset = stub.resource("asset")
        hello = stub.resource("hello")
        assert asset is not None and hello is not None
        for _ in range(20):
            await asset.call("balanceOf", ["alice"], "x")
            await asset.get_data("bob", "x")
            await hello.call("get", ["greeting"], "x")
            await hello.get_data("greeting", "x")
        self.assertEqual(await self.height(stub), 0)

    async def test_old_headers_come_from_disk(self) -> None:
        stub = await self.open_stub(options={"header_cache": 2})
        for i in range(5):
            await self.send(stub, "hello", "set", ["k", i])
        headers = [await stub.header(n) for n in range(6)]
        for previous, header in itertools.pairwise(headers):
            self.assertEqual(header.prev_hash, previous.hash)

    async def test_htlc_hooks_only_on_assets(self) -> None:
        stub = await self.open_stub()
        hello = stub.resource("hello")
        assert hello is not None
        for make in (lambda: hello.lock("h", "00" * 32, 1.0, ["bob", 1], "alice"),
                     lambda: hello.unlock("h", "s", "alice"), lambda: hello.timeout("h", "a")):
            error = await self.fails("unsupported", make())
            self.assertIn("only asset resources", error.message)


class ResourceTests(ChainTestCase):
    async def test_kv(self) -> None:
        stub = await self.open_stub()
        hello = stub.resource("hello")
        assert hello is not None
        self.assertEqual(await self.call(stub, "hello", "get", ["greeting"]), "hello wecross")
        self.assertIsNone(await self.call(stub, "hello", "get", ["missing"]))
        result = await self.send(stub, "hello", "set", ["name", "wecross-py"])
        self.assertIsNone(result.output)
        self.assertEqual(await self.call(stub, "hello", "get", ["name"]), "wecross-py")
        self.assertEqual((await hello.get_data("name", "x")).output, "wecross-py")
        written = await hello.set_data("n", [1, {"z": 1, "a": 2}], "bob")
        self.assertEqual(written.block_number, 2)
        self.assertEqual((await hello.get_data("n", "x")).output, [1, {"a": 2, "z": 1}])
        await self.send(stub, "hello", "set", ["name", None])  # null deletes
        self.assertIsNone(await self.call(stub, "hello", "get", ["name"]))

    async def test_asset(self) -> None:
        stub = await self.open_stub()
        asset = stub.resource("asset")
        assert asset is not None
        self.assertEqual(await self.call(stub, "asset", "balanceOf", ["alice"]), 100)
        self.assertEqual(await self.call(stub, "asset", "balanceOf", ["nobody"]), 0)
        self.assertEqual(await self.call(stub, "asset", "totalSupply", []), 105)
        await self.send(stub, "asset", "transfer", ["carol", 40])
        self.assertEqual((await asset.get_data("carol", "x")).output, 40)
        self.assertEqual((await asset.get_data("alice", "x")).output, 60)
        minted = await self.send(stub, "asset", "mint", ["dave", 7], sender="central")
        self.assertEqual(minted.output, 112)
        self.assertEqual(await self.call(stub, "asset", "totalSupply", []), 112)
        # transferring everything away leaves a zero balance (and no state entry)
        await self.send(stub, "asset", "transfer", ["alice", 40], sender="carol")
        self.assertEqual(await self.call(stub, "asset", "balanceOf", ["carol"]), 0)
        self.assertNotIn(("asset", "b", "carol"), dict(stub.ledger._world.items()))
        # to oneself is allowed and changes nothing
        self.assertEqual((await self.send(stub, "asset", "transfer", ["alice", 5])).output, 100)
        await self.fails("unsupported", asset.set_data("alice", 1000, "alice"))

    async def test_failed_transactions_change_nothing(self) -> None:
        stub = await self.open_stub()
        before = dict(stub.ledger._world.items())
        error = await self.fails("insufficient_funds", stub.resource("asset").send_transaction(  # type: ignore
            "transfer", ["carol", 101], "alice"))
        self.assertIn("100", error.message)
        await self.fails("forbidden", stub.resource("asset").send_transaction(  # type: ignore[union-attr]
            "mint", ["alice", 1], "alice"))
        self.assertEqual(dict(stub.ledger._world.items()), before)
        self.assertEqual(await self.height(stub), 0)

    async def test_no_issuer_means_no_mint(self) -> None:
        stub = await self.open_stub(resources=[{"name": "coin", "kind": "asset", "initial": {"a": 1}}])
        error = await self.fails("forbidden", stub.resource("coin").send_transaction(  # type: ignore[union-attr]
            "mint", ["a", 1], "a"))
        self.assertIn("no issuer", error.message)

    async def test_bad_args(self) -> None:
        stub = await self.open_stub()
        asset = stub.resource("asset")
        hello = stub.resource("hello")
        assert asset is not None and hello is not None
        cases = [
            asset.send_transaction("transfer", ["bob"], "alice"),
            asset.send_transaction("transfer", ["bob", -1], "alice"),
            asset.send_transaction("transfer", ["bob", True], "alice"),
            asset.send_transaction("transfer", ["bob", "5"], "alice"),
            asset.send_transaction("transfer", ["", 5], "alice"),
            asset.send_transaction("transfer", ["bob", 2**63], "alice"),
            asset.call("balanceOf", [], "alice"),
            asset.call("balanceOf", [7], "alice"),
            asset.call("totalSupply", ["x"], "alice"),
            hello.call("get", [""], "alice"),
            hello.send_transaction("set", ["k", object()], "alice"),
            hello.send_transaction("set", ["k", {1: "non-string key"}], "alice"),
            hello.send_transaction("set", ["k", "x" * 70000], "alice"),
            hello.send_transaction("set", "k", "alice"),  # type: ignore[arg-type]
            hello.get_data(5, "alice"),  # type: ignore[arg-type]
            asset.get_data("", "alice"),
        ]
        for d in cases:
            await self.fails("bad_args", d)
        error = await self.fails("bad_args", asset.send_transaction("transfer", ["bob"], "alice"))
        self.assertIn("transfer(to: account name, amount: non-negative integer)", error.message)
        self.assertIn("got 1", error.message)
        self.assertEqual(await self.height(stub), 0)

    async def test_unknown_method(self) -> None:
        stub = await self.open_stub()
        asset = stub.resource("asset")
        assert asset is not None
        error = await self.fails("unknown_method", asset.call("burn", [], "alice"))
        self.assertIn("balanceOf (read), totalSupply (read), transfer (write), mint (write)", error.message)
        error = await self.fails("unknown_method", asset.call("transfer", ["bob", 1], "alice"))
        self.assertIn("use sendTransaction", error.message)
        error = await self.fails("unknown_method", asset.send_transaction("balanceOf", ["bob"], "alice"))
        self.assertIn("use call", error.message)


class ConfigTests(TestCase):
    def test_bad_options_name_the_problem(self) -> None:
        cases: list[tuple[dict[str, Any], list[dict[str, Any]], str]] = [
            ({"max_block_txs": 0}, RESOURCES, "max_block_txs"),
            ({"blocktime": 1}, RESOURCES, "blocktime"),
            ({}, [{"name": "x", "kind": "nft"}], "unknown kind 'nft'"),
            ({}, [{"kind": "kv"}], "no 'name'"),
            ({}, [{"name": "a.b", "kind": "kv"}], "resource name 'a.b'"),
            ({}, [{"name": "x", "kind": "kv"}, {"name": "x", "kind": "asset"}], "configured twice"),
            ({}, [{"name": "x", "kind": "asset", "initial": {"a": -1}}], "option 'initial'"),
            ({}, [{"name": "x", "kind": "asset", "initial": {"a": 2**62, "b": 2**62}}], "adds up"),
            ({}, [{"name": "x", "kind": "asset", "issuer": 5}], "option 'issuer'"),
            ({}, [{"name": "x", "kind": "kv", "colour": "red"}], "unknown option(s) colour"),
            ({}, [{"name": "x", "kind": "kv", "initial": {"k": object()}}], "option 'initial'"),
        ]
        for options, resources, expected in cases:
            with self.subTest(expected=expected):
                with self.assertRaises(ValueError) as caught:
                    EmbeddedStub(make_settings(resources, options), Path(self.mktemp()))
                self.assertIn(expected, str(caught.exception))
                self.assertIn("payment.bank-a", str(caught.exception))


class PersistenceTests(ChainTestCase):
    async def build_history(self, data_dir: Path) -> tuple[Any, dict[Any, Any]]:
        stub = await self.open_stub(data_dir)
        await self.send(stub, "asset", "transfer", ["bob", 10])
        await self.send(stub, "hello", "set", ["k", "v"])
        await self.send(stub, "asset", "mint", ["erin", 3], sender="central")
        state = await stub.chain_state()
        world = dict(stub.ledger._world.items())
        await stub.stop()
        return state, world

    async def test_restart_keeps_height_state_and_hashes(self) -> None:
        data_dir = Path(self.mktemp())
        state, world = await self.build_history(data_dir)
        self.assertEqual(state.height, 3)
        again = await self.open_stub(data_dir)
        self.assertEqual(await again.chain_state(), state)
        self.assertEqual(dict(again.ledger._world.items()), world)
        self.assertEqual(await self.call(again, "asset", "balanceOf", ["bob"]), 15)
        # and it continues the chain from where it stopped
        result = await self.send(again, "asset", "transfer", ["bob", 1])
        self.assertEqual(result.block_number, 4)
        self.assertEqual((await again.header(4)).prev_hash, state.head_hash)
        # nonces continue too: no two transactions share a hash
        block = await again.block(4)
        self.assertEqual(block["transactions"][0]["nonce"], 3)

    async def test_genesis_mismatch_is_refused(self) -> None:
        data_dir = Path(self.mktemp())
        await self.build_history(data_dir)
        changed = [RESOURCES[0], {**RESOURCES[1], "issuer": "someone-else"}]
        stub = EmbeddedStub(make_settings(changed), data_dir)
        with self.assertRaises(GenesisMismatchError) as caught:
            await stub.start()
        self.assertIn(str(data_dir / "chain.sqlite"), caught.exception.message)
        self.assertIn("genesis", caught.exception.message)
        await stub.stop()

    async def test_other_chain_is_refused(self) -> None:
        data_dir = Path(self.mktemp())
        await self.build_history(data_dir)
        stub = EmbeddedStub(make_settings(name="bank-z"), data_dir)
        with self.assertRaises(GenesisMismatchError) as caught:
            await stub.start()
        self.assertIn("payment.bank-a", caught.exception.message)

    async def test_garbage_file_is_refused(self) -> None:
        data_dir = Path(self.mktemp())
        data_dir.mkdir(parents=True)
        (data_dir / "chain.sqlite").write_bytes(b"this is not a database" * 100)
        stub = EmbeddedStub(make_settings(), data_dir)
        with self.assertRaises(StoreError) as caught:
            await stub.start()
        self.assertIn(str(data_dir / "chain.sqlite"), caught.exception.message)
        self.assertIn("corrupt", caught.exception.message)
        # a stub that failed to start stops cleanly and refuses work
        await stub.stop()
        await self.fails("shutting_down", stub.resource("hello").call("get", ["k"], "x"))  # type: ignore

    def tamper(self, data_dir: Path, sql: str, params: tuple[Any, ...]) -> None:
        db = sqlite3.connect(str(data_dir / "chain.sqlite"))
        try:
            db.execute(sql, params)
            db.commit()
        finally:
            db.close()

    async def assert_refused(self, data_dir: Path, *fragments: str) -> None:
        stub = EmbeddedStub(make_settings(), data_dir)
        with self.assertRaises(StoreError) as caught:
            await stub.start()
        for fragment in (str(data_dir / "chain.sqlite"), *fragments):
            self.assertIn(fragment, caught.exception.message)

    async def test_tampered_header_is_refused(self) -> None:
        data_dir = Path(self.mktemp())
        await self.build_history(data_dir)
        db = sqlite3.connect(str(data_dir / "chain.sqlite"))
        raw = db.execute("SELECT header FROM blocks WHERE number = 2").fetchone()[0]
        db.close()
        header = Header.decode(raw)
        forged = Header(header.chain_id, 2, header.prev_hash, header.timestamp_ms + 1, header.tx_root,
                        header.receipt_root, header.state_root, header.tx_count)
        self.tamper(data_dir, "UPDATE blocks SET header = ? WHERE number = 2", (forged.encode(),))
        await self.assert_refused(data_dir, "block 2", "does not hash")

    async def test_broken_link_is_refused(self) -> None:
        data_dir = Path(self.mktemp())
        await self.build_history(data_dir)
        db = sqlite3.connect(str(data_dir / "chain.sqlite"))
        raw = db.execute("SELECT header FROM blocks WHERE number = 3").fetchone()[0]
        db.close()
        header = Header.decode(raw)
        forged = Header(header.chain_id, 3, b"\x11" * 32, header.timestamp_ms, header.tx_root,
                        header.receipt_root, header.state_root, header.tx_count)
        self.tamper(data_dir, "UPDATE blocks SET header = ?, hash = ? WHERE number = 3",
                    (forged.encode(), forged.hash))
        await self.assert_refused(data_dir, "block 3", "does not link")

    async def test_tampered_state_is_refused(self) -> None:
        data_dir = Path(self.mktemp())
        await self.build_history(data_dir)
        self.tamper(data_dir, "UPDATE state SET v = ? WHERE k = ?",
                    (encode(1_000_000), encode_key(("asset", "b", "alice"))))
        await self.assert_refused(data_dir, "state root")

    async def test_missing_transactions_are_refused(self) -> None:
        data_dir = Path(self.mktemp())
        await self.build_history(data_dir)
        self.tamper(data_dir, "DELETE FROM transactions WHERE block_number = ?", (2,))
        await self.assert_refused(data_dir, "transactions")

    async def test_failed_disk_write_leaves_the_chain_consistent(self) -> None:
        data_dir = Path(self.mktemp())
        stub = await self.open_stub(data_dir)
        store = stub.ledger._store
        real_append = store.append

        def broken(record: Any) -> None:
            store.append = real_append  # type: ignore[method-assign]
            raise OSError(28, "No space left on device")

        store.append = broken  # type: ignore[method-assign]
        error = await self.fails("storage_error", stub.resource("asset").send_transaction(  # type: ignore
            "transfer", ["bob", 50], "alice"))
        self.assertIn("No space left", error.message)
        self.flushLoggedErrors(OSError)
        self.assertEqual(await self.height(stub), 0)
        self.assertEqual(await self.call(stub, "asset", "balanceOf", ["alice"]), 100)
        result = await self.send(stub, "asset", "transfer", ["bob", 1])
        self.assertEqual(result.block_number, 1)
        state = await stub.chain_state()
        await stub.stop()
        again = await self.open_stub(data_dir)  # the state root check on load passes: nothing half-applied
        self.assertEqual(await again.chain_state(), state)


class BatchingTests(ChainTestCase):
    async def test_concurrent_writes_are_batched_and_durable(self) -> None:
        data_dir = Path(self.mktemp())
        stub = await self.open_stub(data_dir)
        asset = stub.resource("asset")
        assert asset is not None
        # All submitted in one reactor turn: the first starts block 1, the other 49 wait and share block 2.
        pending = [asset.send_transaction("transfer", [f"user{i}", 1], "alice") for i in range(50)]
        results: list[Result] = await defer.gatherResults(pending)
        self.assertEqual([r.block_number for r in results], [1] + [2] * 49)
        self.assertEqual([r.receipt["index"] for r in results], [0, *range(49)])  # type: ignore[index]
        self.assertEqual(len({r.tx_hash for r in results}), 50)
        for result in results:
            self.assertTrue(verify_write_proof(result.to_wire()))
        self.assertEqual([r.output for r in results], list(range(99, 49, -1)))
        await stub.stop()
        again = await self.open_stub(data_dir)
        self.assertEqual(await self.height(again), 2)
        self.assertEqual(len((await again.block(2))["transactions"]), 49)
        self.assertEqual(await self.call(again, "asset", "balanceOf", ["alice"]), 50)
        self.assertEqual(await self.call(again, "asset", "balanceOf", ["user49"]), 1)

    async def test_failures_inside_a_batch_only_fail_themselves(self) -> None:
        stub = await self.open_stub()
        asset = stub.resource("asset")
        assert asset is not None
        first = asset.send_transaction("transfer", ["bob", 1], "alice")  # block 1
        spend = asset.send_transaction("transfer", ["carol", 90], "alice")  # block 2: alice 99 -> 9
        overspend = asset.send_transaction("transfer", ["dave", 10], "alice")  # block 2: only 9 left
        other = asset.send_transaction("transfer", ["alice", 5], "bob")  # block 2
        self.assertEqual((await first).block_number, 1)
        self.assertEqual((await spend).block_number, 2)
        await self.fails("insufficient_funds", overspend)
        last = await other
        self.assertEqual((last.block_number, last.receipt["index"]), (2, 1))  # type: ignore[index]
        self.assertEqual(await self.call(stub, "asset", "balanceOf", ["alice"]), 14)
        self.assertEqual(await self.call(stub, "asset", "balanceOf", ["dave"]), 0)
        block = await stub.block(2)
        self.assertEqual(len(block["transactions"]), 2)
        self.assertEqual([Receipt.decode(bytes.fromhex(r)).index for r in block["raw_receipts"]], [0, 1])

    async def test_block_size_limit(self) -> None:
        stub = await self.open_stub(options={"max_block_txs": 5})
        hello = stub.resource("hello")
        assert hello is not None
        results = await defer.gatherResults([hello.send_transaction("set", [f"k{i}", i], "x") for i in range(12)])
        self.assertEqual([r.block_number for r in results], [1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4])

    async def test_pending_limit(self) -> None:
        stub = await self.open_stub(options={"max_pending": 3})
        hello = stub.resource("hello")
        assert hello is not None
        accepted = [hello.send_transaction("set", ["k", i], "x") for i in range(4)]  # 1 in flight + 3 queued
        await self.fails("overloaded", hello.send_transaction("set", ["k", 99], "x"))
        await defer.gatherResults(accepted)

    async def test_reads_see_only_durable_blocks(self) -> None:
        stub = await self.open_stub()
        hello = stub.resource("hello")
        assert hello is not None
        written = hello.send_transaction("set", ["greeting", "changed"], "x")
        # the block is still being written: reads answer from the last durable state
        self.assertEqual((await hello.call("get", ["greeting"], "x")).output, "hello wecross")
        await written
        self.assertEqual((await hello.call("get", ["greeting"], "x")).output, "changed")

    async def test_stop_lets_queued_writes_finish(self) -> None:
        data_dir = Path(self.mktemp())
        stub = await self.open_stub(data_dir)
        hello = stub.resource("hello")
        assert hello is not None
        writes = [hello.send_transaction("set", ["k", i], "x") for i in range(5)]
        stopped = stub.stop()
        await self.fails("shutting_down", hello.send_transaction("set", ["late", 1], "x"))
        results = await defer.gatherResults(writes)
        await stopped
        self.assertEqual(results[-1].block_number, 2)
        await self.fails("shutting_down", hello.call("get", ["k"], "x"))
        again = await self.open_stub(data_dir)
        self.assertEqual(await self.call(again, "hello", "get", ["k"]), 4)
