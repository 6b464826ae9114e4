"""One client WebSocket on websocket-client, read one frame at a time from a poll loop."""

from __future__ import annotations

import socket

import websocket

OPCODE_TEXT = websocket.ABNF.OPCODE_TEXT
OPCODE_BINARY = websocket.ABNF.OPCODE_BINARY
OPCODE_CLOSE = websocket.ABNF.OPCODE_CLOSE

# Raised by websocket-client for a broken link; callers treat them all as "reconnect".
LinkErrors = (websocket.WebSocketException, OSError)


class WsLink:
    """A connected WebSocket. ``read`` returns one frame; call it when ``fileno`` is readable."""

    def __init__(self, url: str, timeout_s: float, max_frame_bytes: int = 1 << 20) -> None:
        # skip_utf8_validation: the pure-Python UTF-8 check costs ~5x the read; msgspec rejects
        # invalid UTF-8 while decoding anyway. enable_multithread=False: one thread owns it.
        self._ws = websocket.create_connection(
            url,
            timeout=timeout_s,
            skip_utf8_validation=True,
            enable_multithread=False,
            sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        self.max_frame_bytes = max_frame_bytes
        sock = self._ws.sock
        assert sock is not None
        # Kept: websocket-client drops its socket object when the link is lost, and the poll
        # loop still has to unregister this descriptor.
        self.fd = int(sock.fileno())

    def fileno(self) -> int:
        return self.fd

    def buffered(self) -> bool:
        """True when TLS holds decrypted bytes that poll() cannot see."""
        sock = self._ws.sock
        pending = getattr(sock, "pending", None)
        return bool(pending and pending())

    def read(self) -> tuple[int, bytes]:
        """One frame as ``(opcode, payload)``; pings are answered and returned with no payload."""
        opcode, frame = self._ws.recv_data_frame(True)
        data = frame.data if opcode != OPCODE_CLOSE else b""
        return opcode, data if isinstance(data, bytes) else bytes(data)

    def send_text(self, payload: bytes) -> None:
        self._ws.send(payload, OPCODE_TEXT)

    def close(self) -> None:
        try:
            self._ws.close(timeout=1)
        except LinkErrors:
            self._ws.shutdown()  # type: ignore[no-untyped-call]
