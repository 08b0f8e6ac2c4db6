"""Read proofs on the embedded chain: reads name their block and prove every state key they touched.

The ledger/stub is driven directly (no overlay); tampering is done on the result's wire dict, as a relay would.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from wecross.chain.merkle import EMPTY_ROOT
from wecross.embedded import verify
from wecross.embedded.block import Header, encode
from wecross.embedded.resources import genesis_state
from wecross.embedded.state import (
    StateKey,
    StateProofError,
    StateSnapshot,
    StateTree,
    check_state_entry,
    decode_key,
    encode_key,
)
from wecross.embedded.stub import EmbeddedStub
from wecross.embedded.verify import READ_PROOF_CHECKS, check_read_proof
from wecross.stub.interfaces import IResource, StubSettings

RESOURCES: list[dict[str, Any]] = [
    {"name": "hello", "kind": "kv", "initial": {"greeting": "hello wecross", "n": [1, {"b": 2, "a": 1}]}},
    {"name": "asset", "kind": "asset", "initial": {"alice": 100, "bob": 5}, "issuer": "central"},
]


def get_data(resource: str, key: str) -> dict[str, Any]:
    return {"resource": resource, "op": "getData", "method": "getData", "args": [key]}


def call(resource: str, method: str, *args: Any) -> dict[str, Any]:
    return {"resource": resource, "op": "call", "method": method, "args": list(args)}


def snapshot_of(state: dict[StateKey, Any]) -> tuple[StateSnapshot, Any]:
    """A state tree built apart from the chain, and the value lookup its proofs need."""
    tree = StateTree((encode_key(key), encode(value)) for key, value in state.items())
    return tree.snapshot(), lambda key_bytes: encode(state[decode_key(key_bytes)])


def forged_header(chain_id: str, number: int, state_root: bytes) -> dict[str, Any]:
    return Header(chain_id, number, bytes(32), 0, EMPTY_ROOT, EMPTY_ROOT, state_root, 0).to_abstract().to_wire()


class ReadProofCase(TestCase):
    async def open_stub(self, data_dir: Path | None = None, resources: list[dict[str, Any]] | None = None
                        ) -> EmbeddedStub:
        settings = StubSettings(name="bank-a", zone="payment", type="embedded", options={},
                                resources=RESOURCES if resources is None else resources)
        stub = EmbeddedStub(settings, data_dir or Path(self.mktemp()))
        await stub.start()
        self.addCleanup(stub.stop)
        return stub

    def resource(self, stub: EmbeddedStub, name: str) -> IResource:
        found = stub.resource(name)
        assert found is not None
        return found

    async def read(self, stub: EmbeddedStub, expected: dict[str, Any]) -> dict[str, Any]:
        target = self.resource(stub, expected["resource"])
        if expected["op"] == "getData":
            result = await target.get_data(expected["args"][0], "reader")
        else:
            result = await target.call(expected["method"], expected["args"], "reader")
        wire: dict[str, Any] = result.to_wire()
        return wire

    async def proven(self, stub: EmbeddedStub, expected: dict[str, Any]) -> dict[str, Any]:
        """Read, and check the proof against the header the chain itself reports for the named block."""
        wire = await self.read(stub, expected)
        header = await stub.header(wire["block_number"])
        self.assertIsNone(check_read_proof(wire, expected_header_hash=header.hash, expected_read=expected))
        self.assertEqual(wire["proof"]["header"], header.to_wire())
        return wire

    def fails(self, check: str, wire: dict[str, Any], expected: dict[str, Any], header_hash: str | None = None
              ) -> None:
        failed = check_read_proof(wire, expected_header_hash=header_hash, expected_read=expected)
        self.assertIsNotNone(failed, f"expected {check} to fail")
        assert failed is not None
        self.assertEqual(failed[0], check, failed[1])


class ValidProofTests(ReadProofCase):
    async def test_get_data_present_and_absent(self) -> None:
        stub = await self.open_stub()
        present = await self.proven(stub, get_data("hello", "greeting"))
        self.assertEqual((present["output"], present["block_number"]), ("hello wecross", 0))
        self.assertEqual(present["proof"]["read"], get_data("hello", "greeting"))
        self.assertEqual(len(present["proof"]["state"]), 2)  # the resource's kind, then the key
        absent = await self.proven(stub, get_data("hello", "never-written"))
        self.assertIsNone(absent["output"])
        self.assertTrue(absent["proof"]["state"][1]["absent"])
        nested = await self.proven(stub, call("hello", "get", "n"))
        self.assertEqual(nested["output"], [1, {"a": 1, "b": 2}])

    async def test_balances_and_supply(self) -> None:
        stub = await self.open_stub()
        self.assertEqual((await self.proven(stub, call("asset", "balanceOf", "alice")))["output"], 100)
        self.assertEqual((await self.proven(stub, call("asset", "balanceOf", "nobody")))["output"], 0)
        self.assertEqual((await self.proven(stub, call("asset", "totalSupply")))["output"], 105)
        self.assertEqual((await self.proven(stub, get_data("asset", "bob")))["output"], 5)

    async def test_reads_follow_the_head_block(self) -> None:
        stub = await self.open_stub()
        hello, asset = self.resource(stub, "hello"), self.resource(stub, "asset")
        await hello.send_transaction("set", ["fresh", {"x": 1}], "w")
        await asset.send_transaction("transfer", ["carol", 100], "alice")  # alice's balance becomes no entry
        await hello.set_data("greeting", None, "w")  # a deleted key is absent again
        fresh = await self.proven(stub, get_data("hello", "fresh"))
        self.assertEqual((fresh["block_number"], fresh["output"]), (3, {"x": 1}))
        self.assertEqual((await self.proven(stub, call("asset", "balanceOf", "alice")))["output"], 0)
        self.assertEqual((await self.proven(stub, call("asset", "balanceOf", "carol")))["output"], 100)
        gone = await self.proven(stub, get_data("hello", "greeting"))
        self.assertIsNone(gone["output"])
        self.assertTrue(gone["proof"]["state"][1]["absent"])

    async def test_read_during_a_block_write_proves_the_previous_block(self) -> None:
        stub = await self.open_stub()
        hello = self.resource(stub, "hello")
        writing = hello.send_transaction("set", ["greeting", "changed"], "w")
        during = await self.proven(stub, get_data("hello", "greeting"))
        self.assertEqual((during["block_number"], during["output"]), (0, "hello wecross"))
        await writing
        after = await self.proven(stub, get_data("hello", "greeting"))
        self.assertEqual((after["block_number"], after["output"]), (1, "changed"))
        # the old proof stays valid for its block: it names block 0, not the head
        self.assertIsNone(check_read_proof(during, expected_header_hash=(await stub.header(0)).hash,
                                           expected_read=get_data("hello", "greeting")))

    async def test_reopened_chain_proves_against_its_loaded_head(self) -> None:
        data_dir = Path(self.mktemp())
        stub = await self.open_stub(data_dir)
        await self.resource(stub, "asset").send_transaction("mint", ["dave", 7], "central")
        await stub.stop()
        again = await self.open_stub(data_dir)
        wire = await self.proven(again, call("asset", "balanceOf", "dave"))
        self.assertEqual((wire["block_number"], wire["output"]), (1, 7))

    async def test_expected_chain_and_sender(self) -> None:
        stub = await self.open_stub()
        wire = await self.read(stub, get_data("hello", "greeting"))
        expected = {**get_data("hello", "greeting"), "chain": "payment.bank-a", "sender": "anyone"}
        self.assertIsNone(check_read_proof(wire, expected_read=expected))
        self.fails("read_mismatch", wire, {**expected, "chain": "payment.bank-b"})
        self.assertEqual(READ_PROOF_CHECKS, ("header_matches", "read_matches_request", "state_inclusion",
                                             "output_matches"))

    async def test_bad_expected_read_is_the_callers_error(self) -> None:
        stub = await self.open_stub()
        wire = await self.read(stub, get_data("hello", "greeting"))
        for bad in ({"resource": "hello", "op": "setData", "args": ["k"]}, {"op": "getData", "args": ["k"]},
                    {**get_data("hello", "k"), "extra": 1}, {"resource": "hello", "op": "call", "args": []}):
            with self.assertRaises(ValueError):
                check_read_proof(wire, expected_read=bad)


class TamperTests(ReadProofCase):
    async def setUp(self) -> None:  # type: ignore[override]
        self.stub = await self.open_stub()
        hello = self.resource(self.stub, "hello")
        await hello.send_transaction("set", ["k", "v"], "w")
        self.header_hash = (await self.stub.header(1)).hash
        self.expected = get_data("hello", "greeting")
        self.good = await self.read(self.stub, self.expected)
        self.assertIsNone(check_read_proof(self.good, expected_header_hash=self.header_hash,
                                           expected_read=self.expected))

    def tampered(self) -> dict[str, Any]:
        return copy.deepcopy(self.good)

    def assert_fails(self, check: str, wire: dict[str, Any], expected: dict[str, Any] | None = None) -> None:
        self.fails(check, wire, expected or self.expected, self.header_hash)

    def test_altered_output(self) -> None:
        wire = self.tampered()
        wire["output"] = "hello world"
        self.assert_fails("output_mismatch", wire)
        del wire["output"]
        self.assert_fails("output_mismatch", wire)

    def test_altered_proven_value(self) -> None:
        wire = self.tampered()
        wire["proof"]["state"][1]["value"] = encode("hello world").hex()
        self.assert_fails("state_inclusion", wire)
        wire["output"] = "hello world"  # a consistent lie is caught the same way
        self.assert_fails("state_inclusion", wire)

    def test_altered_proof_node(self) -> None:
        wire = self.tampered()
        side, digest = wire["proof"]["state"][1]["siblings"][0]
        wire["proof"]["state"][1]["siblings"][0] = [side, ("0" if digest[0] != "0" else "1") + digest[1:]]
        self.assert_fails("state_inclusion", wire)
        wire = self.tampered()
        wire["proof"]["state"][1]["index"] += 1
        self.assert_fails("state_inclusion", wire)

    def test_altered_header(self) -> None:
        wire = self.tampered()
        wire["proof"]["header"]["state_root"] = "00" * 32
        self.assert_fails("header_hash", wire)
        wire = self.tampered()
        wire["block_number"] = 0
        self.assert_fails("block_number", wire)

    def test_forged_world_is_caught_by_the_trusted_header(self) -> None:
        # A relay invents a whole state and a header that hashes correctly: only the header store catches it.
        state = dict(genesis_state(self.stub.ledger.contracts))
        state[("hello", "d", "greeting")] = "forged"
        snapshot, value_of = snapshot_of(state)
        wire = self.tampered()
        wire["output"] = "forged"
        wire["proof"]["header"] = forged_header("payment.bank-a", 1, snapshot.root)
        wire["proof"]["state"] = [snapshot.prove(encode_key(key), value_of)
                                  for key in (("hello", "m", "kind"), ("hello", "d", "greeting"))]
        self.assertIsNone(check_read_proof(wire, expected_read=self.expected))
        self.assert_fails("header_mismatch", wire)
        # a forged state naming a kind this router has no code for
        state[("hello", "m", "kind")] = "quantum"
        snapshot, value_of = snapshot_of(state)
        wire["proof"]["header"] = forged_header("payment.bank-a", 1, snapshot.root)
        wire["proof"]["state"] = [snapshot.prove(encode_key(("hello", "m", "kind")), value_of)]
        self.fails("unknown_kind", wire, self.expected)

    def test_absence_claimed_for_a_present_key(self) -> None:
        state = dict(genesis_state(self.stub.ledger.contracts))
        state[("hello", "d", "k")] = "v"  # the state of block 1
        snapshot, value_of = snapshot_of(state)
        self.assertEqual(snapshot.root.hex(), self.good["proof"]["header"]["state_root"])
        target = encode_key(("hello", "d", "greeting"))
        index = snapshot.keys.index(target)
        below = snapshot.prove(snapshot.keys[index - 1], value_of)
        above = snapshot.prove(snapshot.keys[index + 1], value_of)
        wire = self.tampered()
        wire["output"] = None
        wire["proof"]["state"][1] = {"key": target.hex(), "absent": True, "left": below, "right": above}
        self.assert_fails("state_absence", wire)
        # neighbours that lie about their positions to look adjacent are no longer under the root
        wire["proof"]["state"][1]["right"] = {**above, "index": below["index"] + 1}
        self.assert_fails("state_absence", wire)
        # one neighbour passed off as the first or the last leaf
        wire["proof"]["state"][1] = {"key": target.hex(), "absent": True, "left": None, "right": above}
        self.assert_fails("state_absence", wire)
        wire["proof"]["state"][1] = {"key": target.hex(), "absent": True, "left": below, "right": None}
        self.assert_fails("state_absence", wire)
        wire["proof"]["state"][1] = {"key": target.hex(), "absent": True, "left": None, "right": None}
        self.assert_fails("state_absence", wire)
        # neighbours on the wrong side of the key
        wire["proof"]["state"][1] = {"key": target.hex(), "absent": True, "left": above, "right": None}
        self.assert_fails("state_absence", wire)

    async def test_proof_of_another_read(self) -> None:
        self.assert_fails("read_mismatch", self.tampered(), get_data("hello", "k"))
        self.assert_fails("read_mismatch", self.tampered(), call("hello", "get", "greeting"))
        self.assert_fails("read_mismatch", self.tampered(), get_data("asset", "greeting"))
        # alice's balance relabelled as bob's: the proof lacks bob's balance
        alice = await self.read(self.stub, call("asset", "balanceOf", "alice"))
        alice["proof"]["read"]["args"] = ["bob"]
        self.assert_fails("state_incomplete", alice, call("asset", "balanceOf", "bob"))

    def test_missing_state_entries(self) -> None:
        wire = self.tampered()
        del wire["proof"]["state"][1]
        self.assert_fails("state_incomplete", wire)
        wire = self.tampered()
        del wire["proof"]["state"][0]
        self.assert_fails("state_incomplete", wire)

    def test_read_of_a_resource_the_block_lacks(self) -> None:
        # A true absence proof of the kind key: the chain had no such resource, so no output can be right.
        state = dict(genesis_state(self.stub.ledger.contracts))
        state[("hello", "d", "k")] = "v"
        snapshot, value_of = snapshot_of(state)
        wire = self.tampered()
        wire["output"] = None
        wire["proof"]["read"]["resource"] = "ghost"
        wire["proof"]["state"] = [snapshot.prove(encode_key(("ghost", "m", "kind")), value_of)]
        self.assert_fails("output_mismatch", wire, get_data("ghost", "greeting"))

    def test_malformed(self) -> None:
        wire = self.tampered()
        del wire["proof"]
        self.assert_fails("no_proof", wire)
        for mangle in (
            lambda w: w["proof"].pop("state"),
            lambda w: w["proof"]["state"].append("junk"),
            lambda w: w["proof"]["state"][1].__setitem__("key", "zz"),
            lambda w: w["proof"]["state"][1].__setitem__("value", None),
            lambda w: w["proof"]["state"][1].__setitem__("siblings", "nope"),
            lambda w: w["proof"]["state"][1].__setitem__("key", encode(["only", "two"]).hex()),
            lambda w: w["proof"]["header"].pop("extras"),
        ):
            wire = self.tampered()
            mangle(wire)
            self.assert_fails("malformed", wire)

    async def test_negative_zero_is_not_zero(self) -> None:
        """0.0 and -0.0 are equal in Python but encode differently: an output of -0.0 for a proven 0.0 is a lie."""
        await self.resource(self.stub, "hello").send_transaction("set", ["zero", 0.0], "w")
        expected = get_data("hello", "zero")
        wire = await self.read(self.stub, expected)
        header_hash = (await self.stub.header(wire["block_number"])).hash
        self.assertIsNone(check_read_proof(wire, expected_header_hash=header_hash, expected_read=expected))
        wire["output"] = -0.0
        self.fails("output_mismatch", wire, expected, header_hash)

    def test_unencodable_output(self) -> None:
        wire = self.tampered()
        wire["output"] = object()
        self.assert_fails("output_mismatch", wire)


class ReadCheckMemoTests(ReadProofCase):
    async def test_a_passed_check_is_remembered_for_the_identical_input_only(self) -> None:
        """The same read of the same block checked again is answered from the memo of passed checks (the entry
        router's hot path); any difference in the input, down to a value's type, is checked in full and refused."""
        stub = await self.open_stub()
        expected = call("asset", "balanceOf", "alice")
        wire = await self.read(stub, expected)
        header_hash = (await stub.header(wire["block_number"])).hash
        explained: list[object] = []
        real = verify._explain_read

        def counting(*args: Any) -> Any:
            explained.append(args)
            return real(*args)

        self.patch(verify, "_explain_read", counting)
        for _ in range(3):
            self.assertIsNone(check_read_proof(copy.deepcopy(wire), expected_header_hash=header_hash,
                                               expected_read=expected))
        self.assertEqual(len(explained), 1)
        self.assertEqual(wire["output"], 100)
        for output in (100.0, True, "100", 101):  # equal to 100 in Python, or not at all: each a new input
            lie = dict(wire, output=output)
            self.fails("output_mismatch", lie, expected, header_hash)
        without_output = {k: v for k, v in wire.items() if k != "output"}
        self.fails("output_mismatch", without_output, expected, header_hash)
        self.fails("read_mismatch", wire, call("asset", "balanceOf", "bob"), header_hash)
        self.fails("header_mismatch", wire, expected, "00" * 32)
        moved = copy.deepcopy(wire)
        moved["proof"]["state"][1]["index"] += 1
        self.fails("state_inclusion", moved, expected, header_hash)
        self.assertEqual(len(explained), 9)
        odd = dict(wire, output=(100,))  # not a wire value: never memoised, checked in full
        self.fails("output_mismatch", odd, expected, header_hash)
        self.assertIsNone(check_read_proof(wire, expected_header_hash=header_hash, expected_read=expected))
        self.assertEqual(len(explained), 10)


_KEY = st.tuples(st.sampled_from(["a", "kv", "z"]), st.sampled_from(["d", "b", "m"]), st.text(max_size=6))
_VALUE = st.one_of(st.integers(min_value=0, max_value=2**40), st.text(max_size=8), st.lists(st.booleans(), max_size=3))


class StateProofProperties(TestCase):
    @settings(max_examples=80, deadline=None)
    @given(st.dictionaries(_KEY, _VALUE, max_size=40), st.lists(_KEY, max_size=6), st.data())
    def test_every_key_proves_its_value_or_absence(self, state: dict[StateKey, Any], probes: list[StateKey],
                                                   data: st.DataObject) -> None:
        snapshot, value_of = snapshot_of(state)
        for key in [*list(state)[:6], *probes]:
            entry = snapshot.prove(encode_key(key), value_of)
            key_bytes, value_bytes = check_state_entry(entry, snapshot.root)
            self.assertEqual(key_bytes, encode_key(key))
            self.assertEqual(value_bytes, None if key not in state else encode(state[key]))
            # flipping any one hex digit of the entry breaks it
            leaves = [entry] if "value" in entry else [leaf for leaf in (entry["left"], entry["right"]) if leaf]
            if not leaves:
                continue
            leaf = data.draw(st.sampled_from(leaves))
            fields = ["key", "value"] + (["siblings"] if leaf["siblings"] else [])
            field = data.draw(st.sampled_from(fields))
            bad = copy.deepcopy(entry)
            target = bad if leaf is entry else bad["left" if leaf is entry.get("left") else "right"]
            if field == "siblings":
                position = data.draw(st.integers(0, len(leaf["siblings"]) - 1))
                side, digest = target["siblings"][position]
                target["siblings"][position] = [side, ("f" if digest[0] != "f" else "e") + digest[1:]]
            else:
                text = target[field]
                if not text:
                    continue
                position = data.draw(st.integers(0, len(text) - 1))
                target[field] = text[:position] + ("1" if text[position] != "1" else "2") + text[position + 1:]
            with self.assertRaises(StateProofError):
                check_state_entry(bad, snapshot.root)

    def test_empty_state_proves_absence(self) -> None:
        snapshot, value_of = snapshot_of({})
        entry = snapshot.prove(encode_key(("a", "d", "x")), value_of)
        self.assertEqual(entry["left"], None)
        self.assertEqual(check_state_entry(entry, EMPTY_ROOT), (encode_key(("a", "d", "x")), None))
        with self.assertRaises(StateProofError):
            check_state_entry(entry, bytes(32))
