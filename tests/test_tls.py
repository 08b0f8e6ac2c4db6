"""Mutual TLS over real TCP on 127.0.0.1: chains of several depths in both directions, refusals, and the real
``openssl s_client`` as a foreign implementation talking to our server."""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from twisted.internet import defer, reactor
from twisted.internet.endpoints import SSL4ClientEndpoint, SSL4ServerEndpoint
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IHandshakeListener, IListeningPort
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer

from wecross.peer.tls import (
    ClientTLS,
    PeerCertificateError,
    PeerIdentity,
    PeerIdentityError,
    ServerTLS,
    TLSConfigError,
    TLSMaterial,
    TLSRefusal,
    check_tls_material,
    client_options,
    load_tls_material,
    peer_identity,
    rest_server_options,
    server_options,
    verify_peer_id,
)
from wecross.pki import authority as ca
from wecross.pki.authority import CertifiedKey

OPENSSL = "/usr/bin/openssl"
LONG_AGO = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)


class PKI:
    """A CA hierarchy in memory with a few routers and users, as ``wecross certs`` would make it."""

    def __init__(self, depth: int, key_type: ca.KeyType = "ec", routers: Sequence[str] = ("router-a", "router-b")):
        # CAs start in the past so tests can issue certificates that have already expired.
        self.cas = ca.create_ca_chain(depth, key_type=key_type, org="Test", now=LONG_AGO - datetime.timedelta(days=30))
        self.root = self.cas[0]
        self.routers = {r: ca.issue_router_cert(self.cas[-1], r, key_type=key_type) for r in routers}

    def material(self, leaf: CertifiedKey, *, send_chain: bool = True) -> TLSMaterial:
        chain = leaf.chain if send_chain else ()
        return TLSMaterial((self.root.cert,), leaf.cert, leaf.key, chain)

    def router(self, router_id: str, *, send_chain: bool = True) -> TLSMaterial:
        return self.material(self.routers[router_id], send_chain=send_chain)

    def client(self, name: str) -> TLSMaterial:
        return self.material(ca.issue_client_cert(self.cas[-1], name))

    def foreign(self, material: TLSMaterial) -> TLSMaterial:
        """``material``'s certificate (from another CA) but trusting our root: it will accept our server."""
        return TLSMaterial((self.root.cert,), material.certificate, material.private_key, material.chain)


@implementer(IHandshakeListener)
class Probe(Protocol):
    """Says its greeting once TLS is up, records what arrives and who the peer is."""

    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting
        self.received = b""
        self.identity: PeerIdentity | None = None
        self.handshake_done = False
        self.reason: Failure | None = None
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.got_reply: defer.Deferred[bytes] = defer.Deferred()

    def handshakeCompleted(self) -> None:
        self.handshake_done = True
        self.identity = peer_identity(self.transport)
        self.transport.write(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self.got_reply.called:
            self.got_reply.callback(self.received)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.got_reply.called:
            self.got_reply.callback(self.received)
        self.reason = reason
        self.lost.callback(None)


class ProbeFactory(Factory):
    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting
        self.protocols: list[Probe] = []

    def buildProtocol(self, addr: Any) -> Probe:
        p = Probe(self.greeting)
        p.factory = self
        self.protocols.append(p)
        return p


class TLSTestBase(TestCase):
    """Starts real listeners on 127.0.0.1:0 and makes sure every connection and port is gone at the end."""

    def setUp(self) -> None:
        self.server_factories: list[ProbeFactory] = []
        self.clients: list[Probe] = []

    def tearDown(self) -> defer.Deferred[Any]:
        pending = [p.lost for p in self.clients]
        for f in self.server_factories:
            pending.extend(p.lost for p in f.protocols)
        for p in self.clients:
            if p.transport is not None and not p.lost.called:
                p.transport.abortConnection()
        return defer.DeferredList(pending)

    async def listen(self, creator: Any) -> tuple[int, ProbeFactory]:
        factory = ProbeFactory(b"server-hello")
        self.server_factories.append(factory)
        port: IListeningPort = await SSL4ServerEndpoint(reactor, 0, creator, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        return port.getHost().port, factory

    async def dial(self, port: int, creator: Any) -> Probe:
        probe = Probe(b"client-hello")
        self.clients.append(probe)
        factory = Factory.forProtocol(lambda: probe)
        await SSL4ClientEndpoint(reactor, "127.0.0.1", port, creator).connect(factory)
        return probe

    async def exchange(self, port: int, creator: Any, server: ProbeFactory) -> tuple[Probe, Probe]:
        """Connect, let both sides greet each other, close cleanly; returns (client, server) probes."""
        before = len(server.protocols)
        client = await self.dial(port, creator)
        reply = await client.got_reply
        self.assertEqual(reply, b"server-hello")
        srv = server.protocols[before]
        if not srv.got_reply.called or srv.received != b"client-hello":
            await srv.got_reply
        self.assertEqual(srv.received, b"client-hello")
        client.transport.loseConnection()
        await client.lost
        await srv.lost
        return client, srv

    def why(self, probe: Probe) -> BaseException:
        assert probe.reason is not None
        return probe.reason.value

    async def refused(self, port: int, creator: Any) -> Probe:
        """Connect, expect the connection to die without any application byte from the server."""
        client = await self.dial(port, creator)
        await client.lost
        self.assertEqual(client.received, b"", "no application data may pass on a refused connection")
        return client


class ChainDepthTests(TLSTestBase):
    """Both directions carry intermediates: the server's chain to the client, the client's chain to the server."""

    async def check_depth(self, depth: int, key_type: ca.KeyType = "ec") -> None:
        pki = PKI(depth, key_type)
        server = server_options(pki.router("router-a"))
        port, factory = await self.listen(server)
        client, srv = await self.exchange(port, client_options(pki.router("router-b"), "router-a"), factory)
        assert client.identity is not None and srv.identity is not None
        self.assertEqual(client.identity.common_name, "router-a")
        self.assertEqual(client.identity.dns_names, ("router-a",))
        self.assertEqual(srv.identity.common_name, "router-b")
        self.assertEqual(srv.identity.dns_names, ("router-b",))
        self.assertEqual(srv.identity, pki.router("router-b").identity)
        verify_peer_id(srv.identity, "router-b")
        self.assertRaises(PeerIdentityError, verify_peer_id, srv.identity, "router-a")
        self.assertEqual(server.refusals, 0)

    async def test_depth_0(self) -> None:
        await self.check_depth(0)

    async def test_depth_1(self) -> None:
        await self.check_depth(1)

    async def test_depth_3(self) -> None:
        await self.check_depth(3)

    async def test_depth_2_rsa(self) -> None:
        await self.check_depth(2, "rsa")

    async def test_no_expected_id_checks_chain_only(self) -> None:
        """Dialling an address without a known id: the chain is verified now, the id later from HELLO."""
        pki = PKI(1)
        port, factory = await self.listen(server_options(pki.router("router-a")))
        client, _ = await self.exchange(port, client_options(pki.router("router-b")), factory)
        assert client.identity is not None
        verify_peer_id(client.identity, "router-a")

    async def test_different_intermediates_same_root(self) -> None:
        """Routers issued under different branches (and depths) of one root trust each other."""
        root = ca.create_root_ca(path_length=None)
        branch1 = ca.create_intermediate_ca(root, "Zone A CA", path_length=0)
        mid = ca.create_intermediate_ca(root, "Zone B CA", path_length=1)
        branch2 = ca.create_intermediate_ca(mid, "Zone B issuing CA", path_length=0)
        a = ca.issue_router_cert(branch1, "router-a")
        b = ca.issue_router_cert(branch2, "router-b")
        self.assertEqual(len(b.chain), 2)
        port, factory = await self.listen(server_options(TLSMaterial((root.cert,), a.cert, a.key, a.chain)))
        _, srv = await self.exchange(
            port, client_options(TLSMaterial((root.cert,), b.cert, b.key, b.chain), "router-a"), factory
        )
        assert srv.identity is not None
        self.assertEqual(srv.identity.dns_names, ("router-b",))


class RotationTests(TLSTestBase):
    async def test_two_roots_during_ca_rotation(self) -> None:
        """A CA file may hold the old and the new root: routers on either side of a rotation keep talking."""
        old, new = PKI(1), PKI(2)
        both = (old.root.cert, new.root.cert)
        server_leaf = old.routers["router-a"]
        server = server_options(TLSMaterial(both, server_leaf.cert, server_leaf.key, server_leaf.chain))
        port, factory = await self.listen(server)
        for pki in (old, new):
            leaf = pki.routers["router-b"]
            client = client_options(TLSMaterial(both, leaf.cert, leaf.key, leaf.chain), "router-a")
            _, srv = await self.exchange(port, client, factory)
            assert srv.identity is not None
            self.assertEqual(srv.identity.fingerprint_sha256, pki.router("router-b").identity.fingerprint_sha256)
        self.assertEqual(server.refusals, 0)


class RefusalTests(TLSTestBase):
    async def test_foreign_client_refused_and_server_keeps_serving(self) -> None:
        pki, other = PKI(1), PKI(1)
        refusals: list[TLSRefusal] = []
        events: list[LogEvent] = []

        @implementer(ILogObserver)
        def observe(event: LogEvent) -> None:
            if event.get("log_namespace") == "wecross.peer.tls":
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

        server = server_options(pki.router("router-a"), on_refusal=refusals.append)
        port, factory = await self.listen(server)
        bad = await self.refused(port, client_options(pki.foreign(other.router("router-b")), "router-a"))
        self.assertIsInstance(self.why(bad), SSL.Error)
        self.assertIn("alert", str(self.why(bad)))
        # The server side never got past the handshake and counted / logged the refusal with its reason.
        srv = factory.protocols[0]
        await srv.lost
        self.assertFalse(srv.handshake_done)
        self.assertEqual(srv.received, b"")
        self.assertEqual(server.refusals, 1)
        self.assertEqual(len(refusals), 1)
        self.assertIn("client certificate refused", refusals[0].reason)
        self.assertIn("unable to get", refusals[0].reason)
        self.assertTrue(refusals[0].peer.startswith("127.0.0.1:"))
        self.assertTrue(any("refused TLS peer" in formatEvent(e) for e in events))

        # Same listener, good client: still accepted.
        client, _ = await self.exchange(port, client_options(pki.router("router-b"), "router-a"), factory)
        assert client.identity is not None
        self.assertEqual(client.identity.common_name, "router-a")
        self.assertEqual(server.refusals, 1)

    async def test_client_without_intermediates_refused(self) -> None:
        """The server only trusts the root, so a client must send its intermediates."""
        pki = PKI(1)
        server = server_options(pki.router("router-a"))
        port, _ = await self.listen(server)
        await self.refused(port, client_options(pki.router("router-b", send_chain=False), "router-a"))
        self.assertEqual(server.refusals, 1)

    async def test_client_without_certificate_refused(self) -> None:
        pki = PKI(0)
        server = server_options(pki.router("router-a"))
        port, _ = await self.listen(server)
        anonymous = optionsForClientTLS("router-a", trustRoot=Certificate.loadPEM(ca.certs_to_pem([pki.root.cert])))
        await self.refused(port, anonymous)
        assert server.last_refusal is not None
        self.assertEqual(server.last_refusal.reason, "no client certificate")

    async def server_refused(
        self, server: ServerTLS, client: ClientTLS, error: type[PeerIdentityError], *words: str
    ) -> None:
        """The client refuses the server during the handshake: TLS error on our side, the precise reason in the
        creator, and the server hears a TLS alert (it counts us rejecting it, not a refusal of its own)."""
        port, factory = await self.listen(server)
        bad = await self.refused(port, client)
        self.assertIsInstance(self.why(bad), SSL.Error)
        self.assertIn("certificate verify failed", str(self.why(bad)))
        self.assertFalse(bad.handshake_done)
        refusal = client.last_refusal
        assert refusal is not None and refusal.error is not None
        self.assertIs(type(refusal.error), error)
        for word in words:
            self.assertIn(word, refusal.reason)
        self.assertEqual(client.refusals, 1)
        await factory.protocols[0].lost
        self.assertEqual(server.refusals, 0)
        self.assertEqual(server.rejected_by_peer, 1)

    async def test_foreign_server_refused_by_client(self) -> None:
        pki, other = PKI(1), PKI(1)
        seen: list[TLSRefusal] = []
        client = client_options(pki.router("router-b"), "router-a", on_refusal=seen.append)
        await self.server_refused(
            server_options(pki.foreign(other.router("router-a"))),
            client,
            PeerCertificateError,
            "server certificate refused",
            "unable to get local issuer certificate",
        )
        self.assertEqual(seen, [client.last_refusal])

    async def test_expected_peer_id_mismatch(self) -> None:
        pki = PKI(1, routers=("router-a", "router-b", "router-c"))
        await self.server_refused(
            server_options(pki.router("router-a")),
            client_options(pki.router("router-b"), "router-c"),
            PeerIdentityError,
            "expected router 'router-c'",
            "[router-a]",
        )

    async def test_expired_server_certificate_refused(self) -> None:
        pki = PKI(1)
        old = ca.issue_router_cert(pki.cas[-1], "router-a", days=1, now=LONG_AGO)
        await self.server_refused(
            server_options(pki.material(old)),
            client_options(pki.router("router-b"), "router-a"),
            PeerCertificateError,
            "certificate has expired",
        )

    async def test_user_certificate_cannot_serve(self) -> None:
        """A REST user's certificate (clientAuth only) is refused as a router's server certificate."""
        pki = PKI(0)
        await self.server_refused(
            server_options(pki.client("mallory")),
            client_options(pki.router("router-b")),
            PeerCertificateError,
            "unsuitable certificate purpose",
        )


class RestTLSTests(TLSTestBase):
    async def test_optional_client_certificate(self) -> None:
        pki, other = PKI(1), PKI(1)
        server = rest_server_options(pki.router("router-a"), require_client_cert=False)
        port, factory = await self.listen(server)
        anonymous = optionsForClientTLS("router-a", trustRoot=Certificate.loadPEM(ca.certs_to_pem([pki.root.cert])))
        _, srv = await self.exchange(port, anonymous, factory)
        self.assertIsNone(srv.identity)
        # A user certificate identifies the user by its CN.
        _, srv = await self.exchange(port, client_options(pki.client("alice")), factory)
        assert srv.identity is not None
        self.assertEqual(srv.identity.common_name, "alice")
        # A certificate that is presented must still be good.
        await self.refused(port, client_options(pki.foreign(other.client("eve"))))
        self.assertEqual(server.refusals, 1)

    async def test_required_client_certificate(self) -> None:
        pki = PKI(0)
        server = rest_server_options(pki.router("router-a"), require_client_cert=True)
        port, factory = await self.listen(server)
        anonymous = optionsForClientTLS("router-a", trustRoot=Certificate.loadPEM(ca.certs_to_pem([pki.root.cert])))
        await self.refused(port, anonymous)
        await self.exchange(port, client_options(pki.client("alice")), factory)
        self.assertEqual(server.refusals, 1)


class OpenSSLProcess(ProcessProtocol):
    """Drives ``openssl s_client``: stdin stays open until the test closes it, so s_client waits for the server."""

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.saw_greeting: defer.Deferred[None] = defer.Deferred()
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data
        if b"server-hello" in self.out and not self.saw_greeting.called:
            self.saw_greeting.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        code = 0 if reason.check(ProcessDone) else (reason.value.exitCode if reason.check(ProcessTerminated) else -1)
        if not self.saw_greeting.called:
            self.saw_greeting.errback(RuntimeError(f"s_client ended ({code}) before the server greeting"))
        self.ended.callback(code if code is not None else -1)


class OpenSSLClientTests(TLSTestBase):
    """A different TLS implementation (the openssl command) against our server, run without blocking the reactor."""

    def setUp(self) -> None:
        super().setUp()
        if not os.access(OPENSSL, os.X_OK):
            raise SkipTest(f"{OPENSSL} not available")
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir(parents=True)

    def write(self, name: str, data: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(data)
        return str(path)

    def s_client(self, port: int, cert: CertifiedKey, root: CertifiedKey, *extra: str) -> OpenSSLProcess:
        args = [
            OPENSSL, "s_client", "-brief", "-connect", f"127.0.0.1:{port}", "-servername", "router-a",
            "-verify_return_error", "-verify_hostname", "router-a",
            "-CAfile", self.write("ca.crt", ca.certs_to_pem([root.cert])),
            "-cert", self.write("cert.pem", ca.certs_to_pem([cert.cert])),
            "-key", self.write("key.pem", ca.key_to_pem(cert.key)),
        ]
        if cert.chain:
            args += ["-cert_chain", self.write("intermediates.pem", ca.certs_to_pem(cert.chain))]
        args += extra
        proc = OpenSSLProcess()
        transport = reactor.spawnProcess(proc, OPENSSL, args, env={"PATH": "/usr/bin:/bin"})

        def reap() -> defer.Deferred[int]:
            if not proc.ended.called:
                transport.closeStdin()
                with contextlib.suppress(ProcessExitedAlready):
                    transport.signalProcess("KILL")
            return proc.ended

        self.addCleanup(reap)
        self.s_client_transport = transport
        return proc

    async def good(self, *extra: str) -> bytes:
        pki = PKI(2)
        server = server_options(pki.router("router-a"))
        port, factory = await self.listen(server)
        proc = self.s_client(port, ca.issue_router_cert(pki.cas[-1], "router-b"), pki.root, *extra)
        await proc.saw_greeting
        self.s_client_transport.closeStdin()
        code = await proc.ended
        self.assertEqual(code, 0, proc.err.decode(errors="replace"))
        self.assertIn(b"Verification: OK", proc.err)
        self.assertIn(b"Verified peername: router-a", proc.err)
        srv = factory.protocols[0]
        await srv.lost
        assert srv.identity is not None
        self.assertEqual(srv.identity.common_name, "router-b")
        self.assertEqual(srv.received, b"")  # s_client sent nothing: stdin was closed without input
        self.assertEqual(server.refusals, 0)
        return proc.err

    async def foreign(self, *extra: str) -> bytes:
        pki, other = PKI(2), PKI(2)
        server = server_options(pki.router("router-a"))
        port, factory = await self.listen(server)
        proc = self.s_client(port, ca.issue_router_cert(other.cas[-1], "router-b"), pki.root, *extra)
        with self.assertRaises(RuntimeError):
            await proc.saw_greeting
        code = await proc.ended
        self.assertNotEqual(code, 0)
        self.assertIn(b"alert unknown ca", proc.err)
        await factory.protocols[0].lost
        self.assertEqual(server.refusals, 1)
        self.assertFalse(factory.protocols[0].handshake_done)
        return proc.err

    async def test_good_certificate_and_chain(self) -> None:
        self.assertIn(b"TLSv1.3", await self.good())

    async def test_good_certificate_and_chain_tls12(self) -> None:
        self.assertIn(b"TLSv1.2", await self.good("-tls1_2"))

    async def test_foreign_certificate_refused(self) -> None:
        await self.foreign()

    async def test_foreign_certificate_refused_tls12(self) -> None:
        await self.foreign("-tls1_2")

    async def test_tls11_refused(self) -> None:
        """TLS 1.2 is the floor; an old client is refused by the server even if it could speak TLS 1.1."""
        pki = PKI(0)
        server = server_options(pki.router("router-a"))
        port, factory = await self.listen(server)
        proc = self.s_client(
            port, pki.routers["router-b"], pki.root, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"
        )
        with self.assertRaises(RuntimeError):
            await proc.saw_greeting
        self.assertNotEqual(await proc.ended, 0)
        if factory.protocols:
            await factory.protocols[0].lost
            self.assertFalse(factory.protocols[0].handshake_done)
        assert server.last_refusal is not None, proc.err
        self.assertIn("protocol version", server.last_refusal.reason)


class MaterialTests(SynchronousTestCase):
    """load_tls_material: every problem names the file and what is wrong."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.pki = PKI(2)
        self.leaf = self.pki.routers["router-a"]
        self.ca = self.put("ca.crt", ca.certs_to_pem([self.pki.root.cert]))
        self.chain = self.put("chain.pem", ca.certs_to_pem(self.leaf.full_chain))
        self.key = self.put("key.pem", ca.key_to_pem(self.leaf.key), 0o600)

    def put(self, name: str, data: bytes, mode: int = 0o644) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        path.chmod(mode)
        return path

    def error(self, ca_path: Path, cert_path: Path, key_path: Path) -> TLSConfigError:
        return self.assertRaises(TLSConfigError, load_tls_material, ca_path, cert_path, key_path)

    def test_good(self) -> None:
        m = load_tls_material(self.ca, self.chain, self.key)
        self.assertEqual(m.certificate, self.leaf.cert)
        self.assertEqual(m.chain, self.leaf.chain)
        self.assertEqual(m.identity.dns_names, ("router-a",))
        # Building the contexts works too (they are built eagerly).
        self.assertIsInstance(server_options(m), ServerTLS)
        self.assertIsInstance(client_options(m, "router-b"), ClientTLS)

    def test_own_router_id(self) -> None:
        load_tls_material(self.ca, self.chain, self.key, router_id="router-a")
        err = self.assertRaises(TLSConfigError, load_tls_material, self.ca, self.chain, self.key, router_id="router-b")
        self.assertEqual(err.path, self.chain)
        self.assertIn("not for this router's id 'router-b'", str(err))

    def test_root_in_chain_file_is_dropped(self) -> None:
        with_root = self.put("full.pem", ca.certs_to_pem([*self.leaf.full_chain, self.pki.root.cert]))
        self.assertEqual(load_tls_material(self.ca, with_root, self.key).chain, self.leaf.chain)

    def test_missing_file(self) -> None:
        err = self.error(self.dir / "nope.crt", self.chain, self.key)
        self.assertEqual(err.path, self.dir / "nope.crt")
        self.assertIn("does not exist", str(err))

    def test_not_pem(self) -> None:
        junk = self.put("junk.pem", b"hello\n")
        err = self.error(self.ca, junk, self.key)
        self.assertIn(str(junk), str(err))
        self.assertIn("no PEM CERTIFICATE", str(err))
        err = self.error(self.ca, self.chain, junk)
        self.assertIn("no PEM PRIVATE KEY", str(err))

    def test_key_does_not_match(self) -> None:
        other = self.put("other.key", ca.key_to_pem(ca.generate_key()), 0o600)
        err = self.error(self.ca, self.chain, other)
        self.assertEqual(err.path, other)
        self.assertIn("does not match", str(err))

    def test_wrong_order_hint(self) -> None:
        reversed_chain = self.put("rev.pem", ca.certs_to_pem(reversed(self.leaf.full_chain)))
        issuing_key = self.put("int.key", ca.key_to_pem(self.pki.cas[-1].key), 0o600)
        err = self.error(self.ca, reversed_chain, issuing_key)
        self.assertIn("must start with the leaf", str(err))

    def test_foreign_ca(self) -> None:
        other = self.put("other-ca.crt", ca.certs_to_pem([PKI(0).root.cert]))
        err = self.error(other, self.chain, self.key)
        self.assertEqual(err.path, self.chain)
        self.assertIn("not signed by the CA chain", str(err))

    def test_missing_intermediates(self) -> None:
        leaf_only = self.put("leaf.pem", ca.certs_to_pem([self.leaf.cert]))
        err = self.error(self.ca, leaf_only, self.key)
        self.assertIn("unable to get local issuer certificate", str(err))

    def test_expired(self) -> None:
        old = ca.issue_router_cert(self.pki.cas[-1], "router-a", days=1, now=LONG_AGO)
        cert = self.put("old.pem", ca.certs_to_pem(old.full_chain))
        key = self.put("old.key", ca.key_to_pem(old.key), 0o600)
        err = self.error(self.ca, cert, key)
        self.assertEqual(err.path, cert)
        self.assertIn("expired", str(err))

    def test_ca_file_is_a_leaf(self) -> None:
        err = self.error(self.chain, self.chain, self.key)
        self.assertIn("not a CA certificate", str(err))

    def test_encrypted_key(self) -> None:
        from cryptography.hazmat.primitives import serialization

        pem = self.leaf.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
        err = self.error(self.ca, self.chain, self.put("enc.key", pem, 0o600))
        self.assertIn("encrypted", str(err))

    def test_bad_cipher_string(self) -> None:
        m = load_tls_material(self.ca, self.chain, self.key)
        err = self.assertRaises(TLSConfigError, server_options, m, ciphers="NOT-A-CIPHER")
        self.assertIn("NOT-A-CIPHER", str(err))

    def test_check_material_direct(self) -> None:
        good = self.pki.router("router-a")
        self.assertIs(check_tls_material(good), good)
        mixed = TLSMaterial(good.trust_roots, good.certificate, self.pki.routers["router-b"].key, good.chain)
        self.assertRaises(TLSConfigError, check_tls_material, mixed)


class PeerIdTests(SynchronousTestCase):
    def identity(self, *names: str) -> PeerIdentity:
        return PeerIdentity("cn-ignored", names, "00" * 32)

    def test_match(self) -> None:
        verify_peer_id(self.identity("router-a", "r1.zone-a"), "r1.zone-a")
        verify_peer_id(self.identity("router-a"), "router-a")

    def test_cn_is_not_enough(self) -> None:
        err = self.assertRaises(PeerIdentityError, verify_peer_id, PeerIdentity("router-a", (), "00"), "router-a")
        self.assertIn("router-a", err.reason)
        self.assertEqual(err.code, "peer_identity")

    def test_mismatch_and_case(self) -> None:
        self.assertRaises(PeerIdentityError, verify_peer_id, self.identity("router-a"), "router-b")
        # Upper case would alias router-a under DNS rules; such ids are invalid rather than matched.
        err = self.assertRaises(PeerIdentityError, verify_peer_id, self.identity("router-a"), "Router-A")
        self.assertIn("upper-case", err.reason)

    def test_no_certificate(self) -> None:
        class Plain:
            pass

        self.assertIsNone(peer_identity(Plain()))
        err = self.assertRaises(PeerIdentityError, verify_peer_id, Plain(), "router-a")
        self.assertIn("no TLS certificate", err.reason)

    def test_bad_expected_id(self) -> None:
        pki = PKI(0)
        self.assertRaises(TLSConfigError, client_options, pki.router("router-a"), "not_a_dns_name")
