"""Settings: one frozen object built once by the CLI and handed to every process.

Nothing below the CLI reads ``os.environ``. The token is a secret: ``repr`` masks it.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from feedmux.errors import ConfigError, NotRunningError
from feedmux.market.calendar import read_overrides
from feedmux.market.eod import parse_at
from feedmux.ops import options
from feedmux.providers import DEFAULT_VENDOR, VENDORS, provider
from feedmux.providers.base import SessionOptions, SubscribeModel, tokens_of
from feedmux.shard.stores.urls import SQLITE, Store, parse_store
from feedmux.simulator.faults import FAULTS
from feedmux.stats.eod import EOD_FILE

# The vendor's own limits and spacing are the defaults (defined once, in its provider; these
# are the default vendor's, ``vendor_defaults`` gives another's); the replay server's are the
# plan its simulator enforces.
_VENDOR = provider()
_PACING = _VENDOR.pacing
_PLAN = _VENDOR.replay_plan
_MS = 1_000_000

_NATS_URL = r"(nats|tls|ws|wss)://[^,\s]+"
_NATS_URLS = rf"^($|{_NATS_URL}(\s*,\s*{_NATS_URL})*)$"
IPC_PATH_MAX = 100  # sun_path holds 107 bytes on Linux; keep a margin for "ipc://" suffixes
_TOKEN_QUERY = re.compile(r"token=[^&\s'\"]*")


# Each field's bounds are declared beside it (msgspec.Meta), and the option that sets it where
# its name differs from the field's (``option``); ``validate`` checks the bounds and names the
# option (flag, file key or variable) a bad value came from.


def option(name: str) -> Meta:
    return Meta(extra={"option": name})


Positive = Annotated[int, Meta(ge=1)]
Port = Annotated[int, Meta(ge=0, le=65535)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def vendor_defaults(name: str) -> dict[str, Any]:
    """The Settings fields whose default is the vendor's: its endpoint, plan and pacing."""
    vendor = provider(name)
    pacing = vendor.pacing
    return {
        "url": vendor.default_url, "max_codes_per_conn": vendor.max_codes_per_conn,
        "max_conns": vendor.max_conns, "max_frame_bytes": vendor.max_frame_bytes,
        "codes_per_request": vendor.codes_per_request,
        "subscribe_model": vendor.subscribe_model,
        "request_interval_ms": pacing.request_interval_ns // _MS,
        "cross_interval_ms": pacing.cross_interval_ns // _MS,
        "heartbeat_interval_ms": pacing.heartbeat_interval_ns // _MS,
        "reconnect_spacing_ms": pacing.reconnect_spacing_ns // _MS,
        "watchdog_s": pacing.watchdog_ns / 1e9,
    }  # fmt: skip


def replay_defaults(name: str) -> dict[str, Any]:
    """The ReplaySettings fields whose default is the plan the vendor's simulator enforces."""
    plan = provider(name).replay_plan
    return {
        "max_codes_per_conn": plan.max_codes_per_conn, "max_conns": plan.max_conns,
        "request_interval_ms": plan.request_interval_ns // _MS,
        "cross_interval_ms": plan.cross_interval_ns // _MS,
        "heartbeat_timeout_s": plan.heartbeat_timeout_ns / 1e9,
        "reconnect_spacing_ms": plan.reconnect_spacing_ns // _MS,
    }  # fmt: skip


def _check_vendor(name: str, where: str) -> None:
    if name not in VENDORS:
        raise ConfigError(f"{where}: unknown vendor {name!r}; known: {', '.join(VENDORS)}")


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # the vendor endpoint, without the token
    url: Annotated[str, Meta(pattern="^wss?://", description="a ws:// or wss:// URL")]
    token: str  # one or several, comma-separated
    codes: list[str]
    provider: str = DEFAULT_VENDOR  # the vendor (feedmux.providers.VENDORS)
    shards: Annotated[int, Meta(ge=1, le=256)] = 8
    data_dir: str = "feedmux-data"
    stores: Annotated[list[str], option("store")] = []  # none means sqlite under data_dir
    redis_url: Annotated[str, option("redis"), Meta(pattern="^($|rediss?://|unix://)",
                         description="a redis://, rediss:// or unix:// URL")] = ""  # fmt: skip
    redis_maxlen: Positive = 1_000_000  # entries kept per shard stream (approximately)
    redis_prefix: str = "feedmux"  # streams are <prefix>:shard:<i>
    # NATS JetStream (feedmux/jetstream): servers, comma-separated; "" is off
    nats_url: Annotated[str, option("nats"), Meta(pattern=_NATS_URLS,
                        description="nats:// or tls:// URLs, comma-separated")] = ""  # fmt: skip
    nats_stream: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]+$",
                           description="letters, digits, - and _")] = "FEEDMUX"  # fmt: skip
    nats_prefix: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
                           description="subject tokens (letters, digits, - and _) joined by dots"
                           )] = "feedmux"  # fmt: skip
    nats_max_age_s: Annotated[float, option("nats-max-age"), Meta(ge=0)] = 86_400.0  # 0: none
    nats_max_bytes: Annotated[int, Meta(ge=-1)] = -1  # -1: no limit
    nats_replicas: Annotated[int, Meta(ge=1, le=5)] = 1
    run_dir: str = ""  # "" means <data_dir>/run
    max_codes_per_conn: Positive = _VENDOR.max_codes_per_conn
    max_conns: Positive = _VENDOR.max_conns  # the plan's connection cap per token
    codes_per_request: Positive = _VENDOR.codes_per_request  # more: several messages
    subscribe_model: SubscribeModel = _VENDOR.subscribe_model
    depth_levels: Annotated[int, option("depth"), Meta(ge=0, le=10)] = 0  # book levels; 0: none
    silent_after_s: Annotated[float, option("silent-after")] = 60.0  # subscribed, no tick
    # Market hours (feedmux/market): days the calendar library does not know yet, and bars
    calendar_file: str = ""  # TOML [[day]] overrides; "": the library's days only
    # a bar's time: its first minute or its end; "": the stores' label (end for a new store)
    bar_label: Literal["start", "end", ""] = ""
    bar_sessions: Literal["exchange", "none"] = "exchange"  # none: plain clock minutes
    bars_extended: bool = False  # also pre-market and after-hours bars
    request_interval_ms: int = _PACING.request_interval_ns // _MS
    cross_interval_ms: Positive = _PACING.cross_interval_ns // _MS  # any two subscriptions
    heartbeat_interval_ms: int = _PACING.heartbeat_interval_ns // _MS
    reconnect_spacing_ms: int = _PACING.reconnect_spacing_ns // _MS
    watchdog_s: Annotated[float, option("watchdog")] = (
        _PACING.watchdog_ns / 1e9
    )  # no message: reconnect
    give_up_after: Positive = 3  # the same permanent failure (bad token, no WebSocket): stop
    batch_rows: Positive = 100
    batch_delay_ms: Positive = 200
    bus_window: Positive = 50_000  # ticks in flight to one shard before the receiver waits
    bus_memory: int = 500_000  # ticks held in memory per shard; beyond: the overflow policy
    # Hold routed ticks this long before sending (0: after each read): fewer, larger bus
    # messages, and fewer shard wake-ups, for this much latency.
    bus_delay_ms: Annotated[float, Meta(ge=0, le=1000)] = 0.0
    overflow: Literal["spill", "drop"] = "spill"  # to disk (lossless), or drop (counted: a gap)
    max_frame_bytes: Annotated[int, Meta(ge=1024)] = _VENDOR.max_frame_bytes  # larger: close 1009
    pub_queue: Positive = 50_000  # messages a slow subscriber may lag before PUB drops for it
    journal: bool = True  # every received message to <data_dir>/journal
    journal_max_mb: int = 256  # start a new journal file beyond this size
    # The end of each trading day (feedmux/ops/eod.py): the day's ticks and bars to a Parquet
    # archive, the oldest days removed, per-code state reset
    eod_export: str = ""  # "": no export
    keep_days: Annotated[int, Meta(ge=0)] = 0  # trading days kept; 0: all
    eod_at: str = ""  # HH:MM on the main market's clock; "": after its last session
    commit_log: bool = False  # benchmarks: each committed tick's time, <run_dir>/commits
    stats_interval_ms: int = 1000
    log_level: LogLevel = "WARNING"  # workers'; a run on a terminal shows warnings, not chatter
    display: Literal["auto", "live", "plain"] = "auto"  # live: workers log to the file only
    min_move: dict[str, float] = {}  # family (trades, books) -> step: publish moves only on MT|/MD|
    # tcp://HOST:PORT: the consumer sockets (PUB, snapshot), the internal ones (bus, acks,
    # control) on TCP instead of ipc
    public_endpoint: Annotated[str, option("public")] = ""
    internal_endpoint: Annotated[str, option("internal")] = ""
    curve_secret_file: Annotated[str, option("curve-secret")] = ""  # feedmux keygen: CURVE on
    curve_clients_dir: Annotated[str, option("curve-clients")] = ""  # "": any with the key
    metrics_port: Port | None = None  # serve Prometheus /metrics here (0: any free port)
    metrics_host: str = "127.0.0.1"

    def __repr__(self) -> str:
        shown = {f: getattr(self, f) for f in self.__struct_fields__ if f not in ("token", "codes")}
        return f"Settings(token='***', codes=<{len(self.codes)} codes>, {shown})"

    __str__ = __repr__

    @property
    def tokens(self) -> list[str]:
        return tokens_of(self.token)

    @property
    def nats_urls(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    @property
    def session_options(self) -> SessionOptions:
        return SessionOptions(max_frame_bytes=self.max_frame_bytes,
                              codes_per_request=self.codes_per_request,
                              subscribe_model=self.subscribe_model)  # fmt: skip

    @property
    def paths(self) -> RunPaths:
        return RunPaths(run_dir_of(self.data_dir, self.run_dir), self.public_endpoint,
                        self.internal_endpoint, self.shards)  # fmt: skip

    def validate(self, where: Callable[[str], str] | None = None) -> None:
        """Every field within its declared bounds, and the rules that join fields.

        ``where(field)`` names what set the field in a message (``--shards``,
        ``environment variable FEEDMUX_SHARDS``); by default its flag."""
        name = where or functools.partial(flag_of, Settings)
        options.check_fields(self, name, self._shown)
        _check_vendor(self.provider, name("provider"))
        if self.calendar_file:
            read_overrides(Path(self.calendar_file))
        _check_host_and_port(self.url, name("url"))
        if "token=" in self.url:
            raise ConfigError("pass the token with --token or FEEDMUX_TOKEN, not inside --url")
        if not self.tokens:
            raise ConfigError("no token: pass --token or set FEEDMUX_TOKEN")
        if len(set(self.tokens)) != len(self.tokens):
            raise ConfigError(f"{name('token')} lists the same token twice")
        vendor = provider(self.provider)
        if self.depth_levels > vendor.max_depth_levels:
            raise ConfigError(f"{name('depth_levels')} {self.depth_levels}: {vendor.name}'s "
                              f"books have at most {vendor.max_depth_levels} level"
                              f"{'s' if vendor.max_depth_levels > 1 else ''} a side")  # fmt: skip
        listed = len(self.codes)
        room = self.max_codes_per_conn * self.max_conns * len(self.tokens)
        if listed > room:
            tokens = len(self.tokens)
            raise ConfigError(
                f"{listed:,} codes do not fit: {tokens} token{'s' if tokens > 1 else ''} x "
                f"{self.max_conns} connection{'s' if self.max_conns > 1 else ''} x "
                f"{self.max_codes_per_conn:,} codes hold {room:,}; give more tokens "
                f"({name('token')} a,b,...), a plan's larger caps ({name('max_conns')}, "
                f"{name('max_codes_per_conn')}) or fewer codes"
            )
        refused = [why for code in self.codes if (why := vendor.cannot_carry(code))]
        if refused:
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            raise ConfigError(f"{refused[0]}{more}: drop it from the codes, or pick another "
                              f"{name('provider')}")  # fmt: skip
        if not self.codes:
            raise ConfigError("the symbol list is empty: give at least one code")
        if self.bus_memory < self.bus_window:
            raise ConfigError(f"{name('bus_memory')} must be >= {name('bus_window')} "
                              f"({self.bus_window}), got {self.bus_memory}")  # fmt: skip
        ranges = []  # the ports each tcp endpoint takes: [first, last]
        tcp = (("public_endpoint", self.public_endpoint, 2 * self.shards),
               ("internal_endpoint", self.internal_endpoint, self.shards + 2))  # fmt: skip
        for field, endpoint, count in tcp:
            if endpoint:
                try:
                    first = int(tcp_port(endpoint, 0).rpartition(":")[2])
                    tcp_port(endpoint, count - 1)  # the last port it will use must exist
                except ConfigError as exc:
                    raise ConfigError(f"{name(field)}: {exc}") from None
                ranges.append((first, first + count - 1))
        if len(ranges) == 2 and ranges[0][0] <= ranges[1][1] and ranges[1][0] <= ranges[0][1]:
            raise ConfigError(f"{name('public_endpoint')} uses ports {ranges[0][0]}-"
                              f"{ranges[0][1]} and {name('internal_endpoint')} "
                              f"{ranges[1][0]}-{ranges[1][1]}: they overlap")  # fmt: skip
        if self.curve_secret_file and not self.public_endpoint:
            raise ConfigError(f"{name('curve_secret_file')} needs --public tcp://HOST:PORT "
                              "(CURVE protects the consumer sockets over TCP)")  # fmt: skip
        if self.curve_clients_dir and not self.curve_secret_file:
            raise ConfigError(f"{name('curve_clients_dir')} needs --curve-secret")
        stores = self.store_list()  # raises on a URL that is neither sqlite nor postgresql
        if len(set(stores)) != len(stores):
            raise ConfigError("the same --store is given twice")
        parse_at(self.eod_at)
        if self.eod_export and not any(s.kind == SQLITE for s in stores):
            raise ConfigError(f"{name('eod_export')} exports from a SQLite store: add "
                              "--store sqlite:// (PostgreSQL users: feedmux export reads only "
                              "SQLite so far)")  # fmt: skip

    def _shown(self, field: str, value: object) -> str:
        """A value for a message: never the token, no password of a URL."""
        if field == "token":
            return "***"
        return repr(options.mask_passwords(redact(value, self.token) if isinstance(value, str)
                                           else value))  # fmt: skip

    @property
    def journal_dir(self) -> Path:
        """The receiver's journal: a folder per trading day (feedmux/ingest/journal.py)."""
        return Path(self.data_dir) / "journal"

    @property
    def sqlite_dir(self) -> Path | None:
        """The first SQLite store's directory (what `feedmux export`, the end of day and
        `feedmux web` read); None: no SQLite store."""
        return next((Path(s.location) for s in self.store_list() if s.kind == SQLITE), None)

    def store_list(self) -> list[Store]:
        """The stores every shard writes to, in the order given (the first restores a shard)."""
        urls = self.stores or ["sqlite://"]
        return [parse_store(url, self.data_dir) for url in urls]


class RunPaths:
    """Where a running instance keeps its files (mode 0700) and which endpoints its sockets use.

    By default every socket is ipc:// in the run directory. ``public`` (tcp://HOST:PORT) moves
    the consumer-facing ones to TCP: shard i publishes on PORT + 2i and answers snapshots on
    PORT + 2i + 1. ``internal`` (tcp://HOST:PORT) moves the internal ones: shard i's input on
    PORT + i, then the acks and the control socket.
    """

    def __init__(
        self, run_dir: Path, public: str = "", internal: str = "", shards: int = 0
    ) -> None:
        self.root = run_dir
        self.public = public
        self.internal = internal
        self.shards = shards

    @classmethod
    def of_run(cls, run_dir: Path) -> RunPaths:
        """The endpoints of the instance running with ``run_dir`` (ipc if it is not known)."""
        try:
            manifest = read_manifest(run_dir)
        except (ConfigError, NotRunningError):
            return cls(run_dir)
        return cls(run_dir, manifest.public, manifest.internal, manifest.shards)

    def _ipc(self, name: str) -> str:
        return f"ipc://{self.root / name}"

    def shard_in(self, shard: int) -> str:
        return tcp_port(self.internal, shard) if self.internal else self._ipc(f"shard-{shard}.in")

    def shard_pub(self, shard: int) -> str:
        return tcp_port(self.public, 2 * shard) if self.public else self._ipc(f"shard-{shard}.pub")

    def shard_snapshot(self, shard: int) -> str:
        if self.public:
            return tcp_port(self.public, 2 * shard + 1)
        return self._ipc(f"shard-{shard}.snap")

    @property
    def control(self) -> str:
        return tcp_port(self.internal, self.shards + 1) if self.internal else self._ipc("control")

    @property
    def acks(self) -> str:
        return tcp_port(self.internal, self.shards) if self.internal else self._ipc("acks")

    @property
    def manifest(self) -> Path:
        return self.root / "run.json"

    @property
    def log_file(self) -> Path:
        """Every process's log lines (the live table shows its recent warnings)."""
        return self.root / "feedmux.log"

    @property
    def stats_dir(self) -> Path:
        return self.root / "stats"

    @property
    def eod(self) -> Path:
        """The end of day's record (feedmux/stats/eod.py): the supervisor's, the shards read."""
        return self.root / EOD_FILE

    def commit_log(self, shard: int) -> Path:
        return self.root / "commits" / f"shard-{shard}.bin"

    def prepare(self) -> None:
        """Create the run directory private to this user, or say why it cannot be."""
        longest = self.shard_snapshot(999)
        if len(longest) - len("ipc://") > IPC_PATH_MAX:
            raise ConfigError(
                f"run directory {self.root} is too long for ipc sockets; pass a shorter --run-dir"
            )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)
            self.stats_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"run directory {self.root} is not writable ({exc}); pass --run-dir or --data-dir"
            ) from exc


class Manifest(msgspec.Struct, frozen=True):
    """What a consumer needs to find a running instance: written to ``<run_dir>/run.json``."""

    shards: int
    pid: int
    data_dir: str
    silent_after_s: float = 60.0
    calendar_file: str = ""  # the run's --calendar-file (absolute): silent codes follow it
    public: str = ""  # tcp://HOST:PORT of the consumer sockets ("" = ipc in the run dir)
    internal: str = ""  # tcp://HOST:PORT of the internal sockets
    curve_server_key: str = ""  # with CURVE: the server's public key (z85), for clients
    min_move: dict[str, float] = {}  # --min-move: family -> step (`feedmux web` follows it)
    sqlite_store: str = ""  # the first SQLite store's directory (absolute), if any
    bar_label: str = "end"  # the stores' bars' label, as resolved at the start
    bar_sessions: str = "exchange"  # --bar-sessions
    bars_extended: bool = False  # --bars-extended


def read_manifest(run_dir: Path) -> Manifest:
    path = RunPaths(run_dir).manifest
    try:
        return msgspec.json.decode(path.read_bytes(), type=Manifest)
    except FileNotFoundError:
        raise NotRunningError(
            f"no feedmux run found in {run_dir} (missing {path.name}); "
            "is `feedmux run` running with this --run-dir?"
        ) from None
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def tcp_port(endpoint: str, offset: int) -> str:
    """``tcp://HOST:PORT`` moved ``offset`` ports up; a clear error for anything else."""
    if not endpoint.startswith("tcp://"):
        raise ConfigError(f"endpoint must be tcp://HOST:PORT, got {endpoint!r}")
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) + offset < 65536:
        raise ConfigError(f"endpoint must be tcp://HOST:PORT with a port number, got {endpoint!r}")
    return f"tcp://{host}:{int(port) + offset}"


def _check_host_and_port(url: str, name: str) -> None:
    """A URL the receiver could never connect to is a mistake to report at start, not a
    crash of the receiver at every reconnect."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (parsing it is the check)
    except ValueError as exc:
        raise ConfigError(f"{name} has a bad port ({exc}): {url!r}") from None
    if not parts.hostname:
        raise ConfigError(f"{name} has no host: {url!r}")


def flag_of(struct: type[msgspec.Struct], field: str) -> str:
    """The flag that sets ``field`` of ``struct``."""
    return "--" + options.option_name(struct, field)


def run_dir_of(data_dir: str, run_dir: str) -> Path:
    """The run directory: ``run_dir`` if set, else ``<data_dir>/run``."""
    return Path(run_dir or Path(data_dir) / "run")


@functools.cache
def token_pattern(token: bytes) -> re.Pattern[bytes]:
    """``token`` where it stands alone: not inside a longer run of letters and digits, so a
    short token never eats into a code, a seq or a price that happens to contain it."""
    return re.compile(rb"(?<![A-Za-z0-9])" + re.escape(token) + rb"(?![A-Za-z0-9])")


def redact_bytes(data: bytes, token: bytes) -> bytes:
    """``data`` with ``token`` (each of several, ``tokens_of``, where it stands alone)
    replaced by ``***``."""
    for one in tokens_of(token.decode("utf-8", "replace")):
        encoded = one.encode()
        if encoded in data:
            data = token_pattern(encoded).sub(b"***", data)
    return data


def redact(text: str, token: str | None = None) -> str:
    """Remove a token (each of several, ``tokens_of``; and any ``token=...`` query value)
    from text meant for logs."""
    if token and any(one in text for one in tokens_of(token)):
        text = redact_bytes(text.encode(), token.encode()).decode()
    return _TOKEN_QUERY.sub("token=***", text)


class ReplaySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The local vendor-compatible server (``feedmux replay``)."""

    token: str  # the tokens clients may present, comma-separated
    codes: list[str]  # the universe the server knows; others are refused
    provider: str = DEFAULT_VENDOR  # whose server it plays
    host: str = "127.0.0.1"
    port: Port = 0  # 0 picks a free port; the report and stdout say which
    seed: int = 7
    rate: Annotated[float, Meta(ge=0)] = 5000.0  # ticks per second across all subscribed codes
    duration_s: Annotated[float, option("duration")] | None = None  # None: until stopped
    warmup_s: Annotated[float, option("warmup")] = 0.0  # after the first subscription
    burst: bool = False  # open the feed with one tick for every subscribed code at once
    max_codes_per_conn: Positive = _PLAN.max_codes_per_conn
    max_conns: Positive = _PLAN.max_conns
    request_interval_ms: int = _PLAN.request_interval_ns // _MS
    cross_interval_ms: int = _PLAN.cross_interval_ns // _MS
    heartbeat_timeout_s: Annotated[float, option("heartbeat-timeout")] = (
        _PLAN.heartbeat_timeout_ns / 1e9
    )
    reconnect_spacing_ms: int = _PLAN.reconnect_spacing_ns // _MS
    report_path: Annotated[str, option("report")] = ""  # JSON: url, ticks sent, violations
    sent_messages: str = ""  # every message sent, one per line (the checker's ground truth)
    exit_when_done: bool = False
    # faults: after stall_after_s feeding, go silent for stall_for_s: no data, no replies
    # (heartbeats still count); close TCP (no WebSocket close), or close cleanly, this far in
    stall_after_s: Annotated[float, option("stall-after")] | None = None
    stall_for_s: Annotated[float, option("stall-for")] = 0.0
    drop_after_s: Annotated[float, option("drop-after")] | None = None
    close_after_s: Annotated[float, option("close-after")] | None = None
    garbage_every: int = 0  # fault: a bad frame after every N trades (0: never)
    duplicate_every: int = 0  # fault: send every Nth trade twice (0: never)
    resend_on_subscribe: bool = False  # a code's latest trade again when a connection adds it
    # link faults on one connection each, in order (simulator.faults); the first
    # fault_after_s after the first subscription request, each next one as long after the last
    faults: Annotated[list[str], option("fault")] = []
    fault_after_s: Annotated[float, option("fault-after")] = 2.0
    journal: str = ""  # serve this journal's pushes instead of the synthetic market
    speed: float = 1.0  # journal pace: 1 = as recorded, 10 = ten times faster, 0 = max
    journal_rate: Annotated[float, Meta(gt=0)] | None = None  # the journal at this many messages/s
    ramp: float = 1.0  # with journal_rate: multiply the rate by this after every step ...
    step_s: Annotated[float, option("step")] = 0.0  # ... of this long (0: one step)
    gap_s: Annotated[float, option("gap")] = 0.0  # ... with this pause between steps
    write_times: str = ""  # binary (send_ns, first_index, count) per write: benchmark latency
    # --sessions: the synthetic market follows a simulated trading day, its trades stamped with
    # the day's exchange time (feedmux/simulator/schedule.py) instead of the wall clock
    sessions: bool = False
    session_date: str = ""  # YYYY-MM-DD; "": the latest trading day (the CLI fills it in)
    day_minutes: Annotated[float, Meta(gt=0)] | None = None  # the whole day in M wall minutes
    session_days: Positive = 1  # this many consecutive trading days, one after the other
    session_start: str = ""  # HH:MM[:SS] local: start the day there ("": at its start)
    mutes: Annotated[list[str], option("mute")] = []  # CODE@HH:MM: no trades of CODE from then
    calendar_file: str = ""  # the calendar's override file (as feedmux run's --calendar-file)
    run_dir: str = ""  # feedmux run's: its compiled calendar days are there (calendar.RUN_COPY)
    log_level: LogLevel = "INFO"
    log_file: str = ""  # also log here (feedmux run --replay: the run's log file)
    log_stderr: bool = True  # False while feedmux run's live table owns the terminal

    def __repr__(self) -> str:
        shown = {f: getattr(self, f) for f in self.__struct_fields__ if f not in ("token", "codes")}
        return f"ReplaySettings(token='***', codes=<{len(self.codes)} codes>, {shown})"

    __str__ = __repr__

    def validate(self, where: Callable[[str], str] | None = None) -> None:
        name = where or functools.partial(flag_of, ReplaySettings)
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f"the replay server binds to loopback only, not {self.host!r}")
        options.check_fields(self, name, lambda field, value: "***" if field == "token"
                             else repr(value))  # fmt: skip
        _check_vendor(self.provider, name("provider"))
        if not tokens_of(self.token):
            raise ConfigError("the replay server needs a token (--token or FEEDMUX_TOKEN)")
        unknown = sorted(set(self.faults).difference(FAULTS))
        if unknown:
            raise ConfigError(f"unknown --fault {', '.join(unknown)}; known: {', '.join(FAULTS)}")
        if not 0 <= self.fault_after_s < float("inf"):  # NaN too
            raise ConfigError(f"{name('fault_after_s')} must be a number of seconds >= 0, got "
                              f"{self.fault_after_s}")  # fmt: skip
        if self.speed < 0:
            raise ConfigError(f"{name('speed')} must be a positive number or max")
        if self.sessions and self.journal:
            raise ConfigError(f"{name('sessions')} plays the synthetic market, not "
                              f"{name('journal')}")  # fmt: skip
        if self.sessions and self.burst:
            raise ConfigError(f"{name('sessions')} opens with the auctions' bursts: drop "
                              f"{name('burst')}")  # fmt: skip
        if not self.sessions:
            for field in ("session_date", "day_minutes", "session_start", "mutes"):
                if getattr(self, field):
                    raise ConfigError(f"{name(field)} needs {name('sessions')}")
            if self.session_days != 1:
                raise ConfigError(f"{name('session_days')} needs {name('sessions')}")
        if self.calendar_file:
            read_overrides(Path(self.calendar_file))
