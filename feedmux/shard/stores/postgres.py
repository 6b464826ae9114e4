"""PostgreSQL store (psycopg 3): binary COPY into a temporary staging table, then one
``INSERT … ON CONFLICT DO NOTHING``, so a duplicate is skipped and counted, never fatal.

Each shard writes through its own connection. A lost connection (a server restart) makes the
write raise StoreError; the RetryingWriter keeps the batch and retries, and the next write
reconnects. Columns mirror the SQLite store (times as integer nanoseconds, UTC) so every
source reads back identically. The key is a tick's identity, (code, trading_day, seq), as in
every store (feedmux/identity.py); a table keyed (code, seq, time_ns) by an older feedmux is
migrated by ``migrate`` before the shards start (a shard refuses one). (TimescaleDB: partition
by the integer ``trading_day``; a hypertable on ``time_ns`` cannot take the key.)
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from feedmux.errors import StoreError
from feedmux.market.day import trading_day, trading_day_sql
from feedmux.model import Bar, Depth, Tick
from feedmux.passwords import mask_passwords
from feedmux.shard.stores.base import WriteResult

TICKS_TABLE = "feedmux_ticks"
BOOKS_TABLE = "feedmux_books"
BARS_TABLE = "feedmux_bars"
CONNECT_TIMEOUT_S = 5
APPLICATION_NAME = "feedmux"  # as pg_stat_activity shows the shards' connections
_SCHEMA_LOCK = 0x6665_6D78  # advisory lock id: shards creating the schema at once would race
TICKS_DDL = f"""
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
);"""
BOOKS_DDL = f"""
CREATE TABLE IF NOT EXISTS {BOOKS_TABLE} (
    code    text   NOT NULL,
    seq     bigint NOT NULL,
    time_ns bigint NOT NULL,
    recv_ns bigint NOT NULL,
    bids    jsonb  NOT NULL,
    asks    jsonb  NOT NULL,
    trading_day integer NOT NULL,
    PRIMARY KEY (code, trading_day, seq)
);"""
SCHEMA = f"""{TICKS_DDL}{BOOKS_DDL}
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


class PostgresSink:
    """One shard's writer into PostgreSQL. Not shared between threads except for ``close``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = mask_passwords(url)
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
                old = [table for table in (TICKS_TABLE, BOOKS_TABLE) if _old_key(conn, table)]
                if not old:
                    conn.execute(SCHEMA)
            if old:  # re-keyed by migrate(), before the shards start: not in a start deadline
                conn.close()
                raise StoreError(
                    f"PostgreSQL {self.shown}: {', '.join(old)} keyed (code, seq, time_ns) by "
                    "an older feedmux, not migrated yet: `feedmux run` migrates it before its "
                    "shards start (feedmux.shard.stores.migrate.migrate_stores)"
                )
            for table in (TICKS_TABLE, BOOKS_TABLE, BARS_TABLE):
                conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS staging_{table} "
                             f"(LIKE {table}) ON COMMIT DELETE ROWS")  # fmt: skip
            conn.commit()
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL {self.shown}: {_reason(exc)}") from exc
        self._conn = conn
        return conn

    def write_batch(self, ticks: list[Tick]) -> WriteResult:
        rows = [(*msgspec.structs.astuple(t), trading_day(t.time_ns, t.code)) for t in ticks]
        return self._copy(TICKS_TABLE, _TICK_TYPES, rows)

    def write_books(self, books: list[Depth]) -> WriteResult:
        rows = [(b.code, b.seq, b.time_ns, b.recv_ns, Jsonb(b.bids), Jsonb(b.asks),
                 trading_day(b.time_ns, b.code)) for b in books]  # fmt: skip
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


META_TABLE = "feedmux_meta"


def _admin(url: str, shown: str) -> psycopg.Connection[Any]:
    """A connection for a step before the shards start (a migration, the bar label)."""
    try:
        return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name=APPLICATION_NAME)  # fmt: skip
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to PostgreSQL {shown}: {_reason(exc)}") from exc


def bar_label(url: str, record: str | None) -> str | None:
    """The label of the database's bars as ``feedmux_meta`` records it; "start" for bars
    stored before labels existed; else ``record``, recorded (None: nothing recorded)."""
    shown = mask_passwords(url)
    conn = _admin(url, shown)
    try:
        with conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} "
                         "(key text PRIMARY KEY, value text NOT NULL)")  # fmt: skip
            row = conn.execute(f"SELECT value FROM {META_TABLE} WHERE key = 'bar_label'").fetchone()
            if row is not None:
                return str(row[0])
            exists = conn.execute("SELECT to_regclass(%s)", (BARS_TABLE,)).fetchone()
            if (
                exists
                and exists[0] is not None
                and conn.execute(f"SELECT 1 FROM {BARS_TABLE} LIMIT 1").fetchone()
            ):
                record = "start"
            if record is not None:
                conn.execute(f"INSERT INTO {META_TABLE} VALUES ('bar_label', %s)", (record,))
            return record
    except psycopg.Error as exc:
        raise StoreError(
            f"PostgreSQL {shown}: cannot read or record its bar label: {_reason(exc)}"
        ) from exc


def migrate(url: str, say: Callable[[str], None]) -> None:
    """Re-key the tables an older feedmux keyed (code, seq, time_ns) on the identity (code,
    trading_day, seq), in one transaction under the schema lock (nothing half done on a
    failure). A partitioned table (a TimescaleDB hypertable on time_ns) cannot take that key:
    refused with the SQL that rebuilds it."""
    shown = mask_passwords(url)
    conn = _admin(url, shown)
    started = time.monotonic()
    try:
        with conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            old = [table for table in (TICKS_TABLE, BOOKS_TABLE) if _old_key(conn, table)]
            for table in old:
                how = _partitioned(conn, table)
                if how:
                    raise StoreError(f"PostgreSQL {shown}: " + partitioned_fix(table, how))
            for table in old:
                _rekey(conn, table, shown, say)
    except psycopg.Error as exc:
        full = (" (the server's disk is full: it needs about the tables' size again free)"
                if isinstance(exc, psycopg.errors.DiskFull) else "")  # fmt: skip
        why = f"{_reason(exc)}{full}; rolled back, nothing changed"
        raise StoreError(f"cannot migrate PostgreSQL {shown} to the (code, trading_day, seq) "
                         f"key: {why}") from exc  # fmt: skip
    if old:
        say(f"migrated {len(old)} PostgreSQL tables in {time.monotonic() - started:.1f} s")


def _old_key(conn: psycopg.Connection[Any], table: str) -> bool:
    """``table`` exists without a ``trading_day`` column: keyed by an older feedmux."""
    found = conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()
    if found is None or found[0] is None:
        return False
    has_day = conn.execute("SELECT 1 FROM pg_attribute WHERE attrelid = %s AND attname = "
                           "'trading_day' AND NOT attisdropped", (found[0],))  # fmt: skip
    return has_day.fetchone() is None


def _partitioned(conn: psycopg.Connection[Any], table: str) -> str:
    """How ``table`` is partitioned ("" if not): a TimescaleDB hypertable (asked of
    timescaledb_information only where the extension is installed) or a declaratively
    partitioned table. Either wants its partition column in every unique key."""
    timescale = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    if timescale.fetchone():
        dims = conn.execute(
            "SELECT d.column_name FROM timescaledb_information.dimensions d "
            "JOIN pg_class c ON c.relname = d.hypertable_name "
            "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = d.hypertable_schema "
            "WHERE c.oid = to_regclass(%s)",
            (table,),
        ).fetchall()
        if dims:
            on = ", ".join(str(d[0]) for d in dims)
            return f"a TimescaleDB hypertable partitioned on {on}"
    key = conn.execute("SELECT pg_get_partkeydef(to_regclass(%s))", (table,)).fetchone()
    if key is not None and key[0]:
        return f"a table partitioned on {key[0].partition('(')[2].rstrip(')')}"
    return ""


_DDL = {TICKS_TABLE: (TICKS_DDL, TICK_COLUMNS), BOOKS_TABLE: (BOOKS_DDL, BOOK_COLUMNS)}


def partitioned_fix_sql(table: str, hypertable: bool) -> list[str]:
    """The statements that rebuild a partitioned ``table`` of an older feedmux keyed on the
    identity and partitioned by ``trading_day``, keeping the first received copy of a tick;
    the last (dropping the old table) is for after the operator checked the copy."""
    ddl, columns = _DDL[table]
    old = f"{table}_v0"
    create = " ".join(ddl.replace("IF NOT EXISTS ", "").split())
    partition = [f"SELECT create_hypertable('{table}', by_range('trading_day', 1))"] if (
        hypertable) else []  # fmt: skip
    if not hypertable:
        create = create.rstrip(";") + " PARTITION BY RANGE (trading_day)"
        partition = [f"CREATE TABLE {table}_days PARTITION OF {table} DEFAULT"]  # then yours
    return [
        "BEGIN",
        f"ALTER TABLE {table} RENAME TO {old}",
        f"ALTER INDEX IF EXISTS {table}_time RENAME TO {old}_time",
        create.rstrip(";"),
        *partition,
        f"INSERT INTO {table} SELECT DISTINCT ON (code, trading_day, seq) {columns}, "
        f"trading_day FROM (SELECT *, {trading_day_sql()} AS trading_day FROM {old}) o "
        "ORDER BY code, trading_day, seq, recv_ns",
        "COMMIT",
        f"DROP TABLE {old}",
    ]


def partitioned_fix(table: str, how: str) -> str:
    """Why ``table`` (``how``: "a ... partitioned on ...") cannot be re-keyed in place, and the
    SQL the operator should run (psql, in the store's schema)."""
    steps = partitioned_fix_sql(table, hypertable="hypertable" in how)
    body = ";\n".join(steps[:-1])
    return (
        f"{table} is {how}, and its primary key must contain that column, so it cannot be "
        "re-keyed (code, trading_day, seq) in place. Rebuild it partitioned by trading_day "
        f"(needs about its size again free; run in psql, in the store's schema):\n{body};\n"
        f"-- then, once the new table is checked:\n{steps[-1]};\nThen start feedmux again."
    )


def _rekey(conn: psycopg.Connection[Any], table: str, shown: str,
           say: Callable[[str], None]) -> None:  # fmt: skip
    """Re-key ``table`` on (code, trading_day, seq) in the caller's transaction. Rows that are
    one tick by the identity (a re-send whose time the vendor corrected) keep the first
    received."""
    rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    say(f"migrating {shown} {table} to the (code, trading_day, seq) key: "
        f"{rows[0] if rows else 0:,} rows (the shards start after it)")  # fmt: skip
    conn.execute(f"ALTER TABLE {table} ADD COLUMN trading_day integer")
    conn.execute(f"UPDATE {table} SET trading_day = {trading_day_sql()}")
    dropped = conn.execute(
        f"DELETE FROM {table} a USING {table} b WHERE a.code = b.code AND a.seq = b.seq "
        "AND a.trading_day = b.trading_day AND (a.recv_ns, a.ctid) > (b.recv_ns, b.ctid)"
    ).rowcount
    for (key,) in conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass "
                               "AND contype = 'p'", (table,)).fetchall():  # fmt: skip
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{key}"')
    conn.execute(f"ALTER TABLE {table} ALTER COLUMN trading_day SET NOT NULL, "
                 "ADD PRIMARY KEY (code, trading_day, seq)")  # fmt: skip
    if dropped:
        say(f"{table}: {dropped} rows were second copies of a tick (same code, trading day "
            "and seq) and were removed, the first received kept")  # fmt: skip


def _levels(side: list[list[float]]) -> list[tuple[float, float]]:
    return [(float(price), float(volume)) for price, volume in side]


def _reason(exc: psycopg.Error) -> str:
    """The server's message without the connection string (psycopg may quote it)."""
    text = str(exc).strip()
    return mask_passwords(text.splitlines()[0] if text else type(exc).__name__)
