"""A shard's end of day: the supervisor's record (``<run_dir>/eod.json``, feedmux/ops/eod.py)
read on each timer turn (a few hundred bytes; its mtime would not do: the file is rewritten in
place, so a read during a write could pair the old record with the new mtime), and when the rows
taken before a day ended are all written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feedmux.shard.lanes import Lane, Lanes
from feedmux.stats.eod import DayEnd, read_day_end


class DayWatch:
    def __init__(self, path: Path, lanes: Lanes) -> None:
        self.path = path
        self._stores: list[Lane[Any]] = [lanes.ticks, lanes.books, lanes.bars]
        self._day = -1  # the last day ended, as read
        self._marks: tuple[int, list[int]] | None = None  # (day, each store lane's rows then)
        self.done = -1  # the last day ended whose rows are all in every store

    def ended(self) -> DayEnd | None:
        """The record, when it says a new day ended (the first read of a restarted shard
        included: ending a day twice closes nothing twice)."""
        record = read_day_end(self.path)
        if record is None or record.day <= self._day:  # none, or being written: next turn
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
