"""A store keeps one bar label: the first run records it; a run that asks for the other is
refused before any shard starts (one minute's bar would otherwise be stored twice), and a run
that does not ask takes the store's."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedmux.errors import StoreError
from feedmux.model import Bar
from feedmux.shard.stores.labels import resolve_bar_label, stored_bar_label
from feedmux.shard.stores.sqlite import SqliteSink
from feedmux.shard.stores.urls import SQLITE, Store


def _store(path: Path) -> Store:
    return Store(SQLITE, str(path))


def test_a_new_store_takes_end_labels_and_records_them(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert resolve_bar_label([store], "") == "end"
    assert resolve_bar_label([store], "end") == "end" == stored_bar_label(tmp_path)
    with pytest.raises(StoreError, match=r"keeps bars labelled by their end .*--bar-label end"):
        resolve_bar_label([store], "start")


def test_a_store_with_bars_from_before_labels_keeps_start_labels(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "ticks" / "shard-0.sqlite")
    sink.write_bars([Bar("600519.SH", 60 * 10**9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1)])
    sink.close()
    store = _store(tmp_path)
    with pytest.raises(StoreError, match="keeps bars labelled by their start"):
        resolve_bar_label([store], "end")
    assert resolve_bar_label([store], "") == "start"  # an upgrade with the defaults runs on


def test_an_empty_label_file_is_no_record_and_a_wrong_one_is_named(tmp_path: Path) -> None:
    store = _store(tmp_path)
    path = tmp_path / "ticks" / "bar-label"
    path.parent.mkdir()
    path.write_text("")  # a write cut short
    assert resolve_bar_label([store], "") == "end"
    path.write_text("middle\n")
    with pytest.raises(StoreError, match=r"bar-label says 'middle', not start or end"):
        resolve_bar_label([store], "")


def test_two_stores_of_different_labels_need_a_choice(tmp_path: Path) -> None:
    first, second = _store(tmp_path / "a"), _store(tmp_path / "b")
    resolve_bar_label([first], "start")
    resolve_bar_label([second], "end")
    with pytest.raises(StoreError, match="label their bars differently"):
        resolve_bar_label([first, second], "")
