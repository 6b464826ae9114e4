"""One client WebSocket: websocket-client connects and sends; reads take every frame a socket
read holds (``frames.FrameParser``), for a poll loop."""

from __future__ import annotations

import socket

import websocket

from feedmux.providers.alltick import Failure, handshake_failure
from feedmux.transports.frames import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_TEXT,
    FrameError,
    FrameParser,
)

__all__ = [
    "OPCODE_BINARY",
    "OPCODE_CLOSE",
    "OPCODE_TEXT",
    "HandshakeRefused",
    "LinkErrors",
    "WsLink",
]

READ_BYTES = 256 * 1024  # one recv takes whatever arrived, up to this: ~1,000 trade frames

# Raised by websocket-client for a broken link; callers treat them all as "reconnect".
LinkErrors = (websocket.WebSocketException, OSError)


class HandshakeRefused(websocket.WebSocketException):
    """The server answered the upgrade with another HTTP status. Its message is one short
    line: websocket-client's own carries every header and the whole body (an HTML page)."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        body = f": {failure.body}" if failure.body else ""
        super().__init__(f"{failure.detail}{body}")


class WsLink:
    """A connected WebSocket. Call ``read`` when ``fileno`` is readable."""

    def __init__(self, url: str, timeout_s: float, max_frame_bytes: int = 1 << 20) -> None:
        # skip_utf8_validation: the pure-Python UTF-8 check costs ~5x the read; msgspec rejects
        # invalid UTF-8 while decoding anyway. enable_multithread=False: one thread owns it.
        try:
            self._ws = websocket.create_connection(
                url,
                timeout=timeout_s,
                skip_utf8_validation=True,
                enable_multithread=False,
                sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            )
        except websocket.WebSocketBadStatusException as exc:
            raise HandshakeRefused(handshake_failure(exc.status_code, exc.resp_body)) from None
        self.max_frame_bytes = max_frame_bytes
        self._parser = FrameParser(max_frame_bytes)
        sock = self._ws.sock
        assert sock is not None
        # Kept: websocket-client drops its socket object when the link is lost, and the poll
        # loop still has to unregister this descriptor.
        self.fd = int(sock.fileno())

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[tuple[int, bytes]]:
        """Every whole message the socket holds now, as ``(opcode, payload)``: one read of up
        to READ_BYTES (and what TLS has decrypted), parsed here. Pings are answered; an empty
        read (the peer closed) is returned as a close."""
        sock = self._ws.sock
        if sock is None:
            raise websocket.WebSocketConnectionClosedException("the link is closed")
        data = sock.recv(READ_BYTES)
        if not data:
            return [(OPCODE_CLOSE, b"")]
        pending = getattr(sock, "pending", None)
        while pending is not None and pending():  # TLS: decrypted bytes poll() cannot see
            data += sock.recv(READ_BYTES)
        try:
            messages = self._parser.feed(data)
        except FrameError as exc:
            raise websocket.WebSocketProtocolException(str(exc)) from exc
        for opcode, payload in messages:
            if opcode == OPCODE_PING:
                self._ws.pong(payload)
        return messages

    def send_text(self, payload: bytes) -> None:
        self._ws.send(payload, OPCODE_TEXT)

    def close(self) -> None:
        try:
            self._ws.close(timeout=1)
        except LinkErrors:
            self._ws.shutdown()  # type: ignore[no-untyped-call]
