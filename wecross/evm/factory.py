"""The plugin object for EVM chains (``type = "evm"``); plugins/evm.py exposes an instance."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from twisted.plugin import IPlugin
from zope.interface import implementer

from wecross.chain.verifier import IChainVerifier, IVerifierFactory
from wecross.evm.verifier import EvmVerifier
from wecross.stub.interfaces import IStub, IStubFactory, StubSettings


@implementer(IPlugin, IStubFactory, IVerifierFactory)
class EvmStubFactory:
    stub_type = "evm"
    description = "any Ethereum JSON-RPC node through web3 (anvil, geth, besu, FISCO BCOS 3 web3 mode)"

    def build(self, settings: StubSettings, data_dir: Path) -> IStub:
        # Imported here: web3 takes a while to import, and a router without evm stubs should not pay for it.
        from wecross.evm.stub import EvmStub

        return cast(IStub, EvmStub(settings, data_dir))  # @implementer is invisible to plain mypy

    def verifier(self) -> IChainVerifier:
        # wecross.evm.verifier imports no EVM codec and no web3 until the first EVM result is checked.
        return cast(IChainVerifier, _VERIFIER)

    def __repr__(self) -> str:
        return "<EvmStubFactory>"


#: Verifiers hold no per-request state: one serves every router of the process.
_VERIFIER = EvmVerifier()
