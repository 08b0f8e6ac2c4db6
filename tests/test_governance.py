"""Permissions in force across routers: the entry router refuses early, the owner router decides; the transaction
control plane; the audit trail of what was served.

```
router-a (entry, its own ACL) -- router-b (relay) -- router-c (serves z.ledger, its own ACL)
```

Real routers on 127.0.0.1 with mutual TLS; identities are given to the entry router as the REST layer gives them
(from a TLS client certificate), and reach the owner inside the entry router's signed request.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests import support
from wecross import attest
from wecross.config import GovernanceSettings
from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.governance.audit_store import verify_file
from wecross.governance.identity import Identity
from wecross.ipath import IPath

RESOURCES = [{"name": "hello", "kind": "kv"},
             {"name": "asset", "kind": "asset", "initial": {"alice": 1000, "carol": 1000, "anonymous": 100}}]
ROUTERS = {"router-a": {"zones": ["z"]}, "router-b": {"zones": ["z"]},
           "router-c": {"zones": ["z"], "chain": "ledger", "resources": RESOURCES}}
LINKS = [("router-a", "router-b"), ("router-b", "router-c")]
CHAIN = "z.ledger"

#: router-a's rules: it lets its users try anything but keeps mallory out.
ENTRY_ACL = """
[acl_settings]
default = "allow"

[[acl]]
name = "no-mallory"
who = "user:mallory"
resources = ["*"]
interfaces = ["*"]
effect = "deny"
"""

#: router-c's rules (the owner's: the ones that count): default deny.
OWNER_ACL = """
[acl_settings]
default = "deny"

[roles]
admin = ["user:root"]

[[acl]]
name = "bank-a-writes"
who = "org:BankA"
resources = ["z.ledger.asset"]
interfaces = ["write", "read"]
effect = "allow"

[[acl]]
name = "alice-reads"
who = "user:alice"
resources = ["z.ledger.*"]
interfaces = ["read"]
effect = "allow"

[[acl]]
name = "admins"
who = "role:admin"
resources = ["*"]
interfaces = ["*"]
effect = "allow"

[[acl]]
name = "everyone-reads-hello"
who = "*"
resources = ["z.ledger.hello"]
interfaces = ["getData"]
effect = "allow"

[[acl]]
name = "anonymous-balance"
who = "anonymous"
resources = ["z.ledger.asset"]
interfaces = ["call"]
effect = "allow"

[[acl]]
name = "no-hello-for-carol"
who = "user:carol"
resources = ["z.ledger.hello"]
interfaces = ["*"]
effect = "deny"
"""


def user(name: str, org: str | None = None) -> Identity:
    return Identity(name, org, frozenset({"user"}), "tls")


def invocation(who: Identity, resource: str, op: str, method: str, args: list[Any]) -> Invocation:
    return Invocation(IPath.parse(f"{CHAIN}.{resource}"), op, method, args, who.name, identity=who)


def transfer(who: Identity, to: str = "bob", amount: int = 1) -> Invocation:
    return invocation(who, "asset", "sendTransaction", "transfer", [to, amount])


class Permissions(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        work = Path(self.mktemp())
        work.mkdir()
        self.acl = {"router-a": work / "acl-a.toml", "router-c": work / "acl-c.toml"}
        self.acl["router-a"].write_text(ENTRY_ACL)
        self.acl["router-c"].write_text(OWNER_ACL)

        def adjust(rid: str, settings: Any) -> Any:
            if rid in self.acl:
                return dataclasses.replace(settings, governance=GovernanceSettings(acl_file=self.acl[rid],
                                                                                  acl_reload=0.05))
            return settings

        self.net = yield support.started_network(self, ROUTERS, LINKS, CHAIN, adjust=adjust)
        self.entry = self.net.nodes["router-a"].router
        self.owner = self.net.nodes["router-c"].router

    @defer.inlineCallbacks
    def forbidden(self, call: Invocation, where: str, rule: str | None) -> Any:
        failure = yield self.assertFailure(self.entry.invoke(call), RouterError)
        self.assertEqual(failure.code, "forbidden", failure.message)
        self.assertIn(where, failure.message)
        if rule is not None:
            self.assertIn(rule, failure.message)
        return failure

    @defer.inlineCallbacks
    def test_each_rule_kind_at_the_owner(self) -> Any:
        carol = user("carol", "BankA")
        # org: carol's organisation, vouched by the entry router inside its signed request.
        yield self.entry.invoke(transfer(carol))
        # user: alice may read, not write (no rule grants her writes: the default denies, naming the grant).
        result = yield self.entry.invoke(invocation(user("alice"), "asset", "call", "balanceOf", ["alice"]))
        self.assertEqual(result["output"], 1000)
        failure = yield self.forbidden(transfer(user("alice")), "router-c (owner)", None)
        self.assertIn("no rule grants alice sendTransaction", failure.message)
        # *: any user with a certificate reads hello; deny overrides allow for carol.
        yield self.entry.invoke(invocation(user("dave", "Elsewhere"), "hello", "getData", "", ["k"]))
        yield self.forbidden(invocation(carol, "hello", "getData", "", ["k"]), "router-c (owner)",
                             "no-hello-for-carol")
        # anonymous: may call the asset, nothing else; * does not cover it.
        yield self.entry.invoke(invocation(Identity.nobody(), "asset", "call", "balanceOf", ["bob"]))
        yield self.forbidden(invocation(Identity.nobody(), "hello", "getData", "", ["k"]), "router-c (owner)",
                             None)
        # role: router-c's own [roles] make root an admin (another router saying so is never believed).
        yield self.entry.invoke(invocation(user("root"), "hello", "sendTransaction", "set", ["k", "v"]))
        yield self.forbidden(invocation(Identity("eve", None, frozenset({"user", "admin"}), "tls"), "hello",
                                        "sendTransaction", "set", ["k", "x"]), "router-c (owner)", None)
        self.assertGreaterEqual(self.owner.governance.counters["denied"], 4)

    @defer.inlineCallbacks
    def test_the_entry_router_refuses_early(self) -> Any:
        served = self.owner.outcomes["served_ok"] + self.owner.outcomes["served_failed"]
        yield self.forbidden(transfer(user("mallory", "BankA")), "router router-a", "no-mallory")
        self.assertEqual(self.owner.outcomes["served_ok"] + self.owner.outcomes["served_failed"], served)

    @defer.inlineCallbacks
    def test_rules_reload_without_a_restart(self) -> Any:
        yield self.forbidden(transfer(user("alice")), "router-c (owner)", None)
        self.acl["router-c"].write_text(OWNER_ACL + '''
[[acl]]
name = "alice-writes-now"
who = "user:alice"
resources = ["z.ledger.asset"]
interfaces = ["sendTransaction"]
effect = "allow"
''')
        yield support.until(lambda: len(self.owner.governance.policy.policy.rules) == 7)
        result = yield self.entry.invoke(transfer(user("alice")))
        self.assertTrue(result["verified"]["proof"])
        self.acl["router-c"].write_text("[[acl]]\nwho = 'nobody-knows-this-kind:x'\n")  # invalid: old rules stay
        yield support.until(lambda: self.owner.governance.counters["reload_errors"] >= 1)
        yield self.entry.invoke(transfer(user("alice")))

    @defer.inlineCallbacks
    def test_the_owner_audits_what_it_served_and_refused(self) -> Any:
        yield self.entry.invoke(transfer(user("carol", "BankA")))
        yield self.assertFailure(self.entry.invoke(transfer(user("alice"))), RouterError)
        store = self.net.nodes["router-c"].audit
        from wecross.governance.audit_store import AuditQuery

        records: list[Any] = []

        @defer.inlineCallbacks
        def read() -> Any:
            records[:] = yield store.query(AuditQuery(limit=100))

        def outcomes() -> list[tuple[str, str, str]]:
            return [(r.initiator, r.interface, r.outcome) for r in records if r.ipath == f"{CHAIN}.asset"]

        for _ in range(200):  # records become readable once durable, a moment after the answers
            yield read()
            if len(outcomes()) >= 2:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertIn(("carol", "sendTransaction", "ok"), outcomes())
        self.assertIn(("alice", "sendTransaction", "forbidden"), outcomes())
        carol = next(r for r in records if r.initiator == "carol")
        self.assertEqual((carol.org, carol.entry_router), ("BankA", "router-a"))
        self.assertIsNotNone(carol.tx_hash)
        entry_records = yield self.net.nodes["router-a"].audit.query(AuditQuery(limit=100))
        self.assertIn(("carol", "ok"), [(r.initiator, r.outcome) for r in entry_records])
        path = self.net.nodes["router-c"].settings.data_dir / "audit.sqlite"
        yield store.close()
        self.net.nodes["router-c"].audit = None
        report = verify_file(path)
        self.assertTrue(report.ok, report.reason)


class TransactionControl(TestCase):
    """Only the coordinator named in a transaction id (or a router carrying its signed record) drives the
    participants; only a record signed by its coordinator can be adopted."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.net = yield support.started_network(self, ROUTERS, LINKS, CHAIN)
        self.entry = self.net.nodes["router-a"].router

    @defer.inlineCallbacks
    def test_a_participant_ignores_decisions_from_another_router(self) -> Any:
        coordinator = self.entry.transactions()
        tx = yield coordinator.start([f"{CHAIN}.hello"])
        yield coordinator.execute(tx["tx_id"], f"{CHAIN}.hello", "set", ["k", "v"])
        relay = self.net.nodes["router-b"]
        link = relay.router.peer_service.links["router-c"]
        for op in ("txCommit", "txRollback", "txPrepare"):
            request = support.signed_request(
                relay, request_id=os.urandom(16), origin="router-b", destination="router-c", hop_limit=4,
                deadline_ms=5000, path=["router-b"], op=op, ipath=f"{CHAIN}.hello", method="",
                args=[tx["tx_id"]], sender="anonymous")
            failure = yield self.assertFailure(link.request(request, 5), RouterError)
            self.assertEqual(failure.code, "forbidden", failure.message)
            self.assertIn("(tx_coordinator)", failure.message)
        # A record of the transaction that its coordinator did not sign does not help either.
        forged = dict(coordinator.get(tx["tx_id"]), state="committing", signature="00" * 64)
        request = support.signed_request(
            relay, request_id=os.urandom(16), origin="router-b", destination="router-c", hop_limit=4,
            deadline_ms=5000, path=["router-b"], op="txCommit", ipath=f"{CHAIN}.hello", method="",
            args=[tx["tx_id"], forged], sender="anonymous")
        failure = yield self.assertFailure(link.request(request, 5), RouterError)
        self.assertEqual(failure.code, "forbidden", failure.message)
        done = yield coordinator.commit(tx["tx_id"])  # the real coordinator still decides
        self.assertEqual(done["state"], "committed")

    @defer.inlineCallbacks
    def test_adopting_needs_the_coordinators_signature(self) -> Any:
        coordinator = self.entry.transactions()
        tx = yield coordinator.start([f"{CHAIN}.hello"])
        yield coordinator.execute(tx["tx_id"], f"{CHAIN}.hello", "set", ["k", "v"])
        record = coordinator.get(tx["tx_id"])
        self.assertIn("signature", record)
        other = self.net.nodes["router-b"].router.transactions()
        for bad in (dict(record, state="committing"), {k: v for k, v in record.items() if k != "signature"},
                    dict(record, signature=attest.sign(self.net.nodes["router-b"].router.signing_key,
                                                       attest.tx_record_body(record)).hex())):
            failure = yield self.assertFailure(other.adopt(bad), RouterError)
            self.assertEqual(failure.code, "forbidden", failure.message)
        # The genuine record: router-b finishes it (presumed abort: no decision in it), sending the rollback with
        # the record as its evidence, which router-c accepts.
        finished = yield other.adopt(record)
        yield support.until(lambda: other.get(tx["tx_id"])["state"] == "rolled_back")
        self.assertEqual(finished["tx_id"], tx["tx_id"])
