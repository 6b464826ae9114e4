"""Bars by the exchange's convention: a whole synthetic A-share day (auctions, lunch, a quiet
minute, after-hours) through the bar builder, against pandas written apart from it."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from feedmux.market.calendar import Calendars
from feedmux.market.sessions import MINUTE_NS, BarSlots, Sessions
from feedmux.model import Bar, Tick
from feedmux.shard.bars import BarBuilder
from tests.conftest import FakeClock

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = "2026-12-02"  # a Wednesday, a trading day
CODES = ("600519.SH", "000001.SZ", "688981.SH", "300750.SZ")


@pytest.fixture(scope="module")
def sessions() -> Sessions:
    return Sessions(Calendars.load())


def at(clock: str) -> int:
    local = dt.datetime.fromisoformat(f"{DAY}T{clock}").replace(tzinfo=SHANGHAI)
    return int(local.timestamp()) * 10**9


def a_day(seed: int = 3) -> list[Tick]:
    """Every code: the opening auction's trade at 09:25, trades in most continuous minutes (a
    few left quiet), prints at the lunch break and at 15:00 (the closing auction); STAR and
    ChiNext codes also trade after hours. Nothing in 14:57-15:00 but the auction's print."""
    rng = random.Random(seed)
    ticks: list[Tick] = []
    for code in CODES:
        times = [at("09:25:00")]
        minute = at("09:30:00")
        while minute < at("14:57:00"):
            if not at("11:30:00") <= minute < at("13:00:00") and rng.random() > 0.05:
                times += sorted(minute + rng.randrange(MINUTE_NS) for _ in range(rng.randint(1, 4)))
            minute += MINUTE_NS
        times += [at("11:30:00") + 300_000_000, at("15:00:01")]
        if code.startswith(("688", "300")):
            times += [at("15:06:00"), at("15:20:30")]
        for seq, time_ns in enumerate(sorted(times), 1):
            price = round(10 + rng.random(), 2)
            ticks.append(Tick(code, seq, time_ns, time_ns, price, 100.0 * seq, price * 100 * seq,
                              1))  # fmt: skip
    return sorted(ticks, key=lambda t: (t.time_ns, t.code))


def built(ticks: list[Tick], slots: BarSlots, label_ns: int) -> dict[tuple[str, int], Bar]:
    """Feed a live day (the clock follows the ticks; the timer runs between them): the last
    version of every bar that left the builder."""
    clock = FakeClock(ticks[0].time_ns)
    builder = BarBuilder(clock, slots=slots, label_ns=label_ns)
    out: dict[tuple[str, int], Bar] = {}
    for tick in ticks:
        clock.now = max(clock.now, tick.time_ns)
        for bar in [*builder.due(), *builder.add(tick)]:
            out[(bar.code, bar.minute_ns)] = bar
    clock.now = at("16:00:00")
    for bar in builder.due():
        out[(bar.code, bar.minute_ns)] = bar
    assert builder.outside == sum(1 for t in ticks if t.time_ns >= at("15:05:00"))
    return out


def expected(ticks: list[Tick], label: str) -> pd.DataFrame:
    """The convention, in pandas: the 09:25 auction in the first bar, the lunch print in the
    11:30 bar, the 15:00 auction print in the 15:00 bar (end labels), a flat bar for a quiet
    minute, nothing after hours; 240 bars a code."""
    df = pd.DataFrame([(t.code, t.time_ns, t.price, t.volume, t.turnover) for t in ticks],
                      columns=["code", "time", "price", "volume", "turnover"])  # fmt: skip
    local = pd.to_datetime(df["time"], utc=True).dt.tz_convert(SHANGHAI)
    clock = local.dt.strftime("%H:%M:%S")
    end = local.dt.floor("min") + pd.Timedelta(minutes=1)
    end = end.where(clock >= "09:30:00", local.dt.normalize() + pd.Timedelta("09:31:00"))
    end = end.where(~clock.between("11:30:00", "12:59:59"),
                    local.dt.normalize() + pd.Timedelta("11:30:00"))  # fmt: skip
    end = end.where(~clock.between("15:00:00", "15:04:59"),
                    local.dt.normalize() + pd.Timedelta("15:00:00"))  # fmt: skip
    df["minute"] = end
    df = df[clock < "15:05:00"]
    grid = pd.date_range(f"{DAY} 09:31", f"{DAY} 11:30", freq="min", tz=SHANGHAI).append(
        pd.date_range(f"{DAY} 13:01", f"{DAY} 15:00", freq="min", tz=SHANGHAI)
    )
    bars = (df.groupby(["code", "minute"])
            .agg(open=("price", "first"), high=("price", "max"), low=("price", "min"),
                 close=("price", "last"), volume=("volume", "sum"),
                 turnover=("turnover", "sum"), count=("price", "size")))  # fmt: skip
    full = bars.reindex(pd.MultiIndex.from_product([sorted(CODES), grid], names=bars.index.names))
    full["close"] = full.groupby(level="code")["close"].ffill()
    for column in ("open", "high", "low"):
        full[column] = full[column].fillna(full["close"])
    full = full.fillna({"volume": 0.0, "turnover": 0.0, "count": 0}).astype({"count": "int64"})
    full = full.reset_index()
    if label == "start":
        full["minute"] -= pd.Timedelta(minutes=1)
    full["minute"] = full["minute"].dt.tz_convert("UTC").dt.as_unit("ns").astype("int64")
    return full.sort_values(["code", "minute"]).reset_index(drop=True)


@pytest.mark.parametrize("label", ["end", "start"])
def test_an_a_share_day_has_240_bars_a_code_with_its_auctions_in_the_first_and_last(
    sessions: Sessions, label: str
) -> None:
    ticks = a_day()
    bars = built(ticks, BarSlots(sessions), MINUTE_NS if label == "end" else 0)
    got = pd.DataFrame([b.row() for b in bars.values()],
                       columns=["code", "minute", "open", "high", "low", "close", "volume",
                                "turnover", "count"])  # fmt: skip
    got = got.sort_values(["code", "minute"]).reset_index(drop=True)
    assert got.groupby("code").size().to_dict() == dict.fromkeys(CODES, 240)
    pd.testing.assert_frame_equal(got, expected(ticks, label), check_dtype=False)
    first = got.groupby("code").first()  # 09:31 (end label): the auction's trade opens it
    auction = {t.code: t.price for t in ticks if t.time_ns == at("09:25:00")}
    assert first["open"].to_dict() == auction
    last = got.groupby("code").last()  # 15:00: closed by the closing auction's print
    assert last["close"].to_dict() == {t.code: t.price for t in ticks
                                       if t.time_ns == at("15:00:01")}  # fmt: skip


def test_extended_bars_take_the_after_hours_trades(sessions: Sessions) -> None:
    ticks = a_day()
    bars = built([t for t in ticks if t.time_ns < at("15:05:00")], BarSlots(sessions, True), 0)
    assert len(bars) == 240 * len(CODES)
    clock = FakeClock(at("15:06:00"))
    builder = BarBuilder(clock, slots=BarSlots(sessions, extended=True))
    after = [t for t in ticks if t.time_ns >= at("15:05:00")]
    closed = [bar for tick in after for bar in builder.add(tick)]
    clock.now = at("16:00:00")
    closed += builder.due()
    assert sorted((b.code, b.minute_ns) for b in closed) == sorted(
        (t.code, t.time_ns - t.time_ns % MINUTE_NS) for t in after
    )
    assert builder.outside == 0


def test_a_code_that_stops_trading_has_flat_bars_to_the_close_and_none_after(
    sessions: Sessions,
) -> None:
    clock = FakeClock(at("14:50:00"))
    builder = BarBuilder(clock, slots=BarSlots(sessions), label_ns=MINUTE_NS)
    builder.add(Tick("600519.SH", 1, at("14:50:10"), 0, 7.5, 100.0, 750.0, 1))
    clock.now = at("23:00:00")
    bars = builder.due()
    assert [(b.minute_ns - at("14:51:00")) // MINUTE_NS for b in bars] == list(range(10))
    assert [b.count for b in bars] == [1] + [0] * 9
    assert {b.close for b in bars} == {7.5} and builder.due() == []


def test_a_us_code_has_bars_only_in_minutes_it_traded(sessions: Sessions) -> None:
    start = int(dt.datetime(2026, 12, 2, 10, 0, tzinfo=ZoneInfo("America/New_York")).timestamp())
    clock = FakeClock(start * 10**9)
    builder = BarBuilder(clock, slots=BarSlots(sessions))
    builder.add(Tick("AAPL.US", 1, start * 10**9, 0, 1.0, 1.0, 1.0, 1))
    clock.advance(600)
    assert len(builder.due()) == 1
