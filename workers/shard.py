"""Shard worker: PULL from the receiver → snapshot, batched store, PUB. Wiring and one loop."""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import zmq

from feedmux import families
from feedmux.client.streams import Frame, StreamPublisher
from feedmux.errors import FeedmuxError
from feedmux.model import Tick
from feedmux.ops.config import Settings
from feedmux.routing import shard_of
from feedmux.shard.batching import Batcher
from feedmux.shard.histogram import WriteTimer
from feedmux.shard.state import ShardState
from feedmux.shard.stores.background import BackgroundWriter
from feedmux.shard.stores.base import WriteResult
from feedmux.shard.stores.commit_log import CommitLog
from feedmux.shard.stores.retry import RetryingWriter
from feedmux.shard.stores.urls import open_sink
from feedmux.stats import read_stats, write_stats
from feedmux.stats.shard import BarStats, MoveStats, RedisStats, ShardStats, StoreStats
from feedmux.transports import zmq as zt
from feedmux.writes import health

from ._process import StopFlag, run_logging

BURST = 256  # bus messages handled before timers get a turn
DRAIN_QUIET_NS = 500_000_000  # after SIGTERM, no End yet: exit once quiet this long since it
# The supervisor died: the receiver was told at the same moment and still hands over its last
# ticks and an End, which may come after a longer pause than an ordinary stop's.
ORPHAN_DRAIN_QUIET_NS = 5_000_000_000
MAX_POLL_MS = 100
FINAL_WRITE_S = 60  # at exit, keep retrying a failing store this long
ACK_LINGER_MS = 2000
BAR_REBUILD_NS = 7 * 60 * 10**9  # a restart rebuilds bars from this much stored past


def log_news(state: ShardState, logged: dict[str, int], log: logging.Logger) -> None:
    """One line per second at most about bus holes and resends, with how many since."""
    if state.bus_gaps > logged["gaps_logged"]:
        log.warning("%d bus messages will never come (the receiver's --overflow drop)",
                    state.bus_gaps - logged["gaps_logged"])  # fmt: skip
        logged["gaps_logged"] = state.bus_gaps
    if state.rewinds_asked > logged["rewinds_logged"]:
        log.info("asked the receiver %d time(s) to resend (a restart or a hole)",
                 state.rewinds_asked - logged["rewinds_logged"])  # fmt: skip
        logged["rewinds_logged"] = state.rewinds_asked


def drained(ended: bool, now: int, last_bus_ns: int, stop_ns: int, quiet_ns: int) -> bool:
    """After a stop request (at ``stop_ns``): done once the receiver's End came, or, bounding
    the wait, once the bus has been quiet ``quiet_ns`` since the later of the stop and its last
    message (a feed quiet before the stop must not cut off the receiver's last ticks)."""
    return ended or now - max(last_bus_ns, stop_ns) > quiet_ns


def submit(writers: list[BackgroundWriter[Any]], batches: list[list[Any]]) -> None:
    """Each batch to every store's writer of that kind."""
    for batch in batches:
        for writer in writers:
            writer.submit(batch)


def main(settings: Settings, shard: int, ready: Connection | None = None) -> int:
    stop = StopFlag(supervised=ready is not None)
    log = run_logging(settings, f"shard-{shard}")
    paths = settings.paths
    stores = settings.store_list()
    try:  # one connection per writer thread: each runs its own transactions
        sinks = [open_sink(store, shard) for store in stores]
        book_sinks = [open_sink(store, shard) for store in stores]
        bar_sinks = [open_sink(store, shard) for store in stores]
    except FeedmuxError as exc:
        log.error("%s", exc)
        return 2
    commit_log = CommitLog(paths.commit_log(shard)) if settings.commit_log else None
    # Commits happen on writer threads, one per store and kind: a slow one (a WAL checkpoint,
    # a PostgreSQL restart) never delays publishing nor the other stores.
    writers: list[BackgroundWriter[Any]] = []
    timers: list[WriteTimer] = []  # per store: batch rows, commit time, receive -> commit
    book_writers: list[BackgroundWriter[Any]] = []
    bar_writers: list[BackgroundWriter[Any]] = []
    for store, sink, book_sink, bar_sink in zip(stores, sinks, book_sinks, bar_sinks,
                                                strict=True):  # fmt: skip
        timers.append(WriteTimer())
        write: Callable[[list[Tick]], WriteResult] = timers[-1].wrap(sink.write_batch)
        if commit_log is not None and not writers:  # benchmarks: the first store's commits
            write = commit_log.wrap(write)
        writers.append(BackgroundWriter(RetryingWriter(write, time.monotonic_ns),
                                        f"ticks-{store.kind}"))  # fmt: skip
        book_writers.append(BackgroundWriter(RetryingWriter(book_sink.write_books,
                                                            time.monotonic_ns),
                                             f"books-{store.kind}"))  # fmt: skip
        bar_writers.append(BackgroundWriter(RetryingWriter(bar_sink.write_bars, time.monotonic_ns),
                                            f"bars-{store.kind}"))  # fmt: skip
    # --redis: every publication also goes to the shard's stream, batched and retried like a
    # store, and acknowledged only once Redis has it.
    streams: BackgroundWriter[Frame] | None = None
    frame_batcher: Batcher[Frame] = Batcher(settings.batch_rows, settings.batch_delay_ms
                                            * 1_000_000, time.monotonic_ns)  # fmt: skip
    if settings.redis_url:
        try:
            publisher = StreamPublisher(settings.redis_url, shard, settings.redis_prefix,
                                        settings.redis_maxlen)  # fmt: skip
        except FeedmuxError as exc:
            log.error("%s", exc)
            return 2
        streams = BackgroundWriter(RetryingWriter(publisher.write_frames, time.monotonic_ns,
                                                  kind="redis"), "redis-streams")  # fmt: skip
    ctx = zt.context()
    curve, auth = None, None
    if settings.curve_secret_file:  # consumers over TCP: encrypted, and authenticated
        curve = zt.load_keys(settings.curve_secret_file)  # checked by the CLI already
        auth = zt.curve_server(ctx, settings.curve_clients_dir)
    acks = zt.push(ctx, paths.acks, linger_ms=ACK_LINGER_MS, immediate=False)
    bus = zt.pull(ctx, paths.shard_in(shard))
    pub = zt.pub(ctx, paths.shard_pub(shard), hwm=settings.pub_queue, curve=curve)
    snap = zt.router(ctx, paths.shard_snapshot(shard), curve=curve)
    poller = zmq.Poller()
    poller.register(bus, zmq.POLLIN)
    poller.register(snap, zmq.POLLIN)
    state = ShardState(shard, settings.batch_rows, settings.batch_delay_ms * 1_000_000,
                       time.monotonic_ns, min_move=settings.min_move)  # fmt: skip
    # After a crash: the snapshot as far as the first store has it (this shard's codes only:
    # a store may hold other shards' codes, or another shard count's).
    try:
        ticks, books = sinks[0].latest()
    except FeedmuxError as exc:  # the snapshot refills from the stream; nothing is lost
        log.warning("cannot restore the snapshot from %s: %s", stores[0].shown, exc)
        ticks, books = [], []
    state.restore([t for t in ticks if shard_of(t.code, settings.shards) == shard],
                  [b for b in books if shard_of(b.code, settings.shards) == shard])  # fmt: skip
    try:  # the bars of the last minutes, as far as the store has their ticks
        newest = max((t.time_ns for t in ticks), default=0)  # the data's time, not the clock's
        recent = sinks[0].recent_ticks(newest - BAR_REBUILD_NS) if newest else []
    except FeedmuxError as exc:
        log.warning("cannot rebuild recent bars from %s: %s", stores[0].shown, exc)
        recent = []
    rebuilt = state.restore_bars([t for t in recent if shard_of(t.code, settings.shards) == shard])
    # Counters of an earlier incarnation in this run, so totals survive a restart.
    before = read_stats(paths.stats_dir).shards.get(shard)
    # Ticks and books each flow batcher -> writer by the same rules (100 rows or 200 ms).
    lanes: tuple[tuple[Batcher[Any], list[BackgroundWriter[Any]]], ...] = (
        (state.batcher, writers),
        (state.book_batcher, book_writers),
        (state.bar_batcher, bar_writers),
        *([(frame_batcher, [streams])] if streams is not None else []),
    )
    every_writer = writers + book_writers + bar_writers + ([streams] if streams is not None else [])
    stats_every = settings.stats_interval_ms * 1_000_000
    next_tick = time.monotonic_ns()
    last_bus_ns = next_tick
    stop_ns: int | None = None  # when the stop was first seen
    counters = {"acks_dropped": 0, "gaps_logged": 0, "rewinds_logged": 0}
    if ready is not None:
        ready.send(shard)
    log.info("ready: bus %s, pub %s", paths.shard_in(shard), paths.shard_pub(shard))

    def report(final: bool = False) -> None:
        # A row counts as stored once every store has it; each store's own numbers follow.
        slowest = min(writers, key=lambda w: w.written)
        slowest_books = min(book_writers, key=lambda w: w.written)
        write_stats(paths.stats_dir, ShardStats(
            shard=shard, pid=os.getpid(), final=final, time_ns=time.time_ns(),
            cpu_s=time.process_time(),
            max_rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            failing_writes=health.report(),  # e.g. store failing: disk full (retried)
            received=state.received, published=state.pub_seq + state.book_seq,
            stored=slowest.stored, duplicates=slowest.duplicates,
            resent_dropped=state.resent_dropped,
            books_received=state.received_books, books_stored=slowest_books.stored,
            books_duplicates=slowest_books.duplicates,
            books_resent_dropped=state.book_filter.resent, restarts=0,
            batches=slowest.writer.batches,
            write_failures=sum(w.writer.failures for w in every_writer),
            backlog=max(w.backlog for w in writers) + len(state.batcher),
            last_commit_ns=min(w.writer.last_commit_ns for w in writers),
            stores={store.shown: StoreStats(
                stored=w.stored, duplicates=w.duplicates, backlog=w.backlog,
                failures=w.writer.failures, last_commit_ns=w.writer.last_commit_ns,
                batch_rows=t.rows.state(), commit_s=t.commit_s.state(),
                receive_to_commit_s=t.receive_to_commit_s.state(),
            ) for store, w, t in zip(stores, writers, timers, strict=True)},
            receive_to_publish_s=state.receive_to_publish_s.state(),
            moves=MoveStats(trades=state.move_seqs[families.TRADE_MOVES],
                            books=state.move_seqs[families.BOOK_MOVES]),
            bars=BarStats(published=state.bar_seq, stored=min(w.stored for w in bar_writers),
                          late=state.bars.late, too_late=state.bars.too_late,
                          resent=state.resent_dropped),  # bars take new ticks only
            redis=None if streams is None else RedisStats(
                published=streams.stored, backlog=streams.backlog,
                failures=streams.writer.failures),
            bus_gaps=state.bus_gaps, bus_ignored=state.bus_ignored,
            rewinds_asked=state.rewinds_asked, bad_messages=state.bad_messages,
            codes=len(state.snapshot), acks_dropped=counters["acks_dropped"],
        ).carry(before))  # fmt: skip

    def publish(frames: list[tuple[bytes, bytes]]) -> None:
        for topic, payload in frames:
            pub.send(topic, zmq.SNDMORE)
            pub.send(payload)

    if rebuilt:  # bars that closed while the shard was down
        submit(bar_writers, [rebuilt])

    def acknowledge() -> None:
        """Tell the receiver what is committed (it forgets it) or what to send again."""
        reports = state.take_reports()
        ack = state.committed(min(w.written for w in writers),
                              min(w.written for w in book_writers),
                              streams.written if streams is not None else None)  # fmt: skip
        for message in [*reports, ack] if ack is not None else reports:
            try:
                acks.send(message, zmq.NOBLOCK)
            except zmq.Again:  # receiver gone: acks are cumulative, the next one says it all
                counters["acks_dropped"] += 1

    while True:
        now = time.monotonic_ns()
        deadlines = [next_tick, *(batcher.deadline() for batcher, _ in lanes)]
        wake = min(d for d in deadlines if d is not None)
        events = dict(poller.poll(max(0, min(MAX_POLL_MS, (wake - now) // 1_000_000))))
        if bus in events:
            for _ in range(BURST):
                try:
                    raw = bus.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                frames, batches, book_batches, bar_batches = state.on_bus(raw)
                publish(frames)
                if streams is not None:  # ticks and books; bars go to subscribers only
                    for frame in frames:
                        full = frame_batcher.add(frame)
                        if full is not None:
                            streams.submit(full)
                submit(writers, batches)
                submit(book_writers, book_batches)
                submit(bar_writers, bar_batches)
            last_bus_ns = time.monotonic_ns()
        if snap in events:
            ident, empty, request = snap.recv_multipart()
            snap.send_multipart([ident, empty, state.snapshot_reply(request)])
        for batcher, lane_writers in lanes:
            due = batcher.due()
            if due is not None:
                submit(lane_writers, [due])
        acknowledge()
        now = time.monotonic_ns()
        if now >= next_tick:
            next_tick = now + stats_every
            log_news(state, counters, log)
            bar_frames, bar_batches = state.bars_due()
            publish([*bar_frames, state.heartbeat()])
            submit(bar_writers, bar_batches)
            report()
            stop.check_parent()
        if stop.requested:
            if stop_ns is None:  # once: a SIGTERM may be Linux saying the supervisor died
                stop_ns = now
                stop.check_parent()
            quiet_ns = ORPHAN_DRAIN_QUIET_NS if stop.orphaned else DRAIN_QUIET_NS
            if drained(state.ended, now, last_bus_ns, stop_ns, quiet_ns):
                break

    bar_frames, bar_batches = state.close_bars()
    publish(bar_frames)
    submit(bar_writers, bar_batches)
    for batcher, lane_writers in lanes:
        if len(batcher):
            submit(lane_writers, [batcher.take()])
    unwritten = sum(w.close(FINAL_WRITE_S) for w in every_writer)  # retries back off inside
    for writer in writers:  # an empty batch: SQLite merges its recent rows, counting duplicates
        writer.writer.submit([])
    if unwritten:
        log.error("store still failing after %d s: %d received rows NOT stored",
                  FINAL_WRITE_S, unwritten)  # fmt: skip
    acknowledge()
    report(final=True)
    log.info("stopped: %d ticks received, %d stored, %d duplicates",
             state.received, min(w.stored for w in writers),
             min(w.duplicates for w in writers))  # fmt: skip
    for sink in sinks + book_sinks + bar_sinks:
        sink.close()
    if commit_log is not None:
        commit_log.close()
    acks.close()  # lingers so the last ack reaches the receiver
    if auth is not None:
        auth.stop()
    ctx.destroy(linger=0)
    return 0
