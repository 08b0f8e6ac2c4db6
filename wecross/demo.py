"""``make demo``: two real router daemons in two zones, linked by mutual TLS, answering across the link.

Everything is made here from nothing: a CA with an intermediate, two router certificates, two configs, two
``twistd wecross`` processes on 127.0.0.1. The client side talks plain REST, as any user would.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

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


_TLS: ssl.SSLContext | None = None


def _post(base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10, context=_TLS) as response:
            reply: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        reply = json.loads(exc.read())
    return reply


def _get(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=5, context=_TLS) as response:
        return json.loads(response.read())["data"]


def _wait(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError, KeyError):
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

    print("== certificates: a CA, one intermediate CA, two routers and a user, alice (wecross certs)")
    made = io.StringIO()
    with contextlib.redirect_stdout(made):
        status = certs_main(["--out", str(certs), "--intermediates", "1", "--routers", "router-a,router-b",
                             "--clients", "alice"])
    if status != 0:
        print(made.getvalue())
        return 1
    global _TLS
    _TLS = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    _TLS.load_cert_chain(certs / "clients" / "alice" / "chain.pem", certs / "clients" / "alice" / "key.pem")
    _TLS.check_hostname = False  # the REST certificate names the router id, we dial 127.0.0.1
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
        a = f"http://127.0.0.1:{ports['router-a'][1]}"
        b = f"https://127.0.0.1:{ports['router-b'][1]}"
        _wait("router-b", lambda: _get(b, "/status"))
        _wait("the TLS link between the routers",
              lambda: any(p["state"] == "up" for p in _get(a, "/peers")) and
              any(r["ipath"] == "evidence.court.hello" and r.get("route") for r in _get(a, "/resources")) and
              any(r["ipath"] == "payment.bank-a.asset" and r.get("route") for r in _get(b, "/resources")))
        peer = _get(a, "/peers")[0]
        print(f"== router-a sees {peer['id']} ({peer['direction']}, zones {peer['zones']}) over mutual TLS")
        print("== resources known to router-a:")
        for row in _get(a, "/resources"):
            where = "here" if row["local"] else "route " + " -> ".join(row["route"] or ["none yet"])
            print(f"     {row['ipath']:<24} {row['kind']:<6} {where}")
        print("== sendTransaction through router-a to evidence.court.hello (lives on router-b):")
        sent = _post(a, "/evidence/court/hello/sendTransaction",
                     {"method": "set", "args": ["greeting", "hello from the payment zone"]})
        data = sent["data"]
        print(f"     block {data['block_number']}, tx {data['tx_hash'][:16]}..., path {' -> '.join(data['path'])}")
        verified = data.get("verified", {})
        if verified.get("proof"):
            print(f"     verified by router-a: {', '.join(verified['checks'])};")
            print(f"     header {verified['header_hash'][:16]}... linked to the genesis pinned by "
                  f"{verified['trust']['pinned_by']}")
        got = _post(a, "/evidence/court/hello/call", {"method": "get", "args": ["greeting"]})["data"]
        print(f"== call get('greeting') through router-a: {got['output']!r} (path {' -> '.join(got['path'])})")
        print("== the other way: alice, known to router-b by her client certificate (HTTPS), pays bob 25 on bank-a:")
        moved = _post(b, "/payment/bank-a/asset/sendTransaction", {"method": "transfer", "args": ["bob", 25]})
        if "error" in moved:
            print(f"     failed: {moved['error']}")
            return 1
        print(f"     block {moved['data']['block_number']}, path {' -> '.join(moved['data']['path'])}")
        for who in ("alice", "bob"):
            bal = _post(b, "/payment/bank-a/asset/call", {"method": "balanceOf", "args": [who]})["data"]["output"]
            print(f"     {who} now holds {bal} on bank-a")
        broke = _post(b, "/payment/bank-a/asset/sendTransaction", {"method": "transfer", "args": ["bob", 10**6]})
        print(f"== overspending is refused with a clear error: {broke['error']['code']}: {broke['error']['message']}")
        bad = _post(a, "/evidence/court/nothing/call", {"method": "get", "args": []})
        print(f"== an unknown resource gets a clear error: {bad['error']['code']}: {bad['error']['message']}")
        peer = _get(a, "/peers")[0]
        print(f"== link health seen by router-a: smoothed RTT {peer['srtt_ms']} ms, loss {peer['loss']}")
        print(f"== REST APIs: {a}/status  {b}/status ; logs in {work}")
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
