"""Shard worker: PULL from the receiver → snapshot, batched store, PUB. Wiring and one loop."""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import zmq

from feedmux.batching import Batcher
from feedmux.config import Settings
from feedmux.errors import FeedmuxError
from feedmux.shard_state import ShardState
from feedmux.sinks.retry import RetryingWriter
from feedmux.sinks.sqlite import SqliteSink, shard_db_path
from feedmux.stats import write_stats
from feedmux.transports import zmq as zt
from workers._process import StopFlag, setup_logging

BURST = 256  # bus messages handled before timers get a turn
DRAIN_QUIET_NS = 500_000_000  # after SIGTERM without an End: exit once the bus is this quiet
MAX_POLL_MS = 100
FINAL_WRITE_NS = 60_000_000_000  # at exit, keep retrying a failing store this long


def main(settings: Settings, shard: int, ready: Connection | None = None) -> int:
    stop = StopFlag(supervised=ready is not None)
    log = setup_logging(settings.log_level, f"shard-{shard}")
    paths = settings.paths
    try:
        sink = SqliteSink(shard_db_path(Path(settings.data_dir), shard))
    except FeedmuxError as exc:
        log.error("%s", exc)
        return 2
    writer = RetryingWriter(sink.write_batch, time.monotonic_ns)
    book_writer = RetryingWriter(sink.write_books, time.monotonic_ns)
    ctx = zt.context()
    bus = zt.pull(ctx, paths.shard_in(shard))
    pub = zt.pub(ctx, paths.shard_pub(shard))
    snap = zt.router(ctx, paths.shard_snapshot(shard))
    poller = zmq.Poller()
    poller.register(bus, zmq.POLLIN)
    poller.register(snap, zmq.POLLIN)
    state = ShardState(
        shard, settings.batch_rows, settings.batch_delay_ms * 1_000_000, time.monotonic_ns
    )
    # Ticks and books each flow batcher -> writer by the same rules (100 rows or 200 ms).
    lanes: tuple[tuple[Batcher[Any], RetryingWriter[Any]], ...] = (
        (state.batcher, writer),
        (state.book_batcher, book_writer),
    )
    writers = [lane_writer for _, lane_writer in lanes]
    stats_every = settings.stats_interval_ms * 1_000_000
    next_tick = time.monotonic_ns()
    last_bus_ns = next_tick
    published = 0
    if ready is not None:
        ready.send(shard)
    log.info("ready: bus %s, pub %s", paths.shard_in(shard), paths.shard_pub(shard))

    def report(final: bool = False) -> None:
        write_stats(paths.stats_dir, f"shard-{shard}", {
            "role": "shard", "shard": shard, "final": final, "received": state.received,
            "published": published, "stored": writer.stored, "duplicates": writer.duplicates,
            "batches": writer.batches, "write_failures": writer.failures,
            "backlog": writer.backlog + len(state.batcher), "bus_gaps": state.bus_gaps,
            "bad_messages": state.bad_messages, "resent_dropped": state.resent_dropped,
            "codes": len(state.snapshot),
            "books_received": state.received_books, "books_stored": book_writer.stored,
            "books_duplicates": book_writer.duplicates,
            "last_commit_ns": writer.last_commit_ns, "time_ns": time.time_ns(),
        })  # fmt: skip

    while True:
        now = time.monotonic_ns()
        deadlines: list[int | None] = [next_tick]
        for batcher, lane_writer in lanes:
            deadlines += [batcher.deadline(), lane_writer.retry_deadline()]
        wake = min(d for d in deadlines if d is not None)
        events = dict(poller.poll(max(0, min(MAX_POLL_MS, (wake - now) // 1_000_000))))
        if bus in events:
            for _ in range(BURST):
                try:
                    raw = bus.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                frames, batches, book_batches = state.on_bus(raw)
                for topic, payload in frames:
                    pub.send(topic, zmq.SNDMORE)
                    pub.send(payload)
                published += len(frames)
                for batch in batches:
                    writer.submit(batch)
                for books in book_batches:
                    book_writer.submit(books)
            last_bus_ns = time.monotonic_ns()
        if snap in events:
            ident, empty, request = snap.recv_multipart()
            snap.send_multipart([ident, empty, state.snapshot_reply(request)])
        for batcher, lane_writer in lanes:
            due = batcher.due()
            if due is not None:
                lane_writer.submit(due)
            lane_writer.flush()
        now = time.monotonic_ns()
        if now >= next_tick:
            next_tick = now + stats_every
            topic, payload = state.heartbeat()
            pub.send(topic, zmq.SNDMORE)
            pub.send(payload)
            report()
        if stop.requested and (state.ended or now - last_bus_ns > DRAIN_QUIET_NS):
            break

    for batcher, lane_writer in lanes:
        if len(batcher):
            lane_writer.submit(batcher.take())
    give_up = time.monotonic_ns() + FINAL_WRITE_NS
    while any(w.backlog for w in writers) and time.monotonic_ns() < give_up:
        for w in writers:
            w.flush()  # retries back off inside
        if any(w.backlog for w in writers):
            time.sleep(0.05)
    if any(w.backlog for w in writers):
        log.error("store still failing after %d s: %d received rows NOT stored",
                  FINAL_WRITE_NS // 10**9, sum(w.backlog for w in writers))  # fmt: skip
    report(final=True)
    log.info("stopped: %d ticks received, %d stored, %d duplicates",
             state.received, writer.stored, writer.duplicates)  # fmt: skip
    sink.close()
    ctx.destroy(linger=0)
    return 0
