"""What verifying a result costs the entry router, against the same requests unverified, in one run.

Two real routers in this process on 127.0.0.1 with mutual TLS (``tests.support.Network``): router-a, the entry,
and router-b, which serves the embedded chain ``z.ledger``. Cases, interleaved round by round so that load from
elsewhere on the machine hits them alike:

- ``write_verified``: ``sendTransaction set(key, value)`` through router-a, which checks the transaction and
  receipt proofs against the header it trusts (the header chain was linked once, before timing);
- ``write_unverified``: the same with router-a's verifier switched off (``router.trust = None``) and no end-to-end
  signature made or checked anywhere (wecross.attest's sign and verify stubbed out in this process, the entry's
  unsigned-or-unproven refusal bypassed): the baseline;
- ``call_verified`` / ``call_unverified``: ``call balanceOf(alice)`` on the asset, the state proof checked and the
  read replayed over the proven values, or not (the owner builds the proof either way: it cannot know);
- ``getData_verified`` / ``getData_unverified``: ``getData`` of a key on the kv resource, likewise;
- ``check_write_proof`` and ``check_read_proof`` alone on recorded results, repeated: the CPU cost of the checks.

Each request runs closed-loop (one at a time); the table gives the median latency per case and the ratio of the
verified case to the unverified one, and the CPU microseconds of the checks themselves. Goal (issue 5):
verification costs < 20 % (issue 5); with the request and answer signatures of issue 11, verification plus
signatures cost < 25 %.

Run from the repository root: ``.venv/bin/python bench/verify.py`` (about 30 s; ``--quick``: a few seconds).
Prints a table and writes ``bench/results/verify.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, task  # noqa: E402

from bench._common import RESULTS, machine_info, write_results  # noqa: E402
from tests import support  # noqa: E402
from wecross.embedded.verify import check_read_proof, check_write_proof  # noqa: E402
from wecross.facade import Invocation  # noqa: E402
from wecross.ipath import IPath  # noqa: E402

ROUTERS = {"router-a": {"zones": ["z"]}, "router-b": {"zones": ["z"], "chain": "ledger"}}


@defer.inlineCallbacks
def measure(args: argparse.Namespace) -> Any:
    work = Path(tempfile.mkdtemp(prefix="wecross-bench-verify-"))
    net = support.Network(work, ROUTERS, [("router-a", "router-b")])
    yield net.start()
    try:
        yield support.until(lambda: net.linked() and net.nodes["router-a"].router.table.route("z.ledger") is not None,
                            timeout=30)
        entry = net.nodes["router-a"].router
        trust = entry.trust
        counter = iter(range(1 << 30))

        def write() -> Any:
            n = next(counter)
            return entry.invoke(Invocation(IPath.parse("z.ledger.hello"), "sendTransaction", "set", [f"k{n}", n]))

        def call() -> Any:
            return entry.invoke(Invocation(IPath.parse("z.ledger.asset"), "call", "balanceOf", ["alice"]))

        def get() -> Any:
            return entry.invoke(Invocation(IPath.parse("z.ledger.hello"), "getData", "", ["k0"]))

        sample = yield write()  # links the header chain once, outside the timing
        read_sample = yield call()
        kinds = {"write": write, "call": call, "getData": get}
        owner = net.nodes["router-b"].router
        routers = (entry, owner)
        real = [(r.e2e.auth, r.e2e.proven_or_attested, r.e2e.header_signer) for r in routers]

        class Plain:
            """Authenticates nothing: the baseline's stand-in for wecross.attest.Authenticator."""

            def tag(self, *args: Any, **kwargs: Any) -> bytes:
                return b"\x01-"

            def check(self, *args: Any, **kwargs: Any) -> None:
                return None

        def plain(on: bool) -> None:
            """The baseline: nothing verified, nothing signed (patched on these two routers only)."""
            for router, (auth, proven_or_attested, header_signer) in zip(routers, real, strict=True):
                if on:
                    router.e2e.auth, router.e2e.header_signer = Plain(), None  # type: ignore[assignment]
                    router.e2e.proven_or_attested = lambda result, chain: result  # type: ignore[method-assign]
                else:
                    router.e2e.auth, router.e2e.proven_or_attested, router.e2e.header_signer = \
                        auth, proven_or_attested, header_signer

        times: dict[str, list[float]] = {f"{kind}_{mode}": [] for kind in kinds for mode in ("verified", "unverified")}
        for round_ in range(args.rounds):
            modes = ["verified", "unverified"] if round_ % 2 == 0 else ["unverified", "verified"]
            for kind, op in kinds.items():
                for mode in modes:
                    entry.trust = trust if mode == "verified" else None
                    plain(mode != "verified")
                    for _ in range(args.requests):
                        started = time.perf_counter()
                        result = yield op()
                        times[f"{kind}_{mode}"].append(time.perf_counter() - started)
                        if mode == "verified":
                            assert result["verified"]["proof"], result
        entry.trust = trust
        plain(False)
        expected = trust.store.chains["z.ledger"].hash_of(sample["block_number"])
        expected_tx = {"resource": "hello", "method": "set", "args": ["k0", 0], "sender": "anonymous"}
        repeats = args.requests * 20
        cpu0 = time.process_time()
        for _ in range(repeats):
            failed = check_write_proof(sample, expected_header_hash=expected, expected_tx=expected_tx)
            assert failed is None, failed
        check_us = (time.process_time() - cpu0) / repeats * 1e6
        expected = trust.store.chains["z.ledger"].hash_of(read_sample["block_number"])
        expected_read = {"resource": "asset", "op": "call", "method": "balanceOf", "args": ["alice"]}
        cpu0 = time.process_time()
        for _ in range(repeats):
            failed = check_read_proof(read_sample, expected_header_hash=expected, expected_read=expected_read)
            assert failed is None, failed
        check_read_us = (time.process_time() - cpu0) / repeats * 1e6
    finally:
        yield net.stop()
    p50 = {case: statistics.median(values) * 1000 for case, values in times.items()}
    ratios = {kind: p50[f"{kind}_verified"] / p50[f"{kind}_unverified"] for kind in kinds}
    print(f"{'case':<22} {'p50 ms':>8} {'requests':>9}")
    for case, values in times.items():
        print(f"{case:<22} {p50[case]:>8.3f} {len(values):>9}")
    print(f"check_write_proof alone: {check_us:.1f} µs CPU per result; check_read_proof (balanceOf): "
          f"{check_read_us:.1f} µs")
    for kind, ratio in ratios.items():
        print(f"{kind}: verified+signed / plain p50 {ratio:.3f} (goal: verification and signatures cost < 25 %: "
              f"{'met' if ratio < 1.25 else 'MISSED'})")
    ratio = max(ratios.values())
    write_results(RESULTS / "verify.json", {
        "machine": machine_info(), "rounds": args.rounds, "requests_per_round": args.requests,
        "p50_ms": p50, "ratios": ratios, "ratio": ratio, "check_us": check_us, "check_read_us": check_read_us,
        "goal": {"ratio_below": 1.25, "met": ratio < 1.25},
        "samples_ms": {case: [v * 1000 for v in values] for case, values in times.items()},
    })
    print(f"wrote {RESULTS / 'verify.json'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests = 2, 20
    task.react(lambda _reactor: measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
