"""Crash the coordinator for real: three `twistd wecross` processes, the coordinator killed with SIGKILL after the
steps were prepared, after the commit decision was logged, and between telling one participant and the other; then
restarted on the same data. Every transaction must end committed on both chains or rolled back on both, nothing may
stay locked, and no balance may be created or lost.

```
router-b (z.one) -- router-a (coordinator, no chain) -- router-c (z.two)
```
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from io import BytesIO
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from tests import support
from tests.test_twistd import TWISTD, Collect

ACCOUNTS = {"anonymous": 1000, "bob": 1000}
CHAINS = {"router-b": "one", "router-c": "two"}


def twistd_config(work: Path, rid: str, p2p: int, rest: int, peers: dict[str, int], tx: str,
                  stubs: str = "") -> Path:
    """The config of one router of these twistd tests (and the fault campaign's): ``peers`` maps a router id to the
    port to dial it at, ``tx`` is the body of its [tx] table, ``stubs`` any [[stubs]] tables."""
    certs = support.pki()
    peer_list = ", ".join(f'{{ address = "127.0.0.1:{port}", id = "{p}" }}' for p, port in peers.items())
    text = f"""
[router]
id = "{rid}"
zones = ["z"]
data_dir = "{work / rid}"

[p2p]
listen = "127.0.0.1:{p2p}"
ca = "{certs / 'ca.crt'}"
cert = "{certs / rid / 'chain.pem'}"
key = "{certs / rid / 'key.pem'}"
peers = [{peer_list}]

[rest]
listen = "127.0.0.1:{rest}"

[timing]
heartbeat_interval = 0.3
backoff_initial = 0.1
backoff_max = 0.5

[gossip]
interval = 0.3

[tx]
{tx}
{stubs}"""
    config = work / f"{rid}.toml"
    config.write_text(text)
    return config


def router_config(work: Path, rid: str, ports: dict[str, tuple[int, int]], peers: list[str], tx: str) -> Path:
    stubs = ""
    if rid in CHAINS:
        initial = ", ".join(f'{a} = {b}' for a, b in ACCOUNTS.items())
        stubs = f"""
[[stubs]]
name = "{CHAINS[rid]}"
type = "embedded"
resources = [{{ name = "asset", kind = "asset", initial = {{ {initial} }} }}]
"""
    p2p, rest = ports[rid]
    return twistd_config(work, rid, p2p, rest, {p: ports[p][0] for p in peers}, tx, stubs)


def sleep(seconds: float) -> defer.Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class CoordinatorCrash(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.work = Path(self.mktemp()).resolve()
        self.work.mkdir()
        self.ports = {rid: (support.free_port(), support.free_port()) for rid in ("router-a", "router-b", "router-c")}
        self.procs: dict[str, Collect] = {}
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)
        self.addCleanup(self.kill_all)

    def kill_all(self) -> defer.Deferred[Any]:
        waits = []
        for proto in self.procs.values():
            if not proto.ended.called:
                os.kill(proto.transport.pid, signal.SIGKILL)
                waits.append(proto.ended)
        return defer.gatherResults(waits)

    def spawn(self, rid: str, tx: str = "") -> None:
        peers = {"router-a": ["router-b", "router-c"]}.get(rid, [])
        config = router_config(self.work, rid, self.ports, peers, tx)
        proto = Collect()
        reactor.spawnProcess(proto, TWISTD, [TWISTD, "-n", "--pidfile=", "--logfile=-", "wecross", "--config",
                                             str(config)], env=dict(os.environ), path=str(self.work))
        self.procs[rid] = proto

    @defer.inlineCallbacks
    def sigkill(self, rid: str) -> Any:
        proto = self.procs[rid]
        os.kill(proto.transport.pid, signal.SIGKILL)
        code = yield proto.ended
        self.assertEqual(code, -signal.SIGKILL)

    @defer.inlineCallbacks
    def request(self, rid: str, method: bytes, path: str, body: Any = None) -> Any:
        url = f"http://127.0.0.1:{self.ports[rid][1]}{path}".encode()
        producer = None if body is None else FileBodyProducer(BytesIO(json.dumps(body).encode()))
        headers = Headers({b"Content-Type": [b"application/json"]} if body is not None else {})
        response = yield self.agent.request(method, url, headers, producer)
        return response.code, json.loads((yield readBody(response)))

    @defer.inlineCallbacks
    def ok(self, rid: str, method: bytes, path: str, body: Any = None) -> Any:
        code, answer = yield self.request(rid, method, path, body)
        self.assertEqual(code, 200, (path, answer, self.logs()))
        return answer["data"]

    def logs(self) -> str:
        return "\n".join(f"--- {rid}\n" + p.output.decode(errors="replace")[-3000:] for rid, p in self.procs.items())

    @defer.inlineCallbacks
    def until(self, check: Any, what: str, timeout: float = 40.0) -> Any:
        for _ in range(int(timeout / 0.1)):
            try:
                value = yield check()
                if value:
                    return value
            except Exception:
                pass
            yield sleep(0.1)
        self.fail(f"{what} did not happen within {timeout} s\n{self.logs()}")

    @defer.inlineCallbacks
    def routed(self) -> Any:
        code, answer = yield self.request("router-a", b"GET", "/routes")
        chains = {r["chain"] for r in answer["data"]["routes"] if r.get("kind") == "chain" and r.get("reachable")}
        return code == 200 and {"z.one", "z.two"} <= chains

    @defer.inlineCallbacks
    def start_network(self, tx: str) -> Any:
        self.tx = tx
        for rid in ("router-b", "router-c", "router-a"):
            self.spawn(rid, tx)
        yield self.until(self.routed, "routes to both chains")

    @defer.inlineCallbacks
    def balance(self, chain: str, account: str) -> Any:
        rid = "router-b" if chain == "one" else "router-c"
        code, answer = yield self.request(rid, b"POST", f"/z/{chain}/asset/call",
                                          {"method": "balanceOf", "args": [account]})
        return code, answer

    @defer.inlineCallbacks
    def unlocked_total(self) -> Any:
        """The sum of every balance on both chains, once no account is locked (None while one is)."""
        total = 0
        for chain in ("one", "two"):
            for account in ACCOUNTS:
                code, answer = yield self.balance(chain, account)
                if code != 200:
                    return None
                total += answer["data"]["output"]
        return total

    @defer.inlineCallbacks
    def prepared_transfer(self) -> Any:
        tx = yield self.ok("router-a", b"POST", "/tx/start", {"resources": ["z.one.asset", "z.two.asset"]})
        tx_id = tx["tx_id"]
        for path in ("z.one.asset", "z.two.asset"):
            step = yield self.ok("router-a", b"POST", f"/tx/{tx_id}/exec",
                                 {"path": path, "method": "transfer", "args": ["bob", 10]})
            self.assertEqual(step["state"], "prepared")
        code, answer = yield self.balance("one", "anonymous")
        self.assertEqual((code, answer["error"]["code"]), (409, "locked"))
        return tx_id

    @defer.inlineCallbacks
    def final_state(self, tx_id: str) -> Any:
        """Restart the coordinator and wait for the transaction to end; its state, with every lock released and
        every balance accounted for."""
        self.spawn("router-a", self.tx)
        yield self.until(self.routed, "routes after the restart")

        @defer.inlineCallbacks
        def finished() -> Any:
            record = yield self.ok("router-a", b"GET", f"/tx/{tx_id}")
            return record["state"] if record["state"] in ("committed", "rolled_back") else None

        state = yield self.until(finished, "the transaction to end")
        total = yield self.until(self.unlocked_total, "every lock released")
        self.assertEqual(total, 2 * sum(ACCOUNTS.values()))
        return state

    @defer.inlineCallbacks
    def bob(self) -> Any:
        one = yield self.balance("one", "bob")
        two = yield self.balance("two", "bob")
        return one[1]["data"]["output"], two[1]["data"]["output"]

    @defer.inlineCallbacks
    def test_killed_after_prepare_rolls_back_everywhere(self) -> Any:
        yield self.start_network("")
        tx_id = yield self.prepared_transfer()
        yield self.sigkill("router-a")
        state = yield self.final_state(tx_id)
        self.assertEqual(state, "rolled_back")
        self.assertEqual((yield self.bob()), (1000, 1000))

    @defer.inlineCallbacks
    def test_killed_after_the_decision_commits_everywhere(self) -> Any:
        yield self.start_network("test_hold_after_decision = 30")
        tx_id = yield self.prepared_transfer()
        self.request("router-a", b"POST", f"/tx/{tx_id}/commit", {}).addErrback(lambda _: None)

        def decided() -> bool:
            """The durable fact, from the coordinator's log itself (GET shows a decision only once logged too)."""
            db = sqlite3.connect(f"file:{self.work / 'router-a' / 'tx-log.sqlite'}?mode=ro", uri=True, timeout=5)
            try:
                rows = db.execute("SELECT state FROM tx WHERE tx_id = ?", (tx_id,)).fetchall()
            finally:
                db.close()
            return rows == [("committing",)]

        yield self.until(decided, "the decision to be logged")
        yield self.sigkill("router-a")
        code, _ = yield self.balance("one", "anonymous")
        self.assertEqual(code, 409)  # no participant heard the decision: still locked
        state = yield self.final_state(tx_id)
        self.assertEqual(state, "committed")
        self.assertEqual((yield self.bob()), (1010, 1010))

    @defer.inlineCallbacks
    def test_killed_mid_commit_finishes_the_commit(self) -> Any:
        yield self.start_network("test_hold_between_participants = 30")
        tx_id = yield self.prepared_transfer()
        self.request("router-a", b"POST", f"/tx/{tx_id}/commit", {}).addErrback(lambda _: None)

        @defer.inlineCallbacks
        def first_committed() -> Any:
            code, answer = yield self.balance("one", "bob")
            return code == 200 and answer["data"]["output"] == 1010

        yield self.until(first_committed, "the first participant to commit")
        yield self.sigkill("router-a")
        code, _ = yield self.balance("two", "anonymous")
        self.assertEqual(code, 409)  # the second participant has not heard the decision
        state = yield self.final_state(tx_id)
        self.assertEqual(state, "committed")
        self.assertEqual((yield self.bob()), (1010, 1010))
