"""The participants' safety net: a prepared transaction whose coordinator goes quiet is not left holding locks.

Every ``interval`` the watcher lists the transactions prepared on this router's chains (stubs that take part offer
``prepared_transactions()``). One prepared for longer than ``timeout`` makes it ask the coordinator (the router
named in the transaction id) for the state, and then:

- ``committing`` / ``committed``: commit here (the coordinator's retry may simply not have reached us yet);
- ``rolling_back`` / ``rolled_back``, or ``unknown_tx`` (the coordinator has no record: nothing was decided):
  roll back here;
- ``started``: wait; the coordinator is alive and rolls back at its own deadline;
- no answer (the coordinator is down or cut off): roll back here. This is the heuristic decision the timeout
  exists for; should the coordinator come back with a commit decision, our ``unknown_tx`` answer is recorded on its
  transaction as a heuristic outcome, so the operator sees it. Choose ``participant_timeout`` well above the time a
  coordinator needs to restart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wecross.errors import RouterError
from wecross.ipath import IPath
from wecross.stub.interfaces import OP_TX_COMMIT, OP_TX_ROLLBACK

log = Logger()


class ParticipantWatcher(Service):
    name = "tx-participant"

    def __init__(self, router: Any, stubs: Callable[[], Mapping[str, Any]], clock: IReactorTime, *,
                 timeout: float = 300.0, interval: float = 5.0) -> None:
        self.router = router
        self.stubs = stubs
        self.clock = clock
        self.timeout = timeout
        self.interval = interval
        self.counters = {"asked": 0, "committed": 0, "rolled_back": 0, "heuristic_rollbacks": 0}
        self._busy: set[str] = set()
        self._loop = LoopingCall(self.check)
        self._loop.clock = clock

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def check(self) -> None:
        now = self.clock.seconds()
        for chain, stub in sorted(self.stubs().items()):
            lister = getattr(stub, "prepared_transactions", None)
            if lister is None:
                continue
            try:
                prepared = lister()
            except Exception:
                log.failure("chain {chain}: listing prepared transactions failed", chain=chain)
                continue
            for entry in prepared:
                tx_id = entry.get("tx_id")
                since = entry.get("since")
                if not isinstance(tx_id, str) or not isinstance(since, (int, float)) or tx_id in self._busy:
                    continue
                if now - since < self.timeout:
                    continue
                self._resolve(tx_id, IPath.parse(f"{chain}.{entry['resource']}"), now - since)

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

        def unanswered(failure: Failure) -> Deferred[Any]:
            error = failure.value
            code = error.code if isinstance(error, RouterError) else "internal"
            if code == "unknown_tx":
                return self._carry_out(tx_id, path, OP_TX_ROLLBACK, f"coordinator {coordinator} has no record of it")
            self.counters["heuristic_rollbacks"] += 1
            log.warn("tx {tx}: prepared here for {age:.0f} s and coordinator {c} cannot be asked ({code}); rolling "
                     "back (heuristic decision)", tx=tx_id, age=age, c=coordinator, code=code)
            return self._carry_out(tx_id, path, OP_TX_ROLLBACK, "the coordinator could not be reached")

        d = self.router.tx_status(coordinator, tx_id, path)
        d.addCallbacks(decided, unanswered)
        d.addErrback(lambda failure: log.failure("tx {tx}: resolving failed", failure, tx=tx_id))
        d.addBoth(lambda _: self._busy.discard(tx_id))

    def _carry_out(self, tx_id: str, path: IPath, op: str, why: str) -> Deferred[Any]:
        def done(_: object) -> None:
            self.counters["committed" if op == OP_TX_COMMIT else "rolled_back"] += 1
            log.info("tx {tx}: {op} on {path} by the participant ({why})", tx=tx_id, op=op, path=str(path), why=why)

        d: Deferred[Any] = self.router.tx_call(path, op, "", [tx_id], "router")
        return d.addCallback(done)
