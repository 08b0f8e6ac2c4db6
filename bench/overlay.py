"""What each router hop adds to a request's latency, and how long reads stall when the border router in use fails.

**Per-hop latency.** A line of six routers, router-a .. router-f, one zone, each serving its own embedded chain, so
the chain of the k-th router is k hops from router-a (k = 0 is router-a's own chain, the baseline). From router-a, a
closed loop (one request at a time) sends the read-only ``call balanceOf(alice)`` to each distance, several thousand
times, in interleaved rounds (the order of the distances rotates from round to round, so a burst of load from
elsewhere on this shared machine hits every distance). The per-hop cost is the least-squares slope of p50 against
hops, and also p50(k) - p50(k-1). It is measured twice:

- ``in_process``: the six routers in this process on one reactor (``tests.support.Network``), driven through
  ``router.invoke``. Every hop's work runs on one thread, one after the other, so this is the CPU cost per hop.
- ``processes``: six ``twistd -n wecross`` daemons, one reactor each, driven through router-a's REST API by a
  keep-alive HTTP client in this process. This is the realistic figure, and the one the goal (<= 0.5 ms per hop at
  p50) is judged on. Each run also records every router's CPU time, and (not with ``--quick``) the 5-hop call is
  repeated with 1, 4 and 16 requests in flight, which shows how much of a relay's CPU per request is the price of
  waking up for each message.

**Failover.** The two-zone, two-border topology of ``tests/test_overlay.py`` (heartbeat 0.2 s, dead after 3 missed
intervals), in this process. router-a sends a read every 5 ms to ``zb.ledger`` (on router-f). The border on the
path then fails, in one of three ways:

- ``silent``: a crash without FIN. The border neither reads nor writes on its links and never closes them; its
  neighbours must notice the missing heartbeats.
- ``paused``: ``pauseProducing`` on every link transport and nothing else (as in tests/test_overlay.py). The border
  stops reading but still writes, so its neighbours keep hearing its heartbeats; the border itself declares its
  neighbours dead and closes the links.
- ``killed``: a clean stop: BYE and closed connections.

The figure is the time from the failure to the first request answered over the other border; alongside it, when
each router noticed, when its link went down, when routes were rebuilt, and the worst latency of a request caught
in the failover. Goal for ``silent``: <= dead_after x heartbeat + 100 ms = 700 ms. The failed border is restarted
after each trial and the next trial fails whichever border then carries the traffic, once its links have filled
their loss window (as in a network that has run for a while) and after a random part of a heartbeat interval.

Run from the repository root: ``.venv/bin/python bench/overlay.py`` (about 2.5 minutes; ``--quick``: about 40 s).
Prints tables and writes ``bench/results/overlay.json``. docs/benchmarks.md explains every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, reactor  # noqa: E402
from twisted.internet.task import LoopingCall, deferLater  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

from bench._common import (  # noqa: E402
    RESULTS,
    BenchError,
    ProcessGroup,
    get_json,
    machine_busy_seconds,
    machine_info,
    proc_times,
    write_results,
)
from bench._overlay_net import (  # noqa: E402
    BALANCE,
    CALL_ARGS,
    CALL_BODY,
    CALL_METHOD,
    LINE,
    LINE_IDS,
    LINE_LINKS,
    RESOURCE,
    BorderFailure,
    DaemonLine,
    KeepAliveClient,
    Probes,
    call_path,
    check_answer,
    go_silent,
    line_chain,
    pause_reads,
    require,
    rotate,
)
from tests import support  # noqa: E402
from tests.test_overlay import CHAIN as FAILOVER_CHAIN  # noqa: E402
from tests.test_overlay import LINKS as FAILOVER_LINKS  # noqa: E402
from tests.test_overlay import ROUTERS as FAILOVER_ROUTERS  # noqa: E402
from wecross.facade import Invocation  # noqa: E402
from wecross.ipath import IPath  # noqa: E402

GOAL_PER_HOP_P50_MS = 0.5
HEARTBEAT_S, DEAD_AFTER = 0.2, 3  # what tests.support.router_settings gives every router
GOAL_SILENT_FAILOVER_MS = round(DEAD_AFTER * HEARTBEAT_S * 1000 + 100)
DISTANCES = tuple(range(len(LINE_IDS)))
MODES = ("silent", "paused", "killed")
SEND_EVERY_S = 0.005
#: Heartbeats a link's loss figure is measured over (wecross.peer.link._LOSS_WINDOW).
LOSS_WINDOW = 32
BORDERS = ("router-c", "router-d")
#: Who sits next to the borders in the failover topology (a2 on the za side, b1 on the zb side).
ZA_SIDE, ZB_SIDE = "router-b", "router-e"


# --------------------------------------------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on an already sorted list."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys against xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else math.nan


def latency_summary(samples_ns: list[int]) -> dict[str, Any]:
    ms = sorted(s / 1e6 for s in samples_ns)
    return {"requests": len(ms), "p50_ms": percentile(ms, 0.50), "p90_ms": percentile(ms, 0.90),
            "p99_ms": percentile(ms, 0.99), "p999_ms": percentile(ms, 0.999), "max_ms": ms[-1] if ms else math.nan,
            "mean_ms": statistics.fmean(ms) if ms else math.nan}


def summarise_hops(runs: list[dict[str, Any]], samples: dict[int, list[int]]) -> dict[str, Any]:
    """Per distance: p50/p99 over every sample, per-round p50s; per hop: slopes over all samples and per round."""
    rows = []
    for hops in DISTANCES:
        row = {"hops": hops, "chain": line_chain(hops), **latency_summary(samples[hops])}
        row["round_p50_ms"] = [r["p50_ms"] for r in runs if r["hops"] == hops]
        cpu = [r["cpu_us_per_request"] for r in runs if r["hops"] == hops and r.get("cpu_us_per_request") is not None]
        row["cpu_us_per_request"] = statistics.median(cpu) if cpu else None
        rows.append(row)
    p50 = [row["p50_ms"] for row in rows]
    for i, row in enumerate(rows):
        row["delta_p50_ms"] = None if i == 0 else p50[i] - p50[i - 1]
    rounds = sorted({r["round"] for r in runs})
    per_round = []
    for rnd in rounds:
        by_hops = {r["hops"]: r["p50_ms"] for r in runs if r["round"] == rnd}
        if len(by_hops) == len(DISTANCES):
            per_round.append(slope(list(DISTANCES), [by_hops[h] for h in DISTANCES]))
    summary: dict[str, Any] = {
        "distances": rows,
        "per_hop_p50_slope_ms": slope(list(DISTANCES), p50),
        "per_hop_p50_slope_relays_ms": slope(list(DISTANCES[1:]), p50[1:]),
        "per_hop_p99_slope_ms": slope(list(DISTANCES), [row["p99_ms"] for row in rows]),
        "per_hop_p50_slope_by_round_ms": per_round,
    }
    cpu_rows = [row["cpu_us_per_request"] for row in rows]
    if all(c is not None for c in cpu_rows):
        summary["per_hop_cpu_slope_us"] = slope(list(DISTANCES), cpu_rows)
    relays = [cpu for r in runs if r["hops"] == DISTANCES[-1]
              for rid, cpu in r.get("cpu_us_per_request_by_router", {}).items() if rid in LINE_IDS[1:-1]]
    if relays:
        # Routers b..e at the longest distance only relay: what one relay costs per request, on the CPU.
        summary["relay_cpu_us_per_request"] = statistics.median(relays)
    return summary


# --------------------------------------------------------------------------------------------------- per hop: daemons


def measure_daemons(work: Path, certs: Path, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """The line as six twistd processes, measured through router-a's REST API; no reactor runs in this process."""
    with ProcessGroup() as procs:
        line = DaemonLine(work / "processes", procs)
        line.work.mkdir()
        log(f"processes: starting {len(LINE_IDS)} twistd routers in {line.work}")
        line.start(certs)
        client = KeepAliveClient(line.rest["router-a"])
        pids = {rid: procs.pid(rid) for rid in LINE_IDS}
        try:
            for hops in DISTANCES:  # every path answers correctly, and is warm
                for _ in range(args.warmup):
                    problem = check_answer(*client.post(call_path(hops), CALL_BODY), hops)
                    require(problem is None, f"processes: a call {hops} hops away answered wrongly: {problem}")
            log(f"processes: every distance answers; {args.rounds} rounds x {args.requests} requests per distance")
            runs: list[dict[str, Any]] = []
            samples: dict[int, list[int]] = {h: [] for h in DISTANCES}
            errors = 0
            for rnd in range(args.rounds):
                for hops in rotate(DISTANCES, rnd):
                    path = call_path(hops)
                    lat: list[int] = []
                    answers: list[tuple[int, bytes]] = []
                    before = {rid: proc_times(pid) for rid, pid in pids.items()}
                    me_before, busy_before = proc_times(os.getpid()), machine_busy_seconds()
                    wall = time.perf_counter()
                    for _ in range(args.requests):
                        t = time.perf_counter_ns()
                        answer = client.post(path, CALL_BODY)
                        lat.append(time.perf_counter_ns() - t)
                        answers.append(answer)
                    wall = time.perf_counter() - wall
                    after = {rid: proc_times(pid) for rid, pid in pids.items()}
                    me = proc_times(os.getpid()) - me_before
                    cpu = {rid: (after[rid] - before[rid]).cpu_s for rid in pids}
                    ours = sum(cpu.values()) + me.cpu_s
                    errors += sum(1 for a in answers if check_answer(*a, hops) is not None)
                    samples[hops].extend(lat)
                    runs.append({"round": rnd, "hops": hops, **latency_summary(lat),
                                 "cpu_us_per_request": sum(cpu.values()) / len(lat) * 1e6,
                                 "cpu_us_per_request_by_router": {r: c / len(lat) * 1e6 for r, c in cpu.items()},
                                 "client_cpu_us_per_request": me.cpu_s / len(lat) * 1e6,
                                 "other_load_cores": max(0.0, (machine_busy_seconds() - busy_before - ours) / wall)})
                log(f"processes: round {rnd + 1}/{args.rounds}: p50 "
                    + " ".join(f"{r['hops']}:{r['p50_ms']:.3f}" for r in sorted(runs[-len(DISTANCES):],
                                                                                 key=lambda r: r["hops"])))
            require(errors == 0, f"processes: {errors} answers were wrong")
            concurrency = [] if args.quick else relay_cpu_under_load(line, pids, log)
            status = {rid: get_json(line.url(rid) + "/status") for rid in LINE_IDS}
            procs.check_alive()
        finally:
            client.close()
    summary = summarise_hops(runs, samples)
    summary["noise_other_load_cores"] = statistics.median(r["other_load_cores"] for r in runs)
    summary["client_cpu_us_per_request"] = statistics.median(r["client_cpu_us_per_request"] for r in runs)
    summary["relay_cpu_by_concurrency"] = concurrency
    return {**summary, "runs": runs, "router_status": status}


def relay_cpu_under_load(line: DaemonLine, pids: dict[str, int], log: Callable[[str], None]) -> list[dict[str, Any]]:
    """The same 5-hop call with 1, 4 and 16 requests in flight (bench/_loadgen.py, a process of its own): how a
    relay's CPU per request changes when it no longer sleeps between requests."""
    rows = []
    url = line.url("router-a") + call_path(DISTANCES[-1])
    for connections in (1, 4, 16):
        before = {rid: proc_times(pid) for rid, pid in pids.items()}
        out = subprocess.run([sys.executable, str(ROOT / "bench" / "_loadgen.py"), "--url", url, "--body",
                              CALL_BODY.decode(), "--connections", str(connections), "--duration", "2"],
                             capture_output=True, text=True, timeout=60)
        after = {rid: proc_times(pid) for rid, pid in pids.items()}
        require(out.returncode == 0, f"processes: the load generator failed: {out.stderr[-500:]}")
        load = json.loads(out.stdout)
        n = max(1, int(load.get("requests", 0)))
        require(sum(load.get("errors", {}).values()) == 0, f"processes: errors under load: {load.get('errors')}")
        cpu = {rid: (after[rid] - before[rid]).cpu_s / n * 1e6 for rid in pids}
        rows.append({"connections": connections, "requests": n, "requests_per_s": load.get("requests_per_s"),
                     "p50_ms": load.get("latency_us", {}).get("p50", math.nan) / 1000,
                     "cpu_us_per_request_by_router": cpu,
                     "relay_cpu_us_per_request": statistics.median(cpu[rid] for rid in LINE_IDS[1:-1])})
        log(f"processes: 5 hops with {connections:>2} in flight: {load.get('requests_per_s', 0):.0f} requests/s, "
            f"a relay spends {rows[-1]['relay_cpu_us_per_request']:.0f} us of CPU per request")
    return rows


# --------------------------------------------------------------------------------------------------- in the reactor


def sleep(seconds: float) -> defer.Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


def until(what: str, predicate: Callable[[], bool], timeout: float) -> defer.Deferred[None]:
    d = support.until(predicate, timeout=timeout)

    def failed(failure: Failure) -> Failure:
        if failure.check(AssertionError):
            return Failure(BenchError(f"timed out after {timeout:.0f} s waiting for {what}"))
        return failure

    return d.addErrback(failed)


def invocation(chain: str) -> Invocation:
    return Invocation(IPath.parse(f"{chain}.{RESOURCE}"), "call", CALL_METHOD, list(CALL_ARGS))


class Running:
    """The in-process networks that are up, so that a Ctrl-C (reactor shutdown) still stops every router."""

    def __init__(self) -> None:
        self.nets: list[support.Network] = []

    def stop_all(self) -> defer.Deferred[Any]:
        nets, self.nets = self.nets, []
        return defer.gatherResults([net.stop() for net in nets], consumeErrors=True)


async def measure_in_process(work: Path, args: argparse.Namespace, running: Running,
                             log: Callable[[str], None]) -> dict[str, Any]:
    net = support.Network(work / "in-process-line", LINE, LINE_LINKS)
    net.workdir.mkdir()
    running.nets.append(net)
    try:
        log("in-process: starting the line of 6 routers on this process's reactor")
        await net.start()
        routers = net.nodes

        def all_routed() -> bool:
            table = routers["router-a"].router.table
            return net.linked() and all(
                (route := table.route(line_chain(h))) is not None and len(route.path) == h + 1
                for h in DISTANCES[1:])

        await until("router-a to route to every chain of the line", all_routed, 30)
        entry = routers["router-a"].router
        calls = {h: invocation(line_chain(h)) for h in DISTANCES}
        for hops in DISTANCES:
            for _ in range(args.warmup):
                got = await entry.invoke(calls[hops])
                require(got["output"] == BALANCE and len(got["path"]) == hops + 1,
                        f"in-process: a call {hops} hops away answered {got}")
        log(f"in-process: every distance answers; {args.rounds} rounds x {args.requests} requests per distance")
        runs: list[dict[str, Any]] = []
        samples: dict[int, list[int]] = {h: [] for h in DISTANCES}
        for rnd in range(args.rounds):
            for hops in rotate(DISTANCES, rnd):
                call = calls[hops]
                lat: list[int] = []
                me_before, busy_before = proc_times(os.getpid()), machine_busy_seconds()
                wall = time.perf_counter()
                for _ in range(args.requests):
                    t = time.perf_counter_ns()
                    await entry.invoke(call)
                    lat.append(time.perf_counter_ns() - t)
                wall = time.perf_counter() - wall
                me = proc_times(os.getpid()) - me_before
                samples[hops].extend(lat)
                runs.append({"round": rnd, "hops": hops, **latency_summary(lat),
                             "cpu_us_per_request": me.cpu_s / len(lat) * 1e6,
                             "other_load_cores": max(0.0, (machine_busy_seconds() - busy_before - me.cpu_s) / wall)})
            log(f"in-process: round {rnd + 1}/{args.rounds}: p50 "
                + " ".join(f"{r['hops']}:{r['p50_ms']:.3f}" for r in sorted(runs[-len(DISTANCES):],
                                                                             key=lambda r: r["hops"])))
        outcomes = {rid: dict(node.router.outcomes) for rid, node in routers.items()}
    finally:
        running.nets.remove(net)
        await net.stop()
    summary = summarise_hops(runs, samples)
    summary["noise_other_load_cores"] = statistics.median(r["other_load_cores"] for r in runs)
    return {**summary, "runs": runs, "router_outcomes": outcomes}


class Traffic:
    """A read from router-a every SEND_EVERY_S, open loop: each request is recorded as
    [sent, answered, path, error code, this process's CPU seconds when answered] (perf_counter and process_time)."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.call = invocation(FAILOVER_CHAIN)
        self.records: list[list[Any]] = []
        self.loop = LoopingCall(self.fire)

    def fire(self) -> None:
        record: list[Any] = [time.perf_counter(), None, None, None, None]
        self.records.append(record)

        def ok(result: dict[str, Any]) -> None:
            record[1], record[2], record[4] = time.perf_counter(), tuple(result["path"]), time.process_time()

        def failed(failure: Failure) -> None:
            record[1], record[3] = time.perf_counter(), getattr(failure.value, "code", repr(failure.value))

        self.node.router.invoke(self.call).addCallbacks(ok, failed)

    def start(self) -> None:
        self.loop.start(SEND_EVERY_S)

    def stop(self) -> None:
        if self.loop.running:
            self.loop.stop()

    def pending(self) -> int:
        return sum(1 for r in self.records if r[1] is None)


async def converged(net: support.Network) -> None:
    """Every link up, every router in every directory, router-a routing to the chain and to both borders."""
    def ready() -> bool:
        a = net.nodes.get("router-a")
        return (len(net.nodes) == len(FAILOVER_ROUTERS) and net.linked() and a is not None
                and all(len(n.router.directory) == len(FAILOVER_ROUTERS) for n in net.nodes.values())
                and a.router.table.route(FAILOVER_CHAIN) is not None
                and all(a.router.table.next_hop(b) is not None for b in BORDERS))

    await until("the two-zone network to converge", ready, 30)


async def failover_trial(net: support.Network, mode: str, trial: int, rng: random.Random,
                         log: Callable[[str], None]) -> dict[str, Any]:
    traffic = Traffic(net.nodes["router-a"])
    traffic.start()
    try:
        await sleep(0.4)
        steady = [r for r in traffic.records if r[1] is not None]
        require(bool(steady) and all(r[2] for r in steady),
                f"failover: reads failed before the trial: {[r[3] for r in steady if not r[2]][:5]}")
        border = steady[-1][2][2]
        require(border in BORDERS, f"failover: unexpected path {steady[-1][2]}")
        other = BORDERS[1 - BORDERS.index(border)]
        node = net.nodes[border]
        # Links that have lived long enough to fill their loss window, as in a network that has run for a while:
        # on a younger link a couple of missed heartbeats already look like heavy loss, and the route moves on that
        # before the link is declared dead (which would make the figure depend on when the border last restarted).
        border_links = [*node.peers.links.values(), *(net.nodes[s].peers.links[border] for s in (ZA_SIDE, ZB_SIDE))]
        aged_from = time.perf_counter()
        await until(f"the links of {border} to fill their loss window",
                    lambda: all(link.health.pings_sent > LOSS_WINDOW for link in border_links), 30)
        aged_wait = time.perf_counter() - aged_from
        # That wait ends just after some link's heartbeat; the failure must not keep a fixed phase to a2's
        # heartbeats, whose next tick after the silence decides when it is noticed.
        phase = rng.uniform(0.0, HEARTBEAT_S)
        await sleep(phase)
        probes = Probes()
        for side in (ZA_SIDE, ZB_SIDE):
            probes.watch_link(net.nodes[side].peers.links[border], side)
            probes.watch_router(net.nodes[side], side)
        for link in node.peers.links.values():
            probes.watch_link(link, border)
        probes.watch_router(node, border)
        probes.wrap(net.nodes[other].router, "handle_request", other, "handle_request",
                    lambda link, request: f"from {link.peer_id}")
        probes.watch_routes(net.nodes["router-a"], "router-a", FAILOVER_CHAIN)
        probes.watch_routes(net.nodes[ZA_SIDE], ZA_SIDE, FAILOVER_CHAIN)
        failure: BorderFailure | None = None
        stopping: defer.Deferred[Any] | None = None
        t0, cpu0 = time.perf_counter(), time.process_time()
        if mode == "silent":
            failure = go_silent(node)
        elif mode == "paused":
            failure = pause_reads(node)
        else:
            stopping = net.stop(border)

        def first_other() -> list[Any] | None:
            done = [r for r in traffic.records if r[1] is not None and r[1] >= t0 and r[2] and other in r[2]]
            return min(done, key=lambda r: r[1]) if done else None

        deadline = t0 + 10
        while first_other() is None and time.perf_counter() < deadline:
            await sleep(0.002)
        await sleep(0.8)  # requests caught at the failed border finish (or fail) meanwhile
        traffic.stop()
        while traffic.pending() and time.perf_counter() < deadline + 5:
            await sleep(0.01)
    finally:
        traffic.stop()
    probes.undo()
    found = first_other()
    require(found is not None, f"failover ({mode}): no read was answered over {other} within 10 s")
    assert found is not None

    def ms(at: float | None) -> float | None:
        return None if at is None else (at - t0) * 1000

    def event_ms(router: str, prefix: str) -> float | None:
        event = probes.first(router, prefix, t0)
        return ms(event.at) if event else None

    first_at_other = probes.first(other, "handle_request", t0)
    after = [r for r in traffic.records if r[0] >= t0 - 0.05]
    caught = [r for r in traffic.records if r[0] < found[1] and (r[1] or 0) >= t0]
    a_moved = next((e for e in probes.events if e.router == "router-a" and e.what == "rebuilt routes"
                    and e.at >= t0 and border not in e.detail.split(" -> ")), None)
    # Silent: a2 must notice (nothing reaches the border's other side either). Paused and killed: the border
    # itself closes its links, one per heartbeat tick when paused; whichever link closes first starts the failover.
    detector = ZA_SIDE if mode == "silent" else border
    detect = probes.first(detector, f"closes link to {border}" if mode == "silent" else "closes link to", t0)
    result = {
        "trial": trial, "mode": mode, "border": border, "other": other,
        "waited_for_link_age_s": aged_wait,
        "phase_s": phase,
        "reached_other_border_ms": event_ms(other, "handle_request"),
        "first_answer_via_other_ms": ms(found[1]),
        "that_request_sent_ms": ms(found[0]),
        "detected_by": detector if detect else None,
        "detected_ms": ms(detect.at) if detect else None,
        "detected_detail": detect.detail if detect else None,
        f"{ZA_SIDE}_link_down_ms": event_ms(ZA_SIDE, "link down"),
        f"{ZB_SIDE}_link_down_ms": event_ms(ZB_SIDE, "link down"),
        f"{ZB_SIDE}_detected_ms": event_ms(ZB_SIDE, f"closes link to {border}"),
        f"{ZA_SIDE}_republished_ms": event_ms(ZA_SIDE, "publishes"),
        "router_a_route_moved_ms": ms(a_moved.at) if a_moved else None,
        # Every router runs on this one thread: a share near 1 means the wait was for the CPU (work of all six
        # routers queued on one reactor), not for a timer or the network.
        "cpu_busy_share_until_first_answer": (found[4] - cpu0) / (found[1] - t0),
        "caught_requests": len(caught),
        "worst_latency_ms": max(((r[1] - r[0]) * 1000 for r in after if r[1] is not None), default=None),
        "failed_requests": sum(1 for r in after if r[3] is not None),
        "errors": sorted({r[3] for r in after if r[3] is not None}),
        "events": [{"ms": round((e.at - t0) * 1000, 2), "router": e.router, "what": e.what, "detail": e.detail}
                   for e in probes.events if e.at >= t0 and (e.what != "handle_request" or e is first_at_other)],
    }
    log(f"failover: trial {trial + 1} {mode:<6} {border} -> {other}: first answer via {other} after "
        f"{result['first_answer_via_other_ms']:.0f} ms (detected {_fmt(result['detected_ms'])} ms by "
        f"{result['detected_by']}; worst request {_fmt(result['worst_latency_ms'])} ms)")
    # Bring the border back; the next trial fails whichever border then carries the traffic.
    if failure is not None:
        failure.finish()
        await net.stop(border)
    elif stopping is not None:
        await stopping
    await net.start(border)
    await converged(net)
    return result


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


async def measure_failover(work: Path, args: argparse.Namespace, running: Running,
                           log: Callable[[str], None]) -> dict[str, Any]:
    net = support.Network(work / "failover", FAILOVER_ROUTERS, FAILOVER_LINKS)
    net.workdir.mkdir()
    running.nets.append(net)
    trials: list[dict[str, Any]] = []
    try:
        log("failover: starting the two-zone network (6 routers, two borders) on this process's reactor")
        await net.start()
        await converged(net)
        left = dict(args.trials)
        schedule: list[str] = []
        while any(left.values()):  # round robin, so every mode meets both borders and the same conditions
            for mode in MODES:
                if left[mode]:
                    schedule.append(mode)
                    left[mode] -= 1
        rng = random.Random(args.seed)
        for i, mode in enumerate(schedule):
            trials.append(await failover_trial(net, mode, i, rng, log))
    finally:
        running.nets.remove(net)
        await net.stop()
    modes: dict[str, Any] = {}
    for mode in MODES:
        rows = [t for t in trials if t["mode"] == mode]

        def stat(key: str, rows: list[dict[str, Any]] = rows) -> dict[str, float | None]:
            values = [r[key] for r in rows if r.get(key) is not None]
            return {"median": statistics.median(values) if values else None, "max": max(values, default=None),
                    "min": min(values, default=None)}

        modes[mode] = {
            "trials": len(rows), "borders": [r["border"] for r in rows],
            "first_answer_via_other_ms": stat("first_answer_via_other_ms"),
            "detected_ms": stat("detected_ms"),
            f"{ZA_SIDE}_link_down_ms": stat(f"{ZA_SIDE}_link_down_ms"),
            "reached_other_border_ms": stat("reached_other_border_ms"),
            "router_a_route_moved_ms": stat("router_a_route_moved_ms"),
            "worst_latency_ms": stat("worst_latency_ms"),
            "failed_requests": sum(r["failed_requests"] for r in rows),
        }
    return {"modes": modes, "trials": trials}


# --------------------------------------------------------------------------------------------------- report


def print_hops(name: str, summary: dict[str, Any]) -> None:
    print(f"\nPer-hop latency, {name} (closed loop, one request at a time), ms")
    print(f"{'hops':>4} {'chain':<14} {'requests':>8} {'p50':>8} {'p99':>8} {'p99.9':>8} {'dp50':>8} "
          f"{'CPU us/req':>14}")
    for row in summary["distances"]:
        delta = "" if row["delta_p50_ms"] is None else f"{row['delta_p50_ms']:+.3f}"
        cpu = "" if row["cpu_us_per_request"] is None else f"{row['cpu_us_per_request']:.0f}"
        print(f"{row['hops']:>4} {row['chain']:<14} {row['requests']:>8} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} "
              f"{row['p999_ms']:>8.3f} {delta:>8} {cpu:>14}")
    by_round = summary["per_hop_p50_slope_by_round_ms"]
    print(f"per hop (least-squares slope of p50): {summary['per_hop_p50_slope_ms']:.3f} ms "
          f"(rounds: {min(by_round):.3f} .. {max(by_round):.3f}); relays only (hops 1..5): "
          f"{summary['per_hop_p50_slope_relays_ms']:.3f} ms; slope of p99: {summary['per_hop_p99_slope_ms']:.3f} ms")
    if "per_hop_cpu_slope_us" in summary:
        relay = summary.get("relay_cpu_us_per_request")
        print(f"CPU per hop (slope of the CPU all routers spend per request): {summary['per_hop_cpu_slope_us']:.0f} us"
              + ("" if relay is None else f"; one relay (router-b..e at 5 hops): {relay:.0f} us per request"))
    for row in summary.get("relay_cpu_by_concurrency", []):
        print(f"  5 hops, {row['connections']:>2} requests in flight: {row['requests_per_s']:.0f} requests/s, "
              f"p50 {row['p50_ms']:.2f} ms, one relay: {row['relay_cpu_us_per_request']:.0f} us CPU per request")
    print(f"other load on the machine meanwhile: {summary['noise_other_load_cores']:.2f} cores (median)")


def print_failover(failover: dict[str, Any]) -> None:
    print("\nFailover of the border router in use (reads every 5 ms from router-a), ms after the failure")
    print(f"{'mode':<7} {'trials':>6} {'first answer via other':>23} {'detected':>12} {'a2 link down':>13} "
          f"{'at other border':>16} {'a route moved':>14} {'worst request':>14} {'failed':>6}")
    for mode, row in failover["modes"].items():
        def pair(key: str, row: dict[str, Any] = row) -> str:
            return f"{_fmt(row[key]['median'])} / {_fmt(row[key]['max'])}"

        print(f"{mode:<7} {row['trials']:>6} {pair('first_answer_via_other_ms'):>23} {pair('detected_ms'):>12} "
              f"{pair(f'{ZA_SIDE}_link_down_ms'):>13} {pair('reached_other_border_ms'):>16} "
              f"{pair('router_a_route_moved_ms'):>14} {pair('worst_latency_ms'):>14} {row['failed_requests']:>6}")
    print("median / max over the trials. detected: silent = a2 (router-b) declares the border dead; paused = the "
          "border declares a neighbour dead; killed = the border says BYE. at other border: the first request "
          "reaches it. a route moved: router-a's own table stops using the border. worst request: the slowest read "
          "sent around the failure.")


def goals(result: dict[str, Any]) -> dict[str, Any]:
    per_hop = result["per_hop"]["processes"]["per_hop_p50_slope_ms"]
    silent = result["failover"]["modes"]["silent"]["first_answer_via_other_ms"]
    return {
        "per_hop_p50_ms (processes)": {"value": per_hop, "goal": GOAL_PER_HOP_P50_MS,
                                       "met": per_hop <= GOAL_PER_HOP_P50_MS},
        "silent failover ms (max over trials)": {"value": silent["max"], "median": silent["median"],
                                                 "goal": GOAL_SILENT_FAILOVER_MS,
                                                 "met": silent["max"] is not None
                                                 and silent["max"] <= GOAL_SILENT_FAILOVER_MS},
    }


# --------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer requests and trials: about 40 s")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per line (default 6, quick 2)")
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per distance per round (default 500, quick 200)")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured requests per distance first")
    parser.add_argument("--trials", type=int, default=None,
                        help="failover trials per mode (default 5; quick: 2 silent, 1 paused, 1 killed)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the failure phases")
    parser.add_argument("--skip-processes", action="store_true", help="no twistd line (per-hop in process only)")
    parser.add_argument("--output", type=Path, default=RESULTS / "overlay.json")
    parser.add_argument("--keep-workdir", action="store_true", help="keep configs and router logs")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 6)
    args.requests = args.requests or (150 if args.quick else 450)
    if args.trials:
        args.trials = dict.fromkeys(MODES, args.trials)
    else:
        args.trials = {"silent": 2, "paused": 1, "killed": 1} if args.quick else dict.fromkeys(MODES, 5)
    return args


def run_reactor(main: Callable[[], Coroutine[Any, Any, dict[str, Any]]], running: Running) -> dict[str, Any]:
    """Run ``main`` on the global reactor until it ends; a Ctrl-C stops the routers that are up and raises
    KeyboardInterrupt here."""
    outcome: list[Any] = []

    def go() -> None:
        d = defer.Deferred.fromCoroutine(main())
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.addSystemEventTrigger("before", "shutdown", running.stop_all)  # type: ignore[attr-defined]
    reactor.callWhenRunning(go)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if not outcome:
        raise KeyboardInterrupt("reactor stopped")
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    result: dict[str, Any] = outcome[0]
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="wecross-bench-overlay-"))
    certs = support.pki()  # routers a..h, one CA with an intermediate; made once, removed at the end
    result: dict[str, Any] = {
        "benchmark": "overlay",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "settings": {"rounds": args.rounds, "requests_per_distance_per_round": args.requests,
                     "warmup_per_distance": args.warmup, "failover_trials_per_mode": args.trials, "seed": args.seed,
                     "heartbeat_interval_s": HEARTBEAT_S, "dead_after": DEAD_AFTER, "gossip_interval_s": 0.2,
                     "rebuild_delay_s": 0.02, "send_every_s": SEND_EVERY_S, "quick": args.quick},
        "request": {"op": "call", "method": CALL_METHOD, "args": CALL_ARGS, "resource": RESOURCE},
        "goals": {"per_hop_p50_ms": GOAL_PER_HOP_P50_MS, "silent_failover_ms": GOAL_SILENT_FAILOVER_MS},
    }
    exit_code = 0
    try:
        per_hop: dict[str, Any] = {}
        if not args.skip_processes:
            per_hop["processes"] = measure_daemons(work, certs, args, log)
        running = Running()

        async def in_reactor() -> dict[str, Any]:
            line = await measure_in_process(work, args, running, log)
            failover = await measure_failover(work, args, running, log)
            return {"in_process": line, "failover": failover}

        done = run_reactor(in_reactor, running)
        per_hop["in_process"] = done["in_process"]
        result["per_hop"] = per_hop
        result["failover"] = done["failover"]
        result["total_runtime_s"] = time.monotonic() - started
        for name, title in (("processes", "six twistd processes, via router-a's REST API"),
                            ("in_process", "six routers in this process, router.invoke")):
            if name in per_hop:
                print_hops(title, per_hop[name])
        print_failover(result["failover"])
        if "processes" in per_hop:
            result["goal_results"] = goals(result)
            print("\nGoals")
            for name, goal in result["goal_results"].items():
                print(f"  {name}: {goal['value']:.3f} (goal <= {goal['goal']}): {'met' if goal['met'] else 'MISSED'}")
        write_results(args.output, result)
        print(f"\nwrote {args.output} ({result['total_runtime_s']:.0f} s in all)")
    except BenchError as exc:
        print(f"overlay.py: {exc}\n(logs in {work})", file=sys.stderr)
        args.keep_workdir = True
        exit_code = 1
    except KeyboardInterrupt:
        print("overlay.py: interrupted; every router stopped", file=sys.stderr)
        exit_code = 130
    finally:
        if not args.keep_workdir:
            shutil.rmtree(work, ignore_errors=True)
        elif exit_code == 0:
            print(f"work directory kept: {work}")
        with contextlib.suppress(OSError):
            shutil.rmtree(certs)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
