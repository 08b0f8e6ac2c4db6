"""The participants' side of 2PC: a prepared transaction whose decision does not arrive is resolved by asking, and
decided alone only when an operator says so.

Every ``interval`` the watcher lists the transactions prepared on this router's chains (stubs that take part offer
``prepared_transactions()``). One prepared for longer than ``timeout`` makes it ask the coordinator (the router
named in the transaction id) with ``txStatus``, and then:

- ``committing`` / ``committed``: commit here (the coordinator shows a decision only once its log has it, so this
  commit can never be undone by the coordinator's recovery);
- ``rolling_back`` / ``rolled_back``, or ``unknown_tx`` (the coordinator has no record: nothing was decided, and the
  coordinator logs a transaction before any prepare is sent): roll back here;
- ``started``: wait; the coordinator is alive and rolls back at its own deadline;
- no answer (the coordinator is down or cut off): **stay prepared, locks held, and ask again next interval**. This is
  what 2PC requires: a participant that voted yes gave up the right to decide, because the decision may already be
  commit. A router that adopted the transaction (``POST /tx/adopt``) sends the decision itself, so waiting here
  also ends when another router finishes the transaction.

A unilateral (heuristic) decision is never taken by default. It is either an operator's explicit act,
:meth:`ParticipantWatcher.decide_alone`, or the opt-in setting ``[tx] participant_heuristic = "rollback"``, which
rolls back a transaction whose coordinator could not be asked for ``heuristic_after`` seconds past the timeout.
Either way it is reported as a heuristic outcome: an error in the log, an entry in :attr:`heuristics` (and the
``heuristic_decisions`` counter) here, and on the coordinator's record when its decision reaches this participant
and is contradicted (``rolled_back`` / ``already_committed``: the contract in wecross.stub.interfaces).
``tests.test_tx_network`` checks that a participant whose coordinator is down stays prepared, and that both
heuristic paths are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wecross.errors import RouterError
from wecross.ipath import IPath
from wecross.stub.interfaces import OP_TX_COMMIT, OP_TX_ROLLBACK

log = Logger()

#: ``[tx] participant_heuristic``: what a participant does when its coordinator cannot be asked.
HEURISTIC_POLICIES = ("wait", "rollback")
#: At most this many heuristic decisions are kept in :attr:`ParticipantWatcher.heuristics` (the log keeps all).
_MAX_REPORTED = 1000


class ParticipantWatcher(Service):
    name = "tx-participant"

    def __init__(self, router: Any, stubs: Callable[[], Mapping[str, Any]], clock: IReactorTime, *,
                 timeout: float = 300.0, interval: float = 5.0, heuristic: str = "wait",
                 heuristic_after: float = 3600.0) -> None:
        if heuristic not in HEURISTIC_POLICIES:
            raise ValueError(f"heuristic must be one of {', '.join(HEURISTIC_POLICIES)}")
        self.router = router
        self.stubs = stubs
        self.clock = clock
        self.timeout = timeout
        self.interval = interval
        self.heuristic = heuristic
        self.heuristic_after = heuristic_after
        self.counters = {"asked": 0, "committed": 0, "rolled_back": 0, "unanswered": 0, "heuristic_decisions": 0}
        #: Every unilateral decision taken here, newest last: tx_id, ipath, op, why, at.
        self.heuristics: list[dict[str, Any]] = []
        self._busy: set[str] = set()
        #: tx_id -> when we last logged that its coordinator cannot be asked (once a minute per transaction).
        self._warned: dict[str, float] = {}
        self._loop = LoopingCall(self.check)
        self._loop.clock = clock

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def prepared(self) -> list[tuple[IPath, dict[str, Any]]]:
        """Every transaction prepared on this router's chains: (the resource's iPath, the stub's listing entry)."""
        found: list[tuple[IPath, dict[str, Any]]] = []
        for chain, stub in sorted(self.stubs().items()):
            lister = getattr(stub, "prepared_transactions", None)
            if lister is None:
                continue
            try:
                entries = lister()
            except Exception:
                log.failure("chain {chain}: listing prepared transactions failed", chain=chain)
                continue
            for entry in entries:
                if isinstance(entry.get("tx_id"), str) and isinstance(entry.get("since"), (int, float)):
                    found.append((IPath.parse(f"{chain}.{entry['resource']}"), entry))
        return found

    def check(self) -> None:
        now = self.clock.seconds()
        listed = self.prepared()
        still = {entry["tx_id"] for _, entry in listed}
        for tx_id in [t for t in self._warned if t not in still]:
            del self._warned[tx_id]
        for path, entry in listed:
            tx_id = entry["tx_id"]
            age = now - entry["since"]
            if tx_id in self._busy or age < self.timeout:
                continue
            self._resolve(tx_id, path, age)

    def _resolve(self, tx_id: str, path: IPath, age: float) -> None:
        coordinator = tx_id.split(":", 1)[0]
        self._busy.add(tx_id)
        self.counters["asked"] += 1

        def decided(answer: dict[str, Any]) -> Deferred[Any] | None:
            output = answer.get("output")
            state = output.get("state") if isinstance(output, dict) else None
            if state in ("committing", "committed"):
                return self._carry_out(tx_id, path, OP_TX_COMMIT, f"coordinator {coordinator} says {state}")
            if state in ("rolling_back", "rolled_back"):
                return self._carry_out(tx_id, path, OP_TX_ROLLBACK, f"coordinator {coordinator} says {state}")
            log.info("tx {tx}: prepared here for {age:.0f} s; coordinator {c} says {state}, waiting",
                     tx=tx_id, age=age, c=coordinator, state=state)
            return None

        def unanswered(failure: Failure) -> Deferred[Any] | None:
            error = failure.value
            code = error.code if isinstance(error, RouterError) else "internal"
            if code == "unknown_tx":
                return self._carry_out(tx_id, path, OP_TX_ROLLBACK, f"coordinator {coordinator} has no record of it")
            self.counters["unanswered"] += 1
            if self.heuristic == "rollback" and age >= self.timeout + self.heuristic_after:
                return self.decide_alone(tx_id, path, OP_TX_ROLLBACK,
                                         f"coordinator {coordinator} could not be asked ({code}) for {age:.0f} s "
                                         "(participant_heuristic = rollback)")
            now = self.clock.seconds()
            if now - self._warned.get(tx_id, float("-inf")) >= 60.0:
                self._warned[tx_id] = now
                log.warn("tx {tx}: prepared here for {age:.0f} s and coordinator {c} cannot be asked ({code}); "
                         "staying prepared until it or a router that adopted the transaction decides", tx=tx_id,
                         age=age, c=coordinator, code=code)
            return None

        d = self.router.tx_status(coordinator, tx_id, path)
        d.addCallbacks(decided, unanswered)
        d.addErrback(lambda failure: log.failure("tx {tx}: resolving failed", failure, tx=tx_id))
        d.addBoth(lambda _: self._busy.discard(tx_id))

    def decide_alone(self, tx_id: str, path: IPath | str, op: str, why: str) -> Deferred[Any]:
        """The operator's way out of a blocked transaction: commit (``txCommit``) or roll back (``txRollback``)
        ``tx_id`` on the resource at ``path`` without the coordinator's decision. Reported as a heuristic outcome
        (log error, :attr:`heuristics`); the coordinator records it too when its own decision is contradicted."""
        if op not in (OP_TX_COMMIT, OP_TX_ROLLBACK):
            return defer.fail(RouterError("bad_args", f"a participant decides {OP_TX_COMMIT} or {OP_TX_ROLLBACK}"))
        if isinstance(path, str):
            try:
                path = IPath.parse(path)
            except ValueError as exc:
                return defer.fail(RouterError("bad_ipath", str(exc)))
        self.counters["heuristic_decisions"] += 1
        self.heuristics.append({"tx_id": tx_id, "ipath": str(path), "op": op, "why": why[:500],
                                "at": self.clock.seconds()})
        del self.heuristics[:-_MAX_REPORTED]
        log.error("tx {tx}: {op} on {path} decided by the participant alone: {why} (heuristic outcome)",
                  tx=tx_id, op=op, path=str(path), why=why[:500])
        return self._carry_out(tx_id, path, op, f"heuristic: {why[:500]}")

    def _carry_out(self, tx_id: str, path: IPath, op: str, why: str) -> Deferred[Any]:
        def done(_: object) -> None:
            self.counters["committed" if op == OP_TX_COMMIT else "rolled_back"] += 1
            log.info("tx {tx}: {op} on {path} by the participant ({why})", tx=tx_id, op=op, path=str(path), why=why)

        d: Deferred[Any] = self.router.tx_call(path, op, "", [tx_id], "router")
        return d.addCallback(done)
