from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedmux.providers.alltick.protocol import AllTickClient
from feedmux.simulator.market import text_frame
from feedmux.transports.frames import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_PONG,
    OPCODE_TEXT,
    FrameError,
    FrameParser,
    close_of,
)


def frame(payload: bytes, opcode: int = OPCODE_TEXT, fin: bool = True) -> bytes:
    raw = bytearray(text_frame(payload, opcode))
    if not fin:
        raw[0] &= 0x7F
    return bytes(raw)


MESSAGES = [b"x" * n for n in (0, 1, 125, 126, 200, 65535, 65536, 70_000)]


def test_every_length_encoding_round_trips_in_one_read() -> None:
    stream = b"".join(frame(m) for m in MESSAGES)
    assert FrameParser().feed(stream) == [(OPCODE_TEXT, m) for m in MESSAGES]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4000), min_size=1, max_size=40))
def test_any_split_of_the_stream_gives_the_same_messages(cuts: list[int]) -> None:
    stream = b"".join(frame(m) for m in MESSAGES[:6]) + frame(b"bin", OPCODE_BINARY)
    parser, out, at = FrameParser(), [], 0
    for cut in cuts:
        out += parser.feed(stream[at : at + cut])
        at += cut
    out += parser.feed(stream[at:])
    assert out == [(OPCODE_TEXT, m) for m in MESSAGES[:6]] + [(OPCODE_BINARY, b"bin")]
    assert parser.pending() == 0


def test_fragments_are_joined_and_control_frames_may_come_between() -> None:
    stream = (frame(b"hel", fin=False) + frame(b"!", OPCODE_PING)
              + frame(b"lo", 0, fin=False) + frame(b" there", 0))  # fmt: skip
    assert FrameParser().feed(stream) == [(OPCODE_PING, b"!"), (OPCODE_TEXT, b"hello there")]


def test_a_fragmented_message_over_the_limit_is_refused_at_the_fragment_that_crosses_it() -> None:
    parts = [frame(b"a" * 1000, fin=False)] + [frame(b"b" * 1000, 0, fin=False)] * 20
    parser = FrameParser(max_message_bytes=2500)
    assert parser.feed(b"".join(parts[:2])) == []
    with pytest.raises(FrameError) as caught:
        parser.feed(parts[2][:4])  # the third fragment's header alone is enough to tell
    assert caught.value.code == 1009 and caught.value.kind == "too_big"
    assert "3000" in caught.value.detail


def test_a_huge_declared_length_is_refused_after_its_header_alone() -> None:
    parser = FrameParser(max_message_bytes=1 << 20)
    ok = frame(b"tick")
    with pytest.raises(FrameError) as caught:
        parser.feed(ok + bytes([0x81, 127]) + (1 << 40).to_bytes(8, "big"))  # 10-byte header
    assert caught.value.code == 1009 and caught.value.kind == "too_big"
    assert caught.value.detail == f"declares {1 << 40} bytes"
    assert caught.value.messages == [(OPCODE_TEXT, b"tick")]  # what came before is kept


def test_a_frame_just_at_the_limit_passes_and_one_byte_more_is_refused() -> None:
    assert FrameParser(1000).feed(frame(b"x" * 1000)) == [(OPCODE_TEXT, b"x" * 1000)]
    with pytest.raises(FrameError, match="declares 1001 bytes"):
        FrameParser(1000).feed(frame(b"x" * 1001)[:4])


def test_a_large_frame_arriving_in_pieces_is_not_copied_whole_per_read() -> None:
    parser = FrameParser(max_message_bytes=1 << 22)
    payload = bytes(range(256)) * 8192  # 2 MiB
    raw = frame(payload)
    buffers = set()
    for at in range(0, len(raw) - 1, 65536):
        assert parser.feed(raw[at : min(at + 65536, len(raw) - 1)]) == []
        buffers.add(id(parser._buffer))
        assert isinstance(parser._buffer, bytearray)
    assert len(buffers) == 1  # one buffer grown in place, not a new bytes object per read
    assert parser.feed(raw[-1:]) == [(OPCODE_TEXT, payload)]
    assert parser.pending() == 0


def _close(payload: bytes) -> bytes:
    return frame(payload, OPCODE_CLOSE)


@pytest.mark.parametrize(
    ("raw", "code", "why"),
    [
        (bytes([0x81, 0x81, 1, 2, 3, 4, 5]), 1002, "masked"),
        (bytes([0xC1, 0x00]), 1002, "reserved bits"),
        (frame(b"x", 0), 1002, "continuation"),
        (frame(b"x", fin=False) + frame(b"y"), 1002, "new message"),
        (frame(b"", OPCODE_CLOSE, fin=False), 1002, "control frame"),
        (bytes([0x81, 127]) + (1 << 63 | 5).to_bytes(8, "big"), 1002, "top bit"),
        (bytes([0x89, 126, 0, 126]), 1002, "control frame too long: declares 126 bytes"),
        (bytes([0x8A, 127]) + (1 << 40).to_bytes(8, "big"), 1002, "control frame too long"),
        *[(bytes([0x80 | op, 0]), 1002, f"reserved opcode 0x{op:X}")
          for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)],
        (_close(b"\x03"), 1002, "close frame of 1 byte"),
        *[(_close(c.to_bytes(2, "big")), 1002, f"close code {c}")
          for c in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)],
        (_close(b"\x03\xe8\xff\xfe"), 1007, "close reason"),
    ],
)  # fmt: skip
def test_a_broken_stream_is_an_error(raw: bytes, code: int, why: str) -> None:
    with pytest.raises(FrameError, match=why) as caught:
        FrameParser().feed(raw)
    assert caught.value.code == code and caught.value.kind == "protocol"


def test_a_frame_header_error_is_found_as_soon_as_the_header_is_in() -> None:
    with pytest.raises(FrameError, match="reserved opcode 0x3"):
        FrameParser().feed(bytes([0x83, 127]))  # the length is not even known yet
    with pytest.raises(FrameError, match="control frame"):
        FrameParser().feed(bytes([0x89, 127]) + (1 << 40).to_bytes(8, "big"))


@pytest.mark.parametrize(
    ("payload", "parsed"),
    [
        (b"", (None, "")),
        (b"\x03\xe8", (1000, "")),
        (b"\x03\xe9going away", (1001, "going away")),
        (b"\x0b\xb8\xc3\xa9t\xc3\xa9", (3000, "\u00e9t\u00e9")),
        ((4999).to_bytes(2, "big"), (4999, "")),
        ((1014).to_bytes(2, "big"), (1014, "")),
    ],
)
def test_a_valid_close_frame_is_passed_up_and_parsed(
    payload: bytes, parsed: tuple[int | None, str]
) -> None:
    parser = FrameParser()
    out = parser.feed(frame(b"t") + _close(payload) + b"anything after a close is ignored")
    assert out == [(OPCODE_TEXT, b"t"), (OPCODE_CLOSE, payload)]
    assert close_of(payload) == parsed
    assert parser.feed(frame(b"more")) == []


def test_only_pushes_and_replies_feed_the_watchdog() -> None:
    client = AllTickClient("c")
    client.subscribe_trades(["600519.SH"])
    items: list[object] = []

    def alive(messages: list[tuple[int, bytes]]) -> bool:
        return client.receive_read(messages, 1, lambda key, payload, at: items.append(payload))

    parser = FrameParser()
    assert not alive(parser.feed(frame(b"x" * 300)[:100]))  # a frame still arriving
    assert not alive([(OPCODE_PING, b""), (OPCODE_PONG, b"x")])
    assert not alive([(OPCODE_TEXT, b"junk"), (OPCODE_TEXT, b'{"cmd_id":31337}')])
    assert not alive([(OPCODE_BINARY, b"\x00")])
    assert not alive([(OPCODE_TEXT, TRADE.replace(b"600519.SH", b"000001.SZ") % b"")])
    assert items == [] and client.bad_messages == {"json": 1, "unknown_cmd": 1, "binary": 1,
                                                 "unsubscribed": 1}  # fmt: skip
    assert alive([(OPCODE_PING, b""), (OPCODE_TEXT, TRADE % b"")]) and len(items) == 1
    reply = b'{"ret":200,"msg":"ok","cmd_id":22005,"seq_id":1,"trace":"c-1","data":{}}'
    assert alive([(OPCODE_TEXT, reply)]) and len(items) == 1  # an ack shows it alive too


TRADE = (b'{"cmd_id":22998,"data":{"code":"600519.SH","seq":1,"tick_time":1605509068,'
         b'"price":"1.50","volume":"300"%s}}')  # fmt: skip


@pytest.mark.parametrize("extra", [b',"note":"\xff\xfe"', b',"n":"\xed\xa0\x80"', b',"n":"\xc3"'])
def test_a_text_frame_that_is_not_utf8_is_counted_even_in_a_field_the_decoder_skips(
    extra: bytes,
) -> None:
    client = AllTickClient("c", only_subscribed=False)
    assert client.receive(TRADE % extra, 0) is None
    assert client.bad_messages == {"utf8": 1}
    assert client.receive(TRADE % ',"note":"\u00e9t\u00e9"'.encode(), 0) is not None  # UTF-8
