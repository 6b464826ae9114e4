"""The ``feedmux`` command. Builds the one Settings object (flags > FEEDMUX_* > --config file >
defaults) from the option tables below, through ``feedmux.ops.options``."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import secrets
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import setproctitle

from feedmux import __version__
from feedmux.client.control import Control, not_subscribed
from feedmux.codes import parse_codes, read_symbols_file
from feedmux.errors import ConfigError, FeedmuxError, NotRunningError
from feedmux.ingest.journal import journal_codes, journal_vendor
from feedmux.ingest.universe import load_universe
from feedmux.market.day import DEFAULT_ZONE
from feedmux.model import Bar, Depth, Tick
from feedmux.ops import options, pipes
from feedmux.ops.children import worker_main
from feedmux.ops.config import (
    LogLevel,
    ReplaySettings,
    Settings,
    flag_of,
    replay_defaults,
    run_dir_of,
    vendor_defaults,
)
from feedmux.ops.options import Option, Resolved, Section, default_of, setting
from feedmux.providers import DEFAULT_VENDOR, VENDORS, provider
from feedmux.shard.moves import parse_min_moves
from feedmux.simulator.faults import FAULTS
from feedmux.transports import zmq as zt
from feedmux.web.protocol import FEEDS

VENDOR_URL = provider().default_url  # the default vendor's
REPLAY_URL = "ws://127.0.0.1/replay"  # a placeholder: the built-in server says where it is
FREE_PLAN_SPACING_MS = 11_000  # the vendor's free plan: 10 s between reconnects; 10 % margin
TAIL_CHECK_S = 1.0  # with no message for this long, `tail` checks the run still lives
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


def _codes(values: Mapping[str, Any]) -> list[str] | None:
    # `is not None`: an empty --codes '' is a mistake to report, not "no codes given"
    if values["symbols_file"] is not None and values["codes"] is not None:
        raise ConfigError("give --symbols-file or --codes, not both")
    if values.get("all_codes"):
        if values["symbols_file"] is not None or values["codes"] is not None:
            raise ConfigError("give --all-codes, --symbols-file or --codes, not two of them")
        vendor = provider(values["provider"])
        if vendor.whole_market is None:
            raise ConfigError(f"{vendor.name} cannot subscribe a whole market: list the codes "
                              "with --symbols-file or --codes")  # fmt: skip
        return [vendor.whole_market]
    if values["symbols_file"] is not None:
        return read_symbols_file(Path(values["symbols_file"]))
    if values["codes"] is not None:
        return parse_codes(values["codes"].replace(",", " ").split())
    return None


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"unknown log level {text!r} (one of {', '.join(LOG_LEVELS)}, any case)"
        )
    return level


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _interval_ms(text: str) -> float:
    value = _positive(text)
    if not 10 <= value <= 60_000:
        raise argparse.ArgumentTypeError(f"must be from 10 to 60,000 ms, got {text}")
    return value


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` (to ``high``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"at least {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


def _speed(text: str) -> float:
    if text == "max":
        return 0.0
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or max: {text!r}") from None
    if speed <= 0:
        raise argparse.ArgumentTypeError("must be > 0 (or max)")
    return speed


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _run(field: str, help: str, **kw: Any) -> Option:
    return setting(Settings, field, help, **kw)


def _replay(field: str, help: str, **kw: Any) -> Option:
    return setting(ReplaySettings, field, help, **kw)


# The options shared by commands: one declaration, one help.
SYMBOLS_FILE = Option("symbols-file", "codes to subscribe, whitespace or comma separated, "
                      "# comments", metavar="FILE")  # fmt: skip
CODES = Option("codes", "codes on the command line, comma separated", metavar="LIST")
DATA_DIR = _run("data_dir", "where stores live (default ./{default})", metavar="DIR")
RUN_DIR = _run("run_dir", "sockets and stats of this instance (default <data-dir>/run)",
               metavar="DIR")  # fmt: skip
SEED = _replay("seed", "seed of the synthetic market (default {default})")
WARMUP = _replay("warmup_s", "wait S seconds after the first subscription before feeding",
                 metavar="S")  # fmt: skip
DURATION = _replay("duration_s", "stop feeding after S seconds (default: feed until stopped)",
                   metavar="S")  # fmt: skip
BURST = _replay("burst", "open with one tick for every subscribed code at once")
SESSIONS = _replay("sessions", "follow a simulated trading day of the codes' markets, each "
                   "trade stamped with its exchange time: one trade per code at each auction's "
                   "match (09:25:00 and 15:00:00 for A-shares, 09:20:00 and 16:08:00 for Hong "
                   "Kong), one per code at the start of every continuous minute plus --rate "
                   "random ones, nothing at lunch or when closed, after-hours only for STAR, "
                   "ChiNext, BJ and US codes; the feed ends with the day")  # fmt: skip
SESSION_DATE = _replay("session_date", "the simulated day (default: the latest A-share trading "
                       "day up to today); a day none of the codes' markets trades is refused",
                       metavar="YYYY-MM-DD")  # fmt: skip
DAY_MINUTES = _replay("day_minutes", "play the whole simulated day (from 5 minutes before the "
                      "first auction to the end of after-hours: 09:10-15:30 for A-shares) in M "
                      "wall minutes (default: real time); the rate stays ticks per wall second",
                      metavar="M")  # fmt: skip
SESSION_DAYS = _replay("session_days", "play N consecutive trading days of the calendar from "
                       "the session date, each compressed as --day-minutes says; the next day "
                       "starts as soon as one ends (the overnight gap takes no wall time), its "
                       "vendor seqs numbered anew from the first day's, as exchanges do "
                       "(default {default})", metavar="N")  # fmt: skip
SESSION_START = _replay("session_start", "start the simulated day at this local time (of the "
                        "A-share market, else Hong Kong's, else New York's)",
                        metavar="HH:MM")  # fmt: skip
MUTE = _replay("mutes", "fault: no more trades of CODE from HH:MM of the simulated day (its "
               "exchange's time), counted in the report (repeatable)",
               metavar="CODE@HH:MM")  # fmt: skip
LOCATION = (RUN_DIR, DATA_DIR)  # the options that find a run's files

# `feedmux run` (and `feedmux config show`): flags, file keys and FEEDMUX_* variables. In
# sections, so that --help reads as sections; a section has no effect on parsing. The options
# of RUN_SETTINGS make the Settings, those of RUN_REPLAY the built-in server's ReplaySettings.
RUN_SETTINGS = (
    Section("vendor", "where the feed comes from and what to ask for", (
        _run("provider", "the market-data vendor (default {default}); the defaults of --url, "
             "the plan's limits and pacing are its own", choices=tuple(VENDORS),
             metavar="|".join(VENDORS)),
        _run("url", f"vendor WebSocket endpoint (default: the vendor's, {VENDOR_URL} for "
             f"{DEFAULT_VENDOR})"),
        _run("token", "vendor token, or several comma-separated where the vendor caps the "
             "connections of one (default: $FEEDMUX_TOKEN, which is better: a command line "
             "can be read by other users until feedmux replaces its process title)"),
        SYMBOLS_FILE,
        CODES,
        Option("all-codes", "subscribe the whole market with the vendor's wildcard, where it "
               "has one (e.g. T.* for every US trade)", default=False, kind="switch"),
        _run("depth_levels", "also subscribe order books of LEVELS levels (A-shares: up to 5)",
             metavar="LEVELS"),
        _run("watchdog_s", "reconnect a connection with no message for S seconds (default "
             "{default})", metavar="S"),
        _run("give_up_after", "stop the run (exit 3) after the same permanent failure N times "
             "in a row: a refused token, a URL that is no WebSocket (default {default}); "
             "transient ones (refused connection, 5xx, timeouts) are retried for ever",
             metavar="N"),
        Option("free-plan", "space reconnects 10 s apart, as the vendor's free plan needs "
               "(paid: 3 s)", default=False, kind="switch"),
        _run("cross_interval_ms", "at least MS between any two subscription requests of the "
             "token, on one connection or not (default {default}: the vendor's rule is 3 s); "
             "widened after a \"too many requests\" reply", metavar="MS"),
    )),
    Section("sharding", "shard workers and the bus that feeds them", (
        _run("shards", "shard worker processes (default {default})", metavar="N"),
        _run("overflow", "when a shard falls --bus-memory ticks behind: spill to disk and "
             "catch up (default, lossless) or drop (counted; subscribers see a gap)"),
        _run("bus_window", "ticks in flight to one shard awaiting its commit (default "
             "{default})", metavar="TICKS"),
        _run("bus_memory", "ticks held in memory per shard before --overflow (default "
             "{default})", metavar="TICKS"),
        _run("bus_delay_ms", "hold routed ticks up to MS before sending them to the shards, "
             "for fewer, larger bus messages (default {default}: send after each read)",
             metavar="MS"),
    )),
    Section("stores", "where ticks are kept", (
        DATA_DIR,
        RUN_DIR,
        _run("stores", "where shards store ticks, repeatable: sqlite://PATH (sqlite:///abs/dir "
             "absolute, sqlite://rel/dir relative, sqlite:// the data dir; the default) or "
             "postgresql://user@host/db; also FEEDMUX_STORE (space-separated)", metavar="URL"),
        _run("redis_url", "also publish every trade, book and bar to Redis Streams, one stream per "
             "shard (feedmux:shard:<i>), e.g. redis://127.0.0.1:6379/0; also FEEDMUX_REDIS",
             metavar="URL"),
        _run("redis_maxlen", "entries kept per shard stream (approximately; {default})",
             metavar="N"),
        _run("redis_prefix", "stream names: NAME:shard:<i> (default {default})",
             metavar="NAME"),
        Option("no-journal", "do not keep the journal of received frames in <data-dir>/journal",
               default=False, kind="switch"),
        _run("journal_max_mb", "start a new journal file beyond MB megabytes on disk "
             "(compressed; default {default})", metavar="MB"),
        _run("commit_log", argparse.SUPPRESS),  # benchmarks
    )),
    Section("end of day", "what happens when a trading day ends", (
        _run("eod_export", "when a trading day ends, write its ticks and bars to the Parquet "
             "archive in DIR (as feedmux export does; also days stored earlier and not yet "
             "there)", metavar="DIR"),
        _run("keep_days", "when a trading day ends, remove journals and stored ticks, books and "
             "bars of all but the N latest trading days (with --eod-export, only days already "
             "archived); 0 keeps everything (default)", metavar="N"),
        _run("eod_at", "end each trading day at HH:MM of the main market's clock (default: 2 "
             "minutes after its last session, after-hours included)", metavar="HH:MM"),
    )),
    Section("bars", "market hours and one-minute bars", (
        _run("bar_label", "a bar's time: its end (09:31 is 09:30:00-09:30:59, as A-share tools "
             "show it) or its start (default: the label the stores keep; end for a new "
             "store)", metavar="end|start"),
        _run("bar_sessions", "exchange: bars follow each market's sessions (auctions folded into "
             "the first and last bars, none at lunch or when closed; the default); none: a bar "
             "for every clock minute with ticks", metavar="exchange|none"),
        _run("bars_extended", "also bars of pre-market and after-hours trades"),
        _run("calendar_file", "TOML of days the calendar library does not know yet: [[day]] "
             "market = \"SH\", date = 2027-02-08, closed = true (or close = \"12:00\", or "
             "open = true)", metavar="FILE"),
    )),
    Section("nats", "NATS JetStream: the bus across machines", (
        _run("nats_url", "also publish every trade, book and bar to NATS JetStream, on "
             "subjects PREFIX.<family>.<market>.<symbol>, e.g. nats://127.0.0.1:4222 (several "
             "servers of a cluster: comma-separated); also FEEDMUX_NATS", metavar="URL[,URL...]"),
        _run("nats_stream", "the JetStream stream: created when missing, checked when it exists "
             "(default {default})", metavar="NAME"),
        _run("nats_prefix", "subjects PREFIX.trades.SH.600519, ... (default {default})",
             metavar="PREFIX"),
        _run("nats_max_age_s", "a new stream keeps messages S seconds (default {default}; 0: no "
             "limit)", metavar="S"),
        _run("nats_max_bytes", "a new stream keeps at most BYTES, the oldest go first (default "
             "{default}: no limit)", metavar="BYTES"),
        _run("nats_replicas", "a new stream's copies on a cluster's servers (default {default})",
             metavar="N"),
    )),
    Section("publishing", "what the shards publish to subscribers", (
        Option("min-move", "also publish, on topics MT|<code> (trades) or MD|<code> (books: "
               "best bid or ask), only moves of at least STEP, e.g. trades=0.01; repeatable; "
               "stores keep every tick", kind="list", metavar="FAMILY=STEP"),
        _run("pub_queue", "messages a slow subscriber may lag before a shard drops for it "
             "alone; the subscriber sees the gap (default {default})", metavar="MESSAGES"),
    )),
    Section("limits", "the vendor plan's caps and what a frame may be", (
        _run("max_codes_per_conn", "the plan's code cap per connection (default: the "
             "vendor's, {default} for " + DEFAULT_VENDOR + ")", metavar="N"),
        _run("max_conns", "the plan's connection cap per token (default: the vendor's, "
             "{default} for " + DEFAULT_VENDOR + ")", metavar="N"),
        _run("codes_per_request", "a subscription message names at most N codes; a longer "
             "change goes in several, --request-interval-ms apart (default: the vendor's, "
             "{default} for " + DEFAULT_VENDOR + ")", metavar="N"),
        _run("subscribe_model", "replace: each request sends a connection's whole list; "
             "add_remove: only what changed (default: the vendor's, {default} for "
             + DEFAULT_VENDOR + ")"),
        _run("request_interval_ms", "at least MS between two requests of a connection, "
             "heartbeats included (default: the vendor's, {default} for " + DEFAULT_VENDOR
             + ")", metavar="MS"),
        _run("max_frame_bytes", "a vendor frame declaring more than this is refused from its "
             "header: counted, the link closed (1009) and rebuilt (default {default})",
             metavar="BYTES"),
    )),
    Section("display", "what the run shows and logs, and when it stops", (
        _run("display", "live: a status table redrawn every second (workers then log only to "
             "<run-dir>/feedmux.log); plain: progress lines; auto: live on a terminal"),
        _run("log_level", "worker log level, any case (default {default})", parse=_log_level,
             metavar="LEVEL"),
        _run("silent_after_s", "report codes with no tick for S seconds of their market's "
             "continuous trading (lunch, auctions and closed hours not counted; default "
             "{default})", metavar="S"),
        Option("stop-after", "stop after S seconds", parse=_positive, metavar="S"),
        _run("stats_interval_ms", argparse.SUPPRESS),
    )),
    Section("network", "sockets for consumers, workers and monitoring", (
        _run("public_endpoint", "consumer sockets on TCP instead of ipc in the run dir: shard "
             "i publishes on PORT+2i and answers snapshots on PORT+2i+1 (HOST 0.0.0.0: every "
             "interface)", metavar="tcp://HOST:PORT"),
        _run("internal_endpoint", "internal sockets on TCP: shard i's input on PORT+i, then "
             "acks and control (unencrypted: keep it on loopback or a private network)",
             metavar="tcp://HOST:PORT"),
        _run("curve_secret_file", "encrypt the --public sockets with CURVE: the server's "
             ".key_secret file (feedmux keygen)", metavar="FILE"),
        _run("curve_clients_dir", "with --curve-secret: only clients whose public .key file "
             "is in DIR may connect (default: any client that has the server's public key)",
             metavar="DIR"),
        _run("metrics_port", "serve Prometheus metrics on http://HOST:PORT/metrics (0: any "
             "port)", metavar="PORT"),
        _run("metrics_host", "address of the metrics server (default {default}; 0.0.0.0 for "
             "all)", metavar="HOST"),
    )),
)  # fmt: skip
RUN_REPLAY = Section("replay server", "a built-in local feed instead of the vendor", (
    Option("replay", "start the built-in replay server and feed from it; without "
           "--symbols-file/--codes it serves the full synthetic A-share market",
           default=False, kind="switch"),
    _replay("rate", "ticks per second across all subscribed codes (default {default})",
            name="replay-rate", metavar="TICKS_PER_S"),
    dataclasses.replace(DURATION, name="replay-duration"),
    dataclasses.replace(BURST, name="replay-burst"),
    dataclasses.replace(WARMUP, name="replay-warmup"),
    SEED,
    dataclasses.replace(SESSIONS, name="replay-sessions"),
    dataclasses.replace(SESSION_DATE, name="replay-session-date"),
    dataclasses.replace(DAY_MINUTES, name="replay-day-minutes"),
    dataclasses.replace(SESSION_DAYS, name="replay-session-days"),
    dataclasses.replace(SESSION_START, name="replay-session-start"),
    dataclasses.replace(MUTE, name="replay-mute"),
))  # fmt: skip
RUN = (*RUN_SETTINGS, RUN_REPLAY)
# Of these, an option set in a layer replaces the others set below it.
RUN_EXCLUSIVE = (frozenset({"codes", "symbols_file", "all_codes"}),)

# `feedmux replay`: flags only (and the token from FEEDMUX_TOKEN).
REPLAY = (Section("", "", (
    _replay("provider", "the vendor whose server it plays (default {default}); the plan's "
            "limits below default to its own", choices=tuple(VENDORS),
            metavar="|".join(VENDORS)),
    _replay("host", "loopback address (default {default})"),
    # Not the library's 0: a server started by hand listens where a client expects it.
    _replay("port", "port (default {default}, 0 = any)", default=8765),
    _replay("token", "token clients must present (default $FEEDMUX_TOKEN)"),
    SYMBOLS_FILE,
    CODES,
    SEED,
    _replay("rate", "synthetic ticks per (wall) second across all subscribed codes (default "
            "{default}); with --sessions, the random trades of continuous trading",
            metavar="TICKS_PER_S"),
    DURATION,
    BURST,
    WARMUP,
    SESSIONS,
    SESSION_DATE,
    DAY_MINUTES,
    SESSION_DAYS,
    SESSION_START,
    MUTE,
    _replay("calendar_file", "with --sessions: TOML of days the calendar library does not "
            "know yet (as feedmux run's --calendar-file)", metavar="FILE"),
    _replay("max_codes_per_conn", "codes a connection may subscribe (default: the vendor's, "
            "{default} for " + DEFAULT_VENDOR + ")", metavar="N"),
    _replay("max_conns", "connections per token (default: the vendor's, {default} for "
            + DEFAULT_VENDOR + ")", metavar="N"),
    _replay("request_interval_ms", "least time between two requests of a connection "
            "(default {default})", metavar="MS"),
    _replay("cross_interval_ms", "least time between two subscription requests of the token "
            "(default {default})", metavar="MS"),
    _replay("heartbeat_timeout_s", "close a connection silent for S seconds (default "
            "{default})", metavar="S"),
    _replay("reconnect_spacing_ms", "least time between a close and the next connection "
            "(default {default})", metavar="MS"),
    _replay("report_path", "JSON report, rewritten every second", metavar="PATH"),
    _replay("sent_messages", "every message sent, one per line", metavar="PATH",
            aliases=("sent-log",)),
    _replay("exit_when_done", "exit when the feed ends (--duration, the journal's end, the "
            "simulated day's end)"),
    _replay("stall_after_s", "fault: S seconds into the feed, go silent (no data, no replies)",
            metavar="S"),
    _replay("stall_for_s", "fault: how long the stall lasts", metavar="S"),
    _replay("drop_after_s", "fault: S seconds into the feed, drop every TCP connection "
            "abruptly", metavar="S"),
    _replay("close_after_s", "fault: S seconds into the feed, close every connection cleanly",
            metavar="S"),
    _replay("garbage_every", "fault: send a malformed frame after every N trades",
            metavar="N"),
    _replay("duplicate_every", "fault: send every Nth trade twice", metavar="N"),
    _replay("resend_on_subscribe", "when a connection subscribes a code, send the code's "
            "latest trade again first, as vendors do on a resubscribe"),
    _replay("faults", "fault on one connection (repeatable, in order): huge-header (a frame "
            "declaring 2^40 bytes, then 64 KiB every 50 ms), oversized-control, "
            "reserved-opcode, close-1001, envelope-error (the next subscription request gets "
            "a cmd_id 0 error)", choices=FAULTS, metavar="NAME"),
    _replay("fault_after_s", "the first --fault S seconds after the first subscription "
            "request, each next one S seconds after the one before (default {default})",
            metavar="S"),
    _replay("journal", "serve a feedmux journal (file or directory) instead of the synthetic "
            "market; its codes are the universe unless --codes is given", metavar="PATH"),
    _replay("speed", "journal pace: 1 as recorded (default), 10 ten times faster, max",
            parse=_speed, metavar="1|10|max"),
    _replay("journal_rate", "serve the journal's frames, pre-framed, at this rate instead of "
            "its recorded pace (--rate with --journal did this, and still does)",
            metavar="FRAMES_PER_S"),
    _replay("ramp", "with --journal-rate: multiply the rate by FACTOR every --step",
            metavar="FACTOR"),
    _replay("step_s", "seconds per rate step (default 0: one step)", metavar="S"),
    _replay("gap_s", "pause between rate steps", metavar="S"),
    _replay("write_times", "with --journal-rate: (send_ns, first index, count) per write",
            metavar="PATH", aliases=("send-log",)),
    _replay("log_level", "any case (default {default})", parse=_log_level, metavar="LEVEL"),
)),)  # fmt: skip


Command = tuple[str, str, argparse.ArgumentParser]  # full name, one-line help, parser


def build_parser(commands: list[Command] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; ``commands``, if given, gets each command in order (the
    CLI reference is made from them)."""
    listed = commands if commands is not None else []
    parser = argparse.ArgumentParser(
        prog="feedmux", description="A whole stock market's real-time feed into Python."
    )
    parser.add_argument("--version", action="version", version=f"feedmux {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, within: Any = sub,
                prefix: str = "feedmux") -> argparse.ArgumentParser:  # fmt: skip
        made: argparse.ArgumentParser = within.add_parser(name, help=summary)
        listed.append((f"{prefix} {name}", summary, made))
        return made

    run = command("run", "run the pipeline: receiver, N shard workers, stores")
    _add_config_option(run)
    options.add_options(run, RUN)
    config = sub.add_parser("config", help="the effective configuration")
    config_sub = config.add_subparsers(dest="action", required=True)
    show = command("show", "print the effective settings as TOML, token masked, each with "
                   "where it came from", config_sub, "feedmux config")  # fmt: skip
    _add_config_option(show)
    options.add_options(show, RUN)

    rep = command("replay", "serve a vendor-compatible feed on loopback")
    options.add_options(rep, REPLAY)

    for name, what in (("subscribe", "add codes to"), ("unsubscribe", "remove codes from")):
        change = command(name, f"{what} a running instance; returns once the "
                                "vendor confirmed")  # fmt: skip
        change.add_argument("codes", nargs="+", metavar="CODE")
        _add_location_options(change, *LOCATION)
    listing = command("subscriptions", "list a running instance's codes")
    _add_location_options(listing, *LOCATION)
    silent = command("silent", "codes subscribed but without ticks while their market trades")
    silent.add_argument("--threshold", type=float, metavar="S",
                        default=default_of(Settings, "silent_after_s"),
                        help="silent for longer than S seconds of continuous trading (lunch, "
                        "auctions and closed hours not counted; default %(default)g)")  # fmt: skip
    _add_location_options(silent, *LOCATION)

    keygen = command("keygen", "make a CURVE key pair for --curve-secret or a client")
    keygen.add_argument("dir", metavar="DIR", help="where to write NAME.key and NAME.key_secret")
    keygen.add_argument("--name", default="server", help="file name (default server)")

    status = command("status", "the live table of a running instance, once")
    _add_location_options(status, *LOCATION)
    status.add_argument("--json", action="store_true", help="print it as JSON instead")

    snap = command("snapshot", "the latest tick (and book) per code of a running "
                          "instance")  # fmt: skip
    snap.add_argument("codes", nargs="*", metavar="CODE", help="codes (default: every code)")
    _add_location_options(snap, *LOCATION)
    _add_remote_options(snap)
    snap.add_argument("--format", choices=("table", "csv"), default="table")
    snap.add_argument("--tz", default="Asia/Shanghai", help="time zone of the times shown")

    web = command("web", "serve the live market page of a running instance to browsers")
    _add_web_options(web)
    _add_location_options(web, *LOCATION)

    export = command("export", "write a trading day of stored ticks as Parquet or CSV")
    export.add_argument("--date", required=True, type=_day, metavar="YYYY-MM-DD",
                        help="the trading day: each code's exchange decides which ticks "
                        "are in it (New York's date for .US, Shanghai's for A-shares)")  # fmt: skip
    export.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    export.add_argument("--out", metavar="DIR", help="archive root (default <data-dir>/archive)")
    export.add_argument(
        "--tz", metavar="ZONE", help="instead: the calendar day in this time zone, for every code"
    )
    _add_location_options(export, DATA_DIR)

    tail = command("tail", "print live ticks of a running instance, or with --nats from JetStream")
    tail.add_argument("codes", nargs="*", metavar="CODE", help="codes (default: all)")
    _add_location_options(tail, *LOCATION)
    tail.add_argument("--count", type=int, help="exit after this many messages")
    tail.add_argument("--books", action="store_true", help="order books too (run --depth)")
    tail.add_argument("--bars", action="store_true", help="1-minute bars too, as they close")
    _add_remote_options(tail)
    tail.add_argument("--moves", action="store_true",
                      help="only the --min-move topics: moves of trades (and books)")  # fmt: skip
    nats = tail.add_argument_group("NATS JetStream", "read what every `feedmux run --nats` "
                                   "publishes there, from any host, instead of one run's "
                                   "sockets")  # fmt: skip
    nats.add_argument("--nats", metavar="URL[,URL...]",
                      help="the NATS server, or several of a cluster, comma-separated")  # fmt: skip
    nats.add_argument("--nats-stream", metavar="NAME",
                      help="the run's --nats-stream (default: as `feedmux run` takes it from "
                      "FEEDMUX_NATS_STREAM or --config, else "
                      f"{default_of(Settings, 'nats_stream')})")  # fmt: skip
    nats.add_argument("--nats-prefix", metavar="PREFIX",
                      help="the run's --nats-prefix (default: as `feedmux run` takes it, else "
                      f"{default_of(Settings, 'nats_prefix')})")  # fmt: skip
    nats.add_argument("--start", metavar="live|all|SEQ|TIME",
                      help="live: what is published from now (default); all: from the oldest "
                      "message kept; a stream sequence; or a time, e.g. "
                      "2026-03-02T09:30:00+08:00")  # fmt: skip
    nats.add_argument("--markets", metavar="LIST",
                      help="only these markets, comma-separated (e.g. SH,SZ)")  # fmt: skip
    return parser


def _add_config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="TOML file of run options (keys: flag names; default $FEEDMUX_CONFIG); "
                   "FEEDMUX_* variables and flags override it")  # fmt: skip


def _add_web_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address (default %(default)s; another needs --web-token)")  # fmt: skip
    p.add_argument(
        "--port", type=_whole(0, 65535), default=8080, help="port (default %(default)s; 0: any)"
    )
    p.add_argument("--web-token", metavar="TOKEN",
                   help="a secret every page must give (?token=...); default "
                   "$FEEDMUX_WEB_TOKEN; required off loopback")  # fmt: skip
    p.add_argument("--web-interval", type=_interval_ms, default=250.0, metavar="MS",
                   help="at most one update per code this often, the latest wins "
                   "(default %(default)g ms)")  # fmt: skip
    p.add_argument("--feed", choices=FEEDS, default="auto",
                   help="moves: the run's --min-move trades; trades: every trade; auto "
                   "(default): moves when the run publishes them")  # fmt: skip
    p.add_argument("--store", metavar="URL",
                   help="where the run's bars are, for volumes and charts (default: the "
                   "run's SQLite store; give a postgresql:// URL for PostgreSQL)")  # fmt: skip
    p.add_argument("--max-pages", type=_whole(1), default=200,
                   help="pages served at once (default %(default)s)")  # fmt: skip


def _add_remote_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", metavar="tcp://HOST:PORT",
                   help="a run on another host: its --public endpoint (with --shards)")  # fmt: skip
    p.add_argument("--shards", type=int, help="with --endpoint: the run's --shards")
    p.add_argument("--server-key", metavar="FILE", help="CURVE: the server's public .key file")
    p.add_argument("--client-key", metavar="FILE", help="CURVE: this client's .key_secret file")


def _add_location_options(p: argparse.ArgumentParser, *location: Option) -> None:
    """--run-dir/--data-dir as `feedmux run` takes them, and the --config file they may be in."""
    options.add_options(p, [Section("", "", location)])
    p.add_argument("--config", metavar="FILE",
                   help="the run's TOML file, for data_dir and run_dir (default "
                   "$FEEDMUX_CONFIG); FEEDMUX_* variables and flags override it")  # fmt: skip


def _resolve_run(given: Mapping[str, Any], config: str | None,
                 env: Mapping[str, str]) -> Resolved:  # fmt: skip
    """`feedmux run`'s options from ``given`` flags, FEEDMUX_* variables and the --config file;
    the warnings said on stderr."""
    path = options.config_path(config, env)
    data = options.read_file(path) if path is not None else None
    if path is not None and data is not None:
        warning = options.token_file_warning(path, data)
        if warning:
            print(warning, file=sys.stderr)
    resolved = options.resolve(RUN, given, env, data, str(path), exclusive=RUN_EXCLUSIVE)
    for warning in resolved.warnings:
        print(warning, file=sys.stderr)
    _vendor_defaults(resolved, RUN_SETTINGS, vendor_defaults)
    return resolved


def _vendor_defaults(resolved: Resolved, sections: Sequence[Section],
                     defaults_of: Callable[[str], dict[str, Any]]) -> None:  # fmt: skip
    """The options left at their default take the chosen vendor's (its URL, plan, pacing);
    the vendor's name was checked against the registry with the option's choices."""
    defaults = defaults_of(resolved.values["provider"])
    for option in (o for s in sections for o in s.options):
        if option.field in defaults and resolved.sources[option.dest] == "default":
            resolved.values[option.dest] = defaults[option.field]


def resolve_run_options(args: argparse.Namespace, env: Mapping[str, str]) -> Resolved:
    """`feedmux run`'s options from its flags, FEEDMUX_* variables and the --config file."""
    return _resolve_run(vars(args), args.config, env)


def _locations(args: argparse.Namespace, env: Mapping[str, str]) -> Resolved:
    """A command that finds a run: its --run-dir/--data-dir through `feedmux run`'s layers (its
    other flags are its own, e.g. tail's --shards)."""
    given = {o.dest: vars(args)[o.dest] for o in LOCATION if o.dest in vars(args)}
    return _resolve_run(given, args.config, env)


def _run_dir(args: argparse.Namespace, env: Mapping[str, str]) -> Path:
    values = _locations(args, env).values
    return run_dir_of(values["data_dir"], values["run_dir"])


def _data_dir(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    return str(_locations(args, env).values["data_dir"])


def _fields(sections: Sequence[Section], values: Mapping[str, Any],
            skip: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """The Settings fields the options set as they are (unset ones keep the field default)."""
    return {o.field: values[o.dest] for s in sections for o in s.options
            if o.field and o.dest not in skip and values[o.dest] is not None}  # fmt: skip


def _namer(sections: Sequence[Section], resolved: Resolved,
           struct: type[Settings | ReplaySettings]) -> Callable[[str], str]:  # fmt: skip
    """Names the option that set a field as its value was given: ``--shards``, ``environment
    variable FEEDMUX_SHARDS``, ``feedmux.toml: key 'shards'``."""
    dests = {o.field: o.dest for s in sections for o in s.options if o.field}

    def name(field: str) -> str:
        dest = dests.get(field)
        return resolved.names[dest] if dest in resolved.names else flag_of(struct, field)

    return name


def build_settings(resolved: Resolved) -> tuple[Settings, ReplaySettings | None]:
    """The one frozen Settings (and the replay server's, with --replay) from resolved options."""
    values = resolved.values
    codes = _codes(values)
    replay = None
    token = values["token"] or ""
    if values["replay"]:
        vendor = provider(values["provider"])
        market = vendor.replay_universe(values["seed"])
        codes = codes or [c for c in market if vendor.cannot_carry(c) is None]
        # Enough tokens for the whole list, where the vendor caps the connections of one.
        per_token = values["max_codes_per_conn"] * values["max_conns"]
        token = token or ",".join(secrets.token_hex(16)
                                  for _ in range(math.ceil(len(codes) / per_token)))  # fmt: skip
        # The server lists the whole synthetic market (and any other code asked for), so
        # codes can be added live.
        listed = market + sorted(set(codes) - set(market) - {vendor.whole_market})
        # The server's plan is the one the run says it has.
        plan = {**replay_defaults(vendor.name), **_fields([RUN_REPLAY], values),
                "max_codes_per_conn": values["max_codes_per_conn"],
                "max_conns": values["max_conns"]}  # fmt: skip
        replay = ReplaySettings(**plan, token=token, codes=listed, provider=vendor.name,
                                log_level=values["log_level"],
                                calendar_file=values["calendar_file"])  # fmt: skip
        replay.validate(_namer([RUN_REPLAY], resolved, ReplaySettings))
        replay = _session_day(replay)
    if codes is None:
        codes = load_universe(values["data_dir"])  # resume what the last run was subscribed to
    if codes is None:
        raise ConfigError("give the codes to subscribe: --symbols-file FILE or --codes LIST "
                          "(or --replay for the synthetic market)")  # fmt: skip
    # The vendor's defaults for the fields no option sets (its heartbeat, reconnect spacing);
    # those an option sets are already its own where not given (``_vendor_defaults``).
    fields = {**vendor_defaults(values["provider"]), **_fields(RUN_SETTINGS, values,
                                                               skip=("token",))}  # fmt: skip
    if values["replay"] and resolved.sources["url"] == "default":
        fields["url"] = REPLAY_URL
    if replay is not None and not replay.sessions and resolved.sources["bar_sessions"] == "default":
        # The built-in market trades around the clock, stamped with the wall clock: bars by
        # the exchanges' hours would be none at night. --replay-sessions plays their hours.
        fields["bar_sessions"] = "none"
    if values["free_plan"]:
        fields["reconnect_spacing_ms"] = FREE_PLAN_SPACING_MS
    settings = Settings(**fields, token=token, codes=codes, journal=not values["no_journal"],
                        min_move=parse_min_moves(values["min_move"] or []))  # fmt: skip
    settings.validate(_namer(RUN_SETTINGS, resolved, Settings))
    if settings.curve_secret_file:
        zt.load_keys(settings.curve_secret_file)  # a bad key file fails here, not in 8 shards
    if settings.curve_clients_dir and not Path(settings.curve_clients_dir).is_dir():
        raise ConfigError(f"--curve-clients: no such directory: {settings.curve_clients_dir}")
    return settings, replay


def cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from feedmux.ops import supervisor  # noqa: PLC0415 (keeps `feedmux --help` fast)

    resolved = resolve_run_options(args, env)
    settings, replay = build_settings(resolved)
    return supervisor.run(settings, replay, resolved.values["stop_after"])


def cmd_config(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    resolved = resolve_run_options(args, env)
    print(options.to_toml(resolved, secret=("token",)), end="")
    return 0


def replay_settings(resolved: Resolved, env: Mapping[str, str]) -> ReplaySettings:
    """`feedmux replay`'s settings from its resolved flags (the token also from FEEDMUX_TOKEN):
    the vendor's (the journal's, if it names one) plan where a flag does not say."""
    _journal_vendor(resolved)
    _vendor_defaults(resolved, REPLAY, replay_defaults)
    values = resolved.values
    vendor = provider(values["provider"])
    codes = _codes(values)
    if codes is None and values["journal"]:
        codes = journal_codes(Path(values["journal"]), vendor)
    fields = _fields(REPLAY, values, skip=("token",))
    if values["journal"] and resolved.sources["rate"] == "flag" and not fields.get("journal_rate"):
        # --rate once meant frames per second with --journal: it still does, with a warning
        resolved.warnings.append("warning: --rate with --journal is deprecated; use "
                                 "--journal-rate")  # fmt: skip
        fields["journal_rate"] = values["rate"]
    settings = ReplaySettings(**fields, token=values["token"] or env.get("FEEDMUX_TOKEN", ""),
                              codes=codes or vendor.replay_universe(values["seed"]))  # fmt: skip
    settings.validate(_namer(REPLAY, resolved, ReplaySettings))
    return _session_day(settings)


def _session_day(settings: ReplaySettings) -> ReplaySettings:
    """With --sessions: the simulated day filled in (the latest trading day if none is given)
    and checked with the day's other options, so a holiday or a bad mute stops the start."""
    if not settings.sessions:
        return settings
    from feedmux.market.sessions import load_sessions  # noqa: PLC0415 (the calendars)
    from feedmux.simulator import schedule  # noqa: PLC0415

    sessions = load_sessions(settings.calendar_file)
    today = datetime.now(ZoneInfo(DEFAULT_ZONE)).date()
    day = schedule.session_date(settings.session_date, sessions, settings.codes, today)
    schedule.plan(sessions, settings.codes, day, day_minutes=settings.day_minutes,
                  start=settings.session_start, mutes=settings.mutes,
                  days=settings.session_days)  # fmt: skip
    return msgspec.structs.replace(settings, session_date=day.isoformat())


def _journal_vendor(resolved: Resolved) -> None:
    """A journal is served as the vendor it was recorded from: ``--provider`` may be left
    out, and must not name another."""
    values = resolved.values
    if not values["journal"]:
        return
    recorded = journal_vendor(Path(values["journal"]))
    if recorded is None:
        return
    if resolved.sources["provider"] == "default":
        values["provider"] = recorded
    elif values["provider"] != recorded:
        raise ConfigError(f"the journal {values['journal']} was recorded from {recorded}, not "
                          f"{values['provider']}: drop --provider or give --provider "
                          f"{recorded}")  # fmt: skip


def cmd_replay(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    resolved = options.resolve(REPLAY, vars(args), {})  # flags only: the server is a test tool
    settings = replay_settings(resolved, env)
    for warning in resolved.warnings:
        print(warning, file=sys.stderr)
    return worker_main("replay")(settings)


def cmd_tail(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from feedmux.client.subscriber import Subscriber  # noqa: PLC0415
    from feedmux.ops import instance  # noqa: PLC0415

    if args.nats is not None:
        return _tail_nats(args, env)
    nats_only = [flag for flag, value in (("--start", args.start), ("--markets", args.markets),
                 ("--nats-stream", args.nats_stream), ("--nats-prefix", args.nats_prefix))
                 if value is not None]  # fmt: skip
    if nats_only:
        raise ConfigError(f"{', '.join(nats_only)}: only with --nats")
    run_dir = _run_dir(args, env)
    # A local run found by its directory: when it stops, say so rather than wait for ever.
    # (--endpoint: another host's run, which this one cannot see stop.)
    watched = args.endpoint is None and args.shards is None
    seen = 0
    with Subscriber(args.codes or None, run_dir, args.shards, trades=not args.moves,
                    books=args.books and not args.moves, trade_moves=args.moves,
                    book_moves=args.books and args.moves, bars=args.bars, endpoint=args.endpoint,
                    server_key=args.server_key,
                    client_key=args.client_key) as subscriber:  # fmt: skip
        if args.codes and watched:
            _say_unsubscribed(run_dir, args.codes)
        while args.count is None or seen < args.count:
            item = subscriber.recv(timeout=TAIL_CHECK_S)
            if item is None:
                _check_reader()
                if watched and instance.running(run_dir) is None:
                    raise NotRunningError(f"the feedmux run in {run_dir} stopped")
                continue
            print(_tail_line(item), flush=True)
            seen += 1
    return 0


def _say_unsubscribed(run_dir: Path, codes: list[str]) -> None:
    """A code the run does not carry would print nothing, for ever: say so at once."""
    try:
        listed = Control(run_dir, timeout=5.0).subscriptions()
    except FeedmuxError:  # the receiver busy or restarting: tail on without the hint
        return
    for code in not_subscribed(parse_codes(codes), listed):
        print(f"feedmux tail: {code} is not subscribed: nothing comes for it until "
              f"`feedmux subscribe {code}`", file=sys.stderr)  # fmt: skip


def _tail_nats(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """`feedmux tail --nats`: the same lines, from JetStream."""
    from feedmux.client.jetstream import NatsSubscriber  # noqa: PLC0415

    sockets_only = [flag for flag, value in (("--moves", args.moves), ("--endpoint", args.endpoint),
                    ("--shards", args.shards), ("--server-key", args.server_key),
                    ("--client-key", args.client_key)) if value]  # fmt: skip
    if sockets_only:
        raise ConfigError(f"{', '.join(sockets_only)}: not with --nats (moves are not published "
                          "to NATS; the rest finds a run's sockets)")  # fmt: skip
    # The stream and prefix as `feedmux run` takes them: flag, FEEDMUX_* variable, --config file.
    given = {dest: value for dest in ("nats_stream", "nats_prefix")
             if (value := getattr(args, dest)) is not None}  # fmt: skip
    values = _resolve_run(given, args.config, env).values
    families = ["trades", *(["books"] if args.books else []), *(["bars"] if args.bars else [])]
    seen = 0
    with NatsSubscriber(args.nats, families, args.codes or None, args.markets, args.start or "live",
                        stream=values["nats_stream"],
                        prefix=values["nats_prefix"]) as subscriber:  # fmt: skip
        while args.count is None or seen < args.count:
            message = subscriber.recv(timeout=TAIL_CHECK_S)
            if message is None:
                _check_reader()
                continue
            print(_tail_line(message.item), flush=True)
            seen += 1
    return 0


def _check_reader() -> None:
    """A quiet feed writes nothing, so no write fails: `feedmux tail | head -3` would wait for
    the next tick to learn its reader left. Look at the pipe instead."""
    if pipes.gone(sys.stdout):
        raise pipes.broken()


def _tail_line(item: Tick | Depth | Bar) -> str:
    if isinstance(item, Bar):
        return (f"{item.code:<10} bar {item.minute_ns // 10**9:<16} open={item.open:.4f} "
                f"high={item.high:.4f} low={item.low:.4f} close={item.close:.4f} "
                f"volume={item.volume:.0f} trades={item.count}")  # fmt: skip
    if isinstance(item, Depth):
        best_bid = item.bids[0][0] if item.bids else "-"
        best_ask = item.asks[0][0] if item.asks else "-"
        return (f"{item.code:<10} seq={item.seq:<16} book bid={best_bid} ask={best_ask} "
                f"levels={len(item.bids)}/{len(item.asks)}")  # fmt: skip
    return (f"{item.code:<10} seq={item.seq:<16} price={item.price:<10.4f} "
            f"volume={item.volume:<10.0f} dir={item.direction}")  # fmt: skip


def cmd_change(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    control = Control(_run_dir(args, env))
    if args.command == "subscribe":
        done = control.subscribe(args.codes)
    else:
        done = control.unsubscribe(args.codes)
    print(f"{args.command}d {len(done)} code(s): {' '.join(done)}")
    return 0


def cmd_subscriptions(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    control = Control(_run_dir(args, env))
    print("\n".join(control.subscriptions()))
    for code, why in control.rejected().items():
        print(f"rejected {code}: {why}", file=sys.stderr)
    return 0


def cmd_silent(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    silent = Control(_run_dir(args, env)).silent(args.threshold)
    for code, age in silent.items():
        print(f"{code:<10} " + ("never ticked" if age is None
                                else f"no tick for {age:.0f} s of trading"))  # fmt: skip
    print(
        f"{len(silent)} silent code(s) (no tick for > {args.threshold:g} s of their market's "
        "continuous trading)"
    )
    return 0


def cmd_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from feedmux.ops import cli_show  # noqa: PLC0415 (rich loads only here)

    return cli_show.show_status(_run_dir(args, env), as_json=args.json)


def cmd_snapshot(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from feedmux.client.subscriber import SnapshotClient  # noqa: PLC0415
    from feedmux.ops import cli_show  # noqa: PLC0415

    run_dir = _run_dir(args, env)
    client = SnapshotClient(run_dir, args.shards, endpoint=args.endpoint,
                            server_key=args.server_key, client_key=args.client_key)  # fmt: skip
    # Whether a code is subscribed is the receiver's to say, over the run's control socket.
    subscribed = None if args.endpoint else Control(run_dir, timeout=5.0).subscriptions
    return cli_show.show_snapshot(client, args.codes, args.format, _zone(args.tz), subscribed)


def cmd_web(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from feedmux.web import serve  # noqa: PLC0415 (websockets and the board load only here)
    from feedmux.web.gateway import WebSettings  # noqa: PLC0415

    token = args.web_token if args.web_token is not None else env.get("FEEDMUX_WEB_TOKEN", "")
    interval_s = args.web_interval / 1000
    settings = WebSettings(host=args.host, port=args.port, token=token, interval_s=interval_s,
                           max_pages=args.max_pages)  # fmt: skip
    return serve.run(_run_dir(args, env), settings, args.feed, args.store or "")


def cmd_keygen(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from feedmux.ops import cli_show  # noqa: PLC0415

    return cli_show.make_keys(Path(args.dir), args.name)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--tz: unknown time zone {name!r}") from None


def cmd_export(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from feedmux.client import archive  # noqa: PLC0415 (pyarrow loads only here)

    data_dir = Path(_data_dir(args, env))
    out = Path(args.out) if args.out else data_dir / "archive"
    if args.tz is not None:
        _zone(args.tz)
    done = archive.export(
        data_dir, args.date, out, fmt=args.format, tz=args.tz, progress=archive.print_progress
    )
    print(f"exported {done.rows:,} ticks of {done.codes:,} codes to {done.path}")
    return 0


COMMANDS = {
    "run": cmd_run, "replay": cmd_replay, "tail": cmd_tail, "subscribe": cmd_change,
    "unsubscribe": cmd_change, "subscriptions": cmd_subscriptions, "silent": cmd_silent,
    "export": cmd_export, "config": cmd_config, "status": cmd_status,
    "snapshot": cmd_snapshot, "web": cmd_web,
    "keygen": cmd_keygen,
}  # fmt: skip


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    for name in ("stdout", "stderr"):  # started with it closed (`>&-`): Python gives None
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 (for the process's life)
    real = sys.stdout
    out = pipes.Watched(real)
    sys.stdout = out  # a TextIO in all but name
    try:
        return _command(build_parser().parse_args(argv), env, out)
    finally:
        sys.stdout = real


def _command(args: argparse.Namespace, env: Mapping[str, str] | None, out: pipes.Watched) -> int:
    # `ps` shows a process's command line: replace it, so a --token given there is not shown.
    setproctitle.setproctitle(f"feedmux {args.command}")
    try:
        code = COMMANDS[args.command](args, os.environ if env is None else env)
        sys.stdout.flush()  # here, not at exit: a reader gone by now is handled below
        return code
    except BrokenPipeError:
        if not pipes.gone(sys.stdout):
            raise  # another pipe (a worker's, a database's): a real error, shown as one
        # The reader went away (`feedmux status | head -1`): nothing more to say, and the
        # flush at exit must not fail again; the shell's code for a writer SIGPIPE ended.
        pipes.silence(sys.stdout)
        return 128 + signal.SIGPIPE
    except OSError as exc:
        if exc is not out.failed:
            raise
        # Our output cannot be written (a full disk, /dev/full): said once, not a traceback.
        print(f"feedmux {args.command}: cannot write the output: {exc}", file=sys.stderr)
        pipes.silence(out.real)
        return 1
    except NotRunningError as exc:  # not an invocation error: like status's "not running"
        print(f"feedmux {args.command}: {exc}", file=sys.stderr)
        return 1
    except FeedmuxError as exc:
        print(f"feedmux {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
