"""Server-to-client WebSocket frames (RFC 6455 section 5), parsed from whatever bytes a socket
read gave, sans-I/O.

websocket-client reads a frame with three or more ``recv`` calls and builds Python objects for
each: most of the receiver's time at full-market rates. Here one large read yields every frame
it holds. websocket-client still makes the connection (handshake, TLS) and sends.
"""

from __future__ import annotations

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA


class FrameError(Exception):
    """The byte stream is not a valid server-to-client WebSocket stream: drop the link."""


class FrameParser:
    """Feed it bytes; get complete messages ``(opcode, payload)`` out, in order.

    Fragmented messages are reassembled (control frames may come between the fragments); of
    one longer than ``max_message_bytes`` only the fragments up to that size are kept, still
    more than the limit, so the caller counts it as oversized without holding it all.
    """

    __slots__ = ("_buffer", "_fragments", "_fragments_opcode", "_fragments_size",
                 "max_message_bytes")  # fmt: skip

    def __init__(self, max_message_bytes: int = 1 << 20) -> None:
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragments_opcode = 0
        self._fragments_size = 0
        self.max_message_bytes = max_message_bytes

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buffer + data if self._buffer else data
        out: list[tuple[int, bytes]] = []
        at, end = 0, len(buf)
        while end - at >= 2:
            b0, b1 = buf[at], buf[at + 1]
            if b1 & 0x80:
                raise FrameError("a server frame must not be masked")
            if b0 & 0x70:
                raise FrameError("reserved bits set (no extension was negotiated)")
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if end - at < 4:
                    break
                length = int.from_bytes(buf[at + 2 : at + 4], "big")
                head = 4
            elif length == 127:
                if end - at < 10:
                    break
                length = int.from_bytes(buf[at + 2 : at + 10], "big")
                head = 10
            if end - at < head + length:
                break
            payload = buf[at + head : at + head + length]
            at += head + length
            opcode = b0 & 0x0F
            if b0 & 0x80 and opcode and not self._fragments_opcode:  # the usual: a whole frame
                out.append((opcode, payload))
            else:
                message = self._fragment(opcode, bool(b0 & 0x80), payload)
                if message is not None:
                    out.append(message)
        self._buffer = buf[at:] if at < end else b""
        return out

    def _fragment(self, opcode: int, fin: bool, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= OPCODE_CLOSE:
            if not fin:
                raise FrameError("a control frame must not be fragmented")
            return opcode, payload  # between the fragments of a message
        if opcode != OPCODE_CONTINUATION:
            if self._fragments_opcode:
                raise FrameError("a new message began before the last one ended")
            self._fragments_opcode = opcode
        elif not self._fragments_opcode:
            raise FrameError("a continuation frame with no message to continue")
        if self._fragments_size <= self.max_message_bytes:  # beyond: keep only what tells
            self._fragments.append(payload)
        self._fragments_size += len(payload)
        if not fin:
            return None
        message = (self._fragments_opcode, b"".join(self._fragments))
        self._fragments, self._fragments_opcode, self._fragments_size = [], 0, 0
        return message

    def pending(self) -> int:
        """Bytes of an incomplete frame held until the rest arrives."""
        return len(self._buffer)
