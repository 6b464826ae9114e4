"""Where `feedmux run` shows its state: a live rich table on a terminal, log lines elsewhere."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TextIO

from rich.console import Console
from rich.live import Live

from feedmux.ops import pipes
from feedmux.ops.status import Status, progress_line, render

PLAIN_EVERY_S = 2.0  # a log line this often; the live table redraws at every update


class Display(Protocol):
    def say(self, text: str) -> None: ...
    def show(self, status: Status, elapsed_s: float) -> None: ...
    def close(self) -> None: ...


class PlainDisplay:
    """Messages and a progress line every few seconds, flushed (journald, files, pipes)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._next = time.monotonic() + PLAIN_EVERY_S
        self._shown = False

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def show(self, status: Status, elapsed_s: float) -> None:
        now = time.monotonic()
        # The first line waits for a measured rate (an unmeasured "0/s" only misleads); after
        # that a line is due every PLAIN_EVERY_S, measured or not (a stuck receiver shows).
        if now >= self._next and (status.measured or self._shown):
            self._next = now + PLAIN_EVERY_S
            self._shown = True
            self.say(progress_line(status, elapsed_s))

    def close(self) -> None:
        pass


class PipeConsole(Console):
    """rich's Console, but a reader that went away is a BrokenPipeError like any other write's
    (rich itself exits the process with status 1, which would stop a run unannounced and read
    as "not running" from `feedmux status`)."""

    def on_broken_pipe(self) -> None:
        raise pipes.broken()


class LiveDisplay:
    """The status table redrawn in place; messages scroll above it."""

    def __init__(self, out: TextIO, title: str) -> None:
        self.title = title
        self.console = PipeConsole(file=out, highlight=False)
        self.live = Live(console=self.console, auto_refresh=False, redirect_stdout=False,
                         redirect_stderr=False)  # fmt: skip
        self.live.start()

    def say(self, text: str) -> None:
        self.console.print(text, markup=False)

    def show(self, status: Status, elapsed_s: float) -> None:
        self.live.update(render(status, f"{self.title}  {elapsed_s:,.0f}s"), refresh=True)

    def close(self) -> None:
        self.live.stop()


class GuardedDisplay:
    """A display whose reader may go away: a pipe closed (``feedmux run | head``), a terminal
    hung up. The first failed write turns it off for good and points the stream at /dev/null
    (so no later write, nor the flush at exit, fails again); ``on_gone`` is told once. The
    run goes on: its messages still go to the run's log file. Any other failure of the
    display (a bug) turns it off the same way."""

    def __init__(self, inner: Display, out: TextIO, on_gone: Callable[[Exception], None]) -> None:
        self.inner = inner
        self.out = out
        self.on_gone = on_gone
        self.gone = False

    def say(self, text: str) -> None:
        self._write(self.inner.say, text)

    def show(self, status: Status, elapsed_s: float) -> None:
        self._write(self.inner.show, status, elapsed_s)

    def close(self) -> None:
        self._write(self.inner.close)

    def _write(self, write: Callable[..., None], *args: object) -> None:
        if self.gone:
            return
        try:
            write(*args)
        except Exception as exc:  # a display must never stop a run, nor its ordered shutdown
            self.gone = True
            if isinstance(exc, OSError):  # EPIPE from a closed pipe, EIO from a hung-up tty
                pipes.silence(self.out)
            self.on_gone(exc)


def open_display(out: TextIO, live: bool, title: str = "feedmux",
                 on_gone: Callable[[Exception], None] | None = None) -> Display:  # fmt: skip
    """The live table or plain lines; with ``on_gone``, one that survives its reader."""
    display: Display = LiveDisplay(out, title) if live else PlainDisplay(out)
    return display if on_gone is None else GuardedDisplay(display, out, on_gone)
