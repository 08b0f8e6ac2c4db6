"""``wecross audit``: check, read and (for the regulator) open a router's audit log file, with no router running.

Examples::

    wecross audit verify data/router-a/audit.sqlite                  # exit 1 when the chain is broken
    wecross audit verify data/router-a/audit.sqlite --head 1042:9f3c...   # also catches a cut tail
    wecross audit show data/router-a/audit.sqlite --initiator alice --limit 20
    wecross audit open --key regulator.key data/router-a/audit.sqlite 17

The file is opened read-only. What a record holds comes from clients and peers, so ``show`` escapes every
character a terminal would act on (``test_audit.CliTest.test_show_escapes_control_characters``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from wecross.governance.audit import (
    UNENCODABLE_DIGEST,
    ClippedArgs,
    PrivateKey,
    SealError,
    digest_args,
    open_sealed,
    pack_args,
)
from wecross.governance.audit_store import AuditQuery, AuditStoreError, query_file, read_record, verify_file


def add_subcommand(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="check, show or open (regulator) an audit log file")
    actions = audit.add_subparsers(dest="action", required=True)
    verify = actions.add_parser("verify", help="check the hash chain; exit 1 naming the first broken record")
    verify.add_argument("file")
    verify.add_argument("--head", help="SEQ:HASH published by the router earlier: also detects a cut tail")
    show = actions.add_parser("show", help="list records (oldest first)")
    show.add_argument("file")
    show.add_argument("--initiator")
    show.add_argument("--ipath", help="an iPath, a prefix of one (payment.bank-a) or a pattern (payment.*)")
    show.add_argument("--interface")
    show.add_argument("--outcome", help="ok or an error code")
    show.add_argument("--since", type=float, help="from this time (Unix seconds)")
    show.add_argument("--until", type=float, help="before this time (Unix seconds)")
    show.add_argument("--after", type=int, default=0, help="records after this seq (paging)")
    show.add_argument("--limit", type=int, default=100, help="at most this many records (up to 1000)")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    opener = actions.add_parser("open", help="decrypt the sealed arguments of one record (regulator's key)")
    opener.add_argument("--key", required=True, help="the regulator's private key (PEM)")
    opener.add_argument("file")
    opener.add_argument("seq", type=int)
    audit.set_defaults(func=run)


def _printable(text: str) -> str:
    """``text`` with every character a terminal might act on (escapes, controls, bidi overrides) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _head(text: str) -> tuple[int, str]:
    seq, sep, digest = text.partition(":")
    try:
        if not sep or len(digest) != 64:
            raise ValueError
        int(digest, 16)
        return int(seq), digest.lower()
    except ValueError:
        raise SystemExit(f"error: --head expects SEQ:HASH (64 hex digits), got {text!r}") from None


def _verify(args: argparse.Namespace) -> int:
    report = verify_file(Path(args.file), _head(args.head) if args.head else None)
    if report.ok:
        print(f"ok: {report.count} records, hash chain intact")
        return 0
    print(f"BROKEN at record {report.first_broken}: {report.reason} ({report.count} records check out before it)")
    return 1


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="milliseconds")


def _show(args: argparse.Namespace) -> int:
    query = AuditQuery(initiator=args.initiator, ipath=args.ipath, interface=args.interface, outcome=args.outcome,
                       since=args.since, until=args.until, after_seq=args.after, limit=args.limit)
    records = query_file(Path(args.file), query)
    for record in records:
        if args.json:
            print(json.dumps(record.to_json(), ensure_ascii=True))
            continue
        who = record.initiator + (f"@{record.org}" if record.org else "")
        chain = f" tx {record.tx_hash}" if record.tx_hash else ""
        chain += f" block {record.block}" if record.block is not None else ""
        print(_printable(f"{record.seq:>8} {_when(record.time)} {who} via {record.entry_router}: {record.interface} "
                         f"{record.ipath} {record.method} -> {record.outcome}{chain}"
                         f" [{' > '.join(record.path)}]{' sealed' if record.sealed else ''}"))
    if not args.json:
        more = f"; next page: --after {records[-1].seq}" if len(records) == min(max(args.limit, 0), 1000) else ""
        print(f"({len(records)} shown{more})")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    raise TypeError(f"{type(value).__name__} is not JSON")


def _open(args: argparse.Namespace) -> int:
    from wecross.pki.authority import PKIError, read_private_key

    try:
        key: PrivateKey = read_private_key(args.key)
    except PKIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    record = read_record(Path(args.file), args.seq)
    if record is None:
        print(f"error: {args.file} has no record {args.seq}", file=sys.stderr)
        return 2
    if record.sealed is None:
        print(f"error: record {args.seq} was not sealed (no regulator was configured then)", file=sys.stderr)
        return 2
    if record.args_digest == UNENCODABLE_DIGEST:
        print(f"record {args.seq}: its arguments could not be encoded (msgpack), so none were sealed")
        return 0
    try:
        opened = open_sealed(key, record.sealed)
    except SealError as exc:
        print(f"error: record {args.seq}: {exc}", file=sys.stderr)
        return 1
    if isinstance(opened, ClippedArgs):
        print(f"arguments too large to seal whole: {opened.size} bytes packed, first {len(opened.head)} sealed")
        print(f"msgpack head (hex): {opened.head.hex()}")
        return 0
    print(json.dumps(opened, default=_json_default, ensure_ascii=True))
    if digest_args(pack_args(opened)) != record.args_digest:
        print(f"WARNING: these arguments do not match the record's digest {record.args_digest}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "verify":
            return _verify(args)
        if args.action == "show":
            return _show(args)
        return _open(args)
    except AuditStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
