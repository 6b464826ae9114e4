"""What --store and export say and do when given a path: no silent empty results, no files in
a place the user did not name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from feedmux import read_ticks
from feedmux.model import Tick
from feedmux.shard.stores.sqlite import SqliteSink, shard_db_path
from tests.conftest import scaled, wait_for
from tests.integration.helpers import feedmux, shards_in, stop

pytestmark = pytest.mark.integration


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedmux", *args], capture_output=True,
                          text=True, check=False, cwd=cwd, timeout=scaled(60))  # fmt: skip


def test_export_of_a_day_without_ticks_fails_and_writes_no_empty_partition(
    tmp_path: Path,
) -> None:
    at = int(pd.Timestamp("2026-11-24 02:00", tz="UTC").value)  # 10:00 in Shanghai
    sink = SqliteSink(shard_db_path(tmp_path / "data", 0))
    sink.write_batch([Tick("600519.SH", 1, at, at, 10.0, 100.0, 1000.0, 1)])
    sink.close()
    out = tmp_path / "archive"
    done = _cli("export", "--date", "2026-11-25", "--data-dir", str(tmp_path / "data"),
                "--out", str(out))  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "feedmux export: error: no ticks on 2026-11-25 (the trading day) in" in done.stderr
    assert not out.exists()  # no date=2026-11-25 partition to read as "a day without trades"
    assert _cli("export", "--date", "2026-11-24", "--data-dir", str(tmp_path / "data"),
                "--out", str(out)).returncode == 0  # fmt: skip


def test_store_mysql_is_refused_naming_the_scheme_and_the_accepted_ones(tmp_path: Path) -> None:
    done = _cli("run", "--replay", "--codes", "600519", "--data-dir", str(tmp_path / "data"),
                "--store", "mysql://feedmux:s3cret@db/market")  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the scheme 'mysql' is not supported" in done.stderr
    assert "sqlite://" in done.stderr and "postgresql://" in done.stderr
    assert "s3cret" not in done.stdout + done.stderr


def test_store_sqlite_with_three_slashes_is_an_absolute_path(tmp_path: Path) -> None:
    cwd, target = tmp_path / "cwd", tmp_path / "abs" / "store"
    cwd.mkdir()
    run = feedmux("run", "--replay", "--shards", "2", "--codes", "600519,000001",
                  "--replay-rate", "200", "--data-dir", str(tmp_path / "data"),
                  "--store", f"sqlite://{target}", cwd=cwd)  # fmt: skip
    try:  # until it stored ticks (a fixed --stop-after could race its start-up)
        wait_for(lambda: sum(s.stored for s in shards_in(tmp_path / "data" / "run")) > 0, 60,
                 "the run to store ticks")  # fmt: skip
    finally:
        code, output = stop(run)
    assert code == 0, output
    assert sorted(p.name for p in (target / "ticks").iterdir() if p.suffix == ".sqlite") == [
        "shard-0.sqlite", "shard-1.sqlite"]  # fmt: skip
    read_ticks(target)  # a store there, read without error
    assert list(cwd.iterdir()) == []  # nothing written relative to the working directory
    assert f"shard workers up; store: {target};" in output  # the store written, said at start
    assert f"read them with feedmux.read_ticks('{target}')" in output  # and at the end
