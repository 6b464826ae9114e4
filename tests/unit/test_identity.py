"""A tick's trading day is its exchange's calendar date, the same in Python, SQL and readers."""

from __future__ import annotations

import sqlite3
from datetime import date

import numpy as np
import pandas as pd
import pytest

from feedmux.identity import ResendFilter
from feedmux.market.day import day_date, trading_day, trading_day_sql, trading_days
from feedmux.model import Tick


def at(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value)


# (code, UTC time, the exchange's calendar date)
CASES = [
    ("AAPL.US", "2026-07-01 13:30", date(2026, 7, 1)),  # 09:30 New York (EDT), 21:30 Shanghai
    ("AAPL.US", "2026-07-01 19:59", date(2026, 7, 1)),  # 15:59 New York, 03:59 next day Shanghai
    ("AAPL.US", "2026-07-02 03:59", date(2026, 7, 1)),  # 23:59 EDT
    ("AAPL.US", "2026-07-02 04:00", date(2026, 7, 2)),  # midnight EDT
    ("AAPL.US", "2026-01-06 04:30", date(2026, 1, 5)),  # 23:30 EST: midnight is at 05:00 UTC
    ("AAPL.US", "2026-01-06 05:00", date(2026, 1, 6)),
    ("AAPL.US", "2026-03-08 04:59", date(2026, 3, 7)),  # the night DST starts (02:00 local)
    ("AAPL.US", "2026-03-09 03:59", date(2026, 3, 8)),
    ("AAPL.US", "2026-03-09 04:00", date(2026, 3, 9)),
    ("AAPL.US", "2026-11-01 03:59", date(2026, 10, 31)),  # the night DST ends
    ("AAPL.US", "2026-11-02 04:59", date(2026, 11, 1)),
    ("AAPL.US", "2026-11-02 05:00", date(2026, 11, 2)),
    ("700.HK", "2026-07-01 15:59", date(2026, 7, 1)),  # 23:59 Hong Kong
    ("700.HK", "2026-07-01 16:00", date(2026, 7, 2)),
    ("600519.SH", "2026-07-01 16:00", date(2026, 7, 2)),
    ("000001.SZ", "2026-07-01 15:59", date(2026, 7, 1)),
    ("920118.BJ", "2026-07-01 16:00", date(2026, 7, 2)),
]


@pytest.mark.parametrize(("code", "utc", "expected"), CASES)
def test_the_trading_day_is_the_exchange_s_calendar_date(
    code: str, utc: str, expected: date
) -> None:
    assert day_date(trading_day(at(utc), code)) == expected


def test_the_sql_expression_and_the_vectorised_readers_agree_with_trading_day() -> None:
    rows = [(code, at(utc)) for code, utc, _ in CASES]
    rows += [
        ("AAPL.US", at("2026-03-09 04:00") + d * 3_600 * 10**9)
        for d in range(-24 * 400, 24 * 400, 7)
    ]
    rows += [("700.HK", at("2001-01-01 15:00") + d * 3_600 * 10**9) for d in range(0, 48, 5)]
    expected = [trading_day(t, code) for code, t in rows]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE ticks (code TEXT, time_ns INTEGER)")
    conn.executemany("INSERT INTO ticks VALUES (?, ?)", rows)
    in_sql = [d for (d,) in conn.execute(f"SELECT {trading_day_sql()} FROM ticks ORDER BY rowid")]
    assert in_sql == expected
    codes = pd.Series([c for c, _ in rows])
    times = np.array([t for _, t in rows], dtype="int64")
    assert list(trading_days(codes, times)) == expected


def test_a_us_session_restarting_its_seqs_is_new_though_it_spans_two_shanghai_dates() -> None:
    """Session 1 ends after midnight in Shanghai with high seqs; session 2 starts the same
    Shanghai date from seq 1: by New York dates they are two trading days, both taken."""

    def tick(seq: int, utc: str) -> Tick:
        return Tick("AAPL.US", seq, at(utc), at(utc), 200.0, 1.0, 200.0, 1)

    seen = ResendFilter()
    assert seen.is_new(tick(1, "2026-07-01 13:30"))
    assert seen.is_new(tick(5000, "2026-07-01 19:59"))  # 03:59 on 2 July in Shanghai
    assert seen.is_new(tick(1, "2026-07-02 13:30"))  # the next session: 21:30 on 2 July
    assert not seen.is_new(tick(1, "2026-07-02 13:30")) and seen.resent == 1
