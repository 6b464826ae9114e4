"""A strong single-process baseline: websocket-client read loop, msgspec typed decoding, a dict
snapshot, SQLite inserts in batches of 100 rows or every 200 ms."""

from __future__ import annotations

import select
import signal
import sqlite3
import time
from pathlib import Path

import msgspec

from benchmarks.clients import common
from benchmarks.clients.common import Trade, decode

BATCH_ROWS = 100
BATCH_DELAY_S = 0.2


def main() -> None:
    args = common.parse_args(__doc__ or "")
    progress = common.Progress(args.out)
    commits = progress.commit_log()
    db = sqlite3.connect(Path(args.out) / "ticks.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS ticks (code TEXT, seq INTEGER, tick_time INTEGER, "
               "price REAL, volume REAL, turnover REAL, direction INTEGER)")  # fmt: skip
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    links = common.connect_all(args.url, args.codes_file)
    snapshot: dict[str, Trade] = {}
    rows: list[tuple[str, int, int, float, float, float, int]] = []
    first_row_at = 0.0

    def flush() -> None:
        db.execute("BEGIN")
        db.executemany("INSERT INTO ticks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
        commits.record([row[1] for row in rows])
        progress.stored += len(rows)
        rows.clear()

    heartbeats = common.Heartbeats()
    while not stop:
        timeout = max(0.0, first_row_at + BATCH_DELAY_S - time.monotonic()) if rows else 0.05
        ready, _, _ = select.select(list(links), [], [], timeout)
        for fd in ready:
            _, frame = links[fd].recv_data_frame(True)
            try:
                push = decode(frame.data)
            except msgspec.DecodeError:
                continue
            trade = push.data
            if push.cmd_id != 22998 or trade is None:
                continue
            progress.received += 1
            snapshot[trade.code] = trade
            if not rows:
                first_row_at = time.monotonic()
            rows.append((trade.code, trade.seq, trade.tick_time, trade.price, trade.volume,
                         trade.turnover, trade.trade_direction))  # fmt: skip
            if len(rows) >= BATCH_ROWS:
                flush()
        if rows and time.monotonic() >= first_row_at + BATCH_DELAY_S:
            flush()
        progress.maybe_write()
        heartbeats.maybe_send(links.values())
    if rows:
        flush()
    progress.maybe_write(final=True)
    commits.close()


if __name__ == "__main__":
    main()
