"""The best single process (issue 15's reference): one process reading the way feedmux's
receiver reads, storing the way a careful user would, and nothing else.

websocket-client makes the connections (handshake, AllTick's pacing) and sends (subscriptions,
heartbeats, pongs); the reads bypass it: each socket, non-blocking, under one ``select``, is
read 256 KiB at a time and split into frames by feedmux's ``FrameParser``
(``feedmux.transports.frames``). That is a fair choice, not a handicap: it is the fastest frame
parser we have (about 10x websockets' sans-I/O ``ClientProtocol``, see ``benchmarks.frames``),
the one feedmux's receiver uses. Trades are decoded into typed msgspec Structs, kept in a dict
snapshot and stored in SQLite, keyed on ``(code, seq)``, in batches of 100 rows or 200 ms, WAL
with ``synchronous=NORMAL``. The way feedmux's SQLite store does it: each batch appends to a
heap table, merged into the keyed table (``INSERT OR IGNORE … ORDER BY code, seq``) every
20,000 rows. Inserting each batch straight into the key falls to ~40k rows/s once the table
holds a few hundred thousand rows (measured: a batch's rows touch a leaf page each), which
capped this baseline at 37,253 ticks/s: a slow path feedmux avoids, so this one avoids it too.

What it does not do, unlike feedmux: no journal, no fan-out (no publisher, no subscribers),
no minute bars, no acknowledgements, no recovery or reconnection, no status or metrics.
"""

from __future__ import annotations

import select
import signal
import socket
import sqlite3
import time
from pathlib import Path

import msgspec
import websocket

from benchmarks.clients import common
from benchmarks.clients.common import Trade, decode
from feedmux.transports.frames import OPCODE_CLOSE, OPCODE_PING, OPCODE_TEXT, FrameParser

READ_BYTES = 256 * 1024  # as feedmux's receiver: one recv takes ~1,000 trade frames
MAX_FRAME_BYTES = 64 * 1024
SEND_TIMEOUT_S = 5.0
BATCH_ROWS = 100
BATCH_DELAY_S = 0.2
MERGE_ROWS = 20_000  # as feedmux's SQLite store
TRADE_CMD = 22998


Row = tuple[str, int, int, float, float, float, int]


class Link:
    """A subscribed connection: its socket read directly, its sends through websocket-client
    (with a timeout for the send only: the socket is otherwise non-blocking)."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        # The handshake reads the response line by line (one byte per recv): no frame bytes
        # can be left inside websocket-client. Checked, since they would be lost here.
        if ws.frame_buffer.recv_buffer:
            raise RuntimeError("websocket-client buffered frame bytes during the handshake")
        if ws.sock is None:
            raise RuntimeError("websocket-client closed the connection")
        self.ws = ws
        self.sock: socket.socket = ws.sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(0)
        self.parser = FrameParser(MAX_FRAME_BYTES)
        # One kept buffer: recv(256 KiB) would allocate and free 256 KiB (an mmap) per read.
        self.buffer = bytearray(READ_BYTES)
        self.view = memoryview(self.buffer)

    def read(self) -> bytes:
        return self.view[: self.sock.recv_into(self.buffer)].tobytes()

    def _send(self, payload: str | bytes, opcode: int) -> None:
        self.sock.settimeout(SEND_TIMEOUT_S)
        try:
            self.ws.send(payload, opcode)
        finally:
            self.sock.settimeout(0)

    def send(self, text: str) -> None:  # common.Heartbeats sends through this
        self._send(text, websocket.ABNF.OPCODE_TEXT)

    def pong(self, payload: bytes) -> None:
        self._send(payload, websocket.ABNF.OPCODE_PONG)


def open_store(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS ticks (code TEXT NOT NULL, seq INTEGER NOT NULL, "
               "tick_time INTEGER, price REAL, volume REAL, turnover REAL, direction INTEGER, "
               "PRIMARY KEY (code, seq)) WITHOUT ROWID")  # fmt: skip
    db.execute("CREATE TABLE IF NOT EXISTS ticks_recent (code TEXT, seq INTEGER, tick_time "
               "INTEGER, price REAL, volume REAL, turnover REAL, direction INTEGER)")  # fmt: skip
    return db


def main() -> None:
    args = common.parse_args(__doc__ or "")
    progress = common.Progress(args.out)
    commits = progress.commit_log()
    db = open_store(Path(args.out) / "ticks.sqlite")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    links = {fd: Link(ws) for fd, ws in common.connect_all(args.url, args.codes_file).items()}
    snapshot: dict[str, Trade] = {}
    rows: list[Row] = []
    first_row_at = 0.0
    insert = "INSERT INTO ticks_recent VALUES (?, ?, ?, ?, ?, ?, ?)"
    merge = "INSERT OR IGNORE INTO ticks SELECT * FROM ticks_recent ORDER BY code, seq"
    staged = [0]

    def flush() -> None:
        db.execute("BEGIN")
        db.executemany(insert, rows)
        staged[0] += len(rows)
        if staged[0] >= MERGE_ROWS:
            db.execute(merge)
            db.execute("DELETE FROM ticks_recent")
            staged[0] = 0
        db.execute("COMMIT")
        commits.record([row[1] for row in rows])
        progress.stored += len(rows)
        rows.clear()

    heartbeats = common.Heartbeats()
    monotonic = time.monotonic
    while not stop and links:
        timeout = max(0.0, first_row_at + BATCH_DELAY_S - monotonic()) if rows else 0.05
        ready, _, _ = select.select(list(links), [], [], timeout)
        for fd in ready:
            link = links[fd]
            try:
                data = link.read()
            except BlockingIOError:
                continue
            if not data:  # the server closed: no reconnection here
                del links[fd]
                continue
            ping = None
            for opcode, payload in link.parser.feed(data):
                if opcode != OPCODE_TEXT:
                    if opcode == OPCODE_PING:
                        ping = payload  # answering the latest is enough (RFC 6455 5.5.3)
                    elif opcode == OPCODE_CLOSE:
                        del links[fd]
                    continue
                try:
                    push = decode(payload)
                except msgspec.DecodeError:
                    continue
                trade = push.data
                if push.cmd_id != TRADE_CMD or trade is None:
                    continue
                progress.received += 1
                snapshot[trade.code] = trade
                if not rows:
                    first_row_at = monotonic()
                rows.append((trade.code, trade.seq, trade.tick_time, trade.price, trade.volume,
                             trade.turnover, trade.trade_direction))  # fmt: skip
                if len(rows) >= BATCH_ROWS:
                    flush()
            if ping is not None and fd in links:
                link.pong(ping)
        if rows and monotonic() >= first_row_at + BATCH_DELAY_S:
            flush()
        progress.maybe_write()
        heartbeats.maybe_send(links.values())
    if rows:
        flush()
    progress.maybe_write(final=True)
    commits.close()


if __name__ == "__main__":
    main()
