"""A user's own signature of each resource operation (issue 11): the SDK signs with its client key, the entry
router's REST edge checks the three headers against the TLS client certificate and hands the owner a ClientProof.

```
router-a (z.one, REST over HTTPS, client certificates required) -- router-b (z.two, plain HTTP)
```

The owner's own check of the proof is tested with the router (tests of wecross/router.py); here: what the client
sends, what the REST edge refuses (each a 4xx in the JSON envelope, nothing run) and what it hands on.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
import time
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography import x509
from OpenSSL import crypto
from twisted.internet import defer, threads
from twisted.internet.interfaces import ISSLTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from tests import support
from wecross import attest
from wecross.config import Address, Limits, RestSettings, TLSPaths
from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.rest import identity
from wecross.rest.json_body import parse_json_object, parse_operation_body
from wecross.sdk import AsyncWeCrossClient, BadRequest, ConfigError, PermissionDenied, WeCrossClient, protocol
from wecross.sdk.client import ssl_context

RESOURCES = [{"name": "hello", "kind": "kv"}]
ROUTERS = {"router-a": {"zones": ["z"], "chain": "one", "resources": RESOURCES},
           "router-b": {"zones": ["z"], "chain": "two", "resources": RESOURCES}}
LOCAL, REMOTE = "z.one.hello", "z.two.hello"
NOW = 1_700_000_000.0
NONCE = bytes(range(16))


def alice() -> tuple[Path, Path]:
    pki = support.pki()
    return pki / "alice" / "chain.pem", pki / "alice" / "key.pem"


def signer(**options: Any) -> protocol.OperationSigner:
    cert, key = alice()
    options.setdefault("clock", lambda: NOW)
    return protocol.OperationSigner(cert, key, **options)


def alice_public_key() -> Any:
    return x509.load_pem_x509_certificates(alice()[0].read_bytes())[0].public_key()


def raw(values: dict[str, str]) -> dict[bytes, list[bytes] | None]:
    return {name.lower().encode(): [value.encode()] for name, value in values.items()}


class Headers(SynchronousTestCase):
    """The three headers: all or none, each in its format, else 400 naming the header."""

    def good(self) -> dict[str, str]:
        return {"WeCross-Nonce": NONCE.hex(), "WeCross-Expires": "1700000030000",
                "WeCross-Signature": base64.b64encode(b"\x30" * 70).decode()}

    def refused(self, values: dict[bytes, list[bytes] | None], header: str) -> RouterError:
        exc = self.assertRaises(RouterError, identity.parse_signature_headers, values)
        self.assertEqual((exc.code, exc.http_status, exc.details), ("bad_request", 400, {"header": header}))
        self.assertIn(header, exc.message)
        return exc

    def test_none_is_unsigned(self) -> None:
        self.assertIsNone(identity.parse_signature_headers({}))
        self.assertIsNone(identity.parse_signature_headers(dict.fromkeys(identity.SIGNATURE_HEADERS)))

    def test_well_formed(self) -> None:
        parsed = identity.parse_signature_headers(raw(self.good()))
        self.assertEqual(parsed, identity.SignatureHeaders(NONCE, 1700000030000, b"\x30" * 70))

    def test_all_or_none(self) -> None:
        for missing in ("WeCross-Nonce", "WeCross-Expires", "WeCross-Signature"):
            values = self.good()
            del values[missing]
            self.refused(raw(values), missing)

    def test_each_header_in_its_format(self) -> None:
        cases = [("WeCross-Nonce", NONCE.hex().upper()), ("WeCross-Nonce", NONCE.hex()[:30]),
                 ("WeCross-Nonce", NONCE.hex() + "00"), ("WeCross-Nonce", "zz" * 16),
                 ("WeCross-Expires", "-1"), ("WeCross-Expires", "17e11"), ("WeCross-Expires", "1.5"),
                 ("WeCross-Expires", str(1 << 63)), ("WeCross-Expires", "1" * 20), ("WeCross-Expires", ""),
                 ("WeCross-Signature", "not base64!"), ("WeCross-Signature", "YWJj"[:3]),
                 ("WeCross-Signature", base64.urlsafe_b64encode(b"\xfb\xff" * 20).decode()),
                 ("WeCross-Signature", base64.b64encode(b"x" * 1025).decode())]
        for header, value in cases:
            values = {**self.good(), header: value}
            exc = self.refused(raw(values), header)
            self.assertNotIn(value or "\x00", exc.message)  # a client's value never goes into a message

    def test_given_twice(self) -> None:
        values: dict[bytes, list[bytes] | None] = raw(self.good())
        values[b"wecross-nonce"] = [NONCE.hex().encode()] * 2
        self.refused(values, "WeCross-Nonce")


@implementer(ISSLTransport)
class _TLS:
    """A TLS transport as the REST edge sees it: the peer's certificate and the pyOpenSSL connection."""

    def __init__(self, leaf: Any, connection: Any) -> None:
        self.leaf, self.connection = leaf, connection

    def getPeerCertificate(self) -> Any:
        return self.leaf

    def getHandle(self) -> Any:
        return self.connection


class PeerChain(SynchronousTestCase):
    """The chain handed to the owner: leaf first, DER, without the root, whatever the TLS layer exposes."""

    def certs(self) -> list[crypto.X509]:
        pki = support.pki()
        leaf, intermediate = x509.load_pem_x509_certificates((pki / "alice" / "chain.pem").read_bytes())[:2]
        (root,) = x509.load_pem_x509_certificates((pki / "ca.crt").read_bytes())
        return [crypto.X509.from_cryptography(c) for c in (leaf, intermediate, root)]

    def chain(self, transport: Any) -> Any:
        request = DummyRequest([b""])
        request.transport = transport
        return identity.peer_chain(request)

    def test_verified_chain(self) -> None:
        leaf, intermediate, root = self.certs()
        der = [crypto.dump_certificate(crypto.FILETYPE_ASN1, c) for c in (leaf, intermediate)]
        verified = types.SimpleNamespace(get_verified_chain=lambda: [leaf, intermediate, root])
        self.assertEqual(self.chain(_TLS(leaf, verified)), tuple(der))
        # Without get_verified_chain: the leaf and what the client sent (the server side's list omits the leaf).
        sent = types.SimpleNamespace(get_peer_cert_chain=lambda: [intermediate, root, intermediate])
        self.assertEqual(self.chain(_TLS(leaf, sent)), tuple(der))

    def test_no_client_certificate(self) -> None:
        self.assertIsNone(self.chain(_TLS(None, None)))
        self.assertIsNone(self.chain(None))
        self.assertIsNone(self.chain(_TLS(self.certs()[0], types.SimpleNamespace())))  # a connection torn down


class Signatures(SynchronousTestCase):
    """The SDK's signer and the REST edge's check agree, and the check refuses each change."""

    limits = Limits()

    def check(self, headers: dict[str, str], body: bytes, *, op: str = "sendTransaction", ipath: str = LOCAL,
              now: float = NOW, sender: str = "alice") -> None:
        parsed = identity.parse_signature_headers(raw(headers))
        assert parsed is not None
        method, args = parse_operation_body(op, parse_json_object(body))
        identity.check_signature(alice_public_key(), parsed, sender=sender, ipath=ipath, op=op, method=method,
                                 args=args, now_ms=int(now * 1000), limits=self.limits)

    def unauthenticated(self, check: str, *args: Any, **kwargs: Any) -> RouterError:
        exc = self.assertRaises(RouterError, self.check, *args, **kwargs)
        self.assertEqual((exc.code, exc.http_status, exc.details), ("unauthenticated", 401, {"check": check}))
        return exc

    def test_signed_as_the_router_reads_it(self) -> None:
        sign = signer()
        self.assertEqual(sign.identity, "alice")
        # A tuple goes out as a JSON array and a float that is whole stays a float: what is signed is what the
        # router decodes from the bytes sent, not the Python values given.
        call = protocol.send_transaction(LOCAL, "set", ("k", [1, 2.0, "x"], 3))
        headers = call.headers(sign)
        self.assertRegex(headers["WeCross-Nonce"], r"^[0-9a-f]{32}$")
        self.assertEqual(headers["WeCross-Expires"], str(int((NOW + 30) * 1000)))
        assert call.body is not None
        self.check(headers, call.body)
        self.assertNotEqual(call.headers(sign)["WeCross-Nonce"], headers["WeCross-Nonce"])  # a new one each time
        for build in (protocol.call(LOCAL, "get", ["k"]), protocol.get_data(LOCAL, "k"),
                      protocol.set_data(LOCAL, "k", {"v": [None, True]})):
            assert build.body is not None and build.operation is not None
            self.check(build.headers(sign), build.body, op=build.operation[0])

    def test_only_resource_operations_are_signed(self) -> None:
        for call in (protocol.status(), protocol.start_tx([LOCAL]), protocol.exec_tx("a:1", LOCAL, "set", [])):
            self.assertFalse(set(call.headers(signer())) & {"WeCross-Nonce", "WeCross-Signature"})

    def test_changed_after_signing(self) -> None:
        call = protocol.send_transaction(LOCAL, "transfer", ["bob", 1])
        headers = call.headers(signer())
        assert call.body is not None
        self.unauthenticated("signature", headers, call.body.replace(b"bob", b"eve"))
        self.unauthenticated("signature", headers, call.body, op="call")
        self.unauthenticated("signature", headers, call.body, ipath=REMOTE)
        self.unauthenticated("signature", headers, call.body, sender="bob")
        forged = {**headers, "WeCross-Nonce": "00" * 16}
        self.unauthenticated("signature", forged, call.body)

    def test_life_of_a_signature(self) -> None:
        call = protocol.call(LOCAL, "get", ["k"])
        headers = call.headers(signer())  # expires at NOW + 30 s
        assert call.body is not None
        skew, deadline = self.limits.clock_skew, self.limits.request_deadline
        self.check(headers, call.body, op="call", now=NOW + 30 + skew)  # just within the allowed skew
        exc = self.unauthenticated("expired", headers, call.body, op="call", now=NOW + 30 + skew + 0.001)
        self.assertIn("expired", exc.message)
        far = call.headers(signer(lifetime=deadline + skew + 1))
        self.unauthenticated("expired", far, call.body, op="call")
        self.check(call.headers(signer(lifetime=deadline + skew)), call.body, op="call")

    def test_unsignable_arguments(self) -> None:
        body = json.dumps({"method": "set", "args": [1 << 70]}).encode()
        parsed = identity.parse_signature_headers(raw(Headers().good()))
        assert parsed is not None
        exc = self.assertRaises(RouterError, identity.check_signature, alice_public_key(), parsed, sender="alice",
                                ipath=LOCAL, op="call", method="set", args=[1 << 70], now_ms=int(NOW * 1000),
                                limits=self.limits)
        self.assertEqual(exc.code, "bad_args")
        exc2 = self.assertRaises(BadRequest, signer().sign, "call", LOCAL, body)
        self.assertEqual(exc2.code, "bad_args")

    def test_configuration(self) -> None:
        cert, key = alice()
        router_key = support.pki() / "router-a" / "key.pem"
        exc = self.assertRaises(ConfigError, protocol.OperationSigner, cert, router_key)
        self.assertIn("do not match", exc.message)
        self.assertRaises(ConfigError, protocol.OperationSigner, cert, key, lifetime=0)
        tls = protocol.tls_options(protocol.parse_base_url("https://h"), ca=None, cert=cert, key=key,
                                   server_name=None)
        self.assertIsInstance(protocol.operation_signer(tls), protocol.OperationSigner)
        self.assertIsNone(protocol.operation_signer(tls, sign_operations=False))
        self.assertIsNone(protocol.operation_signer(None))
        self.assertIsNone(WeCrossClient("https://h", cert=cert, key=key, sign_operations=False).signer)
        self.assertEqual(WeCrossClient("https://h", cert=cert, key=key).signer.identity, "alice")  # type: ignore[union-attr]
        self.assertIsNone(WeCrossClient("http://h").signer)

    def test_blocking_client_loads_no_twisted_web(self) -> None:
        cert, key = alice()
        script = ("import sys\nfrom wecross.sdk import WeCrossClient, protocol\n"
                  f"c = WeCrossClient('https://h', cert={str(cert)!r}, key={str(key)!r})\n"
                  "assert not [m for m in sys.modules if m.startswith('twisted')], 'twisted at import'\n"
                  "c.signer.sign('call', 'z.a.b', b'{\"method\": \"m\", \"args\": [1]}')\n"
                  "print(sorted({m for m in sys.modules if m.startswith('twisted.web')}))\n")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                              cwd=str(Path(__file__).parent.parent), env={**os.environ, "PYTHONPATH": "."})
        self.assertEqual((done.returncode, done.stdout.strip()), (0, "[]"), done.stderr[-2000:])


class RestEdge(TestCase):
    """Through live routers: what the SDK signs is accepted, and each fault is refused at the REST edge."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        work = Path(self.mktemp())
        work.mkdir()
        pki = support.pki()

        def adjust(rid: str, s: Any) -> Any:
            if rid == "router-a":
                tls = TLSPaths(pki / "ca.crt", pki / rid / "chain.pem", pki / rid / "key.pem")
                s = replace(s, rest=RestSettings(Address("127.0.0.1", 0), tls, True, s.rest.max_body))
            return s

        self.net = support.Network(work, ROUTERS, [("router-a", "router-b")], adjust=adjust)
        self.addCleanup(self.net.stop)
        yield self.net.start()
        yield support.until(lambda: self.net.linked() and all(
            node.router.table.route(chain) is not None
            for node, chain in ((self.net.nodes["router-a"], "z.two"), (self.net.nodes["router-b"], "z.one"))),
            timeout=30)
        # What router-a's REST edge hands the router.
        self.invocations: list[Invocation] = []
        router = self.net.nodes["router-a"].router
        invoke = router.invoke

        def recording(invocation: Invocation) -> Any:
            self.invocations.append(invocation)
            return invoke(invocation)

        self.patch(router, "invoke", recording)

    def url(self, rid: str) -> str:
        scheme = "https" if rid == "router-a" else "http"
        return f"{scheme}://127.0.0.1:{self.net.nodes[rid].rest_port}"

    def alice(self, **options: Any) -> WeCrossClient:
        cert, key = alice()
        client = WeCrossClient(self.url("router-a"), ca=support.pki() / "ca.crt", cert=cert, key=key, **options)
        self.addCleanup(client.close)
        return client

    def post(self, rid: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
        """One raw POST (alice's certificate over HTTPS to router-a); fires with (status, envelope)."""
        def run() -> tuple[int, Any]:
            target = protocol.parse_base_url(self.url(rid))
            conn: http.client.HTTPConnection
            if target.https:
                cert, key = alice()
                tls = protocol.tls_options(target, ca=support.pki() / "ca.crt", cert=cert, key=key,
                                           server_name=None)
                assert tls is not None
                conn = http.client.HTTPSConnection(target.host, target.port, timeout=20,
                                                   context=ssl_context(tls, target))
            else:
                conn = http.client.HTTPConnection(target.host, target.port, timeout=20)
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
                response = conn.getresponse()
                return response.status, json.loads(response.read())
            finally:
                conn.close()

        return threads.deferToThread(run)

    def signed(self, call: protocol.Call[Any], **options: Any) -> dict[str, str]:
        options.setdefault("clock", time.time)
        return call.headers(signer(**options))

    @defer.inlineCallbacks
    def test_signed_operations_succeed(self) -> Any:
        client = self.alice()

        def session() -> dict[str, Any]:
            return {"sent": client.send_transaction(LOCAL, "set", "greeting", "hi"),
                    "called": client.call(LOCAL, "get", "greeting"),
                    "set": client.set_data(LOCAL, "k", {"nested": [1, 2.5]}),
                    "got": client.get_data(LOCAL, "k"),
                    "remote": client.send_transaction(REMOTE, "set", "far", 1),
                    "remote_called": client.call(REMOTE, "get", "far")}

        out = yield threads.deferToThread(session)
        self.assertIn("tx_hash", out["sent"])
        self.assertEqual((out["called"]["output"], out["got"]["output"]), ("hi", {"nested": [1, 2.5]}))
        self.assertEqual((out["remote"]["router"], out["remote_called"]["output"]), ("router-b", 1))
        self.assertEqual(len(self.invocations), 6)
        pki = support.pki()
        leaf, intermediate = x509.load_pem_x509_certificates((pki / "alice" / "chain.pem").read_bytes())[:2]
        nonces = set()
        for invocation in self.invocations:
            proof = invocation.client_proof
            assert proof is not None, invocation
            self.assertEqual(invocation.sender, "alice")
            # The chain as verified, leaf first, without the root (which the owner holds as its CA).
            self.assertEqual([x509.load_der_x509_certificate(der) for der in proof.chain], [leaf, intermediate])
            attest.verify(leaf.public_key(), proof.signature, attest.client_body(
                "alice", str(invocation.path), invocation.op, invocation.method, invocation.args, proof.nonce,
                proof.expires_ms), "alice")
            self.assertEqual(attest.ClientProof.decode(proof.encode()), proof)
            nonces.add(proof.nonce)
        self.assertEqual(len(nonces), 6)

    def test_router_limits_bound_signatures(self) -> None:
        node = self.net.nodes["router-a"]
        self.assertIs(node.site.api.limits, node.settings.limits)

    @defer.inlineCallbacks
    def test_async_client_signs(self) -> Any:
        cert, key = alice()
        client = AsyncWeCrossClient(self.url("router-a"), ca=support.pki() / "ca.crt", cert=cert, key=key)
        self.addCleanup(client.close)
        yield client.send_transaction(LOCAL, "set", "a", "b")
        result = yield client.call(REMOTE, "get", "nothing")
        self.assertIn("output", result)
        self.assertEqual([i.client_proof is not None for i in self.invocations], [True, True])

    @defer.inlineCallbacks
    def test_unsigned_clients_still_served(self) -> Any:
        client = self.alice(sign_operations=False)
        result = yield threads.deferToThread(client.call, LOCAL, "get", "x")
        self.assertIn("output", result)
        self.assertEqual([(i.sender, i.client_proof) for i in self.invocations], [("alice", None)])

    @defer.inlineCallbacks
    def test_refused_at_the_edge(self) -> Any:
        write = protocol.send_transaction(LOCAL, "set", ["k", "signed"])
        assert write.body is not None
        path = write.path
        good = self.signed(write)
        bad_sig = {**good, "WeCross-Signature": base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()}
        cases: list[tuple[str, dict[str, str], bytes, int, str, Any]] = [
            ("bad signature", bad_sig, write.body, 401, "unauthenticated", {"check": "signature"}),
            ("changed body", good, write.body.replace(b"signed", b"forged"), 401, "unauthenticated",
             {"check": "signature"}),
            ("nonce format", {**good, "WeCross-Nonce": "ABC"}, write.body, 400, "bad_request",
             {"header": "WeCross-Nonce"}),
            ("expiry format", {**good, "WeCross-Expires": "soon"}, write.body, 400, "bad_request",
             {"header": "WeCross-Expires"}),
            ("signature format", {**good, "WeCross-Signature": "%%%"}, write.body, 400, "bad_request",
             {"header": "WeCross-Signature"}),
            ("a header missing", {k: v for k, v in good.items() if k != "WeCross-Expires"}, write.body, 400,
             "bad_request", {"header": "WeCross-Expires"}),
            ("expired", self.signed(write, lifetime=1.0, clock=lambda: time.time() - 120), write.body, 401,
             "unauthenticated", {"check": "expired"}),
            ("too far ahead", self.signed(write, lifetime=3600.0), write.body, 401, "unauthenticated",
             {"check": "expired"}),
        ]
        for name, headers, body, status, code, details in cases:
            answer = yield self.post("router-a", path, body, headers)
            self.assertEqual(answer, (status, {"ok": False, "error": {
                "code": code, "message": answer[1]["error"]["message"], "details": details}}), name)
        # Without a client certificate (router-b's plain HTTP): refused, not run as anonymous.
        answer = yield self.post("router-b", path.replace("/one/", "/two/"), write.body,
                                 self.signed(protocol.send_transaction(REMOTE, "set", ["k", "signed"])))
        self.assertEqual((answer[0], answer[1]["error"]["code"], answer[1]["error"]["details"]),
                         (401, "unauthenticated", {"check": "client_certificate"}))
        self.assertIn("client certificate", answer[1]["error"]["message"])
        # None of them reached the router, and nothing ran: the key was never written.
        self.assertEqual(self.invocations, [])
        client = self.alice(sign_operations=False)
        result = yield threads.deferToThread(client.call, LOCAL, "get", "k")
        self.assertIn(result["output"], (None, ""))
        # The very headers that were refused with a changed body are accepted with the body they signed.
        answer = yield self.post("router-a", path, write.body, good)
        self.assertEqual(answer[0], 200, answer)

    @defer.inlineCallbacks
    def test_sdk_maps_refusals(self) -> Any:
        # A client whose clock is two minutes behind: its signatures have expired when they arrive.
        client = self.alice()
        assert client.signer is not None
        self.patch(client.signer, "_clock", lambda: time.time() - 120)
        exc = yield threads.deferToThread(lambda: self.assertRaises(PermissionDenied, client.call, LOCAL, "get", "k"))
        self.assertEqual((exc.code, exc.status, exc.details), ("unauthenticated", 401, {"check": "expired"}))
