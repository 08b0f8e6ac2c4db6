"""The CA: hierarchies of any depth, router and client certificates, PEM files, and the ``wecross certs`` command."""

from __future__ import annotations

import datetime
import io
import os
import stat
import sys
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto
from twisted.trial.unittest import SynchronousTestCase

from wecross.peer.tls import load_tls_material
from wecross.pki import authority as ca
from wecross.pki import cli
from wecross.pki.authority import CertifiedKey, InvalidNameError, PKIError
from wecross.pki.serves import (
    SERVES_OID,
    ChainAuthority,
    ServesEncodingError,
    ServesPatternError,
    authorizes,
    decode_serves_value,
    encode_serves_value,
    serves_extension,
    serves_patterns,
    validate_serves_pattern,
)

E = TypeVar("E", bound=x509.ExtensionType)


def ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


def verifies(root: x509.Certificate, leaf: x509.Certificate, chain: tuple[x509.Certificate, ...]) -> bool:
    """Does OpenSSL (as the TLS handshake will) accept leaf + chain under root?"""
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(root))
    try:
        crypto.X509StoreContext(
            store, crypto.X509.from_cryptography(leaf), [crypto.X509.from_cryptography(c) for c in chain]
        ).verify_certificate()
    except crypto.X509StoreContextError:
        return False
    return True


class HierarchyTests(SynchronousTestCase):
    def check_chain(self, depth: int) -> None:
        cas = ca.create_ca_chain(depth, org="Acme")
        self.assertEqual(len(cas), depth + 1)
        root = cas[0]
        self.assertTrue(ca.is_self_signed(root.cert))
        self.assertEqual(root.chain, ())
        for k, item in enumerate(cas):
            bc = ext(item.cert, x509.BasicConstraints)
            self.assertTrue(bc.critical)
            self.assertTrue(bc.value.ca)
            # Exact path lengths: the root allows `depth` CAs below it, the last intermediate none.
            self.assertEqual(bc.value.path_length, depth - k)
            ku = ext(item.cert, x509.KeyUsage).value
            self.assertTrue(ku.key_cert_sign and ku.crl_sign)
            ski = ext(item.cert, x509.SubjectKeyIdentifier).value
            self.assertEqual(ski, x509.SubjectKeyIdentifier.from_public_key(item.key.public_key()))
            if k:
                parent = cas[k - 1]
                aki = ext(item.cert, x509.AuthorityKeyIdentifier).value
                self.assertEqual(aki.key_identifier, ext(parent.cert, x509.SubjectKeyIdentifier).value.digest)
                self.assertEqual(item.cert.issuer, parent.cert.subject)
                item.cert.verify_directly_issued_by(parent.cert)
                # An intermediate's chain: its issuer, then the issuer's chain, never the root.
                self.assertEqual(item.chain, () if k == 1 else (parent.cert, *parent.chain))
            self.assertEqual(item.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value, "Acme")

        router = ca.issue_router_cert(cas[-1], "router-a")
        self.assertEqual(len(router.chain), depth)
        self.assertEqual(router.full_chain[0], router.cert)
        self.assertEqual(list(router.chain), [c.cert for c in reversed(cas[1:])])
        self.assertTrue(verifies(root.cert, router.cert, router.chain))
        if depth:
            self.assertFalse(verifies(root.cert, router.cert, ()), "intermediates must be needed")

    def test_depth_0(self) -> None:
        self.check_chain(0)

    def test_depth_1(self) -> None:
        self.check_chain(1)

    def test_depth_3(self) -> None:
        self.check_chain(3)

    def test_path_length_enforced(self) -> None:
        _, issuing = ca.create_ca_chain(1)
        err = self.assertRaises(PKIError, ca.create_intermediate_ca, issuing, "too deep")
        self.assertEqual(err.code, "path_length")
        leaf = ca.issue_router_cert(issuing, "router-a")
        self.assertRaises(PKIError, ca.issue_router_cert, CertifiedKey(leaf.cert, leaf.key), "router-b")

    def test_wrong_issuer_key(self) -> None:
        root = ca.create_root_ca()
        bad = CertifiedKey(root.cert, ca.generate_key())
        err = self.assertRaises(PKIError, ca.issue_router_cert, bad, "router-a")
        self.assertEqual(err.code, "key_mismatch")

    def test_negative_depth(self) -> None:
        self.assertRaises(PKIError, ca.create_ca_chain, -1)


class LeafTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cas = ca.create_ca_chain(1)

    def test_router_certificate(self) -> None:
        r = ca.issue_router_cert(self.cas[-1], "r1.zone-a", org="Bank A", extra_dns_names=["r1-alt"])
        self.assertEqual(ca.common_name(r.cert), "r1.zone-a")
        self.assertEqual(ca.dns_names(r.cert), ("r1.zone-a", "r1-alt"))
        self.assertEqual(r.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value, "Bank A")
        eku = ext(r.cert, x509.ExtendedKeyUsage).value
        self.assertEqual(set(eku), {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH})
        bc = ext(r.cert, x509.BasicConstraints)
        self.assertTrue(bc.critical)
        self.assertFalse(bc.value.ca)
        ku = ext(r.cert, x509.KeyUsage).value
        self.assertTrue(ku.digital_signature)
        self.assertFalse(ku.key_cert_sign)
        assert isinstance(r.key, ec.EllipticCurvePrivateKey)
        self.assertEqual(r.key.curve.name, "secp256r1")

    def test_client_certificate(self) -> None:
        c = ca.issue_client_cert(self.cas[-1], "alice", org="Bank A")
        self.assertEqual(ca.common_name(c.cert), "alice")
        self.assertEqual(ca.dns_names(c.cert), ())
        self.assertEqual(list(ext(c.cert, x509.ExtendedKeyUsage).value), [ExtendedKeyUsageOID.CLIENT_AUTH])
        self.assertEqual(ca.issue_client_cert(self.cas[-1], "bob").cert.subject.rfc4514_string(), "CN=bob")

    def test_rsa(self) -> None:
        cas = ca.create_ca_chain(1, key_type="rsa")
        r = ca.issue_router_cert(cas[-1], "router-a", key_type="rsa")
        assert isinstance(r.key, rsa.RSAPrivateKey)
        self.assertEqual(r.key.key_size, 2048)
        self.assertTrue(ext(r.cert, x509.KeyUsage).value.key_encipherment)
        self.assertTrue(verifies(cas[0].cert, r.cert, r.chain))
        self.assertRaises(PKIError, ca.generate_key, "dsa")

    def test_validity(self) -> None:
        now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
        cas = ca.create_ca_chain(0, days=100, now=now)
        r = ca.issue_router_cert(cas[0], "router-a", days=10, now=now)
        self.assertEqual(r.cert.not_valid_after_utc, now + datetime.timedelta(days=10))
        self.assertLess(r.cert.not_valid_before_utc, now)  # tolerate a peer whose clock is a little behind
        # Never outlive the issuer.
        long = ca.issue_router_cert(cas[0], "router-b", days=1000, now=now)
        self.assertEqual(long.cert.not_valid_after_utc, cas[0].cert.not_valid_after_utc)
        self.assertRaises(PKIError, ca.issue_router_cert, cas[0], "router-c", days=0)

    def test_router_id_validation(self) -> None:
        for good in ("router-a", "r1", "r1.zone-a", "a" * 63, "0abc", "x.y.z"):
            self.assertEqual(ca.validate_router_id(good), good)
        bad = {
            "": "empty",
            "Router-A": "upper-case",
            "router_a": "not a DNS name",
            "-router": "not a DNS name",
            "router-": "not a DNS name",
            "a..b": "not a DNS name",
            "a" * 64: "not a DNS name",
            "r.": "not a DNS name",
            "10.0.0.1": "IP address",
            ("a." * 127) + "a": "longer than 253",
            "router a": "not a DNS name",
        }
        for value, words in bad.items():
            err = self.assertRaises(InvalidNameError, ca.validate_router_id, value)
            self.assertIn(words, str(err))
            self.assertEqual(err.code, "bad_name")
        self.assertRaises(InvalidNameError, ca.issue_router_cert, self.cas[-1], "bad_id")

    def test_user_name_validation(self) -> None:
        for good in ("alice", "Alice.Smith", "ops@bank-a", "u_1"):
            ca.validate_user_name(good)
        for bad in ("", "../etc", ".hidden", "a/b", "x" * 65, "with space"):
            self.assertRaises(InvalidNameError, ca.validate_user_name, bad)


class FileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()

    def test_key_mode_whatever_the_umask(self) -> None:
        old = os.umask(0)
        try:
            path = ca.write_private_key(self.dir / "k.pem", ca.generate_key())
            cert_path = ca.write_certificates(self.dir / "c.pem", [ca.create_root_ca().cert])
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(cert_path.stat().st_mode), 0o644)

    def test_forced_replacement_keeps_mode(self) -> None:
        path = self.dir / "k.pem"
        first, second = ca.generate_key(), ca.generate_key()
        ca.write_private_key(path, first)
        path.chmod(0o644)
        ca.write_private_key(path, second, force=True)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(ca.public_key_der(ca.read_private_key(path)), ca.public_key_der(second))
        self.assertEqual([p.name for p in self.dir.iterdir()], ["k.pem"])  # no temporary file left behind

    def test_refuse_overwrite(self) -> None:
        path = self.dir / "k.pem"
        key = ca.generate_key()
        ca.write_private_key(path, key)
        err = self.assertRaises(ca.FileExistsRefusedError, ca.write_private_key, path, ca.generate_key())
        self.assertEqual(err.code, "exists")
        self.assertEqual(ca.public_key_der(ca.read_private_key(path)), ca.public_key_der(key))

    def test_round_trip(self) -> None:
        cas = ca.create_ca_chain(2)
        r = ca.issue_router_cert(cas[-1], "router-a")
        ca.write_certificates(self.dir / "chain.pem", r.full_chain)
        self.assertEqual(ca.read_certificates(self.dir / "chain.pem"), list(r.full_chain))
        # A key file that also holds certificates still yields its key.
        (self.dir / "both.pem").write_bytes(ca.certs_to_pem([r.cert]) + ca.key_to_pem(r.key))
        self.assertEqual(ca.public_key_der(ca.read_private_key(self.dir / "both.pem")), ca.public_key_der(r.cert))

    def test_read_errors(self) -> None:
        err = self.assertRaises(PKIError, ca.read_certificates, self.dir / "none.pem")
        self.assertEqual(err.code, "missing_file")
        (self.dir / "key.pem").write_bytes(ca.key_to_pem(ca.generate_key()))
        err = self.assertRaises(PKIError, ca.read_certificates, self.dir / "key.pem")
        self.assertIn("a private key", str(err))
        (self.dir / "junk").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        self.assertEqual(self.assertRaises(PKIError, ca.read_certificates, self.dir / "junk").code, "not_pem")
        err = self.assertRaises(PKIError, ca.read_private_key, self.dir / "junk")
        self.assertIn("certificates only", str(err))


class LoadIssuerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.cas = ca.create_ca_chain(2)
        ca.write_certificates(self.dir / "ca.crt", [self.cas[0].cert])
        for k, item in enumerate(self.cas[1:], start=1):
            ca.write_certificates(self.dir / f"intermediate-{k}.crt", [item.cert])
            ca.write_private_key(self.dir / f"intermediate-{k}.key", item.key)
        ca.write_private_key(self.dir / "ca.key", self.cas[0].key)

    def test_intermediate_chain_found_next_to_it(self) -> None:
        issuer, root = ca.load_issuer(self.dir / "intermediate-2.crt", self.dir / "intermediate-2.key")
        self.assertEqual(issuer.chain, (self.cas[1].cert,))
        self.assertEqual(root, self.cas[0].cert)
        leaf = ca.issue_router_cert(issuer, "router-z")
        self.assertTrue(verifies(self.cas[0].cert, leaf.cert, leaf.chain))

    def test_root(self) -> None:
        issuer, root = ca.load_issuer(self.dir / "ca.crt", self.dir / "ca.key")
        self.assertEqual(root, issuer.cert)
        self.assertEqual(issuer.chain, ())

    def test_chain_file_elsewhere(self) -> None:
        other = Path(self.mktemp())
        other.mkdir()
        ca.write_certificates(other / "issuer.pem", [self.cas[2].cert, self.cas[1].cert, self.cas[0].cert])
        issuer, root = ca.load_issuer(other / "issuer.pem", self.dir / "intermediate-2.key")
        self.assertEqual(issuer.chain, (self.cas[1].cert,))
        self.assertEqual(root, self.cas[0].cert)

    def test_incomplete_chain(self) -> None:
        lonely = Path(self.mktemp())
        lonely.mkdir()
        ca.write_certificates(lonely / "int.crt", [self.cas[2].cert])
        err = self.assertRaises(PKIError, ca.load_issuer, lonely / "int.crt", self.dir / "intermediate-2.key")
        self.assertEqual(err.code, "incomplete_chain")

    def test_root_anywhere_in_file(self) -> None:
        ca.write_certificates(self.dir / "any.pem", [self.cas[2].cert, self.cas[0].cert, self.cas[1].cert])
        issuer, root = ca.load_issuer(self.dir / "any.pem", self.dir / "intermediate-2.key")
        self.assertEqual((issuer.chain, root), ((self.cas[1].cert,), self.cas[0].cert))

    def test_wrong_chain(self) -> None:
        stranger = ca.create_ca_chain(1)[1]
        ca.write_certificates(self.dir / "bad.pem", [self.cas[2].cert, stranger.cert])
        err = self.assertRaises(PKIError, ca.load_issuer, self.dir / "bad.pem", self.dir / "intermediate-2.key")
        self.assertEqual(err.code, "bad_chain")

    def test_key_mismatch(self) -> None:
        err = self.assertRaises(PKIError, ca.load_issuer, self.dir / "intermediate-1.crt", self.dir / "ca.key")
        self.assertEqual(err.code, "key_mismatch")


class CLITests(SynchronousTestCase):
    def setUp(self) -> None:
        self.out = Path(self.mktemp())
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.patch(sys, "stdout", self.stdout)
        self.patch(sys, "stderr", self.stderr)

    def certs(self, *args: str) -> int:
        return cli.main(["--out", str(self.out), *args])

    def test_full_layout(self) -> None:
        code = self.certs("--intermediates", "1", "--routers", "router-a,router-b", "--clients", "alice,bob",
                          "--org", "Acme", "--days", "30")
        self.assertEqual(code, 0, self.stderr.getvalue())
        expected = {
            "ca.crt", "ca.key", "intermediate-1.crt", "intermediate-1.key",
            *(f"routers/{r}/{f}" for r in ("router-a", "router-b") for f in ("cert.pem", "chain.pem", "key.pem")),
            *(f"clients/{c}/{f}" for c in ("alice", "bob") for f in ("cert.pem", "chain.pem", "key.pem")),
        }
        written = {str(p.relative_to(self.out)) for p in self.out.rglob("*") if p.is_file()}
        self.assertEqual(written, expected)
        for name in expected:
            mode = stat.S_IMODE((self.out / name).stat().st_mode)
            self.assertEqual(mode, 0o600 if name.endswith(".key") or name.endswith("key.pem") else 0o644, name)
            self.assertIn(f"wrote {self.out / name}", self.stdout.getvalue())

        root = ca.read_certificates(self.out / "ca.crt")[0]
        inter = ca.read_certificates(self.out / "intermediate-1.crt")[0]
        self.assertEqual(ext(root, x509.BasicConstraints).value.path_length, 1)
        chain = ca.read_certificates(self.out / "routers/router-a/chain.pem")
        self.assertEqual(chain, [*ca.read_certificates(self.out / "routers/router-a/cert.pem"), inter])
        self.assertEqual(ca.dns_names(chain[0]), ("router-a",))
        leaf = chain[0]
        self.assertEqual(
            leaf.not_valid_after_utc - leaf.not_valid_before_utc, datetime.timedelta(days=30) + ca.CLOCK_SKEW
        )

        # The files are exactly what a router loads.
        m = load_tls_material(self.out / "ca.crt", self.out / "routers/router-b/chain.pem",
                              self.out / "routers/router-b/key.pem")
        self.assertEqual(m.identity.dns_names, ("router-b",))
        alice = load_tls_material(self.out / "ca.crt", self.out / "clients/alice/chain.pem",
                                  self.out / "clients/alice/key.pem")
        self.assertEqual(alice.identity.common_name, "alice")

    def test_depth_3_rsa(self) -> None:
        self.assertEqual(self.certs("--intermediates", "3", "--routers", "router-a", "--key", "rsa"), 0)
        chain = ca.read_certificates(self.out / "routers/router-a/chain.pem")
        self.assertEqual(len(chain), 4)
        self.assertIsInstance(chain[0].public_key(), rsa.RSAPublicKey)
        self.assertTrue(verifies(ca.read_certificates(self.out / "ca.crt")[0], chain[0], tuple(chain[1:])))

    def test_refuse_overwrite_writes_nothing(self) -> None:
        self.assertEqual(self.certs("--routers", "router-a"), 0)
        before = {p: p.read_bytes() for p in self.out.rglob("*") if p.is_file()}
        self.assertEqual(self.certs("--routers", "router-a,router-b"), 1)
        self.assertIn("[exists]", self.stderr.getvalue())
        self.assertIn("--force", self.stderr.getvalue())
        self.assertNotIn("Traceback", self.stderr.getvalue())
        after = {p: p.read_bytes() for p in self.out.rglob("*") if p.is_file()}
        self.assertEqual(before, after)  # not even router-b was written
        self.assertEqual(self.certs("--routers", "router-a,router-b", "--force"), 0)
        self.assertNotEqual(before[self.out / "ca.key"], (self.out / "ca.key").read_bytes())

    def test_issue_from_existing_intermediate(self) -> None:
        self.assertEqual(self.certs("--intermediates", "2", "--routers", "router-a"), 0)
        root_key = (self.out / "ca.key").read_bytes()
        code = self.certs("--ca-cert", str(self.out / "intermediate-2.crt"), "--ca-key",
                          str(self.out / "intermediate-2.key"), "--routers", "router-c", "--clients", "carol")
        self.assertEqual(code, 0, self.stderr.getvalue())
        self.assertEqual((self.out / "ca.key").read_bytes(), root_key)  # CA untouched
        self.assertIn("already holds this root CA", self.stdout.getvalue())
        # The new router talks to the old one: same root, full chain.
        a = load_tls_material(self.out / "ca.crt", self.out / "routers/router-a/chain.pem",
                              self.out / "routers/router-a/key.pem")
        c = load_tls_material(self.out / "ca.crt", self.out / "routers/router-c/chain.pem",
                              self.out / "routers/router-c/key.pem")
        self.assertEqual(c.chain, a.chain)

    def test_issue_into_new_directory_copies_root(self) -> None:
        self.assertEqual(self.certs("--intermediates", "1"), 0)
        elsewhere = Path(self.mktemp())
        code = cli.main(["--out", str(elsewhere), "--ca-cert", str(self.out / "intermediate-1.crt"),
                         "--ca-key", str(self.out / "intermediate-1.key"), "--routers", "router-x"])
        self.assertEqual(code, 0, self.stderr.getvalue())
        self.assertEqual((elsewhere / "ca.crt").read_bytes(), (self.out / "ca.crt").read_bytes())
        self.assertFalse((elsewhere / "ca.key").exists())
        load_tls_material(elsewhere / "ca.crt", elsewhere / "routers/router-x/chain.pem",
                          elsewhere / "routers/router-x/key.pem")

    def test_errors_are_one_line(self) -> None:
        cases = [
            (["--routers", "Router_A"], "[bad_name]"),
            (["--routers", "a,a"], "[duplicate]"),
            (["--clients", "../x"], "[bad_name]"),
            (["--ca-cert", "x.crt"], "[usage]"),
            (["--ca-cert", "missing.crt", "--ca-key", "missing.key", "--routers", "r"], "[missing_file]"),
        ]
        for args, code_text in cases:
            self.stderr.truncate(0)
            self.stderr.seek(0)
            self.assertEqual(self.certs(*args), 1, args)
            message = self.stderr.getvalue()
            self.assertIn(code_text, message)
            self.assertEqual(message.count("\n"), 1, message)
            self.assertTrue(message.startswith("wecross certs: error"), message)
        self.assertFalse(self.out.exists())

    def test_intermediates_with_ca_cert_refused(self) -> None:
        self.assertEqual(self.certs("--intermediates", "1"), 0)
        code = self.certs("--ca-cert", str(self.out / "ca.crt"), "--ca-key", str(self.out / "ca.key"),
                          "--intermediates", "1", "--routers", "r")
        self.assertEqual(code, 1)
        self.assertIn("--intermediates", self.stderr.getvalue())

    def test_usage_errors(self) -> None:
        self.assertEqual(cli.main([]), 2)  # --out is required
        self.assertEqual(self.certs("--days", "0"), 2)
        self.assertEqual(self.certs("--key", "dsa"), 2)
        self.assertEqual(self.certs("--routers", "a,,b"), 2)
        self.assertEqual(cli.main(["--help"]), 0)
        self.assertIn("wecross certs", self.stdout.getvalue())

    def test_subparser_hook(self) -> None:
        import argparse

        top = argparse.ArgumentParser(prog="wecross")
        sub = top.add_subparsers(dest="command")
        cli.build_parser(sub)
        args = top.parse_args(["certs", "--out", str(self.out), "--routers", "router-a"])
        self.assertEqual(args.certs_run(args), 0)
        self.assertTrue((self.out / "routers/router-a/key.pem").exists())


def _der_strings(*strings: str | bytes) -> bytes:
    """DER SEQUENCE OF UTF8String written independently of wecross.pki.serves (short lengths only); ``bytes``
    items go in unchanged, to make invalid UTF-8."""
    raw = [s.encode() if isinstance(s, str) else s for s in strings]
    body = b"".join(bytes([0x0C, len(r)]) + r for r in raw)
    assert len(body) < 0x80
    return bytes([0x30, len(body)]) + body


def _cert_with(inter: CertifiedKey, extensions: list[x509.ExtensionType], *, critical: bool = False
               ) -> x509.Certificate:
    """A leaf signed by ``inter`` carrying exactly ``extensions`` (what a CA might sign, well-formed or not)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "router-a")]))
               .issuer_name(inter.cert.subject).public_key(key.public_key()).serial_number(1)
               .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1)))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(inter.key, hashes.SHA256())


class ServesTests(SynchronousTestCase):
    """Chain authority in certificates: the serves patterns, their encoding, and what they authorise."""

    def test_patterns_are_validated(self) -> None:
        for good in ("payment.bank-a", "payment.*", "*", "Zone_1.chain-2"):
            self.assertEqual(validate_serves_pattern(good), good)
        for bad in ("", "payment", "payment.bank-a.asset", "*.bank-a", "pay*.bank", "payment.", ".x", "a.b*",
                    "payment.bank a", "-x.y", "**", "payment.**", 7):
            self.assertRaises(ServesPatternError, validate_serves_pattern, bad)  # type: ignore[arg-type]

    def test_wildcards(self) -> None:
        cases = [
            (("payment.bank-a",), "payment.bank-a", True),
            (("payment.bank-a",), "payment.bank-b", False),
            (("payment.bank-a",), "Payment.bank-a", False),  # chain paths are case-sensitive
            (("payment.*",), "payment.bank-b", True),
            (("payment.*",), "evidence.court", False),
            (("payment.*",), "payment", False),
            (("payment.*",), "payment.bank.x", False),
            (("*",), "evidence.court", True),
            (("*",), "not a path", False),
            ((), "payment.bank-a", False),  # no pattern: no authority
            (("nowhere.*", "evidence.court"), "evidence.court", True),
            (("bogus", "x.y.z"), "x.y", False),  # invalid patterns grant nothing
        ]
        for patterns, chain, expected in cases:
            self.assertEqual(authorizes(patterns, chain), expected, (patterns, chain))
            self.assertEqual(ChainAuthority.of(patterns).authorizes(chain), expected, (patterns, chain))

    def test_issued_certificate_carries_the_extension(self) -> None:
        root, inter = ca.create_ca_chain(1)
        leaf = ca.issue_router_cert(inter, "router-a", serves=("payment.bank-a", "evidence.*", "payment.bank-a"))
        found = leaf.cert.extensions.get_extension_for_oid(SERVES_OID)
        self.assertFalse(found.critical)  # TLS libraries that do not know it must still accept the certificate
        self.assertIsInstance(found.value, x509.UnrecognizedExtension)
        self.assertEqual(decode_serves_value(found.value.value), ("payment.bank-a", "evidence.*"))
        san = ext(leaf.cert, x509.SubjectAlternativeName).value
        self.assertEqual(list(san), [x509.DNSName("router-a")])  # the SAN holds the router id and nothing else
        self.assertEqual(serves_patterns(leaf.cert), ("evidence.*", "payment.bank-a"))
        self.assertEqual(ca.dns_names(leaf.cert), ("router-a",))
        bare = ca.issue_router_cert(inter, "router-b").cert
        self.assertRaises(x509.ExtensionNotFound, bare.extensions.get_extension_for_oid, SERVES_OID)
        self.assertEqual(serves_patterns(bare), ())
        self.assertEqual(serves_patterns(ca.issue_router_cert(inter, "router-c", serves="*").cert), ("*",))
        err = self.assertRaises(InvalidNameError, ca.issue_router_cert, inter, "router-d", serves=("payment",))
        self.assertEqual(err.code, "bad_serves")
        self.assertTrue(verifies(root.cert, leaf.cert, leaf.chain))  # OpenSSL accepts it in a chain

    def test_service_identity_accepts_router_certificates(self) -> None:
        """Hostname verification (the SDK's, any Python TLS client's) passes with serves patterns present: they
        used to be subjectAltName URIs, on which service_identity raised "Invalid URI pattern"."""
        from service_identity import VerificationError
        from service_identity.cryptography import verify_certificate_hostname

        _, inter = ca.create_ca_chain(1)
        for serves in (("*",), ("payment.bank-a", "evidence.*"), ()):
            leaf = ca.issue_router_cert(inter, "router-a", serves=serves).cert
            verify_certificate_hostname(leaf, "router-a")
            self.assertRaises(VerificationError, verify_certificate_hostname, leaf, "router-b")

    def test_der_encoding(self) -> None:
        """The value is DER ``SEQUENCE OF UTF8String``, byte for byte, including long-form lengths."""
        self.assertEqual(encode_serves_value(["*"]), bytes.fromhex("30030c012a"))
        self.assertEqual(encode_serves_value(["a.b", "*", "a.b"]), bytes.fromhex("30080c03612e620c012a"))
        self.assertEqual(encode_serves_value([]), bytes.fromhex("3000"))
        self.assertEqual(encode_serves_value("*"), bytes.fromhex("30030c012a"))  # a lone string is one pattern
        many = [f"zone-{i:03d}.chain-{i:03d}" for i in range(40)]  # 40 * 20 bytes: a 2-byte long-form length
        value = encode_serves_value(many)
        self.assertEqual(value[:4], bytes([0x30, 0x82]) + (40 * 20).to_bytes(2, "big"))
        self.assertEqual(decode_serves_value(value), tuple(many))
        self.assertEqual(decode_serves_value(bytes.fromhex("3000")), ())
        self.assertRaises(ServesPatternError, encode_serves_value, ["payment"])
        self.assertEqual(encode_serves_value(["a.b", "*"]), _der_strings("a.b", "*"))
        extension = serves_extension(["x.y"])
        self.assertEqual((extension.oid, extension.value), (SERVES_OID, _der_strings("x.y")))

    def test_malformed_values_are_refused(self) -> None:
        good = bytes.fromhex("30080c03612e620c012a")
        malformed = {
            "empty": b"",
            "not a sequence": bytes.fromhex("31030c012a"),
            "a SET, not a SEQUENCE": bytes.fromhex("31080c03612e620c012a"),
            "IA5String inside": bytes.fromhex("300316012a"),
            "trailing bytes": good + b"\x00",
            "sequence too long": bytes.fromhex("30090c03612e620c012a"),
            "string too long": bytes.fromhex("30030c022a"),
            "truncated header": bytes.fromhex("30"),
            "truncated inner header": bytes.fromhex("30010c"),
            "indefinite length": bytes.fromhex("30800c012a0000"),
            "non-minimal long form": bytes.fromhex("3081030c012a"),
            "leading zero length byte": bytes.fromhex("308200030c012a"),
            "length field of 5 bytes": bytes.fromhex("3085000000000300"),
            "truncated length field": bytes.fromhex("3082"),
            "invalid UTF-8": bytes.fromhex("30030c01ff"),
        }
        for why, value in malformed.items():
            err = self.assertRaises(ServesEncodingError, decode_serves_value, value)
            self.assertLess(len(str(err)), 80, why)  # says what is wrong, never echoes the value
        self.assertEqual(decode_serves_value(good), ("a.b", "*"))

    def test_malformed_extension_grants_nothing(self) -> None:
        """A malformed value grants nothing at all, even next to valid patterns; a well-formed string that is not
        a pattern is skipped while the valid ones still count (never widened)."""
        _, inter = ca.create_ca_chain(1)
        court = encode_serves_value(["evidence.court"])
        cases = [
            (court, ("evidence.court",)),
            (court + b"\x00", ()),  # trailing byte: the whole extension is refused
            (court[:-1], ()),  # truncated
            (_der_strings("evidence.court", b"\xff.x"), ()),  # invalid UTF-8 in one string
            (_der_strings("payment.*.x", "https://example.org/*", "evidence.court", "*.x"), ("evidence.court",)),
            (_der_strings("PAYMENT.bank-a", "payment.bank-a"), ("PAYMENT.bank-a", "payment.bank-a")),
        ]
        for value, expected in cases:
            cert = _cert_with(inter, [x509.UnrecognizedExtension(SERVES_OID, value)])
            self.assertEqual(serves_patterns(cert), expected, value.hex())
        # Critical or not, the CA signed it: it is read the same way (wecross certs always writes it non-critical).
        critical = _cert_with(inter, [x509.UnrecognizedExtension(SERVES_OID, court)], critical=True)
        self.assertEqual(serves_patterns(critical), ("evidence.court",))

    def test_subject_alt_name_uris_grant_nothing(self) -> None:
        """Certificates from before the extension (patterns as ``wecross:serves:`` URIs) authorise no chain:
        reissue them with ``wecross certs --serves``; topology checks (certificate_problems) say so."""
        _, inter = ca.create_ca_chain(1)
        san = x509.SubjectAlternativeName([
            x509.DNSName("router-a"), x509.UniformResourceIdentifier("wecross:serves:*"),
        ])
        self.assertEqual(serves_patterns(_cert_with(inter, [san])), ())

    def test_other_extensions_with_the_oid_are_ignored(self) -> None:
        _, inter = ca.create_ca_chain(1)
        other = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.25.1"), encode_serves_value(["*"]))
        self.assertEqual(serves_patterns(_cert_with(inter, [other])), ())

    def test_sample_certificates_authorise_the_sample_chains(self) -> None:
        """certs/ must let every sample config and topology serve its chains (else routes never reach them)."""
        from wecross.config import load_settings
        from wecross.topology import certificate_problems, load_topology

        conf = Path(__file__).resolve().parent.parent / "conf"
        for sample in sorted((conf / "topologies").glob("*.toml")):
            self.assertEqual(certificate_problems(load_topology(sample)), [], sample)
        for path in sorted(conf.glob("router*.toml")):
            settings = load_settings(path)
            patterns = serves_patterns(ca.read_certificates(settings.p2p_tls.cert)[0])
            for stub in settings.stubs:
                self.assertTrue(authorizes(patterns, f"{stub.zone}.{stub.name}"), (path, stub.name, patterns))


class ServesCLITests(SynchronousTestCase):
    """``wecross certs --serves``: every router, one router, repeated; read back from the files written."""

    setUp = CLITests.setUp
    certs = CLITests.certs

    def patterns(self, router_id: str) -> tuple[str, ...]:
        return serves_patterns(ca.read_certificates(self.out / "routers" / router_id / "cert.pem")[0])

    def test_round_trip(self) -> None:
        code = self.certs("--routers", "router-a,router-b,router-c", "--serves", "evidence.*",
                          "--serves", "router-a=payment.bank-a,payment.bank-b", "--serves", "router-b=*",
                          "--serves", "router-a=evidence.court")
        self.assertEqual(code, 0, self.stderr.getvalue())
        self.assertEqual(self.patterns("router-a"),
                         ("evidence.*", "evidence.court", "payment.bank-a", "payment.bank-b"))
        self.assertEqual(self.patterns("router-b"), ("*", "evidence.*"))
        self.assertEqual(self.patterns("router-c"), ("evidence.*",))
        self.assertIn("router router-c may serve: evidence.*", self.stdout.getvalue())
        # The same certificate still makes a working TLS identity.
        load_tls_material(self.out / "ca.crt", self.out / "routers/router-a/chain.pem",
                          self.out / "routers/router-a/key.pem", router_id="router-a")

    def test_without_serves_a_router_is_told_it_serves_nothing(self) -> None:
        self.assertEqual(self.certs("--routers", "router-a"), 0)
        self.assertEqual(self.patterns("router-a"), ())
        self.assertIn("router-a may serve no chain", self.stdout.getvalue())

    def test_issue_from_existing_ca_with_serves(self) -> None:
        self.assertEqual(self.certs("--intermediates", "1", "--routers", "router-a", "--serves", "*"), 0)
        code = self.certs("--ca-cert", str(self.out / "intermediate-1.crt"), "--ca-key",
                          str(self.out / "intermediate-1.key"), "--routers", "router-d",
                          "--serves", "router-d=payment.bank-d")
        self.assertEqual(code, 0, self.stderr.getvalue())
        self.assertEqual(self.patterns("router-d"), ("payment.bank-d",))

    def test_serves_errors(self) -> None:
        for args, code_text in [
            (["--routers", "router-a", "--serves", "router-b=payment.bank-b"], "not in --routers: router-b"),
            (["--clients", "alice", "--serves", "*"], "give --routers too"),
        ]:
            self.stderr.truncate(0)
            self.stderr.seek(0)
            self.assertEqual(self.certs(*args), 1, args)
            self.assertIn(code_text, self.stderr.getvalue())
            self.assertEqual(self.stderr.getvalue().count("\n"), 1)
        for bad in ("payment", "router-a=", "Router_A=payment.x", "router-a=payment.bank-a,,x.y", "a.b.c"):
            self.stderr.truncate(0)
            self.stderr.seek(0)
            self.assertEqual(self.certs("--routers", "router-a", "--serves", bad), 2, bad)
            self.assertIn("--serves", self.stderr.getvalue())
        self.assertFalse(self.out.exists())
