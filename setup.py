"""Packaging for WeCross-Py.

The twistd plugin lives in ``twisted/plugins/`` of this repository. Twisted finds it through any ``sys.path`` entry
that has a ``twisted/plugins`` directory, so the development install (``make``) is an editable install in "compat"
mode, which puts this directory on ``sys.path``; a regular install copies the drop-in into site-packages instead.
"""

from setuptools import find_packages, setup

setup(
    name="wecross-py",
    version="0.1.0",
    description="Cross-chain router network on Twisted: P2P overlay, proofs, transactions",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["wecross", "wecross.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/wecross_plugin.py"],
                  "wecross.evm": ["contracts/*.sol", "contracts/build/*.json"],
                  "wecross.ui": ["*.html", "*.js", "*.css"]},
    data_files=[("share/wecross/plugins", ["plugins/embedded.py", "plugins/evm.py"])],
    install_requires=[
        "twisted[tls]>=24.7",
        "pyopenssl>=24.0",
        "service_identity>=24.1",
        "cryptography>=45",  # deterministic ECDSA (RFC 6979) for gossip records
        "msgpack>=1.0.8",
        "networkx>=3.2",
        "matplotlib>=3.8",  # wecross sim plots
        "web3>=7.0",  # the EVM stub (Ethereum JSON-RPC, FISCO BCOS 3 web3 RPC)
        "eth-account>=0.13",
        "eth-abi>=5.0",
        "eth-utils>=5.0",
        "requests>=2.31",
        "prometheus-client>=0.20",
        "prompt_toolkit>=3.0.43",
        "trie>=3.0",  # Merkle-Patricia proofs of EVM transactions and receipts
        "rlp>=4.0",
    ],
    extras_require={
        "test": ["hypothesis>=6.100", "mypy>=1.10", "ruff>=0.5", "schemathesis>=4.0", "pexpect>=4.9",
                 "import-linter>=2.0"],
    },
    entry_points={"console_scripts": ["wecross=wecross.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3.11",
        "Topic :: System :: Networking",
    ],
)
