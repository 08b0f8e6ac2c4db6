"""Bounds on what a peer may make this process allocate or recurse into.

A router reads frames from other routers it does not fully trust (a bug or a compromised peer is enough), so every
size and depth that a frame controls has a ceiling here. The same object configures both directions: outgoing
messages are checked against it so a well-behaved sender never produces a frame its peer would reject.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

#: The length prefix is 4 bytes, so no frame body can be longer than this.
PREFIX_MAX = 2**32 - 1
#: Free-form values are checked recursively; this keeps the recursion far below Python's and msgpack's own limits.
DEPTH_CAP = 256
#: Every message body is a msgpack array (the longest has 11 fields), so the array bound can't go below this.
LIST_FLOOR = 16
#: Typed name fields (router ids, zones, method names...) may be up to 256 characters; max_str must admit them.
STR_FLOOR = 256
#: Request ids are 16 bytes; max_bin must admit them.
BIN_FLOOR = 16
#: Smallest frame that can hold a useful message.
FRAME_FLOOR = 64


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-link decoding limits (the defaults suit a LAN/WAN router mesh).

    Sizes: ``max_frame`` and ``max_bin`` in bytes, ``max_str`` in characters, ``max_list``/``max_map`` in items;
    ``max_depth`` in nested containers of a free-form value, the field's own list or map being level 1.
    """

    max_frame: int = 16 * 1024 * 1024
    max_depth: int = 32
    max_str: int = 1 * 1024 * 1024
    max_bin: int = 16 * 1024 * 1024
    max_list: int = 100_000
    max_map: int = 100_000

    def __post_init__(self) -> None:
        bounds = {
            "max_frame": (FRAME_FLOOR, PREFIX_MAX),
            "max_depth": (1, DEPTH_CAP),
            "max_str": (STR_FLOOR, PREFIX_MAX),
            "max_bin": (BIN_FLOOR, PREFIX_MAX),
            "max_list": (LIST_FLOOR, PREFIX_MAX),
            "max_map": (1, PREFIX_MAX),
        }
        for f in fields(self):
            value = getattr(self, f.name)
            low, high = bounds[f.name]
            # bool is an int subclass; "max_depth = true" in a config file is a mistake, not 1.
            if type(value) is not int or not low <= value <= high:
                raise ValueError(f"Limits.{f.name} must be an integer from {low} to {high}, got {value!r}")


#: The limits used when none are given (message construction, encode_frame, FrameDecoder()).
DEFAULT_LIMITS = Limits()
