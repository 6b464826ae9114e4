"""Where `feedmux run` shows its state: a live rich table on a terminal, log lines elsewhere."""

from __future__ import annotations

import time
from typing import Protocol, TextIO

from rich.console import Console
from rich.live import Live

from feedmux.status import Status, progress_line, render

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

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def show(self, status: Status, elapsed_s: float) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + PLAIN_EVERY_S
            self.say(progress_line(status, elapsed_s))

    def close(self) -> None:
        pass


class LiveDisplay:
    """The status table redrawn in place; messages scroll above it."""

    def __init__(self, out: TextIO, title: str) -> None:
        self.title = title
        self.console = Console(file=out, highlight=False)
        self.live = Live(console=self.console, auto_refresh=False, redirect_stdout=False,
                         redirect_stderr=False)  # fmt: skip
        self.live.start()

    def say(self, text: str) -> None:
        self.console.print(text, markup=False)

    def show(self, status: Status, elapsed_s: float) -> None:
        self.live.update(render(status, f"{self.title}  {elapsed_s:,.0f}s"), refresh=True)

    def close(self) -> None:
        self.live.stop()


def open_display(out: TextIO, live: bool, title: str = "feedmux") -> Display:
    return LiveDisplay(out, title) if live else PlainDisplay(out)
