"""The end of each trading day, the supervisor's side (``EndOfDay``).

When the run's data clock passes a day's end (feedmux/market/eod.py), the supervisor writes
``<run_dir>/eod.json``; each shard then closes the day's bars, resets its per-code state and,
once every row it took before is in every store, says so in its stats (``day_done``). Then the
job (feedmux/ops/eod_job.py, in its own process: workers/eod.py) archives the day
(``--eod-export DIR``) and removes the days beyond ``--keep-days``. Every step is said, logged
and shown in status.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from feedmux.errors import FeedmuxError
from feedmux.market.day import day_date
from feedmux.market.eod import Rollover
from feedmux.market.sessions import Phase, Sessions, main_market, market_day
from feedmux.ops.config import Settings
from feedmux.ops.markets import markets_of
from feedmux.stats import RunStats, read_json, write_json
from feedmux.stats.eod import JOB_FILE, DayEnd, JobResult
from feedmux.stats.shard import data_clock

_job_result = msgspec.json.Decoder(JobResult)


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

        if settings.eod_at and (late := self._later_than_eod_at(sessions)):
            say(f"--eod-at {settings.eod_at} ends each day before {late}: ticks stored after "
                "the export are archived when the day is exported again before --keep-days "
                "removes it")  # fmt: skip

    def _later_than_eod_at(self, sessions: Sessions) -> str:
        """The sessions of a recent trading day that end after ``--eod-at`` ("": none)."""
        rollover = self.rollover
        day = market_day(time.time_ns(), rollover.main)
        for back in range(10):  # the latest trading day of the run's markets
            if (end := rollover.end_ns(day - back)) is not None:
                day -= back
                break
        else:
            return ""
        late = [f"{m} {s.phase.value.replace('_', ' ')}" for m in rollover.markets
                for s in sessions.day(m, day)
                if s.phase not in (Phase.CLOSED, Phase.HOLIDAY) and s.end_ns > end]  # fmt: skip
        return ", ".join(late)

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
                try:
                    self._running = self._start_job(days)
                except (FeedmuxError, OSError) as exc:  # the feed goes on; the next end of
                    # day's job catches this one's days up
                    self._write(state="failed", error=f"the end-of-day job did not start: {exc}")
                    self.say(f"end of day failed: {self.record.error}")
                    return
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
        for day in result.archived:
            self.say(f"end of day {day.day}: archived {day.ticks:,} ticks of {day.codes:,} codes "
                     f"and their bars in {self.settings.eod_export}")  # fmt: skip
        if result.kept_from:
            folders = f"journal days {', '.join(result.removed)}; " if result.removed else ""
            self.say(f"--keep-days {self.settings.keep_days}: removed {folders}"
                     f"{result.rows_removed:,} stored rows before {result.kept_from}")  # fmt: skip
        if result.error:
            self.say(f"end of day failed: {result.error}")
        record = self.record
        self._write(
            state="failed" if result.error else "done",
            archived=[*record.archived, *(day.day for day in result.archived)],
            ticks=result.archived[-1].ticks if result.archived else record.ticks,
            removed=[*record.removed, *result.removed],
            kept_from=result.kept_from or record.kept_from,
            rows_removed=record.rows_removed + result.rows_removed,
            error=result.error,
        )
