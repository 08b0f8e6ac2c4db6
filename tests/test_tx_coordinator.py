"""The 2PC coordinator: the state machine's rules, the durable log, recovery after a crash in every state, deadlines,
retried decisions, heuristic outcomes and take-over, against in-memory participants with key locks."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests import support
from wecross.errors import RouterError
from wecross.ipath import IPath
from wecross.stub.interfaces import OP_TX_COMMIT, OP_TX_PREPARE, OP_TX_ROLLBACK
from wecross.tx.coordinator import Coordinator
from wecross.tx.log import TxLog
from wecross.tx.model import StepState, Tx, TxError, TxState


class ModelTests(SynchronousTestCase):
    def tx(self) -> Tx:
        return Tx("r:1", "r", ["z.a.asset", "z.b.asset"], created_at=0.0, deadline=10.0)

    def test_commit_needs_every_step_prepared(self) -> None:
        tx = self.tx()
        self.assertRaises(TxError, tx.decide_commit, 1.0)  # no steps
        step = tx.add_step("z.a.asset", "transfer", ["bob", 1], 1.0)
        with self.assertRaises(TxError) as caught:
            tx.decide_commit(1.0)
        self.assertIn("still running", caught.exception.message)
        tx.step_failed(step.number, "insufficient_funds", "no", 1.0)
        self.assertRaises(TxError, tx.decide_commit, 1.0)
        self.assertTrue(tx.decide_rollback(2.0, "failed step"))
        self.assertFalse(tx.decide_rollback(2.0, "again"))
        self.assertEqual(tx.participants(), ["z.a.asset"])

    def test_decided_commit_cannot_roll_back_and_acks_finish(self) -> None:
        tx = self.tx()
        for path in ("z.a.asset", "z.b.asset", "z.a.asset"):
            step = tx.add_step(path, "transfer", ["bob", 1], 1.0)
            tx.step_prepared(step.number, True, 1.0)
        tx.decide_commit(2.0)
        with self.assertRaises(TxError) as caught:
            tx.decide_rollback(2.0, "too late")
        self.assertEqual(caught.exception.code, "tx_state")
        self.assertRaises(TxError, tx.add_step, "z.a.asset", "m", [], 2.0)
        self.assertFalse(tx.ack("z.a.asset", 3.0, {"block_number": 4}))
        self.assertEqual(tx.outstanding(), ["z.b.asset"])
        self.assertTrue(tx.ack("z.b.asset", 3.0))
        self.assertIs(tx.state, TxState.COMMITTED)

    def test_steps_only_on_declared_resources_and_before_the_deadline(self) -> None:
        tx = self.tx()
        self.assertRaises(TxError, tx.add_step, "z.c.asset", "m", [], 1.0)
        self.assertRaises(TxError, tx.add_step, "z.a.asset", "m", [], 11.0)
        self.assertRaises(TxError, tx.add_step, "z.a.asset", "", [], 1.0)

    def test_record_round_trip_and_refusal(self) -> None:
        tx = self.tx()
        step = tx.add_step("z.a.asset", "transfer", ["bob", 1], 1.0)
        tx.step_prepared(step.number, {"ok": True}, 1.5)
        again = Tx.from_record(tx.to_record())
        self.assertEqual(again.to_record(), tx.to_record())
        self.assertIs(again.steps[0].state, StepState.PREPARED)
        with self.assertRaises(TxError):
            Tx.from_record({"tx_id": "x"})


class FakeChains:
    """Participants with key locks, tentative state and idempotent decisions; ``down`` routers fail requests."""

    def __init__(self) -> None:
        self.balances: dict[str, dict[str, int]] = {"z.a.asset": {"alice": 100, "bob": 0},
                                                    "z.b.asset": {"alice": 0, "bob": 100}}
        self.tentative: dict[tuple[str, str], list[tuple[str, int]]] = {}
        self.locks: dict[tuple[str, str], str] = {}
        self.committed: set[tuple[str, str]] = set()
        self.rolled_back: set[tuple[str, str]] = set()
        self.down: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    def tx_call(self, ipath: IPath, op: str, method: str, args: list[Any], sender: str) -> Deferred[dict[str, Any]]:
        path = str(ipath)
        self.calls.append((path, op))
        if path in self.down:
            return defer.fail(RouterError("unreachable", f"{path} is down"))
        tx_id = args[0]
        key = (path, tx_id)
        try:
            if op == OP_TX_PREPARE:
                result = self._prepare(path, tx_id, method, args[1])
            elif op == OP_TX_COMMIT:
                result = self._commit(key)
            else:
                assert op == OP_TX_ROLLBACK
                result = self._rollback(key)
        except RouterError as exc:
            return defer.fail(exc)
        return defer.succeed(result)

    def _prepare(self, path: str, tx_id: str, method: str, step: list[Any]) -> dict[str, Any]:
        to, amount = step
        sender = "alice" if path == "z.a.asset" else "bob"
        for account in (sender, to):
            holder = self.locks.get((path, account))
            if holder is not None and holder != tx_id:
                raise RouterError("locked", f"{account} is locked by transaction {holder}")
        if self.balances[path][sender] < amount:
            raise RouterError("insufficient_funds", "not enough")
        for account in (sender, to):
            self.locks[(path, account)] = tx_id
        self.tentative.setdefault((path, tx_id), []).append((sender, -amount))
        self.tentative[(path, tx_id)].append((to, amount))
        return {"output": True}

    def _commit(self, key: tuple[str, str]) -> dict[str, Any]:
        if key in self.committed:
            return {"output": "again", "block_number": 7}
        if key not in self.tentative:
            raise RouterError("unknown_tx", "no such prepared transaction")
        for account, delta in self.tentative.pop(key):
            self.balances[key[0]][account] += delta
        self._unlock(key)
        self.committed.add(key)
        return {"output": "committed", "block_number": 7, "tx_hash": "ab" * 32}

    def _rollback(self, key: tuple[str, str]) -> dict[str, Any]:
        if key in self.committed:
            raise RouterError("already_committed", "committed already")
        self.tentative.pop(key, None)
        self._unlock(key)
        self.rolled_back.add(key)
        return {"output": {"rolled_back": key[1]}}

    def _unlock(self, key: tuple[str, str]) -> None:
        for lock, holder in list(self.locks.items()):
            if lock[0] == key[0] and holder == key[1]:
                del self.locks[lock]

    def total(self) -> int:
        return sum(sum(accounts.values()) for accounts in self.balances.values())


class CoordinatorTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.chains = FakeChains()
        self.coordinators: list[Coordinator] = []

    def coordinator(self, **kw: Any) -> Coordinator:
        c = Coordinator("router-a", TxLog(self.dir / "tx.sqlite", reactor), self.chains, reactor,
                        retry_min=0.05, retry_max=0.2, sweep_interval=0.05, **kw)
        c.startService()
        self.coordinators.append(c)
        self.addCleanup(lambda: c.stopService() if c.running else None)
        return c

    def crash(self, c: Coordinator) -> Deferred[None]:
        """Stop it the hard way as far as in-memory state goes: a new instance reads only the log."""
        return c.stopService()

    @defer.inlineCallbacks
    def transfer_tx(self, c: Coordinator, amount: int = 10) -> Any:
        tx = yield c.start(["z.a.asset", "z.b.asset"])
        yield c.execute(tx["tx_id"], "z.a.asset", "transfer", ["bob", amount])
        yield c.execute(tx["tx_id"], "z.b.asset", "transfer", ["alice", amount])
        return tx["tx_id"]

    @defer.inlineCallbacks
    def test_commit_everywhere(self) -> Any:
        c = self.coordinator()
        tx_id = yield self.transfer_tx(c)
        self.assertEqual(len(self.chains.locks), 4)
        record = yield c.commit(tx_id)
        self.assertEqual(record["state"], "committed")
        self.assertEqual(self.chains.balances, {"z.a.asset": {"alice": 90, "bob": 10},
                                                "z.b.asset": {"alice": 10, "bob": 90}})
        self.assertEqual(self.chains.locks, {})
        self.assertEqual(record["outcomes"]["z.a.asset"]["block_number"], 7)
        self.assertEqual(c.list("committed")[0]["tx_id"], tx_id)

    @defer.inlineCallbacks
    def test_failed_step_then_rollback_releases_everything(self) -> Any:
        c = self.coordinator()
        tx = yield c.start([])
        yield c.execute(tx["tx_id"], "z.a.asset", "transfer", ["bob", 10])
        failure = yield self.assertFailure(c.execute(tx["tx_id"], "z.b.asset", "transfer", ["alice", 1000]),
                                           RouterError)
        self.assertEqual(failure.code, "insufficient_funds")
        self.assertEqual(failure.details["step"], 2)
        yield self.assertFailure(c.commit(tx["tx_id"]), TxError)
        record = yield c.rollback(tx["tx_id"])
        self.assertEqual(record["state"], "rolled_back")
        self.assertEqual(self.chains.locks, {})
        self.assertEqual(self.chains.total(), 200)
        self.assertEqual(self.chains.balances["z.a.asset"]["alice"], 100)

    @defer.inlineCallbacks
    def test_conflicting_transactions_lock_each_other_out(self) -> Any:
        c = self.coordinator()
        first = yield self.transfer_tx(c)
        second = yield c.start([])
        failure = yield self.assertFailure(c.execute(second["tx_id"], "z.a.asset", "transfer", ["bob", 1]),
                                           RouterError)
        self.assertEqual(failure.code, "locked")
        yield c.rollback(second["tx_id"])
        yield c.commit(first)
        self.assertEqual(self.chains.total(), 200)

    @defer.inlineCallbacks
    def test_crash_before_the_decision_rolls_back_on_restart(self) -> Any:
        c = self.coordinator()
        tx_id = yield self.transfer_tx(c)
        yield self.crash(c)
        again = self.coordinator()
        yield support.until(lambda: again.get(tx_id)["state"] == "rolled_back")
        self.assertEqual(self.chains.locks, {})
        self.assertEqual(self.chains.balances["z.a.asset"]["alice"], 100)
        self.assertEqual(again.counters["recovered"], 1)

    @defer.inlineCallbacks
    def test_crash_after_the_decision_commits_on_restart(self) -> Any:
        c = self.coordinator()
        tx_id = yield self.transfer_tx(c)
        self.chains.down.add("z.b.asset")  # the decision reaches only one participant before the crash
        record = yield c.commit(tx_id, wait=0.1)
        self.assertEqual(record["state"], "committing")
        yield self.crash(c)
        self.chains.down.clear()
        again = self.coordinator()
        yield support.until(lambda: again.get(tx_id)["state"] == "committed")
        self.assertEqual(self.chains.balances["z.b.asset"], {"alice": 10, "bob": 90})
        self.assertEqual(self.chains.locks, {})
        self.assertIn(("z.a.asset", tx_id), self.chains.committed)

    @defer.inlineCallbacks
    def test_a_participant_down_during_commit_is_retried_until_it_acks(self) -> Any:
        c = self.coordinator()
        tx_id = yield self.transfer_tx(c)
        self.chains.down.add("z.b.asset")
        d = c.commit(tx_id, wait=5.0)
        yield support.until(lambda: c.counters["retries"] >= 2)
        self.chains.down.clear()
        record = yield d
        self.assertEqual(record["state"], "committed")

    @defer.inlineCallbacks
    def test_deadline_rolls_back_a_forgotten_transaction(self) -> Any:
        c = self.coordinator()
        tx = yield c.start([], timeout=0.2)
        yield c.execute(tx["tx_id"], "z.a.asset", "transfer", ["bob", 5])
        yield support.until(lambda: c.get(tx["tx_id"])["state"] == "rolled_back")
        self.assertEqual(self.chains.locks, {})
        self.assertEqual(c.get(tx["tx_id"])["reason"], "the transaction's deadline passed before it was committed")
        self.assertEqual(c.counters["timed_out"], 1)

    @defer.inlineCallbacks
    def test_heuristic_outcome_is_recorded(self) -> Any:
        c = self.coordinator()
        tx_id = yield self.transfer_tx(c)
        self.chains._rollback(("z.b.asset", tx_id))  # the participant gave up on its own
        record = yield c.commit(tx_id)
        self.assertEqual(record["state"], "committed")
        self.assertEqual(record["heuristic"][0]["ipath"], "z.b.asset")
        self.assertEqual(record["heuristic"][0]["code"], "unknown_tx")

    @defer.inlineCallbacks
    def test_take_over_from_the_record(self) -> Any:
        c = self.coordinator()
        tx_id = yield self.transfer_tx(c)
        record = c.get(tx_id)
        yield self.crash(c)
        other = Coordinator("router-b", TxLog(self.dir / "other.sqlite", reactor), self.chains, reactor,
                            retry_min=0.05, sweep_interval=0.05)
        other.startService()
        self.addCleanup(other.stopService)
        finished = yield other.adopt(record)
        self.assertEqual(finished["state"], "rolled_back")  # no decision recorded: presumed abort
        self.assertEqual(self.chains.locks, {})
        yield self.assertFailure(other.adopt({"nonsense": 1}), TxError)

    @defer.inlineCallbacks
    def test_the_log_is_durable_and_readable(self) -> Any:
        c = self.coordinator()
        tx_id = yield self.transfer_tx(c)
        yield c.commit(tx_id)
        yield c.stopService()
        db = sqlite3.connect(str(self.dir / "tx.sqlite"))
        self.addCleanup(db.close)
        [(state, record)] = db.execute("SELECT state, record FROM tx").fetchall()
        self.assertEqual(state, "committed")
        self.assertIn('"steps"', record)

    @defer.inlineCallbacks
    def test_bad_requests(self) -> Any:
        c = self.coordinator()
        yield self.assertFailure(c.start("z.a.asset"), TxError)  # type: ignore[arg-type]
        yield self.assertFailure(c.start(["not an ipath"]), RouterError)
        yield self.assertFailure(c.start([], timeout=-1), TxError)
        yield self.assertFailure(c.execute("r:none", "z.a.asset", "m", []), TxError)
        self.assertRaises(TxError, c.get, "r:none")
        self.assertRaises(TxError, c.list, "bogus")


class HeldLog(TxLog):
    """A log whose writes reach the disk only when the test says: ``hold`` parks every write until ``release``
    (or ``fail``, which fails the parked writes as a broken disk would, without writing them)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, reactor)
        self.holding = False
        self.parked: list[tuple[Any, Deferred[None]]] = []

    def write(self, tx: Any) -> Deferred[None]:
        if not self.holding:
            return super().write(tx)
        snapshot = Tx.from_record(tx.to_record())
        d: Deferred[None] = Deferred()
        self.parked.append((snapshot, d))
        return d

    def release(self) -> None:
        self.holding = False
        parked, self.parked = self.parked, []
        for snapshot, d in parked:
            super().write(snapshot).chainDeferred(d)

    def fail(self) -> None:
        self.holding = False
        parked, self.parked = self.parked, []
        for _, d in parked:
            d.errback(RouterError("storage_error", "the transaction log could not be written: disk I/O error"))


class DurableDecisions(TestCase):
    """Issue 12, findings 1 and 2: a decision is visible (get, status, list) only once the log has it, and a decision
    that cannot be logged leaves no phantom: the transaction stays started, as the log says, and its deadline rolls
    it back."""

    timeout = 30

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.chains = FakeChains()

    def coordinator(self, txlog: TxLog) -> Coordinator:
        c = Coordinator("router-a", txlog, self.chains, reactor, retry_min=0.05, retry_max=0.2, sweep_interval=0.05)
        c.startService()
        self.addCleanup(lambda: c.stopService() if c.running else None)
        return c

    def logged_state(self, tx_id: str) -> str:
        db = sqlite3.connect(str(self.dir / "tx.sqlite"))
        try:
            [(state,)] = db.execute("SELECT state FROM tx WHERE tx_id = ?", (tx_id,)).fetchall()
        finally:
            db.close()
        return str(state)

    @defer.inlineCallbacks
    def prepared(self, c: Coordinator, timeout: float = 60.0) -> Any:
        tx = yield c.start(["z.a.asset", "z.b.asset"], timeout=timeout)
        yield c.execute(tx["tx_id"], "z.a.asset", "transfer", ["bob", 10])
        yield c.execute(tx["tx_id"], "z.b.asset", "transfer", ["alice", 10])
        return tx["tx_id"]

    @defer.inlineCallbacks
    def test_the_decision_is_invisible_until_durable(self) -> Any:
        txlog = HeldLog(self.dir / "tx.sqlite")
        c = self.coordinator(txlog)
        tx_id = yield self.prepared(c)
        txlog.holding = True
        done = c.commit(tx_id)
        self.assertEqual(len(txlog.parked), 1)  # the decision is on its way to the disk, not there
        self.assertEqual(c.status(tx_id)["state"], "started")  # what participants ask (txStatus)
        self.assertEqual(c.get(tx_id)["state"], "started")  # GET /tx/<id>
        self.assertEqual(c.list("committing"), [])
        self.assertEqual(self.logged_state(tx_id), "started")
        yield self.assertFailure(c.execute(tx_id, "z.a.asset", "transfer", ["bob", 1]), TxError)
        self.assertNotIn(("z.a.asset", OP_TX_COMMIT), self.chains.calls)
        again = c.commit(tx_id)  # a repeated commit waits for the same decision
        txlog.release()
        record = yield done
        self.assertEqual(record["state"], "committed")
        self.assertEqual((yield again)["state"], "committed")
        self.assertEqual(self.chains.locks, {})

    @defer.inlineCallbacks
    def test_a_decision_that_cannot_be_logged_is_not_taken(self) -> Any:
        txlog = HeldLog(self.dir / "tx.sqlite")
        c = self.coordinator(txlog)
        tx_id = yield self.prepared(c, timeout=1.0)
        txlog.holding = True
        done = c.commit(tx_id)
        txlog.fail()
        failure = yield self.assertFailure(done, RouterError)
        self.assertEqual(failure.code, "storage_error")
        self.assertEqual(c.get(tx_id)["state"], "started")  # no phantom committing
        self.assertEqual(c.status(tx_id)["state"], "started")
        self.assertEqual(self.logged_state(tx_id), "started")
        self.assertNotIn(("z.a.asset", OP_TX_COMMIT), self.chains.calls)
        # The deadline, with the disk back, rolls it back everywhere.
        yield support.until(lambda: c.get(tx_id)["state"] == "rolled_back")
        yield support.until(lambda: self.logged_state(tx_id) == "rolled_back")  # the end is written after it
        self.assertEqual(self.chains.locks, {})
        self.assertEqual(self.chains.total(), 200)
        self.assertEqual(c.counters["log_failures"], 1)

    @defer.inlineCallbacks
    def test_a_commit_may_be_sent_again_after_a_failed_write(self) -> Any:
        txlog = HeldLog(self.dir / "tx.sqlite")
        c = self.coordinator(txlog)
        tx_id = yield self.prepared(c)
        txlog.holding = True
        done = c.commit(tx_id)
        txlog.fail()
        yield self.assertFailure(done, RouterError)
        record = yield c.commit(tx_id)
        self.assertEqual(record["state"], "committed")
        yield support.until(lambda: self.logged_state(tx_id) == "committed")

    @defer.inlineCallbacks
    def test_a_write_that_failed_yet_reached_the_disk(self) -> Any:
        """The ambiguous failure (the record is durable, the writer hears a failure): nothing acted on the decision,
        so whichever the log ends with is carried out everywhere: a restart commits; the deadline rolls back."""
        fault = self.dir / "fault"
        c = self.coordinator(TxLog(self.dir / "tx.sqlite", reactor, fault_file=fault))
        tx_id = yield self.prepared(c, timeout=1.0)
        fault.write_text("after")
        yield self.assertFailure(c.commit(tx_id), RouterError)
        self.assertEqual(self.logged_state(tx_id), "committing")
        self.assertEqual(c.status(tx_id)["state"], "started")  # participants asking wait
        yield c.stopService()  # the coordinator dies here: recovery follows the log
        fault.unlink()
        again = self.coordinator(TxLog(self.dir / "tx.sqlite", reactor))
        yield support.until(lambda: again.get(tx_id)["state"] == "committed")
        self.assertEqual(self.chains.balances["z.b.asset"], {"alice": 10, "bob": 90})
        self.assertEqual(self.chains.locks, {})

    @defer.inlineCallbacks
    def test_an_ambiguous_write_then_the_deadline_rolls_back(self) -> Any:
        fault = self.dir / "fault"
        c = self.coordinator(TxLog(self.dir / "tx.sqlite", reactor, fault_file=fault))
        tx_id = yield self.prepared(c, timeout=1.0)
        fault.write_text("after")
        yield self.assertFailure(c.commit(tx_id), RouterError)
        fault.unlink()
        yield support.until(lambda: c.get(tx_id)["state"] == "rolled_back")
        yield support.until(lambda: self.logged_state(tx_id) == "rolled_back")  # the end is written after it
        self.assertEqual(self.chains.balances["z.a.asset"], {"alice": 100, "bob": 0})
        self.assertEqual(self.chains.locks, {})

    @defer.inlineCallbacks
    def test_records_that_failed_after_the_decision_are_written_again(self) -> Any:
        fault = self.dir / "fault"
        c = self.coordinator(TxLog(self.dir / "tx.sqlite", reactor, fault_file=fault))
        tx_id = yield self.prepared(c)
        self.chains.down.add("z.b.asset")
        record = yield c.commit(tx_id, wait=0.1)
        self.assertEqual(record["state"], "committing")
        fault.write_text("before")
        self.chains.down.clear()
        yield support.until(lambda: c.get(tx_id)["state"] == "committed")
        self.assertEqual(self.logged_state(tx_id), "committing")  # the acknowledgements did not reach the log
        fault.unlink()
        yield support.until(lambda: self.logged_state(tx_id) == "committed")
        self.assertEqual(c.stats()["unlogged"], 0)


class LogClose(TestCase):
    """Closing the log while a write is on its way must leave that write's outcome as it is."""

    @defer.inlineCallbacks
    def test_a_write_that_fails_at_close_still_fails_for_its_writer(self) -> Any:
        import sqlite3

        work = Path(self.mktemp())
        work.mkdir()
        txlog = TxLog(work / "tx.sqlite", reactor)
        txlog.open()

        def broken(batch: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        txlog._write_batch = broken  # type: ignore[method-assign]
        tx = Tx(tx_id="router-a:" + "0" * 32, coordinator="router-a", resources=[], created_at=0.0, deadline=1.0,
                updated_at=0.0)
        written = txlog.write(tx)
        yield txlog.close()
        failure = yield self.assertFailure(written, RouterError)
        self.assertEqual(failure.code, "storage_error")
