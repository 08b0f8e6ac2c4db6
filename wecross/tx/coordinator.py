"""The 2PC coordinator: a Twisted service driving :class:`~wecross.tx.model.Tx` state machines over the overlay.

Rules it keeps, whatever fails:

- **Write-ahead.** Every state change is in the durable log (:class:`~wecross.tx.log.TxLog`) before anything acts
  on it: a step is logged "pending" before its prepare is sent, the decision is logged before any participant
  hears it.
- **A decision is visible only once durable.** A decision (commit or rollback) is made on a copy of the transaction
  and written; only when the log has it does the transaction itself change state, so :meth:`get`, :meth:`status`
  (what participants ask with ``txStatus``) and :meth:`list` never show a decision the log could lose. While it is
  being written the transaction is "deciding": no step, no other decision, and the deadline sweep leaves it alone.
  A decision whose write fails is not applied: the transaction stays ``started`` (what the log says), the client's
  commit fails with ``storage_error`` and may be sent again, and the deadline rolls it back otherwise. Reverting
  rather than retrying the write keeps the log and memory in agreement and bounds the time locks are held by the
  deadline; and should a write reported as failed have reached the disk after all, nothing has acted on it, and
  the next decision logged for the transaction replaces it (``tests.test_tx_coordinator.DurableDecisions``).
- **Recovery.** On start, every transaction in the log that is not finished is finished: ``committing`` is driven
  to committed, ``rolling_back`` to rolled back, and ``started`` (no decision logged: the client can no longer be
  waiting for it) is rolled back. Participants make commit and rollback idempotent, so re-sending is always safe.
- **Nothing stays locked.** A transaction still ``started`` at its deadline is rolled back. Carrying out a decision
  is retried with back-off until every participant has acknowledged it; a participant whose answer contradicts the
  decision (the codes of :data:`~wecross.stub.interfaces.TX_CONTRADICTIONS`: a commit answered ``rolled_back`` or
  ``unknown_tx``, a rollback answered ``already_committed``) is recorded as a heuristic outcome on the transaction
  and reported, not retried forever. A record whose write failed after the decision (an acknowledgement, the end)
  is written again by the sweep until the log has it.
- **Take-over.** The log record is the whitepaper's step record; another router given it (``adopt``) logs it, then
  finishes the transaction by the same rules (presumed abort when no decision is recorded).
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wecross.errors import RouterError
from wecross.ipath import IPath, IPathError
from wecross.stub.interfaces import OP_TX_COMMIT, OP_TX_PREPARE, OP_TX_ROLLBACK, TX_CONTRADICTIONS
from wecross.tx.log import TxLog
from wecross.tx.model import FINAL_STATES, StepState, Tx, TxError, TxState

log = Logger()

#: Codes after which a decision is not retried: the participant answered, and contradicted it (the participant
#: contract in wecross.stub.interfaces).
_CONTRADICTIONS = TX_CONTRADICTIONS
#: Codes that mean "the resource cannot take part at all": retrying changes nothing. Not ``unknown_chain`` or
#: ``unknown_resource``: right after a restart the directory is still empty, and a router serving the chain may be
#: on its way back; those are retried like an unreachable one.
_PERMANENT = {"unsupported", "bad_args", "bad_ipath"}


class Participants(Protocol):
    def tx_call(self, ipath: IPath, op: str, method: str, args: list[Any], sender: str) -> Deferred[dict[str, Any]]:
        """Run a transaction operation on the resource at ``ipath``, here or on the router that serves it."""


class Coordinator(Service):
    name = "tx-coordinator"

    def __init__(
        self,
        router_id: str,
        txlog: TxLog,
        participants: Participants,
        clock: IReactorTime,
        *,
        default_timeout: float = 60.0,
        max_timeout: float = 3600.0,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        max_steps: int = 256,
        sweep_interval: float = 1.0,
        rng: random.Random | None = None,
        hold_after_decision: float = 0.0,
        hold_between_participants: float = 0.0,
    ) -> None:
        """``hold_after_decision`` and ``hold_between_participants`` (seconds, 0 in production) widen the windows
        between logging a decision and telling the first participant, and between participants, so that fault
        tests can kill the process inside them."""
        self.router_id = router_id
        self.log = txlog
        #: Signs this coordinator's records (the router's key: wecross.attest.tx_record_body), set by the node.
        self.sign_record: Callable[[dict[str, Any]], bytes] | None = None
        #: Checks an adopted record's coordinator signature (raises RouterError), set by the node.
        self.verify_record: Callable[[dict[str, Any]], None] | None = None
        #: tx id -> the coordinator-signed record of a transaction adopted here (sent along with decisions).
        self._adopted: dict[str, dict[str, Any]] = {}
        self.participants = participants
        self.clock = clock
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.max_steps = max_steps
        self.sweep_interval = sweep_interval
        self.hold_after_decision = hold_after_decision
        self.hold_between_participants = hold_between_participants
        self.rng = rng or random.Random()
        self.txs: dict[str, Tx] = {}
        self.counters: dict[str, int] = {"started": 0, "committed": 0, "rolled_back": 0, "recovered": 0,
                                         "timed_out": 0, "retries": 0, "heuristic": 0, "log_failures": 0}
        #: Transactions whose decision is being written: who waits for that write to end (either way).
        self._deciding: dict[str, list[Deferred[None]]] = {}
        #: Transactions whose latest record could not be written; the sweep writes them again.
        self._unlogged: dict[str, Tx] = {}
        self._in_flight: dict[tuple[str, str], Deferred[Any]] = {}
        self._retry_calls: dict[tuple[str, str], IDelayedCall] = {}
        self._attempts: dict[tuple[str, str], int] = {}
        self._finished: dict[str, list[Deferred[dict[str, Any]]]] = {}
        self._sweeper = task.LoopingCall(self._sweep)
        self._sweeper.clock = clock

    # -- lifecycle --------------------------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for tx in self.log.open():
            self.txs[tx.tx_id] = tx
        unfinished = [tx for tx in self.txs.values() if tx.state not in FINAL_STATES]
        for tx in unfinished:
            self.counters["recovered"] += 1
            log.info("tx {tx}: recovering ({state}, {n} steps)", tx=tx.tx_id, state=tx.state.value, n=len(tx.steps))
            self._resume(tx, "the coordinator restarted before a decision was logged")
        self._sweeper.start(self.sweep_interval, now=False)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._sweeper.running:
            self._sweeper.stop()
        for call in self._retry_calls.values():
            if call.active():
                call.cancel()
        self._retry_calls.clear()
        for d in list(self._in_flight.values()):
            d.cancel()
        return self.log.close()

    def _resume(self, tx: Tx, reason: str) -> None:
        if tx.state is TxState.STARTED:
            now = self.clock.seconds()
            d = self._decide(tx, lambda t: t.decide_rollback(now, reason))
            d.addCallback(lambda _: self._drive(tx)).addErrback(self._undecided, tx, "rollback")
        else:
            self._drive(tx)

    # -- client operations ------------------------------------------------------------------------------------------

    def start(self, resources: list[str], timeout: float | None = None,
              sender: str = "anonymous") -> Deferred[dict[str, Any]]:
        """A new transaction over ``resources`` (iPaths; empty: any resource may take part)."""
        if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
            return defer.fail(TxError("bad_args", "resources must be a list of iPaths"))
        try:
            checked = [str(IPath.parse(r)) for r in resources]
        except IPathError as exc:
            return defer.fail(TxError("bad_ipath", str(exc)))
        if timeout is None:
            timeout = self.default_timeout
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= self.max_timeout:
            return defer.fail(TxError("bad_args", f"timeout must be a number of seconds in (0, {self.max_timeout}]"))
        now = self.clock.seconds()
        tx = Tx(tx_id=f"{self.router_id}:{uuid.uuid4().hex}", coordinator=self.router_id,
                resources=list(dict.fromkeys(checked)), created_at=now, deadline=now + float(timeout),
                updated_at=now, sender=sender)
        self.txs[tx.tx_id] = tx
        self.counters["started"] += 1
        return self._logged(tx).addCallback(lambda _: tx.to_record())

    def execute(self, tx_id: str, ipath: str, method: str, args: list[Any],
                sender: str = "anonymous") -> Deferred[dict[str, Any]]:
        """One step: prepare ``method(args)`` on ``ipath`` inside the transaction; the step's record."""
        try:
            tx = self.get_tx(tx_id)
            if tx_id in self._deciding:
                raise TxError("tx_state", f"transaction {tx_id} is being decided: no more steps")
            path = IPath.parse(ipath) if isinstance(ipath, str) else None
            if path is None:
                raise TxError("bad_ipath", "a step needs the iPath of its resource")
            if len(tx.steps) >= self.max_steps:
                raise TxError("bad_args", f"a transaction has at most {self.max_steps} steps")
            step = tx.add_step(str(path), method, args, self.clock.seconds())
        except IPathError as exc:
            return defer.fail(TxError("bad_ipath", str(exc)))
        except RouterError as exc:
            return defer.fail(exc)

        def send(_: object) -> Deferred[dict[str, Any]]:
            return self.participants.tx_call(path, OP_TX_PREPARE, method, [tx_id, list(args)], sender)

        def prepared(result: dict[str, Any]) -> Deferred[dict[str, Any]]:
            tx.step_prepared(step.number, result.get("output"), self.clock.seconds())
            return self._logged(tx).addCallback(lambda _: dict(step.to_record(), tx_state=tx.state.value))

        def failed(failure: Failure) -> Deferred[dict[str, Any]]:
            error = failure.value if isinstance(failure.value, RouterError) else RouterError(
                "internal", failure.getErrorMessage())
            tx.step_failed(step.number, error.code, error.message, self.clock.seconds())

            def reraise(_: object) -> Failure:
                details = dict(error.details, tx_id=tx_id, step=step.number)
                return Failure(RouterError(error.code, f"step {step.number} of {tx_id} failed: {error.message}",
                                           details))

            return self._logged(tx).addBoth(reraise)

        d = self._logged(tx).addCallback(send)
        d.addCallbacks(prepared, failed)
        return d

    def commit(self, tx_id: str, wait: float = 10.0) -> Deferred[dict[str, Any]]:
        """Log the commit decision, carry it out; answers when every participant committed (or after ``wait``
        seconds with the transaction still ``committing``: it will finish, the log says so)."""
        try:
            tx = self.get_tx(tx_id)
            if tx_id in self._deciding:
                return self._after_decision(tx_id).addCallback(lambda _: self.commit(tx_id, wait))
            if tx.state is TxState.COMMITTING or tx.state is TxState.COMMITTED:
                return self._wait(tx, wait)
            now = self.clock.seconds()
            d = self._decide(tx, lambda t: t.decide_commit(now))
        except RouterError as exc:
            return defer.fail(exc)
        d.addErrback(self._undecided, tx, "commit", reraise=True)
        if self.hold_after_decision > 0:
            d.addCallback(lambda _: task.deferLater(self.clock, self.hold_after_decision, lambda: None))
        return d.addCallback(lambda _: self._drive(tx)).addCallback(lambda _: self._wait(tx, wait))

    def rollback(self, tx_id: str, reason: str = "rolled back by the client",
                 wait: float = 10.0) -> Deferred[dict[str, Any]]:
        try:
            tx = self.get_tx(tx_id)
            if tx_id in self._deciding:
                return self._after_decision(tx_id).addCallback(lambda _: self.rollback(tx_id, reason, wait))
            if tx.state in (TxState.ROLLING_BACK, TxState.ROLLED_BACK):
                return self._wait(tx, wait)
            now = self.clock.seconds()
            d = self._decide(tx, lambda t: t.decide_rollback(now, reason))
        except RouterError as exc:
            return defer.fail(exc)
        d.addErrback(self._undecided, tx, "rollback", reraise=True)
        return d.addCallback(lambda _: self._drive(tx)).addCallback(lambda _: self._wait(tx, wait))

    def adopt(self, record: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Take over a transaction from its record (another coordinator's): finish it by the recovery rules. The
        record must carry its coordinator's signature (``verify_record``; a forged ``committing`` record would
        otherwise drive commits to whatever participants it names)."""
        try:
            if self.verify_record is not None:
                self.verify_record(record)
            tx = Tx.from_record(record)
        except RouterError as exc:
            return defer.fail(exc)
        if isinstance(record.get("signature"), str):
            self._adopted[tx.tx_id] = dict(record)
        known = self.txs.get(tx.tx_id)
        if (known is not None and known.state not in FINAL_STATES) or tx.tx_id in self._deciding:
            return defer.fail(TxError("tx_state", f"transaction {tx.tx_id} is already being finished here"))
        # Logged before it is known here: a decision it carries is then durable here before anyone hears it from us.
        self._deciding[tx.tx_id] = []

        def logged(_: object) -> Deferred[dict[str, Any]]:
            self.txs[tx.tx_id] = tx
            self._decided(tx.tx_id)
            if tx.state in FINAL_STATES:
                return defer.succeed(tx.to_record())
            self._resume(tx, f"taken over by {self.router_id}: no decision was recorded")
            return self._wait(tx, 10.0)

        def unlogged(failure: Failure) -> Failure:
            self._decided(tx.tx_id)
            return failure

        return self._logged(tx).addCallbacks(logged, unlogged)

    def get_tx(self, tx_id: str) -> Tx:
        if not isinstance(tx_id, str):
            raise TxError("bad_args", "a transaction id is a string")
        tx = self.txs.get(tx_id)
        if tx is None:
            raise TxError("unknown_tx", f"no transaction {tx_id} here")
        return tx

    def get(self, tx_id: str) -> dict[str, Any]:
        """The transaction's record, signed by this router when it coordinates it (``signature``, hex): what
        ``adopt`` elsewhere requires."""
        tx = self.get_tx(tx_id)
        record = tx.to_record()
        if self.sign_record is not None and tx.coordinator == self.router_id:
            record["signature"] = self.sign_record(record).hex()
        return record

    def status(self, tx_id: str) -> dict[str, Any]:
        """What a participant asks: the state, which shows a decision only once the log has it (a participant
        acts on ``committing``)."""
        tx = self.get_tx(tx_id)
        return {"tx_id": tx_id, "state": tx.state.value}

    def list(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if state is not None and state not in {s.value for s in TxState}:
            raise TxError("bad_args", f"state must be one of {', '.join(s.value for s in TxState)}")
        rows = [tx.summary() for tx in self.txs.values() if state is None or tx.state.value == state]
        rows.sort(key=lambda r: r["created_at"], reverse=True)
        return rows[:limit]

    def stats(self) -> dict[str, Any]:
        by_state: dict[str, int] = {}
        for tx in self.txs.values():
            by_state[tx.state.value] = by_state.get(tx.state.value, 0) + 1
        return {"by_state": by_state, **self.counters, "log_flushes": self.log.flushes,
                "unlogged": len(self._unlogged)}

    # -- carrying out decisions -------------------------------------------------------------------------------------

    def _logged(self, tx: Tx) -> Deferred[None]:
        d = self.log.write(tx)
        self._unlogged.pop(tx.tx_id, None)  # this write carries the latest record; it re-registers if it fails
        return d

    def _decide(self, tx: Tx, decide: Callable[[Tx], object]) -> Deferred[None]:
        """Make a decision durable, then visible: ``decide`` runs on a copy (raising TxError when the decision is
        not allowed), the copy's record is written, and only once it is on disk does ``decide`` run on ``tx``
        itself. Fails with the log's ``storage_error``, ``tx`` unchanged."""
        draft = dataclasses.replace(tx)  # shallow: a decision assigns fields, it changes no list
        decide(draft)
        self._deciding[tx.tx_id] = []
        d = self.log.write(draft)

        def durable(_: object) -> None:
            self._unlogged.pop(tx.tx_id, None)
            decide(tx)  # before the waiters run: they see the decision
            self._decided(tx.tx_id)

        def undurable(failure: Failure) -> Failure:
            self._decided(tx.tx_id)
            return failure

        return d.addCallbacks(durable, undurable)

    def _decided(self, tx_id: str) -> None:
        for waiter in self._deciding.pop(tx_id, []):
            waiter.callback(None)

    def _after_decision(self, tx_id: str) -> Deferred[None]:
        """Fires once the decision being written for ``tx_id`` is durable or has failed."""
        waiting = self._deciding.get(tx_id)
        if waiting is None:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()
        waiting.append(d)
        return d

    def _undecided(self, failure: Failure, tx: Tx, what: str, reraise: bool = False) -> Failure | None:
        """A decision could not be logged: nothing acted on it, the transaction stays started (as the log says)."""
        self.counters["log_failures"] += 1
        log.warn("tx {tx}: the {what} decision could not be logged ({error}); the transaction stays started until "
                 "a decision can be logged (its deadline rolls it back)", tx=tx.tx_id, what=what,
                 error=failure.getErrorMessage())
        return failure if reraise else None

    def _drive(self, tx: Tx) -> None:
        if tx.state not in (TxState.COMMITTING, TxState.ROLLING_BACK):
            return
        if not tx.outstanding():
            self._finish_if_done(tx)
            return
        op = OP_TX_COMMIT if tx.state is TxState.COMMITTING else OP_TX_ROLLBACK
        for i, ipath in enumerate(tx.outstanding()):
            if i and self.hold_between_participants > 0:
                self.clock.callLater(i * self.hold_between_participants, self._send_decision, tx, ipath, op)
            else:
                self._send_decision(tx, ipath, op)

    def _finish_if_done(self, tx: Tx) -> None:
        """A transaction with no participant (rolled back before any step) ends at once."""
        if tx.state in FINAL_STATES:
            self._notify(tx)
            return
        if tx.participants():
            return
        tx.state = TxState.COMMITTED if tx.state is TxState.COMMITTING else TxState.ROLLED_BACK
        tx.finished_at = tx.updated_at = self.clock.seconds()
        self._logged(tx).addCallback(lambda _: self._notify(tx)).addErrback(self._log_failure, tx)

    def _send_decision(self, tx: Tx, ipath: str, op: str) -> None:
        key = (tx.tx_id, ipath)
        if key in self._in_flight or not self.running:
            return
        call = self._retry_calls.pop(key, None)
        if call is not None and call.active():
            call.cancel()
        args: list[Any] = [tx.tx_id]
        evidence = self._adopted.get(tx.tx_id)
        if evidence is not None:
            # Not the coordinator named in the transaction id: participants take the decision from us only with
            # that coordinator's signed record (the one we adopted), which shows it already decided, or had not.
            args.append(evidence)
        d = self.participants.tx_call(IPath.parse(ipath), op, "", args, tx.sender)
        self._in_flight[key] = d

        def acked(result: dict[str, Any]) -> None:
            self._in_flight.pop(key, None)
            self._attempts.pop(key, None)
            outcome = {k: result[k] for k in ("tx_hash", "block_number", "output") if k in result}
            self._acked(tx, ipath, outcome)

        def failed(failure: Failure) -> None:
            self._in_flight.pop(key, None)
            error = failure.value
            code = error.code if isinstance(error, RouterError) else "internal"
            message = error.message if isinstance(error, RouterError) else failure.getErrorMessage()
            if not self.running:
                return
            if code in _CONTRADICTIONS[op] or code in _PERMANENT:
                self.counters["heuristic"] += 1
                tx.note_heuristic(ipath, code, message)
                log.error("tx {tx}: {ipath} answered {op} with {code}: {message} (heuristic outcome)",
                          tx=tx.tx_id, ipath=ipath, op=op, code=code, message=message)
                self._acked(tx, ipath, {"heuristic": code})
                return
            attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
            delay = min(self.retry_max, self.retry_min * 2 ** (attempts - 1)) * (0.5 + self.rng.random() / 2)
            self.counters["retries"] += 1
            log.info("tx {tx}: {op} on {ipath} failed ({code}: {message}); retrying in {delay:.1f} s",
                     tx=tx.tx_id, op=op, ipath=ipath, code=code, message=message, delay=delay)
            self._retry_calls[key] = self.clock.callLater(delay, self._send_decision, tx, ipath, op)

        d.addCallbacks(acked, failed)

    def _acked(self, tx: Tx, ipath: str, outcome: dict[str, Any]) -> None:
        if tx.state not in (TxState.COMMITTING, TxState.ROLLING_BACK):
            return
        finished = tx.ack(ipath, self.clock.seconds(), outcome)
        d = self._logged(tx)
        if finished:
            self.counters["committed" if tx.state is TxState.COMMITTED else "rolled_back"] += 1
            d.addCallback(lambda _: self._notify(tx))
        d.addErrback(self._log_failure, tx)

    def _notify(self, tx: Tx) -> None:
        for d in self._finished.pop(tx.tx_id, []):
            if not d.called:
                d.callback(tx.to_record())

    def _wait(self, tx: Tx, wait: float) -> Deferred[dict[str, Any]]:
        if tx.state in FINAL_STATES:
            return defer.succeed(tx.to_record())
        d: Deferred[dict[str, Any]] = Deferred()
        self._finished.setdefault(tx.tx_id, []).append(d)

        def give_up() -> None:
            if not d.called:
                waiting = self._finished.get(tx.tx_id, [])
                if d in waiting:
                    waiting.remove(d)
                d.callback(tx.to_record())

        timer = self.clock.callLater(max(0.0, wait), give_up)
        d.addBoth(_cancel_timer, timer)
        return d

    def _log_failure(self, failure: Failure, tx: Tx) -> None:
        """A record written after the decision did not reach the log: the sweep writes it again. (Acting on it went
        on: what it adds, acknowledgements, is re-learnt from the participants after a crash.)"""
        self.counters["log_failures"] += 1
        self._unlogged[tx.tx_id] = tx
        log.warn("tx {tx}: could not log the transaction ({error}); written again at the next sweep",
                 tx=tx.tx_id, error=failure.getErrorMessage())

    # -- deadlines --------------------------------------------------------------------------------------------------

    def _sweep(self) -> None:
        now = self.clock.seconds()
        for tx in list(self._unlogged.values()):
            if tx.tx_id not in self._deciding:
                self._logged(tx).addCallback(self._notify_if_final, tx).addErrback(self._log_failure, tx)
        for tx in list(self.txs.values()):
            if tx.state is TxState.STARTED and now > tx.deadline and tx.tx_id not in self._deciding and not any(
                    s.state is StepState.PENDING and now - s.at < 5.0 for s in tx.steps):
                self.counters["timed_out"] += 1
                log.info("tx {tx}: deadline passed while started; rolling back", tx=tx.tx_id)
                d = self._decide(tx, lambda t: t.decide_rollback(now, "the transaction's deadline passed before it "
                                                                     "was committed"))
                d.addCallback(lambda _, tx=tx: self._drive(tx)).addErrback(self._undecided, tx, "rollback")

    def _notify_if_final(self, _: object, tx: Tx) -> None:
        if tx.state in FINAL_STATES:
            self._notify(tx)


def _cancel_timer(result: Any, timer: IDelayedCall) -> Any:
    if timer.active():
        timer.cancel()
    return result

