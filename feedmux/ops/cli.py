"""The ``feedmux`` command. Builds the one Settings object (flags > FEEDMUX_* > --config file >
defaults)."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import setproctitle

from feedmux import __version__
from feedmux.client.control import Control
from feedmux.errors import ConfigError, FeedmuxError, NotRunningError
from feedmux.ingest.journal import journal_codes
from feedmux.ingest.universe import load_universe
from feedmux.model import Bar, Depth, Tick
from feedmux.ops import options, pipes
from feedmux.ops.children import worker_main
from feedmux.ops.config import ReplaySettings, Settings
from feedmux.ops.options import suppress_defaults
from feedmux.providers import provider
from feedmux.shard.moves import parse_min_moves
from feedmux.simulator.faults import FAULTS
from feedmux.simulator.market import a_share_universe
from feedmux.symbols import parse_symbols, read_symbols_file
from feedmux.transports import zmq as zt

VENDOR_URL = provider().default_url
DEFAULT_RATE = 5000.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TAIL_CHECK_S = 1.0  # with no message for this long, `tail` checks the run still lives


Options = argparse._ActionsContainer  # a parser or one of its argument groups


def _codes(args: argparse.Namespace) -> list[str] | None:
    # `is not None`: an empty --codes '' is a mistake to report, not "no codes given"
    if args.symbols_file is not None and args.codes is not None:
        raise ConfigError("give --symbols-file or --codes, not both")
    if args.symbols_file is not None:
        return read_symbols_file(Path(args.symbols_file))
    if args.codes is not None:
        return parse_symbols(args.codes.replace(",", " ").split())
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


def _add_symbol_options(p: Options) -> None:
    p.add_argument(
        "--symbols-file",
        metavar="FILE",
        help="codes to subscribe, whitespace or comma separated, # comments",
    )
    p.add_argument("--codes", metavar="LIST", help="codes on the command line, comma separated")


def _add_seed_option(p: Options) -> None:
    p.add_argument("--seed", type=int, default=7, help="seed of the synthetic market (default 7)")


def _add_replay_options(p: Options, prefix: str = "") -> None:
    p.add_argument(
        f"--{prefix}rate",
        type=float,
        default=None,
        metavar="TICKS_PER_S",
        help="ticks per second across all subscribed codes (default 5000); with --journal: "
        "serve the journal's frames, pre-framed, at this rate instead of its recorded pace",
    )
    p.add_argument(
        f"--{prefix}duration",
        type=float,
        default=None,
        metavar="S",
        help="stop feeding after S seconds (default: feed until stopped)",
    )
    p.add_argument(
        f"--{prefix}burst",
        action="store_true",
        help="open with one tick for every subscribed code at once",
    )
    p.add_argument(
        f"--{prefix}warmup",
        type=float,
        default=0.0,
        metavar="S",
        help="wait S seconds after the first subscription before feeding",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The options of `feedmux run` (and `feedmux config show`): flags, file keys, env.

    In argument groups, so that --help reads as sections; a group has no effect on parsing."""
    vendor = p.add_argument_group("vendor", "where the feed comes from and what to ask for")
    vendor.add_argument("--url", help=f"vendor WebSocket endpoint (default {VENDOR_URL})")
    vendor.add_argument(
        "--token",
        help="vendor token (default: $FEEDMUX_TOKEN, which is "
        "better: a command line can be read by other users until feedmux "
        "replaces its process title)",
    )
    _add_symbol_options(vendor)
    vendor.add_argument(
        "--depth",
        type=int,
        default=0,
        metavar="LEVELS",
        help="also subscribe order books of LEVELS levels (A-shares: up to 5)",
    )
    vendor.add_argument(
        "--watchdog",
        type=float,
        default=30.0,
        metavar="S",
        help="reconnect a connection with no frame for S seconds (default 30)",
    )
    vendor.add_argument(
        "--give-up-after",
        type=int,
        default=3,
        metavar="N",
        help="stop the run (exit 3) after the same permanent failure N times in a row: "
        "a refused token, a URL that is no WebSocket (default 3); transient ones (refused "
        "connection, 5xx, timeouts) are retried for ever",
    )
    vendor.add_argument(
        "--free-plan",
        action="store_true",
        help="space reconnects 10 s apart, as AllTick's free plan needs (paid: 3 s)",
    )
    vendor.add_argument(
        "--cross-interval-ms",
        type=int,
        default=3300,
        metavar="MS",
        help="at least MS between any two subscription requests of the token, on one "
        "connection or not (default 3300: AllTick's rule is 3 s); widened after a 429/605/606",
    )

    sharding = p.add_argument_group("sharding", "shard workers and the bus that feeds them")
    sharding.add_argument("--shards", type=int, default=8, metavar="N",
                          help="shard worker processes (default 8)")  # fmt: skip
    sharding.add_argument(
        "--overflow",
        choices=("spill", "drop"),
        default="spill",
        help="when a shard falls --bus-memory ticks behind: spill to disk and catch up "
        "(default, lossless) or drop (counted; subscribers see a gap)",
    )
    sharding.add_argument(
        "--bus-window",
        type=int,
        default=50_000,
        metavar="TICKS",
        help="ticks in flight to one shard awaiting its commit (default 50000)",
    )
    sharding.add_argument(
        "--bus-memory",
        type=int,
        default=500_000,
        metavar="TICKS",
        help="ticks held in memory per shard before --overflow (default 500000)",
    )

    stores = p.add_argument_group("stores", "where ticks are kept")
    stores.add_argument("--data-dir", default="feedmux-data", metavar="DIR",
                        help="where stores live (default ./feedmux-data)")  # fmt: skip
    stores.add_argument(
        "--run-dir",
        metavar="DIR",
        help="sockets and stats of this instance (default <data-dir>/run)",
    )
    stores.add_argument(
        "--store",
        action="append",
        metavar="URL",
        help="where shards store ticks, repeatable: sqlite://PATH (sqlite:///abs/dir absolute, "
        "sqlite://rel/dir relative, sqlite:// the data dir; the default) or "
        "postgresql://user@host/db; also FEEDMUX_STORE (space-separated)",
    )
    stores.add_argument(
        "--redis",
        metavar="URL",
        help="also publish every tick and book to Redis Streams, one stream per shard "
        "(feedmux:shard:<i>), e.g. redis://127.0.0.1:6379/0; also FEEDMUX_REDIS",
    )
    stores.add_argument("--redis-maxlen", type=int, default=1_000_000, metavar="N",
                        help="entries kept per shard stream (approximately; 1000000)")  # fmt: skip
    stores.add_argument("--redis-prefix", default="feedmux", metavar="NAME",
                        help="stream names: NAME:shard:<i> (default feedmux)")  # fmt: skip
    stores.add_argument(
        "--no-journal",
        action="store_true",
        help="do not keep the journal of received frames in <data-dir>/journal",
    )
    stores.add_argument(
        "--journal-max-mb",
        type=int,
        default=256,
        metavar="MB",
        help="start a new journal file beyond MB megabytes (default 256)",
    )
    stores.add_argument("--commit-log", action="store_true", help=argparse.SUPPRESS)  # benchmarks

    publishing = p.add_argument_group("publishing", "what the shards publish to subscribers")
    publishing.add_argument(
        "--min-move",
        action="append",
        metavar="FAMILY=STEP",
        help="also publish, on topics MT|<code> (trades) or MD|<code> (books: best bid or ask), "
        "only moves of at least STEP, e.g. trades=0.01; repeatable; stores keep every tick",
    )
    publishing.add_argument("--pub-queue", type=int, default=50_000, metavar="MESSAGES",
                            help="messages a slow subscriber may lag before a shard drops for "
                            "it alone; the subscriber sees the gap (default 50000)")  # fmt: skip

    limits = p.add_argument_group("limits", "the vendor plan's caps and what a frame may be")
    limits.add_argument(
        "--max-codes-per-conn",
        type=int,
        default=3000,
        metavar="N",
        help="the plan's code cap per connection (default 3000)",
    )
    limits.add_argument("--max-conns", type=int, default=10, metavar="N",
                        help="the plan's connection cap per token (default 10)")  # fmt: skip
    limits.add_argument(
        "--max-frame-bytes",
        type=int,
        default=64 * 1024,
        metavar="BYTES",
        help="a vendor frame declaring more than this is refused from its header: counted, "
        "the link closed (1009) and rebuilt (default 64 KiB)",
    )

    display = p.add_argument_group("display", "what the run shows and logs, and when it stops")
    display.add_argument(
        "--display",
        choices=("auto", "live", "plain"),
        default="auto",
        help="live: a status table redrawn every second (workers then log only to "
        "<run-dir>/feedmux.log); plain: progress lines; auto: live on a terminal",
    )
    display.add_argument("--log-level", type=_log_level, default="WARNING", metavar="LEVEL",
                         help="worker log level, any case (default WARNING)")  # fmt: skip
    display.add_argument(
        "--silent-after",
        type=float,
        default=60.0,
        metavar="S",
        help="report codes subscribed S seconds with no tick since (default 60)",
    )
    display.add_argument("--stop-after", type=_positive, metavar="S",
                         help="stop after S seconds")  # fmt: skip
    display.add_argument("--stats-interval-ms", type=int, default=1000, help=argparse.SUPPRESS)

    network = p.add_argument_group("network", "sockets for consumers, workers and monitoring")
    network.add_argument(
        "--public",
        metavar="tcp://HOST:PORT",
        help="consumer sockets on TCP instead of ipc in the run dir: shard i publishes on "
        "PORT+2i and answers snapshots on PORT+2i+1 (HOST 0.0.0.0: every interface)",
    )
    network.add_argument(
        "--internal",
        metavar="tcp://HOST:PORT",
        help="internal sockets on TCP: shard i's input on PORT+i, then acks and control "
        "(unencrypted: keep it on loopback or a private network)",
    )
    network.add_argument(
        "--curve-secret",
        metavar="FILE",
        help="encrypt the --public sockets with CURVE: the server's .key_secret file "
        "(feedmux keygen)",
    )
    network.add_argument(
        "--curve-clients",
        metavar="DIR",
        help="with --curve-secret: only clients whose public .key file is in DIR may connect "
        "(default: any client that has the server's public key)",
    )
    network.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics (0: any port)",
    )
    network.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address of the metrics server (default 127.0.0.1; 0.0.0.0 for all)",
    )

    replay = p.add_argument_group("replay server", "a built-in local feed instead of the vendor")
    replay.add_argument(
        "--replay",
        action="store_true",
        help="start the built-in replay server and feed from it; without "
        "--symbols-file/--codes it serves the full synthetic A-share market",
    )
    _add_replay_options(replay, "replay-")
    _add_seed_option(replay)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedmux", description="A whole stock market's real-time feed into Python."
    )
    parser.add_argument("--version", action="version", version=f"feedmux {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the pipeline: receiver, N shard workers, stores")
    _add_config_option(run)
    _add_run_options(run)
    suppress_defaults(run)
    config = sub.add_parser("config", help="the effective configuration")
    config_sub = config.add_subparsers(dest="action", required=True)
    show = config_sub.add_parser("show", help="print the effective settings as TOML, token "
                                 "masked, each with where it came from")  # fmt: skip
    _add_config_option(show)
    _add_run_options(show)
    suppress_defaults(show)

    rep = sub.add_parser("replay", help="serve an AllTick-compatible feed on loopback")
    rep.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    rep.add_argument("--port", type=int, default=8765, help="port (default 8765, 0 = any)")
    rep.add_argument("--token", help="token clients must present (default $FEEDMUX_TOKEN)")
    _add_symbol_options(rep)
    _add_seed_option(rep)
    _add_replay_options(rep)
    rep.add_argument("--max-codes-per-conn", type=int, default=3000)
    rep.add_argument("--max-conns", type=int, default=10)
    rep.add_argument("--request-interval-ms", type=int, default=1000)
    rep.add_argument("--cross-interval-ms", type=int, default=3000)
    rep.add_argument("--heartbeat-timeout", type=float, default=30.0, metavar="S")
    rep.add_argument("--reconnect-spacing-ms", type=int, default=3000)
    rep.add_argument("--report", metavar="PATH", help="JSON report, rewritten every second")
    rep.add_argument("--sent-log", metavar="PATH", help="every trade frame sent, one per line")
    rep.add_argument("--exit-when-done", action="store_true", help="exit when --duration ends")
    rep.add_argument(
        "--stall-after",
        type=float,
        metavar="S",
        help="fault: S seconds into the feed, go silent (no data, no replies)",
    )
    rep.add_argument(
        "--stall-for", type=float, default=0.0, metavar="S", help="fault: how long the stall lasts"
    )
    rep.add_argument(
        "--drop-after",
        type=float,
        metavar="S",
        help="fault: S seconds into the feed, drop every TCP connection abruptly",
    )
    rep.add_argument(
        "--close-after",
        type=float,
        metavar="S",
        help="fault: S seconds into the feed, close every connection cleanly",
    )
    rep.add_argument(
        "--garbage-every",
        type=int,
        default=0,
        metavar="N",
        help="fault: send a malformed frame after every N trades",
    )
    rep.add_argument("--duplicate-every", type=int, default=0, metavar="N",
                     help="fault: send every Nth trade twice")  # fmt: skip
    rep.add_argument("--fault", action="append", choices=FAULTS, default=[], metavar="NAME",
                     help="fault on one connection (repeatable, in order): huge-header "
                     "(a frame declaring 2^40 bytes, then 64 KiB every 50 ms), "
                     "oversized-control, reserved-opcode, close-1001, envelope-error "
                     "(the next subscription request gets a cmd_id 0 error)")  # fmt: skip
    rep.add_argument("--fault-after", type=float, default=2.0, metavar="S",
                     help="the first --fault S seconds after the first subscription request, "
                     "each next one S seconds after the one before (default 2)")  # fmt: skip
    rep.add_argument(
        "--journal",
        metavar="PATH",
        help="serve a feedmux journal (file or directory) instead of the "
        "synthetic market; its codes are the universe unless --codes is given",
    )
    rep.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="1|10|max",
        help="journal pace: 1 as recorded (default), 10 ten times faster, max",
    )
    rep.add_argument(
        "--ramp",
        type=float,
        default=1.0,
        metavar="FACTOR",
        help="with --journal and --rate: multiply the rate by FACTOR every --step",
    )
    rep.add_argument(
        "--step",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds per rate step (default 0: one step)",
    )
    rep.add_argument("--gap", type=float, default=0.0, metavar="S", help="pause between rate steps")
    rep.add_argument(
        "--send-log",
        metavar="PATH",
        help="with --journal and --rate: (send_ns, first index, count) per write",
    )
    rep.add_argument("--log-level", type=_log_level, default="INFO", help="any case (default INFO)")

    for name, what in (("subscribe", "add codes to"), ("unsubscribe", "remove codes from")):
        change = sub.add_parser(name, help=f"{what} a running instance; returns once the "
                                "vendor confirmed")  # fmt: skip
        change.add_argument("codes", nargs="+", metavar="CODE")
        _add_run_dir_options(change)
    listing = sub.add_parser("subscriptions", help="list a running instance's codes")
    _add_run_dir_options(listing)
    silent = sub.add_parser("silent", help="codes subscribed but without ticks")
    silent.add_argument("--threshold", type=float, default=60.0, metavar="S",
                        help="silent for longer than S seconds (default 60)")  # fmt: skip
    _add_run_dir_options(silent)

    keygen = sub.add_parser("keygen", help="make a CURVE key pair for --curve-secret or a client")
    keygen.add_argument("dir", metavar="DIR", help="where to write NAME.key and NAME.key_secret")
    keygen.add_argument("--name", default="server", help="file name (default server)")

    status = sub.add_parser("status", help="the live table of a running instance, once")
    _add_run_dir_options(status)
    status.add_argument("--json", action="store_true", help="print it as JSON instead")

    snap = sub.add_parser("snapshot", help="the latest tick (and book) per code of a running "
                          "instance")  # fmt: skip
    snap.add_argument("codes", nargs="*", metavar="CODE", help="codes (default: every code)")
    _add_run_dir_options(snap)
    _add_remote_options(snap)
    snap.add_argument("--format", choices=("table", "csv"), default="table")
    snap.add_argument("--tz", default="Asia/Shanghai", help="time zone of the times shown")

    export = sub.add_parser("export", help="write a trading day of stored ticks as Parquet or CSV")
    export.add_argument("--date", required=True, type=_day, metavar="YYYY-MM-DD",
                        help="the trading day (a calendar day in --tz)")  # fmt: skip
    export.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    export.add_argument("--out", metavar="DIR", help="archive root (default <data-dir>/archive)")
    export.add_argument("--tz", default="Asia/Shanghai",
                        help="the exchange's time zone, which decides the day (default "
                        "Asia/Shanghai)")  # fmt: skip
    _add_data_dir_option(export)

    tail = sub.add_parser("tail", help="print live ticks of a running instance")
    tail.add_argument("codes", nargs="*", metavar="CODE", help="codes (default: all)")
    _add_run_dir_options(tail)
    tail.add_argument("--count", type=int, help="exit after this many messages")
    tail.add_argument("--books", action="store_true", help="order books too (run --depth)")
    tail.add_argument("--bars", action="store_true", help="1-minute bars too, as they close")
    _add_remote_options(tail)
    tail.add_argument("--moves", action="store_true",
                      help="only the --min-move topics: moves of trades (and books)")  # fmt: skip
    return parser


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


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


def _add_config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="TOML file of run options (keys: flag names; default $FEEDMUX_CONFIG); "
                   "FEEDMUX_* variables and flags override it")  # fmt: skip


def _add_remote_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", metavar="tcp://HOST:PORT",
                   help="a run on another host: its --public endpoint (with --shards)")  # fmt: skip
    p.add_argument("--shards", type=int, help="with --endpoint: the run's --shards")
    p.add_argument("--server-key", metavar="FILE", help="CURVE: the server's public .key file")
    p.add_argument("--client-key", metavar="FILE", help="CURVE: this client's .key_secret file")


def _add_run_dir_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", help="run directory (default <data-dir>/run)")
    _add_data_dir_option(p)


def _add_data_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="data directory (default ./feedmux-data)")
    p.add_argument("--config", metavar="FILE",
                   help="read data_dir and run_dir from this TOML file "
                   "(default $FEEDMUX_CONFIG)")  # fmt: skip


def _location(args: argparse.Namespace, env: Mapping[str, str], key: str) -> str | None:
    """``key`` (data_dir or run_dir) from the flag, FEEDMUX_*, or the --config file."""
    given = getattr(args, key, None) or env.get(options.ENV_PREFIX + key.upper())
    if given:
        return str(given)
    path = options.config_path(args.config, env)
    data = options.read_file(path) if path is not None else {}
    value = data.get(key, data.get(key.replace("_", "-")))
    return str(value) if value else None


def _run_dir(args: argparse.Namespace, env: Mapping[str, str]) -> Path:
    return Path(_location(args, env, "run_dir") or Path(_data_dir(args, env)) / "run")


def _data_dir(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    return _location(args, env, "data_dir") or "feedmux-data"


def _replay_settings(args: argparse.Namespace, token: str, codes: list[str], prefix: str,
                     **extra: object) -> ReplaySettings:  # fmt: skip
    rate = getattr(args, f"{prefix}rate")
    settings = ReplaySettings(
        token=token, codes=codes, seed=args.seed, rate=DEFAULT_RATE if rate is None else rate,
        duration_s=getattr(args, f"{prefix}duration"), burst=getattr(args, f"{prefix}burst"),
        warmup_s=getattr(args, f"{prefix}warmup"), **extra,  # type: ignore[arg-type]
    )  # fmt: skip
    settings.validate()
    return settings


def resolve_run_options(args: argparse.Namespace, env: Mapping[str, str]) -> options.Resolved:
    """`feedmux run`'s options from its flags, FEEDMUX_* variables and the --config file."""
    fresh = argparse.ArgumentParser(add_help=False)
    _add_run_options(fresh)
    path = options.config_path(args.config, env)
    data = options.read_file(path) if path is not None else None
    if path is not None and data is not None:
        warning = options.token_file_warning(path, data)
        if warning:
            print(warning, file=sys.stderr)
    resolved = options.resolve(fresh, args, env, data, str(path))
    for warning in resolved.warnings:
        print(warning, file=sys.stderr)
    return resolved


def build_settings(args: argparse.Namespace) -> tuple[Settings, ReplaySettings | None]:
    """The one frozen Settings (and the replay server's, with --replay) from resolved options."""
    codes = _codes(args)
    replay = None
    token = args.token or ""
    if args.replay:
        market = a_share_universe(args.seed)
        codes = codes or market
        token = token or secrets.token_hex(16)
        # The server lists the whole synthetic market (and any other code asked for), so
        # codes can be added live.
        listed = market + sorted(set(codes) - set(market))
        replay = _replay_settings(args, token, listed, "replay_", log_level=args.log_level,
                                  max_codes_per_conn=args.max_codes_per_conn)  # fmt: skip
    data_dir = args.data_dir
    if codes is None:
        codes = load_universe(data_dir)  # resume what the last run was subscribed to
    if codes is None:
        raise ConfigError("give the codes to subscribe: --symbols-file FILE or --codes LIST "
                          "(or --replay for the synthetic market)")  # fmt: skip
    settings = Settings(
        url=args.url or ("ws://127.0.0.1/replay" if args.replay else VENDOR_URL),
        token=token, codes=codes, shards=args.shards, data_dir=data_dir,
        stores=args.store or [], redis_url=args.redis or "", redis_maxlen=args.redis_maxlen,
        redis_prefix=args.redis_prefix, run_dir=args.run_dir or "",
        max_codes_per_conn=args.max_codes_per_conn, max_conns=args.max_conns,
        depth_levels=args.depth, silent_after_s=args.silent_after, watchdog_s=args.watchdog,
        give_up_after=args.give_up_after,
        reconnect_spacing_ms=11_000 if args.free_plan else 3300,
        cross_interval_ms=args.cross_interval_ms,
        overflow=args.overflow, bus_window=args.bus_window, bus_memory=args.bus_memory,
        max_frame_bytes=args.max_frame_bytes, pub_queue=args.pub_queue,
        journal=not args.no_journal, journal_max_mb=args.journal_max_mb,
        commit_log=args.commit_log, stats_interval_ms=args.stats_interval_ms,
        log_level=args.log_level, display=args.display,
        min_move=parse_min_moves(args.min_move or []),
        public_endpoint=args.public or "", bus_endpoint=args.internal or "",
        curve_secret_file=args.curve_secret or "", curve_clients_dir=args.curve_clients or "",
        metrics_port=args.metrics_port, metrics_host=args.metrics_host,
    )  # fmt: skip
    settings.validate()
    if settings.curve_secret_file:
        zt.load_keys(settings.curve_secret_file)  # a bad key file fails here, not in 8 shards
    if settings.curve_clients_dir and not Path(settings.curve_clients_dir).is_dir():
        raise ConfigError(f"--curve-clients: no such directory: {settings.curve_clients_dir}")
    return settings, replay


def cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from feedmux.ops import supervisor  # noqa: PLC0415 (keeps `feedmux --help` fast)

    resolved = resolve_run_options(args, env).namespace()
    settings, replay = build_settings(resolved)
    return supervisor.run(settings, replay, resolved.stop_after)


def cmd_config(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    resolved = resolve_run_options(args, env)
    print(options.to_toml(resolved, secret=("token",)), end="")
    return 0


def cmd_replay(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    token = args.token or env.get("FEEDMUX_TOKEN", "")
    codes = _codes(args)
    if codes is None and args.journal:
        codes = journal_codes(Path(args.journal))
    codes = codes or a_share_universe(args.seed)
    settings = _replay_settings(
        args, token, codes, "", host=args.host, port=args.port,
        max_codes_per_conn=args.max_codes_per_conn, max_conns=args.max_conns,
        request_interval_ms=args.request_interval_ms, cross_interval_ms=args.cross_interval_ms,
        heartbeat_timeout_s=args.heartbeat_timeout,
        reconnect_spacing_ms=args.reconnect_spacing_ms, report_path=args.report or "",
        sent_log=args.sent_log or "", exit_when_done=args.exit_when_done,
        stall_after_s=args.stall_after, stall_for_s=args.stall_for,
        drop_after_s=args.drop_after, close_after_s=args.close_after,
        garbage_every=args.garbage_every, duplicate_every=args.duplicate_every,
        faults=args.fault, fault_after_s=args.fault_after,
        journal=args.journal or "", speed=args.speed,
        journal_rate=args.rate if args.journal and args.rate is not None else None,
        ramp=args.ramp, step_s=args.step, gap_s=args.gap, send_log=args.send_log or "",
        log_level=args.log_level,
    )  # fmt: skip
    return worker_main("replay")(settings)


def cmd_tail(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from feedmux.client.subscriber import Subscriber  # noqa: PLC0415
    from feedmux.ops import instance  # noqa: PLC0415

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
        while args.count is None or seen < args.count:
            item = subscriber.recv(timeout=TAIL_CHECK_S)
            if item is None:
                if watched and instance.running(run_dir) is None:
                    raise NotRunningError(f"the feedmux run in {run_dir} stopped")
                continue
            print(_tail_line(item), flush=True)
            seen += 1
    return 0


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
        print(f"{code:<10} " + ("never ticked" if age is None else f"last tick {age:.0f} s ago"))
    print(f"{len(silent)} silent code(s) (subscribed > {args.threshold:g} s, no tick since)")
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
    "snapshot": cmd_snapshot,
    "keygen": cmd_keygen,
}  # fmt: skip


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    for name in ("stdout", "stderr"):  # started with it closed (`>&-`): Python gives None
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 (for the process's life)
    args = build_parser().parse_args(argv)
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
