"""What `feedmux status`, `feedmux snapshot` and `feedmux keygen` print: rich tables of a
running instance, and CURVE key files."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import zmq.auth
from rich.console import Console
from rich.table import Table

from feedmux.client.control import Control, not_subscribed
from feedmux.client.subscriber import SnapshotClient
from feedmux.codes import parse_codes
from feedmux.errors import ConfigError, FeedmuxError
from feedmux.ingest.universe import load_universe
from feedmux.market.sessions import sessions_of_run
from feedmux.ops import instance
from feedmux.ops import status as st
from feedmux.ops.config import RunPaths, read_manifest
from feedmux.ops.display import PipeConsole
from feedmux.ops.markets import markets_of
from feedmux.stats import read_stats
from feedmux.stats.eod import read_day_end


def show_status(run_dir: Path, *, as_json: bool) -> int:
    """The live table once (rates over about a second); 1 when the instance is not running.

    Running means any process of the run lives (it holds the run dir's lock): after the
    supervisor died, its workers still store what they hold."""
    manifest = read_manifest(run_dir)
    paths = RunPaths(run_dir)
    holder = instance.running(run_dir)
    running = holder is not None
    supervisor = holder is not None and holder.supervisor_alive()
    before, now = st.measure(paths.stats_dir) if running else (None, read_stats(paths.stats_dir))
    silent: dict[str, float | None] = {}
    sessions, problem = sessions_of_run(manifest.calendar_file, run_dir)
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    markets: list[str] | None = None
    if running:
        with contextlib.suppress(FeedmuxError):  # busy or restarting: shown as none
            silence = Control(run_dir, timeout=2.0).silence(manifest.silent_after_s, sessions)
            silent, markets = silence.silent, silence.markets
    if markets is None:  # the receiver did not say: the codes it last saved
        with contextlib.suppress(FeedmuxError):
            markets = markets_of(load_universe(manifest.data_dir) or [])
    status = st.build_status(before, now, manifest.shards, silent=silent,
                             warnings=st.recent_warnings(paths.log_file), sessions=sessions,
                             markets=markets or [],
                             day_end=read_day_end(paths.eod))  # fmt: skip
    title = f"feedmux pid {manifest.pid}" + (
        "" if supervisor else " (supervisor gone: its workers are finishing)" if running
        else " (NOT RUNNING: last numbers)")  # fmt: skip
    if as_json:
        print(json.dumps({"running": running, "supervisor": supervisor, "pid": manifest.pid,
                          **status.as_dict()}))  # fmt: skip
    else:
        _console().print(st.render(status, title))
    return 0 if running else 1


def show_snapshot(
    client: SnapshotClient,
    codes: list[str],
    fmt: str,
    tz: ZoneInfo,
    subscribed: Callable[[], list[str]] | None = None,
) -> int:
    """The latest tick (and best bid/ask) of ``codes`` (all when empty), as a table or CSV;
    1 when a code asked for has none (``subscribed`` tells "not subscribed" from "no tick yet")."""
    missing: list[str] = []
    if codes:  # only the codes asked for, in the order asked
        wanted = parse_codes(codes)
        quotes = client.get(wanted)
        missing = [c for c in wanted if c not in quotes]
        df = client.dataframe([quotes[c] for c in wanted if c in quotes])
    else:
        df = client.all()
    if missing:
        unlisted = None
        if subscribed is not None:
            with contextlib.suppress(FeedmuxError):  # the receiver busy or restarting: say less
                unlisted = set(not_subscribed(missing, subscribed()))
        for code in missing:
            if unlisted is None:
                why = "no tick yet (or not subscribed)"
            else:
                why = "not subscribed" if code in unlisted else "subscribed, no tick yet"
            print(f"{code}: {why}", file=sys.stderr)
        if df.empty:
            return 1
    for column in ("time", "recv_time"):
        df[column] = df[column].dt.tz_convert(tz)
    if df[["bid", "ask"]].isna().all().all():
        df = df.drop(columns=["bid", "bid_volume", "ask", "ask_volume"])  # no --depth
    if fmt == "csv":
        print(df.to_csv(index=False), end="")
        return 1 if missing else 0
    table = Table(title=f"{len(df):,} codes, times in {tz.key}")
    shown = [c for c in ("code", "time", "price", "volume", "bid", "ask", "seq", "shard",
                         "pub_seq") if c in df.columns]  # fmt: skip
    for column in shown:
        table.add_column(column, justify="left" if column in ("code", "time") else "right",
                         no_wrap=True)  # fmt: skip
    for row in df[shown].itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    _console().print(table)
    return 1 if missing else 0


def make_keys(directory: Path, name: str) -> int:
    """A CURVE key pair as ZeroMQ certificate files; the secret one is never group-readable."""
    if not directory.is_dir():  # a typo must not leave keys in a directory nobody looks in
        raise ConfigError(f"no such directory: {directory} (create it first)")
    secret = directory / f"{name}.key_secret"
    if secret.exists():
        raise ConfigError(f"{secret} exists: keys are not overwritten (pick another --name)")
    umask = os.umask(0o077)  # the secret file is private from its first byte
    try:
        public_file, secret_file = zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(umask)
    os.chmod(public_file, 0o644)
    print(f"public key: {public_file} (give it to the other side)\n"
          f"secret key: {secret_file} (keep it here, mode 600)")  # fmt: skip
    return 0


def _console() -> Console:
    """Rich output; when piped, wide enough that no column is cut short."""
    return PipeConsole(highlight=False, width=None if sys.stdout.isatty() else 160)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:,.4f}".rstrip("0").rstrip(".")  # NaN: no book
    if isinstance(value, datetime):
        return value.strftime("%m-%d %H:%M:%S.%f")[:-3]
    return str(value)
