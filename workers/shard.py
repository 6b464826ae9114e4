"""Shard worker: PULL from the receiver → snapshot, batched store, PUB. Wiring and one loop."""

from __future__ import annotations

import logging
import os
import resource
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import zmq

from feedmux.batching import Batcher
from feedmux.config import Settings
from feedmux.errors import FeedmuxError
from feedmux.shard_state import ShardState
from feedmux.sinks.background import BackgroundWriter
from feedmux.sinks.commit_log import CommitLog
from feedmux.sinks.retry import RetryingWriter
from feedmux.sinks.sqlite import SqliteSink, shard_db_path
from feedmux.stats import read_stats, write_stats
from feedmux.transports import zmq as zt
from workers._process import StopFlag, setup_logging

BURST = 256  # bus messages handled before timers get a turn
DRAIN_QUIET_NS = 500_000_000  # after SIGTERM without an End: exit once the bus is this quiet
MAX_POLL_MS = 100
FINAL_WRITE_S = 60  # at exit, keep retrying a failing store this long
ACK_LINGER_MS = 2000
CUMULATIVE = ("received", "published", "stored", "duplicates", "resent_dropped",
              "books_received", "books_stored", "books_duplicates", "restarts")  # fmt: skip


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


def main(settings: Settings, shard: int, ready: Connection | None = None) -> int:
    stop = StopFlag(supervised=ready is not None)
    log = setup_logging(settings.log_level, f"shard-{shard}")
    paths = settings.paths
    try:  # one connection per writer thread: each runs its own transactions
        sink = SqliteSink(shard_db_path(Path(settings.data_dir), shard))
        book_sink = SqliteSink(shard_db_path(Path(settings.data_dir), shard))
    except FeedmuxError as exc:
        log.error("%s", exc)
        return 2
    commit_log = CommitLog(paths.commit_log(shard)) if settings.commit_log else None
    write = commit_log.wrap(sink.write_batch) if commit_log is not None else sink.write_batch
    # Commits happen on writer threads: a slow one (a WAL checkpoint) never delays publishing.
    writer = BackgroundWriter(RetryingWriter(write, time.monotonic_ns), "ticks-writer")
    book_writer = BackgroundWriter(RetryingWriter(book_sink.write_books, time.monotonic_ns),
                                   "books-writer")  # fmt: skip
    ctx = zt.context()
    acks = zt.push(ctx, paths.acks, linger_ms=ACK_LINGER_MS, immediate=False)
    bus = zt.pull(ctx, paths.shard_in(shard))
    pub = zt.pub(ctx, paths.shard_pub(shard), hwm=settings.pub_queue)
    snap = zt.router(ctx, paths.shard_snapshot(shard))
    poller = zmq.Poller()
    poller.register(bus, zmq.POLLIN)
    poller.register(snap, zmq.POLLIN)
    state = ShardState(
        shard, settings.batch_rows, settings.batch_delay_ms * 1_000_000, time.monotonic_ns
    )
    state.restore(*sink.latest())  # after a crash: the snapshot as far as the store has it
    # Counters of an earlier incarnation in this run, so totals survive a restart.
    before = read_stats(paths.stats_dir).get(f"shard-{shard}", {})
    base = {key: int(before.get(key, 0)) for key in CUMULATIVE}
    # Ticks and books each flow batcher -> writer by the same rules (100 rows or 200 ms).
    lanes: tuple[tuple[Batcher[Any], BackgroundWriter[Any]], ...] = (
        (state.batcher, writer),
        (state.book_batcher, book_writer),
    )
    writers = [lane_writer for _, lane_writer in lanes]
    stats_every = settings.stats_interval_ms * 1_000_000
    next_tick = time.monotonic_ns()
    last_bus_ns = next_tick
    published = 0
    counters = {"acks_dropped": 0, "gaps_logged": 0, "rewinds_logged": 0}
    if ready is not None:
        ready.send(shard)
    log.info("ready: bus %s, pub %s", paths.shard_in(shard), paths.shard_pub(shard))

    def report(final: bool = False) -> None:
        counts = {
            "received": state.received, "published": published, "stored": writer.stored,
            "duplicates": writer.duplicates, "resent_dropped": state.resent_dropped,
            "books_received": state.received_books, "books_stored": book_writer.stored,
            "books_duplicates": book_writer.duplicates,
        }  # fmt: skip
        write_stats(paths.stats_dir, f"shard-{shard}", {
            "role": "shard", "shard": shard, "pid": os.getpid(), "final": final,
            **{key: base[key] + value for key, value in counts.items()},
            "restarts": base["restarts"] + (1 if before else 0),
            "batches": writer.writer.batches, "write_failures": writer.writer.failures,
            "backlog": writer.backlog + len(state.batcher), "bus_gaps": state.bus_gaps,
            "bus_ignored": state.bus_ignored, "rewinds_asked": state.rewinds_asked,
            "bad_messages": state.bad_messages, "codes": len(state.snapshot),
            "acks_dropped": counters["acks_dropped"],
            "last_commit_ns": writer.writer.last_commit_ns, "time_ns": time.time_ns(),
            "cpu_s": time.process_time(),
            "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        })  # fmt: skip

    def acknowledge() -> None:
        """Tell the receiver what is committed (it forgets it) or what to send again."""
        reports = state.take_reports()
        ack = state.committed(writer.written, book_writer.written)
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
        acknowledge()
        now = time.monotonic_ns()
        if now >= next_tick:
            next_tick = now + stats_every
            log_news(state, counters, log)
            topic, payload = state.heartbeat()
            pub.send(topic, zmq.SNDMORE)
            pub.send(payload)
            report()
        if stop.requested and (state.ended or now - last_bus_ns > DRAIN_QUIET_NS):
            break

    for batcher, lane_writer in lanes:
        if len(batcher):
            lane_writer.submit(batcher.take())
    unwritten = sum(w.close(FINAL_WRITE_S) for w in writers)  # retries back off inside
    if unwritten:
        log.error("store still failing after %d s: %d received rows NOT stored",
                  FINAL_WRITE_S, unwritten)  # fmt: skip
    acknowledge()
    report(final=True)
    log.info("stopped: %d ticks received, %d stored, %d duplicates",
             state.received, writer.stored, writer.duplicates)  # fmt: skip
    sink.close()
    book_sink.close()
    if commit_log is not None:
        commit_log.close()
    acks.close()  # lingers so the last ack reaches the receiver
    ctx.destroy(linger=0)
    return 0
