"""Receiver: the vendor WebSockets in, one PUSH socket per shard out. Wiring and one loop.

All connections live in this one process and one thread, multiplexed with poll(): each ready
socket gives one frame per turn, and the ticks of a read burst go out as one bus message per
shard (one ZeroMQ message per tick would cost more than the decode).
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import select
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import msgspec
import zmq

from feedmux.ingest.control import ControlDesk
from feedmux.ingest.delivery import Delivery
from feedmux.ingest.fanout import ShardOutbox
from feedmux.ingest.journal import JournalWriter
from feedmux.ingest.subscriptions import SubscriptionManager
from feedmux.ingest.universe import keep_universe, load_universe
from feedmux.ops.config import Settings, redact
from feedmux.providers import provider
from feedmux.providers.base import (
    EXIT_GAVE_UP,
    BadFrame,
    Failure,
    GiveUp,
    Pacing,
    Reply,
    first_line,
    give_up_message,
)
from feedmux.routing import Router
from feedmux.stats import write_stats
from feedmux.transports import zmq as zt
from feedmux.transports.ws import (
    HandshakeRefused,
    LinkErrors,
    WsLink,
)
from feedmux.writes import health

from ._process import StopFlag, run_logging

FLUSH_TICKS = 256  # send a burst's ticks once this many are pending, even mid-burst
MAX_POLL_MS = 100
BURST_NS = 50_000_000
CONNECT_TIMEOUT_S = 5.0
END_LINGER_MS = 10_000  # at exit, wait this long for shards to take what is queued
END_WAIT_S = 20  # at exit, wait this long for the shards to confirm they stored everything
REFUSED_IN_STATS = 10  # refused codes named in the stats file (status shows a few)
SPILL_DIR = "spill"
JOURNAL_DIR = "journal"
_BROKEN = select.POLLERR | select.POLLHUP | select.POLLNVAL


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
    return JournalWriter(Path(settings.data_dir) / JOURNAL_DIR, settings.token,
                         max_bytes=settings.journal_max_mb << 20,
                         enabled=settings.journal)  # fmt: skip


def finish(
    delivery: Delivery,
    send_bus: Callable[[], None],
    take_reports: Callable[[], None],
    wait: Callable[[], object],
    log: logging.Logger,
) -> None:
    """Hand every shard its last ticks and an End, and wait until each confirms it stored
    them (a shard restarting now still gets its resend)."""
    end_sent_at: list[int | None] = [None] * len(delivery.queues)  # rewinds seen when queued
    give_up = time.monotonic() + END_WAIT_S
    while time.monotonic() < give_up:
        take_reports()
        send_bus()
        for shard, queue in enumerate(delivery.queues):
            if queue.idle() and end_sent_at[shard] != queue.rewinds:
                end_sent_at[shard] = queue.rewinds  # again after a rewind: End follows the data
                delivery.end(shard)
        send_bus()
        if delivery.unconfirmed() == 0 and all(q.idle() for q in delivery.queues):
            return
        wait()
    log.error("%d routed ticks and books were not confirmed stored by the shards within "
              "%d s", delivery.unconfirmed(), END_WAIT_S)  # fmt: skip


def main(settings: Settings, ready: Connection | None = None) -> int:
    stop = StopFlag(supervised=ready is not None)
    log = run_logging(settings, "receiver")
    token = settings.token
    paths = settings.paths
    vendor = provider()
    url = vendor.connect_url(settings.url, token)
    header = vendor.connect_headers(token)
    ctx = zt.context()
    pushes = [zt.push(ctx, paths.shard_in(s)) for s in range(settings.shards)]
    acks = zt.pull(ctx, paths.acks)
    delivery = Delivery(
        settings.shards, time.time_ns(), window_items=settings.bus_window,
        memory_items=settings.bus_memory, overflow=settings.overflow,
        spill_dir=Path(settings.data_dir) / SPILL_DIR if settings.overflow == "spill" else None,
    )  # fmt: skip
    outbox = ShardOutbox(Router(settings.shards))
    journal = open_journal(settings)
    # The saved universe carries live changes across a restart of this process.
    codes = load_universe(settings.data_dir) or settings.codes
    manager = SubscriptionManager(vendor, codes, settings.max_codes_per_conn,
                                  pacing_of(settings, vendor.pacing),
                                  max_conns=settings.max_conns,
                                  depth_levels=settings.depth_levels,
                                  max_frame_bytes=settings.max_frame_bytes,
                                  give_up_after=settings.give_up_after)  # fmt: skip
    conns = manager.connections  # grows when live changes need another connection
    links: list[WsLink | None] = []
    frames: list[int] = []
    last_frame_ns: list[int] = []
    by_fd: dict[int, int] = {}
    poller = select.poll()
    desk = ControlDesk(manager)
    control = zt.router(ctx, paths.control)
    control_fd = control.fileno()  # ZMQ_FD: readable when the socket may have news
    poller.register(control_fd, select.POLLIN)
    acks_fd = acks.fileno()
    poller.register(acks_fd, select.POLLIN)
    logged_kinds: set[str] = set()
    refused: dict[str, str] = {}  # codes the vendor refused, as logged
    refused_at = [-1]  # the manager's version ``refused`` was last brought up to
    counters = {"bus_messages": 0}
    log.info("%d codes over %d connection(s) to %s, %d shards", len(codes),
             len(conns), redact(settings.url), settings.shards)  # fmt: skip
    if ready is not None:
        ready.send("receiver")

    def drop(i: int, why: str, failure: Failure | None = None) -> None:
        link = links[i]
        if link is not None:
            fd = link.fileno()
            poller.unregister(fd)
            del by_fd[fd]
            link.close()
            links[i] = None
        if failure is not None:  # a server's words may quote the token: never keep it
            failure = msgspec.structs.replace(failure, detail=redact(failure.detail, token),
                                              body=redact(failure.body, token))  # fmt: skip
        manager.on_disconnected(i, time.monotonic_ns(), redact(why, token), failure)
        journal.event(time.time_ns(), i, "disconnect", reason=why)
        wait_s = (conns[i].connect_at_ns - time.monotonic_ns()) / 1e9
        if manager.fatal is None:
            log.warning("connection %d down (%s); reconnecting in %.1f s",
                        i, redact(why, settings.token), wait_s)  # fmt: skip
        else:
            log.warning("connection %d down (%s)", i, redact(why, settings.token))

    unsaved = [False]  # the saved universe is behind (disk full): written again each stats turn

    def save_universe() -> None:
        unsaved[0] = not keep_universe(settings.data_dir, manager.desired(), manager.rejected)

    def note_refused() -> None:
        """Codes the vendor refused: named once, and out of the saved universe (a restart
        does not ask for them again)."""
        if manager.version == refused_at[0]:
            return  # the common case, at every event (heartbeat replies): nothing changed
        refused_at[0] = manager.version
        new = {c: why for c, why in manager.rejected.items() if c not in refused}
        if not new:
            return
        for code, why in new.items():
            log.warning("vendor refused %s (%s): not subscribed, left out of the saved "
                        "universe", code, why)  # fmt: skip
        refused.update(new)
        save_universe()

    def handle_events(i: int) -> None:
        session = conns[i].session
        for event in session.events:
            if isinstance(event, Reply):
                now = time.monotonic_ns()
                manager.on_reply(i, event, now)
                if not event.ok:
                    msg = redact(first_line(event.msg), settings.token)  # one short line
                    retry_s = (conns[i].retry_at_ns - now) / 1e9
                    log.warning("connection %d: %s refused: ret=%d %s%s", i, event.what(),
                                event.ret, msg, f"; sent again in {retry_s:.1f} s"
                                if retry_s > 0 else "")  # fmt: skip
                elif (
                    event.request is not None
                    and event.request.kind == "trades"
                    and event.request.codes
                ):
                    log.info("connection %d: %d codes subscribed", i, len(conns[i].confirmed))
            elif isinstance(event, BadFrame) and event.kind not in logged_kinds:
                logged_kinds.add(event.kind)  # once per kind; the counters say how many
                sample = redact(event.sample.decode("utf-8", "replace"), settings.token)
                log.warning("bad frame (%s), skipped: %s; sample: %r", event.kind,
                            event.detail, sample)  # fmt: skip
        session.events.clear()
        note_refused()

    def grow() -> None:
        while len(links) < len(conns):
            links.append(None)
            frames.append(0)
            last_frame_ns.append(0)

    def serve_control() -> None:
        """Take every waiting control request; answer those the server has settled."""
        now = time.monotonic_ns()
        while True:
            try:
                ident, empty, raw = control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            answer, changed = desk.submit(ident, raw, now)
            if answer is not None:
                control.send_multipart([ident, empty, answer])
            if changed:
                save_universe()
                journal.event(time.time_ns(), 0, "universe", codes=len(manager.owner))
                grow()
        for ident, answer in desk.answers(now):
            control.send_multipart([ident, b"", answer])
        control.getsockopt(zmq.EVENTS)  # re-arms the edge-triggered ZMQ_FD

    def take_reports() -> None:
        """Acks and rewind requests from the shards."""
        while True:
            try:
                delivery.on_report(acks.recv(zmq.NOBLOCK))
            except zmq.Again:
                break
        acks.getsockopt(zmq.EVENTS)  # re-arms the edge-triggered ZMQ_FD

    def send_bus() -> None:
        for shard, first, end, payload in outbox.drain():
            delivery.queues[shard].put(first, end, payload)
        for queue, sock in zip(delivery.queues, pushes, strict=True):
            while (next_message := queue.peek()) is not None:
                try:
                    sock.send(next_message, zmq.NOBLOCK)
                except zmq.Again:  # the shard is slow or restarting: the ledger keeps it
                    break
                queue.sent()
                counters["bus_messages"] += 1

    def report(final: bool = False) -> None:
        now = time.monotonic_ns()
        write_stats(paths.stats_dir, "receiver", {
            "role": "receiver", "final": final, "time_ns": time.time_ns(),
            "cpu_s": time.process_time(),
            "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "ticks": outbox.routed_ticks, "books": outbox.routed_books,
            "journal": {"path": str(journal.path or ""), "records": journal.records,
                        "bytes": journal.bytes, "files": journal.files, "error": journal.error,
                        "lost": journal.lost},
            "bus_messages": counters["bus_messages"],
            "unconfirmed": delivery.unconfirmed(), "bad_reports": delivery.bad_reports,
            "overflow": settings.overflow,
            "failing_writes": health.report(),  # journal, spill, stats, log: counted, once
            "bus": [{
                "held": q.held_items, "inflight": q.inflight_items, "pending": q.pending_items,
                "spilled": q.spilled_items, "spilled_total": q.spilled_total,
                "dropped_total": q.dropped_total, "peak": q.peak_items, "rewinds": q.rewinds,
            } for q in delivery.queues],
            "codes_desired": len(manager.owner), "codes_subscribed": manager.confirmed_codes(),
            "codes_rejected": len(manager.rejected),
            "rejected": list(manager.rejected)[:REFUSED_IN_STATS],
            "gave_up": gave_up,
            "connections": [{
                "state": "up" if c.connected else "down", "codes": len(c.desired),
                "confirmed": len(c.confirmed), "frames": frames[c.index],
                "last_frame_age_s": (now - last_frame_ns[c.index]) / 1e9
                if last_frame_ns[c.index] else None,
                "reconnects": c.reconnects, "watchdog_trips": c.watchdog_trips,
                "bad_frames": c.session.bad_frames,
                "error": redact(c.last_error, token),
            } for c in conns],
        })  # fmt: skip

    grow()
    next_stats = time.monotonic_ns()
    stats_every = settings.stats_interval_ms * 1_000_000
    gave_up: GiveUp | None = None
    while not stop.requested and manager.fatal is None:
        now = time.monotonic_ns()
        for i in manager.connect_due(now):
            try:
                new_link = WsLink(
                    url,
                    CONNECT_TIMEOUT_S,
                    settings.max_frame_bytes,
                    header=header,
                    classify=vendor.handshake_failure,
                )
            except HandshakeRefused as exc:  # one short line, classified
                drop(i, f"connect failed: {exc}", exc.failure)
                continue
            except LinkErrors as exc:  # refused, reset, timed out: retried for ever
                drop(i, f"connect failed: {exc}")
                continue
            links[i] = new_link
            by_fd[new_link.fileno()] = i
            poller.register(new_link.fileno(), select.POLLIN)
            manager.on_connected(i, time.monotonic_ns())
            log.info("connection %d up", i)
            journal.event(time.time_ns(), i, "connect", url=settings.url)
            try:
                for hello in conns[i].session.opening(token):  # an auth message, if any
                    new_link.send_text(hello)  # never journaled: it holds the token
            except LinkErrors as exc:
                drop(i, f"send failed: {exc}")
        for i, request in manager.due(time.monotonic_ns()):
            sender = links[i]
            assert sender is not None
            try:
                sender.send_text(request)
                journal.sent(time.time_ns(), i, request)
            except LinkErrors as exc:
                drop(i, f"send failed: {exc}")
        if now >= next_stats:
            next_stats = now + stats_every
            for i in manager.stale(now, last_frame_ns):
                drop(i, f"watchdog: no frame for {settings.watchdog_s:g} s")
            if unsaved[0]:
                save_universe()
            report()
            journal.flush(time.time_ns())
            stop.check_parent()  # once a tick: Linux also says so by SIGTERM
        wake = min(d for d in (manager.next_deadline(), next_stats) if d is not None)
        ready_fds = poller.poll(max(0, min(MAX_POLL_MS, (wake - time.monotonic_ns()) // 10**6)))
        # Read while frames wait, but give timers (heartbeats, stats, stop) a turn at least
        # every BURST_NS: under a feed faster than this loop, sockets are always readable.
        burst_end = time.monotonic_ns() + BURST_NS
        while ready_fds:
            for fd, flags in ready_fds:
                if fd == control_fd:
                    serve_control()
                    continue
                if fd == acks_fd:
                    take_reports()
                    continue
                i = by_fd.get(fd, -1)
                link = links[i] if i >= 0 else None
                if link is None:
                    continue
                if flags & _BROKEN and not flags & select.POLLIN:
                    drop(i, "socket closed")
                    continue
                try:
                    messages = link.read()
                except LinkErrors as exc:
                    drop(i, f"read failed: {exc!r}")
                    continue
                recv_ns = time.time_ns()  # when these bytes were read off the socket
                frames[i] += len(messages)
                journal.frames(recv_ns, i, messages)
                session = conns[i].session
                if session.receive_read(messages, recv_ns, outbox.add):
                    last_frame_ns[i] = time.monotonic_ns()  # the watchdog's "alive"
                if session.events:
                    handle_events(i)
                refusal = conns[i].failure  # e.g. ret 401: the link is useless, count it
                if refusal is not None:
                    drop(i, f"refused: {refusal.detail}")
                elif link.ended is not None:  # the server closed, or sent what we refuse
                    if link.refused is not None:  # counted with the bad frames it is
                        bad = session.bad_frames
                        bad[link.refused] = bad.get(link.refused, 0) + 1
                    drop(i, link.ended)
            if outbox.pending >= FLUSH_TICKS:
                send_bus()
            ready_fds = poller.poll(0) if time.monotonic_ns() < burst_end else []
        take_reports()
        send_bus()
        serve_control()

    if manager.fatal is not None:
        failure, count = manager.fatal
        message = give_up_message(failure, count, redact(settings.url))
        gave_up = GiveUp(failure.kind, redact(message, token), count)  # printed, kept in stats
        log.error("giving up: %s", gave_up.message)
    log.info("stopping: closing connections, handing the last ticks to the shards")
    for i, open_link in enumerate(links):
        if open_link is not None:
            open_link.close()
            links[i] = None
    finish(delivery, send_bus, take_reports, lambda: acks.poll(20), log)
    control.close(linger=0)
    for sock in pushes:
        sock.close(linger=END_LINGER_MS)
    acks.close(linger=0)
    delivery.close()
    journal.close()
    report(final=True)
    ctx.term()
    log.info("stopped: %d ticks and %d books routed", outbox.routed_ticks, outbox.routed_books)
    return 0 if gave_up is None else EXIT_GAVE_UP
