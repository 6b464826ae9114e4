"""The PostgreSQL store against the real server: idempotent batches, a connection that dies
mid-run, and a whole run into SQLite and PostgreSQL at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from feedmux import read_bars, read_ticks
from feedmux.errors import StoreError
from feedmux.model import Depth, Tick
from feedmux.reader import BAR_COLUMNS
from feedmux.sinks.postgres import APPLICATION_NAME, PostgresSink, redact_url
from feedmux.sinks.retry import RetryingWriter
from feedmux.stats import read_stats
from tests.conftest import wait_for
from tests.integration.helpers import (
    end_feed,
    feedmux,
    read_json,
    sent_ticks,
    start_sampled_run,
    stop,
)
from tests.services import postgres_schema

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_schema()


def _tick(code: str, seq: int) -> Tick:
    return Tick(code, seq, 1_700_000_000_000_000_000 + seq, 1_700_000_000_000_000_001 + seq,
                10.0 + seq / 100, 100.0 * seq, 1000.0 * seq, seq % 3)  # fmt: skip


def _rows(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT * FROM feedmux_ticks ORDER BY code, seq").fetchall()


def _kill_connections(url: str) -> int:
    """Terminate every feedmux connection to the server, as a server restart would."""
    with psycopg.connect(url, autocommit=True) as conn:
        return len(conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()", (APPLICATION_NAME,),
        ).fetchall())  # fmt: skip


def test_duplicates_are_skipped_and_counted_and_latest_reads_back(pg_url: str) -> None:
    sink = PostgresSink(pg_url)
    first = [_tick("600519.SH", s) for s in (1, 2, 3)] + [_tick("000001.SZ", 7)]
    assert sink.write_batch(first) == (4, 0)
    again = [_tick("600519.SH", 3), _tick("600519.SH", 4), _tick("600519.SH", 4)]
    assert sink.write_batch(again) == (1, 2)  # a re-sent tick and a repeat within the batch
    assert [r[:2] for r in _rows(pg_url)] == [("000001.SZ", 7)] + [
        ("600519.SH", s) for s in (1, 2, 3, 4)]  # fmt: skip
    assert Tick(*_rows(pg_url)[-1]) == _tick("600519.SH", 4)  # every value, exactly
    book = Depth("600519.SH", 9, 1, 2, [(10.5, 300.0)], [])
    assert sink.write_books([book, book]) == (1, 1)
    ticks, books = sink.latest()
    assert {t.code: t for t in ticks} == {
        "000001.SZ": _tick("000001.SZ", 7),
        "600519.SH": _tick("600519.SH", 4),
    }
    assert books == [book]
    sink.close()


def test_a_killed_connection_fails_the_write_and_the_retry_stores_the_batch(pg_url: str) -> None:
    sink = PostgresSink(pg_url)
    clock = [0]
    writer = RetryingWriter(sink.write_batch, lambda: clock[0])
    writer.submit([_tick("600519.SH", 1)])
    assert _kill_connections(pg_url) == 1
    writer.submit([_tick("600519.SH", 2)])  # the dead connection: kept for a retry
    writer.submit([_tick("600519.SH", 3)])  # queued behind it, in order
    assert writer.failures == 1 and writer.backlog == 2
    clock[0] = writer.retry_deadline() or 0
    writer.flush()  # reconnects
    assert writer.backlog == 0 and writer.stored == 3
    assert [r[1] for r in _rows(pg_url)] == [1, 2, 3]


def test_a_wrong_url_is_a_clear_error_without_the_password() -> None:
    url = "postgresql://feedmux:s3cret-pw@127.0.0.1:1/none"
    with pytest.raises(StoreError) as caught:
        PostgresSink(url)
    assert "s3cret-pw" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
    assert redact_url(url) == "postgresql://feedmux:***@127.0.0.1:1/none"


def test_a_run_into_sqlite_and_postgres_loses_nothing_when_postgres_drops_us(
    tmp_path: Path, pg_url: str
) -> None:
    replay, report, run, run_dir, data_dir, _ = start_sampled_run(
        tmp_path, 3000, 2, "--store", "sqlite://", "--store", pg_url)  # fmt: skip

    def stored() -> int:
        stats = read_stats(run_dir / "stats")
        return sum(s["stored"] for n, s in stats.items() if n.startswith("shard-"))

    try:
        wait_for(lambda: stored() > 3000, 60, "ticks in both stores")
        assert _kill_connections(pg_url) == 6  # 2 shards x (ticks, books, bars)
        sent_at_kill = read_json(report)["ticks_sent"]
        wait_for(lambda: read_json(report)["ticks_sent"] > sent_at_kill + 3000, 30,
                 "more feed after the connections died")  # fmt: skip
        end_feed(replay, report)
        sent = sent_ticks(tmp_path / "sent.log")
        wait_for(lambda: stored() == len(sent), 30, "every tick in both stores")
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    assert "PostgreSQL write to" in output and "failed" in output  # the drop was noticed
    expected = sorted((t.code, t.seq) for t in sent)
    assert [r[:2] for r in _rows(pg_url)] == expected
    sqlite = read_ticks(data_dir)
    assert sorted(zip(sqlite["code"], sqlite["seq"], strict=True)) == expected
    # The round trip: SQLite, PostgreSQL and a Parquet export read back as identical frames.
    archive = tmp_path / "archive"
    for day in sorted({t.tz_convert("Asia/Shanghai").date() for t in sqlite["time"]}):
        exported = feedmux("export", "--date", day.isoformat(), "--data-dir", str(data_dir),
                           "--out", str(archive))  # fmt: skip
        assert exported.wait(60) == 0, exported.communicate()[0]
    pd.testing.assert_frame_equal(read_ticks(pg_url), sqlite)
    pd.testing.assert_frame_equal(read_ticks(archive), sqlite)
    # Minute bars: in every store, equal to a pandas resample of the stored ticks.
    bars = read_bars(data_dir)
    pd.testing.assert_frame_equal(bars, _resample(sqlite))
    pd.testing.assert_frame_equal(read_bars(pg_url), bars)
    pd.testing.assert_frame_equal(read_bars(archive), bars)


def _resample(ticks: pd.DataFrame) -> pd.DataFrame:
    """One-minute OHLCV bars per code, as a pandas user would compute them."""
    ticks = ticks.sort_values(["time", "seq"], kind="stable")
    grouped = ticks.groupby(["code", pd.Grouper(key="time", freq="1min")])
    bars = grouped.agg(open=("price", "first"), high=("price", "max"), low=("price", "min"),
                       close=("price", "last"), volume=("volume", "sum"),
                       turnover=("turnover", "sum"), count=("price", "size"))  # fmt: skip
    bars = bars[bars["count"] > 0].reset_index().rename(columns={"time": "minute"})
    bars = bars.sort_values(["minute", "code"], kind="stable").reset_index(drop=True)
    return bars.astype({"count": "int64"})[list(BAR_COLUMNS)]
