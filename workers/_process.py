"""What every worker process does the same way: signals, logging, stats timing."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from feedmux.ops.children import SignalWakeup, parent_gone
from feedmux.ops.config import Settings
from feedmux.writes import LogFileHandler


class StopFlag:
    """Set by SIGTERM (and SIGINT when standalone), or when a supervised worker's supervisor
    is gone; the loop reads ``requested`` (a plain attribute) between polls.

    Supervised workers ignore SIGINT (SIGHUP: feedmux.ops.children, for every worker): a Ctrl-C
    reaches the whole process group, and the supervisor, not each worker, decides the order of
    shutdown. When the supervisor dies (even by kill -9) the worker stops in order by itself:
    Linux sends it SIGTERM (feedmux.ops.children); elsewhere ``check_parent``, called on the
    worker's timer, notices.
    """

    def __init__(self, supervised: bool) -> None:
        self.requested = False
        self.orphaned = False  # as of the last ``check_parent``
        self._supervised = supervised
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, signal.SIG_IGN if supervised else self._set)
        self.wakeup = SignalWakeup()  # in the loop's poller: it wakes at once on a signal

    def check_parent(self) -> bool:
        """Whether the supervisor is gone (then a stop is requested); a system call, so on a
        timer rather than every loop turn."""
        if self._supervised and not self.orphaned and parent_gone():
            self.orphaned = self.requested = True
        return self.orphaned

    def _set(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


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
