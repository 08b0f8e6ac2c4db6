"""The one exception the wire layer lets out.

A link that reads a bad frame must close with a reason and bump a counter per reason, so the reason is a short code
from a closed set rather than free text. Everything that can go wrong inside msgpack or inside our own checks is
translated into a :class:`WireError` before it leaves :mod:`wecross.wire`; callers catch one type and never see a
traceback from a peer's bytes.
"""

from __future__ import annotations

#: Every reason code, with what it means. The peer layer uses these as counter labels and in BYE/ERROR messages.
REASONS: dict[str, str] = {
    "oversize": "a frame's length prefix (or an outgoing frame) exceeds Limits.max_frame",
    "truncated": "the stream or a frame body ended in the middle of a value",
    "malformed": "bytes that are not msgpack, or not shaped like an envelope",
    "version": "an envelope version this side does not speak",
    "unknown_type": "a message type code this side does not know",
    "schema": "a message field has the wrong type or a value outside its allowed range",
    "limits": "a value is nested too deeply or is longer than a Limits bound allows",
}


class WireError(Exception):
    """A frame or message that cannot be accepted; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            # A typo in a reason would silently create a new counter label; fail loudly where the bug is.
            raise ValueError(f"unknown WireError reason {reason!r}; expected one of {sorted(REASONS)}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"WireError({self.reason!r}, {self.message!r})"
