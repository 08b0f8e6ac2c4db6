"""The embedded chain's verifier plugin: :mod:`wecross.embedded.verify`'s proof checks behind IChainVerifier.

The check functions there answer ``(check, message)`` or None and never raise (their own tests and bench/verify.py
call them directly); this adapter turns a failure into :class:`~wecross.chain.verifier.VerificationError` and says
which checks a passing result went through, as TrustedResults reports them in ``verified.checks``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zope.interface import implementer

from wecross.chain.verifier import IChainVerifier, ProvenRequest, VerificationError
from wecross.embedded.block import Header
from wecross.embedded.verify import (
    EVENT_PROOF_CHECKS,
    READ_PROOF_CHECKS,
    check_commit_proof,
    check_event_proof,
    check_read_proof,
    check_write_proof,
)

WRITE_CHECKS = ("header_linked", "tx_inclusion", "receipt_inclusion", "receipt_matches", "output_matches",
                "tx_matches_request")
COMMIT_CHECKS = ("header_linked", "tx_inclusion", "receipt_inclusion", "commit_of_this_tx")


def _raise(failed: tuple[str, str] | None) -> None:
    if failed is not None:
        raise VerificationError(failed[0], failed[1])


@implementer(IChainVerifier)
class EmbeddedVerifier:
    chain_type = "embedded"
    can_rehash = True
    #: Never used: every embedded read carries a state proof (read_provable is always True).
    unproven_read_reason = "reads carry no proof on this chain type"

    def rehash(self, header_wire: Mapping[str, Any]) -> str:
        return Header.from_wire(header_wire).hash.hex()

    def read_provable(self, request: ProvenRequest) -> bool:
        return True

    def check_write(self, result: Mapping[str, Any], expected_header_hash: str,
                    request: ProvenRequest) -> list[str]:
        expected_tx = {"resource": request.resource, "method": request.method, "args": list(request.args),
                       "sender": request.sender}
        _raise(check_write_proof(result, expected_header_hash=expected_header_hash, expected_tx=expected_tx))
        return list(WRITE_CHECKS)

    def check_read(self, result: Mapping[str, Any], expected_header_hash: str,
                   request: ProvenRequest) -> list[str]:
        expected_read = {"resource": request.resource, "op": request.op, "method": request.method,
                         "args": list(request.args)}
        try:
            failed = check_read_proof(result, expected_header_hash=expected_header_hash, expected_read=expected_read)
        except ValueError as exc:  # the request itself is not a read the chain could have answered
            raise VerificationError("read_mismatch", str(exc)) from None
        _raise(failed)
        return ["header_linked", *READ_PROOF_CHECKS]

    def check_commit(self, result: Mapping[str, Any], expected_header_hash: str, request: ProvenRequest,
                     tx_id: str) -> list[str]:
        _raise(check_commit_proof(result, tx_id=tx_id, resource=request.resource,
                                  expected_header_hash=expected_header_hash))
        return list(COMMIT_CHECKS)

    def check_event(self, event: Mapping[str, Any], expected_header_hash: str,
                    request: ProvenRequest) -> list[str]:
        _raise(check_event_proof(event, expected_header_hash=expected_header_hash, resource=request.resource))
        return ["header_linked", *EVENT_PROOF_CHECKS]

    def __repr__(self) -> str:
        return "<EmbeddedVerifier>"
