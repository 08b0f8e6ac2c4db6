"""What the transaction layer costs and carries: 2PC across two embedded chains behind two routers, against the same
writes done plainly, and an HTLC exchange end to end, in one run.

Two real ``twistd -n wecross`` processes on 127.0.0.1 with mutual TLS: router-a serves ``z.one`` and coordinates,
router-b serves ``z.two``. The coordinator's log is on (``log_sync = FULL``: fsync at every group commit). Each 2PC
transaction is four REST calls to router-a: ``/tx/start``, ``exec`` ``set(key, value)`` on ``z.one.hello``
(local), ``exec`` the same on ``z.two.hello`` (across the link), ``commit`` (both chains write a block). Keys are
distinct per transaction, so nothing waits on a lock.

Cases:

- ``plain_pair``: one client, one after the other: ``sendTransaction set`` on z.one then on z.two (the same two
  writes without a transaction): the baseline;
- ``tx_one``: one client, one 2PC transaction after the other: the latency of a transaction;
- ``tx_throughput``: ``--clients`` concurrent clients (default 64), each running transactions back to back for
  ``--seconds``: committed transactions per second (goal: >= 300 with the log on);
- ``htlc``: one exchange between a party on router-a (z.one) and one on router-b (z.two), each router reading the
  other's lock through the link with its read proof verified: from the initiator's ``/htlc/start`` until both
  routers report it claimed or done. (Plain HTTP REST: both parties are the client identity ``anonymous``, each
  paying from its own chain.)

Each case's median latency, the tx / plain ratio, and the throughput are printed and written to
``bench/results/tx.json``. The client runs in this process on Twisted with persistent HTTP connections; the
routers use both cores, so on a 2-core machine the figures are a floor.

Run from the repository root: ``.venv/bin/python bench/tx.py`` (about a minute; ``--quick``: a few seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, task  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody  # noqa: E402
from twisted.web.http_headers import Headers  # noqa: E402

from bench._common import (  # noqa: E402
    RESULTS,
    BenchError,
    ProcessGroup,
    free_port,
    get_json,
    machine_info,
    make_pki,
    wait_for,
    write_results,
)


def router_config(rid: str, chain: str, ports: dict[str, tuple[int, int]], certs: Path, data: Path,
                  peers: list[str]) -> str:
    p2p, rest = ports[rid]
    peer_list = ", ".join(f'{{ address = "127.0.0.1:{ports[p][0]}", id = "{p}" }}' for p in peers)
    return f"""# Written by bench/tx.py; thrown away after the run.
[router]
id = "{rid}"
zones = ["z"]
data_dir = "{data / rid}"

[p2p]
listen = "127.0.0.1:{p2p}"
ca = "{certs}/ca.crt"
cert = "{certs}/{rid}/chain.pem"
key = "{certs}/{rid}/key.pem"
peers = [{peer_list}]

[rest]
listen = "127.0.0.1:{rest}"

[tx]
log_sync = "FULL"
htlc_interval = 0.05
htlc_margin = 5

[[stubs]]
name = "{chain}"
type = "embedded"
resources = [{{ name = "hello", kind = "kv" }},
             {{ name = "asset", kind = "asset", initial = {{ anonymous = 1000000 }} }}]
"""


class Client:
    def __init__(self, reactor: Any, base: str) -> None:
        self.base = base
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 256
        self.agent = Agent(reactor, pool=pool)

    @defer.inlineCallbacks
    def post(self, path: str, body: Any) -> Any:
        response = yield self.agent.request(b"POST", (self.base + path).encode(),
                                            Headers({b"Content-Type": [b"application/json"]}),
                                            FileBodyProducer(BytesIO(json.dumps(body).encode())))
        answer = json.loads((yield readBody(response)))
        if response.code != 200:
            raise BenchError(f"POST {path}: {response.code} {answer}")
        return answer["data"]

    @defer.inlineCallbacks
    def get(self, path: str) -> Any:
        response = yield self.agent.request(b"GET", (self.base + path).encode())
        return json.loads((yield readBody(response)))["data"]


@defer.inlineCallbacks
def one_tx(client: Client, key: str) -> Any:
    tx = yield client.post("/tx/start", {})
    tx_id = tx["tx_id"]
    yield client.post(f"/tx/{tx_id}/exec", {"path": "z.one.hello", "method": "set", "args": [key, 1]})
    yield client.post(f"/tx/{tx_id}/exec", {"path": "z.two.hello", "method": "set", "args": [key, 1]})
    record = yield client.post(f"/tx/{tx_id}/commit", {})
    if record["state"] != "committed":
        raise BenchError(f"transaction {tx_id} ended {record['state']}")


@defer.inlineCallbacks
def plain_pair(client: Client, key: str) -> Any:
    yield client.post("/z/one/hello/sendTransaction", {"method": "set", "args": [key, 1]})
    yield client.post("/z/two/hello/sendTransaction", {"method": "set", "args": [key, 1]})


@defer.inlineCallbacks
def measure(reactor: Any, args: argparse.Namespace, rest: dict[str, int]) -> Any:
    client = Client(reactor, f"http://127.0.0.1:{rest['router-a']}")
    bob_client = Client(reactor, f"http://127.0.0.1:{rest['router-b']}")
    counter = iter(range(1 << 40))
    yield one_tx(client, "warm")
    yield plain_pair(client, "warm")
    times: dict[str, list[float]] = {"plain_pair": [], "tx_one": []}
    for round_ in range(args.rounds):
        order = [("plain_pair", plain_pair), ("tx_one", one_tx)]
        if round_ % 2:
            order.reverse()
        for case, op in order:
            for _ in range(args.requests):
                started = time.perf_counter()
                yield op(client, f"k{next(counter)}")
                times[case].append(time.perf_counter() - started)

    done = 0
    failed = 0
    stop_at = time.perf_counter() + args.seconds

    @defer.inlineCallbacks
    def worker() -> Any:
        nonlocal done, failed
        while time.perf_counter() < stop_at:
            try:
                yield one_tx(client, f"t{next(counter)}")
                done += 1
            except Exception as exc:  # counted and shown: a benchmark that hides failures measures nothing
                failed += 1
                if failed <= 3:
                    print(f"  a transaction failed: {exc}", file=sys.stderr)

    started = time.perf_counter()
    yield defer.gatherResults([worker() for _ in range(args.clients)])
    elapsed = time.perf_counter() - started
    throughput = done / elapsed

    htlc_times: list[float] = []
    for _ in range(args.htlc):
        started = time.perf_counter()
        alice = yield client.post("/htlc/start", {
            "role": "initiator", "own": {"path": "z.one.asset", "receiver": "anonymous", "amount": 10},
            "other": {"path": "z.two.asset", "sender": "anonymous", "amount": 5}, "timelock": 120, "margin": 5})
        yield bob_client.post("/htlc/start", {
            "role": "participant", "htlc_id": alice["htlc_id"], "hash_lock": alice["hash_lock"],
            "own": {"path": "z.two.asset", "receiver": "anonymous", "amount": 5},
            "other": {"path": "z.one.asset", "sender": "anonymous", "amount": 10}, "timelock": 60, "margin": 5})
        for _ in range(2000):
            a = yield client.get(f"/htlc/{alice['htlc_id']}")
            b = yield bob_client.get(f"/htlc/{alice['htlc_id']}")
            if a["state"] in ("claimed", "done") and b["state"] in ("claimed", "done"):
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        else:
            raise BenchError("the HTLC exchange did not complete")
        htlc_times.append(time.perf_counter() - started)
    return times, throughput, done, failed, elapsed, htlc_times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--htlc", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    # readBody warns about persistent connections' transports; the bench reads every body to its end.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if args.quick:
        args.rounds, args.requests, args.seconds, args.htlc = 2, 10, 4.0, 1
    work = Path(tempfile.mkdtemp(prefix="wecross-bench-tx-"))
    certs = make_pki(work / "certs", ["router-a", "router-b"])
    ports = {rid: (free_port(), free_port()) for rid in ("router-a", "router-b")}
    twistd = str(Path(sys.executable).parent / "twistd")
    with ProcessGroup() as procs:
        for rid, chain, peers in (("router-b", "two", []), ("router-a", "one", ["router-b"])):
            config = work / f"{rid}.toml"
            config.write_text(router_config(rid, chain, ports, certs, work / "data", peers))
            procs.start(rid, [twistd, "-n", "--pidfile=", f"--logfile={work / (rid + '.log')}", "wecross",
                              "--config", str(config)], cwd=work, log=work / f"{rid}.out")

        def routed() -> bool | None:
            procs.check_alive()
            try:
                routes = get_json(f"http://127.0.0.1:{ports['router-a'][1]}/routes")["routes"]
            except Exception:
                return None
            return any(r.get("chain") == "z.two" and r.get("reachable") for r in routes) or None

        wait_for("router-a's route to z.two", routed, 60, procs)
        rest = {rid: ports[rid][1] for rid in ports}
        outcome: dict[str, Any] = {}
        from twisted.internet import reactor

        def run() -> None:
            def finish(value: Any) -> None:
                outcome["value"] = value
                reactor.stop()

            measure(reactor, args, rest).addBoth(finish)

        reactor.callWhenRunning(run)
        reactor.run()
        if isinstance(outcome.get("value"), Failure):
            outcome["value"].raiseException()
    times, throughput, done, failed, elapsed, htlc_times = outcome["value"]
    p50 = {case: statistics.median(values) * 1000 for case, values in times.items()}
    ratio = p50["tx_one"] / p50["plain_pair"]
    print(f"{'case':<16} {'p50 ms':>9} {'samples':>8}")
    for case, values in times.items():
        print(f"{case:<16} {p50[case]:>9.2f} {len(values):>8}")
    htlc_p50 = statistics.median(htlc_times) * 1000 if htlc_times else None
    if htlc_p50 is not None:
        print(f"{'htlc':<16} {htlc_p50:>9.1f} {len(htlc_times):>8}")
    print(f"2PC / plain pair p50: {ratio:.2f}x")
    print(f"tx_throughput: {throughput:.0f} committed tx/s ({done} in {elapsed:.1f} s, {args.clients} clients, "
          f"{failed} failed; goal >= 300: {'met' if throughput >= 300 else 'MISSED'})")
    write_results(RESULTS / "tx.json", {
        "machine": machine_info(), "args": vars(args), "p50_ms": p50, "tx_over_plain": ratio,
        "throughput_tx_per_s": throughput, "committed": done, "failed": failed, "elapsed_s": elapsed,
        "htlc_p50_ms": htlc_p50, "goal": {"throughput_at_least": 300, "met": throughput >= 300},
        "samples_ms": {case: [v * 1000 for v in values] for case, values in times.items()},
    })
    print(f"wrote {RESULTS / 'tx.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
