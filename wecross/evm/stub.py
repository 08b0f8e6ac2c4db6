"""Any Ethereum JSON-RPC node as a stub (anvil in tests; geth, besu, FISCO BCOS 3 in web3 mode in production).

Threads. JSON-RPC blocks, so every request runs on the stub's own thread pool (``threads`` option), never on the
reactor thread. Right after a send the receipt is asked for once, with the latest block and its receipts (on an
automining dev node that is the write's block, and the whole write takes three round trips); where it is not there
yet, waiting is driven from the reactor (a poll job every ``poll_interval``), so a burst of writes does not park one
pool thread per transaction.

Signing. The router holds one key (``private_key_file`` or ``private_key_env``) and signs every write with it;
users never hold Ethereum keys. Nonces are assigned locally under a lock, so concurrent writes from one router do
not collide; each write also reads the node's ``pending`` count (in the round trip that reads its fees and gas),
and the higher of the two wins, so a nonce taken by another sender with the same key is skipped, not reused.

Reads. ``get``, ``balanceOf``, ``totalSupply`` and ``htlcStatus`` of the built-in contracts are read at one
block, with the ``eth_getProof`` of the storage slots that hold the value and that block's header; see
:func:`wecross.evm.checks.check_read`. Other reads carry no proof.

Events carry Merkle-Patricia proofs of their transaction and receipt and the position of their log in it, built
per block from the block's own transactions and receipts; see :meth:`EvmStub.events` and
:func:`wecross.evm.checks.check_event`.

ABI. Arguments arrive as JSON values and are checked against the contract's ABI here, before anything is sent, so
a malformed request fails with ``bad_args`` naming the argument. Values leave as wire values: addresses as EIP-55
strings, bytes as ``0x`` hex, tuples and arrays as lists, and integers outside the 64-bit range msgpack can carry
as decimal strings (integer arguments may be given as decimal or ``0x`` strings for the same reason).

Who may write. Built-in ``asset`` resources enforce the embedded chain's rules on behalf of the router's users:
a transfer only from the caller's own account, a mint only by the configured ``issuer``. A generic ``contract``
resource has no such checks: any user who can reach it writes with the router's key.

Transactions. The built-in kinds take part in the transaction layer (IResource's prepare/commit/rollback, and
lock/unlock/timeout on an asset): each hook is one mined transaction of the built-in contract, which holds the
tentative steps, the per-key (per-account) locks and the HTLCs, so a prepare is durable once mined and a restarted
stub finds its prepared transactions on the chain. :func:`contract_call` says which contract function carries out
which operation; docs/stubs.md describes the semantics and error codes.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import math
import os
import re
import select
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

import requests
import rlp  # type: ignore[import-untyped]
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError, EncodingError
from eth_account import Account
from eth_keys.datatypes import PrivateKey
from eth_utils.abi import event_signature_to_log_topic, function_signature_to_4byte_selector
from eth_utils.address import is_checksum_address, is_hex_address, to_checksum_address
from eth_utils.crypto import keccak
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred, DeferredLock
from twisted.internet.interfaces import IReactorCore
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception
from zope.interface import implementer

from wecross.chain import mpt
from wecross.evm import checks as evm_checks
from wecross.ipath import IPath, IPathError
from wecross.stub.interfaces import (
    OP_HTLC_LOCK,
    OP_HTLC_TIMEOUT,
    OP_HTLC_UNLOCK,
    OP_TX_COMMIT,
    OP_TX_PREPARE,
    OP_TX_ROLLBACK,
    BlockHeader,
    ChainState,
    IResource,
    IStub,
    ResourceInfo,
    Result,
    StubError,
    StubSettings,
)

_T = TypeVar("_T")

#: Importing web3 imports py_ecc, which raises the interpreter's recursion limit to 100,000 for the whole process;
#: C code that recurses (json, pickle) can then overflow the C stack instead of raising RecursionError. A router
#: does not use py_ecc's pairing code: back to the interpreter's default.
_DEFAULT_RECURSION_LIMIT = 1000
if sys.getrecursionlimit() > _DEFAULT_RECURSION_LIMIT:
    sys.setrecursionlimit(_DEFAULT_RECURSION_LIMIT)
log = Logger()

CHAIN_TYPE = "evm"
READ = "read"
WRITE = "write"
#: Compiled built-in contracts (``make contracts`` writes them; see contracts/build.py).
ARTIFACT_DIR = Path(__file__).resolve().parent / "contracts" / "build"
#: Resource kind -> built-in contract.
BUILTIN_CONTRACTS = {"kv": "HelloWeCross", "asset": "AssetLedger"}
KINDS = ("kv", "asset", "contract")
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
HTLC_STATES = evm_checks.HTLC_STATE_NAMES
#: Revert reasons "<code>: <message>" with one of these codes become StubError(code, message): the built-in
#: contracts' transaction layer reverts that way (and any contract may).
CONTRACT_ERROR_CODES = frozenset({"locked", "tx_state", "unknown_tx", "htlc_state", "bad_secret", "too_early",
                                  "too_late", "insufficient_funds", "forbidden", "bad_args"})
#: How a prepared transaction's locks are named in the listing, per kind (as the embedded chain names them).
_LOCK_NAMES = {"kv": "key", "asset": "balance"}
#: Failures after which the outcome of a transaction-layer write is unknown: the stub reads the transaction's state
#: back from the contract so that its listing of prepared transactions stays the chain's.
_UNCERTAIN = frozenset({"timeout", "unavailable", "shutting_down", "bad_response", "rpc_error"})
#: Seconds between two readings of the transactions in doubt (see EvmStub.resync).
DOUBT_INTERVAL = 5.0
#: Longest HTLC secret taken (bytes): a calldata size no honest client needs more than.
MAX_SECRET_BYTES = 1024
#: Addresses of contracts this stub deployed, per chain (genesis hash), kept in the stub's data_dir.
DEPLOYMENTS_FILE = "deployments.json"
#: Most blocks asked for in one eth_getLogs (nodes refuse or time out on large ranges).
LOG_CHUNK = 2000
#: Most eth_getLogs requests in one JSON-RPC batch.
LOG_BATCH = 8
#: Most blocks whose transactions and receipts one JSON-RPC batch asks for, to prove events.
PROOF_BATCH = 64
#: Integers msgpack carries; outputs outside become decimal strings.
WIRE_INT_MIN, WIRE_INT_MAX = -(2**63), 2**64 - 1
_ARRAY = re.compile(r"^(.*)\[(\d*)\]$")
_INT = re.compile(r"^(u?)int(\d*)$")
_BYTES_N = re.compile(r"^bytes(\d+)$")
_HEX = re.compile(r"^0x([0-9a-fA-F]{2})*$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_DEFAULT_PRIORITY_FEE = 10**9  # 1 gwei, when a London node cannot suggest one


# -- options ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EvmOptions:
    """The ``options`` table of an evm stub."""

    rpc: str
    private_key_file: str | None = None
    private_key_env: str | None = None
    chain_id: int | None = None
    confirmations: int = 0
    poll_interval: float = 0.5
    receipt_timeout: float = 120.0
    rpc_timeout: float = 10.0
    gas_limit: int | None = None
    deploy: bool = False
    threads: int = 4

    @property
    def can_sign(self) -> bool:
        return self.private_key_file is not None or self.private_key_env is not None


_OPTION_HELP = {
    "rpc": "the node's JSON-RPC URL (http:// or https://), required",
    "private_key_file": "path of a file holding the router's hex signing key",
    "private_key_env": "name of an environment variable holding the router's hex signing key",
    "chain_id": "the chain id the node must report (checked at start)",
    "confirmations": "blocks on top of a transaction's block before its write is answered (default 0)",
    "poll_interval": "seconds between receipt polls (default 0.5)",
    "receipt_timeout": "seconds to wait for a receipt before answering 'timeout' (default 120)",
    "rpc_timeout": "seconds one JSON-RPC request may take (default 10)",
    "gas_limit": "gas for every transaction instead of eth_estimateGas",
    "deploy": "deploy resources that have no address at start (dev nets; default false)",
    "threads": "threads making RPC requests (default 4)",
}


def parse_options(where: str, options: Mapping[str, Any]) -> EvmOptions:
    """Check the options table; ValueError naming the option and what it must be."""
    unknown = sorted(set(options) - set(_OPTION_HELP))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(_OPTION_HELP)}")

    def fail(key: str, value: Any) -> ValueError:
        return ValueError(f"{where}: option {key!r} must be {_OPTION_HELP[key]}, not {value!r}")

    def integer(key: str, minimum: int) -> int | None:
        value = options.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise fail(key, value)
        return value

    def number(key: str, default: float) -> float:
        value = options.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1e6:
            raise fail(key, value)
        return float(value)

    def text(key: str) -> str | None:
        value = options.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise fail(key, value)
        return value

    rpc = options.get("rpc")
    if not isinstance(rpc, str) or not re.match(r"^https?://[^/\s]+", rpc):
        raise fail("rpc", rpc)
    key_file, key_env = text("private_key_file"), text("private_key_env")
    if key_file is not None and key_env is not None:
        raise ValueError(f"{where}: give one of the options 'private_key_file' and 'private_key_env', not both")
    deploy = options.get("deploy", False)
    if not isinstance(deploy, bool):
        raise fail("deploy", deploy)
    parsed = EvmOptions(
        rpc=rpc,
        private_key_file=key_file,
        private_key_env=key_env,
        chain_id=integer("chain_id", 1),
        confirmations=integer("confirmations", 0) or 0,
        poll_interval=number("poll_interval", 0.5),
        receipt_timeout=number("receipt_timeout", 120.0),
        rpc_timeout=number("rpc_timeout", 10.0),
        gas_limit=integer("gas_limit", 21000),
        deploy=deploy,
        threads=integer("threads", 1) or 4,
    )
    if deploy and not parsed.can_sign:
        raise ValueError(f"{where}: option 'deploy' needs a signing key: set 'private_key_file' or 'private_key_env'")
    return parsed


# -- ABI -------------------------------------------------------------------------------------------------------
class _ArgError(ValueError):
    """One argument does not fit its ABI type; the message reads after 'argument N (name: type) '."""


def _abi_type(param: Mapping[str, Any]) -> str:
    """The canonical type of an ABI parameter, tuples spelled out: what selectors and eth_abi use."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(component) for component in param.get("components", []))
        return f"({inner}){kind[len('tuple'):]}"
    return kind


def _parse_int(value: Any, kind: str) -> int:
    match = _INT.match(kind)
    assert match is not None
    bits = int(match.group(2) or 256)
    signed = not match.group(1)
    if isinstance(value, bool):
        raise _ArgError(f"must be an integer, not {value!r}")
    if isinstance(value, str):
        try:
            number = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
        except ValueError:
            raise _ArgError(f"must be an integer (a number, or a decimal or 0x string), not {value!r}") from None
    elif isinstance(value, int):
        number = value
    else:
        raise _ArgError(f"must be an integer, not {type(value).__name__}")
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if not low <= number <= high:
        raise _ArgError(f"must be between {low} and {high}")
    return number


def _parse_bytes(value: Any, size: int | None) -> bytes:
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str) and _HEX.match(value):
        raw = bytes.fromhex(value[2:])
    else:
        raise _ArgError(f"must be a 0x-prefixed hex string with an even number of digits, not {value!r}")
    if size is not None and len(raw) != size:
        raise _ArgError(f"must be exactly {size} bytes, got {len(raw)}")
    return raw


def _to_abi(value: Any, kind: str, components: list[dict[str, Any]] | None) -> Any:
    """A JSON value as the Python value eth_abi encodes for ``kind``; _ArgError saying what was expected."""
    array = _ARRAY.match(kind)
    if array is not None:
        inner, size = array.group(1), array.group(2)
        if not isinstance(value, (list, tuple)):
            raise _ArgError(f"must be a list, not {type(value).__name__}")
        if size and len(value) != int(size):
            raise _ArgError(f"must be a list of exactly {size} items, got {len(value)}")
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_to_abi(item, inner, components))
            except _ArgError as exc:
                raise _ArgError(f"item {index}: {exc}") from None
        return items
    if kind == "tuple":
        fields = components or []
        if isinstance(value, Mapping):
            missing = [c["name"] for c in fields if c.get("name") not in value]
            if missing:
                raise _ArgError(f"lacks field(s) {', '.join(missing)}")
            value = [value[c["name"]] for c in fields]
        if not isinstance(value, (list, tuple)) or len(value) != len(fields):
            raise _ArgError(f"must be a list of {len(fields)} values or an object with fields "
                            f"{', '.join(str(c.get('name')) for c in fields)}")
        parts = []
        for component, item in zip(fields, value, strict=True):
            try:
                parts.append(_to_abi(item, str(component["type"]), component.get("components")))
            except _ArgError as exc:
                raise _ArgError(f"field {component.get('name') or '?'}: {exc}") from None
        return tuple(parts)
    if kind == "address":
        try:
            return _check_address(value)
        except ValueError as exc:
            raise _ArgError(str(exc)) from None
    if kind == "bool":
        if not isinstance(value, bool):
            raise _ArgError(f"must be true or false, not {value!r}")
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise _ArgError(f"must be a string, not {type(value).__name__}")
        return value
    if kind == "bytes":
        return _parse_bytes(value, None)
    fixed = _BYTES_N.match(kind)
    if fixed is not None:
        return _parse_bytes(value, int(fixed.group(1)))
    if _INT.match(kind):
        return _parse_int(value, kind)
    raise _ArgError(f"has ABI type {kind}, which this stub cannot take from JSON")


def _check_address(value: Any) -> str:
    """An address in EIP-55 form; ValueError for anything else, or for mixed case with a wrong checksum."""
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise ValueError(f"must be an address (0x and 40 hex digits), not {value!r}")
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(value):
        raise ValueError(f"has a wrong EIP-55 checksum: {value!r}")
    return str(to_checksum_address(value))


def to_wire(value: Any) -> Any:
    """A decoded ABI value as a wire value (see the module docstring); addresses need :func:`_from_abi`."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if WIRE_INT_MIN <= value <= WIRE_INT_MAX else str(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [to_wire(item) for item in value]
    return value


def _from_abi(value: Any, kind: str, components: list[dict[str, Any]] | None) -> Any:
    """A value eth_abi decoded as ``kind`` as a wire value: the type says which strings are addresses."""
    array = _ARRAY.match(kind)
    if array is not None:
        return [_from_abi(item, array.group(1), components) for item in value]
    if kind == "tuple":
        return [_from_abi(item, str(c["type"]), c.get("components"))
                for c, item in zip(components or [], value, strict=True)]
    if kind == "address":
        return to_checksum_address(value)
    return to_wire(value)


def _hex(value: Any) -> str:
    """Hashes and roots for the abstract model: lowercase hex without 0x."""
    if isinstance(value, str):
        return value[2:].lower() if value.startswith(("0x", "0X")) else value.lower()
    return bytes(value).hex()


def _hex0x(value: Any) -> str:
    return "0x" + _hex(value)


@dataclass(frozen=True, slots=True)
class AbiFunction:
    name: str
    signature: str  # name(type,...), the canonical form that is hashed into the selector
    selector: bytes
    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]
    mode: str  # READ or WRITE

    def pretty(self) -> str:
        params = ", ".join(f"{_abi_type(p)} {p.get('name') or ''}".strip() for p in self.inputs)
        return f"{self.name}({params})"


@dataclass(frozen=True, slots=True)
class AbiEvent:
    name: str
    topic: bytes
    inputs: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class ContractAbi:
    """A contract's ABI as lookup tables: functions by name and by signature, events by topic."""

    functions: dict[str, list[AbiFunction]]
    by_signature: dict[str, AbiFunction]
    events: dict[bytes, AbiEvent]
    constructor_inputs: tuple[dict[str, Any], ...] = ()
    bytecode: str | None = None
    methods: dict[str, str] = field(default_factory=dict)  # ResourceInfo.methods: name (or signature) -> mode

    @classmethod
    def parse(cls, abi: Any, bytecode: Any = None) -> ContractAbi:
        """ValueError if ``abi`` is not a list of ABI entries or ``bytecode`` not 0x hex."""
        if not isinstance(abi, list):
            raise ValueError("the ABI must be a JSON list of entries")
        functions: dict[str, list[AbiFunction]] = {}
        by_signature: dict[str, AbiFunction] = {}
        events: dict[bytes, AbiEvent] = {}
        constructor: tuple[dict[str, Any], ...] = ()
        try:
            for entry in abi:
                kind = entry.get("type", "function")
                inputs = tuple(entry.get("inputs", []))
                if kind == "function":
                    signature = f"{entry['name']}({','.join(_abi_type(p) for p in inputs)})"
                    mutability = entry.get("stateMutability")
                    if mutability is None:  # pre-0.5 ABIs
                        mutability = "view" if entry.get("constant") else "nonpayable"
                    function = AbiFunction(
                        name=entry["name"], signature=signature,
                        selector=function_signature_to_4byte_selector(signature), inputs=inputs,
                        outputs=tuple(entry.get("outputs", [])),
                        mode=READ if mutability in ("view", "pure") else WRITE)
                    functions.setdefault(function.name, []).append(function)
                    by_signature[signature] = function
                elif kind == "event" and not entry.get("anonymous"):
                    signature = f"{entry['name']}({','.join(_abi_type(p) for p in inputs)})"
                    events[event_signature_to_log_topic(signature)] = AbiEvent(entry["name"],
                                                                               event_signature_to_log_topic(signature),
                                                                               inputs)
                elif kind == "constructor":
                    constructor = inputs
        except (AttributeError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed ABI entry ({exc!r})") from None
        if bytecode is not None and (not isinstance(bytecode, str) or not _HEX.match(bytecode) or len(bytecode) < 4):
            raise ValueError("'bytecode' must be 0x-prefixed hex")
        methods: dict[str, str] = {}
        for name, overloads in functions.items():
            if len(overloads) == 1:
                methods[name] = overloads[0].mode
            else:
                methods.update({function.signature: function.mode for function in overloads})
        return cls(functions, by_signature, events, constructor, bytecode, methods)

    def listing(self) -> str:
        return ", ".join(f"{f.pretty()} ({f.mode})" for fs in self.functions.values() for f in fs)

    def lookup(self, where: str, method: Any, args: Any, mode: str) -> AbiFunction:
        """The function ``method`` (a name, or name(types) for overloads) taking ``args``; StubError otherwise."""
        candidates: list[AbiFunction] = []
        if isinstance(method, str):
            exact = self.by_signature.get(method.replace(" ", ""))
            candidates = [exact] if exact is not None else self.functions.get(method, [])
        if not candidates:
            raise StubError("unknown_method", f"{where} has no method {method!r}; methods: {self.listing()}")
        if not isinstance(args, (list, tuple)):
            raise StubError("bad_args", f"{where}.{candidates[0].pretty()}: the arguments must be a list, "
                                        f"not {type(args).__name__}")
        fitting = [f for f in candidates if len(f.inputs) == len(args)]
        if not fitting:
            wanted = " or ".join(sorted({str(len(f.inputs)) for f in candidates}))
            raise StubError("bad_args", f"{where}.{candidates[0].pretty()} expects {wanted} argument(s), "
                                        f"got {len(args)}")
        if len(fitting) > 1:
            raise StubError("bad_args", f"{where}.{method} is overloaded; name one of "
                                        f"{', '.join(f.signature for f in fitting)}")
        function = fitting[0]
        if function.mode != mode:
            other = "sendTransaction" if function.mode == WRITE else "call"
            raise StubError("unknown_method", f"{where}.{function.name} is a {function.mode} method: use {other}")
        return function

    def encode(self, where: str, function: AbiFunction, args: list[Any]) -> tuple[bytes, list[Any]]:
        """Calldata and the normalised arguments; StubError('bad_args') naming the argument that does not fit."""
        values = []
        for position, (param, value) in enumerate(zip(function.inputs, args, strict=True), start=1):
            try:
                values.append(_to_abi(value, str(param["type"]), param.get("components")))
            except _ArgError as exc:
                name = param.get("name") or "?"
                raise StubError("bad_args", f"{where}.{function.pretty()}: argument {position} ({name}: "
                                            f"{_abi_type(param)}) {exc}") from None
        try:
            encoded = abi_encode([_abi_type(p) for p in function.inputs], values)
        except (EncodingError, ValueError, TypeError) as exc:
            raise StubError("bad_args", f"{where}.{function.pretty()}: {exc}") from None
        return function.selector + encoded, values

    def decode_output(self, function: AbiFunction, data: bytes) -> Any:
        """None for no outputs, the value for one, a list for several."""
        if not function.outputs:
            return None
        values = [_from_abi(value, str(param["type"]), param.get("components"))
                  for param, value in zip(function.outputs,
                                          abi_decode([_abi_type(p) for p in function.outputs], data), strict=True)]
        return values[0] if len(values) == 1 else values

    def decode_log(self, log_entry: Mapping[str, Any]) -> dict[str, Any]:
        """A log as {name, args, address, log_index, ...}; name None (with raw topics and data) if it is unknown.

        An indexed parameter of a dynamic type (string, bytes, arrays, tuples) is only its keccak hash in the
        topics, so it comes out as that hash in 0x hex.
        """
        topics = [bytes(t) for t in log_entry.get("topics", [])]
        data = bytes(log_entry.get("data", b""))
        decoded: dict[str, Any] = {
            "name": None,
            "args": None,
            "address": to_checksum_address(log_entry["address"]),
            "log_index": log_entry.get("logIndex"),
            "block_number": log_entry.get("blockNumber"),
            "block_hash": _hex(log_entry["blockHash"]) if log_entry.get("blockHash") else None,
            "tx_hash": _hex(log_entry["transactionHash"]) if log_entry.get("transactionHash") else None,
            "transaction_index": log_entry.get("transactionIndex"),
        }
        event = self.events.get(topics[0]) if topics else None
        if event is not None:
            try:
                decoded["args"] = self._event_args(event, topics[1:], data)
                decoded["name"] = event.name
            except (DecodingError, ValueError, IndexError):
                pass
        if decoded["name"] is None:
            decoded["topics"] = [_hex0x(t) for t in topics]
            decoded["data"] = _hex0x(data)
        return decoded

    @staticmethod
    def _event_args(event: AbiEvent, indexed_topics: list[bytes], data: bytes) -> dict[str, Any]:
        indexed = [p for p in event.inputs if p.get("indexed")]
        plain = [p for p in event.inputs if not p.get("indexed")]
        if len(indexed) != len(indexed_topics):
            raise ValueError("topic count does not match the event")
        values: dict[str, Any] = {}
        for param, topic in zip(indexed, indexed_topics, strict=True):
            kind = _abi_type(param)
            dynamic = kind in ("string", "bytes") or kind.endswith("]") or kind.startswith("(")
            values[param["name"]] = _hex0x(topic) if dynamic else \
                _from_abi(abi_decode([kind], topic)[0], str(param["type"]), param.get("components"))
        for param, value in zip(plain, abi_decode([_abi_type(p) for p in plain], data), strict=True):
            values[param["name"]] = _from_abi(value, str(param["type"]), param.get("components"))
        return {p["name"]: values[p["name"]] for p in event.inputs}


def load_artifact(path: Path) -> ContractAbi:
    """A compiled contract: a JSON ABI list, or an object with "abi" (and "bytecode" to let the stub deploy it)."""
    document = json.loads(path.read_text())
    if isinstance(document, Mapping):
        return ContractAbi.parse(document.get("abi"), document.get("bytecode"))
    return ContractAbi.parse(document)


@functools.cache
def builtin_abi(kind: str) -> ContractAbi:
    """Parsed once per process: the entry router asks for it on every EVM write it verifies. Shared: read only."""
    return load_artifact(ARTIFACT_DIR / f"{BUILTIN_CONTRACTS[kind]}.json")


# -- resources in the config -----------------------------------------------------------------------------------
@dataclass(slots=True)
class ResourceSpec:
    """One entry of the stub's ``resources`` list, checked."""

    name: str
    kind: str
    abi: ContractAbi
    address: str | None
    description: str
    issuer: str | None = None
    initial: dict[str, Any] = field(default_factory=dict)


_RESOURCE_KEYS = {
    "kv": {"name", "kind", "address", "description", "initial"},
    "asset": {"name", "kind", "address", "description", "initial", "issuer"},
    "contract": {"name", "kind", "address", "description", "abi"},
}
_DESCRIPTIONS = {
    "kv": "key/value store (HelloWeCross): get(key), set(key, value); takes part in transactions (2PC: set)",
    "asset": "asset ledger (AssetLedger): balanceOf(account), totalSupply(), transfer(from, to, amount) from the "
             "caller's own account, mint(account, amount) by the issuer; takes part in transactions (2PC: transfer) "
             "and HTLCs (htlcStatus(id))",
}


def parse_resource(where: str, zone: str, chain: str, spec: Any, options: EvmOptions) -> ResourceSpec:
    """Build a ResourceSpec from its config entry (reading a ``contract``'s ABI file); ValueError saying what."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: each resource must be a table with name and kind")
    name = spec.get("name")
    if not isinstance(name, str):
        raise ValueError(f"{where}: a resource has no 'name'")
    try:
        IPath.parse(f"{zone}.{chain}.{name}")
    except IPathError as exc:
        raise ValueError(f"{where}: resource name {name!r}: {exc}") from None
    here = f"{where}: resource {name!r}"
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{here}: unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
    unknown = sorted(set(spec) - _RESOURCE_KEYS[kind])
    if unknown:
        raise ValueError(f"{here} ({kind}): unknown option(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(_RESOURCE_KEYS[kind]))}")
    address = spec.get("address")
    if address is not None:
        try:
            address = _check_address(address)
        except ValueError as exc:
            raise ValueError(f"{here}: option 'address' {exc}") from None
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"{here}: option 'description' must be a string")
    if kind == "contract":
        abi_path = spec.get("abi")
        if not isinstance(abi_path, str) or not abi_path:
            raise ValueError(f"{here}: option 'abi' must be the path of the contract's ABI JSON file")
        try:
            abi = load_artifact(Path(abi_path).expanduser())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{here}: option 'abi' ({abi_path}): {exc}") from None
    else:
        abi = builtin_abi(kind)
    if address is None and not (options.deploy and abi.bytecode):
        needs = "or set the stub option 'deploy' to true" if kind != "contract" else \
            "or point 'abi' at an artifact with a 'bytecode' and set the stub option 'deploy' to true"
        raise ValueError(f"{here}: option 'address' is required ({needs})")
    if abi.constructor_inputs and address is None:
        raise ValueError(f"{here}: the contract's constructor takes arguments; deploy it yourself and give 'address'")
    issuer = spec.get("issuer")
    if issuer is not None and (not isinstance(issuer, str) or not issuer):
        raise ValueError(f"{here}: option 'issuer' must be an account name")
    initial = spec.get("initial", {})
    if not isinstance(initial, Mapping):
        raise ValueError(f"{here}: option 'initial' must be a table")
    for key, value in initial.items():
        fits = isinstance(value, str) if kind == "kv" else \
            isinstance(value, int) and not isinstance(value, bool) and value >= 0
        if not key or not fits:
            what = "keys to string values" if kind == "kv" else "account names to non-negative integers"
            raise ValueError(f"{here}: option 'initial' must map {what}; entry {key!r} does not")
    return ResourceSpec(name, kind, abi, address, description or _DESCRIPTIONS.get(kind, ""), issuer, dict(initial))


def _revert_reason(exc: ContractLogicError) -> str:
    message = str(exc.message or "execution reverted")
    prefix = "execution reverted: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _reverted(where: str, name: str, reason: str, suffix: str = "") -> StubError:
    """A revert as the caller sees it: a reason ``<code>: <message>`` with a code of :data:`CONTRACT_ERROR_CODES`
    keeps its code (``locked``, ``bad_secret``...), any other is ``reverted`` naming the method."""
    code, separator, rest = reason.partition(": ")
    if separator and code in CONTRACT_ERROR_CODES:
        return StubError(code, f"{where}: {rest}{suffix}")
    return StubError("reverted", f"{where}.{name} reverted: {reason}{suffix}")


def _in_context(where: str, function: AbiFunction, fn: Callable[..., _T], *args: Any) -> _T:
    """Run ``fn``; a revert's message gains the resource and method it happened in."""
    try:
        return fn(*args)
    except StubError as exc:
        if exc.code != "reverted":
            raise
        raise _reverted(where, function.name, exc.message) from None


# -- JSON-RPC, raw ----------------------------------------------------------------------------------------------
#: Selectors of the revert payloads Solidity emits: Error(string) and Panic(uint256).
_ERROR_SELECTOR = bytes.fromhex("08c379a0")
_PANIC_SELECTOR = bytes.fromhex("4e487b71")
#: Raw transactions this stub sent, remembered so that a proof of their block need not fetch them back.
_SENT_REMEMBERED = 512
#: Fields of a JSON-RPC block and receipt that are quantities (to int) and data (to bytes); the rest stay as sent.
_BLOCK_QUANTITIES = ("number", "difficulty", "gasLimit", "gasUsed", "timestamp", "baseFeePerGas", "blobGasUsed",
                     "excessBlobGas", "size", "totalDifficulty")
_BLOCK_DATA = ("hash", "parentHash", "sha3Uncles", "stateRoot", "transactionsRoot", "receiptsRoot", "logsBloom",
               "extraData", "mixHash", "nonce", "withdrawalsRoot", "parentBeaconBlockRoot", "requestsHash")
_RECEIPT_QUANTITIES = ("blockNumber", "transactionIndex", "gasUsed", "cumulativeGasUsed", "effectiveGasPrice",
                       "status", "type", "blobGasUsed", "blobGasPrice")
_RECEIPT_DATA = ("transactionHash", "blockHash", "logsBloom", "root")
_LOG_QUANTITIES = ("blockNumber", "transactionIndex", "logIndex")


@dataclass(frozen=True, slots=True)
class _RpcError:
    """An error answer of one JSON-RPC request (inside a batch it is returned, not raised: the caller decides)."""

    method: str
    code: Any
    message: str
    data: Any

    @property
    def reverted(self) -> bool:
        return self.code == 3 or "revert" in self.message.lower()

    def reason(self) -> str:
        """The revert reason: Error(string) or Panic(code) from the revert data, else the node's message."""
        data = self.data
        if isinstance(data, str) and _HEX.match(data):
            raw = bytes.fromhex(data[2:])
            try:
                if raw[:4] == _ERROR_SELECTOR:
                    return str(abi_decode(["string"], raw[4:])[0])
                if raw[:4] == _PANIC_SELECTOR:
                    return f"panic 0x{abi_decode(['uint256'], raw[4:])[0]:02x}"
            except (DecodingError, ValueError):
                pass
        prefix = "execution reverted: "
        return self.message[len(prefix):] if self.message.startswith(prefix) else self.message


def _quantity(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else int(str(value), 16)


def _data(value: Any) -> bytes:
    text = str(value)
    if not _HEX.match(text):
        raise ValueError(f"not 0x hex data: {text[:80]!r}")
    return bytes.fromhex(text[2:])


def _converted(raw: Any, quantities: tuple[str, ...], data: tuple[str, ...]) -> dict[str, Any]:
    """A JSON-RPC object with its quantities as ints and data as bytes (what web3 would hand back)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"expected an object, got {type(raw).__name__}")
    out = dict(raw)
    for name in quantities:
        if out.get(name) is not None:
            out[name] = _quantity(out[name])
    for name in data:
        if out.get(name) is not None:
            out[name] = _data(out[name])
    return out


def _block_from_json(raw: Any) -> dict[str, Any]:
    return _converted(raw, _BLOCK_QUANTITIES, _BLOCK_DATA)


def _log_from_json(raw: Any) -> dict[str, Any]:
    log_entry = _converted(raw, _LOG_QUANTITIES, ("data",))
    log_entry["topics"] = [_data(topic) for topic in log_entry.get("topics") or []]
    return log_entry


def _receipt_from_json(raw: Any) -> dict[str, Any]:
    receipt = _converted(raw, _RECEIPT_QUANTITIES, _RECEIPT_DATA)
    receipt["logs"] = [_log_from_json(entry) for entry in receipt.get("logs") or []]
    return receipt


class _Http:
    """JSON-RPC POSTs over HTTP/1.1 keep-alive, one connection per pool thread.

    Not ``requests``: its per-request overhead (about 0.45 ms here against 0.14 ms for a bare http.client round
    trip) was a third of a write's round-trip cost on a local node. No retries, like ``requests``' default: a
    request the node may have acted on (a send) is never repeated blindly. A kept connection the node closed
    while idle is noticed before it is reused (readable with nothing asked), not by a failed request.
    """

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        self._timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            if self._https:
                connection = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout,
                                                         context=ssl.create_default_context())
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        elif connection.sock is not None and select.select([connection.sock], [], [], 0)[0]:
            connection.close()  # closed by the node while idle (or junk on the line): reconnect on request
        return connection

    def post(self, body: bytes) -> tuple[int, bytes]:
        """The status and body of the answer; OSError or http.client.HTTPException when there is none."""
        connection = self._connection()
        try:
            connection.request("POST", self._path, body, self._headers)
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        return response.status, data

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()


# -- the node, blocking (runs on the stub's pool only) ---------------------------------------------------------
class _Node:
    """One node, with the router's signing key. Every method blocks; call it from the pool.

    Requests go as raw JSON-RPC over keep-alive connections (:class:`_Http`), in batches: one HTTP round trip for
    what belongs together, and none of web3's implicit requests (its validation middleware asks eth_chainId before
    every eth_call and eth_estimateGas). web3 is kept for the start and for logs, off the hot paths.
    """

    def __init__(self, where: str, options: EvmOptions) -> None:
        self.where = where
        self.options = options
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(4, options.threads))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        provider = Web3.HTTPProvider(options.rpc, request_kwargs={"timeout": options.rpc_timeout},
                                     session=self.session)
        self.w3 = Web3(provider)
        self.http = _Http(options.rpc, options.rpc_timeout)
        self.account: Any = None
        self._key: PrivateKey | None = None
        self.chain_id = 0
        self.genesis_hash = ""
        self._send_lock = threading.Lock()
        self._nonce: int | None = None
        self._ids = iter(range(1, 1 << 62))
        #: tx hash (hex, no 0x) -> the raw transaction this stub signed, newest last.
        self._sent: dict[str, bytes] = {}
        #: Whether the last write was in a block by the time its send returned (an automining dev node): then the
        #: receipt, the block and its receipts are asked for in the same round trip right after the send.
        self.mines_at_once = True

    # -- start
    def open(self) -> None:
        """Check the node and load the key: the start's blocking part."""
        self.chain_id = int(self.w3.eth.chain_id)
        wanted = self.options.chain_id
        if wanted is not None and wanted != self.chain_id:
            raise ValueError(f"{self.where}: option 'chain_id' is {wanted} but the node at {self.options.rpc} "
                             f"reports chain id {self.chain_id}")
        self.genesis_hash = _hex(self.w3.eth.get_block(0)["hash"])
        key = self._read_key()
        if key is not None:
            try:
                self.account = Account.from_key(key)
            except (ValueError, TypeError):
                source = "private_key_file" if self.options.private_key_file else "private_key_env"
                raise ValueError(f"{self.where}: option {source!r}: not a hex secp256k1 private key") from None
            self._key = PrivateKey(bytes(self.account.key))

    def _read_key(self) -> str | None:
        if self.options.private_key_file is not None:
            path = Path(self.options.private_key_file).expanduser()
            try:
                return path.read_text().strip()
            except OSError as exc:
                raise ValueError(f"{self.where}: option 'private_key_file': cannot read {path}: "
                                 f"{exc.strerror or exc}") from None
        if self.options.private_key_env is not None:
            value = os.environ.get(self.options.private_key_env)
            if not value:
                raise ValueError(f"{self.where}: option 'private_key_env': environment variable "
                                 f"{self.options.private_key_env} is not set")
            return value.strip()
        return None

    def close(self) -> None:
        self.session.close()
        self.http.close()

    # -- JSON-RPC
    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Send ``calls`` in one HTTP request; their results in order, an :class:`_RpcError` for each that failed.

        No answer raises StubError('unavailable'); an answer that is not JSON-RPC, StubError('bad_response').
        """
        requests_: list[dict[str, Any]] = [
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params} for method, params in calls]
        body: Any = requests_[0] if len(requests_) == 1 else requests_
        try:
            status, data = self.http.post(json.dumps(body, separators=(",", ":")).encode())
        except (OSError, http.client.HTTPException) as exc:
            raise StubError("unavailable", f"{self.where}: node {self.options.rpc} did not answer: "
                                           f"{exc or type(exc).__name__}") from None
        try:
            answer = json.loads(data)
        except ValueError:
            raise StubError("bad_response" if status < 300 else "unavailable",
                            f"{self.where}: node {self.options.rpc} answered HTTP {status} with no JSON-RPC") from None
        answers = answer if isinstance(answer, list) else [answer]
        by_id = {entry.get("id"): entry for entry in answers if isinstance(entry, Mapping)}
        results: list[Any] = []
        for request, (method, _) in zip(requests_, calls, strict=True):
            entry = by_id.get(request["id"])
            if entry is None:
                if len(answers) == 1 and isinstance(answers[0], Mapping) and "error" in answers[0]:
                    entry = answers[0]  # a node that refuses batches answers with one error
                else:
                    raise StubError("bad_response", f"{self.where}: node {self.options.rpc} did not answer {method}")
            error = entry.get("error")
            if error is not None:
                error = error if isinstance(error, Mapping) else {"message": str(error)}
                results.append(_RpcError(method, error.get("code"), str(error.get("message", "")), error.get("data")))
            else:
                results.append(entry.get("result"))
        return results

    def ok(self, value: Any) -> Any:
        """A batch result, or the StubError its error means: 'reverted' with the reason, else 'rpc_error'."""
        if isinstance(value, _RpcError):
            if value.reverted:
                raise StubError("reverted", value.reason())
            raise StubError("rpc_error", f"{self.where}: node {self.options.rpc}: {value.method}: {value.message}")
        return value

    def rpc(self, method: str, *params: Any) -> Any:
        return self.ok(self.batch([(method, list(params))])[0])

    @staticmethod
    def _tag(block: int | str) -> str:
        return hex(block) if isinstance(block, int) else block

    def bad(self, what: str, exc: Exception) -> StubError:
        return StubError("bad_response", f"{self.where}: node {self.options.rpc} sent a malformed {what}: {exc}")

    # -- reading
    def _call_request(self, to: str, data: bytes) -> dict[str, Any]:
        request: dict[str, Any] = {"to": to, "data": _hex0x(data)}
        if self.account is not None:
            request["from"] = self.account.address
        return request

    def call(self, to: str, data: bytes, block: int | str = "latest") -> bytes:
        return _data(self.rpc("eth_call", self._call_request(to, data), self._tag(block)))

    def block(self, number: int | str) -> dict[str, Any] | None:
        """The block (transactions as hashes), None if the node has none of that number."""
        raw = self.rpc("eth_getBlockByNumber", self._tag(number), False)
        try:
            return None if raw is None else _block_from_json(raw)
        except (ValueError, TypeError) as exc:
            raise self.bad("block", exc) from None

    def head(self) -> int:
        return _quantity(self.rpc("eth_blockNumber"))

    def code(self, address: str) -> bytes:
        return _data(self.rpc("eth_getCode", address, "latest"))

    def _receipt(self, raw: Any) -> dict[str, Any] | None:
        try:
            return None if raw is None else _receipt_from_json(raw)
        except (ValueError, TypeError) as exc:
            raise self.bad("receipt", exc) from None

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        return self._receipt(self.rpc("eth_getTransactionReceipt", tx_hash))

    def receipt_and_head(self, tx_hash: str) -> tuple[dict[str, Any], int] | None:
        """A mined transaction's receipt and the head's number, in one round trip; None while it is not mined."""
        if not self.options.confirmations:
            receipt = self.receipt(tx_hash)
            return None if receipt is None else (receipt, int(receipt["blockNumber"]))
        raw, head = (self.ok(answer) for answer in self.batch([("eth_getTransactionReceipt", [tx_hash]),
                                                               ("eth_blockNumber", [])]))
        receipt = self._receipt(raw)
        return None if receipt is None else (receipt, _quantity(head))

    def receipt_in_latest(self, tx_hash: str) -> tuple[dict[str, Any], tuple[Any, list[Any]] | None] | None:
        """The receipt, with the latest block and its receipts when that is the receipt's block, in one round trip;
        None while the transaction is not mined. Right after a send on an automining node, that is all a proof
        needs."""
        answers = self.batch([("eth_getTransactionReceipt", [tx_hash]), ("eth_getBlockByNumber", ["latest", False]),
                              ("eth_getBlockReceipts", ["latest"])])
        receipt = self._receipt(self.ok(answers[0]))
        if receipt is None:
            return None
        if isinstance(answers[1], _RpcError) or isinstance(answers[2], _RpcError) or answers[1] is None:
            return receipt, None
        try:
            block = _block_from_json(answers[1])
            receipts = [_receipt_from_json(entry) for entry in answers[2] or []]
        except (ValueError, TypeError) as exc:
            raise self.bad("block", exc) from None
        same = block["hash"] == receipt["blockHash"] and all(r.get("blockHash") == block["hash"] for r in receipts)
        return receipt, ((block, receipts) if same else None)  # a block came between: fetch the receipt's own

    def block_and_receipts(self, number: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A block (transactions as hashes) and all its receipts, in one round trip."""
        raw_block, raw_receipts = (self.ok(answer) for answer in self.batch([
            ("eth_getBlockByNumber", [hex(number), False]), ("eth_getBlockReceipts", [hex(number)])]))
        if raw_block is None or not isinstance(raw_receipts, list):
            raise StubError("bad_response", f"{self.where}: node {self.options.rpc} has no block {number} (reorg?)")
        try:
            return _block_from_json(raw_block), [_receipt_from_json(entry) for entry in raw_receipts]
        except (ValueError, TypeError) as exc:
            raise self.bad("block", exc) from None

    def raw_transactions(self, hashes: list[Any]) -> list[bytes]:
        """The signed transactions of a block, by hash: those this stub sent from memory, the others in one batch."""
        keys = [_hex(tx_hash) for tx_hash in hashes]
        missing = [key for key in keys if key not in self._sent]
        fetched: dict[str, bytes] = {}
        if missing:
            answers = self.batch([("eth_getRawTransactionByHash", ["0x" + key]) for key in missing])
            try:
                fetched = {key: _data(self.ok(answer)) for key, answer in zip(missing, answers, strict=True)}
            except (ValueError, TypeError) as exc:
                raise self.bad("raw transaction", exc) from None
        return [self._sent.get(key) or fetched[key] for key in keys]

    def state_proof(self, address: str, slots: list[int], number: int, call: bytes | None = None) -> tuple[Any, Any]:
        """eth_getProof of ``slots`` of ``address`` at block ``number`` (as the node sent it: JSON hex, which a
        result carries as is), and, in the same round trip, the eth_call ``call`` at that block (None without)."""
        calls: list[tuple[str, list[Any]]] = [("eth_getProof", [address, [f"0x{slot:064x}" for slot in slots],
                                                                hex(number)])]
        if call is not None:
            calls.append(("eth_call", [self._call_request(address, call), hex(number)]))
        answers = self.batch(calls)
        output = _data(self.ok(answers[1])) if call is not None else None
        return self.ok(answers[0]), output

    def logs(self, address: str, from_block: int, to_block: int) -> list[dict[str, Any]]:
        """The logs of ``address`` in blocks ``from_block`` .. ``to_block``, in chunks of :data:`LOG_CHUNK` blocks
        (nodes refuse or time out on large ranges), up to :data:`LOG_BATCH` chunks per round trip; removed logs
        (a reorg) are left out."""
        ranges = [(start, min(to_block, start + LOG_CHUNK - 1)) for start in range(from_block, to_block + 1, LOG_CHUNK)]
        found: list[dict[str, Any]] = []
        for first in range(0, len(ranges), LOG_BATCH):
            answers = self.batch([("eth_getLogs", [{"address": address, "fromBlock": hex(low), "toBlock": hex(high)}])
                                  for low, high in ranges[first:first + LOG_BATCH]])
            for answer in answers:
                entries = self.ok(answer)
                if not isinstance(entries, list):
                    raise self.bad("eth_getLogs answer", ValueError("not a list"))
                try:
                    found.extend(log_entry for log_entry in map(_log_from_json, entries)
                                 if not log_entry.get("removed"))
                except (ValueError, TypeError, KeyError) as exc:
                    raise self.bad("log", exc) from None
        return found

    def proof_blocks(self, numbers: list[int]) -> dict[int, tuple[dict[str, Any], list[dict[str, Any]], list[bytes]]]:
        """Block ``n`` -> (the block, its receipts, its raw transactions) for each of ``numbers``: what proofs of
        their transactions and receipts are built from. Two round trips per :data:`PROOF_BATCH` blocks (blocks
        with receipts; raw transactions this stub did not send). A block the node does not have, or cannot give the
        receipts or raw transactions of (a node without eth_getBlockReceipts or eth_getRawTransactionByHash), is left
        out: its events come without proof rather than not at all."""
        found: dict[int, tuple[dict[str, Any], list[dict[str, Any]], list[bytes]]] = {}
        for first in range(0, len(numbers), PROOF_BATCH):
            group = numbers[first:first + PROOF_BATCH]
            answers = self.batch([call for number in group for call in (
                ("eth_getBlockByNumber", [hex(number), False]), ("eth_getBlockReceipts", [hex(number)]))])
            fetched: list[tuple[int, dict[str, Any], list[dict[str, Any]]]] = []
            for position, number in enumerate(group):
                raw_block, raw_receipts = answers[2 * position:2 * position + 2]
                if raw_block is None or isinstance(raw_block, _RpcError) or not isinstance(raw_receipts, list):
                    continue
                try:
                    fetched.append((number, _block_from_json(raw_block),
                                    [_receipt_from_json(entry) for entry in raw_receipts]))
                except (ValueError, TypeError) as exc:
                    raise self.bad("block", exc) from None
            hashes = [tx_hash for _, block, _ in fetched for tx_hash in block["transactions"]]
            try:
                raw_txs = iter(self.raw_transactions(hashes))
            except StubError as exc:
                if exc.code not in ("rpc_error", "reverted"):
                    raise
                continue
            for number, block, receipts in fetched:
                found[number] = (block, receipts, [next(raw_txs) for _ in block["transactions"]])
        return found

    # -- writing
    def submit(self, to: str | None, data: bytes) -> str:
        """Sign and send; the tx hash (0x hex). StubError('reverted') when gas estimation shows it would revert.

        One round trip gathers what signing needs: the gas estimate (unless option 'gas_limit'), the latest block's
        base fee, the priority fee or gas price, and the node's pending nonce. Fees are read fresh for every write,
        never cached: a write sent with a stale nonce must not outbid, and so silently replace, a pending
        transaction of the same key (the node refuses an equal bid, and the nonce is then asked again).
        """
        if self.account is None:
            raise StubError("unsupported", f"{self.where} has no signing key (options 'private_key_file' or "
                                           "'private_key_env'): it serves reads only")
        address = self.account.address
        tx: dict[str, Any] = {"value": 0, "data": _hex0x(data), "chainId": self.chain_id}
        if to is not None:
            tx["to"] = to
        calls: list[tuple[str, list[Any]]] = [
            ("eth_getBlockByNumber", ["latest", False]), ("eth_maxPriorityFeePerGas", []), ("eth_gasPrice", []),
            ("eth_getTransactionCount", [address, "pending"])]
        if self.options.gas_limit is None:
            estimate = {"from": address, "value": "0x0", "data": tx["data"], **({"to": to} if to else {})}
            calls.append(("eth_estimateGas", [estimate]))
        answers = self.batch(calls)
        try:
            if self.options.gas_limit is None:
                estimated = _quantity(self.ok(answers[4]))
                tx["gas"] = estimated + estimated // 5  # state may change before inclusion; unused gas is not charged
            else:
                tx["gas"] = self.options.gas_limit
            latest = self.ok(answers[0])
            base = latest.get("baseFeePerGas") if isinstance(latest, Mapping) else None
            if base is None:
                tx["gasPrice"] = _quantity(self.ok(answers[2]))
            else:
                tip = _DEFAULT_PRIORITY_FEE if isinstance(answers[1], _RpcError) else _quantity(answers[1])
                tx.update(maxFeePerGas=2 * _quantity(base) + tip, maxPriorityFeePerGas=tip)
            pending = _quantity(self.ok(answers[3]))
        except (ValueError, TypeError) as exc:
            raise self.bad("answer to a fee, nonce or gas request", exc) from None
        with self._send_lock:
            # The node's pending count wins over ours when higher: another sender with this key took nonces.
            nonce = pending if self._nonce is None else max(self._nonce, pending)
            for attempt in range(2):
                tx["nonce"] = nonce
                raw = self.sign(tx)
                tx_hash = bytes(keccak(raw)).hex()
                try:
                    answer = self.batch([("eth_sendRawTransaction", [_hex0x(raw)])])[0]
                except BaseException:
                    self._nonce = None  # unknown whether the node took it: ask again next time
                    raise
                if isinstance(answer, _RpcError):
                    self._nonce = None
                    text = answer.message.lower()
                    if "already known" not in text:
                        if attempt == 0 and ("nonce" in text or "underpriced" in text):
                            nonce = _quantity(self.rpc("eth_getTransactionCount", address, "pending"))
                            continue
                        self.ok(answer)
                self._nonce = nonce + 1
                self._remember(tx_hash, raw)
                return "0x" + tx_hash
        raise AssertionError("unreachable")

    def sign(self, tx: Mapping[str, Any]) -> bytes:
        """The signed transaction: EIP-1559 (type 2) with ``maxFeePerGas``, else legacy with EIP-155 replay
        protection (``gasPrice``, for nodes without a base fee). Byte for byte what eth_account makes (signatures
        are deterministic, RFC 6979; tests compare the two), without its generic validation and serialisation,
        which cost more than the ECDSA itself."""
        assert self._key is not None
        to = bytes.fromhex(tx["to"][2:]) if tx.get("to") else b""
        data = bytes.fromhex(tx["data"][2:])
        chain_id = int(tx["chainId"])
        if "gasPrice" in tx:
            fields: list[Any] = [tx["nonce"], tx["gasPrice"], tx["gas"], to, tx["value"], data]
            signature = self._key.sign_msg_hash(keccak(rlp.encode([*fields, chain_id, 0, 0])))
            signed: bytes = rlp.encode([*fields, signature.v + 35 + 2 * chain_id, signature.r, signature.s])
            return signed
        fields = [chain_id, tx["nonce"], tx["maxPriorityFeePerGas"], tx["maxFeePerGas"], tx["gas"], to, tx["value"],
                  data, []]
        signature = self._key.sign_msg_hash(keccak(b"\x02" + rlp.encode(fields)))
        payload: bytes = rlp.encode([*fields, signature.v, signature.r, signature.s])
        return b"\x02" + payload

    def _remember(self, tx_hash: str, raw: bytes) -> None:
        """Called under the send lock; readers only ``get``."""
        self._sent[tx_hash] = raw
        while len(self._sent) > _SENT_REMEMBERED:
            del self._sent[next(iter(self._sent))]

    def wait_receipt(self, tx_hash: str) -> dict[str, Any]:
        """Blocking wait, for start-time deployments only; writes from users wait on the reactor instead."""
        deadline = time.monotonic() + self.options.receipt_timeout
        while True:
            receipt = self.receipt(tx_hash)
            if receipt is not None and self.head() - int(receipt["blockNumber"]) >= self.options.confirmations:
                return receipt
            if time.monotonic() > deadline:
                raise StubError("timeout", f"{self.where}: transaction {tx_hash} not confirmed within "
                                           f"{self.options.receipt_timeout} s")
            time.sleep(self.options.poll_interval)

    def replay(self, receipt: Any, data: bytes) -> bytes:
        """Run a mined transaction again as eth_call on its parent block's state: its output, or StubError('reverted').

        Exact when no earlier transaction of the same block touched the same state (always so on an automining dev
        node); otherwise the best a plain JSON-RPC node offers without tracing.
        """
        parent = max(0, int(receipt["blockNumber"]) - 1)
        return self.call(receipt["to"], data, parent)


def _header(block: Any, chain_id: int) -> BlockHeader:
    extras: dict[str, Any] = {
        "chain_id": chain_id,
        "gas_used": int(block["gasUsed"]),
        "miner": _hex(block.get("miner") or "0x" + "00" * 20),
    }
    encoded = _header_rlp(block)
    if encoded is not None:
        extras["rlp"] = encoded.hex()
    return BlockHeader(
        number=int(block["number"]),
        hash=_hex(block["hash"]),
        prev_hash=_hex(block["parentHash"]),
        tx_root=_hex(block["transactionsRoot"]),
        receipt_root=_hex(block["receiptsRoot"]),
        state_root=_hex(block["stateRoot"]),
        timestamp=float(block["timestamp"]),
        extras=extras,
    )


#: Header fields after the fifteen pre-London ones, in the order forks appended them.
_LATER_HEADER_FIELDS = ("baseFeePerGas", "withdrawalsRoot", "blobGasUsed", "excessBlobGas", "parentBeaconBlockRoot",
                        "requestsHash")


def _header_rlp(block: Any) -> bytes | None:
    """The RLP header whose keccak is the block hash, so a verifier can check every field against the hash.

    None when the node's hash is not keccak(RLP(header)) (chains with their own header format, e.g. FISCO BCOS).
    """
    try:
        fields: list[Any] = [
            bytes(block["parentHash"]), bytes(block["sha3Uncles"]), bytes.fromhex(_hex(block["miner"])),
            bytes(block["stateRoot"]), bytes(block["transactionsRoot"]), bytes(block["receiptsRoot"]),
            bytes(block["logsBloom"]), int(block["difficulty"]), int(block["number"]), int(block["gasLimit"]),
            int(block["gasUsed"]), int(block["timestamp"]), bytes(block["extraData"]), bytes(block["mixHash"]),
            bytes(block["nonce"]),
        ]
        for name in _LATER_HEADER_FIELDS:
            if block.get(name) is None:
                break
            value = block[name]
            fields.append(int(value) if isinstance(value, int) else bytes(value))
        encoded = rlp.encode(fields)
    except (KeyError, TypeError, ValueError):
        return None
    return encoded if keccak(encoded) == bytes(block["hash"]) else None


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


def _step_name(method: Any) -> str:
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
        name = _step_name(method)
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


# -- the stub and its resources --------------------------------------------------------------------------------
@implementer(IResource)
class EvmResource:
    """One contract on the chain; its methods are the contract's ABI functions (for the built-in kinds, those of
    :data:`PUBLIC_METHODS`: the rest are the transaction layer's, reached through the IResource hooks)."""

    def __init__(self, stub: EvmStub, spec: ResourceSpec) -> None:
        self._stub = stub
        self.spec = spec
        self.abi = spec.abi
        #: Set at start for resources the stub deploys.
        self.address: str | None = spec.address
        public = PUBLIC_METHODS.get(spec.kind)
        methods = {name: mode for name, mode in spec.abi.methods.items()
                   if public is None or _step_name(name) in public}
        self.info = ResourceInfo(name=spec.name, kind=spec.kind, methods=methods, description=spec.description)
        self.where = f"{stub.zone}.{stub.name}.{spec.name}"
        #: Whether the contract has the transaction layer's functions (known at start): a built-in resource given by
        #: the address of a contract deployed before them has not.
        self.tx_capable = False

    def _public(self, method: Any, mode: str) -> None:
        """Refuse the transaction layer's functions through call and sendTransaction, as if they were not there:
        they would skip the checks the hooks make (who may transfer what, which transaction is whose)."""
        public = PUBLIC_METHODS.get(self.spec.kind)
        if public is None:
            return
        allowed = public | EXTRA_READS[self.spec.kind] if mode == READ else public
        if _step_name(method) not in allowed:
            listing = ", ".join(f"{f.pretty()} ({f.mode})" for name in sorted(allowed)
                                for f in self.abi.functions.get(name, []))
            raise StubError("unknown_method", f"{self.where} has no method {method!r}; methods: {listing}")

    def _ready(self, sender: Any) -> str:
        self._stub.check_running()
        if not isinstance(sender, str):
            raise StubError("bad_args", "the sender must be a string")
        if self.address is None:
            raise StubError("unavailable", f"{self.where} has no contract address yet")
        return self.address

    def call(self, method: str, args: list[Any], sender: str) -> Deferred[Result]:
        """A read; for the built-in contracts' storage reads (kv ``get``, asset ``balanceOf``, ``totalSupply`` and
        ``htlcStatus``: see :data:`wecross.evm.checks.LAYOUT`) with a state proof, read at one fixed block."""
        try:
            address = self._ready(sender)
            self._public(method, READ)
            function = self.abi.lookup(self.where, method, args, READ)
            data, values = self.abi.encode(self.where, function, list(args))
        except StubError as exc:
            return defer.fail(exc)
        if self.spec.kind == "asset" and function.name == "htlcStatus" and not self.tx_capable:
            return defer.fail(StubError("unsupported", f"{self.where}: the contract at {address} predates the "
                                                       "transaction layer (it holds no HTLCs)"))
        plan = evm_checks.read_plan(self.spec.kind, function.name, values) if self.spec.kind != "contract" else None
        if plan is not None:
            return self._stub.in_pool(_in_context, self.where, function, self._proven_call, address, function, data,
                                      plan)
        return self._stub.in_pool(self._call, address, function, data)

    def _call(self, address: str, function: AbiFunction, data: bytes) -> Result:
        return Result(output=self._decoded(address, function,
                                           _in_context(self.where, function, self._stub.node.call, address, data)))

    def _decoded(self, address: str, function: AbiFunction, output: bytes) -> Any:
        try:
            return self.abi.decode_output(function, output)
        except DecodingError as exc:
            raise StubError("bad_response", f"{self.where}.{function.name} returned what its ABI does not describe "
                                            f"({exc}); is {address} the right contract?") from None

    def _proven_call(self, address: str, function: AbiFunction, data: bytes, plan: evm_checks.ReadPlan) -> Result:
        """The read at the head block, with the eth_getProof of the slots that hold its value and the block's
        header: what :func:`wecross.evm.checks.check_read` verifies.

        Two round trips (the head block; the proof and the eth_call together at that block), three when the value
        has strings of 32 bytes or more (their data slots, known once their length slots are read). The value
        rebuilt from the slots must be what the contract returns, else the contract does not have the built-in
        layout and the read fails rather than carry a proof of something else.
        """
        node = self._stub.node
        block = node.block("latest")
        if block is None:
            raise StubError("bad_response", f"{self.where}: node {node.options.rpc} has no latest block")
        number = int(block["number"])
        first = evm_checks.first_slots(plan)
        account, raw_output = node.state_proof(address, first, number, data)
        assert raw_output is not None
        output = self._htlc_output(address, function, raw_output) if plan.value_type == "htlc" else \
            self._decoded(address, function, raw_output)
        try:
            storage = self._proven_storage(account)
            more = evm_checks.more_slots(plan, storage)
        except evm_checks.TooLong:
            return Result(output=output, block_number=number)  # too long to prove: the verifier says no_proof
        except (KeyError, TypeError, ValueError) as exc:
            raise node.bad("eth_getProof result", exc) from None
        if more:
            account, _ = node.state_proof(address, [*first, *more], number)
            try:
                storage = self._proven_storage(account)
            except (KeyError, TypeError, ValueError) as exc:
                raise node.bad("eth_getProof result", exc) from None
        try:
            value = evm_checks.decode_value(plan, storage)
        except (KeyError, ValueError) as exc:
            raise node.bad("eth_getProof result", exc) from None
        if not evm_checks.output_is(value, output):
            raise StubError("bad_response", f"{self.where}.{function.name}: the contract at {address} returned "
                                            f"another value than its storage holds at the {self.spec.kind} contract's "
                                            f"slots; is it the built-in contract?")
        proof = {"kind": "state", "header": _header(block, node.chain_id).to_wire(), "account": account}
        return Result(output=output, block_number=number, proof=proof)

    @staticmethod
    def _proven_storage(account: Any) -> dict[int, int]:
        """The slot -> value map of an eth_getProof result (as the node sent it: the proof is checked elsewhere)."""
        return {_quantity(entry["key"]): _quantity(entry["value"]) for entry in account["storageProof"]}

    def send_transaction(self, method: str, args: list[Any], sender: str) -> Deferred[Result]:
        args = embedded_style(self.spec.kind, method, list(args), sender)
        try:
            address = self._ready(sender)
            self._public(method, WRITE)
            function = self.abi.lookup(self.where, method, args, WRITE)
            data, values = self.abi.encode(self.where, function, list(args))
            self._authorise(function, values, sender)
        except StubError as exc:
            return defer.fail(exc)
        return self._stub.transact(self, address, function, data)

    def _authorise(self, function: AbiFunction, values: list[Any], sender: str) -> None:
        """The asset rules the contract cannot know (its only signer is the router): see the module docstring."""
        if self.spec.kind != "asset":
            return
        if function.name == "transfer" and values[0] != sender:
            raise StubError("forbidden", f"{self.where}: {sender} may transfer only from its own account, "
                                         f"not from {values[0]!r}")
        if function.name == "mint":
            if self.spec.issuer is None:
                raise StubError("forbidden", f"{self.where}: this asset has no issuer, nobody may mint")
            if sender != self.spec.issuer:
                raise StubError("forbidden", f"{self.where}: only the issuer may mint, not {sender}")

    def get_data(self, key: str, sender: str) -> Deferred[Result]:
        if self.spec.kind == "kv":
            return self.call("get", [key], sender)
        if self.spec.kind == "asset":
            return self.call("balanceOf", [key], sender)
        return defer.fail(StubError("unsupported", f"resource {self.where} (contract) does not support getData; "
                                                   "use call"))

    def set_data(self, key: str, value: Any, sender: str) -> Deferred[Result]:
        if self.spec.kind != "kv":
            return defer.fail(StubError("unsupported", f"resource {self.where} ({self.spec.kind}) does not support "
                                                       "setData; use sendTransaction"))
        return self.send_transaction("set", [key, value], sender)

    def __repr__(self) -> str:
        return f"<EvmResource {self.where} ({self.spec.kind}) at {self.address}>"

    # -- the transaction layer (2PC and HTLC) --------------------------------------------------------------------
    # Every hook is one mined transaction of the built-in contract (see :func:`contract_call` for which), answered
    # with the Result, receipt and proof of a sendTransaction; the contract holds the locks, the tentative steps and
    # the HTLCs, so the chain is the durable record. Operations on one transaction (or HTLC) of one resource run one
    # after the other: a commit retried while the first is being mined reads the state the first left.
    def _tx_ready(self, op: str, method: str, args: list[Any], sender: Any) -> tuple[str, AbiFunction, bytes,
                                                                                     list[Any]]:
        """The address, function, calldata and checked arguments of a transaction-layer operation; StubError."""
        address = self._ready(sender)
        name, call_args = contract_call(self.spec.kind, op, method, args, sender)
        if not self.tx_capable:
            raise StubError("unsupported", f"{self.where}: the contract at {address} predates the transaction layer "
                                           f"(it has no {name} function); deploy the current "
                                           f"{BUILTIN_CONTRACTS[self.spec.kind]}")
        function = self.abi.lookup(self.where, name, call_args, WRITE)
        data, values = self.abi.encode(self.where, function, call_args)
        return address, function, data, values

    def _guarded(self, tx_id: str, work: Deferred[Result]) -> Deferred[Result]:
        """``work``, and after a failure that leaves its outcome unknown, the transaction's state read back into the
        stub's listing before the failure is passed on."""
        def failed(failure: Failure) -> Any:
            error = failure.value
            if not isinstance(error, StubError) or error.code not in _UNCERTAIN:
                return failure
            return self._stub.resync(self, tx_id, doubtful=True).addCallback(lambda _: failure)

        return work.addErrback(failed)

    def prepare(self, tx_id: str, method: str, args: list[Any], sender: str) -> Deferred[Result]:
        """One step of transaction ``tx_id`` (kv ``set``, asset ``transfer``), checked against the state as the
        transaction has changed it so far and recorded, with its locks, by the contract: durable once mined, which
        is before this answers. A key (account) another transaction holds: StubError('locked'), nothing changed."""
        try:
            address, function, data, values = self._tx_ready(OP_TX_PREPARE, method, [tx_id, list(args)], sender)
            if self.spec.kind == "asset" and values[1] != sender:
                raise StubError("forbidden", f"{self.where}: {sender} may transfer only from its own account, "
                                             f"not from {values[1]!r}")
        except StubError as exc:
            return defer.fail(exc)
        step = [to_wire(value) for value in values[1:]]

        def prepared(result: Result) -> Result:
            self._stub.note_step(self, tx_id, step, _block_time(result))
            return result

        def run() -> Deferred[Result]:
            return self._guarded(tx_id, self._stub.transact(self, address, function, data).addCallback(prepared))

        return self._stub.serially(("tx", self.spec.name, tx_id), run)

    def commit(self, tx_id: str) -> Deferred[Result]:
        """Apply every step of ``tx_id`` in one mined transaction and release its locks. Again on a committed
        transaction: that same transaction's Result (found by its TxCommitted log). StubError('unknown_tx') for a
        transaction never prepared here or rolled back."""
        return self._end(tx_id, OP_TX_COMMIT)

    def rollback(self, tx_id: str) -> Deferred[Result]:
        """Drop ``tx_id``'s steps and release its locks in one mined transaction. Again on a rolled-back
        transaction: that transaction's Result; on one never prepared here, a Result without a transaction
        (``known`` false). StubError('already_committed') for a committed one."""
        return self._end(tx_id, OP_TX_ROLLBACK)

    def _end(self, tx_id: str, op: str) -> Deferred[Result]:
        try:
            address, function, data, _ = self._tx_ready(op, "", [tx_id], "")
        except StubError as exc:
            return defer.fail(exc)
        committing = op == OP_TX_COMMIT
        event = "TxCommitted" if committing else "TxRolledBack"

        def output(steps: int) -> dict[str, Any]:
            # The steps' outputs, as the embedded chain's commit gives them: set and transfer return nothing.
            return {"committed": tx_id, "outputs": [None] * steps} if committing else \
                {"rolled_back": tx_id, "known": True}

        def ended(result: Result, steps: int) -> Result:
            self._stub.note_ended(self, tx_id, finished=True)
            return _with_output(result, output(steps))

        def decide(info: TxInfo) -> Any:
            if info.state == TX_PREPARED:
                return self._stub.transact(self, address, function, data).addCallback(ended, len(info.steps))
            if info.state == (TX_COMMITTED if committing else TX_ROLLED_BACK):
                self._stub.note_ended(self, tx_id, finished=True)
                found = self._stub.in_pool(self._stub.recorded, self, event, tx_id, info.done_block)
                return found.addCallback(lambda result: _with_output(result, output(self._applied(result))))
            self._stub.note_ended(self, tx_id, finished=info.state != TX_NONE)
            if committing:
                what = "was rolled back" if info.state == TX_ROLLED_BACK else "was never prepared here"
                raise StubError("unknown_tx", f"{self.where}: transaction {tx_id} {what}; there is nothing to commit")
            if info.state == TX_COMMITTED:
                raise StubError("already_committed", f"{self.where}: transaction {tx_id} is committed; it cannot be "
                                                     "rolled back")
            return Result(output={"rolled_back": tx_id, "known": False})

        def run() -> Deferred[Result]:
            return self._guarded(tx_id, self._stub.in_pool(self.tx_info, address, tx_id).addCallback(decide))

        return self._stub.serially(("tx", self.spec.name, tx_id), run)

    def _applied(self, result: Result) -> int:
        """How many steps a commit's Result applied: one Set (kv) or Transfer (asset) log each."""
        name = "Set" if self.spec.kind == "kv" else "Transfer"
        logs = result.receipt.get("logs", []) if result.receipt is not None else []
        return sum(1 for entry in logs if isinstance(entry, Mapping) and entry.get("name") == name)

    def tx_info(self, address: str, tx_id: str, block: int | str = "latest") -> TxInfo:
        """What the contract records of ``tx_id`` (blocking: runs on the pool)."""
        function = self.abi.functions["txInfo"][0]
        data, _ = self.abi.encode(self.where, function, [tx_id])
        raw = _in_context(self.where, function, self._stub.node.call, address, data, block)
        return TxInfo.decoded(self._decoded(address, function, raw))

    def lock(self, htlc_id: str, hash_lock: str, timelock: float, args: list[Any], sender: str) -> Deferred[Result]:
        """Move ``amount`` from the sender's account into escrow under HTLC ``htlc_id`` (args [receiver, amount]);
        the time lock is the chain's block time, in whole seconds (a fraction rounds up)."""
        try:
            address, function, data, values = self._tx_ready(
                OP_HTLC_LOCK, "", [htlc_id, hash_lock, timelock, list(args)], sender)
        except StubError as exc:
            return defer.fail(exc)
        _, owner, receiver, amount, lock_hash, lock_time = values
        record = {"state": "locked", "sender": owner, "receiver": receiver, "amount": to_wire(amount),
                  "hash_lock": bytes(lock_hash).hex(), "timelock": lock_time}
        return self._htlc(htlc_id, address, function, data, record)

    def unlock(self, htlc_id: str, secret: str, sender: str) -> Deferred[Result]:
        """Pay HTLC ``htlc_id``'s amount to its receiver: anyone who shows the secret may, before the time lock."""
        try:
            address, function, data, _ = self._tx_ready(OP_HTLC_UNLOCK, "", [htlc_id, secret], sender)
        except StubError as exc:
            return defer.fail(exc)
        return self._htlc(htlc_id, address, function, data, None)

    def timeout(self, htlc_id: str, sender: str) -> Deferred[Result]:
        """Return HTLC ``htlc_id``'s amount to its sender, from the time lock on (anyone may ask)."""
        try:
            address, function, data, _ = self._tx_ready(OP_HTLC_TIMEOUT, "", [htlc_id], sender)
        except StubError as exc:
            return defer.fail(exc)
        return self._htlc(htlc_id, address, function, data, None)

    def _htlc(self, htlc_id: str, address: str, function: AbiFunction, data: bytes,
              record: dict[str, Any] | None) -> Deferred[Result]:
        """The HTLC write; its output is the HTLC's record after it (as htlcStatus gives it): known beforehand for
        a lock, read at the write's block after an unlock or refund (final states: no later write changes them)."""
        status = self.abi.functions["htlcStatus"][0]
        query, _ = self.abi.encode(self.where, status, [htlc_id])

        def written(result: Result) -> Any:
            if record is not None:
                return _with_output(result, record)
            read = self._stub.in_pool(self._htlc_record, address, status, query, result.block_number or "latest")
            return read.addCallback(lambda found: _with_output(result, found))

        def run() -> Deferred[Result]:
            return self._stub.transact(self, address, function, data).addCallback(written)

        return self._stub.serially(("htlc", self.spec.name, htlc_id), run)

    def _htlc_record(self, address: str, function: AbiFunction, data: bytes,
                     block: int | str = "latest") -> dict[str, Any] | None:
        """``htlcStatus(id)`` at ``block``, unproven (the output of an HTLC write: the record after it)."""
        return self._htlc_output(address, function,
                                 _in_context(self.where, function, self._stub.node.call, address, data, block))

    def _htlc_output(self, address: str, function: AbiFunction, raw: bytes) -> dict[str, Any] | None:
        """``htlcStatus(id)``'s return data as the transaction layer reads it: {state, sender, receiver, amount,
        hash_lock, timelock, secret (once unlocked)}, or None for an id never locked here."""
        try:
            state, timelock, hash_lock, amount, sender, receiver, secret = self._decoded(address, function, raw)
        except (TypeError, ValueError):
            raise StubError("bad_response", f"{self.where}.htlcStatus returned what its ABI does not describe") \
                from None
        if state not in HTLC_STATES:
            return None
        status = {"state": HTLC_STATES[state], "sender": sender, "receiver": receiver, "amount": amount,
                  "hash_lock": _hex(hash_lock), "timelock": timelock}
        if HTLC_STATES[state] == "unlocked":
            status["secret"] = _hex(secret)
        return status


@dataclass(frozen=True, slots=True)
class TxInfo:
    """A transaction as a built-in contract records it (``txInfo``): state (TX_*), the block time of its first
    prepare, the block of its commit or rollback, and its steps' arguments while prepared."""

    state: int
    since: float
    done_block: int
    steps: list[list[Any]]

    @classmethod
    def decoded(cls, output: Any) -> TxInfo:
        try:
            state, since, done_block, steps = output
            return cls(int(state), float(since), int(done_block), [list(step) for step in steps])
        except (TypeError, ValueError):
            raise StubError("bad_response", "txInfo returned what its ABI does not describe") from None


def _with_output(result: Result, output: Any) -> Result:
    """A transaction-layer Result with its output (the contract functions return nothing) in it and its receipt."""
    receipt = None if result.receipt is None else {**result.receipt, "output": output}
    return replace(result, output=output, receipt=receipt)


def _block_time(result: Result) -> float:
    """The time of the block a Result's transaction is in (its proof's header), else now."""
    header = result.proof.get("header") if result.proof is not None else None
    stamp = header.get("timestamp") if isinstance(header, Mapping) else None
    return float(stamp) if isinstance(stamp, (int, float)) else time.time()


@implementer(IStub)
class EvmStub:
    """One EVM chain reached over JSON-RPC; ``data_dir`` keeps the addresses of contracts it deployed."""

    chain_type = CHAIN_TYPE

    def __init__(self, settings: StubSettings, data_dir: Path, *, reactor: Any = None) -> None:
        where = settings.checked_where()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._reactor: Any = reactor
        self.name = settings.name
        self.zone = settings.zone
        self.where = where
        self.data_dir = data_dir
        self.options = parse_options(where, settings.options)
        self._resources: dict[str, EvmResource] = {}
        for entry in settings.resources:
            spec = parse_resource(where, settings.zone, settings.name, entry, self.options)
            if spec.name in self._resources:
                raise ValueError(f"{where}: resource {spec.name!r} is configured twice")
            self._resources[spec.name] = EvmResource(self, spec)
        self.node = _Node(where, self.options)
        self._status = "new"
        self._pool: ThreadPool | None = None
        self._shutdown_trigger: Any = None
        self._jobs: set[Deferred[Any]] = set()
        self._sleeps: set[Deferred[None]] = set()
        #: One lock per transaction (HTLC) and resource with work in progress: see EvmResource's hooks.
        self._serial: dict[tuple[str, ...], DeferredLock] = {}
        #: (resource, tx id) -> listing entry of a transaction prepared there (see prepared_transactions).
        self._prepared: dict[tuple[str, str], dict[str, Any]] = {}
        #: (resource, tx id) -> until when a transaction whose prepare may still be mined is asked for (see resync).
        self._doubtful: dict[tuple[str, str], float] = {}
        self._doubts_asked = -math.inf

    # -- life cycle ----------------------------------------------------------------------------------------------
    @property
    def chain_id(self) -> int:
        """The node's chain id (known after start)."""
        return self.node.chain_id

    @property
    def signer(self) -> str | None:
        """The address of the router's signing key, if it has one (known after start)."""
        return None if self.node.account is None else str(self.node.account.address)

    def start(self) -> Deferred[None]:
        """Start the pool, check the node (and chain_id), load the key, deploy what needs deploying."""
        if self._status != "new":
            return defer.fail(StubError("internal", f"{self.where} was already started"))
        self._status = "starting"
        pool = ThreadPool(minthreads=0, maxthreads=self.options.threads, name=f"wecross-evm-{self.zone}.{self.name}")
        pool.start()
        self._pool = pool
        if IReactorCore.providedBy(self._reactor):
            self._shutdown_trigger = self._reactor.addSystemEventTrigger("during", "shutdown", pool.stop)

        def started(prepared: dict[tuple[str, str], dict[str, Any]]) -> None:
            if self._status != "starting":  # stopped meanwhile; stop() releases the pool
                return
            self._prepared = prepared
            self._status = "running"
            log.info("{stub}: chain id {chain_id}, genesis {genesis}, signer {signer}", stub=self.where,
                     chain_id=self.node.chain_id, genesis=self.node.genesis_hash[:16], signer=self.signer)

        def failed(failure: Failure) -> Any:
            if self._status != "starting":
                return failure
            self._status = "failed"
            return self._release().addCallback(lambda _: failure)

        return self._run(self._open).addCallbacks(started, failed)

    def _open(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The start's blocking part; returns the transactions the contracts hold prepared (for the listing)."""
        self.node.open()
        self._deploy_missing()
        for resource in self._resources.values():
            assert resource.address is not None
            code = self.node.code(resource.address)
            if not code:
                raise ValueError(f"{self.where}: resource {resource.spec.name!r}: no contract at "
                                 f"{resource.address} on chain id {self.node.chain_id}")
            if resource.spec.kind in BUILTIN_CONTRACTS:
                # solc's dispatcher compares the selector pushed by a PUSH4 (0x63): a contract deployed before the
                # transaction layer lacks commit(string), and its resource then refuses the hooks ('unsupported').
                resource.tx_capable = b"\x63" + resource.abi.functions["commit"][0].selector in code
        return self._load_prepared()

    def _load_prepared(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every prepared transaction of every built-in resource, read at one block: what a restarted stub lists."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        capable = [r for r in self._resources.values() if r.tx_capable]
        if not capable:
            return found
        block = self.node.head()
        for resource in capable:
            assert resource.address is not None
            function = resource.abi.functions["preparedTxs"][0]
            raw = _in_context(resource.where, function, self.node.call, resource.address, function.selector, block)
            ids = resource._decoded(resource.address, function, raw)
            if not ids:
                continue
            info = resource.abi.functions["txInfo"][0]
            answers = self.node.batch([
                ("eth_call", [self.node._call_request(resource.address, resource.abi.encode(resource.where, info,
                                                                                            [tx_id])[0]), hex(block)])
                for tx_id in ids])
            for tx_id, answer in zip(ids, answers, strict=True):
                recorded = TxInfo.decoded(resource._decoded(resource.address, info, _data(self.node.ok(answer))))
                if recorded.state == TX_PREPARED:
                    found[(resource.spec.name, tx_id)] = self._listing_entry(resource, tx_id, recorded)
        return found

    def _deploy_missing(self) -> None:
        """Deploy each resource without an address, or reuse what this stub deployed on this chain before.

        A deployment is remembered under the chain's genesis hash and the resource's name and init code, and reused
        only while the same runtime code is still at its address: a new dev chain, a renamed resource or a
        recompiled contract gets a fresh deployment.
        """
        missing = [r for r in self._resources.values() if r.address is None]
        if not missing:
            return
        path = self.data_dir / DEPLOYMENTS_FILE
        try:
            known = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError):
            known = {}
        if not isinstance(known, dict) or not isinstance(known.get(self.node.genesis_hash, {}), dict):
            known = {}
        here = known.setdefault(self.node.genesis_hash, {})
        for resource in missing:
            assert resource.spec.abi.bytecode is not None
            key = f"{resource.spec.name}/{keccak(hexstr=resource.spec.abi.bytecode).hex()[:16]}"
            entry = here.get(key)
            if isinstance(entry, dict) and isinstance(entry.get("address"), str) \
                    and is_hex_address(entry["address"]) \
                    and keccak(self.node.code(entry["address"])).hex() == entry.get("code_hash"):
                resource.address = to_checksum_address(entry["address"])
                continue
            resource.address = self._deploy(resource)
            here[key] = {"address": resource.address, "code_hash": keccak(self.node.code(resource.address)).hex()}
            self.data_dir.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
            temporary.replace(path)

    def _deploy(self, resource: EvmResource) -> str:
        spec = resource.spec
        assert spec.abi.bytecode is not None
        receipt = self.node.wait_receipt(self.node.submit(None, bytes.fromhex(spec.abi.bytecode[2:])))
        if receipt["status"] != 1 or not receipt.get("contractAddress"):
            raise StubError("reverted", f"{self.where}: deploying resource {spec.name!r} failed")
        address = to_checksum_address(receipt["contractAddress"])
        method = "set" if spec.kind == "kv" else "mint"
        for key, value in spec.initial.items():
            function = spec.abi.lookup(resource.where, method, [key, value], WRITE)
            data, _ = spec.abi.encode(resource.where, function, [key, value])
            done = self.node.wait_receipt(self.node.submit(address, data))
            if done["status"] != 1:
                raise StubError("reverted", f"{self.where}: {spec.name}.{method}({key!r}, {value!r}) at deploy failed")
        log.info("{stub}: deployed {resource} ({kind}) at {address}", stub=self.where, resource=spec.name,
                 kind=spec.kind, address=address)
        return address

    def stop(self) -> Deferred[None]:
        """Refuse new work, wake receipt waits (they answer 'shutting_down'), let RPCs in flight end, stop the pool."""
        if self._status in ("new", "stopped", "failed"):
            self._status = "stopped"
            return defer.succeed(None)
        self._status = "stopped"
        for sleep in list(self._sleeps):
            sleep.cancel()
        in_flight = defer.DeferredList(list(self._jobs), consumeErrors=True)
        return in_flight.addCallback(lambda _: self._release())

    def _release(self) -> Deferred[None]:
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()  # idle by now: every job has answered
        self.node.close()
        return defer.succeed(None)

    def check_running(self) -> None:
        if self._status != "running":
            code = "shutting_down" if self._status == "stopped" else "unavailable"
            raise StubError(code, f"{self.where} is not running ({self._status})")

    def in_pool(self, fn: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """Run blocking web3 work on the pool; node failures become StubErrors a caller can act on."""
        try:
            self.check_running()
        except StubError as exc:
            return defer.fail(exc)
        return self._run(fn, *args)

    def _run(self, fn: Callable[..., _T], *args: Any) -> Deferred[_T]:
        if self._pool is None:
            return defer.fail(StubError("unavailable", f"{self.where} is not running"))
        job: Deferred[_T] = deferToThreadPool(self._reactor, self._pool, fn, *args)
        self._jobs.add(job)

        def done(result: Any) -> Any:
            self._jobs.discard(job)
            if isinstance(result, Failure):
                return self._translate(result)
            return result

        return job.addBoth(done)

    def _translate(self, failure: Failure) -> Failure:
        """Node failures as StubErrors (raised: an errback that raises passes the new failure on)."""
        error = failure.value
        if isinstance(error, requests.RequestException):
            raise StubError("unavailable", f"{self.where}: node {self.options.rpc} did not answer: {error}")
        if isinstance(error, ContractLogicError):
            raise StubError("reverted", _revert_reason(error))
        if isinstance(error, Web3Exception) and not isinstance(error, StubError):
            raise StubError("rpc_error", f"{self.where}: node {self.options.rpc}: {error}")
        return failure

    def _sleep(self, seconds: float) -> Deferred[None]:
        sleep: Deferred[None] = deferLater(self._reactor, seconds, lambda: None)
        self._sleeps.add(sleep)

        def woke(result: Any) -> Any:
            self._sleeps.discard(sleep)
            if isinstance(result, Failure) and isinstance(result.value, CancelledError):
                raise StubError("shutting_down", f"{self.where} stopped while a write waited for its receipt; "
                                                 "it may still be mined")
            return result

        return sleep.addBoth(woke)

    # -- writes --------------------------------------------------------------------------------------------------
    def transact(self, resource: EvmResource, address: str, function: AbiFunction, data: bytes) -> Deferred[Result]:
        """Sign and send; on an automining node the Result is built in the same pool job (receipt, block and
        receipts fetched in one round trip after the send), else the receipt (and confirmations) is awaited from
        the reactor and the Result built after.

        Round trips per write on an automining node: three (fees/nonce/gas, send, receipt with its block).
        """
        sent = self.in_pool(self._send, resource, address, function, data)

        def then(outcome: Result | str) -> Any:
            if isinstance(outcome, Result):
                return outcome
            waited = self._await_receipt(outcome)
            waited.addCallback(lambda receipt: self.in_pool(self._finish, resource, function, data, receipt, None))
            return waited

        return sent.addCallback(then)

    def _send(self, resource: EvmResource, address: str, function: AbiFunction, data: bytes) -> Result | str:
        tx_hash = _in_context(resource.where, function, self.node.submit, address, data)
        if self.options.confirmations or not self.node.mines_at_once:
            return tx_hash
        found = self.node.receipt_in_latest(tx_hash)
        if found is None:
            self.node.mines_at_once = False  # poll from the reactor, this time and from now on
            return tx_hash
        receipt, fetched = found
        return self._finish(resource, function, data, receipt, fetched)

    @defer.inlineCallbacks
    def _await_receipt(self, tx_hash: str) -> Any:
        """Poll until the receipt is there (and confirmed). The first waits are short and double up to
        ``poll_interval``: an automining node includes a transaction a moment after its send returns, and a write
        that just missed it should not wait a whole interval; a real chain costs four more polls per write."""
        deadline = self._reactor.seconds() + self.options.receipt_timeout
        delay = self.options.poll_interval / 16
        first = True
        while True:
            found = yield self.in_pool(self.node.receipt_and_head, tx_hash)
            if found is not None:
                receipt, head = found
                if first:
                    self.node.mines_at_once = True
                if head - int(receipt["blockNumber"]) >= self.options.confirmations:
                    return receipt
            if self._reactor.seconds() >= deadline:
                waited = "confirmed" if found is not None else "included in a block"
                raise StubError("timeout", f"{self.where}: transaction {_hex(tx_hash)} was not {waited} within "
                                           f"{self.options.receipt_timeout:g} s; it may still be mined")
            first = False
            yield self._sleep(delay)
            delay = min(2 * delay, self.options.poll_interval)

    def _finish(self, resource: EvmResource, function: AbiFunction, data: bytes, receipt: Any,
                fetched: tuple[Any, list[Any]] | None) -> Result:
        tx_hash = _hex(receipt["transactionHash"])
        number = int(receipt["blockNumber"])
        if int(receipt["status"]) != 1:
            raise _reverted(resource.where, function.name, self._mined_revert_reason(receipt, data, number),
                            f" (transaction {tx_hash} reverted in block {number})")
        output = None
        if function.outputs:
            try:
                output = resource.abi.decode_output(function, self.node.replay(receipt, data))
            except (StubError, DecodingError):
                output = None
        return Result(output=output, tx_hash=tx_hash, block_number=number,
                      receipt=self._receipt_wire(receipt, output), proof=self._proof(receipt, fetched))

    def _mined_revert_reason(self, receipt: Any, data: bytes, number: int) -> str:
        """Why a mined transaction reverted, by replaying it: on its parent block's state (exact when it is its
        block's first transaction that touches the state it reads), else on its own block's, where what an earlier
        transaction of the block did is seen (a lock another transaction took just before)."""
        try:
            self.node.replay(receipt, data)
        except StubError as exc:
            return exc.message
        try:
            self.node.call(receipt["to"], data, number)
        except StubError as exc:
            return exc.message
        return "reverted on chain (a replay did not; state changed in between)"

    def _proof(self, receipt: Any, fetched: tuple[Any, list[Any]] | None = None) -> dict[str, Any]:
        """Merkle-Patricia proofs that the transaction and its receipt are in their block, and the block's header
        (with its RLP where the node hashes headers the Ethereum way), for the entry router to check.

        Built from every transaction and receipt of the block: the tries are the block's, recomputed here; if they
        do not give the header's roots the node is lying or the encoding is wrong, and no proof is better than a
        false one. ``fetched`` is the block and its receipts when the caller has them already; raw transactions
        this stub sent are not fetched back.
        """
        number = int(receipt["blockNumber"])
        block, receipts = fetched if fetched is not None else self.node.block_and_receipts(number)
        raw_txs = self.node.raw_transactions(list(block["transactions"]))
        header = _header(block, self.node.chain_id)
        txs = mpt.IndexedTrie(raw_txs)
        rcpts = mpt.IndexedTrie([mpt.encode_receipt(r) for r in receipts])
        if txs.root.hex() != header.tx_root or rcpts.root.hex() != header.receipt_root:
            raise StubError("bad_response", f"{self.where}: block {number}'s transactions or receipts do not give "
                                            f"the header's roots; no proof can be made")
        index = int(receipt["transactionIndex"])
        if index >= len(raw_txs) or bytes(keccak(raw_txs[index])).hex() != _hex(receipt["transactionHash"]):
            raise StubError("bad_response", f"{self.where}: block {number} does not hold transaction "
                                            f"{_hex(receipt['transactionHash'])} at index {index} (reorg?)")
        return {"kind": "mpt", "tx": txs.prove(index), "receipt": rcpts.prove(index), "header": header.to_wire()}

    def _receipt_wire(self, receipt: Any, output: Any) -> dict[str, Any]:
        index = int(receipt["transactionIndex"])
        return {
            "status": "ok",
            "output": output,
            "tx_hash": _hex(receipt["transactionHash"]),
            "block_number": int(receipt["blockNumber"]),
            "block_hash": _hex(receipt["blockHash"]),
            "index": index,
            "transaction_index": index,
            "gas_used": int(receipt["gasUsed"]),
            "from": to_checksum_address(receipt["from"]),
            "to": to_checksum_address(receipt["to"]) if receipt.get("to") else None,
            "logs": [self._decode_log(entry) for entry in receipt["logs"]],
        }

    def _decode_log(self, entry: Any) -> dict[str, Any]:
        address = to_checksum_address(entry["address"])
        for resource in self._resources.values():
            if resource.address == address:
                decoded = resource.abi.decode_log(entry)
                decoded["resource"] = resource.spec.name
                return decoded
        return ContractAbi({}, {}, {}).decode_log(entry)

    # -- the transaction layer ----------------------------------------------------------------------------------
    def prepared_transactions(self) -> list[dict[str, Any]]:
        """The transactions prepared on this chain's built-in resources, oldest first, one entry per transaction and
        resource: {tx_id, resource, steps: [{method, args, sender, output}], locks: [``key:<key>`` or
        ``balance:<account>``], since}. ``since`` is the
        block time of the transaction's first prepare there (the chain's clock, unix seconds).

        The contracts are the record: the stub reads their prepared transactions at start (a restarted stub lists
        what it prepared before), then follows its own prepares, commits and rollbacks; an operation whose outcome
        it could not learn (a receipt that timed out) has the transaction's state read back from its contract.
        """
        self._ask_doubtful()
        entries = sorted(self._prepared.values(), key=lambda entry: (entry["since"], entry["tx_id"]))
        return [{**entry, "steps": [{**step, "args": list(step["args"])} for step in entry["steps"]],
                 "locks": list(entry["locks"])} for entry in entries]

    @staticmethod
    def _listing_entry(resource: EvmResource, tx_id: str, info: TxInfo) -> dict[str, Any]:
        entry: dict[str, Any] = {"tx_id": tx_id, "resource": resource.spec.name, "steps": [], "locks": [],
                                 "since": info.since}
        for step in info.steps:
            EvmStub._add_step(resource, entry, step)
        return entry

    @staticmethod
    def _add_step(resource: EvmResource, entry: dict[str, Any], step: list[Any]) -> None:
        """A step as the embedded chain lists one: {method, args, sender, output}. The contract records no sender
        for a kv step (None); an asset transfer's is its ``from``. Locks: ``key:<key>``, ``balance:<account>``."""
        kind = resource.spec.kind
        entry["steps"].append({"method": TX_STEP_METHODS[kind][0], "args": list(step),
                               "sender": step[0] if kind == "asset" else None, "output": None})
        for name in step[:1] if kind == "kv" else step[:2]:
            lock = f"{_LOCK_NAMES[kind]}:{name}"
            if lock not in entry["locks"]:
                entry["locks"].append(lock)

    def note_step(self, resource: EvmResource, tx_id: str, step: list[Any], since: float) -> None:
        """A prepare of ``tx_id`` was mined (``since``: its block's time, used if it is the transaction's first)."""
        key = (resource.spec.name, tx_id)
        entry = self._prepared.get(key)
        if entry is None:
            entry = self._prepared[key] = {"tx_id": tx_id, "resource": resource.spec.name, "steps": [], "locks": [],
                                           "since": since}
        self._add_step(resource, entry, step)

    def note_ended(self, resource: EvmResource, tx_id: str, *, finished: bool = False) -> None:
        """``tx_id`` is not prepared on ``resource`` (``finished``: it is committed or rolled back, so no longer in
        doubt either)."""
        self._prepared.pop((resource.spec.name, tx_id), None)
        if finished:
            self._doubtful.pop((resource.spec.name, tx_id), None)

    def resync(self, resource: EvmResource, tx_id: str, *, doubtful: bool = False) -> Deferred[None]:
        """Read ``tx_id``'s state on ``resource`` back from its contract into the listing (called in the
        transaction's turn: see :meth:`serially`). Never fails: if the node cannot say either, the listing stays as
        it was.

        ``doubtful``: after an operation whose outcome is unknown, its transaction may still be mined (a prepare
        whose receipt timed out, a commit). The transaction then stays in doubt, read again by
        :meth:`prepared_transactions`, until it has ended or ``receipt_timeout`` has passed twice."""
        address = resource.address
        assert address is not None
        key = (resource.spec.name, tx_id)
        if doubtful:
            self._doubtful.setdefault(key, self._reactor.seconds() + 2 * self.options.receipt_timeout)

        def learnt(info: TxInfo) -> None:
            if info.state == TX_PREPARED:
                self._prepared[key] = self._listing_entry(resource, tx_id, info)
            else:
                self.note_ended(resource, tx_id)
            if info.state in (TX_COMMITTED, TX_ROLLED_BACK) or self._doubtful.get(key, 0) <= self._reactor.seconds():
                self._doubtful.pop(key, None)

        def failed(failure: Failure) -> None:
            log.warn("{resource}: could not read transaction {tx} back: {error}", resource=resource.where, tx=tx_id,
                     error=failure.getErrorMessage())

        return self._run(resource.tx_info, address, tx_id).addCallbacks(learnt, failed)

    def _ask_doubtful(self) -> None:
        """Read the transactions in doubt back (at most every DOUBT_INTERVAL seconds), each in its turn."""
        now = self._reactor.seconds()
        if not self._doubtful or now < self._doubts_asked + DOUBT_INTERVAL or self._status != "running":
            return
        self._doubts_asked = now
        for name, tx_id in list(self._doubtful):
            resource = self._resources.get(name)
            if resource is None:
                continue
            self.serially(("tx", name, tx_id), functools.partial(self.resync, resource, tx_id))

    def serially(self, key: tuple[str, ...], work: Callable[[], Deferred[_T]]) -> Deferred[_T]:
        """``work()`` once the work queued before under ``key`` has answered (see EvmResource's hooks)."""
        lock = self._serial.get(key)
        if lock is None:
            lock = self._serial[key] = DeferredLock()

        def forget(result: Any) -> Any:
            if not lock.locked and not lock.waiting and self._serial.get(key) is lock:
                del self._serial[key]
            return result

        done: Deferred[_T] = lock.run(work)
        return done.addBoth(forget)

    def recorded(self, resource: EvmResource, event: str, tx_id: str, block: int) -> Result:
        """The Result of the transaction that ended ``tx_id`` in ``block``, found again by its ``event`` log (whose
        first topic after the signature is keccak(tx_id)): what a repeated commit or rollback answers."""
        assert resource.address is not None
        topic = next(e.topic for e in resource.abi.events.values() if e.name == event)
        logs = self.node.rpc("eth_getLogs", {"address": resource.address, "fromBlock": hex(block),
                                             "toBlock": hex(block),
                                             "topics": [_hex0x(topic), _hex0x(keccak(tx_id.encode("utf-8")))]})
        if not isinstance(logs, list) or not logs or not isinstance(logs[0], Mapping):
            raise StubError("bad_response", f"{resource.where}: transaction {tx_id} ended in block {block}, but the "
                                            f"node has no {event} log of it there (reorg?)")
        receipt = self.node.receipt(str(logs[0].get("transactionHash")))
        if receipt is None:
            raise StubError("bad_response", f"{resource.where}: the node has no receipt of the transaction that ended "
                                            f"{tx_id} in block {block}")
        return Result(output=None, tx_hash=_hex(receipt["transactionHash"]), block_number=int(receipt["blockNumber"]),
                      receipt=self._receipt_wire(receipt, None), proof=self._proof(receipt))

    # -- IStub reads ---------------------------------------------------------------------------------------------
    def chain_state(self) -> Deferred[ChainState]:
        return self.in_pool(self._chain_state)

    def _chain_state(self) -> ChainState:
        head = self.node.block("latest")
        if head is None:
            raise StubError("bad_response", f"{self.where}: node {self.options.rpc} has no latest block")
        return ChainState(CHAIN_TYPE, int(head["number"]), _hex(head["hash"]), self.node.genesis_hash)

    def header(self, number: int) -> Deferred[BlockHeader]:
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            return defer.fail(StubError("no_such_block", f"{self.where} has no block {number!r}"))
        return self.in_pool(self._header, number)

    def _header(self, number: int) -> BlockHeader:
        block = self.node.block(number)
        if block is None:
            raise StubError("no_such_block", f"{self.where} has no block {number}; height is {self.node.head()}")
        return _header(block, self.node.chain_id)

    def headers(self, start: int, count: int) -> Deferred[list[BlockHeader]]:
        """Headers ``start`` .. ``start + count - 1`` in one JSON-RPC batch (beyond IStub: :meth:`header` costs one
        request each); the run stops at the node's head, so fewer may come back, never none for a block it has."""
        if any(isinstance(n, bool) or not isinstance(n, int) for n in (start, count)) or start < 0 or count < 1:
            return defer.fail(StubError("bad_args", f"headers needs a block number >= 0 and a count >= 1, not "
                                                    f"{start!r}, {count!r}"))
        return self.in_pool(self._headers, start, min(count, LOG_CHUNK))

    def _headers(self, start: int, count: int) -> list[BlockHeader]:
        answers = self.node.batch([("eth_getBlockByNumber", [hex(n), False]) for n in range(start, start + count)])
        found: list[BlockHeader] = []
        for answer in answers:
            raw = self.node.ok(answer)
            if raw is None:
                break
            try:
                found.append(_header(_block_from_json(raw), self.node.chain_id))
            except (ValueError, TypeError) as exc:
                raise self.node.bad("block", exc) from None
        if not found:
            raise StubError("no_such_block", f"{self.where} has no block {start}; height is {self.node.head()}")
        return found

    def resources(self) -> list[IResource]:
        return [cast(IResource, resource) for resource in self._resources.values()]

    def resource(self, name: str) -> IResource | None:
        return cast(IResource | None, self._resources.get(name))

    # -- beyond IStub --------------------------------------------------------------------------------------------
    def events(self, resource: str, from_block: int, *, proofs: bool = True) -> Deferred[list[dict[str, Any]]]:
        """Decoded logs of ``resource``'s contract from ``from_block`` to the head (a long poll serves them).

        Each is {name, args, address, resource, block_number, block_hash, tx_hash, transaction_index, log_index,
        proof}; name is None, with raw ``topics`` and ``data``, for a log the ABI does not describe, and an event of
        a generic ``contract`` resource carries its raw ``topics`` and ``data`` always (an entry router has no ABI
        to check its decoding with). ``proof`` (unless ``proofs`` is false) is {"kind": "mpt", "header": the
        block's header (wire form, with its RLP), "receipt": the Merkle-Patricia proof of the transaction's receipt
        under the receipts root, "tx": that of the raw transaction under the transactions root, "log_position": the
        log's index in the receipt's logs}: see :func:`wecross.evm.checks.check_event`. An event whose block
        the stub cannot prove (a node whose tries do not give its header's roots, a block reorganised meanwhile)
        comes without a proof.

        Round trips: the head, the logs (one per :data:`LOG_BATCH` chunks of :data:`LOG_CHUNK` blocks), and per
        :data:`PROOF_BATCH` blocks that have events, their blocks with their receipts and, for transactions other
        routers sent, the raw transactions.
        """
        found = self._resources.get(resource)
        if found is None:
            return defer.fail(StubError("unknown_resource", f"{self.where} has no resource {resource!r}; resources: "
                                                            f"{', '.join(self._resources)}"))
        if isinstance(from_block, bool) or not isinstance(from_block, int) or from_block < 0:
            return defer.fail(StubError("bad_args", f"from_block must be a non-negative integer, not {from_block!r}"))
        return self.in_pool(self._events, found, from_block, proofs)

    def _events(self, resource: EvmResource, from_block: int, proofs: bool = True) -> list[dict[str, Any]]:
        assert resource.address is not None
        head = self.node.head()
        if from_block > head:
            return []
        entries = self.node.logs(resource.address, from_block, head)
        found: list[dict[str, Any]] = []
        for entry in entries:
            decoded = resource.abi.decode_log(entry)
            decoded["resource"] = resource.spec.name
            if resource.spec.kind == "contract" and "topics" not in decoded:
                decoded["topics"] = [_hex0x(topic) for topic in entry.get("topics", [])]
                decoded["data"] = _hex0x(entry.get("data", b""))
            found.append(decoded)
        if proofs and entries:
            self._prove_events(entries, found)
        return found

    def _prove_events(self, entries: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        """Add its ``proof`` to each event (``events[i]`` decoded from ``entries[i]``) whose block can be proven."""
        blocks = self.node.proof_blocks(sorted({int(entry["blockNumber"]) for entry in entries}))
        tries: dict[int, tuple[BlockHeader, mpt.IndexedTrie, mpt.IndexedTrie, list[dict[str, Any]]] | None] = {}
        for number, (block, receipts, raw_txs) in blocks.items():
            header = _header(block, self.node.chain_id)
            try:
                txs = mpt.IndexedTrie(raw_txs)
                rcpts = mpt.IndexedTrie([mpt.encode_receipt(receipt) for receipt in receipts])
            except mpt.ProofError:
                tries[number] = None
                continue
            same = txs.root.hex() == header.tx_root and rcpts.root.hex() == header.receipt_root
            tries[number] = (header, txs, rcpts, receipts) if same else None
        for entry, event in zip(entries, events, strict=True):
            built = tries.get(int(entry["blockNumber"]))
            if built is None:
                continue
            header, txs, rcpts, receipts = built
            index = int(entry["transactionIndex"])
            if header.hash != _hex(entry["blockHash"]) or index >= len(receipts) \
                    or _hex(receipts[index]["transactionHash"]) != _hex(entry["transactionHash"]):
                continue  # the block changed since the logs were read (a reorg): no proof rather than a wrong one
            positions = [position for position, log_entry in enumerate(receipts[index]["logs"])
                         if log_entry.get("logIndex") == entry.get("logIndex")]
            if len(positions) != 1:
                continue
            event["proof"] = {"kind": "mpt", "header": header.to_wire(), "receipt": rcpts.prove(index),
                              "tx": txs.prove(index), "log_position": positions[0]}

    def receipt(self, tx_hash: str) -> Deferred[Result | None]:
        """The Result of an included transaction (logs decoded, output None), or None: answers a retried write."""
        if not isinstance(tx_hash, str) or not re.match(r"^(0x)?[0-9a-fA-F]{64}$", tx_hash):
            return defer.fail(StubError("bad_args", f"not a transaction hash: {tx_hash!r}"))
        return self.in_pool(self._stored_receipt, "0x" + _hex(tx_hash))

    def _stored_receipt(self, tx_hash: str) -> Result | None:
        receipt = self.node.receipt(tx_hash)
        if receipt is None:
            return None
        wire = self._receipt_wire(receipt, None)
        if int(receipt["status"]) != 1:
            wire["status"] = "reverted"
        return Result(output=None, tx_hash=wire["tx_hash"], block_number=wire["block_number"], receipt=wire)

    def __repr__(self) -> str:
        return f"<EvmStub {self.zone}.{self.name} {self.options.rpc}>"
