"""WsLink against a raw loopback server: what it refuses, how it closes, and that it never waits."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from feedmux.simulator.market import text_frame
from feedmux.transports.frames import OPCODE_CLOSE, OPCODE_TEXT
from feedmux.transports.ws import WsLink
from tests.conftest import scaled, wait_for

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
Script = Callable[["RawServer", socket.socket], None]


def upgrade(request: bytes) -> bytes:
    """The server's answer to a client's WebSocket upgrade request."""
    key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))  # fmt: skip
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept)  # fmt: skip


class RawServer:
    """Accepts one WebSocket, answers the upgrade, then runs ``script`` on the socket; keeps
    the client's frames (unmasked) in ``received``."""

    def __init__(self, script: Script) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self._listener.getsockname()[1]}/quote"
        self.received: list[tuple[int, bytes]] = []
        self.ready = threading.Event()  # for a script that waits on the test
        self._script = script
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            conn.sendall(upgrade(request))
            self._script(self, conn)
            self._done.wait(scaled(10))

    def read_client_frames(self, conn: socket.socket, timeout: float) -> None:
        """Client frames (masked, short) until the client shuts its side or ``timeout``."""
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([conn], [], [], 0.02)[0]:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        while len(data) >= 6:
            length = data[1] & 0x7F
            mask, payload = data[2:6], data[6 : 6 + length]
            self.received.append((data[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in
                                                         enumerate(payload))))  # fmt: skip
            data = data[6 + length :]

    def close(self) -> None:
        self._done.set()
        self._thread.join(scaled(5))
        self._listener.close()


def serving(script: Script) -> contextlib.closing[RawServer]:
    return contextlib.closing(RawServer(script))


def read_until_ended(link: WsLink) -> list[tuple[int, bytes]]:
    messages: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + scaled(5)
    while link.ended is None:
        assert time.monotonic() < deadline, "the link never ended"
        if select.select([link.fileno()], [], [], 0.05)[0]:
            messages += link.read()
    return messages


def test_our_close_sends_a_close_frame_and_does_not_wait_for_an_answer() -> None:
    def never_answers(server: RawServer, conn: socket.socket) -> None:
        server.read_client_frames(conn, scaled(3))

    with serving(never_answers) as server:
        link = WsLink(server.url, 5.0)
        started = time.monotonic()
        link.close()
        assert time.monotonic() - started < 0.5  # websocket-client's close() waits 1 s here
        wait_for(lambda: bool(server.received), 5, "the close frame at the server")
        assert server.received == [(OPCODE_CLOSE, (1000).to_bytes(2, "big"))]


@pytest.mark.parametrize(
    ("bad", "ended", "refused", "code"),
    [
        (bytes([0x81, 127]) + (1 << 40).to_bytes(8, "big"),
         f"frame too big: declares {1 << 40} bytes, --max-frame-bytes is 65536; sent close 1009",
         "too_big", 1009),
        (bytes([0x83, 0]), "protocol error: reserved opcode 0x3; sent close 1002", "protocol",
         1002),
        (text_frame(b"p" * 126, 0x9),
         "protocol error: control frame too long: declares 126 bytes (at most 125); "
         "sent close 1002", "protocol", 1002),
        (text_frame((1001).to_bytes(2, "big") + b"going away", OPCODE_CLOSE),
         "server closed: 1001 going away", None, 1001),
    ],
)  # fmt: skip
def test_a_refused_frame_or_a_server_close_ends_the_link_with_a_close_frame_and_a_reason(
    bad: bytes, ended: str, refused: str | None, code: int
) -> None:
    def script(server: RawServer, conn: socket.socket) -> None:
        conn.sendall(text_frame(b"before") + bad)
        if bad[0] == 0x81:  # the huge header: then 64 KiB every 50 ms, as the fault does
            with contextlib.suppress(OSError):
                for _ in range(20):
                    conn.sendall(b"x" * 65536)
                    time.sleep(0.05)
        server.read_client_frames(conn, scaled(3))

    with serving(script) as server:
        link = WsLink(server.url, 5.0, max_frame_bytes=65536)
        messages = read_until_ended(link)
        assert messages[0] == (OPCODE_TEXT, b"before")
        assert link.ended == ended and link.refused == refused
        link.close()
        wait_for(lambda: bool(server.received), 5, "the close frame at the server")
        assert server.received[0] == (OPCODE_CLOSE, code.to_bytes(2, "big"))


def test_a_ping_flood_from_a_server_that_never_reads_blocks_nothing_and_loses_no_tick() -> None:
    ticks = 200
    sent = threading.Event()

    def script(server: RawServer, conn: socket.socket) -> None:  # it never reads
        with contextlib.suppress(OSError):
            for _ in range(ticks):
                conn.sendall(text_frame(b'{"tick":1}') + text_frame(b"p" * 125, 0x9) * 500)
        sent.set()

    with serving(script) as server:
        link = WsLink(server.url, 5.0)
        got = 0
        deadline = time.monotonic() + scaled(20)
        while got < ticks and link.ended is None and time.monotonic() < deadline:
            if select.select([link.fileno()], [], [], 0.05)[0]:
                got += sum(1 for opcode, _ in link.read() if opcode == OPCODE_TEXT)
        # One pong per read, for the latest ping: a pong per ping (13 MB of them) would fill
        # both buffers and block the read, then fail it.
        assert got == ticks, (got, link.ended)
        assert sent.wait(scaled(5))
        link.close()


def test_a_pong_that_finds_no_room_ends_the_link_without_waiting_and_keeps_the_reads_ticks() -> (
    None
):
    def script(server: RawServer, conn: socket.socket) -> None:  # it never reads
        server.ready.wait(scaled(5))
        conn.sendall(text_frame(b'{"tick":1}') + text_frame(b"p", 0x9))

    with serving(script) as server:
        link = WsLink(server.url, 5.0)
        sock = link._ws.sock  # filled on our side, as a peer that never reads leaves it
        assert sock is not None
        while select.select([], [sock], [], 0.2)[1]:  # until nothing drains to the peer
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock.send(b"\x00" * 65536)
        with contextlib.suppress(BlockingIOError):  # and the last bytes of room
            while True:
                sock.send(b"\x00")
        server.ready.set()
        assert select.select([link.fileno()], [], [], scaled(5))[0]
        assert link.read() == [(OPCODE_TEXT, b'{"tick":1}'), (0x9, b"p")]
        assert link.ended == "pong not sent: BlockingIOError"
        link.close()


def test_half_a_tls_record_is_no_wait_the_rest_comes_with_a_later_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = Path(__file__).parent.parent / "data"
    monkeypatch.setenv("SSL_CERT_FILE", str(data / "localhost.pem"))  # trust the test's own
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(data / "localhost.pem", data / "localhost.key")
    listener = socket.create_server(("127.0.0.1", 0))
    rest = threading.Event()

    def serve() -> None:  # TLS through memory, so the test decides where a record is cut
        raw, _ = listener.accept()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)

        def read(size: int) -> bytes:
            while True:
                try:
                    return tls.read(size)
                except ssl.SSLWantReadError:
                    raw.sendall(outgoing.read())
                    incoming.write(raw.recv(65536))

        with raw:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    raw.sendall(outgoing.read())
                    incoming.write(raw.recv(65536))
            raw.sendall(outgoing.read())
            request = b""
            while b"\r\n\r\n" not in request:
                request += read(65536)
            tls.write(upgrade(request))
            raw.sendall(outgoing.read())
            tls.write(text_frame(b'{"tick":1}'))
            record = outgoing.read()
            raw.sendall(record[: len(record) // 2])
            rest.wait(scaled(10))
            raw.sendall(record[len(record) // 2 :])
            time.sleep(scaled(1))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        link = WsLink(f"wss://localhost:{listener.getsockname()[1]}/quote", 5.0)
        assert select.select([link.fileno()], [], [], scaled(5))[0]
        assert link.read() == []  # half a record: nothing yet, and no wait for the rest
        rest.set()
        assert select.select([link.fileno()], [], [], scaled(5))[0]
        assert link.read() == [(OPCODE_TEXT, b'{"tick":1}')]
        link.close()
    finally:
        rest.set()
        thread.join(scaled(5))
        listener.close()
