"""The PostgreSQL store against the real server: idempotent batches, a connection that dies
mid-run, and a whole run into SQLite and PostgreSQL at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pandas as pd
import psycopg
import pytest

from feedmux import read_bars, read_ticks
from feedmux.client.reader import BAR_COLUMNS
from feedmux.errors import StoreError
from feedmux.model import Depth, Tick
from feedmux.passwords import mask_passwords
from feedmux.shard.stores.migrate import migrate_store
from feedmux.shard.stores.postgres import APPLICATION_NAME, PostgresSink
from feedmux.shard.stores.retry import RetryingWriter
from feedmux.shard.stores.sqlite import SqliteSink, shard_db_path
from feedmux.shard.stores.urls import POSTGRES, Store
from feedmux.stats import read_stats
from tests.conftest import wait_for
from tests.integration.helpers import (
    end_feed,
    feedmux,
    replay_report,
    sent_ticks,
    start_sampled_run,
    stop,
)
from tests.services import postgres_schema
from tests.ticks import assert_both_days_kept, two_days

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_schema()


def _tick(code: str, seq: int) -> Tick:
    return Tick(code, seq, 1_700_000_000_000_000_000 + seq, 1_700_000_000_000_000_001 + seq,
                10.0 + seq / 100, 100.0 * seq, 1000.0 * seq, seq % 3)  # fmt: skip


def _rows(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT code, seq, time_ns, recv_ns, price, volume, turnover, "
            "direction FROM feedmux_ticks ORDER BY code, seq"
        ).fetchall()


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


def test_a_vendor_restarting_its_seqs_each_day_keeps_both_days_and_a_corrected_time_is_a_duplicate(
    pg_url: str, tmp_path: Path
) -> None:
    ticks = two_days()
    sink = PostgresSink(pg_url)
    assert sink.write_batch(ticks) == (6, 0)
    corrected = msgspec.structs.replace(ticks[4], time_ns=ticks[4].time_ns + 1)  # a re-send
    assert sink.write_batch([corrected]) == (0, 1)  # the same tick by its identity
    df = assert_both_days_kept(sink, pg_url, ticks)
    sqlite = SqliteSink(shard_db_path(tmp_path, 0), merge_rows=1)  # the same in SQLite
    assert sqlite.write_batch([*ticks, corrected]) == (6, 1)
    sqlite.close()
    pd.testing.assert_frame_equal(read_ticks(tmp_path), df)


def test_a_table_keyed_by_an_older_feedmux_is_migrated_keeping_its_rows(pg_url: str) -> None:
    ticks = two_days()[:3]
    with psycopg.connect(pg_url) as conn:  # the schema feedmux wrote before the identity
        conn.execute("""CREATE TABLE feedmux_ticks (code text NOT NULL, seq bigint NOT NULL,
            time_ns bigint NOT NULL, recv_ns bigint NOT NULL, price double precision NOT NULL,
            volume double precision NOT NULL, turnover double precision NOT NULL,
            direction smallint NOT NULL, PRIMARY KEY (code, seq, time_ns))""")
        conn.execute("""CREATE TABLE feedmux_books (code text NOT NULL, seq bigint NOT NULL,
            time_ns bigint NOT NULL, recv_ns bigint NOT NULL, bids jsonb NOT NULL,
            asks jsonb NOT NULL, PRIMARY KEY (code, seq, time_ns))""")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO feedmux_ticks VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [msgspec.structs.astuple(t) for t in ticks],
            )
            second_copy = msgspec.structs.replace(ticks[1], time_ns=ticks[1].time_ns + 1,
                                                  recv_ns=ticks[1].recv_ns + 10)  # fmt: skip
            cur.execute(
                "INSERT INTO feedmux_ticks VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                msgspec.structs.astuple(second_copy),
            )
    migrate_store(Store(POSTGRES, pg_url), lambda text: None)  # before the shards start
    sink = PostgresSink(pg_url)
    assert sink.write_batch(two_days()[3:]) == (3, 0)  # day 2 from seq 1
    sink.close()
    stored = sorted((Tick(*r) for r in _rows(pg_url)), key=lambda t: t.time_ns)
    assert stored == two_days()  # the first copy kept
    PostgresSink(pg_url).close()  # already migrated: opens as is


def test_reading_a_database_without_a_feedmux_store_is_an_error_an_empty_store_is_not(
    pg_url: str,
) -> None:
    with pytest.raises(StoreError, match="no feedmux store in PostgreSQL"):
        read_ticks(pg_url)
    PostgresSink(pg_url).close()  # creates the tables
    assert read_ticks(pg_url).empty and read_bars(pg_url).empty


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
    assert mask_passwords(url) == "postgresql://feedmux:***@127.0.0.1:1/none"


def test_a_run_into_sqlite_and_postgres_loses_nothing_when_postgres_drops_us(
    tmp_path: Path, pg_url: str
) -> None:
    replay, report, run, run_dir, data_dir, _ = start_sampled_run(
        tmp_path, 3000, 2, "--store", "sqlite://", "--store", pg_url)  # fmt: skip

    def stored() -> int:
        return sum(s.stored for s in read_stats(run_dir / "stats").shards.values())

    try:
        wait_for(lambda: stored() > 3000, 60, "ticks in both stores")
        assert _kill_connections(pg_url) == 6  # 2 shards x (ticks, books, bars)
        sent_at_kill = replay_report(report).ticks_sent
        wait_for(lambda: replay_report(report).ticks_sent > sent_at_kill + 3000, 30,
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
    # The round trip: SQLite, PostgreSQL and a Parquet export read back as identical DataFrames.
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


def test_postgresql_computes_the_same_trading_day_as_python(pg_url: str) -> None:
    """``trading_day_sql`` (the migration's key) in PostgreSQL, across New York's DST changes."""
    from feedmux.market.day import trading_day, trading_day_sql  # noqa: PLC0415

    start = int(pd.Timestamp("2026-03-07", tz="UTC").value)
    rows = [(code, start + h * 1_800 * 10**9) for code in ("AAPL.US", "700.HK", "600519.SH")
            for h in range(0, 2 * 24 * 270, 7)]  # fmt: skip
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TEMP TABLE t (code text, time_ns bigint, n serial)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO t (code, time_ns) VALUES (%s, %s)", rows)
        got = [d for (d,) in conn.execute(f"SELECT {trading_day_sql()} FROM t ORDER BY n")]
    assert got == [trading_day(t, code) for code, t in rows]


def test_a_postgres_store_records_its_bar_label(pg_url: str) -> None:
    from feedmux.shard.stores.labels import resolve_bar_label  # noqa: PLC0415
    from feedmux.shard.stores.urls import Store  # noqa: PLC0415

    store = Store("postgresql", pg_url)
    assert resolve_bar_label([store], "") == "end"
    assert resolve_bar_label([store], "end") == "end"
    with pytest.raises(StoreError, match="keeps bars labelled by their end"):
        resolve_bar_label([store], "start")
