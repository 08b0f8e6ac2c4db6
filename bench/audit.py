"""What the audit trail costs: reactor-thread CPU per record, and durable appends per second to the SQLite store.

Usage: ``.venv/bin/python bench/audit.py [--records N]``.

Two figures matter for a router: the CPU its reactor thread spends per audited request (the budget is < 20 µs, so
that every request can be recorded), and how many records per second reach the disk durably. Both are measured for
a burst of 1 (one request per reactor turn: every record pays a group commit of its own) and of 100 (a busy router:
one commit for many), with ``synchronous`` FULL and NORMAL, with and without sealing to an EC regulator key.
"the call" is the reactor-thread CPU of ``append()`` (a Deferred per record, fired with the record) or ``record()``
(what a router calls per request: no Deferred) alone; "whole" adds the per-commit work that also runs on the
reactor thread (scheduling, the thread hand-off, firing the Deferreds); "all threads" adds the store's thread
(chaining, hashing, SQLite), which is what the CPU goal of bench/governance.py counts. The machine is a noisy
shared VM: compare figures from one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import defer, task

from wecross.governance.audit import AuditChain, Sealer
from wecross.governance.audit_store import AuditStore


def fields(i: int) -> dict[str, Any]:
    return {"initiator": "alice", "org": "bank-a", "entry_router": "router-a", "ipath": "payment.bank-a.asset",
            "interface": "sendTransaction", "method": "transfer", "args": ["bob", i], "outcome": "ok",
            "tx_hash": "0x" + "ab" * 32, "block": i, "path": ("router-a", "router-b")}


def core(records: int) -> None:
    for sealer in (None, Sealer(ec.generate_private_key(ec.SECP256R1()).public_key())):
        chain = AuditChain("router-a", sealer=sealer)
        start = time.thread_time()
        for i in range(records):
            chain.append(time=1.0, **fields(i))
        per = (time.thread_time() - start) / records * 1e6
        print(f"core AuditChain.append, sealed={sealer is not None}: {per:.1f} us CPU/record")


@defer.inlineCallbacks
def store(reactor: Any, records: int) -> Any:
    for sync in ("FULL", "NORMAL"):
        for sealed in (False, True):
            sealer = Sealer(ec.generate_private_key(ec.SECP256R1()).public_key()) if sealed else None
            audit = AuditStore(Path(tempfile.mkdtemp()) / "audit.sqlite", reactor, "router-a", sealer=sealer,
                               synchronous=sync)
            audit.open()
            for burst, how in ((1, "append"), (100, "append"), (100, "record")):
                n = records // 10 if burst == 1 else records
                call_cpu = 0.0
                wall, cpu, process = time.perf_counter(), time.thread_time(), time.process_time()
                for first in range(0, n, burst):
                    before = time.thread_time()
                    if how == "append":
                        waiting = [audit.append(**fields(i)) for i in range(first, first + burst)]
                    else:
                        for i in range(first, first + burst):
                            audit.record(**fields(i))
                        waiting = [audit.sync()]
                    call_cpu += time.thread_time() - before
                    yield defer.gatherResults(waiting)
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                process = time.process_time() - process
                print(f"store synchronous={sync} sealed={sealed} burst={burst} {how}(): {n / wall:,.0f} durable "
                      f"appends/s; reactor CPU/record: the call {call_cpu / n * 1e6:.1f} us, whole "
                      f"{cpu / n * 1e6:.1f} us; all threads {process / n * 1e6:.1f} us")
            yield audit.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    core(args.records)
    task.react(lambda reactor: store(reactor, args.records))


if __name__ == "__main__":
    main()
