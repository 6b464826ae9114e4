"""Lanes: the rows of one kind on their way to every store (or relay) that keeps them.

A lane batches its rows (``batch_rows`` rows, or ``batch_delay`` after the first:
feedmux/shard/batching.py) and hands every batch to each of its targets' writers, which commit
on their own threads and retry a failing target without dropping anything
(feedmux/shard/stores/background.py, retry.py). Rows go to every target in the order the lane
got them, so "the slowest target has written N" means the lane's first N rows are committed
everywhere: that is what an acknowledgement may claim (``ShardState.committed``).

A shard has one lane per kind of row (ticks, books, bars), each to every ``--store``, and one per
relay (Redis Streams with ``--redis``, NATS JetStream with ``--nats``) for the publications of the
families that are relayed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from feedmux.errors import FeedmuxError
from feedmux.model import Bar, Depth, Tick
from feedmux.ops.config import Settings
from feedmux.shard.batching import Batcher
from feedmux.shard.histogram import WriteTimer
from feedmux.shard.jetstream import JetStreamPublisher
from feedmux.shard.state import Output, Publication
from feedmux.shard.stores.background import BackgroundWriter
from feedmux.shard.stores.base import Sink, WriteResult
from feedmux.shard.stores.commit_log import CommitLog
from feedmux.shard.stores.retry import RetryingWriter
from feedmux.shard.stores.urls import open_sink
from feedmux.shard.streams import StreamPublisher

T = TypeVar("T")


class Writer(Protocol[T]):
    """Commits batches in order, retrying; its counters only grow (a BackgroundWriter)."""

    def submit(self, batch: list[T]) -> None: ...

    def write_now(self, batch: list[T]) -> None: ...

    def close(self, timeout_s: float) -> int: ...

    @property
    def written(self) -> int: ...

    @property
    def stored(self) -> int: ...

    @property
    def duplicates(self) -> int: ...

    @property
    def backlog(self) -> int: ...

    @property
    def failures(self) -> int: ...

    @property
    def batches(self) -> int: ...

    @property
    def last_commit_ns(self) -> int: ...


@dataclass
class Target(Generic[T]):
    """One store (or relay) a lane writes to."""

    shown: str  # as logs and status show it (a password masked)
    writer: Writer[T]
    timer: WriteTimer | None = None  # rows per batch, commit time, receive -> commit (ticks)
    close: Callable[[], None] = field(default=lambda: None)  # its connection, after the writer


class Lane(Generic[T]):
    """A batcher and the writers of every target for one kind of row."""

    def __init__(self, kind: str, targets: Sequence[Target[T]], batcher: Batcher[T], *,
                 empty_batch_at_close: bool = False) -> None:  # fmt: skip
        if not targets:
            raise ValueError(f"the {kind} lane needs a target")
        self.kind = kind
        self.targets = list(targets)
        self._batcher = batcher
        self.added = 0  # rows handed to the lane, ever: ``written`` reaches it when all are in
        # SQLite merges its recent ticks on an empty batch, counting the duplicates it finds.
        self._empty_batch_at_close = empty_batch_at_close

    def add(self, rows: list[T]) -> None:
        self.added += len(rows)
        for batch in self._batcher.extend(rows):
            self._submit(batch)

    def _submit(self, batch: list[T]) -> None:
        for target in self.targets:
            target.writer.submit(batch)

    def deadline(self) -> int | None:
        """When the pending rows are due (None: nothing pending)."""
        return self._batcher.deadline()

    def flush_due(self) -> None:
        """The pending rows, if their time has come."""
        due = self._batcher.due()
        if due is not None:
            self._submit(due)

    def flush(self) -> None:
        """Every pending row, now."""
        if len(self._batcher):
            self._submit(self._batcher.take())

    @property
    def slowest(self) -> Target[T]:
        return min(self.targets, key=lambda t: t.writer.written)

    @property
    def written(self) -> int:
        """The lane's first rows every target has committed (inserted, or found stored)."""
        return min(t.writer.written for t in self.targets)

    @property
    def stored(self) -> int:
        """Rows the slowest target inserted (a row counts once every target has it)."""
        return self.slowest.writer.stored

    @property
    def duplicates(self) -> int:
        return self.slowest.writer.duplicates

    @property
    def backlog(self) -> int:
        """Rows not yet committed by the slowest target, pending ones included."""
        return max(t.writer.backlog for t in self.targets) + len(self._batcher)

    @property
    def failures(self) -> int:
        return sum(t.writer.failures for t in self.targets)

    @property
    def last_commit_ns(self) -> int:
        return min(t.writer.last_commit_ns for t in self.targets)

    def close(self, timeout_s: float) -> int:
        """``stop_writing``, then ``close_targets``: for a lane alone."""
        unwritten = self.stop_writing(timeout_s)
        self.close_targets()
        return unwritten

    def stop_writing(self, timeout_s: float) -> int:
        """Write everything (retrying a failing target up to ``timeout_s``) and stop the
        writer threads; the rows still not written, summed over targets."""
        self.flush()
        return sum(t.writer.close(timeout_s) for t in self.targets)

    def close_targets(self) -> None:
        """The empty batch (SQLite merges its recent ticks), then close the connections. Only
        once no lane writes any more: the lanes of a shard share its SQLite file."""
        if self._empty_batch_at_close:
            for target in self.targets:
                target.writer.write_now([])
        for target in self.targets:
            target.close()


class Written(NamedTuple):
    """What an acknowledgement may claim (``ShardState.committed``'s arguments)."""

    ticks: int
    books: int
    relays: int | None  # None: no relay


@dataclass
class Lanes:
    """A shard's lanes: ticks, books and bars to every store; publications to every relay."""

    ticks: Lane[Tick]
    books: Lane[Depth]
    bars: Lane[Bar]
    redis: Lane[Publication] | None = None  # a relay: Redis Streams, when on
    nats: Lane[Publication] | None = None  # a relay: NATS JetStream, when on
    commit_log: CommitLog | None = None
    # The first store's tick connection: the snapshot and recent bars after a restart.
    restore_from: Sink | None = None

    @property
    def relays(self) -> list[Lane[Publication]]:
        return [relay for relay in (self.redis, self.nats) if relay is not None]

    @property
    def every(self) -> list[Lane[Any]]:
        return [self.ticks, self.books, self.bars, *self.relays]

    def take(self, out: Output) -> None:
        """Every row and relayed publication of a ShardState output, to its lane."""
        self.ticks.add(out.ticks)
        self.books.add(out.books)
        self.bars.add(out.bars)
        for relay in self.relays:
            relay.add(out.relayed)

    def deadline(self) -> int | None:
        due = [d for d in (lane.deadline() for lane in self.every) if d is not None]
        return min(due, default=None)

    def flush_due(self) -> None:
        for lane in self.every:
            lane.flush_due()

    def written(self) -> Written:
        relays = min((relay.written for relay in self.relays), default=None)
        return Written(self.ticks.written, self.books.written, relays)

    @property
    def failures(self) -> int:
        return sum(lane.failures for lane in self.every)

    def close(self, timeout_s: float) -> int:
        """Write what every lane holds and close them; the rows still not written."""
        unwritten = sum(lane.stop_writing(timeout_s) for lane in self.every)
        for lane in self.every:
            lane.close_targets()
        if self.commit_log is not None:
            self.commit_log.close()
        return unwritten


def open_lanes(settings: Settings, shard: int, clock: Callable[[], int] = time.monotonic_ns
               ) -> Lanes:  # fmt: skip
    """The lanes of ``shard`` as ``settings`` say (raises FeedmuxError when a store or Redis
    cannot be opened). One connection per writer thread: each runs its own transactions."""
    opened: list[Callable[[], None]] = []  # closed again if a later one fails
    try:
        return _open(settings, shard, clock, opened)
    except FeedmuxError:
        for close in opened:
            close()
        raise


def _open(settings: Settings, shard: int, clock: Callable[[], int],
          opened: list[Callable[[], None]]) -> Lanes:  # fmt: skip
    def batcher() -> Batcher[Any]:
        return Batcher(settings.batch_rows, settings.batch_delay_ms * 1_000_000, clock)

    def target(shown: str, write: Callable[[list[T]], WriteResult], name: str, *,
               close: Callable[[], None], timer: WriteTimer | None = None,
               kind: str = "store") -> Target[T]:  # fmt: skip
        writer = BackgroundWriter(RetryingWriter(write, clock, kind=kind), name)

        def stop() -> None:
            writer.close(0)
            close()

        opened.append(stop)
        return Target(shown, writer, timer, close)

    commit_log = CommitLog(settings.paths.commit_log(shard)) if settings.commit_log else None
    if commit_log is not None:
        opened.append(commit_log.close)
    ticks: list[Target[Tick]] = []
    books: list[Target[Depth]] = []
    bars: list[Target[Bar]] = []
    first: Sink | None = None
    for store in settings.store_list():
        sink = open_sink(store, shard)
        first = first or sink
        timer = WriteTimer()
        write: Callable[[list[Tick]], WriteResult] = timer.wrap(sink.write_batch)
        if commit_log is not None and not ticks:  # benchmarks: the first store's commits
            write = commit_log.wrap(write)
        ticks.append(target(store.shown, write, f"ticks-{store.kind}", close=sink.close,
                            timer=timer))  # fmt: skip
        sink = open_sink(store, shard)
        books.append(target(store.shown, sink.write_books, f"books-{store.kind}",
                            close=sink.close))  # fmt: skip
        sink = open_sink(store, shard)
        bars.append(target(store.shown, sink.write_bars, f"bars-{store.kind}",
                           close=sink.close))  # fmt: skip
    redis: Lane[Publication] | None = None
    if settings.redis_url:  # a durable copy for consumers elsewhere; acks wait for it too
        publisher = StreamPublisher(settings.redis_url, shard, settings.redis_prefix,
                                    settings.redis_maxlen)  # fmt: skip
        redis = Lane("redis", [target(publisher.shown, publisher.write_publications,
                                      "redis-streams", close=publisher.close, kind="redis")],
                     batcher())  # fmt: skip
    nats: Lane[Publication] | None = None
    if settings.nats_urls:  # the bus across machines; acks wait for JetStream's too
        jet = JetStreamPublisher(settings.nats_urls, settings.nats_prefix, settings.provider,
                                 shard)  # fmt: skip
        nats = Lane("nats", [target(jet.shown, jet.write_publications, "nats-jetstream",
                                    close=jet.close, kind="nats")], batcher())  # fmt: skip
    return Lanes(Lane("ticks", ticks, batcher(), empty_batch_at_close=True),
                 Lane("books", books, batcher()), Lane("bars", bars, batcher()), redis, nats,
                 commit_log, first)  # fmt: skip
