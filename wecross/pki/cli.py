"""``wecross certs``: make a CA hierarchy and router / client certificates in the layout routers expect.

The command plans every file first and writes nothing when any target already exists (unless ``--force``), so a
mistyped ``--out`` cannot half-overwrite a working PKI and leave keys that no longer match their certificates.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wecross.pki import authority as ca
from wecross.pki.authority import CertifiedKey, InvalidNameError, PKIError
from wecross.pki.serves import ServesPatternError, validate_serves_pattern

PROG = "wecross certs"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

_DESCRIPTION = """\
Create a root CA, optional intermediate CAs, and certificates for routers (router id = CN = DNS SAN) and REST
clients (user name = CN). With --ca-cert/--ca-key, issue new router/client certificates from an existing CA or
intermediate instead of making a new hierarchy. --serves writes the chains a router may serve into its certificate
(other routers ignore any chain it claims that its certificate does not name)."""

_EPILOG = """\
layout written under --out:
  ca.crt, ca.key                          root CA (trust anchor every router loads)
  intermediate-<k>.crt, intermediate-<k>.key
                                          k = 1 is signed by the root, k+1 by k; the last one issues leaves
  routers/<id>/cert.pem                   router certificate only
  routers/<id>/chain.pem                  router certificate then the intermediates (configure this as cert)
  routers/<id>/key.pem                    private key, mode 0600
  clients/<name>/{cert.pem,chain.pem,key.pem}   same for REST users

serves patterns (in a private certificate extension, see docs/certificates.md):
  zone.chain                              that chain
  zone.*                                  every chain of the zone
  *                                       any chain (test networks, single-organisation deployments)

revoking: wecross certs revoke NAME --dir DIR (see wecross certs revoke -h)

examples:
  wecross certs --out certs --intermediates 1 --routers router-a,router-b --clients alice \
      --serves router-a=payment.bank-a --serves router-b=evidence.court
  wecross certs --out test-certs --routers r1,r2,r3 --serves '*'
  wecross certs --out certs --ca-cert certs/intermediate-1.crt --ca-key certs/intermediate-1.key --routers router-c
"""


def _csv(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",")]
    if any(not v for v in items):
        raise argparse.ArgumentTypeError(f"empty name in list {value!r}")
    return items


#: One --serves option: (router id or None for every router, patterns).
ServesOption = tuple[str | None, tuple[str, ...]]


def _serves(value: str) -> ServesOption:
    router: str | None = None
    patterns = value
    if "=" in value:
        router, _, patterns = value.partition("=")
        try:
            ca.validate_router_id(router)
        except InvalidNameError as exc:
            raise argparse.ArgumentTypeError(f"--serves {value!r}: {exc.message}") from None
    items = []
    for item in _csv(patterns):
        try:
            items.append(validate_serves_pattern(item))
        except ServesPatternError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return router, tuple(items)


def serves_by_router(routers: Sequence[str], options: Sequence[ServesOption]) -> dict[str, tuple[str, ...]]:
    """Each router's patterns: those given for every router, then its own, in order and without repeats.

    Raises PKIError when an option names a router this command does not issue (a typo would otherwise leave that
    router without the authority the operator meant to give it).
    """
    if options and not routers:
        raise PKIError("--serves applies to router certificates: give --routers too", code="usage")
    unknown = sorted({rid for rid, _ in options if rid is not None and rid not in routers})
    if unknown:
        raise PKIError(f"--serves names routers not in --routers: {', '.join(unknown)}", code="usage")
    out: dict[str, tuple[str, ...]] = {}
    for router_id in routers:
        patterns: list[str] = []
        for rid, items in options:
            if rid is None or rid == router_id:
                patterns.extend(p for p in items if p not in patterns)
        out[router_id] = tuple(patterns)
    return out


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be 1 or more")
    return n


def _non_negative(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be 0 or more")
    return n


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory to write into")
    parser.add_argument(
        "--intermediates", type=_non_negative, default=0, metavar="N",
        help="number of intermediate CAs between the root and the leaves (default 0)",
    )
    parser.add_argument(
        "--routers", type=_csv, default=[], metavar="ID[,ID...]",
        help="router ids: lower-case DNS names such as router-a or r1.zone-a",
    )
    parser.add_argument("--clients", type=_csv, default=[], metavar="NAME[,NAME...]", help="REST user names")
    parser.add_argument(
        "--serves", type=_serves, action="append", default=[], metavar="[ROUTER=]PATTERN[,PATTERN...]",
        help="chains a router may serve: zone.chain, zone.* or '*'; without ROUTER= for every router of this "
        "command, with it for that router only (repeatable)",
    )
    parser.add_argument("--org", default=None, metavar="NAME", help="organisation (O) in every subject")
    parser.add_argument(
        "--days", type=_positive, default=ca.DEFAULT_LEAF_DAYS, metavar="N",
        help=f"validity of router and client certificates (default {ca.DEFAULT_LEAF_DAYS})",
    )
    parser.add_argument(
        "--ca-days", type=_positive, default=ca.DEFAULT_CA_DAYS, metavar="N",
        help=f"validity of new CA certificates (default {ca.DEFAULT_CA_DAYS})",
    )
    parser.add_argument(
        "--key", choices=ca.KEY_TYPES, default="ec", help="key type: ec (P-256, default) or rsa (2048 bit)"
    )
    parser.add_argument(
        "--ca-cert", type=Path, default=None, metavar="PEM",
        help="issue from this existing CA (root or intermediate; may be a chain file, issuing CA first)",
    )
    parser.add_argument("--ca-key", type=Path, default=None, metavar="PEM", help="private key of --ca-cert")
    parser.add_argument("--force", action="store_true", help="replace existing files (keys included)")


def build_parser(subparsers: Any | None = None) -> argparse.ArgumentParser:
    """The ``certs`` parser: standalone when ``subparsers`` is None, else added to the ``wecross`` sub-commands.

    When attached to sub-commands, the parser's default ``certs_run`` is :func:`run`, so the caller can dispatch
    with ``args.certs_run(args)``.
    """
    kwargs: dict[str, Any] = {
        "description": _DESCRIPTION,
        "epilog": _EPILOG,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
    if subparsers is None:
        parser = argparse.ArgumentParser(prog=PROG, **kwargs)
    else:
        parser = subparsers.add_parser("certs", help="make CA, router and client certificates", **kwargs)
    _add_arguments(parser)
    parser.set_defaults(certs_run=run)
    return parser


@dataclass(frozen=True)
class _Planned:
    """One file to write: planned up front so existing targets are found before anything is touched."""

    path: Path
    data: bytes
    mode: int
    what: str


def _describe(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        kind = f"EC {key.curve.name}"
    elif isinstance(key, rsa.RSAPublicKey):
        kind = f"RSA-{key.key_size}"
    else:
        kind = type(key).__name__
    return f"{kind}, valid until {cert.not_valid_after_utc:%Y-%m-%d}"


def _plan_key_pair(plan: list[_Planned], base: Path, item: CertifiedKey, what: str) -> None:
    plan.append(_Planned(base.with_suffix(".crt"), ca.certs_to_pem([item.cert]), 0o644, f"{what} certificate"))
    plan.append(_Planned(base.with_suffix(".key"), ca.key_to_pem(item.key), 0o600, f"{what} private key"))


def _plan_leaf(plan: list[_Planned], directory: Path, item: CertifiedKey, what: str) -> None:
    plan.append(_Planned(directory / "cert.pem", ca.certs_to_pem([item.cert]), 0o644, f"{what} certificate"))
    plan.append(
        _Planned(
            directory / "chain.pem",
            ca.certs_to_pem(item.full_chain),
            0o644,
            f"{what} chain ({1 + len(item.chain)} certificates, leaf first)",
        )
    )
    plan.append(_Planned(directory / "key.pem", ca.key_to_pem(item.key), 0o600, f"{what} private key"))


def _duplicates(names: Sequence[str]) -> list[str]:
    return sorted(name for name, count in Counter(names).items() if count > 1)


def run_reporting(prog: str, body: Callable[[argparse.Namespace, TextIO], int], args: argparse.Namespace,
                  out: TextIO | None = None) -> int:
    """Carry out one of the certificate commands (``body``); its errors are printed as one line naming ``prog``,
    never as a traceback."""
    stdout = out if out is not None else sys.stdout
    try:
        return body(args, stdout)
    except PKIError as exc:
        print(f"{prog}: error [{exc.code}]: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{prog}: error [io]: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Carry out a parsed ``wecross certs`` command; errors are printed as one line, never as a traceback."""
    return run_reporting(PROG, _run, args, out)


def _run(args: argparse.Namespace, stdout: TextIO) -> int:
    routers: list[str] = [ca.validate_router_id(r) for r in args.routers]
    clients: list[str] = [ca.validate_user_name(c) for c in args.clients]
    for kind, names in (("router id", routers), ("client name", clients)):
        dup = _duplicates(names)
        if dup:
            raise PKIError(f"{kind} given more than once: {', '.join(dup)}", code="duplicate")
    if (args.ca_cert is None) != (args.ca_key is None):
        raise PKIError("--ca-cert and --ca-key must be given together", code="usage")

    out: Path = args.out
    plan: list[_Planned] = []
    skip_notes: list[str] = []
    if args.ca_cert is None:
        cas = ca.create_ca_chain(args.intermediates, org=args.org, days=args.ca_days, key_type=args.key)
        _plan_key_pair(plan, out / "ca", cas[0], "root CA")
        for k, inter in enumerate(cas[1:], start=1):
            _plan_key_pair(plan, out / f"intermediate-{k}", inter, f"intermediate CA {k}")
        issuer = cas[-1]
    else:
        if args.intermediates:
            raise PKIError("--intermediates makes a new hierarchy; it cannot be combined with --ca-cert", code="usage")
        if not routers and not clients:
            raise PKIError("nothing to issue: give --routers and/or --clients with --ca-cert", code="usage")
        issuer, root = ca.load_issuer(args.ca_cert, args.ca_key)
        if root is None:
            skip_notes.append(f"root CA not found near {args.ca_cert}: {out / 'ca.crt'} not written")
        else:
            ca_path = out / "ca.crt"
            root_pem = ca.certs_to_pem([root])
            if ca_path.exists() and ca_path.read_bytes() == root_pem:
                skip_notes.append(f"{ca_path} already holds this root CA")
            else:
                plan.append(_Planned(ca_path, root_pem, 0o644, "root CA certificate (trust anchor)"))

    serves = serves_by_router(routers, args.serves)
    for router_id in routers:
        leaf = ca.issue_router_cert(
            issuer, router_id, org=args.org, days=args.days, key_type=args.key, serves=serves[router_id]
        )
        _plan_leaf(plan, out / "routers" / router_id, leaf, f"router {router_id}")
    for name in clients:
        leaf = ca.issue_client_cert(issuer, name, org=args.org, days=args.days, key_type=args.key)
        _plan_leaf(plan, out / "clients" / name, leaf, f"client {name}")

    existing = [p.path for p in plan if p.path.exists() or p.path.is_symlink()]
    if existing and not args.force:
        listing = ", ".join(str(p) for p in existing)
        raise ca.FileExistsRefusedError(f"refusing to overwrite existing files (use --force): {listing}")

    for item in plan:
        ca.write_file(item.path, item.data, item.mode, args.force)
    issued_by = ca.common_name(issuer.cert)
    for item in plan:
        print(f"wrote {item.path}  ({item.what}, mode {item.mode:o})", file=stdout)
    for note in skip_notes:
        print(f"note: {note}", file=stdout)
    for router_id in routers:
        if serves[router_id]:
            print(f"router {router_id} may serve: {', '.join(serves[router_id])}", file=stdout)
        else:
            print(f"note: router {router_id} may serve no chain (no --serves for it): other routers will ignore "
                  "every chain it claims", file=stdout)
    if routers or clients:
        print(f"issued by {issued_by!r} ({_describe(issuer.cert)})", file=stdout)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``wecross certs ARGS``: ``argv`` is what follows ``certs`` (``sys.argv[1:]`` when None).

    ``wecross certs revoke ...`` is its own command (wecross.pki.revoke): it signs with an existing CA and writes
    the revocation list, and shares none of the issuing options.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["revoke"]:
        from wecross.pki.revoke import main as revoke_main

        return revoke_main(argv[1:])
    parser = build_parser(None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports usage errors and --help by exiting; turn that into a status
        code = exc.code
        return code if isinstance(code, int) else EXIT_USAGE
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
