"""The blocking client: one method per REST endpoint, results as the router's JSON, failures as exceptions.

Built on the standard library's ``http.client`` rather than urllib or requests: it keeps connections alive between
requests (a TLS handshake per request would cost more than most operations), lets the TLS layer be set up once per
client, and is fully typed. What is sent and how answers are read is shared with the async client
(:mod:`wecross.sdk.protocol`); this module only moves bytes.

A client may be used from several threads: each request takes an idle connection (or opens one) and gives it back,
so requests from different threads run in parallel on different connections.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from wecross.sdk import protocol
from wecross.sdk.errors import UNREACHABLE_ROUTER, BadRequest, ConfigError, ConnectionError, WeCrossError
from wecross.sdk.models import (
    Account,
    AuditPage,
    Event,
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
from wecross.sdk.protocol import Call, PathArg, Target, TLSOptions

T = TypeVar("T")

#: Errors that mean "the server closed this kept-alive connection": on a reused connection, a GET is resent once.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def check_timeout(timeout: float) -> float:
    """A positive number of seconds; ConfigError otherwise (shared with the async client)."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < float("inf"):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def _refuse_password(*_: object) -> bytes:
    # Without a callback, OpenSSL would prompt on the terminal for an encrypted key's password.
    raise ConfigError("the client key is encrypted; give an unencrypted PEM key (as `wecross certs` writes them)")


def ssl_context(tls: TLSOptions, target: Target) -> ssl.SSLContext:
    """The client's TLS context: the network's CA (or the system's roots), its certificate chain, TLS 1.2+."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca) if tls.ca else None)
    except ssl.SSLError as exc:
        raise ConfigError(f"ca file {str(tls.ca)!r} holds no usable CA certificate ({exc.reason or exc})",
                          {"ca": str(tls.ca)}) from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert is not None:
        try:
            ctx.load_cert_chain(tls.cert, tls.key, password=_refuse_password)
        except ssl.SSLError as exc:
            what = "do not match" if "MISMATCH" in str(exc.reason) else f"cannot be used ({exc.reason or exc})"
            raise ConfigError(f"client certificate {str(tls.cert)!r} and key {str(tls.key or tls.cert)!r} {what}",
                              {"cert": str(tls.cert), "key": str(tls.key or tls.cert)}) from None
    ctx.check_hostname = tls.check_name(target) is not None
    return ctx


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS that checks the certificate against ``server_name`` (a router id) instead of the address dialled."""

    def __init__(self, host: str, port: int, *, timeout: float, context: ssl.SSLContext,
                 server_name: str | None) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls_context = context
        self._server_name = server_name

    #: True while the TLS handshake runs: a timeout then means a server that does not speak TLS, not a dead host.
    handshaking = False

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.handshaking = True
        self.sock = self._tls_context.wrap_socket(self.sock, server_hostname=self._server_name or self.host)
        self.handshaking = False


def _idle_and_open(conn: http.client.HTTPConnection) -> bool:
    """Whether a kept-alive connection can take a request: an idle HTTP connection has nothing to read, so a
    readable socket means the server closed it (or sent something unasked) and a new connection is needed."""
    sock = conn.sock
    if sock is None:
        return False
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class WeCrossClient:
    """A router's REST API as methods.

    ``base_url`` is ``http://host:port`` or ``https://host:port``. For HTTPS with the network's own CA, pass ``ca``
    (the network's ``ca.crt``), and ``cert``/``key`` (``chain.pem``/``key.pem`` from ``wecross certs --clients``) to
    be known by the certificate's CN; ``server_name`` pins the router id the router's certificate must name.
    ``timeout`` bounds each request in seconds (long polls and transaction commits get their own wait on top).

    With a client certificate and key, every resource operation (call, send_transaction, get_data, set_data) is
    also signed with that key, so that the router serving the resource runs it in this user's name only as asked
    (docs/sdk.md, "Signed operations"); ``sign_operations=False`` turns that off, ``signature_lifetime`` is how
    many seconds a signature stays valid.
    """

    def __init__(self, base_url: str, *, ca: PathArg | None = None, cert: PathArg | None = None,
                 key: PathArg | None = None, timeout: float = 10.0, server_name: str | None = None,
                 max_idle: int = 4, sign_operations: bool = True,
                 signature_lifetime: float = protocol.SIGNATURE_LIFETIME) -> None:
        self.target = protocol.parse_base_url(base_url)
        self.timeout = check_timeout(timeout)
        self.tls = protocol.tls_options(self.target, ca=ca, cert=cert, key=key, server_name=server_name)
        self._ssl = ssl_context(self.tls, self.target) if self.tls is not None else None
        #: Signs resource operations; None when the client holds no key or was told not to sign.
        self.signer = protocol.operation_signer(self.tls, sign_operations=sign_operations,
                                                lifetime=signature_lifetime)
        self._max_idle = max(0, max_idle)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WeCrossClient({self.target.url('')!r})"

    # --- connections -------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the kept-alive connections; the client stays usable and opens new ones when needed."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> WeCrossClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _open(self, timeout: float) -> http.client.HTTPConnection:
        target = self.target
        conn: http.client.HTTPConnection
        if self._ssl is not None and self.tls is not None:
            conn = _HTTPSConnection(target.host, target.port, timeout=timeout, context=self._ssl,
                                    server_name=self.tls.check_name(target))
        else:
            conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        try:
            conn.connect()
        except ssl.SSLError as exc:
            conn.close()
            raise self._tls_error(exc) from None
        except OSError as exc:
            conn.close()
            if isinstance(conn, _HTTPSConnection) and conn.handshaking:
                raise self._error("tls", f"TLS with {target.netloc} got no answer within {timeout:g} s (is this an "
                                         "https:// endpoint?)", False) from None
            raise self._connect_error(exc, timeout) from None
        return conn

    def _acquire(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._open(timeout), False
            if _idle_and_open(conn) and conn.sock is not None:
                conn.timeout = timeout
                conn.sock.settimeout(timeout)
                return conn, True
            conn.close()

    def _release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    # --- one request -------------------------------------------------------------------------------------------------

    def _run(self, call: Call[T]) -> T:
        status, body = self._exchange(call)
        return call.parse(protocol.parse_response(status, body))

    def _exchange(self, call: Call[Any]) -> tuple[int, bytes]:
        timeout = self.timeout + call.extra_time
        path = self.target.request_target(call.path)
        headers = call.headers(self.signer)
        for attempt in (1, 2):
            conn, reused = self._acquire(timeout)
            retry = reused and attempt == 1 and call.idempotent
            try:
                conn.request(call.method, path, body=call.body, headers=headers)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if retry and isinstance(exc, _STALE):
                    continue
                raise self._transport_error(exc, "send", timeout) from None
            try:
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if retry and isinstance(exc, _STALE):
                    continue
                raise self._transport_error(exc, "receive", timeout) from None
            if response.will_close:
                conn.close()
            else:
                self._release(conn)
            return response.status, body
        raise AssertionError("unreachable: the second attempt returns or raises")  # pragma: no cover

    def _error(self, stage: str, message: str, request_sent: bool | None, **details: Any) -> ConnectionError:
        return ConnectionError(UNREACHABLE_ROUTER, message, None,
                               {"stage": stage, "request_sent": request_sent, "url": self.target.url(""), **details})

    def _connect_error(self, exc: OSError, timeout: float) -> ConnectionError:
        where = self.target.netloc
        if isinstance(exc, TimeoutError | socket.timeout):
            return self._error("connect", f"cannot connect to {where}: no answer within {timeout:g} s", False)
        if isinstance(exc, ConnectionRefusedError):
            return self._error("connect", f"cannot connect to {where}: connection refused (is the router running, "
                                          "with its REST API listening there?)", False)
        if isinstance(exc, socket.gaierror):
            return self._error("connect", f"cannot resolve {self.target.host!r}: {exc.strerror or exc}", False)
        return self._error("connect", f"cannot connect to {where}: {exc.strerror or exc}", False)

    def _tls_error(self, exc: ssl.SSLError) -> ConnectionError:
        where = self.target.netloc
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = exc.verify_message or str(exc.reason)
            hint = ""
            if "hostname" in why.lower() or "ip address mismatch" in why.lower():
                hint = "; pass server_name=<the router id its certificate names>, or ca=<the network's ca.crt>"
            elif "issuer" in why.lower() or "self-signed" in why.lower() or "self signed" in why.lower():
                hint = "; is ca= the network's ca.crt?"
            return self._error("tls", f"TLS with {where} failed: the router's certificate was refused ({why}){hint}",
                               False, reason=why)
        reason = str(exc.reason or exc)
        hint = ""
        if "CERTIFICATE_REQUIRED" in reason or "HANDSHAKE_FAILURE" in reason:
            hint = "; this router wants a client certificate: pass cert= and key="
        elif "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason:
            hint = "; the router does not accept this client certificate (is it from the network's CA?)"
        elif "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason:
            hint = "; is this an http:// (not https://) endpoint?"
        return self._error("tls", f"TLS with {where} failed: {reason}{hint}", False, reason=reason)

    def _transport_error(self, exc: OSError | http.client.HTTPException, stage: str,
                         timeout: float) -> ConnectionError:
        where = self.target.netloc
        if isinstance(exc, ssl.SSLError):
            return self._tls_error(exc)
        if isinstance(exc, TimeoutError | socket.timeout):
            return self._error("timeout", f"no answer from {where} within {timeout:g} s; the request may have been "
                                          "carried out", True)
        sent = stage == "receive" or None
        why = str(exc) or type(exc).__name__
        if isinstance(exc, http.client.RemoteDisconnected):
            why = "the router closed the connection without answering"
            if not self.target.https:
                why += "; if it serves HTTPS, use https://"
        return self._error(stage, f"lost the connection to {where} ({why})", sent)

    # --- the API -----------------------------------------------------------------------------------------------------

    def index(self) -> JsonObject:
        """``GET /``: the endpoints this router serves."""
        return self._run(protocol.index())

    def status(self) -> JsonObject:
        """``GET /status``: router id, zones, version, uptime, counters, chains served."""
        return self._run(protocol.status())

    def peers(self) -> list[JsonObject]:
        """``GET /peers``: known peers and link metrics."""
        return self._run(protocol.peers())

    def routes(self) -> JsonObject:
        """``GET /routes``: the routing table."""
        return self._run(protocol.routes())

    def resources(self, zone: str | None = None, chain: str | None = None) -> list[ResourceInfo]:
        """``GET /resources``: resources reachable from this router, optionally of one zone and/or chain name."""
        return self._run(protocol.resources(zone, chain))

    def chains(self) -> JsonObject:
        """``GET /chains``: chains served here, trusted header chains, verification counters."""
        return self._run(protocol.chains())

    def header(self, chain: str, n: int) -> HeaderInfo:
        """Block header ``n`` of ``chain`` (``"zone.chain"``): served here, or trusted by this router."""
        return self._run(protocol.header(chain, n))

    def events(self, ipath: str, from_block: int = 0, wait: float = 0.0) -> EventsPage:
        """A resource's events from ``from_block`` on; waits up to ``wait`` s (0-60) for the first (long poll)."""
        return self._run(protocol.events(ipath, from_block, wait))

    def follow_events(self, ipath: str, from_block: int = 0, wait: float = 30.0) -> Iterator[Event]:
        """Every event from ``from_block`` on, as it comes (long polls of ``wait`` s); endless: break out of it."""
        if isinstance(wait, bool) or not isinstance(wait, int | float) or wait <= 0:
            raise BadRequest("bad_args", f"follow_events needs wait > 0 seconds (a long poll), got {wait!r}", None,
                             {"field": "wait", "client_side": True})
        protocol.ipath_parts(ipath)  # checked now, not at the first next()

        def follow() -> Iterator[Event]:
            next_block = from_block
            while True:
                page = self.events(ipath, next_block, wait)
                yield from page.get("events", [])
                next_block = page.get("next_block", next_block)

        return follow()

    def call(self, ipath: str, method: str, *args: Any) -> OperationResult:
        """A read-only call of ``method(*args)`` on the resource ``zone.chain.resource``."""
        return self._run(protocol.call(ipath, method, args))

    def send_transaction(self, ipath: str, method: str, *args: Any) -> OperationResult:
        """A write: ``method(*args)`` as a chain transaction; the result carries ``tx_hash``, ``block_number`` and,
        across routers, ``verified``."""
        return self._run(protocol.send_transaction(ipath, method, args))

    def get_data(self, ipath: str, key: str) -> OperationResult:
        return self._run(protocol.get_data(ipath, key))

    def set_data(self, ipath: str, key: str, value: Any) -> OperationResult:
        return self._run(protocol.set_data(ipath, key, value))

    # --- governance --------------------------------------------------------------------------------------------------

    def whoami(self) -> Identity:
        """``GET /whoami``: who the router takes this client for (name, org, roles, proven); no permission needed."""
        return self._run(protocol.whoami())

    def audit(self, *, initiator: str | None = None, ipath: str | None = None, interface: str | None = None,
              outcome: str | None = None, since: float | None = None, until: float | None = None,
              after: int | None = None, limit: int | None = None) -> AuditPage:
        """``GET /audit`` (interface ``audit.read``): records of the router's audit trail, oldest first, filtered by
        initiator, iPath (a prefix, or a pattern with ``*``), interface, outcome, time (``since`` inclusive,
        ``until`` exclusive, seconds), ``after`` a seq (paging), at most ``limit`` (1-1000, default 100)."""
        return self._run(protocol.audit(initiator=initiator, ipath=ipath, interface=interface, outcome=outcome,
                                        since=since, until=until, after=after, limit=limit))

    def add_peer(self, address: str, id: str | None = None) -> PeerChange:
        """``POST /admin/peers`` (interface ``admin.peers``): dial ``address`` (host:port) now and keep redialling
        it; ``id`` is the router id its certificate must name."""
        return self._run(protocol.add_peer(address, id))

    def remove_peer(self, id: str) -> PeerChange:
        """``DELETE /admin/peers/{id}`` (interface ``admin.peers``): stop dialling a peer (router id or host:port)
        and close the links to it."""
        return self._run(protocol.remove_peer(id))

    def accounts(self, user: str | None = None, chain: str | None = None) -> list[Account]:
        """``GET /admin/accounts`` (interface ``admin.accounts``): users' chain accounts in the router's keystore
        (of ``user``, on ``chain`` ``zone.chain``, when given): user, chain, address, created; never a key."""
        return self._run(protocol.accounts(user, chain))

    def create_account(self, user: str, chain: str) -> Account:
        """``POST /admin/accounts`` (interface ``admin.accounts``): ``user``'s account on ``chain`` (``zone.chain``),
        created unless it exists; its address."""
        return self._run(protocol.create_account(user, chain))

    def remove_account(self, user: str, chain: str) -> Account:
        """``DELETE /admin/accounts/{user}/{chain}`` (interface ``admin.accounts``): forget ``user``'s key on
        ``chain``, and what it held there with it; the removed account (404 ``not_found`` when there was none)."""
        return self._run(protocol.remove_account(user, chain))

    # --- 2PC ---------------------------------------------------------------------------------------------------------

    def transaction(self, resources: Sequence[str] | None = None, *, timeout: float | None = None) -> Transaction:
        """A 2PC transaction for a ``with`` block: started on entry, committed on normal exit, rolled back when
        the block raises. ``resources`` lists the iPaths it may touch (None: any); ``timeout`` is the router-side
        deadline in seconds after which an undecided transaction is rolled back."""
        return Transaction(self, resources, timeout)

    def start_tx(self, resources: Sequence[str] | None = None, timeout: float | None = None) -> TxRecord:
        return self._run(protocol.start_tx(resources, timeout))

    def exec_tx(self, tx_id: str, ipath: str, method: str, *args: Any) -> TxStep:
        """One step inside the transaction: executed tentatively, what it touches locked until the decision."""
        return self._run(protocol.exec_tx(tx_id, ipath, method, args))

    def commit_tx(self, tx_id: str) -> TxRecord:
        """Commit; the record's ``state`` is ``committed``, or ``committing`` if a participant is slow (it will
        finish: the decision is logged)."""
        return self._run(protocol.commit_tx(tx_id))

    def rollback_tx(self, tx_id: str, reason: str | None = None) -> TxRecord:
        return self._run(protocol.rollback_tx(tx_id, reason))

    def get_tx(self, tx_id: str) -> TxRecord:
        return self._run(protocol.get_tx(tx_id))

    def list_tx(self, state: str | None = None, limit: int | None = None) -> TxList:
        return self._run(protocol.list_tx(state, limit))

    def adopt_tx(self, record: Mapping[str, Any]) -> TxRecord:
        """Make this router finish another coordinator's transaction from its record."""
        return self._run(protocol.adopt_tx(record))

    # --- HTLC --------------------------------------------------------------------------------------------------------

    def htlc_start(self, *, own: OwnLeg, other: OtherLeg, role: str = "initiator", timelock: float | None = None,
                   margin: float | None = None, htlc_id: str | None = None,
                   hash_lock: str | None = None) -> HtlcRecord:
        """Start your side of a hash time-locked exchange (docs/transactions.md). The initiator's answer carries
        ``htlc_id`` and ``hash_lock`` for the participant, never the secret."""
        return self._run(protocol.htlc_start(own=own, other=other, role=role, timelock=timelock, margin=margin,
                                             htlc_id=htlc_id, hash_lock=hash_lock))

    def htlc_get(self, htlc_id: str) -> HtlcRecord:
        return self._run(protocol.htlc_get(htlc_id))

    def htlc_list(self, state: str | None = None, limit: int | None = None) -> HtlcList:
        return self._run(protocol.htlc_list(state, limit))

    def htlc_unlock(self, htlc_id: str, secret: str | None = None) -> HtlcRecord:
        """Unlock the other party's lock now (the router does it on its own once the secret is known)."""
        return self._run(protocol.htlc_unlock(htlc_id, secret))

    def htlc_refund(self, htlc_id: str) -> HtlcRecord:
        """Take back your lock once its time lock has passed."""
        return self._run(protocol.htlc_refund(htlc_id))


class Transaction(protocol.TransactionState):
    """A 2PC transaction driven from a ``with`` block (see :meth:`WeCrossClient.transaction`).

    On normal exit the transaction is committed; when the block raises it is rolled back and the exception goes on.
    A commit that fails is followed by a rollback attempt (refused harmlessly by the router once a commit decision
    is logged). If the router cannot be reached for the rollback, its deadline rolls the transaction back.
    """

    START_HINT = "a with block, or start()"

    def __init__(self, client: WeCrossClient, resources: Sequence[str] | None, timeout: float | None) -> None:
        super().__init__(resources, timeout)
        self.client = client

    def start(self) -> TxRecord:
        self.record = self.client.start_tx(self.resources, self.timeout)
        return self.record

    def execute(self, ipath: str, method: str, *args: Any) -> TxStep:
        """One step: ``method(*args)`` on ``ipath``, tentatively, with what it touches locked."""
        step = self.client.exec_tx(self.tx_id, ipath, method, *args)
        self.steps.append(step)
        return step

    def commit(self) -> TxRecord:
        try:
            record = self.client.commit_tx(self.tx_id)
        except WeCrossError:
            self._rollback_quietly("the commit failed")
            raise
        self.record, self.finished = record, True
        return record

    def rollback(self, reason: str | None = None) -> TxRecord:
        record = self.client.rollback_tx(self.tx_id, reason)
        self.record, self.finished = record, True
        return record

    def refresh(self) -> TxRecord:
        self.record = self.client.get_tx(self.tx_id)
        return self.record

    def _rollback_quietly(self, reason: str) -> None:
        # Refused when a decision is logged already, or the router is gone: its deadline then rolls back.
        with contextlib.suppress(WeCrossError):
            self.rollback(reason)

    def __enter__(self) -> Transaction:
        if self.record is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.finished or self.record is None:
            return
        if exc is None:
            self.commit()
        else:
            self._rollback_quietly(f"the client's block raised {type(exc).__name__}: {exc}"[:500])

    def __repr__(self) -> str:
        tx = self.record["tx_id"] if self.record else "not started"
        return f"Transaction({tx}, state={self.state!r}, steps={len(self.steps)})"


__all__ = ["Transaction", "WeCrossClient", "check_timeout", "ssl_context"]
