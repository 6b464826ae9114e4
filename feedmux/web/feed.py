"""The gateway's one consumer of the pipeline: a ``Subscriber`` on its own thread, applying
what arrives to the ``Board`` under a lock. However many pages are open, the shards see this
one subscriber (and one snapshot request per start or gap)."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

from feedmux.client.control import Control
from feedmux.client.subscriber import Subscriber
from feedmux.errors import FeedmuxError
from feedmux.model import Bar, Depth, Tick
from feedmux.ops import instance
from feedmux.web.board import Board

_log = logging.getLogger("feedmux.web")
STALE_S = 3.0  # a shard heartbeats once a second: three missed, the pipeline is "stale"
_RECENT_BARS = 5
_BATCH = 1000  # items applied under one holding of the lock
_STORE_DAY_NS = 26 * 3600 * 10**9  # bars read back at start: enough for any market's day


class Feed:
    """``moves``: the run's ``--min-move`` trades (``MT|``) instead of every trade (``T|``).
    ``store``: where the run keeps its bars (a data dir or ``postgresql://`` URL; "" none)."""

    def __init__(self, run_dir: Path, board: Board, lock: threading.Lock, *, moves: bool,
                 store: str) -> None:  # fmt: skip
        self.run_dir = run_dir
        self.board = board
        self.lock = lock
        self.moves = moves
        self.store = store
        self.watched: set[str] = set()  # codes whose bars a page charts (under the lock)
        self.bars: list[Bar] = []  # closed bars of watched codes, for the next update
        # Each code's last bars as published: a chart opened now has them even if the store
        # has not written them yet.
        self.recent: dict[str, deque[Bar]] = defaultdict(lambda: deque(maxlen=_RECENT_BARS))
        self.pipeline = "up"  # "up", "stale" or "stopped"
        self.snapshots = 0  # asked of the shards
        self.error = ""  # why the feed thread ended, if it did
        self.ready = threading.Event()  # the day's bars and the first snapshot are on the board
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feedmux-web-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def take_bars(self) -> list[Bar]:
        """Call with the lock held."""
        bars, self.bars = self.bars, []
        return bars

    def _run(self) -> None:
        try:
            with Subscriber(run_dir=self.run_dir, trades=not self.moves, trade_moves=self.moves,
                            bars=True, on_gap="count") as sub:  # fmt: skip
                self._load_day(sub)
                self.ready.set()
                self._follow(sub)
        except FeedmuxError as exc:
            self.error = str(exc)
            self.pipeline = "stopped"
            self.ready.set()
            _log.warning("the feed ended: %s", exc)

    def _load_day(self, sub: Subscriber) -> None:
        """The codes, the shards' snapshot (what arrives after it is newer: snapshot-then-
        stream), and the day's bars from the store."""
        try:
            codes = Control(self.run_dir).subscriptions()
        except FeedmuxError as exc:
            _log.warning("subscriptions not listed (%s): codes appear as they trade", exc)
            codes = []
        with self.lock:
            self.board.add_codes(codes)
        self._snapshot(sub)
        # Then the bars, read back from the data clock (a replayed day is not the wall's).
        bars = day_bars(self.store, None, self.board.newest_time_ns or time.time_ns())
        with self.lock:
            for bar in bars:
                self.board.bar(bar)

    def _snapshot(self, sub: Subscriber) -> None:
        while not self._stop.is_set():
            try:
                snap = sub.snapshot(timeout=5.0)
            except FeedmuxError as exc:
                self.pipeline = "stopped" if instance.running(self.run_dir) is None else "stale"
                _log.warning("no snapshot yet (%s): trying again", exc)
                self._stop.wait(1.0)
                continue
            self.snapshots += 1
            with self.lock:
                for tick in snap.ticks.values():
                    self.board.tick(tick, counted=False)
            self.pipeline = "up"
            return

    def _follow(self, sub: Subscriber) -> None:
        gaps = len(sub.gap_events)
        checked = time.monotonic()
        while not self._stop.is_set():
            batch: list[Tick | Depth | Bar] = []
            item = sub.recv(timeout=0.2)
            while item is not None:  # one lock for what is queued, up to a limit
                batch.append(item)
                item = sub.recv(timeout=0) if len(batch) < _BATCH else None
            if batch:
                self._apply(batch)
            if len(sub.gap_events) != gaps:  # messages lost: the snapshot makes the lines right
                _log.warning("the feed missed messages: taking a snapshot again")
                self._snapshot(sub)
                gaps = len(sub.gap_events)
            now = time.monotonic()
            if now - checked >= 1.0:
                checked = now
                self._check(sub, now)

    def _apply(self, items: list[Tick | Depth | Bar]) -> None:
        board = self.board
        with self.lock:
            for item in items:
                if isinstance(item, Tick):
                    board.tick(item)
                elif isinstance(item, Bar):
                    board.bar(item)
                    self.recent[item.code].append(item)
                    if item.code in self.watched:
                        self.bars.append(item)

    def _check(self, sub: Subscriber, now: float) -> None:
        if now - sub.heard_at < STALE_S:
            self.pipeline = "up"
        elif instance.running(self.run_dir) is None:
            self.pipeline = "stopped"
        else:
            self.pipeline = "stale"


def day_bars(store: str, codes: list[str] | None, now_ns: int) -> list[Bar]:
    """The bars of the last day before ``now_ns`` (the data clock) in ``store`` (a SQLite
    directory or PostgreSQL URL; "": none), sorted by minute; an unreadable store is said in
    the log and reads as none. (The board keeps each code's latest day of them.)"""
    if not store:
        return []
    import pandas as pd  # noqa: PLC0415 (only the gateway reads the store)

    from feedmux.client.reader import read_bars  # noqa: PLC0415

    try:
        since = pd.Timestamp(now_ns - _STORE_DAY_NS, unit="ns", tz="UTC")
        df = read_bars(store, codes, start=since)
    except FeedmuxError as exc:
        _log.warning("the day's bars not read (%s): volumes count from now", exc)
        return []
    cols = zip(df["code"].tolist(), df["minute"].astype("int64").tolist(), df["open"].tolist(),
               df["high"].tolist(), df["low"].tolist(), df["close"].tolist(),
               df["volume"].tolist(), df["turnover"].tolist(), df["count"].tolist(),
               strict=True)  # fmt: skip
    return [Bar(*c) for c in cols]
