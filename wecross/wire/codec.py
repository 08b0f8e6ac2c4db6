"""Frames on a byte stream: a 4-byte big-endian length, then a msgpack envelope.

The envelope is the array ``[version, type_code, msg_id, body]`` and the body is the message's fields as an array
(see :mod:`wecross.wire.messages`). Nothing here does I/O: the peer protocol hands received bytes to
:class:`FrameDecoder` and writes what :func:`encode_frame` returns, and the simulator does the same over its
in-memory links.

Whatever a peer sends, the only exception that leaves this module is :class:`WireError`; msgpack's exceptions,
UnicodeDecodeError, RecursionError and the rest are translated at the two places where peer bytes are parsed.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgpack

from wecross.wire.errors import WireError
from wecross.wire.limits import DEFAULT_LIMITS, PREFIX_MAX, Limits
from wecross.wire.messages import (
    BODY_DECODERS,
    BODY_ENCODERS,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    U64_MAX,
    Message,
    _twin,
    validate,
)

__all__ = ["PREFIX_LEN", "Envelope", "FrameDecoder", "decode_frame", "encode_frame"]

#: Bytes of the length prefix in front of every frame body.
PREFIX_LEN = 4
#: The prefix as a Struct: reading it this way takes half the time of int.from_bytes(..., "big") (90 vs 170 ns).
_PREFIX = struct.Struct(">I")

#: Largest piece of received data handed to msgpack at once.
_PIECE = 64 * 1024
#: Frames above this size make the decoder renew its msgpack buffer afterwards (a new Unpacker: ~2 µs, nothing
#: next to decoding such a frame), so a burst of large frames (gossip records at start-up) does not leave every
#: idle link holding a 64-128 KiB buffer: it was 2 GB of a simulated 5,000-router network.
_RENEW_ABOVE = 16 * 1024


@dataclass(frozen=True, slots=True)
class Envelope:
    """One decoded frame: the version it was written in, its per-link id and the message."""

    version: int
    msg_id: int
    message: Message


#: See messages._twin: building envelopes without the frozen __init__ (None if this interpreter can't).
_EnvelopeTwin: Any = _twin(Envelope)
_new = object.__new__


# --------------------------------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------------------------------

#: Holds one msgpack Packer per thread (a Packer keeps a buffer, so threads must not share one). Reusing a Packer
#: takes 0.65 µs per typical REQUEST envelope against 0.94 µs for msgpack.packb, which builds one per call; with
#: ``strict_types`` it takes 0.46 µs: only exact types are tested for, and only lists become arrays, which is all
#: that message validation lets through anyway (encoders therefore return lists, not tuples).
_local = threading.local()


@lru_cache(maxsize=32)
def _within_default(limits: Limits) -> bool:
    """True if every message valid under DEFAULT_LIMITS (as checked at construction) is valid under ``limits``."""
    return (
        limits.max_depth >= DEFAULT_LIMITS.max_depth
        and limits.max_str >= DEFAULT_LIMITS.max_str
        and limits.max_bin >= DEFAULT_LIMITS.max_bin
        and limits.max_list >= DEFAULT_LIMITS.max_list
        and limits.max_map >= DEFAULT_LIMITS.max_map
    )


def encode_frame(
    msg_id: int, message: Message, *, limits: Limits = DEFAULT_LIMITS, version: int = PROTOCOL_VERSION
) -> bytes:
    """Length prefix + envelope for ``message``, ready to write to the transport.

    ``msg_id`` is the link's sequence number for this frame (1..2**64-1); a Response or Error quotes it in
    ``reply_to``. ``limits`` should be the receiving side's: a frame the peer would reject is refused here
    ('oversize' above max_frame; with limits tighter than the defaults the message is also re-validated against
    them, since construction only checked it against :data:`DEFAULT_LIMITS`).
    """
    encode = BODY_ENCODERS.get(type(message))
    if encode is None:
        raise WireError("schema", f"{type(message).__name__} is not a wire message")
    if type(msg_id) is not int or not 0 < msg_id <= U64_MAX:
        raise WireError("schema", f"{message.NAME}: msg_id must be an integer from 1 to 2**64-1, got {msg_id!r}")
    if version not in SUPPORTED_VERSIONS:
        raise WireError("version", f"cannot write envelope version {version!r}; supported: {SUPPORTED_VERSIONS}")
    if limits is not DEFAULT_LIMITS and not _within_default(limits):
        validate(message, limits)
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True, datetime=False, strict_types=True)
    try:
        body: bytes = packer.pack([version, message.TYPE, msg_id, encode(message)])
    except Exception as exc:
        # Reachable when a list or dict inside the message was mutated after construction, or when a str holds a
        # lone surrogate (valid in Python, e.g. from a JSON "\ud800" escape, but not encodable as UTF-8).
        raise WireError("schema", f"{message.NAME}: cannot encode ({type(exc).__name__}: {exc})") from None
    size = len(body)
    if size > limits.max_frame:
        raise WireError("oversize", f"{message.NAME} frame of {size} bytes exceeds max_frame {limits.max_frame}")
    return _PREFIX.pack(size) + body


# --------------------------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------------------------


class _ExtensionRejected(Exception):
    """Raised from msgpack's ext_hook: extension types could smuggle arbitrary objects, so none are accepted."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _reject_extension(code: int, data: bytes) -> Any:
    raise _ExtensionRejected(code)


@lru_cache(maxsize=32)
def _unpack_options(limits: Limits) -> dict[str, Any]:
    return {
        "raw": False,  # str stays str (and invalid UTF-8 is an error), bin stays bytes
        "strict_map_key": True,  # map keys str/bytes only; bytes keys are refused by the message checks
        "use_list": True,
        "ext_hook": _reject_extension,
        # max_str counts characters (what construction can check cheaply); UTF-8 needs at most 4 bytes for each,
        # and the message checks then hold every decoded str to max_str characters.
        "max_str_len": min(4 * limits.max_str, PREFIX_MAX),
        "max_bin_len": limits.max_bin,
        "max_array_len": limits.max_list,
        "max_map_len": limits.max_map,
        "max_ext_len": limits.max_bin,
    }


def _translate(exc: BaseException) -> WireError:
    """Map whatever msgpack raised on peer bytes to a WireError with the closest reason."""
    if isinstance(exc, WireError):
        return exc
    if isinstance(exc, _ExtensionRejected):
        return WireError("schema", f"msgpack extension type {exc.code} is not allowed")
    if isinstance(exc, msgpack.StackError):
        return WireError("limits", "values nested deeper than the msgpack decoder's stack")
    if isinstance(exc, msgpack.OutOfData):
        return WireError("truncated", "frame body ends in the middle of a value")
    if isinstance(exc, msgpack.ExtraData):
        return WireError("malformed", "trailing bytes after the envelope")
    if isinstance(exc, UnicodeDecodeError):
        return WireError("malformed", f"string is not valid UTF-8 ({exc.reason} at byte {exc.start})")
    if isinstance(exc, ValueError):
        # msgpack reports these as plain ValueError; its wording is the only thing that tells them apart.
        text = str(exc)
        if "exceeds max_" in text:
            return WireError("limits", text)
        if "not allowed for map key" in text:
            return WireError("schema", f"map keys must be strings ({text})")
        if "incomplete input" in text:
            return WireError("truncated", "frame body ends in the middle of a value")
    return WireError("malformed", f"undecodable msgpack ({type(exc).__name__})")


def _open_envelope(obj: Any, limits: Limits) -> Envelope:
    if type(obj) is list and len(obj) == 4:
        version, code, msg_id, body = obj
        # One combined test for the common case; the branches below only word the error.
        if (
            type(version) is int
            and version in SUPPORTED_VERSIONS
            and type(code) is int
            and (decode := BODY_DECODERS.get(code)) is not None
            and type(msg_id) is int
            and 0 < msg_id <= U64_MAX
            and type(body) is list
        ):
            try:
                message = decode(body, limits)
            except RecursionError:
                raise WireError("limits", "value nested too deeply") from None
            if _EnvelopeTwin is None:
                return Envelope(version, msg_id, message)
            envelope = _new(_EnvelopeTwin)
            envelope.version = version
            envelope.msg_id = msg_id
            envelope.message = message
            envelope.__class__ = Envelope
            return envelope  # type: ignore[no-any-return]
        if type(version) is not int:
            raise WireError("malformed", "envelope version must be an integer")
        if version not in SUPPORTED_VERSIONS:
            raise WireError("version", f"envelope version {version} not supported (supported: {SUPPORTED_VERSIONS})")
        if type(code) is not int:
            raise WireError("malformed", "envelope type code must be an integer")
        if code not in BODY_DECODERS:
            raise WireError("unknown_type", f"unknown message type code {code}")
        if type(msg_id) is not int or not 0 < msg_id <= U64_MAX:
            raise WireError("malformed", "envelope msg_id must be an integer from 1 to 2**64-1")
    raise WireError("malformed", "envelope must be an array [version, type, msg_id, body]")


def decode_frame(body: bytes, limits: Limits = DEFAULT_LIMITS) -> Envelope:
    """Decode one frame body (without its length prefix)."""
    if len(body) > limits.max_frame:
        raise WireError("oversize", f"frame of {len(body)} bytes exceeds max_frame {limits.max_frame}")
    if not body:
        raise WireError("malformed", "empty frame")
    try:
        obj = msgpack.unpackb(body, **_unpack_options(limits))
    except Exception as exc:
        raise _translate(exc) from None
    return _open_envelope(obj, limits)


class FrameDecoder:
    """Turns the bytes of one connection, in chunks of any size, into envelopes.

    The first bad frame raises :class:`WireError` and poisons the decoder: a stream whose framing or content went
    wrong once cannot be resynchronised, so every later ``feed`` raises the same error and the link must close.
    Envelopes that preceded the bad frame in the same ``feed`` call are dropped with it.

    Received bytes live in the msgpack Unpacker's own buffer (we read each length prefix out of it with
    ``read_bytes``), so a frame body is never copied in Python and the option keywords are parsed once per link
    (``msgpack.unpackb`` parses them on every call: about 0.5 µs per frame). A chunk that is exactly one frame, with
    nothing buffered before it, skips the general loop's bookkeeping: that is what a link carrying one request at
    a time receives, and the short path saves 2-4 % of a typical REQUEST's decoding time.
    """

    __slots__ = ("_error", "_limits", "_offset", "_pending", "_recycle", "_size", "_unpacker")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._error: WireError | None = None
        self._unpacker = self._new_unpacker()
        self._offset = 0  # Unpacker stream position where the current frame's body starts (or the next prefix)
        self._pending = 0  # bytes in the Unpacker's buffer not yet consumed as prefix or body
        self._size = -1  # body length announced by the prefix already read, or -1 while waiting for a prefix
        self._recycle = False  # a large frame grew the Unpacker's buffer; replace it once drained

    def _new_unpacker(self) -> msgpack.Unpacker:
        # The buffer must hold one incomplete frame plus the piece being fed; read_size is the initial allocation,
        # kept small because a simulator may run thousands of links.
        return msgpack.Unpacker(
            max_buffer_size=self._limits.max_frame + PREFIX_LEN + _PIECE,
            read_size=4096,
            **_unpack_options(self._limits),
        )

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return self._pending + (PREFIX_LEN if self._size >= 0 else 0)

    @property
    def error(self) -> WireError | None:
        """The error that poisoned this decoder, if any."""
        return self._error

    def feed(self, data: bytes | bytearray | memoryview) -> list[Envelope]:
        """Add received bytes; return the envelopes of every frame they complete, in order."""
        if self._error is not None:
            raise self._error.with_traceback(None)
        length = len(data)
        if (
            self._size < 0
            and not self._pending
            and PREFIX_LEN < length <= _PIECE
            and _PREFIX.unpack_from(data)[0] == length - PREFIX_LEN <= self._limits.max_frame
        ):
            # Short path (see the class docstring); every error is the same as the general loop's below.
            unpacker = self._unpacker
            end = self._offset + length
            try:
                unpacker.feed(data)
                unpacker.read_bytes(PREFIX_LEN)
                obj = unpacker.unpack()
                if unpacker.tell() != end:
                    # Nothing follows in the buffer, so the value can only have ended early.
                    raise WireError("malformed", "trailing bytes after the envelope")
                self._offset = end
                envelope = _open_envelope(obj, self._limits)
            except Exception as exc:
                raise self._poison(_translate(exc)) from None
            if length > _RENEW_ABOVE:
                self._unpacker = self._new_unpacker()  # nothing is pending: the frame was the whole chunk
                self._offset = 0
            return [envelope]
        envelopes: list[Envelope] = []
        if len(data) > _PIECE:
            # Bounded pieces keep the Unpacker's buffer within max_frame + one piece, whatever the chunk size.
            view = memoryview(data)
            for at in range(0, len(view), _PIECE):
                envelopes += self.feed(view[at : at + _PIECE])
            return envelopes
        unpacker = self._unpacker
        limits = self._limits
        size = self._size
        offset = self._offset
        try:
            unpacker.feed(data)
            pending = self._pending + len(data)
            while True:
                if size < 0:
                    if pending < PREFIX_LEN:
                        break
                    (size,) = _PREFIX.unpack(unpacker.read_bytes(PREFIX_LEN))
                    pending -= PREFIX_LEN
                    offset += PREFIX_LEN
                    if size > limits.max_frame:
                        # Decided from the prefix alone: never wait for (or buffer) a body we would refuse.
                        raise WireError("oversize", f"frame length {size} exceeds max_frame {limits.max_frame}")
                    if size == 0:
                        raise WireError("malformed", "empty frame")
                if pending < size:
                    break
                try:
                    obj = unpacker.unpack()
                except Exception as exc:
                    raise _translate(exc) from None
                offset += size
                used = unpacker.tell()
                if used != offset:
                    # The value ended before the frame did, or ran on into the next frame's bytes.
                    if used < offset:
                        raise WireError("malformed", "trailing bytes after the envelope")
                    raise WireError("truncated", "frame body ends in the middle of a value")
                pending -= size
                if size > _RENEW_ABOVE:
                    self._recycle = True
                size = -1
                envelopes.append(_open_envelope(obj, limits))
        except Exception as exc:  # BufferFull and the like: only a bug here could cause them, but never leak one
            raise self._poison(_translate(exc)) from None
        self._pending = pending
        self._size = size
        self._offset = offset
        if self._recycle:
            self._renew()
        return envelopes

    def _renew(self) -> None:
        """Swap in a fresh Unpacker (carrying over unconsumed bytes) so a past large frame's buffer is freed."""
        rest = self._unpacker.read_bytes(self._pending)
        self._unpacker = self._new_unpacker()
        self._unpacker.feed(rest)
        self._offset = 0
        self._recycle = False

    def eof(self) -> None:
        """The connection ended: a partial frame still buffered means the peer's last frame was cut short."""
        if self._error is not None:
            raise self._error.with_traceback(None)
        if self.buffered:
            raise self._poison(
                WireError("truncated", f"connection ended inside a frame ({self.buffered} bytes buffered)")
            )

    def _poison(self, error: WireError) -> WireError:
        self._error = error
        # Drop the buffered bytes now rather than when the link object goes away.
        self._unpacker = self._new_unpacker()
        self._pending = 0
        self._size = -1
        return error
