"""The 2PC fault campaign of ``tests.test_tx_campaign``, run longer and more than once: several rounds, each on fresh
routers with its own seed, each ending with the campaign's full verdict (every transaction final, both chains
agreeing with every record, totals conserved, no lock held, every heuristic outcome reported).

It prints, per round and in total, the transactions run (and how they ended in the coordinator's log and at the
clients), the kills per router, the faults injected per kind, and the heuristic outcomes; and writes them to
``bench/results/chaos.json``. A round whose verdict fails stops the run with its seed, which replays the schedule
(``--seed``), and the path of the routers' logs.

Run from the repository root: ``.venv/bin/python bench/chaos.py`` (``make chaos``; by default 3 rounds of 120 s of
faults, about 7 minutes; ``--rounds 1 --seconds 30`` for a short one).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.internet import defer  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

from bench._common import RESULTS, machine_info, write_results  # noqa: E402
from tests.test_tx_campaign import Campaign  # noqa: E402


def _add(total: dict[str, Any], figures: dict[str, Any]) -> None:
    for key in ("transactions", "steps", "heuristic"):
        total[key] = total.get(key, 0) + figures[key]
    for key in ("outcomes", "client", "faults"):
        total.setdefault(key, Counter()).update(figures[key])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=120.0, help="seconds of faults per round")
    parser.add_argument("--workers", type=int, default=6, help="concurrent clients per round")
    parser.add_argument("--seed", type=int, default=None, help="the first round's seed (then seed+1, ...)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    from twisted.internet import reactor

    rounds: list[dict[str, Any]] = []
    outcome: dict[str, Any] = {}

    @defer.inlineCallbacks
    def campaign() -> Any:
        for number in range(args.rounds):
            seed = first + number
            work = Path(tempfile.mkdtemp(prefix=f"wecross-chaos-{seed}-"))
            print(f"round {number + 1}/{args.rounds}: seed {seed}, {args.seconds:.0f} s of faults, {work}",
                  flush=True)
            run = Campaign(work, seed, chaos_seconds=args.seconds, workers=args.workers,
                           say=lambda text: print(text, flush=True))
            try:
                figures = yield run.run()
            except AssertionError as exc:
                (work / "routers.log").write_text(run.output())
                yield run.stop_all()
                raise AssertionError(f"round {number + 1}, seed {seed}: {exc}; logs: {work / 'routers.log'}") from None
            yield run.stop_all()
            print(f"  {json.dumps(figures, sort_keys=True)}", flush=True)
            rounds.append(figures)

    def finish(value: Any) -> None:
        outcome["value"] = value
        reactor.stop()

    reactor.callWhenRunning(lambda: campaign().addBoth(finish))
    reactor.run()
    if isinstance(outcome.get("value"), Failure):
        print(f"VERDICT FAILED: {outcome['value'].getErrorMessage()}")
        return 1
    total: dict[str, Any] = {}
    for figures in rounds:
        _add(total, figures)
    faults = total.get("faults", Counter())
    kinds = ("lock slow", "lock failing", "fault before", "fault after", "cut router-b", "cut router-c")
    kills = sum(v for k, v in faults.items() if k.startswith("kill "))
    injected = sum(faults[k] for k in kinds)
    kill_list = ", ".join(f"{k[5:]} {v}" for k, v in sorted(faults.items()) if k.startswith("kill "))
    fault_list = ", ".join(f"{k} {faults[k]}" for k in kinds)
    seconds = sum(figures["seconds"] for figures in rounds)
    print(f"\n{len(rounds)} rounds, {seconds:.0f} s, first seed {first}: every verdict held")
    print(f"transactions run: {total['transactions']} ({total['steps']} steps); in the log: "
          f"{dict(total['outcomes'])}; at the clients: {dict(total['client'])}")
    print(f"kills: {kills} ({kill_list})")
    print(f"faults injected: {injected} ({fault_list})")
    print(f"heuristic outcomes: {total['heuristic']}")
    write_results(RESULTS / "chaos.json", {
        "machine": machine_info(), "args": vars(args), "first_seed": first, "rounds": rounds,
        "total": {**total, "outcomes": dict(total["outcomes"]), "client": dict(total["client"]),
                  "faults": dict(faults), "kills": kills, "faults_injected": injected, "seconds": seconds},
    })
    print(f"wrote {RESULTS / 'chaos.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
