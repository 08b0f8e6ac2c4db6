"""Contract ABIs: JSON arguments checked and encoded for a function, outputs and logs decoded back to wire values.

Arguments arrive as JSON values and are checked against the contract's ABI here, before anything is sent, so a
malformed request fails with ``bad_args`` naming the argument. Values leave as wire values: addresses as EIP-55
strings, bytes as ``0x`` hex, tuples and arrays as lists, and integers outside the 64-bit range msgpack can carry
as decimal strings (integer arguments may be given as decimal or ``0x`` strings for the same reason).

Needs eth_abi and eth_utils, not web3: the entry router's checks of EVM proofs (wecross.evm.checks) decode the
built-in contracts' calldata and logs with :func:`builtin_abi` without importing the stub.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError, EncodingError
from eth_utils.abi import event_signature_to_log_topic, function_signature_to_4byte_selector
from eth_utils.address import is_checksum_address, to_checksum_address

from wecross.stub.interfaces import (
    StubError,
)

READ = "read"


WRITE = "write"


#: Compiled built-in contracts (``make contracts`` writes them; see contracts/build.py).
ARTIFACT_DIR = Path(__file__).resolve().parent / "contracts" / "build"


#: Resource kind -> built-in contract.
BUILTIN_CONTRACTS = {"kv": "HelloWeCross", "asset": "AssetLedger"}


#: Integers msgpack carries; outputs outside become decimal strings.
WIRE_INT_MIN, WIRE_INT_MAX = -(2**63), 2**64 - 1


_ARRAY = re.compile(r"^(.*)\[(\d*)\]$")


_INT = re.compile(r"^(u?)int(\d*)$")


_BYTES_N = re.compile(r"^bytes(\d+)$")


HEX_DATA = re.compile(r"^0x([0-9a-fA-F]{2})*$")


_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


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
    elif isinstance(value, str) and HEX_DATA.match(value):
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
            return check_address(value)
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


def check_address(value: Any) -> str:
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


def hex_str(value: Any) -> str:
    """Hashes and roots for the abstract model: lowercase hex without 0x."""
    if isinstance(value, str):
        return value[2:].lower() if value.startswith(("0x", "0X")) else value.lower()
    return bytes(value).hex()


def hex0x(value: Any) -> str:
    return "0x" + hex_str(value)


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
        if bytecode is not None and (not isinstance(bytecode, str) or not HEX_DATA.match(bytecode)
                                     or len(bytecode) < 4):
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
            "block_hash": hex_str(log_entry["blockHash"]) if log_entry.get("blockHash") else None,
            "tx_hash": hex_str(log_entry["transactionHash"]) if log_entry.get("transactionHash") else None,
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
            decoded["topics"] = [hex0x(t) for t in topics]
            decoded["data"] = hex0x(data)
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
            values[param["name"]] = hex0x(topic) if dynamic else \
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
