"""The error catalogue: one stable code per failure a user or a peer can see.

The same code travels in a wire ERROR frame, in a REST error body and in an SDK exception, so a client can act on
it without parsing messages. HTTP status is derived from the code here and nowhere else.
"""

from __future__ import annotations

from typing import Any

#: code -> HTTP status. Stub-specific codes not listed here (``insufficient_funds``...) map to 422.
HTTP_STATUS: dict[str, int] = {
    "bad_request": 400,
    "bad_json": 400,
    "bad_ipath": 400,
    "bad_args": 400,
    "unknown_method": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "unknown_resource": 404,
    "unknown_chain": 404,
    "no_such_block": 404,
    "method_not_allowed": 405,
    "chain_clash": 409,
    "locked": 409,  # state held by a transaction that is not finished (2PC)
    "tx_state": 409,  # the transaction is not in a state that allows the request
    "already_committed": 409,
    "htlc_state": 409,
    "unknown_tx": 404,
    "too_large": 413,
    "cancelled": 499,
    "insufficient_funds": 422,
    "overflow": 422,
    "reverted": 422,
    "unsupported_media_type": 415,
    "internal": 500,
    "storage_error": 500,
    "chain_store": 500,
    "genesis_mismatch": 500,
    "unsupported": 422,  # the resource or router does not offer this: the request itself was fine, but cannot be done
    "peer_lost": 502,
    "hop_limit": 502,
    "bad_response": 502,
    "rpc_error": 502,  # a chain node (EVM JSON-RPC) failed or answered nonsense
    "proof_invalid": 502,  # a result or header from upstream failed verification: nothing was returned as true
    # A request refused by its owner before anything ran: its end-to-end signature (wecross.attest) failed, i.e. it
    # was altered on the way or its origin is not who it claims; the signer's record may not have reached the
    # owner yet (unknown_signer, retry later).
    "bad_signature": 502,
    "unknown_signer": 503,
    "unreachable": 503,
    "unavailable": 503,
    "overloaded": 503,
    "shutting_down": 503,
    "timeout": 504,
}


class RouterError(Exception):
    """A failure with a stable code, a message for humans and optional details (never a traceback)."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 422)

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"RouterError({self.code!r}, {self.message!r})"
