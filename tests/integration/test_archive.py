"""`feedmux export`: a trading day of every shard as a hive-partitioned Parquet (or CSV)
dataset, sorted by code and time, readable as is by pyarrow and DuckDB, and by read_ticks."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from feedmux import read_ticks
from feedmux.model import Tick
from feedmux.shard.stores.sqlite import SqliteSink, shard_db_path

pytestmark = pytest.mark.integration

# The trading day 2026-11-24 is [2026-11-23 16:00 UTC, 2026-11-24 16:00 UTC) in Shanghai, and
# [2026-11-24 05:00 UTC, 2026-11-25 05:00 UTC) in New York.
DAY_START_NS = int(pd.Timestamp("2026-11-23 16:00", tz="UTC").value)
US_DAY_START_NS = int(pd.Timestamp("2026-11-24 05:00", tz="UTC").value)
DAY_NS = 86_400 * 10**9


def _tick(code: str, seq: int, at_ns: int) -> Tick:
    return Tick(code, seq, at_ns, at_ns + 1234, 10.0 + seq, 100.0 * seq, 1000.0 * seq, seq % 3)


def _store(data_dir: Path) -> list[Tick]:
    """Two shards' files; some ticks unmerged, some outside the day. Returns the day's ticks."""
    inside, outside = [], []
    for shard, codes in enumerate((["600519.SH", "000001.SZ"], ["AAPL.US", "300750.SZ"])):
        sink = SqliteSink(shard_db_path(data_dir, shard), merge_rows=7)
        for code in codes:
            start = US_DAY_START_NS if code.endswith(".US") else DAY_START_NS
            day = [_tick(code, s, start + s * 3_600 * 10**9) for s in range(1, 10)]
            edges = [_tick(code, 0, start - 1), _tick(code, 99, start + DAY_NS)]
            sink.write_batch(day + edges)
            inside += day
            outside += edges
        sink._conn.close()  # leave rows unmerged: the export must read them too
    assert outside
    return inside


def _export(data_dir: Path, out: Path, *args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "feedmux", "export", "--date", "2026-11-24",
                          "--data-dir", str(data_dir), "--out", str(out), *args],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_a_day_exports_sorted_zstd_parquet_that_pyarrow_duckdb_and_read_ticks_agree_on(
    tmp_path: Path,
) -> None:
    day = _store(tmp_path / "data")
    out = tmp_path / "archive"
    printed = _export(tmp_path / "data", out)
    part = out / "ticks" / "date=2026-11-24" / "part-0.parquet"
    assert f"exported {len(day)} ticks of 4 codes to {part}" in printed
    table = pq.read_table(part)
    keys = list(zip(table["code"].to_pylist(), table["time"].to_pylist(), strict=True))
    assert keys == sorted(keys) and table.num_rows == len(day)
    assert pq.ParquetFile(part).metadata.row_group(0).column(0).compression == "ZSTD"
    counts = duckdb.sql(
        f"SELECT date, count(*), min(price) FROM read_parquet('{out}/ticks/*/*.parquet', "
        "hive_partitioning = true) GROUP BY date"
    ).fetchall()  # fmt: skip
    assert counts == [(date(2026, 11, 24), len(day), 11.0)]  # DuckDB types the partition
    from_archive = read_ticks(out)
    stored = read_ticks(tmp_path / "data")  # each code's trading day: New York's for AAPL.US
    from_sqlite = stored[stored["seq"].between(1, 9)].reset_index(drop=True)
    pd.testing.assert_frame_equal(from_archive, from_sqlite)
    some = read_ticks(out, codes=["600519"], start=pd.Timestamp(DAY_START_NS + 5 * 3_600 * 10**9,
                                                                tz="UTC"))  # fmt: skip
    assert list(some["seq"]) == [5, 6, 7, 8, 9]


def test_with_a_time_zone_the_day_is_that_calendar_day_for_every_code(tmp_path: Path) -> None:
    _store(tmp_path / "data")
    out = tmp_path / "archive"
    _export(tmp_path / "data", out, "--tz", "Asia/Shanghai")
    got = read_ticks(out)
    assert got["time"].min() >= pd.Timestamp(DAY_START_NS, tz="UTC")
    assert got["time"].max() < pd.Timestamp(DAY_START_NS + DAY_NS, tz="UTC")
    assert set(got["code"]) == {"600519.SH", "000001.SZ", "AAPL.US", "300750.SZ"}


def test_an_end_labelled_bar_is_in_the_day_of_its_first_minute(tmp_path: Path) -> None:
    from feedmux import read_bars  # noqa: PLC0415
    from feedmux.model import Bar  # noqa: PLC0415
    from feedmux.shard.stores.labels import resolve_bar_label  # noqa: PLC0415
    from feedmux.shard.stores.urls import SQLITE, Store  # noqa: PLC0415

    _store(tmp_path / "data")
    resolve_bar_label([Store(SQLITE, str(tmp_path / "data"))], "end")
    sink = SqliteSink(shard_db_path(tmp_path / "data", 0))
    midnight = DAY_START_NS + DAY_NS  # 23:59-24:00 in Shanghai, labelled by its end
    sink.write_bars([Bar("600519.SH", midnight, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1)])
    sink.close()
    for args in ((), ("--tz", "Asia/Shanghai")):
        out = tmp_path / f"archive{len(args)}"
        _export(tmp_path / "data", out, *args)
        assert read_bars(out)["minute"].astype("int64").tolist() == [midnight]


def test_csv_export_reads_back_the_same(tmp_path: Path) -> None:
    _store(tmp_path / "data")
    _export(tmp_path / "data", tmp_path / "csv", "--format", "csv")
    _export(tmp_path / "data", tmp_path / "parquet")
    pd.testing.assert_frame_equal(read_ticks(tmp_path / "csv"), read_ticks(tmp_path / "parquet"))


def test_exporting_without_a_store_is_a_clear_error(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "feedmux", "export", "--date", "2026-11-24",
                          "--data-dir", str(tmp_path / "nothing")],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert run.returncode == 2 and "no SQLite store in" in run.stderr
