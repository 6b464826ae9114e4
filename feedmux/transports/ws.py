"""One client WebSocket: websocket-client connects and sends; reads take every frame a socket
read holds (``frames.FrameParser``), for a poll loop. Nothing here waits on the peer: a close is
one frame we send without blocking, then the socket is shut."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import Callable

import websocket

from feedmux.providers.base import Failure, first_line, handshake_status
from feedmux.transports.frames import (
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_TEXT,
    FrameError,
    FrameParser,
    close_of,
)

__all__ = ["HandshakeRefused", "LinkErrors", "WsLink"]

READ_BYTES = 256 * 1024  # one recv takes whatever arrived, up to this: ~1,000 trade frames
# Reads land in one buffer kept for the link's life: ``recv(READ_BYTES)`` would allocate (mmap)
# and free 256 KiB on every read, ~15 us each, more than a trickle's whole read costs.
CLOSE_NORMAL = 1000
SERVER_EOF = "server closed the connection"
# How a refused handshake (HTTP status, body) is classified; a vendor's provider knows better.
Classify = Callable[[int, bytes | str | None], Failure]


def _by_status(status: int, body: bytes | str | None) -> Failure:
    return handshake_status(status, first_line(body))


# Raised by websocket-client for a broken link; callers treat them all as "reconnect".
LinkErrors = (websocket.WebSocketException, OSError)


class HandshakeRefused(websocket.WebSocketException):
    """The server answered the upgrade with another HTTP status. Its message is one short
    line: websocket-client's own carries every header and the whole body (an HTML page)."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        body = f": {failure.body}" if failure.body else ""
        super().__init__(f"{failure.detail}{body}")


def server_close_reason(payload: bytes) -> str:
    """How a server's (valid) close frame is logged and journaled: "server closed: 1001 going
    away", or "server closed: no close code" for an empty one."""
    code, reason = close_of(payload)
    if code is None:
        return "server closed: no close code"
    reason = " ".join(reason.split())  # one line in the log, whatever the server put there
    return f"server closed: {code} {reason}" if reason else f"server closed: {code}"


def refusal_reason(exc: FrameError, max_frame_bytes: int) -> str:
    """How a frame the parser refused is logged and journaled (before the close we send)."""
    if exc.kind == "too_big":
        return f"frame too big: {exc.detail}, --max-frame-bytes is {max_frame_bytes}"
    return f"protocol error: {exc.detail}"


class WsLink:
    """A connected WebSocket. Call ``read`` when ``fileno`` is readable; once ``ended`` is set
    (the server closed, or sent what the parser refused: then ``refused`` is the bad-frame kind)
    the link has sent its close and is shut: drop it."""

    def __init__(
        self,
        url: str,
        timeout_s: float,
        max_frame_bytes: int = 1 << 20,
        *,
        header: list[str] | None = None,  # handshake headers (a vendor's token may go here)
        classify: Classify = _by_status,  # the vendor's reading of a refused handshake
    ) -> None:
        # skip_utf8_validation: the pure-Python UTF-8 check costs ~5x the read; text frames
        # are checked where they are decoded (the vendor's session). enable_multithread=False:
        # one thread owns it.
        try:
            self._ws = websocket.create_connection(
                url,
                timeout=timeout_s,
                header=header or None,
                skip_utf8_validation=True,
                enable_multithread=False,
                sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            )
        except websocket.WebSocketBadStatusException as exc:
            raise HandshakeRefused(classify(exc.status_code, exc.resp_body)) from None
        self.max_frame_bytes = max_frame_bytes
        self._send_timeout_s = timeout_s
        self._parser = FrameParser(max_frame_bytes)
        self.ended: str | None = None
        self.refused: str | None = None
        self._close_sent = False
        sock = self._ws.sock
        assert sock is not None
        # Reads never wait (poll says when bytes are in; over TLS they may be half a record).
        sock.settimeout(0)
        # Kept: websocket-client drops its socket object when the link is lost, and the poll
        # loop still has to unregister this descriptor.
        self.fd = int(sock.fileno())
        self._into = bytearray(READ_BYTES)
        self._view = memoryview(self._into)

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[tuple[int, bytes]]:
        """Every whole message the socket holds now, as ``(opcode, payload)``: one read of up
        to READ_BYTES (and what TLS has decrypted), parsed here. Pings are answered. A close
        frame (the last message), the end of the stream or a refused frame set ``ended``."""
        sock = self._ws.sock
        if sock is None or self.ended is not None:
            raise websocket.WebSocketConnectionClosedException("the link is closed")
        try:
            data = self._view[: sock.recv_into(self._into)].tobytes()
        except (ssl.SSLWantReadError, BlockingIOError):
            return []  # half a TLS record: the rest comes with a later poll
        if not data:
            self._end(SERVER_EOF)
            return []
        pending = getattr(sock, "pending", None)
        while pending is not None and pending():  # TLS: decrypted bytes poll() cannot see
            try:
                data += self._view[: sock.recv_into(self._into)].tobytes()
            except (ssl.SSLWantReadError, BlockingIOError):
                break  # what was read so far is parsed; the rest comes with a later poll
        try:
            messages = self._parser.feed(data)
        except FrameError as exc:
            self.refused = exc.kind
            code = struct.pack("!H", exc.code)
            self._end(refusal_reason(exc, self.max_frame_bytes) + self._send_close(code))
            return exc.messages  # the whole messages before the bad frame still count
        ping = None
        for opcode, payload in messages:
            if opcode == OPCODE_PING:
                ping = payload  # RFC 6455 5.5.3: answering the latest ping is enough
            elif opcode == OPCODE_CLOSE:  # the parser stops at a close: it is the last
                self._send_close(payload[:2])  # echo its code (none for an empty close)
                self._end(server_close_reason(payload))
        if ping is not None and self.ended is None:
            try:  # without waiting: a server that does not read its pongs is not served
                self._ws.pong(ping)
            except LinkErrors as exc:
                self._end(f"pong not sent: {type(exc).__name__}")
        return messages  # the messages of this read count, whatever became of the link

    def _end(self, why: str) -> None:
        """The link is over: shut the socket at once (the poll loop then drops it)."""
        self.ended = why
        self._close_sent = True  # nothing can be sent once shut
        sock = self._ws.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already reset by the peer: nothing to shut
                sock.shutdown(socket.SHUT_RDWR)

    def _send_close(self, payload: bytes) -> str:
        """Queue our close frame if the socket takes it now; never wait for room or an answer
        (websocket-client's ``close()`` reads for up to its timeout with its own parser)."""
        if self._close_sent:
            return ""
        self._close_sent = True
        code = int.from_bytes(payload, "big") if payload else None
        try:  # the socket's timeout is 0 (outside send_text): this never waits
            self._ws.send(payload, websocket.ABNF.OPCODE_CLOSE)
        except LinkErrors as exc:
            return f"; close {code} not sent: {type(exc).__name__}" if code else ""
        return f"; sent close {code}" if code else ""

    def send_text(self, payload: bytes) -> None:
        """A request: it may wait up to the connect timeout for room in the socket (a whole
        subscription list is ~60 KB), never for an answer."""
        sock = self._ws.sock
        if sock is None:
            raise websocket.WebSocketConnectionClosedException("the link is closed")
        sock.settimeout(self._send_timeout_s)
        try:
            self._ws.send(payload, OPCODE_TEXT)
        finally:
            sock.settimeout(0)

    def close(self) -> None:
        """Our close: a close frame (1000, unless one was sent already), then the socket."""
        self._send_close(struct.pack("!H", CLOSE_NORMAL))
        sock = self._ws.sock
        if sock is not None:  # FIN after our close frame, before close() may reset unread data
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._ws.shutdown()  # type: ignore[no-untyped-call]
