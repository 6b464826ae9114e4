"""Read stored ticks into pandas."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

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
    files = sorted((Path(data_dir) / TICKS_DIR).glob("*.sqlite"))
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
    sql = "SELECT * FROM ticks" + (" WHERE " + " AND ".join(where) if where else "")
    rows: list[tuple[object, ...]] = []
    for path in files:
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                rows.extend(conn.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
    raw = ("code", "seq", "time_ns", "recv_ns", "price", "volume", "turnover", "direction")
    frame = pd.DataFrame.from_records(rows, columns=list(raw))
    frame["time"] = pd.to_datetime(frame.pop("time_ns").astype("int64"), unit="ns", utc=True)
    frame["recv_time"] = pd.to_datetime(frame.pop("recv_ns").astype("int64"), unit="ns", utc=True)
    frame = frame.astype(_DTYPES)
    frame["code"] = frame["code"].astype(str)
    # A code lands in another shard's file if the shard count changed between runs.
    frame = frame.drop_duplicates(["code", "seq"])
    frame = frame.sort_values(["time", "code", "seq"], kind="stable").reset_index(drop=True)
    return frame[list(TICK_COLUMNS)]
