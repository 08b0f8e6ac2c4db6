"""Frame codec and message rules of the router-to-router wire protocol."""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
from twisted.trial.unittest import SynchronousTestCase

from wecross.wire import (
    DEFAULT_LIMITS,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    REASONS,
    SUPPORTED_VERSIONS,
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
    negotiate_version,
    validate,
)

RID = bytes(range(16))
ROOT = Path(__file__).resolve().parents[1]


def sample_messages() -> list[Message]:
    """One instance of every message type, with every field set to something non-trivial."""
    return [
        Hello("router-a", [1, 2], ["payment", "logistics"], ["gossip", "events"], "10.0.0.1:25500", 1_700_000_000_000),
        Hello("router-b", [1], [], [], "", 0),
        Bye("shutting down"),
        Ping(7, 1234.5),
        Pong(7, 1234.5),
        GossipDigest({"router-a": [1_700_000_000_000, 4], "router-b": [5, 0]}),
        GossipDigest({}),
        GossipRecords([b"signed-record-1", b"\x00\xff" * 100]),
        GossipRecords([]),
        Request(
            RID,
            "router-a",
            "router-c",
            8,
            5000,
            ["router-a", "router-b"],
            "call",
            "payment.bank-a.hello",
            "get",
            ["key-1", 2, -3, 4.5, None, True, b"\x01", [1, [2]], {"k": {"n": None}}],
            "alice",
        ),
        Response(42, RID, {"result": ["v"], "block_number": 12, "proof": {"siblings": [b"\x01" * 32]}}, ["router-c"]),
        Error(42, RID, "unknown_resource", "no resource payment.bank-a.nope", ["router-c", "router-b"]),
        Error(0, b"", "bad_frame", "link-level complaint", []),
        Event("payment.bank-a.asset", "transfer", {"from": "a", "to": "b", "amount": 10}),
        Event("payment.bank-a.asset", "tick", None),
        GossipSummary(1000, bytes(range(16))),
    ]


def raw_frame(envelope: Any) -> bytes:
    """A frame around an arbitrary (possibly invalid) envelope, bypassing the message checks."""
    body: bytes = msgpack.packb(envelope, use_bin_type=True)
    return len(body).to_bytes(4, "big") + body


def body_of(message: Message) -> list[Any]:
    """The wire body of a valid message, as a mutable list to tamper with."""
    envelope = msgpack.unpackb(encode_frame(1, message)[4:], raw=False)
    return list(envelope[3])


class WireErrorTests(SynchronousTestCase):
    def assertWireError(self, reason: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> WireError:
        error: WireError = self.assertRaises(WireError, fn, *args, **kwargs)
        self.assertEqual(error.reason, reason, f"got {error!r}")
        self.assertIn(error.reason, REASONS)
        return error


class RoundTripTests(WireErrorTests):
    def test_every_message_type_is_sampled(self) -> None:
        self.assertEqual({type(m) for m in sample_messages()}, set(MESSAGE_TYPES.values()))
        self.assertEqual(len({cls.NAME for cls in MESSAGE_TYPES.values()}), len(MESSAGE_TYPES))
        for code, cls in MESSAGE_TYPES.items():
            self.assertEqual(cls.TYPE, code)

    def test_round_trip_through_decoder(self) -> None:
        decoder = FrameDecoder()
        for msg_id, message in enumerate(sample_messages(), start=1):
            envelopes = decoder.feed(encode_frame(msg_id, message))
            self.assertEqual(envelopes, [Envelope(PROTOCOL_VERSION, msg_id, message)])
            decoded = envelopes[0].message
            self.assertIs(type(decoded), type(message))
            self.assertIs(type(envelopes[0]), Envelope)
        self.assertEqual(decoder.buffered, 0)

    def test_round_trip_through_decode_frame(self) -> None:
        for message in sample_messages():
            frame = encode_frame(2**64 - 1, message)
            self.assertEqual(int.from_bytes(frame[:4], "big"), len(frame) - 4)
            self.assertEqual(decode_frame(frame[4:]), Envelope(1, 2**64 - 1, message))

    def test_all_frames_in_one_chunk(self) -> None:
        messages = sample_messages()
        stream = b"".join(encode_frame(i, m) for i, m in enumerate(messages, start=1))
        envelopes = FrameDecoder().feed(stream)
        self.assertEqual([e.message for e in envelopes], messages)
        self.assertEqual([e.msg_id for e in envelopes], list(range(1, len(messages) + 1)))

    def test_byte_by_byte(self) -> None:
        messages = sample_messages()
        stream = b"".join(encode_frame(i, m) for i, m in enumerate(messages, start=1))
        decoder = FrameDecoder()
        got: list[Envelope] = []
        for i in range(len(stream)):
            got += decoder.feed(stream[i : i + 1])
        self.assertEqual([e.message for e in got], messages)

    def test_decoded_messages_behave_like_constructed_ones(self) -> None:
        decoded = FrameDecoder().feed(encode_frame(1, Ping(3, 0.5)))[0].message
        assert isinstance(decoded, Ping)
        self.assertEqual(hash(decoded), hash(Ping(3, 0.5)))
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, decoded, "seq", 4)
        self.assertEqual(repr(decoded), "Ping(seq=3, sent_at=0.5)")
        self.assertEqual(dataclasses.replace(decoded, seq=4), Ping(4, 0.5))
        self.assertEqual(pickle.loads(pickle.dumps(decoded)), decoded)
        self.assertEqual(copy.deepcopy(decoded), decoded)
        self.assertEqual(dataclasses.asdict(decoded), {"seq": 3, "sent_at": 0.5})
        # Containers inside a decoded message are the plain types construction accepts, not msgpack's variants.
        digest = FrameDecoder().feed(encode_frame(1, sample_messages()[5]))[0].message
        assert isinstance(digest, GossipDigest)
        self.assertIs(type(digest.entries), dict)
        self.assertEqual({type(v) for v in digest.entries.values()}, {list})
        records = FrameDecoder().feed(encode_frame(1, sample_messages()[7]))[0].message
        assert isinstance(records, GossipRecords)
        self.assertIs(type(records.records), list)
        self.assertEqual({type(r) for r in records.records}, {bytes})

    def test_large_frames_across_many_chunks(self) -> None:
        big = Request(RID, "a", "b", 1, 1, [], "call", "z.c.r", "put", [b"x" * 300_000, "y" * 200_000], "s")
        small = Ping(1, 1.0)
        stream = encode_frame(1, big) + encode_frame(2, small) + encode_frame(3, big)
        for chunk in (1000, 65_536, 100_000, len(stream)):
            decoder = FrameDecoder()
            got: list[Envelope] = []
            for at in range(0, len(stream), chunk):
                got += decoder.feed(stream[at : at + chunk])
            self.assertEqual([e.message for e in got], [big, small, big])
            self.assertEqual(decoder.buffered, 0)
            # The decoder keeps working after renewing its buffer.
            self.assertEqual(decoder.feed(encode_frame(4, small))[0].message, small)

    def test_frame_of_exactly_max_frame_is_accepted(self) -> None:
        limits = Limits(max_frame=1000)
        probe = encode_frame(1, Bye(""))
        filler = "x" * (1000 - (len(probe) - 4) - 2)  # the str header grows from 1 to 3 bytes
        frame = encode_frame(1, Bye(filler), limits=limits)
        self.assertEqual(len(frame) - 4, 1000)
        self.assertEqual(FrameDecoder(limits).feed(frame)[0].message, Bye(filler))
        self.assertWireError("oversize", encode_frame, 1, Bye(filler + "x"), limits=limits)
        self.assertWireError("oversize", FrameDecoder(limits).feed, encode_frame(1, Bye(filler + "x")))

    def test_hello_ignores_fields_added_by_later_versions(self) -> None:
        hello = Hello("router-a", [1, 2], ["z"], [], "", 5)
        body = [*body_of(hello), "a field from version 2", {"x": 1}]
        self.assertEqual(FrameDecoder().feed(raw_frame([1, Hello.TYPE, 1, body]))[0].message, hello)

    def test_empty_feed(self) -> None:
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(b""), [])
        self.assertEqual(decoder.feed(b"\x00\x00"), [])
        self.assertEqual(decoder.buffered, 2)
        self.assertEqual(decoder.feed(b""), [])
        self.assertEqual(decoder.buffered, 2)

    def test_buffered_counts_partial_frames(self) -> None:
        frame = encode_frame(1, Ping(1, 1.0))
        decoder = FrameDecoder()
        decoder.feed(frame[:3])
        self.assertEqual(decoder.buffered, 3)
        decoder.feed(frame[3:6])
        self.assertEqual(decoder.buffered, 6)
        self.assertEqual(len(decoder.feed(frame[6:] + frame[:5])), 1)
        self.assertEqual(decoder.buffered, 5)

    def test_accepts_bytearray_and_memoryview(self) -> None:
        frame = encode_frame(1, Ping(1, 1.0))
        self.assertEqual(len(FrameDecoder().feed(bytearray(frame))), 1)
        self.assertEqual(len(FrameDecoder().feed(memoryview(frame))), 1)


class DecodeErrorTests(WireErrorTests):
    """Every reason code, provoked on purpose through the decoder."""

    def test_oversize_from_prefix_alone(self) -> None:
        decoder = FrameDecoder(Limits(max_frame=1024))
        error = self.assertWireError("oversize", decoder.feed, (1025).to_bytes(4, "big"))
        self.assertIn("1025", error.message)
        self.assertEqual(decoder.buffered, 0)
        # The default limit: a 4 GiB announcement is refused without waiting for a single body byte.
        self.assertWireError("oversize", FrameDecoder().feed, b"\xff\xff\xff\xff")

    def test_oversize_decode_frame(self) -> None:
        self.assertWireError("oversize", decode_frame, b"\x90" * 65, Limits(max_frame=64))

    def test_truncated_body(self) -> None:
        body = encode_frame(1, Ping(1, 1.0))[4:]
        self.assertWireError("truncated", decode_frame, body[:-1])
        # The prefix claims fewer bytes than the value needs; the next frame's bytes must not complete it.
        cut = (len(body) - 1).to_bytes(4, "big") + body[:-1]
        self.assertWireError("truncated", FrameDecoder().feed, cut + encode_frame(2, Ping(2, 2.0)))
        self.assertWireError("truncated", FrameDecoder().feed, cut)

    def test_truncated_stream_at_eof(self) -> None:
        frame = encode_frame(1, Ping(1, 1.0))
        decoder = FrameDecoder()
        decoder.feed(frame + frame[:-2])
        self.assertWireError("truncated", decoder.eof)
        clean = FrameDecoder()
        clean.feed(frame)
        clean.eof()  # nothing buffered: fine

    def test_malformed(self) -> None:
        cases = {
            "not msgpack": b"\x00\x00\x00\x01\xc1",
            "empty frame": b"\x00\x00\x00\x00",
            "envelope not an array": raw_frame({"version": 1}),
            "envelope too short": raw_frame([1, 3, 1]),
            "envelope too long": raw_frame([1, 3, 1, [1, 1.0], None]),
            "msg_id zero": raw_frame([1, 3, 0, [1, 1.0]]),
            "msg_id negative": raw_frame([1, 3, -1, [1, 1.0]]),
            "msg_id string": raw_frame([1, 3, "1", [1, 1.0]]),
            "version not int": raw_frame(["1", 3, 1, [1, 1.0]]),
            "type not int": raw_frame([1, "PING", 1, [1, 1.0]]),
            "body not array": raw_frame([1, 3, 1, {"seq": 1}]),
            "invalid utf-8": b"\x00\x00\x00\x08\x94\x01\x03\x01\x92\x01\xa1\xff",
            "trailing bytes": b"\x00\x00\x00\x10" + msgpack.packb([1, 3, 1, [1, 1.0]]) + b"\xc0",
        }
        for name, frame in cases.items():
            with self.subTest(name):
                self.assertWireError("malformed", FrameDecoder().feed, frame)
                self.assertWireError("malformed", decode_frame, frame[4:])

    def test_version(self) -> None:
        error = self.assertWireError("version", FrameDecoder().feed, raw_frame([2, 3, 1, [1, 1.0]]))
        self.assertIn("2", error.message)
        self.assertWireError("version", FrameDecoder().feed, raw_frame([0, 3, 1, [1, 1.0]]))

    def test_unknown_type(self) -> None:
        self.assertWireError("unknown_type", FrameDecoder().feed, raw_frame([1, 99, 1, []]))
        # 0x10 is retired (see docs/wire-protocol.md): no message owns it, and a frame using it is refused as unknown.
        self.assertNotIn(0x10, MESSAGE_TYPES)
        self.assertWireError("unknown_type", FrameDecoder().feed, raw_frame([1, 0x10, 1, ["r", 1, [], []]]))
        self.assertWireError("unknown_type", decode_frame, msgpack.packb([1, -1, 1, []]))

    def test_schema_wrong_field_count(self) -> None:
        error = self.assertWireError("schema", FrameDecoder().feed, raw_frame([1, Ping.TYPE, 1, [1]]))
        self.assertIn("PING", error.message)
        self.assertWireError("schema", FrameDecoder().feed, raw_frame([1, Ping.TYPE, 1, [1, 1.0, 3]]))

    def test_schema_field_values(self) -> None:
        """Each case replaces one field of a valid body; the error must name the message type and field."""
        request = sample_messages()[9]
        cases: list[tuple[Message, int, Any, str]] = [
            (request, 0, b"short", "Request.request_id"),
            (request, 1, "", "Request.origin"),
            (request, 2, 5, "Request.destination"),
            (request, 3, 256, "Request.hop_limit"),
            (request, 3, -1, "Request.hop_limit"),
            (request, 3, True, "Request.hop_limit"),
            (request, 4, -5, "Request.deadline_ms"),
            (request, 5, ["a", ""], "Request.path[1]"),
            (request, 5, "router-a", "Request.path"),
            (request, 6, "", "Request.op"),
            (request, 7, "x" * 257, "Request.ipath"),
            (request, 8, None, "Request.method"),
            (request, 9, {"not": "a list"}, "Request.args"),
            (request, 9, [{b"bytes key": 1}], "Request.args"),
            (request, 10, 7, "Request.sender"),
            (sample_messages()[0], 1, [], "Hello.versions"),
            (sample_messages()[0], 1, [0], "Hello.versions[0]"),
            (sample_messages()[0], 2, [""], "Hello.zones[0]"),
            (sample_messages()[0], 4, "no-port", "Hello.listen"),
            (sample_messages()[0], 4, "host:99999", "Hello.listen"),
            (sample_messages()[0], 5, -1, "Hello.epoch"),
            (Ping(1, 1.0), 1, 1, "Ping.sent_at"),
            (Pong(1, 1.0), 0, -1, "Pong.seq"),
            (sample_messages()[5], 0, {"router-a": [1]}, "GossipDigest.entries['router-a']"),
            (sample_messages()[5], 0, {"router-a": "1,2"}, "GossipDigest.entries['router-a']"),
            (sample_messages()[5], 0, {"router-a": [1, -2]}, "GossipDigest.entries['router-a'][1] (seq)"),
            (sample_messages()[5], 0, {"router-a": [1.5, 2]}, "GossipDigest.entries['router-a'][0] (epoch)"),
            (sample_messages()[5], 0, {"": [1, 2]}, "GossipDigest.entries key"),
            (sample_messages()[5], 0, [["router-a", 1, 2]], "GossipDigest.entries"),
            (sample_messages()[7], 0, [b""], "GossipRecords.records[0]"),
            (sample_messages()[7], 0, [b"ok", "text"], "GossipRecords.records[1]"),
            (sample_messages()[7], 0, b"record", "GossipRecords.records"),
            (sample_messages()[10], 0, 0, "Response.reply_to"),
            (sample_messages()[10], 2, [], "Response.result"),
            (sample_messages()[11], 1, b"", "Error.request_id"),
            (sample_messages()[11], 2, "", "Error.code"),
            (sample_messages()[13], 0, "payment", "Event.ipath"),
            (sample_messages()[13], 0, "payment.bank-a", "Event.ipath"),
            (sample_messages()[13], 0, "payment..asset", "Event.ipath"),
            (sample_messages()[13], 2, {b"k": 2}, "Event.payload"),
            (Bye("x"), 0, b"bytes", "Bye.reason"),
        ]
        for message, index, value, where in cases:
            with self.subTest(where=where, value=value):
                body = body_of(message)
                body[index] = value
                frame = raw_frame([1, message.TYPE, 1, body])
                error = self.assertWireError("schema", FrameDecoder().feed, frame)
                self.assertIn(where, error.message)

    def test_schema_extension_types(self) -> None:
        for ext in (msgpack.ExtType(5, b"data"), msgpack.Timestamp(1, 0)):
            with self.subTest(ext=ext):
                body = body_of(Event("a.b.c", "t", None))
                body[2] = ext
                self.assertWireError("schema", FrameDecoder().feed, raw_frame([1, Event.TYPE, 1, body]))
        zero_length_ext = b"\x94\x01\x30\x01\x93\xa5a.b.c\xa1t\xc7\x00\x05"
        self.assertWireError("schema", decode_frame, zero_length_ext)

    def test_schema_non_string_map_keys(self) -> None:
        for key in (1, b"k", None, 1.5):
            with self.subTest(key=key):
                packed = msgpack.packb([1, Event.TYPE, 1, ["a.b.c", "t", {key: 1}]], use_bin_type=True)
                self.assertWireError("schema", decode_frame, packed)
        nested_key = b"\x94\x01\x30\x01\x93\xa5a.b.c\xa1t\x81\x91\x01\x01"  # {[1]: 1}
        self.assertWireError("schema", decode_frame, nested_key)

    def test_limits_depth(self) -> None:
        def nest(levels: int) -> Any:
            value: Any = "leaf"
            for _ in range(levels):
                value = [value]
            return value

        limits = Limits(max_depth=4)
        # args is level 1, so three more levels fit and a fourth does not.
        ok = raw_frame([1, Request.TYPE, 1, [*body_of(sample_messages()[9])[:9], [nest(3)], "s", 0, b"", b"", ""]])
        self.assertEqual(len(FrameDecoder(limits).feed(ok)), 1)
        deep = raw_frame([1, Request.TYPE, 1, [*body_of(sample_messages()[9])[:9], [nest(4)], "s", 0, b"", b"", ""]])
        self.assertWireError("limits", FrameDecoder(limits).feed, deep)
        # Far deeper than msgpack's own stack: still a WireError, never RecursionError or a msgpack exception.
        absurd = b"\x94\x01\x30\x01\x93\xa5a.b.c\xa1t" + b"\x91" * 100_000 + b"\xc0"
        self.assertWireError("limits", decode_frame, absurd)
        self.assertWireError("limits", FrameDecoder().feed, len(absurd).to_bytes(4, "big") + absurd)
        # Just below msgpack's stack but far above max_depth.
        self.assertWireError("limits", decode_frame, absurd[: -100_000 + 900 - 1] + b"\xc0")

    def test_limits_sizes(self) -> None:
        limits = Limits(max_str=300, max_bin=20, max_list=16, max_map=2)
        event = Event("a.b.c", "t", None)
        for payload in ("x" * 301, b"x" * 21, list(range(17)), {"a": 1, "b": 2, "c": 3}, {"k" * 301: 1}):
            with self.subTest(payload=type(payload)):
                frame = encode_frame(1, dataclasses.replace(event, payload=payload))
                self.assertWireError("limits", FrameDecoder(limits).feed, frame)
                self.assertWireError("limits", decode_frame, frame[4:], limits)
                self.assertWireError(
                    "limits", encode_frame, 1, dataclasses.replace(event, payload=payload), limits=limits
                )

    def test_max_str_counts_characters(self) -> None:
        # What construction accepts (counted in characters), the decoder accepts too, whatever the UTF-8 length.
        limits = Limits(max_str=256)
        fits = Bye("\U0001f600" * 256)  # 1024 bytes of UTF-8
        self.assertEqual(FrameDecoder(limits).feed(encode_frame(1, fits, limits=limits))[0].message, fits)
        too_long = encode_frame(1, Bye("\U0001f600" * 257))
        self.assertWireError("limits", FrameDecoder(limits).feed, too_long)

    def test_envelope_checks_version_before_type(self) -> None:
        # A later version may define new types; the version is what the reader must complain about.
        self.assertWireError("version", FrameDecoder().feed, raw_frame([9, 99, 1, []]))


class PoisoningTests(WireErrorTests):
    def test_poisoned_decoder_keeps_failing(self) -> None:
        decoder = FrameDecoder()
        good = encode_frame(1, Ping(1, 1.0))
        self.assertEqual(len(decoder.feed(good)), 1)
        first = self.assertWireError("version", decoder.feed, raw_frame([7, 3, 1, [1, 1.0]]))
        self.assertIs(decoder.error, first)
        for _ in range(3):
            again = self.assertRaises(WireError, decoder.feed, good)
            self.assertIs(again, first)
        self.assertIs(self.assertRaises(WireError, decoder.eof), first)
        self.assertEqual(decoder.buffered, 0)

    def test_frames_before_the_bad_one_in_the_same_chunk_are_dropped(self) -> None:
        decoder = FrameDecoder()
        chunk = encode_frame(1, Ping(1, 1.0)) + b"\x00\x00\x00\x01\xc1" + encode_frame(2, Ping(2, 2.0))
        self.assertWireError("malformed", decoder.feed, chunk)
        self.assertWireError("malformed", decoder.feed, b"")

    def test_oversize_poisons(self) -> None:
        decoder = FrameDecoder(Limits(max_frame=100))
        self.assertWireError("oversize", decoder.feed, b"\x00\x00\x01\x00")
        self.assertWireError("oversize", decoder.feed, encode_frame(1, Ping(1, 1.0)))


class DeliveryTests(WireErrorTests):
    """FrameDecoder takes a short path for a chunk that is exactly one frame with nothing buffered, and its general
    loop otherwise; both must accept and reject exactly the same frames, and hand over cleanly to each other."""

    def bad_frames(self) -> list[tuple[str, bytes]]:
        request_body = body_of(sample_messages()[9])
        ping = encode_frame(1, Ping(1, 1.0))
        return [
            ("malformed", b"\x00\x00\x00\x01\xc1"),
            ("malformed", raw_frame({"version": 1})),
            ("malformed", raw_frame([1, 3, 0, [1, 1.0]])),
            ("malformed", b"\x00\x00\x00\x08\x94\x01\x03\x01\x92\x01\xa1\xff"),
            ("malformed", b"\x00\x00\x00\x10" + msgpack.packb([1, 3, 1, [1, 1.0]]) + b"\xc0"),
            ("truncated", (len(ping) - 5).to_bytes(4, "big") + ping[4:-1]),
            ("version", raw_frame([2, 3, 1, [1, 1.0]])),
            ("unknown_type", raw_frame([1, 99, 1, []])),
            ("schema", raw_frame([1, Ping.TYPE, 1, [1]])),
            ("schema", raw_frame([1, Request.TYPE, 1, [*request_body[:3], 256, *request_body[4:]]])),
            ("schema", raw_frame([1, Response.TYPE, 1, [0, RID, {}, []]])),
            ("schema", b"\x00\x00\x00\x0d\x94\x01\x30\x01\x93\xa5a.b.c\xa1t\xc7\x00\x05"),
            ("limits", raw_frame([1, Event.TYPE, 1, ["a.b.c", "t", "x" * 257]])),
            ("oversize", raw_frame([1, Bye.TYPE, 1, ["x" * 400]])),
        ]

    def test_errors_do_not_depend_on_how_the_frame_arrives(self) -> None:
        limits = Limits(max_frame=300, max_str=256)
        good = encode_frame(1, Ping(1, 1.0))
        for reason, frame in self.bad_frames():
            ways = {
                "whole": [frame],
                "split after the prefix": [frame[:4], frame[4:]],
                "split inside the body": [frame[:6], frame[6:]],
                "after a whole good frame": [good, frame],
                "glued to a good frame": [good + frame],
                "followed by a good frame": [frame + good],
            }
            for way, chunks in ways.items():
                with self.subTest(reason=reason, frame=frame[:16], way=way):
                    decoder = FrameDecoder(limits)

                    def feed_all(decoder: FrameDecoder = decoder, chunks: list[bytes] = chunks) -> None:
                        for chunk in chunks:
                            decoder.feed(chunk)

                    error = self.assertWireError(reason, feed_all)
                    self.assertIs(decoder.error, error)
                    self.assertEqual(decoder.buffered, 0)

    def test_whole_and_split_frames_interleave(self) -> None:
        messages = sample_messages()
        frames = [encode_frame(i, m) for i, m in enumerate(messages, start=1)]
        decoder = FrameDecoder()
        got: list[Envelope] = []
        for index, frame in enumerate(frames):
            if index % 3 == 0:
                got += decoder.feed(frame)  # exactly one frame: the short path
            elif index % 3 == 1:
                got += decoder.feed(frame[:5])
                self.assertEqual(decoder.buffered, 5)
                got += decoder.feed(frame[5:])
            else:
                got += decoder.feed(frame + frames[0][:2])
                got += decoder.feed(frames[0][2:])
            self.assertEqual(decoder.buffered, 0)
        self.assertEqual(len(got), len(frames) + len(frames) // 3)
        self.assertEqual([e.message for e in got if e.msg_id != 1][: len(messages) - 1], messages[1:])
        # Stream positions stayed in step: trailing bytes are still caught, whichever way the frame arrives.
        trailing = b"\x00\x00\x00\x10" + msgpack.packb([1, 3, 1, [1, 1.0]]) + b"\xc0"
        self.assertWireError("malformed", decoder.feed, trailing)
        decoder = FrameDecoder()
        for frame in frames:
            decoder.feed(frame)
        decoder.feed(trailing[:3])
        self.assertWireError("malformed", decoder.feed, trailing[3:])

    def test_short_path_limits(self) -> None:
        # A single frame above max_frame, or larger than one 64 KiB piece, goes through the general loop.
        self.assertWireError("oversize", FrameDecoder(Limits(max_frame=64)).feed, encode_frame(1, Bye("x" * 100)))
        big = encode_frame(1, Bye("x" * 70_000))
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(big)[0].message, Bye("x" * 70_000))
        self.assertEqual(decoder.feed(encode_frame(2, Ping(1, 1.0)))[0].message, Ping(1, 1.0))
        self.assertEqual(decoder.buffered, 0)


class MessageConstructionTests(WireErrorTests):
    """Bad values are refused where the message is built, with the same rules as on decode."""

    def test_bad_fields(self) -> None:
        cases: list[tuple[Callable[[], Any], str, str]] = [
            (lambda: Ping(-1, 1.0), "schema", "Ping.seq"),
            (lambda: Ping(1, float("nan")), "schema", "Ping.sent_at"),
            (lambda: Pong(True, 1.0), "schema", "Pong.seq"),
            (lambda: Hello("", [1], [], [], "", 0), "schema", "Hello.router_id"),
            (lambda: Hello("a", (1,), [], [], "", 0), "schema", "Hello.versions"),  # type: ignore[arg-type]
            (lambda: Hello("a", [1], [], [], "[::1]:", 0), "schema", "Hello.listen"),
            (lambda: Event("a.b", "t", None), "schema", "Event.ipath"),
            (lambda: Event("a.b.c.d", "t", None), "schema", "Event.ipath"),
            (lambda: GossipDigest({"": [1, 2]}), "schema", "GossipDigest.entries key"),
            (lambda: GossipDigest({"r": (1, 2)}), "schema", "GossipDigest.entries['r']"),  # type: ignore[dict-item]
            (lambda: GossipDigest([("r", [1, 2])]), "schema", "GossipDigest.entries"),  # type: ignore[arg-type]
            (lambda: GossipRecords([bytearray(b"x")]), "schema", "GossipRecords.records[0]"),  # type: ignore[list-item]
            (lambda: GossipRecords([b"x", ("a.b", 0)]), "schema", "GossipRecords.records[1]"),  # type: ignore[list-item]
            (lambda: Request(RID[:8], "a", "b", 1, 1, [], "op", "", "", [], ""), "schema", "Request.request_id"),
            (lambda: Request(RID, "a", "b", 1, 1, [], "op", "", "", [(1, 2)], ""), "schema", "Request.args"),
            (lambda: Request(RID, "a", "b", 1, 1, [], "op", "", "", [2**64], ""), "schema", "Request.args"),
            (lambda: Request(RID, "a", "b", 1, 1, [], "op", "", "", [object()], ""), "schema", "Request.args"),
            (lambda: Request(RID, "a", "b", 1, 1, [], "op", "", "", [{1, 2}], ""), "schema", "Request.args"),
            (lambda: Response(1, RID, {"r": {1: 2}}, []), "schema", "Response.result"),
            (lambda: Error(1, b"", "code", "m", []), "schema", "Error.request_id"),
            (lambda: Event("a.b.c", "", None), "schema", "Event.topic"),
            (lambda: Bye(None), "schema", "Bye.reason"),  # type: ignore[arg-type]
        ]
        for build, reason, where in cases:
            with self.subTest(where=where):
                error = self.assertWireError(reason, build)
                self.assertIn(where, error.message)

    def test_valid_edges(self) -> None:
        Request(RID, "a", "b", 0, 0, [], "op", "", "", [-(2**63), 2**64 - 1, float("inf")], "")
        Request(RID, "a", "b", 255, 2**64 - 1, ["x" * 256], "o" * 256, "i" * 256, "m" * 256, [], "s" * 1000)
        Error(0, RID, "code", "", [])
        Hello("r", [65535], [], [], "[::1]:1", 2**64 - 1)
        Hello("r", [1], [], [], "localhost:65535", 0)

    def test_free_form_depth_at_construction(self) -> None:
        value: Any = None
        for _ in range(DEFAULT_LIMITS.max_depth):
            value = [value]
        Event("a.b.c", "t", value)
        self.assertWireError("limits", Event, "a.b.c", "t", [value])
        loop: list[Any] = []
        loop.append(loop)
        self.assertWireError("limits", Event, "a.b.c", "t", loop)

    def test_validate_against_other_limits(self) -> None:
        event = Event("a.b.c", "t", [[["deep"]]])
        validate(event)
        self.assertWireError("limits", validate, event, Limits(max_depth=2))
        # Typed containers (a digest's map and its [epoch, seq] pairs) are bounded by max_map/max_list, not
        # max_depth, and construction's check against the defaults does not excuse them from a link's tighter limits.
        digest = sample_messages()[5]
        validate(digest, Limits(max_depth=1))
        self.assertWireError("limits", validate, digest, Limits(max_str=256, max_map=1))
        records = sample_messages()[7]
        validate(records, Limits(max_depth=1, max_list=16))
        self.assertWireError("limits", validate, records, Limits(max_bin=16))
        self.assertWireError("schema", validate, object())


class EncodeTests(WireErrorTests):
    def test_frame_layout(self) -> None:
        frame = encode_frame(5, Ping(9, 0.25))
        self.assertEqual(msgpack.unpackb(frame[4:]), [1, Ping.TYPE, 5, [9, 0.25]])
        digest = msgpack.unpackb(encode_frame(2, GossipDigest({"r": [1, 2]}))[4:])
        self.assertEqual(digest, [1, 0x11, 2, [{"r": [1, 2]}]])
        records = msgpack.unpackb(encode_frame(3, GossipRecords([b"a", b"bc"]))[4:])
        self.assertEqual(records, [1, 0x12, 3, [[b"a", b"bc"]]])

    def test_bad_msg_id(self) -> None:
        for msg_id in (0, -1, 2**64, True, 1.0):
            with self.subTest(msg_id=msg_id):
                self.assertWireError("schema", encode_frame, msg_id, Ping(1, 1.0))

    def test_not_a_message(self) -> None:
        # A frozen dataclass, but not a message.
        self.assertWireError("schema", encode_frame, 1, Envelope(1, 1, Ping(1, 1.0)))
        self.assertWireError("schema", encode_frame, 1, {"type": "PING"})

    def test_unsupported_version(self) -> None:
        self.assertWireError("version", encode_frame, 1, Ping(1, 1.0), version=99)

    def test_mutated_or_unencodable_message(self) -> None:
        request = Request(RID, "a", "b", 1, 1, [], "op", "", "", [], "")
        request.args.append(object())  # messages must not be mutated; if they are, encoding still fails cleanly
        self.assertWireError("schema", encode_frame, 1, request)
        surrogate = Request(RID, "a", "b", 1, 1, [], "op", "", "", ["\ud800"], "")
        self.assertWireError("schema", encode_frame, 1, surrogate)
        # The thread's packer is still usable afterwards.
        self.assertEqual(decode_frame(encode_frame(1, Ping(1, 1.0))[4:]).message, Ping(1, 1.0))

    def test_tuples_put_into_a_message_later_are_refused(self) -> None:
        # Construction accepts lists only; the packer is just as strict, so a tuple slipped in afterwards is not
        # silently sent as an array.
        request = Request(RID, "a", "b", 1, 1, [], "op", "", "", [[1]], "")
        request.args.append((1, 2))
        self.assertWireError("schema", encode_frame, 1, request)
        response = Response(1, RID, {"r": [1]}, [])
        response.result["r"] = (1,)
        self.assertWireError("schema", encode_frame, 1, response)
        self.assertEqual(decode_frame(encode_frame(1, Ping(1, 1.0))[4:]).message, Ping(1, 1.0))


class SmallPieceTests(WireErrorTests):
    def test_limits_validation(self) -> None:
        Limits()
        Limits(max_frame=64, max_depth=1, max_str=256, max_bin=16, max_list=16, max_map=1)
        for field, value in [
            ("max_frame", 0),
            ("max_frame", 2**32),
            ("max_depth", 0),
            ("max_depth", 257),
            ("max_str", 255),
            ("max_list", 15),
            ("max_map", True),
            ("max_bin", 1.5),
        ]:
            with self.subTest(field=field, value=value):
                error = self.assertRaises(ValueError, Limits, **{field: value})
                self.assertIn(field, str(error))

    def test_wire_error(self) -> None:
        error = WireError("schema", "Ping.seq: bad")
        self.assertEqual((error.reason, error.message), ("schema", "Ping.seq: bad"))
        self.assertEqual(str(error), "schema: Ping.seq: bad")
        self.assertEqual(repr(error), "WireError('schema', 'Ping.seq: bad')")
        self.assertRaises(ValueError, WireError, "nonsense", "x")
        self.assertEqual(
            set(REASONS), {"oversize", "truncated", "malformed", "version", "unknown_type", "schema", "limits"}
        )

    def test_negotiate_version(self) -> None:
        self.assertEqual(negotiate_version([1]), 1)
        self.assertEqual(negotiate_version([1, 2, 3], [1, 2]), 2)
        self.assertEqual(negotiate_version([3, 1], [2, 3]), 3)
        self.assertIsNone(negotiate_version([2], [1]))
        self.assertIsNone(negotiate_version([]))
        self.assertEqual(SUPPORTED_VERSIONS, (1,))
        self.assertIn(PROTOCOL_VERSION, SUPPORTED_VERSIONS)

    def test_builder_fallback(self) -> None:
        # Interpreters that refuse __class__ re-labelling get the slow, plain path with the same result.
        from wecross.wire import messages

        self.patch(messages, "_twin", lambda cls: None)
        self.assertEqual(messages._builder(Ping)([1, 2.0]), Ping(1, 2.0))
        self.assertIs(type(messages._builder(Ping)([1, 2.0])), Ping)

    def test_decoders_without_twin(self) -> None:
        # The hand-unrolled decoders need the twin; without it the generic decoder (object.__setattr__) takes over,
        # and envelopes are built through Envelope's own __init__.
        from wecross.wire import codec, messages

        samples = sample_messages()
        self.patch(messages, "_twin", lambda cls: None)
        self.patch(messages, "BODY_ENCODERS", {})
        self.patch(messages, "BODY_DECODERS", {})
        self.patch(messages, "_OBJECT_CHECKS", {})
        for cls, check, encode, decode in (
            (Request, messages._check_request, messages._encode_request, messages._decode_request),
            (Response, messages._check_response, messages._encode_response, messages._decode_response),
            (Ping, messages._check_ping, None, None),
        ):
            messages._register(cls, check, encode=encode, decode=decode)
            self.assertIsNot(messages.BODY_DECODERS[cls.TYPE], decode)
        for message in samples:
            fallback = messages.BODY_DECODERS.get(message.TYPE)
            if fallback is None:
                continue
            with self.subTest(message=type(message).__name__):
                decoded = fallback(body_of(message), DEFAULT_LIMITS)
                self.assertEqual(decoded, message)
                self.assertIs(type(decoded), type(message))
                bad = body_of(message)
                bad[0] = object()
                self.assertWireError("schema", fallback, bad, DEFAULT_LIMITS)
        self.patch(codec, "_EnvelopeTwin", None)
        envelope = decode_frame(encode_frame(3, Ping(1, 1.0))[4:])
        self.assertEqual(envelope, Envelope(1, 3, Ping(1, 1.0)))
        self.assertIs(type(envelope), Envelope)

    def test_hand_unrolled_bodies(self) -> None:
        # Request and Response bodies are written out field by field; they must follow the dataclass's field order,
        # and the decoders registered for them must be the hand-written ones (this interpreter has the twin).
        from wecross.wire import messages

        self.assertIs(messages.BODY_DECODERS[Request.TYPE], messages._decode_request)
        self.assertIs(messages.BODY_DECODERS[Response.TYPE], messages._decode_response)
        for message in sample_messages():
            with self.subTest(message=type(message).__name__):
                body = messages.BODY_ENCODERS[type(message)](message)
                self.assertIs(type(body), list)
                self.assertEqual(body, [getattr(message, f.name) for f in dataclasses.fields(message)])
                decoded = messages.BODY_DECODERS[message.TYPE](list(body), DEFAULT_LIMITS)
                self.assertIs(type(decoded), type(message))
                for f in dataclasses.fields(message):
                    self.assertIs(getattr(decoded, f.name), getattr(message, f.name))

    def test_no_twisted_in_the_sans_io_core(self) -> None:
        code = "import sys, wecross.wire; sys.exit(any(m.split('.')[0] == 'twisted' for m in sys.modules))"
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.assertEqual(result.returncode, 0)
