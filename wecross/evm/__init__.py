"""The EVM stub: any Ethereum JSON-RPC node (anvil, geth, besu, FISCO BCOS 3 in web3 mode) as a WeCross chain.

``plugins/evm.py`` exposes :class:`wecross.evm.factory.EvmStubFactory` (``type = "evm"``); the code is in
:mod:`wecross.evm.stub`, the built-in contracts (HelloWeCross, AssetLedger) in ``contracts/`` with their compiled
artifacts in ``contracts/build/``, and :mod:`wecross.evm.anvil` runs a local anvil for tests and the demo.
"""
