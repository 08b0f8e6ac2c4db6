"""Sans-IO wire protocol of the router-to-router link: frames, messages, limits, errors.

No Twisted here: the peer protocol and the simulator's in-memory links both drive the same code. See
``docs/wire-protocol.md`` for the byte-level format.
"""

from wecross.wire.codec import PREFIX_LEN, Envelope, FrameDecoder, decode_frame, encode_frame
from wecross.wire.errors import REASONS, WireError
from wecross.wire.limits import DEFAULT_LIMITS, Limits
from wecross.wire.messages import (
    HOP_LIMIT_MAX,
    MESSAGE_TYPES,
    NAME_MAX,
    PROTOCOL_VERSION,
    REQUEST_ID_LEN,
    SUPPORTED_VERSIONS,
    U64_MAX,
    Bye,
    Error,
    Event,
    GossipDigest,
    GossipRecords,
    GossipSummary,
    Hello,
    Message,
    Ping,
    Pong,
    Request,
    Response,
    negotiate_version,
    validate,
)

__all__ = [
    "DEFAULT_LIMITS",
    "HOP_LIMIT_MAX",
    "MESSAGE_TYPES",
    "NAME_MAX",
    "PREFIX_LEN",
    "PROTOCOL_VERSION",
    "REASONS",
    "REQUEST_ID_LEN",
    "SUPPORTED_VERSIONS",
    "U64_MAX",
    "Bye",
    "Envelope",
    "Error",
    "Event",
    "FrameDecoder",
    "GossipDigest",
    "GossipRecords",
    "GossipSummary",
    "Hello",
    "Limits",
    "Message",
    "Ping",
    "Pong",
    "Request",
    "Response",
    "WireError",
    "decode_frame",
    "encode_frame",
    "negotiate_version",
    "validate",
]
