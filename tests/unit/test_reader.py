"""read_ticks / read_bars never answer a wrong path with an empty frame."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedmux.client.reader import BAR_COLUMNS, read_bars, read_books, read_ticks
from feedmux.errors import StoreError
from feedmux.shard.stores.sqlite import SqliteSink, shard_db_path


@pytest.mark.parametrize("read", [read_ticks, read_bars, read_books])
def test_a_path_that_does_not_exist_is_an_error_naming_it(tmp_path: Path, read: object) -> None:
    missing = tmp_path / "feedmux-dta"
    with pytest.raises(StoreError, match=f"{missing}.*does not exist"):
        read(missing)  # type: ignore[operator]


@pytest.mark.parametrize("read", [read_ticks, read_bars])
def test_a_directory_without_a_store_is_an_error_naming_it(tmp_path: Path, read: object) -> None:
    (tmp_path / "notes.txt").write_text("not a store")
    with pytest.raises(StoreError, match=f"no feedmux store at {tmp_path}"):
        read(tmp_path)  # type: ignore[operator]


def test_an_existing_empty_store_reads_as_empty_frames_with_their_columns(tmp_path: Path) -> None:
    SqliteSink(shard_db_path(tmp_path, 0)).close()
    ticks, bars = read_ticks(tmp_path), read_bars(tmp_path)
    assert ticks.empty and list(ticks.columns)[:3] == ["code", "seq", "time"]
    assert bars.empty and tuple(bars.columns) == BAR_COLUMNS
