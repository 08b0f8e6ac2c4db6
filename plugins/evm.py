"""Stub plugin drop-in: EVM chains over JSON-RPC. Found by wecross.stub.loader via twisted.plugin; keep it thin."""

from wecross.evm.factory import EvmStubFactory

evm = EvmStubFactory()
