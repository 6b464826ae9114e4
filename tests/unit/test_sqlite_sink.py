import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from msgspec.structs import astuple

from feedmux.client.reader import read_ticks
from feedmux.errors import StoreError
from feedmux.market.day import trading_day
from feedmux.model import Depth, Tick
from feedmux.shard.stores.base import WriteResult
from feedmux.shard.stores.migrate import migrate_store
from feedmux.shard.stores.retry import RetryingWriter
from feedmux.shard.stores.sqlite import SqliteSink, connect, shard_db_path
from feedmux.shard.stores.urls import SQLITE, Store
from tests.conftest import FakeClock
from tests.ticks import OLD_SCHEMA, assert_both_days_kept, two_days

T0 = 1_700_000_000_000_000_000


def tick(code: str, seq: int, t_s: float = 0.0) -> Tick:
    return Tick(code, seq, T0 + int(t_s * 1e9), T0 + int(t_s * 1e9) + 5, 10.5, 100.0, 1050.0, 1)


def test_duplicates_are_skipped_and_counted_not_fatal(tmp_path: Path) -> None:
    sink = SqliteSink(shard_db_path(tmp_path, 0), merge_rows=1)  # merge at every write
    assert sink.write_batch([tick("600519.SH", 1), tick("600519.SH", 2)]) == (2, 0)
    assert sink.write_batch([tick("600519.SH", 2), tick("600519.SH", 3)]) == (1, 1)
    sink.close()
    assert list(read_ticks(tmp_path)["seq"]) == [1, 2, 3]


def test_recent_rows_are_readable_before_the_merge_which_counts_their_duplicates(
    tmp_path: Path,
) -> None:
    sink = SqliteSink(shard_db_path(tmp_path, 0), merge_rows=5)
    assert sink.write_batch([tick("600519.SH", s) for s in (1, 2)]) == (2, 0)
    assert sink.write_batch([tick("600519.SH", 2)]) == (1, 0)  # not merged: not known yet
    assert list(read_ticks(tmp_path)["seq"]) == [1, 2]  # readers see each (code, seq) once
    totals = [sum(x) for x in zip(sink.write_batch([tick("600519.SH", s) for s in (3, 2)]),
                                  sink.write_batch([]), strict=True)]  # fmt: skip
    assert totals == [0, 2]  # the merge found both re-sent ticks: 5 written, 3 stored in all
    assert list(read_ticks(tmp_path)["seq"]) == [1, 2, 3]
    sink.close()


def test_rows_left_unmerged_by_a_crash_are_read_and_merged_on_reopen(tmp_path: Path) -> None:
    path = shard_db_path(tmp_path, 0)
    sink = SqliteSink(path, merge_rows=1000)
    sink.write_batch([tick("600519.SH", s) for s in (1, 2, 3)])
    sink._conn.close()  # as a kill -9 would: no merge at close
    assert list(read_ticks(tmp_path)["seq"]) == [1, 2, 3]
    reopened = SqliteSink(path, merge_rows=1000)  # counts the 3 left over towards a merge
    result = reopened.write_batch([tick("600519.SH", 3)] * 996 + [tick("600519.SH", 4)])
    assert result == (1, 996)  # merged 1,000 rows: 1..4 stored once, 996 re-sends counted
    latest, _ = reopened.latest()
    assert [(t.code, t.seq) for t in latest] == [("600519.SH", 4)]
    reopened.close()
    assert list(read_ticks(tmp_path)["seq"]) == [1, 2, 3, 4]


def test_read_ticks_merges_shards_with_filters_and_types(tmp_path: Path) -> None:
    for shard, codes in enumerate((["600519.SH", "000001.SZ"], ["AAPL.US"])):
        sink = SqliteSink(shard_db_path(tmp_path, shard))
        sink.write_batch([tick(c, s, t_s=s) for c in codes for s in range(5)])
        sink.close()
    df = read_ticks(tmp_path)
    assert list(df.columns) == ["code", "seq", "time", "recv_time", "price", "volume",
                                   "turnover", "direction"]  # fmt: skip
    assert len(df) == 15 and df["time"].is_monotonic_increasing
    assert str(df["time"].dtype) == "datetime64[ns, UTC]"
    assert df["time"].iloc[0] == pd.Timestamp(T0, unit="ns", tz="UTC")
    some = read_ticks(tmp_path, codes=["sh600519", "AAPL"],
                      start=pd.Timestamp(T0 + 10**9, unit="ns", tz="UTC"),
                      end=pd.Timestamp(T0 + 3 * 10**9, unit="ns"))  # fmt: skip
    assert sorted(zip(some["code"], some["seq"], strict=True)) == [
        ("600519.SH", 1), ("600519.SH", 2), ("AAPL.US", 1), ("AAPL.US", 2)]  # fmt: skip


def test_empty_store_reads_as_empty_frame(tmp_path: Path) -> None:
    SqliteSink(shard_db_path(tmp_path, 0)).close()
    df = read_ticks(tmp_path)
    assert df.empty and "price" in df.columns


class FlakySink:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.rows: list[Tick] = []

    def write_batch(self, ticks: list[Tick]) -> WriteResult:
        if self.failures:
            self.failures -= 1
            raise StoreError("disk on fire")
        self.rows.extend(ticks)
        return WriteResult(len(ticks), 0)

    def close(self) -> None:
        pass


def test_failed_writes_are_kept_and_retried_in_order() -> None:
    clock = FakeClock()
    sink = FlakySink(failures=2)
    writer = RetryingWriter(sink.write_batch, clock)
    writer.submit([tick("A.SH", 1)])
    writer.submit([tick("A.SH", 2)])
    assert writer.backlog == 2 and writer.failures == 1
    writer.flush()  # too early: backing off
    assert writer.failures == 1
    clock.advance(0.1)
    writer.flush()
    assert writer.failures == 2 and writer.backlog == 2
    clock.advance(0.2)
    writer.flush()
    assert writer.backlog == 0 and [t.seq for t in sink.rows] == [1, 2]


def test_unwritable_store_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open SQLite store"):
        SqliteSink(blocker / "ticks" / "shard-0.sqlite")


def test_latest_gives_the_highest_seq_of_each_code_for_a_restarted_snapshot(
    tmp_path: Path,
) -> None:
    sink = SqliteSink(shard_db_path(tmp_path, 0))
    assert sink.latest() == ([], [])  # a fresh store
    rows = [tick(code, seq) for code in ("600519.SH", "000001.SZ", "AAPL.US") for seq in (3, 1, 7)]
    sink.write_batch(rows)
    book = Depth("600519.SH", 9, T0, T0, [(10.0, 5.0)], [])
    sink.write_books([Depth("600519.SH", 2, T0, T0, [], [(11.0, 1.0)]), book])
    ticks, books = sink.latest()
    sink.close()
    assert {t.code: t for t in ticks} == {
        c: tick(c, 7) for c in ("600519.SH", "000001.SZ", "AAPL.US")
    }
    assert books == [book]


def test_a_vendor_restarting_its_seqs_each_day_keeps_both_days(tmp_path: Path) -> None:
    sink = SqliteSink(shard_db_path(tmp_path, 0), merge_rows=1)
    ticks = two_days()
    assert sink.write_batch(ticks[:3]) == (3, 0)
    assert sink.write_batch(ticks[3:]) == (3, 0)  # day 2: not duplicates of day 1
    assert sink.write_batch(ticks[3:4]) == (0, 1)  # a re-send of day 2's first tick is
    assert_both_days_kept(sink, tmp_path, ticks)


def test_a_store_written_before_the_trading_day_was_in_the_key_is_migrated_once(
    tmp_path: Path,
) -> None:
    path = shard_db_path(tmp_path, 0)
    path.parent.mkdir(parents=True)
    day1 = two_days()[:3]
    with sqlite3.connect(path) as old:
        for sql in OLD_SCHEMA:
            old.execute(sql)
        values = "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        old.executemany(f"INSERT INTO ticks {values}", [astuple(t) for t in day1[:2]])
        old.execute(f"INSERT INTO ticks_recent {values}", astuple(day1[2]))  # not merged yet
        old.execute(
            "INSERT INTO books VALUES ('600519.SH', 4, ?, ?, '[[10.0,1.0]]', '[]')", (T0, T0)
        )
    migrate_store(Store(SQLITE, str(tmp_path)), lambda text: None)  # before the shards start
    sink = SqliteSink(path, merge_rows=1)
    assert sink.write_batch(two_days()[3:]) == (3, 0)  # day 2 from seq 1, next to day 1
    _, books = sink.latest()
    sink.close()
    assert books == [Depth("600519.SH", 4, T0, T0, [(10.0, 1.0)], [])]
    assert list(read_ticks(tmp_path)["seq"]) == [1, 2, 3, 1, 2, 3]
    conn = connect(path)  # opened again: already at the current version, nothing to redo
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0] == 6
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name LIKE '%_v0'").fetchall()
    conn.close()


def test_a_store_from_a_newer_feedmux_is_refused(tmp_path: Path) -> None:
    path = shard_db_path(tmp_path, 0)
    SqliteSink(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteSink(path)


def test_a_us_tick_is_stored_under_its_new_york_trading_day(tmp_path: Path) -> None:
    # 1_700_000_000 s is 06:13 in Shanghai on Nov 15 but 17:13 in New York on Nov 14
    tick = two_days("AAPL.US")[0]
    sink = SqliteSink(shard_db_path(tmp_path, 0), merge_rows=1)
    sink.write_batch([tick])
    sink.close()
    with sqlite3.connect(shard_db_path(tmp_path, 0)) as db:
        [(stored,)] = db.execute("SELECT trading_day FROM ticks").fetchall()
    assert stored == trading_day(tick.time_ns, tick.code) != trading_day(tick.time_ns)
