"""Read stored ticks into pandas."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import msgspec
import pandas as pd

from feedmux.errors import StoreError
from feedmux.model import TICK_COLUMNS
from feedmux.sinks.sqlite import TICKS_DIR
from feedmux.symbols import parse_symbols

_DTYPES = {"seq": "int64", "price": "float64", "volume": "float64", "turnover": "float64",
           "direction": "int8"}  # fmt: skip


def _to_ns(value: datetime | str | pd.Timestamp | None) -> int | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)


def _select(
    data_dir: str | Path,
    table: str,
    codes: list[str] | None,
    start: datetime | str | pd.Timestamp | None,
    end: datetime | str | pd.Timestamp | None,
) -> list[tuple[object, ...]]:
    """Rows of ``table`` from every shard's file, filtered in SQL."""
    where: list[str] = []
    params: list[str | int] = []
    if codes is not None:
        wanted = parse_symbols(codes)
        where.append(f"code IN ({','.join('?' * len(wanted))})")
        params.extend(wanted)
    if (start_ns := _to_ns(start)) is not None:
        where.append("time_ns >= ?")
        params.append(start_ns)
    if (end_ns := _to_ns(end)) is not None:
        where.append("time_ns < ?")
        params.append(end_ns)
    clause = " WHERE " + " AND ".join(where) if where else ""
    rows: list[tuple[object, ...]] = []
    for path in sorted((Path(data_dir) / TICKS_DIR).glob("*.sqlite")):
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                rows.extend(conn.execute(f"SELECT * FROM {table}{clause}", params).fetchall())
                for recent in _recent_tables(conn, table):  # ticks not merged yet
                    rows.extend(conn.execute(f"SELECT * FROM {recent}{clause}", params))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
    return rows


def _recent_tables(conn: sqlite3.Connection, table: str) -> list[str]:
    name = f"{table}_recent"
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return [name] if found.fetchone() else []


def _times(frame: pd.DataFrame) -> pd.DataFrame:
    frame["time"] = pd.to_datetime(frame.pop("time_ns").astype("int64"), unit="ns", utc=True)
    frame["recv_time"] = pd.to_datetime(frame.pop("recv_ns").astype("int64"), unit="ns", utc=True)
    return frame


def _merged(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """All shards' rows as one frame: each (code, seq) once, sorted by time, code and seq."""
    frame["code"] = frame["code"].astype(str)
    # A code lands in another shard's file if the shard count changed between runs.
    frame = frame.drop_duplicates(["code", "seq"])
    frame = frame.sort_values(["time", "code", "seq"], kind="stable").reset_index(drop=True)
    return frame[columns]


def read_ticks(
    data_dir: str | Path = "feedmux-data",
    codes: list[str] | None = None,
    start: datetime | str | pd.Timestamp | None = None,
    end: datetime | str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Stored ticks of every shard as one DataFrame sorted by time, code and seq.

    Columns: ``code, seq, time, recv_time, price, volume, turnover, direction``; ``time`` and
    ``recv_time`` are tz-aware UTC. ``start`` is inclusive, ``end`` exclusive (naive = UTC).
    """
    rows = _select(data_dir, "ticks", codes, start, end)
    raw = ("code", "seq", "time_ns", "recv_ns", "price", "volume", "turnover", "direction")
    frame = _times(pd.DataFrame.from_records(rows, columns=list(raw)))
    return _merged(frame.astype(_DTYPES), list(TICK_COLUMNS))


def read_books(
    data_dir: str | Path = "feedmux-data",
    codes: list[str] | None = None,
    start: datetime | str | pd.Timestamp | None = None,
    end: datetime | str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Stored order books (``feedmux run --depth``) as one DataFrame sorted by time and code.

    Columns: ``code, seq, time, recv_time, bids, asks``; ``bids``/``asks`` hold lists of
    ``[price, volume]``, best first (empty for a side with no orders).
    """
    rows = _select(data_dir, "books", codes, start, end)
    raw = ("code", "seq", "time_ns", "recv_ns", "bids", "asks")
    frame = pd.DataFrame.from_records(rows, columns=list(raw))
    for side in ("bids", "asks"):
        frame[side] = [msgspec.json.decode(text) for text in frame[side]]
    frame = _times(frame).astype({"seq": "int64"})
    return _merged(frame, ["code", "seq", "time", "recv_time", "bids", "asks"])
