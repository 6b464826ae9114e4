"""The day's bars read back from the run's store: for the board at start and after a gap,
and for a chart. Blocking (pandas, the store): called on the feed's thread or an executor's."""

from __future__ import annotations

import logging

from feedmux.errors import FeedmuxError
from feedmux.market.day import day_start_ns, trading_day
from feedmux.market.sessions import market_of
from feedmux.model import Bar

_log = logging.getLogger("feedmux.web")
CHUNK = 500  # codes read at once: a day of the whole market in one DataFrame is ~1 GB


def day_start(codes: list[str], now_ns: int) -> int:
    """The earliest start of the codes' trading days at ``now_ns`` (the data clock)."""
    markets = {market_of(code): code for code in codes}
    starts = (day_start_ns(trading_day(now_ns, code), m) for m, code in markets.items())
    return min(starts, default=now_ns)


def bars_since(store: str, codes: list[str], since_ns: int) -> list[Bar]:
    """``codes``' bars labelled at or after ``since_ns`` in ``store`` (a SQLite directory or a
    PostgreSQL URL; "": none), sorted by code then minute, read ``CHUNK`` codes at a time; an
    unreadable store is said in the log and reads as none."""
    if not store or not codes:
        return []
    import pandas as pd  # noqa: PLC0415 (only the gateway reads the store)

    from feedmux.client.reader import read_bars  # noqa: PLC0415

    since = pd.Timestamp(since_ns, unit="ns", tz="UTC")
    out: list[Bar] = []
    for i in range(0, len(codes), CHUNK):
        try:
            df = read_bars(store, codes[i : i + CHUNK], start=since)
        except FeedmuxError as exc:
            _log.warning("bars not read from the store (%s): volumes count from now", exc)
            return out
        df = df.sort_values(["code", "minute"], kind="stable")
        out.extend(Bar(*row) for row in zip(
            df["code"].tolist(), df["minute"].astype("int64").tolist(), df["open"].tolist(),
            df["high"].tolist(), df["low"].tolist(), df["close"].tolist(),
            df["volume"].tolist(), df["turnover"].tolist(), df["count"].tolist(),
            strict=True))  # fmt: skip
    return out
