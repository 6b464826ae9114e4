"""One ``feedmux run`` per run directory and per data directory: an OS lock that dies with
its holders, never a pid file that can go stale.

The supervisor takes ``flock(LOCK_EX)`` on ``<run-dir>/lock`` and ``<data-dir>/feedmux.lock``
(and ``feedmux.lock`` in each SQLite store directory elsewhere) and writes who it is (pid,
start time) into each. Every worker it starts inherits the same open
files (``Lock`` pickles into a spawned process as the lock itself), so a directory counts as
busy while any process of that run lives: after a ``kill -9`` of the supervisor its workers
still hold it while they drain, and the kernel drops it with the last of them.

``running(run_dir)`` asks who holds a run directory without taking the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Sequence
from datetime import datetime
from multiprocessing import reduction
from pathlib import Path
from typing import Any

import msgspec

from feedmux.errors import ConfigError, InstanceRunningError, NotRunningError

RUN_LOCK = "lock"
DATA_LOCK = "feedmux.lock"
ACQUIRE_WAIT_S = 0.5  # a client's query holds the lock for microseconds: retry that long
_RETRY_S = 0.02


class Holder(msgspec.Struct, frozen=True):
    """Who holds a directory: the supervisor's pid and since when (Unix time)."""

    pid: int
    started: float
    run_dir: str = ""
    data_dir: str = ""

    def describe(self) -> str:
        if not self.pid:
            return "pid unknown: it is just starting"
        since = datetime.fromtimestamp(self.started).astimezone()
        return f"pid {self.pid}, since {since:%Y-%m-%d %H:%M:%S %Z}"

    def supervisor_alive(self) -> bool:
        """Whether the supervisor itself still lives (its workers may outlive it a while)."""
        if self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # another user's process: it exists
        return True


class Lock:
    """The held locks of one run. Pickled into a spawned worker (``Child``), it arrives there
    as the same open files, so the worker holds the locks too."""

    def __init__(self, fds: list[int]) -> None:
        self.fds = fds

    def release(self) -> None:
        """Close this process's copies; the lock goes once no process of the run has one."""
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []

    def __reduce__(self) -> tuple[Any, ...]:
        # Called while multiprocessing spawns a process: DupFd passes each fd to the child.
        return (_inherited, ([reduction.DupFd(fd) for fd in self.fds],))


def _inherited(dups: list[Any]) -> Lock:
    return Lock([dup.detach() for dup in dups])


def lock_paths(run_dir: Path, data_dir: Path, stores: Sequence[Path] = ()) -> dict[Path, str]:
    """Each lock file and what its directory is. Once each: a second flock of one file from
    this process would wait for the first."""
    paths = {run_dir / RUN_LOCK: "run directory", data_dir / DATA_LOCK: "data directory"}
    seen = {p.parent.resolve() for p in paths}
    for store in stores:
        if store.resolve() not in seen:
            seen.add(store.resolve())
            paths[store / DATA_LOCK] = "store directory"
    return paths


def acquire(run_dir: Path, data_dir: Path, stores: Sequence[Path] = (),
            wait_s: float = ACQUIRE_WAIT_S) -> Lock:  # fmt: skip
    """Lock the run's directories (run, data and SQLite ``stores``) for this process and the
    workers it passes the Lock to, or raise ``InstanceRunningError`` naming the instance that
    holds one. They must exist."""
    holder = msgspec.json.encode(Holder(os.getpid(), time.time(), str(run_dir), str(data_dir)))
    fds: list[int] = []
    try:
        for path, where in lock_paths(run_dir, data_dir, stores).items():
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise ConfigError(f"cannot open the instance lock {path}: {exc}") from exc
            fds.append(fd)
            if not _lock(fd, fcntl.LOCK_EX, wait_s):
                other = _read_holder(fd)
                raise InstanceRunningError(
                    f"another feedmux run ({other.describe()}) is using the {where} "
                    f"{path.parent}; stop it first, or give this run its own --data-dir"
                )
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, holder, 0)
            except OSError as exc:  # a full disk, above all
                raise ConfigError(f"cannot write the instance lock {path}: {exc}") from exc
    except BaseException:
        Lock(fds).release()
        raise
    return Lock(fds)


def running(run_dir: Path) -> Holder | None:
    """Who runs in ``run_dir`` (supervisor or, after it died, workers still draining), or None.

    Asks without holding the lock for longer than the question takes."""
    try:
        fd = os.open(run_dir / RUN_LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot open {run_dir / RUN_LOCK}: {exc}") from exc
    try:
        if _lock(fd, fcntl.LOCK_SH, 0.0):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _read_holder(fd)
    finally:
        os.close(fd)


def require(run_dir: Path) -> Holder:
    """The holder of ``run_dir``, or ``NotRunningError`` at once."""
    holder = running(run_dir)
    if holder is None:
        raise NotRunningError(f"no feedmux run in {run_dir}")
    return holder


def _lock(fd: int, how: int, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, how | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
        time.sleep(_RETRY_S)


def _read_holder(fd: int) -> Holder:
    try:
        return msgspec.json.decode(os.pread(fd, 4096, 0), type=Holder)
    except (OSError, msgspec.DecodeError):  # being written right now
        return Holder(0, 0.0)
