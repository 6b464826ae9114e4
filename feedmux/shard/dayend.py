"""A shard's end of day: the supervisor's record (``<run_dir>/eod.json``, feedmux/ops/eod.py)
read when it changes, and when the rows taken before a day ended are all written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from feedmux.shard.lanes import Lane, Lanes
from feedmux.stats.eod import DayEnd, read_day_end


class DayWatch:
    def __init__(self, path: Path, lanes: Lanes) -> None:
        self.path = path
        self._stores: list[Lane[Any]] = [lanes.ticks, lanes.books, lanes.bars]
        self._mtime = 0
        self._day = -1  # the last day ended, as read
        self._marks: tuple[int, list[int]] | None = None  # (day, each store lane's rows then)
        self.done = -1  # the last day ended whose rows are all in every store

    def ended(self) -> DayEnd | None:
        """The record, when it says a new day ended (the first read of a restarted shard
        included: ending a day twice closes nothing twice)."""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            return None
        if mtime == self._mtime:
            return None
        record = read_day_end(self.path)
        if record is None:
            return None  # being written: the next turn reads it
        self._mtime = mtime
        if record.day <= self._day:
            return None
        self._day = record.day
        return record

    def taken(self, day: int) -> None:
        """Every row of ``day`` is handed to the lanes now."""
        self._marks = (day, [lane.added for lane in self._stores])

    def check(self) -> None:
        """``done`` moves on once the lanes wrote what they held when the day ended."""
        if self._marks is None:
            return
        day, marks = self._marks
        if all(lane.written >= mark for lane, mark in zip(self._stores, marks, strict=True)):
            self.done, self._marks = day, None
