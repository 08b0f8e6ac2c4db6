"""The built-in contracts (HelloWeCross for ``kv``, AssetLedger for ``asset``): what a client may call on them,
their transaction-layer states, and which contract function carries out each transaction-layer operation.

The built-in kinds take part in the transaction layer (IResource's prepare/commit/rollback, and lock/unlock/timeout
on an asset): each hook is one mined transaction of the built-in contract, which holds the tentative steps, the
per-key (per-account) locks and the HTLCs, so a prepare is durable once mined and a restarted stub finds its
prepared transactions on the chain. :func:`contract_call` says which contract function carries out which
operation; docs/stubs.md describes the semantics and error codes.

Shared by the stub (which builds its transactions with it) and the entry router's checks (wecross.evm.checks,
which rebuild the calldata a proven transaction must carry): neither imports the other, and nothing here imports
web3.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

from wecross.evm.abi import BUILTIN_CONTRACTS, AbiFunction
from wecross.stub.interfaces import (
    OP_HTLC_LOCK,
    OP_HTLC_TIMEOUT,
    OP_HTLC_UNLOCK,
    OP_TX_COMMIT,
    OP_TX_PREPARE,
    OP_TX_ROLLBACK,
    StubError,
)

_T = TypeVar("_T")


#: What a client may call or send on the built-in kinds (and what their ResourceInfo lists). The contracts' other
#: functions belong to the transaction layer: the stub reaches them through the IResource hooks, after checking who
#: may do what, and refuses them through call/sendTransaction. ``htlcStatus`` is the one extra read (see
#: :data:`EXTRA_READS`).
PUBLIC_METHODS = {"kv": frozenset({"get", "set"}),
                  "asset": frozenset({"balanceOf", "totalSupply", "owner", "transfer", "mint"})}


#: Reads a client may call beyond PUBLIC_METHODS. Not listed in ResourceInfo.methods: the listing is what it was
#: before the transaction layer (routers and tests compare it).
EXTRA_READS = {"kv": frozenset[str](), "asset": frozenset({"htlcStatus"})}


#: The step methods a transaction (2PC) may prepare on each built-in kind.
TX_STEP_METHODS = {"kv": ("set",), "asset": ("transfer",)}


#: TxBook's transaction states (TxBook.sol) and AssetLedger's HTLC states.
TX_NONE, TX_PREPARED, TX_COMMITTED, TX_ROLLED_BACK = 0, 1, 2, 3


HTLC_STATES = {1: "locked", 2: "unlocked", 3: "refunded"}


#: Revert reasons "<code>: <message>" with one of these codes become StubError(code, message): the built-in
#: contracts' transaction layer reverts that way (and any contract may).
CONTRACT_ERROR_CODES = frozenset({"locked", "tx_state", "unknown_tx", "htlc_state", "bad_secret", "too_early",
                                  "too_late", "insufficient_funds", "forbidden", "bad_args"})


#: How a prepared transaction's locks are named in the listing, per kind (as the embedded chain names them).
LOCK_NAMES = {"kv": "key", "asset": "balance"}


#: Longest HTLC secret taken (bytes): a calldata size no honest client needs more than.
MAX_SECRET_BYTES = 1024


def reverted_error(where: str, name: str, reason: str, suffix: str = "") -> StubError:
    """A revert as the caller sees it: a reason ``<code>: <message>`` with a code of :data:`CONTRACT_ERROR_CODES`
    keeps its code (``locked``, ``bad_secret``...), any other is ``reverted`` naming the method."""
    code, separator, rest = reason.partition(": ")
    if separator and code in CONTRACT_ERROR_CODES:
        return StubError(code, f"{where}: {rest}{suffix}")
    return StubError("reverted", f"{where}.{name} reverted: {reason}{suffix}")


def in_context(where: str, function: AbiFunction, fn: Callable[..., _T], *args: Any) -> _T:
    """Run ``fn``; a revert's message gains the resource and method it happened in."""
    try:
        return fn(*args)
    except StubError as exc:
        if exc.code != "reverted":
            raise
        raise reverted_error(where, function.name, exc.message) from None


def embedded_style(kind: str, method: str, args: list[Any], sender: str) -> list[Any]:
    """``transfer(to, amount)`` on an asset, as the embedded chain's asset ledger takes it, is the contract's
    ``transfer(sender, to, amount)``: one client call works on both chain types (the entry router applies the same
    rule when it checks a proven transaction's calldata)."""
    if kind == "asset" and method == "transfer" and len(args) == 2:
        return [sender, *args]
    return args


def _bare_hex(value: Any, what: str, size: int | None = None, limit: int | None = None) -> str:
    """Hex with or without 0x as lowercase hex without it; StubError('bad_args') saying what was expected."""
    text = value[2:] if isinstance(value, str) and value[:2] in ("0x", "0X") else value
    if not isinstance(text, str) or len(text) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", text):
        raise StubError("bad_args", f"{what} must be hex (an even number of digits, 0x optional), not {value!r}")
    if size is not None and len(text) != 2 * size:
        raise StubError("bad_args", f"{what} must be {size} bytes ({2 * size} hex digits), got {len(text) // 2}")
    if limit is not None and len(text) > 2 * limit:
        raise StubError("bad_args", f"{what} must be at most {limit} bytes, got {len(text) // 2}")
    return text.lower()


def step_name(method: Any) -> str:
    """A method as named or as a signature (``set(string,string)``): the name."""
    return method.split("(", 1)[0].strip() if isinstance(method, str) else ""


def contract_call(kind: str, op: str, method: str, args: list[Any], sender: str) -> tuple[str, list[Any]]:
    """The built-in contract function, and its arguments, that carry out a transaction-layer operation.

    ``op``, ``method``, ``args`` and ``sender`` are the router operation's (see TX_OPERATIONS in
    wecross.stub.interfaces): the stub's hooks build their transactions with this function, and an entry router
    checking a proven transaction (:func:`wecross.evm.checks.check_write` with the returned name and
    arguments) gets the very same calldata:

    - ``txPrepare`` ``set`` ``[tx_id, [key, value]]`` (kv) -> ``prepareSet(tx_id, key, value)``;
    - ``txPrepare`` ``transfer`` ``[tx_id, [to, amount]]`` or ``[tx_id, [from, to, amount]]`` (asset) ->
      ``prepareTransfer(tx_id, from, to, amount)``, ``from`` being the sender in the two-argument form;
    - ``txCommit`` / ``txRollback`` ``[tx_id]`` -> ``commit(tx_id)`` / ``rollback(tx_id)``;
    - ``htlcLock`` ``[htlc_id, hash_lock, timelock, [receiver, amount]]`` (asset) ->
      ``htlcLock(htlc_id, sender, receiver, amount, 0x<hash_lock>, ceil(timelock))``;
    - ``htlcUnlock`` ``[htlc_id, secret]`` -> ``htlcUnlock(htlc_id, 0x<secret>)``;
    - ``htlcTimeout`` ``[htlc_id]`` -> ``htlcRefund(htlc_id)``.

    StubError ``unsupported`` (a kind or step method without transaction support) or ``bad_args``.
    """
    if kind not in BUILTIN_CONTRACTS:
        raise StubError("unsupported", f"a {kind} resource takes no part in the transaction layer (2PC/HTLC): only "
                                       f"the built-in kinds {', '.join(BUILTIN_CONTRACTS)} do")
    if not isinstance(args, (list, tuple)) or not args or not isinstance(args[0], str) or not args[0]:
        raise StubError("bad_args", f"{op} needs the transaction or HTLC id (a non-empty string) as its first argument")
    ident = args[0]
    if op == OP_TX_PREPARE:
        if len(args) != 2 or not isinstance(args[1], (list, tuple)):
            raise StubError("bad_args", "txPrepare takes [tx_id, [step args]]")
        name = step_name(method)
        if name not in TX_STEP_METHODS[kind]:
            raise StubError("unsupported", f"a {kind} resource takes part in transactions with "
                                           f"{', '.join(TX_STEP_METHODS[kind])} steps only, not {method!r}")
        step = embedded_style(kind, name, list(args[1]), sender)
        wanted = 2 if kind == "kv" else 3
        if len(step) != wanted:
            shape = "[key, value]" if kind == "kv" else "[to, amount] or [from, to, amount]"
            raise StubError("bad_args", f"a {name} step takes {shape}, got {len(args[1])} argument(s)")
        return ("prepareSet" if kind == "kv" else "prepareTransfer"), [ident, *step]
    if op in (OP_TX_COMMIT, OP_TX_ROLLBACK, OP_HTLC_TIMEOUT):
        if len(args) != 1:
            raise StubError("bad_args", f"{op} takes [id]")
        if op == OP_TX_COMMIT:
            return "commit", [ident]
        if op == OP_TX_ROLLBACK:
            return "rollback", [ident]
    if op not in (OP_HTLC_LOCK, OP_HTLC_UNLOCK, OP_HTLC_TIMEOUT):
        raise StubError("bad_request", f"{op!r} is not a transaction-layer operation")
    if kind != "asset":
        raise StubError("unsupported", f"a {kind} resource holds no HTLCs: only an asset does")
    if op == OP_HTLC_TIMEOUT:
        return "htlcRefund", [ident]
    if op == OP_HTLC_UNLOCK:
        if len(args) != 2:
            raise StubError("bad_args", "htlcUnlock takes [htlc_id, secret hex]")
        return "htlcUnlock", [ident, "0x" + _bare_hex(args[1], "the secret", limit=MAX_SECRET_BYTES)]
    if len(args) != 4 or not isinstance(args[3], (list, tuple)) or len(args[3]) != 2:
        raise StubError("bad_args", "htlcLock takes [htlc_id, hash_lock hex, timelock unix seconds, "
                                    "[receiver, amount]]")
    timelock = args[2]
    if isinstance(timelock, bool) or not isinstance(timelock, (int, float)) or not math.isfinite(timelock) \
            or not 0 < timelock < 2**63:
        raise StubError("bad_args", f"the timelock must be a positive number of unix seconds, not {timelock!r}")
    receiver, amount = args[3]
    hash_lock = "0x" + _bare_hex(args[1], "the hash lock", size=32)
    # ceil: with whole-second block times, "time < timelock" and "time >= timelock" stay exact for a fraction.
    return "htlcLock", [ident, sender, receiver, amount, hash_lock, math.ceil(timelock)]
