"""Wiring of ``feedmux web``: the run's manifest, the board, its feed thread, the server."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import signal
import socket
import sys
import threading
from pathlib import Path

from websockets.asyncio.server import serve

from feedmux.client.reader import store_files
from feedmux.errors import ConfigError, ConsumerError, StoreError
from feedmux.market.sessions import BarSlots, sessions_of_run
from feedmux.ops import instance, pipes
from feedmux.ops.config import read_manifest
from feedmux.shard.stores.urls import SQLITE, parse_store
from feedmux.web.board import Board
from feedmux.web.feed import Feed, follows
from feedmux.web.gateway import Gateway, WebSettings

_log = logging.getLogger("feedmux.web")


def say(text: str) -> None:
    """A line on stdout; a reader that went away (`feedmux web | head -1`) does not stop the
    gateway: what follows goes nowhere."""
    try:
        print(f"feedmux web: {text}", flush=True)
    except BrokenPipeError:
        pipes.silence(sys.stdout)


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
    if not logging.getLogger().handlers:  # warnings on stderr, with the time and who says it
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, datefmt="%H:%M:%S",
                            format="%(asctime)s feedmux web: %(message)s")  # fmt: skip
    instance.require(run_dir)
    manifest = read_manifest(run_dir)
    settings = dataclasses.replace(settings, silent_after_s=manifest.silent_after_s)
    step = follows(feed_kind, manifest)  # (ConfigError: --feed moves of a run without)
    listener = _bind(settings)  # a port in use is said now, not after loading the market
    sessions, problem = sessions_of_run(manifest.calendar_file, run_dir)
    if problem:
        _log.warning("%s", problem)
    slots = BarSlots(sessions if manifest.bar_sessions == "exchange" else None,
                     manifest.bars_extended)  # fmt: skip
    lock = threading.Lock()
    board = Board(slots, end_label=manifest.bar_label != "start", with_trades=not step)
    feed = Feed(run_dir, board, lock, choice=feed_kind, manifest=manifest,
                store=_store(store, manifest.data_dir) or manifest.sqlite_store)  # fmt: skip
    gateway = Gateway(settings, board, feed, lock, sessions=sessions)
    what = f"moves of at least {step:g}" if step else "every trade"
    feed.start()
    try:
        return asyncio.run(_serve(gateway, listener, f"{manifest.shards} shards of {run_dir}, "
                                  f"{what}"))  # fmt: skip
    finally:
        feed.stop()
        listener.close()


def _store(url: str, data_dir: str) -> str:
    """``--store``, checked now: a typo is an error, not a day of empty charts."""
    if not url:
        return ""
    store = parse_store(url if "://" in url else f"sqlite://{url}", data_dir)
    if store.kind == SQLITE:
        try:
            store_files(Path(store.location))
        except StoreError as exc:
            raise ConfigError(f"--store: {exc}") from None
    return store.location


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
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    say(f"loading the market from {source}")
    while not feed.ready.is_set():  # pages get the whole market from their start
        if stop.is_set():
            return 0
        await asyncio.sleep(0.05)
    if feed.ended.is_set():
        raise ConsumerError(f"the run's feed could not be read: {feed.error}")
    listener.listen(128)
    port = listener.getsockname()[1]
    if _loopback(gateway.settings.host):
        gateway.serving_on(port)  # before the first request
    server = await serve(gateway.handle, sock=listener, compression=None, max_size=1 << 16,
                         process_request=gateway.http)  # fmt: skip
    async with server:
        query = "?token=<your --web-token>" if gateway.settings.token else ""
        host = (
            f"[{gateway.settings.host}]" if ":" in gateway.settings.host else gateway.settings.host
        )
        say(f"serving http://{host}:{port}/{query}")
        pusher = asyncio.create_task(gateway.push())
        ended = asyncio.create_task(asyncio.to_thread(feed.ended.wait))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({pusher, ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
        failure = _failure(pusher, feed) if not stop.is_set() else ""
        for task in (pusher, stopped):
            task.cancel()
        feed.stop()  # (its thread ends: the wait above returns)
        await asyncio.gather(ended, return_exceptions=True)
        pages = "page" if gateway.pages_served == 1 else "pages"
        say(
            f"stopped ({gateway.updates:,} updates, {gateway.lines_sent:,} lines to "
            f"{gateway.pages_served:,} {pages})"
        )
    if failure:
        print(f"feedmux web: error: {failure}", file=sys.stderr)
        return 1
    return 0


def _failure(pusher: asyncio.Task[None], feed: Feed) -> str:
    if pusher.done() and not pusher.cancelled() and pusher.exception() is not None:
        return f"pushing updates failed: {pusher.exception()!r}"
    return f"the run's feed ended: {feed.error or 'unknown'}"
