"""The end of a trading day, end to end: a compressed A-share afternoon played by the replay
server through ``feedmux run``, which archives the day when it ends and resets for the next."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pandas as pd
import pytest

from feedmux import read_bars, read_ticks
from feedmux.simulator.market import a_share_universe
from feedmux.stats.eod import read_day_end
from tests.a_share_bars import SHANGHAI
from tests.conftest import scaled
from tests.integration.helpers import feedmux, shards_in, stop

pytestmark = pytest.mark.integration

DAY = "2026-12-02"  # a Wednesday, a trading day


def at(day: str, clock: str) -> int:
    local = dt.datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=SHANGHAI)
    return int(local.timestamp()) * 10**9


def _codes() -> list[str]:
    universe = a_share_universe()
    return sorted({*universe[::700][:8], *[c for c in universe if c.startswith("688")][:2]})


def _wait_for_state(run_dir: Path, run: object, states: set[str], timeout: float) -> str:
    deadline = time.monotonic() + scaled(timeout)
    while True:
        record = read_day_end(run_dir / "eod.json")
        if record is not None and record.state in states:
            return record.state
        assert getattr(run, "poll")() is None, "the run stopped"  # noqa: B009
        assert time.monotonic() < deadline, f"no end of day: {record}"
        time.sleep(0.2)


def test_the_day_ends_on_the_data_clock_and_is_archived_whole(tmp_path: Path) -> None:
    codes = _codes()
    data_dir, archive = tmp_path / "data", tmp_path / "archive"
    run_dir = data_dir / "run"
    run = feedmux("run", "--replay", "--replay-sessions", "--replay-session-date", DAY,
                  "--replay-session-start", "14:50", "--replay-day-minutes", "1",
                  "--replay-rate", "200", "--replay-warmup", "1", "--shards", "2",
                  "--codes", ",".join(codes), "--bar-sessions", "exchange",
                  "--bar-label", "end", "--eod-at", "15:05", "--eod-export", str(archive),
                  "--data-dir", str(data_dir), "--display", "plain")  # fmt: skip
    try:
        state = _wait_for_state(run_dir, run, {"done", "failed"}, 120)
        shards = shards_in(run_dir)
    finally:
        code, output = stop(run)
    assert code == 0, output
    assert state == "done", output
    day = (dt.date.fromisoformat(DAY) - dt.date(1970, 1, 1)).days
    assert [s.day_done for s in shards] == [day, day]
    assert f"trading day {DAY} ended" in output and f"end of day {DAY}: archived" in output

    # Every tick of the day before its end (15:05 here) is archived once, as stored; so are
    # after-hours ones stored before the export ran.
    stored = read_ticks(data_dir).set_index(["code", "seq"]).sort_index()
    archived = read_ticks(archive).set_index(["code", "seq"]).sort_index()
    assert not archived.index.duplicated().any()
    before = stored[stored["time"].astype("int64") < at(DAY, "15:05:00")]
    assert len(before) > 0 and before.index.isin(archived.index).all()
    pd.testing.assert_frame_equal(archived, stored.loc[archived.index], check_dtype=False)
    # Its bars: each code's last bars of the day, the 15:00 one (with the closing auction) last.
    bars = read_bars(archive)
    assert set(bars["code"]) == set(codes)
    assert (bars.groupby("code")["minute"].max().astype("int64") == at(DAY, "15:00:00")).all()


@pytest.mark.slow
def test_a_run_over_two_days_keeps_day_one_whole_and_starts_day_two_clean(tmp_path: Path) -> None:
    """Two compressed days (the first from 14:30), --keep-days 1: day 1 ends when the clock
    leaves it, is archived whole and removed from the store and the journal; day 2 has its 240
    bars a code; every received tick is in the archive or the store, once."""
    codes = _codes()
    first, second = "2026-12-01", "2026-12-02"
    data_dir, archive = tmp_path / "data", tmp_path / "archive"
    run_dir = data_dir / "run"
    run = feedmux("run", "--replay", "--replay-sessions", "--replay-session-date", first,
                  "--replay-session-days", "2", "--replay-session-start", "14:30",
                  "--replay-day-minutes", "0.4", "--replay-rate", "100",
                  "--replay-warmup", "1", "--shards", "2", "--codes", ",".join(codes),
                  "--bar-sessions", "exchange", "--bar-label", "end", "--eod-at", "15:10",
                  "--eod-export", str(archive), "--keep-days", "1",
                  "--data-dir", str(data_dir), "--display", "plain")  # fmt: skip
    try:
        deadline = time.monotonic() + scaled(180)
        while (record := read_day_end(run_dir / "eod.json")) is None or not (
            record.state == "done" and record.archived[-1:] == [second]
        ):
            assert run.poll() is None, "the run stopped"
            assert time.monotonic() < deadline, f"day 2 did not end: {record}"
            assert record is None or record.state != "failed", record
            time.sleep(0.2)
    finally:
        code, output = stop(run)
    assert code == 0, output
    assert record.archived == [first, second] and record.kept_from == second, record
    assert record.rows_removed > 0 and not record.removed  # the journal: days of receipt
    received = int(output.rpartition("stopped cleanly: all ")[2].split()[0].replace(",", ""))

    archived = read_ticks(archive)
    stored = read_ticks(data_dir)
    day_of = archived["time"].dt.tz_convert(SHANGHAI).dt.date.astype(str)
    assert set(day_of) == {first, second}
    assert set(stored["time"].dt.tz_convert(SHANGHAI).dt.date.astype(str)) == {second}
    day_one = archived[day_of == first]
    assert len(day_one) + len(stored) == received  # nothing lost, nothing twice
    assert not day_one.duplicated(["code", "seq"]).any()
    assert not stored.duplicated(["code", "seq"]).any()
    # The journal's folders are days of receipt (today's, for a replay): today's is kept.
    today = dt.datetime.now(SHANGHAI).date().isoformat()
    assert today in {p.name for p in (data_dir / "journal").iterdir()}

    bars = read_bars(archive)
    bars["day"] = bars["minute"].dt.tz_convert(SHANGHAI).dt.date.astype(str)
    one, two = bars[bars["day"] == first], bars[bars["day"] == second]
    assert (one.groupby("code")["minute"].max().astype("int64") == at(first, "15:00:00")).all()
    assert one.groupby("code").size().max() <= 31  # from 14:30: only the afternoon's end
    assert two.groupby("code").size().to_dict() == dict.fromkeys(codes, 240)
    assert (two.groupby("code")["minute"].min().astype("int64") == at(second, "09:31:00")).all()
    assert set(read_bars(data_dir)["minute"].dt.tz_convert(SHANGHAI).dt.date.astype(str)) == {
        second}  # fmt: skip
