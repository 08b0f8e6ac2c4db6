"""Built-in resources of the embedded chain: their options, methods, argument checks and state transitions.

A resource here is pure logic over a :class:`~wecross.embedded.state.ResourceView`: it never sees the ledger, the
disk or the reactor, so the same code answers a read on the reactor thread and runs a transaction inside a block.

Argument checks happen twice on purpose: :meth:`Contract.check` when a request arrives (a malformed request fails
at once and never waits for a block), and the state-dependent checks (balance, issuer) when the transaction runs in
its block, against the state it will actually change.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from wecross.embedded.block import EncodingError, Event, canonical, encode
from wecross.embedded.state import ResourceView, StateKey
from wecross.ipath import IPath, IPathError
from wecross.stub.interfaces import OP_CALL, OP_GET_DATA, OP_SEND_TRANSACTION, ResourceInfo, StubError

READ = "read"
WRITE = "write"
#: Largest amount or balance: fits a signed 64-bit integer, so SQLite and every SDK can hold it.
MAX_AMOUNT = 2**63 - 1
MAX_KEY_LENGTH = 1024
MAX_ACCOUNT_LENGTH = 256
#: Encoded size limit of one kv value; large blobs do not belong in a router's chain.
MAX_VALUE_BYTES = 64 * 1024

NS_DATA = "d"
NS_BALANCE = "b"
NS_META = "m"
#: Hashed time-lock contracts of an asset: htlc id -> its record (see :meth:`AssetContract.htlc`).
NS_HTLC = "h"
#: Every resource records its kind under (NS_META, KIND_KEY) at genesis: a verifier replaying a proven read learns
#: from the proven state which code to replay.
KIND_KEY = "kind"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a transaction produced: its output and the events for its receipt."""

    output: Any
    events: tuple[Event, ...] = ()


def check_text(value: str) -> str:
    """Refuse a str that UTF-8 cannot encode (a lone surrogate such as ``"\\ud800"``, which a JSON escape can
    produce): it would pass every other check here and only fail when the block holding it is encoded, failing
    every other transaction of that block with it. ValueError, as the other checks."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"must be valid Unicode text (a lone surrogate at character {exc.start})") from None
    return value


def _check_key(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    if len(value) > MAX_KEY_LENGTH:
        raise ValueError(f"must be at most {MAX_KEY_LENGTH} characters")
    return check_text(value)


def _check_value(value: Any) -> Any:
    try:
        normal = canonical(value)
        size = len(encode(normal))
    except EncodingError as exc:
        raise ValueError(str(exc)) from None
    except (UnicodeEncodeError, TypeError, OverflowError) as exc:
        # msgpack's own refusals (a lone surrogate in a string or a map key): the value could never be stored.
        raise ValueError(f"cannot be stored ({type(exc).__name__}: {str(exc)[:200]})") from None
    if size > MAX_VALUE_BYTES:
        raise ValueError(f"is {size} bytes encoded, more than the limit of {MAX_VALUE_BYTES}")
    return normal


def _check_account(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string (an account name)")
    if len(value) > MAX_ACCOUNT_LENGTH:
        raise ValueError(f"must be at most {MAX_ACCOUNT_LENGTH} characters")
    return check_text(value)


def _check_amount(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("must be an integer")
    if not 0 <= value <= MAX_AMOUNT:
        raise ValueError(f"must be between 0 and {MAX_AMOUNT}")
    return value


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    doc: str
    check: Callable[[Any], Any]


KEY = Param("key", "string", _check_key)
VALUE = Param("value", "any value; null deletes", _check_value)
ACCOUNT = Param("account", "account name", _check_account)
TO = Param("to", "account name", _check_account)
AMOUNT = Param("amount", "non-negative integer", _check_amount)
HTLC_ID = Param("htlc_id", "string", _check_key)

#: The HTLC operations (IResource.lock/unlock/timeout), as recorded in a block: op ``htlc`` with one of these methods.
OP_HTLC = "htlc"
HTLC_LOCK = "lock"
HTLC_UNLOCK = "unlock"
HTLC_TIMEOUT = "timeout"
HTLC_LOCKED = "locked"
HTLC_UNLOCKED = "unlocked"
HTLC_REFUNDED = "refunded"
#: Longest secret accepted (bytes): a preimage is normally 32 bytes; anything huge is an abuse of the chain.
MAX_SECRET_BYTES = 1024
#: Latest timelock accepted (unix seconds, year 9999): keeps ``timelock * 1000`` an exact integer-sized float.
MAX_TIMELOCK = 253402300799


def _check_hash_lock(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 64:
        raise ValueError("must be 64 hex digits (a SHA-256 digest)")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise ValueError("must be 64 hex digits (a SHA-256 digest)") from None
    return value.lower()


def _check_timelock(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number (unix seconds)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number (unix seconds)")
    if not 0 < value <= MAX_TIMELOCK:
        raise ValueError(f"must be between 0 and {MAX_TIMELOCK} (unix seconds)")
    return value


def _check_secret(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("must be a hex string")
    try:
        secret = bytes.fromhex(value)
    except ValueError:
        raise ValueError("must be a hex string") from None
    if not secret or len(secret) > MAX_SECRET_BYTES:
        raise ValueError(f"must be 1 to {MAX_SECRET_BYTES} bytes")
    return secret


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    mode: str
    params: tuple[Param, ...]

    def signature(self) -> str:
        return f"{self.name}({', '.join(f'{p.name}: {p.doc}' for p in self.params)})"


class Contract:
    """Base of the built-in resources: method table, argument checks and the dispatch of the four operations."""

    kind: ClassVar[str] = ""
    #: Resource options besides ``name`` and ``kind`` this kind accepts.
    OPTIONS: ClassVar[frozenset[str]] = frozenset({"description"})
    METHODS: ClassVar[tuple[Method, ...]] = ()

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        unknown = sorted(set(options) - self.OPTIONS)
        if unknown:
            raise ValueError(f"resource {name!r} ({self.kind}): unknown option(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(self.OPTIONS))}")
        description = options.get("description", "")
        if not isinstance(description, str):
            raise ValueError(f"resource {name!r}: option 'description' must be a string")
        self._methods = {method.name: method for method in self.METHODS}
        self.info = ResourceInfo(
            name=name,
            kind=self.kind,
            methods={method.name: method.mode for method in self.METHODS},
            description=description or self.default_description(),
        )

    def default_description(self) -> str:
        return ""

    # -- checks on arrival -------------------------------------------------------------------------------------
    def check(self, op: str, method: str, args: Any) -> list[Any]:
        """Validate a call or sendTransaction against the method table; the normalised arguments or StubError."""
        spec = self._methods.get(method) if isinstance(method, str) else None
        want = READ if op == OP_CALL else WRITE
        if spec is None or spec.mode != want:
            listing = ", ".join(f"{m.name} ({m.mode})" for m in self.METHODS)
            if spec is not None:
                other = OP_SEND_TRANSACTION if spec.mode == WRITE else OP_CALL
                raise StubError("unknown_method", f"{self.name}.{method} is a {spec.mode} method: use {other}; "
                                                  f"methods: {listing}")
            raise StubError("unknown_method", f"resource {self.name} ({self.kind}) has no method {method!r}; "
                                              f"methods: {listing}")
        if not isinstance(args, (list, tuple)) or len(args) != len(spec.params):
            got = f"{len(args)}" if isinstance(args, (list, tuple)) else f"a {type(args).__name__}"
            raise StubError("bad_args", f"{self.name}.{spec.signature()} expects {len(spec.params)} "
                                        f"argument(s), got {got}")
        normal: list[Any] = []
        for position, (param, value) in enumerate(zip(spec.params, args, strict=True), start=1):
            try:
                normal.append(param.check(value))
            except ValueError as exc:
                raise StubError("bad_args", f"{self.name}.{spec.signature()}: argument {position} "
                                            f"({param.name}) {exc}") from None
        return normal

    def check_key(self, key: Any) -> str:
        try:
            return _check_key(key)
        except ValueError as exc:
            raise StubError("bad_args", f"{self.name}: the data key {exc}") from None

    def check_set_data(self, key: Any, value: Any) -> list[Any]:
        raise StubError("unsupported", f"resource {self.name} ({self.kind}) does not support setData")

    # -- execution ---------------------------------------------------------------------------------------------
    def genesis(self) -> dict[tuple[str, str], Any]:
        """The resource's initial state, (namespace, key) -> value; part of the genesis block."""
        return {(NS_META, KIND_KEY): self.kind}

    def answer(self, view: ResourceView, op: str, method: str, args: Any, sender: str) -> Any:
        """Answer a call or getData against ``view``; StubError for a bad request.

        The one code path of a read: the chain answers with it, and a verifier replays it over proven state, so the
        two cannot drift apart.
        """
        if op == OP_GET_DATA:
            if not isinstance(args, (list, tuple)) or len(args) != 1:
                raise StubError("bad_args", "getData takes one key")
            return self.get_data(view, self.check_key(args[0]))
        if op != OP_CALL:
            raise StubError("bad_request", f"{op} is not a read operation")
        return self.read(view, method, self.check(op, method, args), sender)

    def read(self, view: ResourceView, method: str, args: list[Any], sender: str) -> Any:
        return getattr(self, f"_read_{method}")(view, *args)

    def write(self, view: ResourceView, method: str, args: list[Any], sender: str) -> Outcome:
        result: Outcome = getattr(self, f"_write_{method}")(view, sender, *args)
        return result

    def get_data(self, view: ResourceView, key: str) -> Any:
        raise StubError("unsupported", f"resource {self.name} ({self.kind}) does not support getData")

    def set_data(self, view: ResourceView, key: str, value: Any, sender: str) -> Outcome:
        raise StubError("unsupported", f"resource {self.name} ({self.kind}) does not support setData")

    # -- HTLC --------------------------------------------------------------------------------------------------
    def check_htlc(self, method: str, args: Any) -> list[Any]:
        """Validate an HTLC operation on arrival; the normalised arguments (as the block records them)."""
        raise StubError("unsupported", f"resource {self.name} ({self.kind}) has no hashed time-lock contracts; "
                                       "only asset resources do")

    def htlc(self, view: ResourceView, method: str, args: list[Any], sender: str, now_ms: int) -> Outcome:
        """Run an HTLC operation in a block whose timestamp is ``now_ms``."""
        raise StubError("unsupported", f"resource {self.name} ({self.kind}) has no hashed time-lock contracts")


class KVContract(Contract):
    """A HelloWeCross-style key/value store: anyone may read and write any key."""

    kind = "kv"
    OPTIONS = frozenset({"description", "initial"})
    METHODS = (Method("get", READ, (KEY,)), Method("set", WRITE, (KEY, VALUE)))

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(name, options)
        initial = options.get("initial", {})
        if not isinstance(initial, Mapping):
            raise ValueError(f"resource {name!r}: option 'initial' must map keys to values")
        self._initial: dict[str, Any] = {}
        for key, value in initial.items():
            try:
                self._initial[_check_key(key)] = _check_value(value)
            except ValueError as exc:
                raise ValueError(f"resource {name!r}: option 'initial', entry {key!r}: key or value {exc}") from None

    def default_description(self) -> str:
        return "key/value store: get(key), set(key, value)"

    def genesis(self) -> dict[tuple[str, str], Any]:
        state = super().genesis()
        for key, value in self._initial.items():
            if value is not None:
                state[(NS_DATA, key)] = value
        return state

    def check_set_data(self, key: Any, value: Any) -> list[Any]:
        return self.check(OP_SEND_TRANSACTION, "set", [key, value])

    def _read_get(self, view: ResourceView, key: str) -> Any:
        return view.get(NS_DATA, key)

    def _write_set(self, view: ResourceView, sender: str, key: str, value: Any) -> Outcome:
        view.put(NS_DATA, key, value)
        return Outcome(None, (Event("Set", {"key": key}),))

    def get_data(self, view: ResourceView, key: str) -> Any:
        return view.get(NS_DATA, key)

    def set_data(self, view: ResourceView, key: str, value: Any, sender: str) -> Outcome:
        return self._write_set(view, sender, key, value)


class AssetContract(Contract):
    """A fungible asset ledger: balances per account, transfers by the holder, minting by the issuer."""

    kind = "asset"
    OPTIONS = frozenset({"description", "initial", "issuer"})
    METHODS = (
        Method("balanceOf", READ, (ACCOUNT,)),
        Method("totalSupply", READ, ()),
        Method("transfer", WRITE, (TO, AMOUNT)),
        Method("mint", WRITE, (TO, AMOUNT)),
        Method("htlcStatus", READ, (HTLC_ID,)),
    )

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(name, options)
        balances = options.get("initial", {})
        if not isinstance(balances, Mapping):
            raise ValueError(f"resource {name!r}: option 'initial' must map account names to amounts")
        self._balances: dict[str, int] = {}
        for account, amount in balances.items():
            try:
                self._balances[_check_account(account)] = _check_amount(amount)
            except ValueError as exc:
                raise ValueError(f"resource {name!r}: option 'initial', entry {account!r}: account or amount "
                                 f"{exc}") from None
        if sum(self._balances.values()) > MAX_AMOUNT:
            raise ValueError(f"resource {name!r}: option 'initial' adds up to more than {MAX_AMOUNT}")
        issuer = options.get("issuer")
        if issuer is not None:
            try:
                issuer = _check_account(issuer)
            except ValueError as exc:
                raise ValueError(f"resource {name!r}: option 'issuer' {exc}") from None
        self.issuer: str | None = issuer

    def default_description(self) -> str:
        return ("asset ledger: balanceOf(account), totalSupply(), transfer(to, amount), mint(to, amount), "
                "htlcStatus(htlc_id); 2PC and HTLC")

    def genesis(self) -> dict[tuple[str, str], Any]:
        state = super().genesis()
        state[(NS_META, "supply")] = sum(self._balances.values())
        if self.issuer is not None:
            state[(NS_META, "issuer")] = self.issuer
        for account, amount in self._balances.items():
            if amount:
                state[(NS_BALANCE, account)] = amount
        return state

    @staticmethod
    def _balance(view: ResourceView, account: str) -> int:
        value = view.get(NS_BALANCE, account)
        return value if isinstance(value, int) else 0

    @staticmethod
    def _set_balance(view: ResourceView, account: str, amount: int) -> None:
        view.put(NS_BALANCE, account, amount or None)  # a zero balance is no entry: state stays small

    def _read_balanceOf(self, view: ResourceView, account: str) -> int:
        return self._balance(view, account)

    def _read_totalSupply(self, view: ResourceView) -> int:
        supply = view.get(NS_META, "supply")
        return supply if isinstance(supply, int) else 0

    def _write_transfer(self, view: ResourceView, sender: str, to: str, amount: int) -> Outcome:
        held = self._balance(view, sender)
        if held < amount:
            raise StubError("insufficient_funds", f"{self.name}: {sender} holds {held}, cannot transfer {amount}")
        if to != sender:
            self._set_balance(view, sender, held - amount)
            self._set_balance(view, to, self._balance(view, to) + amount)
        event = Event("Transfer", {"from": sender, "to": to, "amount": amount})
        return Outcome(self._balance(view, sender), (event,))

    def _write_mint(self, view: ResourceView, sender: str, to: str, amount: int) -> Outcome:
        if self.issuer is None:
            raise StubError("forbidden", f"{self.name}: this asset has no issuer, nobody may mint")
        if sender != self.issuer:
            raise StubError("forbidden", f"{self.name}: only the issuer may mint, not {sender}")
        supply = self._read_totalSupply(view) + amount
        if supply > MAX_AMOUNT:
            raise StubError("overflow", f"{self.name}: minting {amount} would take the supply above {MAX_AMOUNT}")
        view.put(NS_META, "supply", supply)
        self._set_balance(view, to, self._balance(view, to) + amount)
        return Outcome(supply, (Event("Mint", {"to": to, "amount": amount}),))

    def check_key(self, key: Any) -> str:
        try:
            return _check_account(key)
        except ValueError as exc:
            raise StubError("bad_args", f"{self.name}: getData key (an account name) {exc}") from None

    def get_data(self, view: ResourceView, key: str) -> int:
        return self._balance(view, key)

    # -- HTLC: escrow locked by a SHA-256 hash and a time ------------------------------------------------------
    # The escrowed amount leaves the sender's balance and lives in the HTLC record until it is paid to the receiver
    # (unlock) or back to the sender (timeout): while an HTLC is locked, totalSupply = balances + escrowed amounts.
    def _read_htlcStatus(self, view: ResourceView, htlc_id: str) -> dict[str, Any] | None:
        record = view.get(NS_HTLC, htlc_id)
        return dict(record) if isinstance(record, dict) else None

    def check_htlc(self, method: str, args: Any) -> list[Any]:
        shapes = {HTLC_LOCK: ("htlc_id", "hash_lock", "timelock", "receiver", "amount"),
                  HTLC_UNLOCK: ("htlc_id", "secret"), HTLC_TIMEOUT: ("htlc_id",)}
        names = shapes.get(method)
        if names is None:
            raise StubError("unknown_method", f"{self.name}: no HTLC operation {method!r}")
        if not isinstance(args, (list, tuple)) or len(args) != len(names):
            raise StubError("bad_args", f"{self.name}: HTLC {method} takes {', '.join(names)}")
        checks: dict[str, Callable[[Any], Any]] = {
            "htlc_id": _check_key, "hash_lock": _check_hash_lock, "timelock": _check_timelock,
            "receiver": _check_account, "amount": _check_amount, "secret": lambda v: _check_secret(v).hex(),
        }
        normal: list[Any] = []
        for name, value in zip(names, args, strict=True):
            try:
                normal.append(checks[name](value))
            except ValueError as exc:
                raise StubError("bad_args", f"{self.name}: HTLC {method}: {name} {exc}") from None
        if method == HTLC_LOCK and normal[4] == 0:
            raise StubError("bad_args", f"{self.name}: HTLC lock: amount must be positive")
        return normal

    def htlc(self, view: ResourceView, method: str, args: list[Any], sender: str, now_ms: int) -> Outcome:
        if method == HTLC_LOCK:
            return self._htlc_lock(view, sender, now_ms, *args)
        record = view.get(NS_HTLC, args[0])
        if not isinstance(record, dict):
            raise StubError("htlc_state", f"{self.name}: there is no HTLC {args[0]!r}")
        if record.get("state") != HTLC_LOCKED:
            raise StubError("htlc_state", f"{self.name}: HTLC {args[0]!r} is {record.get('state')}, not locked")
        record = dict(record)
        expired = now_ms >= record["timelock"] * 1000
        if method == HTLC_UNLOCK:
            secret = bytes.fromhex(args[1])
            if hashlib.sha256(secret).hexdigest() != record["hash_lock"]:
                raise StubError("bad_secret", f"{self.name}: the secret does not hash to HTLC {args[0]!r}'s hash lock")
            if expired:
                raise StubError("too_late", f"{self.name}: HTLC {args[0]!r} expired at {record['timelock']} (unix "
                                            f"seconds); the block's time is {now_ms / 1000}")
            record["state"], record["secret"] = HTLC_UNLOCKED, args[1]
            paid_to, event = record["receiver"], "HtlcUnlocked"
        else:
            if not expired:
                raise StubError("too_early", f"{self.name}: HTLC {args[0]!r} can be refunded from {record['timelock']}"
                                             f" (unix seconds); the block's time is {now_ms / 1000}")
            record["state"] = HTLC_REFUNDED
            paid_to, event = record["sender"], "HtlcRefunded"
        self._set_balance(view, paid_to, self._balance(view, paid_to) + record["amount"])
        view.put(NS_HTLC, args[0], record)
        data = {"htlc_id": args[0], "to": paid_to, "amount": record["amount"]}
        if method == HTLC_UNLOCK:
            data["secret"] = args[1]  # published on the chain: the counterpart's unlock on the other chain needs it
        return Outcome(dict(record), (Event(event, data),))

    def _htlc_lock(self, view: ResourceView, sender: str, now_ms: int, htlc_id: str, hash_lock: str,
                   timelock: int | float, receiver: str, amount: int) -> Outcome:
        if view.get(NS_HTLC, htlc_id) is not None:
            raise StubError("htlc_state", f"{self.name}: HTLC {htlc_id!r} already exists")
        held = self._balance(view, sender)
        if held < amount:
            raise StubError("insufficient_funds", f"{self.name}: {sender} holds {held}, cannot lock {amount}")
        self._set_balance(view, sender, held - amount)
        record = {"state": HTLC_LOCKED, "sender": sender, "receiver": receiver, "amount": amount,
                  "hash_lock": hash_lock, "timelock": timelock}
        view.put(NS_HTLC, htlc_id, record)
        event = Event("HtlcLocked", {"htlc_id": htlc_id, "from": sender, "to": receiver, "amount": amount})
        return Outcome(dict(record), (event,))


KINDS: dict[str, type[Contract]] = {KVContract.kind: KVContract, AssetContract.kind: AssetContract}


def make_contract(zone: str, chain: str, spec: Any) -> Contract:
    """Build a resource from its config entry ``{name, kind, ...options}``; ValueError naming what is wrong."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"each resource of {zone}.{chain} must be a table with name and kind")
    name = spec.get("name")
    kind = spec.get("kind")
    if not isinstance(name, str):
        raise ValueError(f"a resource of {zone}.{chain} has no 'name'")
    try:
        IPath.parse(f"{zone}.{chain}.{name}")
    except IPathError as exc:
        raise ValueError(f"resource name {name!r}: {exc}") from None
    if kind not in KINDS:
        raise ValueError(f"resource {name!r} of {zone}.{chain}: unknown kind {kind!r}; "
                         f"known kinds: {', '.join(sorted(KINDS))}")
    options = {key: value for key, value in spec.items() if key not in ("name", "kind")}
    return KINDS[kind](name, options)


def genesis_state(contracts: Mapping[str, Contract]) -> dict[StateKey, Any]:
    """The whole initial state of a chain (canonical values), keyed (resource, namespace, key)."""
    state: dict[StateKey, Any] = {}
    for name, contract in contracts.items():
        for (namespace, key), value in contract.genesis().items():
            state[(name, namespace, key)] = canonical(value)
    return state
