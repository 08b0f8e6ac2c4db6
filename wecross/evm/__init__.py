"""The EVM stub: any Ethereum JSON-RPC node (anvil, geth, besu, FISCO BCOS 3 in web3 mode) as a WeCross chain.

``plugins/evm.py`` exposes :class:`wecross.evm.factory.EvmStubFactory` (``type = "evm"``); the stub is
:class:`wecross.evm.stub.EvmStub` (its parts in the modules beside it, one concern each: docs/stubs.md lists them),
what an entry router checks on an EVM result is :mod:`wecross.evm.verifier` over :mod:`wecross.evm.checks` and
:mod:`wecross.evm.mpt`, the built-in contracts (HelloWeCross, AssetLedger) in ``contracts/`` with their compiled
artifacts in ``contracts/build/``, and :mod:`wecross.evm.anvil` runs a local anvil for tests and the demo.
"""
