"""The end of day's record, ``<run_dir>/eod.json``: written by the supervisor (feedmux/ops/eod.py),
read by the shards (they roll over when ``day`` grows), ``feedmux status`` and the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from feedmux.stats import read_json

EOD_FILE = "eod.json"  # in the run dir
JOB_FILE = "eod-job.json"  # in the run dir: the last job's JobResult
State = Literal["", "storing", "exporting", "done", "failed"]


class DayEnd(msgspec.Struct, kw_only=True):
    day: int = -1  # the last trading day that ended (days since 1970-01-01); -1: none yet
    at_ns: int = 0  # its end on the data clock (ns UTC): the shards close its bars up to it
    # storing: waiting for every shard to store the day; exporting: archiving and removing
    state: State = ""
    next_end_ns: int = 0  # when the day under way ends, on the data clock; 0: none in sight
    archived: list[str] = []  # days exported in this run (YYYY-MM-DD)
    ticks: int = 0  # ticks archived of the last day exported
    removed: list[str] = []  # the journal's day folders removed by --keep-days in this run
    kept_from: str = ""  # --keep-days: the oldest day the stores keep; "": none removed yet
    rows_removed: int = 0  # --keep-days: stored rows removed in this run
    error: str = ""  # why the last export or removal failed
    changed_ns: int = 0  # wall clock of the last change


class ArchivedDay(msgspec.Struct, kw_only=True, frozen=True):
    day: str  # YYYY-MM-DD
    ticks: int
    codes: int


class JobResult(msgspec.Struct, kw_only=True):
    """What one end-of-day job did (``<run_dir>/eod-job.json``, from workers/eod.py)."""

    archived: list[ArchivedDay] = []
    removed: list[str] = []  # the journal's day folders removed
    rows_removed: int = 0  # ticks, books and bars removed from the stores
    kept_from: str = ""  # the oldest day the stores keep (YYYY-MM-DD); "": no removal
    error: str = ""


_day_end = msgspec.json.Decoder(DayEnd)


def read_day_end(path: Path) -> DayEnd | None:
    """The record; None when there is none (a run of an older feedmux) or it does not decode."""
    return read_json(path, _day_end)
