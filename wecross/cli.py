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
        chains = ", ".join(f"{s.zone}.{s.name} ({s.type})" for s in settings.stubs) or "none"
        print(f"{path}: ok: router {settings.router_id}, zones {list(settings.zones)}, "
              f"{len(settings.peers)} peers, chains: {chains}")
    return status


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
    demo = sub.add_parser("demo", help="start two routers in two zones and call across them")
    demo.add_argument("--workdir", default="data/demo", help="where certs, configs and chain data go")
    demo.add_argument("--keep", action="store_true", help="leave the routers running until Ctrl-C")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
