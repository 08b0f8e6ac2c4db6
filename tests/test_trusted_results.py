"""Trusted results end to end: the entry router checks every write's proofs against headers it trusts, and a relay
that alters anything is caught, with the check that failed named.

```
router-a (entry) -- router-b (relay, sometimes dishonest) -- router-c (serves z.ledger)
```

Real routers on 127.0.0.1 with mutual TLS. The dishonest relay is router-b with its forwarding wrapped: it changes
answers on their way back to router-a, as a compromised router in the path would.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from tests import support
from wecross.config import TrustSettings
from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.ipath import IPath

ROUTERS = {"router-a": {"zones": ["z"]}, "router-b": {"zones": ["z"]}, "router-c": {"zones": ["z"], "chain": "ledger"}}
LINKS = [("router-a", "router-b"), ("router-b", "router-c")]
CHAIN = "z.ledger"


def write(key: str, value: Any) -> Invocation:
    return Invocation(IPath.parse(f"{CHAIN}.hello"), "sendTransaction", "set", [key, value])


def read(key: str) -> Invocation:
    return Invocation(IPath.parse(f"{CHAIN}.hello"), "getData", "", [key])


class Base(TestCase):
    timeout = 60
    trust = TrustSettings()
    #: Routers that must have a route to the chain before a test starts.
    routed: tuple[str, ...] = ("router-a", "router-b")

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        work = Path(self.mktemp())
        work.mkdir()
        trust = self.trust
        self.net = support.Network(work, ROUTERS, LINKS,
                                   adjust=lambda rid, s: replace(s, trust=trust) if rid == "router-a" else s)
        self.addCleanup(self.net.stop)
        yield self.net.start()
        yield support.until(lambda: self.net.linked() and all(
            self.net.nodes[r].router.table.route(CHAIN) is not None for r in self.routed), timeout=30)

    @property
    def entry(self) -> Any:
        return self.net.nodes["router-a"].router

    def tamper(self, change: Callable[[dict[str, Any], Any], None], *,
               ops: tuple[str, ...] = ("sendTransaction",), at: str = "relay") -> None:
        """Make a router alter the answers for ``ops`` (``change(result, request_args)`` edits in place): the relay
        router-b on their way back, as a compromised router in the path would (its changes break the owner's
        signature), or the owner router-c before it signs them (a dishonest owner: only proofs can catch it)."""

        def alter(result: dict[str, Any], args: Any) -> dict[str, Any]:
            result = copy.deepcopy(result)
            change(result, args)
            return result

        if at == "relay":
            relay = self.net.nodes["router-b"].router
            forward = relay._forward

            def dishonest(out: Any, tried: Any) -> Any:
                d = forward(out, tried)
                if out.op in ops:
                    d.addCallback(alter, out.args)
                return d

            relay._forward = dishonest
            self.addCleanup(setattr, relay, "_forward", forward)
            return
        owner = self.net.nodes["router-c"].router
        run_local, answer_events = owner._run_local, owner._answer_events

        def dishonest_run(path: Any, op: str, method: str, args: list[Any], *rest: Any) -> Any:
            d = run_local(path, op, method, args, *rest)
            return d.addCallback(alter, args) if op in ops else d

        def dishonest_events(path: Any, args: list[Any], trail: Any) -> Any:
            d = answer_events(path, args, trail)
            return d.addCallback(alter, args) if "events" in ops else d

        owner._run_local, owner._answer_events = dishonest_run, dishonest_events
        self.addCleanup(setattr, owner, "_run_local", run_local)
        self.addCleanup(setattr, owner, "_answer_events", answer_events)

    @defer.inlineCallbacks
    def refused(self, invocation: Invocation, check: str) -> Any:
        failure = yield self.assertFailure(self.entry.invoke(invocation), RouterError)
        self.assertEqual(failure.code, "proof_invalid", failure.message)
        self.assertEqual(failure.details.get("check"), check, failure.message)
        self.assertIn(f"({check})", failure.message)
        return failure


class HonestPath(Base):
    @defer.inlineCallbacks
    def test_a_write_is_verified_against_a_trusted_header(self) -> Any:
        result = yield self.entry.invoke(write("k", "v"))
        verified = result["verified"]
        self.assertTrue(verified["proof"])
        self.assertIn("tx_inclusion", verified["checks"])
        self.assertIn("tx_matches_request", verified["checks"])
        owner = self.net.nodes["router-c"]
        header = yield owner.stubs.stubs()[CHAIN].header(result["block_number"])
        self.assertEqual(verified["header_hash"], header.hash)
        genesis = yield owner.stubs.stubs()[CHAIN].header(0)
        self.assertEqual(verified["trust"]["checkpoint"], genesis.hash)
        # No checkpoint configured: the genesis is the one router-c states in its signed gossip record.
        self.assertEqual(verified["trust"]["pinned_by"], "signed record of router-c")
        # The header chain is held from genesis up, and a second write only fetches what is new.
        store = self.net.nodes["router-a"].headers
        self.assertGreaterEqual(store.chains[CHAIN].height, result["block_number"])
        fetched = self.entry.trust.counters["headers_fetched"]
        again = yield self.entry.invoke(write("k2", "v2"))
        self.assertTrue(again["verified"]["proof"])
        self.assertLessEqual(self.entry.trust.counters["headers_fetched"] - fetched,
                             again["block_number"] - result["block_number"])

    @defer.inlineCallbacks
    def test_reads_are_verified_against_state_proofs(self) -> Any:
        result = yield self.entry.invoke(Invocation(IPath.parse(f"{CHAIN}.asset"), "call", "balanceOf", ["alice"]))
        self.assertEqual(result["output"], 1000)
        self.assertTrue(result["verified"]["proof"], result["verified"])
        self.assertIn("state_inclusion", result["verified"]["checks"])
        yield self.entry.invoke(write("k", "v"))
        result = yield self.entry.invoke(read("k"))
        self.assertEqual(result["output"], "v")
        self.assertEqual(result["verified"]["block"], result["block_number"])
        result = yield self.entry.invoke(read("never-written"))
        self.assertIsNone(result["output"])
        self.assertTrue(result["verified"]["proof"])

    @defer.inlineCallbacks
    def test_a_read_of_a_trusted_block_is_checked_at_once(self) -> Any:
        """Once its block's header is trusted, a read's answer is checked right in the callback, not through a
        fired Deferred the caller's then waits on (every forwarded read takes this path), with the same checks."""
        yield self.entry.invoke(read("k"))  # trusts the header of the block it names
        trust = self.entry.trust
        answers: list[Any] = []
        real = trust.verify

        def recording(result: dict[str, Any], invocation: Invocation) -> Any:
            answers.append(real(result, invocation))
            return answers[-1]

        trust.verify = recording
        self.addCleanup(delattr, trust, "verify")
        again = yield self.entry.invoke(read("k"))
        self.assertIsInstance(answers[0], dict)
        self.assertTrue(again["verified"]["proof"])
        self.assertIn("state_inclusion", again["verified"]["checks"])

    @defer.inlineCallbacks
    def test_rest_answers_leave_the_checked_proof_out_unless_asked(self) -> Any:
        from io import BytesIO

        from twisted.internet import reactor
        from twisted.web.client import FileBodyProducer
        from twisted.web.http_headers import Headers

        port = self.net.nodes["router-a"].rest_port
        agent = Agent(reactor)
        for query, present in (("", False), ("?proof=1", True)):
            response = yield agent.request(
                b"POST", f"http://127.0.0.1:{port}/z/ledger/asset/call{query}".encode(),
                Headers({b"Content-Type": [b"application/json"]}),
                FileBodyProducer(BytesIO(b'{"method": "balanceOf", "args": ["alice"]}')))
            data = json.loads((yield readBody(response)))["data"]
            self.assertTrue(data["verified"]["proof"])
            self.assertEqual("proof" in data, present)
        response = yield agent.request(b"POST", f"http://127.0.0.1:{port}/z/ledger/asset/call?proof=maybe".encode(),
                                       Headers({b"Content-Type": [b"application/json"]}),
                                       FileBodyProducer(BytesIO(b'{"method": "balanceOf", "args": ["alice"]}')))
        self.assertEqual(response.code, 400)
        yield readBody(response)

    @defer.inlineCallbacks
    def test_rest_serves_trusted_headers(self) -> Any:
        result = yield self.entry.invoke(write("k", "v"))
        port = self.net.nodes["router-a"].rest_port
        from twisted.internet import reactor

        agent = Agent(reactor)
        response = yield agent.request(b"GET", f"http://127.0.0.1:{port}/chains/z/ledger/headers/"
                                               f"{result['block_number']}".encode())
        body = json.loads((yield readBody(response)))
        self.assertEqual(response.code, 200, body)
        self.assertEqual(body["data"]["header"]["hash"], result["verified"]["header_hash"])
        self.assertEqual(body["data"]["trust"]["sources"], ["router-c"])
        response = yield agent.request(b"GET", f"http://127.0.0.1:{port}/chains".encode())
        body = json.loads((yield readBody(response)))
        self.assertEqual(body["data"]["trusted_headers"][0]["chain"], CHAIN)
        self.assertGreaterEqual(body["data"]["verification"]["verified"], 1)
        response = yield agent.request(b"GET", f"http://127.0.0.1:{port}/chains/z/ledger/headers/x".encode())
        body = json.loads((yield readBody(response)))
        self.assertEqual(response.code, 400)
        self.assertEqual(body["error"]["code"], "bad_request")


class Events(Base):
    """``GET /{zone}/{chain}/{resource}/events``: events of a resource behind another router, as a long poll."""

    @defer.inlineCallbacks
    def get(self, path: str) -> Any:
        from twisted.internet import reactor

        port = self.net.nodes["router-a"].rest_port
        response = yield Agent(reactor).request(b"GET", f"http://127.0.0.1:{port}{path}".encode())
        body = json.loads((yield readBody(response)))
        return response.code, body

    @defer.inlineCallbacks
    def test_events_and_long_poll(self) -> Any:
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        written = yield self.entry.invoke(write("k", "v"))
        code, body = yield self.get("/z/ledger/hello/events?from_block=0")
        self.assertEqual(code, 200, body)
        events = body["data"]["events"]
        self.assertTrue(events)
        self.assertEqual(events[-1]["block_number"], written["block_number"])
        self.assertEqual(events[-1]["tx_hash"], written["tx_hash"])
        self.assertTrue(all(e["verified"]["proof"] for e in events), events[-1].get("verified"))
        self.assertIn("event_matches", events[-1]["verified"]["checks"])
        next_block = body["data"]["next_block"]
        self.assertEqual(next_block, written["block_number"] + 1)
        # Nothing new: the poll waits, and answers as soon as a write lands.
        started = reactor.seconds()
        later = deferLater(reactor, 0.3, lambda: self.entry.invoke(write("k2", "v2")))
        code, body = yield self.get(f"/z/ledger/hello/events?from_block={next_block}&wait=5")
        yield later
        self.assertEqual(code, 200, body)
        self.assertEqual(len(body["data"]["events"]), 1)
        self.assertLess(reactor.seconds() - started, 4.0)
        # A wait that ends with nothing says where to continue.
        code, body = yield self.get(f"/z/ledger/hello/events?from_block={next_block + 1}&wait=0.2")
        self.assertEqual((code, body["data"]["events"], body["data"]["next_block"]), (200, [], next_block + 1))
        code, body = yield self.get("/z/ledger/hello/events?from_block=x")
        self.assertEqual((code, body["error"]["code"]), (400, "bad_request"))
        code, body = yield self.get("/z/ledger/hello/events?wait=600")
        self.assertEqual((code, body["error"]["code"]), (400, "bad_request"))


    @defer.inlineCallbacks
    def test_a_relay_altering_an_event_is_caught(self) -> Any:
        yield self.entry.invoke(write("k", "v"))

        def change(result: dict[str, Any], args: Any) -> None:
            for event in result["output"]["events"]:
                event["args"] = {"key": "forged"}
        # A relay breaks the owner's signature on the answer; a dishonest owner is caught by the event proofs.
        relay = self.net.nodes["router-b"].router
        honest = relay._forward
        for at, check in (("relay", "result_signature"), ("owner", "event_mismatch")):
            relay._forward = honest
            self.tamper(change, ops=("events",), at=at)
            code, body = yield self.get("/z/ledger/hello/events?from_block=0")
            self.assertEqual((code, body["error"]["code"]), (502, "proof_invalid"))
            self.assertEqual(body["error"]["details"]["check"], check)

    @defer.inlineCallbacks
    def test_a_cancelled_long_poll_stops_quietly(self) -> Any:
        """A client that leaves mid-poll cancels it; the polling stops and nothing fires twice (trial fails the test
        on any error logged meanwhile)."""
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        forward = self.entry._forward
        polls: list[str] = []

        def counting(out: Any, tried: Any) -> Any:
            polls.append(out.op)
            return forward(out, tried)

        self.entry._forward = counting
        self.addCleanup(setattr, self.entry, "_forward", forward)
        waiting = self.entry.events(IPath.parse(f"{CHAIN}.hello"), 10**6, 1.0)
        self.assertEqual(polls, ["events"])
        waiting.cancel()
        yield self.assertFailure(waiting, defer.CancelledError)
        yield deferLater(reactor, 1.3, lambda: None)
        self.assertEqual(polls, ["events"])  # no poll after the client left


class DishonestOwnerWrites(Base):
    """Every way an owner can lie about a write it signs is caught by the proofs before the client sees it."""

    def tamper(self, change: Callable[[dict[str, Any], Any], None], *,
               ops: tuple[str, ...] = ("sendTransaction",), at: str = "owner") -> None:
        super().tamper(change, ops=ops, at=at)

    def test_altered_output(self) -> Any:
        self.tamper(lambda result, args: result.update(output="forged"))
        return self.refused(write("k", "v"), "output_mismatch")

    def test_altered_receipt(self) -> Any:
        def change(result: dict[str, Any], args: Any) -> None:
            result["receipt"]["events"] = []
        self.tamper(change)
        return self.refused(write("k", "v"), "receipt_mismatch")

    def test_altered_proof_node(self) -> Any:
        def change(result: dict[str, Any], args: Any) -> None:
            tx = result["proof"]["tx"]
            leaf = bytearray.fromhex(tx["leaf"])
            leaf[-1] ^= 1
            tx["leaf"] = leaf.hex()
            result["tx_hash"] = __import__("hashlib").sha256(bytes(leaf)).hexdigest()
        self.tamper(change)
        return self.refused(write("k", "v"), "tx_inclusion")

    def test_altered_header(self) -> Any:
        def change(result: dict[str, Any], args: Any) -> None:
            result["proof"]["header"]["tx_root"] = "00" * 32
        self.tamper(change)
        return self.refused(write("k", "v"), "header_hash")

    def test_rehashed_forged_header_is_not_the_trusted_one(self) -> Any:
        """A relay that forges a whole consistent header (right hash for its forged content) still fails: the
        header store holds another hash for that block."""
        from wecross.embedded.block import Header

        def change(result: dict[str, Any], args: Any) -> None:
            header = result["proof"]["header"]
            header["extras"]["timestamp_ms"] += 1
            header["timestamp"] = header["extras"]["timestamp_ms"] / 1000.0
            header["hash"] = Header.from_wire(header).hash.hex()
        self.tamper(change)
        return self.refused(write("k", "v"), "header_mismatch")

    @defer.inlineCallbacks
    def test_replayed_old_receipt(self) -> Any:
        old = yield self.entry.invoke(write("first", 1))
        self.tamper(lambda result, args: (result.clear(), result.update(copy.deepcopy(old))))
        yield self.refused(write("second", 2), "tx_mismatch")

    def test_forged_headers_on_the_way(self) -> Any:
        """Headers fetched through the dishonest relay are checked too."""
        def change(result: dict[str, Any], args: Any) -> None:
            for header in result["output"]["headers"]:
                header["prev_hash"] = "11" * 32
        self.tamper(change, ops=("headers",), at="relay")
        return self.refused(write("k", "v"), "result_signature")


class DishonestRelayOnReads(Base):
    """Every way a relay can lie about a read is caught: output, a proven value, a proof node, absence, the header,
    another read's proof, and a genuine but outdated answer."""

    READS = ("call", "getData")

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        yield self.entry.invoke(write("k", "v"))

    @defer.inlineCallbacks
    def test_forged_block_above_the_trusted_head(self) -> Any:
        """The relay dresses a genuine read up as block N+1: a header that links to the trusted head and rehashes
        correctly. Without the owner's signature over it, it is refused and never stored (with the owner's
        signature of block N left on: header_signature; with none: the entry asks the owner, who has no such
        block); honest results of the real block N+1 are served afterwards."""
        from wecross.embedded.block import Header

        def forge(keep_signature: bool) -> Callable[[dict[str, Any], Any], None]:
            def change(result: dict[str, Any], args: Any) -> None:
                header = result["proof"]["header"]
                header["prev_hash"] = header["hash"]
                header["number"] += 1
                header["hash"] = Header.from_wire(header).hash.hex()
                result["block_number"] = header["number"]
                if not keep_signature:
                    result.pop("header_sig", None)
            return change

        relay = self.net.nodes["router-b"].router
        honest = relay._forward
        head = self.entry.trust.store.chains[CHAIN].height
        for keep, check in ((True, "header_signature"), (False, "link")):
            relay._forward = honest
            self.tamper(forge(keep), ops=self.READS)
            failure = yield self.assertFailure(self.entry.invoke(read("k")), RouterError)
            self.assertEqual((failure.code, failure.details.get("check")), ("proof_invalid", check), failure.message)
            self.assertEqual(self.entry.trust.store.chains[CHAIN].height, head)  # nothing stored
        relay._forward = honest
        written = yield self.entry.invoke(write("k", "v2"))
        self.assertEqual(written["block_number"], head + 1)
        result = yield self.entry.invoke(read("k"))
        self.assertEqual((result["output"], result["verified"]["proof"]), ("v2", True))

    def test_altered_output(self) -> Any:
        self.tamper(lambda result, args: result.update(output="forged"), ops=self.READS)
        return self.refused(read("k"), "output_mismatch")

    def test_altered_proven_value(self) -> Any:
        from wecross.embedded.block import encode

        def change(result: dict[str, Any], args: Any) -> None:
            result["output"] = "forged"
            result["proof"]["state"][-1]["value"] = encode("forged").hex()
        self.tamper(change, ops=self.READS)
        return self.refused(read("k"), "state_inclusion")

    def test_altered_proof_node(self) -> Any:
        def change(result: dict[str, Any], args: Any) -> None:
            entry = result["proof"]["state"][-1]
            side, digest = entry["siblings"][0]
            sibling = bytearray.fromhex(digest)
            sibling[0] ^= 1
            entry["siblings"][0] = [side, sibling.hex()]
        self.tamper(change, ops=self.READS)
        return self.refused(read("k"), "state_inclusion")

    def test_claimed_absence_of_a_present_key(self) -> Any:
        def change(result: dict[str, Any], args: Any) -> None:
            entry = result["proof"]["state"][-1]
            result["proof"]["state"][-1] = {"key": entry["key"], "absent": True, "left": entry, "right": None}
            result["output"] = None
        self.tamper(change, ops=self.READS)
        return self.refused(read("k"), "state_absence")

    def test_altered_header(self) -> Any:
        def change(result: dict[str, Any], args: Any) -> None:
            result["proof"]["header"]["state_root"] = "00" * 32
        self.tamper(change, ops=self.READS)
        return self.refused(read("k"), "header_hash")

    @defer.inlineCallbacks
    def test_proof_of_another_read(self) -> Any:
        other = yield self.entry.invoke(Invocation(IPath.parse(f"{CHAIN}.asset"), "call", "balanceOf", ["alice"]))
        self.tamper(lambda result, args: (result.clear(), result.update(copy.deepcopy(other))), ops=self.READS)
        yield self.refused(Invocation(IPath.parse(f"{CHAIN}.asset"), "call", "balanceOf", ["bob"]), "read_mismatch")

    @defer.inlineCallbacks
    def test_outdated_answer_replayed(self) -> Any:
        old = yield self.entry.invoke(read("k"))
        self.entry.trust.max_read_lag = 2
        for i in range(3):
            yield self.entry.invoke(write(f"later{i}", i))
        self.tamper(lambda result, args: (result.clear(), result.update(copy.deepcopy(old))), ops=self.READS)
        yield self.refused(read("k"), "stale_read")


class PinnedCheckpoint(Base):
    """The entry router pins another genesis than the one router-c announces in its signed record: router-c is
    not a replica of the chain it means (wecross.routing.replicas), so nothing is sent there at all."""

    trust = TrustSettings(checkpoints={CHAIN: "ab" * 32})
    routed = ("router-b",)

    @defer.inlineCallbacks
    def test_a_chain_with_another_genesis_is_refused(self) -> Any:
        yield support.until(lambda: "router-c" in self.entry.directory.records()
                            and self.entry._built_version == self.entry.directory.routing_version)
        self.assertIsNone(self.entry.table.route(CHAIN))
        failure = yield self.assertFailure(self.entry.invoke(write("k", "v")), RouterError)
        self.assertIn(failure.code, ("unreachable", "unknown_chain"), failure.message)


class Quorum(Base):
    trust = TrustSettings(quorum=2)

    def test_one_router_cannot_meet_a_quorum_of_two(self) -> Any:
        return self.refused(write("k", "v"), "quorum")


class EvmChain(Base):
    """The same guarantees on an EVM chain: router-c serves ``z.eth`` through the EVM stub on a real anvil; the
    entry router checks Merkle-Patricia proofs against headers it trusts (their RLP hashed, linked to genesis)."""

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        from eth_account import Account

        from wecross.config import StubConfig
        from wecross.evm.anvil import Anvil

        self.anvil = yield Anvil().start_in_thread()
        self.addCleanup(self.anvil.stop)
        keys = Path(self.mktemp())
        keys.mkdir()
        account = Account.create()
        self.anvil.set_balance(account.address, 10**21)
        key_file = keys / "router-c.key"
        key_file.write_text(account.key.hex() + "\n")
        stub = StubConfig("eth", "z", "evm", {"rpc": self.anvil.url, "private_key_file": str(key_file),
                                               "deploy": True, "poll_interval": 0.02, "receipt_timeout": 10},
                          [{"name": "hello", "kind": "kv"},
                           {"name": "asset", "kind": "asset", "issuer": "bank", "initial": {"alice": 1000}}])
        self.patch(support, "router_settings", _with_evm_stub(support.router_settings, stub))
        yield super().setUp()
        yield support.until(lambda: all(
            self.net.nodes[r].router.table.route("z.eth") is not None for r in ("router-a", "router-b")),
            timeout=30)

    def evm_write(self, key: str, value: str) -> Invocation:
        return Invocation(IPath.parse("z.eth.hello"), "sendTransaction", "set", [key, value])

    @defer.inlineCallbacks
    def test_an_evm_write_is_verified(self) -> Any:
        result = yield self.entry.invoke(self.evm_write("k", "v"))
        verified = result["verified"]
        self.assertTrue(verified["proof"], verified)
        self.assertEqual(verified["checks"], ["header_linked", "header_rlp", "tx_inclusion", "receipt_inclusion",
                                              "receipt_matches", "tx_matches_request"])
        block = self.anvil.rpc("eth_getBlockByNumber", [hex(result["block_number"]), False])
        self.assertEqual(verified["header_hash"], block["hash"][2:])

    @defer.inlineCallbacks
    def test_evm_reads_through_a_dishonest_relay(self) -> Any:
        """EVM reads come back unsigned with eth_getProof proofs: an altered value or proof is caught by the proof
        check, a stripped proof leaves an answer neither proven nor signed (no downgrade)."""
        yield self.entry.invoke(self.evm_write("k", "v"))
        read = Invocation(IPath.parse("z.eth.hello"), "getData", "", ["k"])
        honest = yield self.entry.invoke(read)
        self.assertEqual((honest["output"], honest["verified"]["proof"]), ("v", True))
        relay = self.net.nodes["router-b"].router
        forward = relay._forward

        def strip(result: dict[str, Any], args: Any) -> None:
            result.pop("proof")

        for change, check in ((lambda result, args: result.update(output="forged"), None), (strip, "unattested")):
            relay._forward = forward
            self.tamper(change, ops=("getData",))
            failure = yield self.assertFailure(self.entry.invoke(read), RouterError)
            self.assertEqual(failure.code, "proof_invalid", failure.message)
            if check is not None:
                self.assertEqual(failure.details.get("check"), check, failure.message)
        relay._forward = forward
        again = yield self.entry.invoke(read)
        self.assertEqual(again["output"], "v")

    @defer.inlineCallbacks
    def test_an_evm_transfer_in_the_embedded_form_is_verified(self) -> Any:
        """transfer(to, amount), as on the embedded ledger; the entry router checks the calldata against the same
        reading (transfer(sender, to, amount))."""
        moved = yield self.entry.invoke(Invocation(IPath.parse("z.eth.asset"), "sendTransaction", "transfer",
                                                   ["bob", 25], sender="alice"))
        self.assertIn("tx_matches_request", moved["verified"]["checks"])
        balance = yield self.entry.invoke(Invocation(IPath.parse("z.eth.asset"), "call", "balanceOf", ["bob"]))
        self.assertEqual(balance["output"], 25)

    @defer.inlineCallbacks
    def test_evm_events_through_the_overlay(self) -> Any:
        written = yield self.entry.invoke(self.evm_write("k", "v"))
        result = yield self.entry.events(IPath.parse("z.eth.hello"), written["block_number"], 0)
        self.assertEqual([e["name"] for e in result["events"]], ["Set"])
        self.assertEqual(result["events"][0]["args"], {"key": "k", "value": "v"})

    @defer.inlineCallbacks
    def test_evm_tampering_is_caught(self) -> Any:
        old = yield self.entry.invoke(self.evm_write("first", "1"))

        def replay(result: dict[str, Any], args: Any) -> None:
            result.clear()
            result.update(copy.deepcopy(old))

        def node(result: dict[str, Any], args: Any) -> None:
            nodes = result["proof"]["tx"]["nodes"]
            nodes[-1] = nodes[-1][:-2] + ("00" if nodes[-1][-2:] != "00" else "01")

        def logs(result: dict[str, Any], args: Any) -> None:
            result["receipt"]["logs"] = []

        def header(result: dict[str, Any], args: Any) -> None:
            result["proof"]["header"]["extras"]["rlp"] = result["proof"]["header"]["extras"]["rlp"][:-2] + "00"

        owner = self.net.nodes["router-c"].router
        for change, check in ((replay, "tx_mismatch"), (node, "tx_inclusion"), (logs, "receipt_mismatch"),
                              (header, "header_hash")):
            run_local = owner._run_local
            self.tamper(change, at="owner")
            yield self.refused(self.evm_write("second", "2"), check)
            owner._run_local = run_local
            relay = self.net.nodes["router-b"].router
            forward = relay._forward
            self.tamper(change, at="relay")
            failure = yield self.assertFailure(self.entry.invoke(self.evm_write("second", "2")), RouterError)
            # (An answer replayed whole carries no signature of the owner's for this request at all.)
            self.assertIn(failure.details.get("check"), ("result_signature", "unattested"), failure.message)
            relay._forward = forward


def _with_evm_stub(original: Any, stub: Any) -> Any:
    def settings(rid: str, *args: Any, **kwargs: Any) -> Any:
        made = original(rid, *args, **kwargs)
        return replace(made, stubs=(*made.stubs, stub)) if rid == "router-c" else made

    return settings


class ForgedCommitAcknowledgement(Base):
    """A relay that answers a 2PC commit for the participant (replaying another transaction's genuine commit) is
    not believed: the coordinator keeps the transaction committing and retries until a real answer comes."""

    @defer.inlineCallbacks
    def test_replayed_commit_is_refused_and_retried(self) -> Any:
        coordinator = self.entry.transactions()
        ipath = f"{CHAIN}.hello"
        relay = self.net.nodes["router-b"].router
        forward = relay._forward
        self.addCleanup(setattr, relay, "_forward", forward)
        seen: list[dict[str, Any]] = []

        def capture(out: Any, tried: Any) -> Any:
            d = forward(out, tried)
            if out.op == "txCommit":
                d.addCallback(lambda result: (seen.append(copy.deepcopy(result)), result)[1])
            return d

        relay._forward = capture
        first = yield coordinator.start([])
        yield coordinator.execute(first["tx_id"], ipath, "set", ["a", 1])
        yield coordinator.commit(first["tx_id"])
        self.assertEqual(len(seen), 1)

        def replay(out: Any, tried: Any) -> Any:
            d = forward(out, tried)
            if out.op == "txCommit":  # the genuine commit of the first transaction, again
                d.addCallback(lambda _: copy.deepcopy(seen[0]))
            return d

        relay._forward = replay
        second = yield coordinator.start([])
        yield coordinator.execute(second["tx_id"], ipath, "set", ["b", 2])
        record = yield coordinator.commit(second["tx_id"], wait=1.0)
        self.assertEqual(record["state"], "committing")
        # Refused by the owner's signature on the answer (a relay cannot make one for this transaction).
        self.assertGreaterEqual(self.entry.auth_refused["result_signature"], 1)
        relay._forward = forward  # the relay turns honest (or the route moves): the real answer gets through
        yield support.until(lambda: coordinator.get(second["tx_id"])["state"] == "committed", timeout=30)


class DishonestRelay(Base):
    """A relay that changes anything in a signed answer breaks the owner's signature: refused before any proof is
    even looked at, whatever it changed."""

    @defer.inlineCallbacks
    def test_every_alteration_of_a_write_breaks_the_signature(self) -> Any:
        old = yield self.entry.invoke(write("first", 1))

        def receipt(result: dict[str, Any], args: Any) -> None:
            result["receipt"]["status"] = "forged"

        changes: list[Callable[[dict[str, Any], Any], None]] = [
            lambda result, args: result.update(output="forged"),
            receipt,
            lambda result, args: result["proof"]["header"].update(timestamp=1),
            lambda result, args: (result.clear(), result.update(copy.deepcopy(old))),
            lambda result, args: result.pop("attestation"),
        ]
        relay = self.net.nodes["router-b"].router
        honest = relay._forward
        for change in changes:
            relay._forward = honest
            self.tamper(change)
            failure = yield self.assertFailure(self.entry.invoke(write("second", 2)), RouterError)
            self.assertEqual(failure.code, "proof_invalid", failure.message)
            self.assertIn(failure.details["check"], ("result_signature", "unattested"), failure.message)
        # The owner named in the answer is not believed either (no downgrade): it is the router the request was
        # signed for, so renaming it changes nothing.
        relay._forward = honest
        self.tamper(lambda result, args: result.update(router="router-x"))
        result = yield self.entry.invoke(write("third", 3))
        self.assertEqual((result["router"], result["verified"]["proof"]), ("router-c", True))
        relay._forward = honest
        result = yield self.entry.invoke(write("fourth", 4))  # honest traffic after: served
        self.assertTrue(result["verified"]["proof"])
