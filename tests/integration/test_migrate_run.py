"""`feedmux run` on a store of an older feedmux: migrated before the shards start (so no start
deadline bounds it), said on the console, then the run goes on as usual.

Needs the supervisor to call ``feedmux.shard.stores.migrate.migrate_stores`` before it starts the
workers (without it, the shards refuse the old store and the run fails)."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedmux import read_ticks
from feedmux.shard.stores.sqlite import shard_db_path
from tests.conftest import wait_for
from tests.integration.helpers import feedmux, shards_in, stop
from tests.unit.test_migrate import _old_store, _tick

pytestmark = pytest.mark.integration


def test_a_run_on_an_old_sqlite_store_migrates_it_first_and_keeps_its_ticks(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    old = [_tick("600519.SH", s) for s in (1, 2, 3)]
    _old_store(shard_db_path(data, 0), old[:2], old[2:])
    _old_store(shard_db_path(data, 1), [_tick("000001.SZ", 1)], [])
    run = feedmux("run", "--replay", "--shards", "2", "--codes", "600519,000001",
                  "--replay-rate", "200", "--data-dir", str(data))  # fmt: skip
    try:  # until the run stored new ticks (a fixed --stop-after raced its start-up)
        wait_for(lambda: sum(s.stored for s in shards_in(data / "run")) > 0, 60,
                 "the run to store new ticks")  # fmt: skip
    finally:
        code, output = stop(run)
    assert code == 0, output
    assert "shard-0.sqlite to the (code, trading_day, seq) key: 4 rows" in output, output
    assert "migrated 2 store files in" in output, output
    assert output.index("migrated 2 store files") < output.index("replay server:")  # first
    stored = read_ticks(data)
    kept = {(t.code, t.seq, t.time_ns) for t in [*old, _tick("000001.SZ", 1)]}
    rows = set(zip(stored["code"], stored["seq"], stored["time"].astype("int64"), strict=True))
    assert kept <= rows and len(rows) > len(kept)  # the old ticks, and the run's new ones
