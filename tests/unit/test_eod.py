"""The end of a trading day: which day ended, asked with the data clock."""

from __future__ import annotations

import pytest

from feedmux.errors import ConfigError
from feedmux.market.calendar import Calendars
from feedmux.market.eod import MARGIN_NS, Rollover, first_kept_day
from feedmux.market.sessions import MINUTE_NS, Sessions
from tests.unit.test_sessions import at, day_of


@pytest.fixture(scope="module")
def sessions() -> Sessions:
    return Sessions(Calendars.load())


def test_an_a_share_day_ends_after_after_hours_and_the_margin(sessions: Sessions) -> None:
    roll = Rollover(sessions, ["SH", "SZ"], "SH")
    assert roll.due(at("SH", "2026-12-02", "09:10:00")) is None
    assert roll.due(at("SH", "2026-12-02", "15:31:59")) is None  # after-hours just ended
    end = at("SH", "2026-12-02", "15:30:00") + MARGIN_NS
    assert roll.next_end_ns() == end
    assert roll.due(end - 1) is None
    assert roll.due(end) == day_of("2026-12-02")
    assert roll.due(end + MINUTE_NS) is None  # once
    assert roll.due(at("SH", "2026-12-02", "23:59:00")) is None
    assert roll.due(at("SH", "2026-12-03", "09:00:00")) is None
    assert roll.due(at("SH", "2026-12-03", "16:00:00")) == day_of("2026-12-03")


def test_a_clock_that_jumps_over_the_night_ends_the_day_it_left(sessions: Sessions) -> None:
    roll = Rollover(sessions, ["SH"], "SH")
    assert roll.due(at("SH", "2026-12-02", "14:59:00")) is None
    assert roll.due(at("SH", "2026-12-03", "09:15:00")) == day_of("2026-12-02")
    assert roll.due(at("SH", "2026-12-03", "15:40:00")) == day_of("2026-12-03")


def test_a_run_started_after_the_close_does_not_end_that_day(sessions: Sessions) -> None:
    roll = Rollover(sessions, ["SH"], "SH")
    assert roll.due(at("SH", "2026-12-02", "16:00:00")) is None
    assert roll.due(at("SH", "2026-12-03", "15:33:00")) is None  # not seen inside it either
    assert roll.due(at("SH", "2026-12-04", "09:00:00")) is None
    assert roll.due(at("SH", "2026-12-04", "15:33:00")) == day_of("2026-12-04")


def test_weekends_and_holidays_end_nothing(sessions: Sessions) -> None:
    roll = Rollover(sessions, ["SH"], "SH")
    assert roll.due(at("SH", "2026-12-04", "10:00:00")) is None  # a Friday
    assert roll.due(at("SH", "2026-12-05", "10:00:00")) == day_of("2026-12-04")  # Saturday
    assert roll.due(at("SH", "2026-12-06", "16:00:00")) is None  # Sunday
    assert roll.next_end_ns() is None
    assert roll.due(at("SH", "2026-12-07", "09:00:00")) is None
    assert roll.due(at("SH", "2026-12-07", "15:32:00")) == day_of("2026-12-07")


def test_eod_at_sets_the_time_on_the_main_markets_clock(sessions: Sessions) -> None:
    roll = Rollover(sessions, ["SH"], "SH", at="15:05")
    assert roll.due(at("SH", "2026-12-02", "15:04:59")) is None
    assert roll.due(at("SH", "2026-12-02", "15:05:00")) == day_of("2026-12-02")
    with pytest.raises(ConfigError, match="HH:MM"):
        Rollover(sessions, ["SH"], "SH", at="3pm")


def test_a_run_with_us_codes_ends_after_new_yorks_after_hours(sessions: Sessions) -> None:
    roll = Rollover(sessions, ["SH", "US"], "SH")
    assert roll.due(at("SH", "2026-12-02", "10:00:00")) is None
    # 20:00 in New York on 2 December is 09:00 on the 3rd in Shanghai
    assert roll.due(at("SH", "2026-12-03", "09:01:00")) is None
    assert roll.due(at("SH", "2026-12-03", "09:02:00")) == day_of("2026-12-02")


def test_codes_of_no_known_market_end_only_with_eod_at(sessions: Sessions) -> None:
    roll = Rollover(sessions, ["XX"], "XX")
    assert roll.due(at("SH", "2026-12-02", "10:00:00")) is None
    assert roll.due(at("SH", "2026-12-03", "10:00:00")) is None
    timed = Rollover(sessions, ["XX"], "XX", at="17:00")
    assert timed.due(at("SH", "2026-12-05", "10:00:00")) is None
    assert timed.due(at("SH", "2026-12-05", "17:00:00")) == day_of("2026-12-05")


def test_keep_days_counts_trading_days_back_from_the_day_that_ended(sessions: Sessions) -> None:

    monday = day_of("2026-12-07")
    assert first_kept_day(sessions, "SH", monday, 1) == monday
    assert first_kept_day(sessions, "SH", monday, 2) == day_of("2026-12-04")  # over the weekend
    assert first_kept_day(sessions, "SH", monday, 6) == day_of("2026-11-30")
    assert first_kept_day(sessions, "XX", monday, 2) == day_of("2026-12-06")
