"""Server-to-client WebSocket frames (RFC 6455 section 5), parsed from whatever bytes a socket
read gave, sans-I/O.

websocket-client reads a frame with three or more ``recv`` calls and builds Python objects for
each: most of the receiver's time at full-market rates. Here one large read yields every frame
it holds. websocket-client still makes the connection (handshake, TLS) and sends.

A hostile or broken stream cannot stall or flood the parser: whatever a header can tell (a
reserved opcode, a long or fragmented control frame, a length over the limit) is refused as
soon as the header is in, and nothing after an error or a close is parsed. ``benchmarks.frames``
compares it with websockets' sans-I/O ``ClientProtocol``; ``tests/unit/test_frames_oracle.py``
holds it to the same verdicts.
"""

from __future__ import annotations

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
_KNOWN_OPCODES = frozenset((0x0, 0x1, 0x2, 0x8, 0x9, 0xA))
_DATA = (OPCODE_TEXT, OPCODE_BINARY)
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
MAX_CONTROL_PAYLOAD = 125

Message = tuple[int, bytes]


class FrameError(Exception):
    """The byte stream is not a valid server-to-client WebSocket stream: close the link with
    ``code`` and drop it. ``kind`` counts it ("protocol" or "too_big"); ``messages`` are the
    whole messages of the same feed that came before the bad frame."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.kind = "too_big" if code == CLOSE_TOO_BIG else "protocol"
        self.messages: list[Message] = []


def _protocol(detail: str) -> FrameError:
    return FrameError(CLOSE_PROTOCOL_ERROR, detail)


def close_code_allowed(code: int) -> bool:
    """May a close frame carry this code (RFC 6455 7.4: the defined codes but 1004-1006 and
    1015, which never go on the wire, plus the registered and private 3000-4999)?"""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_of(payload: bytes) -> tuple[int | None, str]:
    """A close frame's ``(code, reason)``; ``(None, "")`` for an empty one. Raises FrameError
    for a payload RFC 6455 forbids (as websockets does: 1002, or 1007 for a bad reason)."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise _protocol("close frame of 1 byte (a code takes 2)")
    try:  # the reason first, as websockets: a bad reason with a bad code is 1007
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
    code = int.from_bytes(payload[:2], "big")
    if not close_code_allowed(code):
        raise _protocol(f"close code {code} is not allowed on the wire")
    return code, reason


class FrameParser:
    """Feed it bytes; get complete messages ``(opcode, payload)`` out, in order: text and
    binary messages (fragments joined), and pings, pongs and a close as they come (control
    frames may come between fragments). After a close, nothing more is parsed.

    A data frame, or a fragmented message's running total, longer than ``max_message_bytes``
    is refused from its header (close 1009): nothing over the limit is ever buffered. The
    incomplete tail of a read waits in one ``bytearray``, extended in place: a large frame
    arriving over many reads is not copied whole per read.
    """

    __slots__ = ("_buffer", "_closed", "_fragments", "_fragments_opcode", "_fragments_size",
                 "max_message_bytes")  # fmt: skip

    def __init__(self, max_message_bytes: int = 1 << 20) -> None:
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragments_opcode = 0
        self._fragments_size = 0
        self._closed = False
        self.max_message_bytes = max_message_bytes

    def feed(self, data: bytes) -> list[Message]:
        out: list[Message] = []
        if self._closed:
            return out  # RFC 6455 1.4: after a close, discard what follows
        buffer = self._buffer
        try:
            at = 0
            if buffer:  # a frame began in an earlier read: finish it, then go on in ``data``
                held = len(buffer)
                buffer += data
                while at < held and len(buffer) - at >= 2 and not self._closed:
                    next_at = self._frame(buffer, at, len(buffer), out)
                    if next_at < 0:
                        break
                    at = next_at
                if at < held or self._closed:
                    del buffer[: len(buffer) if self._closed else at]  # the rest stays in place
                    return out
                buffer.clear()
                at -= held
            at = self._scan(data, at, out)
            if at < len(data):
                buffer += memoryview(data)[at:]
        except FrameError as exc:
            self._closed = True  # the stream is broken: nothing after it is trusted
            buffer.clear()
            exc.messages = out
            raise
        return out

    def _scan(self, src: bytes, at: int, out: list[Message]) -> int:
        """Parse the whole frames of ``src`` from ``at``; return where the first incomplete
        one starts (or the end; after a close, all of it: discarded)."""
        end = len(src)
        limit = self.max_message_bytes
        append = out.append
        while end - at >= 2:
            b0 = src[at]
            length = src[at + 1]
            if b0 != 0x81 or length > 126 or self._fragments_opcode:  # the careful path
                next_at = self._frame(src, at, end, out)
                if next_at < 0:
                    break
                at = next_at
                if self._closed:
                    return end
                continue
            if length < 126:  # the usual: a whole text frame, inline
                start = at + 2
            else:
                if end - at < 4:
                    break
                length = src[at + 2] << 8 | src[at + 3]
                start = at + 4
            if length > limit:
                raise _too_big(length, limit)
            if start + length > end:
                break
            at = start + length
            append((1, src[start:at]))
        return at

    def _frame(self, src: bytes | bytearray, at: int, end: int, out: list[Message]) -> int:
        """One frame of any kind, every rule checked as soon as its bytes are in: the end of
        the frame, or -1 while incomplete."""
        b0, b1 = src[at], src[at + 1]
        fin, opcode = b0 & 0x80, b0 & 0x0F
        if b1 & 0x80:
            raise _protocol("a server frame must not be masked")
        if b0 & 0x70:
            raise _protocol("reserved bits set (no extension was negotiated)")
        if opcode not in _KNOWN_OPCODES:
            raise _protocol(f"reserved opcode 0x{opcode:X}")
        control = opcode >= OPCODE_CLOSE
        if control and not fin:
            raise _protocol("a control frame must not be fragmented")
        if opcode == OPCODE_CONTINUATION and not self._fragments_opcode:
            raise _protocol("a continuation frame with no message to continue")
        if opcode in _DATA and self._fragments_opcode:
            raise _protocol("a new message began before the last one ended")
        length = b1 & 0x7F
        head = 2
        if length == 126:
            if end - at < 4:
                return -1
            length = src[at + 2] << 8 | src[at + 3]
            head = 4
        elif length == 127:
            if end - at < 10:
                return -1
            length = int.from_bytes(src[at + 2 : at + 10], "big")
            head = 10
            if length >> 63:
                raise _protocol("a 64-bit length with the top bit set")
        if control:
            if length > MAX_CONTROL_PAYLOAD:
                raise _protocol(f"control frame too long: declares {length} bytes (at most 125)")
        elif self._fragments_size + length > self.max_message_bytes:
            if self._fragments_opcode:
                raise FrameError(CLOSE_TOO_BIG, f"a fragmented message reaches "
                                 f"{self._fragments_size + length} bytes")  # fmt: skip
            raise _too_big(length, self.max_message_bytes)
        start = at + head
        stop = start + length
        if stop > end:
            return -1
        payload = bytes(src[start:stop])
        if control:
            if opcode == OPCODE_CLOSE:
                close_of(payload)  # a malformed close is an error, never passed up
                self._closed = True
            out.append((opcode, payload))
        elif fin and opcode:
            out.append((opcode, payload))  # a whole binary frame
        else:
            if opcode:
                self._fragments_opcode = opcode
            self._fragments.append(payload)
            self._fragments_size += length
            if fin:
                out.append((self._fragments_opcode, b"".join(self._fragments)))
                self._fragments, self._fragments_opcode, self._fragments_size = [], 0, 0
        return stop

    def pending(self) -> int:
        """Bytes of an incomplete frame held until the rest arrives."""
        return len(self._buffer)


def _too_big(length: int, limit: int) -> FrameError:
    return FrameError(CLOSE_TOO_BIG, f"declares {length} bytes")
