"""The usual tutorial: WebSocketApp, json.loads in on_message, a dict snapshot, one SQLite
insert (and commit) per tick."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Any

import websocket

from benchmarks.clients import common


def main() -> None:
    args = common.parse_args(__doc__ or "")
    progress = common.Progress(args.out)
    commits = progress.commit_log()
    db = sqlite3.connect(Path(args.out) / "ticks.sqlite", check_same_thread=False)
    db.execute("CREATE TABLE IF NOT EXISTS ticks (code TEXT, seq INTEGER, tick_time INTEGER, "
               "price REAL, volume REAL, turnover REAL, direction INTEGER)")  # fmt: skip
    lock = threading.Lock()
    snapshot: dict[str, Any] = {}

    def on_message(ws: websocket.WebSocketApp, message: str) -> None:
        msg = json.loads(message)
        if msg.get("cmd_id") != 22998:
            return
        d = msg["data"]
        with lock:
            progress.received += 1
            snapshot[d["code"]] = d
            row = (d["code"], int(d["seq"]), int(d["tick_time"]), float(d["price"]),
                   float(d["volume"]), float(d["turnover"]), d["trade_direction"])  # fmt: skip
            db.execute("INSERT INTO ticks VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            db.commit()
            progress.stored += 1
            commits.record([int(d["seq"])])
            progress.maybe_write()

    apps = []
    for i, codes in common.paced(common.code_chunks(args.codes_file)):
        request = common.subscribe_request(i + 1, codes)
        app = websocket.WebSocketApp(f"{args.url}?token={common.token()}",
                                     on_open=lambda ws, r=request: ws.send(r),
                                     on_message=on_message)  # fmt: skip
        threading.Thread(target=app.run_forever, daemon=True).start()
        apps.append(app)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    heartbeats = common.Heartbeats()
    while not stop.wait(common.STATS_EVERY_S):
        with lock:  # the last ticks of a run must show in stats.json without a further message
            progress.maybe_write()
        heartbeats.maybe_send(apps)
    with lock:
        progress.maybe_write(final=True)
        commits.close()


if __name__ == "__main__":
    main()
