"""State proofs of EVM reads on a real anvil: the stub's getData and call results carry the eth_getProof of the
slots holding the value and the header of the block read at; :func:`wecross.evm.checks.check_read` accepts
them against the block's real hash (taken from anvil, not from the stub) and names the check a tampered one fails.

Short strings (one slot), strings of 32 bytes and more (a length slot and data slots at keccak(slot) + i), missing
keys, non-ASCII keys and values, and the asset ledger's uint reads are all covered.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_account import Account
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from wecross.evm import checks as evm_checks
from wecross.evm.anvil import Anvil
from wecross.evm.checks import EvmCheckError, check_read
from wecross.stub.interfaces import StubSettings
from wecross.stub.loader import build_stub, discover

SHORT = "Shenzhen"
EDGE_31 = "a" * 31  # the longest string kept in its own slot
EDGE_32 = "b" * 32  # the shortest one kept in data slots
LONG = "The quick brown fox jumps over the lazy dog; " * 3  # 135 bytes: five data slots
UNICODE_KEY, UNICODE_VALUE = "城市", "深圳" * 10  # 60 bytes of UTF-8


def flip(hex_text: str, at: int | None = None) -> str:
    """The hex string with one digit changed (in the middle unless told where)."""
    position = len(hex_text) // 2 if at is None else at
    digit = "0" if hex_text[position] != "0" else "1"
    return hex_text[:position] + digit + hex_text[position + 1:]


class ReadProofBase(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.anvil = yield Anvil().start_in_thread()
        self.addCleanup(self.anvil.stop)
        work = Path(self.mktemp())
        work.mkdir(parents=True)
        account = Account.create()
        self.anvil.set_balance(account.address, 10**21)
        key_file = work / "router.key"
        key_file.write_text(account.key.hex() + "\n")
        settings = StubSettings(
            name="eth", zone="payment", type="evm",
            options={"rpc": self.anvil.url, "private_key_file": str(key_file), "deploy": True, "poll_interval": 0.02,
                     "receipt_timeout": 10},
            resources=[{"name": "hello", "kind": "kv", "initial": {"city": SHORT, "essay": LONG}},
                       {"name": "asset", "kind": "asset", "issuer": "bank", "initial": {"alice": 1000}}])
        self.stub = build_stub(discover(), settings, work / "payment.eth")
        yield self.stub.start()
        self.addCleanup(self.stub.stop)
        self.hello = self.stub.resource("hello")
        self.asset = self.stub.resource("asset")

    def trusted_hash(self, number: Any) -> str:
        """What the entry router's header store would hold for that block: here, anvil's own answer."""
        if not isinstance(number, int):
            return "00" * 32
        block = self.anvil.rpc("eth_getBlockByNumber", [hex(number), False])
        return "00" * 32 if block is None else str(block["hash"])[2:]

    def check(self, wire: dict[str, Any], kind: str = "kv", **what: Any) -> list[str]:
        return check_read(wire, self.trusted_hash(wire.get("block_number")), resource_kind=kind, **what)

    def fails(self, check: str, wire: dict[str, Any], kind: str = "kv", **what: Any) -> None:
        with self.assertRaises(EvmCheckError, msg=check) as caught:
            self.check(wire, kind, **what)
        self.assertEqual(caught.exception.check, check, caught.exception.message)

    @defer.inlineCallbacks
    def read(self, key: str) -> Any:
        result = yield self.hello.get_data(key, "alice")
        return result.to_wire()


class HonestReads(ReadProofBase):
    @defer.inlineCallbacks
    def test_strings_of_every_length_verify(self) -> Any:
        for key, value in (("edge31", EDGE_31), ("edge32", EDGE_32), (UNICODE_KEY, UNICODE_VALUE)):
            yield self.hello.set_data(key, value, "alice")
        head = int(self.anvil.rpc("eth_blockNumber"), 16)
        cases = [("city", SHORT), ("essay", LONG), ("edge31", EDGE_31), ("edge32", EDGE_32),
                 (UNICODE_KEY, UNICODE_VALUE), ("nowhere", "")]
        for key, value in cases:
            wire = yield self.read(key)
            self.assertEqual(wire["output"], value)
            self.assertEqual(wire["block_number"], head)  # read at one fixed block: the head
            proof = wire["proof"]
            self.assertEqual(proof["kind"], "state")
            self.assertEqual(proof["header"]["number"], head)
            self.assertIn("rlp", proof["header"]["extras"])
            self.assertEqual(proof["account"]["address"].lower(), self.hello.address.lower())
            slots = 1 + (len(value.encode()) + 31) // 32 if len(value.encode()) > 31 else 1
            self.assertEqual(len(proof["account"]["storageProof"]), slots, key)
            self.assertEqual(self.check(wire, key=key),
                             ["header_linked", "header_rlp", "account_proof", "storage_proof", "value_matches"])
            self.assertIn("address_matches", self.check(wire, key=key, address=self.hello.address))
        # call("get") is the same read, and is checked as a call
        result = yield self.hello.call("get", ["essay"], "bob")
        self.assertEqual(self.check(result.to_wire(), method="get", args=["essay"])[-1], "value_matches")

    @defer.inlineCallbacks
    def test_asset_reads_verify(self) -> Any:
        yield self.asset.send_transaction("mint", ["whale", str(2**70)], "bank")
        balance = yield self.asset.get_data("alice", "alice")
        self.assertEqual(balance.output, 1000)
        self.assertIn("value_matches", self.check(balance.to_wire(), "asset", key="alice"))
        whale = yield self.asset.call("balanceOf", ["whale"], "anyone")
        self.assertEqual(whale.output, str(2**70))  # beyond msgpack: a decimal string, still proven
        self.assertIn("value_matches", self.check(whale.to_wire(), "asset", method="balanceOf", args=["whale"]))
        supply = yield self.asset.call("totalSupply", [], "anyone")
        self.assertEqual(supply.output, str(1000 + 2**70))
        self.assertIn("value_matches", self.check(supply.to_wire(), "asset", method="totalSupply"))
        self.fails("value_mismatch", {**supply.to_wire(), "output": 1000}, "asset", method="totalSupply")
        # owner is an immutable: in the code, not in storage; no proof, and the check says it cannot be made
        owner = yield self.asset.call("owner", [], "anyone")
        self.assertIsNone(owner.proof)
        self.fails("unprovable", owner.to_wire(), "asset", method="owner")
        self.fails("unprovable", balance.to_wire(), "contract", key="alice")

    @defer.inlineCallbacks
    def test_a_value_too_long_to_prove_comes_without_proof(self) -> Any:
        self.patch(evm_checks, "MAX_STRING_SLOTS", 2)
        wire = yield self.read("essay")
        self.assertEqual(wire["output"], LONG)
        self.assertNotIn("proof", wire)
        self.fails("no_proof", wire, key="essay")
        self.assertIn("value_matches", self.check((yield self.read("city")), key="city"))


class TamperedReads(ReadProofBase):
    @defer.inlineCallbacks
    def test_tampering_is_caught(self) -> Any:
        short = yield self.read("city")
        long = yield self.read("essay")
        self.check(short, key="city")
        self.check(long, key="essay")

        def tampered(wire: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
            copied = copy.deepcopy(wire)
            change(copied)
            return copied

        def storage(wire: dict[str, Any], index: int = 0) -> dict[str, Any]:
            entry: dict[str, Any] = wire["proof"]["account"]["storageProof"][index]
            return entry

        def set_node(nodes: list[str], index: int) -> None:
            nodes[index] = flip(nodes[index])

        def set_value(wire: dict[str, Any], value: str, output: str) -> None:
            storage(wire)["value"] = value
            wire["output"] = output

        forged_word = hex(int.from_bytes(b"Beijing".ljust(31, b"\0") + bytes([14]), "big"))
        cases: list[tuple[str, str, dict[str, Any], Callable[[dict[str, Any]], Any]]] = [
            ("value_mismatch", "city", short, lambda w: w.update(output="Beijing")),
            ("value_mismatch", "essay", long, lambda w: w.update(output=LONG[:-1] + "!")),
            ("storage_proof", "city", short, lambda w: set_node(storage(w)["proof"], -1)),
            ("storage_proof", "city", short, lambda w: set_value(w, forged_word, "Beijing")),
            ("account_proof", "city", short, lambda w: set_node(w["proof"]["account"]["accountProof"], -1)),
            ("account_proof", "city", short, lambda w: set_node(w["proof"]["account"]["accountProof"], 0)),
            ("account_proof", "city", short, lambda w: w["proof"]["account"].update(
                storageHash=flip(w["proof"]["account"]["storageHash"]))),
            ("account_proof", "city", short, lambda w: w["proof"]["account"].update(accountProof=[])),
            ("header_hash", "city", short, lambda w: w["proof"]["header"].update(
                state_root=flip(w["proof"]["header"]["state_root"]))),
            ("header_hash", "city", short, lambda w: w["proof"]["header"]["extras"].update(
                rlp=flip(w["proof"]["header"]["extras"]["rlp"]))),
            ("header_mismatch", "city", short, lambda w: w["proof"]["header"].update(
                hash=flip(w["proof"]["header"]["hash"]))),
            ("header_mismatch", "city", short, lambda w: w.update(block_number=w["block_number"] - 1)),
            ("key_mismatch", "city", short, lambda w: w["proof"]["account"].update(storageProof=[])),
            ("no_proof", "city", short, lambda w: w.pop("proof")),
            ("malformed", "city", short, lambda w: w["proof"].pop("account")),
            # a long string: its data slots are proven too
            ("storage_proof", "essay", long, lambda w: set_node(storage(w, 3)["proof"], -1)),
            ("storage_proof", "essay", long, lambda w: w["proof"]["account"]["storageProof"].pop(2)),
            ("storage_proof", "essay", long, lambda w: storage(w, 5).update(value=hex(int(storage(w, 5)["value"],
                                                                                          16) ^ 1))),
        ]
        for check, key, wire, change in cases:
            self.fails(check, tampered(wire, change), key=key)
        # the right proof of another key: the slot asked for is not covered
        self.fails("key_mismatch", short, key="essay")
        self.fails("key_mismatch", long, key="city")
        self.fails("key_mismatch", short, key="City")
        # the proof of another account (the asset contract) when the resource's address is known
        self.fails("address_mismatch", short, key="city", address=self.asset.address)

    @defer.inlineCallbacks
    def test_a_proof_from_an_older_block_is_that_blocks_value(self) -> Any:
        """A relay may replay an older read: it verifies, as the value at that (older) block. Whether a read must be
        recent is the entry router's policy, by block_number; the proof cannot tell."""
        old = yield self.read("city")
        yield self.hello.set_data("city", "Beijing", "alice")
        new = yield self.read("city")
        self.assertGreater(new["block_number"], old["block_number"])
        self.assertEqual((old["output"], new["output"]), (SHORT, "Beijing"))
        self.check(old, key="city")
        self.check(new, key="city")
        # but an old proof with the new value is refused
        self.fails("value_mismatch", {**old, "output": "Beijing"}, key="city")


class Layout(SynchronousTestCase):
    """The layout helpers against values worked out by hand from Solidity's documented storage layout."""

    def test_slots_and_strings(self) -> None:
        from eth_utils.crypto import keccak

        self.assertEqual(evm_checks.mapping_slot(b"k", 0), int.from_bytes(keccak(b"k" + bytes(32)), "big"))
        plan = evm_checks.read_plan("kv", "get", ["k"])
        assert plan is not None
        self.assertEqual((plan.slot, plan.value_type), (evm_checks.mapping_slot(b"k", 0), "string"))
        self.assertIsNone(evm_checks.read_plan("kv", "get", [1]))
        self.assertIsNone(evm_checks.read_plan("asset", "totalSupply", ["x"]))
        self.assertIsNone(evm_checks.read_plan("contract", "get", ["k"]))
        self.assertEqual(evm_checks.read_plan("kv", "get(string)", ["k"]), plan)
        self.assertIsNone(evm_checks.read_plan("kv", "get(bytes)", ["k"]))
        short_word = int.from_bytes(b"abc".ljust(31, b"\0") + bytes([6]), "big")
        self.assertEqual(evm_checks.string_data_slots(7, short_word), [])
        self.assertEqual(evm_checks.decode_string(short_word, []), b"abc")
        self.assertEqual(evm_checks.decode_string(0, []), b"")
        first = int.from_bytes(keccak((7).to_bytes(32, "big")), "big")
        self.assertEqual(evm_checks.string_data_slots(7, 2 * 40 + 1), [first, first + 1])
        data = [int.from_bytes(b"x" * 32, "big"), int.from_bytes(b"y" * 8 + bytes(24), "big")]
        self.assertEqual(evm_checks.decode_string(2 * 40 + 1, data), b"x" * 32 + b"y" * 8)
        for word, words in ((2 * 40 + 1, data[:1]), (2 * 5 + 1, []), (64, [])):
            with self.assertRaises(ValueError):
                evm_checks.decode_string(word, words)
        with self.assertRaises(evm_checks.TooLong):
            evm_checks.string_data_slots(0, 2 * 32 * (evm_checks.MAX_STRING_SLOTS + 1) + 1)
        self.assertTrue(evm_checks.output_is(5, "5") and evm_checks.output_is(5, 5))
        self.assertFalse(evm_checks.output_is(1, True) or evm_checks.output_is(5, "0x5") or
                         evm_checks.output_is(b"a", 97))
