"""``wecross certs revoke``: the CA operator's side of revocation, writing the signed list routers load.

Kept apart from wecross.pki.revocation (what every router does: check and reload the list) for the same reason
wecross.pki.authority is apart from wecross.peer.tls: signing needs a CA's private key and happens on the
operator's machine, never on a router.

The file is rewritten as a whole and atomically: the CRL of the revoking CA is re-signed with the new entry and
a higher CRL number, every other CRL, CA certificate and deny line of the file is kept as it was. A CRL of the same
issuer whose signature does not verify with the CA key at hand is refused, not replaced: that would silently drop
whatever the real CA had revoked. Revoking what is already revoked changes nothing and writes nothing.
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

from wecross.pki import authority as ca
from wecross.pki.authority import CertifiedKey, PKIError
from wecross.pki.revocation import RevocationError, fingerprint_sha256, split_revocation_file

PROG = "wecross certs revoke"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
DEFAULT_CRL_DAYS = 365

REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key-compromise": x509.ReasonFlags.key_compromise,
    "ca-compromise": x509.ReasonFlags.ca_compromise,
    "affiliation-changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
}

_HEADER = (
    "# WeCross revocation list, written by `wecross certs revoke`: one CRL per issuing CA, the CA certificates that\n"
    "# signed them, then unsigned deny-sha256 lines (refusals by certificate fingerprint). Routers load it with\n"
    "# [p2p] crl = \"path\" and reload it while running.\n"
)

_EPILOG = """\
what to revoke (exactly one):
  NAME                      routers/NAME/cert.pem or clients/NAME/cert.pem under --dir (or intermediate-K)
  --cert PEM                a certificate file
  --serial N                a serial number (decimal or 0x hex) issued by --ca-cert, or by the CA of --dir that
                            issues leaves (the last intermediate, else the root)
  --fingerprint HEX         the SHA-256 of a certificate's DER; when no certificate under --dir has it, an unsigned
                            deny-sha256 line is written instead of a CRL entry

examples:
  wecross certs revoke router-b --dir certs
  wecross certs revoke alice --dir certs --reason key-compromise
  wecross certs revoke --serial 0x1f2e... --dir certs \
      --ca-cert certs/intermediate-1.crt --ca-key certs/intermediate-1.key
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Revoke a router or client certificate: add it to the signed CRL next to the certificates "
        "(--dir/crl.pem). Routers configured with [p2p] crl refuse it at their next reload.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?", default=None, help="router id or client name under --dir")
    parser.add_argument("--dir", type=Path, default=Path("certs"), metavar="DIR",
                        help="the directory `wecross certs --out` wrote (default certs)")
    parser.add_argument("--kind", choices=("router", "client"), default=None,
                        help="when NAME is both a router and a client")
    parser.add_argument("--cert", type=Path, default=None, metavar="PEM", help="revoke this certificate")
    parser.add_argument("--serial", default=None, metavar="N", help="revoke by serial number")
    parser.add_argument("--fingerprint", default=None, metavar="HEX", help="revoke by SHA-256 fingerprint")
    parser.add_argument("--ca-cert", type=Path, default=None, metavar="PEM", help="the issuing CA's certificate")
    parser.add_argument("--ca-key", type=Path, default=None, metavar="PEM", help="the issuing CA's private key")
    parser.add_argument("--crl", type=Path, default=None, metavar="PATH", help="the list to update "
                        "(default DIR/crl.pem)")
    parser.add_argument("--reason", choices=sorted(REASONS), default="unspecified")
    parser.add_argument("--days", type=int, default=DEFAULT_CRL_DAYS, metavar="N",
                        help=f"the CRL's nextUpdate, in days (default {DEFAULT_CRL_DAYS}; routers do not treat "
                        "it as an expiry)")
    return parser


# --------------------------------------------------------------------------------------------------- pure part


@dataclass(frozen=True, slots=True)
class Revoked:
    """The outcome of one revocation: the new file content, whether it changed, and what to tell the operator."""

    data: bytes
    changed: bool
    message: str


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


def _assemble(crls: Sequence[x509.CertificateRevocationList], certs: Sequence[x509.Certificate],
              deny: Sequence[str]) -> bytes:
    parts = [_HEADER.encode()]
    parts.extend(crl.public_bytes(serialization.Encoding.PEM) for crl in crls)
    parts.extend(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)
    parts.extend(f"deny-sha256 {digest}\n".encode() for digest in sorted(deny))
    return b"".join(parts)


def revoke_serial(existing: bytes | None, issuer: CertifiedKey, serial: int, *, what: str = "",
                  reason: str = "unspecified", days: int = DEFAULT_CRL_DAYS,
                  now: datetime.datetime | None = None, source: str = "crl.pem") -> Revoked:
    """The revocation file with ``serial`` of ``issuer`` revoked (``existing``: the current file, None if none).

    Raises RevocationError for a current file that is not a revocation file, or that holds a CRL of this issuer's
    name that this issuer's key did not sign.
    """
    content = split_revocation_file(existing or b"", source, allow_empty=True)
    moment = now or datetime.datetime.now(datetime.UTC)
    label = what or f"serial {serial:#x}"
    mine: x509.CertificateRevocationList | None = None
    others: list[x509.CertificateRevocationList] = []
    for crl in content.crls:
        if crl.issuer != issuer.cert.subject:
            others.append(crl)
            continue
        try:
            valid = crl.is_signature_valid(issuer.key.public_key())
        except (InvalidSignature, TypeError, ValueError):
            valid = False
        if not valid:
            raise RevocationError(source, [f"holds a CRL for {issuer.common_name!r} that this CA key did not sign; "
                                           "refusing to replace it (was it made with another key?)"])
        mine = crl
    if mine is not None and mine.get_revoked_certificate_by_serial_number(serial) is not None:
        return Revoked(existing or b"", False, f"{label} is already revoked by {issuer.common_name!r}")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(moment - ca.CLOCK_SKEW)
        .next_update(moment + datetime.timedelta(days=max(1, days)))
        .add_extension(x509.CRLNumber(1 + (_crl_number(mine) if mine is not None else 0)), critical=False)
    )
    for entry in mine or ():
        builder = builder.add_revoked_certificate(entry)
    entry_builder = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(moment)
    if reason != "unspecified":
        entry_builder = entry_builder.add_extension(x509.CRLReason(REASONS[reason]), critical=False)
    builder = builder.add_revoked_certificate(entry_builder.build())
    crl = builder.sign(issuer.key, hashes.SHA256())
    # The CAs between this issuer and the root travel with the list, so routers holding only the root can check it.
    certs = list(content.certs)
    for cert in (issuer.cert, *issuer.chain):
        if not ca.is_self_signed(cert) and cert not in certs:
            certs.append(cert)
    count = len(crl)
    data = _assemble([*others, crl], certs, sorted(content.deny))
    return Revoked(data, True, f"revoked {label} (serial {serial:#x}, issuer {issuer.common_name!r}; "
                               f"{count} entries in its CRL)")


def deny_fingerprint(existing: bytes | None, fingerprint: str, *, source: str = "crl.pem") -> Revoked:
    """The revocation file with an unsigned ``deny-sha256`` line for ``fingerprint`` (64 hex digits)."""
    digest = fingerprint.lower().removeprefix("sha256:").replace(":", "")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise PKIError(f"fingerprint {fingerprint!r} is not 64 hex digits (a SHA-256)", code="usage")
    content = split_revocation_file(existing or b"", source, allow_empty=True)
    if digest in content.deny:
        return Revoked(existing or b"", False, f"fingerprint {digest} is already denied")
    data = _assemble(content.crls, content.certs, sorted({*content.deny, digest}))
    return Revoked(data, True, f"denied fingerprint {digest} (an unsigned entry: no certificate with it under the "
                               "directory, so no CA could sign its revocation)")


# --------------------------------------------------------------------------------------------------- files


def _parse_serial(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise PKIError(f"serial {text!r} is not a number (decimal, or hex with 0x)", code="usage") from None
    if value < 1:
        raise PKIError("a serial number is positive", code="usage")
    return value


def _certificates_under(directory: Path) -> list[tuple[Path, x509.Certificate]]:
    paths = [*sorted(directory.glob("*.crt")), *sorted(directory.glob("routers/*/cert.pem")),
             *sorted(directory.glob("clients/*/cert.pem"))]
    found = []
    for path in paths:
        try:
            found.append((path, ca.read_certificates(path)[0]))
        except PKIError:
            continue
    return found


def _named(directory: Path, name: str, kind: str | None) -> tuple[Path, str]:
    options = []
    if kind in (None, "router"):
        options.append((directory / "routers" / name / "cert.pem", f"router {name!r}"))
    if kind in (None, "client"):
        options.append((directory / "clients" / name / "cert.pem", f"client {name!r}"))
    if kind is None and name.startswith("intermediate-"):
        options.append((directory / f"{name}.crt", f"CA {name!r}"))
    existing = [(path, what) for path, what in options if path.is_file()]
    if not existing:
        looked = ", ".join(str(path) for path, _ in options)
        raise PKIError(f"no certificate named {name!r} (looked for {looked})", code="missing_file")
    if len(existing) > 1:
        raise PKIError(f"{name!r} is both a router and a client under {directory}: say --kind router or --kind "
                       "client", code="usage")
    return existing[0]


def _issuer_of(cert: x509.Certificate, directory: Path) -> CertifiedKey:
    """The CA under ``directory`` that signed ``cert``, with its key (``X.crt`` beside ``X.key``)."""
    for path, candidate in _certificates_under(directory):
        if path.suffix != ".crt" or candidate.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (InvalidSignature, ValueError, TypeError):
            continue
        key_path = path.with_suffix(".key")
        if not key_path.is_file():
            raise PKIError(f"{path} signed this certificate but its key {key_path} is not there: give --ca-cert and "
                           "--ca-key", code="missing_file", path=key_path)
        issuer, _root = ca.load_issuer(path, key_path)
        return issuer
    raise PKIError(f"no CA certificate under {directory} signed this certificate (issuer "
                   f"{cert.issuer.rfc4514_string()!r}): give --ca-cert and --ca-key", code="missing_file")


def _leaf_issuer(directory: Path) -> Path:
    intermediates = sorted(directory.glob("intermediate-*.crt"),
                           key=lambda p: int(p.stem.rpartition("-")[2]) if p.stem.rpartition("-")[2].isdigit() else 0)
    return intermediates[-1] if intermediates else directory / "ca.crt"


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from wecross.pki.cli import run_reporting  # (wecross.pki.cli dispatches here, lazily)

    return run_reporting(PROG, _run, args, out)


def _run(args: argparse.Namespace, stdout: TextIO) -> int:
    chosen = [x for x in (args.name, args.cert, args.serial, args.fingerprint) if x is not None]
    if len(chosen) != 1:
        raise PKIError("say what to revoke: exactly one of NAME, --cert, --serial, --fingerprint", code="usage")
    if (args.ca_cert is None) != (args.ca_key is None):
        raise PKIError("--ca-cert and --ca-key must be given together", code="usage")
    directory: Path = args.dir
    crl_path: Path = args.crl or directory / "crl.pem"
    existing = crl_path.read_bytes() if crl_path.exists() else None
    given: CertifiedKey | None = ca.load_issuer(args.ca_cert, args.ca_key)[0] if args.ca_cert else None

    target: x509.Certificate | None = None
    what = ""
    if args.name is not None:
        path, what = _named(directory, args.name, args.kind)
        target = ca.read_certificates(path)[0]
    elif args.cert is not None:
        target = ca.read_certificates(args.cert)[0]
        what = f"certificate {ca.common_name(target)!r}"
    elif args.fingerprint is not None:
        digest = args.fingerprint.lower().removeprefix("sha256:").replace(":", "")
        match = [(p, c) for p, c in _certificates_under(directory) if fingerprint_sha256(c) == digest]
        if not match:
            result = deny_fingerprint(existing, args.fingerprint, source=str(crl_path))
            return _finish(crl_path, result, stdout)
        target = match[0][1]
        what = f"certificate {ca.common_name(target)!r} ({match[0][0]})"

    if target is not None:
        issuer = given if given is not None else _issuer_of(target, directory)
        try:
            target.verify_directly_issued_by(issuer.cert)
        except (InvalidSignature, ValueError, TypeError):
            raise PKIError(f"{what} was not issued by {issuer.common_name!r}", code="wrong_issuer") from None
        serial = target.serial_number
    else:
        serial = _parse_serial(args.serial)
        if given is None:
            ca_path = _leaf_issuer(directory)
            given = ca.load_issuer(ca_path, ca_path.with_suffix(".key"))[0]
        issuer = given
    result = revoke_serial(existing, issuer, serial, what=what, reason=args.reason, days=args.days,
                           source=str(crl_path))
    return _finish(crl_path, result, stdout)


def _finish(crl_path: Path, result: Revoked, stdout: TextIO) -> int:
    if not result.changed:
        print(f"{result.message}; {crl_path} unchanged", file=stdout)
        return EXIT_OK
    ca.write_file(crl_path, result.data, 0o644, force=True)
    print(f"{result.message}: wrote {crl_path}", file=stdout)
    print("routers with [p2p] crl naming a copy of this file refuse it at their next reload", file=stdout)
    return EXIT_OK


def main(argv: list[str]) -> int:
    """Entry point for ``wecross certs revoke ARGS`` (``argv`` is what follows ``revoke``)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else EXIT_USAGE
    return run(args)
