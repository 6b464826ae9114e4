"""A-share one-minute bars by the exchange convention, computed with pandas apart from
feedmux's bar builder: the opening auction in the first bar, lunch-break prints in the 11:30
bar, the closing auction's print in the 15:00 bar, a flat bar for a minute without a trade
(from a code's first trade of the day on), nothing after hours; 240 bars a code."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pandas as pd

SHANGHAI = ZoneInfo("Asia/Shanghai")
COLUMNS = ["code", "minute", "open", "high", "low", "close", "volume", "turnover", "count"]


def a_share_bars(ticks: pd.DataFrame, day: str, label: str = "end") -> pd.DataFrame:
    """``ticks``: columns code, time (ns UTC, int), price, volume, turnover, of one day.
    Bars of every code that traded, ``minute`` as ns UTC (its end, or start), by code and time."""
    df = ticks.copy()
    local = pd.to_datetime(df["time"], utc=True).dt.tz_convert(SHANGHAI)
    clock = local.dt.strftime("%H:%M:%S")
    midnight = local.dt.normalize()
    end = local.dt.floor("min") + pd.Timedelta(minutes=1)
    end = end.where(clock >= "09:30:00", midnight + pd.Timedelta("09:31:00"))
    end = end.where(~clock.between("11:30:00", "12:59:59"), midnight + pd.Timedelta("11:30:00"))
    end = end.where(~clock.between("15:00:00", "15:04:59"), midnight + pd.Timedelta("15:00:00"))
    df["minute"] = end
    df = df[clock < "15:05:00"].sort_values(["code", "time"], kind="stable")
    bars = df.groupby(["code", "minute"]).agg(
        open=("price", "first"), high=("price", "max"), low=("price", "min"),
        close=("price", "last"), volume=("volume", "sum"), turnover=("turnover", "sum"),
        count=("price", "size"))  # fmt: skip
    grid = pd.date_range(f"{day} 09:31", f"{day} 11:30", freq="min", tz=SHANGHAI).append(
        pd.date_range(f"{day} 13:01", f"{day} 15:00", freq="min", tz=SHANGHAI)
    )
    codes = sorted(df["code"].unique())
    full = bars.reindex(pd.MultiIndex.from_product([codes, grid], names=bars.index.names))
    first = bars.reset_index().groupby("code")["minute"].min()  # no bar before a first trade
    full = full[full.index.get_level_values("minute") >= first.reindex(
        full.index.get_level_values("code")).to_numpy()]  # fmt: skip
    full["close"] = full.groupby(level="code")["close"].ffill()
    for column in ("open", "high", "low"):
        full[column] = full[column].fillna(full["close"])
    full = full.fillna({"volume": 0.0, "turnover": 0.0, "count": 0}).astype({"count": "int64"})
    full = full.reset_index()
    if label == "start":
        full["minute"] -= pd.Timedelta(minutes=1)
    full["minute"] = full["minute"].dt.tz_convert("UTC").dt.as_unit("ns").astype("int64")
    return full.sort_values(["code", "minute"]).reset_index(drop=True)[COLUMNS]
