"""`feedmux web` in a subprocess, and pages as a browser's would be (Python WebSocket clients
that decode every message): shared by the web tests."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import connect

from feedmux.web import protocol as p
from tests.conftest import scaled
from tests.integration.helpers import feedmux


@dataclass
class Web:
    """A running `feedmux web`; everything it says is kept in ``said`` (read as it comes, so
    a full pipe never stops it)."""

    proc: subprocess.Popen[str]
    url: str  # http://127.0.0.1:PORT/
    said: list[str]
    reader: threading.Thread

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "ws"

    def stats(self) -> p.WebStats:
        with urllib.request.urlopen(self.url + "stats", timeout=5) as answer:
            return p.stats_decoder.decode(answer.read())

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=scaled(30))
        self.reader.join(timeout=scaled(10))
        return code, "".join(self.said)


def start_web(run_dir: Path, data_dir: Path, *args: str) -> Web:
    proc = feedmux("web", "--port", "0", "--run-dir", str(run_dir), "--data-dir", str(data_dir),
                   *args)  # fmt: skip
    assert proc.stdout is not None
    said: list[str] = []
    while line := proc.stdout.readline():  # it serves once the whole market is loaded
        said.append(line)
        if url := re.search(r"serving (http://\S+/)", line):
            reader = threading.Thread(target=said.extend, args=(proc.stdout,), daemon=True)
            reader.start()
            return Web(proc, url.group(1), said, reader)
    raise AssertionError("".join(said) + proc.communicate(timeout=10)[0])


@dataclass
class Page:
    """A page as the browser's would be: the model of lines, and what the updates looked like."""

    lines: dict[str, p.Line] = field(default_factory=dict)
    hello: p.Hello | None = None
    snapshots: int = 0
    updates: int = 0
    lines_seen: int = 0
    repeated: int = 0  # a code twice in one update (conflation broken)
    last_server_ms: float = 0.0
    skipped: int = 0  # updates never received (the gateway skipped this page)
    last_seq: int = 0
    gaps_ms: list[float] = field(default_factory=list)  # between consecutive updates
    lag_ms: list[float] = field(default_factory=list)  # arrival - the update's server time

    def take(self, raw: str | bytes) -> p.ServerMessage:
        message = p.server_decoder.decode(raw)
        if isinstance(message, p.Hello):
            self.hello = message
        elif isinstance(message, p.Snapshot):
            self.snapshots += 1
            self.lines = {line.code: line for line in message.lines}
        elif isinstance(message, p.Update):
            self.updates += 1
            if self.last_seq:
                self.skipped += message.seq - self.last_seq - 1
            self.last_seq = message.seq
            codes = [line.code for line in message.lines]
            self.repeated += len(codes) - len(set(codes))
            self.lines.update((line.code, line) for line in message.lines)
            self.lines_seen += len(codes)
            if self.last_server_ms:
                self.gaps_ms.append(message.server_ms - self.last_server_ms)
            self.last_server_ms = message.server_ms
            self.lag_ms.append(time.time() * 1000 - message.server_ms)
        return message


async def watch_pages(url: str, count: int, seconds: float, **headers: str) -> list[Page]:
    """``count`` pages at once, each reading for ``seconds``."""
    pages = [Page() for _ in range(count)]

    async def one(page: Page) -> None:
        async with connect(url, max_size=None, additional_headers=headers) as ws:
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                try:
                    page.take(await asyncio.wait_for(ws.recv(), left))
                except TimeoutError:
                    return

    await asyncio.gather(*(one(page) for page in pages))
    return pages
