"""A worker process the supervisor starts, waits for and restarts.

Apart from the supervisor on purpose: a spawned worker unpickles ``_entry`` and so imports this
module, which must stay light (the supervisor's status table pulls in rich).
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import setproctitle

from feedmux.errors import FeedmuxError

READY_TIMEOUT_S = 60.0

_spawn = multiprocessing.get_context("spawn")


class Child:
    """One worker process; ``start`` waits until it says it is ready."""

    def __init__(self, name: str, target: Callable[..., int], args: tuple[Any, ...]) -> None:
        self.name = name
        self.target = target
        self.args = args
        self.process: BaseProcess | None = None
        self.restarts = 0
        self._terminated = False

    def start(self) -> Any:
        ours, theirs = _spawn.Pipe(duplex=False)
        process = _spawn.Process(
            target=_entry, args=(self.target, *self.args, theirs), name=f"feedmux-{self.name}"
        )
        process.start()
        theirs.close()
        self.process = process
        self._terminated = False
        return _await_ready(self.name, process, ours)

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def terminate(self) -> None:
        """SIGTERM, once: the worker then finishes its work and exits by itself."""
        if self.process is not None and self.process.is_alive() and not self._terminated:
            self._terminated = True
            self.process.terminate()

    def stop(self, timeout: float) -> int | None:
        """SIGTERM, wait, then SIGKILL if it is still there; the exit code."""
        process = self.process
        if process is None:
            return None
        if process.is_alive():
            self.terminate()
            process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join(5)
        return process.exitcode


def _entry(target: Callable[..., int], *args: Any) -> None:
    """A worker's ``main`` returns its exit status; multiprocessing would drop it."""
    setproctitle.setproctitle(multiprocessing.current_process().name)  # e.g. feedmux-shard-3
    sys.exit(target(*args))


def _await_ready(name: str, process: BaseProcess, pipe: Connection) -> Any:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if pipe.poll(0.1):
            try:
                return pipe.recv()
            except EOFError:
                break
        if not process.is_alive():
            break
    process.join(1)
    raise FeedmuxError(
        f"{name} did not start (exit code {process.exitcode}); see its log lines "
        "(above, and in <run-dir>/feedmux.log)"
    )
