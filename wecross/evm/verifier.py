"""The EVM chain's verifier plugin: the checks of :mod:`wecross.evm.checks` behind IChainVerifier.

Every router makes this object at start (the stub loader collects the verifiers of all chain types it finds), also
routers that serve no EVM chain and may never see an EVM result. So this module imports nothing of the EVM codecs:
the checks (rlp, keccak, the trie; about 130 ms to import) are imported when the first EVM result or header is
checked, and web3 never is (the built-in ABIs the checks use live in :mod:`wecross.evm.abi`, which needs eth_abi
only).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from zope.interface import implementer

from wecross.chain.verifier import IChainVerifier, ProvenRequest, VerificationError
from wecross.stub.interfaces import OP_GET_DATA, OP_SET_DATA, StubError

_checks_module: ModuleType | None = None


def _checks() -> ModuleType:
    """wecross.evm.checks, imported on first use (see the module docstring)."""
    global _checks_module
    if _checks_module is None:
        from wecross.evm import checks

        _checks_module = checks
    return _checks_module


@implementer(IChainVerifier)
class EvmVerifier:
    chain_type = "evm"
    can_rehash = True
    unproven_read_reason = ("this EVM call carries no state proof: which storage slots a contract's method reads "
                            "is known only to its code (built-in resources' reads are proven)")

    def rehash(self, header_wire: Mapping[str, Any]) -> str:
        digest: str = _checks().header_hash(header_wire)
        return digest

    def read_provable(self, request: ProvenRequest) -> bool:
        if request.op == OP_GET_DATA:
            return True
        return _checks().read_plan(request.resource_kind, request.method, list(request.args)) is not None

    def check_write(self, result: Mapping[str, Any], expected_header_hash: str,
                    request: ProvenRequest) -> list[str]:
        method = "set" if request.op == OP_SET_DATA else request.method
        checks: list[str] = _checks().check_write(result, expected_header_hash, resource_kind=request.resource_kind,
                                                  method=method, args=list(request.args), sender=request.sender)
        return checks

    def check_read(self, result: Mapping[str, Any], expected_header_hash: str,
                   request: ProvenRequest) -> list[str]:
        checks: list[str]
        if request.op == OP_GET_DATA:
            checks = _checks().check_read(result, expected_header_hash, resource_kind=request.resource_kind,
                                          key=request.args[0] if request.args else None)
        else:
            checks = _checks().check_read(result, expected_header_hash, resource_kind=request.resource_kind,
                                          method=request.method, args=list(request.args))
        return checks

    def check_commit(self, result: Mapping[str, Any], expected_header_hash: str, request: ProvenRequest,
                     tx_id: str) -> list[str]:
        from wecross.evm.builtin import contract_call

        kind = request.resource_kind or ""
        try:
            name, call_args = contract_call(kind, request.op, request.method, list(request.args), request.sender)
        except StubError as exc:  # not a resource that commits
            raise VerificationError("tx_mismatch", exc.message) from None
        checks: list[str] = _checks().check_write(result, expected_header_hash, resource_kind=kind, method=name,
                                                  args=call_args, sender=request.sender)
        return checks

    def check_event(self, event: Mapping[str, Any], expected_header_hash: str,
                    request: ProvenRequest) -> list[str]:
        checks: list[str] = _checks().check_event(event, expected_header_hash, resource_kind=request.resource_kind)
        if event.get("resource") != request.resource:
            raise VerificationError("event_mismatch", f"an event of {event.get('resource')!r} in the stream of "
                                                      f"{request.resource!r}")
        return checks

    def __repr__(self) -> str:
        return "<EvmVerifier>"

