"""A worker process the supervisor starts, waits for and restarts.

Apart from the supervisor on purpose: a spawned worker unpickles ``_entry`` and so imports this
module, which must stay light (the supervisor's status table pulls in rich).
"""

from __future__ import annotations

import ctypes
import importlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from typing import Any

import setproctitle

from feedmux.errors import FeedmuxError
from feedmux.ops.instance import Lock

READY_TIMEOUT_S = 60.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_spawn = multiprocessing.get_context("spawn")


class SignalWakeup:
    """A descriptor that turns readable when a signal with a Python handler arrives: a loop
    that waits on it (with its sockets) wakes at once, so it can sleep long between timers (a
    wait resumes after a signal's handler runs, PEP 475). One per process (main thread)."""

    def __init__(self) -> None:
        self._read, write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)

    def fileno(self) -> int:
        return self._read

    def drain(self) -> None:
        """Empty it after a wake-up (the handler has recorded what happened)."""
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass


def worker_main(role: str) -> Callable[..., int]:
    """A worker's ``main`` (``receiver``, ``shard``, ``replay``): imported by name, as the
    spawned process imports it again, from the checkout's ``workers/`` installed as
    ``feedmux.workers``."""
    main: Callable[..., int] = importlib.import_module(f"feedmux.workers.{role}").main
    return main


class Child:
    """One worker process; ``start`` waits until it says it is ready. Given the run's
    ``lock``, the worker holds it too: the directory stays busy while any worker lives."""

    def __init__(self, name: str, target: Callable[..., int], args: tuple[Any, ...],
                 lock: Lock | None = None) -> None:  # fmt: skip
        self.name = name
        self.target = target
        self.args = args
        self.lock = lock
        self.process: BaseProcess | None = None
        self.restarts = 0
        self._terminated = False

    def start(self) -> Any:
        ours, theirs = _spawn.Pipe(duplex=False)
        process = _spawn.Process(
            target=_entry,
            args=(self.target, *self.args, theirs),
            kwargs={"lock": self.lock},
            name=f"feedmux-{self.name}",
        )
        # Ctrl-C reaches the whole process group: a worker still starting (before _entry)
        # would die of it with a traceback. An ignored signal stays ignored across the
        # spawn's exec (a blocked mask does not: the spawn resets it); blocked meanwhile here,
        # a Ctrl-C at this instant waits for the supervisor's own handler instead of vanishing.
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        previous_handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            process.start()
        finally:
            signal.signal(signal.SIGINT, previous_handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
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


def _entry(target: Callable[..., int], *args: Any, lock: Lock | None = None) -> None:
    """A worker's ``main`` returns its exit status; multiprocessing would drop it.

    ``lock`` arrives as the run's held lock and is kept open for the worker's whole life."""
    setproctitle.setproctitle(multiprocessing.current_process().name)  # e.g. feedmux-shard-3
    # A closed terminal (SIGHUP) and Ctrl-C (SIGINT) reach the whole process group: the
    # supervisor alone decides the order of shutdown. The one place every worker ignores them,
    # from its first instruction (a standalone replay server handles SIGINT itself).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited ignored already (Child.start)
    _stop_with_parent()
    status = target(*args)
    # Stopped in order: a late SIGTERM (a whole process group signalled, then the supervisor
    # asking too) must not kill the interpreter as it exits, once its handler is gone.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(status)


def _stop_with_parent() -> None:
    """SIGTERM when the supervisor dies, even by kill -9: the worker then stops in order as
    if the supervisor had asked (workers' StopFlag.check_parent also notices, portably)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the parent-pid check remains
            pass
    if parent_gone():  # it died before prctl took hold
        sys.exit(1)


def parent_gone() -> bool:
    """The supervisor that started this process is gone (the process was reparented)."""
    parent = multiprocessing.parent_process()
    return parent is not None and os.getppid() != parent.pid


def _await_ready(name: str, process: BaseProcess, pipe: Pipe) -> Any:
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
