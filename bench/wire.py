"""How fast the wire codec turns a typical Request into a frame and back, against bare msgpack.

Absolute numbers depend on the machine, so the figure to report is the ratio to a baseline measured in the same run:
``msgpack.packb`` + ``msgpack.unpackb`` of the same field list, with no framing, envelope, validation or dataclass.
The codec's extra cost over that baseline is what our design decisions control.

Run from the repository root: ``.venv/bin/python bench/wire.py`` (takes about 10-20 s). Prints a table and writes
``bench/results/wire.json``.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402

from wecross.wire import FrameDecoder, Request, Response, decode_frame, encode_frame  # noqa: E402

#: Each timed run lasts about this long; every case gets REPEATS runs; the best repeat is the least disturbed one.
TARGET_SECONDS = 0.08
REPEATS = 9
GOAL_FRAMES_PER_SECOND = 200_000


def typical_request() -> Request:
    return Request(
        request_id=bytes(range(16)),
        origin="router-a",
        destination="router-c",
        hop_limit=8,
        deadline_ms=5000,
        path=["router-a", "router-b"],
        op="call",
        ipath="payment.bank-a.hello",
        method="get",
        args=["key-1"],
        sender="alice",
    )


def typical_response() -> Response:
    return Response(
        reply_to=42,
        request_id=bytes(range(16)),
        result={"result": ["value-1"], "block_number": 1234, "tx_hash": "ab" * 32},
        path=["router-c", "router-b"],
    )


def measure_all(cases: dict[str, Callable[[], Any]]) -> dict[str, dict[str, Any]]:
    """Seconds per call for every case: best and median over REPEATS rounds.

    Rounds interleave the cases (baseline, codec, baseline, codec...) so a burst of load from elsewhere on the
    machine hits all of them alike instead of skewing one ratio; the best round is the least disturbed one.
    """
    timers = {name: timeit.Timer(fn) for name, fn in cases.items()}
    numbers = {}
    for name, timer in timers.items():
        number, seconds = timer.autorange()
        numbers[name] = max(1, int(number * TARGET_SECONDS / max(seconds, 1e-9)))
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(REPEATS):
        for name, timer in timers.items():
            runs[name].append(timer.timeit(numbers[name]) / numbers[name])
    return {
        name: {"best_s": min(times), "median_s": statistics.median(times), "calls_per_run": numbers[name]}
        for name, times in runs.items()
    }


def main() -> int:
    started = time.perf_counter()
    request = typical_request()
    response = typical_response()
    request_fields = list(msgpack.unpackb(encode_frame(1, request)[4:])[3])
    response_fields = list(msgpack.unpackb(encode_frame(1, response)[4:])[3])
    request_frame = encode_frame(7, request)
    response_frame = encode_frame(7, response)
    packed_fields = msgpack.packb(request_fields)
    # A frame split across two reads takes the decoder's general loop instead of its one-whole-frame short path.
    request_head, request_tail = request_frame[:50], request_frame[50:]
    decoder = FrameDecoder()
    # The decoder must really decode what we time, not fail fast.
    assert decoder.feed(request_frame)[0].message == request
    assert decoder.feed(response_frame)[0].message == response
    assert not decoder.feed(request_head) and decoder.feed(request_tail)[0].message == request

    cases: dict[str, Callable[[], Any]] = {
        "baseline: packb+unpackb of Request fields": lambda: msgpack.unpackb(msgpack.packb(request_fields)),
        "baseline: packb of Request fields": lambda: msgpack.packb(request_fields),
        "baseline: unpackb of Request fields": lambda: msgpack.unpackb(packed_fields),
        "Request encode_frame": lambda: encode_frame(7, request),
        "Request FrameDecoder.feed": lambda: decoder.feed(request_frame),
        "Request FrameDecoder.feed, frame in 2 chunks": lambda: (
            decoder.feed(request_head),
            decoder.feed(request_tail),
        ),
        "Request decode_frame (no stream)": lambda: decode_frame(request_frame[4:]),
        "Request encode+decode": lambda: decoder.feed(encode_frame(7, request)),
        "Request build+encode+decode": lambda: decoder.feed(encode_frame(7, typical_request())),
        "baseline: packb+unpackb of Response fields": lambda: msgpack.unpackb(msgpack.packb(response_fields)),
        "Response encode+decode": lambda: decoder.feed(encode_frame(7, response)),
    }
    baselines = {
        "Request encode_frame": "baseline: packb of Request fields",
        "Request FrameDecoder.feed": "baseline: unpackb of Request fields",
        "Request FrameDecoder.feed, frame in 2 chunks": "baseline: unpackb of Request fields",
        "Request decode_frame (no stream)": "baseline: unpackb of Request fields",
        "Request encode+decode": "baseline: packb+unpackb of Request fields",
        "Request build+encode+decode": "baseline: packb+unpackb of Request fields",
        "Response encode+decode": "baseline: packb+unpackb of Response fields",
    }
    results = measure_all(cases)
    for name, result in results.items():
        result["frames_per_s"] = 1.0 / result["best_s"]
        if name in baselines:
            result["baseline"] = baselines[name]
            result["ratio_to_baseline"] = result["best_s"] / results[baselines[name]]["best_s"]

    print(f"wire codec, Python {platform.python_version()}, msgpack {msgpack.version}, frame {len(request_frame)} B")
    print(f"{'case':46s} {'µs/op':>8s} {'median':>8s} {'ops/s':>10s} {'x baseline':>11s}")
    for name, result in results.items():
        ratio = f"{result['ratio_to_baseline']:.2f}" if "ratio_to_baseline" in result else "-"
        print(
            f"{name:46s} {result['best_s'] * 1e6:8.2f} {result['median_s'] * 1e6:8.2f} "
            f"{result['frames_per_s']:10,.0f} {ratio:>11s}"
        )
    headline = results["Request encode+decode"]
    meets_goal = headline["frames_per_s"] >= GOAL_FRAMES_PER_SECOND
    print(
        f"\nheadline: Request encode+decode {headline['frames_per_s']:,.0f} frames/s "
        f"({headline['ratio_to_baseline']:.2f}x bare msgpack); goal {GOAL_FRAMES_PER_SECOND:,}/s "
        f"{'met' if meets_goal else 'NOT met on this machine'}"
    )

    out = ROOT / "bench" / "results" / "wire.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "wire",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "msgpack": ".".join(map(str, msgpack.version)),
        "request_frame_bytes": len(request_frame),
        "response_frame_bytes": len(response_frame),
        "goal_frames_per_s": GOAL_FRAMES_PER_SECOND,
        "goal_met": meets_goal,
        "headline_ratio_to_baseline": headline["ratio_to_baseline"],
        "results": results,
        "elapsed_s": time.perf_counter() - started,
    }
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)} in {report['elapsed_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
