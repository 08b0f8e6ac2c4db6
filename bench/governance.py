"""What permissions and the audit trail cost per forwarded request, against the same requests with both off.

Two real routers in this process on 127.0.0.1 with mutual TLS (``tests.support.Network``): router-a, the entry,
and router-b, which serves the embedded chain ``z.ledger``. Two modes, interleaved round by round so that load from
elsewhere on the machine hits them alike:

- ``off``: no ACL (open mode) and no audit trail on either router: the baseline;
- ``on``: a realistic rule set of 50 rules (10 zones x 5 rules: an organisation's writes, its reads, one user's
  reads, a deny on a vault resource, admins) on both routers, checked at the entry and at the owner, and the audit
  trail appending a record at both for every request (SQLite, synchronous=FULL, group commit).

Requests are forwarded ``call balanceOf`` reads of the asset by a user of the allowed organisation, 32 in flight;
the figure is the process CPU time (both routers, this process) per request, and the ratio on/off. Goal (issue 13):
under 10 % more CPU per forwarded request with both on.

Run from the repository root: ``.venv/bin/python bench/governance.py`` (about 30 s; ``--quick``: a few seconds).
Prints a table and writes ``bench/results/governance.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, task  # noqa: E402

from bench._common import RESULTS, machine_info, write_results  # noqa: E402
from tests import support  # noqa: E402
from wecross.facade import Invocation  # noqa: E402
from wecross.governance.acl import parse_acl_bytes  # noqa: E402
from wecross.governance.audit_store import COMMIT_INTERVAL, AuditStore  # noqa: E402
from wecross.governance.identity import Identity  # noqa: E402
from wecross.ipath import IPath  # noqa: E402

ROUTERS = {"router-a": {"zones": ["z"]}, "router-b": {"zones": ["z"], "chain": "ledger"}}


def fifty_rules() -> bytes:
    """10 zones (the chain's own among them) x 5 rules, default deny."""
    zones = ["z", *(f"zone{i}" for i in range(1, 10))]
    lines = ['[acl_settings]\ndefault = "deny"\n\n[roles]\nadmin = ["user:root"]\n']
    for zone in zones:
        lines.append(f'''
[[acl]]
name = "{zone}-org-writes"
who = "org:Org-{zone}"
resources = ["{zone}.*"]
interfaces = ["write"]
effect = "allow"

[[acl]]
name = "{zone}-org-reads"
who = "org:Org-{zone}"
resources = ["{zone}.*"]
interfaces = ["read"]
effect = "allow"

[[acl]]
name = "{zone}-auditor-reads"
who = "user:auditor-{zone}"
resources = ["{zone}.*"]
interfaces = ["read"]
effect = "allow"

[[acl]]
name = "{zone}-vault"
who = "*"
resources = ["{zone}.*.vault"]
interfaces = ["*"]
effect = "deny"

[[acl]]
name = "{zone}-admins"
who = "role:admin"
resources = ["{zone}.*"]
interfaces = ["*"]
effect = "allow"
''')
    return "".join(lines).encode()


@defer.inlineCallbacks
def measure(args: argparse.Namespace) -> Any:
    from twisted.internet import reactor

    work = Path(tempfile.mkdtemp(prefix="wecross-bench-governance-"))
    net = support.Network(work, ROUTERS, [("router-a", "router-b")])
    yield net.start()
    stores: list[AuditStore] = []
    try:
        yield support.until(lambda: net.linked() and net.nodes["router-a"].router.table.route("z.ledger") is not None,
                            timeout=30)
        routers = [net.nodes[rid].router for rid in ("router-a", "router-b")]
        entry = routers[0]
        policy = parse_acl_bytes(fifty_rules(), "bench-acl")
        assert len(policy.rules) == 50
        for router in routers:
            # The nodes run with their own audit trail already; start from none, and use one store per router.
            router.audit = None
            store = AuditStore(work / f"{router.local_id}-bench-audit.sqlite", reactor, router.local_id,
                               synchronous=args.synchronous, commit_interval=args.commit_interval)
            store.open()
            stores.append(store)
        user = Identity("carol", "Org-z", frozenset({"user"}), "tls")
        call = Invocation(IPath.parse("z.ledger.asset"), "call", "balanceOf", ["alice"], "carol", identity=user)

        def mode(name: str) -> None:
            for router, store in zip(routers, stores, strict=True):
                router.governance.policy = policy if name in ("on", "acl") else None
                router.audit = store.record if name in ("on", "audit") else None

        mode("on")
        result = yield entry.invoke(call)  # warms the proof memo, the header chain, the pairwise keys
        assert result["verified"]["proof"], result
        mode("off")
        yield entry.invoke(call)

        modes = ["off", "on", *(["acl", "audit"] if args.split else [])]
        cpu: dict[str, list[float]] = {name: [] for name in modes}
        reactor_cpu: dict[str, list[float]] = {name: [] for name in modes}
        for round_ in range(args.rounds):
            for name in (modes if round_ % 2 == 0 else modes[::-1]):
                mode(name)
                started, reactor_started = time.process_time(), time.thread_time()
                for _ in range(args.requests // args.concurrency):
                    yield defer.gatherResults([entry.invoke(call) for _ in range(args.concurrency)],
                                              consumeErrors=True)
                # Every record of the round durable before the clock stops (their writes count in this round).
                yield defer.gatherResults([store.sync() for store in stores])
                cpu[name].append((time.process_time() - started) / args.requests * 1e6)
                reactor_cpu[name].append((time.thread_time() - reactor_started) / args.requests * 1e6)
        mode("off")
        for store in stores:
            yield store.close()
        written = sum(store.head()[0] for store in stores)
        commits = sum(store.flushes for store in stores)
    finally:
        yield net.stop()
    medians = {name: statistics.median(values) for name, values in cpu.items()}
    reactor_medians = {name: statistics.median(values) for name, values in reactor_cpu.items()}
    ratio = medians["on"] / medians["off"]
    print(f"{'mode':<6} {'CPU us/request (both routers)':>30} {'of which reactor thread':>24} {'rounds':>7}")
    for name in modes:
        print(f"{name:<6} {medians[name]:>30.1f} {reactor_medians[name]:>24.1f} {len(cpu[name]):>7}")
    print(f"audit records written: {written} in {commits} commits ({written / max(1, commits):.1f} per commit)")
    print(f"on / off: {ratio:.3f} (goal: 50 rules and the audit trail cost < 10 % more CPU: "
          f"{'met' if ratio < 1.10 else 'MISSED'})")
    write_results(RESULTS / "governance.json", {
        "machine": machine_info(), "rounds": args.rounds, "requests_per_round": args.requests,
        "concurrency": args.concurrency, "cpu_us_per_request": medians,
        "reactor_thread_cpu_us_per_request": reactor_medians, "ratio": ratio,
        "goal": {"ratio_below": 1.10, "met": ratio < 1.10}, "samples_us": cpu, "audit_records": written,
    })
    print(f"wrote {RESULTS / 'governance.json'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--split", action="store_true",
                        help="also measure the rules alone (acl) and the audit trail alone (audit)")
    parser.add_argument("--commit-interval", type=float, default=COMMIT_INTERVAL,
                        help="the audit store's commit_interval (seconds between commits while busy)")
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL",
                        help="the audit store's SQLite synchronous setting (FULL: the routers' default)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests = 4, 512
    task.react(lambda _reactor: measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
