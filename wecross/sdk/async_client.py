"""The client for Twisted programs: the same methods as :class:`~wecross.sdk.client.WeCrossClient`, returning
Deferreds.

It runs on ``twisted.web.client.Agent`` with a persistent connection pool, so a program making many requests pays
for one TCP (and TLS) handshake per connection, not per request. Requests and answers are built and read by
:mod:`wecross.sdk.protocol`, the same code as the sync client's; this module only moves bytes and maps Twisted's
failures onto the SDK's exceptions. Every Deferred fails with a :class:`~wecross.sdk.errors.WeCrossError` (or with
``CancelledError`` when the caller cancels it), never with a raw Twisted or OpenSSL error.

HTTPS builds its own OpenSSL context rather than using ``optionsForClientTLS``: a client certificate must go out
with its intermediates (``chain.pem``), and with the network's CA the router's certificate is checked for its chain
and, when asked, for a router id rather than for the address dialled (see :class:`~wecross.sdk.protocol.TLSOptions`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address
from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, PartialDownloadError, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from wecross.sdk import protocol
from wecross.sdk.client import check_timeout
from wecross.sdk.errors import UNREACHABLE_ROUTER, ConfigError, ConnectionError, WeCrossError
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
from wecross.sdk.protocol import Call, PathArg, Target, TLSOptions

T = TypeVar("T")

#: OpenSSL's X509 verify error numbers users meet most, in words (the rest are shown by number).
_VERIFY_TEXT = {
    2: "unable to get issuer certificate",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in the chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    26: "unsuitable certificate purpose",
}


# --- TLS -------------------------------------------------------------------------------------------------------------


@implementer(IOpenSSLClientConnectionCreator)
class _Connections:
    """Makes each TLS connection from the one context; SNI names the router when a name is known."""

    def __init__(self, policy: _TLSPolicy) -> None:
        self._policy = policy

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        conn = SSL.Connection(self._policy.context, None)
        name = self._policy.sni
        if name is not None:
            conn.set_tlsext_host_name(name.encode("idna"))
        return conn


@implementer(IPolicyForHTTPS)
class _TLSPolicy:
    """The client's TLS settings for Agent: the network's CA (or the system's roots), the client's certificate
    chain and key, TLS 1.2+, and the router-name check of :class:`TLSOptions`."""

    def __init__(self, tls: TLSOptions, target: Target) -> None:
        self.check_name = tls.check_name(target)
        sni = self.check_name or target.host
        self.sni = None if protocol.is_ip_address(sni) else sni
        #: Why the last refused router certificate was refused; OpenSSL itself only says "certificate verify failed".
        self.last_refusal: str | None = None
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_passwd_cb(lambda *_: b"")  # never prompt on a terminal (protocol refuses encrypted keys already)
        try:
            if tls.ca is not None:
                ctx.load_verify_locations(str(tls.ca))
            else:
                ctx.set_default_verify_paths()
        except SSL.Error as exc:
            raise ConfigError(f"ca file {str(tls.ca)!r} holds no usable CA certificate ({_ssl_reason(exc)})",
                              {"ca": str(tls.ca)}) from None
        if tls.cert is not None:
            key = tls.key or tls.cert
            try:
                ctx.use_certificate_chain_file(str(tls.cert))
                ctx.use_privatekey_file(str(key))
                ctx.check_privatekey()
            except SSL.Error as exc:
                raise ConfigError(f"client certificate {str(tls.cert)!r} and key {str(key)!r} cannot be used "
                                  f"({_ssl_reason(exc)})", {"cert": str(tls.cert), "key": str(key)}) from None
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)
        self.context = ctx
        self._connections = _Connections(self)

    def creatorForNetloc(self, hostname: bytes, port: int) -> _Connections:
        return self._connections

    def _verify(self, conn: SSL.Connection, cert: crypto.X509, errnum: int, depth: int, ok: int) -> bool:
        if not ok:
            self.last_refusal = f"{_VERIFY_TEXT.get(errnum, f'X509 verify error {errnum}')} at depth {depth}"
            return False
        name = self.check_name
        if depth == 0 and name is not None:
            try:
                if protocol.is_ip_address(name):
                    verify_certificate_ip_address(cert.to_cryptography(), name)
                else:
                    verify_certificate_hostname(cert.to_cryptography(), name)
            except (VerificationError, CertificateError, ValueError) as exc:
                self.last_refusal = f"the certificate does not name {name!r} ({exc})"
                return False
        return True


def _ssl_reason(exc: SSL.Error) -> str:
    """OpenSSL's error list in a line: its reason strings, without the library and function names."""
    parts: list[str] = []
    for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(item, tuple) and item:
            parts.append(str(item[-1]))
    return ", ".join(p for p in parts if p) or str(exc) or type(exc).__name__


class _Timer:
    """The client's timeout on one exchange: cancels it when due and remembers that it did."""

    def __init__(self, reactor: Any, seconds: float, exchange: Deferred[Any]) -> None:
        self.fired = False
        self._exchange = exchange
        self._call = reactor.callLater(seconds, self._fire)

    def _fire(self) -> None:
        self.fired = True
        self._exchange.cancel()

    def done(self, result: Any) -> Any:
        if self._call.active():
            self._call.cancel()
        return result


# --- the request body ------------------------------------------------------------------------------------------------


@implementer(IBodyProducer)
class _Body:
    """A request body already in memory, written in one go (FileBodyProducer would spread it over reactor turns)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:  # an IConsumer: zope methods do not type-check
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


# --- the client ----------------------------------------------------------------------------------------------------


class AsyncWeCrossClient:
    """A router's REST API for Twisted: the methods of :class:`~wecross.sdk.client.WeCrossClient`, each returning a
    Deferred that fires with the same result or fails with the same exception.

    ``reactor`` defaults to the global one. ``max_connections`` is how many idle connections are kept for reuse.
    Call :meth:`close` when done (it returns a Deferred that fires once the kept connections are closed).
    ``sign_operations`` and ``signature_lifetime``: as for the blocking client (resource operations are signed
    with the client's key when it has one).
    """

    def __init__(self, base_url: str, *, ca: PathArg | None = None, cert: PathArg | None = None,
                 key: PathArg | None = None, timeout: float = 10.0, server_name: str | None = None,
                 reactor: Any = None, max_connections: int = 8, sign_operations: bool = True,
                 signature_lifetime: float = protocol.SIGNATURE_LIFETIME) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.target = protocol.parse_base_url(base_url)
        try:
            self.target.url("").encode("ascii")
        except UnicodeEncodeError:
            raise ConfigError(f"base_url {base_url!r}: write the host name in its ASCII (punycode) form") from None
        self.timeout = check_timeout(timeout)
        self.tls = protocol.tls_options(self.target, ca=ca, cert=cert, key=key, server_name=server_name)
        self._policy = _TLSPolicy(self.tls, self.target) if self.tls is not None else None
        #: Signs resource operations; None when the client holds no key or was told not to sign.
        self.signer = protocol.operation_signer(self.tls, sign_operations=sign_operations,
                                                lifetime=signature_lifetime)
        self._reactor = reactor
        self._pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
        self._pool.maxPersistentPerHost = max(1, max_connections)
        self._agent = (Agent(reactor, contextFactory=self._policy, connectTimeout=self.timeout,  # type: ignore[no-untyped-call]
                             pool=self._pool) if self._policy is not None
                       else Agent(reactor, connectTimeout=self.timeout, pool=self._pool))  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        return f"AsyncWeCrossClient({self.target.url('')!r})"

    def close(self) -> Deferred[None]:
        """Close the kept-alive connections (the client stays usable)."""
        d: Deferred[Any] = self._pool.closeCachedConnections()  # type: ignore[no-untyped-call]
        return d.addCallback(lambda _: None)

    # --- one request -------------------------------------------------------------------------------------------------

    def _run(self, call: Call[T]) -> Deferred[T]:
        timeout = self.timeout + call.extra_time
        try:
            sent = call.headers(self.signer)
        except WeCrossError:
            return fail()
        headers = Headers({k.encode("ascii"): [v.encode("ascii")] for k, v in sent.items()})
        body = cast(IBodyProducer, _Body(call.body)) if call.body is not None else None
        try:
            d = self._agent.request(call.method.encode("ascii"), self.target.url(call.path).encode("ascii"),
                                    headers, body)
        except Exception:  # Agent raises for what it cannot even start; the caller still gets a Deferred
            d = fail()

        def read(response: IResponse) -> Deferred[tuple[int, bytes]]:
            return readBody(response).addCallback(lambda data: (response.code, data))

        exchange = d.addCallback(read)
        # Not addTimeout: Agent reports a cancelled request as ResponseNeverReceived or ConnectingCancelledError,
        # which addTimeout would not turn into a timeout, and the caller's own cancel must stay a CancelledError.
        timer = _Timer(self._reactor, timeout, exchange)
        exchange.addBoth(timer.done)
        exchange.addErrback(self._transport_error, timeout, timer)
        return exchange.addCallback(lambda answer: call.parse(protocol.parse_response(*answer)))

    def _error(self, stage: str, message: str, request_sent: bool | None, **details: Any) -> ConnectionError:
        return ConnectionError(UNREACHABLE_ROUTER, message, None,
                               {"stage": stage, "request_sent": request_sent, "url": self.target.url(""), **details})

    def _transport_error(self, failure: Failure, timeout: float, timer: _Timer) -> Failure:
        """Every way the exchange can fail below HTTP, as a ConnectionError; the caller's own cancel stays one."""
        exc = failure.value
        if exc is None or isinstance(exc, WeCrossError) or (isinstance(exc, CancelledError) and not timer.fired):
            return failure
        where = self.target.netloc
        error: ConnectionError
        if timer.fired:
            error = self._error("timeout", f"no answer from {where} within {timeout:g} s; the request may have been "
                                           "carried out", None)
        elif isinstance(exc, net_error.ConnectionRefusedError):
            error = self._error("connect", f"cannot connect to {where}: connection refused (is the router running, "
                                           "with its REST API listening there?)", False)
        elif isinstance(exc, net_error.DNSLookupError):
            error = self._error("connect", f"cannot resolve {self.target.host!r}", False)
        elif isinstance(exc, net_error.ConnectError):
            error = self._error("connect", f"cannot connect to {where}: {exc}", False)
        else:
            reasons: list[BaseException] = [r.value for r in getattr(exc, "reasons", [])
                                            if isinstance(r, Failure) and r.value is not None] or [exc]
            if any(isinstance(r, CancelledError) for r in reasons):
                raise CancelledError() from exc  # the caller cancelled (our own timeout was handled above)
            tls = next((r for r in reasons if isinstance(r, SSL.Error)), None)
            if tls is not None:
                error = self._tls_error(tls)
            elif type(exc).__name__ == "RequestTransmissionFailed":
                error = self._error("send", f"lost the connection to {where} while sending ({reasons[0]})", None)
            elif type(exc).__name__ == "ResponseNeverReceived":
                hint = "; if it serves HTTPS, use https://" if not self.target.https else ""
                error = self._error("receive", f"the router at {where} closed the connection without answering "
                                               f"({_describe(reasons[0])}){hint}", None)
            elif isinstance(exc, PartialDownloadError) or type(exc).__name__ == "ResponseFailed":
                error = self._error("receive", f"lost the connection to {where} during the answer "
                                               f"({_describe(reasons[0])})", True)
            else:
                error = self._error("send", f"the request to {where} failed: {_describe(exc)}", None)
        raise error

    def _tls_error(self, exc: SSL.Error) -> ConnectionError:
        where = self.target.netloc
        reason = _ssl_reason(exc)
        refusal = self._policy.last_refusal if self._policy is not None else None
        if "certificate verify failed" in reason and refusal:
            hint = ""
            if "does not name" in refusal:
                hint = "; pass server_name=<the router id its certificate names>, or ca=<the network's ca.crt>"
            elif "issuer" in refusal or "self-signed" in refusal:
                hint = "; is ca= the network's ca.crt?"
            return self._error("tls", f"TLS with {where} failed: the router's certificate was refused ({refusal})"
                                      f"{hint}", False, reason=refusal)
        hint = ""
        upper = reason.upper()
        if "CERTIFICATE REQUIRED" in upper or "HANDSHAKE FAILURE" in upper:
            hint = "; this router wants a client certificate: pass cert= and key="
        elif "UNKNOWN CA" in upper or "BAD CERTIFICATE" in upper:
            hint = "; the router does not accept this client certificate (is it from the network's CA?)"
        elif "WRONG VERSION NUMBER" in upper or "PACKET LENGTH TOO LONG" in upper:
            hint = "; is this an http:// (not https://) endpoint?"
        return self._error("tls", f"TLS with {where} failed: {reason}{hint}", False, reason=reason)

    # --- the API (see WeCrossClient for each method's meaning) -------------------------------------------------------

    def index(self) -> Deferred[JsonObject]:
        return self._run(protocol.index())

    def status(self) -> Deferred[JsonObject]:
        return self._run(protocol.status())

    def peers(self) -> Deferred[list[JsonObject]]:
        return self._run(protocol.peers())

    def routes(self) -> Deferred[JsonObject]:
        return self._run(protocol.routes())

    def resources(self, zone: str | None = None, chain: str | None = None) -> Deferred[list[ResourceInfo]]:
        return self._run(protocol.resources(zone, chain))

    def chains(self) -> Deferred[JsonObject]:
        return self._run(protocol.chains())

    def header(self, chain: str, n: int) -> Deferred[HeaderInfo]:
        return self._call(protocol.header, chain, n)

    def events(self, ipath: str, from_block: int = 0, wait: float = 0.0) -> Deferred[EventsPage]:
        return self._call(protocol.events, ipath, from_block, wait)

    def call(self, ipath: str, method: str, *args: Any) -> Deferred[OperationResult]:
        return self._call(protocol.call, ipath, method, args)

    def send_transaction(self, ipath: str, method: str, *args: Any) -> Deferred[OperationResult]:
        return self._call(protocol.send_transaction, ipath, method, args)

    def get_data(self, ipath: str, key: str) -> Deferred[OperationResult]:
        return self._call(protocol.get_data, ipath, key)

    def set_data(self, ipath: str, key: str, value: Any) -> Deferred[OperationResult]:
        return self._call(protocol.set_data, ipath, key, value)

    def whoami(self) -> Deferred[Identity]:
        return self._run(protocol.whoami())

    def audit(self, *, initiator: str | None = None, ipath: str | None = None, interface: str | None = None,
              outcome: str | None = None, since: float | None = None, until: float | None = None,
              after: int | None = None, limit: int | None = None) -> Deferred[AuditPage]:
        try:
            call = protocol.audit(initiator=initiator, ipath=ipath, interface=interface, outcome=outcome,
                                  since=since, until=until, after=after, limit=limit)
        except WeCrossError:
            return fail()
        return self._run(call)

    def add_peer(self, address: str, id: str | None = None) -> Deferred[PeerChange]:
        return self._call(protocol.add_peer, address, id)

    def remove_peer(self, id: str) -> Deferred[PeerChange]:
        return self._call(protocol.remove_peer, id)

    def accounts(self, user: str | None = None, chain: str | None = None) -> Deferred[list[Account]]:
        return self._call(protocol.accounts, user, chain)

    def create_account(self, user: str, chain: str) -> Deferred[Account]:
        return self._call(protocol.create_account, user, chain)

    def remove_account(self, user: str, chain: str) -> Deferred[Account]:
        return self._call(protocol.remove_account, user, chain)

    def transaction(self, resources: Sequence[str] | None = None, *,
                    timeout: float | None = None) -> AsyncTransaction:
        """A 2PC transaction for ``async with`` (in a coroutine run by ``Deferred.fromCoroutine``); see also
        :meth:`run_transaction` for ``inlineCallbacks`` code."""
        return AsyncTransaction(self, resources, timeout)

    def run_transaction(self, work: Callable[[AsyncTransaction], Deferred[T] | T],
                        resources: Sequence[str] | None = None, *, timeout: float | None = None) -> Deferred[T]:
        """Start a transaction, run ``work(tx)``, commit when its result (or Deferred) succeeds and roll back when
        it fails; fires with ``work``'s result, or fails with its failure (or the commit's)."""
        tx = self.transaction(resources, timeout=timeout)

        def run(_: object) -> Any:
            return work(tx)  # a value or a Deferred; raising fails the chain, as maybeDeferred would

        def succeeded(result: Any) -> Any:
            if tx.finished:
                return result
            return tx.commit().addCallback(lambda _: result)

        def failed(failure: Failure) -> Any:
            if tx.record is None or tx.finished:
                return failure
            return tx.rollback_quietly(f"work failed: {failure.getErrorMessage()}"[:500]).addCallback(
                lambda _: failure)

        d: Deferred[Any] = tx.start().addCallback(run)
        return cast("Deferred[T]", d.addCallbacks(succeeded, failed))

    def start_tx(self, resources: Sequence[str] | None = None, timeout: float | None = None) -> Deferred[TxRecord]:
        return self._call(protocol.start_tx, resources, timeout)

    def exec_tx(self, tx_id: str, ipath: str, method: str, *args: Any) -> Deferred[TxStep]:
        return self._call(protocol.exec_tx, tx_id, ipath, method, args)

    def commit_tx(self, tx_id: str) -> Deferred[TxRecord]:
        return self._call(protocol.commit_tx, tx_id)

    def rollback_tx(self, tx_id: str, reason: str | None = None) -> Deferred[TxRecord]:
        return self._call(protocol.rollback_tx, tx_id, reason)

    def get_tx(self, tx_id: str) -> Deferred[TxRecord]:
        return self._call(protocol.get_tx, tx_id)

    def list_tx(self, state: str | None = None, limit: int | None = None) -> Deferred[TxList]:
        return self._call(protocol.list_tx, state, limit)

    def adopt_tx(self, record: Mapping[str, Any]) -> Deferred[TxRecord]:
        return self._call(protocol.adopt_tx, record)

    def htlc_start(self, *, own: OwnLeg, other: OtherLeg, role: str = "initiator", timelock: float | None = None,
                   margin: float | None = None, htlc_id: str | None = None,
                   hash_lock: str | None = None) -> Deferred[HtlcRecord]:
        try:
            call = protocol.htlc_start(own=own, other=other, role=role, timelock=timelock, margin=margin,
                                       htlc_id=htlc_id, hash_lock=hash_lock)
        except WeCrossError:
            return fail()
        return self._run(call)

    def htlc_get(self, htlc_id: str) -> Deferred[HtlcRecord]:
        return self._call(protocol.htlc_get, htlc_id)

    def htlc_list(self, state: str | None = None, limit: int | None = None) -> Deferred[HtlcList]:
        return self._call(protocol.htlc_list, state, limit)

    def htlc_unlock(self, htlc_id: str, secret: str | None = None) -> Deferred[HtlcRecord]:
        return self._call(protocol.htlc_unlock, htlc_id, secret)

    def htlc_refund(self, htlc_id: str) -> Deferred[HtlcRecord]:
        return self._call(protocol.htlc_refund, htlc_id)

    def _call(self, build: Callable[..., Call[T]], *args: Any) -> Deferred[T]:
        """Build and run a request; a request the SDK refuses to build fails the Deferred instead of raising, so
        Deferred-based code has one place to handle every error."""
        try:
            call = build(*args)
        except WeCrossError:
            return fail()
        return self._run(call)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, net_error.ConnectionDone | net_error.ConnectionLost):
        return "connection closed"
    return str(exc) or type(exc).__name__


class AsyncTransaction(protocol.TransactionState):
    """A 2PC transaction for Twisted code; the twin of :class:`~wecross.sdk.client.Transaction`.

    ``async with client.transaction([...]) as tx: await tx.execute(...)`` commits on normal exit and rolls back when
    the block raises; without ``async with``, call :meth:`start`, :meth:`execute`, then :meth:`commit` or
    :meth:`rollback`.
    """

    START_HINT = "async with, or start()"

    def __init__(self, client: AsyncWeCrossClient, resources: Sequence[str] | None, timeout: float | None) -> None:
        super().__init__(resources, timeout)
        self.client = client

    def start(self) -> Deferred[TxRecord]:
        return self.client.start_tx(self.resources, self.timeout).addCallback(self._recorded)

    def execute(self, ipath: str, method: str, *args: Any) -> Deferred[TxStep]:
        try:
            tx_id = self.tx_id
        except WeCrossError:
            return fail()

        def stepped(step: TxStep) -> TxStep:
            self.steps.append(step)
            return step

        return self.client.exec_tx(tx_id, ipath, method, *args).addCallback(stepped)

    def commit(self) -> Deferred[TxRecord]:
        try:
            tx_id = self.tx_id
        except WeCrossError:
            return fail()

        def failed(failure: Failure) -> Any:
            return self.rollback_quietly("the commit failed").addCallback(lambda _: failure)

        d: Deferred[Any] = self.client.commit_tx(tx_id).addCallback(self._recorded, finished=True)
        return cast("Deferred[TxRecord]", d.addErrback(failed))

    def rollback(self, reason: str | None = None) -> Deferred[TxRecord]:
        try:
            tx_id = self.tx_id
        except WeCrossError:
            return fail()
        return self.client.rollback_tx(tx_id, reason).addCallback(self._recorded, finished=True)

    def rollback_quietly(self, reason: str) -> Deferred[None]:
        """Roll back, ignoring a refusal (decided already) or an unreachable router (its deadline will act)."""
        d: Deferred[Any] = self.rollback(reason)
        return d.addCallbacks(lambda _: None, lambda failure: None if failure.check(WeCrossError) else failure)

    def refresh(self) -> Deferred[TxRecord]:
        try:
            tx_id = self.tx_id
        except WeCrossError:
            return fail()
        return self.client.get_tx(tx_id).addCallback(self._recorded)

    def _recorded(self, record: TxRecord, finished: bool = False) -> TxRecord:
        self.record = record
        if finished:
            self.finished = True
        return record

    async def __aenter__(self) -> AsyncTransaction:
        if self.record is None:
            await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.finished or self.record is None:
            return
        if exc is None:
            await self.commit()
        else:
            await self.rollback_quietly(f"the client's block raised {type(exc).__name__}: {exc}"[:500])

    def __repr__(self) -> str:
        tx = self.record["tx_id"] if self.record else "not started"
        return f"AsyncTransaction({tx}, state={self.state!r}, steps={len(self.steps)})"


__all__ = ["AsyncTransaction", "AsyncWeCrossClient"]
