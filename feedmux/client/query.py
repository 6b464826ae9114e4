"""What a read asks for (codes and a time range, pushed down as SQL) and reading it from a data
directory's shard files: shared by the readers and the archive export."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd

from feedmux.codes import parse_codes
from feedmux.errors import StoreError
from feedmux.shard.stores.sqlite import TICKS_DIR

When = datetime | str | pd.Timestamp | None


def to_ns(value: When) -> int | None:
    """A time as integer nanoseconds UTC (a naive time is taken as UTC)."""
    if value is None:
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)


class Filters(msgspec.Struct, frozen=True):
    codes: list[str] | None
    start_ns: int | None
    end_ns: int | None

    @classmethod
    def of(cls, codes: list[str] | None, start: When, end: When) -> Filters:
        return cls(parse_codes(codes) if codes is not None else None, to_ns(start), to_ns(end))

    def sql(self, placeholder: str, time_column: str = "time_ns") -> tuple[str, list[Any]]:
        """A WHERE clause (or "") and its parameters."""
        where: list[str] = []
        params: list[Any] = []
        if self.codes is not None:
            where.append(f"code IN ({','.join([placeholder] * len(self.codes))})")
            params.extend(self.codes)
        if self.start_ns is not None:
            where.append(f"{time_column} >= {placeholder}")
            params.append(self.start_ns)
        if self.end_ns is not None:
            where.append(f"{time_column} < {placeholder}")
            params.append(self.end_ns)
        return (" WHERE " + " AND ".join(where) if where else ""), params


def shard_files(data_dir: Path) -> list[Path]:
    """Every shard's SQLite file under a data directory."""
    return sorted((data_dir / TICKS_DIR).glob("*.sqlite"))


def shard_rows(files: list[Path], table: str, sql: str, params: Sequence[Any]) -> list[Any]:
    """``sql`` (naming ``{table}``) on ``table`` of every file, read-only, and on its
    ``<table>_recent`` where there is one (rows not merged yet). Both in one read transaction:
    a shard's merge that commits between two reads would move rows out of both."""
    rows: list[Any] = []
    for path in files:
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            try:
                conn.execute("BEGIN")  # one snapshot of the WAL for every read below
                for name in (*present(conn, table), *recent_tables(conn, table)):
                    rows.extend(conn.execute(sql.format(table=name), params))
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
    return rows


def present(conn: sqlite3.Connection, name: str) -> list[str]:
    """``[name]`` when the file has that table (a store from before bars has no ``bars``)."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return [name] if found.fetchone() else []


def recent_tables(conn: sqlite3.Connection, table: str) -> list[str]:
    """``<table>_recent`` when the file has one (rows appended, not yet merged into the key)."""
    return present(conn, f"{table}_recent")
