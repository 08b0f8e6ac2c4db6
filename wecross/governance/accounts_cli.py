"""``wecross accounts``: list, create and remove users' chain accounts in a router's keystore, with no router running.

Examples::

    wecross accounts list --data-dir data/router-a
    wecross accounts list --data-dir data/router-a --user alice --json
    WECROSS_KEYSTORE_KEY=... wecross accounts create --data-dir data/router-a --user alice --chain payment.eth
    wecross accounts remove --data-dir data/router-a --user alice --chain payment.eth
    wecross accounts rotate-kek --data-dir data/router-a --key-file old.kek --new-key-file new.kek

The KEK comes from ``--key-file`` or the environment variable ``WECROSS_KEYSTORE_KEY`` (as for the router), never
from the command line, where other users of the machine could read it in the process list. Nothing here prints a
private key or a KEK: a listing shows users, chains and addresses (``test_keystore.Cli``). ``list`` and ``remove``
need no KEK. ``create`` makes an EVM key: it does not know which chains are embedded (an embedded chain's account
is the user's name, nothing to create), so give it the chain of an EVM stub.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from wecross.governance.keystore import KEK_ENV, Keystore, KeystoreError, load_kek


def add_subcommand(subparsers: Any) -> None:
    accounts = subparsers.add_parser("accounts", help="users' chain accounts in a router's keystore")
    actions = accounts.add_subparsers(dest="action", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--data-dir", required=True, help="the router's data_dir (holds keystore.sqlite)")
        parser.add_argument("--key-file", help=f"file holding the key-encryption key (default: ${KEK_ENV})")

    listing = actions.add_parser("list", help="users, chains and addresses (no keys)")
    common(listing)
    listing.add_argument("--user")
    listing.add_argument("--chain", help="only this chain (zone.chain)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    create = actions.add_parser("create", help="create a user's key on an EVM chain (kept if it exists)")
    common(create)
    create.add_argument("--user", required=True)
    create.add_argument("--chain", required=True, help="zone.chain of an EVM stub")
    remove = actions.add_parser("remove", help="forget a user's key on a chain (what it holds becomes unreachable)")
    common(remove)
    remove.add_argument("--user", required=True)
    remove.add_argument("--chain", required=True)
    rotate = actions.add_parser("rotate-kek", help="re-seal every key under a new key-encryption key")
    common(rotate)
    rotate.add_argument("--new-key-file", required=True, help="file holding the new key-encryption key")
    accounts.set_defaults(func=run)


def _open(args: argparse.Namespace, *, need_kek: bool) -> Keystore:
    kek = load_kek(Path(args.key_file) if args.key_file else None)
    if kek is None and need_kek:
        raise KeystoreError("unavailable", f"no key-encryption key: give --key-file or set {KEK_ENV}")
    path = Path(args.data_dir)
    if not need_kek and not (path / "keystore.sqlite").exists():
        raise KeystoreError("not_found", f"{path} holds no keystore (keystore.sqlite)")
    return Keystore.in_data_dir(path, kek)


def _when(created: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created))


def _list(args: argparse.Namespace) -> int:
    keystore = _open(args, need_kek=False)
    try:
        found = [a for a in keystore.list(args.user) if args.chain is None or a.chain == args.chain]
    finally:
        keystore.close()
    if args.json:
        for account in found:
            print(json.dumps(account.to_json(), sort_keys=True))
        return 0
    if not found:
        print("no accounts")
        return 0
    print(f"{'user':<24} {'chain':<28} {'address':<42}  created (UTC)")
    for account in found:
        print(f"{account.user:<24} {account.chain:<28} {account.address:<42}  {_when(account.created)}")
    return 0


def _create(args: argparse.Namespace) -> int:
    keystore = _open(args, need_kek=True)
    try:
        before = {(a.user, a.chain) for a in keystore.list(args.user)}
        account = keystore.create(args.user, args.chain)
    finally:
        keystore.close()
    existed = (account.user, account.chain) in before
    print(f"{'exists' if existed else 'created'}: {account.user} on {account.chain}: {account.address}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    keystore = _open(args, need_kek=False)
    try:
        removed = keystore.remove(args.user, args.chain)
    finally:
        keystore.close()
    if removed is None:
        print(f"error: {args.user} has no account on {args.chain}", file=sys.stderr)
        return 1
    print(f"removed: {removed.user} on {removed.chain}: {removed.address} (whatever it holds is now out of reach)")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    new = load_kek(Path(args.new_key_file))
    assert new is not None  # load_kek with a file returns a KEK or raises
    keystore = _open(args, need_kek=True)
    try:
        count = keystore.rotate_kek(new)
    finally:
        keystore.close()
    print(f"re-sealed {count} keys under the key-encryption key from {args.new_key_file}; "
          "the router needs the new one from now on")
    return 0


_ACTIONS = {"list": _list, "create": _create, "remove": _remove, "rotate-kek": _rotate}


def run(args: argparse.Namespace) -> int:
    """Exit status 0, or 1 with one line on stderr (a keystore error names the cause and, for a missing KEK, how to
    set one)."""
    try:
        return _ACTIONS[args.action](args)
    except KeystoreError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """``python -m wecross.governance.accounts_cli ...`` (the same as ``wecross accounts ...``)."""
    parser = argparse.ArgumentParser(prog="wecross")
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["accounts", *(sys.argv[1:] if argv is None else argv)])
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
