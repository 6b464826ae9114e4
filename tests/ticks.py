"""Tick data shared by the store tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from feedmux import read_ticks
from feedmux.model import Tick

T0 = 1_700_000_000_000_000_000  # 06:13 in Shanghai
DAY_NS = 86_400 * 10**9


def two_days(code: str = "600519.SH") -> list[Tick]:
    """Two trading days of one code, each numbered from 1 (as exchange feeds restart)."""
    return [Tick(code, s, T0 + day * DAY_NS + s * 10**9, T0 + day * DAY_NS + s * 10**9 + 5,
                 10.0 + s, 100.0, 1000.0, 1) for day in (0, 1) for s in (1, 2, 3)]  # fmt: skip


def assert_both_days_kept(sink: Any, source: str | Path, ticks: list[Tick]) -> pd.DataFrame:
    """``sink`` (closed here) holds both of ``two_days``' days, read back from ``source``;
    the DataFrame read."""
    latest, _ = sink.latest()
    sink.close()
    assert latest == [ticks[-1]]  # the newest day's newest seq, not day 1's
    df = read_ticks(source)
    assert list(zip(df["seq"], df["time"].astype("int64"), strict=True)) == [
        (t.seq, t.time_ns) for t in ticks
    ]
    return df


# The SQLite schema before the trading day joined the key (schema version 0).
OLD_SCHEMA = [
    """CREATE TABLE ticks (code TEXT NOT NULL, seq INTEGER NOT NULL, time_ns INTEGER NOT NULL,
    recv_ns INTEGER NOT NULL, price REAL NOT NULL, volume REAL NOT NULL, turnover REAL NOT NULL,
    direction INTEGER NOT NULL, PRIMARY KEY (code, seq)) WITHOUT ROWID""",
    """CREATE TABLE ticks_recent (code TEXT NOT NULL, seq INTEGER NOT NULL,
    time_ns INTEGER NOT NULL, recv_ns INTEGER NOT NULL, price REAL NOT NULL,
    volume REAL NOT NULL, turnover REAL NOT NULL, direction INTEGER NOT NULL)""",
    """CREATE TABLE books (code TEXT NOT NULL, seq INTEGER NOT NULL, time_ns INTEGER NOT NULL,
    recv_ns INTEGER NOT NULL, bids TEXT NOT NULL, asks TEXT NOT NULL,
    PRIMARY KEY (code, seq)) WITHOUT ROWID""",
    """CREATE TABLE bars (code TEXT NOT NULL, minute_ns INTEGER NOT NULL, open REAL NOT NULL,
    high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
    turnover REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (code, minute_ns)) WITHOUT ROWID""",
]
