"""Requests are authenticated end to end: a dishonest relay can drop or delay a request, never change, redirect,
invent or replay one (docs/trusted-results.md, "Threat model").

```
router-a (entry) -- router-b (relay, sometimes dishonest) -- router-c (serves z.ledger)
```

Real routers on 127.0.0.1 with mutual TLS. The dishonest relay is router-b with its forwarding wrapped: it changes
the request it passes on (keeping the origin's signature, which it cannot redo), or makes up requests of its own.
Every attempt must be refused by the owner with the check named, nothing must run, and honest traffic before and
after must be served.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from tests import support
from wecross import attest
from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.ipath import IPath

ROUTERS = {"router-a": {"zones": ["z"]}, "router-b": {"zones": ["z"]}, "router-c": {"zones": ["z"], "chain": "ledger"}}
LINKS = [("router-a", "router-b"), ("router-b", "router-c")]
CHAIN = "z.ledger"


def transfer(to: str, amount: int) -> Invocation:
    return Invocation(IPath.parse(f"{CHAIN}.asset"), "sendTransaction", "transfer", [to, amount], "alice")


def balance(who: str) -> Invocation:
    return Invocation(IPath.parse(f"{CHAIN}.asset"), "call", "balanceOf", [who])


class SignedRequests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.net = yield support.started_network(self, ROUTERS, LINKS, CHAIN)
        self.entry = self.net.nodes["router-a"].router
        self.relay = self.net.nodes["router-b"].router
        self.owner = self.net.nodes["router-c"].router
        self.honest_forward = self.relay._forward
        self.addCleanup(self.turn_honest)

    def turn_honest(self) -> None:
        self.relay._forward = self.honest_forward

    def rewrite(self, **changes: Any) -> list[Any]:
        """Make the relay change fields of the requests it passes on (the origin's signature stays as it was)."""
        seen: list[Any] = []

        def dishonest(out: Any, tried: Any) -> Any:
            seen.append(out)
            return self.honest_forward(dataclasses.replace(out, **changes), tried)

        self.relay._forward = dishonest
        return seen

    @defer.inlineCallbacks
    def balances(self) -> Any:
        alice = yield self.entry.invoke(balance("alice"))
        mallory = yield self.entry.invoke(balance("mallory"))
        return alice["output"], mallory["output"]

    @defer.inlineCallbacks
    def assert_refused_and_nothing_ran(self, invocation: Invocation, code: str, check: str) -> Any:
        dishonest, self.relay._forward = self.relay._forward, self.honest_forward
        before = yield self.balances()
        self.relay._forward = dishonest
        refused_before = self.owner.auth_refused[check]
        failure = yield self.assertFailure(self.entry.invoke(invocation), RouterError)
        # (Details do not cross the wire; the owner's message names the check.)
        self.assertEqual(failure.code, code, failure.message)
        self.assertIn(f"({check})", failure.message)
        self.assertEqual(self.owner.auth_refused[check], refused_before + 1)
        self.turn_honest()
        after = yield self.balances()
        self.assertEqual(after, before)  # nothing ran
        result = yield self.entry.invoke(transfer("bob", 1))  # honest traffic still served
        self.assertTrue(result["verified"]["proof"])

    def test_rewritten_arguments_are_refused(self) -> Any:
        self.rewrite(args=["mallory", 1])
        return self.assert_refused_and_nothing_ran(transfer("bob", 1), "bad_signature", "bad_signature")

    def test_rewritten_sender_is_refused(self) -> Any:
        """The relay cannot act as another user: the sender is inside what the entry router signed."""
        self.rewrite(sender="bob", args=["mallory", 1])
        return self.assert_refused_and_nothing_ran(transfer("mallory", 1), "bad_signature", "bad_signature")

    def test_rewritten_method_and_resource_are_refused(self) -> Any:
        self.rewrite(method="mint")
        yield self.assert_refused_and_nothing_ran(transfer("mallory", 1), "bad_signature", "bad_signature")
        self.rewrite(path=IPath.parse(f"{CHAIN}.hello"))
        yield self.assert_refused_and_nothing_ran(transfer("mallory", 1), "bad_signature", "bad_signature")

    test_rewritten_method_and_resource_are_refused = defer.inlineCallbacks(  # type: ignore[assignment]
        test_rewritten_method_and_resource_are_refused)

    def test_prolonged_expiry_is_refused(self) -> Any:
        self.rewrite(expires_ms=int((reactor.seconds() + 3600) * 1000))
        return self.assert_refused_and_nothing_ran(transfer("mallory", 1), "bad_signature", "bad_signature")

    @defer.inlineCallbacks
    def test_a_request_made_up_by_the_relay_is_refused(self) -> Any:
        """The relay signs with its own key but names router-a as origin, or sends a request without a
        signature: refused either way."""
        link = self.relay.peer_service.links["router-c"]
        base = dict(request_id=os.urandom(16), origin="router-a", destination="router-c", hop_limit=4,
                    deadline_ms=5000, path=["router-a", "router-b"], op="sendTransaction", ipath=f"{CHAIN}.asset",
                    method="transfer", args=["mallory", 5], sender="alice")
        forged = support.signed_request(self.net.nodes["router-b"], **base)  # router-b's key, router-a's name
        failure = yield self.assertFailure(link.request(forged, 5), RouterError)
        self.assertEqual(failure.code, "bad_signature", failure.message)
        unsigned = dataclasses.replace(forged, signature=b"")
        failure = yield self.assertFailure(link.request(unsigned, 5), RouterError)
        self.assertEqual(failure.code, "bad_signature", failure.message)
        unknown = support.signed_request(self.net.nodes["router-b"], **dict(base, origin="router-q"))
        failure = yield self.assertFailure(link.request(unknown, 5), RouterError)
        self.assertEqual(failure.code, "unknown_signer", failure.message)
        _, mallory = yield self.balances()
        self.assertEqual(mallory, 0)

    @defer.inlineCallbacks
    def test_a_captured_request_replayed_runs_once_and_not_after_it_expires(self) -> Any:
        seen = self.rewrite()
        first = yield self.entry.invoke(transfer("bob", 2))
        self.turn_honest()
        captured = seen[0]
        link = self.relay.peer_service.links["router-c"]
        request = support.signed_request(
            self.net.nodes["router-a"], request_id=captured.request_id, origin="router-a", destination="router-c",
            hop_limit=4, deadline_ms=5000, path=["router-a", "router-b"], op=captured.op, ipath=str(captured.path),
            method=captured.method, args=captured.args, sender=captured.sender, expires_ms=captured.expires_ms)
        again = yield link.request(request, 5)  # the same signed request: answered from the replay guard
        self.assertEqual(again.result["tx_hash"], first["tx_hash"])
        self.assertTrue(again.result.get("replayed"))
        expired = support.signed_request(
            self.net.nodes["router-a"], request_id=os.urandom(16), origin="router-a", destination="router-c",
            hop_limit=4, deadline_ms=5000, path=["router-a", "router-b"], op=captured.op, ipath=str(captured.path),
            method=captured.method, args=captured.args, sender=captured.sender,
            expires_ms=int((reactor.seconds() - 3600) * 1000))
        failure = yield self.assertFailure(link.request(expired, 5), RouterError)
        self.assertEqual(failure.code, "timeout", failure.message)
        self.assertIn("(expired)", failure.message)

    @defer.inlineCallbacks
    def test_redirected_to_another_destination_is_refused(self) -> Any:
        """A request signed for router-c, relabelled by the relay for another router: that router refuses it."""
        seen = self.rewrite()
        yield self.entry.invoke(transfer("bob", 1))
        self.turn_honest()
        captured = seen[0]
        link = self.relay.peer_service.links["router-c"]
        body = attest.request_body(captured.request_id, "router-a", "router-c", captured.expires_ms, captured.op,
                                   str(captured.path), captured.method, captured.args, captured.sender)
        signature = bytes((attest.SCHEME_SIGNATURE,)) + attest.sign(self.entry.signing_key, body)
        from wecross.wire.messages import Request

        # The relay keeps the genuine signature and says the request is for router-b (itself) ... then for router-c
        # with another request id: neither matches what router-a signed.
        moved = Request(request_id=os.urandom(16), origin="router-a", destination="router-c", hop_limit=4,
                        deadline_ms=5000, path=["router-a", "router-b"], op=captured.op, ipath=str(captured.path),
                        method=captured.method, args=captured.args, sender=captured.sender,
                        expires_ms=captured.expires_ms, signature=signature)
        failure = yield self.assertFailure(link.request(moved, 5), RouterError)
        self.assertEqual(failure.code, "bad_signature", failure.message)


def client_proof(sender: str, cert_dir: Path, invocation: Invocation, *, nonce: bytes | None = None,
                 expires_ms: int | None = None) -> attest.ClientProof:
    """What the SDK sends for a user holding ``cert_dir``'s certificate and key (chain.pem, key.pem)."""
    from wecross.pki import authority

    chain = tuple(c.public_bytes(Encoding.DER) for c in authority.read_certificates(cert_dir / "chain.pem"))
    key = authority.read_private_key(cert_dir / "key.pem")
    nonce = os.urandom(16) if nonce is None else nonce
    expires_ms = int((reactor.seconds() + 30) * 1000) if expires_ms is None else expires_ms
    body = attest.client_body(sender, str(invocation.path), invocation.op, invocation.method, invocation.args, nonce,
                              expires_ms)
    return attest.ClientProof(chain, nonce, expires_ms, attest.sign(key, body))  # type: ignore[arg-type]


class ClientSignatures(TestCase):
    """A user holding a key signs its operations: the owner checks the signature against the user's certificate,
    so even the entry router (the one that vouches for the user) cannot run an operation the user did not ask for.
    With ``[trust] client_signatures = "required"`` it cannot act as a user at all."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        from wecross.config import TrustSettings

        required = TrustSettings(client_signatures="required")
        self.net = yield support.started_network(
            self, ROUTERS, LINKS, CHAIN,
            adjust=lambda rid, s: dataclasses.replace(s, trust=required) if rid == "router-c" else s)
        self.entry = self.net.nodes["router-a"].router
        self.owner = self.net.nodes["router-c"].router
        self.alice = support.pki() / "alice"

    def signed(self, invocation: Invocation, **kwargs: Any) -> Invocation:
        return dataclasses.replace(invocation, client_proof=client_proof("alice", self.alice, invocation, **kwargs))

    @defer.inlineCallbacks
    def refused(self, invocation: Invocation, code: str, check: str) -> Any:
        failure = yield self.assertFailure(self.entry.invoke(invocation), RouterError)
        self.assertEqual(failure.code, code, failure.message)
        self.assertIn(f"({check})", failure.message)

    @defer.inlineCallbacks
    def test_a_signed_operation_runs_once(self) -> Any:
        invocation = self.signed(transfer("bob", 3))
        result = yield self.entry.invoke(invocation)
        self.assertTrue(result["verified"]["proof"])
        self.assertEqual(self.owner.outcomes["client_signed"], 1)
        # The entry router (dishonest now) sends the same signed operation again under a new request id.
        yield self.refused(invocation, "bad_signature", "client_replayed")
        read = yield self.entry.invoke(self.signed(dataclasses.replace(balance("alice"), sender="alice")))
        self.assertEqual(read["output"], 1000 - 3)

    def test_an_entry_router_cannot_change_what_the_user_signed(self) -> Any:
        proof = client_proof("alice", self.alice, transfer("bob", 1))
        tampered = dataclasses.replace(transfer("mallory", 1), client_proof=proof)
        return self.refused(tampered, "bad_signature", "client_signature")

    def test_an_entry_router_cannot_act_as_a_user_without_the_users_signature(self) -> Any:
        return self.refused(transfer("mallory", 1), "unauthenticated", "client_signature")

    @defer.inlineCallbacks
    def test_another_certificate_does_not_sign_for_the_user(self) -> Any:
        invocation = transfer("bob", 1)
        as_router_b = dataclasses.replace(invocation, client_proof=client_proof(
            "alice", support.pki() / "router-b", invocation))
        yield self.refused(as_router_b, "bad_signature", "client_identity")
        stranger = dataclasses.replace(invocation, client_proof=client_proof(
            "alice", support.pki() / "stranger" / "router-a", invocation))
        yield self.refused(stranger, "bad_signature", "client_certificate")

    def test_an_expired_signature_is_refused(self) -> Any:
        old = self.signed(transfer("bob", 1), expires_ms=int((reactor.seconds() - 3600) * 1000))
        return self.refused(old, "timeout", "client_expired")

    @defer.inlineCallbacks
    def test_reads_and_routers_own_requests_need_no_user_signature(self) -> Any:
        anonymous = yield self.entry.invoke(balance("alice"))  # "anonymous": nobody's account is used
        self.assertEqual(anonymous["output"], 1000)


class HeaderAuthority(TestCase):
    """A header counts only with the signature of a router the chain's authority admits (EndToEnd
    .authenticate_header): an unknown or unauthorised signer, or a signature by another router, is refused."""

    timeout = 60

    @defer.inlineCallbacks
    def test_header_signers_are_checked(self) -> Any:
        self.net = yield support.started_network(self, ROUTERS, LINKS, CHAIN)
        self.entry = self.net.nodes["router-a"].router
        owner = self.net.nodes["router-c"]
        header = yield owner.stubs.stubs()[CHAIN].header(0)
        wire = header.to_wire()
        genuine = attest.sign(owner.router.signing_key, attest.header_body(CHAIN, wire))
        self.entry.authenticate_header(CHAIN, wire, "router-c", genuine)  # the owner's own: taken
        for signer, signature, check in (
                ("router-x", genuine, "no_authority"),  # not known here, so not admitted for the chain
                ("router-b", genuine, "header_signature"),  # router-b's name on router-c's signature
                ("router-c", attest.sign(owner.router.signing_key, attest.header_body("z.other", wire)),
                 "header_signature")):  # signed for another chain
            with self.assertRaises(RouterError) as caught:
                self.entry.authenticate_header(CHAIN, wire, signer, signature)
            self.assertEqual(caught.exception.details["check"], check)
        self.assertGreaterEqual(self.entry.auth_refused["header_signature"], 2)

