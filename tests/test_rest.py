"""Tests for the REST API (wecross.rest).

Three levels: the JSON rules on their own, the resource driven with DummyRequest against a fake RouterFacade, and
the whole Site fed raw HTTP (through a StringTransport, then over real sockets on 127.0.0.1, with and without TLS).
"""

from __future__ import annotations

import collections
import datetime
import email.utils
import enum
import ipaddress
import json
import types
import zlib
from io import BytesIO
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL.crypto import X509
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import Certificate, CertificateOptions, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http import datetimeToString
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.resource import EncodingResourceWrapper
from twisted.web.server import NOT_DONE_YET, GzipEncoderFactory, Site
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from wecross.errors import HTTP_STATUS, RouterError
from wecross.facade import Invocation
from wecross.ipath import IPath
from wecross.rest import api as rest_api
from wecross.rest import identity as rest_identity
from wecross.rest import make_site
from wecross.rest.api import RestApi, RestRequest, RestSite, client_identity, new_counters
from wecross.rest.json_body import (
    MAX_RESULT_DEPTH,
    check_content_type,
    error_body,
    parse_json_object,
    parse_operation_body,
    success_body,
    to_json_value,
)
from wecross.stub.interfaces import OPERATIONS, StubError

# --- fakes ----------------------------------------------------------------------------------------------------------


class FakeRouter:
    """A RouterFacade whose answers each test sets; records every invocation."""

    def __init__(self) -> None:
        self.invocations: list[Invocation] = []
        self.status_value: Any = {"router": "r1", "zones": ["payment"], "version": "0.1.0"}
        self.peers_value: Any = [{"id": "r2", "state": "up", "srtt_ms": 1.5}]
        self.routes_value: Any = {"router_id": "r1", "rebuilds": 3, "changes": 1, "routes": [
            {"kind": "chain", "chain": "payment.bank-b", "replicas": ["r2"], "reachable": True,
             "destination": "r2", "next_hop": "r2", "path": ["r1", "r2"], "hops": 1, "cost": 9.4}]}
        self.resources_value: Any = [
            {"ipath": "payment.bank-a.asset", "kind": "asset", "local": True, "routers": ["r1"]},
            {"ipath": "payment.bank-b.asset", "kind": "asset", "local": False, "routers": ["r2"]},
            {"ipath": "trade.ledger.kv", "kind": "kv", "local": False, "routers": ["r3"]},
        ]
        self.result: Any = None  # None: echo the invocation
        self.error: BaseException | None = None
        self.raise_sync: BaseException | None = None
        self.hold = False
        self.held: list[tuple[Invocation, Deferred[dict[str, Any]]]] = []
        self.cancelled: list[Invocation] = []
        self.arrivals: list[Deferred[Invocation]] = []

    def status(self) -> dict[str, Any]:
        if isinstance(self.status_value, BaseException):
            raise self.status_value
        return self.status_value  # type: ignore[no-any-return]

    def peers(self) -> list[dict[str, Any]]:
        return self.peers_value  # type: ignore[no-any-return]

    def resources(self) -> list[dict[str, Any]]:
        return self.resources_value  # type: ignore[no-any-return]

    def routes(self) -> dict[str, Any]:
        return self.routes_value  # type: ignore[no-any-return]

    def next_arrival(self) -> Deferred[Invocation]:
        d: Deferred[Invocation] = Deferred()
        self.arrivals.append(d)
        return d

    def invoke(self, invocation: Invocation) -> Deferred[dict[str, Any]]:
        self.invocations.append(invocation)
        try:
            return self._answer(invocation)
        finally:
            # Waiters run after the invocation is fully recorded, so they see it among ``held``.
            arrivals, self.arrivals = self.arrivals, []
            for waiter in arrivals:
                waiter.callback(invocation)

    def _answer(self, invocation: Invocation) -> Deferred[dict[str, Any]]:
        if self.raise_sync is not None:
            raise self.raise_sync
        if self.hold:

            def cancel(d: Deferred[dict[str, Any]]) -> None:
                self.cancelled.append(invocation)

            held: Deferred[dict[str, Any]] = Deferred(cancel)
            self.held.append((invocation, held))
            return held
        if self.error is not None:
            return fail(self.error)
        if self.result is not None:
            return succeed(self.result)
        return succeed(echo(invocation))


def echo(invocation: Invocation) -> dict[str, Any]:
    return {
        "output": {"path": str(invocation.path), "op": invocation.op, "method": invocation.method,
                   "args": invocation.args, "sender": invocation.sender},
        "router": "r1",
        "path": ["r1"],
    }


class Req(DummyRequest):
    """DummyRequest with a body, a URI split as twisted.web's Site splits it, and a way to drop the connection."""

    def __init__(self, method: bytes, uri: str, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        path, _, query = uri.partition("?")
        super().__init__([unquote_to_bytes(s) for s in path.encode()[1:].split(b"/")])
        self.method = method
        self.uri = uri.encode()
        self.content = BytesIO(body)
        self.args = parse_qs(query.encode(), keep_blank_values=True) if query else {}
        for name, value in (headers or {}).items():
            self.requestHeaders.addRawHeader(name, value)
        self._disconnected = False

    def lose(self) -> None:
        self._disconnected = True
        observers, self._finishedDeferreds = self._finishedDeferreds, None
        for d in observers or []:
            d.errback(Failure(ConnectionDone("client went away")))


def render(api: RestApi, request: Req) -> None:
    assert api.render(request) is NOT_DONE_YET


def answer(request: Req) -> tuple[int, dict[str, Any]]:
    assert request.finished == 1, "request not finished"
    body = b"".join(request.written)
    return request.responseCode, json.loads(body)


def header(request: Req, name: bytes) -> bytes | None:
    values = request.responseHeaders.getRawHeaders(name)
    return values[0] if values else None


# --- the JSON rules on their own ------------------------------------------------------------------------------------


class JsonBodyTests(SynchronousTestCase):
    def test_bytes_rendered_as_0x_hex(self) -> None:
        self.assertEqual(to_json_value(b"\x00\xffA"), "0x00ff41")
        self.assertEqual(to_json_value(bytearray(b"\x01")), "0x01")
        self.assertEqual(to_json_value({"k": [b"\xab", (b"", 1)]}), {"k": ["0xab", ["0x", 1]]})
        self.assertEqual(to_json_value({b"\x01": 1}), {"0x01": 1})

    def test_non_finite_floats_become_null(self) -> None:
        body = json.loads(success_body({"a": float("nan"), "b": float("inf"), "c": -float("inf"), "d": 1.5}))
        self.assertEqual(body, {"ok": True, "data": {"a": None, "b": None, "c": None, "d": 1.5}})

    def test_non_str_keys(self) -> None:
        self.assertEqual(to_json_value({2: "a", None: "b", True: "c"}), {"2": "a", "null": "b", "true": "c"})

    def test_unrenderable_value_raises(self) -> None:
        self.assertRaises(TypeError, to_json_value, object())
        deep: Any = []
        for _ in range(500):
            deep = [deep]
        self.assertRaises(ValueError, to_json_value, deep)

    def test_error_body_shape(self) -> None:
        body = json.loads(error_body(RouterError("timeout", "too slow", {"after": 3})))
        self.assertEqual(body, {"ok": False, "error": {"code": "timeout", "message": "too slow",
                                                        "details": {"after": 3}}})
        self.assertNotIn("details", json.loads(error_body(RouterError("timeout", "too slow")))["error"])

    def test_deep_nesting_is_refused_whatever_the_recursion_limit(self) -> None:
        """web3's py_ecc raises the recursion limit to 100,000 for the whole process; a body of 100,000 brackets
        then overflowed the JSON decoder's C stack (a segfault). The depth is checked before decoding."""
        import sys

        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(100_000)
        self.addCleanup(sys.setrecursionlimit, limit)
        for body in (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}"):
            with self.assertRaises(RouterError) as ctx:
                parse_json_object(body)
            self.assertEqual(ctx.exception.code, "bad_json")
            self.assertIn("nested too deeply", ctx.exception.message)
        # brackets inside strings do not count
        self.assertEqual(parse_json_object(b'{"a": "' + b"[" * 1000 + b'"}'), {"a": "[" * 1000})

    def test_parse_json_object_errors(self) -> None:
        cases = {
            b"": "bad_json",
            b"   ": "bad_json",
            b"{": "bad_json",
            b"\xff\xfe": "bad_json",
            b'{"a": NaN}': "bad_json",
            b'{"a": Infinity}': "bad_json",
            b'{"a": 1, "a": 2}': "bad_json",
            b"[" * 100000 + b"]" * 100000: "bad_json",
            b"[1, 2]": "bad_request",
            b'"text"': "bad_request",
            b"null": "bad_request",
        }
        for body, code in cases.items():
            with self.assertRaises(RouterError) as ctx:
                parse_json_object(body)
            self.assertEqual(ctx.exception.code, code, body[:20])

    def test_bad_json_names_position(self) -> None:
        with self.assertRaises(RouterError) as ctx:
            parse_json_object(b'{"method": }')
        self.assertIn("line 1 column 12", ctx.exception.message)

    def test_content_type(self) -> None:
        for ok in (None, b"application/json", b"Application/JSON; charset=UTF-8", b"application/vnd.wecross+json",
                   b'application/json; charset="utf-8"'):
            check_content_type(ok)
        for bad in (b"text/plain", b"application/x-www-form-urlencoded", b"", b"application/json; charset=latin-1"):
            with self.assertRaises(RouterError) as ctx:
                check_content_type(bad)
            self.assertEqual(ctx.exception.code, "unsupported_media_type")
            self.assertEqual(ctx.exception.http_status, 415)

    def test_operation_bodies(self) -> None:
        self.assertEqual(parse_operation_body("call", {"method": "balance", "args": [1]}), ("balance", [1]))
        self.assertEqual(parse_operation_body("sendTransaction", {"method": "pay"}), ("pay", []))
        self.assertEqual(parse_operation_body("getData", {"key": "k"}), ("getData", ["k"]))
        self.assertEqual(parse_operation_body("setData", {"key": "k", "value": None}), ("setData", ["k", None]))

    def test_operation_body_errors_name_the_field(self) -> None:
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("call", {}, "missing field 'method' (string)"),
            ("call", {"method": 3}, "field 'method' must be a string, got number"),
            ("call", {"method": "m", "args": {}}, "field 'args' must be an array, got object"),
            ("call", {"method": "m", "args": None}, "field 'args' must be an array, got null"),
            ("call", {"method": ""}, "field 'method' must not be empty"),
            ("getData", {"key": True}, "field 'key' must be a string, got boolean"),
            ("setData", {"key": "k"}, "missing field 'value'"),
            ("call", {"method": "m", "x": 1, "y": 2}, "unknown fields 'x', 'y' for call; allowed: method, args"),
            ("getData", {"key": "k", "value": 1}, "unknown field 'value' for getData; allowed: key"),
            ("call", {"method": "m", "sender": "alice"}, "field 'sender' is not accepted"),
        ]
        for op, body, message in cases:
            with self.assertRaises(RouterError) as ctx:
                parse_operation_body(op, body)
            self.assertEqual(ctx.exception.code, "bad_request")
            self.assertIn(message, ctx.exception.message)


def walked_body(data: Any) -> bytes:
    """The success envelope as the documented walk renders it: to_json_value, then strict compact JSON."""
    text = json.dumps({"ok": True, "data": to_json_value(data)}, ensure_ascii=True, allow_nan=False,
                      separators=(",", ":"))
    return text.encode("ascii") + b"\n"


def nested_lists(levels: int, inner: Any = None) -> Any:
    value: Any = [] if inner is None else [inner]
    for _ in range(levels - 1):
        value = [value]
    return value


class _Key(enum.IntEnum):
    ONE = 1


class _Backwards(list[Any]):
    """A list that iterates in reverse."""

    def __iter__(self) -> Any:
        return reversed(self)


class _OddItems(dict[Any, Any]):
    """A dict whose items() shows another key than iterating it does."""

    def items(self) -> Any:
        return [(1, "one"), ("1", "other one")]


class SuccessBodyFastPathTests(SynchronousTestCase):
    """success_body lets the C encoder render plain results; whatever it renders must equal the documented walk."""

    def assert_same(self, data: Any) -> None:
        self.assertEqual(success_body(data), walked_body(data), repr(data)[:80])

    def test_plain_results_match_the_walk(self) -> None:
        for data in (
            None, True, 0, -7, 2**70, 1.5, "", "text", "\u00e9\u4e2d\ud800", [], {}, (),
            {"output": "value-of-k", "router": "router-b", "path": ["router-a", "router-b"]},
            {"output": {"n": [1, 2.5, None, False, "x"]}, "tx_hash": "ab" * 32, "block_number": 12},
            [("a", 1), ("b", [2, (3,)])],
        ):
            self.assert_same(data)

    def test_bytes_render_as_0x_hex(self) -> None:
        self.assertEqual(json.loads(success_body(b"\x00\xffA")), {"ok": True, "data": "0x00ff41"})
        data = {"output": b"\xde\xad", "receipt": {"logs": [bytearray(b"\x01"), memoryview(b"\x02\x03")]}, "e": b""}
        self.assertEqual(json.loads(success_body(data))["data"],
                         {"output": "0xdead", "receipt": {"logs": ["0x01", "0x0203"]}, "e": "0x"})
        self.assert_same(data)

    def test_non_finite_floats_render_as_null(self) -> None:
        for value in (float("nan"), float("inf"), -float("inf")):
            self.assertEqual(json.loads(success_body(value)), {"ok": True, "data": None})
            data = {"output": [1.0, value, b"\x01"], "k": {"x": value}}
            self.assertEqual(json.loads(success_body(data))["data"], {"output": [1.0, None, "0x01"], "k": {"x": None}})
            self.assert_same(data)

    def test_keys_the_encoder_would_spell_differently_take_the_walk(self) -> None:
        for data in (
            {1: "a", "1": "b"},  # one key for the walk, a duplicated key for the encoder
            {None: 1, "null": 2, True: 3},
            {_Key.ONE: "enum"},
            {1.5: "f", float("nan"): "n"},
            {b"\x01": 1},
            {"outer": {2: "x"}},
            [{"a": 1}, {3: 4}],
        ):
            self.assert_same(data)
        self.assertEqual(json.loads(success_body({1: "a", "1": "b"}))["data"], {"1": "b"})

    def test_containers_the_encoder_does_not_know_take_the_walk(self) -> None:
        point = collections.namedtuple("point", "x y")
        for data in (
            collections.OrderedDict([("b", 1), ("a", b"\x02")]),
            types.MappingProxyType({"a": 1}),
            point(1, b"\x03"),
            {"seq": range(3)},
            [collections.UserList([1, 2])],
            {"k": _Backwards([1, 2, 3])},
            {"k": _OddItems(a=1)},
            _OddItems(a=1),
        ):
            self.assert_same(data)

    def test_depth_limit_is_the_walks(self) -> None:
        self.assert_same(nested_lists(MAX_RESULT_DEPTH + 1))  # deepest value at depth MAX_RESULT_DEPTH
        self.assert_same({"k": nested_lists(MAX_RESULT_DEPTH)})
        for too_deep in (nested_lists(MAX_RESULT_DEPTH + 2), nested_lists(MAX_RESULT_DEPTH + 1, 1),
                         {"k": nested_lists(MAX_RESULT_DEPTH, "x")}, nested_lists(2000)):
            self.assertRaises(ValueError, success_body, too_deep)

    def test_unrenderable_results_still_raise(self) -> None:
        self.assertRaises(TypeError, success_body, object())
        self.assertRaises(TypeError, success_body, {"output": [object()]})
        self.assertRaises(TypeError, success_body, {object(): 1})
        cycle: list[Any] = []
        cycle.append(cycle)
        self.assertRaises(ValueError, success_body, cycle)


class ParseFastPathTests(SynchronousTestCase):
    def test_byte_order_mark_refused_as_json_loads_words_it(self) -> None:
        with self.assertRaises(RouterError) as ctx:
            parse_json_object('\ufeff{"method": "m"}'.encode())
        self.assertEqual(ctx.exception.code, "bad_json")
        self.assertIn("Unexpected UTF-8 BOM", ctx.exception.message)

    def test_duplicate_keys_named_at_any_depth(self) -> None:
        for body, key in ((b'{"a": 1, "b": 2, "a": 3}', "'a'"), (b'{"x": {"k": 1, "k": 1}}', "'k'"),
                          (b'{"x": [{"q": 1}, {"q": 2, "q": 3}]}', "'q'")):
            with self.assertRaises(RouterError) as ctx:
                parse_json_object(body)
            self.assertEqual(ctx.exception.code, "bad_json")
            self.assertIn(f"duplicate key {key}", ctx.exception.message)
        self.assertEqual(parse_json_object(b'{"x": [{"q": 1}, {"q": 2}]}'), {"x": [{"q": 1}, {"q": 2}]})

    def test_whitespace_only_bodies_are_empty(self) -> None:
        for body in (b" \t\r\n", b"\x0b\x0c"):
            with self.assertRaises(RouterError) as ctx:
                parse_json_object(body)
            self.assertIn("empty", ctx.exception.message)

    def test_call_bodies_accepted_or_refused_as_before(self) -> None:
        self.assertEqual(parse_operation_body("call", {"method": "m"}), ("m", []))
        self.assertEqual(parse_operation_body("sendTransaction", {"method": "m", "args": []}), ("m", []))
        args = [1, {"a": 2}]
        method, got = parse_operation_body("call", {"method": "m", "args": args})
        self.assertEqual((method, got), ("m", args))
        self.assertIsNot(got, args)  # a copy, as before: the Invocation never shares the parsed body's list
        for body in ({"method": "m", "args": None}, {"method": "", "args": []}, {"method": "m", "sender": "x"},
                     {"method": "m", "args": [], "x": 1}, {"args": [], "x": 1}, {"method": 1, "args": []}):
            with self.assertRaises(RouterError) as ctx:
                parse_operation_body("call", body)
            self.assertEqual(ctx.exception.code, "bad_request")

    def test_content_types_taken_without_the_full_check_pass_it(self) -> None:
        for value in rest_api._PLAIN_JSON_TYPES:
            check_content_type(value)


# --- the resource, driven with DummyRequest -------------------------------------------------------------------------


class ApiTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.router = FakeRouter()
        self.counters = new_counters()
        self.api = RestApi(self.router, max_body=1000, counters=self.counters)

    def request(self, method: bytes, uri: str, body: Any = None, raw: bytes | None = None,
                headers: dict[str, str] | None = None) -> Req:
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        req = Req(method, uri, payload, headers)
        render(self.api, req)
        return req

    def ok(self, method: bytes, uri: str, body: Any = None) -> Any:
        code, payload = answer(self.request(method, uri, body))
        self.assertEqual(code, 200, payload)
        self.assertIs(payload["ok"], True)
        return payload["data"]

    def error(self, req: Req, status: int, code: str) -> dict[str, Any]:
        got_status, payload = answer(req)
        self.assertEqual((got_status, payload["ok"], payload["error"]["code"]), (status, False, code), payload)
        self.assertEqual(HTTP_STATUS.get(code, 422), status)
        return payload["error"]  # type: ignore[no-any-return]

    # endpoints

    def test_index_lists_endpoints(self) -> None:
        data = self.ok(b"GET", "/")
        paths = {e["path"] for e in data["endpoints"]}
        self.assertEqual(paths, {"/", "/status", "/peers", "/routes", "/resources", "/chains",
                                 "/chains/{zone}/{chain}/headers/{n}", "/{zone}/{chain}/{resource}/events",
                                 "/{zone}/{chain}/{resource}/{op}", "/tx", "/tx/start", "/tx/adopt", "/tx/{id}",
                                 "/tx/{id}/exec", "/tx/{id}/commit", "/tx/{id}/rollback", "/htlc", "/htlc/start",
                                 "/htlc/{id}", "/htlc/{id}/unlock", "/htlc/{id}/refund", "/openapi.json",
                                 "/metrics", "/ui/", "/whoami", "/audit", "/admin/peers", "/admin/peers/{id}",
                                 "/admin/accounts", "/admin/accounts/{user}/{chain_path}"})

    def test_status_peers_resources(self) -> None:
        self.assertEqual(self.ok(b"GET", "/status"), self.router.status_value)
        self.assertEqual(self.ok(b"GET", "/peers"), self.router.peers_value)
        self.assertEqual(self.ok(b"GET", "/resources"), self.router.resources_value)
        self.assertEqual(self.ok(b"GET", "/status/"), self.router.status_value)
        self.assertEqual(self.ok(b"GET", "/routes"), self.router.routes_value)

    def test_headers(self) -> None:
        req = self.request(b"GET", "/status")
        self.assertEqual(header(req, b"Content-Type"), b"application/json; charset=utf-8")
        self.assertEqual(int(header(req, b"Content-Length") or b"-1"), len(b"".join(req.written)))

    def test_resources_filters(self) -> None:
        def ipaths(uri: str) -> list[str]:
            return [r["ipath"] for r in self.ok(b"GET", uri)]

        self.assertEqual(ipaths("/resources?zone=payment"), ["payment.bank-a.asset", "payment.bank-b.asset"])
        self.assertEqual(ipaths("/resources?zone=payment&chain=bank-b"), ["payment.bank-b.asset"])
        self.assertEqual(ipaths("/resources?chain=ledger"), ["trade.ledger.kv"])
        self.assertEqual(ipaths("/resources?zone=nowhere"), [])

    def test_resources_bad_filters(self) -> None:
        self.error(self.request(b"GET", "/resources?zone=bad!zone"), 400, "bad_ipath")
        self.error(self.request(b"GET", "/resources?zone=a.b"), 400, "bad_ipath")
        self.error(self.request(b"GET", "/resources?zone="), 400, "bad_ipath")
        err = self.error(self.request(b"GET", "/resources?zones=payment"), 400, "bad_request")
        self.assertIn("'zones'", err["message"])
        self.error(self.request(b"GET", "/resources?zone=a&zone=b"), 400, "bad_request")
        self.error(self.request(b"GET", "/status?verbose=1"), 400, "bad_request")

    def test_call(self) -> None:
        data = self.ok(b"POST", "/payment/bank-a/asset/call", {"method": "balance", "args": ["alice", 2]})
        self.assertEqual(data["output"]["args"], ["alice", 2])
        self.assertEqual(self.router.invocations, [
            Invocation(IPath("payment", "bank-a", "asset"), "call", "balance", ["alice", 2], "anonymous")
        ])

    def test_send_transaction_args_default(self) -> None:
        self.ok(b"POST", "/payment/bank-a/asset/sendTransaction", {"method": "mint"})
        self.assertEqual(self.router.invocations[-1].op, "sendTransaction")
        self.assertEqual(self.router.invocations[-1].args, [])

    def test_get_and_set_data_normalised(self) -> None:
        self.ok(b"POST", "/payment/bank-a/kv/getData", {"key": "k1"})
        self.ok(b"POST", "/payment/bank-a/kv/setData", {"key": "k1", "value": {"n": [1, 2]}})
        get, put = self.router.invocations
        self.assertEqual((get.op, get.method, get.args), ("getData", "getData", ["k1"]))
        self.assertEqual((put.op, put.method, put.args), ("setData", "setData", ["k1", {"n": [1, 2]}]))

    def test_result_with_bytes(self) -> None:
        self.router.result = {"output": b"\xde\xad\xbe\xef", "receipt": {"logs": [b"\x01"]}, "tx_hash": "ab"}
        data = self.ok(b"POST", "/payment/bank-a/asset/call", {"method": "m"})
        self.assertEqual(data, {"output": "0xdeadbeef", "receipt": {"logs": ["0x01"]}, "tx_hash": "ab"})

    def test_result_with_nan(self) -> None:
        self.router.result = {"output": [float("nan"), float("-inf")]}
        self.assertEqual(self.ok(b"POST", "/payment/bank-a/asset/call", {"method": "m"}), {"output": [None, None]})

    def test_facade_deferred_fires_later(self) -> None:
        self.router.hold = True
        req = self.request(b"POST", "/payment/bank-a/asset/call", {"method": "m"})
        self.assertFalse(req.finished)
        self.router.held[0][1].callback({"output": 7})
        self.assertEqual(answer(req), (200, {"ok": True, "data": {"output": 7}}))

    # request errors

    def test_bad_json(self) -> None:
        for raw in (b"{nope", b"", b"\xff", b'{"method": "m", "method": "n"}'):
            self.error(self.request(b"POST", "/z/c/r/call", raw=raw), 400, "bad_json")
        self.assertEqual(self.router.invocations, [])

    def test_not_an_object(self) -> None:
        err = self.error(self.request(b"POST", "/z/c/r/call", [1]), 400, "bad_request")
        self.assertIn("JSON object, got array", err["message"])

    def test_wrong_field_type(self) -> None:
        err = self.error(self.request(b"POST", "/z/c/r/call", {"method": "m", "args": "x"}), 400, "bad_request")
        self.assertEqual(err["details"], {"field": "args", "expected": "array", "got": "string"})
        err = self.error(self.request(b"POST", "/z/c/r/setData", {"key": 1, "value": 1}), 400, "bad_request")
        self.assertIn("'key' must be a string", err["message"])

    def test_unknown_fields(self) -> None:
        err = self.error(self.request(b"POST", "/z/c/r/call", {"method": "m", "gas": 1}), 400, "bad_request")
        self.assertEqual(err["details"]["unknown"], ["gas"])
        self.assertIn("'gas'", err["message"])

    def test_sender_in_body_refused(self) -> None:
        err = self.error(self.request(b"POST", "/z/c/r/call", {"method": "m", "sender": "root"}), 400,
                         "bad_request")
        self.assertIn("sender", err["message"])
        self.assertEqual(self.router.invocations, [])

    def test_too_large_checked_on_read(self) -> None:
        err = self.error(self.request(b"POST", "/z/c/r/setData", {"key": "k", "value": "x" * 2000}), 413,
                         "too_large")
        self.assertEqual(err["details"]["limit"], 1000)

    def test_unsupported_media_type(self) -> None:
        req = self.request(b"POST", "/z/c/r/call", {"method": "m"}, headers={"Content-Type": "text/plain"})
        self.error(req, 415, "unsupported_media_type")
        self.ok(b"POST", "/z/c/r/call", {"method": "m"})  # no Content-Type at all is fine
        req = self.request(b"POST", "/z/c/r/call", {"method": "m"},
                           headers={"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(answer(req)[0], 200)

    def test_unknown_op(self) -> None:
        err = self.error(self.request(b"POST", "/z/c/r/transfer", {"method": "m"}), 404, "not_found")
        self.assertEqual(err["details"]["operations"], list(OPERATIONS))
        for op in OPERATIONS:
            self.assertIn(op, err["message"])

    def test_bad_ipath(self) -> None:
        for uri in ("/bad%20zone/c/r/call", "/z/c.d/r/call", "/z//r/call", "/z/c/" + "r" * 65 + "/call",
                    "/z/%FF/r/call", "/_z/c/r/call", "/z/*/r/call"):
            err = self.error(self.request(b"POST", uri, {"method": "m"}), 400, "bad_ipath")
            self.assertTrue(err["message"], uri)
        self.assertEqual(self.router.invocations, [])

    def test_method_not_allowed(self) -> None:
        req = self.request(b"GET", "/z/c/r/call")
        self.error(req, 405, "method_not_allowed")
        self.assertEqual(header(req, b"Allow"), b"POST")
        for uri in ("/status", "/", "/resources"):
            req = self.request(b"POST", uri, {})
            self.error(req, 405, "method_not_allowed")
            self.assertEqual(header(req, b"Allow"), b"GET, HEAD")
        self.error(self.request(b"DELETE", "/peers"), 405, "method_not_allowed")

    def test_unknown_path(self) -> None:
        for uri in ("/nothing", "/a/b", "/a/b/c", "/a/b/c/call/extra", "/%FF"):
            err = self.error(self.request(b"GET", uri), 404, "not_found")
            self.assertIn("GET /", err["message"])

    # facade errors

    def test_router_error(self) -> None:
        self.router.error = RouterError("unreachable", "no route to payment.bank-a", {"tried": ["r2"]})
        err = self.error(self.request(b"POST", "/payment/bank-a/asset/call", {"method": "m"}), 503, "unreachable")
        self.assertEqual(err, {"code": "unreachable", "message": "no route to payment.bank-a",
                               "details": {"tried": ["r2"]}})

    def test_router_error_unknown_code_is_422(self) -> None:
        self.router.error = RouterError("insufficient_funds", "alice has 3")
        self.error(self.request(b"POST", "/payment/bank-a/asset/sendTransaction", {"method": "pay"}), 422,
                   "insufficient_funds")

    def test_stub_error(self) -> None:
        self.router.error = StubError("bad_args", "pay takes 2 arguments")
        err = self.error(self.request(b"POST", "/p/c/r/sendTransaction", {"method": "pay"}), 400, "bad_args")
        self.assertEqual(err["message"], "pay takes 2 arguments")
        self.router.error = StubError("insufficient_funds", "alice has 3")
        self.error(self.request(b"POST", "/p/c/r/sendTransaction", {"method": "pay"}), 422, "insufficient_funds")

    def assert_internal(self, req: Req, exc_type: type[BaseException], events: list[dict[str, Any]]) -> None:
        err = self.error(req, 500, "internal")
        ref = err["details"]["ref"]
        self.assertEqual(err["message"], f"internal error; see the router log (ref {ref})")
        body = b"".join(req.written)
        self.assertNotIn(b"Traceback", body)
        self.assertNotIn(b"secret", body)
        self.assertEqual(len(self.flushLoggedErrors(exc_type)), 1)
        self.assertIn(ref, [e.get("ref") for e in events])

    def capture_log(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    def test_plain_exception_is_500_without_traceback(self) -> None:
        events = self.capture_log()
        self.router.error = KeyError("secret internal detail")
        self.assert_internal(self.request(b"POST", "/p/c/r/call", {"method": "m"}), KeyError, events)

    def test_synchronous_exception_is_500(self) -> None:
        events = self.capture_log()
        self.router.raise_sync = ZeroDivisionError("secret")
        self.assert_internal(self.request(b"POST", "/p/c/r/call", {"method": "m"}), ZeroDivisionError, events)

    def test_status_exception_is_500(self) -> None:
        events = self.capture_log()
        self.router.status_value = RuntimeError("secret")
        self.assert_internal(self.request(b"GET", "/status"), RuntimeError, events)

    def test_unrenderable_result_is_500(self) -> None:
        events = self.capture_log()
        self.router.result = {"output": object()}
        self.assert_internal(self.request(b"POST", "/p/c/r/call", {"method": "m"}), TypeError, events)

    # disconnects and counters

    def test_client_disconnect_cancels_and_swallows(self) -> None:
        self.router.hold = True
        req = self.request(b"POST", "/p/c/r/call", {"method": "m"})
        invocation, held = self.router.held[0]
        req.lose()
        self.assertEqual(self.router.cancelled, [invocation])
        self.assertTrue(held.called)
        self.assertEqual(req.written, [])
        self.assertEqual(self.counters["client_gone"], 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_late_result_after_disconnect_is_dropped(self) -> None:
        # A facade whose Deferred cannot be cancelled fires after the client left: nothing is written, nothing fails.
        pending: Deferred[dict[str, Any]] = Deferred()
        self.router.invoke = lambda invocation: pending  # type: ignore[method-assign]
        req = self.request(b"POST", "/p/c/r/call", {"method": "m"})
        req.lose()
        pending.callback({"output": 1})  # already errbacked by cancel(); must be ignored quietly
        self.assertEqual(req.written, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_counters(self) -> None:
        self.ok(b"GET", "/status")
        self.request(b"GET", "/missing")
        self.router.error = RouterError("timeout", "slow")
        self.request(b"POST", "/p/c/r/call", {"method": "m"})
        self.assertEqual(self.counters, {"requests": 3, "ok": 1, "client_error": 1, "server_error": 1,
                                         "client_gone": 0})

    def test_log_requests(self) -> None:
        events = self.capture_log()
        self.api.log_requests = True
        self.ok(b"GET", "/peers")
        logged = [e for e in events if e.get("log_namespace") == "wecross.rest"]
        self.assertEqual([(e["request"], e["status"]) for e in logged], [("GET /peers", 200)])


class RouteCacheTests(SynchronousTestCase):
    """A resource seen once is routed without the general checks; everything they refuse is still refused."""

    def setUp(self) -> None:
        self.router = FakeRouter()
        self.api = RestApi(self.router, max_body=1000, counters=new_counters())

    def request(self, method: bytes, uri: str, body: Any = None, headers: dict[str, str] | None = None) -> Req:
        req = Req(method, uri, b"" if body is None else json.dumps(body).encode(), headers)
        render(self.api, req)
        return req

    def status_and_code(self, req: Req) -> tuple[int, str | None]:
        status, payload = answer(req)
        return status, None if payload["ok"] else payload["error"]["code"]

    def test_seen_resource_still_checked(self) -> None:
        call = {"method": "m"}
        for _ in range(2):
            self.assertEqual(self.status_and_code(self.request(b"POST", "/z/c/r/call", call)), (200, None))
        cases = [
            (b"POST", "/z/c/r/call?x=1", call, (400, "bad_request")),
            (b"GET", "/z/c/r/call", None, (405, "method_not_allowed")),
            (b"post", "/z/c/r/call", call, (405, "method_not_allowed")),
            (b"POST", "/z/c/r/transfer", call, (404, "not_found")),
            (b"POST", "/z/c/r/call", {"method": "m", "x": 1}, (400, "bad_request")),
            (b"POST", "/z/c/r/call/", call, (200, None)),
            (b"POST", "/z/c/r/call/extra", call, (404, "not_found")),
        ]
        for method, uri, body, expected in cases:
            self.assertEqual(self.status_and_code(self.request(method, uri, body)), expected, uri)
        req = self.request(b"POST", "/z/c/r/call", call, headers={"Content-Type": "text/plain"})
        self.assertEqual(self.status_and_code(req), (415, "unsupported_media_type"))
        self.assertEqual([str(i.path) for i in self.router.invocations], ["z.c.r"] * 3)

    def test_refused_paths_are_never_remembered(self) -> None:
        for _ in range(2):
            self.assertEqual(self.status_and_code(self.request(b"POST", "/z/c.d/r/call", {"method": "m"})),
                             (400, "bad_ipath"))
            self.assertEqual(self.status_and_code(self.request(b"POST", "/z/%FF/r/call", {"method": "m"})),
                             (400, "bad_ipath"))
        self.assertEqual(self.router.invocations, [])

    def test_cache_is_bounded(self) -> None:
        self.patch(rest_api, "_IPATH_CACHE_SIZE", 3)
        for i in range(10):
            self.assertEqual(self.status_and_code(self.request(b"POST", f"/z/c/r{i}/call", {"method": "m"})),
                             (200, None))
            self.assertLessEqual(len(self.api._ipaths), 3)
        self.assertEqual([i.path.resource for i in self.router.invocations], [f"r{i}" for i in range(10)])


# --- the whole Site, fed raw HTTP -----------------------------------------------------------------------------------


def parse_response(raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


class ChannelTests(SynchronousTestCase):
    """HTTP parsing and the early body limit, through a real HTTPChannel on a StringTransport."""

    def setUp(self) -> None:
        self.router = FakeRouter()
        self.clock = Clock()
        self.site = make_site(self.router, max_body=100, reactor=self.clock)
        self.transport = StringTransport()
        self.channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.channel.makeConnection(self.transport)
        self.addCleanup(self.channel.connectionLost, Failure(ConnectionDone()))

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def post(self, path: bytes, body: bytes, extra: bytes = b"") -> bytes:
        return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
                + extra + b"\r\n" + body)

    def assertNoDrainTimer(self) -> None:
        # The channel's own idle timeout may be pending (a StringTransport never reports the close); ours must not.
        pending = [call.func.__name__ for call in self.clock.getDelayedCalls()]
        self.assertNotIn("_close", pending)

    def test_get_status(self) -> None:
        self.send(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = parse_response(self.transport.value())
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"content-type"], b"application/json; charset=utf-8")
        self.assertEqual(json.loads(body), {"ok": True, "data": self.router.status_value})

    def test_head_status(self) -> None:
        self.send(b"HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = parse_response(self.transport.value())
        self.assertEqual((status, body), (200, b""))
        self.assertGreater(int(headers[b"content-length"]), 0)

    def test_post_call(self) -> None:
        self.send(self.post(b"/payment/bank-a/asset/call", b'{"method": "balance", "args": ["alice"]}',
                            b"Content-Type: application/json\r\n"))
        status, _, body = parse_response(self.transport.value())
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["data"]["output"]["args"], ["alice"])

    def test_stub_code_status_line_has_a_reason(self) -> None:
        self.router.error = StubError("insufficient_funds", "alice has 3")
        self.send(self.post(b"/z/c/r/sendTransaction", b'{"method": "pay"}'))
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 422 Unprocessable Entity\r\n"))

    def test_body_at_limit_accepted(self) -> None:
        body = json.dumps({"key": "k", "value": "x" * 70}).encode()
        body += b" " * (100 - len(body))
        self.send(self.post(b"/z/c/r/setData", body))
        self.assertEqual(parse_response(self.transport.value())[0], 200)

    def test_form_body_not_parsed_and_refused(self) -> None:
        self.send(self.post(b"/z/c/r/call", b"method=m", b"Content-Type: application/x-www-form-urlencoded\r\n"))
        status, _, body = parse_response(self.transport.value())
        self.assertEqual((status, json.loads(body)["error"]["code"]), (415, "unsupported_media_type"))

    def test_declared_length_over_limit_refused_before_body(self) -> None:
        self.send(b"POST /z/c/r/call HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        raw = self.transport.value()
        self.assertNotIn(b"100 Continue", raw)
        status, headers, body = parse_response(raw)
        self.assertEqual(status, 413)
        self.assertEqual(headers[b"connection"], b"close")
        error = json.loads(body)["error"]
        self.assertEqual((error["code"], error["details"]), ("too_large", {"limit": 100, "length": 5000000}))
        # what the client still sends is read and dropped (not stored, not answered again) for a while
        request = self.channel._channel.requests[0]  # the HTTPChannel behind the generic wrapper
        self.send(b"x" * 10000)
        self.assertEqual(request.content.getvalue(), b"")
        self.assertEqual(self.transport.value(), raw)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(self.site.drain_timeout)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.router.invocations, [])
        self.assertEqual(self.site.counters["client_error"], 1)

    def test_refused_body_read_to_its_end_then_closed(self) -> None:
        self.send(self.post(b"/z/c/r/call", b"y" * 300))
        self.assertEqual(parse_response(self.transport.value())[0], 413)
        self.assertTrue(self.transport.disconnecting)
        self.assertNoDrainTimer()
        self.assertEqual(self.router.invocations, [])

    def test_declared_length_above_drain_limit_closes_at_once(self) -> None:
        self.site.drain_limit = 1000
        self.send(b"POST /z/c/r/call HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
        self.assertEqual(parse_response(self.transport.value())[0], 413)
        self.assertTrue(self.transport.disconnecting)
        self.assertNoDrainTimer()

    def test_chunked_body_over_limit_refused_while_streaming(self) -> None:
        self.send(b"POST /z/c/r/call HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.send(b"40\r\n" + b"a" * 64 + b"\r\n")
        self.assertEqual(self.transport.value(), b"")  # 64 bytes: still under the limit
        request = self.channel._channel.requests[0]  # the HTTPChannel behind the generic wrapper
        self.send(b"40\r\n" + b"b" * 64 + b"\r\n")
        status, _, body = parse_response(self.transport.value())
        self.assertEqual((status, json.loads(body)["error"]["code"]), (413, "too_large"))
        self.send(b"40\r\n" + b"c" * 64 + b"\r\n")
        self.assertFalse(self.transport.disconnecting)
        self.send(b"0\r\n\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(request.content.getvalue(), b"")
        self.assertEqual(self.router.invocations, [])

    def test_chunked_drain_stops_at_drain_limit(self) -> None:
        self.site.drain_limit = 500
        self.send(b"POST /z/c/r/call HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.send(b"c8\r\n" + b"a" * 200 + b"\r\n")
        self.assertEqual(parse_response(self.transport.value())[0], 413)
        self.send(b"c8\r\n" + b"a" * 200 + b"\r\n")
        self.assertFalse(self.transport.disconnecting)
        self.send(b"c8\r\n" + b"a" * 200 + b"\r\n")
        self.assertTrue(self.transport.disconnecting)

    def test_malformed_request_line_never_reaches_router(self) -> None:
        self.send(b"NONSENSE\r\n\r\n")
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 400"))
        self.assertEqual(self.router.invocations, [])


class StockRouteTests(SynchronousTestCase):
    """RestRequest behind twisted.web's own Site (no lean route): the stock answer, headers once, encoders honoured."""

    def send(self, site: Site, raw: bytes) -> bytes:
        transport = StringTransport()
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, Failure(ConnectionDone()))
        channel.dataReceived(raw)
        return transport.value()

    def test_plain_site(self) -> None:
        router = FakeRouter()
        site = Site(RestApi(router), requestFactory=RestRequest, reactor=Clock())
        [(line, headers, body)] = split_responses(self.send(site, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n"))
        self.assertEqual(line, b"HTTP/1.1 200 OK")
        names = [name for name, _ in headers]
        self.assertEqual(sorted(names), sorted(set(names)))
        self.assertIn(b"date", names)
        self.assertEqual(json.loads(body), {"ok": True, "data": router.status_value})

    def test_encoding_wrapper(self) -> None:
        router = FakeRouter()
        resource = EncodingResourceWrapper(RestApi(router), [GzipEncoderFactory()])
        site = Site(resource, requestFactory=RestRequest, reactor=Clock())
        raw = self.send(site, b"GET /status HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
        head, _, rest = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"\r\nContent-Encoding: gzip\r\n", head)
        self.assertIn(b"\r\nTransfer-Encoding: chunked", head)
        body = b""
        while True:  # the encoder does not know the length beforehand, so twisted.web sends chunks
            size, _, rest = rest.partition(b"\r\n")
            if int(size, 16) == 0:
                break
            body, rest = body + rest[: int(size, 16)], rest[int(size, 16) + 2:]
        data = json.loads(zlib.decompress(body, 16 + zlib.MAX_WBITS))
        self.assertEqual(data, {"ok": True, "data": router.status_value})


def split_responses(raw: bytes) -> list[tuple[bytes, list[tuple[bytes, bytes]], bytes]]:
    """Every response in ``raw``: status line, header lines in order (repeats kept), body by Content-Length."""
    responses = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(b":") for line in lines[1:])]
        length = int(dict(headers).get(b"content-length", b"0"))
        responses.append((lines[0], headers, rest[:length]))
        raw = rest[length:]
    return responses


class ChannelAnswerTests(SynchronousTestCase):
    """The answer RestRequest writes in one piece: the same status line and headers twisted.web would have sent."""

    def setUp(self) -> None:
        self.router = FakeRouter()
        self.clock = Clock()
        self.site = make_site(self.router, max_body=100, reactor=self.clock)
        self.transport = StringTransport()
        self.channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.channel.makeConnection(self.transport)
        self.lost = False
        self.addCleanup(self.lose)

    def lose(self) -> None:
        if not self.lost:
            self.lost = True
            self.channel.connectionLost(Failure(ConnectionDone()))

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def post(self, path: bytes, body: bytes) -> bytes:
        length = str(len(body)).encode()
        return b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n" + body

    def test_every_header_once(self) -> None:
        self.send(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        [(line, headers, body)] = split_responses(self.transport.value())
        self.assertEqual(line, b"HTTP/1.1 200 OK")
        names = sorted(name for name, _ in headers)
        self.assertEqual(names, sorted([b"server", b"date", b"content-type", b"content-length", b"cache-control",
                                        b"x-content-type-options"]))
        values = dict(headers)
        self.assertEqual(values[b"content-type"], b"application/json; charset=utf-8")
        self.assertEqual(values[b"cache-control"], b"no-store")
        self.assertEqual(values[b"x-content-type-options"], b"nosniff")
        self.assertTrue(values[b"server"].startswith(b"TwistedWeb/"))
        self.assertIsNotNone(email.utils.parsedate_to_datetime(values[b"date"].decode()))
        self.assertEqual(int(values[b"content-length"]), len(body))
        self.assertEqual(json.loads(body), {"ok": True, "data": self.router.status_value})

    def test_date_block_follows_the_clock(self) -> None:
        now = [1_700_000_000.2]
        block = rest_api._HeaderBlock(lambda: now[0])
        first = block.get()
        self.assertIn(b"Date: " + datetimeToString(1_700_000_000) + b"\r\n", first)
        now[0] = 1_700_000_000.9
        self.assertIs(block.get(), first)
        now[0] = 1_700_000_001.0
        self.assertIn(b"Date: " + datetimeToString(1_700_000_001) + b"\r\n", block.get())

    def test_error_answers_carry_reason_and_extra_headers(self) -> None:
        self.send(b"DELETE /peers HTTP/1.1\r\nHost: x\r\n\r\n")
        self.send(self.post(b"/z/c/r/call", b"{nope"))
        (line1, headers1, body1), (line2, _, body2) = split_responses(self.transport.value())
        self.assertEqual(line1, b"HTTP/1.1 405 Method Not Allowed")
        self.assertIn((b"allow", b"GET, HEAD"), headers1)
        self.assertEqual(json.loads(body1)["error"]["code"], "method_not_allowed")
        self.assertEqual(line2, b"HTTP/1.1 400 Bad Request")
        self.assertEqual(json.loads(body2)["error"]["code"], "bad_json")

    def test_results_mapped_as_documented(self) -> None:
        self.router.result = {"output": b"\xca\xfe", "receipt": {"gas": float("nan"), "logs": [b"\x01"]}}
        self.send(self.post(b"/z/c/r/call", b'{"method": "m"}'))
        [(_, _, body)] = split_responses(self.transport.value())
        self.assertEqual(json.loads(body)["data"], {"output": "0xcafe", "receipt": {"gas": None, "logs": ["0x01"]}})

    def test_connection_close_honoured(self) -> None:
        self.send(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        [(line, headers, _)] = split_responses(self.transport.value())
        self.assertEqual(line, b"HTTP/1.1 200 OK")
        self.assertIn((b"connection", b"close"), headers)
        self.assertTrue(self.transport.disconnecting)

    def test_http_1_0_answered_in_kind_and_closed(self) -> None:
        self.send(b"GET /status HTTP/1.0\r\n\r\n")
        [(line, _, body)] = split_responses(self.transport.value())
        self.assertEqual(line, b"HTTP/1.0 200 OK")
        self.assertEqual(json.loads(body)["ok"], True)
        self.assertTrue(self.transport.disconnecting)

    def test_pipelined_requests_answered_in_order(self) -> None:
        self.router.hold = True
        self.send(self.post(b"/z/c/r/call", b'{"method": "first"}') + self.post(b"/z/c/r/call", b'{"method": "next"}'))
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(len(self.router.held), 1)  # twisted.web holds the second until the first is answered
        self.router.held[0][1].callback({"output": 1})
        self.router.held[1][1].callback({"output": 2})
        answers = split_responses(self.transport.value())
        self.assertEqual([json.loads(body)["data"] for _, _, body in answers], [{"output": 1}, {"output": 2}])
        self.assertEqual([i.method for i in self.router.invocations], ["first", "next"])
        self.assertFalse(self.transport.disconnecting)

    def test_client_gone_while_waiting(self) -> None:
        self.router.hold = True
        self.send(self.post(b"/z/c/r/call", b'{"method": "slow"}'))
        [(invocation, held)] = self.router.held
        self.lose()
        self.assertEqual(self.router.cancelled, [invocation])
        self.assertTrue(held.called)
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.site.counters["client_gone"], 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_failure_escaping_the_resource_is_a_json_500(self) -> None:
        def broken(request: Any) -> bytes:
            raise ZeroDivisionError("secret")

        self.patch(self.site.api, "render", broken)
        self.send(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        [(line, headers, body)] = split_responses(self.transport.value())
        self.assertEqual(line, b"HTTP/1.1 500 Internal Server Error")
        self.assertIn((b"content-type", b"application/json; charset=utf-8"), headers)
        error = json.loads(body)["error"]
        self.assertEqual(error["code"], "internal")
        self.assertNotIn(b"secret", body)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.site.counters["server_error"], 1)

    def test_host_address_asked_once_per_connection(self) -> None:
        asked: list[int] = []
        get_host = self.transport.getHost

        def counting() -> Any:
            asked.append(1)
            return get_host()

        self.patch(self.transport, "getHost", counting)
        for _ in range(3):
            self.send(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(len(split_responses(self.transport.value())), 3)
        self.assertEqual(len(asked), 1)


# --- real sockets ---------------------------------------------------------------------------------------------------


def _cert(cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
          server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    issuer_name = issuer[0].subject if issuer else name
    signing_key = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(signing_key, hashes.SHA256()), key


def _private(pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> PrivateCertificate:
    cert, key = pair
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return PrivateCertificate.loadPEM(pem)


@implementer(IPolicyForHTTPS)
class _ClientTLS:
    def __init__(self, ca: Certificate, client: PrivateCertificate | None) -> None:
        self.options = optionsForClientTLS("localhost", trustRoot=ca, clientCertificate=client)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return self.options


class _RawClient(Protocol):
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.received = b""
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.data)

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:  # noqa: B008
        self.lost.callback(None)


@implementer(ISSLTransport)
class _TLSTransport:
    """Just enough of a TLS transport for client_identity."""

    def __init__(self, cert: Any) -> None:
        self.cert = cert

    def getPeerCertificate(self) -> Any:
        return self.cert


class IdentityTests(SynchronousTestCase):
    def identity(self, cert: Any) -> str:
        request = DummyRequest([b""])
        request.transport = _TLSTransport(cert)  # type: ignore[assignment]
        return client_identity(request)

    def test_certificates_remembered_by_content(self) -> None:
        self.patch(rest_identity, "_IDENTITIES", {})
        self.patch(rest_identity, "_IDENTITY_CACHE_SIZE", 3)
        ca = _cert("test-ca")
        pairs = [_cert(f"user-{i}", ca) for i in range(5)]
        certs = [X509.from_cryptography(cert) for cert, _ in pairs]
        for _ in range(2):
            self.assertEqual([self.identity(c) for c in certs], [f"user-{i}" for i in range(5)])
            self.assertLessEqual(len(rest_identity._IDENTITIES), 3)
        # another wrapper around the same certificate is the same identity
        self.assertEqual(self.identity(X509.from_cryptography(pairs[4][0])), "user-4")

    def test_unusual_certificates(self) -> None:
        no_cn = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "org")])
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(no_cn).issuer_name(no_cn).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
                .sign(key, hashes.SHA256()))
        self.assertEqual(self.identity(X509.from_cryptography(cert)), "anonymous")
        self.assertEqual(self.identity(None), "anonymous")
        self.assertEqual(self.identity(object()), "anonymous")  # not a certificate at all


class SocketTests(TestCase):
    """The API over real connections on 127.0.0.1, through twisted.web.client.Agent."""

    def setUp(self) -> None:
        self.router = FakeRouter()
        self.site = make_site(self.router, max_body=200)
        self.server_closed: list[Deferred[None]] = []
        self._track_server_connections(self.site)

    def _track_server_connections(self, site: RestSite) -> None:
        # Trial wants every socket closed when a test ends; the server side of a connection closes a little after
        # the client's, so cleanup waits for it.
        build = site.buildProtocol

        def tracked(addr: Any) -> Any:
            protocol = build(addr)
            closed: Deferred[None] = Deferred()
            self.server_closed.append(closed)
            original = protocol.connectionLost

            def connection_lost(reason: Failure) -> None:
                original(reason)
                closed.callback(None)

            protocol.connectionLost = connection_lost
            return protocol

        site.buildProtocol = tracked  # type: ignore[method-assign]

    def listen(self, tls: CertificateOptions | None = None) -> int:
        if tls is None:
            port = reactor.listenTCP(0, self.site, interface="127.0.0.1")  # type: ignore[attr-defined]
        else:
            port = reactor.listenSSL(0, self.site, tls, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: defer.gatherResults(self.server_closed))
        return int(port.getHost().port)

    def agent(self, policy: Any = None) -> Agent:
        pool = HTTPConnectionPool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        if policy is None:
            return Agent(reactor, pool=pool)
        return Agent(reactor, contextFactory=policy, pool=pool)

    async def fetch(self, agent: Agent, method: bytes, url: str, body: bytes | None = None,
                    ctype: bytes = b"application/json") -> tuple[int, Any, Any]:
        producer = FileBodyProducer(BytesIO(body)) if body is not None else None
        headers = Headers({b"Content-Type": [ctype]}) if body is not None else None
        response = await agent.request(method, url.encode(), headers, producer)
        raw = await readBody(response)
        return response.code, response.headers, json.loads(raw)

    @defer.inlineCallbacks
    def test_endpoints_over_http(self) -> Any:
        port = self.listen()
        agent = self.agent()
        base = f"http://127.0.0.1:{port}"
        code, headers, body = yield defer.ensureDeferred(self.fetch(agent, b"GET", base + "/status"))
        self.assertEqual((code, body), (200, {"ok": True, "data": self.router.status_value}))
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json; charset=utf-8"])
        self.router.result = {"output": b"\x01\x02", "tx_hash": "ff"}
        code, _, body = yield defer.ensureDeferred(
            self.fetch(agent, b"POST", base + "/payment/bank-a/asset/sendTransaction", b'{"method": "pay"}'))
        self.assertEqual((code, body["data"]), (200, {"output": "0x0102", "tx_hash": "ff"}))
        self.assertEqual(self.router.invocations[0].sender, "anonymous")
        code, headers, body = yield defer.ensureDeferred(self.fetch(agent, b"PUT", base + "/status", b"{}"))
        self.assertEqual((code, body["error"]["code"]), (405, "method_not_allowed"))
        self.assertEqual(headers.getRawHeaders(b"allow"), [b"GET, HEAD"])
        code, _, body = yield defer.ensureDeferred(self.fetch(agent, b"GET", base + "/nope"))
        self.assertEqual((code, body["error"]["code"]), (404, "not_found"))
        code, _, body = yield defer.ensureDeferred(
            self.fetch(agent, b"POST", base + "/z/c/r/call", b'{"method": "m", "pad": "' + b"x" * 300 + b'"}'))
        self.assertEqual((code, body["error"]["code"]), (413, "too_large"))
        self.assertEqual(self.site.counters["ok"], 2)

    @defer.inlineCallbacks
    def test_many_concurrent_requests(self) -> Any:
        port = self.listen()
        agent = self.agent()
        self.router.hold = True
        count = 60
        requests = [
            defer.ensureDeferred(self.fetch(agent, b"POST", f"http://127.0.0.1:{port}/z/c/r/call",
                                            json.dumps({"method": "m", "args": [i]}).encode()))
            for i in range(count)
        ]
        while len(self.router.held) < count:
            yield self.router.next_arrival()
        for invocation, held in reversed(self.router.held):  # answer in the opposite order of arrival
            held.callback({"output": invocation.args[0] * 10})
        results = yield defer.gatherResults(requests)
        self.assertEqual([body["data"]["output"] for _, _, body in results], [i * 10 for i in range(count)])
        self.assertEqual(self.site.counters["ok"], count)

    @defer.inlineCallbacks
    def test_slow_facade_and_client_disconnect(self) -> Any:
        port = self.listen()
        self.router.hold = True
        body = b'{"method": "slow"}'
        request = (b"POST /z/c/r/call HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode()
                   + b"\r\n\r\n" + body)
        client = _RawClient(request)
        arrived = self.router.next_arrival()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        invocation = yield arrived
        assert client.transport is not None
        client.transport.loseConnection()
        yield client.lost
        yield self.server_closed[0]
        self.assertEqual(self.router.cancelled, [invocation])
        self.assertEqual(self.site.counters["client_gone"], 1)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertTrue(self.router.held[0][1].called)

    @defer.inlineCallbacks
    def test_naive_client_sees_413_for_large_body(self) -> Any:
        # Writes 4 MB without reading first, like urllib or requests; the server must drain rather than reset.
        port = self.listen()
        body = b"z" * (4 * 1024 * 1024)
        client = _RawClient(b"POST /z/c/r/call HTTP/1.1\r\nHost: x\r\nContent-Length: "
                            + str(len(body)).encode() + b"\r\n\r\n" + body)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        yield client.lost  # the server closes once the body is drained
        status, _, payload = parse_response(client.received)
        self.assertEqual((status, json.loads(payload)["error"]["code"]), (413, "too_large"))
        self.assertEqual(self.router.invocations, [])

    @defer.inlineCallbacks
    def test_tls_client_certificate_is_the_sender(self) -> Any:
        ca = _cert("test-ca")
        server = _private(_cert("localhost", ca, server=True))
        alice = _private(_cert("alice", ca))
        ca_cert = Certificate.loadPEM(ca[0].public_bytes(serialization.Encoding.PEM))
        options = CertificateOptions(
            privateKey=server.privateKey.original, certificate=server.original, verify=True,
            caCerts=[ca_cert.original], requireCertificate=False,
        )
        port = self.listen(options)
        url = f"https://127.0.0.1:{port}/payment/bank-a/asset/call"
        code, _, _ = yield defer.ensureDeferred(
            self.fetch(self.agent(_ClientTLS(ca_cert, alice)), b"POST", url, b'{"method": "whoami"}'))
        self.assertEqual(code, 200)
        code, _, _ = yield defer.ensureDeferred(
            self.fetch(self.agent(_ClientTLS(ca_cert, None)), b"POST", url, b'{"method": "whoami"}'))
        self.assertEqual(code, 200)
        self.assertEqual([i.sender for i in self.router.invocations], ["alice", "anonymous"])
