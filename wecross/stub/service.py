"""StubService: the router's chains, as one Twisted service.

It loads the stub plugins, builds one stub per configured chain (each with its own data directory
``<data_dir>/<zone>.<chain>/``), starts and stops them with the router, and is the only way the router reaches a
resource: by iPath, with the operation checked and dispatched here, so a stub never sees a malformed request.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from wecross.ipath import IPath
from wecross.stub.interfaces import (
    OP_CALL,
    OP_GET_DATA,
    OP_HTLC_LOCK,
    OP_HTLC_TIMEOUT,
    OP_HTLC_UNLOCK,
    OP_SEND_TRANSACTION,
    OP_SET_DATA,
    OP_TX_COMMIT,
    OP_TX_PREPARE,
    OP_TX_ROLLBACK,
    OPERATIONS,
    TX_OPERATIONS,
    ChainState,
    IResource,
    IStub,
    ResourceInfo,
    Result,
    StubError,
    StubSettings,
)
from wecross.stub.loader import StubLoadError, build_stub, default_plugin_dirs, discover, verifiers_of

log = Logger()

#: Stub errors a caller may act on; anything else a stub raises is reported as ``internal``.
_STUB_ERRORS = (StubError,)
#: Start failures that are the environment's or the config's fault: logged as one line, without a traceback.
_EXPECTED_START_ERRORS = (StubError, ValueError, OSError)


def _maybe(fn: Any, *args: Any) -> Deferred[Result]:
    """Call a resource method; a synchronous raise becomes a failed Deferred like any other failure."""
    result: Deferred[Result] = defer.maybeDeferred(fn, *args)
    return result


class StubStartError(Exception):
    """A stub could not be built or started; the message names the stub."""


class StubService(Service):
    """Builds, starts and stops the router's stubs and dispatches operations to their resources."""

    name = "stubs"

    def __init__(self, settings: Sequence[StubSettings], data_dir: Path,
                 plugin_dirs: Sequence[Path] | None = None) -> None:
        """``plugin_dirs``: extra directories searched besides the default ``plugins/`` (None: only the default)."""
        self._settings = list(settings)
        self._data_dir = Path(data_dir)
        self._plugin_dirs = list(plugin_dirs or [])
        # Providers of IStub/IResource are held as Any: zope interfaces are invisible to mypy without its plugin.
        self._stubs: dict[str, Any] = {}
        self._started: list[Any] = []
        self._loaded = False
        #: chain type -> IChainVerifier of every stub plugin found, also of chain types served nowhere here (an
        #: entry router checks results of chains other routers serve). Filled in place by :meth:`load`, so that a
        #: holder of this dict (TrustedResults, the header store) sees it once the plugins are discovered.
        self.verifiers: dict[str, Any] = {}
        #: Fires (with None) once every stub has started; fails with StubStartError naming the first that did not.
        self.ready: Deferred[None] = Deferred()

    # -- life cycle --------------------------------------------------------------------------------------------
    def load(self) -> dict[str, IStub]:
        """Discover the plugins and build (not start) every stub. Raises StubLoadError: call it early to report
        configuration mistakes before the reactor runs; startService calls it if nobody did."""
        if self._loaded:
            return dict(self._stubs)
        # Discovered also for a pure relay, which verifies the results its clients get from other routers (after
        # the first router of a process, discovery finds the plugin modules imported and costs a fraction of a ms).
        factories = discover([*default_plugin_dirs(), *self._plugin_dirs])
        self.verifiers.clear()
        self.verifiers.update(verifiers_of(factories))
        if not self._settings:  # a pure relay: no stub to build
            self._loaded = True
            return {}
        stubs: dict[str, Any] = {}
        for settings in self._settings:
            key = f"{settings.zone}.{settings.name}"
            if key in stubs:
                raise StubLoadError(f"stub {key} is configured twice")
            stubs[key] = build_stub(factories, settings, self._data_dir / key)
        self._stubs = stubs
        self._loaded = True
        return dict(stubs)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        if self.ready.called:  # started again after a stop: a fresh signal for this start
            self.ready = Deferred()
        try:
            self.load()
        except StubLoadError as exc:
            log.error("cannot load stubs: {error}", error=str(exc))
            self.ready.errback(StubStartError(str(exc)))
            return
        starts = [self._start_one(key, stub) for key, stub in self._stubs.items()]
        done = defer.gatherResults(starts, consumeErrors=True)

        def finished(result: object) -> None:
            if isinstance(result, Failure):
                error = result.value
                if isinstance(error, defer.FirstError):
                    error = error.subFailure.value
                self.ready.errback(error if isinstance(error, StubStartError) else StubStartError(str(error)))
            else:
                self.ready.callback(None)

        done.addBoth(finished)

    def _start_one(self, key: str, stub: Any) -> Deferred[None]:
        def started(_: object) -> None:
            self._started.append(stub)
            log.info("stub {stub} ({type}) started", stub=key, type=stub.chain_type)

        def failed(failure: Failure) -> None:
            reason = failure.getErrorMessage()
            if isinstance(failure.value, _EXPECTED_START_ERRORS):
                log.error("stub {stub} failed to start: {reason}", stub=key, reason=reason)
            else:  # a bug, not a bad config or disk: keep the traceback
                log.failure("stub {stub} failed to start", failure, stub=key)
            raise StubStartError(f"stub {key} ({stub.chain_type}) failed to start: {reason}")

        started_d: Deferred[None] = defer.maybeDeferred(stub.start)
        return started_d.addCallbacks(started, failed)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        started, self._started = self._started, []

        def stop_one(stub: Any) -> Deferred[None]:
            def failed(failure: Failure) -> None:
                log.failure("stub {stub} did not stop cleanly", failure, stub=f"{stub.zone}.{stub.name}")

            stopped: Deferred[None] = defer.maybeDeferred(stub.stop)
            return stopped.addErrback(failed)

        stops = defer.gatherResults([stop_one(stub) for stub in started])
        return stops.addCallback(lambda _: None)

    # -- what the router uses ----------------------------------------------------------------------------------
    def stubs(self) -> dict[str, IStub]:
        """Every built stub, keyed ``zone.chain``."""
        return dict(self._stubs)

    def serves(self, chain_path: str) -> bool:
        """Whether ``zone.chain`` is served here (asked on every request: no copy)."""
        return chain_path in self._stubs

    def resolve(self, path: IPath) -> IResource | None:
        stub = self._stubs.get(path.chain_path)
        return None if stub is None else cast(IResource | None, stub.resource(path.resource))

    def local_resources(self) -> list[tuple[IPath, ResourceInfo]]:
        """Every resource served here with its description, in iPath order."""
        found: list[tuple[IPath, ResourceInfo]] = []
        for stub in self._stubs.values():
            for resource in stub.resources():
                info: ResourceInfo = resource.info
                found.append((IPath(stub.zone, stub.name, info.name), info))
        return sorted(found, key=lambda item: item[0])

    def chain_states(self) -> Deferred[dict[str, ChainState]]:
        """Height, head and genesis of every started chain; a chain that cannot answer is left out (and logged)."""
        keys = list(self._stubs)
        queries: list[Deferred[ChainState]] = [defer.maybeDeferred(self._stubs[key].chain_state) for key in keys]

        def collect(results: list[tuple[bool, Any]]) -> dict[str, ChainState]:
            states: dict[str, ChainState] = {}
            for key, (ok, value) in zip(keys, results, strict=True):
                if ok:
                    states[key] = value
                else:
                    log.warn("chain {chain} did not report its state: {reason}", chain=key,
                             reason=value.getErrorMessage())
            return states

        return defer.DeferredList(queries, consumeErrors=True).addCallback(collect)

    def invoke(self, path: IPath, op: str, method: str, args: list[Any], sender: str) -> Deferred[Result]:
        """Run one operation on a local resource. Fails with StubError: ``unknown_resource``, ``bad_request``
        (unknown op), ``bad_args`` (argument shape), the resource's own codes, or ``internal``."""
        try:
            resource: Any = self.resolve(path)
            if resource is None:
                known = "" if path.chain_path in self._stubs else f" (this router serves no chain {path.chain_path})"
                raise StubError("unknown_resource", f"no resource {path} here{known}")
            run = self._dispatch(resource, op, method, args, sender)
        except StubError as exc:
            return defer.fail(exc)
        return run.addErrback(self._internal, path, op)

    @staticmethod
    def _dispatch(resource: Any, op: str, method: str, args: Any, sender: str) -> Deferred[Result]:
        if op in TX_OPERATIONS:
            return StubService._dispatch_tx(resource, op, method, args, sender)
        if op not in OPERATIONS:
            raise StubError("bad_request", f"unknown operation {op!r}; operations: {', '.join(OPERATIONS)}")
        if not isinstance(args, (list, tuple)):
            raise StubError("bad_args", f"{op} arguments must be a list, not {type(args).__name__}")
        if not isinstance(sender, str):
            raise StubError("bad_args", "the sender must be a string")
        if op == OP_GET_DATA:
            if len(args) != 1 or not isinstance(args[0], str):
                raise StubError("bad_args", "getData takes one argument: [key] with a string key")
            return _maybe(resource.get_data, args[0], sender)
        if op == OP_SET_DATA:
            if len(args) != 2 or not isinstance(args[0], str):
                raise StubError("bad_args", "setData takes two arguments: [key, value] with a string key")
            return _maybe(resource.set_data, args[0], args[1], sender)
        if not isinstance(method, str) or not method:
            raise StubError("bad_args", f"{op} needs a method name")
        if op == OP_CALL:
            return _maybe(resource.call, method, list(args), sender)
        assert op == OP_SEND_TRANSACTION
        return _maybe(resource.send_transaction, method, list(args), sender)

    @staticmethod
    def _dispatch_tx(resource: Any, op: str, method: str, args: Any, sender: str) -> Deferred[Result]:
        """The transaction hooks (see TX_OPERATIONS for the argument shapes)."""
        if not isinstance(args, (list, tuple)) or not args or not isinstance(args[0], str) or not args[0]:
            raise StubError("bad_args", f"{op} needs the transaction or HTLC id as its first argument")
        if not isinstance(sender, str):
            raise StubError("bad_args", "the sender must be a string")
        tx_id = args[0]
        if op == OP_TX_PREPARE:
            if len(args) != 2 or not isinstance(args[1], (list, tuple)) or not isinstance(method, str) or not method:
                raise StubError("bad_args", "txPrepare takes a method and [tx_id, [step args]]")
            return _maybe(resource.prepare, tx_id, method, list(args[1]), sender)
        if op in (OP_TX_COMMIT, OP_TX_ROLLBACK, OP_HTLC_TIMEOUT):
            if len(args) != 1:
                raise StubError("bad_args", f"{op} takes [id]")
            if op == OP_TX_COMMIT:
                return _maybe(resource.commit, tx_id)
            if op == OP_TX_ROLLBACK:
                return _maybe(resource.rollback, tx_id)
            return _maybe(resource.timeout, tx_id, sender)
        if op == OP_HTLC_LOCK:
            if len(args) != 4 or not isinstance(args[1], str) or isinstance(args[2], bool) \
                    or not isinstance(args[2], (int, float)) or not isinstance(args[3], (list, tuple)):
                raise StubError("bad_args", "htlcLock takes [htlc_id, hash_lock hex, timelock unix seconds, [args]]")
            return _maybe(resource.lock, tx_id, args[1], float(args[2]), list(args[3]), sender)
        assert op == OP_HTLC_UNLOCK
        if len(args) != 2 or not isinstance(args[1], str):
            raise StubError("bad_args", "htlcUnlock takes [htlc_id, secret hex]")
        return _maybe(resource.unlock, tx_id, args[1], sender)

    @staticmethod
    def _internal(failure: Failure, path: IPath, op: str) -> Failure:
        if isinstance(failure.value, _STUB_ERRORS):
            return failure
        log.failure("{op} on {path} failed inside the stub", failure, op=op, path=str(path))
        raise StubError("internal", f"internal error in the stub serving {path}")
