"""What every worker process does the same way: signals, logging, stats timing."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from feedmux.config import Settings
from feedmux.writes import LogFileHandler


class StopFlag:
    """Set by SIGTERM (and SIGINT when standalone), or when a supervised worker's supervisor
    is gone; the loop checks ``requested`` between polls.

    Supervised workers ignore SIGINT and SIGHUP: a Ctrl-C or a closed terminal reaches the
    whole process group, and the supervisor, not each worker, decides the order of shutdown.
    When the supervisor dies (even by kill -9) the worker stops in order by itself: Linux
    sends it SIGTERM (feedmux.children), and the parent-pid check here catches it elsewhere.
    """

    def __init__(self, supervised: bool) -> None:
        self.signalled = False
        parent = multiprocessing.parent_process() if supervised else None
        self._parent_pid = parent.pid if parent is not None else None
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, signal.SIG_IGN if supervised else self._set)
        if supervised:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    @property
    def orphaned(self) -> bool:
        """The supervisor that started this worker is gone (the worker was reparented)."""
        return self._parent_pid is not None and os.getppid() != self._parent_pid

    @property
    def requested(self) -> bool:
        return self.signalled or self.orphaned

    def _set(self, signum: int, frame: FrameType | None) -> None:
        self.signalled = True


def setup_logging(
    level: str, name: str, log_file: Path | None = None, stderr: bool = True
) -> logging.Logger:
    """Log to stderr and/or ``log_file`` (appended: every process of a run shares it)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)] if stderr else []
    if log_file is not None:
        try:
            handlers.append(LogFileHandler(log_file, encoding="utf-8"))
        except OSError as exc:  # logging must never stop a worker
            print(f"{name}: cannot open {log_file}: {exc}", file=sys.stderr)
    logging.basicConfig(
        level=level,
        handlers=handlers or [logging.NullHandler()],
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        force=True,
    )
    return logging.getLogger(f"feedmux.{name}")


def run_logging(settings: Settings, name: str) -> logging.Logger:
    """A pipeline worker's logging: the run's log file, and stderr unless the live table is on."""
    return setup_logging(settings.log_level, name, settings.paths.log_file,
                         stderr=settings.display != "live")  # fmt: skip
