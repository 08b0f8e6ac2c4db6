"""``wecross tx`` and ``wecross htlc``: the transaction layer from a shell, over a router's REST API.

Examples::

    wecross tx start --resource payment.bank-a.asset --resource payment.bank-b.asset
    wecross tx exec TX_ID payment.bank-a.asset transfer '["bob", 10]'
    wecross tx commit TX_ID
    wecross tx list --state committing
    wecross htlc start --own payment.bank-a.asset:bob:10 --other payment.bank-b.asset:bob:5 --timelock 600
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_ROUTER = "http://127.0.0.1:8250"


def _request(router: str, method: str, path: str, body: Any = None) -> Any:
    url = router.rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["data"]
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read() or b"{}").get("error", {})
        except ValueError:
            error = {}
        raise SystemExit(f"error: {error.get('code', exc.code)}: {error.get('message', exc.reason)}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(f"error: cannot reach {url}: {getattr(exc, 'reason', exc)}") from None


def _show(data: Any, as_json: bool) -> None:
    if as_json or not isinstance(data, dict):
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    if "transactions" in data or "htlcs" in data:
        rows = data.get("transactions", data.get("htlcs", []))
        for row in rows:
            ident = row.get("tx_id") or row.get("htlc_id")
            print(f"{ident:<52} {row['state']:<13} {row.get('steps', row.get('role', ''))}")
        print(f"({len(rows)} shown)")
        return
    ident = data.get("tx_id") or data.get("htlc_id")
    print(f"{ident}: {data.get('state')}")
    for step in data.get("steps", []):
        print(f"  step {step['number']}: {step['ipath']} {step['method']}{json.dumps(step['args'])} "
              f"-> {step['state']} {json.dumps(step.get('output')) if step.get('output') is not None else ''}")
    for ipath, outcome in data.get("outcomes", {}).items():
        print(f"  {ipath}: {json.dumps(outcome)}")
    for note in data.get("heuristic", []):
        print(f"  HEURISTIC {note['ipath']}: {note['code']}: {note['message']}")
    if data.get("hash_lock"):
        print(f"  hash lock {data['hash_lock']}; own {data['own']}; other {data['other']}")


def _leg(text: str, party: str) -> dict[str, Any]:
    """``path:account:amount``."""
    try:
        path, account, amount = text.rsplit(":", 2)
        return {"path": path, party: account, "amount": int(amount)}
    except ValueError:
        raise SystemExit(f"error: expected zone.chain.resource:account:amount, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    router = args.router
    if args.command == "tx":
        action = args.action
        if action == "start":
            data = _request(router, "POST", "/tx/start", {"resources": args.resource or [],
                                                           **({"timeout": args.timeout} if args.timeout else {})})
        elif action == "exec":
            try:
                step_args = json.loads(args.args)
            except ValueError:
                raise SystemExit("error: step arguments must be a JSON list, e.g. '[\"bob\", 10]'") from None
            data = _request(router, "POST", f"/tx/{args.id}/exec", {"path": args.path, "method": args.method,
                                                                     "args": step_args})
        elif action in ("commit", "rollback"):
            data = _request(router, "POST", f"/tx/{args.id}/{action}", {})
        elif action == "get":
            data = _request(router, "GET", f"/tx/{args.id}")
        else:
            query = f"?state={urllib.parse.quote(args.state)}" if args.state else ""
            data = _request(router, "GET", f"/tx{query}")
    else:
        action = args.action
        if action == "start":
            body: dict[str, Any] = {"role": args.role, "own": _leg(args.own, "receiver"),
                                    "other": _leg(args.other, "sender"), "timelock": args.timelock}
            if args.margin is not None:
                body["margin"] = args.margin
            if args.role == "participant":
                if not args.htlc_id or not args.hash_lock:
                    raise SystemExit("error: a participant needs --htlc-id and --hash-lock from the initiator")
                body.update(htlc_id=args.htlc_id, hash_lock=args.hash_lock)
            data = _request(router, "POST", "/htlc/start", body)
        elif action in ("unlock", "refund"):
            data = _request(router, "POST", f"/htlc/{args.id}/{action}", {})
        elif action == "get":
            data = _request(router, "GET", f"/htlc/{args.id}")
        else:
            query = f"?state={urllib.parse.quote(args.state)}" if args.state else ""
            data = _request(router, "GET", f"/htlc{query}")
    _show(data, args.json)
    return 0


def add_parsers(sub: Any) -> None:
    tx = sub.add_parser("tx", help="two-phase-commit transactions (start, exec, commit, rollback, get, list)")
    tx.add_argument("--router", default=DEFAULT_ROUTER, help="the coordinating router's REST base URL")
    tx.add_argument("--json", action="store_true", help="print the raw JSON")
    actions = tx.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", help="start a transaction")
    start.add_argument("--resource", action="append", help="an iPath that may take part (repeat; none: any)")
    start.add_argument("--timeout", type=float, help="seconds before an uncommitted transaction is rolled back")
    run_step = actions.add_parser("exec", help="run one step inside a transaction")
    run_step.add_argument("id")
    run_step.add_argument("path", help="zone.chain.resource")
    run_step.add_argument("method")
    run_step.add_argument("args", nargs="?", default="[]", help="JSON list of arguments")
    for name in ("commit", "rollback", "get"):
        actions.add_parser(name, help=f"{name} a transaction").add_argument("id")
    listing = actions.add_parser("list", help="list transactions")
    listing.add_argument("--state")
    tx.set_defaults(func=run)

    htlc = sub.add_parser("htlc", help="hash time-locked exchanges (start, unlock, refund, get, list)")
    htlc.add_argument("--router", default=DEFAULT_ROUTER, help="your router's REST base URL")
    htlc.add_argument("--json", action="store_true", help="print the raw JSON")
    hactions = htlc.add_subparsers(dest="action", required=True)
    hstart = hactions.add_parser("start", help="lock your side of an exchange")
    hstart.add_argument("--role", choices=("initiator", "participant"), default="initiator")
    hstart.add_argument("--own", required=True, help="your lock: zone.chain.resource:receiver:amount")
    hstart.add_argument("--other", required=True, help="the other lock: zone.chain.resource:sender:amount")
    hstart.add_argument("--timelock", type=float, default=600.0, help="seconds your lock lasts")
    hstart.add_argument("--margin", type=float)
    hstart.add_argument("--htlc-id")
    hstart.add_argument("--hash-lock")
    for name in ("unlock", "refund", "get"):
        hactions.add_parser(name, help=f"{name} an exchange").add_argument("id")
    hlisting = hactions.add_parser("list", help="list exchanges")
    hlisting.add_argument("--state")
    htlc.set_defaults(func=run)

