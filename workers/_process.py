"""What every worker process does the same way: signals, logging, stats timing."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType


class StopFlag:
    """Set by SIGTERM (and SIGINT when standalone); the loop checks it between polls.

    Supervised workers ignore SIGINT: a Ctrl-C in the terminal reaches the whole process
    group, and the supervisor, not each worker, decides the order of shutdown.
    """

    def __init__(self, supervised: bool) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, signal.SIG_IGN if supervised else self._set)

    def _set(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def setup_logging(level: str, name: str) -> logging.Logger:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        force=True,
    )
    return logging.getLogger(f"feedmux.{name}")
