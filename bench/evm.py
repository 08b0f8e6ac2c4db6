"""What the router adds to an EVM write: ``sendTransaction`` through one router hop against web3 straight to the
node, in one run.

A real anvil (automining) and two real routers in this process over loopback TLS: router-b serves ``z.eth`` with
the EVM stub (the HelloWeCross contract, deployed at start), router-a is the entry. Every case writes
``set(key, "v")`` with a fresh key and returns once the transaction's receipt is in hand. Cases, interleaved round
by round so that drift on a shared machine hits them alike:

- ``web3_direct``: the baseline, the least a client with its own key can do with web3: eth_account signs with
  the chain id, gas limit, fees and nonce it already knows, web3 sends and polls for the receipt
  (``wait_for_transaction_receipt``) -- two JSON-RPC requests when the node mines at once;
- ``raw_direct``: the same two requests with the stub's own signer and HTTP transport (``EvmNode.sign``,
  ``EvmNode.rpc``): the floor. The stub signs and speaks HTTP more cheaply than eth_account and requests do, so
  against ``web3_direct`` the router path gains on that what it spends elsewhere; against ``raw_direct`` only
  what the router adds shows: its third request (gas estimate, fees, nonce), the block and receipts for the
  proofs, the overlay hop and the verification;
- ``web3_like_stub``: web3 doing the work the stub does for it, one request at a time as web3 does: estimate the
  gas (which reports a revert before paying for it), read the base fee and the priority fee, sign, send, poll;
- ``stub_direct``: router-b's stub called in process, no router: what the stub costs alone;
- ``one_hop_verified``: the call through router-a (``router.invoke``, no REST): the overlay to router-b, the stub
  signing and sending, the receipt, the Merkle-Patricia proofs built from the block, and router-a checking them
  against its header store;
- ``one_hop_unverified``: the same with router-a's verifier off (what proofs and checks cost, separately).

Receipts are polled every 10 ms by web3 (``poll_latency``); the stub and ``raw_direct`` start at 10/16 ms and
double up to 10 ms. anvil includes a transaction a moment after its send returns, so the first, immediate poll
sometimes misses it, and a client that then waits a whole interval pays for it.
The table gives the median latency per case, its ratio to ``web3_direct`` and the HTTP requests to the node per
write (a JSON-RPC batch is one). Goal (issue 5): the router adds < 10 % to ``web3_direct``.

Run from the repository root: ``.venv/bin/python bench/evm.py`` (about half a minute; ``--quick``: a few
seconds). Prints a table and writes ``bench/results/evm.json``.
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
CASES = ("web3_direct", "raw_direct", "web3_like_stub", "stub_direct", "one_hop_verified", "one_hop_unverified")
GOAL = 1.1


class NodeRequests:
    """Counts the HTTP requests this process makes: web3 (through requests and urllib3) and the stub (http.client)
    both start each with http.client's ``putrequest``; the routers' overlay is not HTTP."""

    def __init__(self) -> None:
        import http.client

        self.count = 0
        original = http.client.HTTPConnection.putrequest

        def putrequest(this: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(this, *args, **kwargs)

        http.client.HTTPConnection.putrequest = putrequest  # type: ignore[method-assign]


@defer.inlineCallbacks
def measure(args: argparse.Namespace) -> Any:
    from eth_account import Account
    from web3 import Web3

    from wecross.evm.abi import builtin_abi
    from wecross.evm.anvil import Anvil
    from wecross.evm.node import EvmNode
    from wecross.evm.options import EvmOptions

    anvil = yield Anvil().start_in_thread()
    work = Path(tempfile.mkdtemp(prefix="wecross-bench-evm-"))
    router_key, client_key = Account.create(), Account.create()
    for account in (router_key, client_key):
        anvil.set_balance(account.address, 10**22)
    key_file = work / "router.key"
    key_file.write_text(router_key.key.hex() + "\n")
    client_key_file = work / "client.key"
    client_key_file.write_text(client_key.key.hex() + "\n")
    stub = StubConfig("eth", "z", "evm", {"rpc": anvil.url, "private_key_file": str(key_file), "deploy": True,
                                           "poll_interval": POLL}, [{"name": "hello", "kind": "kv"}])
    net = support.Network(work, ROUTERS, [("router-a", "router-b")])
    original = net.settings
    net.settings = lambda rid: (replace(original(rid), stubs=(stub,))  # type: ignore[method-assign]
                                if rid == "router-b" else original(rid))
    yield net.start()
    counter = NodeRequests()
    try:
        yield support.until(lambda: net.linked() and net.nodes["router-a"].router.table.route("z.eth") is not None,
                            timeout=30)
        entry = net.nodes["router-a"].router
        trust = entry.trust
        resource = net.nodes["router-b"].stubs.stubs()["z.eth"].resource("hello")
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        chain_id = w3.eth.chain_id  # a client knows its chain: not asked per write
        abi = builtin_abi("kv")
        function = abi.lookup("bench", "set", ["k", "v"], "write")
        nonce = [w3.eth.get_transaction_count(client_key.address)]
        raw_client = EvmNode("bench", EvmOptions(rpc=anvil.url, private_key_file=str(client_key_file)))
        yield threads.deferToThread(raw_client.open)

        def direct(n: int, like_stub: bool) -> None:
            data, _ = abi.encode("bench", function, [f"d{n}", "v"])
            tx: dict[str, Any] = {"from": client_key.address, "to": resource.address, "data": "0x" + data.hex(),
                                  "value": 0, "chainId": chain_id, "type": 2}
            if like_stub:
                gas = w3.eth.estimate_gas(tx)  # type: ignore[arg-type]
                tip = w3.eth.max_priority_fee
                base = w3.eth.get_block("latest")["baseFeePerGas"]
                tx.update(gas=gas + gas // 5, maxFeePerGas=2 * base + tip, maxPriorityFeePerGas=tip)
            else:
                tx.update(gas=200_000, maxFeePerGas=10**10, maxPriorityFeePerGas=10**9)
            del tx["from"]
            tx["nonce"] = nonce[0]
            nonce[0] += 1
            signed = client_key.sign_transaction(tx)
            sent = w3.eth.send_raw_transaction(signed.raw_transaction)
            w3.eth.wait_for_transaction_receipt(sent, timeout=10, poll_latency=POLL)

        def raw(n: int) -> None:
            data, _ = abi.encode("bench", function, [f"w{n}", "v"])
            tx = {"to": resource.address, "data": "0x" + data.hex(), "value": 0, "chainId": chain_id, "gas": 200_000,
                  "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "nonce": nonce[0]}
            nonce[0] += 1
            sent = raw_client.rpc("eth_sendRawTransaction", "0x" + raw_client.sign(tx).hex())
            deadline, delay = time.monotonic() + 10, POLL / 16  # the stub's polling: short waits first
            while raw_client.rpc("eth_getTransactionReceipt", sent) is None:
                assert time.monotonic() < deadline, "no receipt"
                time.sleep(delay)
                delay = min(2 * delay, POLL)

        keys = iter(range(1 << 30))

        def via_router() -> Any:
            return entry.invoke(Invocation(IPath.parse("z.eth.hello"), "sendTransaction", "set", [f"r{next(keys)}",
                                                                                                   "v"]))

        yield via_router()  # links the header chain once, outside the timing
        times: dict[str, list[float]] = {case: [] for case in CASES}
        requests_made: dict[str, int] = dict.fromkeys(CASES, 0)
        for round_ in range(args.rounds):
            shift = round_ % len(CASES)
            for case in CASES[shift:] + CASES[:shift]:
                entry.trust = None if case == "one_hop_unverified" else trust
                before = counter.count
                for _ in range(args.requests):
                    started = time.perf_counter()
                    if case.startswith("web3_"):
                        yield threads.deferToThread(direct, next(keys), case == "web3_like_stub")
                    elif case == "raw_direct":
                        yield threads.deferToThread(raw, next(keys))
                    elif case == "stub_direct":
                        yield resource.send_transaction("set", [f"s{next(keys)}", "v"], "bench")
                    else:
                        result = yield via_router()
                        assert case != "one_hop_verified" or result["verified"]["proof"], result
                    times[case].append(time.perf_counter() - started)
                requests_made[case] += counter.count - before
        entry.trust = trust
        raw_client.close()
    finally:
        yield net.stop()
        anvil.stop()
    writes = args.rounds * args.requests
    medians = {case: statistics.median(values) * 1000 for case, values in times.items()}
    per_write = {case: requests_made[case] / writes for case in CASES}
    base = medians["web3_direct"]
    print(f"{'case':<20} {'p50 ms':>8} {'x web3':>7} {'node requests':>14}")  # per write
    for case in CASES:
        print(f"{case:<20} {medians[case]:>8.2f} {medians[case] / base:>7.2f} {per_write[case]:>14.1f}")
    ratio = medians["one_hop_verified"] / base
    floor = medians["one_hop_verified"] / medians["raw_direct"]
    print(f"router path vs web3_direct: {100 * (ratio - 1):+.0f} % (goal < +{100 * (GOAL - 1):.0f} %: "
          f"{'met' if ratio < GOAL else 'MISSED'}); vs raw_direct (same signer and transport): "
          f"{100 * (floor - 1):+.0f} %; vs web3_like_stub: "
          f"{100 * (medians['one_hop_verified'] / medians['web3_like_stub'] - 1):+.0f} %")
    write_results(RESULTS / "evm.json", {
        "machine": machine_info(), "rounds": args.rounds, "requests_per_round": args.requests, "p50_ms": medians,
        "node_requests_per_write": per_write,
        "ratio_verified": ratio, "ratio_unverified": medians["one_hop_unverified"] / base,
        "ratio_verified_to_raw_direct": floor,
        "ratio_verified_to_web3_like_stub": medians["one_hop_verified"] / medians["web3_like_stub"],
        "goal": {"ratio_below": GOAL, "met": ratio < GOAL},
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
