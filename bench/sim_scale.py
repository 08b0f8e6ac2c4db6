"""How the simulator scales: the real router code for 100, 1,000 and 5,000 routers in one process.

For each size and shape (``ba``: Barabási-Albert m = 2 in one zone; ``zones``: four zones joined by two border
routers per pair of neighbouring zones, BA inside), one run of ``wecross sim`` with no events: every router boots
at t = 0 (``--start-spread S``: one after another over S virtual seconds instead) and the run lasts ``--virtual``
seconds. Convergence (every router holds the newest
record of every router, and the records describe the physical links) counts from the last boot.

A staggered start is much dearer than a simultaneous one: each router that joins makes its neighbours re-sign
their records, and every new version floods the whole overlay (1,000 routers booting over 1 s: 1,059 frames per
router per gossip round, 422 s of wall time, against 34 frames and 50 s when they boot together, where the
publish hold-off folds every router's start-up into two versions). Each case runs in its own process, so that peak
memory is that case's alone.

Figures per case:

- ``rounds``: convergence time after start in gossip rounds (goal: at most 2·log2 N);
- ``wall_s``: wall time of the whole run, start-up and PKI included; ``wall_to_converge_s``: wall time from the
  start of the run until convergence (goal: 1,000 routers converge in under 60 s);
- ``peak_mb``: the process's peak resident memory (goal: under 4 GB at 1,000 routers);
- ``msgs/router/round``: frames each router sent per gossip round, averaged over the run;
- ``wall/virtual``: wall seconds per simulated second;
- ``baseline``: in the same process, before the run, ``networkx.single_source_dijkstra`` on a BA graph of the same
  size, repeated 20 times: a machine-speed yardstick (these machines are shared) — ``wall/baseline`` is the figure to
  compare across machines.

Run from the repository root: ``.venv/bin/python bench/sim_scale.py`` (several minutes; ``--sizes 100,1000`` to
choose; ``--quick``: 100 and 300 only). Prints a table and writes ``bench/results/sim_scale.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import RESULTS, machine_info, write_results  # noqa: E402


def one_case(shape: str, n: int, seed: int, virtual: float, spread: float) -> dict[str, Any]:
    """Runs inside the child process."""
    import networkx as nx

    from wecross.sim import topologies
    from wecross.sim.runner import Run, RunOptions
    from wecross.sim.scenario import default_scenario

    graph = nx.barabasi_albert_graph(n, 2, seed=seed)
    t0 = time.perf_counter()
    for _ in range(20):
        nx.single_source_dijkstra(graph, 0)
    baseline = time.perf_counter() - t0
    wall0 = time.perf_counter()
    if shape == "ba":
        topology = topologies.generate("ba", n, seed=seed)
    else:
        topology = topologies.generate("ba", n, zones=4, seed=seed)
    scenario = default_scenario(topology, virtual)
    with tempfile.TemporaryDirectory(prefix="wecross-simbench-") as workdir:
        options = RunOptions(seed=seed, route_sample=20, start_spread=spread)
        result = Run(topology, scenario, Path(workdir), options).execute()
    wall = time.perf_counter() - wall0
    start = result["convergence"][0]
    return {
        "shape": shape, "n": len(topology.routers), "links": len(topology.links),
        "converged": start["converged_at_s"] is not None, "rounds": start["rounds"],
        "goal_rounds": round(2 * math.log2(len(topology.routers)), 2),
        "virtual_s": virtual, "start_spread_s": spread, "wall_s": round(wall, 2),
        "wall_to_converge_s": start.get("wall_s"), "wall_per_virtual": round(wall / virtual, 3),
        "peak_mb": result["run"]["peak_memory_mb"],
        "msgs_per_router_per_round": result["load"]["messages_per_router_per_round"],
        "bytes_per_router_per_s": result["load"]["bytes_per_router_per_s"]["mean"],
        "stretch_mean": result["routes"]["stretch_mean"], "agreement": result["routes"]["agreement"],
        "baseline_s": round(baseline, 4), "wall_per_baseline": round(wall / baseline, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--shapes", default="ba,zones")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--virtual", type=float, default=6.0, help="virtual seconds per run")
    parser.add_argument("--start-spread", type=float, default=0.0,
                        help="routers boot one after another over this many virtual seconds (default: together)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        shape, n = args.child.split(":")
        print(json.dumps(one_case(shape, int(n), args.seed, args.virtual, args.start_spread)))
        return 0
    sizes = [100, 300] if args.quick else [int(s) for s in args.sizes.split(",")]
    rows = []
    header = (f"{'shape':<6} {'N':>6} {'links':>6} {'rounds':>7} {'goal':>6} {'wall s':>8} {'wall/virt':>9} "
              f"{'peak MB':>8} {'msgs/rtr/rnd':>12} {'stretch':>7} {'wall/base':>9}")
    print(header)
    for n in sizes:
        for shape in args.shapes.split(","):
            proc = subprocess.run([sys.executable, __file__, "--child", f"{shape}:{n}", "--seed", str(args.seed),
                                   "--virtual", str(args.virtual), "--start-spread", str(args.start_spread)],
                                  capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                print(f"{shape:<6} {n:>6}  failed: {proc.stderr.strip().splitlines()[-1:]}")
                rows.append({"shape": shape, "n": n, "error": proc.stderr[-2000:]})
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            rounds = "-" if row["rounds"] is None else f"{row['rounds']:.2f}"
            print(f"{shape:<6} {row['n']:>6} {row['links']:>6} {rounds:>7} {row['goal_rounds']:>6} "
                  f"{row['wall_s']:>8.1f} {row['wall_per_virtual']:>9.2f} {row['peak_mb']:>8.0f} "
                  f"{row['msgs_per_router_per_round']:>12.1f} {row['stretch_mean'] or 0:>7.3f} "
                  f"{row['wall_per_baseline']:>9.1f}", flush=True)
    # Cases of earlier runs with other sizes stay (5,000 routers take a while; run them on their own).
    path = RESULTS / "sim_scale.json"
    kept: list[dict[str, Any]] = []
    if path.exists():
        done = {(row["shape"], row["n"]) for row in rows}
        with contextlib.suppress(ValueError, KeyError):
            kept = [row for row in json.loads(path.read_text())["cases"] if (row["shape"], row["n"]) not in done]
    cases = sorted(kept + rows, key=lambda row: (row["n"], row["shape"]))
    write_results(path, {"machine": machine_info(), "seed": args.seed, "virtual_s": args.virtual, "cases": cases})
    print(f"wrote {RESULTS / 'sim_scale.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
