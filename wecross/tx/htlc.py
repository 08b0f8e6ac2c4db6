"""Hash time-locked exchanges across two chains, each side run by its own router.

The whitepaper's exchange, with the roles it names: the *initiator* (Alice, funds on chain 1) picks a secret S and
locks her amount for Bob under H = sha256(S) until T0; the *participant* (Bob, funds on chain 2) checks that lock
(through the overlay: the read is proven and verified by his router, see wecross.chain.trust) and locks his amount
for Alice under the same H until T1, with T0 > T1 + margin. Alice's router sees Bob's lock (verified the same way),
checks its terms and unlocks it with S, which publishes S on chain 2; Bob's router reads S there and unlocks Alice's
lock on chain 1 before T0. Whoever's lock is still locked at its time lock gets a refund from their own router, so an
exchange either completes on both chains or returns both amounts; the margin is the time Bob's router has to react
after S appears.

:func:`decide` is the sans-IO core: from an exchange's record, the two locks' states as read from the chains and
the time, it says what to do next. :class:`HtlcService` runs it every ``interval`` for each open exchange, records
every step durably (the coordinator's log class, its own file) and carries the actions out over the overlay.
"""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.ipath import IPath, IPathError
from wecross.stub.interfaces import OP_HTLC_LOCK, OP_HTLC_TIMEOUT, OP_HTLC_UNLOCK
from wecross.tx.log import TxLog

log = Logger()

INITIATOR = "initiator"
PARTICIPANT = "participant"


class HtlcState(enum.StrEnum):
    LOCKING = "locking"  # our lock is being made
    LOCKED = "locked"  # our lock is on chain; waiting for the other side
    CLAIMED = "claimed"  # we unlocked the other side's lock (we hold its amount); our own may still be open
    REFUNDED = "refunded"  # our lock came back to us after its time lock
    DONE = "done"  # both locks settled
    FAILED = "failed"  # our lock could not be made (nothing is locked)


FINAL = frozenset({HtlcState.DONE, HtlcState.FAILED})


@dataclass(slots=True)
class Leg:
    """One lock: on ``path``, ``sender``'s ``amount`` for ``receiver`` until ``timelock`` (unix seconds)."""

    path: str
    sender: str
    receiver: str
    amount: int
    timelock: float = 0.0
    #: As last read from its chain: absent / locked / unlocked / refunded.
    chain_state: str = "absent"

    def to_record(self) -> dict[str, Any]:
        return {"path": self.path, "sender": self.sender, "receiver": self.receiver, "amount": self.amount,
                "timelock": self.timelock, "chain_state": self.chain_state}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Leg:
        return cls(str(record["path"]), str(record["sender"]), str(record["receiver"]), int(record["amount"]),
                   float(record.get("timelock", 0.0)), str(record.get("chain_state", "absent")))


@dataclass(slots=True)
class Htlc:
    htlc_id: str
    role: str
    hash_lock: str
    own: Leg
    other: Leg
    margin: float
    created_at: float
    state: HtlcState = HtlcState.LOCKING
    secret: str | None = None
    updated_at: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)
    #: What the router verified about the other side's lock before acting on it (the trust layer's report).
    other_verified: Any = None
    problem: str | None = None

    @property
    def tx_id(self) -> str:  # the log's key
        return self.htlc_id

    def note(self, now: float, what: str, **details: Any) -> None:
        self.events.append({"at": now, "event": what, **details})
        self.updated_at = now

    def to_record(self, *, with_secret: bool = True) -> dict[str, Any]:
        record = {"htlc_id": self.htlc_id, "role": self.role, "hash_lock": self.hash_lock,
                  "own": self.own.to_record(), "other": self.other.to_record(), "margin": self.margin,
                  "created_at": self.created_at, "state": self.state.value, "updated_at": self.updated_at,
                  "events": self.events, "other_verified": self.other_verified, "problem": self.problem}
        # The initiator's secret is never shown before it is public on the other chain.
        if with_secret or self.role == PARTICIPANT or self.state in (HtlcState.CLAIMED, HtlcState.DONE):
            record["secret"] = self.secret
        return record

    def to_json(self) -> str:
        return json.dumps(self.to_record(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Htlc:
        return cls(str(record["htlc_id"]), str(record["role"]), str(record["hash_lock"]),
                   Leg.from_record(record["own"]), Leg.from_record(record["other"]), float(record["margin"]),
                   float(record["created_at"]), HtlcState(record["state"]), record.get("secret"),
                   float(record.get("updated_at", 0.0)), list(record.get("events", [])),
                   record.get("other_verified"), record.get("problem"))


def sha256_hex(secret_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(secret_hex)).hexdigest()


def terms_problem(h: Htlc, status: dict[str, Any], now: float) -> str | None:
    """Why the other side's lock (as read from its chain) is not the one agreed, or None when it is."""
    other = h.other
    if status.get("state") != "locked":
        return f"the other lock is {status.get('state')!r}, not locked"
    if str(status.get("hash_lock", "")).lower() != h.hash_lock:
        return "the other lock is under another hash"
    if status.get("receiver") != other.receiver:
        return f"the other lock pays {status.get('receiver')!r}, not {other.receiver!r}"
    if status.get("sender") != other.sender:
        return f"the other lock is funded by {status.get('sender')!r}, not {other.sender!r}"
    amount = status.get("amount")
    if not isinstance(amount, int) or amount < other.amount:
        return f"the other lock holds {amount!r}, less than the agreed {other.amount}"
    timelock = status.get("timelock")
    if not isinstance(timelock, (int, float)):
        return "the other lock has no time lock"
    if h.role == INITIATOR:
        # Bob's lock must end a margin before ours, so that Bob has time to use the secret once we reveal it...
        if timelock + h.margin > h.own.timelock:
            return f"the other lock ends at {timelock}, less than {h.margin} s before ours ({h.own.timelock})"
        # ... and must leave us time to unlock it.
        if timelock - now < h.margin / 2:
            return f"the other lock ends at {timelock}: too soon to unlock it safely"
    elif timelock < h.own.timelock + h.margin:
        return f"the other lock ends at {timelock}, not a margin of {h.margin} s after ours ({h.own.timelock})"
    return None


def decide(h: Htlc, own: dict[str, Any] | None, other: dict[str, Any] | None, now: float) -> tuple[str, str]:
    """(action, why): ``refund`` our lock, ``unlock`` the other with the secret, ``done``, or ``wait``."""
    own_state = (own or {}).get("state", "absent")
    other_state = (other or {}).get("state", "absent")
    if own_state == "locked" and now >= h.own.timelock:
        return "refund", "our time lock passed"
    if h.state in (HtlcState.LOCKED, HtlcState.CLAIMED) and own_state in ("unlocked", "refunded") \
            and (other_state in ("unlocked", "refunded") or h.state is HtlcState.CLAIMED):
        return "done", f"our lock {own_state}, the other {other_state}"
    if h.state is HtlcState.REFUNDED:
        return "done", "refunded"
    if other_state == "locked" and h.state is HtlcState.LOCKED:
        if h.role == INITIATOR:
            assert other is not None
            problem = terms_problem(h, other, now)
            if problem is not None:
                return "wait", problem
            return "unlock", "the other lock is there, on the agreed terms"
        secret = (own or {}).get("secret") or h.secret
        if own_state == "unlocked" and secret:
            if now >= h.other.timelock:
                return "wait", "the secret came too late: the other lock's time passed"
            return "unlock", "the secret is public on our chain"
    return "wait", f"our lock {own_state}, the other {other_state}"


class HtlcService(Service):
    name = "htlc"

    def __init__(self, router_id: str, router: Any, txlog: TxLog, clock: IReactorTime, *,
                 interval: float = 1.0, default_margin: float = 60.0, require_proof: bool = True) -> None:
        """``require_proof``: act on the other side's lock only when its state, read through other routers, came
        with a proof this router verified (a chain type without read proofs then cannot take part)."""
        self.router_id = router_id
        self.router = router
        self.log = txlog
        self.clock = clock
        self.interval = interval
        self.default_margin = default_margin
        self.require_proof = require_proof
        self.htlcs: dict[str, Htlc] = {}
        self.counters = {"started": 0, "claimed": 0, "refunded": 0, "done": 0, "failed": 0, "rejected_terms": 0}
        self._busy: set[str] = set()
        self._loop = LoopingCall(self.tick)
        self._loop.clock = clock

    def startService(self) -> None:
        super().startService()
        for h in self.log.open():
            self.htlcs[h.htlc_id] = h
        self._loop.start(self.interval, now=False)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        return self.log.close()

    # -- client operations ------------------------------------------------------------------------------------------

    def start(self, body: dict[str, Any], sender: str) -> Deferred[dict[str, Any]]:
        """Start our side. Initiator: ``{"role": "initiator", "own": {"path", "receiver", "amount"}, "other":
        {"path", "sender", "amount"}, "timelock": seconds, "margin": seconds}``. Participant: the same plus
        ``htlc_id`` and ``hash_lock`` from the initiator; its lock is made only after the initiator's was read and
        verified."""
        try:
            h = self._new(body, sender)
        except (KeyError, TypeError, ValueError, IPathError) as exc:
            return defer.fail(RouterError("bad_args", f"htlc start: {exc}"))
        except RouterError as exc:
            return defer.fail(exc)
        if h.htlc_id in self.htlcs:
            return defer.fail(RouterError("htlc_state", f"exchange {h.htlc_id} exists here already"))
        self.htlcs[h.htlc_id] = h
        self.counters["started"] += 1
        d = self.log.write(h)
        if h.role == PARTICIPANT:
            d.addCallback(lambda _: self._read(h.other.path, h.htlc_id))
            d.addCallback(self._check_before_locking, h)
        d.addCallback(lambda _: self._lock(h))
        return d.addCallback(lambda _: h.to_record(with_secret=False))

    def _new(self, body: dict[str, Any], sender: str) -> Htlc:
        if not isinstance(body, dict):
            raise ValueError("the body must be an object")
        role = body.get("role", INITIATOR)
        if role not in (INITIATOR, PARTICIPANT):
            raise ValueError("role must be initiator or participant")
        own, other = body["own"], body["other"]
        now = self.clock.seconds()
        seconds = float(body.get("timelock", 600.0 if role == INITIATOR else 300.0))
        margin = float(body.get("margin", self.default_margin))
        if not 0 < seconds <= 30 * 86400 or not 0 < margin < seconds:
            raise ValueError("timelock must be in (0, 30 days] seconds and margin in (0, timelock)")
        own_leg = Leg(str(IPath.parse(own["path"])), sender, _account(own["receiver"]), _amount(own["amount"]),
                      timelock=round(now + seconds, 3))
        other_leg = Leg(str(IPath.parse(other["path"])), _account(other["sender"]), sender,
                        _amount(other["amount"]))
        if role == INITIATOR:
            secret = secrets.token_hex(32)
            return Htlc(f"{self.router_id}:{secrets.token_hex(16)}", role, sha256_hex(secret), own_leg, other_leg,
                        margin, now, secret=secret, updated_at=now)
        htlc_id, hash_lock = body["htlc_id"], str(body["hash_lock"]).lower()
        if not isinstance(htlc_id, str) or not htlc_id or len(hash_lock) != 64:
            raise ValueError("a participant needs the initiator's htlc_id and hash_lock (64 hex digits)")
        bytes.fromhex(hash_lock)
        return Htlc(htlc_id, role, hash_lock, own_leg, other_leg, margin, now, updated_at=now)

    def _unproven(self, verified: Any) -> str | None:
        """Why the other lock's state cannot be acted on (None: served here, or read with a verified proof)."""
        if verified is None or not self.require_proof:
            return None
        if isinstance(verified, dict) and verified.get("proof") is True:
            return None
        reason = verified.get("reason") if isinstance(verified, dict) else None
        return f"the other lock's state came without a verified proof ({reason or 'no proof'})"

    def _check_before_locking(self, status: tuple[dict[str, Any] | None, Any], h: Htlc) -> None:
        found, verified = status
        problem = self._unproven(verified) or terms_problem(h, found or {"state": "absent"}, self.clock.seconds())
        if problem is not None:
            h.state, h.problem = HtlcState.FAILED, problem
            h.note(self.clock.seconds(), "refused", why=problem)
            self.counters["rejected_terms"] += 1
            self.log.write(h)
            raise RouterError("htlc_state", f"the initiator's lock does not hold the agreed terms: {problem}",
                              {"htlc_id": h.htlc_id})
        h.other_verified = verified
        h.other.timelock = float(found["timelock"]) if found else 0.0
        h.note(self.clock.seconds(), "other lock verified", verified=verified)

    def _lock(self, h: Htlc) -> Deferred[None]:
        own = h.own
        args = [h.htlc_id, h.hash_lock, own.timelock, [own.receiver, own.amount]]

        def locked(result: dict[str, Any]) -> Deferred[None]:
            h.state = HtlcState.LOCKED
            own.chain_state = "locked"
            h.note(self.clock.seconds(), "locked", tx_hash=result.get("tx_hash"), block=result.get("block_number"))
            return self.log.write(h)

        def failed(failure: Failure) -> Failure:
            h.state = HtlcState.FAILED
            h.problem = failure.getErrorMessage()
            h.note(self.clock.seconds(), "lock failed", why=h.problem)
            self.counters["failed"] += 1
            self.log.write(h)
            return failure

        d: Deferred[dict[str, Any]] = self.router.tx_call(IPath.parse(own.path), OP_HTLC_LOCK, "", args, own.sender)
        return d.addCallbacks(locked, failed)

    def get(self, htlc_id: str) -> dict[str, Any]:
        h = self.htlcs.get(htlc_id)
        if h is None:
            raise RouterError("unknown_tx", f"no exchange {htlc_id} here")
        return h.to_record(with_secret=False)

    def list(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if state is not None and state not in {s.value for s in HtlcState}:
            raise RouterError("bad_args", f"state must be one of {', '.join(s.value for s in HtlcState)}")
        rows = [{"htlc_id": h.htlc_id, "role": h.role, "state": h.state.value, "own": h.own.to_record(),
                 "other": h.other.to_record(), "created_at": h.created_at} for h in self.htlcs.values()
                if state is None or h.state.value == state]
        rows.sort(key=lambda r: r["created_at"], reverse=True)
        return rows[:limit]

    def stats(self) -> dict[str, Any]:
        return dict(self.counters, open=sum(1 for h in self.htlcs.values() if h.state not in FINAL))

    def act(self, htlc_id: str, action: str, body: dict[str, Any], sender: str) -> Deferred[dict[str, Any]]:
        """Manual steps (the watcher does them on its own): ``unlock`` the other lock now, ``refund`` ours."""
        h = self.htlcs.get(htlc_id)
        if h is None:
            return defer.fail(RouterError("unknown_tx", f"no exchange {htlc_id} here"))
        d = self._unlock(h, h.secret or body.get("secret")) if action == "unlock" else self._refund(h)
        return d.addCallback(lambda _: h.to_record(with_secret=False))

    # -- the watcher ------------------------------------------------------------------------------------------------

    def tick(self) -> None:
        for h in list(self.htlcs.values()):
            if h.state in FINAL or h.state is HtlcState.LOCKING or h.htlc_id in self._busy:
                continue
            self._busy.add(h.htlc_id)
            d = defer.gatherResults([self._read(h.own.path, h.htlc_id), self._read(h.other.path, h.htlc_id)],
                                    consumeErrors=True)
            d.addCallback(self._step, h)
            d.addErrback(self._tick_failed, h)
            d.addBoth(lambda _, h=h: self._busy.discard(h.htlc_id))

    def _tick_failed(self, failure: Failure, h: Htlc) -> None:
        error = failure.value.subFailure.value if isinstance(failure.value, defer.FirstError) else failure.value
        log.info("htlc {id}: reading the locks failed ({error}); trying again", id=h.htlc_id, error=str(error))

    def _step(self, statuses: list[tuple[dict[str, Any] | None, Any]], h: Htlc) -> Deferred[Any] | None:
        (own, _), (other, verified) = statuses
        now = self.clock.seconds()
        h.own.chain_state = (own or {}).get("state", "absent")
        h.other.chain_state = (other or {}).get("state", "absent")
        if other and isinstance(other.get("timelock"), (int, float)):
            h.other.timelock = float(other["timelock"])
        action, why = decide(h, own, other, now)
        if action == "unlock" and h.role == INITIATOR:
            unproven = self._unproven(verified)
            if unproven is not None:
                action, why = "wait", unproven
        if action == "wait":
            if why != h.problem:
                h.problem = why
                if h.role == INITIATOR and other and other.get("state") == "locked":
                    self.counters["rejected_terms"] += 1
                    log.warn("htlc {id}: not unlocking the other lock: {why}", id=h.htlc_id, why=why)
            return None
        h.problem = None
        if action == "refund":
            return self._refund(h)
        if action == "done":
            h.state = HtlcState.DONE
            h.note(now, "done", why=why)
            self.counters["done"] += 1
            return self.log.write(h)
        secret = h.secret if h.role == INITIATOR else (own or {}).get("secret")
        if h.role == INITIATOR:
            h.other_verified = verified
        return self._unlock(h, secret)

    def _unlock(self, h: Htlc, secret: str | None) -> Deferred[None]:
        if not secret:
            return defer.fail(RouterError("bad_secret", f"exchange {h.htlc_id}: no secret known yet"))
        if h.secret is None:
            h.secret = secret
        d: Deferred[dict[str, Any]] = self.router.tx_call(IPath.parse(h.other.path), OP_HTLC_UNLOCK, "",
                                                          [h.htlc_id, secret], h.other.receiver)

        def unlocked(result: dict[str, Any]) -> Deferred[None]:
            h.state = HtlcState.CLAIMED
            h.other.chain_state = "unlocked"
            h.note(self.clock.seconds(), "claimed the other lock", tx_hash=result.get("tx_hash"))
            self.counters["claimed"] += 1
            return self.log.write(h)

        return d.addCallback(unlocked)

    def _refund(self, h: Htlc) -> Deferred[None]:
        d: Deferred[dict[str, Any]] = self.router.tx_call(IPath.parse(h.own.path), OP_HTLC_TIMEOUT, "",
                                                          [h.htlc_id], h.own.sender)

        def refunded(result: dict[str, Any]) -> Deferred[None]:
            h.own.chain_state = "refunded"
            h.state = HtlcState.DONE if h.state is HtlcState.CLAIMED else HtlcState.REFUNDED
            h.note(self.clock.seconds(), "refunded our lock", tx_hash=result.get("tx_hash"))
            self.counters["refunded"] += 1
            return self.log.write(h)

        return d.addCallback(refunded)

    def _read(self, path: str, htlc_id: str) -> Deferred[tuple[dict[str, Any] | None, Any]]:
        """The lock's state on its chain, and what the router verified about the answer (None when the chain is
        served here: nothing crossed another router)."""
        invocation = Invocation(IPath.parse(path), "call", "htlcStatus", [htlc_id], f"router:{self.router_id}")

        def read(result: dict[str, Any]) -> tuple[dict[str, Any] | None, Any]:
            output = result.get("output")
            return (output if isinstance(output, dict) else None), result.get("verified")

        def absent(failure: Failure) -> tuple[dict[str, Any] | None, Any] | Failure:
            if isinstance(failure.value, RouterError) and failure.value.code in ("unknown_tx", "htlc_state",
                                                                                 "not_found"):
                return None, None
            return failure

        d: Deferred[dict[str, Any]] = self.router.invoke(invocation)
        return d.addCallbacks(read, absent)


def _account(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 128:
        raise ValueError(f"an account is a non-empty string, not {value!r}")
    return value


def _amount(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"an amount is a positive integer, not {value!r}")
    return value
