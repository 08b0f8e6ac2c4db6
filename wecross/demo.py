"""``make demo``: two real router daemons in two zones, linked by mutual TLS, answering across the link, and
governed by one ACL file.

Everything is made here from nothing: a CA with an intermediate, two router certificates, three user certificates
(alice, bob, auditor), an ACL file, two configs, two ``twistd wecross`` processes on 127.0.0.1. The client side
uses the Python SDK (:mod:`wecross.sdk`), as any user would: HTTPS with the user's client certificate, since both
routers require one; who a caller is comes from that certificate, never from what the caller says.

The ACL denies by default (docs/governance.md), so every step of the demo runs only because a rule of
:data:`ACL` grants it, and the governance steps show the three sides of it: alice's transfer is allowed, bob's
write to the court's chain is refused with ``403 forbidden`` naming the missing grant, and the auditor reads both
in the audit trail.
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

from wecross.sdk import NotFound, PermissionDenied, Rejected, WeCrossClient, WeCrossError

ROUTERS = {
    "router-a": {"zone": "payment", "chain": "bank-a"},
    "router-b": {"zone": "evidence", "chain": "court"},
}
USERS = ("alice", "bob", "auditor")

#: The demo network's permissions (written to <workdir>/acl.toml, read by both routers, reloaded without a
#: restart). Deny by default: what no rule grants is refused.
ACL = """# Made by `wecross demo`: who may do what on the demo network (docs/governance.md).
# Deny by default: a request is allowed only when a rule below grants it.
[acl_settings]
default = "deny"

[roles]
auditor = ["user:auditor"]      # reads the audit trail (GET /audit)

[[acl]]
name = "alice-on-bank-a"        # alice transfers on bank-a (and reads it)
who = "user:alice"
resources = ["payment.bank-a.*"]
interfaces = ["read", "write"]
effect = "allow"

[[acl]]
name = "alice-reads-everything"
who = "user:alice"
resources = ["*.*.*"]
interfaces = ["read"]
effect = "allow"

[[acl]]
name = "alice-posts-court-notices"   # the one court resource alice may write: its notice board
who = "user:alice"
resources = ["evidence.court.hello"]
interfaces = ["write"]
effect = "allow"

[[acl]]
name = "alice-runs-transactions"     # 2PC across both chains; tx.adopt stays an admin's act
who = "user:alice"
resources = ["*"]
interfaces = ["tx.start", "tx.exec", "tx.commit", "tx.rollback", "tx.read"]
effect = "allow"

[[acl]]
name = "bob-reads-court"        # read, and nothing else: no rule lets bob write to the court's chain
who = "user:bob"
resources = ["evidence.court.*"]
interfaces = ["read"]
effect = "allow"

[[acl]]
name = "auditors-read-the-trail"
who = "role:auditor"
resources = ["*"]
interfaces = ["audit.read"]
effect = "allow"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(router_id: str, p2p: int, rest: int, peer: tuple[str, int] | None, certs: Path) -> str:
    info = ROUTERS[router_id]
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
tls = true
require_client_cert = true  # users are known by their certificate (CN, O)

[governance]
acl_file = "acl.toml"       # next to this file; reloaded without a restart

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


#: The routers' processes and log files, once started: a wait gives up at once when one of them has exited.
_STARTED: list[tuple[subprocess.Popen[bytes], Path]] = []


def _wait(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        for proc, logfile in _STARTED:
            if proc.poll() is not None:
                raise SystemExit(f"demo: a router exited (status {proc.returncode}) while waiting for {what}; "
                                 f"see {logfile}")
        try:
            value = check()
            if value:
                return value
        except (WeCrossError, KeyError):  # not listening yet (ConnectionError), or not linked yet
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.2)


def _client(url: str, certs: Path, user: str) -> WeCrossClient:
    """An SDK client speaking HTTPS as ``user`` (its client certificate); the REST certificate names the router id
    while we dial 127.0.0.1: the network's CA is what is checked."""
    home = certs / "clients" / user
    return WeCrossClient(url, ca=certs / "ca.crt", cert=home / "chain.pem", key=home / "key.pem")


def _show_rules() -> None:
    import tomllib

    document = tomllib.loads(ACL)
    print(f"     default {document['acl_settings']['default']}; roles: "
          + "; ".join(f"{role} = {', '.join(who)}" for role, who in document["roles"].items()))
    for rule in document["acl"]:
        print(f"     {rule['effect']:<5} {rule['name']:<26} {rule['who']:<13} {', '.join(rule['interfaces'])} "
              f"on {', '.join(rule['resources'])}")


def _audit_lines(records: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in records:
        who = str(r.get("initiator")) + (f"@{r['org']}" if r.get("org") else "")
        where = f" block {r['block']}" if r.get("block") is not None else ""
        lines.append(f"     #{r.get('seq')} {who} via {r.get('entry_router')}: {r.get('interface')} {r.get('ipath')} "
                     f"{r.get('method') or ''} -> {r.get('outcome')}{where}")
    return lines


def _auditor_reads(auditor: WeCrossClient, router_id: str) -> None:
    """The auditor reads router_id's trail over HTTPS (GET /audit, interface audit.read), with its certificate."""

    def records() -> list[dict[str, Any]] | None:
        page = auditor.audit(interface="sendTransaction", limit=1000)
        mine = [dict(r) for r in page.get("records", []) if r.get("initiator") in ("alice", "bob")]
        # Records are written just after the answers: wait until bob's refusal is in.
        return mine if any(r.get("outcome") == "forbidden" for r in mine) else None

    found = _wait("the audit records", records, timeout=15.0)
    print(f"== the auditor (role auditor, from the ACL's [roles]) reads {router_id}'s audit trail over HTTPS: "
          f"GET /audit?interface=sendTransaction")
    for line in _audit_lines(found):
        print(line)


def main(keep: bool = False, workdir: str = "data/demo") -> int:
    work = Path(workdir).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    certs = work / "certs"
    from wecross.pki.cli import main as certs_main

    print("== certificates: a CA, one intermediate CA, two routers and three users, alice, bob and auditor "
          "(wecross certs); each router's certificate names the chain it may serve (--serves)")
    serves = [arg for rid, info in ROUTERS.items() for arg in ("--serves", f"{rid}={info['zone']}.{info['chain']}")]
    made = io.StringIO()
    with contextlib.redirect_stdout(made):
        status = certs_main(["--out", str(certs), "--intermediates", "1", "--routers", ",".join(ROUTERS),
                             "--clients", ",".join(USERS), *serves])
    if status != 0:
        print(made.getvalue())
        return 1
    (work / "acl.toml").write_text(ACL)
    print(f"== permissions: {work / 'acl.toml'}, read by both routers ([governance] acl_file), deny by default:")
    _show_rules()
    ports = {rid: (_free_port(), _free_port()) for rid in ROUTERS}
    (work / "router-a.toml").write_text(_config("router-a", *ports["router-a"], ("router-b", ports["router-b"][0]),
                                                 certs))
    (work / "router-b.toml").write_text(_config("router-b", *ports["router-b"], None, certs))
    twistd = str(Path(sys.executable).parent / "twistd")
    processes: list[subprocess.Popen[bytes]] = []
    clients: list[WeCrossClient] = []
    _STARTED.clear()
    try:
        for rid in ROUTERS:
            print(f"== starting {rid}: twistd -n wecross --config {work / (rid + '.toml')}")
            processes.append(subprocess.Popen(
                [twistd, "-n", "--pidfile=", f"--logfile={work / (rid + '.log')}", "wecross",
                 "--config", str(work / f"{rid}.toml")],
                cwd=work, stdin=subprocess.DEVNULL,
            ))
            _STARTED.append((processes[-1], work / f"{rid}.log"))
        # Both routers serve HTTPS and require a client certificate: every caller is a user the CA vouches for.
        url = {rid: f"https://127.0.0.1:{ports[rid][1]}" for rid in ROUTERS}
        a, b = _client(url["router-a"], certs, "alice"), _client(url["router-b"], certs, "alice")
        bob_a, bob_b = _client(url["router-a"], certs, "bob"), _client(url["router-b"], certs, "bob")
        auditor = _client(url["router-a"], certs, "auditor")
        clients += [a, b, bob_a, bob_b, auditor]
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
        print("== alice: sendTransaction through router-a to evidence.court.hello (lives on router-b; "
              "rule alice-posts-court-notices):")
        data = a.send_transaction("evidence.court.hello", "set", "greeting", "hello from the payment zone")
        print(f"     block {data['block_number']}, tx {data['tx_hash'][:16]}..., path {' -> '.join(data['path'])}")
        verified = data.get("verified", {})
        if verified.get("proof"):
            print(f"     verified by router-a: {', '.join(verified['checks'])};")
            print(f"     header {verified['header_hash'][:16]}... linked to the genesis pinned by "
                  f"{verified['trust']['pinned_by']}")
        got = a.call("evidence.court.hello", "get", "greeting")
        print(f"== call get('greeting') through router-a: {got['output']!r} (path {' -> '.join(got['path'])})")
        try:
            a.call("evidence.court.nothing", "get")
        except NotFound as exc:
            print(f"== an unknown resource gets a clear error: {exc.code}: {exc.message}")
        print("== one 2PC transaction, coordinated by router-a, writes on both chains or on neither:")
        with a.transaction(["payment.bank-a.hello", "evidence.court.hello"]) as tx:
            tx.execute("payment.bank-a.hello", "set", "deal", "signed")
            tx.execute("evidence.court.hello", "set", "deal", "signed")
        record = a.get_tx(tx.tx_id)
        outcomes = sorted(record["outcomes"].items())
        blocks = ", ".join(f"{ipath} block {out.get('block_number')}" for ipath, out in outcomes)
        print(f"     {record['state']}: {blocks}")

        print("== governance: who the routers say their callers are (GET /whoami, from the client certificate):")
        for client in (b, bob_a, auditor):
            me = client.whoami()
            print(f"     {me.get('name')} (org {me.get('org') or 'none'}, roles {', '.join(me.get('roles') or [])}, "
                  f"proven by {me.get('proven')})")
        print("== alice, through router-b, pays bob 25 on bank-a (allowed by rule alice-on-bank-a):")
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
        seen = bob_b.call("evidence.court.hello", "get", "greeting")["output"]
        print(f"== bob reads the court's chain (rule bob-reads-court): greeting = {seen!r}")
        for client, via in ((bob_a, "router-a"), (bob_b, "router-b")):
            try:
                bob_wrote = client.send_transaction("evidence.court.hello", "set", "greeting", "bob was here")
            except PermissionDenied as exc:
                rule = exc.details.get("rule") if isinstance(exc.details, dict) else None
                print(f"== bob's write to the court's chain through {via} is refused: {exc.status} {exc.code}: "
                      f"{exc.message}" + (f" (rule {rule})" if rule else ""))
            else:
                print(f"== bob's write to the court's chain through {via} was NOT refused (block "
                      f"{bob_wrote['block_number']}): the ACL is not in force")
                return 1
        _auditor_reads(auditor, "router-a")

        peer = a.peers()[0]
        print(f"== link health seen by router-a: smoothed RTT {peer['srtt_ms']} ms, loss {peer['loss']}")
        print(f"== REST APIs (HTTPS, client certificate required): {a.target.url('/status')}  "
              f"{b.target.url('/status')} ; logs in {work}")
        print(f"== web page of the network: {a.target.url('/ui/')} (a browser needs a user's certificate, e.g. "
              f"{certs / 'clients' / 'alice'}; metrics: {a.target.url('/metrics')})")
        if keep:
            print("== routers keep running; Ctrl-C stops them")
            while all(p.poll() is None for p in processes):
                time.sleep(1)
        return 0
    finally:
        for client in clients:
            client.close()
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
