"""When the reader of our output goes away (`feedmux status | head -1`): tell it apart from
any other broken pipe, and stop writing without an error (what Python's docs advise)."""

from __future__ import annotations

import errno
import os
import select
from typing import Any, TextIO


def gone(out: TextIO) -> bool:
    """Whether ``out`` is a pipe whose reader closed it (the kernel reports POLLERR on the
    write end); False for anything else, a terminal or a file included."""
    try:
        fd = out.fileno()
    except (OSError, ValueError):  # not a real file (tests)
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def broken() -> BrokenPipeError:
    """The error a write to a pipe whose reader left raises, for a writer that learns it
    otherwise (rich's callback; an idle `feedmux tail` that looked)."""
    return BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def silence(out: TextIO) -> None:
    """Point ``out``'s file descriptor at /dev/null, so what is still buffered or written later
    goes nowhere, without an error (not even at exit)."""
    try:
        fd = out.fileno()
    except (OSError, ValueError):  # not a real file (tests): nothing is flushed at exit
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class Watched:
    """``out`` (the process's stdout), remembering a write that failed: a command can then say
    "cannot write the output" instead of a traceback, and tell it from any other OSError."""

    def __init__(self, out: TextIO) -> None:
        self.real = out
        self.failed: OSError | None = None

    def write(self, text: str) -> int:
        try:
            return self.real.write(text)
        except OSError as exc:
            self.failed = exc
            raise

    def flush(self) -> None:
        try:
            self.real.flush()
        except OSError as exc:
            self.failed = exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)
