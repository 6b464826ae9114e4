"""What `feedmux run`'s live table and `feedmux status` show, from the workers' stats files.

``build_status`` is pure: two successive stats readings (rates come from each worker's own
timestamps) plus silent codes and recent warnings in, one ``Status`` out. ``render`` draws it
with rich; ``progress_line`` is the one-line form for logs when stdout is not a terminal.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from feedmux import families
from feedmux.market.day import day_date
from feedmux.market.sessions import Sessions
from feedmux.ops.markets import MarketRow, market_rows
from feedmux.ops.markets import line as markets_line
from feedmux.stats import RunStats, read_stats
from feedmux.stats.eod import DayEnd, State
from feedmux.stats.process import ProcessStats
from feedmux.stats.shard import ShardStats, data_clock

STALE_S = 5.0  # a worker whose stats are older than this is shown as stale (dead or hung)
WARNINGS_SHOWN = 5
SILENT_SHOWN = 8
_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class ConnectionRow:
    index: int
    state: str
    codes: int
    messages_per_s: float
    last_message_age_s: float | None
    reconnects: int
    error: str


@dataclass(frozen=True)
class ShardRow:
    shard: int
    state: str  # "up", "stale" (no stats for STALE_S) or "down" (no stats at all)
    ticks_per_s: float
    queue: int  # ticks the receiver holds for it (in flight, in memory and spilled)
    backlog: int  # rows received but not yet in every store
    stored: int
    last_commit_age_s: float | None  # as of the shard's last stats write
    drops: int
    restarts: int


@dataclass(frozen=True)
class NatsLane:
    """--nats: every shard's JetStream lane together."""

    published: int  # stored in the stream
    duplicates: int  # the stream had them already (retries, restarts)
    backlog: int  # publications not yet acked by JetStream
    lag_s: float  # with a backlog: since JetStream last acked a batch (the slowest shard)
    failures: int  # failed batches, retried

    def line(self) -> str:
        lag = f", lag {self.lag_s:.1f}s" if self.backlog else ""
        failed = f", failures {self.failures:,}" if self.failures else ""
        return (f"nats {self.published:,} (duplicates {self.duplicates:,}, backlog "
                f"{self.backlog:,}{lag}{failed})")  # fmt: skip


def nats_lane(shards: list[ShardStats]) -> NatsLane | None:
    lanes = [(s, s.nats) for s in shards if s.nats is not None]
    if not lanes:
        return None
    lags = [(s.time_ns - (n.last_ack_ns or n.started_ns or s.time_ns)) / 1e9
            for s, n in lanes if n.backlog]  # fmt: skip
    return NatsLane(published=sum(n.published for _, n in lanes),
                    duplicates=sum(n.duplicates for _, n in lanes),
                    backlog=sum(n.backlog for _, n in lanes), lag_s=max(lags, default=0.0),
                    failures=sum(n.failures for _, n in lanes))  # fmt: skip


@dataclass(frozen=True)
class DayRow:
    """The end of day (feedmux/ops/eod.py) as status shows it."""

    day: str  # the last trading day ended (YYYY-MM-DD); "": none in this run
    state: State
    ticks: int  # archived of the last day exported
    archived: list[str]
    removed: list[str]  # the journal's day folders
    kept_from: str  # the oldest day the stores keep ("": none removed)
    error: str
    next_end: str  # when the day under way ends (ISO, UTC); "": none in sight

    @classmethod
    def of(cls, record: DayEnd) -> DayRow:
        def iso(ns: int) -> str:
            return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat() if ns else ""

        day = day_date(record.day).isoformat() if record.day >= 0 else ""
        return cls(day, record.state, record.ticks, list(record.archived), list(record.removed),
                   record.kept_from, record.error, iso(record.next_end_ns))  # fmt: skip

    def line(self) -> str:
        if not self.day:
            return ""
        what = {"storing": "the shards store its last rows", "exporting": "archiving",
                "failed": f"FAILED: {self.error}"}.get(self.state, "")  # fmt: skip
        if self.state == "done":
            what = (f"archived ({self.ticks:,} ticks)" if self.archived
                    and self.archived[-1] == self.day else "done")  # fmt: skip
            if self.kept_from:
                what += f"; kept from {self.kept_from}"
        return f"day {self.day} ended: {what}"


@dataclass(frozen=True)
class Status:
    received: int
    ticks_per_s: float
    stored: int
    published: int
    books: int
    codes_subscribed: int
    codes_desired: int
    bad_messages: int
    reconnects: int
    watchdog_trips: int
    spilled: int
    dropped: int
    connections: list[ConnectionRow]
    shards: list[ShardRow]
    silent: dict[str, float | None] = field(default_factory=dict)  # code -> last tick age
    warnings: list[str] = field(default_factory=list)
    codes_rejected: int = 0  # codes the vendor refused (or no connection had room for)
    rejected: list[str] = field(default_factory=list)  # the first few of them
    failing: list[str] = field(default_factory=list)  # "shard-0: store failing: disk full ..."
    measured: bool = False  # the rates are measured (False: no earlier reading, they read 0)
    nats: NatsLane | None = None  # --nats
    # Each subscribed market's session on the data clock (the feed's "now", ns UTC)
    markets: list[MarketRow] = field(default_factory=list)
    data_clock_ns: int = 0
    day: DayRow | None = None  # the end of day; None: no record (an older run)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dt_s(prev: ProcessStats | None, cur: ProcessStats | None) -> float:
    """Seconds between two readings of one worker's stats (0: not two readings)."""
    if prev is None or cur is None:
        return 0.0
    return (cur.time_ns - prev.time_ns) / 1e9


def _per_s(before: float | None, after: float, dt_s: float) -> float:
    return 0.0 if before is None or dt_s <= 0 else max(0.0, (after - before) / dt_s)


def _age_s(now_ns: int, then_ns: int | None) -> float | None:
    return None if not then_ns else max(0.0, (now_ns - then_ns) / 1e9)


def failing_writes(stats: RunStats) -> list[str]:
    """Each process's kinds of writes failing now (a full disk), one line each."""
    return [f"{s.name}: {failure.line()}" for s in stats.processes()
            for failure in s.failing_writes if failure.failing]  # fmt: skip


def build_status(
    prev: RunStats | None,
    cur: RunStats,
    shards: int,
    *,
    silent: dict[str, float | None] | None = None,
    warnings: list[str] | None = None,
    wall_ns: int | None = None,
    sessions: Sessions | None = None,
    markets: Sequence[str] = (),
    day_end: DayEnd | None = None,
) -> Status:
    """The status from two stats readings (``prev`` None: rates are 0); with ``sessions``,
    each of ``markets``' session on the run's data clock."""
    wall_ns = time.time_ns() if wall_ns is None else wall_ns
    data_ns = data_clock(cur.shards.values(), wall_ns)
    prev = prev or RunStats()
    receiver, prev_receiver = cur.receiver, prev.receiver
    receiver_dt = _dt_s(prev_receiver, receiver)
    links = receiver.connections if receiver is not None else []
    prev_links = prev_receiver.connections if prev_receiver is not None else []
    conns = []
    for i, c in enumerate(links):
        before = prev_links[i].messages if i < len(prev_links) else None
        conns.append(ConnectionRow(
            index=i, state=c.state, codes=c.codes,
            messages_per_s=_per_s(before, c.messages, receiver_dt),
            last_message_age_s=c.last_message_age_s, reconnects=c.reconnects, error=c.error,
        ))  # fmt: skip
    bus = receiver.bus if receiver is not None else []
    rows = []
    for i in range(shards):
        s, before_s = cur.shards.get(i), prev.shards.get(i)
        q = bus[i] if i < len(bus) else None
        if s is None:
            state = "down"
        else:
            state = "stale" if (wall_ns - s.time_ns) / 1e9 > STALE_S else "up"
        rows.append(ShardRow(
            shard=i, state=state,
            ticks_per_s=_per_s(before_s.received if before_s else None,
                               s.received if s else 0, _dt_s(before_s, s)),
            queue=q.held if q else 0,  # the spilled ticks are held ones
            backlog=s.backlog if s else 0, stored=s.stored if s else 0,
            last_commit_age_s=_age_s(s.time_ns, s.last_commit_ns) if s else None,
            drops=q.dropped_total if q else 0, restarts=s.restarts if s else 0,
        ))  # fmt: skip
    shard_stats = cur.shards.values()
    return Status(
        received=receiver.ticks if receiver else 0,
        ticks_per_s=_per_s(prev_receiver.ticks if prev_receiver else None,
                           receiver.ticks if receiver else 0, receiver_dt),
        measured=receiver_dt > 0,
        stored=sum(s.stored for s in shard_stats),
        published=sum(s.published for s in shard_stats),
        books=receiver.books if receiver else 0,
        codes_subscribed=receiver.codes_subscribed if receiver else 0,
        codes_desired=receiver.codes_desired if receiver else 0,
        bad_messages=sum(sum(c.bad_messages.values()) for c in links)
        + sum(sum(s.bad_pushes.values()) for s in shard_stats),  # pushes the shards decode
        reconnects=sum(c.reconnects for c in conns),
        watchdog_trips=sum(c.watchdog_trips for c in links),
        spilled=sum(q.spilled for q in bus),
        dropped=sum(q.dropped_total for q in bus),
        connections=conns, shards=rows, silent=dict(silent or {}), warnings=list(warnings or []),
        codes_rejected=receiver.codes_rejected if receiver else 0,
        rejected=list(receiver.rejected) if receiver else [],
        failing=failing_writes(cur), nats=nats_lane(list(shard_stats)),
        markets=market_rows(markets, sessions, data_ns) if sessions is not None else [],
        data_clock_ns=data_ns, day=DayRow.of(day_end) if day_end is not None else None,
    )  # fmt: skip


def progress_line(status: Status, elapsed_s: float) -> str:
    """One log line: totals and whatever is unusual."""
    up = sum(1 for c in status.connections if c.state == "up")
    restarts = sum(s.restarts for s in status.shards)
    return (
        f"[{elapsed_s:7.1f}s] received {status.received:>10,} ticks "
        f"({status.ticks_per_s:>8,.0f}/s) | stored {status.stored:>10,}"
        f" | published {status.published:>10,} | connections {up}/{len(status.connections)}"
        f" | codes {status.codes_subscribed:,}/{status.codes_desired:,}"
        + (f" (refused {status.codes_rejected:,})" if status.codes_rejected else "")
        + f" | bad messages {status.bad_messages}"
        + (f" | {families.BOOKS.name} {status.books:,}" if status.books else "")
        + (
            f" | reconnects {status.reconnects} (watchdog {status.watchdog_trips})"
            if status.reconnects
            else ""
        )
        + (f" | shard restarts {restarts}" if restarts else "")
        + (f" | spilled {status.spilled:,}" if status.spilled else "")
        + (f" | dropped {status.dropped:,}" if status.dropped else "")
        + (f" | {status.nats.line()}" if status.nats else "")
        + (f" | {' · '.join(m.line(then=False) for m in status.markets)}" if status.markets else "")
        + (f" | {status.day.line()}" if status.day is not None and status.day.day else "")
        + "".join(f" | {line}" for line in status.failing)
    )


def _age(age_s: float | None) -> str:
    return "-" if age_s is None else f"{age_s:.1f}s"


def render(status: Status, title: str = "feedmux") -> Group:
    """The live table: totals, connections, shards, silent codes, recent warnings."""
    totals = Text.assemble(
        (f"{title}  ", "bold"),
        f"received {status.received:,} ticks ({status.ticks_per_s:,.0f}/s)  ",
        f"stored {status.stored:,}  published {status.published:,}  ",
        f"codes {status.codes_subscribed:,}/{status.codes_desired:,}",
        (f"  bad messages {status.bad_messages:,}" if status.bad_messages else "", "yellow"),
        (f"  dropped {status.dropped:,}" if status.dropped else "", "red"),
    )
    conns = Table(title="connections", title_justify="left", expand=False)
    for name in ("conn", "state", "codes", "msgs/s", "last msg", "reconnects", "error"):
        conns.add_column(name, justify="left" if name in ("state", "error") else "right")
    for c in status.connections:
        conns.add_row(str(c.index), Text(c.state, "green" if c.state == "up" else "red"),
                      f"{c.codes:,}", f"{c.messages_per_s:,.0f}", _age(c.last_message_age_s),
                      str(c.reconnects), c.error[:40])  # fmt: skip
    shards = Table(title="shards", title_justify="left", expand=False)
    for name in ("shard", "state", "ticks/s", "queue", "backlog", "stored", "last commit",
                 "drops", "restarts"):  # fmt: skip
        shards.add_column(name, justify="left" if name == "state" else "right")
    for s in status.shards:
        shards.add_row(str(s.shard), Text(s.state, "green" if s.state == "up" else "red"),
                       f"{s.ticks_per_s:,.0f}", f"{s.queue:,}", f"{s.backlog:,}",
                       f"{s.stored:,}", _age(s.last_commit_age_s), f"{s.drops:,}",
                       str(s.restarts))  # fmt: skip
    silent = ", ".join(sorted(status.silent)[:SILENT_SHOWN])
    more = len(status.silent) - SILENT_SHOWN
    listed = f" ({silent}{' ...' if more > 0 else ''})" if silent else ""
    parts: list[Any] = [totals, *(Text(line, "bold red") for line in status.failing), conns, shards,
                        Text(f"silent codes: {len(status.silent)}{listed}")]  # fmt: skip
    if status.markets:
        parts.insert(1, Text(f"markets  {markets_line(status.markets)}"))
    if status.day is not None and status.day.day:
        parts.insert(1, Text(status.day.line(), "red" if status.day.state == "failed" else ""))
    if status.nats is not None:
        parts.insert(-1, Text(status.nats.line(), "yellow" if status.nats.lag_s > 5 else ""))
    if status.codes_rejected:
        named = ", ".join(status.rejected[:SILENT_SHOWN])
        etc = " ..." if status.codes_rejected > len(status.rejected[:SILENT_SHOWN]) else ""
        parts.append(Text(f"refused codes: {status.codes_rejected} ({named}{etc})", "red"))
    parts.append(Text("recent warnings:" + ("" if status.warnings else " none")))
    parts.extend(Text("  " + line, "yellow") for line in status.warnings[-WARNINGS_SHOWN:])
    return Group(*parts)


def measure(stats_dir: Path, wait_s: float = 3.0) -> tuple[RunStats | None, RunStats]:
    """Two readings of a running instance's stats, the second once every worker wrote anew
    (rates need both); a worker that did not within ``wait_s`` keeps its one reading."""
    first = read_stats(stats_dir)
    later = first
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(0.1)  # the workers write once a second; nothing to wake on but the file
        later = read_stats(stats_dir)
        written = {s.name: s.time_ns for s in later.processes()}
        if all(written.get(s.name) != s.time_ns for s in first.processes()):
            break
    return first, later


def recent_warnings(log_file: Path, count: int = WARNINGS_SHOWN) -> list[str]:
    """The last WARNING/ERROR lines of the workers' log file."""
    try:
        with log_file.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - _TAIL_BYTES))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    hits = [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line]
    return hits[-count:]
