"""What the router adds to an EVM write: ``sendTransaction`` through one router hop against web3 straight to the
node, in one run.

A real anvil (automining) and two real routers in this process over loopback TLS: router-b serves ``z.eth`` with
the EVM stub (the HelloWeCross contract, deployed at start), router-a is the entry. Cases, interleaved round by
round:

- ``web3_direct``: the baseline: web3 signs ``set(key, value)``, sends it and polls for the receipt, as a client
  with its own key would (on a thread, like the stub);
- ``one_hop_verified``: the same call through router-a: REST-less ``router.invoke``, the overlay to router-b, the
  stub signing and sending, the receipt, the Merkle-Patricia proofs built from the block, and router-a checking
  them against its header store;
- ``one_hop_unverified``: the same with router-a's verifier off (what proofs and checks cost, separately).

Both sides poll for receipts every 10 ms. The table gives median latency per case and the ratios to web3_direct.
Goal (issue 5): the router adds < 10 %.

Run from the repository root: ``.venv/bin/python bench/evm.py`` (about a minute; ``--quick``: a few seconds).
Prints a table and writes ``bench/results/evm.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, task, threads  # noqa: E402

from bench._common import RESULTS, machine_info, write_results  # noqa: E402
from tests import support  # noqa: E402
from wecross.config import StubConfig  # noqa: E402
from wecross.facade import Invocation  # noqa: E402
from wecross.ipath import IPath  # noqa: E402

ROUTERS = {"router-a": {"zones": ["z"]}, "router-b": {"zones": ["z"]}}
POLL = 0.01


@defer.inlineCallbacks
def measure(args: argparse.Namespace) -> Any:
    from eth_account import Account
    from web3 import Web3

    from wecross.evm.anvil import Anvil
    from wecross.evm.stub import builtin_abi

    anvil = yield Anvil().start_in_thread()
    work = Path(tempfile.mkdtemp(prefix="wecross-bench-evm-"))
    router_key, client_key = Account.create(), Account.create()
    for account in (router_key, client_key):
        anvil.set_balance(account.address, 10**22)
    key_file = work / "router.key"
    key_file.write_text(router_key.key.hex() + "\n")
    stub = StubConfig("eth", "z", "evm", {"rpc": anvil.url, "private_key_file": str(key_file), "deploy": True,
                                           "poll_interval": POLL}, [{"name": "hello", "kind": "kv"}])
    net = support.Network(work, ROUTERS, [("router-a", "router-b")])
    original = net.settings
    net.settings = lambda rid: (replace(original(rid), stubs=(stub,))  # type: ignore[method-assign]
                                if rid == "router-b" else original(rid))
    yield net.start()
    try:
        yield support.until(lambda: net.linked() and net.nodes["router-a"].router.table.route("z.eth") is not None,
                            timeout=30)
        entry = net.nodes["router-a"].router
        trust = entry.trust
        resource = net.nodes["router-b"].stubs.stubs()["z.eth"].resource("hello")
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        abi = builtin_abi("kv")
        function = abi.lookup("bench", "set", ["k", "v"], "write")
        nonce = [w3.eth.get_transaction_count(client_key.address)]

        def direct(n: int) -> None:
            data, _ = abi.encode("bench", function, [f"d{n}", "v"])
            tx = {"to": resource.address, "data": "0x" + data.hex(), "value": 0, "nonce": nonce[0], "gas": 200_000,
                  "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "chainId": w3.eth.chain_id, "type": 2}
            nonce[0] += 1
            signed = client_key.sign_transaction(tx)
            sent = w3.eth.send_raw_transaction(signed.raw_transaction)
            w3.eth.wait_for_transaction_receipt(sent, timeout=10, poll_latency=POLL)

        counter = iter(range(1 << 30))

        def via_router() -> Any:
            n = next(counter)
            return entry.invoke(Invocation(IPath.parse("z.eth.hello"), "sendTransaction", "set", [f"r{n}", "v"]))

        yield via_router()  # links the header chain once, outside the timing
        cases = ("web3_direct", "one_hop_verified", "one_hop_unverified")
        times: dict[str, list[float]] = {case: [] for case in cases}
        for round_ in range(args.rounds):
            order = cases[round_ % 3:] + cases[:round_ % 3]
            for case in order:
                entry.trust = None if case == "one_hop_unverified" else trust
                for _ in range(args.requests):
                    started = time.perf_counter()
                    if case == "web3_direct":
                        yield threads.deferToThread(direct, next(counter))
                    else:
                        result = yield via_router()
                        assert case != "one_hop_verified" or result["verified"]["proof"], result
                    times[case].append(time.perf_counter() - started)
        entry.trust = trust
    finally:
        yield net.stop()
        anvil.stop()
    medians = {case: statistics.median(values) * 1000 for case, values in times.items()}
    base = medians["web3_direct"]
    print(f"{'case':<22} {'p50 ms':>8} {'x web3':>7}")
    for case in cases:
        print(f"{case:<22} {medians[case]:>8.2f} {medians[case] / base:>7.2f}")
    ratio = medians["one_hop_verified"] / base
    print(f"router adds {100 * (ratio - 1):.0f} % (goal < 10 %: {'met' if ratio < 1.1 else 'MISSED'})")
    write_results(RESULTS / "evm.json", {
        "machine": machine_info(), "rounds": args.rounds, "requests_per_round": args.requests, "p50_ms": medians,
        "ratio_verified": ratio, "ratio_unverified": medians["one_hop_unverified"] / base,
        "goal": {"ratio_below": 1.1, "met": ratio < 1.1},
        "samples_ms": {case: [v * 1000 for v in values] for case, values in times.items()},
    })
    print(f"wrote {RESULTS / 'evm.json'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests = 3, 10
    task.react(lambda _reactor: measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
