"""Python SDK for a WeCross router's REST API (docs/sdk.md).

``WeCrossClient`` is the blocking client; ``AsyncWeCrossClient`` the Twisted one, with the same methods returning
Deferreds. Both raise (or fail with) :class:`WeCrossError` subclasses chosen by the router's error code. The async
client is imported on first use, so a script using only the blocking client does not load twisted.web.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wecross.sdk.client import Transaction, WeCrossClient
from wecross.sdk.errors import (
    BadRequest,
    ConfigError,
    Conflict,
    ConnectionError,
    Locked,
    NotFound,
    PermissionDenied,
    ProofInvalid,
    Rejected,
    ServerError,
    Unreachable,
    WeCrossError,
)

if TYPE_CHECKING:
    from wecross.sdk.async_client import AsyncTransaction, AsyncWeCrossClient


def __getattr__(name: str) -> Any:
    if name in ("AsyncWeCrossClient", "AsyncTransaction"):
        from wecross.sdk import async_client

        return getattr(async_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AsyncTransaction",
    "AsyncWeCrossClient",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "ConnectionError",
    "Locked",
    "NotFound",
    "PermissionDenied",
    "ProofInvalid",
    "Rejected",
    "ServerError",
    "Transaction",
    "Unreachable",
    "WeCrossClient",
    "WeCrossError",
]
