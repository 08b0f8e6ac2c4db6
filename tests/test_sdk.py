"""The Python SDK (wecross/sdk) against real routers on 127.0.0.1, plus its sans-IO core on its own.

```
router-b (z.one, REST over HTTPS, client certificates required) -- router-a (entry, plain HTTP) -- router-c (z.two)
```

The blocking client runs in a thread (deferToThread) so the routers, on this test's reactor, keep serving it.
"""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task, threads
from twisted.trial.unittest import TestCase

from tests import support
from wecross.config import Address, RestSettings, TLSPaths, TxSettings
from wecross.sdk import (
    AsyncWeCrossClient,
    BadRequest,
    ConfigError,
    Conflict,
    ConnectionError,
    Locked,
    NotFound,
    PermissionDenied,
    ProofInvalid,
    Rejected,
    ServerError,
    Unreachable,
    WeCrossClient,
    WeCrossError,
    protocol,
)
from wecross.sdk.errors import error_class

ACCOUNTS = {"alice": 1000, "bob": 1000, "anonymous": 1000}
RESOURCES = [{"name": "hello", "kind": "kv"}, {"name": "asset", "kind": "asset", "initial": ACCOUNTS}]
ROUTERS = {"router-a": {"zones": ["z"]}, "router-b": {"zones": ["z"], "chain": "one", "resources": RESOURCES},
           "router-c": {"zones": ["z"], "chain": "two", "resources": RESOURCES}}
LINKS = [("router-a", "router-b"), ("router-a", "router-c")]
ONE, TWO, HELLO = "z.one.asset", "z.two.asset", "z.one.hello"


def _envelope(status: int, code: str, details: dict[str, Any] | None = None) -> WeCrossError:
    body = {"ok": False, "error": {"code": code, "message": f"{code} happened", **({"details": details}
                                                                                   if details else {})}}
    try:
        protocol.parse_response(status, json.dumps(body).encode())
    except WeCrossError as exc:
        return exc
    raise AssertionError("an error envelope must raise")


class Protocol(TestCase):
    """The shared request/answer code, with no network."""

    def test_error_classes_by_code_then_status(self) -> None:
        cases = [(400, "bad_request", BadRequest), (400, "bad_ipath", BadRequest), (413, "too_large", BadRequest),
                 (403, "forbidden", PermissionDenied), (401, "unauthenticated", PermissionDenied),
                 (404, "unknown_resource", NotFound), (404, "unknown_tx", NotFound), (409, "tx_state", Conflict),
                 (409, "locked", Locked), (422, "insufficient_funds", Rejected), (422, "bad_secret", Rejected),
                 (502, "proof_invalid", ProofInvalid), (503, "unreachable", Unreachable), (504, "timeout", Unreachable),
                 (502, "peer_lost", Unreachable), (500, "internal", ServerError), (501, "unsupported", ServerError),
                 (418, "something_new", BadRequest), (503, "something_new", Unreachable)]
        for status, code, cls in cases:
            exc = _envelope(status, code, {"check": "x"})
            self.assertIs(type(exc), cls, (status, code))
            self.assertEqual((exc.code, exc.status, exc.message, exc.details), (code, status, f"{code} happened",
                                                                                 {"check": "x"}))
        self.assertTrue(issubclass(Locked, Conflict) and issubclass(ConnectionError, Unreachable))
        self.assertIs(error_class("unreachable_router", None), ConnectionError)
        self.assertEqual(str(_envelope(409, "locked")), "locked: locked happened (HTTP 409)")

    def test_answers_outside_the_envelope(self) -> None:
        self.assertEqual(protocol.parse_response(200, b'{"ok": true, "data": [1]}'), [1])
        for status, body, cls in [(502, b"<html>Bad Gateway</html>", Unreachable), (200, b"[1, 2]", ServerError),
                                  (404, b"Not Found", NotFound), (500, b'{"ok": false}', ServerError)]:
            exc = self.assertRaises(WeCrossError, protocol.parse_response, status, body)
            self.assertIs(type(exc), cls, body)
            self.assertEqual((exc.code, exc.status), ("invalid_response", status))
        exc = self.assertRaises(ServerError, protocol.status().parse, [1])
        self.assertEqual(exc.code, "invalid_response")

    def test_requests(self) -> None:
        call = protocol.call("z.one.my res", "get", ["k", 1])
        self.assertEqual((call.method, call.path, json.loads(call.body or b"")),
                         ("POST", "/z/one/my%20res/call", {"method": "get", "args": ["k", 1]}))
        self.assertEqual(protocol.resources("z", None).path, "/resources?zone=z")
        events = protocol.events(HELLO, 3, 2)
        self.assertEqual((events.path, events.extra_time, events.idempotent),
                         ("/z/one/hello/events?from_block=3&wait=2.0", 2.0, True))
        self.assertEqual(protocol.commit_tx("router-a:ff").path, "/tx/router-a:ff/commit")
        self.assertEqual(protocol.commit_tx("router-a:ff").extra_time, protocol.COORDINATOR_WAIT)
        self.assertEqual(protocol.get_tx("a/b").path, "/tx/a%2Fb")

    def test_governance_requests(self) -> None:
        self.assertEqual((protocol.whoami().method, protocol.whoami().path), ("GET", "/whoami"))
        audit = protocol.audit(initiator="alice", ipath="z.*", since=1, after=4, limit=10)
        self.assertEqual(audit.path, "/audit?initiator=alice&ipath=z.%2A&since=1.0&after=4&limit=10")
        self.assertEqual(protocol.audit().path, "/audit")
        for bad in ({"limit": "10"}, {"after": 1.5}, {"since": "yesterday"}, {"until": True}):
            self.assertRaises(BadRequest, protocol.audit, **bad)
        add = protocol.add_peer("10.0.0.7:25500", "router-c")
        self.assertEqual((add.method, add.path, json.loads(add.body or b"")),
                         ("POST", "/admin/peers", {"address": "10.0.0.7:25500", "id": "router-c"}))
        self.assertEqual(json.loads(protocol.add_peer("h:1").body or b""), {"address": "h:1"})
        remove = protocol.remove_peer("10.0.0.7:25500")
        self.assertEqual((remove.method, remove.path, remove.body, remove.idempotent),
                         ("DELETE", "/admin/peers/10.0.0.7:25500", None, False))
        self.assertEqual(protocol.remove_peer("a/b").path, "/admin/peers/a%2Fb")
        self.assertRaises(BadRequest, protocol.remove_peer, "")
        listed = protocol.accounts(user="alice", chain="z.evm")
        self.assertEqual((listed.method, listed.path), ("GET", "/admin/accounts?user=alice&chain=z.evm"))
        self.assertEqual(protocol.accounts().path, "/admin/accounts")
        self.assertEqual(listed.parse({"accounts": [{"user": "alice"}]}), [{"user": "alice"}])
        self.assertRaises(WeCrossError, listed.parse, {"nothing": []})
        create = protocol.create_account("alice", "z.evm")
        self.assertEqual((create.method, create.path, json.loads(create.body or b"")),
                         ("POST", "/admin/accounts", {"user": "alice", "chain": "z.evm"}))
        drop = protocol.remove_account("alice@bank", "z.evm")
        self.assertEqual((drop.method, drop.path, drop.body), ("DELETE", "/admin/accounts/alice@bank/z.evm", None))
        self.assertEqual(protocol.remove_account("a/b", "z.evm").path, "/admin/accounts/a%2Fb/z.evm")
        for user, chain in (("", "z.evm"), ("alice", "z"), ("alice", "z.evm.x"), (5, "z.evm")):
            self.assertRaises(BadRequest, protocol.create_account, user, chain)
            self.assertRaises(BadRequest, protocol.remove_account, user, chain)
        for bad in ("z.one", "z..x", "a.b.c.d"):
            exc = self.assertRaises(BadRequest, protocol.call, bad, "get", [])
            self.assertEqual((exc.code, exc.status), ("bad_ipath", None))
        exc = self.assertRaises(BadRequest, protocol.call, HELLO, "set", [b"\x00"])
        self.assertIn("0x", exc.message)
        self.assertRaises(BadRequest, protocol.start_tx, "z.one.asset")
        self.assertRaises(BadRequest, protocol.header, "z", 1)
        self.assertRaises(BadRequest, protocol.events, HELLO, "1")
        self.assertRaises(BadRequest, protocol.htlc_start, own={"path": ONE, "receiver": "b", "amount": 1},
                          other={"path": TWO, "sender": "b", "amount": 1}, role="participant")

    def test_configuration(self) -> None:
        target = protocol.parse_base_url("https://[::1]:8443/gw/")
        self.assertEqual((target.host, target.port, target.prefix, target.url("/status")),
                         ("::1", 8443, "/gw", "https://[::1]:8443/gw/status"))
        self.assertEqual(protocol.parse_base_url("http://h").port, 80)
        for bad in ("ftp://h", "http://", "http://u:p@h", "http://h:99999", "http://h/?q=1", ""):
            self.assertRaises(ConfigError, protocol.parse_base_url, bad)
        self.assertRaises(ConfigError, WeCrossClient, "http://h", ca=str(support.pki() / "ca.crt"))
        self.assertRaises(ConfigError, WeCrossClient, "https://h", ca="/nonexistent/ca.crt")
        self.assertRaises(ConfigError, WeCrossClient, "https://h", key=str(support.pki() / "alice" / "key.pem"))
        self.assertRaises(ConfigError, WeCrossClient, "http://h", timeout=0)
        alice = support.pki() / "alice"
        exc = self.assertRaises(ConfigError, WeCrossClient, "https://h", cert=str(alice / "chain.pem"),
                                key=str(support.pki() / "router-a" / "key.pem"))
        self.assertIn("do not match", exc.message)
        self.assertRaises(ConfigError, AsyncWeCrossClient, "https://h", cert=str(alice / "chain.pem"),
                          key=str(support.pki() / "router-a" / "key.pem"))
        self.assertIsInstance(exc, ValueError)


class SdkNetwork(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        work = Path(self.mktemp())
        work.mkdir()
        pki = support.pki()

        def adjust(rid: str, s: Any) -> Any:
            s = replace(s, tx=TxSettings(participant_timeout=300.0, check_interval=0.2, htlc_interval=0.1,
                                         htlc_margin=1.0))
            if rid == "router-b":
                tls = TLSPaths(pki / "ca.crt", pki / rid / "chain.pem", pki / rid / "key.pem")
                s = replace(s, rest=RestSettings(Address("127.0.0.1", 0), tls, True, s.rest.max_body))
            return s

        self.net = support.Network(work, ROUTERS, LINKS, adjust=adjust)
        self.addCleanup(self.net.stop)
        yield self.net.start()
        self.open_connections: set[Any] = set()
        for node in self.net.nodes.values():
            self._track(node.site)
        self.addCleanup(self._server_side_closed)
        yield support.until(lambda: self.net.linked() and all(
            self.net.nodes["router-a"].router.table.route(chain) is not None for chain in ("z.one", "z.two")),
            timeout=30)

    def _track(self, site: Any) -> None:
        """Keep-alive connections the clients leave must be closed before the reactor is checked for leftovers."""
        build = site.buildProtocol
        opened = self.open_connections

        def tracked(addr: Any) -> Any:
            proto = build(addr)
            lost = proto.connectionLost
            opened.add(proto)

            def connection_lost(reason: Any) -> None:
                opened.discard(proto)
                lost(reason)

            proto.connectionLost = connection_lost
            return proto

        site.buildProtocol = tracked

    def _server_side_closed(self) -> Any:
        return support.until(lambda: not self.open_connections, timeout=10)

    def url(self, rid: str) -> str:
        scheme = "https" if rid == "router-b" else "http"
        return f"{scheme}://127.0.0.1:{self.net.nodes[rid].rest_port}"

    def client(self, rid: str = "router-a", **options: Any) -> WeCrossClient:
        client = WeCrossClient(self.url(rid), **options)
        self.addCleanup(client.close)
        return client

    def alice(self, **options: Any) -> WeCrossClient:
        pki = support.pki()
        return self.client("router-b", ca=pki / "ca.crt", cert=pki / "alice" / "chain.pem",
                           key=pki / "alice" / "key.pem", **options)

    def async_client(self, rid: str = "router-a", **options: Any) -> AsyncWeCrossClient:
        client = AsyncWeCrossClient(self.url(rid), **options)
        self.addCleanup(client.close)
        return client

    @staticmethod
    def sync(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return threads.deferToThread(fn, *args, **kwargs)

    def expect(self, exc_type: type[WeCrossError], fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a blocking call in a thread; fire with the exception it must raise."""
        def run() -> WeCrossError:
            try:
                fn(*args, **kwargs)
            except WeCrossError as exc:
                if not isinstance(exc, exc_type):
                    raise AssertionError(f"expected {exc_type.__name__}, got {exc!r}") from exc
                return exc
            raise AssertionError(f"{fn} did not raise {exc_type.__name__}")

        return threads.deferToThread(run)


class SyncClient(SdkNetwork):
    @defer.inlineCallbacks
    def test_reads_writes_and_events(self) -> Any:
        client = self.client()

        def session() -> dict[str, Any]:
            out: dict[str, Any] = {
                "index": client.index(), "status": client.status(), "peers": client.peers(),
                "routes": client.routes(), "all": client.resources(), "one": client.resources(zone="z", chain="one"),
                "chains": client.chains(),
            }
            out["sent"] = client.send_transaction(HELLO, "set", "greeting", "hi")
            out["called"] = client.call(HELLO, "get", "greeting")
            out["set"] = client.set_data(HELLO, "k", {"nested": [1, 2]})
            out["got"] = client.get_data(HELLO, "k")
            out["header"] = client.header("z.one", out["sent"]["block_number"])
            out["events"] = client.events(HELLO, 0, wait=0.5)
            out["followed"] = next(client.follow_events(HELLO, 0, wait=0.5))
            return out

        out = yield self.sync(session)
        self.assertIn("endpoints", out["index"])
        self.assertEqual(out["status"]["router_id"], "router-a")
        self.assertEqual(sorted(p["id"] for p in out["peers"]), ["router-b", "router-c"])
        self.assertIn("routes", out["routes"])
        self.assertEqual({r["ipath"] for r in out["one"]}, {ONE, HELLO})
        self.assertTrue({ONE, TWO, HELLO} <= {r["ipath"] for r in out["all"]})
        self.assertIn("trusted_headers", out["chains"])
        sent = out["sent"]
        self.assertEqual((sent["router"], sent["path"][0]), ("router-b", "router-a"))
        self.assertTrue(sent["verified"]["proof"], sent["verified"])
        self.assertEqual(out["called"]["output"], "hi")
        self.assertIn("tx_hash", out["set"])
        self.assertEqual(out["got"]["output"], {"nested": [1, 2]})
        self.assertEqual(out["header"]["chain"], "z.one")
        self.assertEqual(out["events"]["events"][0]["name"], "Set")
        self.assertGreater(out["events"]["next_block"], 0)
        self.assertEqual(out["followed"]["name"], "Set")

    @defer.inlineCallbacks
    def test_errors_map_to_exceptions(self) -> Any:
        client = self.client()
        exc = yield self.expect(NotFound, client.call, "z.one.nothing", "get", "k")
        self.assertEqual((exc.code, exc.status), ("unknown_resource", 404))
        exc = yield self.expect(BadRequest, client.call, HELLO, "")
        self.assertEqual((exc.code, exc.status), ("bad_request", 400))
        exc = yield self.expect(BadRequest, client.call, "z.one.bad!", "get")
        self.assertEqual((exc.code, exc.status), ("bad_ipath", 400))
        exc = yield self.expect(BadRequest, client.call, "z.one", "get")
        self.assertEqual((exc.code, exc.status), ("bad_ipath", None))
        exc = yield self.expect(Rejected, client.send_transaction, ONE, "transfer", "bob", 10 ** 6)
        self.assertEqual((exc.code, exc.status), ("insufficient_funds", 422))
        exc = yield self.expect(NotFound, client.get_tx, "router-a:nope")
        self.assertEqual((exc.code, exc.status), ("unknown_tx", 404))
        exc = yield self.expect(BadRequest, client.events, HELLO, 0, 61)
        self.assertEqual(exc.details.get("field"), "wait")
        # Locked: a prepared step holds anonymous's balance on chain one.
        record = yield self.sync(client.start_tx, [ONE])
        yield self.sync(client.exec_tx, record["tx_id"], ONE, "transfer", "bob", 1)
        exc = yield self.expect(Locked, client.call, ONE, "balanceOf", "anonymous")
        self.assertEqual((exc.code, exc.status), ("locked", 409))
        self.assertIn(record["tx_id"], exc.message)
        done = yield self.sync(client.commit_tx, record["tx_id"])
        self.assertEqual(done["state"], "committed")
        exc = yield self.expect(Conflict, client.rollback_tx, record["tx_id"])
        self.assertEqual((exc.code, exc.status), ("tx_state", 409))
        # Nothing listening: a ConnectionError, never a raw socket error.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = WeCrossClient(f"http://127.0.0.1:{s.getsockname()[1]}", timeout=2)
            exc = yield self.expect(ConnectionError, dead.status)
        self.assertEqual((exc.code, exc.status, exc.details["stage"], exc.details["request_sent"]),
                         ("unreachable_router", None, "connect", False))
        self.assertIn("connection refused", exc.message)
        # Accepted by the kernel, never answered: the client's timeout, and the request may have arrived.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            with WeCrossClient(f"http://127.0.0.1:{s.getsockname()[1]}", timeout=0.3) as silent:
                exc = yield self.expect(ConnectionError, silent.status)
        self.assertEqual((exc.details["stage"], exc.details["request_sent"]), ("timeout", True))
        # The router closed a kept-alive connection: the next request notices and opens a new one.
        yield self.sync(client.status)
        for proto in list(self.open_connections):
            getattr(proto, "_channel", proto).transport.loseConnection()
        yield support.until(lambda: not self.open_connections)
        self.assertEqual((yield self.sync(client.status))["router_id"], "router-a")

    @defer.inlineCallbacks
    def test_transaction_commits_and_rolls_back(self) -> Any:
        client = self.client()

        def balances() -> dict[str, int]:
            return {f"{path}:{who}": client.call(path, "balanceOf", who)["output"]
                    for path in (ONE, TWO) for who in ("anonymous", "bob")}

        def committed() -> Any:
            with client.transaction([ONE, TWO]) as tx:
                tx.execute(ONE, "transfer", "bob", 10)
                tx.execute(TWO, "transfer", "bob", 5)
            return tx

        def raised() -> Any:
            tx = client.transaction([ONE])
            try:
                with tx:
                    tx.execute(ONE, "transfer", "bob", 7)
                    raise KeyError("the application changed its mind")
            except KeyError:
                return tx
            raise AssertionError("the exception must go on")

        def failed_step() -> Any:
            tx = client.transaction([ONE, TWO])
            try:
                with tx:
                    tx.execute(ONE, "transfer", "bob", 7)
                    tx.execute(TWO, "transfer", "bob", 10 ** 6)
            except Rejected as exc:
                return tx, exc
            raise AssertionError("the failed step must raise")

        before = yield self.sync(balances)
        tx = yield self.sync(committed)
        self.assertEqual((tx.state, len(tx.steps), tx.finished), ("committed", 2, True))
        after = yield self.sync(balances)
        self.assertEqual(after[f"{ONE}:bob"], before[f"{ONE}:bob"] + 10)
        self.assertEqual(after[f"{TWO}:anonymous"], before[f"{TWO}:anonymous"] - 5)
        first = yield self.sync(raised)
        self.assertEqual(first.state, "rolled_back")
        self.assertIn("KeyError", first.record["reason"])
        tx, exc = yield self.sync(failed_step)
        self.assertEqual((tx.state, exc.code), ("rolled_back", "insufficient_funds"))
        self.assertEqual((yield self.sync(balances)), after)
        listing = yield self.sync(client.list_tx, state="rolled_back")
        self.assertEqual({t["tx_id"] for t in listing["transactions"]}, {first.tx_id, tx.tx_id})
        record = yield self.sync(client.get_tx, tx.tx_id)
        self.assertEqual(record["state"], "rolled_back")
        adopted = yield self.sync(client.adopt_tx, record)
        self.assertEqual(adopted["state"], "rolled_back")

    @defer.inlineCallbacks
    def test_https_with_a_client_certificate(self) -> Any:
        alice = self.alice()
        status = yield self.sync(alice.status)
        self.assertEqual(status["router_id"], "router-b")
        # The sender is the certificate's CN: alice pays bob.
        before = yield self.sync(alice.call, ONE, "balanceOf", "alice")
        yield self.sync(alice.send_transaction, ONE, "transfer", "bob", 3)
        after = yield self.sync(alice.call, ONE, "balanceOf", "alice")
        self.assertEqual(after["output"], before["output"] - 3)
        pinned = self.alice(server_name="router-b")
        self.assertEqual((yield self.sync(pinned.status))["router_id"], "router-b")
        exc = yield self.expect(ConnectionError, self.alice(server_name="router-c").status)
        self.assertEqual((exc.details["stage"], exc.details["request_sent"]), ("tls", False))
        self.assertIn("router-c", exc.message)
        pki = support.pki()
        exc = yield self.expect(ConnectionError, self.client("router-b", ca=pki / "ca.crt").status)
        self.assertEqual(exc.details["stage"], "tls")
        self.assertIn("client certificate", exc.message)
        exc = yield self.expect(ConnectionError, self.client("router-b", ca=pki / "stranger" / "ca.crt").status)
        self.assertIn("certificate was refused", exc.message)

    @defer.inlineCallbacks
    def test_htlc(self) -> Any:
        alice, anonymous = self.alice(), self.client("router-c")
        started = yield self.sync(alice.htlc_start, own={"path": ONE, "receiver": "anonymous", "amount": 10},
                                  other={"path": TWO, "sender": "anonymous", "amount": 5}, timelock=60, margin=1.0)
        self.assertNotIn("secret", started)
        htlc_id = started["htlc_id"]
        joined = yield self.sync(anonymous.htlc_start, role="participant", htlc_id=htlc_id,
                                 hash_lock=started["hash_lock"], own={"path": TWO, "receiver": "alice", "amount": 5},
                                 other={"path": ONE, "sender": "alice", "amount": 10}, timelock=30, margin=1.0)
        self.assertTrue(joined["other_verified"]["proof"])
        state: dict[str, str] = {}

        def poll() -> None:
            state["alice"] = alice.htlc_get(htlc_id)["state"]
            state["anonymous"] = anonymous.htlc_get(htlc_id)["state"]

        def finished() -> bool:
            return len(state) == 2 and all(s in ("claimed", "done") for s in state.values())

        for _ in range(200):
            yield self.sync(poll)
            if finished():
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(finished(), state)
        listing = yield self.sync(alice.htlc_list)
        self.assertEqual(listing["htlcs"][0]["htlc_id"], htlc_id)
        exc = yield self.expect(Conflict, alice.htlc_refund, htlc_id)
        self.assertEqual(exc.code, "htlc_state")
        exc = yield self.expect(NotFound, alice.htlc_unlock, "router-b:nope")
        self.assertEqual((exc.code, exc.status), ("unknown_tx", 404))
        balance = yield self.sync(anonymous.call, ONE, "balanceOf", "anonymous")
        self.assertEqual(balance["output"], ACCOUNTS["anonymous"] + 10)


class AsyncClient(SdkNetwork):
    @defer.inlineCallbacks
    def test_same_methods_returning_deferreds(self) -> Any:
        client = self.async_client()
        status = yield client.status()
        self.assertEqual(status["router_id"], "router-a")
        self.assertEqual(len((yield client.peers())), 2)
        self.assertTrue((yield client.resources(chain="two")))
        sent = yield client.send_transaction(HELLO, "set", "k", "v")
        self.assertTrue(sent["verified"]["proof"])
        self.assertEqual((yield client.call(HELLO, "get", "k"))["output"], "v")
        yield client.set_data(HELLO, "d", 1)
        self.assertEqual((yield client.get_data(HELLO, "d"))["output"], 1)
        page = yield client.events(HELLO, 0, 0.5)
        self.assertTrue(page["events"])
        header = yield client.header("z.two", 0)
        self.assertEqual(header["chain"], "z.two")
        failure = yield self.assertFailure(client.call("z.one.nothing", "get"), NotFound)
        self.assertEqual((failure.code, failure.status), ("unknown_resource", 404))
        failure = yield self.assertFailure(client.call("z.one", "get"), BadRequest)  # refused before sending
        self.assertIsNone(failure.status)
        # Many requests at once share the pool's kept-alive connections.
        results = yield defer.gatherResults([client.call(ONE, "balanceOf", "bob") for _ in range(20)])
        self.assertEqual({r["output"] for r in results}, {ACCOUNTS["bob"]})

    @defer.inlineCallbacks
    def test_transactions(self) -> Any:
        client = self.async_client()

        def work(tx: Any) -> Any:
            return tx.execute(ONE, "transfer", "bob", 4).addCallback(
                lambda _: tx.execute(TWO, "transfer", "bob", 4)).addCallback(lambda _: "done")

        self.assertEqual((yield client.run_transaction(work, [ONE, TWO])), "done")
        committed = (yield client.list_tx(state="committed"))["transactions"]
        self.assertEqual(len(committed), 1)

        def failing(tx: Any) -> Any:
            return tx.execute(ONE, "transfer", "bob", 10 ** 6)

        failure = yield self.assertFailure(client.run_transaction(failing, [ONE]), Rejected)
        self.assertEqual(failure.code, "insufficient_funds")
        rolled = (yield client.list_tx(state="rolled_back"))["transactions"]
        self.assertEqual(len(rolled), 1)

        async def with_block() -> Any:
            async with client.transaction([ONE]) as tx:
                await tx.execute(ONE, "transfer", "bob", 1)
            return tx

        tx = yield defer.Deferred.fromCoroutine(with_block())
        self.assertEqual(tx.state, "committed")

        async def raising() -> Any:
            tx = client.transaction([ONE])
            try:
                async with tx:
                    await tx.execute(ONE, "transfer", "bob", 1)
                    raise ValueError("no")
            except ValueError:
                return tx

        tx = yield defer.Deferred.fromCoroutine(raising())
        self.assertEqual(tx.state, "rolled_back")
        record = yield client.get_tx(tx.tx_id)
        self.assertEqual(record["steps"][0]["ipath"], ONE)
        failure = yield self.assertFailure(client.commit_tx(tx.tx_id), Conflict)
        self.assertEqual(failure.status, 409)
        exc = yield self.assertFailure(client.start_tx([ONE]).addCallback(
            lambda r: client.exec_tx(r["tx_id"], ONE, "transfer", "bob", 1)).addCallback(
            lambda step: client.call(ONE, "balanceOf", "anonymous")), Locked)
        self.assertEqual(exc.code, "locked")
        listing = yield client.htlc_list()
        self.assertEqual(listing["htlcs"], [])
        yield self.assertFailure(client.htlc_get("router-a:nope"), NotFound)
        yield self.assertFailure(client.htlc_unlock("router-a:nope"), NotFound)
        yield self.assertFailure(client.htlc_refund("router-a:nope"), NotFound)
        yield self.assertFailure(client.htlc_start(own={"path": ONE, "receiver": "bob", "amount": 0},
                                                   other={"path": TWO, "sender": "bob", "amount": 1}), WeCrossError)
        yield self.assertFailure(client.rollback_tx("router-a:nope"), NotFound)
        yield self.assertFailure(client.adopt_tx({"tx_id": "x"}), WeCrossError)
        self.assertTrue((yield client.index())["endpoints"])
        self.assertIn("routes", (yield client.routes()))
        self.assertIn("served", (yield client.chains()))

    @defer.inlineCallbacks
    def test_https_and_transport_failures(self) -> Any:
        pki = support.pki()
        alice = self.async_client("router-b", ca=pki / "ca.crt", cert=pki / "alice" / "chain.pem",
                                  key=pki / "alice" / "key.pem", server_name="router-b")
        self.assertEqual((yield alice.status())["router_id"], "router-b")
        before = (yield alice.call(ONE, "balanceOf", "alice"))["output"]
        yield alice.send_transaction(ONE, "transfer", "bob", 2)
        self.assertEqual((yield alice.call(ONE, "balanceOf", "alice"))["output"], before - 2)
        wrong = self.async_client("router-b", ca=pki / "ca.crt", cert=pki / "alice" / "chain.pem",
                                  key=pki / "alice" / "key.pem", server_name="router-c")
        exc = yield self.assertFailure(wrong.status(), ConnectionError)
        self.assertEqual(exc.details["stage"], "tls")
        self.assertIn("does not name 'router-c'", exc.message)
        anonymous = self.async_client("router-b", ca=pki / "ca.crt")
        exc = yield self.assertFailure(anonymous.status(), ConnectionError)
        self.assertEqual((exc.code, exc.details["stage"]), ("unreachable_router", "tls"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = AsyncWeCrossClient(f"http://127.0.0.1:{s.getsockname()[1]}", timeout=2)
            exc = yield self.assertFailure(dead.status(), ConnectionError)
        self.assertEqual((exc.details["stage"], exc.details["request_sent"]), ("connect", False))
        yield dead.close()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            silent = AsyncWeCrossClient(f"http://127.0.0.1:{s.getsockname()[1]}", timeout=0.3)
            exc = yield self.assertFailure(silent.status(), ConnectionError)
            yield silent.close()
        self.assertEqual(exc.details["stage"], "timeout")
        # The caller's own cancel stays a CancelledError.
        client = self.async_client()
        waiting = client.events(HELLO, 10 ** 6, 5.0)
        reactor.callLater(0.1, waiting.cancel)  # type: ignore[attr-defined]
        yield self.assertFailure(waiting, defer.CancelledError)
        yield task.deferLater(reactor, 0.5, lambda: None)  # the router's long poll notices on its next tick
        # A long poll gets the client's timeout plus its wait: no false timeout.
        page = yield self.async_client(timeout=0.5).events(HELLO, 10 ** 6, 1.0)
        self.assertEqual(page["events"], [])
