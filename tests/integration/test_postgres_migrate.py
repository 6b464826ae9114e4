"""PostgreSQL tables of an older feedmux (keyed (code, seq, time_ns)) migrated by
``migrate_stores`` before the shards start; partitioned ones refused with the SQL to run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest

from feedmux.errors import StoreError
from feedmux.model import Tick
from feedmux.ops.config import Settings
from feedmux.shard.stores.migrate import migrate_stores
from feedmux.shard.stores.postgres import (
    BOOKS_TABLE,
    TICKS_TABLE,
    PostgresSink,
    partitioned_fix_sql,
)
from tests.services import postgres_schema

pytestmark = pytest.mark.integration
T0 = 1_700_000_000_000_000_000
DAY_NS = 86_400 * 10**9
OLD_TICKS = """CREATE TABLE feedmux_ticks (code text NOT NULL, seq bigint NOT NULL,
    time_ns bigint NOT NULL, recv_ns bigint NOT NULL, price double precision NOT NULL,
    volume double precision NOT NULL, turnover double precision NOT NULL,
    direction smallint NOT NULL, PRIMARY KEY (code, seq, time_ns)){partition}"""
OLD_BOOKS = """CREATE TABLE feedmux_books (code text NOT NULL, seq bigint NOT NULL,
    time_ns bigint NOT NULL, recv_ns bigint NOT NULL, bids jsonb NOT NULL,
    asks jsonb NOT NULL, PRIMARY KEY (code, seq, time_ns))"""


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_schema()


def _tick(seq: int, day: int = 0, late_ns: int = 0) -> Tick:
    t = T0 + day * DAY_NS + seq * 10**9
    return Tick("600519.SH", seq, t + late_ns, t + 5 + late_ns, 10.0 + seq, 100.0, 1000.0, 1)


def _old_tables(url: str, partition: str = "") -> None:
    """The schema an older feedmux wrote, with day 1 and a second copy of seq 2 (its time
    corrected by the vendor, received later): one tick by the identity."""
    with psycopg.connect(url) as conn:
        conn.execute(OLD_TICKS.format(partition=partition))
        if partition:
            conn.execute("CREATE TABLE feedmux_ticks_all PARTITION OF feedmux_ticks DEFAULT")
        conn.execute(OLD_BOOKS)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO feedmux_ticks VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                            [msgspec.structs.astuple(t) for t in
                             (_tick(1), _tick(2), _tick(3), _tick(2, late_ns=1))])  # fmt: skip


def _settings(url: str, tmp_path: Path) -> Settings:
    return Settings(url="ws://127.0.0.1:1/x", token="t", codes=["600519.SH"], shards=2,
                    data_dir=str(tmp_path), stores=[url])  # fmt: skip


def _stored(url: str) -> list[Tick]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT code, seq, time_ns, recv_ns, price, volume, turnover, "
                            "direction FROM feedmux_ticks ORDER BY time_ns").fetchall()  # fmt: skip
    return [Tick(*row) for row in rows]


def test_an_old_table_is_refused_by_a_shard_and_migrated_by_migrate_stores(
    pg_url: str, tmp_path: Path
) -> None:
    _old_tables(pg_url)
    with pytest.raises(StoreError, match=r"older feedmux.*(migrate_stores|feedmux run)"):
        PostgresSink(pg_url)  # a shard's open: no migration inside its start deadline
    said: list[str] = []
    migrate_stores(_settings(pg_url, tmp_path), said.append)
    text = "\n".join(said)
    assert f"{TICKS_TABLE} to the (code, trading_day, seq) key: 4 rows" in text
    assert f"{BOOKS_TABLE} to the (code, trading_day, seq) key: 0 rows" in text
    assert "1 rows were second copies of a tick" in text
    assert said[-1].startswith("migrated 2 PostgreSQL tables") and " s" in said[-1]
    sink = PostgresSink(pg_url)
    assert sink.write_batch([_tick(s, day=1) for s in (1, 2, 3)]) == (3, 0)  # day 2 from 1
    sink.close()
    assert _stored(pg_url) == [_tick(s, day) for day in (0, 1) for s in (1, 2, 3)]
    again: list[str] = []
    migrate_stores(_settings(pg_url, tmp_path), again.append)  # nothing left to do
    assert again == []


def test_a_table_partitioned_on_time_ns_is_refused_with_the_sql_that_rebuilds_it(
    pg_url: str, tmp_path: Path
) -> None:
    _old_tables(pg_url, partition=" PARTITION BY RANGE (time_ns)")
    with pytest.raises(StoreError) as caught:
        migrate_stores(_settings(pg_url, tmp_path), lambda text: None)
    message = str(caught.value)
    assert "feedmux_ticks is a table partitioned on time_ns" in message
    assert "PARTITION BY RANGE (trading_day)" in message
    with psycopg.connect(pg_url) as conn:  # nothing changed
        assert conn.execute("SELECT count(*) FROM feedmux_ticks").fetchone() == (4,)
        for statement in partitioned_fix_sql(TICKS_TABLE, hypertable=False):
            conn.execute(statement)  # the operator runs what the message says
    migrate_stores(_settings(pg_url, tmp_path), lambda text: None)  # then the books table
    PostgresSink(pg_url).close()
    assert _stored(pg_url) == [_tick(s) for s in (1, 2, 3)]  # the first copy of seq 2 kept


def test_the_hypertable_sql_runs_on_postgresql_but_for_create_hypertable(pg_url: str) -> None:
    """TimescaleDB is not on this machine: every other statement of its fix is checked here."""
    _old_tables(pg_url)
    with psycopg.connect(pg_url) as conn:
        for statement in partitioned_fix_sql(TICKS_TABLE, hypertable=True):
            if "create_hypertable" not in statement:
                conn.execute(statement)
    assert _stored(pg_url) == [_tick(s) for s in (1, 2, 3)]
