"""The 2PC fault campaign: random transactions across two chains and three real `twistd wecross` routers while the
routers are SIGKILLed at random moments, the coordinator's log is made slow and failing, and links are cut; then
every invariant a transaction layer owes is checked. ``bench/chaos.py`` runs the same campaign longer.

```
router-b (z.one) ==cutter== router-a (coordinator, no chain) ==cutter== router-c (z.two)
```

Each transaction (several client workers, back to back, through router-a's REST API) sets a key unique to it on
both chains' ``kv`` and, every other time, moves the same amount from ``anonymous`` to the same random account on
both chains' ``asset``; it is then committed (most), rolled back, or abandoned to its deadline. Faults run one after
the other, drawn from a seeded RNG (the seed is printed; ``WECROSS_CAMPAIGN_SEED`` replays a schedule):

- ``kill``: SIGKILL router-a, -b or -c, restart it on the same data after a pause;
- ``lock``: hold a write transaction on router-a's ``tx-log.sqlite`` from this process: shorter than SQLite's busy
  timeout (5 s) the log is slow, longer its writes fail;
- ``fault``: make the log's writes fail through ``[tx] test_log_fault_file``, before or after the data reached the
  disk (the ambiguous failure);
- ``cut``: drop the link between router-a and a chain's router (a TCP relay in this process closes every
  connection and refuses new ones for a while).

Then, with every fault healed and every router up, the verdict (never a timing: the only bounds are generous
liveness limits): every transaction in router-a's log is final; no key or account is locked on either chain; each
committed transaction's keys are on both chains and each rolled-back one's on neither (save participants named in
the record's heuristic outcomes, which must cover every disagreement); each chain's balances are exactly the
initial ones plus the committed transfers, so both chains agree and totals are conserved.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from tests import support
from tests.test_twistd import TWISTD, Collect
from tests.test_tx_faults import twistd_config

ACCOUNTS = [f"acct{i}" for i in range(6)]
INITIAL = {"anonymous": 1_000_000}
CHAINS = {"router-b": "one", "router-c": "two"}
ROUTERS = ("router-a", "router-b", "router-c")
FINAL = ("committed", "rolled_back")


def sleep(seconds: float) -> defer.Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class _Side(protocol.Protocol):
    """One side of a relayed connection: what it receives goes to ``peer``, and it closes with it."""

    def __init__(self, cutter: LinkCutter) -> None:
        self.cutter = cutter
        self.peer: _Side | None = None

    def connectionMade(self) -> None:
        self.cutter.sides.add(self)

    def dataReceived(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.cutter.sides.discard(self)
        peer, self.peer = self.peer, None
        if peer is not None and peer.transport is not None:
            peer.transport.loseConnection()


class _Inbound(_Side):
    def connectionMade(self) -> None:
        if self.cutter.cut_off:
            self.transport.abortConnection()
            return
        super().connectionMade()
        self.transport.pauseProducing()
        outbound = _Side(self.cutter)
        outbound.peer, self.peer = self, outbound

        def connected(_: object) -> None:
            if self.transport is not None:
                self.transport.resumeProducing()

        creator = protocol.ClientCreator(reactor, lambda: outbound)
        creator.connectTCP("127.0.0.1", self.cutter.target_port, timeout=5).addCallbacks(
            connected, lambda _: self.transport.abortConnection())


class LinkCutter(protocol.Factory):
    """A TCP relay in front of a router's P2P port: ``cut`` aborts every relayed connection and refuses new ones
    until ``heal``; the TLS inside passes through untouched."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut_off = False
        self.sides: set[_Side] = set()

    def buildProtocol(self, addr: Any) -> _Inbound:
        return _Inbound(self)

    def cut(self) -> None:
        self.cut_off = True
        for side in list(self.sides):
            if side.transport is not None:
                side.transport.abortConnection()

    def heal(self) -> None:
        self.cut_off = False


class Campaign:
    """The campaign's engine, shared by the trial test and ``bench/chaos.py``."""

    def __init__(self, work: Path, seed: int, *, chaos_seconds: float, workers: int = 4,
                 say: Callable[[str], None] = print) -> None:
        self.work = work
        self.seed = seed
        self.rng = random.Random(seed)  # the fault schedule; each worker draws from its own
        self.chaos_seconds = chaos_seconds
        self.workers = workers
        self.say = say
        self.ports = {rid: (support.free_port(), support.free_port()) for rid in ROUTERS}
        self.fault_file = work / "log-fault"
        self.procs: dict[str, Collect] = {}
        self.cutters: dict[str, LinkCutter] = {}
        self.relay_ports: dict[str, IListeningPort] = {}
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool, connectTimeout=5)
        self.running = False
        self.problem = ""
        self.counts: Counter[str] = Counter()
        self.client_outcomes: Counter[str] = Counter()
        self.logs: list[str] = []

    # -- processes ----------------------------------------------------------------------------------------------------

    def config(self, rid: str) -> Path:
        p2p, rest = self.ports[rid]
        # router-a dials the chains' routers through the test's relays, so the test can cut those links.
        peers = {p: self.relay_ports[p].getHost().port for p in CHAINS} if rid == "router-a" else {}
        tx = (f"default_timeout = 4\nparticipant_timeout = 1\ncheck_interval = 0.3\nretry_max = 1\n"
              f'test_log_fault_file = "{self.fault_file}"')
        stubs = ""
        if rid in CHAINS:
            initial = ", ".join(f"{a} = {b}" for a, b in INITIAL.items())
            stubs = f"""
[[stubs]]
name = "{CHAINS[rid]}"
type = "embedded"
resources = [{{ name = "kv", kind = "kv" }}, {{ name = "asset", kind = "asset", initial = {{ {initial} }} }}]
"""
        return twistd_config(self.work, rid, p2p, rest, peers, tx, stubs)

    def spawn(self, rid: str) -> None:
        proto = Collect()
        reactor.spawnProcess(proto, TWISTD, [TWISTD, "-n", "--pidfile=", "--logfile=-", "wecross", "--config",
                                             str(self.config(rid))], env=dict(os.environ), path=str(self.work))
        self.procs[rid] = proto

    @defer.inlineCallbacks
    def kill(self, rid: str) -> Any:
        proto = self.procs[rid]
        if not proto.ended.called:
            os.kill(proto.transport.pid, signal.SIGKILL)
            yield proto.ended
        self.logs.append(f"--- {rid} (killed)\n" + proto.output.decode(errors="replace"))

    @defer.inlineCallbacks
    def stop_all(self) -> Any:
        self.running = False
        for rid in list(self.procs):
            yield self.kill(rid)
        for port in self.relay_ports.values():
            yield port.stopListening()
        yield self.pool.closeCachedConnections()

    def output(self) -> str:
        current = [f"--- {rid}\n" + p.output.decode(errors="replace") for rid, p in self.procs.items()]
        return "\n".join(self.logs + current)

    # -- REST ---------------------------------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def request(self, rid: str, method: bytes, path: str, body: Any = None) -> Any:
        url = f"http://127.0.0.1:{self.ports[rid][1]}{path}".encode()
        producer = None if body is None else FileBodyProducer(BytesIO(json.dumps(body).encode()))
        headers = Headers({b"Content-Type": [b"application/json"]} if body is not None else {})
        d = self.agent.request(method, url, headers, producer)
        d.addTimeout(20, reactor)
        response = yield d
        text = yield readBody(response)
        return response.code, json.loads(text)

    @defer.inlineCallbacks
    def read(self, chain: str, resource: str, method: str, args: list[Any]) -> Any:
        rid = "router-b" if chain == "one" else "router-c"
        code, answer = yield self.request(rid, b"POST", f"/z/{chain}/{resource}/call",
                                          {"method": method, "args": args})
        if code != 200:
            return ("error", answer.get("error", {}).get("code"))
        return ("ok", answer["data"]["output"])

    @defer.inlineCallbacks
    def until(self, check: Callable[[], Any], what: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        self.problem = ""
        while True:
            try:
                value = yield check()
                if value:
                    return value
            except Exception as exc:
                self.problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s (seed {self.seed}); last: {self.problem[:2000]}")
            yield sleep(0.2)

    @defer.inlineCallbacks
    def routed(self) -> Any:
        code, answer = yield self.request("router-a", b"GET", "/routes")
        chains = {r["chain"] for r in answer["data"]["routes"] if r.get("kind") == "chain" and r.get("reachable")}
        return code == 200 and {"z.one", "z.two"} <= chains

    @defer.inlineCallbacks
    def serving(self, rid: str) -> Any:
        code, _ = yield self.request(rid, b"GET", "/status")
        return code == 200

    # -- the run ------------------------------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def start(self) -> Any:
        for rid in CHAINS:
            cutter = self.cutters[rid] = LinkCutter(self.ports[rid][0])
            self.relay_ports[rid] = reactor.listenTCP(0, cutter, interface="127.0.0.1")
        for rid in ("router-b", "router-c", "router-a"):
            self.spawn(rid)
        yield self.until(self.routed, "routes to both chains", 60)

    @defer.inlineCallbacks
    def run(self) -> Any:
        """Chaos, then heal, then the verdict: the figures (a dict); AssertionError naming what broke."""
        started = time.monotonic()
        yield self.start()
        self.running = True
        workers = [self.worker(i, random.Random(self.seed * 100 + i)) for i in range(self.workers)]
        yield self.chaos()
        self.running = False
        yield self.heal()
        yield defer.DeferredList(workers)
        figures = yield self.verdict()
        figures["seconds"] = round(time.monotonic() - started, 1)
        return figures

    @defer.inlineCallbacks
    def chaos(self) -> Any:
        end = time.monotonic() + self.chaos_seconds
        while time.monotonic() < end:
            yield sleep(self.rng.uniform(0.3, 1.5))
            kind = self.rng.choice(["kill", "kill", "lock", "fault", "cut"])
            self.counts[kind] += 1
            if kind == "kill":
                rid = self.rng.choice(ROUTERS)
                self.counts[f"kill {rid}"] += 1
                yield self.kill(rid)
                yield sleep(self.rng.uniform(0.1, 1.5))
                self.spawn(rid)
                yield self.until(lambda rid=rid: self.serving(rid), f"{rid} back after a kill", 60)
            elif kind == "lock":
                hold = self.rng.uniform(0.5, 7.0)
                self.counts["lock failing" if hold > 5 else "lock slow"] += 1
                yield self.hold_log_lock(hold)
            elif kind == "fault":
                where = self.rng.choice(["before", "after"])
                self.counts[f"fault {where}"] += 1
                self.fault_file.write_text(where)
                yield sleep(self.rng.uniform(0.3, 2.0))
                self.fault_file.unlink()
            else:
                rid = self.rng.choice(list(CHAINS))
                self.counts[f"cut {rid}"] += 1
                self.cutters[rid].cut()
                yield sleep(self.rng.uniform(0.5, 3.0))
                self.cutters[rid].heal()

    @defer.inlineCallbacks
    def hold_log_lock(self, seconds: float) -> Any:
        db = sqlite3.connect(str(self.work / "router-a" / "tx-log.sqlite"), timeout=0, isolation_level=None)
        try:
            for _ in range(50):
                try:
                    db.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError:  # the router is writing: try again at once
                    yield sleep(0.01)
            else:
                return
            yield sleep(seconds)
            db.execute("COMMIT")
        finally:
            db.close()

    @defer.inlineCallbacks
    def heal(self) -> Any:
        if self.fault_file.exists():
            self.fault_file.unlink()
        for cutter in self.cutters.values():
            cutter.heal()
        for rid, proto in self.procs.items():
            if proto.ended.called:
                self.spawn(rid)
        yield self.until(self.routed, "routes after healing", 60)

    @defer.inlineCallbacks
    def worker(self, number: int, rng: random.Random) -> Any:
        n = 0
        while self.running:
            n += 1
            key = f"w{number}-{n}"
            try:
                outcome = yield self.transaction(key, rng)
            except Exception as exc:  # a router killed or cut mid-request, a failed write: the verdict judges
                outcome = f"error {type(exc).__name__}"
            self.client_outcomes[outcome] += 1
            if outcome.startswith("error"):
                yield sleep(0.1)

    @defer.inlineCallbacks
    def transaction(self, key: str, rng: random.Random) -> Any:
        code, answer = yield self.request("router-a", b"POST", "/tx/start",
                                          {"resources": ["z.one.kv", "z.two.kv", "z.one.asset", "z.two.asset"]})
        if code != 200:
            return f"error start {code}"
        tx_id = answer["data"]["tx_id"]
        steps: list[tuple[str, str, list[Any]]] = [("z.one.kv", "set", [key, key]), ("z.two.kv", "set", [key, key])]
        if rng.random() < 0.5:
            account, amount = rng.choice(ACCOUNTS), rng.randint(1, 9)
            steps += [("z.one.asset", "transfer", [account, amount]), ("z.two.asset", "transfer", [account, amount])]
        for path, method, args in steps:
            code, answer = yield self.request("router-a", b"POST", f"/tx/{tx_id}/exec",
                                              {"path": path, "method": method, "args": args})
            if code != 200:
                yield self.request("router-a", b"POST", f"/tx/{tx_id}/rollback", {})
                return f"error step {answer.get('error', {}).get('code')}"
        choice = rng.random()
        if choice < 0.05:
            return "abandoned"
        action = "rollback" if choice < 0.15 else "commit"
        code, answer = yield self.request("router-a", b"POST", f"/tx/{tx_id}/{action}", {})
        if code != 200:
            return f"error {action} {answer.get('error', {}).get('code')}"
        return str(answer["data"]["state"])

    # -- the verdict --------------------------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        db = sqlite3.connect(f"file:{self.work / 'router-a' / 'tx-log.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return [json.loads(row[0]) for row in db.execute("SELECT record FROM tx")]
        finally:
            db.close()

    def all_final(self) -> Any:
        records = self.records()
        return records if all(r["state"] in FINAL for r in records) else None

    @defer.inlineCallbacks
    def unlocked(self, reads: list[tuple[str, str, str, tuple[Any, ...]]]) -> Any:
        answers = {}
        for read in reads:
            chain, resource, method, args = read
            answer = yield self.read(chain, resource, method, list(args))
            if answer[0] != "ok":
                raise AssertionError(f"reading {read}: {answer}")
            answers[read] = answer[1]
        return answers

    @defer.inlineCallbacks
    def verdict(self) -> Any:
        records = yield self.until(self.all_final, "every transaction final in the coordinator's log", 90)
        reads: list[tuple[str, str, str, tuple[Any, ...]]] = []
        for chain in ("one", "two"):
            reads += [(chain, "asset", "balanceOf", (a,)) for a in [*INITIAL, *ACCOUNTS]]
            reads.append((chain, "asset", "totalSupply", ()))
            for record in records:
                reads += [(chain, "kv", "get", (s["args"][0],)) for s in record["steps"]
                          if s["ipath"] == f"z.{chain}.kv"]
        state = yield self.until(lambda: self.unlocked(reads), "every key and account unlocked", 60)
        expected = {(chain, a): INITIAL.get(a, 0) for chain in ("one", "two") for a in [*INITIAL, *ACCOUNTS]}
        disagreements: set[tuple[str, str]] = set()
        heuristic: set[tuple[str, str]] = set()
        outcomes: Counter[str] = Counter()
        for record in records:
            outcomes[record["state"]] += 1
            reported = {h["ipath"] for h in record["heuristic"]}
            heuristic |= {(record["tx_id"], ipath) for ipath in reported}
            committed = record["state"] == "committed"
            for step in record["steps"]:
                chain = step["ipath"].split(".")[1]
                if step["method"] == "set":
                    present = state[(chain, "kv", "get", (step["args"][0],))] == step["args"][1]
                    if present != committed:
                        disagreements.add((record["tx_id"], step["ipath"]))
                elif committed and step["ipath"] not in reported:
                    account, amount = step["args"]
                    expected[(chain, "anonymous")] -= amount
                    expected[(chain, account)] += amount
        unreported = disagreements - heuristic
        assert not unreported, f"chains disagree with the records, unreported: {sorted(unreported)}"
        balances = {(chain, args[0]): value for (chain, res, method, args), value in state.items()
                    if method == "balanceOf"}
        if not heuristic:
            assert balances == expected, f"balances {balances} != committed transfers {expected}"
        for chain in ("one", "two"):
            total = sum(v for (c, _), v in balances.items() if c == chain)
            assert total == sum(INITIAL.values()), f"chain {chain}: total {total} != {sum(INITIAL.values())}"
            assert state[(chain, "asset", "totalSupply", ())] == sum(INITIAL.values())
        # A participant that decided alone reports it in its log (wecross.tx.participant): counted here.
        alone = self.output().count("decided by the participant alone")
        return {"seed": self.seed, "transactions": len(records), "outcomes": dict(outcomes),
                "client": dict(self.client_outcomes), "faults": dict(self.counts), "heuristic": len(heuristic),
                "decided_alone": alone,
                "steps": sum(len(r["steps"]) for r in records)}


class FaultCampaign(TestCase):
    timeout = 300

    @defer.inlineCallbacks
    def test_every_transaction_ends_the_same_everywhere(self) -> Any:
        seed = int(os.environ.get("WECROSS_CAMPAIGN_SEED", random.SystemRandom().randrange(2**32)))
        print(f"\n2PC fault campaign seed: {seed} (WECROSS_CAMPAIGN_SEED={seed} replays the schedule)")
        work = Path(self.mktemp()).resolve()
        work.mkdir()
        campaign = Campaign(work, seed, chaos_seconds=float(os.environ.get("WECROSS_CAMPAIGN_SECONDS", "35")))
        self.addCleanup(campaign.stop_all)
        try:
            figures = yield campaign.run()
        except AssertionError as exc:
            logs = work / "routers.log"
            logs.write_text(campaign.output())
            self.fail(f"{exc}\nthe routers' logs: {logs}")
        print(f"2PC fault campaign: {json.dumps(figures, sort_keys=True)}")
        self.assertGreater(figures["transactions"], 0)
        # Participants wait for the decision (participant_heuristic = "wait"): none decides alone.
        self.assertEqual((figures["heuristic"], figures["decided_alone"]), (0, 0))
