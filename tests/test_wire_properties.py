"""Property tests of the wire codec: round trips, hostile input, and arbitrary chunking of the byte stream."""

from __future__ import annotations

import contextlib
import itertools
import random
from typing import Any, cast

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wecross.wire import (
    Bye,
    Envelope,
    Error,
    Event,
    FrameDecoder,
    GossipDigest,
    GossipRecords,
    GossipSummary,
    Hello,
    Limits,
    Message,
    Ping,
    Pong,
    Request,
    Response,
    WireError,
    decode_frame,
    encode_frame,
)
from wecross.wire.messages import (
    _check_request,
    _check_response,
    _explain_request,
    _explain_response,
    _free,
    _free_ok,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

U64 = st.integers(min_value=0, max_value=2**64 - 1)
# Any text msgpack can carry: lone surrogates have no UTF-8 form (encode_frame refuses them; tested elsewhere).
TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
NAME = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=30)
SHORT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)
PART = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
IPATH = st.builds(lambda z, c, r: f"{z}.{c}.{r}", PART, PART, PART)
REQUEST_ID = st.binary(min_size=16, max_size=16)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)  # NaN != NaN would defeat the equality check, not the codec
    | TEXT
    | st.binary(max_size=40)
)
# Nesting stays within the default max_depth (32) because max_leaves bounds the tree.
FREE = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(TEXT, children, max_size=5),
    max_leaves=25,
)

REQUESTS = st.builds(
    Request,
    REQUEST_ID,
    NAME,
    NAME,
    st.integers(0, 255),
    U64,
    st.lists(NAME, max_size=6),
    NAME,
    SHORT,
    SHORT,
    st.lists(FREE, max_size=6),
    TEXT,
)
RESPONSES = st.builds(
    Response, st.integers(1, 2**64 - 1), REQUEST_ID, st.dictionaries(TEXT, FREE, max_size=6), st.lists(NAME, max_size=6)
)

MESSAGES: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        Hello,
        NAME,
        st.lists(st.integers(1, 65535), min_size=1, max_size=5),
        st.lists(NAME, max_size=4),
        st.lists(NAME, max_size=4),
        st.just("") | st.builds(lambda h, p: f"{h}:{p}", PART, st.integers(1, 65535)),
        U64,
    ),
    st.builds(Bye, TEXT),
    st.builds(Ping, U64, st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(Pong, U64, st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(GossipDigest, st.dictionaries(NAME, st.lists(U64, min_size=2, max_size=2), max_size=6)),
    st.builds(GossipRecords, st.lists(st.binary(min_size=1, max_size=64), max_size=6)),
    st.builds(GossipSummary, U64, st.binary(min_size=16, max_size=16)),
    REQUESTS,
    RESPONSES,
    st.builds(Error, st.integers(1, 2**64 - 1), REQUEST_ID, NAME, TEXT, st.lists(NAME, max_size=6)),
    st.builds(Error, st.just(0), st.just(b"") | REQUEST_ID, NAME, TEXT, st.lists(NAME, max_size=6)),
    st.builds(Event, IPATH, NAME, FREE),
)


def _nest(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


#: Deeper than the default max_depth of 32.
DEEP = _nest(40)

MSG_IDS = st.integers(min_value=1, max_value=2**64 - 1)
FRAMES = st.lists(st.tuples(MSG_IDS, MESSAGES), min_size=1, max_size=5)


def stream_of(frames: list[tuple[int, Message]]) -> bytes:
    return b"".join(encode_frame(msg_id, message) for msg_id, message in frames)


def expected(frames: list[tuple[int, Message]]) -> list[Envelope]:
    return [Envelope(1, msg_id, message) for msg_id, message in frames]


def feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[Envelope]:
    out: list[Envelope] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


class RoundTripProperties(SynchronousTestCase):
    @SETTINGS
    @given(MSG_IDS, MESSAGES)
    def test_encode_decode_round_trip(self, msg_id: int, message: Message) -> None:
        frame = encode_frame(msg_id, message)
        self.assertEqual(FrameDecoder().feed(frame), [Envelope(1, msg_id, message)])
        self.assertEqual(decode_frame(frame[4:]), Envelope(1, msg_id, message))
        # Decoding then re-encoding reproduces the same bytes: nothing is lost or normalised on the way.
        self.assertEqual(encode_frame(msg_id, decode_frame(frame[4:]).message), frame)


class HostileInputProperties(SynchronousTestCase):
    def assertOnlyWireError(self, decoder: FrameDecoder, data: bytes) -> None:
        try:
            decoder.feed(data)
            decoder.eof()
        except WireError:
            pass  # anything else propagates and fails the test

    @SETTINGS
    @given(st.binary(max_size=300))
    def test_random_bytes(self, data: bytes) -> None:
        self.assertOnlyWireError(FrameDecoder(), data)
        self.assertOnlyWireError(FrameDecoder(Limits(max_frame=128, max_depth=2, max_list=16, max_map=2)), data)
        with contextlib.suppress(WireError):
            decode_frame(data)

    @SETTINGS
    @given(st.binary(max_size=300))
    def test_random_bodies_behind_a_valid_prefix(self, body: bytes) -> None:
        """Random bytes behind a correct length prefix reach msgpack and the envelope checks, not just framing."""
        self.assertOnlyWireError(FrameDecoder(), len(body).to_bytes(4, "big") + body)

    @SETTINGS
    @given(FRAMES, st.randoms(use_true_random=False), st.integers(1, 8))
    def test_mutated_valid_frames(self, frames: list[tuple[int, Message]], rnd: random.Random, edits: int) -> None:
        data = bytearray(stream_of(frames))
        for _ in range(edits):
            action = rnd.choice(("flip", "set", "insert", "delete"))
            at = rnd.randrange(len(data)) if data else 0
            if action == "flip" and data:
                data[at] ^= 1 << rnd.randrange(8)
            elif action == "set" and data:
                data[at] = rnd.choice((0x00, 0xC1, 0xC7, 0xD4, 0xDC, 0xDD, 0xDE, 0xDF, 0xFF, rnd.randrange(256)))
            elif action == "insert":
                data[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 4)))
            elif data:
                del data[at : at + rnd.randrange(1, 4)]
        self.assertOnlyWireError(FrameDecoder(), bytes(data))

    @SETTINGS
    @given(MESSAGES, st.randoms(use_true_random=False))
    def test_mutated_bodies_behind_correct_prefixes(self, message: Message, rnd: random.Random) -> None:
        """Flip bytes inside the msgpack body and fix the prefix, so every mutation is judged by the decoder."""
        body = bytearray(encode_frame(1, message)[4:])
        for _ in range(rnd.randrange(1, 4)):
            body[rnd.randrange(len(body))] = rnd.randrange(256)
        self.assertOnlyWireError(FrameDecoder(), len(body).to_bytes(4, "big") + bytes(body))

    @SETTINGS
    @given(st.data())
    def test_fast_checks_agree_with_reference_rules(self, data: st.DataObject) -> None:
        """The inlined hot-path checks of Request/Response accept and reject exactly what the reference rules do."""
        junk = st.one_of(
            SCALARS,
            st.lists(SCALARS, max_size=3),
            st.just("x" * 257),
            st.just(b"\x00" * 16),
            st.just(["ok", ""]),
            st.integers(-5, 300),
            st.just({b"k": 1}),
            st.just(DEEP),
        )
        for strategy, fast, reference in (
            (REQUESTS, _check_request, _explain_request),
            (RESPONSES, _check_response, _explain_response),
        ):
            message = cast(Message, data.draw(strategy))
            body = list(msgpack.unpackb(encode_frame(1, message)[4:])[3])
            for _ in range(data.draw(st.integers(1, 2))):
                body[data.draw(st.integers(0, len(body) - 1))] = data.draw(junk)
            outcomes = []
            for check in (fast, reference):
                try:
                    check(body, Limits())
                    outcomes.append("accepted")
                except WireError as exc:
                    outcomes.append(exc.reason)
            self.assertEqual(outcomes[0], outcomes[1], f"{type(message).__name__} body {body!r}")

    @SETTINGS
    @given(MESSAGES, st.data())
    def test_decoding_and_construction_agree(self, message: Message, data: st.DataObject) -> None:
        """A tampered body is accepted by the decoder exactly when the same values make a message, and refused
        for the same reason: both sides apply one set of rules, including inside typed containers (a digest's
        [epoch, seq] pairs, the records list)."""
        junk = st.one_of(
            SCALARS,
            st.lists(SCALARS, max_size=3),
            st.dictionaries(TEXT, st.lists(st.integers(-2, 2**64 - 1), max_size=3), max_size=3),
            st.lists(st.binary(max_size=3) | TEXT, max_size=3),
            st.sampled_from(["a.b", "a.b.c", "a..c", "x" * 257, b"\x00" * 16, ["ok", ""], [1, 2], {"": [1, 2]}]),
            st.just(DEEP),
        )
        body = list(msgpack.unpackb(encode_frame(1, message)[4:])[3])
        for _ in range(data.draw(st.integers(1, 2))):
            body[data.draw(st.integers(0, len(body) - 1))] = data.draw(junk)
        frame = msgpack.packb([1, message.TYPE, 1, body], use_bin_type=True)
        outcomes: list[Any] = []
        for attempt in (lambda: decode_frame(frame).message, lambda: type(message)(*body)):
            try:
                outcomes.append(attempt())
            except WireError as exc:
                outcomes.append(exc.reason)
        self.assertEqual(outcomes[0], outcomes[1], f"{type(message).__name__} body {body!r}")


#: Limits at their floors (and a shallow depth), so that generated values cross every bound of the free-form rules.
TIGHT = Limits(max_depth=3, max_str=256, max_bin=16, max_list=16, max_map=2)
#: Values at and just past those bounds, and the types and keys the rules refuse.
EDGE_VALUES: list[Any] = [
    "x" * 256, "x" * 257, "\u00e9" * 257, b"\x00" * 16, b"\x00" * 17, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, True,
    None, 1.5, (1,), msgpack.Timestamp(1, 0), bytearray(b"x"), {b"k": 1}, {1: 1}, {"k" * 256: 1}, {"k" * 257: 1},
    {"a": 1, "b": 2, "c": 3}, list(range(16)), list(range(17)), _nest(2), _nest(3), [{"a": [1]}], {"a": {"b": []}},
]
EDGY = st.recursive(
    st.sampled_from(EDGE_VALUES) | SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["a", "b", "c"]), children,
                                                                      max_size=3),
    max_leaves=30,
)


def _reference_accepts(value: Any, limits: Limits, enclosing: int) -> bool:
    try:
        _free(value, limits, "value", enclosing)
    except WireError:
        return False
    return True


class FreeFormWalkProperties(SynchronousTestCase):
    @SETTINGS
    @given(EDGY, st.integers(0, 4), st.sampled_from([TIGHT, Limits()]))
    def test_free_walk_agrees_with_reference(self, value: Any, enclosing: int, limits: Limits) -> None:
        """The one-pass walk of free-form values (_free_ok) accepts exactly what the recursive reference rules
        (_free) accept, at every depth and under tight and default limits."""
        self.assertEqual(_free_ok(value, limits, enclosing), _reference_accepts(value, limits, enclosing),
                         repr(value)[:300])

    def test_free_walk_edges(self) -> None:
        """Every edge value, alone, in a list, as a map value and in a map's later entry, at each depth up to
        past the tight limits' max_depth: the walk and the reference agree."""
        for leaf in EDGE_VALUES:
            for wrapped in (leaf, [leaf], ["ok", leaf], {"a": leaf}, {"a": 1, "b": leaf}, [[leaf]], {"a": [leaf]}):
                for limits in (TIGHT, Limits()):
                    for enclosing in range(5):
                        self.assertEqual(_free_ok(wrapped, limits, enclosing),
                                         _reference_accepts(wrapped, limits, enclosing),
                                         f"{wrapped!r:.200} at {enclosing} under {limits}")


class ChunkingProperties(SynchronousTestCase):
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(FRAMES)
    def test_split_at_every_byte_boundary(self, frames: list[tuple[int, Message]]) -> None:
        data = stream_of(frames)
        want = expected(frames)
        for cut in range(len(data) + 1):
            decoder = FrameDecoder()
            self.assertEqual(feed_all(decoder, [data[:cut], data[cut:]]), want, f"cut at {cut}")
            self.assertEqual(decoder.buffered, 0)

    @SETTINGS
    @given(FRAMES, st.lists(st.integers(0, 64), max_size=40))
    def test_random_chunkings(self, frames: list[tuple[int, Message]], sizes: list[int]) -> None:
        data = stream_of(frames)
        chunks = []
        at = 0
        for size in sizes:
            chunks.append(data[at : at + size])
            at += size
        chunks.append(data[at:])
        decoder = FrameDecoder()
        self.assertEqual(feed_all(decoder, chunks), expected(frames))
        decoder.eof()

    @SETTINGS
    @given(FRAMES, st.data())
    def test_cuts_at_frame_boundaries_and_inside_frames(
        self, frames: list[tuple[int, Message]], data: st.DataObject
    ) -> None:
        """Chunks that are exactly one frame take the decoder's short path; mixing them with chunks that hold part
        of a frame, or several frames, must not disturb the general loop's bookkeeping (and vice versa)."""
        encoded = [encode_frame(msg_id, message) for msg_id, message in frames]
        boundaries = [0]
        for frame in encoded:
            boundaries.append(boundaries[-1] + len(frame))
        stream = b"".join(encoded)
        inner = st.integers(0, len(stream))
        cuts = data.draw(st.sets(st.sampled_from(boundaries) | inner, max_size=2 * len(encoded) + 2))
        points = sorted({0, len(stream), *cuts})
        chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
        decoder = FrameDecoder()
        self.assertEqual(feed_all(decoder, chunks), expected(frames))
        self.assertEqual(decoder.buffered, 0)
        decoder.eof()

    @SETTINGS
    @given(FRAMES)
    def test_byte_at_a_time(self, frames: list[tuple[int, Message]]) -> None:
        data = stream_of(frames)
        self.assertEqual(feed_all(FrameDecoder(), [data[i : i + 1] for i in range(len(data))]), expected(frames))


class StrategyCoverage(SynchronousTestCase):
    def test_every_message_type_is_generated(self) -> None:
        # If a message type is added to the protocol, MESSAGES above must learn to build it.
        generated = {Hello, Bye, Ping, Pong, GossipDigest, GossipRecords, GossipSummary, Request, Response, Error,
                     Event}
        from wecross.wire import MESSAGE_TYPES

        self.assertEqual(generated, set(MESSAGE_TYPES.values()))
