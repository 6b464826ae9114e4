"""A tick's identity end to end: a re-run of the quickstart on the same data directory (the
built-in market re-sends the same seqs) stores nothing twice and builds no bar twice."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from feedmux import read_bars, read_ticks
from feedmux.identity import DAY_NS, EXCHANGE_UTC_OFFSET_NS
from feedmux.simulator.market import a_share_universe
from tests.conftest import scaled
from tests.integration.helpers import feedmux, stop
from tests.integration.test_postgres import _resample

pytestmark = pytest.mark.integration


def _quickstart(tmp_path: Path, data_dir: Path) -> str:
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
    return output


def test_a_rerun_on_the_same_data_dir_stores_no_tick_twice_and_does_not_double_its_bars(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    _quickstart(tmp_path, data_dir)
    first = read_ticks(data_dir)
    assert len(first) > 500
    pd.testing.assert_frame_equal(read_bars(data_dir), _resample(first))
    _quickstart(tmp_path, data_dir)  # the same market again: the same seqs, later times
    ticks = read_ticks(data_dir)
    days = (ticks["time"].astype("int64") + EXCHANGE_UTC_OFFSET_NS) // DAY_NS
    if days.nunique() == 1:  # (both runs on one trading day, as is all but certain)
        assert not ticks.duplicated(["code", "seq"]).any()
    assert len(ticks) >= len(first)
    pd.testing.assert_frame_equal(read_bars(data_dir), _resample(ticks))  # not doubled
