"""Replay server: a vendor-compatible WebSocket server on loopback. Wiring and the loops.

The rules and frames are the vendor's (``Provider.simulator``, ``Provider.trade_frame``), the
ticks come from ``feedmux.simulator.market`` (with ``--sessions``, when and which from
``feedmux.simulator.schedule``); this module only moves their bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import signal
import struct
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from datetime import date, datetime
from http import HTTPStatus
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import msgspec
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from feedmux.errors import FeedmuxError
from feedmux.ingest.journal import Push, journal_pushes
from feedmux.market.day import DEFAULT_ZONE
from feedmux.market.sessions import load_sessions
from feedmux.ops.config import ReplaySettings
from feedmux.providers import provider
from feedmux.providers.base import ServerRules, Violation
from feedmux.simulator.faults import (
    CLOSE_CODE,
    CLOSE_REASON,
    HUGE_CHUNK,
    HUGE_EVERY_S,
    RAW_FAULTS,
)
from feedmux.simulator.market import Market, text_frame
from feedmux.simulator.schedule import Plan, Schedule, plan, session_date
from feedmux.stats import write_json
from feedmux.stats.replay import Fault, ReplayStats, SessionsReport, Step

from ._process import setup_logging

FEED_STEP_S = 0.002
_SEND_RECORD = struct.Struct("<qqq")  # send_ns, first frame index, count
JOURNAL_STEP_MAX = 5000  # frames per feed step at --speed max: the loop must still breathe
SLOW_CLIENT_BYTES = 64 << 20  # a client this far behind is dropped, as a real server would
FAULT_TARGET_POLL_S = 0.05
PONG_WAIT_S = 10.0  # a client that answers no ping this long is closed (a violation)


def plan_of(settings: ReplaySettings, today: date) -> Plan:
    """The simulated trading day ``--sessions`` plays (a ConfigError if it cannot be)."""
    sessions = load_sessions(
        settings.calendar_file, Path(settings.run_dir) if settings.run_dir else None
    )
    day = session_date(settings.session_date, sessions, settings.codes, today)
    return plan(sessions, settings.codes, day, day_minutes=settings.day_minutes,
                start=settings.session_start, mutes=settings.mutes,
                days=settings.session_days)  # fmt: skip


def rules_of(settings: ReplaySettings) -> ServerRules:
    ms = 1_000_000
    return ServerRules(
        token=settings.token,
        max_codes_per_conn=settings.max_codes_per_conn,
        max_conns=settings.max_conns,
        request_interval_ns=settings.request_interval_ms * ms,
        cross_interval_ns=settings.cross_interval_ms * ms,
        heartbeat_timeout_ns=int(settings.heartbeat_timeout_s * 1e9),
        reconnect_spacing_ns=settings.reconnect_spacing_ms * ms,
    )


class ReplayServer:
    def __init__(self, settings: ReplaySettings) -> None:
        self.settings = settings
        self.log = setup_logging(settings.log_level, "replay",
                                 Path(settings.log_file) if settings.log_file else None,
                                 stderr=settings.log_stderr)  # fmt: skip
        logging.getLogger("websockets").setLevel(logging.WARNING)  # one line per connection
        self.vendor = provider(settings.provider)
        self.rules = self.vendor.simulator(rules_of(settings), set(settings.codes))
        self.market = Market(settings.codes, settings.seed, seq_base=time.time_ns() // 1000,
                             vendor=self.vendor)  # fmt: skip
        self.rng = random.Random(settings.seed + 1)
        self.sockets: dict[int, ServerConnection] = {}
        self.transports: dict[int, asyncio.Transport] = {}
        self._outgoing: dict[int, list[bytes]] = {}  # pushes per connection, this feed step
        self._framed: dict[int, list[bytes]] = {}  # whole frames per connection, this step
        self._tasks: set[asyncio.Task[None]] = set()  # fire-and-forget closes, kept alive
        self.ids = itertools.count(1)
        self.url = ""
        self.ticks_sent = 0
        self.books_sent = 0
        self.garbage_sent = 0
        self.resent = 0
        self._latest: dict[str, bytes] = {}  # each code's last trade push (--resend-on-subscribe)
        self.frames_sent = 0
        self.connections_opened = 0
        self.skipped: dict[str, int] = {}  # journal frames not sent, by reason: never silent
        self.feed_state = "waiting"
        self.feed_cpu_start = 0.0
        self.feed_cpu_s = 0.0  # CPU spent feeding, start-up excluded (set when the feed ends)
        self.first_subscription = asyncio.Event()
        self.first_request = asyncio.Event()  # a subscription request arrived: faults count
        self.faulted: set[int] = set()  # connections a fault took over: their requests go unheard
        self.envelope_armed = False  # answer the next subscription request with a cmd_id 0 error
        self.faults_done: list[Fault] = []
        self.feed_end = asyncio.Event()  # set by SIGUSR1: end the feed now, keep serving
        self.stall_from = 0.0  # loop times of a scheduled stall
        self.stall_until = 0.0
        self.stop = asyncio.Event()
        self._logged_violations = 0
        self._sent_log: IO[bytes] | None = None
        if settings.sent_messages:
            self._sent_log = Path(settings.sent_messages).open("wb")  # noqa: SIM115 (closed in run)
        self._send_log: IO[bytes] | None = None
        if settings.write_times:
            self._send_log = Path(settings.write_times).open("wb")  # noqa: SIM115 (closed in run)
        # --journal with --rate: every trade frame loaded and framed before the feed, so a
        # benchmark measures the client, not this server's encoding.
        self.frames: list[tuple[str, bytes]] | None = None
        self.steps: list[Step] = []
        self.frame_index = 0
        # --sessions: the simulated day, its schedule and where its clock is
        self.plan: Plan | None = None
        self.schedule: Schedule | None = None
        self.sim_ns = 0
        self.day_index = 0  # which of the plan's days plays
        self.sent_by_phase: Counter[str] = Counter()
        self.sent_by_day: Counter[str] = Counter()
        if settings.sessions:
            self.plan = plan_of(settings, datetime.now(ZoneInfo(DEFAULT_ZONE)).date())
            self.schedule = self.plan.schedule(settings.rate, settings.seed + 2)
            self.sim_ns = self.plan.clock.start_ns

    # -- reporting ------------------------------------------------------------------------------
    def _log_violations(self) -> None:
        for v in self.rules.violations[self._logged_violations :]:
            self.log.warning("VIOLATION conn=%d rule=%s: %s", v.conn, v.rule, v.detail)
        self._logged_violations = len(self.rules.violations)

    def report(self) -> ReplayStats:
        subscriptions = self.rules.subscriptions()
        books = {c for codes in self.rules.book_subscriptions().values() for c in codes}
        return ReplayStats(
            url=self.url, feed=self.feed_state, ticks_sent=self.ticks_sent,
            books_sent=self.books_sent, garbage_sent=self.garbage_sent, resent=self.resent,
            frames_sent=self.frames_sent, connections_opened=self.connections_opened,
            frames_skipped=self.skipped,
            cpu_s=time.process_time(), feed_cpu_s=self.feed_cpu_s,
            violations=self.rules.violations,
            subscriptions={str(c): len(codes) for c, codes in subscriptions.items()},
            subscribed=sorted({c for codes in subscriptions.values() for c in codes}),
            books=sorted(books),
            steps=self.steps, frame_index=self.frame_index, faults=self.faults_done,
            frames_total=len(self.frames) if self.frames is not None else None,
            sessions=self._sessions_report(),
        )  # fmt: skip

    def _sessions_report(self) -> SessionsReport | None:
        if self.plan is None or self.schedule is None:
            return None
        day = self.schedule.day
        return SessionsReport(
            date=day.date.isoformat(), factor=self.plan.clock.factor, start_ns=day.start_ns,
            end_ns=day.end_ns, now_ns=self.sim_ns,
            phases={m: str(p) for m, p in self.schedule.phases(self.sim_ns).items()},
            sent=dict(self.sent_by_phase), muted=dict(self.schedule.muted),
            dates=[d.date.isoformat() for d in self.plan.days], day_index=self.day_index,
            sent_by_day=dict(self.sent_by_day),
        )  # fmt: skip

    def write_report(self) -> None:
        if self.settings.report_path:
            write_json(Path(self.settings.report_path), self.report())

    def stalled(self) -> bool:
        """Inside the scheduled stall: the server says nothing at all."""
        return self.stall_from <= asyncio.get_running_loop().time() < self.stall_until

    # -- connections ----------------------------------------------------------------------------
    def check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        """Another path is an HTTP 404 before any upgrade, as the vendor's web server answers
        one (a client then knows its URL is wrong, not that the feed is flaky)."""
        path = self.vendor.replay_path
        if urlsplit(request.path).path != path:
            return connection.respond(HTTPStatus.NOT_FOUND, f"not found; use {path}\n")
        return None

    async def handle(self, ws: ServerConnection) -> None:
        conn = next(self.ids)
        request = ws.request
        assert request is not None
        token = self.vendor.replay_token(request.path, dict(request.headers.raw_items()))
        opened = self.rules.open(conn, token, time.monotonic_ns())
        self._log_violations()
        for other in opened.evict:
            if other in self.sockets:
                self.rules.close(other, time.monotonic_ns())
                self._spawn(self.sockets[other].close(1000, "replaced by a newer connection"))
        for reply in opened.replies:
            await ws.send(reply, text=True)
        if opened.close:
            await ws.close(opened.close_code, opened.close_reason)
            return
        self.connections_opened += 1
        self.sockets[conn] = ws
        self.transports[conn] = ws.transport
        try:
            async for message in ws:
                if conn in self.faulted:
                    continue
                resend = self.settings.resend_on_subscribe
                held = self._held(conn) if resend else set()
                outcome = self.rules.receive(conn, message, time.monotonic_ns(),
                                             envelope_error=self.envelope_armed)  # fmt: skip
                if outcome.envelope_error:  # not applied, but it counted for the spacing
                    self.envelope_armed = False
                    self._fault_done("envelope-error", conn)
                if self.rules.subscription_requested:
                    self.first_request.set()
                self._log_violations()
                for reply in outcome.replies if not self.stalled() else ():
                    await ws.send(reply, text=True)
                if resend:
                    self._resend(conn, self._held(conn) - held)
                if self.rules.subscribers:
                    self.first_subscription.set()
                if outcome.close:
                    await ws.close(outcome.close_code, outcome.close_reason)
                    break
        except ConnectionClosed:
            pass
        finally:
            self.sockets.pop(conn, None)
            self.transports.pop(conn, None)
            self.rules.close(conn, time.monotonic_ns())

    def _held(self, conn: int) -> set[str]:
        """The codes whose trades ``conn`` gets now."""
        return set(self.rules.subscriptions().get(conn, ()))

    def _resend(self, conn: int, added: set[str]) -> None:
        """Each added code's latest trade again, ahead of the feed's next (not in the sent
        log: the client has it already, or lost it with the old connection)."""
        again = [push for code in added if (push := self._latest.get(code)) is not None]
        if again:
            self._outgoing.setdefault(conn, [])[:0] = again
            self.resent += len(again)

    async def watch_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for conn, outcome in self.rules.expired(time.monotonic_ns()):
                self._log_violations()
                ws = self.sockets.get(conn)
                if ws is None:
                    continue
                for reply in outcome.replies:
                    await ws.send(reply, text=True)
                await ws.close(outcome.close_code, outcome.close_reason)
            self.write_report()

    async def ping_clients(self) -> None:
        """Ping every client as the vendor's server does (``Provider.replay_ping_s``); one
        that does not answer in PONG_WAIT_S is closed, a violation. A stalled server pings
        no one: to the client it is silent."""
        every = self.vendor.replay_ping_s
        if every is None:
            return
        while True:
            await asyncio.sleep(every)
            if not self.stalled():
                for conn, ws in list(self.sockets.items()):
                    self._spawn(self._ping(conn, ws))

    async def _ping(self, conn: int, ws: ServerConnection) -> None:
        try:
            pong = await ws.ping()
            await asyncio.wait_for(pong, PONG_WAIT_S)
        except TimeoutError:
            detail = f"no pong within {PONG_WAIT_S:g} s"
            self.rules.violations.append(Violation(time.monotonic_ns(), conn, "pong", detail))
            self._log_violations()
            await ws.close(1011, "keepalive ping timeout")
        except ConnectionClosed:
            pass

    # -- the feed -------------------------------------------------------------------------------
    def queue_trade(self, code: str, time_ms: int | None = None) -> None:
        """Generate one trade for ``code`` and queue its frame for every subscriber of it.
        ``time_ms``: its exchange time (default: the wall clock's)."""
        receivers = self.rules.subscribers.get(code)
        if not receivers:
            return
        if time_ms is None:
            time_ms = time.time_ns() // 1_000_000
        frame = self.market.trade(code, time_ms)
        for conn in receivers:
            self._outgoing.setdefault(conn, []).append(frame)
        self.ticks_sent += 1
        if self._sent_log is not None:
            self._sent_log.write(frame + b"\n")
        settings = self.settings
        if settings.resend_on_subscribe:
            self._latest[code] = frame
        if settings.duplicate_every and self.ticks_sent % settings.duplicate_every == 0:
            for conn in receivers:  # the same push again, as vendors do on a resubscribe
                self._outgoing[conn].append(frame)
        if settings.garbage_every and self.ticks_sent % settings.garbage_every == 0:
            garbage = self.vendor.garbage_frames
            opcode, payload = garbage[self.garbage_sent % len(garbage)]
            self.garbage_sent += 1
            for conn in receivers:
                self._framed.setdefault(conn, []).append(text_frame(payload, opcode))
        for conn, levels in self.rules.book_subscribers.get(code, ()):
            book = self.market.book(code, time_ms, levels)
            self._outgoing.setdefault(conn, []).append(book)
            self.books_sent += 1
            if self._sent_log is not None:
                self._sent_log.write(book + b"\n")

    def flush_trades(self) -> None:
        """One write per connection for everything queued this step (one syscall, not one per
        frame): its pushes in the vendor's messages, then whole frames. On the event loop
        thread, so they never interleave with the frames websockets itself writes (replies,
        close)."""
        pack = self.vendor.pack
        for conn in self._outgoing.keys() | self._framed.keys():
            pushes = self._outgoing.get(conn)
            frames = [text_frame(m) for m in pack(pushes)] if pushes else []
            frames += self._framed.get(conn, ())
            transport = self.transports.get(conn)
            if transport is None or transport.is_closing():
                continue
            if transport.get_write_buffer_size() > SLOW_CLIENT_BYTES:
                self.log.warning("conn=%d reads too slowly (%d bytes queued): closing", conn,
                                 transport.get_write_buffer_size())  # fmt: skip
                transport.abort()
                continue
            try:
                transport.write(b"".join(frames))
            except RuntimeError:  # the client closed under us (it stops first): not a fault
                self.log.info("conn=%d closed by the client; %d frames made for it were not "
                              "sent", conn, len(frames))  # fmt: skip
                continue
            self.frames_sent += len(frames)
        self._outgoing.clear()
        self._framed.clear()

    def faults(self, elapsed_s: float) -> None:
        """Scheduled link faults, each once: an abrupt drop, a clean close."""
        settings = self.settings
        if settings.drop_after_s is not None and elapsed_s >= settings.drop_after_s:
            self.settings = settings = msgspec.structs.replace(settings, drop_after_s=None)
            self.log.info("fault: dropping every connection (no WebSocket close)")
            for conn, transport in list(self.transports.items()):
                self.rules.close(conn, time.monotonic_ns())  # no tick is made for it from now
                transport.close()  # what was written goes out, then FIN: no close frame
        if settings.close_after_s is not None and elapsed_s >= settings.close_after_s:
            self.settings = msgspec.structs.replace(settings, close_after_s=None)
            self.log.info("fault: closing every connection cleanly")
            for conn, ws in list(self.sockets.items()):
                self.rules.close(conn, time.monotonic_ns())
                self._spawn(ws.close(1001, "going away"))

    async def inject_faults(self) -> None:
        """``--fault``s in order, ``fault_after_s`` apart, from the first subscription request."""
        await self.first_request.wait()
        for name in self.settings.faults:
            await asyncio.sleep(self.settings.fault_after_s)
            if name == "envelope-error":
                self.envelope_armed = True  # done when the next subscription request comes
                self.log.info("fault: the next subscription request gets a cmd_id 0 error")
                continue
            conn = await self._fault_target()
            # From now on no tick is made for this connection (so none is lost on it) and
            # nothing it sends is answered.
            self.rules.close(conn, time.monotonic_ns())
            self.faulted.add(conn)
            self._fault_done(name, conn)
            # In the background: the next fault keeps its time, whatever the client does.
            if name == "close-1001":
                self._spawn(self.sockets[conn].close(CLOSE_CODE, CLOSE_REASON))
                continue
            transport = self.transports[conn]
            transport.write(RAW_FAULTS[name])
            if name == "huge-header":
                self._spawn(self._trickle(transport))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Fire and forget, kept alive until done."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fault_target(self) -> int:
        """The oldest open connection with a trade list (one appears once clients subscribe)."""
        while True:
            subscribed = [c for c, codes in self.rules.subscriptions().items()
                          if codes and c in self.transports]  # fmt: skip
            if subscribed:
                return min(subscribed)
            await asyncio.sleep(FAULT_TARGET_POLL_S)

    def _fault_done(self, name: str, conn: int) -> None:
        self.log.info("fault: %s on conn=%d", name, conn)
        self.faults_done.append(Fault(name, conn, time.time_ns()))
        self.write_report()

    async def _trickle(self, transport: asyncio.Transport) -> None:
        """The body of a frame that never ends, until the client hangs up."""
        while not transport.is_closing():
            if transport.get_write_buffer_size() > SLOW_CLIENT_BYTES:
                transport.abort()  # the client stopped reading: a real server gives up too
                return
            transport.write(HUGE_CHUNK)
            await asyncio.sleep(HUGE_EVERY_S)

    async def feed(self) -> None:
        settings = self.settings
        await self.first_subscription.wait()
        await asyncio.sleep(settings.warmup_s)
        self.feed_state = "running"
        self.feed_cpu_start = time.process_time()
        if self.frames is not None:
            self.log.info("feed starts: %d journal messages from %.0f messages/s", len(self.frames),
                          settings.journal_rate)  # fmt: skip
            await self._feed_frames()
        elif settings.journal:
            speed = f"{settings.speed:g}x" if settings.speed else "max speed"
            self.log.info("feed starts: journal %s at %s", settings.journal, speed)
            await self._feed_journal()
        elif self.plan is not None:
            day, clock = self.plan.day, self.plan.clock
            start, end = (datetime.fromtimestamp(t / 1e9, day.zone).strftime("%H:%M:%S")
                          for t in (clock.start_ns, day.end_ns))  # fmt: skip
            more = len(self.plan.days) - 1
            self.log.info("feed starts: simulated %s %s-%s %s%s at %gx, %.0f ticks/s", day.date,
                          start, end, day.zone.key,
                          f" and {more} more trading day{'s' * (more > 1)}" if more else "",
                          clock.factor, settings.rate)  # fmt: skip
            await self._feed_sessions()
        else:
            self.log.info("feed starts: %.0f ticks/s%s", settings.rate,
                          ", opening burst" if settings.burst else "")  # fmt: skip
            await self._feed_market()
        self.feed_state = "done"
        self.feed_cpu_s = time.process_time() - self.feed_cpu_start
        for log_file in (self._sent_log, self._send_log):
            if log_file is not None:
                log_file.flush()
        self.write_report()
        if self.skipped:
            why = ", ".join(f"{n} {reason}" for reason, n in self.skipped.items())
            self.log.warning("feed done: %d ticks sent, %d journal frames skipped (%s)",
                             self.ticks_sent, sum(self.skipped.values()), why)  # fmt: skip
        else:
            self.log.info("feed done: %d ticks sent", self.ticks_sent)
        if settings.exit_when_done:
            self.stop.set()

    def _start_faults(self, start: float) -> None:
        if self.settings.stall_after_s is not None:
            self.stall_from = start + self.settings.stall_after_s
            self.stall_until = self.stall_from + self.settings.stall_for_s

    async def _feed_market(self) -> None:
        """Synthetic trades at ``rate`` over the subscribed codes."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        if settings.burst:
            for code in sorted(self.rules.subscribers):
                self.queue_trade(code)
            self.flush_trades()
        start = loop.time()
        self._start_faults(start)
        produced = 0
        source: dict[str, tuple[int, ...]] = {}
        codes: list[str] = []
        while not self.feed_end.is_set() and (
            settings.duration_s is None or loop.time() - start < settings.duration_s
        ):
            await asyncio.sleep(FEED_STEP_S)
            if self.stalled():
                produced = int((loop.time() - start) * settings.rate)  # nothing is made up
                continue
            if source is not self.rules.subscribers:  # replaced whenever a list changes
                source = self.rules.subscribers
                codes = list(source)
            due = int((loop.time() - start) * settings.rate) - produced
            produced += due
            for code in self.rng.choices(codes, k=due) if codes else ():
                self.queue_trade(code)
            self.flush_trades()
            self.faults(loop.time() - start)

    async def _feed_sessions(self) -> None:
        """The simulated trading days (``--sessions``): the schedule's trades, stamped with
        the day's exchange time, as the simulated clock passes them; each next day as soon as
        one ends (its seqs numbered anew); done at the last day's end."""
        assert self.plan is not None and self.schedule is not None
        settings, schedule = self.settings, self.schedule
        loop = asyncio.get_running_loop()
        first = loop.time()
        self._start_faults(first)
        by_phase, by_day = self.sent_by_phase, self.sent_by_day
        for index, day in enumerate(self.plan.days):
            if self.feed_end.is_set():
                break
            clock, end_ns, date = self.plan.clock_of(index), day.end_ns, day.date.isoformat()
            if index:
                self.day_index, self.sim_ns = index, clock.start_ns
                schedule.begin(day)
                self.market.new_day()
                self.log.info("day %d of %d: simulated %s", index + 1, len(self.plan.days), date)
            start = loop.time()
            while (
                self.sim_ns < end_ns
                and not self.feed_end.is_set()
                and (settings.duration_s is None or loop.time() - first < settings.duration_s)
            ):
                await asyncio.sleep(FEED_STEP_S)
                now_ns = min(end_ns, clock.at(loop.time() - start))
                if self.stalled():
                    self.sim_ns = now_ns  # the day goes on; nothing is made up
                    continue
                sent = self.ticks_sent
                for event in schedule.events(self.sim_ns, now_ns, self.rules.subscribers):
                    self.queue_trade(event.code, event.time_ns // 1_000_000)
                    by_phase[event.phase] += 1
                by_day[date] += self.ticks_sent - sent
                self.sim_ns = now_ns
                self.flush_trades()
                self.faults(loop.time() - first)
            if self.sim_ns < end_ns:
                break  # ended early (--duration, SIGUSR1)

    async def _feed_journal(self) -> None:
        """A journal's pushes again, at their recorded pace times ``speed`` (0: at once).

        A push whose code nobody subscribes waits (the journal's clock stops) while the
        client is still subscribing, e.g. its next connection is due; once subscriptions have
        settled it is skipped, counted and logged."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        pushes = journal_pushes(Path(settings.journal), self.vendor)
        upcoming = next(pushes, None)
        clock_ns = float(upcoming.recv_ns if upcoming is not None else 0)
        start = last = loop.time()
        self._start_faults(start)
        waiting = False
        while upcoming is not None and not self.feed_end.is_set():
            await asyncio.sleep(FEED_STEP_S)
            now = loop.time()
            if not waiting:
                clock_ns += (now - last) * settings.speed * 1e9
            last = now
            if self.stalled():
                continue
            horizon = clock_ns if settings.speed else float("inf")
            waiting = False
            for _ in range(JOURNAL_STEP_MAX):
                if upcoming is None or upcoming.recv_ns > horizon:
                    break
                receivers = self._receivers(upcoming)
                if receivers:
                    self.queue_push(upcoming, receivers)
                elif self.rules.settling(time.monotonic_ns()):
                    waiting = True
                    break
                else:
                    self._skip("code not subscribed", upcoming.code)
                upcoming = next(pushes, None)
            self.flush_trades()
            self.faults(now - start)

    async def _feed_frames(self) -> None:
        """Pre-framed journal frames at ``journal_rate`` per second, in steps that ramp the
        rate up (the benchmark's way to find where a client falls behind). A frame's index in
        the journal is its name in the send log and the report."""
        settings = self.settings
        assert self.frames is not None and settings.journal_rate is not None
        frames, loop = self.frames, asyncio.get_running_loop()
        index = 0
        if settings.burst:  # one frame per code, all at once: the data file starts with them
            index = self._send_frames(0, min(len(settings.codes), len(frames)))
        rate = settings.journal_rate
        while index < len(frames) and not self.feed_end.is_set():
            start, first = loop.time(), index
            step = Step(rate=rate, first_index=first, start_ns=time.time_ns())
            self.steps.append(step)
            while index < len(frames) and not self.feed_end.is_set():
                await asyncio.sleep(FEED_STEP_S)
                elapsed = loop.time() - start
                if settings.step_s and elapsed >= settings.step_s:
                    break
                due = min(len(frames), first + int(elapsed * rate)) - index
                if due > 0:
                    index = self._send_frames(index, due)
            step.end_index, step.end_ns = index, time.time_ns()
            self.write_report()
            if settings.gap_s:
                await asyncio.sleep(settings.gap_s)
            rate *= settings.ramp

    def _send_frames(self, first: int, count: int) -> int:
        """Frames ``first..first+count-1`` to their subscribers, written now; the next index."""
        assert self.frames is not None
        subscribers = self.rules.subscribers
        outgoing = self._framed
        unsent = 0
        for code, framed in self.frames[first : first + count]:
            conns = subscribers.get(code)
            if not conns:
                unsent += 1
                self._skip("code not subscribed", code)
            for conn in conns or ():
                outgoing.setdefault(conn, []).append(framed)
        self.ticks_sent += count - unsent
        self.flush_trades()
        if self._send_log is not None:
            self._send_log.write(_SEND_RECORD.pack(time.time_ns(), first, count))
        self.frame_index = first + count
        return first + count

    def _receivers(self, push: Push) -> list[int]:
        """The connections subscribed to a journal frame's code (its book, for a book)."""
        if push.book:
            return [conn for conn, _ in self.rules.book_subscribers.get(push.code, ())]
        return list(self.rules.subscribers.get(push.code, ()))

    def _skip(self, reason: str, code: str, count: int = 1) -> None:
        """Frames not sent: counted for the report, logged the first time for each reason."""
        if reason not in self.skipped:
            self.log.warning("skipping journal frames: %s (first: %s); counted in the report",
                             reason, code)  # fmt: skip
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def queue_push(self, push: Push, receivers: list[int]) -> None:
        """A journal frame, as recorded, for each of ``receivers``."""
        for conn in receivers:
            self._outgoing.setdefault(conn, []).append(push.payload)
        if push.book:
            self.books_sent += 1
        else:
            self.ticks_sent += 1
        if self._sent_log is not None:
            self._sent_log.write(push.payload + b"\n")

    async def _logged(self, work: Coroutine[Any, Any, None]) -> None:
        """A background task that fails says so, instead of vanishing with its exception."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("replay task failed")
            raise

    async def run(self, ready: Pipe | None) -> int:
        loop = asyncio.get_running_loop()
        # Supervised, SIGINT is ignored: the supervisor decides the order of shutdown.
        for signum in (signal.SIGTERM,) if ready is not None else (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        loop.add_signal_handler(signal.SIGUSR1, self.feed_end.set)
        settings = self.settings
        if settings.journal and settings.journal_rate is not None:
            pushes = journal_pushes(Path(settings.journal), self.vendor)
            pack = self.vendor.pack  # each push its own message, framed ahead
            self.frames = [(p.code, b"".join(map(text_frame, pack([p.payload]))))
                           for p in pushes if not p.book]  # fmt: skip
        async with serve(
            self.handle, settings.host, settings.port, compression=None, max_size=1 << 20,
            ping_interval=None, process_request=self.check_path,
        ) as server:  # fmt: skip
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://{settings.host}:{port}{self.vendor.replay_path}"
            self.write_report()
            self.log.info("serving %s: %d codes, %s", self.url, len(settings.codes),
                          f"journal {settings.journal}" if settings.journal
                          else f"{settings.rate:.0f} ticks/s")  # fmt: skip
            if ready is not None:
                ready.send(self.url)
            else:  # standalone: say where to connect (supervised, `feedmux run` says it)
                print(f"replay: serving {self.url}", flush=True)
            tasks = [asyncio.create_task(self._logged(t))
                     for t in (self.feed(), self.watch_heartbeats(),
                               self.inject_faults(), self.ping_clients())]  # fmt: skip
            await self.stop.wait()
            for task in tasks:
                task.cancel()
        for log_file in (self._sent_log, self._send_log):
            if log_file is not None:
                log_file.close()
        self.write_report()
        self.log.info("stopped: %d ticks sent, %d violations", self.ticks_sent,
                      len(self.rules.violations))  # fmt: skip
        return 0


def main(settings: ReplaySettings, ready: Pipe | None = None) -> int:
    if ready is not None:  # supervised: the supervisor decides when to stop
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return asyncio.run(ReplayServer(settings).run(ready))
    except FeedmuxError as exc:  # e.g. --sessions on a day no market trades
        print(f"feedmux replay: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"feedmux replay: cannot serve on {settings.host}:{settings.port}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 2
