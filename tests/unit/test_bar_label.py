"""A store keeps one bar label: the first run records it, a run asking for the other is
refused before any shard starts (one minute's bar would otherwise be stored twice)."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedmux.errors import StoreError
from feedmux.model import Bar
from feedmux.shard.stores.migrate import check_bar_label
from feedmux.shard.stores.sqlite import SqliteSink
from feedmux.shard.stores.urls import SQLITE, Store


def test_a_new_sqlite_store_records_the_first_run_s_label(tmp_path: Path) -> None:
    store = Store(SQLITE, str(tmp_path))
    check_bar_label(store, "end")
    check_bar_label(store, "end")  # the same label again: fine
    with pytest.raises(StoreError, match=r"keeps bars labelled by their end .*--bar-label end"):
        check_bar_label(store, "start")


def test_a_store_with_bars_from_before_labels_keeps_start_labels(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "ticks" / "shard-0.sqlite")
    sink.write_bars([Bar("600519.SH", 60 * 10**9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1)])
    sink.close()
    store = Store(SQLITE, str(tmp_path))
    with pytest.raises(StoreError, match="keeps bars labelled by their start"):
        check_bar_label(store, "end")
    check_bar_label(store, "start")
