"""Simulated pages for ``benchmarks.web``: N WebSocket clients in one asyncio process, each
decoding every message as a page would (msgspec, into the protocol's Structs).

    python -m benchmarks.clients.web_pages --url WS --pages N --seconds S --out PATH
                                           [--settle S] [--grace S] [--forward]

Once every page is connected (with ``feedmux web``: has its hello and snapshot) the window
starts ``--settle`` seconds later on a 100 ms boundary; its start (epoch seconds) is written to
``<out>.ready`` for the benchmark, which reads the servers' CPU at its start and end.

What counts is what was *sent* in the window, however late it arrives (up to ``--grace`` after
the window): with ``feedmux web`` the updates whose ``server_ms`` falls in it (the same for
every page; the gateway numbers its updates, so those it sent in the window are the range of
numbers the pages saw, and each page's are checked against it: "got every update"); with
``--forward`` (``benchmarks.clients.web_forward``) the ticks whose ``recv_ms`` falls in it,
checked against the forwarder's own count. The first page notes the lag of each line that
arrives in the window with a new trade, its arrival time minus the line's ``recv_ms`` (when
feedmux read the trade off the vendor's socket: a server that is behind shows here); a line
sent again without one (its code's 1-minute bar closed) is counted apart, as ``repeats``.
Every page notes each update's delivery, its arrival minus its ``server_ms``. Then ``--out`` gets
the counts and the percentiles, and the process exits (the pages' sockets just close).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from benchmarks.clients.web_forward import TickMessage
from feedmux.web.protocol import Hello, Line, Snapshot, Update, server_decoder

QUANTILES = (0.5, 0.9, 0.99)


def quantiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max of ``values`` (sorted in place), rounded to 0.1; {} if none."""
    if not values:
        return {}
    values.sort()
    out = {f"p{round(q * 100)}": round(values[min(len(values) - 1, int(q * len(values)))], 1)
           for q in QUANTILES}  # fmt: skip
    out["max"] = round(values[-1], 1)
    return out


@dataclass
class Page:
    lags: bool  # the first page notes every line's lag
    messages: int = 0  # all, in the window or not
    updates: int = 0  # in the window: updates (gateway) or ticks (--forward)
    lines: int = 0
    snapshots: int = 0  # beyond the first: the gateway had skipped this page (it was behind)
    closed: str = ""  # why the server closed it, if it did
    repeats: int = 0  # lines with no new trade (the first page only: see Pages._lags)
    last_recv: dict[str, float] = field(default_factory=dict)  # code -> recv_ms it last had
    seen: set[int] = field(default_factory=set)  # numbers (seq) of the window's updates
    delivery_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)


class Pages:
    def __init__(self, url: str, count: int, forward: bool) -> None:
        self.url = url
        self.pages = [Page(lags=i == 0) for i in range(count)]
        self.forward = forward
        self.t0_ms = math.inf  # the window, once every page is in
        self.t1_ms = math.inf
        self._tick = msgspec.json.Decoder(TickMessage)
        self._tasks: list[asyncio.Task[None]] = []  # held: the loop keeps only weak references

    async def page(self, page: Page, connected: asyncio.Event) -> None:
        try:
            async with connect(self.url, max_size=None, compression=None,
                               open_timeout=60) as ws:  # fmt: skip
                await (self._ticks(ws, page, connected) if self.forward
                       else self._updates(ws, page, connected))  # fmt: skip
        except ConnectionClosed as exc:
            page.closed = f"{exc.rcvd.code} {exc.rcvd.reason}" if exc.rcvd else "no close frame"

    async def _updates(self, ws: ClientConnection, page: Page, connected: asyncio.Event) -> None:
        decode = server_decoder.decode
        while True:
            raw = await ws.recv(decode=False)
            now = time.time() * 1000
            message = decode(raw)
            page.messages += 1
            if isinstance(message, Update):
                if page.lags:
                    self._lags(page, message.lines, now)
                if not self.t0_ms <= message.server_ms < self.t1_ms:
                    continue
                page.updates += 1
                page.lines += len(message.lines)
                page.seen.add(message.seq)
                page.delivery_ms.append(now - message.server_ms)
            elif isinstance(message, Snapshot):
                if connected.is_set():
                    page.snapshots += 1
                page.last_recv.update((line.code, line.recv_ms) for line in message.lines)
                connected.set()  # the hello came first
            elif not isinstance(message, Hello):
                raise RuntimeError(f"unexpected message: {message!r}")

    def _lags(self, page: Page, lines: list[Line], now: float) -> None:
        """The lag of each line that carries a new trade; a line sent again without one (its
        code's bar closed: the volume changed, ``recv_ms`` did not) is counted apart."""
        last = page.last_recv
        counting = self.t0_ms <= now < self.t1_ms
        for line in lines:
            if last.get(line.code) == line.recv_ms or not line.recv_ms:
                if counting:
                    page.repeats += 1
                continue
            last[line.code] = line.recv_ms
            if counting:
                page.lag_ms.append(now - line.recv_ms)

    async def _ticks(self, ws: ClientConnection, page: Page, connected: asyncio.Event) -> None:
        decode = self._tick.decode
        connected.set()
        while True:
            raw = await ws.recv(decode=False)
            now = time.time() * 1000
            tick = decode(raw)
            page.messages += 1
            if page.lags and self.t0_ms <= now < self.t1_ms:
                page.lag_ms.append(now - tick.recv_ms)
            if self.t0_ms <= tick.recv_ms < self.t1_ms:
                page.updates += 1
                page.lines += 1

    async def run(self, seconds: float, settle: float, grace: float, out: Path) -> None:
        events = [asyncio.Event() for _ in self.pages]
        self._tasks = [asyncio.create_task(self.page(p, e))
                       for p, e in zip(self.pages, events, strict=True)]  # fmt: skip
        deadline = time.monotonic() + 120
        while not all(e.is_set() for e in events):
            for task, page in zip(self._tasks, self.pages, strict=True):
                if task.done():  # before it was in: the error, or why the server closed it
                    task.result()
                    raise RuntimeError(f"a page was closed before it was in: {page.closed}")
            if time.monotonic() > deadline:
                raise RuntimeError("the pages did not all connect in 120 s")
            await asyncio.sleep(0.05)
        t0 = math.ceil((time.time() + settle) * 10) / 10  # the forwarder counts by 100 ms
        self.t0_ms, self.t1_ms = t0 * 1000, (t0 + seconds) * 1000
        Path(f"{out}.ready").write_text(repr(t0))
        await asyncio.sleep(t0 + seconds + grace - time.time())
        out.write_text(json.dumps(self.report(t0, seconds)))
        os._exit(0)  # the sockets just close, as a closed tab's do (no handshakes to wait for)

    def report(self, t0: float, seconds: float) -> dict[str, Any]:
        union: set[int] = set().union(*(p.seen for p in self.pages))
        sent = max(union) - min(union) + 1 if union else 0
        delivery = [d for p in self.pages for d in p.delivery_ms]
        lags = self.pages[0].lag_ms if self.pages else []
        return {
            "t0": t0, "seconds": seconds, "forward": self.forward,
            "updates_sent": sent,  # by the gateway in the window: the numbers' range
            "pages": [{**{k: v for k, v in asdict(p).items()
                          if k not in ("seen", "delivery_ms", "lag_ms", "lags", "last_recv")},
                       "missing": sent - len(p.seen)} for p in self.pages],
            "delivery_ms": quantiles(delivery),
            "lag_ms": quantiles(lags), "lag_lines": len(lags),
        }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description="simulated pages of feedmux web (or the forwarder)")
    ap.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/ws")
    ap.add_argument("--pages", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True, help="the window")
    ap.add_argument("--settle", type=float, default=2.0, help="from all connected to the window")
    ap.add_argument("--grace", type=float, default=2.0, help="for what was sent in the window")
    ap.add_argument("--forward", action="store_true", help="the forwarder's ticks, not updates")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    pages = Pages(args.url, args.pages, args.forward)
    asyncio.run(pages.run(args.seconds, args.settle, args.grace, args.out))


if __name__ == "__main__":
    main()
