"""The embedded default store: one SQLite file per shard, WAL mode, batched inserts.

One file per shard because SQLite allows one writer at a time per database: eight shards
writing one file would queue on its lock. ``read_ticks`` merges the files.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import msgspec
from msgspec.structs import astuple

from feedmux.errors import StoreError
from feedmux.model import Depth, Tick
from feedmux.sinks.base import WriteResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS ticks (
    code      TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    time_ns   INTEGER NOT NULL,
    recv_ns   INTEGER NOT NULL,
    price     REAL    NOT NULL,
    volume    REAL    NOT NULL,
    turnover  REAL    NOT NULL,
    direction INTEGER NOT NULL,
    PRIMARY KEY (code, seq)
) WITHOUT ROWID
"""
BOOKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS books (
    code      TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    time_ns   INTEGER NOT NULL,
    recv_ns   INTEGER NOT NULL,
    bids      TEXT    NOT NULL,  -- JSON [[price, volume], ...], best first
    asks      TEXT    NOT NULL,
    PRIMARY KEY (code, seq)
) WITHOUT ROWID
"""
INSERT = "INSERT OR IGNORE INTO ticks VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_BOOK = "INSERT OR IGNORE INTO books VALUES (?, ?, ?, ?, ?, ?)"
_json = msgspec.json.Encoder().encode
_LATEST = """
WITH RECURSIVE codes(code) AS (
    SELECT MIN(code) FROM {table}
    UNION ALL
    SELECT (SELECT MIN(code) FROM {table} WHERE code > codes.code) FROM codes
    WHERE codes.code IS NOT NULL
)
SELECT t.* FROM codes JOIN {table} AS t ON t.code = codes.code
 AND t.seq = (SELECT MAX(seq) FROM {table} WHERE code = codes.code)
"""
_levels = msgspec.json.Decoder(list[tuple[float, float]])


def _book_side(raw: str) -> list[tuple[float, float]]:
    return _levels.decode(raw)


TICKS_DIR = "ticks"


def shard_db_path(data_dir: Path, shard: int) -> Path:
    return data_dir / TICKS_DIR / f"shard-{shard}.sqlite"


def connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
        # The WAL checkpoints every 1,000 pages (the default). Each 100-row commit touches a
        # leaf page of most of the shard's codes, so 10x rarer checkpoints measured 35k instead
        # of 22k rows/s, but their bursts of disk writes took the p99 of send -> Subscriber at
        # 10k ticks/s from 5.5 ms to 50 ms on the dev machine: latency wins.
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute(SCHEMA)
        conn.execute(BOOKS_SCHEMA)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open SQLite store {path}: {exc}") from exc
    return conn


class SqliteSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)

    def write_batch(self, ticks: list[Tick]) -> WriteResult:
        return self._insert(INSERT, [astuple(t) for t in ticks])

    def write_books(self, books: list[Depth]) -> WriteResult:
        rows = [(b.code, b.seq, b.time_ns, b.recv_ns, _json(b.bids).decode(),
                 _json(b.asks).decode()) for b in books]  # fmt: skip
        return self._insert(INSERT_BOOK, rows)

    def _insert(self, sql: str, rows: Sequence[tuple[object, ...]]) -> WriteResult:
        conn = self._conn
        before = conn.total_changes
        try:
            conn.execute("BEGIN")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"SQLite write to {self.path} failed: {exc}") from exc
        inserted = conn.total_changes - before
        return WriteResult(inserted, len(rows) - inserted)

    def latest(self) -> tuple[list[Tick], list[Depth]]:
        """The stored tick and book with the highest seq of each code (a restarted shard's
        snapshot). A skip-scan over the primary key: one index probe per code, not a scan."""
        ticks = [Tick(*row) for row in self._conn.execute(_LATEST.format(table="ticks"))]
        books = [
            Depth(code, seq, time_ns, recv_ns, _book_side(bids), _book_side(asks))
            for code, seq, time_ns, recv_ns, bids, asks in self._conn.execute(
                _LATEST.format(table="books")
            )
        ]
        return ticks, books

    def close(self) -> None:
        self._conn.close()
