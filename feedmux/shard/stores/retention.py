"""The oldest trading days removed (``--keep-days``), and which days a SQLite store holds.

SQLite: one code at a time down the key ``(code, trading_day, seq)``, committed every
``ROWS_PER_COMMIT`` rows (or after a code with more), so the shards writing the same file wait
for one short transaction at a time, never the whole removal. The file does not shrink: its
free pages take the next days' ticks, so a store that keeps N days stays about N days large.
PostgreSQL: one DELETE per table, bounded by time too so the BRIN index on ``time_ns`` finds
the range (other rows' inserts go on).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg

from feedmux.errors import StoreError
from feedmux.market.day import DAY_NS
from feedmux.passwords import mask_passwords
from feedmux.shard.stores.postgres import BARS_TABLE, BOOKS_TABLE, TICKS_TABLE
from feedmux.shard.stores.sqlite import open_existing

ROWS_PER_COMMIT = 20_000
# Each table's key columns after the code, and the column a cutoff compares
_KEYED = (("ticks", "trading_day"), ("books", "trading_day"), ("bars", "minute_ns"))
_NEXT_CODE = "SELECT MIN(code) FROM {table} WHERE code > ?"
_NEXT_DAY = "SELECT MIN(trading_day) FROM ticks WHERE code = ? AND trading_day > ?"
_DAY_ROWS = "SELECT COUNT(*) FROM ticks WHERE code = ? AND trading_day = ?"


def _codes(conn: sqlite3.Connection, table: str) -> Iterator[str]:
    """Every code of a keyed table, by a skip-scan (one probe per code)."""
    code = conn.execute(f"SELECT MIN(code) FROM {table}").fetchone()[0]
    while code is not None:
        yield code
        code = conn.execute(_NEXT_CODE.format(table=table), (code,)).fetchone()[0]


@contextlib.contextmanager
def _open(path: Path) -> Iterator[sqlite3.Connection]:
    try:
        conn = open_existing(path)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open SQLite store {path}: {exc}") from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite store {path}: {exc}") from exc
    finally:
        conn.close()


def stored_days(path: Path) -> set[int]:
    """The trading days a shard file holds ticks of: a skip-scan over codes and their days
    (one probe per code and day, not a scan of the rows)."""
    days: set[int] = set()
    with _open(path) as conn:
        conn.execute("BEGIN")  # one snapshot: a merge meanwhile moves rows between tables
        for code in list(_codes(conn, "ticks")):
            day = -1
            while (day := conn.execute(_NEXT_DAY, (code, day)).fetchone()[0]) is not None:
                days.add(day)
        days.update(d for (d,) in conn.execute("SELECT DISTINCT trading_day FROM ticks_recent"))
    return days


def day_rows(files: list[Path], day: int) -> int:
    """The ticks of trading day ``day`` in every shard file (one probe per code)."""
    rows = 0
    for path in files:
        with _open(path) as conn:
            conn.execute("BEGIN")
            for code in list(_codes(conn, "ticks")):
                rows += conn.execute(_DAY_ROWS, (code, day)).fetchone()[0]
            rows += conn.execute("SELECT COUNT(*) FROM ticks_recent WHERE trading_day = ?",
                                 (day,)).fetchone()[0]  # fmt: skip
    return rows


def remove_sqlite(path: Path, before_day: int, before_ns: int) -> int:
    """Remove a shard file's ticks and books of trading days before ``before_day`` and its
    bars before ``before_ns``; the rows removed."""
    removed = 0
    with _open(path) as conn:
        for table, column in _KEYED:
            limit = before_ns if column == "minute_ns" else before_day
            codes, pending = list(_codes(conn, table)), 0
            conn.execute("BEGIN IMMEDIATE")
            for code in codes:
                pending += conn.execute(f"DELETE FROM {table} WHERE code = ? AND {column} < ?",
                                        (code, limit)).rowcount  # fmt: skip
                if pending >= ROWS_PER_COMMIT:  # let the shards write in between
                    conn.execute("COMMIT")
                    removed, pending = removed + pending, 0
                    conn.execute("BEGIN IMMEDIATE")
            conn.execute("COMMIT")
            removed += pending
        removed += conn.execute("DELETE FROM ticks_recent WHERE trading_day < ?",
                                (before_day,)).rowcount  # fmt: skip
    return removed


def remove_postgres(url: str, before_day: int, before_ns: int) -> int:
    """The same in a PostgreSQL store; the rows removed. A tick of a day before
    ``before_day`` is older than a day after ``before_ns`` in any zone: that bound lets the
    BRIN index on ``time_ns`` skip the days kept."""
    by_day = "trading_day < %s AND time_ns < %s"
    params = (before_day, before_ns + DAY_NS)
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            removed = 0
            for table, where, args in ((TICKS_TABLE, by_day, params),
                                       (BOOKS_TABLE, by_day, params),
                                       (BARS_TABLE, "minute_ns < %s", (before_ns,))):  # fmt: skip
                cursor = conn.execute(f"DELETE FROM {table} WHERE {where}", args)
                removed += max(0, cursor.rowcount)
            return removed
    except psycopg.Error as exc:
        raise StoreError(f"cannot remove old days from PostgreSQL {mask_passwords(url)}: "
                         f"{exc}") from exc  # fmt: skip
