"""Closed-loop HTTP/1.1 load generator, for machines without ``wrk``: N keep-alive connections, each sending the
next POST as soon as the previous answer is complete, for a fixed time. Prints one JSON line with the counts and
latency percentiles (microseconds), the same fields ``bench/forward.py`` reads from wrk.

It runs in its own process so it never shares a core's interpreter with what it measures. It is slower than wrk
(one Python thread parses every answer): at high rates it, not the server, may be the limit; its JSON says so
through ``client_cpu_s`` (close to ``duration_s`` means the client was saturated).

    python bench/_loadgen.py --url http://127.0.0.1:8250/payment/bank-a/hello/call \\
        --body '{"method": "get", "args": ["k"]}' --connections 16 --duration 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
import urllib.parse
from typing import Any


class _Client(asyncio.Protocol):
    """One keep-alive connection in a closed loop; answers are parsed only as far as status and Content-Length."""

    def __init__(self, request: bytes, stop_at: int, latencies: list[int], errors: dict[str, int],
                 done: asyncio.Future[None]) -> None:
        self.request = request
        self.stop_at = stop_at
        self.latencies = latencies
        self.errors = errors
        self.done = done
        self.buffer = bytearray()
        self.sent_at = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"content-length:")
            if at < 0:
                self._fail("read")
                return
            length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            now = time.perf_counter_ns()
            status = int(head[9:12])
            del self.buffer[:total]
            if 200 <= status < 400:
                self.latencies.append(now - self.sent_at)
            else:
                self.errors["status"] += 1
            if now >= self.stop_at:
                self._finish()
                return
            self._send()

    def _fail(self, kind: str) -> None:
        self.errors[kind] += 1
        self._finish()

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.errors["read"] += 1
            self.done.set_result(None)


def percentile(sorted_values: list[int], pct: float) -> float:
    """Nearest-rank percentile, the definition wrk's histogram uses."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


async def run(url: str, body: bytes, connections: int, duration: float) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    latencies: list[int] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    cpu0 = time.process_time()
    start = time.perf_counter_ns()
    stop_at = start + int(duration * 1e9)
    waits = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()

        def client(finished: asyncio.Future[None] = done) -> _Client:
            return _Client(request, stop_at, latencies, errors, finished)

        try:
            await loop.create_connection(client, host, port)
        except OSError:
            errors["connect"] += 1
            continue
        waits.append(done)
    try:
        await asyncio.wait_for(asyncio.gather(*waits), timeout=duration + 10)
    except TimeoutError:
        errors["timeout"] += 1
    elapsed = (time.perf_counter_ns() - start) / 1e9
    latencies.sort()
    micros = [v / 1000.0 for v in latencies]
    return {
        "requests": len(latencies),
        "duration_s": elapsed,
        "requests_per_s": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "errors": errors,
        "client_cpu_s": time.process_time() - cpu0,
        "latency_us": {
            "min": micros[0] if micros else math.nan,
            "p50": percentile(latencies, 50) / 1000.0,
            "p90": percentile(latencies, 90) / 1000.0,
            "p99": percentile(latencies, 99) / 1000.0,
            "p999": percentile(latencies, 99.9) / 1000.0,
            "max": micros[-1] if micros else math.nan,
            "mean": sum(micros) / len(micros) if micros else math.nan,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="closed-loop HTTP/1.1 POST load generator (wrk stand-in)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.url, args.body.encode(), args.connections, args.duration))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
