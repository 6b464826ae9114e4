"""Wiring of ``feedmux web``: the run's manifest, the board, its feed thread, the server."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import signal
import socket
import sys
import threading
from pathlib import Path

from websockets.asyncio.server import serve

from feedmux.errors import ConfigError, ConsumerError
from feedmux.market.sessions import BarSlots, sessions_of_run
from feedmux.ops import instance
from feedmux.ops.config import read_manifest
from feedmux.web.board import Board
from feedmux.web.feed import Feed
from feedmux.web.gateway import Gateway, WebSettings


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
    """Serve the page until SIGINT or SIGTERM (exit 0; 1 when the feed or the server fails).
    Raises ConfigError (a bad setting, a port that cannot be bound) and NotRunningError (no
    run in ``run_dir``)."""
    check_exposure(settings)
    instance.require(run_dir)
    manifest = read_manifest(run_dir)
    settings = dataclasses.replace(settings, silent_after_s=manifest.silent_after_s)
    step = manifest.min_move.get("trades", 0.0)
    if feed_kind == "moves" and not step:
        raise ConfigError("--feed moves: the run publishes no moves; start it with "
                          "--min-move trades=STEP, or use --feed trades")  # fmt: skip
    moves = feed_kind == "moves" or (feed_kind == "auto" and step > 0)
    listener = _bind(settings)  # a port in use is said now, not after loading the market
    sessions, problem = sessions_of_run(manifest.calendar_file, run_dir)
    if problem:
        print(f"feedmux web: warning: {problem}", file=sys.stderr)
    slots = BarSlots(sessions if manifest.bar_sessions == "exchange" else None,
                     manifest.bars_extended)  # fmt: skip
    lock = threading.Lock()
    board = Board(slots, end_label=manifest.bar_label != "start", with_trades=not moves)
    feed = Feed(run_dir, board, lock, moves=moves, store=store or manifest.sqlite_store)
    gateway = Gateway(settings, board, feed, lock, sessions=sessions,
                      min_move=step if moves else 0.0)  # fmt: skip
    what = f"moves of at least {step:g}" if moves else "every trade"
    feed.start()
    try:
        return asyncio.run(_serve(gateway, listener, f"{manifest.shards} shards of {run_dir}, "
                                  f"{what}"))  # fmt: skip
    finally:
        feed.stop()
        listener.close()


def _bind(settings: WebSettings) -> socket.socket:
    try:
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((settings.host.strip("[]"), settings.port))
    except OSError as exc:
        raise ConfigError(f"cannot serve on {settings.host}:{settings.port}: "
                          f"{exc.strerror or exc}") from None  # fmt: skip
    return listener


async def _serve(gateway: Gateway, listener: socket.socket, source: str) -> int:
    """Load, then serve; 1 when the feed thread or the pushing task dies (said on stderr)."""
    feed = gateway.feed
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"feedmux web: loading the market from {source}", flush=True)
    while not feed.ready.is_set():  # pages get the whole market from their start
        if stop.is_set():
            return 0
        await asyncio.sleep(0.05)
    if feed.ended.is_set():
        raise ConsumerError(f"the run's feed could not be read: {feed.error}")
    listener.listen(128)
    server = await serve(gateway.handle, sock=listener, compression=None, max_size=1 << 16,
                         process_request=gateway.http)  # fmt: skip
    async with server:
        port = listener.getsockname()[1]
        if _loopback(gateway.settings.host):
            gateway.serving_on(port)
        query = "?token=<your --web-token>" if gateway.settings.token else ""
        print(f"feedmux web: serving http://{gateway.settings.host}:{port}/{query}", flush=True)
        pusher = asyncio.create_task(gateway.push())
        ended = asyncio.create_task(asyncio.to_thread(feed.ended.wait))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({pusher, ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
        failure = _failure(pusher, feed) if not stop.is_set() else ""
        for task in (pusher, stopped):
            task.cancel()
        feed.stop()  # (its thread ends: the wait above returns)
        await asyncio.gather(ended, return_exceptions=True)
        print(f"feedmux web: stopped ({gateway.updates:,} updates, {gateway.lines_sent:,} lines "
              f"to {gateway.pages_served:,} pages)", flush=True)  # fmt: skip
    if failure:
        print(f"feedmux web: error: {failure}", file=sys.stderr)
        return 1
    return 0


def _failure(pusher: asyncio.Task[None], feed: Feed) -> str:
    if pusher.done() and not pusher.cancelled() and pusher.exception() is not None:
        return f"pushing updates failed: {pusher.exception()!r}"
    return f"the run's feed ended: {feed.error or 'unknown'}"
