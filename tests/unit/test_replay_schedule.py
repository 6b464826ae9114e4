"""The replay server's trading day (feedmux.simulator.schedule): auction bursts at the match,
nothing at lunch or when closed, every code in every continuous minute, after-hours only for
the boards that trade then, mutes, the compressed clock, a half day and a holiday."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from zoneinfo import ZoneInfo

import pytest

from feedmux.errors import ConfigError
from feedmux.market.calendar import Calendars
from feedmux.market.sessions import MINUTE_NS, BarSlots, Phase, Sessions, market_of
from feedmux.simulator.schedule import (
    Event,
    Schedule,
    clock_of,
    latest_trading_day,
    plan,
    session_date,
    trades_extended,
)

DAY = dt.date(2026, 12, 3)  # a Thursday: every market trades
ZONES = {"SH": "Asia/Shanghai", "SZ": "Asia/Shanghai", "BJ": "Asia/Shanghai",
         "HK": "Asia/Hong_Kong", "US": "America/New_York"}  # fmt: skip
A_SHARES = ["600519.SH", "601318.SH", "688981.SH", "000001.SZ", "002594.SZ", "300750.SZ",
            "301236.SZ", "920118.BJ"]  # fmt: skip
STEP_NS = 50_000_000_000  # a replay step of 50 s simulated (≈ 1.3 s wall at 38x)


@pytest.fixture(scope="module")
def sessions() -> Sessions:
    return Sessions(Calendars.load())


def local(code: str, ns: int) -> str:
    zone = ZoneInfo(ZONES[market_of(code)])
    return dt.datetime.fromtimestamp(ns / 1e9, zone).strftime("%H:%M:%S")


def played(schedule: Schedule, codes: list[str], start_ns: int, end_ns: int,
           step_ns: int = STEP_NS) -> list[Event]:  # fmt: skip
    """Every event of ``[start_ns, end_ns)``, asked for in steps as the server does."""
    out: list[Event] = []
    at = start_ns
    while at < end_ns:
        nxt = min(end_ns, at + step_ns)
        out += schedule.events(at, nxt, codes)
        at = nxt
    return out


def whole_day(sessions: Sessions, codes: list[str], date: dt.date = DAY, rate: float = 0.0,
              **kw: object) -> tuple[Schedule, list[Event]]:  # fmt: skip
    p = plan(sessions, codes, date, day_minutes=10, **kw)  # type: ignore[arg-type]
    schedule = p.schedule(rate, seed=7)
    return schedule, played(schedule, codes, p.day.start_ns, p.day.end_ns)


def test_the_a_share_day_runs_from_0910_to_1530_and_ten_minutes_compress_it_38_times(
    sessions: Sessions,
) -> None:
    p = plan(sessions, A_SHARES, DAY, day_minutes=10)
    assert (local("600519.SH", p.day.start_ns), local("600519.SH", p.day.end_ns)) == (
        "09:10:00", "15:30:00")  # fmt: skip
    assert p.clock.factor == pytest.approx(38.0)
    assert p.clock.at(60.0) - p.clock.start_ns == 38 * MINUTE_NS  # a wall minute: 38 simulated
    assert plan(sessions, A_SHARES, DAY).clock.factor == 1.0  # default: real time
    late = plan(sessions, A_SHARES, DAY, day_minutes=10, start="14:50")
    assert local("600519.SH", late.clock.start_ns) == "14:50:00"
    assert late.clock.factor == p.clock.factor  # the day's compression, not the part's


def test_auctions_are_one_trade_per_code_at_the_match_and_nothing_else_in_them(
    sessions: Sessions,
) -> None:
    _, events = whole_day(sessions, A_SHARES, rate=200.0)
    opening = [e for e in events if e.phase == Phase.OPENING_AUCTION]
    closing = [e for e in events if e.phase == Phase.CLOSING_AUCTION]
    assert sorted(e.code for e in opening) == sorted(A_SHARES)
    assert {local(e.code, e.time_ns) for e in opening} == {"09:25:00"}
    assert sorted(e.code for e in closing) == sorted(A_SHARES)
    assert {local(e.code, e.time_ns) for e in closing} == {"15:00:00"}
    times = [local(e.code, e.time_ns) for e in events]
    assert not [t for t in times if t < "09:25:00" or "09:25:00" < t < "09:30:00"]
    assert not [t for t in times if "14:57:00" <= t < "15:00:00"]  # the closing call: silent


def test_nothing_at_lunch_or_when_closed(sessions: Sessions) -> None:
    _, events = whole_day(sessions, A_SHARES, rate=100.0)
    times = Counter(local(e.code, e.time_ns) for e in events)
    assert not [t for t in times if "11:30:00" <= t < "13:00:00"]
    assert not [t for t in times if "15:00:00" < t < "15:05:00"]
    for event in events:  # whatever the market's phase, the event says it
        phase = sessions.phase(market_of(event.code), event.time_ns)
        expected = Phase.CLOSED if event.phase == Phase.CLOSING_AUCTION else event.phase
        assert phase == expected, (event, phase)


def test_every_code_trades_in_every_continuous_minute(sessions: Sessions) -> None:
    _, events = whole_day(sessions, A_SHARES, rate=50.0)
    continuous = [e for e in events if e.phase == Phase.CONTINUOUS]
    minutes = {(e.code, e.time_ns - e.time_ns % MINUTE_NS) for e in continuous}
    assert len(minutes) == len(A_SHARES) * 237  # 09:30-11:30 and 13:00-14:57
    # Each minute opens with a round over every code at its first instant.
    firsts = Counter(e.time_ns for e in continuous if e.time_ns % MINUTE_NS == 0)
    assert len(firsts) == 237 and set(firsts.values()) >= {len(A_SHARES)}
    # In bars: 237 continuous minutes + the 14:59 bar holding the 15:00 match; the 09:25
    # match folds into 09:30's. The closing call (14:57, 14:58) trades nothing, as at SSE.
    slots = BarSlots(sessions)
    for code in A_SHARES:
        bars = {slots.slot(code, e.time_ns) for e in events
                if e.code == code and e.phase != Phase.AFTER_HOURS}  # fmt: skip
        assert len(bars) == 238 and None not in bars, code


def test_after_hours_only_for_star_chinext_and_bj(sessions: Sessions) -> None:
    _, events = whole_day(sessions, A_SHARES, rate=500.0)
    late = [e for e in events if e.phase == Phase.AFTER_HOURS]
    assert {e.code for e in late} == {"688981.SH", "300750.SZ", "301236.SZ", "920118.BJ"}
    assert all("15:05:00" <= local(e.code, e.time_ns) < "15:30:00" for e in late)
    _, rounds = whole_day(sessions, A_SHARES)  # no random trades: one each at 15:05
    late = [e for e in rounds if e.phase == Phase.AFTER_HOURS]
    assert sorted((e.code, local(e.code, e.time_ns)) for e in late) == [
        (c, "15:05:00") for c in ("300750.SZ", "301236.SZ", "688981.SH", "920118.BJ")]  # fmt: skip
    assert [trades_extended(c) for c in ("600519.SH", "000001.SZ", "AAPL.US", "700.HK")] == [
        False, False, True, False]  # fmt: skip


def test_random_trades_follow_the_wall_rate_whatever_the_compression(
    sessions: Sessions,
) -> None:
    rate = 40.0
    for minutes in (10.0, 380.0):  # 38x, and real time
        p = plan(sessions, A_SHARES, DAY, day_minutes=minutes)
        schedule = p.schedule(rate, seed=7)
        start = p.day.at("09:30", "start")
        end = p.day.at("10:30", "end")  # an hour of continuous trading
        events = played(schedule, A_SHARES, start, end, step_ns=int(0.002 * 38e9))
        extra = len(events) - 60 * len(A_SHARES)  # the minute rounds
        wall_s = 3600 / p.clock.factor
        assert abs(extra - rate * wall_s) <= 1
        assert all(e.time_ns % 1_000_000 == 0 for e in events)  # vendors stamp milliseconds
        assert [e.time_ns for e in events] == sorted(e.time_ns for e in events)


def test_a_muted_code_stops_from_its_instant_and_is_counted(sessions: Sessions) -> None:
    schedule, events = whole_day(sessions, A_SHARES, rate=100.0, mutes=["600519.sh@10:30"])
    mine = [local(e.code, e.time_ns) for e in events if e.code == "600519.SH"]
    assert mine and max(mine) < "10:30:00" and "10:29:00" in mine
    assert schedule.muted["600519.SH"] >= 1 + 60 + 117 + 1  # 10:30-11:30, afternoon, the match
    assert set(schedule.muted) == {"600519.SH"}
    others = {e.code for e in events if local(e.code, e.time_ns) > "14:00:00"}
    assert others == set(A_SHARES) - {"600519.SH"}


@pytest.mark.parametrize(("entry", "says"), [
    ("600519.SH", "give CODE@HH:MM"), ("600519.SH@25:00", "not HH:MM"),
    ("600000.SH@10:00", "not in the server's codes"), ("600519@25:00", "not HH:MM"),
    ("6005@10:00", "'6005' is not a code"),
])  # fmt: skip
def test_a_bad_mute_is_refused(sessions: Sessions, entry: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        plan(sessions, A_SHARES, DAY, mutes=[entry])


@pytest.mark.parametrize("spelling", ["600519", "sh600519", "600519.SH", "SH:600519"])
def test_a_mute_takes_any_spelling_of_a_code(sessions: Sessions, spelling: str) -> None:
    assert list(plan(sessions, A_SHARES, DAY, mutes=[f"{spelling}@10:30"]).mutes) == ["600519.SH"]


def test_a_hong_kong_half_day_follows_the_calendar(sessions: Sessions) -> None:
    codes = ["700.HK", "5.HK"]
    p = plan(sessions, codes, dt.date(2026, 12, 24), day_minutes=5)
    assert (local("700.HK", p.day.start_ns), local("700.HK", p.day.end_ns)) == (
        "08:55:00", "12:10:00")  # fmt: skip
    schedule = p.schedule(100.0, seed=3)
    events = played(schedule, codes, p.day.start_ns, p.day.end_ns)
    by_phase = {phase: {local(e.code, e.time_ns) for e in events if e.phase == phase}
                for phase in (Phase.OPENING_AUCTION, Phase.CLOSING_AUCTION)}  # fmt: skip
    assert by_phase == {Phase.OPENING_AUCTION: {"09:20:00"}, Phase.CLOSING_AUCTION: {"12:08:00"}}
    continuous = {(e.code, e.time_ns - e.time_ns % MINUTE_NS) for e in events
                  if e.phase == Phase.CONTINUOUS}  # fmt: skip
    assert len(continuous) == 2 * 150  # 09:30-12:00, no afternoon
    assert max(local(e.code, e.time_ns) for e in events) == "12:08:00"


def test_us_codes_follow_new_york_and_hong_kong_lunches(sessions: Sessions) -> None:
    codes = ["700.HK", "AAPL.US", "600519.SH"]
    _, events = whole_day(sessions, codes, rate=300.0)
    us = [local(e.code, e.time_ns) for e in events if e.code == "AAPL.US"]
    assert min(us) == "04:00:00" and max(us) < "20:00:00"
    assert {local("AAPL.US", e.time_ns) for e in events
            if e.code == "AAPL.US" and e.phase == Phase.PRE_MARKET} >= {"04:00:00"}  # fmt: skip
    hk = [local(e.code, e.time_ns) for e in events if e.code == "700.HK"]
    assert not [t for t in hk if "12:00:00" <= t < "13:00:00"]
    assert {local(e.code, e.time_ns) for e in events
            if e.code == "700.HK" and e.phase == Phase.CLOSING_AUCTION} == {"16:08:00"}  # fmt: skip


def test_a_holiday_is_refused_and_the_default_day_is_the_last_trading_day(
    sessions: Sessions,
) -> None:
    with pytest.raises(ConfigError, match="2026-10-01 is not a trading day of SH"):
        plan(sessions, A_SHARES, dt.date(2026, 10, 1))
    with pytest.raises(ConfigError, match="not a trading day"):
        plan(sessions, A_SHARES, dt.date(2026, 12, 5))  # a Saturday
    assert latest_trading_day(sessions, {"SH"}, dt.date(2026, 10, 6)) == dt.date(2026, 9, 30)
    assert latest_trading_day(sessions, {"SH"}, DAY) == DAY
    assert session_date("", sessions, A_SHARES, dt.date(2026, 10, 4)) == dt.date(2026, 9, 30)
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        session_date("3 Dec", sessions, A_SHARES, DAY)
    # A-shares on holiday while Hong Kong trades: a day, and A-shares get nothing.
    hk_only, events = whole_day(sessions, ["700.HK", "600519.SH"], dt.date(2026, 10, 2))
    assert {e.code for e in events} == {"700.HK"}
    assert hk_only.phases(hk_only.day.start_ns)["SH"] == Phase.HOLIDAY


def test_a_start_outside_the_day_is_refused(sessions: Sessions) -> None:
    p = plan(sessions, A_SHARES, DAY)
    with pytest.raises(ConfigError, match="outside the simulated day"):
        clock_of(p.day, 10, "16:00")
    with pytest.raises(ConfigError, match="not HH:MM"):
        clock_of(p.day, 10, "noon")


def test_codes_subscribed_later_join_at_the_next_round(sessions: Sessions) -> None:
    p = plan(sessions, A_SHARES, DAY, day_minutes=10)
    schedule = p.schedule(0.0, seed=7)
    ten = p.day.at("10:00", "ten")
    first = schedule.events(ten, ten + MINUTE_NS, A_SHARES[:2])
    later = schedule.events(ten + MINUTE_NS, ten + 2 * MINUTE_NS, A_SHARES)
    assert {e.code for e in first} == set(A_SHARES[:2])
    assert {e.code for e in later} == set(A_SHARES)
