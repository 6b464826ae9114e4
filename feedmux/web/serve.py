"""Wiring of ``feedmux web``: the run's manifest, the board, its feed thread, the server."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import signal
import sys
import threading
from pathlib import Path

from websockets.asyncio.server import serve

from feedmux.errors import ConfigError, ConsumerError
from feedmux.market.day import trading_day
from feedmux.market.sessions import sessions_of_run
from feedmux.model import Bar
from feedmux.ops import instance
from feedmux.ops.config import read_manifest
from feedmux.shard.stores.labels import stored_bar_label
from feedmux.web.board import Board
from feedmux.web.feed import Feed, day_bars
from feedmux.web.gateway import Gateway, WebSettings

FEEDS = ("auto", "moves", "trades")


def check_exposure(settings: WebSettings) -> None:
    """A page shows the whole market: off loopback it needs a token."""
    if settings.token or _loopback(settings.host):
        return
    raise ConfigError(
        f"--host {settings.host} lets other machines see the market: give --web-token "
        "(or FEEDMUX_WEB_TOKEN), or keep the default 127.0.0.1"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(run_dir: Path, settings: WebSettings, feed_kind: str = "auto", store: str = "") -> int:
    """Serve the page until SIGINT or SIGTERM (exit 0). Raises ConfigError (a bad setting or a
    port that cannot be bound) and NotRunningError (no run in ``run_dir``)."""
    check_exposure(settings)
    instance.require(run_dir)
    manifest = read_manifest(run_dir)
    settings = dataclasses.replace(settings, silent_after_s=manifest.silent_after_s)
    step = manifest.min_move.get("trades", 0.0)
    if feed_kind == "moves" and not step:
        raise ConfigError("--feed moves: the run publishes no moves; start it with "
                          "--min-move trades=STEP, or use --feed trades")  # fmt: skip
    moves = feed_kind == "moves" or (feed_kind == "auto" and step > 0)
    store = store or manifest.sqlite_store
    end_label = "://" in store or not store or stored_bar_label(Path(store)) == "end"
    lock = threading.Lock()
    board = Board(end_label=end_label, with_trades=not moves)
    feed = Feed(run_dir, board, lock, moves=moves, store=store)
    sessions, problem = sessions_of_run(manifest.calendar_file, run_dir)
    if problem:
        print(f"feedmux web: warning: {problem}", file=sys.stderr)
    bars_of = functools.partial(_code_bars, store)
    gateway = Gateway(settings, board, feed, lock, sessions=sessions, bars_of=bars_of,
                      min_move=step if moves else 0.0)  # fmt: skip
    what = f"moves of at least {step:g}" if moves else "every trade"
    feed.start()
    try:
        return asyncio.run(_serve(gateway, f"{manifest.shards} shards of {run_dir}, {what}"))
    finally:
        feed.stop()


def _code_bars(store: str, code: str, now_ns: int) -> list[Bar]:
    """A code's bars of its latest trading day before ``now_ns``."""
    bars = day_bars(store, [code], now_ns)
    if not bars:
        return bars
    last = trading_day(bars[-1].minute_ns - 1, code)  # (an end label is its minute's end)
    return [b for b in bars if trading_day(b.minute_ns - 1, code) == last]


async def _serve(gateway: Gateway, source: str) -> int:
    settings = gateway.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"feedmux web: loading the market from {source}", flush=True)
    while not gateway.feed.ready.is_set():  # pages get the whole market from their start
        if stop.is_set():
            return 0
        await asyncio.sleep(0.05)
    if gateway.feed.error:
        raise ConsumerError(gateway.feed.error)
    try:
        server = await serve(gateway.handle, settings.host, settings.port, compression=None,
                             max_size=1 << 16, process_request=gateway.http)  # fmt: skip
    except OSError as exc:
        raise ConfigError(f"cannot serve on {settings.host}:{settings.port}: "
                          f"{exc.strerror or exc}") from None  # fmt: skip
    async with server:
        port = next(iter(server.sockets)).getsockname()[1]
        query = "?token=<your --web-token>" if settings.token else ""
        print(f"feedmux web: serving http://{settings.host}:{port}/{query}", flush=True)
        pusher = asyncio.create_task(gateway.push())
        await stop.wait()
        pusher.cancel()
        print(f"feedmux web: stopped ({gateway.updates:,} updates, {gateway.lines_sent:,} lines "
              f"to {gateway.pages_served:,} pages)", flush=True)  # fmt: skip
    return 0
