"""Shard worker: PULL from the receiver → snapshot, batched store, PUB. Wiring and one loop."""

from __future__ import annotations

import logging
import os
import resource
import time
from multiprocessing.connection import Connection as Pipe
from typing import Any

import zmq

from feedmux import families
from feedmux.errors import FeedmuxError
from feedmux.market.day import day_date
from feedmux.market.sessions import MINUTE_NS, BarSlots, load_sessions
from feedmux.ops.config import Settings
from feedmux.providers import provider
from feedmux.routing import shard_of
from feedmux.shard.bars import BarBuilder
from feedmux.shard.dayend import DayWatch
from feedmux.shard.histogram import WriteTimer
from feedmux.shard.lanes import Lanes, Target, Written, open_lanes
from feedmux.shard.state import Output, Publication, ShardState
from feedmux.stats import read_stats, write_stats
from feedmux.stats.shard import (
    BarStats,
    MoveStats,
    NatsStats,
    RedisStats,
    ShardStats,
    StoreStats,
)
from feedmux.transports import zmq as zt
from feedmux.writes import health

from ._process import StopFlag, run_logging

BURST = 256  # bus messages handled before timers get a turn
DRAIN_QUIET_NS = 500_000_000  # after SIGTERM, no End yet: exit once quiet this long since it
# The supervisor died: the receiver was told at the same moment and still hands over its last
# ticks and an End, which may come after a longer pause than an ordinary stop's.
ORPHAN_DRAIN_QUIET_NS = 5_000_000_000
MAX_POLL_MS = 1000
FINAL_WRITE_S = 60  # at exit, keep retrying a failing store this long
ACK_LINGER_MS = 2000
BAR_REBUILD_NS = 7 * 60 * 10**9  # a restart rebuilds bars from this much stored past


def bar_builder(settings: Settings) -> BarBuilder:
    """Bars by the exchanges' sessions (``--bar-sessions``), labelled by ``--bar-label``."""
    sessions = None
    if settings.bar_sessions == "exchange":  # the supervisor left the compiled days in the run dir
        sessions = load_sessions(settings.calendar_file, settings.paths.root)
    return BarBuilder(time.time_ns, slots=BarSlots(sessions, settings.bars_extended),
                      label_ns=0 if settings.bar_label == "start" else MINUTE_NS)  # fmt: skip


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
    for bad in state.bad_samples:  # once per kind; the counters say how many
        sample = bad.sample.decode("utf-8", "replace")
        log.warning("bad message (%s), skipped: %s; sample: %r", bad.kind, bad.detail, sample)
    state.bad_samples.clear()


def drained(ended: bool, now: int, last_bus_ns: int, stop_ns: int, quiet_ns: int) -> bool:
    """After a stop request (at ``stop_ns``): done once the receiver's End came, or, bounding
    the wait, once the bus has been quiet ``quiet_ns`` since the later of the stop and its last
    message (a feed quiet before the stop must not cut off the receiver's last ticks)."""
    return ended or now - max(last_bus_ns, stop_ns) > quiet_ns


def restore(state: ShardState, lanes: Lanes, settings: Settings, shard: int,
            log: logging.Logger, *, restarted: bool) -> None:  # fmt: skip
    """After a crash: the snapshot, and the bars of the last minutes, as far as the first store
    has them (this shard's codes only: a store may hold other shards' codes, or another shard
    count's). Nothing is lost without them: the snapshot refills from the stream."""
    store, shown = lanes.restore_from, lanes.ticks.targets[0].shown
    if store is None:
        return

    def mine(code: str) -> bool:
        return shard_of(code, settings.shards) == shard

    try:
        ticks, books = store.latest()
    except FeedmuxError as exc:
        log.warning("cannot restore the snapshot from %s: %s", shown, exc)
        ticks, books = [], []
    own = [t for t in ticks if mine(t.code)]
    state.restore(own, [b for b in books if mine(b.code)], restarted=restarted)
    try:
        newest = max((t.time_ns for t in ticks), default=0)  # the data's time, not the clock's
        recent = store.recent_ticks(newest - BAR_REBUILD_NS) if newest else []
    except FeedmuxError as exc:
        log.warning("cannot rebuild recent bars from %s: %s", shown, exc)
        recent = []
    # Bars that closed while the shard was down: stored, not published.
    lanes.bars.add(state.restore_bars([t for t in recent if mine(t.code)], own))


def store_stats(target: Target[Any]) -> StoreStats:
    """One store's own numbers; the histograms are the tick lane's (other lanes have none)."""
    timer = target.timer or WriteTimer()
    writer = target.writer
    return StoreStats(
        stored=writer.stored, duplicates=writer.duplicates, backlog=writer.backlog,
        failures=writer.failures, last_commit_ns=writer.last_commit_ns,
        batch_rows=timer.rows.state(), commit_s=timer.commit_s.state(),
        receive_to_commit_s=timer.receive_to_commit_s.state(),
    )  # fmt: skip


def main(settings: Settings, shard: int, ready: Pipe | None = None) -> int:
    stop = StopFlag(supervised=ready is not None)
    log = run_logging(settings, f"shard-{shard}")
    paths = settings.paths
    try:  # ticks, books and bars to every store, and a copy to Redis when on
        lanes = open_lanes(settings, shard)
    except FeedmuxError as exc:
        log.error("%s", exc)
        return 2
    ctx = zt.context()
    curve, auth = None, None
    if settings.curve_secret_file:  # consumers over TCP: encrypted, and authenticated
        curve = zt.load_keys(settings.curve_secret_file)  # checked by the CLI already
        auth = zt.curve_server(ctx, settings.curve_clients_dir)
    try:
        acks = zt.push(ctx, paths.acks, linger_ms=ACK_LINGER_MS, immediate=False)
        bus = zt.pull(ctx, paths.shard_in(shard))
        pub = zt.pub(ctx, paths.shard_pub(shard), hwm=settings.pub_queue, curve=curve)
        snap = zt.router(ctx, paths.shard_snapshot(shard), curve=curve)
    except FeedmuxError as exc:  # a --public or --internal port in use
        log.error("%s", exc)
        ctx.destroy(linger=0)
        return 2
    poller = zmq.Poller()
    poller.register(bus, zmq.POLLIN)
    poller.register(snap, zmq.POLLIN)
    poller.register(stop.wakeup.fileno(), zmq.POLLIN)
    state = ShardState(
        shard,
        min_move=settings.min_move,
        decode=provider(settings.provider).decode,
        bars=bar_builder(settings),
    )
    # Counters of an earlier incarnation in this run, so totals survive a restart.
    before = read_stats(paths.stats_dir).shards.get(shard)
    restore(state, lanes, settings, shard, log, restarted=before is not None)
    stats_every = settings.stats_interval_ms * 1_000_000
    next_tick = time.monotonic_ns()
    started_ns = time.time_ns()
    last_bus_ns = next_tick
    stop_ns: int | None = None  # when the stop was first seen
    counters = {"acks_dropped": 0, "gaps_logged": 0, "rewinds_logged": 0}
    day_watch = DayWatch(paths.eod, lanes)
    if ready is not None:
        ready.send(shard)
    log.info("ready: bus %s, pub %s", paths.shard_in(shard), paths.shard_pub(shard))

    def save_stats(final: bool = False) -> None:
        # A row counts as stored once every store has it; each store's own numbers follow.
        ticks, books, bars, redis, nats = (lanes.ticks, lanes.books, lanes.bars, lanes.redis,
                                           lanes.nats)  # fmt: skip
        write_stats(paths.stats_dir, ShardStats(
            shard=shard, pid=os.getpid(), final=final, time_ns=time.time_ns(),
            cpu_s=time.process_time(),
            max_rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            failing_writes=health.failures(),  # e.g. store failing: disk full (retried)
            # ticks and books sent on PUB (bars and moves are counted apart)
            received=state.received, published=state.pub_seq + state.book_seq,
            stored=ticks.stored, duplicates=ticks.duplicates,
            resent_dropped=state.resent_dropped,
            books_received=state.received_books, books_stored=books.stored,
            books_duplicates=books.duplicates,
            books_resent_dropped=state.book_filter.resent, restarts=0,
            batches=ticks.slowest.writer.batches, write_failures=lanes.failures,
            backlog=ticks.backlog, last_commit_ns=ticks.last_commit_ns,
            stores={t.shown: store_stats(t) for t in ticks.targets},
            receive_to_publish_s=state.receive_to_publish_s.state(),
            moves=MoveStats(trades=state.move_seqs[families.TRADE_MOVES],
                            books=state.move_seqs[families.BOOK_MOVES]),
            bars=BarStats(published=state.bar_seq, stored=bars.stored,
                          late=state.bars.late, too_late=state.bars.too_late,
                          outside=state.bars.outside,
                          resent=state.resent_dropped),  # bars take new ticks only
            redis=None if redis is None else RedisStats(
                published=redis.stored, backlog=redis.backlog, failures=redis.failures),
            nats=None if nats is None else NatsStats(
                published=nats.stored, duplicates=nats.duplicates, backlog=nats.backlog,
                failures=nats.failures, last_ack_ns=nats.last_commit_ns,
                started_ns=started_ns),
            bus_gaps=state.bus_gaps, bus_ignored=state.bus_ignored,
            rewinds_asked=state.rewinds_asked, bad_messages=state.bad_messages,
            bad_pushes=dict(state.bad_pushes),
            codes=len(state.snapshot), acks_dropped=counters["acks_dropped"],
            data_ns=state.bars.now(), day_done=day_watch.done,
        ).carry(before))  # fmt: skip

    def send(publications: list[Publication]) -> None:
        for topic, payload in publications:
            pub.send(topic, zmq.SNDMORE)
            pub.send(payload)

    def publish(out: Output) -> None:
        """To subscribers, then to the stores and relays."""
        send(out.published)
        lanes.take(out)

    last_turn: tuple[Written, int] | None = None  # (written, messages taken) when last asked

    def acknowledge() -> None:
        """Tell the receiver what is committed (it forgets it) or what to send again."""
        nonlocal last_turn
        feedback = state.take_feedback()
        turn = (lanes.written(), state.marked)
        if not feedback and turn == last_turn:
            return  # no commit and no message since the last turn: nothing new to say
        last_turn = turn
        ack = state.committed(*turn[0])
        for message in [*feedback, ack] if ack is not None else feedback:
            try:
                acks.send(message, zmq.NOBLOCK)
            except zmq.Again:  # receiver gone: acks are cumulative, the next one says it all
                counters["acks_dropped"] += 1

    while True:
        now = time.monotonic_ns()
        wake = min(next_tick, lanes.deadline() or next_tick)
        events = dict(poller.poll(max(0, min(MAX_POLL_MS, (wake - now) // 1_000_000))))
        # A commit on a writer thread does not wake this loop: acks go out on the next turn
        # (at most MAX_POLL_MS later), which is soon enough for the receiver's ledger.
        if bus in events:
            for _ in range(BURST):
                try:
                    raw = bus.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                publish(state.on_bus(raw))
            last_bus_ns = time.monotonic_ns()
        if stop.wakeup.fileno() in events:
            stop.wakeup.drain()  # a signal: ``stop.requested`` below
        if snap in events:
            ident, empty, request = snap.recv_multipart()
            snap.send_multipart([ident, empty, state.snapshot_reply(request)])
        lanes.flush_due()
        acknowledge()
        now = time.monotonic_ns()
        if now >= next_tick:
            next_tick = now + stats_every
            log_news(state, counters, log)
            publish(state.bars_due())
            if (ended := day_watch.ended()) is not None:  # the run's trading day ended
                publish(state.end_day(ended.at_ns))
                day_watch.taken(ended.day)
                log.info("trading day %s ended: its bars closed, per-code state reset",
                         day_date(ended.day))  # fmt: skip
            day_watch.check()
            send([state.heartbeat()])
            save_stats()
            stop.check_parent()
        if stop.requested:
            if stop_ns is None:  # once: a SIGTERM may be Linux saying the supervisor died
                stop_ns = now
                stop.check_parent()
            quiet_ns = ORPHAN_DRAIN_QUIET_NS if stop.orphaned else DRAIN_QUIET_NS
            if drained(state.ended, now, last_bus_ns, stop_ns, quiet_ns):
                break

    publish(state.close_bars())
    unwritten = lanes.close(FINAL_WRITE_S)  # retries back off inside
    # Each lane and target still failing, by name: the store, Redis or NATS to look at.
    failing = [f"{lane.kind} to {target.shown}: {target.writer.backlog:,}" for lane in lanes.every
               for target in lane.targets if target.writer.backlog]  # fmt: skip
    if unwritten:  # never acknowledged: the receiver keeps their bus messages while it runs
        log.error("still failing after %d s, %s rows NOT written: %s", FINAL_WRITE_S,
                  f"{unwritten:,}", "; ".join(failing))  # fmt: skip
    acknowledge()
    save_stats(final=True)
    log.info("stopped: %d ticks received, %d stored, %d duplicates%s", state.received,
             lanes.ticks.stored, lanes.ticks.duplicates,
             f"; NOT written: {'; '.join(failing)}" if failing else "")  # fmt: skip
    acks.close()  # lingers so the last ack reaches the receiver
    if auth is not None:
        auth.stop()
    ctx.destroy(linger=0)
    return 0
