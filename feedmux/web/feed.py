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
from feedmux.errors import ConfigError, FeedmuxError
from feedmux.market.day import trading_day
from feedmux.model import Bar, Depth, Tick
from feedmux.ops import instance
from feedmux.ops.config import Manifest, read_manifest
from feedmux.web.board import AMEND_NS, Board
from feedmux.web.history import bars_since, day_start
from feedmux.web.protocol import PipelineState

_log = logging.getLogger("feedmux.web")
STALE_S = 3.0  # a shard heartbeats once a second: three missed, the pipeline is "stale"
_PUBLISHED_BARS = 10  # a code's last bars as published, for a chart the store lags behind
_BATCH = 1000  # items applied under one holding of the lock
# After the queue is drained, the thread sleeps this long: it then wakes 50 times a second,
# not once per message (at 10,000 ticks/s, 40% less CPU: docs/benchmarks.md); pages see lines
# every --web-interval (250 ms by default) anyway.
_REST_S = 0.02


def follows(choice: str, manifest: Manifest) -> float:
    """What ``--feed`` ``choice`` follows of a run: its moves' step, or 0 for every trade."""
    step = manifest.min_move.get("trades", 0.0)
    if choice == "moves" and not step:
        raise ConfigError("--feed moves: the run publishes no moves; start it with "
                          "--min-move trades=STEP, or use --feed trades")  # fmt: skip
    return step if choice != "trades" else 0.0


class Feed:
    """``choice``: ``--feed`` (auto, moves: the run's ``--min-move`` trades, ``MT|``; trades:
    every trade, ``T|``), followed again when the run restarts with other moves. ``store``:
    where the run keeps its bars (a data dir or ``postgresql://`` URL; "" none)."""

    def __init__(self, run_dir: Path, board: Board, lock: threading.Lock, *, choice: str,
                 manifest: Manifest, store: str) -> None:  # fmt: skip
        self.run_dir = run_dir
        self.board = board
        self.lock = lock
        self.choice = choice
        self.step = follows(choice, manifest)  # the moves' step; 0: every trade
        self.pid = manifest.pid  # the run followed
        self.shards = manifest.shards  # its shards: another count needs another Subscriber
        self.followed = 1  # counts what was followed: another run's other moves add one
        self.store = store
        self.watched: set[str] = set()  # codes whose bars a page charts (under the lock)
        self.bars: list[Bar] = []  # closed bars of watched codes, for the next update
        self.published: dict[str, deque[Bar]] = defaultdict(lambda: deque(maxlen=_PUBLISHED_BARS))
        self.pipeline: PipelineState = "up"
        self.snapshots = 0  # asked of the shards
        self.error = ""  # why the feed thread ended, if it did
        self.ready = threading.Event()  # the first snapshot and the day's bars are on the board
        self.ended = threading.Event()
        self._codes: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feedmux-web-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def moves(self) -> bool:
        return self.step > 0

    def take_bars(self) -> list[Bar]:
        """Call with the lock held."""
        bars, self.bars = self.bars, []
        return bars

    def chart(self, code: str) -> list[Bar]:
        """A code's bars of the day its line holds: the store's and those published since
        (blocking: call it off the event loop)."""
        with self.lock:
            day = self.board.day_of(code)
            published = list(self.published.get(code, ()))
        if day < 0:
            return []
        stored = bars_since(self.store, [code], day_start([code], self.board.now_ns))
        by_start = {self.board.bar_start(b): b for b in (*stored, *published)}  # newest last
        return [by_start[s] for s in sorted(by_start)
                if trading_day(s, code) == day]  # fmt: skip

    def _run(self) -> None:
        try:
            while not self._stop.is_set():  # again when the run restarts with other moves
                moves = self.moves
                with Subscriber(run_dir=self.run_dir, trades=not moves, trade_moves=moves,
                                bars=True, on_gap="count") as sub:  # fmt: skip
                    self._load_day(sub)
                    self.ready.set()
                    self._follow(sub)
        except Exception as exc:  # said and shown: the gateway then stops (exit 1)
            self.error = str(exc) or type(exc).__name__
            self.pipeline = "stopped"
            if not isinstance(exc, FeedmuxError):
                _log.exception("the feed failed")
        finally:
            self.ended.set()
            self.ready.set()

    def _load_day(self, sub: Subscriber) -> None:
        """The codes, the shards' snapshot (what arrives after it is newer: snapshot-then-
        stream), and the day's bars from the store."""
        try:
            self._codes = Control(self.run_dir).subscriptions()
        except FeedmuxError as exc:
            _log.warning("subscriptions not listed (%s): codes appear as they trade", exc)
        with self.lock:
            self.board.add_codes(self._codes)
        self._snapshot(sub)
        self._load_bars(day_start(self._codes, self.board.now_ns))

    def _load_bars(self, since_ns: int) -> None:
        with self.lock:
            codes = self._codes or sorted({line.code for line in self.board.lines()})
        bars = bars_since(self.store, codes, since_ns)
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
            if 0 < len(batch) < _BATCH:
                self._stop.wait(_REST_S)
            if len(sub.gap_events) != gaps:
                # Messages lost: the snapshot makes the prices right, the store the bars.
                _log.warning("the feed missed messages: taking a snapshot again")
                self._snapshot(sub)
                self._load_bars(self.board.now_ns - AMEND_NS)
                gaps = len(sub.gap_events)
            now = time.monotonic()
            if now - checked >= 1.0:
                checked = now
                self._check(sub, now)
                if self._restarted():
                    return

    def _apply(self, items: list[Tick | Depth | Bar]) -> None:
        board = self.board
        with self.lock:
            for item in items:
                if isinstance(item, Tick):
                    board.tick(item)
                elif isinstance(item, Bar) and board.bar(item):
                    self.published[item.code].append(item)
                    if item.code in self.watched:
                        self.bars.append(item)

    def _restarted(self) -> bool:
        """Whether the run restarted so that the Subscriber must be made again: with another
        shard count (other sockets), or publishing other moves (or none) than followed (other
        topics: the pages are told, ``followed``)."""
        try:
            manifest = read_manifest(self.run_dir)
        except FeedmuxError:
            return False
        if manifest.pid == self.pid:
            return False
        self.pid = manifest.pid
        try:
            step = follows(self.choice, manifest)
        except ConfigError as exc:
            _log.warning("the run restarted: %s; following every trade", exc)
            step = 0.0
        resharded = manifest.shards != self.shards
        if resharded:
            _log.warning("the run restarted with %d shards: following them", manifest.shards)
            self.shards = manifest.shards
        if step == self.step:
            return resharded
        what = f"moves of at least {step:g}" if step else "every trade"
        _log.warning("the run restarted with other --min-move: following %s", what)
        with self.lock:
            self.step = step
            self.board.with_trades = not step
            self.followed += 1
        return True

    def _check(self, sub: Subscriber, now: float) -> None:
        if now - sub.heard_at < STALE_S:
            self.pipeline = "up"
        elif instance.running(self.run_dir) is None:
            self.pipeline = "stopped"
        else:
            self.pipeline = "stale"
