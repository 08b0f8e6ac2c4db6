"""The embedded chain as a stub: IStub for the chain, one IResource per built-in resource.

This layer only translates: interface calls become ledger calls, synchronous answers become Deferreds, and options
from the router's config are checked here, with messages that name the stub and the option.

Both built-in kinds take part in 2PC (prepare / commit / rollback: each resource is a participant of its own,
``(tx_id, resource)``); asset resources also offer HTLCs (lock / unlock / timeout). See the ledger's docstring
and docs/embedded-chain.md, "Transactions".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred
from zope.interface import implementer

from wecross.embedded.ledger import CHAIN_TYPE, Ledger
from wecross.embedded.resources import HTLC_LOCK, HTLC_TIMEOUT, HTLC_UNLOCK, Contract, make_contract
from wecross.stub.interfaces import (
    OP_CALL,
    OP_GET_DATA,
    OP_SEND_TRANSACTION,
    OP_SET_DATA,
    PROOFS_WANTED,
    BlockHeader,
    ChainState,
    EventPages,
    IEventSource,
    IResource,
    IStub,
    ResourceInfo,
    Result,
    StubError,
    StubSettings,
)

#: Most blocks one :meth:`EmbeddedStub.events` call scans (its event pages end there: EventPages.events_window).
EVENTS_WINDOW = 64

#: Stub options (the ``options`` table of a stub's config) with their defaults.
DEFAULT_OPTIONS: dict[str, int] = {
    "max_block_txs": 1000,  # most transactions in one block; the rest wait for the next
    "max_pending": 10000,  # most writes waiting for a block before new ones are refused as overloaded
    "header_cache": 1024,  # recent headers kept in memory; older ones are read from disk
}


def _parse_options(where: str, options: Mapping[str, Any]) -> dict[str, int]:
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_OPTIONS)}")
    parsed = dict(DEFAULT_OPTIONS)
    for key, value in options.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{where}: option {key!r} must be a positive integer, not {value!r}")
        parsed[key] = value
    return parsed


@implementer(IResource)
class EmbeddedResource:
    """One built-in resource of an embedded chain."""

    def __init__(self, ledger: Ledger, contract: Contract) -> None:
        self._ledger = ledger
        self._name = contract.name
        self.info: ResourceInfo = contract.info

    def _read(self, op: str, method: str, args: Any, sender: str) -> Deferred[Result]:
        try:
            if not PROOFS_WANTED.get():
                return defer.succeed(Result(output=self._ledger.read(self._name, op, method, args, sender)))
            return defer.succeed(self._ledger.read_proven(self._name, op, method, args, sender))
        except StubError as exc:
            return defer.fail(exc)

    def call(self, method: str, args: list[Any], sender: str) -> Deferred[Result]:
        return self._read(OP_CALL, method, args, sender)

    def send_transaction(self, method: str, args: list[Any], sender: str) -> Deferred[Result]:
        return self._ledger.submit(self._name, OP_SEND_TRANSACTION, method, args, sender)

    def get_data(self, key: str, sender: str) -> Deferred[Result]:
        return self._read(OP_GET_DATA, "", [key], sender)

    def set_data(self, key: str, value: Any, sender: str) -> Deferred[Result]:
        return self._ledger.submit(self._name, OP_SET_DATA, "", [key, value], sender)

    # -- 2PC: this resource is the participant (tx_id, resource) -----------------------------------------------
    def prepare(self, tx_id: str, method: str, args: list[Any], sender: str) -> Deferred[Result]:
        """Run one write step tentatively under ``tx_id``; Result(output) once it and its locks are durable."""
        return self._ledger.prepare(tx_id, self._name, method, args, sender)

    def commit(self, tx_id: str) -> Deferred[Result]:
        """The commit's chain transaction Result (tx_hash, block_number, receipt, proof); the same one again later."""
        return self._ledger.commit(tx_id, self._name)

    def rollback(self, tx_id: str) -> Deferred[Result]:
        """Result(output={"rolled_back": tx_id, "known": bool}); StubError("already_committed") after a commit."""
        return self._ledger.rollback(tx_id, self._name)

    # -- HTLC (asset resources; others fail with "unsupported") ---------------------------------------------------
    def lock(self, htlc_id: str, hash_lock: str, timelock: float, args: list[Any], sender: str) -> Deferred[Result]:
        """Move ``amount`` from ``sender`` into escrow; ``args`` is ``[receiver, amount]``."""
        if not isinstance(args, (list, tuple)) or len(args) != 2:
            return defer.fail(StubError("bad_args", f"{self._name}: HTLC lock takes args [receiver, amount]"))
        return self._ledger.htlc(self._name, HTLC_LOCK, [htlc_id, hash_lock, timelock, *args], sender)

    def unlock(self, htlc_id: str, secret: str, sender: str) -> Deferred[Result]:
        """Pay the receiver, given the secret (hex) whose SHA-256 is the hash lock, before the time lock."""
        return self._ledger.htlc(self._name, HTLC_UNLOCK, [htlc_id, secret], sender)

    def timeout(self, htlc_id: str, sender: str) -> Deferred[Result]:
        """Refund the HTLC's sender once the block time has reached the time lock."""
        return self._ledger.htlc(self._name, HTLC_TIMEOUT, [htlc_id], sender)

    def __repr__(self) -> str:
        return f"<EmbeddedResource {self._ledger.chain_id}.{self._name} ({self.info.kind})>"


@implementer(IStub, IEventSource)
class EmbeddedStub(EventPages):
    """An in-process chain persisted under ``data_dir`` (one SQLite file: ``chain.sqlite``)."""

    chain_type = CHAIN_TYPE
    #: An events poll scans this many blocks at most (see :meth:`events`): its page ends there.
    events_window = EVENTS_WINDOW

    def __init__(self, settings: StubSettings, data_dir: Path, *, reactor: Any = None) -> None:
        where = settings.checked_where()
        options = _parse_options(where, settings.options)
        contracts: dict[str, Contract] = {}
        for spec in settings.resources:
            try:
                contract = make_contract(settings.zone, settings.name, spec)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            if contract.name in contracts:
                raise ValueError(f"{where}: resource {contract.name!r} is configured twice")
            contracts[contract.name] = contract
        self.name = settings.name
        self.zone = settings.zone
        self.data_dir = data_dir
        self.ledger = Ledger(
            f"{settings.zone}.{settings.name}", contracts, data_dir, reactor=reactor,
            max_block_txs=options["max_block_txs"], max_pending=options["max_pending"],
            header_cache=options["header_cache"],
        )
        # cast: zope's @implementer is invisible to mypy without the mypy-zope plugin.
        self._resources = {name: cast(IResource, EmbeddedResource(self.ledger, c)) for name, c in contracts.items()}

    def start(self) -> Deferred[None]:
        return self.ledger.start()

    def stop(self) -> Deferred[None]:
        return self.ledger.stop()

    def chain_state(self) -> Deferred[ChainState]:
        return defer.succeed(self.ledger.chain_state())

    def header(self, number: int) -> Deferred[BlockHeader]:
        return self.ledger.header(number).addCallback(lambda header: header.to_abstract())

    def resources(self) -> list[IResource]:
        return list(self._resources.values())

    def resource(self, name: str) -> IResource | None:
        return self._resources.get(name)

    # Beyond IStub: explorers, audits and the owner's answer to a retried write.
    def block(self, number: int) -> Deferred[dict[str, Any]]:
        """Header, transactions and receipts of one block as wire values."""
        return self.ledger.block(number)

    def events(self, resource: str, from_block: int) -> Deferred[list[dict[str, Any]]]:
        """Events the resource's transactions emitted, from block ``from_block`` up (at most 64 blocks a call).

        Each event carries a ``proof`` that it is in its transaction's receipt, in the block of its header, and
        that the transaction is of this resource (:meth:`Ledger.events` gives the format;
        :func:`wecross.embedded.verify.check_event_proof` checks it).
        """
        if resource not in self._resources:
            return defer.fail(StubError("unknown_resource", f"chain {self.zone}.{self.name} has no resource "
                                                            f"{resource!r}"))
        if isinstance(from_block, bool) or not isinstance(from_block, int) or from_block < 0:
            return defer.fail(StubError("bad_args", f"from_block must be a block number, not {from_block!r}"))
        return self.ledger.events(resource, from_block, from_block + EVENTS_WINDOW - 1)

    def receipt(self, tx_hash: str) -> Deferred[Result | None]:
        """The Result (receipt and proofs) of an included transaction, or None if this chain has no such one."""
        return self.ledger.receipt(tx_hash)

    def prepared_transactions(self) -> list[dict[str, Any]]:
        """Participants prepared on this chain and not yet committed or rolled back (they survive restarts), oldest
        first: ``{"tx_id", "resource", "steps": [{"method", "args", "sender", "output"}], "locks": [...],
        "since": unix seconds}``; locks are named ``key:<kv key>``, ``balance:<account>``, ``meta:supply``."""
        return self.ledger.prepared_transactions()

    def __repr__(self) -> str:
        return f"<EmbeddedStub {self.zone}.{self.name}>"
