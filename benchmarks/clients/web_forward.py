"""What a competent user writes instead of ``feedmux web``: one process, one whole-market
``feedmux.Subscriber`` (every trade), each tick forwarded to every connected page as a JSON
object, encoded once and written to all with ``websockets``' ``broadcast``; no conflation.

    python -m benchmarks.clients.web_forward --run-dir DIR --ready PATH --out PATH [--pages N]

The Subscriber blocks, so it runs on a thread that hands what is queued to the event loop in
batches (a hand-over per tick would cost more than the tick). ``--ready``: written with the
port once every shard was heard from. On SIGTERM, ``--out`` gets the ticks received by
100 ms of their receive time (the reference the pages' counts are checked against), the
Subscriber's gaps and the peak RSS; then the process exits without closing the pages.
``--pages``: forward nothing until that many pages are in (a loop that is behind takes long to
let them in; what is measured is forwarding to all of them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import threading
from collections import Counter
from pathlib import Path
from types import FrameType

import msgspec
from websockets.asyncio.server import ServerConnection, broadcast, serve

from feedmux import Subscriber
from feedmux.model import Tick

BUCKET_NS = 100_000_000  # the counts' resolution: windows start and end on these


class TickMessage(msgspec.Struct, frozen=True, gc=False):
    """One trade as a page gets it (a JSON object: what such a script would send)."""

    code: str
    price: float
    volume: float
    turnover: float
    time_ms: float
    recv_ms: float


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--ready", type=Path, required=True, help="the port, once subscribed")
    ap.add_argument("--out", type=Path, required=True, help="counts, written on SIGTERM")
    ap.add_argument("--pages", type=int, default=0, help="forward once this many are in")
    args = ap.parse_args()
    asyncio.run(serve_pages(args.run_dir, args.ready, args.out, args.pages))


async def serve_pages(run_dir: str, ready: Path, out: Path, expected: int) -> None:
    loop = asyncio.get_running_loop()
    pages: set[ServerConnection] = set()
    encode = msgspec.json.Encoder().encode
    buckets: Counter[int] = Counter()
    stop = threading.Event()
    subscribed = threading.Event()
    gaps = [0]

    started = [False]

    def forward(batch: list[Tick]) -> None:
        if not started[0]:
            if not pages or len(pages) < expected:
                return
            started[0] = True
        if not pages:  # nobody to send to: nothing to encode
            return
        for tick in batch:
            message = TickMessage(tick.code, tick.price, tick.volume, tick.turnover,
                                  tick.time_ns / 1e6, tick.recv_ns / 1e6)  # fmt: skip
            broadcast(pages, encode(message), text=True)

    def pump() -> None:
        with Subscriber(run_dir=run_dir, on_gap="count") as sub:
            while not sub.wait_ready(0.5):
                if stop.is_set():
                    return
            subscribed.set()
            while not stop.is_set():
                batch: list[Tick] = []
                item = sub.recv(timeout=0.2)
                while item is not None:  # what is queued, at most 1000
                    if isinstance(item, Tick):
                        batch.append(item)
                        buckets[item.recv_ns // BUCKET_NS] += 1  # received, sent or not
                    if len(batch) == 1000:
                        break
                    item = sub.recv(timeout=0)
                if batch:
                    loop.call_soon_threadsafe(forward, batch)
                gaps[0] = sub.gaps

    async def page(ws: ServerConnection) -> None:
        pages.add(ws)
        try:
            await ws.wait_closed()
        finally:
            pages.discard(ws)

    def finish(signum: int, frame: FrameType | None) -> None:
        """A plain handler, not the loop's: behind, the loop would see it only after every
        batch queued before it."""
        stop.set()
        counts = dict(buckets)  # one C call: the thread cannot change it meanwhile
        report = {"buckets": {str(k): n for k, n in sorted(counts.items())},
                  "bucket_ns": BUCKET_NS, "ticks": sum(counts.values()), "gaps": gaps[0],
                  "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}  # fmt: skip
        out.write_text(json.dumps(report))
        os._exit(0)  # pages may hold megabytes unsent: no closing handshake to wait for

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    thread = threading.Thread(target=pump, name="subscriber", daemon=True)
    thread.start()
    async with serve(page, "127.0.0.1", 0, compression=None) as server:
        while not subscribed.wait(0):
            await asyncio.sleep(0.05)
        port = next(iter(server.sockets)).getsockname()[1]
        ready.write_text(str(port))
        await asyncio.Event().wait()  # until SIGTERM


if __name__ == "__main__":
    main()
