"""The EVM stub's options: the ``[stubs.options]`` table of an ``evm`` stub, checked into :class:`EvmOptions`.

Every option is checked when the config is read, so a typo or a wrong type stops the router before it starts, with
the option named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

#: Units an amount of ether may be written in (``fund_new_accounts = "0.1 ether"``), in wei.
UNITS = {"wei": 1, "gwei": 10**9, "ether": 10**18}


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
    #: Writes to generic ``contract`` resources are signed with the sender's own key from the router's keystore.
    per_user_accounts: bool = False
    #: Wei the router's key sends to a user's account before its first write in this stub's life when the account
    #: holds nothing (dev chains; 0: never).
    fund_new_accounts: int = 0

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
    "per_user_accounts": "sign writes to 'contract' resources with the sender's own key from the router's keystore "
                         "(default false: every write with the router's key)",
    "fund_new_accounts": "an amount such as \"0.1 ether\", \"50 gwei\" or wei as an integer, sent from the router's "
                         "key to a user's empty account before its first write (dev chains; default 0: never)",
}


def parse_amount(value: Any) -> int | None:
    """Wei from an integer or ``"<number> <unit>"`` (wei, gwei, ether); None if it is neither or not whole wei."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    parts = value.strip().lower().split()
    if len(parts) == 1:
        parts.append("wei")
    if len(parts) != 2 or parts[1] not in UNITS or len(parts[0]) > 40:
        return None
    try:
        amount = Decimal(parts[0]) * UNITS[parts[1]]
    except ArithmeticError:  # InvalidOperation, Overflow
        return None
    if not amount.is_finite() or not 0 <= amount < 2**256 or amount != amount.to_integral_value():
        return None
    return int(amount)


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
    per_user = options.get("per_user_accounts", False)
    if not isinstance(per_user, bool):
        raise fail("per_user_accounts", per_user)
    fund = parse_amount(options.get("fund_new_accounts", 0))
    if fund is None:
        raise fail("fund_new_accounts", options.get("fund_new_accounts"))
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
        per_user_accounts=per_user,
        fund_new_accounts=fund,
    )
    if deploy and not parsed.can_sign:
        raise ValueError(f"{where}: option 'deploy' needs a signing key: set 'private_key_file' or 'private_key_env'")
    if fund and not per_user:
        raise ValueError(f"{where}: option 'fund_new_accounts' funds the accounts of 'per_user_accounts', which is off")
    if fund and not parsed.can_sign:
        raise ValueError(f"{where}: option 'fund_new_accounts' sends from the router's key: set 'private_key_file' "
                         "or 'private_key_env'")
    return parsed
