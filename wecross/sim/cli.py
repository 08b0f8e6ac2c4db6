"""``wecross sim``: run one simulation from the command line and write its result, table and plots."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from wecross.config import ConfigError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser(
        "sim", help="simulate a router network (real router code, virtual clock, in-memory links)",
        description="Run the real router code for a whole topology in one process on a virtual clock. "
                    "Give a topology file (--topology) or a generator (--generate KIND --n N [--zones Z]).")
    where = sim.add_mutually_exclusive_group(required=True)
    where.add_argument("--topology", help="topology file: .toml (as conf/topologies/), .json or .graphml")
    where.add_argument("--generate", metavar="KIND",
                       help="generate a topology: line, ring, star, tree, grid, geometric, ba, multizone")
    sim.add_argument("--n", type=int, default=100, help="routers for --generate (default 100)")
    sim.add_argument("--zones", type=int, default=1, help="zones for --generate (default 1)")
    sim.add_argument("--chains", type=int, default=None, help="routers serving an embedded chain (--generate)")
    sim.add_argument("--latency-ms", type=float, default=None, help="one-way link latency (--generate)")
    sim.add_argument("--latency-spread", type=float, default=None,
                     help="links' latencies drawn in latency*(1±spread) (--generate)")
    sim.add_argument("--scenario", help="scenario file (conf/scenarios/); default: start and watch")
    sim.add_argument("--duration", type=float, default=None, help="virtual seconds without a scenario (default 30)")
    sim.add_argument("--seed", type=int, default=0, help="one seed drives every random draw (default 0)")
    sim.add_argument("--out", help="directory for result.json and the plots (default: a new temporary one)")
    sim.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    sim.add_argument("--sample", type=float, default=0.05, help="virtual seconds between convergence samples")
    sim.add_argument("--route-sample", type=int, default=100, help="routers whose routes are checked at the end")
    sim.add_argument("--heartbeat", type=float, default=1.0, help="heartbeat interval, s")
    sim.add_argument("--dead-after", type=int, default=3, help="missed heartbeats before a link is dead")
    sim.add_argument("--gossip-interval", type=float, default=1.0, help="gossip round, s")
    sim.add_argument("--fanout", type=int, default=3, help="peers per gossip round")
    sim.add_argument("--hop-limit", type=int, default=16, help="routers a request may cross")
    sim.add_argument("--start-spread", type=float, default=0.0,
                     help="routers boot one after another over this many virtual seconds (default: all at once)")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wecross.sim import topologies
    from wecross.sim.report import Progress, summary_table
    from wecross.sim.runner import Run, RunOptions
    from wecross.sim.scenario import default_scenario, load_scenario

    try:
        if args.topology:
            topology = topologies.load(args.topology)
        else:
            options = {"chains": args.chains, "latency_ms": args.latency_ms, "latency_spread": args.latency_spread}
            topology = topologies.generate(args.generate, args.n, zones=args.zones, seed=args.seed, **options)
        if args.scenario:
            scenario = load_scenario(args.scenario, topology, seed=args.seed)
        else:
            scenario = default_scenario(topology, args.duration or 30.0)
        options_ = RunOptions(seed=args.seed, sample=args.sample, route_sample=args.route_sample,
                              heartbeat_interval=args.heartbeat, dead_after=args.dead_after,
                              gossip_interval=args.gossip_interval, gossip_fanout=args.fanout,
                              hop_limit=args.hop_limit, start_spread=args.start_spread)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="wecross-sim-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"simulating {topology.name}: {len(topology.routers)} routers, {len(topology.links)} links, "
          f"scenario {scenario.name} ({scenario.duration:g} s virtual), seed {args.seed}", file=sys.stderr)
    progress = Progress(scenario.duration + scenario.settle, enabled=None if not args.quiet else False)
    with tempfile.TemporaryDirectory(prefix="wecross-sim-data-") as workdir:
        result = Run(topology, scenario, Path(workdir), options_, progress=progress).execute()
    (out / "result.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(summary_table(result))
    written = [out / "result.json"]
    if not args.no_plots:
        from wecross.sim.plots import write_plots

        written += write_plots(result, topology, out)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
