"""The end of each trading day: the supervisor's side (``EndOfDay``) and the job it runs in a
worker process (``run_job``: workers/eod.py).

When the run's data clock passes a day's end (feedmux/market/eod.py), the supervisor writes
``<run_dir>/eod.json``; each shard then closes the day's bars, resets its per-code state and,
once every row it took before is in every store, says so in its stats (``day_done``). Then the
job archives the day (``--eod-export DIR``: ticks and bars as ``feedmux export`` writes them,
and any earlier stored day not archived yet) and removes the days beyond ``--keep-days``: the
journal's day folders and each store's rows. A day is removed only once archived when there is
an archive. Every step is logged and shown in status.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import msgspec

from feedmux.errors import FeedmuxError, StoreError
from feedmux.market.day import day_date, day_start_ns
from feedmux.market.eod import Rollover, first_kept_day
from feedmux.market.sessions import Sessions, main_market
from feedmux.ops.config import Settings
from feedmux.ops.markets import markets_of
from feedmux.shard.stores import retention
from feedmux.shard.stores.urls import SQLITE
from feedmux.stats import RunStats, read_json, write_json
from feedmux.stats.eod import DayEnd, Exported, JobResult
from feedmux.stats.shard import data_clock

_job_result = msgspec.json.Decoder(JobResult)
JOB_FILE = "eod-job.json"


def _archived(root: Path, day: int) -> bool:
    iso = day_date(day).isoformat()
    return all((root / kind / f"date={iso}").is_dir() for kind in ("ticks", "bars"))


def _sqlite_dir(settings: Settings) -> Path | None:
    """The first SQLite store's directory (what ``feedmux export`` reads); None: none."""
    found = [Path(s.location) for s in settings.store_list() if s.kind == SQLITE]
    return found[0] if found else None


def run_job(settings: Settings, days: list[int], sessions: Sessions,
            say: Callable[[str], None]) -> JobResult:  # fmt: skip
    """Archive ``days`` (and stored days before them not archived yet), then remove what
    ``--keep-days`` leaves out. A failure is said and recorded, never raised."""
    from feedmux.client.archive import export  # noqa: PLC0415 (pyarrow only in this job)
    from feedmux.client.query import shard_files  # noqa: PLC0415

    result = JobResult()
    ended = max(days)
    store = _sqlite_dir(settings)
    files = shard_files(store) if store is not None else []
    stored: set[int] = set()
    try:
        for path in files:
            stored |= retention.stored_days(path)
    except StoreError as exc:
        result.error = str(exc)
        return result
    archive = Path(settings.eod_export) if settings.eod_export else None
    if archive is not None and store is not None:
        todo = sorted({d for d in stored if d < ended and not _archived(archive, d)} | set(days))
        for day in todo:
            iso = day_date(day).isoformat()
            if day not in stored:  # e.g. a day every code was suspended: no partition
                say(f"end of day {iso}: no ticks stored, nothing to archive")
                continue
            try:
                done = export(store, date.fromisoformat(iso), archive)
            except StoreError as exc:
                result.error = f"cannot archive {iso}: {exc}"
                say(result.error)
                return result  # nothing is removed after a failed export
            result.exported.append(Exported(day=iso, ticks=done.rows, codes=done.codes))
            say(f"end of day {iso}: archived {done.rows:,} ticks of {done.codes:,} codes and "
                f"their bars in {archive}")  # fmt: skip
    if settings.keep_days:
        _remove(settings, sessions, ended, stored=stored, archive=archive, result=result, say=say)
    return result


def _remove(
    settings: Settings,
    sessions: Sessions,
    ended: int,
    *,
    stored: set[int],
    archive: Path | None,
    result: JobResult,
    say: Callable[[str], None],
) -> None:
    main = main_market(settings.codes)
    first = first_kept_day(sessions, main, ended, settings.keep_days)
    if archive is not None and (missing := [d for d in stored if d < first
                                            and not _archived(archive, d)]):  # fmt: skip
        result.error = (f"--keep-days: {day_date(min(missing))} is not archived in {archive}: "
                        "nothing removed")  # fmt: skip
        say(result.error)
        return
    journal = settings.journal_dir
    old = {d for d in stored if d < first}
    if journal.is_dir():
        for folder in sorted(journal.iterdir()):
            try:
                day = (date.fromisoformat(folder.name) - date(1970, 1, 1)).days
            except ValueError:
                continue  # not a day's folder
            if day < first:
                shutil.rmtree(folder, ignore_errors=True)
                old.add(day)
    try:
        for store in settings.store_list():
            if store.kind == SQLITE:
                for path in (Path(store.location) / "ticks").glob("*.sqlite"):
                    result.rows_removed += retention.remove_sqlite(
                        path, first, day_start_ns(first, main)
                    )
            else:
                result.rows_removed += retention.remove_postgres(
                    store.location, first, day_start_ns(first, main)
                )
    except StoreError as exc:
        result.error = str(exc)
        say(f"--keep-days: {exc}")
    result.removed = [day_date(d).isoformat() for d in sorted(old)]
    if old or result.rows_removed:
        say(f"--keep-days {settings.keep_days}: removed {', '.join(result.removed) or 'no day'}"
            f" ({result.rows_removed:,} stored rows); kept from {day_date(first)}")  # fmt: skip


class EndOfDay:
    """The supervisor's end of day: asked once a second with the workers' stats.

    ``start_job(days)`` starts the job's worker and returns a function that says whether it
    still runs: a process here, a thread or a call in tests."""

    def __init__(self, settings: Settings, sessions: Sessions, say: Callable[[str], None],
                 start_job: Callable[[list[int]], Callable[[], bool]]) -> None:  # fmt: skip
        self.settings = settings
        self.say = say
        self.path = settings.paths.eod
        self.rollover = Rollover(sessions, markets_of(settings.codes),
                                 main_market(settings.codes), settings.eod_at)  # fmt: skip
        self.record = DayEnd()
        self._start_job = start_job
        self._waiting: list[int] = []  # days ended, not yet in every shard's stores
        self._running: Callable[[], bool] | None = None
        self._write()

    @property
    def job_file(self) -> Path:
        return self.settings.paths.root / JOB_FILE

    def _write(self, **changes: object) -> None:
        self.record = msgspec.structs.replace(self.record, changed_ns=time.time_ns(), **changes)
        write_json(self.path, self.record)  # a full disk: the next write tries again

    def tick(self, stats: RunStats, wall_ns: int) -> None:
        shards = [s for s in stats.shards.values() if s.data_ns]
        if shards:
            ended = self.rollover.due(data_clock(shards, wall_ns))
            next_end = self.rollover.next_end_ns() or 0
            if ended is not None:
                self._ended(ended)
            elif next_end != self.record.next_end_ns:
                self._write(next_end_ns=next_end)
        if self._waiting and self._running is None and self._stored(stats, self._waiting[-1]):
            days, self._waiting = self._waiting, []
            if self.settings.eod_export or self.settings.keep_days:
                self.job_file.unlink(missing_ok=True)
                self._running = self._start_job(days)
                self._write(state="exporting")
            else:
                self._write(state="done")
        if self._running is not None and not self._running():
            self._running = None
            self._finished()

    def _ended(self, day: int) -> None:
        end = self.rollover.end_ns(day) or 0
        self._waiting.append(day)
        self._write(day=day, at_ns=end, state="storing",
                    next_end_ns=self.rollover.next_end_ns() or 0)  # fmt: skip
        then = " and archive it" if self.settings.eod_export else ""
        self.say(f"trading day {day_date(day)} ended: the shards close its bars and reset for "
                 f"the next session; once they stored it{then}")  # fmt: skip

    def _stored(self, stats: RunStats, day: int) -> bool:
        """Every shard took the end of ``day`` and has its rows in every store."""
        shards = [stats.shards.get(i) for i in range(self.settings.shards)]
        return all(s is not None and s.day_done >= day for s in shards)

    def _finished(self) -> None:
        result = read_json(self.job_file, _job_result)
        if result is None:
            result = JobResult(error="the end-of-day job stopped without a result (see the log)")
            self.say(result.error)
        for e in result.exported:
            self.say(f"end of day {e.day}: archived {e.ticks:,} ticks of {e.codes:,} codes and "
                     f"their bars in {self.settings.eod_export}")  # fmt: skip
        if result.removed or result.rows_removed:
            self.say(f"--keep-days {self.settings.keep_days}: removed "
                     f"{', '.join(result.removed) or 'no day folder'} "
                     f"({result.rows_removed:,} stored rows)")  # fmt: skip
        if result.error:
            self.say(f"end of day failed: {result.error}")
        archived = [*self.record.archived, *(e.day for e in result.exported)]
        ticks = result.exported[-1].ticks if result.exported else self.record.ticks
        removed = [*self.record.removed, *result.removed]
        self._write(
            state="failed" if result.error else "done",
            archived=archived,
            ticks=ticks,
            removed=removed,
            error=result.error,
        )


def job_main(settings: Settings, days: list[int], sessions: Sessions,
             say: Callable[[str], None]) -> int:  # fmt: skip
    """The job's whole work in its process: the result file, and 0 (1 when it failed)."""
    try:
        result = run_job(settings, days, sessions, say)
    except FeedmuxError as exc:
        result = JobResult(error=str(exc))
        say(result.error)
    write_json(settings.paths.root / JOB_FILE, result)
    return 1 if result.error else 0
