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
from tests.a_share_bars import a_share_bars
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
    df = pd.DataFrame([(t.code, t.time_ns, t.price, t.volume, t.turnover) for t in ticks],
                      columns=["code", "time", "price", "volume", "turnover"])  # fmt: skip
    return a_share_bars(df, DAY, label)


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


def test_the_readme_s_example_day(sessions: Sessions) -> None:
    """README, Market hours: the example table of an A-share day, end labels."""
    trades = [("09:25:00", 10.00), ("09:30:12", 10.02), ("11:30:00.3", 10.10),
              ("14:56:40", 10.20), ("15:00:01", 10.25), ("15:10:00", 10.25)]  # fmt: skip
    ticks = [Tick("688981.SH", i, at(clock), 0, price, 100.0, price * 100, 1)
             for i, (clock, price) in enumerate(trades, 1)]  # fmt: skip
    bars = {b.minute_ns: b for b in built(ticks, BarSlots(sessions), MINUTE_NS).values()}
    assert len(bars) == 240
    first, lunch = bars[at("09:31:00")], bars[at("11:30:00")]
    assert (first.open, first.close, first.count) == (10.00, 10.02, 2)
    assert (lunch.open, lunch.close, lunch.count) == (10.10, 10.10, 1)
    assert bars[at("14:57:00")].close == 10.20
    for quiet in ("14:58:00", "14:59:00"):
        assert (bars[at(quiet)].close, bars[at(quiet)].volume) == (10.20, 0.0)
    last = bars[at("15:00:00")]
    assert (last.open, last.close, last.count) == (10.25, 10.25, 1)
    assert at("15:11:00") not in bars
    clock = FakeClock(ticks[0].time_ns)  # with --bars-extended: the after-hours trade's bar
    builder = BarBuilder(clock, slots=BarSlots(sessions, extended=True), label_ns=MINUTE_NS)
    out = [bar for tick in ticks for bar in builder.add(tick)]
    clock.now = at("16:00:00")
    assert at("15:11:00") in {b.minute_ns for b in [*out, *builder.due()]}


def _trade(code: str, clock: str, price: float, seq: int, day: str = DAY) -> Tick:
    zone = ZoneInfo("Asia/Hong_Kong") if code.endswith(".HK") else SHANGHAI
    local = dt.datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=zone)
    time_ns = int(local.timestamp() * 10**9)
    return Tick(code, seq, time_ns, 0, price, 100.0, price * 100, 1)


def _live(sessions: Sessions, ticks: list[Tick], until: int) -> dict[tuple[str, int], Bar]:
    """A live feed, the timer running before each tick; the last version of each bar."""
    clock = FakeClock(ticks[0].time_ns)
    builder = BarBuilder(clock, slots=BarSlots(sessions), label_ns=MINUTE_NS)
    out: dict[tuple[str, int], Bar] = {}
    for tick in ticks:
        clock.now = max(clock.now, tick.time_ns)
        for bar in [*builder.due(), *builder.add(tick)]:
            out[(bar.code, bar.minute_ns)] = bar
    clock.now = until
    for bar in builder.due():
        out[(bar.code, bar.minute_ns)] = bar
    assert builder.too_late == 0
    return out


def test_a_lunch_print_after_the_morning_s_last_bar_closed_still_amends_it(
    sessions: Sessions,
) -> None:
    ticks = [_trade("600519.SH", "11:29:30", 10.0, 1), _trade("000001.SZ", "11:30:03", 5.0, 1),
             _trade("600519.SH", "11:30:04", 10.5, 2)]  # fmt: skip
    bars = _live(sessions, ticks, at("13:30:00"))
    last = bars[("600519.SH", at("11:30:00"))]
    assert (last.close, last.volume, last.count) == (10.5, 200.0, 2)


def test_hong_kong_s_closing_auction_print_closes_the_last_bar(sessions: Sessions) -> None:
    ticks = [_trade("700.HK", "15:59:30", 400.0, 1), _trade("700.HK", "16:08:12", 402.0, 2)]
    bars = _live(sessions, ticks, ticks[-1].time_ns + 3600 * 10**9)
    last = bars[("700.HK", ticks[0].time_ns - 30 * 10**9 + MINUTE_NS)]
    assert (last.close, last.volume, last.count) == (402.0, 200.0, 2)


def test_a_late_trade_in_a_flat_minute_reprices_the_flat_bars_after_it(sessions: Sessions) -> None:
    clock = FakeClock(at("10:00:10"))
    builder = BarBuilder(clock, slots=BarSlots(sessions), label_ns=MINUTE_NS)
    out: dict[int, Bar] = {}
    builder.add(_trade("600519.SH", "10:00:10", 8.0, 1))
    clock.now = at("10:03:30")
    out.update((b.minute_ns, b) for b in builder.due())  # 10:01, 10:02 closed; flat at 8.0
    out.update((b.minute_ns, b) for b in builder.add(_trade("600519.SH", "10:01:30", 9.0, 2)))
    clock.now = at("10:08:30")  # (the late trade was the newest: the data clock went back)
    out.update((b.minute_ns, b) for b in builder.due())
    labels = ("10:02:00", "10:03:00", "10:04:00", "10:05:00")
    got = [(out[at(m)].close, out[at(m)].count) for m in labels]
    assert got == [(9.0, 1), (9.0, 0), (9.0, 0), (9.0, 0)]


def test_after_a_restart_a_quiet_code_s_flat_bars_go_on_from_its_last_trade(
    sessions: Sessions,
) -> None:
    last = _trade("600000.SH", "10:00:10", 8.0, 1)
    clock = FakeClock(at("10:30:00"))  # the shard restarts at 10:30; no tick since 10:00:10
    builder = BarBuilder(clock, slots=BarSlots(sessions), label_ns=MINUTE_NS)
    out = {b.minute_ns: b for b in builder.restore([], [last])}
    out.update((b.minute_ns, b) for b in builder.add(_trade("600000.SH", "10:56:20", 8.5, 2)))
    minutes = [at(f"10:{m:02d}:00") for m in range(2, 57)]  # 10:02 ... 10:56, end labels
    assert sorted(out) == minutes
    assert {(out[m].close, out[m].count) for m in minutes} == {(8.0, 0)}
    yesterday = _trade("600001.SH", "10:00:10", 8.0, 1, day="2026-12-01")  # its bars are stored
    clock = FakeClock(at("10:30:00"))
    builder = BarBuilder(clock, slots=BarSlots(sessions))
    builder.restore([], [last, yesterday])
    clock.advance(300)
    assert {b.code for b in builder.due()} == {"600000.SH"}


def test_the_end_of_the_day_closes_its_bars_and_forgets_the_day(sessions: Sessions) -> None:
    """A shard whose own clock lags (its codes stopped at 14:50) still stores the day whole
    when the run's day ends; then it holds nothing of the day, and a late tick of it makes no
    bar that would replace a stored one."""
    clock = FakeClock(at("14:50:00"))
    builder = BarBuilder(clock, slots=BarSlots(sessions), label_ns=MINUTE_NS)
    builder.add(_trade("600519.SH", "14:50:10", 7.5, 1))
    builder.add(_trade("688981.SH", "14:50:20", 9.0, 1))
    clock.now = at("14:50:30")  # the wall clock: the run's data clock is far ahead
    bars = builder.end_day(at("15:32:00"))
    assert sorted({(b.minute_ns - at("14:51:00")) // MINUTE_NS for b in bars}) == list(range(10))
    assert len(bars) == 20 and builder.due() == []
    assert not builder._open and not builder._newest and not builder._closed
    assert builder.add(_trade("600519.SH", "14:58:00", 8.0, 2)) == []  # late, of the ended day
    assert builder.too_late == 1 and builder.due() == []
    next_day = "2026-12-03"
    clock.now = at("09:25:00") + 86_400 * 10**9
    assert builder.add(_trade("600519.SH", "09:25:00", 7.9, 1, next_day)) == []
    clock.now += 7 * MINUTE_NS  # the first bar of the day (09:30-09:31) closes as usual
    first = builder.due()[0]
    assert (first.count, first.close, first.minute_ns) == (1, 7.9, at("09:31:00") + 86_400 * 10**9)
