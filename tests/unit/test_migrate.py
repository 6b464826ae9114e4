"""The migration to the (code, trading_day, seq) key as its own step (``migrate_stores``), run
by the supervisor before any shard starts, so no worker start deadline bounds it; a shard's
open path only checks the schema version."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from msgspec.structs import astuple

from feedmux.client.reader import read_ticks
from feedmux.errors import StoreError
from feedmux.model import Depth, Tick
from feedmux.ops.config import Settings
from feedmux.shard.stores import migrate, sqlite
from feedmux.shard.stores.migrate import migrate_stores
from feedmux.shard.stores.postgres import TICKS_TABLE, partitioned_fix
from feedmux.shard.stores.sqlite import SqliteSink, shard_db_path
from tests.ticks import OLD_SCHEMA

T0 = 1_700_000_000_000_000_000
DAY_NS = 86_400 * 10**9


def _tick(code: str, seq: int, day: int = 0) -> Tick:
    t = T0 + day * DAY_NS + seq * 10**9
    return Tick(code, seq, t, t + 5, 10.0, 100.0, 1000.0, 1)


def _old_store(path: Path, ticks: list[Tick], recent: list[Tick]) -> None:
    """A shard file as an older feedmux left it: keyed (code, seq), user_version 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as old:
        old.execute("PRAGMA journal_mode=WAL")
        for sql in OLD_SCHEMA:
            old.execute(sql)
        values = "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        old.executemany(f"INSERT INTO ticks {values}", [astuple(t) for t in ticks])
        old.executemany(f"INSERT INTO ticks_recent {values}", [astuple(t) for t in recent])
        old.execute(
            "INSERT INTO books VALUES ('600519.SH', 4, ?, ?, '[[10.0,1.0]]', '[]')", (T0, T0)
        )
    old.close()


def _settings(data_dir: Path, *stores: str) -> Settings:
    return Settings(url="ws://127.0.0.1:1/x", token="t", codes=["600519.SH"], shards=2,
                    data_dir=str(data_dir), stores=list(stores))  # fmt: skip


def _version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    return version


def test_migrate_stores_rekeys_every_shard_file_says_so_and_the_store_then_opens_at_once(
    tmp_path: Path,
) -> None:
    day1 = [_tick(c, s) for c in ("600519.SH", "000001.SZ") for s in (1, 2, 3)]
    _old_store(shard_db_path(tmp_path, 0), day1[:5], day1[5:])
    _old_store(shard_db_path(tmp_path, 3), [_tick("AAPL.US", 1)], [])  # an older, larger run
    said: list[str] = []
    migrate_stores(_settings(tmp_path), said.append)
    text = "\n".join(said)
    assert "migrating sqlite://" in text and "shard-0.sqlite" in text and "shard-3.sqlite" in text
    assert "to the (code, trading_day, seq) key: 7 rows" in text  # 6 ticks + 1 book
    assert said[-1].startswith("migrated 2 store files") and " s" in said[-1]
    assert _version(shard_db_path(tmp_path, 0)) == _version(shard_db_path(tmp_path, 3)) == 1
    started = time.monotonic()
    sink = SqliteSink(shard_db_path(tmp_path, 0), merge_rows=1)  # the shard's open: no rework
    assert time.monotonic() - started < 1.0
    day2 = [_tick("600519.SH", s, day=1) for s in (1, 2, 3)]
    assert sink.write_batch(day2) == (3, 0)  # day 2 from seq 1, beside day 1
    _, books = sink.latest()
    sink.close()
    assert books == [Depth("600519.SH", 4, T0, T0, [(10.0, 1.0)], [])]
    df = read_ticks(tmp_path)
    assert sorted(zip(df["code"], df["seq"], strict=True)) == sorted(
        [(t.code, t.seq) for t in [*day1, *day2, _tick("AAPL.US", 1)]]
    )
    again: list[str] = []
    migrate_stores(_settings(tmp_path), again.append)  # nothing left to do: silent
    assert again == []


def test_a_new_or_current_store_needs_no_migration_and_says_nothing(tmp_path: Path) -> None:
    said: list[str] = []
    migrate_stores(_settings(tmp_path / "none"), said.append)  # no store yet: nothing created
    assert not (tmp_path / "none").exists()
    SqliteSink(shard_db_path(tmp_path, 0)).close()
    migrate_stores(_settings(tmp_path), said.append)
    assert said == []


def test_a_shard_opening_an_unmigrated_store_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = shard_db_path(tmp_path, 0)
    _old_store(path, [_tick("600519.SH", 1)], [])
    with pytest.raises(StoreError, match=r"older feedmux.*migrate_stores|feedmux run"):
        SqliteSink(path)
    assert _version(path) == 0  # untouched: nothing half done
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0] == 1
    conn.close()


def test_not_enough_disk_is_a_clear_error_and_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = shard_db_path(tmp_path, 0)
    _old_store(path, [_tick("600519.SH", s) for s in range(1, 200)], [])
    monkeypatch.setattr(migrate, "free_bytes", lambda where: 1000)
    with pytest.raises(StoreError, match=r"needs about [\d.]+ [kMG]?B free.*1000 B free"):
        migrate_stores(_settings(tmp_path), lambda text: None)
    assert _version(path) == 0
    with pytest.raises(StoreError, match="older feedmux"):
        SqliteSink(path)


def test_a_shard_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = shard_db_path(tmp_path, 0)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match=r"cannot migrate .*shard-0.sqlite"):
        migrate_stores(_settings(tmp_path), lambda text: None)


def test_the_sql_for_a_hypertable_rebuilds_it_partitioned_by_trading_day() -> None:
    fix = partitioned_fix(TICKS_TABLE, "a TimescaleDB hypertable partitioned on time_ns")
    assert fix.startswith("feedmux_ticks is a TimescaleDB hypertable partitioned on time_ns")
    steps = fix[fix.index("BEGIN;") :]
    assert steps.index("RENAME TO feedmux_ticks_v0") < steps.index("CREATE TABLE")
    assert "PRIMARY KEY (code, trading_day, seq)" in steps
    assert "create_hypertable('feedmux_ticks', by_range('trading_day', 1))" in steps
    assert "SELECT DISTINCT ON (code, trading_day, seq)" in steps  # the first received kept
    assert "ORDER BY code, trading_day, seq, recv_ns" in steps
    assert steps.index("COMMIT;") < steps.index("DROP TABLE feedmux_ticks_v0")


def test_a_disk_filling_up_during_the_rebuild_rolls_it_back_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = shard_db_path(tmp_path, 0)
    _old_store(path, [_tick("600519.SH", s) for s in range(1, 3000)], [])
    opened = sqlite.open_existing

    def full_soon(where: Path) -> sqlite3.Connection:
        conn = opened(where)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # as a disk with no room left
        return conn

    monkeypatch.setattr(sqlite, "open_existing", full_soon)
    full = r"disk is full: it needs about twice the file.s size free.*rolled back, the store is as"
    with pytest.raises(StoreError, match=full):
        migrate_stores(_settings(tmp_path), lambda text: None)
    monkeypatch.undo()
    assert _version(path) == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0] == 2999
        assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '%v0'").fetchall() == []
    conn.close()
    migrate_stores(_settings(tmp_path), lambda text: None)  # room again: it goes through
    assert _version(path) == 1


def test_an_unreachable_postgresql_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://feedmux:s3cret-pw@127.0.0.1:1/none"
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL") as caught:
        migrate_stores(_settings(tmp_path, url), lambda text: None)
    assert "s3cret-pw" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
