"""What forwarding a REST call through one router-to-router link costs, against two baselines measured in the same run.

Three cases, all the same ``POST /payment/bank-a/hello/call {"method": "get", "args": ["k"]}`` answered by the same
owner router (router-b, embedded chain, served from memory):

- ``direct``: sent to the owner's REST port.
- ``one_hop``: sent to router-a's REST port; router-a forwards it over its mutual-TLS link (wire protocol) to the
  owner and relays the answer back.
- ``relay_floor``: sent to the owner's REST port, but through a bare TLS relay pair (``bench/relay.py``) that only
  copies bytes over a mutual-TLS connection made with the same kind of certificates. This is the floor: what any
  design that crosses a TLS link between two processes pays at least.

Every router is a real ``twistd -n wecross --config FILE`` process and the relay is a process of its own, so the load
generator (``wrk`` when installed, else ``bench/_loadgen.py`` in its own process) shares a reactor with none of
them. The machine is a shared, noisy 2-core VM: cases are interleaved round by round, every figure is the median
over rounds, and the headline figures are differences and ratios against ``direct`` from the same run.

Figures: latency p50/p99 at 1 connection (closed loop, low load), requests/s at ``--connections`` (16); the added
latency ``one_hop_p50 - direct_p50`` (goal <= 0.5 ms); that added latency over the relay's own
``relay_p50 - direct_p50`` (goal <= 3x); one_hop throughput (goal >= 5,000 requests/s through one router process).
When a goal is missed the run says so, then profiles both routers during a one_hop load (py-spy for where the CPU
time goes, step by step, when it can attach; cProfile via ``bench/_hooks`` for exact calls per request) and prints
the result. docs/benchmarks.md explains every figure.

Run from the repository root: ``.venv/bin/python bench/forward.py`` (about 2 minutes; ``--quick``: about 30 s).
Prints a table and writes ``bench/results/forward.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    BENCH,
    RESULTS,
    BenchError,
    ProcessGroup,
    free_port,
    get_json,
    machine_busy_seconds,
    machine_info,
    make_pki,
    post_json,
    proc_times,
    router_toml,
    wait_for,
    write_results,
)

CASES = ("direct", "one_hop", "relay_floor")
ZONE, CHAIN, RESOURCE = "payment", "bank-a", "hello"
CALL_PATH = f"/{ZONE}/{CHAIN}/{RESOURCE}/call"
CALL_BODY = {"method": "get", "args": ["k"]}
SEED_VALUE = "value-of-k"

GOAL_ADDED_P50_MS = 0.5
GOAL_RATIO_TO_RELAY = 3.0
GOAL_ONE_HOP_RPS = 5000.0

#: Which processes do the serving work in each case: their CPU time per request is recorded for every run.
SERVERS = {"direct": ("router-b",), "one_hop": ("router-a", "router-b"), "relay_floor": ("relay", "router-b")}


# --------------------------------------------------------------------------------------------------- load


@dataclass
class LoadResult:
    requests: int
    duration_s: float
    requests_per_s: float
    errors: dict[str, int]
    latency_us: dict[str, float]
    client_cpu_s: float
    raw: str = ""


class LoadGenerator:
    """``wrk`` with a small Lua script (exact percentiles from its ``done`` hook, next to its ``--latency`` table),
    or the Python fallback; both run in a process of their own and report the same fields."""

    def __init__(self, kind: str, work: Path) -> None:
        self.kind = kind
        self.body = json.dumps(CALL_BODY)
        self.script = work / "post.lua"
        self.script.write_text(_WRK_LUA.replace("@BODY@", self.body.replace("\\", "\\\\").replace('"', '\\"')))

    def run(self, url: str, connections: int, duration: float) -> LoadResult:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        if self.kind == "wrk":
            seconds = max(1, round(duration))
            argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency",
                    "-s", str(self.script), url]
        else:
            argv = [sys.executable, str(BENCH / "_loadgen.py"), "--url", url, "--body", self.body,
                    "--connections", str(connections), "--duration", str(duration)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise BenchError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        if self.kind == "wrk":
            match = re.search(r"^WRKJSON (.*)$", done.stdout, re.MULTILINE)
            if match is None:
                raise BenchError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
            data = json.loads(match.group(1))
            duration_s = data["duration_us"] / 1e6
            return LoadResult(
                requests=data["requests"], duration_s=duration_s,
                requests_per_s=data["requests"] / duration_s if duration_s > 0 else 0.0,
                errors=data["errors"], latency_us={k: float(v) for k, v in data["latency_us"].items()},
                client_cpu_s=cpu, raw=done.stdout,
            )
        data = json.loads(done.stdout.strip().splitlines()[-1])
        return LoadResult(requests=data["requests"], duration_s=data["duration_s"],
                          requests_per_s=data["requests_per_s"], errors=data["errors"],
                          latency_us=data["latency_us"], client_cpu_s=cpu)


_WRK_LUA = """-- Written by bench/forward.py: one JSON POST per request, and a machine-readable summary at the end.
wrk.method = "POST"
wrk.body = "@BODY@"
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %f, "stdev": %f}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, latency.stdev))
end
"""


# --------------------------------------------------------------------------------------------------- the network


@dataclass
class Network:
    work: Path
    procs: ProcessGroup
    urls: dict[str, str] = field(default_factory=dict)
    rest: dict[str, str] = field(default_factory=dict)
    profile_dir: Path | None = None


def start_network(work: Path, procs: ProcessGroup, *, relay_nodelay: bool, cprofile: bool,
                  routers_nodelay: bool = False, audit: bool = True) -> Network:
    """PKI, two router daemons (router-a dials router-b) and the relay; returns once every path answers correctly."""
    certs = make_pki(work / "certs", ["router-a", "router-b", "relay-in", "relay-out"])
    ports = {rid: (free_port(), free_port()) for rid in ("router-a", "router-b")}
    # Without the audit trail (--no-audit): what forwarding and end-to-end checks cost apart from it (issue 11's
    # goal predates the trail; docs/benchmarks.md gives both).
    extra = "" if audit else "\n[audit]\nenabled = false\n"
    (work / "router-b.toml").write_text(router_toml(
        "router-b", zone=ZONE, chain=CHAIN, p2p_port=ports["router-b"][0], rest_port=ports["router-b"][1],
        certs=certs, data_dir=work / "data" / "router-b") + extra)
    (work / "router-a.toml").write_text(router_toml(
        "router-a", zone=ZONE, chain=None, p2p_port=ports["router-a"][0], rest_port=ports["router-a"][1],
        certs=certs, data_dir=work / "data" / "router-a", peers=[("router-b", ports["router-b"][0])]) + extra)
    net = Network(work, procs)
    env: dict[str, str] = {}
    if cprofile:
        # Inert until signalled (see bench/_hooks/sitecustomize.py): the routers run unchanged until profiled.
        net.profile_dir = work / "cprofile"
        net.profile_dir.mkdir()
        env["WECROSS_BENCH_CPROFILE"] = str(net.profile_dir)
    if routers_nodelay:
        env["WECROSS_BENCH_NODELAY"] = "1"
    if env:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH / "_hooks"), os.environ.get("PYTHONPATH")]))
    twistd = str(Path(sys.executable).parent / "twistd")
    for rid in ("router-b", "router-a"):
        procs.start(rid, [twistd, "-n", "--pidfile=", f"--logfile={work / (rid + '.log')}", "wecross",
                          "--config", str(work / f"{rid}.toml")], cwd=work, log=work / f"{rid}.out", env=env)
    net.rest = {rid: f"http://127.0.0.1:{ports[rid][1]}" for rid in ports}
    wait_for("router-b's REST API", lambda: get_json(net.rest["router-b"] + "/status"), 60, procs)
    ready_file = work / "relay.json"
    relay_argv = [sys.executable, str(BENCH / "relay.py"), "--certs", str(certs),
                  "--target", f"127.0.0.1:{ports['router-b'][1]}", "--ready-file", str(ready_file)]
    procs.start("relay", [*relay_argv, *(["--nodelay"] if relay_nodelay else [])], cwd=work, log=work / "relay.log")
    relay = wait_for("the relay", lambda: json.loads(ready_file.read_text()) if ready_file.exists() else None, 30,
                     procs)

    def linked() -> bool:
        peers = get_json(net.rest["router-a"] + "/peers")
        rows = get_json(net.rest["router-a"] + "/resources")
        return any(p.get("state") == "up" for p in peers) and any(
            r["ipath"] == f"{ZONE}.{CHAIN}.{RESOURCE}" and not r["local"] and r.get("route") for r in rows)

    wait_for("router-a's TLS link to router-b and a route to its chain", linked, 60, procs)
    status, reply = post_json(net.rest["router-b"] + f"/{ZONE}/{CHAIN}/{RESOURCE}/sendTransaction",
                              {"method": "set", "args": ["k", SEED_VALUE]})
    if status != 200:
        raise BenchError(f"seeding the key failed: {status} {reply}")
    net.urls = {
        "direct": net.rest["router-b"] + CALL_PATH,
        "one_hop": net.rest["router-a"] + CALL_PATH,
        "relay_floor": f"http://127.0.0.1:{relay['in_port']}" + CALL_PATH,
    }
    expected_paths = {"direct": ["router-b"], "one_hop": ["router-a", "router-b"], "relay_floor": ["router-b"]}
    for case, url in net.urls.items():
        status, reply = post_json(url, CALL_BODY)
        data = reply.get("data") or {}
        if status != 200 or data.get("output") != SEED_VALUE or data.get("path") != expected_paths[case]:
            raise BenchError(f"{case}: {url} answered {status} {reply}; expected output {SEED_VALUE!r} "
                             f"via {expected_paths[case]}")
    return net


# --------------------------------------------------------------------------------------------------- measuring


def measure(net: Network, load: LoadGenerator, case: str, connections: int, duration: float,
            kind: str, round_no: int) -> dict[str, Any]:
    """One load run on one case, with the CPU time each serving process spent on it."""
    pids = {name: net.procs.pid(name) for name in ("router-a", "router-b", "relay")}
    before = {name: proc_times(pid) for name, pid in pids.items()}
    busy0 = machine_busy_seconds()
    result = load.run(net.urls[case], connections, duration)
    busy = machine_busy_seconds() - busy0
    spent = {name: proc_times(pid) - before[name] for name, pid in pids.items()}
    cpu = {name: times.cpu_s for name, times in spent.items()}
    cpu["loadgen"] = result.client_cpu_s
    # What the rest of the machine burnt meanwhile, in cores: the noise this run suffered.
    foreign_cores = max(0.0, busy - sum(cpu.values())) / max(result.duration_s, 1e-9)
    failed = sum(result.errors.values())
    if result.requests == 0 or failed > 0.01 * max(result.requests, 1):
        raise BenchError(f"{case} at {connections} connection(s): {result.requests} answers, errors {result.errors}")
    per_request = {name: 1e6 * sec / result.requests for name, sec in cpu.items()}
    detail = {name: {"cpu": 1e6 * t.cpu_s / result.requests, "user": 1e6 * t.user_s / result.requests,
                     "sys": 1e6 * t.sys_s / result.requests, "waited_for_cpu": 1e6 * t.wait_s / result.requests}
              for name, t in spent.items() if name in SERVERS[case]}
    return {
        "case": case, "kind": kind, "round": round_no, "connections": connections,
        "requests": result.requests, "duration_s": result.duration_s, "requests_per_s": result.requests_per_s,
        "errors": result.errors, "latency_us": result.latency_us, "cpu_s": cpu,
        "other_processes_cores": foreign_cores,
        "cpu_us_per_request": per_request,
        "time_us_per_request": detail,
        "server_cpu_us_per_request": sum(per_request[name] for name in SERVERS[case]),
        "wrk_output": result.raw,
    }


def run_schedule(net: Network, load: LoadGenerator, args: argparse.Namespace, log: Any) -> list[dict[str, Any]]:
    """Warm every path, then rounds of interleaved runs; the case order rotates so none always goes first."""
    runs: list[dict[str, Any]] = []
    for case in CASES:
        measure(net, load, case, args.connections, 1.0, "warmup", -1)
    for r in range(args.rounds):
        order = CASES[r % len(CASES):] + CASES[:r % len(CASES)]
        for case in order:
            run = measure(net, load, case, 1, args.latency_duration, "latency", r)
            runs.append(run)
            log(f"  round {r + 1}/{args.rounds} {case:<12} c=1  p50 {run['latency_us']['p50'] / 1000:7.3f} ms"
                f"  p99 {run['latency_us']['p99'] / 1000:7.3f} ms")
        for case in order:
            run = measure(net, load, case, args.connections, args.duration, "throughput", r)
            runs.append(run)
            log(f"  round {r + 1}/{args.rounds} {case:<12} c={args.connections:<2} {run['requests_per_s']:9.0f} req/s"
                f"  p50 {run['latency_us']['p50'] / 1000:7.3f} ms")
    return runs


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per case, and the headline differences and ratios, paired round by round where they can be."""
    cases: dict[str, Any] = {}
    for case in CASES:
        lat = [r for r in runs if r["case"] == case and r["kind"] == "latency"]
        thr = [r for r in runs if r["case"] == case and r["kind"] == "throughput"]
        cases[case] = {
            "latency_c1_us": {p: _median([r["latency_us"][p] for r in lat]) for p in ("p50", "p90", "p99", "mean")},
            "latency_c1_p50_us_per_round": [r["latency_us"]["p50"] for r in lat],
            "requests_per_s": _median([r["requests_per_s"] for r in thr]),
            "requests_per_s_per_round": [r["requests_per_s"] for r in thr],
            "latency_loaded_us": {p: _median([r["latency_us"][p] for r in thr]) for p in ("p50", "p99")},
            "server_cpu_us_per_request_loaded": _median([r["server_cpu_us_per_request"] for r in thr]),
            "cpu_us_per_request_loaded": {
                name: _median([r["cpu_us_per_request"][name] for r in thr]) for name in (*SERVERS[case], "loadgen")
            },
            "cpu_us_per_request_c1": {
                name: _median([r["cpu_us_per_request"][name] for r in lat]) for name in (*SERVERS[case], "loadgen")
            },
        }

    def paired(case: str) -> list[float]:
        by_round: dict[int, dict[str, float]] = {}
        for r in runs:
            if r["kind"] == "latency":
                by_round.setdefault(r["round"], {})[r["case"]] = r["latency_us"]["p50"]
        return [v[case] - v["direct"] for v in by_round.values() if case in v and "direct" in v]

    added = _median(paired("one_hop"))
    relay_added = _median(paired("relay_floor"))
    ratio = added / relay_added if relay_added > 0 else math.inf
    one_hop_rps = cases["one_hop"]["requests_per_s"]
    headline = {
        "one_hop_added_p50_ms": added / 1000,
        "relay_added_p50_ms": relay_added / 1000,
        "added_over_relay_ratio": ratio,
        "one_hop_added_p50_ms_from_medians":
            (cases["one_hop"]["latency_c1_us"]["p50"] - cases["direct"]["latency_c1_us"]["p50"]) / 1000,
        "one_hop_requests_per_s": one_hop_rps,
        "one_hop_rps_ratio_to_direct": one_hop_rps / cases["direct"]["requests_per_s"],
        "relay_rps_ratio_to_direct": cases["relay_floor"]["requests_per_s"] / cases["direct"]["requests_per_s"],
        "router_a_cpu_us_per_forwarded_request": cases["one_hop"]["cpu_us_per_request_loaded"]["router-a"],
    }
    goals = {
        "added_p50_ms <= 0.5": {"value": headline["one_hop_added_p50_ms"], "met": added / 1000 <= GOAL_ADDED_P50_MS},
        "added / relay_added <= 3": {"value": ratio, "met": ratio <= GOAL_RATIO_TO_RELAY},
        "one_hop req/s >= 5000": {"value": one_hop_rps, "met": one_hop_rps >= GOAL_ONE_HOP_RPS},
    }
    others = [r["other_processes_cores"] for r in runs]
    noise = {"other_processes_cores_median": _median(others), "other_processes_cores_max": max(others, default=0.0)}
    return {"cases": cases, "headline": headline, "goals": goals, "noise": noise}


# --------------------------------------------------------------------------------------------------- profiling

#: Where a sample's innermost Python frame lives says which part of the router the time went to.
_CATEGORIES: list[tuple[str, str]] = [
    ("wecross/wire/", "wire codec (wecross.wire)"),
    ("msgpack", "wire codec (wecross.wire)"),
    ("wecross/peer/", "peer link (wecross.peer)"),
    ("wecross/router.py", "router core (wecross.router)"),
    ("wecross/routing/", "router core (wecross.router)"),
    ("wecross/rest/", "REST API (wecross.rest)"),
    ("wecross/stub/", "stub + embedded chain"),
    ("wecross/embedded/", "stub + embedded chain"),
    ("wecross/ipath.py", "iPath"),
    ("wecross/errors.py", "router core (wecross.router)"),
    ("twisted/protocols/tls.py", "TLS (twisted.protocols.tls + pyOpenSSL)"),
    ("OpenSSL/", "TLS (twisted.protocols.tls + pyOpenSSL)"),
    ("twisted/web/", "HTTP (twisted.web)"),
    ("twisted/protocols/basic.py", "HTTP (twisted.web)"),
    ("twisted/internet/defer.py", "Deferreds"),
    ("twisted/logger/", "logging"),
    ("twisted/python/log.py", "reactor, sockets, timers"),
    ("twisted/python/context.py", "reactor, sockets, timers"),
    ("twisted/internet/", "reactor, sockets, timers"),
    ("json/", "JSON"),
    ("<string>", "dataclass __init__ (generated)"),
]

#: cProfile's names for C functions that are system calls on a socket or the poller.
_SYSCALLS = {
    "<method 'send' of '_socket.socket' objects>": "socket send/recv syscalls",
    "<method 'recv' of '_socket.socket' objects>": "socket send/recv syscalls",
    "<method 'getsockname' of '_socket.socket' objects>": "socket send/recv syscalls",
    "<built-in method posix.urandom>": "os.urandom (getrandom syscall)",
}


def _category(filename: str, function: str = "") -> str:
    if function in _SYSCALLS:
        return _SYSCALLS[function]
    if filename.endswith("twisted/python/util.py") or function.startswith("untilConcludes"):
        return "socket send/recv syscalls"
    if function.startswith("_getsockname"):
        return "socket send/recv syscalls"
    for needle, label in _CATEGORIES:
        if needle in filename:
            return label
    return "other: " + (Path(filename).name if filename not in ("~", "") else function)


def _frame_parts(frame: str) -> tuple[str, str]:
    """``func (file)`` or ``func (file:line)`` -> (function, file)."""
    match = re.match(r"^(.*) \(([^()]*)\)$", frame)
    if match is None:
        return frame, ""
    where = match.group(2)
    if re.search(r":\d+$", where):
        where = where.rsplit(":", 1)[0]
    return match.group(1), where


def _scaffolding(frame: str) -> bool:
    """Frames every sample passes through (twistd, the reactor loop, log contexts): they explain nothing."""
    needles = ("(twistd", "twisted/application/", "twisted/scripts/", "twisted/internet/base.py",
               "twisted/internet/epollreactor.py", "_doReadOrWrite", "twisted/python/log.py",
               "twisted/python/context.py", "<module>", "threading.py", "_threadworker.py", "queue.py")
    return any(n in frame for n in needles)


def _idle(leaf: str) -> bool:
    """A sample of a thread that waits: the reactor in epoll_wait, or a thread-pool worker on its queue.

    py-spy's blocking mode stops the process to sample it, which hides the threads' OS state, so idle samples are
    told apart here by where they stand; the epoll wait's own dispatch work is tiny next to its waiting."""
    return leaf.startswith("EPollReactor.doPoll ") or "(threading.py" in leaf or "(queue.py" in leaf


#: Innermost Python frames whose samples are spent in a system call (send, recv, epoll_ctl, getsockname...).
_SYSCALL_LEAVES = ("untilConcludes ", "Connection.doRead ", "_getsockname ", "EPollReactor._add ",
                   "EPollReactor._remove ", "Port.doRead ", "urandom ")
KERNEL_AREA = "kernel: socket and epoll system calls"


def summarise_collapsed(path: Path, requests: int, times: dict[str, float] | None = None) -> dict[str, Any]:
    """Shares of the busy samples in py-spy's collapsed stacks: by the innermost frame (self), by area of the code,
    and inclusive for every function on the stack (counted once per sample).

    py-spy counts a process as busy whether it runs or waits for a CPU, and on a shared machine the waits gather in
    socket sends (waking the peer hands it the CPU). So, given the process's measured ``times`` per request, the
    microseconds are estimated apart: user CPU spread over the samples not in a system call, kernel CPU over those
    in one. The shares stay as sampled."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    inclusive_sys: Counter[str] = Counter()
    by_name: Counter[str] = Counter()
    by_name_sys: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    busy = every = in_sys = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        every += count
        leaf = frames[-1]
        if _idle(leaf):
            continue
        busy += count
        syscall = leaf.startswith(_SYSCALL_LEAVES)
        in_sys += count if syscall else 0
        self_time[leaf] += count
        function, where = _frame_parts(leaf)
        areas[KERNEL_AREA if syscall else _category(where, function)] += count
        for frame in set(frames):
            if not _scaffolding(frame):
                inclusive[frame] += count
                if syscall:
                    inclusive_sys[frame] += count
        for name in {_frame_parts(frame)[0] for frame in frames}:
            by_name[name] += count
            if syscall:
                by_name_sys[name] += count
    shares = _shares(busy, self_time, inclusive, areas)
    if times and busy:
        user_per_sample = times["user"] / max(busy - in_sys, 1)
        sys_per_sample = times["sys"] / max(in_sys, 1)

        def micros(label: str, table: Counter[str], sys_table: Counter[str] | None) -> float:
            n_sys = (sys_table or Counter())[label]
            return (table[label] - n_sys) * user_per_sample + n_sys * sys_per_sample

        for row in shares["areas"]:
            n = areas[row["area"]]
            row["us_per_request"] = n * (sys_per_sample if row["area"] == KERNEL_AREA else user_per_sample)
        for row in shares["self"]:
            label = row["_label"]
            row["us_per_request"] = self_time[label] * (sys_per_sample if label.startswith(_SYSCALL_LEAVES)
                                                        else user_per_sample)
        for row in shares["inclusive"]:
            row["us_per_request"] = micros(row["_label"], inclusive, inclusive_sys)
        shares["times_us_per_request"] = times
        shares["phases"] = _phases(lambda name: micros(name, by_name, by_name_sys), times["cpu"])
    shares["busy_fraction"] = busy / every if every else 0.0
    shares["samples_all"] = every
    shares["requests"] = requests
    return shares


#: The steps of one request through each router, as (label, function whose samples count, nested functions whose
#: samples are left out because another step counts them). Names are py-spy's ``Class.method``.
PHASES: list[tuple[str, str, tuple[str, ...]]] = [
    # router-a, the entry: a REST request in, a REQUEST frame out, a RESPONSE frame in, the REST answer out.
    ("HTTP request in: twisted.web parsing, Request object", "HTTPChannel.dataReceived", ("RestRequest.process",)),
    ("REST: route, content type, JSON body, Invocation", "RestRequest.process", ("Router.invoke",)),
    ("router: pick the link, Request message, deadline timer", "Router.invoke", ("PeerLink._send",)),
    ("answer: Deferred callbacks, JSON body, twisted.web response", "PeerLink._settle", ()),
    # router-b, the owner: a REQUEST frame in, the stub, a RESPONSE frame out.
    ("router: checks, iPath, replay guard, stub, result", "PeerLink._on_request", ("PeerLink._send",)),
    # both
    ("wire: encode a frame + TLS-encrypt it (PeerLink._send)", "PeerLink._send", ()),
    ("wire: TLS-decrypt + decode frames (before dispatch)", "TLSMemoryBIOProtocol.dataReceived",
     ("PeerLink._settle", "PeerLink._on_request")),
    ("socket writes: send syscalls, epoll_ctl (doWrite)", "FileDescriptor.doWrite", ()),
]


def _phases(micros: Any, total_us: float) -> list[dict[str, Any]]:
    """CPU microseconds per request in each step of PHASES that the profile saw, and what is left (the reactor
    loop, timers, reading sockets): a map of where a request's cost goes, step by step."""
    rows = []
    for label, function, nested in PHASES:
        own = micros(function) - sum(micros(n) for n in nested)
        if micros(function) > 0:
            rows.append({"phase": label, "function": function, "us_per_request": max(own, 0.0)})
    rows.append({"phase": "the rest: reactor loop, socket reads, timers, log context", "function": "",
                 "us_per_request": max(total_us - sum(r["us_per_request"] for r in rows), 0.0)})
    return rows


def summarise_pstats(path: Path, requests: int) -> dict[str, Any]:
    """The same shares from a cProfile dump of the reactor thread (self = tottime, inclusive = cumtime, the wait
    in epoll left out), plus calls per request. cProfile roughly doubles the cost of small Python calls, so read
    its shares for ranking and its call counts as exact."""
    import pstats

    stats: Any = pstats.Stats(str(path))
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    calls: dict[str, int] = {}
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():
        if name == "<method 'poll' of 'select.epoll' objects>":
            continue
        label = f"{name} ({filename}:{line})" if filename != "~" else name
        self_time[label] += tottime
        calls[label] = ncalls
        areas[_category(filename, name)] += tottime
        if not _scaffolding(label):
            inclusive[label] += cumtime
    busy = sum(self_time.values())
    shares = _shares(busy, self_time, inclusive, areas)
    shares["requests"] = requests
    shares["profiled_cpu_us_per_request"] = 1e6 * busy / max(requests, 1)
    for key in ("self", "inclusive"):
        for row in shares.get(key, []):
            row["calls_per_request"] = calls.get(row.pop("_label"), 0) / max(requests, 1)
    most_called = sorted(calls.items(), key=lambda item: -item[1])[:15]
    shares["most_called"] = [{"function": _short(f), "calls_per_request": n / max(requests, 1)} for f, n in most_called]
    return shares


def _short(frame: str) -> str:
    """``func (/long/path/site-packages/twisted/web/http.py:12)`` -> ``func (twisted/web/http.py:12)``."""
    for marker in ("site-packages/", str(Path(__file__).resolve().parents[1]) + "/", "/lib/python3."):
        if marker in frame:
            head, _, tail = frame.partition(" (")
            rest = tail.split(marker, 1)[-1]
            if marker == "/lib/python3.":
                rest = rest.split("/", 1)[-1]
            return f"{head} ({rest}"
    return frame


def _shares(total: float, self_time: Counter[str], inclusive: Counter[str], areas: Counter[str]) -> dict[str, Any]:
    if total <= 0:
        return {"busy": 0}
    return {
        "busy": total,
        "areas": [{"area": a, "share": n / total} for a, n in areas.most_common()],
        "self": [{"function": _short(f), "share": n / total, "_label": f} for f, n in self_time.most_common(25)],
        "inclusive": [{"function": _short(f), "share": n / total, "_label": f}
                      for f, n in inclusive.most_common(40)],
    }


def _strip_labels(summary: dict[str, Any]) -> dict[str, Any]:
    for key in ("self", "inclusive"):
        for row in summary.get(key, []):
            row.pop("_label", None)
    return summary


def py_spy_path() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def py_spy_works(spy: str) -> bool:
    """py-spy needs ptrace rights over the routers; try it on a throw-away child before relying on it."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"]) as child:
        try:
            time.sleep(0.2)
            return subprocess.run([spy, "dump", "--pid", str(child.pid)], capture_output=True,
                                  timeout=20).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False
        finally:
            child.kill()


def pick_profilers(choice: str) -> list[str]:
    """auto: py-spy for the shares (low overhead) and cProfile for exact call counts; either alone on request."""
    if choice == "none":
        return []
    if choice == "cprofile":
        return ["cprofile"]
    spy = py_spy_path()
    works = spy is not None and py_spy_works(spy)
    if choice == "py-spy":
        if not works:
            raise BenchError("py-spy is missing or cannot attach here (.venv/bin/pip install py-spy; needs ptrace)")
        return ["py-spy"]
    return ["py-spy", "cprofile"] if works else ["cprofile"]


def profile_py_spy(net: Network, load: LoadGenerator, connections: int, seconds: float) -> dict[str, Any]:
    """Both routers sampled by py-spy while router-a forwards a steady one_hop load to router-b."""
    spy = py_spy_path()
    assert spy is not None
    names = ("router-a", "router-b")
    tag = f"c{connections}"
    files = {name: net.work / f"{name}-{tag}.collapsed" for name in names}
    # Blocking mode (py-spy pauses the process for each sample): --nonblocking drops the samples taken while Python
    # frames change under it, which over-weights long C calls such as socket sends several times over.
    spies = [subprocess.Popen([spy, "record", "--pid", str(net.procs.pid(name)), "--rate", "250",
                               "--duration", str(math.ceil(seconds) + 1), "--format", "raw", "--nolineno",
                               "--output", str(files[name])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name in names]
    try:
        time.sleep(0.5)  # attached before the load starts; the extra second of recording covers the tail
        run = measure(net, load, "one_hop", connections, seconds, "profiled-py-spy", -1)
        for spy_proc in spies:
            spy_proc.wait(timeout=seconds + 30)
    finally:
        for spy_proc in spies:
            if spy_proc.poll() is None:
                spy_proc.kill()
                spy_proc.wait()
    out: dict[str, Any] = {"profiler": "py-spy", "connections": connections, "seconds": seconds,
                           "requests_per_s": run["requests_per_s"], "cpu_us_per_request": run["cpu_us_per_request"],
                           "time_us_per_request": run["time_us_per_request"]}
    for name in names:
        times = run["time_us_per_request"].get(name)
        summary = summarise_collapsed(files[name], run["requests"], times) if files[name].exists() else {"busy": 0}
        out[name] = _strip_labels(summary)
    return out


def profile_cprofile(net: Network, load: LoadGenerator, connections: int, seconds: float) -> dict[str, Any]:
    """Both routers under cProfile (switched on and off by signal, see bench/_hooks) during a one_hop load."""
    assert net.profile_dir is not None
    names = ("router-a", "router-b")
    for name in names:
        os.kill(net.procs.pid(name), signal.SIGUSR1)
    run = measure(net, load, "one_hop", connections, seconds, "profiled-cprofile", -1)
    for name in names:
        os.kill(net.procs.pid(name), signal.SIGUSR2)
    out: dict[str, Any] = {"profiler": "cprofile", "connections": connections, "seconds": seconds,
                           "requests_per_s": run["requests_per_s"], "cpu_us_per_request": run["cpu_us_per_request"],
                           "time_us_per_request": run["time_us_per_request"]}
    for name in names:
        dump = net.profile_dir / f"{net.procs.pid(name)}.prof"
        wait_for(f"{name}'s cProfile dump", dump.exists, 30, net.procs)
        out[name] = _strip_labels(summarise_pstats(dump, run["requests"]))
        dump.unlink()
    return out


def profile_routers(net: Network, load: LoadGenerator, profilers: list[str], args: argparse.Namespace,
                    log: Any) -> list[dict[str, Any]]:
    profiles = []
    if "py-spy" in profilers:
        log(f"profiling both routers with py-spy: one_hop at {args.connections} connections")
        profiles.append(profile_py_spy(net, load, args.connections, args.profile_seconds))
        log("profiling both routers with py-spy: one_hop at 1 connection")
        profiles.append(profile_py_spy(net, load, 1, args.profile_seconds))
    if "cprofile" in profilers:
        log(f"profiling both routers with cProfile: one_hop at {args.connections} connections")
        profiles.append(profile_cprofile(net, load, args.connections, args.profile_seconds))
    return profiles


# --------------------------------------------------------------------------------------------------- report


def print_report(summary: dict[str, Any], args: argparse.Namespace, load_kind: str) -> None:
    cases = summary["cases"]
    print()
    print(f"forward.py: {args.rounds} rounds, {load_kind}, latency at 1 connection ({args.latency_duration:g} s runs), "
          f"throughput at {args.connections} connections ({args.duration:g} s runs); medians over rounds")
    print(f"relay: {'Nagle on, as in the routers' if args.relay_nagle else 'TCP_NODELAY'}"
          + ("; routers: TCP_NODELAY what-if (bench/_hooks), not the shipped code" if args.routers_nodelay else "")
          + ("; audit trail off (--no-audit)" if args.no_audit else "; audit trail on"))
    header = (f"{'case':<12} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9} {'x direct':>9} {'loaded p50':>11} "
              f"{'loaded p99':>11} {'server CPU us/req':>18}")
    print(header)
    print("-" * len(header))
    direct_rps = cases["direct"]["requests_per_s"]
    for case in CASES:
        c = cases[case]
        print(f"{case:<12} {c['latency_c1_us']['p50'] / 1000:8.3f} {c['latency_c1_us']['p99'] / 1000:8.3f} "
              f"{c['requests_per_s']:9.0f} {c['requests_per_s'] / direct_rps:9.2f} "
              f"{c['latency_loaded_us']['p50'] / 1000:9.3f}ms {c['latency_loaded_us']['p99'] / 1000:9.3f}ms "
              f"{c['server_cpu_us_per_request_loaded']:18.0f}")
    h = summary["headline"]
    print()
    print(f"added latency one_hop - direct (p50, paired by round): {h['one_hop_added_p50_ms']:.3f} ms"
          f"   (goal <= {GOAL_ADDED_P50_MS} ms)")
    print(f"added latency relay_floor - direct (p50):            {h['relay_added_p50_ms']:.3f} ms")
    print(f"one_hop added / relay added:                         {h['added_over_relay_ratio']:.2f} x"
          f"   (goal <= {GOAL_RATIO_TO_RELAY:g} x)")
    print(f"one_hop throughput:                                  {h['one_hop_requests_per_s']:.0f} req/s"
          f"   (goal >= {GOAL_ONE_HOP_RPS:.0f}); {h['one_hop_rps_ratio_to_direct']:.2f} x direct,"
          f" relay {h['relay_rps_ratio_to_direct']:.2f} x direct")
    print(f"router-a CPU per forwarded request (loaded):         {h['router_a_cpu_us_per_forwarded_request']:.0f} us")
    for name, goal in summary["goals"].items():
        print(f"goal {name:<28} {'met' if goal['met'] else 'MISSED'} ({goal['value']:.3f})")
    noise = summary["noise"]
    busy = noise["other_processes_cores_median"]
    print(f"other processes on this machine used {busy:.2f} cores (median over runs; max "
          f"{noise['other_processes_cores_max']:.2f}) of {os.cpu_count()} while it was measured"
          + ("  <- a busy machine: absolute figures are low, compare ratios" if busy > 0.25 else ""))


def _cell(row: dict[str, Any]) -> str:
    """One profile row's figures: share of samples, estimated CPU microseconds, calls per request (when known)."""
    text = f"{row['share'] * 100:5.1f}%"
    if "us_per_request" in row:
        text += f" {row['us_per_request']:6.1f} us"
    if "calls_per_request" in row:
        text += f" {row['calls_per_request']:5.1f}x"
    return text


def print_profile(profile: dict[str, Any]) -> None:
    print()
    print(f"profile ({profile['profiler']}) of one_hop at {profile['connections']} connection(s) for "
          f"{profile['seconds']:g} s, {profile['requests_per_s']:.0f} req/s while profiled:")
    for name in ("router-a", "router-b"):
        prof = profile[name]
        if not prof.get("busy"):
            print(f"  {name}: no samples")
            continue
        t = profile["time_us_per_request"][name]
        head = (f"  {name}: per request {t['cpu']:.0f} us on a CPU (user {t['user']:.0f}, kernel {t['sys']:.0f}), "
                f"{t['waited_for_cpu']:.0f} us runnable but waiting for a CPU")
        if "profiled_cpu_us_per_request" in prof:
            head += f"; {prof['profiled_cpu_us_per_request']:.0f} us/request as cProfile saw it (wall, inflated)"
        print(head)
        micros = "us_per_request" in prof["areas"][0]
        unit = "share of samples, est. CPU us/request" if micros else "share of profiled time"
        calls = "calls_per_request" in prof["self"][0]

        if "phases" in prof:
            print("    steps of a request (est. CPU us/request):")
            for row in prof["phases"]:
                print(f"      {row['us_per_request']:6.1f} us  {row['phase']}")
        print(f"    by area ({unit}):")
        for row in prof["areas"][:10]:
            print(f"      {_cell(row)}  {row['area']}")
        print("    functions by own time" + (" (x = calls per request)" if calls else "") + ":")
        for row in prof["self"][:12]:
            print(f"      {_cell(row)}  {row['function']}")
        print("    functions including their callees:")
        for row in prof["inclusive"][:16]:
            print(f"      {_cell(row)}  {row['function']}")
        if "most_called" in prof:
            shown = ", ".join(f"{row['function'].split(' (')[0]} {row['calls_per_request']:.0f}"
                              for row in prof["most_called"][:8])
            print(f"    most calls per request: {shown}")


# --------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="REST call direct vs. through one router link vs. a bare TLS relay")
    parser.add_argument("--quick", action="store_true", help="about 30 s: 2 rounds of 1 s runs, short profile")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; quick 2)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per throughput run (default 3)")
    parser.add_argument("--latency-duration", type=float, default=None, help="seconds per 1-connection run (3)")
    parser.add_argument("--connections", type=int, default=16, help="connections for throughput runs (16)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                        help="auto: wrk when installed, else bench/_loadgen.py")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="auto: profile the routers only when a goal is missed")
    parser.add_argument("--profiler", choices=("auto", "py-spy", "cprofile"), default="auto",
                        help="auto: py-spy (shares) and cProfile (call counts), or cProfile alone without py-spy")
    parser.add_argument("--profile-seconds", type=float, default=None, help="per profiled run (default 4; quick 2)")
    parser.add_argument("--relay-nagle", action="store_true",
                        help="leave Nagle on in the relay, as the routers do today (default: TCP_NODELAY, the floor)")
    parser.add_argument("--routers-nodelay", action="store_true",
                        help="what-if: TCP_NODELAY on every router socket, patched in by bench/_hooks (not a fix)")
    parser.add_argument("--no-audit", action="store_true",
                        help="[audit] enabled = false in both routers (the trail is on by default)")
    parser.add_argument("--output", type=Path, default=RESULTS / "forward.json")
    parser.add_argument("--keep-workdir", action="store_true", help="keep configs and router logs for a look")
    args = parser.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (2 if quick else 5)
    args.duration = args.duration or (1.0 if quick else 3.0)
    args.latency_duration = args.latency_duration or (1.0 if quick else 3.0)
    args.profile_seconds = args.profile_seconds or (2.0 if quick else 4.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    load_kind = args.loadgen
    if load_kind == "auto":
        load_kind = "wrk" if shutil.which("wrk") else "python"
    elif load_kind == "wrk" and not shutil.which("wrk"):
        print("forward.py: wrk is not installed (apt-get install wrk), use --loadgen python", file=sys.stderr)
        return 2
    if load_kind == "wrk" and (args.duration < 1 or args.latency_duration < 1):
        print("forward.py: wrk runs last whole seconds; durations below 1 s are rounded up", file=sys.stderr)
    profilers = [] if args.profile == "never" else pick_profilers(args.profiler)

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="wecross-bench-forward-"))
    result: dict[str, Any] = {
        "benchmark": "forward",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "load_generator": load_kind,
        "wrk_version": _wrk_version() if load_kind == "wrk" else None,
        "settings": {"rounds": args.rounds, "throughput_run_s": args.duration,
                     "latency_run_s": args.latency_duration, "connections": args.connections,
                     "relay_nodelay": not args.relay_nagle, "routers_nodelay_what_if": args.routers_nodelay,
                     "audit": not args.no_audit, "profilers": profilers, "quick": args.quick},
        "request": {"method": "POST", "path": CALL_PATH, "body": CALL_BODY},
        "goals": {"added_p50_ms": GOAL_ADDED_P50_MS, "added_over_relay_ratio": GOAL_RATIO_TO_RELAY,
                  "one_hop_requests_per_s": GOAL_ONE_HOP_RPS},
    }
    exit_code = 0
    try:
        with ProcessGroup() as procs:
            log(f"starting router-b (owner), router-a (entry) and the TLS relay in {work}")
            net = start_network(work, procs, relay_nodelay=not args.relay_nagle, cprofile="cprofile" in profilers,
                                routers_nodelay=args.routers_nodelay, audit=not args.no_audit)
            log(f"all three paths answer; load generator: {load_kind}")
            load = LoadGenerator(load_kind, work)
            runs = run_schedule(net, load, args, log)
            summary = summarise(runs)
            result.update(summary)
            result["runs"] = runs
            missed = [name for name, goal in summary["goals"].items() if not goal["met"]]
            if profilers and (missed or args.profile == "always"):
                result["profiles"] = profile_routers(net, load, profilers, args, log)
            result["router_status"] = {rid: get_json(url + "/status") for rid, url in net.rest.items()}
            procs.check_alive()
        result["total_runtime_s"] = time.monotonic() - started
        print_report(summary, args, load_kind)
        for profile in result.get("profiles", []):
            print_profile(profile)
        if missed:
            print()
            where = " (see the profiles above for where the routers' time goes)" if result.get("profiles") else ""
            print("GOALS MISSED: " + "; ".join(missed) + where)
        write_results(args.output, result)
        print(f"\nwrote {args.output} ({result['total_runtime_s']:.0f} s in all)")
    except BenchError as exc:
        print(f"forward.py: {exc}\n(logs in {work})", file=sys.stderr)
        args.keep_workdir = True
        exit_code = 1
    except KeyboardInterrupt:
        print("forward.py: interrupted; all child processes stopped", file=sys.stderr)
        exit_code = 130
    finally:
        if not args.keep_workdir:
            shutil.rmtree(work, ignore_errors=True)
        elif exit_code == 0:
            print(f"work directory kept: {work}")
    return exit_code


def _wrk_version() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
