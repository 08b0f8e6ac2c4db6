"""2PC participants on the embedded chain: prepared transactions, the lock table's keys and their durable form.

A participant is one resource under one transaction id, ``(tx_id, resource)``: the coordinator talks to each
resource it touches, and a resource only ever locks its own state keys, so two resources of one chain taking part
in the same transaction never meet. A :class:`PreparedTx` holds the steps run so far, the tentative changes they
made (applied over the chain's state only by the transaction's own later steps, and by its commit) and every state
key they read or wrote (its locks).

Pure data and helpers: no reactor, no disk. The ledger owns the lock table and the prepared transactions on the
reactor thread; the store writes :meth:`PreparedTx.record` to SQLite.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wecross.embedded.block import Event, decode, encode
from wecross.embedded.resources import NS_BALANCE, NS_DATA, NS_HTLC, NS_META
from wecross.embedded.state import Overlay, Readable, StateKey
from wecross.stub.interfaces import StubError

#: (transaction id, resource): one participant.
Owner = tuple[str, str]
MAX_TX_ID_LENGTH = 256
#: Version of the durable record of a prepared transaction (the ``record`` column of ``tx_prepared``).
RECORD_VERSION = 1
#: ``op`` (and ``method``) of the chain transaction that commits a prepared participant; its args are
#: ``[tx_id, [[method, args, sender], ...]]`` and its output ``{"committed": tx_id, "outputs": [...]}``.
OP_COMMIT = "commit"
#: Outcomes kept in ``tx_finished``.
COMMITTED = "committed"
ROLLED_BACK = "rolled_back"
#: Names of the namespaces in lock names and messages.
_NAMESPACES = {NS_DATA: "key", NS_BALANCE: "balance", NS_META: "meta", NS_HTLC: "htlc"}


def check_tx_id(value: Any, what: str = "transaction id") -> str:
    """An opaque transaction (or HTLC) id: a non-empty string of bounded length; StubError("bad_args")."""
    if not isinstance(value, str) or not value:
        raise StubError("bad_args", f"the {what} must be a non-empty string")
    if len(value) > MAX_TX_ID_LENGTH:
        raise StubError("bad_args", f"the {what} must be at most {MAX_TX_ID_LENGTH} characters")
    return value


def lock_name(key: StateKey) -> str:
    """A lock as listed by ``prepared_transactions``: ``key:<kv key>``, ``balance:<account>``, ``meta:supply``."""
    return f"{_NAMESPACES.get(key[1], key[1])}:{key[2]}"


def describe_key(key: StateKey) -> str:
    """A state key as a user reads it in an error: ``asset balance of 'alice'``, ``hello key 'greeting'``."""
    resource, namespace, name = key
    if namespace == NS_META:
        return f"{resource} {name}"
    return f"{resource} {_NAMESPACES.get(namespace, namespace)} {'of ' if namespace == NS_BALANCE else ''}{name!r}"


def locked_error(key: StateKey, owner: Owner) -> StubError:
    return StubError("locked", f"{describe_key(key)} is locked by transaction {owner[0]}")


@dataclass(slots=True)
class Step:
    """One prepared step: the write as sendTransaction takes it, and what it produced."""

    method: str
    args: list[Any]
    sender: str
    output: Any
    events: tuple[Event, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        """A copy: callers may change what they get without touching the prepared state."""
        return copy.deepcopy({"method": self.method, "args": self.args, "sender": self.sender, "output": self.output})


@dataclass(slots=True)
class PreparedTx:
    """A participant between its first prepare and its commit or rollback."""

    tx_id: str
    resource: str
    since_ms: int
    steps: list[Step] = field(default_factory=list)
    #: Tentative state changes, in the order first written; None deletes the key.
    changes: dict[StateKey, Any] = field(default_factory=dict)
    #: Every key a step read or wrote, in the order first touched (a dict used as an ordered set).
    locks: dict[StateKey, None] = field(default_factory=dict)

    @property
    def owner(self) -> Owner:
        return (self.tx_id, self.resource)

    def copy(self) -> PreparedTx:
        """A copy whose containers can change without touching this one (steps themselves are never changed)."""
        return PreparedTx(self.tx_id, self.resource, self.since_ms, list(self.steps), dict(self.changes),
                          dict(self.locks))

    def to_wire(self) -> dict[str, Any]:
        """The entry of ``prepared_transactions()``."""
        return {
            "tx_id": self.tx_id,
            "resource": self.resource,
            "steps": [step.to_wire() for step in self.steps],
            "locks": [lock_name(key) for key in self.locks],
            "since": self.since_ms / 1000.0,
        }

    def record(self) -> bytes:
        """The durable form: ``[1, steps, changes, locks]`` with steps ``[method, args, sender, output, events]``,
        events ``[name, data]``, changes ``[[resource, namespace, key], value or nil]`` and locks
        ``[resource, namespace, key]``, msgpack-encoded canonically."""
        return encode([
            RECORD_VERSION,
            [[s.method, s.args, s.sender, s.output, [[e.name, e.data] for e in s.events]] for s in self.steps],
            [[list(key), value] for key, value in self.changes.items()],
            [list(key) for key in self.locks],
        ])

    @classmethod
    def from_record(cls, tx_id: str, resource: str, since_ms: int, data: bytes) -> PreparedTx:
        """Rebuild a prepared transaction from :meth:`record`; ValueError when the bytes are not one."""
        fields = decode(data)
        if not (isinstance(fields, list) and len(fields) == 4 and fields[0] == RECORD_VERSION):
            raise ValueError("not a prepared-transaction record of this version")
        tx = cls(tx_id, resource, since_ms)
        for step in _list(fields[1], "steps"):
            if not (isinstance(step, list) and len(step) == 5 and isinstance(step[0], str)
                    and isinstance(step[1], list) and isinstance(step[2], str)):
                raise ValueError("a step must be [method, args, sender, output, events]")
            events = tuple(Event(_str(name), _map(data)) for name, data in map(_pair, _list(step[4], "events")))
            tx.steps.append(Step(step[0], step[1], step[2], step[3], events))
        for key, value in map(_pair, _list(fields[2], "changes")):
            tx.changes[_key(key, resource)] = value
        for key in _list(fields[3], "locks"):
            tx.locks[_key(key, resource)] = None
        if not tx.steps or not set(tx.changes) <= set(tx.locks):
            raise ValueError("a prepared transaction needs a step, and locks on every key it changed")
        return tx


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list")
    return value


def _pair(value: Any) -> tuple[Any, Any]:
    if not (isinstance(value, list) and len(value) == 2):
        raise ValueError("expected a pair")
    return value[0], value[1]


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _map(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("expected a map")
    return value


def _key(value: Any, resource: str) -> StateKey:
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(part, str) for part in value)):
        raise ValueError("a state key must be three strings")
    if value[0] != resource:
        raise ValueError(f"a key of resource {value[0]!r} in a transaction of {resource!r}")
    return (value[0], value[1], value[2])


class TxLayer:
    """A transaction's tentative changes over the chain's state: what its own next step reads."""

    __slots__ = ("_changes", "_parent")

    def __init__(self, changes: dict[StateKey, Any], parent: Readable) -> None:
        self._changes = changes
        self._parent = parent

    def get(self, key: StateKey) -> Any:
        if key in self._changes:
            return self._changes[key]
        return self._parent.get(key)


class GuardedOverlay(Overlay):
    """An overlay that checks every key it reads or writes against the lock table and remembers it.

    A write outside any transaction runs in one with ``me=None`` (every lock is someone else's); a prepared step
    runs in one with its own participant, which may touch what it already locked. Touching a key locked by another
    transaction raises StubError("locked"); the caller drops the overlay, so the step changes nothing.
    """

    __slots__ = ("_me", "_owner_of", "touched")

    def __init__(self, parent: Readable, owner_of: Callable[[StateKey], Owner | None], me: Owner | None) -> None:
        super().__init__(parent)
        self._owner_of = owner_of
        self._me = me
        self.touched: dict[StateKey, None] = {}

    def _guard(self, key: StateKey) -> None:
        owner = self._owner_of(key)
        if owner is not None and owner != self._me:
            raise locked_error(key, owner)
        self.touched[key] = None

    def get(self, key: StateKey) -> Any:
        self._guard(key)
        return super().get(key)

    def put(self, key: StateKey, value: Any) -> None:
        self._guard(key)
        super().put(key, value)
