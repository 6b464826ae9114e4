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
from feedmux.simulator.market import a_share_universe
from feedmux.simulator.schedule import (
    Event,
    Schedule,
    activity,
    clock_of,
    intensity,
    intensity_share,
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


def random_continuous(events: list[Event], codes: list[str]) -> list[Event]:
    """The random trades of continuous trading: each minute's round (every code at its first
    instant) left out."""
    rounds = Counter(e.time_ns for e in events if e.phase == Phase.CONTINUOUS)
    full = {t for t, n in rounds.items() if t % MINUTE_NS == 0 and n >= len(codes)}
    out, seen = [], Counter[int]()
    for e in events:
        if e.phase != Phase.CONTINUOUS:
            continue
        if e.time_ns in full and seen[e.time_ns] < len(codes):
            seen[e.time_ns] += 1  # one of the round's (a random trade may share its instant)
            continue
        out.append(e)
    return out


@pytest.mark.parametrize(("minutes", "rate"), [(10.0, 40.0), (380.0, 1.0)])  # 38x, real time
def test_random_trades_average_the_wall_rate_over_the_day_whatever_the_compression(
    sessions: Sessions, minutes: float, rate: float
) -> None:
    p = plan(sessions, A_SHARES, DAY, day_minutes=minutes)
    schedule = p.schedule(rate, seed=7)
    # the server's 2 ms steps when compressed; in real time, longer ones (the same code)
    step_ns = int(0.002 * p.clock.factor * 1e9) if p.clock.factor > 1 else STEP_NS
    events = played(schedule, A_SHARES, p.day.start_ns, p.day.end_ns, step_ns=step_ns)
    extra = random_continuous(events, A_SHARES)
    continuous_wall_s = 237 * 60 / p.clock.factor  # 09:30-11:30, 13:00-14:57
    assert abs(len(extra) - rate * continuous_wall_s) <= 1
    first_hour = [e for e in extra if local(e.code, e.time_ns) < "10:30:00"]
    assert abs(len(first_hour) - rate * continuous_wall_s * intensity_share(60 / 237)) <= 1
    assert all(e.time_ns % 1_000_000 == 0 for e in events)  # vendors stamp milliseconds
    assert [e.time_ns for e in events] == sorted(e.time_ns for e in events)


def test_a_few_codes_trade_far_more_than_the_median_one_whatever_else_is_subscribed(
    sessions: Sessions,
) -> None:
    universe = a_share_universe()
    _, events = whole_day(sessions, universe, rate=300.0)
    counts = Counter(e.code for e in random_continuous(events, universe))
    ranked = sorted((counts[c] for c in universe), reverse=True)
    median = ranked[len(ranked) // 2]
    assert median > 0 and ranked[0] > 50 * median  # a long quiet tail under a few busy codes
    assert sum(ranked[:54]) > 0.1 * sum(ranked)  # the busiest 1% of codes: over 10%
    assert sum(ranked[:54]) < 0.5 * sum(ranked)  # ... but no handful takes the market
    # A code's activity is its own (seeded), not its rank among what is subscribed.
    assert activity("600519.SH", 7) == activity("600519.SH", 7) != activity("600519.SH", 8)
    by_activity = sorted(universe, key=lambda c: activity(c, 7))  # whole_day's seed
    few = [by_activity[0], *by_activity[-3:]]  # the quietest code and the 3 busiest
    _, some = whole_day(sessions, few, rate=100.0)
    busy = Counter(e.code for e in random_continuous(some, few))
    assert busy[few[0]] < min(busy[c] for c in few[1:]) / 20


def test_the_open_and_the_close_are_busier_than_midday(sessions: Sessions) -> None:
    _, events = whole_day(sessions, A_SHARES, rate=100.0)
    extra = [local(e.code, e.time_ns) for e in random_continuous(events, A_SHARES)]

    def within(start: str, end: str) -> int:
        return sum(1 for t in extra if start <= t < end)

    midday = max(within("11:00:00", "11:30:00"), within("13:00:00", "13:30:00"))
    assert within("09:30:00", "10:00:00") > 2.5 * midday
    assert within("14:27:00", "14:57:00") > 2.5 * midday
    # The U itself: twice the mean at the ends, half of it in the middle, a mean of 1.
    assert (intensity(0.0), intensity(0.5), intensity(1.0)) == (2.0, 0.5, 2.0)
    assert (intensity_share(0.0), intensity_share(0.5), intensity_share(1.0)) == (0.0, 0.5, 1.0)


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


def test_several_days_are_the_next_trading_days_each_compressed_alike(
    sessions: Sessions,
) -> None:
    p = plan(sessions, A_SHARES, DAY, day_minutes=10, start="14:50", days=3)
    assert [d.date for d in p.days] == [DAY, dt.date(2026, 12, 4), dt.date(2026, 12, 7)]
    assert local("600519.SH", p.clock_of(0).start_ns) == "14:50:00"  # the start: day 1 only
    for index, day in enumerate(p.days[1:], 1):
        assert p.clock_of(index) == (day.start_ns, p.clock.factor)
        assert local("600519.SH", day.start_ns) == "09:10:00"
    holiday = plan(sessions, A_SHARES, dt.date(2026, 9, 30), days=2)  # the National Day week
    assert [d.date for d in holiday.days] == [dt.date(2026, 9, 30), dt.date(2026, 10, 8)]
    assert [d.date for d in plan(sessions, A_SHARES, DAY).days] == [DAY]


def test_the_next_day_plays_like_the_first_and_a_mute_lasts(sessions: Sessions) -> None:
    p = plan(sessions, A_SHARES, DAY, day_minutes=10, days=2, mutes=["600519.SH@14:00"])
    schedule = p.schedule(50.0, seed=7)
    first = played(schedule, A_SHARES, p.days[0].start_ns, p.days[0].end_ns)
    schedule.begin(p.days[1])
    second = played(schedule, A_SHARES, p.days[1].start_ns, p.days[1].end_ns)
    assert first[-1].time_ns < p.days[1].start_ns <= second[0].time_ns
    late = [e for e in second if e.code != "600519.SH"]
    minutes = {(e.code, e.time_ns - e.time_ns % MINUTE_NS) for e in late
               if e.phase == Phase.CONTINUOUS}  # fmt: skip
    assert len(minutes) == (len(A_SHARES) - 1) * 237  # every other code, every minute again
    assert not [e for e in second if e.code == "600519.SH"]  # muted from day 1 14:00 on
    assert len(random_continuous(second, A_SHARES[1:])) > 0.8 * len(
        random_continuous(first, A_SHARES[1:]))  # fmt: skip
