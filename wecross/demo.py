"""``make demo``: two real router daemons in two zones, linked by mutual TLS, answering across the link.

Everything is made here from nothing: a CA with an intermediate, two router certificates, two configs, two
``twistd wecross`` processes on 127.0.0.1. The client side uses the Python SDK (:mod:`wecross.sdk`), as any user
would: plain HTTP to router-a, HTTPS with alice's client certificate to router-b.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from wecross.sdk import NotFound, Rejected, WeCrossClient, WeCrossError

ROUTERS = {
    "router-a": {"zone": "payment", "chain": "bank-a"},
    "router-b": {"zone": "evidence", "chain": "court"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(router_id: str, p2p: int, rest: int, peer: tuple[str, int] | None, certs: Path,
            rest_tls: bool = False) -> str:
    info = ROUTERS[router_id]
    tls = "tls = true\nrequire_client_cert = true  # users are known by their certificate's CN\n" if rest_tls else ""
    peers = f'peers = [{{ address = "127.0.0.1:{peer[1]}", id = "{peer[0]}" }}]' if peer else "peers = []"
    return f"""# Made by `wecross demo`.
[router]
id = "{router_id}"
zones = ["{info['zone']}"]
data_dir = "data/{router_id}"

[p2p]
listen = "127.0.0.1:{p2p}"
ca = "{certs}/ca.crt"
cert = "{certs}/routers/{router_id}/chain.pem"
key = "{certs}/routers/{router_id}/key.pem"
{peers}

[rest]
listen = "127.0.0.1:{rest}"
{tls}
[timing]
heartbeat_interval = 1.0

[[stubs]]
name = "{info['chain']}"
zone = "{info['zone']}"
type = "embedded"

[[stubs.resources]]
name = "hello"
kind = "kv"

[[stubs.resources]]
name = "asset"
kind = "asset"
initial = {{ alice = 1000, bob = 500 }}
"""


def _wait(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except (WeCrossError, KeyError):  # not listening yet (ConnectionError), or not linked yet
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.2)


def main(keep: bool = False, workdir: str = "data/demo") -> int:
    work = Path(workdir).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    certs = work / "certs"
    from wecross.pki.cli import main as certs_main

    print("== certificates: a CA, one intermediate CA, two routers and a user, alice (wecross certs); each router's "
          "certificate names the chain it may serve (--serves)")
    serves = [arg for rid, info in ROUTERS.items() for arg in ("--serves", f"{rid}={info['zone']}.{info['chain']}")]
    made = io.StringIO()
    with contextlib.redirect_stdout(made):
        status = certs_main(["--out", str(certs), "--intermediates", "1", "--routers", ",".join(ROUTERS),
                             "--clients", "alice", *serves])
    if status != 0:
        print(made.getvalue())
        return 1
    ports = {rid: (_free_port(), _free_port()) for rid in ROUTERS}
    (work / "router-a.toml").write_text(_config("router-a", *ports["router-a"], ("router-b", ports["router-b"][0]),
                                                 certs))
    (work / "router-b.toml").write_text(_config("router-b", *ports["router-b"], None, certs, rest_tls=True))
    twistd = str(Path(sys.executable).parent / "twistd")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for rid in ROUTERS:
            print(f"== starting {rid}: twistd -n wecross --config {work / (rid + '.toml')}")
            processes.append(subprocess.Popen(
                [twistd, "-n", "--pidfile=", f"--logfile={work / (rid + '.log')}", "wecross",
                 "--config", str(work / f"{rid}.toml")],
                cwd=work, stdin=subprocess.DEVNULL,
            ))
        # router-a serves plain HTTP; router-b HTTPS, where alice is known by her client certificate's CN. The
        # REST certificate names the router id while we dial 127.0.0.1: the network's CA is what is checked.
        a = WeCrossClient(f"http://127.0.0.1:{ports['router-a'][1]}")
        b = WeCrossClient(f"https://127.0.0.1:{ports['router-b'][1]}", ca=certs / "ca.crt",
                          cert=certs / "clients" / "alice" / "chain.pem", key=certs / "clients" / "alice" / "key.pem")
        _wait("router-b", b.status)
        _wait("the TLS link between the routers",
              lambda: any(p["state"] == "up" for p in a.peers()) and
              any(r["ipath"] == "evidence.court.hello" and r.get("route") for r in a.resources()) and
              any(r["ipath"] == "payment.bank-a.asset" and r.get("route") for r in b.resources()))
        peer = a.peers()[0]
        print(f"== router-a sees {peer['id']} ({peer['direction']}, zones {peer['zones']}) over mutual TLS")
        print("== resources known to router-a:")
        for row in a.resources():
            where = "here" if row["local"] else "route " + " -> ".join(row.get("route") or ["none yet"])
            print(f"     {row['ipath']:<24} {row['kind']:<6} {where}")
        print("== sendTransaction through router-a to evidence.court.hello (lives on router-b):")
        data = a.send_transaction("evidence.court.hello", "set", "greeting", "hello from the payment zone")
        print(f"     block {data['block_number']}, tx {data['tx_hash'][:16]}..., path {' -> '.join(data['path'])}")
        verified = data.get("verified", {})
        if verified.get("proof"):
            print(f"     verified by router-a: {', '.join(verified['checks'])};")
            print(f"     header {verified['header_hash'][:16]}... linked to the genesis pinned by "
                  f"{verified['trust']['pinned_by']}")
        got = a.call("evidence.court.hello", "get", "greeting")
        print(f"== call get('greeting') through router-a: {got['output']!r} (path {' -> '.join(got['path'])})")
        print("== the other way: alice, known to router-b by her client certificate (HTTPS), pays bob 25 on bank-a:")
        try:
            moved = b.send_transaction("payment.bank-a.asset", "transfer", "bob", 25)
        except WeCrossError as exc:
            print(f"     failed: {exc}")
            return 1
        print(f"     block {moved['block_number']}, path {' -> '.join(moved['path'])}")
        for who in ("alice", "bob"):
            bal = b.call("payment.bank-a.asset", "balanceOf", who)["output"]
            print(f"     {who} now holds {bal} on bank-a")
        try:
            b.send_transaction("payment.bank-a.asset", "transfer", "bob", 10**6)
        except Rejected as exc:
            print(f"== overspending is refused with a clear error: {exc.code}: {exc.message}")
        try:
            a.call("evidence.court.nothing", "get")
        except NotFound as exc:
            print(f"== an unknown resource gets a clear error: {exc.code}: {exc.message}")
        print("== one 2PC transaction, coordinated by router-a, writes on both chains or on neither:")
        with a.transaction(["payment.bank-a.hello", "evidence.court.hello"]) as tx:
            tx.execute("payment.bank-a.hello", "set", "deal", "signed")
            tx.execute("evidence.court.hello", "set", "deal", "signed")
        record = a.get_tx(tx.tx_id)
        blocks = ", ".join(f"{ipath} block {out.get('block_number')}" for ipath, out in record["outcomes"].items())
        print(f"     {record['state']}: {blocks}")
        peer = a.peers()[0]
        print(f"== link health seen by router-a: smoothed RTT {peer['srtt_ms']} ms, loss {peer['loss']}")
        print(f"== REST APIs: {a.target.url('/status')}  {b.target.url('/status')} ; logs in {work}")
        print(f"== web page of the network: {a.target.url('/ui/')}  (metrics: {a.target.url('/metrics')})")
        a.close()
        b.close()
        if keep:
            print("== routers keep running; Ctrl-C stops them")
            while all(p.poll() is None for p in processes):
                time.sleep(1)
        return 0
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if os.environ.get("WECROSS_DEMO_SHOW_LOGS"):
            for rid in ROUTERS:
                print((work / f"{rid}.log").read_text())
