"""A tick's identity end to end: the same feed run again into the same data directory stores
nothing twice and builds no bar twice."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from feedmux import read_bars, read_ticks
from feedmux.client import archive
from feedmux.market.day import trading_days
from feedmux.model import Tick
from feedmux.shard.stores.sqlite import SqliteSink, shard_db_path
from feedmux.simulator.market import a_share_universe
from tests.conftest import scaled, wait_for
from tests.integration.helpers import feedmux, receiver_in, replay_report, start_replay, stop
from tests.integration.test_postgres import _resample

pytestmark = pytest.mark.integration


def _quickstart(tmp_path: Path, data_dir: Path) -> Path:
    symbols = tmp_path / "symbols.txt"
    symbols.write_text(" ".join(a_share_universe()[::400]))
    run = feedmux("run", "--replay", "--shards", "2", "--symbols-file", str(symbols),
                  "--replay-rate", "400", "--replay-duration", "3", "--stop-after", "5",
                  "--data-dir", str(data_dir))  # fmt: skip
    try:
        output, _ = run.communicate(timeout=scaled(60))  # --stop-after ends it by itself
    finally:
        code, rest = stop(run)
    assert code == 0, output + rest
    return symbols


def test_a_rerun_on_the_same_data_dir_stores_no_tick_twice_and_does_not_double_its_bars(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    symbols = _quickstart(tmp_path, data_dir)
    first = read_ticks(data_dir)
    assert len(first) > 100
    pd.testing.assert_frame_equal(read_bars(data_dir), _resample(first))
    # The same feed again, into the same data dir: its journal served back, every tick a
    # re-send (the same seqs; the built-in market itself numbers a new run anew).
    captured = shutil.copytree(data_dir / "journal", tmp_path / "captured")
    replay, report, url = start_replay(tmp_path, "--journal", str(captured), "--speed", "max")
    run = feedmux("run", "--url", url, "--symbols-file", str(symbols), "--shards", "2",
                  "--data-dir", str(data_dir))  # fmt: skip
    try:
        wait_for(lambda: replay_report(report).feed == "done", 60, "the journal to be served")
        wait_for(lambda: receiver_in(data_dir / "run").ticks == len(first), 30,
                 "every re-sent tick to be received")  # fmt: skip
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    ticks = read_ticks(data_dir)
    key = ["code", "day", "seq"]  # the identity
    first_k, ticks_k = (f.assign(day=trading_days(f["code"], f["time"].astype("int64").to_numpy()))
                        for f in (first, ticks))  # fmt: skip
    assert not ticks_k.duplicated(key).any()
    pd.testing.assert_frame_equal(ticks_k.reset_index(drop=True), first_k.reset_index(drop=True))
    pd.testing.assert_frame_equal(read_bars(data_dir), _resample(ticks))  # not doubled


def test_an_export_keeps_two_trading_days_numbered_alike_and_one_copy_of_each_tick(
    tmp_path: Path,
) -> None:
    # 2026-11-24 in UTC spans two Shanghai trading days, each numbered from 1.
    evening = int(pd.Timestamp("2026-11-24 10:00", tz="UTC").value)  # 18:00 in Shanghai
    night = int(pd.Timestamp("2026-11-24 17:00", tz="UTC").value)  # 01:00 the next day
    ticks = [Tick("600519.SH", s, at + s, at + s, 10.0, 1.0, 10.0, 1)
             for at in (evening, night) for s in (1, 2)]  # fmt: skip
    for shard in (0, 1):  # both shards hold them (the shard count changed between runs)
        sink = SqliteSink(shard_db_path(tmp_path / "data", shard))
        sink.write_batch(ticks)
        sink.close()
    done = archive.export(tmp_path / "data", date(2026, 11, 24), tmp_path / "out", tz="UTC")
    assert done.rows == 4
    exported = read_ticks(tmp_path / "out")
    assert list(exported["time"].astype("int64")) == [t.time_ns for t in ticks]
