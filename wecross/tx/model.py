"""A two-phase-commit transaction as the coordinator sees it: a sans-IO state machine.

States::

    started --commit--> committing --(every participant acked)--> committed
       |                     (the decision is logged before any participant hears it: recovery re-drives it)
       +--rollback / timeout / failed step / crash before the decision--> rolling_back --(all acked)--> rolled_back

A step is one call on one resource inside the transaction (``prepare`` on the participant: executed tentatively,
what it touches locked). The transaction may commit only when every step it started has been prepared; a step that
failed, or whose outcome is unknown, leaves only rollback. The participants of the decision are every resource any
step was sent to, including steps whose answer never came (rolling back a transaction a participant never saw is a
no-op there).

Every transition is a method that checks the current state and raises :class:`TxError` (with an HTTP-friendly
code) when it does not apply; the caller (the coordinator service) logs the new record durably and only then acts.
The record (:meth:`Tx.to_record`) is the whitepaper's step record: transaction id, and per step its number,
operation and state; another router holding it can finish the transaction (:meth:`Tx.from_record`).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from wecross.errors import RouterError


class TxState(enum.StrEnum):
    STARTED = "started"
    COMMITTING = "committing"
    COMMITTED = "committed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"


FINAL_STATES = frozenset({TxState.COMMITTED, TxState.ROLLED_BACK})


class StepState(enum.StrEnum):
    PENDING = "pending"  # sent, no answer yet (or the coordinator crashed waiting)
    PREPARED = "prepared"
    FAILED = "failed"


class TxError(RouterError):
    """A request that does not fit the transaction's state: ``unknown_tx`` (404), ``tx_state`` (409),
    ``bad_args`` (400)."""


@dataclass(slots=True)
class Step:
    number: int
    ipath: str
    method: str
    args: list[Any]
    state: StepState = StepState.PENDING
    output: Any = None
    error: dict[str, Any] | None = None
    at: float = 0.0

    def to_record(self) -> dict[str, Any]:
        return {"number": self.number, "ipath": self.ipath, "method": self.method, "args": self.args,
                "state": self.state.value, "output": self.output, "error": self.error, "at": self.at}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Step:
        return cls(int(record["number"]), str(record["ipath"]), str(record["method"]), list(record["args"]),
                   StepState(record["state"]), record.get("output"), record.get("error"), float(record.get("at", 0)))


@dataclass(slots=True)
class Tx:
    tx_id: str
    coordinator: str
    resources: list[str]
    created_at: float
    deadline: float
    state: TxState = TxState.STARTED
    steps: list[Step] = field(default_factory=list)
    #: Participants (iPaths) that acknowledged the decision.
    acked: list[str] = field(default_factory=list)
    reason: str | None = None
    decided_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0
    #: Participants whose answer to the decision contradicted it (e.g. a heuristic rollback after a timeout there).
    heuristic: list[dict[str, Any]] = field(default_factory=list)
    sender: str = "anonymous"
    #: Participant iPath -> what carrying out the decision gave there (the commit's tx hash and block, for one).
    outcomes: dict[str, Any] = field(default_factory=dict)

    # -- steps ------------------------------------------------------------------------------------------------------

    def add_step(self, ipath: str, method: str, args: list[Any], now: float) -> Step:
        self._require(TxState.STARTED, "run a step")
        if self.resources and ipath not in self.resources:
            raise TxError("bad_args", f"{ipath} is not one of the transaction's resources {self.resources}")
        if not isinstance(method, str) or not method:
            raise TxError("bad_args", "a step needs a method name")
        if not isinstance(args, list):
            raise TxError("bad_args", "a step's args must be a list")
        if now > self.deadline:
            raise TxError("tx_state", f"transaction {self.tx_id} passed its deadline; it is being rolled back")
        step = Step(len(self.steps) + 1, ipath, method, list(args), at=now)
        self.steps.append(step)
        self.updated_at = now
        return step

    def step_prepared(self, number: int, output: Any, now: float) -> Step:
        step = self._step(number)
        step.state, step.output, step.at = StepState.PREPARED, output, now
        self.updated_at = now
        return step

    def step_failed(self, number: int, code: str, message: str, now: float) -> Step:
        step = self._step(number)
        step.state, step.error, step.at = StepState.FAILED, {"code": code, "message": message}, now
        self.updated_at = now
        return step

    def _step(self, number: int) -> Step:
        if not 1 <= number <= len(self.steps):
            raise TxError("bad_args", f"transaction {self.tx_id} has no step {number}")
        return self.steps[number - 1]

    # -- the decision -----------------------------------------------------------------------------------------------

    def decide_commit(self, now: float) -> None:
        self._require(TxState.STARTED, "commit")
        if not self.steps:
            raise TxError("tx_state", f"transaction {self.tx_id} has no steps to commit")
        pending = [s.number for s in self.steps if s.state is StepState.PENDING]
        if pending:
            raise TxError("tx_state", f"transaction {self.tx_id} has steps still running: {pending}")
        failed = [s.number for s in self.steps if s.state is StepState.FAILED]
        if failed:
            raise TxError("tx_state", f"transaction {self.tx_id} cannot commit: steps {failed} failed; roll it back")
        self.state, self.decided_at, self.updated_at = TxState.COMMITTING, now, now

    def decide_rollback(self, now: float, reason: str) -> bool:
        """True when this moved the transaction to rolling_back; False when it already was (or is rolled back)."""
        if self.state in (TxState.ROLLING_BACK, TxState.ROLLED_BACK):
            return False
        if self.state is not TxState.STARTED:
            raise TxError("tx_state", f"transaction {self.tx_id} is {self.state.value}: the commit decision is "
                                      "logged and will be carried out; it cannot be rolled back")
        self.state, self.reason, self.decided_at, self.updated_at = TxState.ROLLING_BACK, reason, now, now
        return True

    def participants(self) -> list[str]:
        """Every resource the decision must reach: each that any step was sent to, in first-use order."""
        return list(dict.fromkeys(step.ipath for step in self.steps))

    def outstanding(self) -> list[str]:
        return [p for p in self.participants() if p not in self.acked]

    def ack(self, ipath: str, now: float, outcome: Any = None) -> bool:
        """A participant carried out the decision; True when that finished the transaction."""
        if self.state not in (TxState.COMMITTING, TxState.ROLLING_BACK):
            raise TxError("tx_state", f"transaction {self.tx_id} is {self.state.value}: nothing to acknowledge")
        if ipath not in self.acked:
            self.acked.append(ipath)
            if outcome is not None:
                self.outcomes[ipath] = outcome
        self.updated_at = now
        if self.outstanding():
            return False
        self.state = TxState.COMMITTED if self.state is TxState.COMMITTING else TxState.ROLLED_BACK
        self.finished_at = now
        return True

    def note_heuristic(self, ipath: str, code: str, message: str) -> None:
        self.heuristic.append({"ipath": ipath, "code": code, "message": message})

    def _require(self, state: TxState, what: str) -> None:
        if self.state is not state:
            raise TxError("tx_state", f"cannot {what}: transaction {self.tx_id} is {self.state.value}")

    # -- the durable record -----------------------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        return {
            "tx_id": self.tx_id, "coordinator": self.coordinator, "state": self.state.value,
            "resources": self.resources, "created_at": self.created_at, "deadline": self.deadline,
            "steps": [s.to_record() for s in self.steps], "acked": self.acked, "reason": self.reason,
            "decided_at": self.decided_at, "finished_at": self.finished_at, "updated_at": self.updated_at,
            "heuristic": self.heuristic, "sender": self.sender, "outcomes": self.outcomes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_record(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Tx:
        """A transaction from its record; TxError("bad_args") when the record is not one."""
        try:
            return cls(
                tx_id=str(record["tx_id"]), coordinator=str(record["coordinator"]),
                resources=[str(r) for r in record.get("resources", [])],
                created_at=float(record["created_at"]), deadline=float(record["deadline"]),
                state=TxState(record["state"]), steps=[Step.from_record(s) for s in record.get("steps", [])],
                acked=[str(a) for a in record.get("acked", [])], reason=record.get("reason"),
                decided_at=record.get("decided_at"), finished_at=record.get("finished_at"),
                updated_at=float(record.get("updated_at", 0.0)), heuristic=list(record.get("heuristic", [])),
                sender=str(record.get("sender", "anonymous")), outcomes=dict(record.get("outcomes", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TxError("bad_args", f"not a transaction record: {exc}") from None

    def summary(self) -> dict[str, Any]:
        """What ``GET /tx`` lists per transaction."""
        return {"tx_id": self.tx_id, "state": self.state.value, "steps": len(self.steps),
                "participants": self.participants(), "created_at": self.created_at, "updated_at": self.updated_at,
                "reason": self.reason}
