"""The EVM stub's options: the ``[stubs.options]`` table of an ``evm`` stub, checked into :class:`EvmOptions`.

Every option is checked when the config is read, so a typo or a wrong type stops the router before it starts, with
the option named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class EvmOptions:
    """The ``options`` table of an evm stub."""

    rpc: str
    private_key_file: str | None = None
    private_key_env: str | None = None
    chain_id: int | None = None
    confirmations: int = 0
    poll_interval: float = 0.5
    receipt_timeout: float = 120.0
    rpc_timeout: float = 10.0
    gas_limit: int | None = None
    deploy: bool = False
    threads: int = 4

    @property
    def can_sign(self) -> bool:
        return self.private_key_file is not None or self.private_key_env is not None


_OPTION_HELP = {
    "rpc": "the node's JSON-RPC URL (http:// or https://), required",
    "private_key_file": "path of a file holding the router's hex signing key",
    "private_key_env": "name of an environment variable holding the router's hex signing key",
    "chain_id": "the chain id the node must report (checked at start)",
    "confirmations": "blocks on top of a transaction's block before its write is answered (default 0)",
    "poll_interval": "seconds between receipt polls (default 0.5)",
    "receipt_timeout": "seconds to wait for a receipt before answering 'timeout' (default 120)",
    "rpc_timeout": "seconds one JSON-RPC request may take (default 10)",
    "gas_limit": "gas for every transaction instead of eth_estimateGas",
    "deploy": "deploy resources that have no address at start (dev nets; default false)",
    "threads": "threads making RPC requests (default 4)",
}


def parse_options(where: str, options: Mapping[str, Any]) -> EvmOptions:
    """Check the options table; ValueError naming the option and what it must be."""
    unknown = sorted(set(options) - set(_OPTION_HELP))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(_OPTION_HELP)}")

    def fail(key: str, value: Any) -> ValueError:
        return ValueError(f"{where}: option {key!r} must be {_OPTION_HELP[key]}, not {value!r}")

    def integer(key: str, minimum: int) -> int | None:
        value = options.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise fail(key, value)
        return value

    def number(key: str, default: float) -> float:
        value = options.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1e6:
            raise fail(key, value)
        return float(value)

    def text(key: str) -> str | None:
        value = options.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise fail(key, value)
        return value

    rpc = options.get("rpc")
    if not isinstance(rpc, str) or not re.match(r"^https?://[^/\s]+", rpc):
        raise fail("rpc", rpc)
    key_file, key_env = text("private_key_file"), text("private_key_env")
    if key_file is not None and key_env is not None:
        raise ValueError(f"{where}: give one of the options 'private_key_file' and 'private_key_env', not both")
    deploy = options.get("deploy", False)
    if not isinstance(deploy, bool):
        raise fail("deploy", deploy)
    parsed = EvmOptions(
        rpc=rpc,
        private_key_file=key_file,
        private_key_env=key_env,
        chain_id=integer("chain_id", 1),
        confirmations=integer("confirmations", 0) or 0,
        poll_interval=number("poll_interval", 0.5),
        receipt_timeout=number("receipt_timeout", 120.0),
        rpc_timeout=number("rpc_timeout", 10.0),
        gas_limit=integer("gas_limit", 21000),
        deploy=deploy,
        threads=integer("threads", 1) or 4,
    )
    if deploy and not parsed.can_sign:
        raise ValueError(f"{where}: option 'deploy' needs a signing key: set 'private_key_file' or 'private_key_env'")
    return parsed
