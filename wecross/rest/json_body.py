"""JSON in and out of the REST API, with no I/O so every rule can be tested on its own.

The REST layer accepts only a narrow, predictable dialect of JSON and answers in one envelope, so that clients in any
language can rely on it:

* request bodies are UTF-8 JSON objects with a fixed field list per operation; anything else is refused with a code
  (``bad_json``, ``bad_request``, ``unsupported_media_type``) and a message naming the offending field;
* answers are ``{"ok": true, "data": ...}`` or ``{"ok": false, "error": {...}}``; the wire values that JSON cannot
  carry are mapped in a documented way (bytes -> ``"0x"`` + hex, NaN and infinities -> ``null``).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from wecross.errors import RouterError
from wecross.stub.interfaces import OP_CALL, OP_GET_DATA, OP_SEND_TRANSACTION, OP_SET_DATA, OPERATIONS

#: Deeper results are refused rather than risking the interpreter's recursion limit on a hostile or buggy value.
MAX_RESULT_DEPTH = 128

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"

#: Fields each operation accepts in its body: name -> (required, expected JSON type or None for any value).
_FIELDS: dict[str, dict[str, tuple[bool, str | None]]] = {
    OP_CALL: {"method": (True, "string"), "args": (False, "array")},
    OP_SEND_TRANSACTION: {"method": (True, "string"), "args": (False, "array")},
    OP_GET_DATA: {"key": (True, "string")},
    OP_SET_DATA: {"key": (True, "string"), "value": (True, None)},
}
_METHOD_OPS = frozenset({OP_CALL, OP_SEND_TRANSACTION})


def json_type_name(value: object) -> str:
    """The JSON name of a parsed value's type, so messages speak the client's language rather than Python's."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# --- request side ---------------------------------------------------------------------------------------------------


def check_content_type(header: bytes | None) -> None:
    """Refuse a body that says it is something other than UTF-8 JSON.

    A missing header is accepted (curl and many scripts omit it); a present one must be ``application/json`` or an
    ``application/*+json`` type, with no charset or a UTF-8 one, because the body is decoded as UTF-8 regardless.
    """
    if header is None:
        return
    text = header.decode("latin-1")
    media, *params = (part.strip() for part in text.split(";"))
    media = media.lower()
    is_json = media == "application/json" or (media.startswith("application/") and media.endswith("+json"))
    if not is_json:
        hint = ""
        if media == "application/x-www-form-urlencoded":
            hint = " (curl -d sends this type by default: use --json, or -H 'Content-Type: application/json')"
        raise RouterError(
            "unsupported_media_type",
            f"request body must be JSON (Content-Type: application/json), got {media or 'an empty type'!r}{hint}",
            {"expected": "application/json"},
        )
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise RouterError(
                "unsupported_media_type",
                f"request body must be UTF-8 encoded, got charset {value.strip()!r}",
                {"expected": "application/json; charset=utf-8"},
            )


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise.
    raise ValueError(f"{name} is not valid JSON")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A duplicated key means two different readings of the same body; refuse instead of silently keeping the last.
    # dict() builds the object at C speed; only a size mismatch (a rare, refused body) pays for finding the key.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


#: Built once: json.loads with hooks would construct a new decoder for every request body.
_DECODER = json.JSONDecoder(object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)


#: Deepest nesting of arrays and objects a body may have. Checked here rather than left to the interpreter's
#: recursion limit, which any library may raise for the whole process (py_ecc, which web3 imports, sets 100,000:
#: a body of 100,000 brackets then overflowed the C stack of the JSON decoder and killed the router).
MAX_JSON_DEPTH = 256
_JSON_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKETS = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False  # the common case: not even that many brackets in all
    depth = 0
    for bracket in _JSON_BRACKETS.findall(_JSON_STRINGS.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            return True
    return False


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Decode a request body that must be one JSON object; raise RouterError bad_json / bad_request otherwise."""
    if not body or body.isspace():
        raise RouterError("bad_json", "request body is empty; expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RouterError("bad_json", f"request body is not valid UTF-8 (byte {exc.start})") from None
    if _too_deep(text):
        raise RouterError("bad_json", f"request body is nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    try:
        if text.startswith("\ufeff"):  # json.loads words this refusal itself; the shared decoder would not
            value = json.loads(text, object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)
        else:
            value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise RouterError(
            "bad_json",
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            {"line": exc.lineno, "column": exc.colno},
        ) from None
    except RecursionError:
        raise RouterError("bad_json", "request body is nested too deeply") from None
    except ValueError as exc:  # duplicate keys, NaN/Infinity, integers with too many digits
        raise RouterError("bad_json", f"request body is not acceptable JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RouterError("bad_request", f"request body must be a JSON object, got {json_type_name(value)}")
    if _SURROGATE_ESCAPE.search(text) is not None:
        _refuse_lone_surrogates(value, 0)
    return value


#: A \uD800-\uDFFF escape: the only way a lone surrogate gets into a parsed body (raw UTF-8 cannot encode one, and
#: the decoder joins an escaped pair into one character). Only a body that has one pays for the walk below.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _refuse_lone_surrogates(value: Any, depth: int) -> None:
    """Refuse a string (value or key) holding a lone surrogate: no chain can store it and the wire cannot carry it,
    so it would otherwise fail deep inside (a block write, a frame encoding) instead of here, with a clear error."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise RouterError("bad_json", f"request body holds a lone surrogate (\\u{ord(value[exc.start]):04x}"
                                              f" escape) in a string: not valid Unicode text") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_lone_surrogates(key, depth + 1)
            _refuse_lone_surrogates(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _refuse_lone_surrogates(item, depth + 1)


def parse_operation_body(op: str, body: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """Check an operation's body and return ``(method, args)`` in the Invocation's normalised form.

    getData becomes ``("getData", [key])`` and setData ``("setData", [key, value])``: the operation name stands in
    for the method so logs and permission checks always have a non-empty method to show.
    """
    if op in _METHOD_OPS:
        # The shape nearly every call has, accepted without the general checks below (which would accept it too).
        method = body.get("method")
        if type(method) is str and method:
            size = len(body)
            if size == 1:
                return method, []
            args = body.get("args")
            if size == 2 and type(args) is list:
                return method, list(args)
    if op not in _FIELDS:
        raise RouterError("not_found", f"unknown operation {op!r}", {"operations": list(OPERATIONS)})
    fields = _FIELDS[op]
    if "sender" in body:
        raise RouterError(
            "bad_request",
            "field 'sender' is not accepted: the sender is the identity of the client's TLS certificate",
            {"field": "sender"},
        )
    unknown = sorted(set(body) - set(fields))
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise RouterError(
            "bad_request",
            f"unknown field{'s' if len(unknown) > 1 else ''} {names} for {op}; allowed: {', '.join(fields)}",
            {"unknown": unknown, "allowed": list(fields)},
        )
    for name, (required, expected) in fields.items():
        if name not in body:
            if required:
                wanted = f" ({expected})" if expected else ""
                raise RouterError("bad_request", f"missing field {name!r}{wanted} for {op}", {"field": name})
            continue
        actual = json_type_name(body[name])
        if expected is not None and actual != expected:
            raise RouterError(
                "bad_request",
                f"field {name!r} must be a{'n' if expected[0] in 'aeiou' else ''} {expected}, got {actual}",
                {"field": name, "expected": expected, "got": actual},
            )
    if op in (OP_CALL, OP_SEND_TRANSACTION):
        method = body["method"]
        if not method:
            raise RouterError("bad_request", "field 'method' must not be empty", {"field": "method"})
        return method, list(body.get("args", []))
    if op == OP_GET_DATA:
        return op, [body["key"]]
    return op, [body["key"], body["value"]]


# --- response side --------------------------------------------------------------------------------------------------


def _json_key(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes | bytearray | memoryview):
        return "0x" + bytes(key).hex()
    if isinstance(key, bool) or key is None:
        return json.dumps(key)
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        return json.dumps(key) if math.isfinite(key) else "null"
    raise TypeError(f"cannot use a {type(key).__name__} as a JSON object key")


def to_json_value(value: object, _depth: int = 0) -> Any:
    """Map a wire value onto what strict JSON can carry.

    bytes become ``"0x"`` + lowercase hex (the same spelling as hashes elsewhere in the API, so a client can tell them
    from ordinary strings by prefix only by convention: the API documents which fields hold bytes). NaN and the
    infinities become ``null``: strict parsers (browsers, Go, Java) reject the ``NaN`` token Python would write.
    Tuples become arrays. Anything else is a programming error upstream and raises TypeError.
    """
    if _depth > MAX_RESULT_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_RESULT_DEPTH} levels")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {_json_key(k): to_json_value(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [to_json_value(item, _depth + 1) for item in value]
    raise TypeError(f"cannot render a {type(value).__name__} as JSON")


def _dump(envelope: dict[str, Any]) -> bytes:
    # ASCII output: lone surrogates in a str (possible from a buggy stub) still give valid JSON text.
    return json.dumps(envelope, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii") + b"\n"


def _bytes_default(value: object) -> str:
    # The one mapping the C encoder can be asked for; anything else it cannot encode goes back to the full walk.
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex()
    raise TypeError(f"cannot render a {type(value).__name__} as JSON")


#: The same output settings as _dump, built once, with bytes mapped as to_json_value maps them. No circular check:
#: success_body only hands it values _plain has bounded in depth, and a cycle never is.
_FAST_ENCODER = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, check_circular=False, separators=(",", ":"), default=_bytes_default
)


def _c_encoder() -> Any:
    """The C encoder behind _FAST_ENCODER, made once: JSONEncoder.encode would make a new one for every answer.

    Without a circular-reference memo it keeps no state between calls. None where the C accelerator is missing or
    takes other arguments; success_body then uses _FAST_ENCODER itself.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encoder = make(None, _bytes_default, encode_basestring_ascii, None, ":", ",", False, False, False)
        probe = "".join(encoder({"a": [1, b"\x01"]}, 0))
    except Exception:  # pragma: no cover - another interpreter's private signature
        return None
    return encoder if probe == '{"a":[1,"0x01"]}' else None


_C_ENCODE: Any = _c_encoder()


def _plain(value: dict[Any, Any] | list[Any] | tuple[Any, ...], depth: int) -> bool:
    """Whether the C encoder alone renders this container exactly as to_json_value + json.dumps would.

    Only containers are visited. It fails on what the encoder would render differently rather than refuse: a dict
    key that is not a str (``{1: ..., "1": ...}`` would give a duplicated key where the walk keeps one, and an int
    subclass with its own __str__ is spelt differently as a key), nesting past MAX_RESULT_DEPTH (the encoder only
    stops near the interpreter's recursion limit), and, to be safe rather than clever, any subclass of dict, list or
    tuple (whose own methods could show this check other keys than the encoder's ``items()`` call sees). Values the
    encoder refuses (NaN, unknown types) need no check here: the refusal itself sends them to the walk.
    """
    items: Any = value
    if type(value) is dict:
        try:
            "".join(value)  # succeeds exactly when every key is a str, at C speed
        except TypeError:
            return False
        items = value.values()
    depth += 1  # the depth of the items
    if depth > MAX_RESULT_DEPTH:
        return not value
    for item in items:
        if isinstance(item, _CONTAINERS) and (type(item) not in _CONTAINERS or not _plain(item, depth)):
            return False
    return True


_CONTAINERS = (dict, list, tuple)


def success_body(data: object) -> bytes:
    """The success envelope; raises TypeError/ValueError when ``data`` holds something JSON cannot carry.

    Most results are plain str-keyed dicts, lists, strings, numbers and bytes, which the C encoder renders as they
    are (bytes through its default hook): the Python walk of to_json_value is paid only when the encoder refuses the
    value (a NaN or an infinity, an unknown type, a bytes key) or :func:`_plain` finds something it would render
    differently. Both ways give the same bytes.
    """
    if not isinstance(data, _CONTAINERS) or (type(data) in _CONTAINERS and _plain(data, 0)):
        envelope = {"ok": True, "data": data}
        try:
            text = "".join(_C_ENCODE(envelope, 0)) if _C_ENCODE is not None else _FAST_ENCODER.encode(envelope)
        except (TypeError, ValueError, RecursionError):
            pass
        else:
            return text.encode("ascii") + b"\n"
    return _dump({"ok": True, "data": to_json_value(data)})


def error_body(error: RouterError) -> bytes:
    """The error envelope; details that cannot be rendered are dropped rather than turning an error into a 500."""
    wire: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details:
        with contextlib.suppress(TypeError, ValueError):
            wire["details"] = to_json_value(error.details)
    return _dump({"ok": False, "error": wire})
