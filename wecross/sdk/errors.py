"""The SDK's exceptions: one class per family of router error codes, so callers can ``except`` what they can act on.

Every failure a client sees is a :class:`WeCrossError` carrying the router's stable ``code`` (the same catalogue as
``wecross/errors.py``), its ``message``, the HTTP ``status`` (``None`` when no answer came) and ``details``. The
class is chosen from the code first, then from the HTTP status family, so a stub-specific code the SDK has never
heard of (``insufficient_funds``...) still lands in the right family (:class:`Rejected` for 422).

This module has no dependency on the router package: the code -> class table is the SDK's own view of the catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The code of :class:`ConnectionError`: the client could not reach the router it was given, or lost it mid-request.
UNREACHABLE_ROUTER = "unreachable_router"
#: The code used when the router (or something in front of it) answered outside the JSON envelope.
INVALID_RESPONSE = "invalid_response"
#: The code of :class:`ConfigError`: the client was set up wrongly (URL, certificate files).
BAD_CONFIG = "bad_config"


class WeCrossError(Exception):
    """A failure with a stable code (for programs), a message (for people) and optional details.

    ``status`` is the HTTP status the router answered with; ``None`` when there was no answer (a transport failure)
    or when the SDK refused the request before sending it (e.g. an iPath that is not ``zone.chain.resource``).
    """

    def __init__(self, code: str, message: str, status: int | None = None,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(code, message, status, details)
        self.code = code
        self.message = message
        self.status = status
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        where = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.code}: {self.message}{where}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, status={self.status!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle through their args; keeping them in __init__'s order lets errors cross process pools.
        return (type(self), (self.code, self.message, self.status, self.details))


class BadRequest(WeCrossError):
    """The request itself was wrong (400, 405, 413, 415): fix the call, retrying will not help."""


class PermissionDenied(WeCrossError):
    """The caller's identity (the client certificate's CN) is missing or may not do this (401, 403)."""


class NotFound(WeCrossError):
    """No such endpoint, resource, chain, block, transaction or exchange (404)."""


class Conflict(WeCrossError):
    """The target is not in a state that allows the request (409): e.g. committing a rolled-back transaction."""


class Locked(Conflict):
    """State the request touches is held by an unfinished transaction; ``details`` or the message names it."""


class Rejected(WeCrossError):
    """The resource understood the operation and refused it (422): ``insufficient_funds``, ``reverted``..."""


class ProofInvalid(WeCrossError):
    """A result from another router failed verification at the entry router; nothing was returned as true.

    ``details["check"]`` names the check that failed.
    """


class Unreachable(WeCrossError):
    """The router could not get the request to, or an answer from, where it had to go (502, 503, 504).

    Reads may be retried; for a write, the operation may or may not have happened.
    """


class ConnectionError(Unreachable):  # shadows the builtin inside this package only; import it as sdk.ConnectionError
    """The client could not reach the router it was given, or lost it mid-request (code ``unreachable_router``).

    ``details["stage"]`` is ``connect``, ``tls``, ``send``, ``receive`` or ``timeout``; ``details["request_sent"]``
    says whether the router may have received the request (``True``, ``False``, or ``None`` when unknown): when it
    may have, a write may have happened.
    """


class ServerError(WeCrossError):
    """The router failed (500, 501) or answered something that is not the API's envelope (``invalid_response``)."""


class ConfigError(WeCrossError, ValueError):
    """The client was set up wrongly: a base URL it cannot use, certificate files missing or not matching."""

    def __init__(self, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(BAD_CONFIG, message, None, details)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.details))


_BY_CODE: dict[str, type[WeCrossError]] = {
    **dict.fromkeys(("bad_request", "bad_json", "bad_ipath", "bad_args", "unknown_method", "method_not_allowed",
                     "too_large", "unsupported_media_type"), BadRequest),
    **dict.fromkeys(("unauthenticated", "forbidden"), PermissionDenied),
    **dict.fromkeys(("not_found", "unknown_resource", "unknown_chain", "no_such_block", "unknown_tx"), NotFound),
    **dict.fromkeys(("tx_state", "htlc_state", "already_committed", "chain_clash"), Conflict),
    "locked": Locked,
    "proof_invalid": ProofInvalid,
    **dict.fromkeys(("unreachable", "unavailable", "overloaded", "shutting_down", "peer_lost", "hop_limit",
                     "bad_response", "rpc_error", "timeout"), Unreachable),
    UNREACHABLE_ROUTER: ConnectionError,
    **dict.fromkeys(("internal", "storage_error", "chain_store", "genesis_mismatch", "unsupported"), ServerError),
}


def _by_status(status: int | None) -> type[WeCrossError]:
    if status is None:
        return WeCrossError
    if status in (401, 403):
        return PermissionDenied
    if status == 404:
        return NotFound
    if status == 409:
        return Conflict
    if status == 422:
        return Rejected
    if status in (502, 503, 504):
        return Unreachable
    if status >= 500:
        return ServerError
    if 400 <= status < 500 and status != 499:
        return BadRequest
    return WeCrossError


def error_class(code: str, status: int | None) -> type[WeCrossError]:
    """The exception class for a router error: by code when the SDK knows it, else by the HTTP status family."""
    return _BY_CODE.get(code) or _by_status(status)


def make_error(code: str, message: str, status: int | None = None,
               details: Mapping[str, Any] | None = None) -> WeCrossError:
    """The exception for one error envelope (or one failure the SDK detected itself)."""
    return error_class(code, status)(code, message, status, details)


__all__ = [
    "BAD_CONFIG",
    "INVALID_RESPONSE",
    "UNREACHABLE_ROUTER",
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
    "Unreachable",
    "WeCrossError",
    "error_class",
    "make_error",
]
