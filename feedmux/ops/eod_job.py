"""The end of day's job (workers/eod.py runs it in its own process, started by
feedmux/ops/eod.py): archive the days that ended, remove the days beyond ``--keep-days``."""

from __future__ import annotations

import shutil
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from feedmux.client.archive import export
from feedmux.client.query import shard_files
from feedmux.errors import FeedmuxError, StoreError
from feedmux.market.day import day_date, day_start_ns
from feedmux.market.eod import first_kept_day
from feedmux.market.sessions import Sessions, main_market, market_day
from feedmux.ops.config import Settings
from feedmux.shard.stores import retention
from feedmux.shard.stores.urls import SQLITE
from feedmux.stats import write_json
from feedmux.stats.eod import JOB_FILE, ArchivedDay, JobResult


def _archived_rows(root: Path, day: int) -> int | None:
    """The ticks a day's archive holds; None when it is not archived whole (``export``
    renames its files into place last: a stopped export leaves only a ``.tmp``)."""
    iso = day_date(day).isoformat()
    ticks = root / "ticks" / f"date={iso}" / "part-0.parquet"
    if not (root / "bars" / f"date={iso}" / "part-0.parquet").is_file():
        return None
    try:
        return int(pq.ParquetFile(ticks).metadata.num_rows)
    except (OSError, pa.ArrowException):  # missing or damaged: export it again
        return None


def run_job(settings: Settings, days: list[int], sessions: Sessions,
            wall_ns: int) -> JobResult:  # fmt: skip
    """Archive ``days`` (and stored days before them not archived whole), then remove what
    ``--keep-days`` leaves out. A day to remove whose store holds more ticks than its archive
    (ticks stored after its export: late ones, or those after an early ``--eod-at``) is
    exported again first. A failure is recorded, never raised; nothing is removed after one."""
    result = JobResult()
    ended = max(days)
    main = main_market(settings.codes)
    keep = settings.keep_days
    first = first_kept_day(sessions, main, ended, keep) if keep else None
    store = settings.sqlite_dir
    files = shard_files(store) if store is not None else []
    archive = Path(settings.eod_export) if settings.eod_export else None
    try:
        stored = set().union(*(retention.stored_days(path) for path in files))
        if archive is not None and store is not None:
            for day in sorted(d for d in stored if d <= ended):
                archived = _archived_rows(archive, day)
                again = first is not None and day < first and archived is not None and (
                    retention.day_rows(files, day) > archived)  # fmt: skip
                if day in days or archived is None or again:
                    done = export(store, day_date(day), archive)
                    iso = day_date(day).isoformat()
                    result.archived.append(ArchivedDay(day=iso, ticks=done.rows, codes=done.codes))
    except StoreError as exc:
        result.error = str(exc)
        return result
    if first is not None:
        _remove(settings, sessions, first, wall_ns, result)
    return result


def _remove(settings: Settings, sessions: Sessions, first: int, wall_ns: int,
            result: JobResult) -> None:  # fmt: skip
    """Days before ``first``: every store's rows, and the journal's folders by their own
    (receipt) days, counted back from today's."""
    main = main_market(settings.codes)
    today = market_day(wall_ns, main)
    first_kept = min(first, first_kept_day(sessions, main, today, settings.keep_days))
    journal = settings.journal_dir
    if journal.is_dir():
        for folder in sorted(journal.iterdir()):
            try:
                day = (date.fromisoformat(folder.name) - date(1970, 1, 1)).days
            except ValueError:
                continue  # not a day's folder
            if day < first_kept:
                shutil.rmtree(folder, ignore_errors=True)
                result.removed.append(folder.name)
    before_ns = day_start_ns(first, main)
    try:
        for store in settings.store_list():
            if store.kind == SQLITE:
                for path in shard_files(Path(store.location)):
                    result.rows_removed += retention.remove_sqlite(path, first, before_ns)
            else:
                result.rows_removed += retention.remove_postgres(store.location, first,
                                                                 before_ns)  # fmt: skip
    except StoreError as exc:
        result.error = f"--keep-days: {exc}"
    result.kept_from = day_date(first).isoformat()


def job_main(settings: Settings, days: list[int], sessions: Sessions) -> int:
    """The job's whole work in its process: the result file (the supervisor says what it
    did), and 0 (1 when it failed)."""
    try:
        result = run_job(settings, days, sessions, time.time_ns())
    except FeedmuxError as exc:
        result = JobResult(error=str(exc))
    write_json(settings.paths.root / JOB_FILE, result)
    return 1 if result.error else 0
