"""The oracle: FrameParser and websockets' sans-I/O ClientProtocol must agree on any byte stream.

Streams are valid frame sequences (whole and fragmented messages, pings and pongs between
fragments, closes with good and bad codes and reasons, frames over the limit, reserved opcodes
and bits) with random mutations (flipped bits, changed bytes, deleted and inserted runs, a cut
end), fed split at random points. Both must pass up the same messages, up to and including the
first close, and accept or reject the stream alike.

Deliberate differences, mapped here rather than hidden:

- We refuse whatever a header can tell (reserved bits, a long or fragmented control frame, a
  continuation with nothing to continue) as soon as the header is in; websockets waits for the
  payload. When the stream ends inside such a frame, websockets is given the rest of that frame
  (zero bytes) before the verdicts are compared.
- A frame both malformed and over the limit: we name the malformation (1002), websockets the
  size (1009). A 64-bit length with the top bit set is such a frame.
- websockets counts a control frame against what is left of a fragmented message's size budget
  (a 10-byte ping 5 bytes before the limit fails the connection with 1009); RFC 6455 gives
  control frames their own 125-byte limit, and so do we. Compared up to that frame.
- A close between fragments: websockets parses it, then fails with 1002 ("incomplete
  fragmented message"); we pass the close up (RFC 6455 5.4 allows control frames there). Both
  end the link; compared as the close.
- Text payloads are not checked for UTF-8 by either at this layer (ClientProtocol leaves it to
  its I/O layers; we count such a message as bad in AllTickClient.receive and go on).
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from feedmux.transports.frames import FrameError, FrameParser

Message = tuple[int, bytes]
URI = parse_uri("ws://127.0.0.1/quote")


# -- streams ---------------------------------------------------------------------------------
def header(b0: int, length: int, *, wide: int = 0) -> bytes:
    """A server frame header; ``wide`` forces the 16-bit (2) or 64-bit (8) length form."""
    if wide == 8 or length >= 1 << 16:
        return bytes((b0, 127)) + length.to_bytes(8, "big")
    if wide == 2 or length >= 126:
        return bytes((b0, 126)) + length.to_bytes(2, "big")
    return bytes((b0, length))


def frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, wide: int = 0) -> bytes:
    return header((0x80 if fin else 0) | rsv << 4 | opcode, len(payload), wide=wide) + payload


payloads = st.binary(max_size=40) | st.binary(min_size=100, max_size=400)
text = st.text(max_size=30).map(str.encode) | st.binary(max_size=30)  # not always UTF-8
close_codes = st.sampled_from([1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999, 0, 999,
                               1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])  # fmt: skip
close_reasons = st.sampled_from([b"", b"going away", "bientôt".encode(), b"\xff\xfe", b"\xc3"])


@st.composite
def closes(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return frame(0x8, b"")
    if kind == 1:
        return frame(0x8, draw(st.binary(min_size=1, max_size=1)))
    return frame(0x8, struct.pack("!H", draw(close_codes)) + draw(close_reasons))


control_payloads = st.binary(max_size=8) | st.binary(min_size=124, max_size=127)
controls = (
    st.builds(lambda p: frame(0x9, p), control_payloads)
    | st.builds(lambda p: frame(0xA, p), control_payloads)
    | closes()
)


@st.composite
def fragmented(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(payloads, min_size=2, max_size=4))
    out = frame(draw(st.sampled_from([0x1, 0x2])), parts[0], fin=False)
    for i, part in enumerate(parts[1:], 1):
        if draw(st.booleans()):
            out += draw(controls)
        out += frame(0x0, part, fin=i == len(parts) - 1)
    return out


odd = st.one_of(
    st.builds(lambda op: frame(op, b"x"), st.sampled_from([*range(3, 8), *range(0xB, 0x10)])),
    st.builds(lambda r, p: frame(0x1, p, rsv=r), st.integers(1, 7), st.binary(max_size=10)),
    st.builds(lambda p: frame(0x9, p, fin=False), st.binary(max_size=10)),
    st.builds(lambda p, w: frame(0x1, p, wide=w), st.binary(max_size=10), st.sampled_from([2, 8])),
    st.builds(lambda n: header(0x81, n), st.integers(401, 1 << 40)),  # over the limit
    st.builds(lambda n: header(0x82, n, wide=8), st.integers(1 << 63, (1 << 64) - 1)),
    st.just(frame(0x0, b"no message to continue")),
    st.just(bytes((0x81, 0x82, 1, 2, 3, 4, 5, 6))),  # masked
)
frames = st.one_of(
    st.builds(lambda p: frame(0x1, p), text),
    st.builds(lambda p: frame(0x2, p), payloads),
    st.builds(lambda p: frame(0x1, p), payloads),
    fragmented(),
    controls,
    odd,
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[int], int]:
    stream = bytearray(b"".join(draw(st.lists(frames, max_size=8))))
    for _ in range(draw(st.integers(0, 3))):  # mutations
        how = draw(st.integers(0, 4))
        at = draw(st.integers(0, len(stream)))
        if how == 0 and at < len(stream):
            stream[at] ^= 1 << draw(st.integers(0, 7))
        elif how == 1 and at < len(stream):
            stream[at] = draw(st.integers(0, 255))
        elif how == 2:
            del stream[at : at + draw(st.integers(1, 20))]
        elif how == 3:
            stream[at:at] = draw(st.binary(min_size=1, max_size=12))
        else:
            del stream[at:]
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    return bytes(stream), cuts, draw(st.sampled_from([300, 400, 1024]))


def chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


# -- the two parsers -------------------------------------------------------------------------
@dataclass
class Verdict:
    messages: list[Message]
    code: int | None  # the close code of a rejection; None: accepted


def ours(parts: list[bytes], max_size: int) -> Verdict:
    parser, out = FrameParser(max_size), []
    for part in parts:
        try:
            out += parser.feed(part)
        except FrameError as exc:
            return Verdict(out + exc.messages, exc.code)
    return Verdict(out, None)


@dataclass
class Theirs(Verdict):
    frames_seen: int = 0  # frames ClientProtocol parsed: the next one is where it stopped
    exc: Exception | None = None


class Reassembly:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.frames = 0
        self._opcode = 0
        self._parts: list[bytes] = []
        self.closed = False

    def take(self, proto: ClientProtocol) -> None:
        for f in proto.events_received():
            assert not isinstance(f, (str, bytes)) and hasattr(f, "opcode")
            self.frames += 1
            data = bytes(f.data)
            if f.opcode in (Opcode.TEXT, Opcode.BINARY) and f.fin:
                self.messages.append((int(f.opcode), data))
            elif f.opcode in (Opcode.TEXT, Opcode.BINARY):
                self._opcode, self._parts = int(f.opcode), [data]
            elif f.opcode is Opcode.CONT:
                self._parts.append(data)
                if f.fin:
                    self.messages.append((self._opcode, b"".join(self._parts)))
            else:
                self.messages.append((int(f.opcode), data))
                self.closed = f.opcode is Opcode.CLOSE


def theirs(parts: list[bytes], max_size: int, pad: int = 0) -> Theirs:
    proto = ClientProtocol(URI, state=State.OPEN, max_size=max_size)
    got = Reassembly()
    for part in [*parts, bytes(pad)]:
        proto.receive_data(part)
        got.take(proto)
        if got.closed or proto.parser_exc is not None:
            break
    exc = proto.parser_exc
    if isinstance(exc, ProtocolError) and "incomplete fragmented" in str(exc):
        close = proto.close_rcvd  # parsed (and valid) before the fragment check failed
        assert close is not None
        code = b"" if close.code == 1005 else struct.pack("!H", close.code)
        payload = code + close.reason.encode() if code else b""
        got.messages.append((0x8, payload))
        got.frames += 1
        exc = None
    code = None
    if exc is not None:
        assert proto.close_sent is not None
        code = proto.close_sent.code
    return Theirs(got.messages, code, got.frames, exc)


def walk(stream: bytes) -> list[tuple[int, int, int | None]]:
    """Where each frame starts, its first byte and its length (None: header incomplete), read
    naively: the frames both parsers see, until the stream ends."""
    out: list[tuple[int, int, int | None]] = []
    at = 0
    while at + 2 <= len(stream):
        b1 = stream[at + 1] & 0x7F
        head = {126: 4, 127: 10}.get(b1, 2)
        if at + head > len(stream):
            out.append((at, stream[at], None))
            break
        length = int.from_bytes(stream[at + 2 : at + head], "big") if head > 2 else b1
        out.append((at, stream[at], length))
        at += head + length + (4 if stream[at + 1] & 0x80 else 0)
    return out


def rest_of_frame(stream: bytes, index: int, max_size: int) -> int:
    """Bytes still missing from frame ``index`` of the stream (0 if it is whole or absent)."""
    frames_in = walk(stream)
    if index >= len(frames_in):
        return 0
    start, _, length = frames_in[index]
    head = {126: 4, 127: 10}.get(stream[start + 1] & 0x7F, 2)
    if length is None:  # zeros complete the extended length; then its payload, if allowed
        missing = start + head - len(stream)
        length = int.from_bytes((stream[start:] + bytes(missing))[2:head], "big")
        return missing + (length if length <= max_size else 0)
    return max(0, start + head + length - len(stream))


# -- the oracle ------------------------------------------------------------------------------
def compare(stream: bytes, cuts: list[int], max_size: int) -> None:
    parts = chunks(stream, cuts)
    mine = ours(parts, max_size)
    them = theirs(parts, max_size)
    if mine.code is not None and them.code is None:  # refused from the header: let websockets
        pad = rest_of_frame(stream, them.frames_seen, max_size)  # see the whole frame too
        them = theirs(parts, max_size, pad)
    if isinstance(them.exc, PayloadTooBig):
        _, b0, length = walk(stream)[them.frames_seen]
        if b0 & 0x0F >= 0x8 and length is not None and length <= 125:  # the budget quirk
            assert mine.messages[: len(them.messages)] == them.messages
            return
    assert mine.messages == them.messages
    assert (mine.code is None) == (them.code is None), (mine, them)
    if mine.code != them.code:
        assert (mine.code, them.code) == (1002, 1009), (mine, them)  # malformed and too big


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_frameparser_and_websockets_agree_on_any_stream(case: tuple[bytes, list[int], int]) -> None:
    compare(*case)


def test_a_refusal_before_the_extended_length_is_in() -> None:
    """Found by the oracle: a continuation with nothing to continue, its 16-bit length half
    read. We refuse at once; websockets, given the rest, agrees."""
    compare(b"\x80~\x01", [], 300)


def test_the_oracle_sees_a_difference() -> None:
    """The oracle can fail: a parser that passed a reserved opcode up would be caught."""
    stream = frame(0x1, b"a") + frame(0x3, b"b")
    them = theirs([stream], 1024)
    assert them.messages == [(0x1, b"a")] and them.code == 1002
    assert ours([stream], 1024) == Verdict([(0x1, b"a")], 1002)
