"""End-of-day job: archive the trading days that ended, remove the oldest (feedmux/ops/eod.py).
Started by the supervisor for each end of day; wiring only."""

from __future__ import annotations

from multiprocessing.connection import Connection as Pipe

from feedmux.market.sessions import load_sessions
from feedmux.ops.config import Settings
from feedmux.ops.eod_job import job_main

from ._process import run_logging


def main(settings: Settings, days: list[int], ready: Pipe | None = None) -> int:
    run_logging(settings, "eod")  # a traceback, should there be one, goes to the run's log
    if ready is not None:
        ready.send("eod")
    sessions = load_sessions(settings.calendar_file, settings.paths.root)
    return job_main(settings, days, sessions)  # the supervisor says the outcome
