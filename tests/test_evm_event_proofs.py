"""Proven EVM events and proven htlcStatus reads, on a real anvil.

Events: every event the stub reports carries the block's header (with its RLP), Merkle-Patricia proofs of its
transaction and receipt, and the log's position in the receipt; :func:`wecross.evm.checks.check_event` accepts
them against the block's real hash (taken from anvil, not from the stub) and names the check a tampered one fails.
Blocks with one and with several transactions, receipts with several logs, built-in and generic resources.

htlcStatus: the record of an HTLC is read with the eth_getProof of its six slots (and its strings' data slots);
:func:`wecross.evm.checks.check_read` rebuilds the record from them. Locked, unlocked (short and long secrets),
refunded and unknown HTLCs verify; a tampered field or proof fails with its check.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests import support
from wecross.evm import checks as evm_checks
from wecross.evm.abi import ARTIFACT_DIR
from wecross.evm.anvil import Anvil
from wecross.evm.checks import EvmCheckError, check_event, check_read
from wecross.stub.interfaces import StubSettings
from wecross.stub.loader import build_stub, discover

TX_A = "router-a:" + "0a" * 16
LONG_SENDER = "an account whose name is longer than thirty-two bytes"
LONG_RECEIVER = "and a receiver whose name is longer still, to take two data slots"
EVENT_CHECKS = ["header_linked", "header_rlp", "receipt_inclusion", "tx_inclusion", "log_matches", "event_matches"]


def flip(hex_text: str, at: int | None = None) -> str:
    """The hex string with one digit changed (in the middle unless told where)."""
    position = len(hex_text) // 2 if at is None else at
    digit = "0" if hex_text[position] != "0" else "1"
    return hex_text[:position] + digit + hex_text[position + 1:]


def tampered(wire: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    copied = copy.deepcopy(wire)
    change(copied)
    return copied


class AnvilBase(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.anvil = yield Anvil().start_in_thread()
        self.addCleanup(self.anvil.stop)
        self.work = Path(self.mktemp())
        self.work.mkdir(parents=True)
        account = Account.create()
        self.anvil.set_balance(account.address, 10**21)
        self.key_file = self.work / "router.key"
        self.key_file.write_text(account.key.hex() + "\n")
        self.stub = yield self.started([{"name": "hello", "kind": "kv", "initial": {"city": "Shenzhen"}},
                                        {"name": "asset", "kind": "asset", "issuer": "bank",
                                         "initial": {"alice": 1000}}], "payment.eth")
        self.hello = self.stub.resource("hello")
        self.asset = self.stub.resource("asset")

    @defer.inlineCallbacks
    def started(self, resources: list[dict[str, Any]], name: str) -> Any:
        settings = StubSettings(
            name="eth", zone="payment", type="evm",
            options={"rpc": self.anvil.url, "private_key_file": str(self.key_file), "deploy": True,
                     "poll_interval": 0.02, "receipt_timeout": 10},
            resources=resources)
        stub = build_stub(discover(), settings, self.work / name)
        yield stub.start()
        self.addCleanup(stub.stop)
        return stub

    def trusted_hash(self, number: Any) -> str:
        """What the entry router's header store would hold for that block: here, anvil's own answer."""
        if type(number) is not int:
            return "00" * 32
        block = self.anvil.rpc("eth_getBlockByNumber", [hex(number), False])
        return "00" * 32 if block is None else str(block["hash"])[2:]

    def chain_time(self) -> int:
        return int(self.anvil.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)


class EventBase(AnvilBase):
    def check(self, event: dict[str, Any], **what: Any) -> list[str]:
        return check_event(event, self.trusted_hash(event.get("block_number")), **what)

    def fails(self, check: str, event: dict[str, Any], **what: Any) -> None:
        try:
            passed = self.check(event, **what)
        except EvmCheckError as exc:
            self.assertEqual(exc.check, check, exc.message)
        else:
            self.fail(f"expected {check}, passed {passed}")

    @defer.inlineCallbacks
    def committed_transfers(self) -> Any:
        """A 2PC commit of two transfers: one receipt with three logs (Transfer, Transfer, TxCommitted)."""
        yield self.asset.prepare(TX_A, "transfer", ["bob", 10], "alice")
        yield self.asset.prepare(TX_A, "transfer", ["carol", 20], "alice")
        done = yield self.asset.commit(TX_A)
        return done


class HonestEvents(EventBase):
    @defer.inlineCallbacks
    def test_events_carry_proofs_that_verify(self) -> Any:
        written = yield self.hello.set_data("colour", "green", "alice")
        events = yield self.stub.events("hello", 0)
        self.assertEqual([e["args"]["key"] for e in events], ["city", "colour"])
        for event in events:
            proof = event["proof"]
            self.assertEqual(set(proof), {"kind", "header", "receipt", "tx", "log_position"})
            self.assertEqual(proof["header"]["number"], event["block_number"])
            self.assertIn("rlp", proof["header"]["extras"])
            self.assertEqual(proof["log_position"], 0)
            self.assertEqual(self.check(event, resource_kind="kv"), EVENT_CHECKS)
            self.assertEqual(self.check(event), EVENT_CHECKS)  # kind unknown: matched under the built-in ABIs
            self.assertEqual(self.check(event, resource_kind="kv", address=self.hello.address),
                             [*EVENT_CHECKS, "address_matches"])
        self.assertEqual(events[-1]["tx_hash"], written.tx_hash)
        bare = yield self.stub.events("hello", written.block_number, proofs=False)
        self.assertEqual(bare, [{k: v for k, v in events[-1].items() if k != "proof"}])

    @defer.inlineCallbacks
    def test_a_receipt_with_several_logs(self) -> Any:
        done = yield self.committed_transfers()
        events = yield self.stub.events("asset", done.block_number)
        self.assertEqual([e["name"] for e in events], ["Transfer", "Transfer", "TxCommitted"])
        self.assertEqual([e["proof"]["log_position"] for e in events], [0, 1, 2])
        self.assertEqual([e["log_index"] for e in events], [0, 1, 2])
        for event in events:
            self.assertEqual(self.check(event, resource_kind="asset", address=self.asset.address)[-2:],
                             ["event_matches", "address_matches"])
        self.assertEqual(events[1]["args"], {"from": "alice", "to": "carol", "amount": 20})

    @defer.inlineCallbacks
    def test_a_block_of_several_transactions_in_few_round_trips(self) -> Any:
        """Writes mined together (one block, transactions 0..3), then a window of events across many blocks:
        four batched requests (head, logs, blocks with receipts, raw transactions), whatever the number of logs."""
        self.anvil.rpc("evm_setAutomine", [False])
        writes = [self.hello.set_data(f"k{i}", f"v{i}", "alice") for i in range(4)]
        yield support.until(lambda: int(self.anvil.rpc("txpool_status")["pending"], 16) == 4)
        self.anvil.rpc("evm_mine")
        self.anvil.rpc("evm_setAutomine", [True])
        results = yield defer.gatherResults(writes)
        block = results[0].block_number
        self.assertEqual({r.block_number for r in results}, {block})
        for i in range(3):
            yield self.hello.set_data(f"later{i}", "x" * 40, "alice")
        batches: list[int] = []
        node = self.stub.node
        batch = node.batch

        def counted(calls: list[tuple[str, list[Any]]]) -> list[Any]:
            batches.append(len(calls))
            return batch(calls)

        self.patch(node, "batch", counted)
        node._sent.clear()  # as if another router had sent them: the raw transactions are fetched too
        events = yield self.stub.events("hello", 0)
        self.assertEqual(len(batches), 4, batches)
        same_block = [e for e in events if e["block_number"] == block]
        self.assertEqual(sorted(e["transaction_index"] for e in same_block), [0, 1, 2, 3])
        for event in events:
            self.assertEqual(self.check(event, resource_kind="kv"), EVENT_CHECKS)
        later = next(e for e in same_block if e["transaction_index"] > 0)
        self.fails("log_mismatch", tampered(later, lambda e: e["proof"].update(log_position=1)))

    @defer.inlineCallbacks
    def test_a_node_that_cannot_give_receipts_gives_events_without_proof(self) -> Any:
        from wecross.evm.rpc import RpcError

        node = self.stub.node
        batch = node.batch

        def refusing(method: str) -> Callable[[list[tuple[str, list[Any]]]], list[Any]]:
            def answer(calls: list[tuple[str, list[Any]]]) -> list[Any]:
                return [RpcError(name, -32601, "method not found", None) if name == method else found
                        for (name, _), found in zip(calls, batch(calls), strict=True)]
            return answer

        for method in ("eth_getBlockReceipts", "eth_getRawTransactionByHash"):
            self.patch(node, "batch", refusing(method))
            node._sent.clear()
            events = yield self.stub.events("hello", 0)
            self.assertEqual([e["args"]["key"] for e in events], ["city"])
            self.assertNotIn("proof", events[0])
            self.fails("no_proof", events[0])

    @defer.inlineCallbacks
    def test_a_generic_contract_carries_its_raw_log(self) -> Any:
        """The entry router has no ABI for a generic contract: the raw topics and data are proven, the owner's
        reading of them (name, args) is not, and the checks say so."""
        path = self.work / "Hello.json"
        path.write_text((ARTIFACT_DIR / "HelloWeCross.json").read_text())
        generic = yield self.started([{"name": "x", "kind": "contract", "abi": str(path),
                                       "address": self.hello.address}], "generic")
        yield self.hello.set_data("colour", "green", "alice")
        events = yield generic.events("x", 0)
        self.assertEqual(events[-1]["name"], "Set")
        self.assertTrue(events[-1]["topics"] and events[-1]["data"].startswith("0x"))
        for event in events:
            self.assertEqual(self.check(event, resource_kind="contract")[-1], "raw_log_matches")
            self.assertEqual(self.check(event)[-1], "event_matches")  # it is in fact the built-in contract
        event = events[-1]
        self.fails("event_mismatch", tampered(event, lambda e: e.update(data=flip(e["data"], -3))),
                   resource_kind="contract")
        self.fails("event_mismatch", tampered(event, lambda e: e["topics"].pop()), resource_kind="contract")
        self.fails("event_mismatch", tampered(event, lambda e: e.pop("topics")), resource_kind="contract")
        renamed = tampered(event, lambda e: e["args"].update(value="red"))
        self.assertEqual(self.check(renamed, resource_kind="contract")[-1], "raw_log_matches")  # unverifiable
        self.fails("event_mismatch", renamed, resource_kind="kv")


class TamperedEvents(EventBase):
    @defer.inlineCallbacks
    def test_tampering_is_caught(self) -> Any:
        yield self.hello.set_data("colour", "green", "alice")
        done = yield self.committed_transfers()
        [*_, event] = yield self.stub.events("hello", 0)
        transfers = yield self.stub.events("asset", done.block_number)
        first, second, _ = transfers
        older = (yield self.stub.events("hello", 0))[0]
        self.check(event, resource_kind="kv")

        def receipt(e: dict[str, Any]) -> dict[str, Any]:
            found: dict[str, Any] = e["proof"]["receipt"]
            return found

        other_receipt = older["proof"]["receipt"]
        cases: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], Any]]] = [
            ("event_mismatch", event, lambda e: e["args"].update(value="red")),
            ("event_mismatch", event, lambda e: e["args"].pop("value")),
            ("event_mismatch", event, lambda e: e.update(name="Deleted")),
            ("event_mismatch", first, lambda e: e["args"].update(amount=11)),
            ("event_mismatch", first, lambda e: e["args"].update(amount="10")),  # a string is not the number
            ("event_mismatch", first, lambda e: e.update(name="TxCommitted")),
            ("log_mismatch", second, lambda e: e["proof"].update(log_position=0)),
            ("log_mismatch", second, lambda e: e["proof"].update(log_position=3)),
            ("log_mismatch", second, lambda e: e["proof"].update(log_position="1")),
            ("log_mismatch", second, lambda e: e.update(log_index=0)),
            ("log_mismatch", second, lambda e: e.update(log_index=2)),
            ("log_mismatch", event, lambda e: e.update(address=self.asset.address)),
            ("receipt_proof", event, lambda e: receipt(e).update(value=flip(receipt(e)["value"]))),
            ("receipt_proof", event, lambda e: receipt(e)["nodes"].__setitem__(0, flip(receipt(e)["nodes"][0]))),
            ("receipt_proof", event, lambda e: e["proof"].update(receipt=copy.deepcopy(other_receipt))),
            ("receipt_proof", event, lambda e: e["proof"].pop("receipt")),
            ("receipt_proof", event, lambda e: e.update(transaction_index=1)),
            ("tx_hash", event, lambda e: e.update(tx_hash=older["tx_hash"])),
            ("tx_inclusion", event, lambda e: e["proof"]["tx"].update(value=flip(e["proof"]["tx"]["value"]))),
            ("tx_inclusion", event, lambda e: e["proof"].update(tx=copy.deepcopy(older["proof"]["tx"]))),
            ("header_hash", event, lambda e: e["proof"]["header"]["extras"].update(
                rlp=flip(e["proof"]["header"]["extras"]["rlp"]))),
            ("header_hash", event, lambda e: e["proof"]["header"].update(
                receipt_root=older["proof"]["header"]["receipt_root"])),
            ("header_mismatch", event, lambda e: e["proof"]["header"].update(hash=flip(e["proof"]["header"]["hash"]))),
            ("header_mismatch", event, lambda e: e.update(block_hash=flip(e["block_hash"]))),
            ("header_mismatch", event, lambda e: e.update(block_number=older["block_number"])),
            ("header_mismatch", event, lambda e: e["proof"].update(header=copy.deepcopy(older["proof"]["header"]))),
            ("no_proof", event, lambda e: e.pop("proof")),
            ("no_proof", event, lambda e: e["proof"].update(kind="state")),
            ("malformed", event, lambda e: e["proof"].pop("header")),
            ("malformed", event, lambda e: e.update(transaction_index=None)),
        ]
        for check, wire, change in cases:
            self.fails(check, tampered(wire, change), resource_kind="kv" if wire is event else "asset")
        # a genuine event of another contract, presented as one of this resource
        self.fails("address_mismatch", first, resource_kind="asset", address=self.hello.address)
        self.fails("event_mismatch", first, resource_kind="kv")  # the kv ABI does not describe an asset's log
        self.check(first, address=self.asset.address)


class HtlcReads(AnvilBase):
    SECRET = bytes(range(32))  # 32 bytes: stored as a long bytes value (a length word and one data slot)
    HASH = hashlib.sha256(SECRET).hexdigest()
    SHORT_SECRET = b"sesame"
    SHORT_HASH = hashlib.sha256(SHORT_SECRET).hexdigest()

    def check(self, wire: dict[str, Any], htlc_id: str) -> list[str]:
        return check_read(wire, self.trusted_hash(wire.get("block_number")), resource_kind="asset",
                          method="htlcStatus", args=[htlc_id])

    def fails(self, check: str, wire: dict[str, Any], htlc_id: str, what: str = "") -> None:
        try:
            self.check(wire, htlc_id)
        except EvmCheckError as exc:
            self.assertEqual(exc.check, check, f"{what}: {exc.message}")
        else:
            self.fail(f"expected {check} ({what}), passed")

    @defer.inlineCallbacks
    def status(self, htlc_id: str) -> Any:
        result = yield self.asset.call("htlcStatus", [htlc_id], "watcher")
        return result.to_wire()

    @defer.inlineCallbacks
    def test_every_state_verifies(self) -> Any:
        yield self.asset.send_transaction("mint", [LONG_SENDER, str(2**70)], "bank")
        timelock = self.chain_time() + 3600
        yield self.asset.lock("h1", self.HASH, timelock, ["bob", 100], "alice")
        yield self.asset.lock("h2", self.SHORT_HASH, timelock, [LONG_RECEIVER, 2**40], LONG_SENDER)
        yield self.asset.lock("h3", self.HASH, self.chain_time() + 60, ["bob", 7], "alice")
        locked = yield self.status("h1")
        record = {"state": "locked", "sender": "alice", "receiver": "bob", "amount": 100, "hash_lock": self.HASH,
                  "timelock": timelock}
        self.assertEqual(locked["output"], record)
        self.assertEqual(len(locked["proof"]["account"]["storageProof"]), evm_checks.HTLC_SLOTS)
        self.assertEqual(self.check(locked, "h1"),
                         ["header_linked", "header_rlp", "account_proof", "storage_proof", "value_matches"])
        signature = yield self.asset.call("htlcStatus(string)", ["h1"], "watcher")
        self.assertIn("value_matches", self.check(signature.to_wire(), "h1"))

        long_names = yield self.status("h2")
        self.assertEqual(long_names["output"]["receiver"], LONG_RECEIVER)
        self.assertEqual(len(long_names["proof"]["account"]["storageProof"]), evm_checks.HTLC_SLOTS + 2 + 3)
        self.assertIn("value_matches", self.check(long_names, "h2"))

        yield self.asset.unlock("h1", self.SECRET.hex(), "bob")
        yield self.asset.unlock("h2", self.SHORT_SECRET.hex(), "x")
        unlocked = yield self.status("h1")
        self.assertEqual(unlocked["output"], {**record, "state": "unlocked", "secret": self.SECRET.hex()})
        self.assertEqual(len(unlocked["proof"]["account"]["storageProof"]), evm_checks.HTLC_SLOTS + 1)
        self.assertIn("value_matches", self.check(unlocked, "h1"))
        short = yield self.status("h2")
        self.assertEqual(short["output"]["secret"], self.SHORT_SECRET.hex())
        self.assertIn("value_matches", self.check(short, "h2"))

        self.anvil.rpc("evm_increaseTime", [61])
        self.anvil.rpc("evm_mine")
        yield self.asset.timeout("h3", "alice")
        refunded = yield self.status("h3")
        self.assertEqual(refunded["output"]["state"], "refunded")
        self.assertNotIn("secret", refunded["output"])
        self.assertIn("value_matches", self.check(refunded, "h3"))

        unknown = yield self.status("nope")
        self.assertIsNone(unknown["output"])
        self.assertEqual({int(e["value"], 16) for e in unknown["proof"]["account"]["storageProof"]}, {0})
        self.assertIn("value_matches", self.check(unknown, "nope"))

    @defer.inlineCallbacks
    def test_tampering_is_caught(self) -> Any:
        timelock = self.chain_time() + 3600
        yield self.asset.lock("h1", self.HASH, timelock, ["bob", 100], "alice")
        locked = yield self.status("h1")
        yield self.asset.lock("h2", self.HASH, timelock, ["bob", 5], "alice")
        yield self.asset.unlock("h2", self.SECRET.hex(), "bob")
        unlocked = yield self.status("h2")
        unknown = yield self.status("nope")
        bases = {}
        for htlc_id in ("h1", "h2"):
            plan = evm_checks.read_plan("asset", "htlcStatus", [htlc_id])
            assert plan is not None
            bases[htlc_id] = plan.slot

        def output(**changes: Any) -> Callable[[dict[str, Any]], Any]:
            return lambda w: w["output"].update(changes)

        def entry(w: dict[str, Any], offset: int, htlc_id: str = "h1") -> dict[str, Any]:
            wanted = (bases[htlc_id] + offset) % 2**256
            found: dict[str, Any] = next(e for e in w["proof"]["account"]["storageProof"]
                                         if int(e["key"], 16) == wanted)
            return found

        def forge_amount(w: dict[str, Any]) -> None:
            entry(w, 2).update(value=hex(1000))
            w["output"]["amount"] = 1000

        def drop(w: dict[str, Any], offset: int, htlc_id: str = "h1") -> None:
            w["proof"]["account"]["storageProof"].remove(entry(w, offset, htlc_id))

        cases: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], Any]]] = [
            ("value_mismatch", locked, output(state="unlocked")),
            ("value_mismatch", locked, output(state="refunded")),
            ("value_mismatch", locked, output(amount=1000)),
            ("value_mismatch", locked, output(amount="1000")),
            ("value_mismatch", locked, output(sender="mallory")),
            ("value_mismatch", locked, output(receiver="mallory")),
            ("value_mismatch", locked, output(hash_lock=flip(self.HASH))),
            ("value_mismatch", locked, output(hash_lock=self.HASH.upper())),
            ("value_mismatch", locked, output(timelock=timelock + 1)),
            ("value_mismatch", locked, output(timelock=True)),
            ("value_mismatch", locked, output(secret=self.SECRET.hex())),
            ("value_mismatch", locked, lambda w: w.update(output=None)),
            ("value_mismatch", unlocked, lambda w: w["output"].pop("secret")),
            ("value_mismatch", unlocked, output(secret="ff" + self.SECRET.hex()[2:])),
            ("value_mismatch", unknown, lambda w: w.update(output=locked["output"])),
            ("storage_proof", locked, forge_amount),
            ("storage_proof", locked, lambda w: drop(w, 2)),
            ("storage_proof", locked, lambda w: drop(w, 4)),
            ("storage_proof", locked, lambda w: entry(w, 1)["proof"].__setitem__(-1, flip(entry(w, 1)["proof"][-1]))),
            ("key_mismatch", locked, lambda w: drop(w, 0)),
            ("header_hash", locked, lambda w: w["proof"]["header"].update(
                state_root=unlocked["proof"]["header"]["state_root"])),
        ]
        for number, (check, wire, change) in enumerate(cases):
            htlc_id = "h1" if wire is locked else "h2" if wire is unlocked else "nope"
            self.fails(check, tampered(wire, change), htlc_id, f"case {number}")
        for offset in (0, 3, 5):
            self.fails("storage_proof" if offset else "key_mismatch",
                       tampered(unlocked, lambda w, at=offset: drop(w, at, "h2")), "h2", f"slot +{offset}")
        # the secret's data slot is part of an unlocked HTLC's proof
        secret_data = int.from_bytes(keccak((bases["h2"] + 5).to_bytes(32, "big")), "big")
        self.fails("storage_proof", tampered(unlocked, lambda w: w["proof"]["account"]["storageProof"].remove(
            next(e for e in w["proof"]["account"]["storageProof"] if int(e["key"], 16) == secret_data))), "h2")
        # the genuine proof of another HTLC, or of the unknown one
        self.fails("key_mismatch", locked, "h2")
        self.fails("key_mismatch", unknown, "h1")

    @defer.inlineCallbacks
    def test_a_record_too_long_to_prove_comes_without_proof(self) -> Any:
        yield self.asset.send_transaction("mint", [LONG_SENDER, 500], "bank")
        yield self.asset.lock("h", self.HASH, self.chain_time() + 3600, [LONG_RECEIVER, 1], LONG_SENDER)
        self.patch(evm_checks, "MAX_STRING_SLOTS", 3)
        wire = yield self.status("h")
        self.assertEqual(wire["output"]["sender"], LONG_SENDER)
        self.assertNotIn("proof", wire)
        self.fails("no_proof", wire, "h")


class HtlcLayout(SynchronousTestCase):
    """The HTLC layout against values worked out by hand from Solidity's documented storage layout."""

    def test_slots_and_decoding(self) -> None:
        plan = evm_checks.read_plan("asset", "htlcStatus", ["h"])
        assert plan is not None
        base = int.from_bytes(keccak(keccak(b"h") + (8).to_bytes(32, "big")), "big")
        self.assertEqual(plan, evm_checks.ReadPlan(base, "htlc"))
        self.assertEqual(evm_checks.first_slots(plan), [base + i for i in range(6)])
        self.assertIsNone(evm_checks.read_plan("asset", "htlcStatus", []))
        self.assertIsNone(evm_checks.read_plan("asset", "htlcStatus", ["\ud800"]))
        self.assertIsNone(evm_checks.read_plan("kv", "htlcStatus", ["h"]))

        def short(text: bytes) -> int:
            return int.from_bytes(text.ljust(31, b"\0") + bytes([2 * len(text)]), "big")

        storage = {base: 1 | 1234 << 8, base + 1: 0xAB, base + 2: 5, base + 3: short(b"al"), base + 4: short(b"bo"),
                   base + 5: 0}
        self.assertEqual(evm_checks.more_slots(plan, storage), [])
        self.assertEqual(evm_checks.decode_value(plan, storage),
                         {"state": "locked", "sender": b"al", "receiver": b"bo", "amount": 5,
                          "hash_lock": (0xAB).to_bytes(32, "big"), "timelock": 1234})
        unlocked = {**storage, base: 2 | 1234 << 8, base + 5: 2 * 40 + 1}
        data = int.from_bytes(keccak((base + 5).to_bytes(32, "big")), "big")
        self.assertEqual(evm_checks.more_slots(plan, unlocked), [data, data + 1])
        with self.assertRaises(KeyError):
            evm_checks.decode_value(plan, unlocked)
        self.assertEqual(evm_checks.decode_value(plan, {**unlocked, data: 0, data + 1: 0})["secret"], bytes(40))
        self.assertIsNone(evm_checks.decode_value(plan, {base: 0}))
        for head in (4, 1 << 72 | 1, 5 << 8):  # an unknown state, bits beyond the time lock, a time lock alone
            with self.assertRaises(ValueError):
                evm_checks.decode_value(plan, {**storage, base: head})
        self.assertTrue(evm_checks.output_is(None, None))
        self.assertFalse(evm_checks.output_is(None, {}) or evm_checks.output_is({"state": "locked"}, None))
