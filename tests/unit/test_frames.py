from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedmux.simulator.market import text_frame
from feedmux.transports.frames import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_TEXT,
    FrameError,
    FrameParser,
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


def test_an_oversized_fragmented_message_is_not_held_whole() -> None:
    parts = [frame(b"a" * 1000, fin=False)] + [frame(b"b" * 1000, 0, fin=False)] * 20
    parser = FrameParser(max_message_bytes=2500)
    [(opcode, payload)] = parser.feed(b"".join(parts) + frame(b"end", 0))
    assert opcode == OPCODE_TEXT and 2500 < len(payload) <= 3500


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (bytes([0x81, 0x81, 1, 2, 3, 4, 5]), "masked"),
        (bytes([0xC1, 0x00]), "reserved"),
        (frame(b"x", 0), "continuation"),
        (frame(b"x", fin=False) + frame(b"y"), "new message"),
        (frame(b"", OPCODE_CLOSE, fin=False), "control frame"),
    ],
)
def test_a_broken_stream_is_an_error(raw: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        FrameParser().feed(raw)
