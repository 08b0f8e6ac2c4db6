"""Chain verifiers as plugins: the stub loader collects one per chain type from the factories that offer one, and
TrustedResults checks results through that mapping only.

The third chain type here ("toy") is plugged in the way an operator would add one: a new module in a plugin
directory, and nothing else changed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from wecross.chain.store import HeaderStore
from wecross.chain.trust import TrustedResults
from wecross.chain.verifier import (
    IChainVerifier,
    IVerifierFactory,
    ProvenRequest,
    VerificationError,
    rehash_lookup,
)
from wecross.config import TrustSettings
from wecross.embedded.factory import EmbeddedStubFactory
from wecross.embedded.stub import EVENTS_WINDOW, EmbeddedStub
from wecross.errors import RouterError
from wecross.evm.factory import EvmStubFactory
from wecross.evm.verifier import EvmVerifier
from wecross.facade import Invocation
from wecross.ipath import IPath
from wecross.stub.interfaces import ChainState, EventPages, IEventSource, IStubFactory, StubSettings
from wecross.stub.loader import StubLoadError, verifiers_of
from wecross.stub.service import StubService

#: A whole chain type in one drop-in module: a factory that builds no stub (this router serves no toy chain: it
#: only checks results of toy chains other routers serve) and offers the verifier. A toy header's hash is the
#: sha256 of its number, previous hash and payload; a toy write is proven by the payload of its block naming it.
TOY_PLUGIN = textwrap.dedent('''
    import hashlib
    import json

    from twisted.plugin import IPlugin
    from zope.interface import implementer

    from wecross.chain.verifier import IChainVerifier, IVerifierFactory, VerificationError
    from wecross.stub.interfaces import IStubFactory


    def toy_hash(number, prev_hash, payload):
        return hashlib.sha256(f"{number}|{prev_hash}|{payload}".encode()).hexdigest()


    @implementer(IChainVerifier)
    class ToyVerifier:
        chain_type = "toy"
        can_rehash = True
        unproven_read_reason = "toy reads are never proven"

        def rehash(self, header_wire):
            return toy_hash(header_wire["number"], header_wire["prev_hash"], header_wire["payload"])

        def read_provable(self, request):
            return False

        def check_write(self, result, expected_header_hash, request):
            header = result["proof"]["header"]
            if header["hash"] != expected_header_hash:
                raise VerificationError("toy_header", "not the trusted header")
            wanted = json.dumps([request.resource, request.method, list(request.args), result["output"]])
            if header["payload"] != wanted:
                raise VerificationError("toy_payload", "the block holds another write")
            return ["toy_header", "toy_payload"]

        def check_read(self, result, expected_header_hash, request):
            raise VerificationError("toy_unprovable", "toy reads are never proven")

        def check_commit(self, result, expected_header_hash, request, tx_id):
            raise VerificationError("toy_unprovable", "toy chains have no transactions")

        def check_event(self, event, expected_header_hash, request):
            raise VerificationError("toy_unprovable", "toy chains have no events")


    @implementer(IPlugin, IStubFactory, IVerifierFactory)
    class ToyFactory:
        stub_type = "toy"
        description = "a chain type added with one new file"

        def build(self, settings, data_dir):
            raise ValueError("this router serves no toy chain")

        def verifier(self):
            return ToyVerifier()


    toy = ToyFactory()
''')


def toy_hash(number: int, prev_hash: str, payload: str) -> str:
    return hashlib.sha256(f"{number}|{prev_hash}|{payload}".encode()).hexdigest()


def toy_chain(payloads: list[str]) -> list[dict[str, Any]]:
    headers: list[dict[str, Any]] = []
    prev = "00" * 32
    for number, payload in enumerate(payloads):
        digest = toy_hash(number, prev, payload)
        headers.append({"number": number, "hash": digest, "prev_hash": prev, "payload": payload})
        prev = digest
    return headers


@implementer(IPlugin, IStubFactory)
class NoVerifierFactory:
    stub_type = "plain"
    description = "a stub type without a verifier"


@implementer(IChainVerifier)
class NamedVerifier:
    can_rehash = False
    unproven_read_reason = ""

    def __init__(self, chain_type: Any) -> None:
        self.chain_type = chain_type


@implementer(IPlugin, IStubFactory, IVerifierFactory)
class FactoryOf:
    description = "test"

    def __init__(self, stub_type: str, verifier: Any) -> None:
        self.stub_type = stub_type
        self._verifier = verifier

    def verifier(self) -> Any:
        return self._verifier


class Registry(SynchronousTestCase):
    def test_factories_with_and_without_a_verifier(self) -> None:
        verifiers = verifiers_of({"embedded": EmbeddedStubFactory(), "evm": EvmStubFactory(),
                                  "plain": NoVerifierFactory()})
        self.assertEqual(sorted(verifiers), ["embedded", "evm"])  # "plain": no verifier, not an entry
        self.assertTrue(IVerifierFactory.providedBy(EvmStubFactory()))
        self.assertFalse(IVerifierFactory.providedBy(NoVerifierFactory()))
        for chain_type, verifier in verifiers.items():
            self.assertTrue(IChainVerifier.providedBy(verifier))
            self.assertEqual(verifier.chain_type, chain_type)
        lookup = rehash_lookup(verifiers)
        self.assertIsNotNone(lookup("embedded"))
        self.assertIsNone(lookup("plain"))
        self.assertIsNone(rehash_lookup({"x": NamedVerifier("x")})("x"))  # can_rehash False: linkage only

    def test_a_chain_type_has_one_verifier(self) -> None:
        with self.assertRaises(StubLoadError) as caught:
            verifiers_of({"a": FactoryOf("a", NamedVerifier("same")), "b": FactoryOf("b", NamedVerifier("same"))})
        self.assertIn("'same' has two verifiers", str(caught.exception))
        with self.assertRaises(StubLoadError):
            verifiers_of({"a": FactoryOf("a", NamedVerifier(None))})

    def test_evm_commit_of_a_resource_that_does_not_commit_is_a_mismatch(self) -> None:
        """contract_call refuses a generic contract with StubError: the verifier reports it as the check that
        failed (tx_mismatch) instead of letting a StubError out of TrustedResults."""
        request = ProvenRequest("raw", "contract", "txCommit", "", ("t1",), "alice")
        with self.assertRaises(VerificationError) as caught:
            EvmVerifier().check_commit({}, "00" * 32, request, "t1")
        self.assertEqual(caught.exception.check, "tx_mismatch")

    def test_evm_verifier_proves_reads_of_builtin_layouts_only(self) -> None:
        verifier = EvmVerifier()
        self.assertTrue(verifier.read_provable(ProvenRequest("hello", "kv", "getData", "", ("k",), "a")))
        self.assertTrue(verifier.read_provable(ProvenRequest("hello", "kv", "call", "get", ("k",), "a")))
        self.assertFalse(verifier.read_provable(ProvenRequest("raw", "contract", "call", "get", ("k",), "a")))


class RouterWithoutEvmChains(TestCase):
    def test_collecting_verifiers_imports_no_evm_codec(self) -> None:
        """Every router collects the EVM verifier; one that serves no EVM chain must not pay web3's (or rlp's)
        import at start for it."""
        script = ("import sys, tempfile, pathlib\n"
                  "from wecross.stub.service import StubService\n"
                  "service = StubService([], pathlib.Path(tempfile.mkdtemp()))\n"
                  "service.load()\n"
                  "print(sorted(service.verifiers), [m for m in ('web3', 'rlp', 'eth_abi') if m in sys.modules])\n")
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent.parent, timeout=120)
        self.assertEqual(out.stdout.strip(), "['embedded', 'evm'] []")


class ThirdChainType(TestCase):
    """A "toy" chain type added with one new plugin file: its results are verified, refused with its own check
    names, and its reads answered as unproven with its own reason; wecross itself is unchanged."""

    def setUp(self) -> None:
        plugins = Path(self.mktemp())
        plugins.mkdir(parents=True)
        (plugins / "toychain.py").write_text(TOY_PLUGIN)
        work = Path(self.mktemp())
        # A pure relay (no chain of its own) with the extra plugin directory, as a router config would give it.
        self.service = StubService([], work, [plugins])
        self.service.load()
        self.store = HeaderStore(work, TrustSettings(), Clock(), rehash_lookup(self.service.verifiers))
        self.payloads = ["genesis", json.dumps(["counter", "add", [2], 3])]
        self.headers = toy_chain(self.payloads)
        self.chain_type = "toy"

        def fetch(chain: str, source: str, start: int, count: int) -> defer.Deferred[list[dict[str, Any]]]:
            return defer.succeed([dict(h) for h in self.headers[start:start + count]])

        self.trust = TrustedResults(self.store, fetch, lambda chain, owner: self.chain_type,
                                    lambda chain: ["router-toy"], verifiers=self.service.verifiers)
        self.path = IPath("lab", "toy1", "counter")

    def result(self, output: Any = 3) -> dict[str, Any]:
        return {"output": output, "block_number": 1, "router": "router-toy",
                "proof": {"header": dict(self.headers[1])}}

    def write(self) -> Invocation:
        return Invocation(self.path, "sendTransaction", "add", [2], "alice")

    @defer.inlineCallbacks
    def test_a_toy_write_is_verified(self) -> Any:
        self.assertEqual(sorted(self.service.verifiers), ["embedded", "evm", "toy"])
        answer = yield self.trust.verify(self.result(), self.write())
        self.assertEqual(answer["verified"]["proof"], True)
        self.assertEqual(answer["verified"]["checks"], ["toy_header", "toy_payload"])
        self.assertEqual(self.trust.store.chains["lab.toy1"].height, 1)

    @defer.inlineCallbacks
    def test_a_forged_toy_write_is_refused_with_the_toy_check(self) -> Any:
        d = defer.maybeDeferred(self.trust.verify, self.result(output=300), self.write())
        failure = yield self.assertFailure(d, RouterError)
        self.assertEqual((failure.code, failure.details["check"]), ("proof_invalid", "toy_payload"))
        self.assertEqual(self.trust.counters["refused"], 1)

    @defer.inlineCallbacks
    def test_a_forged_toy_header_is_refused_by_its_rehash(self) -> Any:
        self.headers[1]["payload"] = json.dumps(["counter", "add", [2], 300])  # hash left as it was
        d = defer.maybeDeferred(self.trust.verify, self.result(output=300), self.write())
        failure = yield self.assertFailure(d, RouterError)
        self.assertEqual(failure.details["check"], "header_hash")

    def test_toy_reads_carry_the_toy_reason(self) -> None:
        answer = self.trust.verify({"output": 3, "router": "router-toy"},
                                   Invocation(self.path, "call", "get", [], "alice"))
        assert isinstance(answer, dict)
        self.assertEqual(answer["verified"], {"proof": False, "reason": "toy reads are never proven"})

    def test_a_chain_type_without_verifier_is_unverifiable(self) -> None:
        self.chain_type = "plain"
        answer = self.trust.verify(self.result(), self.write())
        assert isinstance(answer, dict)
        self.assertEqual(answer["verified"], {"proof": False, "reason": "no verifier for chain type 'plain' yet"})


class FakeSource(EventPages):
    def __init__(self, height: int, blocks: list[int], window: int | None = None) -> None:
        self.height = height
        self.blocks = blocks
        self.events_window = window
        self.asked: list[tuple[str, int]] = []

    def chain_state(self) -> defer.Deferred[ChainState]:
        return defer.succeed(ChainState("fake", self.height, "00", "00"))

    def events(self, resource: str, from_block: int) -> defer.Deferred[list[dict[str, Any]]]:
        self.asked.append((resource, from_block))
        return defer.succeed([{"block_number": n} for n in self.blocks if n >= from_block])


class EventPagesTests(TestCase):
    def page(self, source: FakeSource, from_block: int) -> tuple[list[int], int]:
        d = source.event_page("r", from_block)
        page = self.successResultOf(d)
        return [e["block_number"] for e in page.events], page.next_block

    def test_to_the_head(self) -> None:
        self.assertEqual(self.page(FakeSource(10, [3, 7]), 0), ([3, 7], 11))
        self.assertEqual(self.page(FakeSource(10, []), 4), ([], 11))
        self.assertEqual(self.page(FakeSource(10, [3, 12]), 5), ([12], 13))  # the chain grew during the scan
        self.assertEqual(self.page(FakeSource(10, []), 20), ([], 20))  # never moves back

    def test_a_window_ends_the_page(self) -> None:
        self.assertEqual(self.page(FakeSource(500, [120], 64), 100), ([120], 164))
        self.assertEqual(self.page(FakeSource(120, [110], 64), 100), ([110], 121))

    async def test_the_embedded_stub_pages_its_own_window(self) -> None:
        stub = EmbeddedStub(StubSettings("bank", "payment", "embedded", {}, [{"name": "hello", "kind": "kv"}]),
                            Path(self.mktemp()))
        await stub.start()
        self.addCleanup(stub.stop)
        self.assertTrue(IEventSource.providedBy(stub))
        self.assertEqual(stub.events_window, EVENTS_WINDOW)
        hello = stub.resource("hello")
        assert hello is not None
        await hello.set_data("k", "v", "alice")
        page = await stub.event_page("hello", 0)
        height = (await stub.chain_state()).height
        self.assertEqual(page.next_block, height + 1)
        self.assertEqual([e["block_number"] for e in page.events], [height])
