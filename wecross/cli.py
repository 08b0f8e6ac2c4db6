"""The ``wecross`` command: tools around the router daemon (which itself runs under ``twistd wecross``)."""

from __future__ import annotations

import argparse
import sys

import wecross


def _check_config(args: argparse.Namespace) -> int:
    from wecross.config import ConfigError, load_settings

    status = 0
    for path in args.files:
        try:
            settings = load_settings(path, check_files=not args.no_files)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        acl = settings.governance.acl_file
        permissions = "open mode (no ACL file)"
        if acl is not None and (acl.exists() or not args.no_files):
            from wecross.governance.reload import PolicyFile

            try:  # what the daemon reads at start: the same parser, every mistake with its key
                policy = PolicyFile(acl.read_bytes, str(acl), 0.0).policy
            except ConfigError as exc:  # AclError is one
                print(f"error: {exc}", file=sys.stderr)
                status = 1
                continue
            permissions = f"{len(policy.rules)} ACL rules, default {policy.default}"
        chains = ", ".join(f"{s.zone}.{s.name} ({s.type})" for s in settings.stubs) or "none"
        print(f"{path}: ok: router {settings.router_id}, zones {list(settings.zones)}, "
              f"{len(settings.peers)} peers, chains: {chains}; {permissions}")
    return status


def _configs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from wecross.config import ConfigError
    from wecross.topology import certificate_problems, certs_command, load_topology, write_configs

    try:
        topology = load_topology(args.topology)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in write_configs(topology, Path(args.out), Path(args.data) if args.data else None):
        print(f"wrote {path}")
    problems = certificate_problems(topology)
    for problem in problems:
        print(f"warning: certificate of {problem}", file=sys.stderr)
    if problems:
        print(f"issue fitting certificates with: {certs_command(topology)}", file=sys.stderr)
    print(f"start each router with: twistd -n wecross --config {Path(args.out) / '<router-id>.toml'}")
    return 0


def _get_json(url: str) -> object:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())["data"]
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        raise SystemExit(f"error: {url}: {body.get('error', {}).get('message', exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(f"error: cannot reach {url}: {getattr(exc, 'reason', exc)}") from None


def _routes(args: argparse.Namespace) -> int:
    import json

    data = _get_json(args.router.rstrip("/") + "/routes")
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    assert isinstance(data, dict)
    print(f"routes of {data['router_id']} ({data['rebuilds']} rebuilds, {data['changes']} route changes)")
    print(f"{'chain / router':<28} {'next hop':<14} {'cost':>9}  path")
    for row in data["routes"]:
        name = row.get("chain") or row.get("destination")
        if row.get("kind") == "chain" and not row.get("reachable", True):
            print(f"{name:<28} {'-':<14} {'-':>9}  unreachable (replicas: {', '.join(row['replicas'])})")
            continue
        print(f"{name:<28} {row['next_hop']:<14} {row['cost']:>9.3f}  {' -> '.join(row['path'])}")
    return 0


def _certs(argv: list[str]) -> int:
    from wecross.pki.cli import main as certs_main

    return certs_main(argv)


def _demo(args: argparse.Namespace) -> int:
    from wecross.demo import main as demo_main

    return demo_main(keep=args.keep, workdir=args.workdir)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["certs"]:
        return _certs(argv[1:])
    parser = argparse.ArgumentParser(prog="wecross", description="WeCross-Py cross-chain router tools. "
                                     "Run a router with: twistd -n wecross --config FILE")
    parser.add_argument("--version", action="version", version=f"wecross-py {wecross.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate router config files")
    check.add_argument("files", nargs="+")
    check.add_argument("--no-files", action="store_true", help="do not check that certificate files exist")
    check.set_defaults(func=_check_config)
    sub.add_parser("certs", help="make a CA, intermediates, router and client certificates (see wecross certs -h)")
    configs = sub.add_parser("configs", help="write one router config per router of a topology file")
    configs.add_argument("--topology", required=True, help="e.g. conf/topologies/two-zones-two-borders.toml")
    configs.add_argument("--out", required=True, help="directory for the router configs")
    configs.add_argument("--data", help="data directory root (default: OUT/data)")
    configs.set_defaults(func=_configs)
    routes = sub.add_parser("routes", help="show a router's routing table (GET /routes)")
    routes.add_argument("--router", default="http://127.0.0.1:8250", help="the router's REST base URL")
    routes.add_argument("--json", action="store_true", help="print the raw JSON")
    routes.set_defaults(func=_routes)
    demo = sub.add_parser("demo", help="start two routers in two zones and call across them")
    demo.add_argument("--workdir", default="data/demo", help="where certs, configs and chain data go")
    demo.add_argument("--keep", action="store_true", help="leave the routers running until Ctrl-C")
    demo.set_defaults(func=_demo)
    from wecross.console import add_parser as add_console_parser
    from wecross.governance.accounts_cli import add_subcommand as add_accounts_parser
    from wecross.governance.audit_cli import add_subcommand as add_audit_parser
    from wecross.sim.cli import add_parser as add_sim_parser
    from wecross.tx.cli import add_parsers as add_tx_parsers

    add_console_parser(sub)
    add_sim_parser(sub)
    add_tx_parsers(sub)
    add_audit_parser(sub)
    add_accounts_parser(sub)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
