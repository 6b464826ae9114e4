"""The end-of-day job: days archived (earlier ones caught up), the oldest removed, never a day
that is not archived."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from feedmux import read_bars, read_ticks
from feedmux.market.calendar import Calendars
from feedmux.market.sessions import Sessions
from feedmux.model import Bar, Tick
from feedmux.ops.config import Settings
from feedmux.ops.eod_job import run_job
from feedmux.shard.stores import retention
from feedmux.shard.stores.sqlite import SqliteSink, shard_db_path
from tests.unit.test_sessions import at, day_of

DAYS = ("2026-11-30", "2026-12-01", "2026-12-02")  # Monday to Wednesday
CODES = ("600519.SH", "000001.SZ", "688981.SH")
WALL = at("SH", DAYS[2], "16:00:00")  # the job runs after the last day's close


@pytest.fixture(scope="module")
def sessions() -> Sessions:
    return Sessions(Calendars.load())


def _store(data_dir: Path, merged: bool = True) -> None:
    """Two shard files, three days of ticks and bars; the last day's ticks left unmerged in
    ``ticks_recent`` unless ``merged``."""
    for shard, codes in enumerate((CODES[:2], CODES[2:])):
        sink = SqliteSink(shard_db_path(data_dir, shard), merge_rows=10**9)
        for day in DAYS:
            ticks = [Tick(code, seq, at("SH", day, "10:00:00") + seq * 10**9, 0, 10.0, 100.0,
                          1000.0, 1) for code in codes for seq in range(1, 6)]  # fmt: skip
            sink.write_batch(ticks)
            if merged or day != DAYS[-1]:
                sink.write_batch([])  # an empty batch merges the recent ticks
            minute = at("SH", day, "10:01:00")
            sink.write_bars([Bar(code, minute, 10.0, 10.0, 10.0, 10.0, 500.0, 5000.0, 5)
                             for code in codes])  # fmt: skip
        sink.close()


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(
        url="ws://127.0.0.1:1", token="t", codes=list(CODES), data_dir=str(tmp_path / "data"), **kw
    )  # type: ignore[arg-type]


def test_a_store_says_which_days_it_holds_merged_or_not(tmp_path: Path) -> None:
    _store(tmp_path, merged=False)
    found = set().union(*(retention.stored_days(shard_db_path(tmp_path, s)) for s in (0, 1)))
    assert found == {day_of(d) for d in DAYS}


def test_the_job_archives_the_day_and_earlier_days_not_archived_yet(
    tmp_path: Path, sessions: Sessions
) -> None:
    _store(tmp_path / "data")
    archive = tmp_path / "archive"
    settings = _settings(tmp_path, eod_export=str(archive))
    result = run_job(settings, [day_of(DAYS[1])], sessions, WALL)
    assert not result.error, result
    assert [(e.day, e.ticks, e.codes) for e in result.archived] == [
        (DAYS[0], 15, 3), (DAYS[1], 15, 3)]  # fmt: skip
    # Then the next day: only that one (the others are there).
    result = run_job(settings, [day_of(DAYS[2])], sessions, WALL)
    assert [e.day for e in result.archived] == [DAYS[2]]
    ticks = read_ticks(archive)
    assert len(ticks) == 45 and not ticks.duplicated(["code", "seq", "time"]).any()
    assert len(read_bars(archive)) == 9


def test_keep_days_removes_the_oldest_days_from_stores_and_journal(
    tmp_path: Path, sessions: Sessions
) -> None:
    data = tmp_path / "data"
    _store(data)
    for day in DAYS:
        (data / "journal" / day).mkdir(parents=True)
        (data / "journal" / day / "journal-1.fmj").write_bytes(b"FMJ1")
    result = run_job(_settings(tmp_path, keep_days=2), [day_of(DAYS[2])], sessions, WALL)
    assert not result.error, result
    assert result.removed == [DAYS[0]] and result.rows_removed == 15 + 3
    assert result.kept_from == DAYS[1]
    assert sorted(p.name for p in (data / "journal").iterdir()) == list(DAYS[1:])
    ticks = read_ticks(data)
    days = {dt.datetime.fromtimestamp(t.value / 1e9, dt.UTC).date().isoformat()
            for t in ticks["time"]}  # fmt: skip
    assert days == set(DAYS[1:]) and len(ticks) == 30
    assert read_bars(data)["minute"].astype("int64").min() == at("SH", DAYS[1], "10:01:00")


def test_keep_days_removes_nothing_that_is_not_archived(tmp_path: Path,
                                                        sessions: Sessions) -> None:  # fmt: skip
    data = tmp_path / "data"
    _store(data)
    archive = tmp_path / "archive"
    settings = _settings(tmp_path, eod_export=str(archive), keep_days=1)
    archive.mkdir()
    (archive / "ticks").write_text("not a folder")  # the export fails
    result = run_job(settings, [day_of(DAYS[2])], sessions, WALL)
    assert "cannot write the archive" in result.error and not result.removed
    assert len(read_ticks(data)) == 45 and len(read_bars(data)) == 9  # nothing removed


def _late_ticks(data_dir: Path, day: str, count: int) -> None:
    """Ticks of ``day`` stored after it was exported (late, or after an early --eod-at)."""
    sink = SqliteSink(shard_db_path(data_dir, 0))
    sink.write_batch([Tick(CODES[0], 100 + seq, at("SH", day, "15:20:00") + seq, 0, 10.0, 1.0,
                           10.0, 1) for seq in range(count)])  # fmt: skip
    sink.close()


def test_a_day_gets_its_late_ticks_archived_before_it_is_removed(
    tmp_path: Path, sessions: Sessions
) -> None:
    data, archive = tmp_path / "data", tmp_path / "archive"
    _store(data)
    settings = _settings(tmp_path, eod_export=str(archive), keep_days=2)
    assert not run_job(settings, [day_of(DAYS[1])], sessions, WALL).error
    _late_ticks(data, DAYS[0], 4)
    result = run_job(settings, [day_of(DAYS[2])], sessions, WALL)
    assert [(e.day, e.ticks) for e in result.archived] == [(DAYS[0], 19), (DAYS[2], 15)]
    ticks = read_ticks(archive)
    assert len(ticks) == 19 + 15 + 15 and result.kept_from == DAYS[1]
    assert len(read_ticks(data)) == 30  # day 1 removed only once archived whole


def test_an_export_stopped_half_way_is_done_again(tmp_path: Path, sessions: Sessions) -> None:
    data, archive = tmp_path / "data", tmp_path / "archive"
    _store(data)
    settings = _settings(tmp_path, eod_export=str(archive))
    assert not run_job(settings, [day_of(DAYS[0])], sessions, WALL).error
    bars = archive / "bars" / f"date={DAYS[0]}"
    (bars / "part-0.parquet").rename(bars / ".part-0.parquet.tmp")  # stopped while writing
    result = run_job(settings, [day_of(DAYS[1])], sessions, WALL)
    assert [e.day for e in result.archived] == [DAYS[0], DAYS[1]]
    assert len(read_bars(archive)) == 6


def test_the_journal_is_trimmed_by_days_of_receipt(tmp_path: Path, sessions: Sessions) -> None:
    """A replay of a later date than the wall clock's never removes today's folder."""
    data = tmp_path / "data"
    _store(data)
    today = "2026-12-09"
    for day in (*DAYS, today):
        (data / "journal" / day).mkdir(parents=True)
    later = day_of("2027-01-05")  # a simulated day ahead of the wall clock
    result = run_job(_settings(tmp_path, keep_days=2), [later], sessions,
                     at("SH", today, "10:00:00"))  # fmt: skip
    assert not result.error and result.removed == list(DAYS)
    assert [p.name for p in (data / "journal").iterdir()] == [today]
