"""Silent codes and market sessions on the data clock: nothing is silent while a code's market
is closed, at lunch or in an auction; the quiet time counts continuous trading only."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from feedmux.client.control import not_subscribed, silent_codes
from feedmux.market.calendar import Calendars
from feedmux.market.sessions import Sessions
from feedmux.ops.markets import market_rows, markets_of
from feedmux.ops.metrics import StatsCollector
from feedmux.ops.status import build_status, progress_line, render
from feedmux.stats import RunStats, write_stats
from feedmux.stats.shard import data_clock
from tests.stats_samples import receiver_stats, shard_stats

S = 10**9
ZONES = {"SH": "Asia/Shanghai", "HK": "Asia/Hong_Kong", "US": "America/New_York"}
DAY = "2026-12-02"  # a Wednesday every market trades


@pytest.fixture(scope="module")
def sessions() -> Sessions:
    return Sessions(Calendars.load())


def at(hhmmss: str, day: str = DAY, market: str = "SH") -> int:
    local = dt.datetime.fromisoformat(f"{day}T{hhmmss}").replace(tzinfo=ZoneInfo(ZONES[market]))
    return int(local.timestamp()) * S


def silent_at(sessions: Sessions, now: str, last: dict[str, str], confirmed: str = "09:00",
              day: str = DAY, threshold_s: float = 60.0) -> dict[str, float | None]:  # fmt: skip
    """Silent A-share codes at ``now`` on ``day``: 600519.SH last ticked at ``last[code]``,
    000001.SZ never; both subscribed since ``confirmed``."""
    codes = ["600519.SH", "000001.SZ"]
    ticks = {code: at(time, day) for code, time in last.items()}
    return silent_codes(dict.fromkeys(codes, at(confirmed, day)), ticks, threshold_s,
                        at(now, day), sessions)  # fmt: skip


def test_a_code_stopped_two_minutes_in_continuous_trading_is_silent(sessions: Sessions) -> None:
    assert silent_at(sessions, "10:00:00", {"600519.SH": "09:58:00"}) == {
        "600519.SH": 120.0, "000001.SZ": None}  # fmt: skip
    assert silent_at(sessions, "10:00:00", {"600519.SH": "09:59:30"}) == {"000001.SZ": None}
    assert silent_at(sessions, "10:00:00", {}, confirmed="09:59:30") == {}  # just subscribed


@pytest.mark.parametrize(("now", "day", "why"), [
    ("12:00:00", DAY, "lunch"),
    ("09:25:00", DAY, "opening auction"),
    ("14:58:00", DAY, "closing auction"),
    ("15:02:00", DAY, "closed (the close's prints)"),
    ("15:20:00", DAY, "after hours"),
    ("20:00:00", DAY, "closed"),
    ("10:00:00", "2026-10-01", "National Day"),
    ("10:00:00", "2026-12-05", "a Saturday"),
])  # fmt: skip
def test_nothing_is_silent_unless_the_market_trades_continuously(
    sessions: Sessions, now: str, day: str, why: str
) -> None:
    assert silent_at(sessions, now, {"600519.SH": "09:31:00"}, day=day) == {}, why


def test_only_continuous_trading_counts_across_lunch(sessions: Sessions) -> None:
    last = {"600519.SH": "11:29:30"}
    assert "600519.SH" not in silent_at(sessions, "13:00:20", last)  # 30 s + 20 s of trading
    assert silent_at(sessions, "13:01:40", last)["600519.SH"] == 130.0  # 30 s + 100 s
    # subscribed just before lunch, never ticked: not silent just after it
    assert silent_at(sessions, "13:00:20", {}, confirmed="11:29:30") == {}
    assert silent_at(sessions, "13:00:40", {}, confirmed="11:29:30") == {
        "600519.SH": None, "000001.SZ": None}  # fmt: skip


def test_yesterdays_last_tick_counts_from_this_mornings_open(sessions: Sessions) -> None:
    last = {"600519.SH": "14:56:59"}  # the last continuous tick before the closing auction
    ticks = {code: at(t, "2026-12-01") for code, t in last.items()}
    confirmed = {"600519.SH": at("09:00:00", "2026-12-01")}
    assert silent_codes(confirmed, ticks, 60.0, at("09:30:30"), sessions) == {}
    assert silent_codes(confirmed, ticks, 60.0, at("09:31:30"), sessions) == {"600519.SH": 91.0}


def test_each_market_keeps_its_own_hours(sessions: Sessions) -> None:
    # 11:45 in Shanghai and Hong Kong: A-shares at lunch, Hong Kong trading until 12:00
    now = at("11:45:00")
    confirmed = dict.fromkeys(["600519.SH", "700.HK", "AAPL.US"], at("09:00:00"))
    assert silent_codes(confirmed, {}, 60.0, now, sessions) == {"700.HK": None}


def test_a_code_of_no_known_market_is_always_trading(sessions: Sessions) -> None:
    now = at("10:00:00", "2026-12-05")  # a Saturday
    confirmed = {"BTCUSDT.CC": now - 600 * S, "600519.SH": now - 600 * S}
    ticks = {"BTCUSDT.CC": now - 120 * S}
    assert silent_codes(confirmed, ticks, 60.0, now, sessions) == {"BTCUSDT.CC": 120.0}


def test_a_whole_market_is_silent_only_when_none_of_its_codes_ticked_while_it_trades(
    sessions: Sessions,
) -> None:
    now = at("11:00:00", market="US")
    confirmed = {"*.US": at("09:00:00", market="US")}
    ago = {"AAPL.US": now - 90 * S, "600519.SH": now - S}
    assert silent_codes(confirmed, ago, 60.0, now, sessions) == {"*.US": 90.0}
    ago["BRK.B.US"] = now - 2 * S
    assert silent_codes(confirmed, ago, 60.0, now, sessions) == {}
    assert silent_codes(confirmed, {}, 60.0, now, sessions) == {"*.US": None}
    night = at("21:00:00", market="US")
    assert silent_codes(confirmed, {}, 60.0, night, sessions) == {}


def test_a_tick_stamped_after_the_clock_is_not_silent(sessions: Sessions) -> None:
    assert silent_at(sessions, "10:00:00", {"600519.SH": "10:00:05"}) == {"000001.SZ": None}


def test_the_data_clock_is_the_latest_shards_advanced_by_the_wall_time_since() -> None:
    shards = [shard_stats(0, time_ns=100 * S, data_ns=5000 * S),
              shard_stats(1, time_ns=101 * S, data_ns=5001 * S + S // 2),
              shard_stats(2, time_ns=102 * S, data_ns=0)]  # fmt: skip  # no tick yet
    assert data_clock(shards, 103 * S) == 5003 * S + S // 2  # shard 1's: 5001.5 s + 2 s
    assert data_clock([shards[2]], 103 * S) == 103 * S  # no tick at all: the wall clock
    assert data_clock([], 103 * S) == 103 * S


def test_markets_show_their_phase_and_the_next_change(sessions: Sessions) -> None:
    assert markets_of(["600519.SH", "000001.SZ", "*.US", "700.HK"]) == ["HK", "SH", "SZ", "US"]
    rows = {r.market: r for r in market_rows(["HK", "SH", "US", "CC"], sessions, at("11:45:00"))}
    assert rows["SH"].line() == "SH lunch (continuous 13:00)"
    assert rows["HK"].line() == "HK continuous (lunch 12:00)"
    assert rows["US"].line() == "US closed (pre market 12-02 04:00)"  # 22:45 in New York
    assert rows["CC"].line() == "CC continuous"  # no known hours: no change in sight
    friday = {r.market: r for r in market_rows(["SH"], sessions, at("15:40:00", "2026-12-04"))}
    assert friday["SH"].line() == "SH closed (opening auction 12-07 09:15)"  # Monday


def _run_stats(data_s: int, written_s: int) -> RunStats:
    shard = shard_stats(0, time_ns=written_s * S, data_ns=data_s * S)
    return RunStats(receiver=receiver_stats(time_ns=written_s * S), shards={0: shard})


def test_the_status_shows_each_markets_session_on_the_data_clock(sessions: Sessions) -> None:
    # A replay of an earlier day: its data clock, not the wall clock, says it is lunch.
    lunch = at("12:10:00", "2026-11-30") // S
    stats = _run_stats(lunch, 10**9)
    status = build_status(None, stats, 1, wall_ns=10**9 * S + 2 * S, sessions=sessions,
                          markets=["HK", "SH"])  # fmt: skip
    assert status.data_clock_ns == (lunch + 2) * S
    assert [(m.market, m.phase) for m in status.markets] == [("HK", "lunch"), ("SH", "lunch")]
    assert status.as_dict()["markets"][1] == {
        "market": "SH", "phase": "lunch", "next_phase": "continuous",
        "next_ns": at("13:00:00", "2026-11-30"), "next_local": "13:00"}  # fmt: skip
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(render(status, "test"))
    text = console.export_text()
    assert "markets  HK lunch (continuous 13:00) · SH lunch (continuous 13:00)" in text
    assert progress_line(status, 1.0).endswith("| HK lunch · SH lunch")
    plain = build_status(None, stats, 1, wall_ns=10**9 * S)  # no sessions: no markets line
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(render(plain, "test"))
    assert plain.markets == [] and "markets" not in console.export_text()


def test_metrics_expose_each_markets_session_and_the_data_clock(
    tmp_path: Path, sessions: Sessions
) -> None:
    continuous = at("10:00:00") // S
    write_stats(tmp_path, _run_stats(continuous, 5000).shards[0])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(tmp_path, lambda: ["SH", "US"], sessions,
                                     wall=lambda: 5001 * S))  # fmt: skip
    text = generate_latest(registry).decode()
    for line in (
        f"feedmux_market_data_clock_seconds {continuous + 1:.9e}",  # 1.796176801e+09
        'feedmux_market_session{market="SH",session="continuous"} 1.0',
        'feedmux_market_session{market="SH",session="lunch"} 0.0',
        'feedmux_market_session{market="US",session="closed"} 1.0',
        'feedmux_market_session{market="US",session="continuous"} 0.0',
    ):
        assert line in text, line
    assert text.count("feedmux_market_session{") == 16  # one series per market and phase
    bare = CollectorRegistry(auto_describe=False)  # without sessions: the clock only
    bare.register(StatsCollector(tmp_path))
    assert "feedmux_market_session{" not in generate_latest(bare).decode()


def test_older_shard_stats_without_a_data_clock_still_decode() -> None:
    raw = msgspec.json.encode(shard_stats(0))
    old = raw.replace(b',"data_ns":0', b"")
    assert old != raw
    from feedmux.stats import _process  # noqa: PLC0415

    assert _process.decode(old).data_ns == 0


def test_a_market_whose_calendar_ends_within_a_month_is_warned_of() -> None:
    import datetime as dt  # noqa: PLC0415

    from feedmux.market.calendar import Calendars  # noqa: PLC0415
    from feedmux.market.sessions import Sessions  # noqa: PLC0415
    from feedmux.ops.markets import unknown_days  # noqa: PLC0415

    sessions = Sessions(Calendars.load())
    until = sessions.calendars.known_until("CN")
    assert until is not None
    soon = unknown_days(sessions, ["600519.SH", "AAPL.US"], until - dt.timedelta(days=10))
    assert len(soon) == 1 and f"A-share calendar knows trading days only to {until}" in soon[0]
    assert unknown_days(sessions, ["600519.SH"], until - dt.timedelta(days=60)) == []
    assert unknown_days(sessions, ["X.XX"], until) == []  # no known market: no calendar


def test_a_whole_market_subscription_covers_each_of_its_codes() -> None:
    listed = ["*.US", "600519.SH"]
    assert not_subscribed(["AAPL.US", "BRK.B.US", "600519.SH", "600000.SH", "700.HK"], listed) == [
        "600000.SH",
        "700.HK",
    ]
