"""Governance at the REST edge (issue 13): GET /whoami, GET /audit, POST and DELETE /admin/peers, /admin/accounts,
and revoked users refused, through real routers serving HTTPS with client certificates, an ACL file and a revocation
list.

```
router-a (z.one; REST over HTTPS, client certificates required; ACL file; CRL reloaded every 0.05 s)
router-b (z.two; not linked: an admin adds and removes it at run time)
```

Users (certificates from the test's own CA, whose intermediate key signs the CRL): alice (O=bank-a, a user),
audrey (made auditor by the ACL's [roles]), root (made admin by [roles]), mallory (revoked during a test).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests import support
from tests.test_rest import FakeRouter, Req, answer, render
from tests.test_revocation import crl_of
from wecross.config import Address, GovernanceSettings, RestSettings, TLSPaths
from wecross.console.commands import Session
from wecross.errors import RouterError
from wecross.governance.identity import Identity
from wecross.governance.keystore import Kek, Keystore
from wecross.pki import authority
from wecross.rest import governance as gov
from wecross.rest.api import RestApi
from wecross.sdk import AsyncWeCrossClient, PermissionDenied, WeCrossClient, WeCrossError

USERS = {"alice": "bank-a", "audrey": "Regulator", "root": "bank-a", "mallory": "bank-a"}

ACL = b"""
[acl_settings]
default = "deny"

[roles]
auditor = ["user:audrey"]
admin = ["user:root"]

[[acl]]
name = "everyone-uses-z"
who = "*"
resources = ["z.*"]
interfaces = ["read", "write"]
effect = "allow"

[[acl]]
name = "alice-never-writes-hello"
who = "user:alice"
resources = ["z.one.hello"]
interfaces = ["write"]
effect = "deny"

[[acl]]
name = "auditors-read-the-trail"
who = "role:auditor"
resources = ["*"]
interfaces = ["audit.read"]
effect = "allow"

[[acl]]
name = "admins-manage"
who = "role:admin"
resources = ["*"]
interfaces = ["admin.*", "audit.read"]
effect = "allow"
"""


@dataclasses.dataclass(frozen=True)
class PKI:
    base: Path
    issuer: authority.CertifiedKey


@functools.cache
def test_pki() -> PKI:
    base = Path(tempfile.mkdtemp(prefix="wecross-govrest-pki-"))
    root, intermediate = authority.create_ca_chain(1)
    authority.write_certificates(base / "ca.crt", [root.cert])
    for rid in ("router-a", "router-b"):
        leaf = authority.issue_router_cert(intermediate, rid, serves=("*",))
        authority.write_certificates(base / rid / "chain.pem", leaf.full_chain)
        authority.write_private_key(base / rid / "key.pem", leaf.key)
    for user, org in USERS.items():
        leaf = authority.issue_client_cert(intermediate, user, org=org)
        authority.write_certificates(base / user / "chain.pem", leaf.full_chain)
        authority.write_private_key(base / user / "key.pem", leaf.key)
    return PKI(base, intermediate)


def pause() -> Any:
    """One look later (records reach the audit file on the store's thread, after the answer)."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    return deferLater(reactor, 0.05, lambda: None)


# --- input checks, without a router ---------------------------------------------------------------------------------


class Inputs(SynchronousTestCase):
    """What /audit and /admin/peers accept: each refusal a bad_request naming the field."""

    def refused(self, field: str, fn: Any, *args: Any) -> RouterError:
        exc = self.assertRaises(RouterError, fn, *args)
        self.assertEqual((exc.code, exc.details.get("field")), ("bad_request", field), exc.message)
        return exc

    def test_audit_query(self) -> None:
        query = gov.audit_query({"initiator": "alice", "ipath": "z.*.asset", "interface": "tx.commit",
                                 "outcome": "forbidden", "since": "1.5", "until": "1700000000", "after": "7",
                                 "limit": "1000"})
        self.assertEqual((query.initiator, query.ipath, query.interface, query.outcome, query.since, query.until,
                          query.after_seq, query.limit),
                         ("alice", "z.*.asset", "tx.commit", "forbidden", 1.5, 1700000000.0, 7, 1000))
        self.assertEqual(gov.audit_query({}).limit, 100)
        self.assertEqual(gov.audit_query({"ipath": "payment"}).ipath, "payment")
        for field, value in [("limit", "0"), ("limit", "1001"), ("limit", "²"), ("limit", "-1"), ("after", "-1"),
                             ("after", "٣"), ("after", "1" * 19), ("since", "nan"), ("since", "inf"),
                             ("until", "-2"), ("since", "x"), ("ipath", "a.b.c.d"), ("ipath", "a..b"),
                             ("ipath", "a.b%"), ("initiator", ""), ("initiator", "a" * 65), ("interface", "1x"),
                             ("outcome", "OK"), ("outcome", "x" * 65)]:
            self.refused(field, gov.audit_query, {field: value})

    def test_peer_body(self) -> None:
        self.assertEqual(gov.peer_to_add({"address": "127.0.0.1:9000", "id": "router-b"}),
                         ("127.0.0.1:9000", "router-b"))
        self.assertEqual(gov.peer_to_add({"address": "[::1]:9000"}), ("[::1]:9000", None))
        self.assertEqual(gov.peer_to_add({"address": "r.example.org:1"}), ("r.example.org:1", None))
        for body, field in [({}, "address"), ({"address": 5}, "address"), ({"address": "host"}, "address"),
                            ({"address": "host:0"}, "address"), ({"address": "host:65536"}, "address"),
                            ({"address": "ho st:1"}, "address"), ({"address": "[nope]:1"}, "address"),
                            ({"address": "h:1", "id": "Router-B"}, "id"), ({"address": "h:1", "id": 3}, "id"),
                            ({"address": "h:1", "extra": 1}, "extra")]:
            self.refused(field, gov.peer_to_add, body)
        self.assertEqual(gov.peer_to_remove("router-b"), "router-b")
        self.assertEqual(gov.peer_to_remove("127.0.0.1:9000"), "127.0.0.1:9000")
        self.refused("id", gov.peer_to_remove, "Router B")

    def test_account_inputs(self) -> None:
        self.assertEqual(gov.account_to_create({"user": "alice", "chain": "z.evm"}), ("alice", "z.evm"))
        self.assertEqual(gov.accounts_filter({}), (None, None))
        self.assertEqual(gov.accounts_filter({"user": "bob", "chain": "z.one"}), ("bob", "z.one"))
        self.assertEqual(gov.account_to_remove("alice", "z.evm"), ("alice", "z.evm"))
        self.refused("user", gov.account_to_create, {"chain": "z.evm"})
        self.refused("chain", gov.account_to_create, {"user": "alice"})
        self.refused("key", gov.account_to_create, {"user": "alice", "chain": "z.evm", "key": "00"})
        self.refused("user", gov.account_to_create, {"user": 5, "chain": "z.evm"})
        self.refused("user", gov.account_to_create, {"user": "anonymous", "chain": "z.evm"})  # nobody in particular
        self.refused("chain", gov.account_to_create, {"user": "alice", "chain": "z.evm.extra"})
        self.refused("chain", gov.accounts_filter, {"chain": "z"})
        self.refused("user", gov.accounts_filter, {"user": "a b"})
        self.refused("user", gov.account_to_remove, "router:router-a", "z.evm")
        self.refused("chain", gov.account_to_remove, "alice", "z.e/vm")

    def test_whoami_shape(self) -> None:
        self.assertEqual(gov.whoami(Identity("alice", "bank-a", frozenset({"user", "auditor"}), "tls")),
                         {"name": "alice", "org": "bank-a", "roles": ["auditor", "user"], "proven": "tls"})


class PlainApi(SynchronousTestCase):
    """The endpoints over RestApi and a fake router (plain HTTP: the caller is anonymous, the mode open)."""

    def request(self, method: bytes, uri: str, body: Any = None, api: RestApi | None = None) -> tuple[int, Any]:
        req = Req(method, uri, b"" if body is None else json.dumps(body).encode())
        render(api or RestApi(FakeRouter()), req)
        return answer(req)

    def test_whoami_anonymous(self) -> None:
        status, body = self.request(b"GET", "/whoami")
        self.assertEqual((status, body["data"]), (200, {"name": "anonymous", "org": None, "roles": [],
                                                        "proven": "none"}))

    def permissive(self) -> RestApi:
        """A router whose ACL allows everything (in open mode, admin and audit still need their roles)."""
        from wecross.governance.acl import Policy
        from wecross.governance.enforce import Governance

        return RestApi(FakeRouter(), governance=Governance(Policy([], default="allow")))

    def test_open_mode_keeps_admin_and_audit_to_their_roles(self) -> None:
        for method, uri, body in ((b"GET", "/audit", None), (b"POST", "/admin/peers", {"address": "127.0.0.1:1"}),
                                  (b"DELETE", "/admin/peers/router-b", None)):
            status, answered = self.request(method, uri, body)
            self.assertEqual((status, answered["error"]["code"]), (403, "forbidden"), uri)
            self.assertIn("without an ACL file", answered["error"]["message"])

    def test_open_mode_keeps_accounts_to_admins(self) -> None:
        for method, uri, body in ((b"GET", "/admin/accounts", None),
                                  (b"POST", "/admin/accounts", {"user": "alice", "chain": "z.evm"}),
                                  (b"DELETE", "/admin/accounts/alice/z.evm", None)):
            status, answered = self.request(method, uri, body)
            self.assertEqual((status, answered["error"]["code"]), (403, "forbidden"), uri)
            self.assertIn("without an ACL file", answered["error"]["message"])
            # Allowed by a permissive ACL, a router without a keystore has none to show.
            status, answered = self.request(method, uri, body, api=self.permissive())
            self.assertEqual((status, answered["error"]["code"]), (404, "not_found"), uri)
            self.assertIn("keeps no keystore", answered["error"]["message"])

    def test_accounts_routes(self) -> None:
        self.assertEqual(self.request(b"PUT", "/admin/accounts")[0], 405)
        self.assertEqual(self.request(b"GET", "/admin/accounts/alice/z.evm")[0], 405)
        self.assertEqual(self.request(b"DELETE", "/admin/accounts/alice")[0], 404)
        status, body = self.request(b"GET", "/admin/accounts?key=1")
        self.assertEqual((status, body["error"]["code"]), (400, "bad_request"))

    def test_no_audit_trail_is_404(self) -> None:
        status, body = self.request(b"GET", "/audit?limit=5", api=self.permissive())
        self.assertEqual((status, body["error"]["code"]), (404, "not_found"))
        self.assertIn("keeps no audit trail", body["error"]["message"])
        status, body = self.request(b"GET", "/audit?limit=5000", api=self.permissive())
        self.assertEqual((status, body["error"]["details"]), (400, {"field": "limit"}))

    def test_admin_routes(self) -> None:
        status, body = self.request(b"POST", "/admin/peers", {"address": "127.0.0.1:1"}, api=self.permissive())
        self.assertEqual((status, body["error"]["code"]), (422, "unsupported"))  # a facade without peers
        self.assertEqual(self.request(b"GET", "/admin/peers")[0], 405)
        self.assertEqual(self.request(b"POST", "/admin/peers/router-b")[0], 405)
        self.assertEqual(self.request(b"DELETE", "/admin/nothing")[0], 404)

    def test_non_ascii_digits_are_a_bad_request(self) -> None:
        # "²".isdigit() is true and int("²") raises: these answered 500 internal before.
        two = "\u00b2".encode()
        for path, args in (("/tx", {b"limit": [two]}), ("/htlc", {b"limit": [two]}),
                           ("/chains/z/one/headers/%C2%B2", {}), ("/z/one/hello/events", {b"from_block": [two]})):
            req = Req(b"GET", path)
            req.args = args
            render(RestApi(FakeRouter()), req)
            status, body = answer(req)
            self.assertEqual((status, body["error"]["code"]), (400, "bad_request"), path)


# --- real routers ---------------------------------------------------------------------------------------------------


class GovernanceRestTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.pki = test_pki()
        self.workdir = Path(tempfile.mkdtemp(prefix="wecross-govrest-"))
        self.acl = self.workdir / "acl.toml"
        self.acl.write_bytes(ACL)
        self.crl = self.workdir / "crl.pem"
        self.crl.write_bytes(crl_of(self.pki.issuer))  # in force from the start, naming nobody of ours

        def adjust(rid: str, settings: Any) -> Any:
            certs = self.pki.base / rid
            tls = dataclasses.replace(settings.p2p_tls, ca=self.pki.base / "ca.crt", cert=certs / "chain.pem",
                                      key=certs / "key.pem")
            if rid == "router-a":
                tls = dataclasses.replace(tls, crl=self.crl, crl_reload=0.05)
                rest_tls = TLSPaths(self.pki.base / "ca.crt", certs / "chain.pem", certs / "key.pem")
                settings = dataclasses.replace(
                    settings, rest=RestSettings(Address("127.0.0.1", 0), rest_tls, True, settings.rest.max_body),
                    governance=GovernanceSettings(acl_file=self.acl, acl_reload=0.05))
            return dataclasses.replace(settings, p2p_tls=tls)

        self.net = support.Network(self.workdir, {"router-a": {"zones": ["z"], "chain": "one"},
                                                  "router-b": {"zones": ["z"], "chain": "two"}}, [], adjust=adjust)
        self.addCleanup(self.net.stop)
        yield self.net.start()
        self.a, self.b = self.net.nodes["router-a"], self.net.nodes["router-b"]
        self.clients: list[AsyncWeCrossClient] = []

    def client(self, user: str) -> AsyncWeCrossClient:
        base = self.pki.base
        client = AsyncWeCrossClient(f"https://127.0.0.1:{self.a.rest_port}", ca=base / "ca.crt",
                                    cert=base / user / "chain.pem", key=base / user / "key.pem",
                                    server_name="router-a", timeout=20)
        self.addCleanup(client.close)
        return client

    def blocking(self, user: str) -> WeCrossClient:
        base = self.pki.base
        client = WeCrossClient(f"https://127.0.0.1:{self.a.rest_port}", ca=base / "ca.crt",
                               cert=base / user / "chain.pem", key=base / user / "key.pem",
                               server_name="router-a", timeout=20)
        self.addCleanup(client.close)
        return client

    @defer.inlineCallbacks
    def refused(self, d: Any, status: int, code: str) -> Any:
        try:
            yield d
        except WeCrossError as exc:
            self.assertEqual((exc.status, exc.code), (status, code), exc.message)
            if status == 403:
                self.assertIsInstance(exc, PermissionDenied)
            return exc
        self.fail(f"expected {status} {code}")

    @defer.inlineCallbacks
    def test_whoami(self) -> Any:
        me = yield self.client("alice").whoami()
        self.assertEqual(me, {"name": "alice", "org": "bank-a", "roles": ["user"], "proven": "tls"})
        auditor = yield self.client("audrey").whoami()
        self.assertEqual(auditor["roles"], ["auditor", "user"])  # granted by the ACL file's [roles]
        # The blocking client and the console say the same.
        out, err = io.StringIO(), io.StringIO()
        session = Session(self.blocking("root"), out=out, err=err)
        ok = yield threads.deferToThread(session.run_line, "whoami")
        self.assertTrue(ok, err.getvalue())
        self.assertIn("admin, user", out.getvalue())

    @defer.inlineCallbacks
    def test_audit_read_by_auditor_refused_to_user_and_every_request_recorded(self) -> Any:
        alice, audrey = self.client("alice"), self.client("audrey")
        yield alice.call("z.one.asset", "balanceOf", "alice")
        yield alice.send_transaction("z.one.asset", "transfer", "bob", 5)
        yield self.refused(alice.set_data("z.one.hello", "k", "v"), 403, "forbidden")
        exc = yield self.refused(alice.audit(), 403, "forbidden")
        self.assertIn("audit.read", exc.message)  # names the missing grant
        self.assertEqual(exc.details["interface"], "audit.read")

        wanted = [("call", "ok"), ("sendTransaction", "ok"), ("setData", "forbidden"), ("audit.read", "forbidden")]
        pages: list[Any] = []

        @defer.inlineCallbacks
        def read() -> Any:
            pages.append((yield audrey.audit(initiator="alice")))

        # Records are written by the store's thread after the answers: read until all four are on disk.
        yield read()
        for _ in range(200):
            if [(r["interface"], r["outcome"]) for r in pages[-1]["records"]] == wanted:
                break
            yield pause()
            yield read()
        page = pages[-1]
        self.assertEqual([(r["interface"], r["outcome"]) for r in page["records"]], wanted)
        self.assertTrue(all(r["org"] == "bank-a" and r["entry_router"] == "router-a" for r in page["records"]))
        self.assertGreaterEqual(page["head"]["seq"], page["records"][-1]["seq"])
        # Filters and paging.
        only = yield audrey.audit(initiator="alice", outcome="forbidden", ipath="z.one")
        self.assertEqual([r["interface"] for r in only["records"]], ["setData"])
        first = yield audrey.audit(initiator="alice", limit=1)
        rest = yield audrey.audit(initiator="alice", after=first["records"][0]["seq"])
        self.assertEqual([r["seq"] for r in first["records"] + rest["records"]],
                         [r["seq"] for r in page["records"]])
        yield self.refused(audrey.audit(limit=0), 400, "bad_request")

    @defer.inlineCallbacks
    def test_add_and_remove_peer_by_admin_refused_for_user(self) -> Any:
        a, b = self.a, self.b
        address = f"127.0.0.1:{b.p2p_port}"
        alice, root = self.client("alice"), self.client("root")
        exc = yield self.refused(alice.add_peer(address, "router-b"), 403, "forbidden")
        self.assertIn("admin.peers", exc.message)
        self.assertEqual(a.peers.dialers, [])
        change = yield root.add_peer(address, "router-b")
        self.assertEqual((change["changed"], change["id"], change["address"]), (True, "router-b", address))
        yield support.until(lambda: "router-b" in a.peers.links and "router-a" in b.peers.links)
        again = yield root.add_peer(address, "router-b")
        self.assertFalse(again["changed"])
        yield self.refused(root.add_peer(address, "router-c"), 400, "bad_request")  # dialled under another id
        yield self.refused(alice.remove_peer("router-b"), 403, "forbidden")
        self.assertIn("router-b", a.peers.links)
        removed = yield root.remove_peer("router-b")
        self.assertTrue(removed["changed"])
        yield support.until(lambda: "router-b" not in a.peers.links and "router-a" not in b.peers.links)
        gone = yield root.remove_peer("router-b")
        self.assertFalse(gone["changed"])
        # Each admin action is in the trail with its outcome, refused ones too.
        wanted = [("alice", "addPeer", "forbidden"), ("root", "addPeer", "ok"), ("root", "addPeer", "ok"),
                  ("root", "addPeer", "bad_request"), ("alice", "removePeer", "forbidden"),
                  ("root", "removePeer", "ok"), ("root", "removePeer", "ok")]
        got: list[Any] = []
        for _ in range(200):
            page = yield root.audit(interface="admin.peers")
            got = [(r["initiator"], r["method"], r["outcome"]) for r in page["records"]]
            if got == wanted:
                break
            yield pause()
        self.assertEqual(got, wanted)

    @defer.inlineCallbacks
    def test_console_admin_commands(self) -> Any:
        out, err = io.StringIO(), io.StringIO()
        session = Session(self.blocking("root"), out=out, err=err)
        ok = yield threads.deferToThread(session.run_line, f"addPeer 127.0.0.1:{self.b.p2p_port} router-b")
        self.assertTrue(ok, err.getvalue())
        self.assertIn("dialling", out.getvalue())
        yield support.until(lambda: "router-b" in self.a.peers.links)
        ok = yield threads.deferToThread(session.run_line, "removePeer router-b; audit interface=admin.peers")
        self.assertTrue(ok, err.getvalue())
        self.assertIn("removed router-b", out.getvalue())
        self.assertIn("head: seq", out.getvalue())
        user = Session(self.blocking("alice"), out=io.StringIO(), err=err)
        ok = yield threads.deferToThread(user.run_line, "audit limit=5")
        self.assertFalse(ok)
        self.assertIn("error: forbidden:", err.getvalue())

    @defer.inlineCallbacks
    def test_no_keystore_is_404(self) -> Any:
        root = self.client("root")
        self.assertIsNone(self.a.keystore)  # its embedded stub acts from nobody's own account
        for d in (root.accounts(), root.create_account("alice", "z.one"), root.remove_account("alice", "z.one")):
            exc = yield self.refused(d, 404, "not_found")
            self.assertIn("keeps no keystore", exc.message)

    @defer.inlineCallbacks
    def test_accounts_listed_created_removed_by_admin_refused_for_user(self) -> Any:
        keystore = Keystore.in_data_dir(self.workdir / "keys", Kek.generate())
        self.addCleanup(keystore.close)
        self.a.site.api.keystore = keystore  # as the node opens it when a stub has per_user_accounts
        alice, root = self.client("alice"), self.client("root")
        for ask in (alice.accounts, lambda: alice.create_account("alice", "z.evm"),
                    lambda: alice.remove_account("bob", "z.evm")):  # one after the other: the trail's order
            exc = yield self.refused(ask(), 403, "forbidden")
            self.assertIn("admin.accounts", exc.message)
        empty = yield root.accounts()
        self.assertEqual(empty, [])
        made = yield root.create_account("alice", "z.evm")
        self.assertEqual((made["user"], made["chain"]), ("alice", "z.evm"))
        self.assertRegex(made["address"], "^0x[0-9a-fA-F]{40}$")
        again = yield root.create_account("alice", "z.evm")
        self.assertEqual(again, made)  # idempotent
        yield root.create_account("bob", "z.evm")
        rows = yield root.accounts()
        self.assertEqual([(r["user"], r["chain"]) for r in rows], [("alice", "z.evm"), ("bob", "z.evm")])
        mine = yield root.accounts(user="alice", chain="z.evm")
        self.assertEqual(mine, [made])
        self.assertEqual((yield root.accounts(chain="z.other")), [])
        yield self.refused(root.create_account("anonymous", "z.evm"), 400, "bad_request")

        # No answer carries key material: each account is these four fields, and no secret appears anywhere.
        secrets = [keystore.signer(user, "z.evm").secret.hex() for user in ("alice", "bob")]
        sync_root = self.blocking("root")
        raw = yield threads.deferToThread(lambda: json.dumps([sync_root.accounts(),
                                                              sync_root.create_account("alice", "z.evm")]))
        for row in [*rows, made]:
            self.assertEqual(set(row), {"user", "chain", "address", "created"})
        for secret in secrets:
            self.assertNotIn(secret, raw.lower())
            self.assertNotIn(secret, json.dumps([rows, made]).lower())

        removed = yield root.remove_account("alice", "z.evm")
        self.assertEqual(removed["address"], made["address"])
        yield self.refused(root.remove_account("alice", "z.evm"), 404, "not_found")
        self.assertEqual([r["user"] for r in (yield root.accounts())], ["bob"])

        # The console says the same.
        out, err = io.StringIO(), io.StringIO()
        session = Session(sync_root, out=out, err=err)
        ok = yield threads.deferToThread(session.run_line, "createAccount carol z.evm; listAccounts * z.evm; "
                                                           "removeAccount carol z.evm")
        self.assertTrue(ok, err.getvalue())
        printed = out.getvalue()
        self.assertIn("account of carol on z.evm: 0x", printed)
        self.assertIn("removed the account of carol on z.evm", printed)
        self.assertIn("bob", printed)

        # Every request is in the trail with its outcome, refused ones too.
        wanted = [("alice", "listAccounts", "forbidden"), ("alice", "createAccount", "forbidden"),
                  ("alice", "removeAccount", "forbidden"), ("root", "listAccounts", "ok"),
                  ("root", "createAccount", "ok"), ("root", "createAccount", "ok"), ("root", "createAccount", "ok")]
        got: list[Any] = []
        for _ in range(200):
            page = yield root.audit(interface="admin.accounts")
            got = [(r["initiator"], r["method"], r["outcome"]) for r in page["records"]]
            if got[:len(wanted)] == wanted and len(got) >= 19:
                break
            yield pause()
        self.assertEqual(got[:len(wanted)], wanted)
        self.assertIn(("root", "createAccount", "bad_request"), got)
        self.assertIn(("root", "removeAccount", "not_found"), got)

    @defer.inlineCallbacks
    def test_revoked_user_refused_within_one_reload(self) -> Any:
        mallory = self.client("mallory")
        me = yield mallory.whoami()  # the connection it keeps alive was admitted before the revocation
        self.assertEqual(me["name"], "mallory")
        cert = authority.read_certificates(self.pki.base / "mallory" / "chain.pem")[0]
        self.crl.write_bytes(crl_of(self.pki.issuer, cert))
        yield support.until(lambda: self.a.is_revoked(cert))
        for call in (mallory.whoami, mallory.status, lambda: mallory.call("z.one.asset", "balanceOf", "mallory")):
            exc = yield self.refused(call(), 401, "unauthenticated")
            self.assertIn("certificate revoked", exc.message)
        other = yield self.client("alice").whoami()  # the others are unaffected
        self.assertEqual(other["name"], "alice")

    def test_sdk_refuses_bad_arguments_before_sending(self) -> None:
        client = WeCrossClient("http://127.0.0.1:1")
        self.assertRaises(WeCrossError, client.remove_peer, "")
        self.assertRaises(WeCrossError, client.audit, limit="5")  # type: ignore[arg-type]


class ExchangeControl(SynchronousTestCase):
    """An HTLC exchange is acted on (unlock, refund) only by the party that started it here, or an admin."""

    def test_another_identity_cannot_act_on_an_exchange(self) -> None:
        acted: list[tuple[str, str]] = []

        class Htlcs:
            def get(self, htlc_id: str) -> dict[str, Any]:
                return {"htlc_id": htlc_id, "own": {"sender": "alice"}}

            def act(self, htlc_id: str, action: str, body: Any, sender: str) -> Any:
                acted.append((action, sender))
                return defer.succeed({"htlc_id": htlc_id})

        router = FakeRouter()
        router.htlc = lambda: Htlcs()  # type: ignore[attr-defined]
        req = Req(b"POST", "/htlc/h1/refund", b"{}")
        render(RestApi(router), req)
        status, body = answer(req)
        self.assertEqual((status, body["error"]["code"]), (403, "forbidden"))
        self.assertIn("'alice'", body["error"]["message"])
        self.assertEqual(acted, [])
