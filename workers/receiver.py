"""Receiver: the vendor WebSockets in, one PUSH socket per shard out. Wiring and one loop.

All connections live in this one process and one thread, multiplexed by one ``zmq.Poller``
(the links' descriptors, the acks and control sockets): each ready link gives every message its
socket holds, and the ticks of a read burst go out as one bus message per shard (one ZeroMQ
message per tick would cost more than the decode). The objects it wires: ``ConnectionTable``
(every connection's link, session, subscriptions and counters), ``BusSender`` (ledger and PUSH
sockets), ``ControlDesk`` (live subscription changes) and ``UniverseKeeper`` (the saved list).
"""

from __future__ import annotations

import dataclasses
import resource
import time
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

import zmq

from feedmux.errors import FeedmuxError
from feedmux.ingest.bus import BusSender
from feedmux.ingest.connections import ConnectionTable
from feedmux.ingest.control import ControlDesk
from feedmux.ingest.delivery import Delivery
from feedmux.ingest.fanout import ShardOutbox
from feedmux.ingest.journal import JournalWriter
from feedmux.ingest.keeper import UniverseKeeper
from feedmux.ingest.subscriptions import SubscriptionManager
from feedmux.ingest.universe import load_universe
from feedmux.market.sessions import main_market
from feedmux.ops.config import Settings, redact
from feedmux.providers import provider
from feedmux.providers.base import EXIT_GAVE_UP, GiveUp, Pacing, give_up_message
from feedmux.routing import Router
from feedmux.stats import write_stats
from feedmux.stats.receiver import JournalStats, QueueStats, ReceiverStats
from feedmux.transports import zmq as zt
from feedmux.transports.ws import WsLink
from feedmux.writes import health

from ._process import StopFlag, run_logging

FLUSH_TICKS = 256  # send the held ticks once this many are pending, even before the delay
MAX_POLL_MS = 1000
CONNECT_TIMEOUT_S = 5.0
END_LINGER_MS = 10_000  # at exit, wait this long for shards to take what is queued
REFUSED_IN_STATS = 10  # refused codes named in the stats file (status shows a few)
SPILL_DIR = "spill"


def pacing_of(settings: Settings, vendor: Pacing) -> Pacing:
    """The vendor's pacing, with the run's settings."""
    ms = 1_000_000
    return dataclasses.replace(
        vendor,
        request_interval_ns=settings.request_interval_ms * ms,
        cross_interval_ns=settings.cross_interval_ms * ms,
        heartbeat_interval_ns=settings.heartbeat_interval_ms * ms,
        reconnect_spacing_ns=settings.reconnect_spacing_ms * ms,
        watchdog_ns=int(settings.watchdog_s * 1e9),
    )


def open_journal(settings: Settings) -> JournalWriter:
    main = main_market(settings.codes)  # its days name the folders
    return JournalWriter(settings.journal_dir, settings.token, market=main,
                         max_bytes=settings.journal_max_mb << 20,
                         enabled=settings.journal)  # fmt: skip


def stats(settings: Settings, table: ConnectionTable, bus: BusSender, journal: JournalWriter, *,
          gave_up: GiveUp | None = None, final: bool = False) -> ReceiverStats:  # fmt: skip
    """The receiver's stats file, whole."""
    manager, delivery, outbox = table.manager, bus.delivery, bus.outbox
    return ReceiverStats(
        final=final, time_ns=time.time_ns(), cpu_s=time.process_time(),
        max_rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        failing_writes=health.failures(),  # journal, spill, stats, log: counted, once
        ticks=outbox.routed_ticks, books=outbox.routed_books,
        journal=JournalStats(path=str(journal.path or ""), records=journal.records,
                             bytes=journal.bytes, files=journal.files, error=journal.error,
                             lost=journal.lost),
        bus_messages=bus.messages,
        unconfirmed=delivery.unconfirmed(), bad_feedback=delivery.bad_feedback,
        overflow=settings.overflow,
        bus=[QueueStats.of(q) for q in delivery.queues],
        codes_desired=len(manager.owner), codes_subscribed=manager.confirmed_codes(),
        codes_rejected=len(manager.rejected),
        rejected=list(manager.rejected)[:REFUSED_IN_STATS],
        gave_up=gave_up,
        connections=table.stats(time.monotonic_ns()),
    )  # fmt: skip


def main(settings: Settings, ready: Pipe | None = None) -> int:
    stop = StopFlag(supervised=ready is not None)
    log = run_logging(settings, "receiver")
    token, paths, vendor = settings.token, settings.paths, provider(settings.provider)
    ctx = zt.context()
    delivery = Delivery(
        settings.shards, time.time_ns(), window_items=settings.bus_window,
        memory_items=settings.bus_memory, overflow=settings.overflow,
        spill_dir=Path(settings.data_dir) / SPILL_DIR if settings.overflow == "spill" else None,
    )  # fmt: skip
    pushes = [zt.push(ctx, paths.shard_in(s)) for s in range(settings.shards)]
    try:
        acks = zt.pull(ctx, paths.acks)
        control = zt.router(ctx, paths.control)
    except FeedmuxError as exc:  # an --internal port in use
        log.error("%s", exc)
        ctx.destroy(linger=0)
        return 2
    bus = BusSender(delivery, ShardOutbox(Router(settings.shards)), pushes, acks)
    journal = open_journal(settings)
    # The saved universe carries live changes across a restart of this process.
    codes = load_universe(settings.data_dir) or settings.codes
    manager = SubscriptionManager(vendor, codes, settings.max_codes_per_conn,
                                  pacing_of(settings, vendor.pacing),
                                  max_conns=settings.max_conns,
                                  tokens=len(settings.tokens),
                                  depth_levels=settings.depth_levels,
                                  options=settings.session_options,
                                  give_up_after=settings.give_up_after)  # fmt: skip
    keeper = UniverseKeeper(manager, settings.data_dir, log)

    def open_link(token: str) -> WsLink:
        return WsLink(vendor.connect_url(settings.url, token), CONNECT_TIMEOUT_S,
                      settings.max_frame_bytes, header=vendor.connect_headers(token),
                      classify=vendor.handshake_failure)  # fmt: skip

    poller = zmq.Poller()
    table = ConnectionTable(manager, poller, open_link, journal, log, token=token,
                            url=settings.url, route=bus.outbox.route,
                            on_events=keeper.note_refused)  # fmt: skip
    desk = ControlDesk(manager)
    poller.register(control, zmq.POLLIN)
    poller.register(acks, zmq.POLLIN)
    poller.register(stop.wakeup.fileno(), zmq.POLLIN)
    log.info("%d codes over %d connection(s) to %s, %d shards", len(codes),
             len(manager.connections), redact(settings.url), settings.shards)  # fmt: skip
    if ready is not None:
        ready.send("receiver")

    def serve_control() -> None:
        if desk.serve(control, time.monotonic_ns()):
            table.changed = True  # requests to send: the manager's deadline moved
            keeper.save()
            journal.event(time.time_ns(), 0, "universe", codes=len(manager.owner))

    next_stats = time.monotonic_ns()
    stats_every = settings.stats_interval_ms * 1_000_000
    due: int | None = None  # the manager's next deadline (connects, requests, heartbeats)
    delay_ns = int(settings.bus_delay_ms * 1e6)
    flush_at: int | None = None  # when the outbox's oldest tick must go (--bus-delay-ms)
    while not stop.requested and manager.fatal is None:
        now = time.monotonic_ns()
        if table.changed or (due is not None and now >= due):
            table.connect_due()
            table.send_due()
            table.changed = False
            due = manager.next_deadline()
        if now >= next_stats:
            next_stats = now + stats_every
            table.drop_stale(settings.watchdog_s)
            keeper.retry()
            serve_control()  # answers that timed out
            bus.send()  # what a full socket held back, were nothing else to wake the loop
            flush_at = None
            write_stats(paths.stats_dir, stats(settings, table, bus, journal))
            journal.flush(time.time_ns())
            stop.check_parent()  # once a tick: Linux also says so by SIGTERM
        wake = min(d for d in (due, next_stats, flush_at) if d is not None)
        timeout = max(0, min(MAX_POLL_MS, -(-(wake - time.monotonic_ns()) // 10**6)))
        # Only what is ready is read: no socket is drained "just in case" (each empty read of
        # a ZeroMQ socket raises), and a trickle costs one poll per read.
        feedback = False
        for source, flags in poller.poll(timeout):
            if source is control:
                serve_control()
            elif source is acks:
                bus.take_feedback()  # acks may open a shard's window: the send below
                feedback = True
            elif source == stop.wakeup.fileno():
                stop.wakeup.drain()  # a signal: the loop's test sees it
            else:
                table.on_ready(source, flags)
        if bus.outbox.pending:
            now = time.monotonic_ns()
            flush_at = flush_at or now + delay_ns
            if now >= flush_at or bus.outbox.pending >= FLUSH_TICKS:
                bus.send()
                flush_at = None
        elif feedback:
            bus.send()  # resends, a Resume, or what a full window held back
        if table.changed and desk.waiting:
            serve_control()  # a reply may settle a waiting change

    gave_up = None
    if manager.fatal is not None:
        failure, count = manager.fatal
        message = give_up_message(failure, count, redact(settings.url))
        gave_up = GiveUp(failure.kind, redact(message, token), count)  # printed, kept in stats
        log.error("giving up: %s", gave_up.message)
    log.info("stopping: closing connections, handing the last ticks to the shards")
    table.close()
    bus.finish(lambda: acks.poll(20), log)
    control.close(linger=0)
    for sock in pushes:
        sock.close(linger=END_LINGER_MS)
    acks.close(linger=0)
    delivery.close()
    journal.close()
    write_stats(paths.stats_dir, stats(settings, table, bus, journal, gave_up=gave_up, final=True))
    ctx.term()
    log.info("stopped: %d ticks and %d books routed", bus.outbox.routed_ticks,
             bus.outbox.routed_books)  # fmt: skip
    return 0 if gave_up is None else EXIT_GAVE_UP
