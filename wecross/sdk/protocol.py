"""What both clients share, with no I/O: how each endpoint's request is built and how every answer is read.

The sync client (:mod:`wecross.sdk.client`, blocking sockets) and the async one (:mod:`wecross.sdk.async_client`,
Twisted) differ only in how bytes travel. Everything else lives here once, so the two cannot drift apart: the URL of
each endpoint (with every path part escaped), the JSON body, how long the router may legitimately take (a long poll,
a commit that waits for its participants), the reading of the envelope and the choice of exception. Each endpoint is
a function returning a :class:`Call`; a client runs it and hands the status and body back to :func:`parse_response`
and ``call.parse``.

The SDK checks only what it needs to build a request (an iPath it can put in a URL, arguments it can write as JSON);
every other rule is the router's, so its answers and codes stay the single source of truth.

A client with a certificate and key also signs each resource operation (:mod:`wecross.sdk.signing`, through
:meth:`Call.headers`), so that no router, not even the one it talks to, can run an operation in its name that it
did not ask for.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from wecross.sdk.errors import (
    INVALID_RESPONSE,
    BadRequest,
    ConfigError,
    Conflict,
    ServerError,
    WeCrossError,
    error_class,
)
from wecross.sdk.models import (
    Account,
    AuditPage,
    EventsPage,
    HeaderInfo,
    HtlcList,
    HtlcRecord,
    Identity,
    JsonObject,
    OperationResult,
    OtherLeg,
    OwnLeg,
    PeerChange,
    ResourceInfo,
    TxList,
    TxRecord,
    TxStep,
)
from wecross.sdk.signing import (
    EXPIRES_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    SIGNATURE_LIFETIME,
    OperationSigner,
)

T = TypeVar("T")

SDK_VERSION = "0.1.0"
USER_AGENT = f"wecross-sdk/{SDK_VERSION}"

#: How long the router itself may hold a commit, rollback or adopt before answering (the coordinator's ``wait``);
#: the client waits this much longer than its own timeout for those, so it does not give up on a working router.
COORDINATOR_WAIT = 10.0

#: Longest body quoted in an ``invalid_response`` error: enough to recognise a proxy's error page.
_SNIPPET = 200

PathArg = str | PathLike[str]


# --- where to connect ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """The router's base URL, split once: scheme, host, port and an optional path prefix (a reverse proxy's)."""

    scheme: str
    host: str
    port: int
    prefix: str = ""

    @property
    def https(self) -> bool:
        return self.scheme == "https"

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (which :class:`Call` builds starting with ``/``)."""
        return f"{self.scheme}://{self.netloc}{self.prefix}{path}"

    def request_target(self, path: str) -> str:
        """What goes on the HTTP request line."""
        return self.prefix + path


def parse_base_url(base_url: str) -> Target:
    """``http://host:port`` or ``https://host:port``, optionally with a path prefix; ConfigError otherwise."""
    if not isinstance(base_url, str) or not base_url.strip():
        raise ConfigError(f"base_url must be a URL such as http://127.0.0.1:8250, got {base_url!r}")
    try:
        parts = urlsplit(base_url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"base_url {base_url!r} is not a usable URL: {exc}", {"base_url": base_url}) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"base_url {base_url!r} must start with http:// or https://", {"base_url": base_url})
    if not parts.hostname:
        raise ConfigError(f"base_url {base_url!r} names no host", {"base_url": base_url})
    if parts.username is not None or parts.password is not None:
        raise ConfigError("base_url must not carry a user name or password: the router knows users by their TLS "
                          "client certificate", {"base_url": base_url})
    if parts.query or parts.fragment:
        raise ConfigError(f"base_url {base_url!r} must not have a query or a fragment", {"base_url": base_url})
    return Target(scheme, parts.hostname, port or (443 if scheme == "https" else 80), parts.path.rstrip("/"))


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """Files and names for HTTPS, checked when the client is made rather than at its first request.

    With ``ca`` (the network's own CA, the usual case), any router certificate from that CA is accepted unless
    ``server_name`` pins the router id it must name: every certificate of that CA belongs to the network, and the
    REST certificate names the router id, not the address users dial. Without ``ca``, the system's trust store and
    the usual host-name check apply (a router behind a proxy with a public certificate).
    """

    ca: Path | None
    cert: Path | None
    key: Path | None
    server_name: str | None

    def check_name(self, target: Target) -> str | None:
        """The name to check for this target: ``server_name``, else the URL's host when no private CA is given."""
        if self.server_name is not None:
            return self.server_name
        return None if self.ca is not None else target.host


def _file(kind: str, value: PathArg | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{kind} file {str(path)!r} does not exist or is not a file", {kind: str(path)})
    return path


def _unencrypted_key(path: Path | None) -> None:
    """Refuse an encrypted key up front: the TLS libraries would otherwise ask for its password on the terminal."""
    if path is None:
        return
    try:
        head = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror or exc}", {"file": str(path)}) from None
    if b"ENCRYPTED PRIVATE KEY" in head or b"Proc-Type: 4,ENCRYPTED" in head:
        raise ConfigError(f"key file {str(path)!r} is encrypted; give an unencrypted PEM key (as `wecross certs` "
                          "writes them)", {"key": str(path)})


def tls_options(target: Target, *, ca: PathArg | None, cert: PathArg | None, key: PathArg | None,
                server_name: str | None) -> TLSOptions | None:
    """The HTTPS settings for ``target``, or None for plain HTTP; ConfigError for settings that cannot work."""
    if not target.https:
        given = [name for name, value in (("ca", ca), ("cert", cert), ("key", key), ("server_name", server_name))
                 if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} given but the base URL is http://; use https:// for TLS",
                              {"given": given})
        return None
    if key is not None and cert is None:
        raise ConfigError("key given without cert: pass the client certificate (chain) file as cert")
    if server_name is not None and (not isinstance(server_name, str) or not server_name):
        raise ConfigError(f"server_name must be a router id such as 'router-b', got {server_name!r}")
    options = TLSOptions(_file("ca", ca), _file("cert", cert), _file("key", key), server_name)
    _unencrypted_key(options.key or options.cert)
    return options


# --- signing ---------------------------------------------------------------------------------------------------------


def operation_signer(tls: TLSOptions | None, *, sign_operations: bool = True,
                     lifetime: float = SIGNATURE_LIFETIME) -> OperationSigner | None:
    """The signer of a client made with these TLS settings: one when it has a client certificate (with its key)
    and ``sign_operations`` is true, else None."""
    if not isinstance(sign_operations, bool):
        raise ConfigError(f"sign_operations must be True or False, got {sign_operations!r}")
    if not sign_operations or tls is None or tls.cert is None:
        return None
    return OperationSigner(tls.cert, tls.key, lifetime=lifetime)


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --- requests --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request ready to send, and how its answer's ``data`` becomes the method's result."""

    method: str
    path: str
    body: bytes | None
    parse: Callable[[Any], T] = field(repr=False)
    #: Seconds the router may legitimately take on top of the client's own timeout (long poll, coordinator wait).
    extra_time: float = 0.0
    #: (op, iPath) of a resource operation, which a client holding a key signs; None for every other endpoint.
    operation: tuple[str, str] | None = None

    @property
    def idempotent(self) -> bool:
        """Whether resending after a connection that was found dead is harmless: GETs only (a POST may be a write)."""
        return self.method == "GET"

    def headers(self, signer: OperationSigner | None = None) -> dict[str, str]:
        """The request headers; with ``signer``, a resource operation's signature headers too (made anew on each
        call: a new nonce and expiry for every request sent)."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        if signer is not None and self.operation is not None and self.body is not None:
            headers.update(signer.sign(self.operation[0], self.operation[1], self.body))
        return headers


def _object(data: Any) -> Any:
    if not isinstance(data, dict):
        raise _invalid(200, f"expected a JSON object as data, got {type(data).__name__}", None)
    return data


def _array(data: Any) -> Any:
    if not isinstance(data, list):
        raise _invalid(200, f"expected a JSON array as data, got {type(data).__name__}", None)
    return data


def encode_json(body: Mapping[str, Any]) -> bytes:
    """A request body as strict JSON; BadRequest (nothing sent) for values JSON cannot carry."""
    try:
        text = json.dumps(body, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        hint = " (send bytes as '0x' + hex if the resource expects that)" if "bytes" in str(exc) else ""
        raise BadRequest("bad_args", f"the request cannot be written as JSON: {exc}{hint}", None,
                         {"client_side": True}) from None
    return text.encode("ascii")


def _get(path: str, parse: Callable[[Any], T], query: Mapping[str, object] | None = None,
         extra_time: float = 0.0) -> Call[T]:
    if query:
        kept = {k: str(v) for k, v in query.items() if v is not None}
        if kept:
            path = f"{path}?{urlencode(kept)}"
    return Call("GET", path, None, parse, extra_time)


def _post(path: str, body: Mapping[str, Any], parse: Callable[[Any], T], extra_time: float = 0.0) -> Call[T]:
    return Call("POST", path, encode_json(body), parse, extra_time)


def _segment(part: str) -> str:
    return quote(part, safe="")


def ipath_parts(ipath: str) -> tuple[str, str, str]:
    """``zone.chain.resource`` split for a URL; BadRequest ``bad_ipath`` when it is not three non-empty parts.

    Whether each part is a valid name is the router's rule (it answers ``bad_ipath`` with the reason).
    """
    if not isinstance(ipath, str):
        raise BadRequest("bad_ipath", f"an iPath is a string 'zone.chain.resource', got {type(ipath).__name__}",
                         None, {"client_side": True})
    parts = ipath.split(".")
    if len(parts) != 3 or not all(parts):
        raise BadRequest("bad_ipath", f"iPath {ipath!r} must be three non-empty parts: zone.chain.resource", None,
                         {"ipath": ipath, "client_side": True})
    return parts[0], parts[1], parts[2]


def _resource_path(ipath: str) -> str:
    return "/" + "/".join(_segment(p) for p in ipath_parts(ipath))


def _id_segment(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("bad_args", f"{kind} must be a non-empty string, got {value!r}", None,
                         {"client_side": True})
    return quote(value, safe=":")  # ids are "<router id>:<hex>"; ':' is allowed in a path segment


def _int_arg(name: str, value: object) -> int:
    if type(value) is not int:
        raise BadRequest("bad_args", f"{name} must be an integer, got {value!r}", None,
                         {"field": name, "client_side": True})
    return value


def _number_arg(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest("bad_args", f"{name} must be a number, got {value!r}", None,
                         {"field": name, "client_side": True})
    return float(value)


# --- the endpoints ----------------------------------------------------------------------------------------------------


def index() -> Call[JsonObject]:
    return _get("/", _object)


def status() -> Call[JsonObject]:
    return _get("/status", _object)


def peers() -> Call[list[JsonObject]]:
    return _get("/peers", _array)


def routes() -> Call[JsonObject]:
    return _get("/routes", _object)


def resources(zone: str | None = None, chain: str | None = None) -> Call[list[ResourceInfo]]:
    return _get("/resources", _array, {"zone": zone, "chain": chain})


def chains() -> Call[JsonObject]:
    return _get("/chains", _object)


def header(chain: str, number: int) -> Call[HeaderInfo]:
    if not isinstance(chain, str) or len(chain.split(".")) != 2 or not all(chain.split(".")):
        raise BadRequest("bad_ipath", f"chain {chain!r} must be two non-empty parts: zone.chain", None,
                         {"chain": chain, "client_side": True})
    zone, name = chain.split(".")
    number = _int_arg("block number", number)
    return _get(f"/chains/{_segment(zone)}/{_segment(name)}/headers/{number}", _object)


def events(ipath: str, from_block: int = 0, wait: float = 0.0) -> Call[EventsPage]:
    from_block = _int_arg("from_block", from_block)
    seconds = _number_arg("wait", wait)
    return _get(f"{_resource_path(ipath)}/events", _object, {"from_block": from_block, "wait": repr(seconds)},
                extra_time=max(seconds, 0.0))


def operation(op: str, ipath: str, body: Mapping[str, Any]) -> Call[OperationResult]:
    """``POST /{zone}/{chain}/{resource}/{op}`` (op: call, sendTransaction, getData, setData)."""
    path = _resource_path(ipath)
    return Call("POST", f"{path}/{op}", encode_json(body), _object, 0.0, (op, ipath))


def call(ipath: str, method: str, args: Sequence[Any]) -> Call[OperationResult]:
    return operation("call", ipath, {"method": method, "args": list(args)})


def send_transaction(ipath: str, method: str, args: Sequence[Any]) -> Call[OperationResult]:
    return operation("sendTransaction", ipath, {"method": method, "args": list(args)})


def get_data(ipath: str, key: str) -> Call[OperationResult]:
    return operation("getData", ipath, {"key": key})


def set_data(ipath: str, key: str, value: Any) -> Call[OperationResult]:
    return operation("setData", ipath, {"key": key, "value": value})


def resource_list(resources: Sequence[str] | None) -> list[str]:
    """A transaction's iPaths as a list; one string is refused (``list("z.a.b")`` would be its characters)."""
    if isinstance(resources, str):
        raise BadRequest("bad_args", f"resources must be a list of iPaths, not one string ({resources!r})", None,
                         {"client_side": True})
    return list(resources or [])


def start_tx(resources: Sequence[str] | None = None, timeout: float | None = None) -> Call[TxRecord]:
    body: dict[str, Any] = {"resources": resource_list(resources)}
    if timeout is not None:
        body["timeout"] = timeout
    return _post("/tx/start", body, _object)


def exec_tx(tx_id: str, ipath: str, method: str, args: Sequence[Any]) -> Call[TxStep]:
    return _post(f"/tx/{_id_segment('tx_id', tx_id)}/exec", {"path": ipath, "method": method, "args": list(args)},
                 _object)


def commit_tx(tx_id: str) -> Call[TxRecord]:
    return _post(f"/tx/{_id_segment('tx_id', tx_id)}/commit", {}, _object, COORDINATOR_WAIT)


def rollback_tx(tx_id: str, reason: str | None = None) -> Call[TxRecord]:
    body = {} if reason is None else {"reason": reason}
    return _post(f"/tx/{_id_segment('tx_id', tx_id)}/rollback", body, _object, COORDINATOR_WAIT)


def get_tx(tx_id: str) -> Call[TxRecord]:
    return _get(f"/tx/{_id_segment('tx_id', tx_id)}", _object)


def list_tx(state: str | None = None, limit: int | None = None) -> Call[TxList]:
    return _get("/tx", _object, {"state": state, "limit": limit})


def adopt_tx(record: Mapping[str, Any]) -> Call[TxRecord]:
    return _post("/tx/adopt", record, _object, COORDINATOR_WAIT)


def htlc_start(*, own: OwnLeg, other: OtherLeg, role: str = "initiator", timelock: float | None = None,
               margin: float | None = None, htlc_id: str | None = None,
               hash_lock: str | None = None) -> Call[HtlcRecord]:
    if role not in ("initiator", "participant"):
        raise BadRequest("bad_args", f"role must be 'initiator' or 'participant', got {role!r}", None,
                         {"client_side": True})
    if role == "participant" and (htlc_id is None or hash_lock is None):
        raise BadRequest("bad_args", "a participant needs the initiator's htlc_id and hash_lock", None,
                         {"client_side": True})
    body: dict[str, Any] = {"role": role, "own": dict(own), "other": dict(other)}
    for name, value in (("timelock", timelock), ("margin", margin), ("htlc_id", htlc_id), ("hash_lock", hash_lock)):
        if value is not None:
            body[name] = value
    return _post("/htlc/start", body, _object)


def htlc_get(htlc_id: str) -> Call[HtlcRecord]:
    return _get(f"/htlc/{_id_segment('htlc_id', htlc_id)}", _object)


def htlc_list(state: str | None = None, limit: int | None = None) -> Call[HtlcList]:
    return _get("/htlc", _object, {"state": state, "limit": limit})


def htlc_unlock(htlc_id: str, secret: str | None = None) -> Call[HtlcRecord]:
    body = {} if secret is None else {"secret": secret}
    return _post(f"/htlc/{_id_segment('htlc_id', htlc_id)}/unlock", body, _object)


def htlc_refund(htlc_id: str) -> Call[HtlcRecord]:
    return _post(f"/htlc/{_id_segment('htlc_id', htlc_id)}/refund", {}, _object)


def whoami() -> Call[Identity]:
    return _get("/whoami", _object)


def audit(*, initiator: str | None = None, ipath: str | None = None, interface: str | None = None,
          outcome: str | None = None, since: float | None = None, until: float | None = None,
          after: int | None = None, limit: int | None = None) -> Call[AuditPage]:
    """``GET /audit`` with the filters given (None: not filtered); the router checks each value's form."""
    times = {name: None if value is None else repr(_number_arg(name, value))
             for name, value in (("since", since), ("until", until))}
    counts = {name: None if value is None else _int_arg(name, value) for name, value in (("after", after),
                                                                                         ("limit", limit))}
    return _get("/audit", _object, {"initiator": initiator, "ipath": ipath, "interface": interface,
                                    "outcome": outcome, **times, **counts})


def add_peer(address: str, peer_id: str | None = None) -> Call[PeerChange]:
    body = {"address": address} if peer_id is None else {"address": address, "id": peer_id}
    return _post("/admin/peers", body, _object)


def remove_peer(peer: str) -> Call[PeerChange]:
    if not isinstance(peer, str) or not peer:
        raise BadRequest("bad_args", f"peer must be a router id or host:port, got {peer!r}", None,
                         {"client_side": True})
    return Call("DELETE", f"/admin/peers/{quote(peer, safe=':')}", None, _object)


def _account_names(user: object, chain: object) -> tuple[str, str]:
    if not isinstance(user, str) or not user or not isinstance(chain, str) or chain.count(".") != 1:
        raise BadRequest("bad_args", f"an account is named by a user and a chain zone.chain, got {user!r} and "
                                     f"{chain!r}", None, {"client_side": True})
    return user, chain


def _accounts_data(data: Any) -> Any:
    accounts = _object(data).get("accounts")
    if not isinstance(accounts, list):
        raise _invalid(200, "the accounts answer has no list of accounts", None)
    return accounts


def accounts(user: str | None = None, chain: str | None = None) -> Call[list[Account]]:
    """``GET /admin/accounts`` (filtered by user and chain when given)."""
    return _get("/admin/accounts", _accounts_data, {"user": user, "chain": chain})


def create_account(user: str, chain: str) -> Call[Account]:
    user, chain = _account_names(user, chain)
    return _post("/admin/accounts", {"user": user, "chain": chain}, _object)


def remove_account(user: str, chain: str) -> Call[Account]:
    user, chain = _account_names(user, chain)
    return Call("DELETE", f"/admin/accounts/{quote(user, safe='@')}/{quote(chain, safe='')}", None, _object)


# --- answers ---------------------------------------------------------------------------------------------------------


def _invalid(status: int, why: str, body: bytes | None) -> WeCrossError:
    """An answer outside the envelope: a proxy's page, a truncated body, something that is not a router."""
    snippet = body[:_SNIPPET].decode("utf-8", "replace") if body else ""
    cls = error_class(INVALID_RESPONSE, status) if status >= 400 else ServerError
    message = f"the router's answer (HTTP {status}) is not the API's JSON envelope: {why}"
    return cls(INVALID_RESPONSE, message, status, {"body": snippet} if snippet else None)


def parse_response(status: int, body: bytes) -> Any:
    """The ``data`` of a success envelope; the matching :class:`WeCrossError` for an error envelope or anything else.

    The envelope decides, not the status: a router's errors always come as ``{"ok": false, ...}`` with a status
    derived from the code, and anything else is reported as ``invalid_response`` with the start of the body.
    """
    try:
        envelope = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _invalid(status, "not JSON", body) from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("ok"), bool):
        raise _invalid(status, "no 'ok' field", body)
    if envelope["ok"]:
        return envelope.get("data")
    error = envelope.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        raise _invalid(status, "an error without a code", body)
    message = error.get("message")
    details = error.get("details")
    raise error_class(error["code"], status)(error["code"], message if isinstance(message, str) else error["code"],
                                             status, details if isinstance(details, dict) else None)


__all__ = [
    "COORDINATOR_WAIT",
    "EXPIRES_HEADER",
    "NONCE_HEADER",
    "SDK_VERSION",
    "SIGNATURE_HEADER",
    "SIGNATURE_LIFETIME",
    "USER_AGENT",
    "Call",
    "OperationSigner",
    "TLSOptions",
    "Target",
    "encode_json",
    "ipath_parts",
    "is_ip_address",
    "operation_signer",
    "parse_base_url",
    "parse_response",
    "resource_list",
    "tls_options",
]


class TransactionState:
    """What the blocking and the Twisted transaction helpers share: the transaction's resources, its record once
    started, the steps run, and whether it ended."""

    #: How to start one, for the error of a helper used before it started.
    START_HINT = "start()"

    def __init__(self, resources: Sequence[str] | None, timeout: float | None) -> None:
        self.resources = resource_list(resources)
        self.timeout = timeout
        self.record: TxRecord | None = None
        self.steps: list[TxStep] = []
        self.finished = False

    @property
    def tx_id(self) -> str:
        if self.record is None:
            raise Conflict("tx_state", f"the transaction has not been started (use {self.START_HINT})")
        return self.record["tx_id"]

    @property
    def state(self) -> str | None:
        return None if self.record is None else self.record.get("state")
