"""Revocation and admission: the signed list and its reloads, `wecross certs revoke`, the directory's refusals, and
real routers refusing a revoked router at TLS and dropping its routes within one reload; peers added and removed
while routers run."""

from __future__ import annotations

import dataclasses
import functools
import io
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests import support
from tests.test_gossip_record import make_record, pki, router_key, signer, verifier
from wecross.config import ConfigError
from wecross.gossip import Directory, RecordError
from wecross.pki import authority
from wecross.pki.cli import main as certs_main
from wecross.pki.revocation import RevocationError, RevocationFile, RevocationList, fingerprint_sha256
from wecross.pki.revoke import deny_fingerprint, revoke_serial


def crl_of(issuer: authority.CertifiedKey, *certs: x509.Certificate, include_issuer: bool = True) -> bytes:
    """A revocation file revoking ``certs`` (by serial) with ``issuer``'s CRL, as `wecross certs revoke` writes."""
    data: bytes | None = None
    for cert in certs:
        data = revoke_serial(data, issuer, cert.serial_number).data
    if data is None:
        data = revoke_serial(None, issuer, 12345).data  # a list with an unrelated serial: revokes nobody we know
    if not include_issuer:
        data = b"".join(
            block for block in data.split(b"-----BEGIN CERTIFICATE-----")[:1]  # keep the CRL, drop the CA certs
        )
    return data


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


class RevocationListTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.roots = [pki().root.cert]
        self.b = router_key("router-b")
        self.c = router_key("router-c")

    def test_revoked_serial_by_every_form(self) -> None:
        revoked = RevocationList.parse(crl_of(pki().issuer, self.b.cert), self.roots)
        self.assertTrue(revoked.is_revoked(self.b.cert))
        self.assertTrue(revoked.is_revoked(der(self.b.cert)))
        self.assertTrue(revoked.is_revoked(der(self.b.cert)))  # the memo's answer
        self.assertTrue(revoked.is_revoked(crypto.X509.from_cryptography(self.b.cert)))
        self.assertFalse(revoked.is_revoked(self.c.cert))
        self.assertFalse(revoked.is_revoked(b"not a certificate"))
        self.assertEqual(revoked.first_revoked([der(self.c.cert), der(self.b.cert)]), 1)
        self.assertIsNone(revoked.first_revoked(self.c.full_chain))

    def test_revoked_intermediate_revokes_every_leaf_under_it(self) -> None:
        revoked = RevocationList.parse(crl_of(pki().root, pki().issuer.cert), self.roots)
        self.assertFalse(revoked.is_revoked(self.c.cert))
        self.assertEqual(revoked.first_revoked(self.c.full_chain), 1)

    def test_crl_of_a_stranger_ca_is_refused(self) -> None:
        stranger = pki().stranger_root
        leaf = authority.issue_router_cert(stranger, "router-b")
        error = self.assertRaises(RevocationError, RevocationList.parse, crl_of(stranger, leaf.cert), self.roots)
        self.assertIn("is not signed by this network's CA", str(error))
        self.assertIn("Stranger CA", str(error))

    def test_crl_signed_by_an_impostor_of_the_same_name_is_refused(self) -> None:
        (fake,) = authority.create_ca_chain(0, root_name="WeCross Root CA")
        error = self.assertRaises(RevocationError, RevocationList.parse, crl_of(fake, self.b.cert), self.roots)
        self.assertIn("signature does not verify", str(error))

    def test_altered_crl_is_refused(self) -> None:
        data = crl_of(pki().issuer, self.b.cert)
        crl = x509.load_pem_x509_crl(data[data.index(b"-----BEGIN X509 CRL"):])
        body = bytearray(crl.public_bytes(serialization.Encoding.DER))
        serial = self.b.cert.serial_number.to_bytes(20, "big").lstrip(b"\0")
        at = bytes(body).index(serial)
        body[at + len(serial) - 1] ^= 1  # a different serial: the signature no longer matches
        import base64
        pem = b"-----BEGIN X509 CRL-----\n" + base64.encodebytes(bytes(body)) + b"-----END X509 CRL-----\n"
        self.assertRaises(RevocationError, RevocationList.parse, pem, self.roots)

    def test_intermediate_needed_to_check_the_crl(self) -> None:
        bare = crl_of(pki().issuer, self.b.cert, include_issuer=False)
        self.assertNotIn(b"CERTIFICATE", bare)
        error = self.assertRaises(RevocationError, RevocationList.parse, bare, self.roots)
        self.assertIn("no CA of this network has that name", str(error))
        # The router's own chain holds the intermediate: enough.
        self.assertTrue(RevocationList.parse(bare, self.roots, known_cas=[pki().issuer.cert]).is_revoked(self.b.cert))

    def test_a_stranger_intermediate_in_the_file_is_refused(self) -> None:
        _, stranger_int = authority.create_ca_chain(1, root_name="Stranger CA")
        data = crl_of(stranger_int, self.b.cert)
        error = self.assertRaises(RevocationError, RevocationList.parse, data, self.roots)
        self.assertIn("does not chain to this network's CA", str(error))

    def test_file_format_errors(self) -> None:
        for data, words in [(b"", "holds no CRL"), (b"# only a comment\n", "holds no CRL"),
                            (crl_of(pki().issuer) + b"\nrevoke router-b\n", "neither a PEM block"),
                            (b"deny-sha256 abcd\n", "neither a PEM block"),
                            (b"\xff\xfe binary", "not PEM text")]:
            error = self.assertRaises(RevocationError, RevocationList.parse, data, self.roots, source="crl.pem")
            self.assertIn(words, str(error))
            self.assertTrue(str(error).startswith("crl.pem: "))

    def test_deny_lines(self) -> None:
        line = f"deny-sha256 {fingerprint_sha256(self.c.cert).upper()}  # lost laptop\n".encode()
        revoked = RevocationList.parse(line, self.roots)
        self.assertTrue(revoked.is_revoked(self.c.cert))
        self.assertTrue(revoked.is_revoked(der(self.c.cert)))
        self.assertFalse(revoked.is_revoked(self.b.cert))


class RevocationFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.content = crl_of(pki().issuer, router_key("router-b").cert)
        self.fail_read: OSError | None = None

    def read(self) -> bytes:
        if self.fail_read is not None:
            raise self.fail_read
        return self.content

    def test_reload_keeps_the_old_list_on_a_bad_file_and_reports_once(self) -> None:
        b, c = router_key("router-b").cert, router_key("router-c").cert
        rf = RevocationFile(self.read, "crl.pem", [pki().root.cert], now=0.0)
        self.assertTrue(rf.is_revoked(b))
        self.assertEqual(rf.maybe_reload(1.0).status, "unchanged")
        stranger = pki().stranger_root
        self.content = crl_of(stranger, authority.issue_router_cert(stranger, "router-c").cert)
        result = rf.maybe_reload(2.0)
        self.assertEqual(result.status, "rejected")
        self.assertIn("not signed by this network's CA", result.errors[0])
        self.assertEqual(rf.maybe_reload(3.0).status, "unchanged")  # reported once
        self.assertTrue(rf.errors)
        self.assertTrue(rf.is_revoked(b))  # the old list stays
        self.fail_read = FileNotFoundError(2, "No such file or directory")
        self.assertEqual(rf.maybe_reload(4.0).status, "rejected")
        self.assertTrue(rf.is_revoked(b))
        self.fail_read = None
        self.content = crl_of(pki().issuer, b, c)
        self.assertEqual(rf.maybe_reload(5.0).status, "reloaded")
        self.assertEqual(rf.errors, ())
        self.assertTrue(rf.is_revoked(c))
        self.assertEqual(rf.loaded_at, 5.0)

    def test_unreadable_or_invalid_at_start_is_an_error(self) -> None:
        self.fail_read = PermissionError(13, "Permission denied")
        self.assertRaises(RevocationError, RevocationFile, self.read, "crl.pem", [pki().root.cert], 0.0)
        self.fail_read = None
        self.content = b"garbage"
        self.assertRaises(RevocationError, RevocationFile, self.read, "crl.pem", [pki().root.cert], 0.0)


class DirectoryRevocationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Directory("router-a", verifier())
        self.directory.set_local(signer("router-a").sign(make_record("router-a", 5, 0)))
        self.directory.accept(signer("router-b").sign(make_record("router-b", 1, 1)).to_bytes(), 0.0)
        self.directory.accept(signer("router-c").sign(make_record("router-c", 1, 1)).to_bytes(), 0.0)

    def revoke(self, *ids: str) -> list[str]:
        data = crl_of(pki().issuer, *(router_key(i).cert for i in ids))
        return self.directory.set_revocation(RevocationList.parse(data, [pki().root.cert]))

    def test_held_records_dropped_and_new_ones_refused(self) -> None:
        before = self.directory.routing_version
        self.assertEqual(self.revoke("router-b", "router-a"), ["router-b"])  # never our own record
        self.assertNotIn("router-b", self.directory)
        self.assertIn("router-c", self.directory)
        self.assertIn("router-a", self.directory)
        self.assertGreater(self.directory.routing_version, before)
        self.assertEqual(self.directory.stats()["revoked_removed"], 1)
        newer = signer("router-b").sign(make_record("router-b", 1, 2)).to_bytes()
        error = self.assertRaises(RecordError, self.directory.accept, newer, 1.0)
        self.assertEqual(error.reason, "revoked")
        self.assertEqual(self.directory.stats()["rejected_revoked"], 1)
        self.assertTrue(self.directory.is_revoked(router_key("router-b").cert))
        self.assertFalse(self.directory.is_revoked(router_key("router-c").cert))

    def test_user_chain_refused(self) -> None:
        alice = authority.issue_client_cert(pki().issuer, "alice")
        chain = tuple(der(c) for c in alice.full_chain)
        self.directory.verify_chain(chain)
        data = crl_of(pki().issuer, alice.cert)
        self.directory.set_revocation(RevocationList.parse(data, [pki().root.cert]))
        error = self.assertRaises(RecordError, self.directory.verify_chain, chain)
        self.assertEqual(error.reason, "revoked")

    def test_lifted_revocation_admits_again(self) -> None:
        self.revoke("router-b")
        self.revoke("router-c")  # a list without router-b
        self.assertNotIn("router-c", self.directory)
        self.assertIsNotNone(self.directory.accept(
            signer("router-b").sign(make_record("router-b", 1, 3)).to_bytes(), 2.0))


def run_certs(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = certs_main(list(argv))
    return status, out.getvalue(), err.getvalue()


class RevokeCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wecross-revoke-"))
        status, _, err = run_certs("--out", str(self.dir), "--intermediates", "1", "--routers", "router-a,router-b",
                                   "--clients", "alice")
        self.assertEqual(status, 0, err)
        self.roots = authority.read_certificates(self.dir / "ca.crt")

    def cert(self, path: str) -> x509.Certificate:
        return authority.read_certificates(self.dir / path)[0]

    def load(self) -> RevocationList:
        return RevocationList.parse((self.dir / "crl.pem").read_bytes(), self.roots)

    def test_round_trip(self) -> None:
        status, out, err = run_certs("revoke", "router-b", "--dir", str(self.dir))
        self.assertEqual(status, 0, err)
        self.assertIn("revoked router 'router-b'", out)
        revoked = self.load()
        self.assertTrue(revoked.is_revoked(self.cert("routers/router-b/cert.pem")))
        self.assertFalse(revoked.is_revoked(self.cert("routers/router-a/cert.pem")))
        before = (self.dir / "crl.pem").read_bytes()
        status, out, _ = run_certs("revoke", "router-b", "--dir", str(self.dir))
        self.assertEqual(status, 0)
        self.assertIn("already revoked", out)
        self.assertEqual((self.dir / "crl.pem").read_bytes(), before)
        status, _, err = run_certs("revoke", "alice", "--dir", str(self.dir), "--reason", "key-compromise")
        self.assertEqual(status, 0, err)
        revoked = self.load()
        self.assertTrue(revoked.is_revoked(self.cert("clients/alice/cert.pem")))
        self.assertTrue(revoked.is_revoked(self.cert("routers/router-b/cert.pem")))  # kept
        crl = x509.load_pem_x509_crl(before[before.index(b"-----BEGIN X509 CRL"):])
        self.assertEqual(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number, 1)

    def test_by_serial_and_fingerprint(self) -> None:
        a = self.cert("routers/router-a/cert.pem")
        status, _, err = run_certs("revoke", "--serial", hex(a.serial_number), "--dir", str(self.dir))
        self.assertEqual(status, 0, err)
        self.assertTrue(self.load().is_revoked(a))
        alice = self.cert("clients/alice/cert.pem")
        status, out, err = run_certs("revoke", "--fingerprint", fingerprint_sha256(alice), "--dir", str(self.dir))
        self.assertEqual(status, 0, err)
        self.assertIn("revoked certificate 'alice'", out)  # found under the directory: a signed CRL entry
        status, out, err = run_certs("revoke", "--fingerprint", "ab" * 32, "--dir", str(self.dir))
        self.assertEqual(status, 0, err)
        self.assertIn("unsigned", out)
        self.assertIn("ab" * 32, self.load().fingerprints)

    def test_errors(self) -> None:
        status, _, err = run_certs("revoke", "nobody", "--dir", str(self.dir))
        self.assertEqual(status, 1)
        self.assertIn("no certificate named 'nobody'", err)
        status, _, err = run_certs("revoke", "--dir", str(self.dir))
        self.assertEqual(status, 1)
        self.assertIn("exactly one of", err)
        # A list whose CRL of this CA was made with another key is not silently replaced.
        (fake,) = authority.create_ca_chain(0, root_name="WeCross Intermediate CA 1")
        (self.dir / "crl.pem").write_bytes(revoke_serial(None, fake, 7).data)
        status, _, err = run_certs("revoke", "router-b", "--dir", str(self.dir))
        self.assertEqual(status, 1)
        self.assertIn("did not sign", err)

    def test_deny_fingerprint_validates(self) -> None:
        self.assertRaises(ValueError, deny_fingerprint, None, "xyz")
        first = deny_fingerprint(None, "sha256:" + "AB" * 32)
        self.assertTrue(first.changed)
        self.assertFalse(deny_fingerprint(first.data, "ab" * 32).changed)


class ConfigTests(SynchronousTestCase):
    def test_crl_keys(self) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="wecross-crlcfg-"))
        settings = support.router_settings("router-a", workdir)
        self.assertIsNone(settings.p2p_tls.crl)
        self.assertEqual(settings.p2p_tls.crl_reload, 5.0)
        (workdir / "crl.pem").write_bytes(crl_of(pki().issuer))
        document: dict[str, Any] = {
            "router": {"id": "router-a"},
            "p2p": {"ca": "ca.crt", "cert": "c.pem", "key": "k.pem", "crl": "crl.pem", "crl_reload": 0.5},
        }
        from wecross.config import settings_from_dict

        loaded = settings_from_dict(document, workdir / "r.toml", check_files=False)
        self.assertEqual(loaded.p2p_tls.crl, workdir / "crl.pem")
        self.assertEqual(loaded.p2p_tls.crl_reload, 0.5)
        document["p2p"]["crl"] = "missing.pem"
        for key in ("ca", "cert", "key"):
            (workdir / f"{key}.x").write_bytes(b"")
            document["p2p"][key] = f"{key}.x"
        error = self.assertRaises(ConfigError, settings_from_dict, document, workdir / "r.toml")
        self.assertIn("p2p.crl", str(error))


# ------------------------------------------------------------------------------------------------ real routers


@dataclasses.dataclass(frozen=True)
class NetPKI:
    """A CA (root and intermediate, keys kept: the test signs CRLs) with router certificates on disk."""

    base: Path
    issuer: authority.CertifiedKey
    stranger: authority.CertifiedKey


@functools.cache
def net_pki() -> NetPKI:
    base = Path(tempfile.mkdtemp(prefix="wecross-revocation-pki-"))
    root, intermediate = authority.create_ca_chain(1)
    authority.write_certificates(base / "ca.crt", [root.cert])
    for rid in ("router-a", "router-b", "router-c"):
        leaf = authority.issue_router_cert(intermediate, rid, serves=("*",))
        authority.write_certificates(base / rid / "chain.pem", leaf.full_chain)
        authority.write_private_key(base / rid / "key.pem", leaf.key)
    (stranger,) = authority.create_ca_chain(0, root_name="Stranger CA")
    return NetPKI(base, intermediate, stranger)


class RevokedRouterTests(TestCase):
    """Routers a, b (with the list) and c (the one revoked, without it): c dials a, b dials c, a dials b; c serves
    evidence.court. Revoking c must cut both its links, refuse its next handshakes at TLS in both directions (a as
    server, b as client), drop its record and a's route to its chain: at the next reload (every 0.05 s here)."""

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.workdir = Path(tempfile.mkdtemp(prefix="wecross-revoked-"))
        self.pki = net_pki()
        self.crl = self.workdir / "crl.pem"
        self.crl.write_bytes(crl_of(self.pki.issuer))  # in force from the start, naming none of ours

        def adjust(rid: str, settings: Any) -> Any:
            certs = self.pki.base / rid
            tls = dataclasses.replace(settings.p2p_tls, ca=self.pki.base / "ca.crt", cert=certs / "chain.pem",
                                      key=certs / "key.pem")
            if rid != "router-c":
                tls = dataclasses.replace(tls, crl=self.crl, crl_reload=0.05)
            return dataclasses.replace(settings, p2p_tls=tls)

        self.net = support.Network(self.workdir, {
            "router-a": {"zones": ["payment"], "chain": "bank-a"},
            "router-b": {"zones": ["payment"]},
            "router-c": {"zones": ["payment"], "chain": "court"},
        }, [("router-c", "router-a"), ("router-b", "router-c"), ("router-a", "router-b")], adjust=adjust)
        self.addCleanup(self.net.stop)
        yield self.net.start()
        self.a, self.b, self.c = (self.net.nodes[r] for r in ("router-a", "router-b", "router-c"))
        yield support.until(lambda: self.net.linked() and self.a.router.table.route("payment.court") is not None
                            and "router-c" in self.b.directory)

    @defer.inlineCallbacks
    def test_revoked_router_refused_and_its_routes_gone(self) -> Any:
        a, b = self.a, self.b
        version = a.directory.routing_version
        c_cert = authority.read_certificates(self.pki.base / "router-c" / "chain.pem")[0]
        self.crl.write_bytes(crl_of(self.pki.issuer, c_cert))
        # The live links to c are closed with BYE "revoked", c's record leaves both directories.
        yield support.until(lambda: "router-c" not in a.peers.links and "router-c" not in b.peers.links
                            and "router-c" not in a.directory and "router-c" not in b.directory)
        self.assertGreater(a.directory.routing_version, version)
        self.assertGreaterEqual(a.peers.counters.refused["revoked_live"], 1)
        self.assertGreaterEqual(b.peers.counters.refused["revoked_live"], 1)
        self.assertTrue(a.is_revoked(c_cert))
        yield support.until(lambda: a.router.table.route("payment.court") is None)
        # c keeps dialling a, and b keeps dialling c: each new handshake is refused at TLS, as server and client.
        yield support.until(lambda: a.peers.counters.refused["revoked"] >= 1
                            and b.peers.counters.refused["revoked"] >= 1)
        self.assertIn("revoked", a.router.status()["refused_links"])
        self.assertIn("router-b", a.peers.links)  # the others are unaffected
        self.assertNotIn("router-c", a.peers.links)

        # A list from a stranger CA is refused; the one in force stays (c still out).
        self.crl.write_bytes(crl_of(self.pki.stranger))
        yield support.until(lambda: a.revocation is not None and bool(a.revocation.errors))
        assert a.revocation is not None
        self.assertIn("not signed by this network's CA", a.revocation.errors[0])
        self.assertTrue(a.is_revoked(c_cert))
        self.assertNotIn("router-c", a.directory)


class AdmissionTests(TestCase):
    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.workdir = Path(tempfile.mkdtemp(prefix="wecross-admission-"))
        self.net = support.Network(self.workdir, {"router-a": {"zones": ["payment"]},
                                                  "router-b": {"zones": ["payment"]}}, [])
        self.addCleanup(self.net.stop)
        yield self.net.start()
        self.a, self.b = self.net.nodes["router-a"], self.net.nodes["router-b"]

    @defer.inlineCallbacks
    def test_add_then_remove_peer(self) -> Any:
        a, b = self.a, self.b
        address = f"127.0.0.1:{b.p2p_port}"
        self.assertRaises(ValueError, a.peers.add_peer, address, "router-a")
        self.assertRaises(ValueError, a.peers.add_peer, "nowhere", None)
        change = a.peers.add_peer(address, "router-b")
        self.assertTrue(change.changed)
        self.assertFalse(a.peers.add_peer(address, "router-b").changed)  # idempotent
        self.assertRaises(ValueError, a.peers.add_peer, address, "router-c")
        yield support.until(lambda: "router-b" in a.peers.links and "router-a" in b.peers.links)
        (dialer,) = a.peers.dialers
        service = dialer.service
        assert service is not None
        removed = a.peers.remove_peer("router-b")
        self.assertTrue(removed.changed)
        self.assertEqual(removed.closed_links, 1)
        self.assertEqual(removed.as_dict()["address"], address)
        self.assertFalse(a.peers.remove_peer("router-b").changed)  # idempotent
        self.assertFalse(a.peers.remove_peer(address).changed)
        yield support.until(lambda: "router-b" not in a.peers.links and "router-a" not in b.peers.links)
        # Not redialled: no dialler left, and its ClientService is stopped and detached.
        self.assertEqual(a.peers.dialers, [])
        self.assertFalse(service.running)
        self.assertIsNone(service.parent)
        self.assertFalse(any(row["state"] == "connecting" for row in a.peers.peer_table()))
        # Added again by address only: links again.
        self.assertTrue(a.peers.add_peer(address).changed)
        yield support.until(lambda: "router-b" in a.peers.links)
        self.assertTrue(a.peers.remove_peer(address).changed)
        yield support.until(lambda: "router-b" not in a.peers.links)


