"""PostgreSQL store (psycopg 3): binary COPY into a temporary staging table, then one
``INSERT … ON CONFLICT DO NOTHING``, so a duplicate is skipped and counted, never fatal.

Each shard writes through its own connection. A lost connection (a server restart) makes the
write raise StoreError; the RetryingWriter keeps the batch and retries, and the next write
reconnects. Columns mirror the SQLite store (times as integer nanoseconds, UTC) so every
source reads back identically. The key is a tick's identity, (code, trading_day, seq), as in
every store (feedmux/identity.py); a table keyed (code, seq, time_ns) by an older feedmux is
migrated when a shard connects. (TimescaleDB: partition by the integer ``trading_day``.)
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from feedmux.bars import Bar
from feedmux.errors import StoreError
from feedmux.identity import trading_day, trading_day_sql
from feedmux.model import Depth, Tick
from feedmux.sinks.base import WriteResult

TICKS_TABLE = "feedmux_ticks"
BOOKS_TABLE = "feedmux_books"
BARS_TABLE = "feedmux_bars"
CONNECT_TIMEOUT_S = 5
APPLICATION_NAME = "feedmux"  # as pg_stat_activity shows the shards' connections
_SCHEMA_LOCK = 0x6665_6D78  # advisory lock id: shards creating the schema at once would race
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TICKS_TABLE} (
    code      text             NOT NULL,
    seq       bigint           NOT NULL,
    time_ns   bigint           NOT NULL,
    recv_ns   bigint           NOT NULL,
    price     double precision NOT NULL,
    volume    double precision NOT NULL,
    turnover  double precision NOT NULL,
    direction smallint         NOT NULL,
    trading_day integer        NOT NULL,
    PRIMARY KEY (code, trading_day, seq)
);
CREATE TABLE IF NOT EXISTS {BOOKS_TABLE} (
    code    text   NOT NULL,
    seq     bigint NOT NULL,
    time_ns bigint NOT NULL,
    recv_ns bigint NOT NULL,
    bids    jsonb  NOT NULL,
    asks    jsonb  NOT NULL,
    trading_day integer NOT NULL,
    PRIMARY KEY (code, trading_day, seq)
);
CREATE TABLE IF NOT EXISTS {BARS_TABLE} (
    code      text             NOT NULL,
    minute_ns bigint           NOT NULL,
    open      double precision NOT NULL,
    high      double precision NOT NULL,
    low       double precision NOT NULL,
    close     double precision NOT NULL,
    volume    double precision NOT NULL,
    turnover  double precision NOT NULL,
    count     integer          NOT NULL,
    PRIMARY KEY (code, minute_ns)
);
CREATE INDEX IF NOT EXISTS {TICKS_TABLE}_time ON {TICKS_TABLE} USING brin (time_ns);
"""
_TICK_TYPES = ["text", "int8", "int8", "int8", "float8", "float8", "float8", "int2", "int4"]
_BOOK_TYPES = ["text", "int8", "int8", "int8", "jsonb", "jsonb", "int4"]
TICK_COLUMNS = "code, seq, time_ns, recv_ns, price, volume, turnover, direction"
BOOK_COLUMNS = "code, seq, time_ns, recv_ns, bids, asks"
_BAR_TYPES = ["text", "int8", "float8", "float8", "float8", "float8", "float8", "float8", "int4"]
_BAR_VALUES = ("open", "high", "low", "close", "volume", "turnover", "count")
_BAR_UPDATE = ", ".join(f"{c} = EXCLUDED.{c}" for c in _BAR_VALUES)
_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@|(password=)\S+")
# A loose index scan: one probe per code down the primary key, not a scan of the table.
_LATEST = """
WITH RECURSIVE codes(code) AS (
    (SELECT code FROM {table} ORDER BY code LIMIT 1)
    UNION ALL
    SELECT (SELECT t.code FROM {table} t WHERE t.code > codes.code ORDER BY t.code LIMIT 1)
    FROM codes WHERE codes.code IS NOT NULL
)
SELECT last.* FROM codes CROSS JOIN LATERAL (
    SELECT {columns} FROM {table} t WHERE t.code = codes.code
    ORDER BY t.trading_day DESC, t.seq DESC LIMIT 1
) AS last
"""
_log = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """The URL with its password masked, for logs and errors."""
    return _PASSWORD.sub(lambda m: (m.group(1) or m.group(2)) + "***" + ("@" if m.group(1) else ""),
                         url)  # fmt: skip


class PostgresSink:
    """One shard's writer into PostgreSQL. Not shared between threads except for ``close``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = redact_url(url)
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._connect()  # fail fast on a wrong URL; later failures are retried

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(
                self.url, connect_timeout=CONNECT_TIMEOUT_S, application_name=APPLICATION_NAME
            )
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for table in (TICKS_TABLE, BOOKS_TABLE):
                    _rekey(conn, table)
                conn.execute(SCHEMA)
            for table in (TICKS_TABLE, BOOKS_TABLE, BARS_TABLE):
                conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS staging_{table} "
                             f"(LIKE {table}) ON COMMIT DELETE ROWS")  # fmt: skip
            conn.commit()
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL {self.shown}: {_reason(exc)}") from exc
        self._conn = conn
        return conn

    def write_batch(self, ticks: list[Tick]) -> WriteResult:
        rows = [(*msgspec.structs.astuple(t), trading_day(t.time_ns)) for t in ticks]
        return self._copy(TICKS_TABLE, _TICK_TYPES, rows)

    def write_books(self, books: list[Depth]) -> WriteResult:
        rows = [(b.code, b.seq, b.time_ns, b.recv_ns, Jsonb(b.bids), Jsonb(b.asks),
                 trading_day(b.time_ns)) for b in books]  # fmt: skip
        return self._copy(BOOKS_TABLE, _BOOK_TYPES, rows)

    def write_bars(self, bars: list[Bar]) -> WriteResult:
        """Upsert: an amended bar (a late tick) replaces the one stored."""
        rows = list({(b.code, b.minute_ns): b.row() for b in bars}.values())
        self._copy(BARS_TABLE, _BAR_TYPES, rows, f"(code, minute_ns) DO UPDATE SET {_BAR_UPDATE}")
        return WriteResult(len(bars), 0)

    def recent_ticks(self, since_ns: int) -> list[Tick]:
        """Ticks with ``time_ns >= since_ns`` (to rebuild bars after a restart)."""
        with self._transaction("read from") as conn:
            sql = f"SELECT {TICK_COLUMNS} FROM {TICKS_TABLE} WHERE time_ns >= %s"
            return [Tick(*row) for row in conn.execute(sql, (since_ns,))]

    def _copy(self, table: str, types: list[str], rows: Sequence[tuple[Any, ...]],
              conflict: str = "DO NOTHING") -> WriteResult:  # fmt: skip
        with self._transaction("write to") as conn, conn.cursor() as cur:
            with cur.copy(f"COPY staging_{table} FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
            cur.execute(f"INSERT INTO {table} SELECT * FROM staging_{table} "
                        f"ON CONFLICT {conflict}")  # fmt: skip
            inserted = cur.rowcount
        return WriteResult(inserted, len(rows) - inserted)

    def latest(self) -> tuple[list[Tick], list[Depth]]:
        """The stored tick and book with the highest identity (day, seq) of each code."""
        with self._transaction("read from") as conn:
            latest_ticks = _LATEST.format(table=TICKS_TABLE, columns=TICK_COLUMNS)
            ticks = [Tick(*row) for row in conn.execute(latest_ticks)]
            latest_books = _LATEST.format(table=BOOKS_TABLE, columns=BOOK_COLUMNS)
            books = [Depth(code, seq, time_ns, recv_ns, _levels(bids), _levels(asks))
                     for code, seq, time_ns, recv_ns, bids, asks in
                     conn.execute(latest_books)]  # fmt: skip
        return ticks, books

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on the (re)opened connection; a failure drops the connection, so
        the retry opens a fresh one, and raises StoreError."""
        with self._lock:
            conn = self._connect()
            try:
                with conn.transaction():
                    yield conn
            except psycopg.Error as exc:
                self._drop()
                raise StoreError(f"PostgreSQL {what} {self.shown} failed: {_reason(exc)}") from exc

    def _drop(self) -> None:
        """Forget a connection that failed: the next write opens a fresh one."""
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):  # it is already broken
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def _rekey(conn: psycopg.Connection[Any], table: str) -> None:
    """A table keyed (code, seq, time_ns) by an older feedmux, re-keyed on the identity (code,
    trading_day, seq) in the caller's transaction. Rows that are one tick by the identity (a
    re-send whose time the vendor corrected) keep the first received, and are logged."""
    found = conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()
    if found is None or found[0] is None:
        return
    oid = found[0]
    has_day = conn.execute("SELECT 1 FROM pg_attribute WHERE attrelid = %s AND attname = "
                           "'trading_day' AND NOT attisdropped", (oid,)).fetchone()  # fmt: skip
    if has_day:
        return
    conn.execute(f"ALTER TABLE {table} ADD COLUMN trading_day integer")
    conn.execute(f"UPDATE {table} SET trading_day = {trading_day_sql()}")
    dropped = conn.execute(
        f"DELETE FROM {table} a USING {table} b WHERE a.code = b.code AND a.seq = b.seq "
        "AND a.trading_day = b.trading_day AND (a.recv_ns, a.ctid) > (b.recv_ns, b.ctid)"
    ).rowcount
    for (key,) in conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s "
                               "AND contype = 'p'", (oid,)).fetchall():  # fmt: skip
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{key}"')
    conn.execute(f"ALTER TABLE {table} ALTER COLUMN trading_day SET NOT NULL, "
                 "ADD PRIMARY KEY (code, trading_day, seq)")  # fmt: skip
    _log.warning("migrated PostgreSQL table %s to the key (code, trading_day, seq)%s", table,
                 f"; {dropped} rows were second copies of a tick and were removed"
                 if dropped else "")  # fmt: skip


def _levels(side: list[list[float]]) -> list[tuple[float, float]]:
    return [(float(price), float(volume)) for price, volume in side]


def _reason(exc: psycopg.Error) -> str:
    """The server's message without the connection string (psycopg may quote it)."""
    return redact_url(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
