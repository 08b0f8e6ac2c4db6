"""The REST API as an OpenAPI 3.0 document, served at ``GET /openapi.json``.

Written here by hand, next to the code it describes, and kept true by a test that points schemathesis at a live
router (tests/test_openapi.py): every documented operation is called with generated requests, valid and invalid,
and every answer must be one the document allows and never a server error.
"""

from __future__ import annotations

import copy
from typing import Any

import wecross

_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}
_JSON: dict[str, Any] = {}  # any JSON value


def _ok(data: dict[str, Any] | None = None, description: str = "success") -> dict[str, Any]:
    schema = {"type": "object", "required": ["ok", "data"], "properties": {
        "ok": {"type": "boolean", "enum": [True]}, "data": data if data is not None else _JSON}}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {"description": "an error: a stable code, a message, and details", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}}


def _responses(data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"200": _ok(data), "default": _ERROR}


def _path_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _header(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": schema, "description": description}


#: A client holding its certificate's key signs the operation (wecross.rest.identity): all three or none.
_SIGNATURE_HEADERS = [
    _header("WeCross-Nonce", {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "signed operation: 16 random bytes as 32 lowercase hex characters, new for every request"),
    _header("WeCross-Expires", {"type": "string", "pattern": "^[0-9]{1,19}$"},
            "signed operation: when the signature expires, milliseconds since the epoch (the client's clock); "
            "refused when more than the router's clock_skew past, or more than request_deadline + clock_skew "
            "ahead"),
    _header("WeCross-Signature", {"type": "string", "pattern": "^[A-Za-z0-9+/]+={0,2}$", "maxLength": 1368},
            "signed operation: standard base64 of the signature (ECDSA P-256 SHA-256 DER, or RSA-PSS) by the "
            "TLS client certificate's key over wecross.attest.client_body (sender, iPath, op, method, args, "
            "nonce, expiry); needs HTTPS with that client certificate. Malformed or incomplete headers: 400; a "
            "signature that does not hold, has expired or comes without a client certificate: 401"),
]


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_RESOURCE_PARAMS = [_path_param("zone", _NAME, "the zone"), _path_param("chain", _NAME, "the chain"),
                    _path_param("resource", _NAME, "the resource")]
_TX_ID = _path_param("id", {"type": "string", "minLength": 1, "maxLength": 200}, "transaction or exchange id")

_METHOD_BODY = {"type": "object", "required": ["method"], "additionalProperties": False, "properties": {
    "method": {"type": "string", "minLength": 1}, "args": {"type": "array"}}}
_OPERATION_BODIES = {
    "call": _METHOD_BODY,
    "sendTransaction": _METHOD_BODY,
    "getData": {"type": "object", "required": ["key"], "additionalProperties": False,
                "properties": {"key": {"type": "string"}}},
    "setData": {"type": "object", "required": ["key", "value"], "additionalProperties": False,
                "properties": {"key": {"type": "string"}, "value": _JSON}},
}

#: A user as certificates name it, and a chain path: what /admin/accounts takes (wecross.governance.keystore).
_USER = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"}
_CHAIN_PATH = {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$"}
#: One account as /admin/accounts answers it: these four fields, never a key.
_ACCOUNT = {"type": "object", "required": ["user", "chain", "address", "created"], "additionalProperties": False,
            "properties": {"user": {"type": "string"}, "chain": {"type": "string"}, "address": {"type": "string"},
                           "created": {"type": "number"}}}


def _get(summary: str, parameters: list[dict[str, Any]] | None = None,
         data: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": _responses(data)}
    if parameters:
        op["parameters"] = parameters
    return {"get": op}


def _post(summary: str, body: dict[str, Any] | None, parameters: list[dict[str, Any]] | None = None,
          body_required: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": _responses()}
    if body is not None:
        op["requestBody"] = _body(body, body_required)
    if parameters:
        op["parameters"] = parameters
    return {"post": op}


def document(example: str | None = None) -> dict[str, Any]:
    """A fresh copy of the OpenAPI document; ``example`` (an iPath this router serves) fills the examples of the
    zone, chain and resource parameters, so that tools trying the API reach a real resource."""
    paths: dict[str, Any] = {
        "/": _get("this router's index of endpoints"),
        "/status": _get("router id, zones, version, uptime, chains, counters", data={"type": "object"}),
        "/peers": _get("known peers and link metrics", data={"type": "array"}),
        "/routes": _get("routing table: next hop, path and cost per chain and router", data={"type": "object"}),
        "/resources": _get("resources reachable from this router, optionally filtered",
                           [_query("zone", _NAME, "only this zone"), _query("chain", _NAME, "only this chain")],
                           data={"type": "array"}),
        "/chains": _get("chains served here, trusted header chains, verification counters",
                        data={"type": "object"}),
        "/chains/{zone}/{chain}/headers/{n}": _get(
            "block header n: served here, or trusted (linked to the pinned checkpoint) by this router",
            [_path_param("zone", _NAME, "the zone"), _path_param("chain", _NAME, "the chain"),
             _path_param("n", {"type": "integer", "minimum": 0, "maximum": 10 ** 17}, "block number")],
            data={"type": "object"}),
        "/{zone}/{chain}/{resource}/events": _get(
            "a resource's events from a block on (each with its proof when it crossed routers); waits up to "
            "`wait` seconds for the first (long poll)",
            [*_RESOURCE_PARAMS, _query("from_block", {"type": "integer", "minimum": 0, "maximum": 10 ** 17},
                                       "first block to scan"),
             _query("wait", {"type": "number", "minimum": 0, "maximum": 60}, "seconds to wait for events")],
            data={"type": "object"}),
        "/tx": _get("2PC transactions coordinated here, newest first", [
            _query("state", {"type": "string", "enum": ["started", "committing", "committed", "rolling_back",
                                                        "rolled_back"]}, "only this state"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "at most this many")],
            data={"type": "object"}),
        "/tx/start": _post("start a 2PC transaction coordinated by this router", {
            "type": "object", "properties": {
                "resources": {"type": "array", "items": {"type": "string"},
                              "description": "iPaths that may take part (empty: any)"},
                "timeout": {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                            "description": "seconds before an uncommitted transaction is rolled back"}}}),
        "/tx/adopt": _post("take over a transaction from its record and finish it", {"type": "object"}),
        "/tx/{id}": _get("a transaction's record: state, steps, outcomes", [_TX_ID], data={"type": "object"}),
        "/tx/{id}/exec": _post("run one step inside the transaction", {
            "type": "object", "required": ["path", "method"], "properties": {
                "path": {"type": "string", "description": "zone.chain.resource"},
                "method": {"type": "string"}, "args": {"type": "array"}}}, [_TX_ID]),
        "/tx/{id}/commit": _post("log the commit decision and carry it out", {"type": "object"}, [_TX_ID],
                                 body_required=False),
        "/tx/{id}/rollback": _post("roll the transaction back everywhere", {
            "type": "object", "properties": {"reason": {"type": "string"}}}, [_TX_ID], body_required=False),
        "/htlc": _get("hash time-locked exchanges this router takes part in, newest first", [
            _query("state", {"type": "string", "enum": ["locking", "locked", "claimed", "refunded", "done",
                                                        "failed"]}, "only this state"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "at most this many")],
            data={"type": "object"}),
        "/htlc/start": _post("lock our side of an exchange (initiator, or participant after verifying the "
                             "initiator's lock)", {"type": "object", "required": ["own", "other"], "properties": {
                                 "role": {"type": "string", "enum": ["initiator", "participant"]},
                                 "own": {"type": "object"}, "other": {"type": "object"},
                                 "timelock": {"type": "number"}, "margin": {"type": "number"},
                                 "htlc_id": {"type": "string"}, "hash_lock": {"type": "string"}}}),
        "/htlc/{id}": _get("an exchange's state on both chains", [_TX_ID], data={"type": "object"}),
        "/htlc/{id}/unlock": _post("reveal the secret and claim the other lock now", {"type": "object"}, [_TX_ID],
                                   body_required=False),
        "/htlc/{id}/refund": _post("reclaim our lock after its time lock", {"type": "object"}, [_TX_ID],
                                   body_required=False),
        "/whoami": _get("the caller as this router's permissions see it (no permission needed)", data={
            "type": "object", "required": ["name", "org", "roles", "proven"], "properties": {
                "name": {"type": "string"}, "org": {"type": "string", "nullable": True},
                "roles": {"type": "array", "items": {"type": "string", "enum": ["admin", "auditor", "user"]}},
                "proven": {"type": "string", "enum": ["client", "entry", "tls", "none"]}}}),
        "/audit": _get("records of this router's hash-chained audit trail, oldest first, and its head (interface "
                       "audit.read; 404 when the router keeps no trail)", [
            _query("initiator", {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"},
                   "only this user's requests"),
            _query("ipath", {"type": "string", "maxLength": 200}, "an iPath or a prefix of one (payment.bank-a), "
                                                                   "or a pattern with * (*.*.asset)"),
            _query("interface", {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_.]{0,63}$"},
                   "only this interface or operation (call, sendTransaction, admin.peers...)"),
            _query("outcome", {"type": "string", "pattern": r"^[a-z][a-z0-9_]{0,63}$"},
                   "only this outcome: ok or an error code"),
            _query("since", {"type": "number", "minimum": 0}, "from this time on (seconds since the epoch)"),
            _query("until", {"type": "number", "minimum": 0}, "before this time (seconds since the epoch)"),
            _query("after", {"type": "integer", "minimum": 0, "maximum": 10 ** 17},
                   "records after this seq (the last seq of the previous page)"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most this many (default 100)")],
            data={"type": "object", "required": ["records", "head"], "properties": {
                "records": {"type": "array", "items": {"type": "object"}},
                "head": {"type": "object", "required": ["seq", "hash"], "properties": {
                    "seq": {"type": "integer"}, "hash": {"type": "string"}}}}}),
        "/admin/peers": _post("dial a new peer now and keep redialling it (interface admin.peers); idempotent", {
            "type": "object", "required": ["address"], "additionalProperties": False, "properties": {
                "address": {"type": "string", "description": "host:port of the peer's p2p listener"},
                "id": {"type": "string", "description": "the router id its certificate must name"}}}),
        "/admin/peers/{id}": {"delete": {
            "summary": "stop dialling a peer (router id or host:port) and close its links (interface admin.peers); "
                       "idempotent", "responses": _responses(),
            "parameters": [_path_param("id", {"type": "string", "minLength": 1, "maxLength": 300},
                                       "router id, or host:port")]}},
        "/admin/accounts": {
            **_get("users' chain accounts in this router's keystore, by user then chain: user, chain, address, "
                   "created, never a key (interface admin.accounts; 404 when the router keeps no keystore)", [
                       _query("user", _USER, "only this user's accounts"),
                       _query("chain", _CHAIN_PATH, "only accounts on this chain (zone.chain)")],
                   data={"type": "object", "required": ["accounts"], "properties": {
                       "accounts": {"type": "array", "items": _ACCOUNT}}}),
            **_post("create a user's account on a chain (a new key, sealed at rest), or answer the existing one; "
                    "idempotent (interface admin.accounts)", {
                        "type": "object", "required": ["user", "chain"], "additionalProperties": False,
                        "properties": {"user": _USER, "chain": _CHAIN_PATH}})},
        "/admin/accounts/{user}/{chain_path}": {"delete": {
            "summary": "forget a user's account on a chain, its sealed key included; 404 when it has none "
                       "(interface admin.accounts)", "responses": _responses(_ACCOUNT),
            "parameters": [_path_param("user", _USER, "the user (a client certificate's name)"),
                           _path_param("chain_path", _CHAIN_PATH, "the chain, zone.chain")]}},
        "/openapi.json": _get("this document"),
        "/ui/": {"get": {"summary": "the web page of the network (HTML; its script and style are served next to "
                                    "it)", "responses": {
            "200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}},
            "default": _ERROR}}},
        "/metrics": {"get": {"summary": "Prometheus metrics of this router (text exposition format)", "responses": {
            "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
            "default": _ERROR}}},
    }
    for op, body in _OPERATION_BODIES.items():
        paths[f"/{{zone}}/{{chain}}/{{resource}}/{op}"] = _post(
            f"{op} on a resource, here or on the router that serves its chain; results that crossed routers "
            "carry `verified`; signed by the client when it sends the WeCross-* headers", body,
            [*_RESOURCE_PARAMS, _query("proof", {"type": "string", "enum": ["0", "1", "true", "false"]},
                                       "1: include the proof this router verified (left out by default)"),
             *_SIGNATURE_HEADERS])
    result = copy.deepcopy({
        "openapi": "3.0.3",
        "info": {"title": "WeCross-Py router REST API", "version": wecross.__version__,
                 "description": "Every answer is an envelope: {ok: true, data} or {ok: false, error: {code, "
                                "message, details?}} with the HTTP status of the code. The client's identity is "
                                "its TLS certificate's common name when the router asks for one."},
        "paths": paths,
        "components": {"schemas": {"ErrorEnvelope": {
            "type": "object", "required": ["ok", "error"], "properties": {
                "ok": {"type": "boolean", "enum": [False]},
                "error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"},
                    "details": {"type": "object"}}}}}}},
    })
    if example is not None:
        parts = dict(zip(("zone", "chain", "resource"), example.split("."), strict=True))
        for item in result["paths"].values():
            for operation in item.values():
                for param in operation.get("parameters", []):
                    if param["in"] == "path" and param["name"] in parts:
                        param["example"] = parts[param["name"]]
    return result
