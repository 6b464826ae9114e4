"""Markets keep hours: phases, bar slots and calendars (the library's days, and overrides)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from feedmux.errors import ConfigError
from feedmux.market.calendar import Calendars, Hours, read_overrides
from feedmux.market.sessions import MINUTE_NS, BarSlots, Phase, Rule, Sessions

ZONES = {"SH": "Asia/Shanghai", "SZ": "Asia/Shanghai", "BJ": "Asia/Shanghai",
         "HK": "Asia/Hong_Kong", "US": "America/New_York"}  # fmt: skip


@pytest.fixture(scope="module")
def sessions() -> Sessions:
    return Sessions(Calendars.load())


def at(market: str, day: str, hhmmss: str) -> int:
    """ns UTC of a local time on ``day`` at ``market``."""
    local = dt.datetime.fromisoformat(f"{day}T{hhmmss}").replace(tzinfo=ZoneInfo(ZONES[market]))
    return int(local.timestamp() * 10**9)


def local(market: str, ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, ZoneInfo(ZONES[market])).strftime("%H:%M")


def day_of(text: str) -> int:
    return (dt.date.fromisoformat(text) - dt.date(1970, 1, 1)).days


def own_minutes(sessions: Sessions, market: str, day: str) -> list[str]:
    """The day's regular bars (their start, local HH:MM)."""
    segments = [seg for seg in sessions.day(market, day_of(day)) if seg.rule == Rule.OWN]
    return [local(market, t) for s in segments for t in range(s.start_ns, s.end_ns, MINUTE_NS)]


@pytest.mark.parametrize(("market", "day", "count", "first", "last"), [
    ("SH", "2026-12-02", 240, "09:30", "14:59"),
    ("BJ", "2026-12-02", 240, "09:30", "14:59"),
    ("HK", "2026-12-02", 330, "09:30", "15:59"),
    ("HK", "2026-12-24", 150, "09:30", "11:59"),  # Christmas Eve: a half day
    ("US", "2026-12-02", 390, "09:30", "15:59"),
    ("US", "2026-11-27", 210, "09:30", "12:59"),  # the day after Thanksgiving
    ("US", "2026-07-02", 390, "09:30", "15:59"),  # daylight saving time
    ("SH", "2026-10-01", 0, None, None),  # National Day
    ("US", "2026-11-26", 0, None, None),  # Thanksgiving
    ("SZ", "2026-12-05", 0, None, None),  # a Saturday
])  # fmt: skip
def test_each_market_has_its_regular_bars_a_day(
    sessions: Sessions, market: str, day: str, count: int, first: str | None, last: str | None
) -> None:
    minutes = own_minutes(sessions, market, day)
    assert len(minutes) == count
    if count:
        assert (minutes[0], minutes[-1]) == (first, last)


@pytest.mark.parametrize(("market", "clock", "phase"), [
    ("SH", "09:00:00", Phase.CLOSED), ("SH", "09:15:00", Phase.OPENING_AUCTION),
    ("SH", "09:26:00", Phase.OPENING_AUCTION), ("SH", "09:30:00", Phase.CONTINUOUS),
    ("SH", "11:30:00", Phase.LUNCH), ("SH", "12:59:59", Phase.LUNCH),
    ("SH", "13:00:00", Phase.CONTINUOUS), ("SH", "14:57:00", Phase.CLOSING_AUCTION),
    ("SH", "15:00:00", Phase.CLOSED), ("SH", "15:05:00", Phase.AFTER_HOURS),
    ("SH", "15:30:00", Phase.CLOSED),
    ("HK", "09:00:00", Phase.OPENING_AUCTION), ("HK", "12:00:00", Phase.LUNCH),
    ("HK", "16:00:00", Phase.CLOSING_AUCTION), ("HK", "16:10:00", Phase.CLOSED),
    ("US", "03:59:59", Phase.CLOSED), ("US", "04:00:00", Phase.PRE_MARKET),
    ("US", "09:30:00", Phase.CONTINUOUS), ("US", "16:00:00", Phase.AFTER_HOURS),
    ("US", "20:00:00", Phase.CLOSED),
])  # fmt: skip
def test_the_phase_at_any_instant(
    sessions: Sessions, market: str, clock: str, phase: Phase
) -> None:
    assert sessions.phase(market, at(market, "2026-12-02", clock)) == phase


def test_a_holiday_and_a_weekend(sessions: Sessions) -> None:
    assert sessions.phase("SH", at("SH", "2026-10-01", "10:00:00")) == Phase.HOLIDAY
    assert sessions.phase("SH", at("SH", "2026-10-03", "10:00:00")) == Phase.CLOSED  # Saturday
    assert sessions.phase("XX", 0) == Phase.CONTINUOUS  # no known market: always trading


@pytest.mark.parametrize(("code", "clock", "bar"), [
    ("600519.SH", "09:25:00", "09:30"),  # the opening auction's trade: the first bar
    ("600519.SH", "09:30:00", "09:30"), ("600519.SH", "11:29:59", "11:29"),
    ("600519.SH", "11:30:00", "11:29"),  # printed at the lunch break: the last morning bar
    ("600519.SH", "13:00:00", "13:00"), ("600519.SH", "14:58:30", "14:58"),
    ("600519.SH", "15:00:02", "14:59"),  # the closing auction: the last bar
    ("688001.SH", "15:10:00", None),  # after-hours: no bar unless asked
    ("600519.SH", "08:00:00", None), ("600519.SH", "16:00:00", None),
    ("700.HK", "09:20:00", "09:30"), ("700.HK", "12:00:01", "11:59"),
    ("700.HK", "16:08:00", "15:59"),  # the closing auction session
    ("AAPL.US", "09:30:00", "09:30"), ("AAPL.US", "08:00:00", None),
    ("AAPL.US", "16:30:00", None),
])  # fmt: skip
def test_the_bar_a_tick_belongs_to(
    sessions: Sessions, code: str, clock: str, bar: str | None
) -> None:
    market = code.rpartition(".")[2]
    slot = BarSlots(sessions).slot(code, at(market, "2026-12-02", clock))
    assert (local(market, slot) if slot is not None else None) == bar


def test_extended_bars_are_their_own_minutes_only_when_asked(sessions: Sessions) -> None:
    extended = BarSlots(sessions, extended=True)
    for code, clock, bar in [("688001.SH", "15:10:30", "15:10"), ("AAPL.US", "08:00:10", "08:00"),
                             ("AAPL.US", "16:30:00", "16:30"), ("600519.SH", "09:25:00", "09:30"),
                             ("600519.SH", "16:00:00", None)]:  # fmt: skip
        market = code.rpartition(".")[2]
        slot = extended.slot(code, at(market, "2026-12-02", clock))
        assert (local(market, slot) if slot is not None else None) == bar


def test_plain_minutes_without_sessions() -> None:
    slots = BarSlots(None)
    assert slots.slot("600519.SH", 125 * MINUTE_NS + 7) == 125 * MINUTE_NS


def test_trading_time_leaves_out_lunch_auctions_and_the_night(sessions: Sessions) -> None:
    day = "2026-12-02"
    span = sessions.trading_ns("SH", at("SH", day, "11:29:00"), at("SH", day, "13:01:00"))
    assert span == 2 * MINUTE_NS
    whole = sessions.trading_ns("SH", at("SH", day, "00:00:00"), at("SH", "2026-12-03", "00:00:00"))
    assert whole == 237 * MINUTE_NS  # 240 minutes less the 3 of the closing auction
    assert sessions.trading_ns("SH", at("SH", "2026-10-01", "10:00:00"),
                               at("SH", "2026-10-01", "11:00:00")) == 0  # fmt: skip


def test_beyond_what_the_library_knows_a_weekday_trades(sessions: Sessions) -> None:
    until = sessions.calendars.known_until("CN")
    assert until is not None
    later = until + dt.timedelta(days=40)
    while later.weekday() >= 5:
        later += dt.timedelta(days=1)
    assert len(own_minutes(sessions, "SH", later.isoformat())) == 240


def test_overrides_close_shorten_and_open_days(tmp_path: Path) -> None:
    path = tmp_path / "days.toml"
    path.write_text("""
[[day]]
market = "SH"
date = 2027-02-08
closed = true

[[day]]
market = "hk"
date = 2026-12-02
close = "12:00"

[[day]]
market = "US"
date = 2026-11-26
open = true
""")
    sessions = Sessions(Calendars.load(path))
    assert own_minutes(sessions, "SZ", "2027-02-08") == []  # SH, SZ and BJ share a calendar
    assert len(own_minutes(sessions, "HK", "2026-12-02")) == 150
    assert sessions.phase("HK", at("HK", "2026-12-02", "12:05:00")) == Phase.CLOSING_AUCTION
    assert len(own_minutes(sessions, "US", "2026-11-26")) == 390
    assert read_overrides(path)["HK"][day_of("2026-12-02")] == Hours(570, 0, 0, 720)


@pytest.mark.parametrize(("text", "message"), [
    ('[[day]]\nmarket = "XX"\ndate = 2027-01-04\nclosed = true\n', "market 'XX' is not one of"),
    ('[[day]]\nmarket = "SH"\ndate = 2027-01-04\nclose = "25:00"\n', "is not HH:MM"),
    ('[[day]]\nmarket = "SH"\ndate = 2027-01-04\nclose = "16:00"\n', "not within the regular"),
    ('[[day]]\nmarket = "SH"\ndate = 2027-01-04\n', "give one of"),
    ('[[day]]\nmarket = "SH"\ndate = 2027-01-04\nclosd = true\n', r"`closd` \(day 1\)"),
    ('[[day]\n', "days.toml"),
    ('[[day]]\nmarket = "HK"\ndate = 2027-01-04\nclose = "12:30"\n', "in the lunch break"),
    ('[[day]]\nmarket = "SH"\ndate = 2027-01-04\nclosed = true\n'
     '[[day]]\nmarket = "SZ"\ndate = 2027-01-04\nopen = true\n', "listed twice"),
])  # fmt: skip
def test_a_mistake_in_the_override_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "days.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_overrides(path)


def test_a_missing_override_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"calendar file .*nope\.toml"):
        read_overrides(tmp_path / "nope.toml")


def test_an_override_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "days.toml"
    path.write_bytes("# jour f\u00e9ri\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_overrides(path)


def test_workers_read_the_run_dir_s_copy_when_the_cache_is_unwritable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import feedmux.market.calendar as calendar  # noqa: PLC0415

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    calendar.compiled(run_dir)  # the supervisor: compiles (or reads the cache) and leaves a copy
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/feedmux-no-cache")  # then no cache at all ...

    def compile_again() -> calendar.Compiled:
        raise AssertionError("a worker compiled the calendars")

    monkeypatch.setattr(calendar, "_compile", compile_again)
    assert calendar.compiled().tables["CN"].days  # the same process: the table it has
    monkeypatch.setattr(calendar, "_loaded", None)  # a worker, another process: ...
    assert calendar.compiled(run_dir).tables["CN"].days  # ... reads the run dir's copy


def test_the_days_known_include_the_override_file_s(tmp_path: Path) -> None:
    path = tmp_path / "days.toml"
    path.write_text('[[day]]\nmarket = "SH"\ndate = 2031-02-03\nclosed = true\n')
    assert Calendars.load(path).known_until("CN") == dt.date(2031, 2, 3)
    assert Calendars.load().known_until("CN") < dt.date(2031, 2, 3)  # type: ignore[operator]


def test_a_reader_of_a_run_whose_calendar_file_is_gone_uses_the_library_s_days(
    tmp_path: Path,
) -> None:
    from feedmux.market.sessions import sessions_of_run  # noqa: PLC0415

    sessions, problem = sessions_of_run(str(tmp_path / "moved.toml"))
    assert "moved.toml" in problem and "library's days are used instead" in problem
    assert sessions.phase("SH", at("SH", "2026-12-02", "10:00:00")) == Phase.CONTINUOUS
    assert sessions_of_run("")[1] == ""
