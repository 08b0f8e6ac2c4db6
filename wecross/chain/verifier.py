"""The chain verifier plugin: what the entry router asks of a chain type to check a result that crossed other routers.

:class:`~wecross.chain.trust.TrustedResults` knows how to trust headers (linkage, checkpoint, quorum) and when a
read is too old; everything that depends on how a chain lays out its blocks, transactions, state and events is
behind :class:`IChainVerifier`, supplied by the chain type's stub factory (:class:`IVerifierFactory`). The core
holds a ``{chain_type: verifier}`` mapping and never names a chain type, so adding one needs new files only: a
stub factory that also provides IVerifierFactory (see tests/test_verifier_registry.py for a third chain type
plugged in that way).

Every check that fails raises :class:`VerificationError` with the stable word of the check; TrustedResults turns
it into the ``proof_invalid`` error whose ``details.check`` is that word. Checks that pass return the names of the
checks they made, which become the ``verified.checks`` of the answer.
"""

# zope interfaces declare methods without self and with empty bodies, and Interface is untyped: mypy --strict
# (wecross/chain is checked strictly) would flag every declaration below, and nothing else here is of those kinds.
# mypy: disable-error-code="misc,empty-body"

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from zope.interface import Attribute, Interface


class VerificationError(Exception):
    """A proof that does not hold: ``check`` is the stable word of the check that failed (``header_hash``,
    ``tx_inclusion``, ``tx_mismatch``, ``stale_read``...), ``message`` says why for a human."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


@dataclass(frozen=True, slots=True)
class ProvenRequest:
    """What the client asked for, as the entry router knows it (never as the answer says): a proof of anything
    else is refused. ``resource`` is the resource's name on its chain, ``resource_kind`` its kind as the owner
    announces it (None: unknown), ``op`` the operation (``call``, ``getData``, ``txCommit``, ``events``...)."""

    resource: str
    resource_kind: str | None
    op: str
    method: str
    args: tuple[Any, ...]
    sender: str


#: The operation name a :class:`ProvenRequest` for an events poll carries.
OP_EVENTS = "events"


class IChainVerifier(Interface):
    """Checks results of one chain type against a header hash the entry router trusts.

    Every ``check_*`` method returns the names of the checks it made and raises :class:`VerificationError` on the
    first that fails; none raises anything else for a malformed result. Proofs travel inside ``result``/``event``.
    """

    chain_type = Attribute("str: the chain type whose results this verifier checks (a stub's chain_type)")
    can_rehash = Attribute("bool: whether rehash can recompute a header's hash from its wire dict; if not, the "
                           "chain's headers are trusted by linkage and quorum alone")
    unproven_read_reason = Attribute("str: why a read that read_provable refuses carries no proof (for "
                                     "verified.reason)")

    def rehash(header_wire: Mapping[str, Any]) -> str:
        """The hash of a header wire dict, recomputed from its fields (lowercase hex, no 0x); raises on a header
        that cannot be hashed."""

    def read_provable(request: ProvenRequest) -> bool:
        """Whether a read like ``request`` comes with a proof this verifier checks (False: it is answered as
        not verified, with :attr:`unproven_read_reason`)."""

    def check_write(result: Mapping[str, Any], expected_header_hash: str, request: ProvenRequest) -> list[str]:
        """A write's result (tx, receipt, output) proven in the block whose trusted hash is given, and the proven
        transaction is the one ``request`` asked for (a replayed receipt fails)."""

    def check_read(result: Mapping[str, Any], expected_header_hash: str, request: ProvenRequest) -> list[str]:
        """A read's output proven against the state of the block whose trusted hash is given."""

    def check_commit(result: Mapping[str, Any], expected_header_hash: str, request: ProvenRequest,
                     tx_id: str) -> list[str]:
        """A 2PC commit's answer: a chain transaction committing ``tx_id`` in the block given."""

    def check_event(event: Mapping[str, Any], expected_header_hash: str, request: ProvenRequest) -> list[str]:
        """One event of an events poll: in the block given, of the resource ``request`` names."""


class IVerifierFactory(Interface):
    """An optional capability of a stub factory (wecross.stub.interfaces.IStubFactory): the verifier of its chain
    type, which the stub loader collects from every factory found, so that a router checks results of that type
    even when it serves no chain of it."""

    def verifier() -> IChainVerifier:
        """The verifier of this factory's chain type (made once; verifiers hold no per-request state)."""


def rehash_lookup(verifiers: Mapping[str, Any]) -> Callable[[str], Callable[[Mapping[str, Any]], str] | None]:
    """For wecross.chain.store.HeaderStore: chain type -> its header rehash, or None (no verifier, or one that
    cannot rehash). Looked up when a chain's header chain is first made, so ``verifiers`` may be filled later."""

    def lookup(chain_type: str) -> Callable[[Mapping[str, Any]], str] | None:
        verifier = verifiers.get(chain_type)
        if verifier is None or not verifier.can_rehash:
            return None
        rehash: Callable[[Mapping[str, Any]], str] = verifier.rehash
        return rehash

    return lookup
