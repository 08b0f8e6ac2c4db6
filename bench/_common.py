"""Plumbing shared by the process-level benchmarks: a throw-away PKI, router configs, child processes that always
die with the benchmark, and the facts about the machine that make a figure comparable to another run's.

Nothing here measures anything; it only sets the stage so that ``bench/forward.py`` can stay about the measurement.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------- network


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the OS may hand it out again; good enough on a quiet box)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def post_json(url: str, body: dict[str, Any], timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    """One POST with urllib: status and decoded envelope, error statuses included (they carry the reason)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())["data"]


def wait_for(what: str, check: Callable[[], T | None], timeout: float, procs: ProcessGroup | None = None) -> T:
    """Poll ``check`` until it returns something truthy; fail early and clearly if a child process has died."""
    deadline = time.monotonic() + timeout
    while True:
        if procs is not None:
            procs.check_alive()
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError, KeyError, IndexError):
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


class BenchError(Exception):
    """A benchmark could not run as set up; the message says which step and where the logs are."""


# --------------------------------------------------------------------------------------------------- PKI


def make_pki(base: Path, routers: Sequence[str], serves: Mapping[str, Sequence[str]] | None = None) -> Path:
    """The same shape of PKI a real network uses (root, one intermediate, leaves sent with their chain), one leaf
    per name; relays get router certificates too so their TLS leg costs what a router link's does.

    ``serves`` names the chains each router may serve (``wecross certs --serves``); a router it does not list may
    serve any chain (``*``), which suits a benchmark network run by one operator."""
    from wecross.pki import authority

    root, intermediate = authority.create_ca_chain(1)
    authority.write_certificates(base / "ca.crt", [root.cert])
    for name in routers:
        patterns = tuple(serves[name]) if serves is not None and name in serves else ("*",)
        leaf = authority.issue_router_cert(intermediate, name, serves=patterns)
        authority.write_certificates(base / name / "chain.pem", leaf.full_chain)
        authority.write_private_key(base / name / "key.pem", leaf.key)
    return base


def router_toml(
    router_id: str,
    *,
    zone: str,
    chain: str | None,
    p2p_port: int,
    rest_port: int,
    certs: Path,
    data_dir: Path,
    peers: Sequence[tuple[str, int]] = (),
    heartbeat_interval: float = 2.0,
) -> str:
    """A router config as an operator would write it; the owner's chain has the ``hello`` key-value resource."""
    peer_list = ", ".join(f'{{ address = "127.0.0.1:{port}", id = "{pid}" }}' for pid, port in peers)
    text = f"""# Written by bench/forward.py; thrown away after the run.
[router]
id = "{router_id}"
zones = ["{zone}"]
data_dir = "{data_dir}"

[p2p]
listen = "127.0.0.1:{p2p_port}"
ca = "{certs}/ca.crt"
cert = "{certs}/{router_id}/chain.pem"
key = "{certs}/{router_id}/key.pem"
peers = [{peer_list}]

[rest]
listen = "127.0.0.1:{rest_port}"

[timing]
heartbeat_interval = {heartbeat_interval}
"""
    if chain is not None:
        text += f"""
[[stubs]]
name = "{chain}"
zone = "{zone}"
type = "embedded"

[[stubs.resources]]
name = "hello"
kind = "kv"
"""
    return text


# --------------------------------------------------------------------------------------------------- processes


class ProcessGroup:
    """Children of the benchmark, stopped on every way out: normal end, exception, Ctrl-C, SIGTERM.

    Each child gets its own session so a Ctrl-C in the terminal reaches only the benchmark, which then stops the
    children in order (SIGTERM, a grace period, SIGKILL) by their own pids; nothing else on the machine is touched.
    """

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self._old_handlers: dict[int, Any] = {}

    def __enter__(self) -> ProcessGroup:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)

    @staticmethod
    def _on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def start(self, name: str, argv: Sequence[str], *, cwd: Path, log: Path,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, **(env or {})})
        self.procs[name] = proc
        self.logs[name] = log
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = self.log_tail(name)
                raise BenchError(f"{name} exited with status {proc.returncode}; last log lines:\n{tail}")

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def stop_all(self, grace: float = 5.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass(frozen=True)
class ProcTimes:
    """Where a process's time went: on a CPU (split into user and kernel), and runnable but waiting for a CPU.

    The wait matters on a small, shared machine: a profiler that samples a process sees it "busy" whether it runs
    or waits, and the waits pile up where it wakes another process (a socket send), so a send looks far dearer
    than its kernel time. These counters tell the two apart.
    """

    cpu_s: float
    wait_s: float
    user_s: float
    sys_s: float

    def __sub__(self, other: ProcTimes) -> ProcTimes:
        return ProcTimes(self.cpu_s - other.cpu_s, self.wait_s - other.wait_s, self.user_s - other.user_s,
                         self.sys_s - other.sys_s)


def proc_times(pid: int) -> ProcTimes:
    """All threads of a live process: CPU and run-queue wait from the scheduler's nanosecond counters
    (``schedstat``), user / kernel split from the tick-sampled ``stat``; zeros where /proc is not there."""
    cpu = wait = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            fields = (task / "schedstat").read_text().split()
            cpu += int(fields[0]) / 1e9
            wait += int(fields[1]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        user, system = int(stat[11]) / ticks, int(stat[12]) / ticks
    except (OSError, ValueError, IndexError):
        user = system = 0.0
    return ProcTimes(cpu or user + system, wait, user, system)


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (every core); with our own processes' time
    subtracted, the difference over a run is the load others put on the machine meanwhile."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user / nice
    return (sum(fields) - idle - guest) / os.sysconf("SC_CLK_TCK")


def python_speed_us() -> float:
    """Microseconds for a fixed pure-Python workload (best of 5): when two result files disagree, this tells a
    slower machine (or a busier one) from a slower router."""
    import timeit

    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


# --------------------------------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """What a reader needs to judge whether two result files are comparable."""
    import OpenSSL

    import twisted

    info: dict[str, Any] = {
        "python_speed_us_sum_range_1000": round(python_speed_us(), 2),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "twisted": twisted.__version__,
        "pyopenssl": OpenSSL.__version__,
        "openssl": OpenSSL.SSL.SSLeay_version(OpenSSL.SSL.SSLEAY_VERSION).decode(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        info["loadavg_at_start"] = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["memory_gib"] = round(int(mem[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


def write_results(path: Path, result: dict[str, Any]) -> None:
    """The results file: strict JSON, with NaN and infinities (a ratio over a zero floor) written as null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(result), indent=2, default=str, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
