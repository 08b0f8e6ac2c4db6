"""What the REST layer costs per request inside one process, without sockets, TLS, a reactor loop or a real router.

``bench/forward.py`` measures whole processes on a noisy shared machine, where a 20 µs change in the REST layer is
lost in the spread. This script feeds raw HTTP/1.1 keep-alive requests straight into the Site's protocol on an
in-memory transport, so it times exactly the code between "bytes arrived" and "answer written": twisted.web's
parsing and Request object, :mod:`wecross.rest` (routing, JSON body, Invocation, answer) and the response headers.

Cases (all ``POST /payment/bank-a/hello/call {"method": "get", "args": ["k"]}``, the request of forward.py, unless
named otherwise):

- ``twisted_floor``: the baseline, measured in the same run. A bare twisted.web Site whose leaf resource answers
  every request with a fixed JSON body of the same size and the same headers. What twisted.web costs by itself.
- ``rest_sync``: the REST Site; the fake router answers at once (a local chain served from memory).
- ``rest_deferred``: the REST Site; the fake router answers after the request has been handed over (a forwarded
  call: the answer comes back later from a peer link), so every Deferred step runs as in router-a.
- ``rest_get_status``: ``GET /status`` on the REST Site.
- ``render_only``: ``RestApi.render`` on a ready-made request object (no HTTP parsing, no header writing).
- ``success_body``: the JSON envelope of the typical result alone; ``success_body_bytes``: the same with a bytes
  value inside (mapped to ``"0x..."`` by the C encoder's default hook); ``success_body_nan``: with a NaN inside,
  which the C encoder refuses, so the whole result is walked by ``to_json_value`` (the slow, documented mapping).

Times are this process's CPU time (``time.process_time``, so waiting for a CPU on a shared machine does not count),
with the garbage collector on as in a router: reference cycles left per request are part of the cost. Each case
runs ``REPEATS`` timed runs, interleaved round by round with the other cases; the table shows the best (least
disturbed) and the median, in µs per request, and the ratio of the best to the floor's best. Run from the
repository root:
``.venv/bin/python bench/rest_micro.py`` (about 10 s). Prints a table and writes ``bench/results/rest_micro.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.defer import Deferred, succeed  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.web.resource import Resource  # noqa: E402
from twisted.web.server import Site  # noqa: E402

import twisted  # noqa: E402
from wecross.facade import Invocation  # noqa: E402
from wecross.rest import make_site  # noqa: E402
from wecross.rest.api import RestApi, new_counters  # noqa: E402
from wecross.rest.json_body import success_body  # noqa: E402

REPEATS = 7
TARGET_SECONDS = 0.15

BODY = b'{"method": "get", "args": ["k"]}'
CALL = (b"POST /payment/bank-a/hello/call HTTP/1.1\r\nHost: 127.0.0.1:8250\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
STATUS = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1:8250\r\n\r\n"
RESULT: dict[str, Any] = {"output": "value-of-k", "router": "router-b", "path": ["router-a", "router-b"]}
RESULT_BYTES: dict[str, Any] = {"output": b"\xde\xad\xbe\xef", "receipt": {"gas": 21000},
                                "router": "router-b", "path": ["router-a", "router-b"]}
RESULT_NAN: dict[str, Any] = {"output": "value-of-k", "receipt": {"gas": float("nan")},
                              "router": "router-b", "path": ["router-a", "router-b"]}


class NullTransport(StringTransport):
    """Keeps only the last answer, so a long run does not grow a buffer; the host address is a stored value."""

    def __init__(self) -> None:
        super().__init__(hostAddress=IPv4Address("TCP", "127.0.0.1", 8250),
                         peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.last: list[bytes] = []
        self.answers = 0

    def write(self, data: bytes) -> None:
        self.last.append(data)

    def writeSequence(self, data: Any) -> None:
        self.answers += 1
        self.last = list(data)


class FakeRouter:
    """Answers every invocation with one result, at once or after the request has been handed over."""

    def __init__(self, result: dict[str, Any], later: bool) -> None:
        self.result = result
        self.later = later
        self.waiting: list[Deferred[dict[str, Any]]] = []

    def status(self) -> dict[str, Any]:
        return {"router": "router-a", "zones": ["payment"], "version": "0.1.0", "uptime_s": 12.5,
                "counters": {"requests": 10, "errors": 0}}

    def peers(self) -> list[dict[str, Any]]:
        return []

    def resources(self) -> list[dict[str, Any]]:
        return []

    def invoke(self, invocation: Invocation) -> Deferred[dict[str, Any]]:
        if not self.later:
            return succeed(self.result)
        d: Deferred[dict[str, Any]] = Deferred()
        self.waiting.append(d)
        return d

    def release(self) -> None:
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(self.result)


class Floor(Resource):
    """The least a twisted.web leaf resource can do for a JSON answer: fixed bytes, the same headers."""

    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def render(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return self.body


class FloorSite(Site):
    """No access log and no form parsing, as in RestSite, so the floor pays for nothing the REST Site skips."""

    def __init__(self, body: bytes) -> None:
        super().__init__(Floor(body), parsePOSTFormSubmission=False, reactor=Clock())

    def log(self, request: Any) -> None:
        pass


def _connect(site: Site) -> tuple[Any, NullTransport]:
    transport = NullTransport()
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.makeConnection(transport)
    return protocol, transport


Case = tuple[Callable[[int], None], Callable[[], bytes]]


def http_case(site: Site, raw: bytes, router: FakeRouter | None = None) -> Case:
    """A timed loop feeding ``raw`` to one keep-alive connection, and a function returning the last answer."""
    protocol, transport = _connect(site)
    feed = protocol.dataReceived
    release = router.release if router is not None and router.later else None

    def loop(n: int) -> None:
        if release is None:
            for _ in range(n):
                feed(raw)
        else:
            for _ in range(n):
                feed(raw)
                release()

    def last() -> bytes:
        return b"".join(transport.last)

    return loop, last


class _LeanRequest:
    """Just what RestApi reads and writes, so render_only times the resource and not a test double."""

    def __init__(self, body: bytes) -> None:
        from twisted.web.http_headers import Headers

        self.method = b"POST"
        self.uri = b"/payment/bank-a/hello/call"
        self.postpath = [b"payment", b"bank-a", b"hello", b"call"]
        self.args: dict[bytes, list[bytes]] = {}
        self.content = BytesIO(body)
        self.requestHeaders = Headers({b"Content-Type": [b"application/json"]})
        self.responseHeaders = Headers()
        self.transport = None
        self.code = 200
        self.written: list[bytes] = []
        self.finished = 0
        self._disconnected = False

    def getHeader(self, name: bytes) -> bytes | None:
        values = self.requestHeaders.getRawHeaders(name)
        return values[-1] if values else None

    def notifyFinish(self) -> Deferred[None]:
        return Deferred()

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.responseHeaders.setRawHeaders(name, [value])

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def finish(self) -> None:
        self.finished = 1


def render_case() -> Case:
    api = RestApi(FakeRouter(RESULT, later=False), counters=new_counters())  # type: ignore[arg-type]
    state: dict[str, Any] = {}

    def loop(n: int) -> None:
        for _ in range(n):
            request = _LeanRequest(BODY)
            api.render(request)  # type: ignore[arg-type]
            state["last"] = request

    def last() -> bytes:
        request = state["last"]
        return b"".join(request.written)

    return loop, last


def call_case(function: Callable[[], object]) -> Case:
    out: dict[str, Any] = {}

    def loop(n: int) -> None:
        for _ in range(n):
            out["v"] = function()

    return loop, lambda: out["v"]


def calibrate(loop: Callable[[int], None]) -> int:
    """How many iterations make one timed run last about TARGET_SECONDS."""
    loop(200)  # warm up: caches, first-call paths
    n = 200
    while True:
        start = time.process_time()
        loop(n)
        spent = time.process_time() - start
        if spent > TARGET_SECONDS / 4:
            return max(200, int(n * TARGET_SECONDS / spent))
        n *= 2


def time_run(loop: Callable[[int], None], n: int) -> float:
    """µs per iteration over one run of ``n`` iterations."""
    gc.collect()  # each run starts from the same heap; the collector stays on, as in a router
    start = time.process_time()
    loop(n)
    return 1e6 * (time.process_time() - start) / n


def check(name: str, answer: bytes, expect: dict[str, Any] | None) -> None:
    if expect is None:
        return
    head, _, body = answer.partition(b"\r\n\r\n") if answer.startswith(b"HTTP/") else (b"", b"", answer)
    if head and not head.startswith(b"HTTP/1.1 200 "):
        raise SystemExit(f"{name}: unexpected answer {answer[:200]!r}")
    got = json.loads(body)
    if got != expect:
        raise SystemExit(f"{name}: answered {got!r}, expected {expect!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "rest_micro.json")
    args = parser.parse_args(argv)

    sync_router = FakeRouter(RESULT, later=False)
    later_router = FakeRouter(RESULT, later=True)
    envelope = {"ok": True, "data": RESULT}
    floor_body = json.dumps(envelope, separators=(",", ":")).encode() + b"\n"
    cases: list[tuple[str, Case, dict[str, Any] | None]] = [
        ("twisted_floor", http_case(FloorSite(floor_body), CALL), envelope),
        ("rest_sync", http_case(make_site(sync_router, reactor=Clock()), CALL, sync_router), envelope),
        ("rest_deferred", http_case(make_site(later_router, reactor=Clock()), CALL, later_router), envelope),
        ("rest_get_status", http_case(make_site(sync_router, reactor=Clock()), STATUS),
         {"ok": True, "data": sync_router.status()}),
        ("render_only", render_case(), envelope),
        ("success_body", call_case(lambda: success_body(RESULT)), envelope),
        ("success_body_bytes", call_case(lambda: success_body(RESULT_BYTES)),
         {"ok": True, "data": dict(RESULT_BYTES, output="0xdeadbeef")}),
        ("success_body_nan", call_case(lambda: success_body(RESULT_NAN)),
         {"ok": True, "data": dict(RESULT_NAN, receipt={"gas": None})}),
    ]
    sizes = {}
    for name, (loop, last), expect in cases:
        loop(1)
        check(name, last(), expect)
        sizes[name] = calibrate(loop)
    runs: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(args.repeats):  # round by round, so a burst of load from elsewhere hits every case alike
        for name, (loop, _), _ in cases:
            runs[name].append(time_run(loop, sizes[name]))
    rows: dict[str, Any] = {
        name: {"best_us": min(figures), "median_us": statistics.median(figures), "runs_us": figures}
        for name, figures in runs.items()
    }
    floor = rows["twisted_floor"]["best_us"]
    for row in rows.values():
        row["x_floor"] = row["best_us"] / floor
    rows_rest = rows["rest_deferred"]["best_us"] - floor
    result = {
        "benchmark": "rest_micro",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"python": platform.python_version(), "twisted": twisted.__version__,
                    "platform": platform.platform(), "processor": platform.processor() or platform.machine()},
        "settings": {"repeats": args.repeats, "target_seconds_per_run": TARGET_SECONDS},
        "request": {"raw": CALL.decode()},
        "cases": rows,
        "headline": {"rest_deferred_over_floor_us": rows_rest,
                     "rest_deferred_x_floor": rows["rest_deferred"]["x_floor"]},
    }
    print(f"{'case':<20} {'best µs':>9} {'median µs':>10} {'x floor':>8}")
    for name, row in rows.items():
        print(f"{name:<20} {row['best_us']:9.1f} {row['median_us']:10.1f} {row['x_floor']:8.2f}")
    print(f"\nREST layer over the twisted.web floor (rest_deferred - twisted_floor): {rows_rest:.1f} µs per request")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
