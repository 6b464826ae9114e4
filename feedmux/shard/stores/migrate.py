"""Bringing a run's stores to the current schema, as a step of its own before any shard starts.

A shard has ``feedmux.ops.children.READY_TIMEOUT_S`` to come up; re-keying a store of tens of
millions of rows takes longer, and a shard killed mid-migration rolls it back, so every start
would fail the same way. The supervisor therefore calls ``migrate_stores`` first, with no
deadline, and a shard's open path only checks the schema version (it refuses an old store).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from feedmux.errors import StoreError
from feedmux.shard.stores.urls import SQLITE, Store

if TYPE_CHECKING:
    from feedmux.ops.config import Settings

KEY = "the (code, trading_day, seq) key"
# The SQLite rebuild writes the new tables beside the old ones in one WAL transaction, and
# the checkpoint then copies them into the file: about twice the file's size, transiently.
SPACE_FACTOR = 2
# Measured: 1M rows over 680 codes re-keyed in 1.4 s (a 48 MB file; 2 shared cores).
ROWS_PER_S = 700_000


def migrate_stores(settings: Settings, say: Callable[[str], None]) -> None:
    """Migrate every store of the run that an older feedmux wrote; says what it does, and
    nothing when there is nothing to do. Raises StoreError (nothing half done) on failure."""
    for store in settings.store_list():
        migrate_store(store, say)


def migrate_store(store: Store, say: Callable[[str], None]) -> None:
    if store.kind == SQLITE:
        _migrate_sqlite(store, say)
    else:
        from feedmux.shard.stores import postgres  # noqa: PLC0415 (psycopg only when asked for)

        postgres.migrate(store.location, say)


def free_bytes(where: Path) -> int:
    """Free space on the file system holding ``where`` (a seam for the tests)."""
    return shutil.disk_usage(where).free


def _migrate_sqlite(store: Store, say: Callable[[str], None]) -> None:
    from feedmux.shard.stores import sqlite  # noqa: PLC0415 (keeps this module light to import)

    files = sorted((Path(store.location) / sqlite.TICKS_DIR).glob("shard-*.sqlite"))
    started = time.monotonic()
    done = 0
    for path in files:
        rows = sqlite.old_rows(path)
        if rows is None:
            continue
        size = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"))
                   if p.exists())  # fmt: skip
        need, free = SPACE_FACTOR * size, free_bytes(path.parent)
        if free < need:
            raise StoreError(f"cannot migrate {path} to {KEY}: it needs about {_size(need)} "
                             f"free on its disk, there is {_size(free)} free; make room and "
                             "start again (this file is unchanged)")  # fmt: skip
        say(f"migrating {store.shown}/{sqlite.TICKS_DIR}/{path.name} to {KEY}: {rows:,} rows, "
            f"about {max(1, round(rows / ROWS_PER_S))} s; the shards start after it")  # fmt: skip
        sqlite.migrate_file(path)
        done += 1
    if done:
        say(f"migrated {done} store files in {time.monotonic() - started:.1f} s")


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
