"""Read stored ticks and books into pandas, from any store: the same columns and dtypes whether
the source is a SQLite data directory, a Parquet archive (``feedmux export``) or PostgreSQL.

Filters (codes, start, end) are pushed down to each source: SQL ``WHERE`` clauses, or Parquet
partition and row-group filters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pandas as pd

from feedmux.client.query import Filters, When, shard_files, shard_rows
from feedmux.errors import StoreError
from feedmux.market.day import trading_days
from feedmux.model import TICK_COLUMNS
from feedmux.passwords import mask_passwords
from feedmux.shard.stores.sqlite import TICKS_DIR

BOOK_COLUMNS = ("code", "seq", "time", "recv_time", "bids", "asks")
BAR_COLUMNS = ("code", "minute", "open", "high", "low", "close", "volume", "turnover", "count")
_RAW_BARS = ("code", "minute_ns", "open", "high", "low", "close", "volume", "turnover", "count")
_BAR_DTYPES = {"open": "float64", "high": "float64", "low": "float64", "close": "float64",
               "volume": "float64", "turnover": "float64", "count": "int64"}  # fmt: skip
_DTYPES = {"seq": "int64", "price": "float64", "volume": "float64", "turnover": "float64",
           "direction": "int8"}  # fmt: skip
_RAW_TICKS = ("code", "seq", "time_ns", "recv_ns", "price", "volume", "turnover", "direction")
_RAW_BOOKS = ("code", "seq", "time_ns", "recv_ns", "bids", "asks")


def _is_postgres(source: str | Path) -> bool:
    return str(source).startswith(("postgresql://", "postgres://"))


def _time_column(table: str) -> str:
    return "minute_ns" if table == "bars" else "time_ns"


_RAW = {"ticks": _RAW_TICKS, "books": _RAW_BOOKS, "bars": _RAW_BARS}


def _select(table: str) -> str:
    """The columns a reader takes, by name: a store's key columns (``trading_day``) and column
    order may differ between schema versions."""
    return "SELECT " + ", ".join(_RAW[table])


def store_files(data_dir: Path) -> list[Path]:
    """The shard files of a SQLite data directory; StoreError naming the path when it is
    missing or holds no store (a typo must not read as "no ticks")."""
    if not data_dir.exists():
        raise StoreError(f"no feedmux store at {data_dir}: the path does not exist")
    files = shard_files(data_dir)
    if not files:
        raise StoreError(f"no feedmux store at {data_dir}: it holds no {TICKS_DIR}/*.sqlite "
                         "(a data directory) nor an exported archive")  # fmt: skip
    return files


def _sqlite_rows(data_dir: Path, table: str, filters: Filters) -> list[tuple[Any, ...]]:
    """Rows of ``table`` from every shard's file, filtered in SQL."""
    where, params = filters.sql("?", _time_column(table))
    return shard_rows(store_files(data_dir), table, _select(table) + " FROM {table}" + where,
                      params)  # fmt: skip


def _postgres_rows(url: str, table: str, filters: Filters) -> list[tuple[Any, ...]]:
    import psycopg  # noqa: PLC0415 (only for this source)

    where, params = filters.sql("%s", _time_column(table))
    try:
        with psycopg.connect(url) as conn:
            found = conn.execute("SELECT to_regclass('feedmux_ticks'), to_regclass(%s)",
                                 (f"feedmux_{table}",)).fetchone()  # fmt: skip
            if found is None or found[0] is None:  # no feedmux store: not "no ticks"
                raise StoreError(f"no feedmux store in PostgreSQL {mask_passwords(url)}: no table "
                                 "feedmux_ticks in its search_path")  # fmt: skip
            if found[1] is None:
                return []
            return conn.execute(f"{_select(table)} FROM feedmux_{table}{where}", params).fetchall()
    except psycopg.Error as exc:
        raise StoreError(f"cannot read PostgreSQL {mask_passwords(url)}: {exc}") from exc


def _times(df: pd.DataFrame) -> pd.DataFrame:
    df["time"] = pd.to_datetime(df.pop("time_ns").astype("int64"), unit="ns", utc=True)
    df["recv_time"] = pd.to_datetime(df.pop("recv_ns").astype("int64"), unit="ns", utc=True)
    return df


def _merged(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """All shards' rows as one DataFrame: each identity (code, trading day, seq) once, sorted by
    time, code and seq."""
    df["code"] = df["code"].astype(str)
    # A code lands in another shard's file if the shard count changed between runs.
    day = trading_days(df["code"], df["time"].astype("int64").to_numpy())
    keys = pd.DataFrame({"c": df["code"].to_numpy(), "d": day, "s": df["seq"].to_numpy()})
    df = df[~keys.duplicated().to_numpy()]
    df = df.sort_values(["time", "code", "seq"], kind="stable").reset_index(drop=True)
    return df[list(columns)]


def _rows(source: str | Path, table: str, filters: Filters) -> list[tuple[Any, ...]]:
    if _is_postgres(source):
        return _postgres_rows(str(source), table, filters)
    return _sqlite_rows(Path(source), table, filters)


def read_ticks(
    source: str | Path = "feedmux-data",
    codes: list[str] | None = None,
    start: When = None,
    end: When = None,
) -> pd.DataFrame:
    """Stored ticks as one DataFrame sorted by time, code and seq.

    ``source``: a data directory (SQLite, every shard), a Parquet archive directory written by
    ``feedmux export``, or a ``postgresql://`` URL. Columns: ``code, seq, time, recv_time,
    price, volume, turnover, direction``; ``time`` and ``recv_time`` are tz-aware UTC.
    ``start`` is inclusive, ``end`` exclusive (naive = UTC).
    """
    filters = Filters.of(codes, start, end)
    from feedmux.client import archive  # noqa: PLC0415 (pyarrow loads only for an archive)

    if not _is_postgres(source) and archive.is_archive(Path(source)):
        df = archive.read(Path(source), "ticks", filters)
    else:
        rows = _rows(source, "ticks", filters)
        df = _times(pd.DataFrame.from_records(rows, columns=list(_RAW_TICKS)))
    return _merged(df.astype(_DTYPES), TICK_COLUMNS)


def read_books(
    source: str | Path = "feedmux-data",
    codes: list[str] | None = None,
    start: When = None,
    end: When = None,
) -> pd.DataFrame:
    """Stored order books (``feedmux run --depth``) as one DataFrame sorted by time and code.

    Columns: ``code, seq, time, recv_time, bids, asks``; ``bids``/``asks`` hold lists of
    ``[price, volume]``, best first (empty for a side with no orders).
    """
    filters = Filters.of(codes, start, end)
    rows = _rows(source, "books", filters)
    df = pd.DataFrame.from_records(rows, columns=list(_RAW_BOOKS))
    for side in ("bids", "asks"):  # JSON text in SQLite, already decoded from jsonb
        df[side] = [msgspec.json.decode(v) if isinstance(v, str) else v for v in df[side]]
    df = _times(df).astype({"seq": "int64"})
    return _merged(df, BOOK_COLUMNS)


def read_bars(
    source: str | Path = "feedmux-data",
    codes: list[str] | None = None,
    start: When = None,
    end: When = None,
) -> pd.DataFrame:
    """Stored one-minute bars as one DataFrame sorted by minute and code, from a data directory,
    an archive or a ``postgresql://`` URL.

    Columns: ``code, minute`` (the bar's time, tz-aware UTC: its end, or its start in a store
    that keeps start labels; see ``--bar-label``), ``open, high, low, close, volume, turnover,
    count``. ``start``/``end`` select bars by that time (inclusive, exclusive).
    """
    filters = Filters.of(codes, start, end)
    from feedmux.client import archive  # noqa: PLC0415

    if not _is_postgres(source) and archive.is_archive(Path(source)):
        df = archive.read(Path(source), "bars", filters)
    else:
        df = pd.DataFrame.from_records(_rows(source, "bars", filters), columns=list(_RAW_BARS))
        df["minute"] = pd.to_datetime(df.pop("minute_ns").astype("int64"), unit="ns",
                                         utc=True)  # fmt: skip
    df["code"] = df["code"].astype(str)
    df = df.astype(_BAR_DTYPES).drop_duplicates(["code", "minute"], keep="last")
    df = df.sort_values(["minute", "code"], kind="stable").reset_index(drop=True)
    return df[list(BAR_COLUMNS)]
