"""``feedmux run``: start the workers, watch them, print progress, stop them in order.

Shutdown order is what makes "nothing received is lost" true: the receiver stops first and
sends each shard an End marker after its last ticks; then the shards store everything they
hold and exit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait as wait_for_any
from pathlib import Path
from typing import TextIO

import msgspec

from feedmux.client.control import Control
from feedmux.codes import is_whole_market
from feedmux.errors import ConfigError, FeedmuxError
from feedmux.ingest.universe import save_universe
from feedmux.jetstream import stream as jetstream
from feedmux.market.sessions import Sessions, load_sessions
from feedmux.ops import instance
from feedmux.ops.children import Child, SignalWakeup, worker_main
from feedmux.ops.config import Manifest, ReplaySettings, Settings, redact
from feedmux.ops.display import open_display
from feedmux.ops.eod import EndOfDay
from feedmux.ops.markets import markets_of, unknown_days
from feedmux.ops.status import Status, build_status, progress_line, recent_warnings
from feedmux.providers.base import EXIT_GAVE_UP
from feedmux.shard.stores.labels import resolve_bar_label
from feedmux.shard.stores.migrate import migrate_stores
from feedmux.shard.stores.urls import SQLITE
from feedmux.stats import RunStats, read_stats
from feedmux.transports import zmq as zt
from feedmux.writes import LogFileHandler

RECEIVER_STOP_S = 30.0
SHARD_STOP_S = 90.0
STATUS_EVERY_S = 1.0
SILENT_EVERY_S = 10.0
PROBE_BYTES = 64 << 10  # what a run writes before its workers start is of this order


def _check_writable(directory: Path, what: str = "data directory",
                    fix: str = "pass --data-dir or set FEEDMUX_DATA_DIR") -> None:  # fmt: skip
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".feedmux-write-test"
        try:
            probe.write_bytes(bytes(PROBE_BYTES))  # data, not just a name: a full disk fails here
        finally:
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"{what} {directory} is not writable ({exc}); {fix}") from exc


class _Signals:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) all stop the run in order."""

    def __init__(self) -> None:
        self.received: int | None = None
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._set)
        self.wakeup = SignalWakeup()  # ``watch`` sleeps until a timer, a child's exit or this

    def _set(self, signum: int, frame: object) -> None:
        self.received = signum


class Supervisor:
    """Owns the worker processes; whatever happens, ``shutdown`` stops them in order."""

    def __init__(self, settings: Settings, say: Callable[[str], None],
                 lock: instance.Lock | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.say = say
        self.lock = lock  # every worker holds it too: see feedmux.ops.instance
        self.silent: dict[str, float | None] = {}
        self.sessions: Sessions | None = None  # loaded at the start, before the workers
        self.markets = markets_of(settings.codes)  # then those the receiver says it carries
        self._control: Control | None = None
        self._last_stats: RunStats | None = None
        self.replay: Child | None = None
        self.eod: EndOfDay | None = None  # made before the shards start: they read its record
        self.eod_job: Child | None = None
        self.receiver: Child | None = None
        self.shards: list[Child] = []
        self.started = time.monotonic()

    def start(self, replay: ReplaySettings | None) -> None:
        """Start every worker (``run`` has checked and locked the directories)."""
        try:
            self._start(replay)
        except OSError as exc:  # the run's own files (a disk that filled meanwhile): no traceback
            raise ConfigError(f"cannot start the run: {exc}") from exc

    def _start(self, replay: ReplaySettings | None) -> None:
        settings, paths = self.settings, self.settings.paths
        for old in paths.stats_dir.glob("*.json"):
            old.unlink()  # numbers of an earlier run would read as this run's
        # Once, before any worker: the first load compiles the calendar cache (seconds); the
        # shards that load it after read the cache in milliseconds.
        self.sessions = load_sessions(settings.calendar_file, paths.root)  # workers' copy too
        if replay is None or replay.sessions:  # the round-the-clock market keeps no hours
            for warning in unknown_days(self.sessions, settings.codes, dt.date.today()):
                self.say(warning)
        migrate_stores(settings, self.say)  # before any worker: no start deadline bounds it
        label = resolve_bar_label(settings.store_list(), settings.bar_label)
        self.settings = settings = msgspec.structs.replace(settings, bar_label=label)
        if settings.nats_urls:  # the stream, once, before the shards publish to it
            jetstream.prepare(settings.nats_urls, jetstream.StreamSpec(
                settings.nats_stream, settings.nats_prefix, settings.nats_max_age_s,
                settings.nats_max_bytes, settings.nats_replicas), self.say)  # fmt: skip
        if replay is not None:
            replay = msgspec.structs.replace(replay, log_file=str(paths.log_file),
                                             log_stderr=settings.display != "live",
                                             run_dir=str(paths.root))  # fmt: skip
            self.replay = Child("replay", worker_main("replay"), (replay,), self.lock)
            url = self.replay.start()
            self.settings = settings = msgspec.structs.replace(settings, url=url)
            burst = ", opening burst" if replay.burst else ""
            if replay.sessions:
                pace = (f" in {replay.day_minutes:g} min" if replay.day_minutes
                        else " in real time")  # fmt: skip
                burst = f", the trading day {replay.session_date}{pace}"
            self.say(f"replay server: {url} ({replay.provider}, {len(replay.codes):,} codes, "
                     f"{replay.rate:,.0f} ticks/s{burst})")  # fmt: skip
            if not replay.sessions and settings.bar_sessions == "none":
                self.say("bars: plain clock minutes (the synthetic market trades around the "
                         "clock; --replay-sessions plays the exchanges' hours)")  # fmt: skip
        if settings.metrics_port is not None:
            from feedmux.ops import metrics  # noqa: PLC0415 (prometheus-client only when asked)

            port = metrics.serve(
                paths.stats_dir,
                settings.metrics_port,
                settings.metrics_host,
                markets=self._markets,
                sessions=self.sessions,
            )
            self.say(f"metrics: http://{settings.metrics_host}:{port}/metrics")
        save_universe(settings.data_dir, settings.codes)  # live changes then update it
        server_key = (zt.load_keys(settings.curve_secret_file).public.decode()
                      if settings.curve_secret_file else "")  # fmt: skip
        calendar = str(Path(settings.calendar_file).resolve()) if settings.calendar_file else ""
        sqlite = settings.sqlite_dir
        manifest = Manifest(shards=settings.shards, pid=os.getpid(), data_dir=settings.data_dir,
                            silent_after_s=settings.silent_after_s, calendar_file=calendar,
                            public=settings.public_endpoint, internal=settings.internal_endpoint,
                            curve_server_key=server_key, min_move=settings.min_move,
                            sqlite_store=str(sqlite.resolve()) if sqlite else "",
                            bar_label=settings.bar_label, bar_sessions=settings.bar_sessions,
                            bars_extended=settings.bars_extended)  # fmt: skip
        paths.manifest.write_bytes(msgspec.json.encode(manifest))
        # A new record (no day ended) before any shard reads it: an earlier run's is not ours.
        self.eod = EndOfDay(settings, self.sessions, self.say, self._start_eod_job)
        for i in range(settings.shards):
            self.shards.append(Child(f"shard-{i}", worker_main("shard"), (settings, i), self.lock))
            self.shards[-1].start()
        stores = ", ".join(str(Path(s).resolve()) if "://" not in s else s for s in self._stores())
        workers = "shard worker" if settings.shards == 1 else "shard workers"
        self.say(f"{settings.shards} {workers} up; store: {stores}; run dir: {paths.root}")
        if settings.public_endpoint:
            curve = " (CURVE)" if settings.curve_secret_file else ""
            self.say(f"consumers: {settings.public_endpoint}{curve}: shard i publishes on "
                     "PORT+2i, answers snapshots on PORT+2i+1")  # fmt: skip
        self.receiver = Child("receiver", worker_main("receiver"), (settings,), self.lock)
        self.receiver.start()
        tokens = len(settings.tokens)
        wild = [c for c in settings.codes if is_whole_market(c)]
        what = (f"every {wild[0].rpartition('.')[2]} code" if wild
                else f"{len(settings.codes):,} codes")  # fmt: skip
        self.say(f"receiver up: {what} from {settings.provider} at "
                 f"{redact(settings.url, settings.token)}"
                 + (f" ({tokens} tokens)" if tokens > 1 else ""))  # fmt: skip

    def _start_eod_job(self, days: list[int]) -> Callable[[], bool]:
        """The end-of-day job (workers/eod.py) for ``days``; whether it still runs."""
        self.eod_job = Child("eod", worker_main("eod"), (self.settings, days), self.lock)
        self.eod_job.start()
        return self.eod_job.alive

    def status(self) -> Status:
        """The status now, rates measured since the last call; the end of day moves on."""
        stats = read_stats(self.settings.paths.stats_dir)
        if self.eod is not None:
            day = self.eod.record.day
            self.eod.tick(stats, time.time_ns())
            if self.eod.record.day != day:
                self.silent = {}  # a new session: its silent codes are said anew
        status = build_status(self._last_stats, stats, self.settings.shards, silent=self.silent,
                              warnings=recent_warnings(self.settings.paths.log_file),
                              sessions=self.sessions, markets=self.markets,
                              day_end=self.eod.record if self.eod else None)  # fmt: skip
        self._last_stats = stats
        return status

    def watch(self, signals: _Signals, stop_after_s: float | None,
              show: Callable[[Status, float], None]) -> None:  # fmt: skip
        """Restart dead workers and show the status until a signal or ``stop_after_s``."""
        assert self.receiver is not None
        children = [self.receiver, *self.shards]
        next_status = time.monotonic()
        silent_every = min(SILENT_EVERY_S, max(1.0, self.settings.silent_after_s))
        next_silent = next_status + silent_every
        while signals.received is None:
            now = time.monotonic()
            if stop_after_s is not None and now - self.started >= stop_after_s:
                return
            for child in children:
                if not child.alive() and signals.received is None:
                    code = child.process.exitcode if child.process else None
                    if child is self.receiver and code == EXIT_GAVE_UP:
                        return  # a permanent vendor failure: stop in order, verdict says why
                    self.say(f"{child.name} exited unexpectedly (code {code}); restarting")
                    if child is self.receiver:  # its links died with it: keep the vendor's spacing
                        time.sleep(self.settings.reconnect_spacing_ms / 1000)
                    child.restarts += 1
                    child.start()
                    self.say(f"{child.name} restarted in {time.monotonic() - now:.1f} s")
            if now >= next_silent:
                next_silent = now + silent_every
                self._report_silent()
            if now >= next_status:
                next_status = now + STATUS_EVERY_S
                show(self.status(), now - self.started)
            # Until the next timer, a worker's exit (its sentinel) or a signal: no polling.
            sentinels = [c.process.sentinel for c in children if c.process is not None]
            wake = min(next_status, next_silent)
            if stop_after_s is not None:
                wake = min(wake, self.started + stop_after_s)
            wait_for_any([*sentinels, signals.wakeup.fileno()], max(0.0, wake - time.monotonic()))
            signals.wakeup.drain()

    def _markets(self) -> list[str]:
        return self.markets

    def _report_silent(self) -> None:
        """Say which codes are subscribed but silent, when that set changes: no tick for the
        threshold's seconds of their market's continuous trading (``Control.silent``)."""
        if self._control is None:
            self._control = Control(self.settings.paths.root, timeout=2.0)
        try:
            after = self.settings.silent_after_s
            silence = self._control.silence(after, self.sessions)
        except FeedmuxError:
            return  # busy or restarting: ask again next time
        codes = set(silence.silent)
        before = set(self.silent)
        self.silent, self.markets = silence.silent, silence.markets
        if codes != before:
            listed = ", ".join(sorted(codes)[:10]) + (" ..." if len(codes) > 10 else "")
            self.say(f"silent codes (subscribed, no tick for {after:g} s of trading): "
                     f"{len(codes)}{': ' + listed if codes else ''}")  # fmt: skip

    def shutdown(self) -> dict[str, int | None]:
        """Receiver first, then all shards at once (they drain in parallel), then the server."""
        if self.receiver is not None or self.shards or self.replay is not None:
            self.say("stopping: receiver first, then the shards store what they hold")
        codes: dict[str, int | None] = {}
        if self.eod_job is not None and self.eod_job.alive():  # the next run catches up its day
            self.say("stopping the end-of-day job: the next end of day archives what it left")
            self.eod_job.stop(10)
        if self.receiver is not None:
            codes["receiver"] = self.receiver.stop(RECEIVER_STOP_S)
        for child in self.shards:
            child.terminate()
        for child in self.shards:
            codes[child.name] = child.stop(SHARD_STOP_S)
        if self.replay is not None:
            self.replay.stop(10)
        return codes

    def verdict(self, codes: dict[str, int | None]) -> int:
        """Say whether every received tick was stored; the exit status."""
        stats = read_stats(self.settings.paths.stats_dir)
        final = build_status(None, stats, self.settings.shards)
        self.say(progress_line(final, time.monotonic() - self.started))
        failed = {name: code for name, code in codes.items() if code != 0}
        receiver = stats.receiver
        gave_up = receiver.gave_up if receiver is not None else None
        if gave_up is not None and failed.get("receiver") == EXIT_GAVE_UP:
            del failed["receiver"]  # it stopped on purpose; said below
        received = receiver.ticks + receiver.books if receiver is not None else 0
        # The shards acknowledge each bus message once it is committed; the receiver's final
        # count of unacknowledged ones is the check, and it holds across shard restarts.
        unconfirmed = receiver.unconfirmed if receiver is not None and receiver.final else None
        if self.receiver is not None and self.receiver.restarts:
            self.say(f"the receiver was restarted {self.receiver.restarts} time(s): its counts "
                     "cover the last start only")  # fmt: skip
        if failed or unconfirmed != 0:
            missing = ("the receiver did not finish its count" if unconfirmed is None
                       else f"{unconfirmed:,} not confirmed stored")  # fmt: skip
            self.say(f"stopped with errors: exit codes {failed}; {received:,} ticks and books "
                     f"received, {missing}")  # fmt: skip
            return 1
        nothing = received == 0 and final.stored == 0  # stored: a restarted receiver counts anew
        if gave_up is not None or nothing:
            if gave_up is not None:
                self.say(f"stopped: {gave_up.message}")
            if nothing:
                self.say(f"no tick received in {time.monotonic() - self.started:.0f} s: check "
                         "the codes, the token and the URL")  # fmt: skip
            return EXIT_GAVE_UP
        outside = sum(s.bars.outside for s in stats.shards.values())
        if outside:
            self.say(f"{outside:,} ticks were outside every bar's hours (their market closed, "
                     "or extended hours without --bars-extended): stored, in no bar")  # fmt: skip
        self.say(f"stopped cleanly: all {received:,} received ticks and books are stored "
                 f"({self._where_stored()})")  # fmt: skip
        return 0

    def _stores(self) -> list[str]:
        """Where this run writes: a SQLite store's directory, another store's URL (password
        masked); what read_ticks takes."""
        return [store.location if store.kind == SQLITE else store.shown
                for store in self.settings.store_list()]  # fmt: skip

    def _where_stored(self) -> str:
        """How to read back what this run wrote."""
        reads = " or ".join(f"feedmux.read_ticks({source!r})" for source in self._stores())
        return f"read them with {reads}"


def run(
    settings: Settings,
    replay: ReplaySettings | None = None,
    stop_after_s: float | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the pipeline until SIGINT/SIGTERM/SIGHUP (or ``stop_after_s``); 0 on an orderly stop.

    A second run on the same run or data directory is refused (``instance``). If ``out``'s
    reader goes away the run goes on, writing its messages to the log file only.

    On a terminal (``display`` auto) the status is a live table and the workers log only to
    ``<run_dir>/feedmux.log``; elsewhere progress lines and worker logs go to stdout/stderr."""
    out = sys.stdout if out is None else out
    live = settings.display == "live" or (settings.display == "auto" and out.isatty())
    settings = msgspec.structs.replace(settings, display="live" if live else "plain")
    # Before anything starts: a bad directory is only an error message, and a second run on
    # these directories is refused before it touches the first one's sockets or stats.
    _check_writable(Path(settings.data_dir))
    if settings.eod_export:  # found now, not when the first day ends
        _check_writable(Path(settings.eod_export), "--eod-export directory",
                        "pass a directory feedmux can write")  # fmt: skip
    settings.paths.prepare()
    stores = [Path(s.location) for s in settings.store_list() if s.kind == SQLITE]
    for store in stores:
        store.mkdir(parents=True, exist_ok=True)
    lock = instance.acquire(settings.paths.root, Path(settings.data_dir), stores)
    try:
        return _run(settings, replay, stop_after_s, out=out, live=live, lock=lock)
    finally:
        lock.release()  # the workers' copies went with them


def _run(settings: Settings, replay: ReplaySettings | None, stop_after_s: float | None, *,
         out: TextIO, live: bool, lock: instance.Lock) -> int:  # fmt: skip
    log = logging.getLogger("feedmux.supervisor")

    def output_gone(exc: Exception) -> None:
        if isinstance(exc, OSError):
            log.warning("stdout closed (%s): the run goes on; its messages are only in %s",
                        exc.strerror or exc, settings.paths.log_file)  # fmt: skip
        else:
            log.error("the display failed (%r): the run goes on; its messages are only in %s",
                      exc, settings.paths.log_file, exc_info=exc)  # fmt: skip

    display = open_display(out, live, on_gone=output_gone)

    def say(text: str) -> None:
        display.say(text)
        log.info("%s", text)

    signals = _Signals()
    supervisor = Supervisor(settings, say, lock)
    with _logging_to(settings.paths.log_file, log):
        try:
            try:
                supervisor.start(replay)
                supervisor.watch(signals, stop_after_s, display.show)
            finally:
                display.close()  # the table ends here: shutdown messages follow as plain lines
                display = open_display(out, live=False, on_gone=output_gone)
        except BaseException:
            supervisor.shutdown()  # never leave workers behind, whatever went wrong
            raise
        return supervisor.verdict(supervisor.shutdown())


@contextlib.contextmanager
def _logging_to(path: Path, log: logging.Logger) -> Iterator[None]:
    """The supervisor's messages also go to the run's log file, beside the workers' lines."""
    handler = LogFileHandler(path, encoding="utf-8")  # a full disk: lines lost, counted
    handler.setFormatter(logging.Formatter("%(asctime)s supervisor %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
