"""The status table and the Prometheus metrics, from workers' stats files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from feedmux.ingest.delivery import ShardQueue
from feedmux.ingest.spill import SpillFile
from feedmux.ops.metrics import StatsCollector
from feedmux.ops.status import NatsLane, build_status, progress_line, recent_warnings, render
from feedmux.shard.histogram import Histogram
from feedmux.stats import RunStats, write_json, write_stats
from feedmux.stats.eod import DayEnd
from feedmux.stats.receiver import QueueStats, ReceiverStats
from feedmux.stats.shard import MoveStats, NatsStats, ShardStats
from tests.stats_samples import connection_stats, receiver_stats, shard_stats, store_stats

S = 10**9


def queue(shard: int, held: int, *, memory: int, spill_dir: Path | None) -> QueueStats:
    """What the receiver writes of its real queue for ``shard`` holding ``held`` ticks: beyond
    ``memory`` they are spilled to ``spill_dir``, or dropped without one."""
    spill = SpillFile(spill_dir / f"{shard}.spill") if spill_dir is not None else None
    q = ShardQueue(shard, window_items=100, memory_items=memory, spill=spill)
    for seq in range(1, held + 1):
        q.put(seq, seq + 1, b"tick")
    return QueueStats.of(q)


def receiver(
    t: int, ticks: int, messages: int, bus: list[QueueStats] | None = None
) -> ReceiverStats:
    if bus is None:  # 5 held for shard 0; 3 dropped for shard 1 (--overflow drop)
        bus = [queue(0, 5, memory=10, spill_dir=None), queue(1, 3, memory=0, spill_dir=None)]
    link = connection_stats(codes=3, messages=messages, reconnects=1, last_message_age_s=0.2,
                            bad_messages={"json": 2, "schema": 1})  # fmt: skip
    return receiver_stats(time_ns=t, ticks=ticks, codes_subscribed=3, codes_desired=4,
                          codes_rejected=1, bus_messages=7, bus=bus,
                          connections=[link])  # fmt: skip


def shard(i: int, t: int, received: int, stored: int) -> ShardStats:
    rows = Histogram([10, 100])
    for n in (5, 100, 100):
        rows.observe(n)
    latency = Histogram([0.01, 0.1])
    latency.observe(0.05)
    store = store_stats(last_commit_ns=t, batch_rows=rows.state(), commit_s=latency.state(),
                        receive_to_commit_s=latency.state())  # fmt: skip
    return shard_stats(i, time_ns=t, received=received, stored=stored, published=received,
                       backlog=received - stored, last_commit_ns=t - S // 2,
                       receive_to_publish_s=latency.state(),
                       moves=MoveStats(trades=4, books=0),
                       stores={"sqlite:///d": store})  # fmt: skip


def reading(receiver: ReceiverStats, *shards: ShardStats) -> RunStats:
    return RunStats(receiver=receiver, shards={s.shard: s for s in shards})


def test_rates_come_from_each_workers_own_timestamps() -> None:
    before = reading(receiver(100 * S, 1000, 900), shard(0, 100 * S, 400, 300))
    after = reading(receiver(102 * S, 5000, 4900), shard(0, 101 * S, 1400, 1300))
    status = build_status(before, after, 2, silent={"000001.SZ": None}, wall_ns=101 * S)
    assert status.ticks_per_s == 2000 and status.connections[0].messages_per_s == 2000
    assert status.shards[0].ticks_per_s == 1000 and status.shards[0].queue == 5
    assert status.shards[0].last_commit_age_s == 0.5 and status.shards[0].state == "up"
    assert status.shards[1].state == "down" and status.shards[1].drops == 3
    assert status.bad_messages == 3 and status.stored == 1300
    console = Console(width=140, record=True, file=io.StringIO())
    console.print(render(status, "test"))
    text = console.export_text()
    for shown in ("received 5,000 ticks (2,000/s)", "msgs/s", "last commit", "1,300",
                  "silent codes: 1 (000001.SZ)", "recent warnings: none", "down"):  # fmt: skip
        assert shown in text, shown
    assert "stored      1,300" in progress_line(status, 3.0)


def test_a_worker_whose_stats_stopped_is_stale() -> None:
    now = reading(receiver(100 * S, 10, 10), shard(0, 90 * S, 10, 10))
    status = build_status(None, now, 1, wall_ns=100 * S)
    assert status.shards[0].state == "stale" and status.ticks_per_s == 0


def test_recent_warnings_are_the_last_warning_and_error_lines(tmp_path: Path) -> None:
    log = tmp_path / "feedmux.log"
    log.write_text("".join(f"t shard-0 {level} line {i}\n" for i, level in
                           enumerate(["INFO", "WARNING", "ERROR", "INFO", "WARNING"])))  # fmt: skip
    assert recent_warnings(log, 2) == ["t shard-0 ERROR line 2", "t shard-0 WARNING line 4"]
    assert recent_warnings(tmp_path / "missing.log") == []


def test_metrics_are_read_from_every_workers_stats(tmp_path: Path) -> None:
    write_stats(tmp_path, receiver(100 * S, 5000, 4900))
    write_stats(tmp_path, shard(0, 100 * S, 3000, 2900))
    write_stats(tmp_path, shard(1, 100 * S, 2000, 2000))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(tmp_path))
    text = generate_latest(registry).decode()
    for line in (
        "feedmux_ticks_received_total 5000.0",
        'feedmux_ticks_stored_total{shard="0"} 2900.0',
        'feedmux_ticks_stored_total{shard="1"} 2000.0',
        'feedmux_decode_errors_total{kind="json"} 2.0',
        'feedmux_subscriptions{state="rejected"} 1.0',
        'feedmux_ticks_dropped_total{shard="1"} 3.0',
        'feedmux_shard_queue_ticks{shard="0"} 5.0',
        # cumulative buckets: 5 <= 10, then 100 and 100 <= 100
        'feedmux_batch_rows_bucket{le="10.0",shard="0",store="sqlite:///d"} 1.0',
        'feedmux_batch_rows_bucket{le="100.0",shard="0",store="sqlite:///d"} 3.0',
        'feedmux_batch_rows_bucket{le="+Inf",shard="0",store="sqlite:///d"} 3.0',
        'feedmux_batch_rows_sum{shard="0",store="sqlite:///d"} 205.0',
        'feedmux_stage_latency_seconds_bucket{le="0.1",shard="0",stage="publish"} 1.0',
        'feedmux_stage_latency_seconds_count{shard="1",stage="commit:sqlite:///d"} 1.0',
        'feedmux_moves_published_total{family="trades",shard="0"} 4.0',
    ):
        assert line in text, line


def test_the_queue_is_what_the_receiver_holds_in_memory_and_spilled_counted_once(
    tmp_path: Path,
) -> None:
    held = queue(0, 25, memory=10, spill_dir=tmp_path)  # 10 in memory, 15 on disk
    assert (held.held, held.spilled) == (25, 15)
    stats = receiver(100 * S, 25, 25, bus=[held])
    status = build_status(None, reading(stats), 1, wall_ns=100 * S)
    assert status.shards[0].queue == 25 and status.spilled == 15
    write_stats(tmp_path, stats)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(tmp_path))
    assert 'feedmux_shard_queue_ticks{shard="0"} 25.0' in generate_latest(registry).decode()


def test_the_nats_lane_shows_in_status_and_metrics(tmp_path: Path) -> None:
    """--nats: what JetStream holds, what waits for its ack and for how long, per shard in the
    metrics and summed in the status (the lag is the slowest shard's)."""
    waiting = NatsStats(published=900, duplicates=3, backlog=100, failures=2,
                        last_ack_ns=90 * S)  # fmt: skip
    caught_up = NatsStats(published=500, duplicates=0, backlog=0, failures=0, last_ack_ns=99 * S)
    shards = [msgspec.structs.replace(shard(0, 100 * S, 1000, 1000), nats=waiting),
              msgspec.structs.replace(shard(1, 100 * S, 500, 500), nats=caught_up)]  # fmt: skip
    status = build_status(None, reading(receiver(100 * S, 1500, 1500), *shards), 2)
    assert status.nats == NatsLane(published=1400, duplicates=3, backlog=100, lag_s=10.0,
                                   failures=2)  # fmt: skip
    assert "nats 1,400 (duplicates 3, backlog 100, lag 10.0s, failures 2)" in progress_line(
        status, 1.0
    )
    console = Console(file=io.StringIO(), width=200)
    console.print(render(status))
    assert "nats 1,400" in console.file.getvalue()  # type: ignore[attr-defined]
    for s in shards:
        write_stats(tmp_path, s)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(tmp_path))
    text = generate_latest(registry).decode()
    for line in ('feedmux_nats_published_total{shard="0"} 900.0',
                 'feedmux_nats_duplicates_total{shard="0"} 3.0',
                 'feedmux_nats_failures_total{shard="0"} 2.0',
                 'feedmux_nats_backlog_messages{shard="0"} 100.0',
                 'feedmux_nats_backlog_messages{shard="1"} 0.0'):  # fmt: skip
        assert line in text, line
    without = build_status(None, reading(receiver(100 * S, 1, 1), shard(0, 100 * S, 1, 1)), 1)
    assert without.nats is None and "nats" not in progress_line(without, 1.0)
    never = NatsStats(published=0, duplicates=0, backlog=50, failures=7, last_ack_ns=0,
                      started_ns=40 * S)  # NATS down since the shard started  # fmt: skip
    down = msgspec.structs.replace(shard(0, 100 * S, 50, 0), nats=never)
    assert build_status(None, reading(receiver(100 * S, 50, 50), down), 1).nats.lag_s == 60.0


def test_the_end_of_day_shows_in_status_and_its_json() -> None:
    """Each step of the end of day, in the progress line, the table and ``status --json``."""
    now = reading(receiver(100 * S, 10, 10), shard(0, 100 * S, 10, 10))
    day = 20_424  # 2025-12-02
    steps = [
        (DayEnd(day=day, state="storing"), "day 2025-12-02 ended: the shards store its last rows"),
        (DayEnd(day=day, state="exporting"), "day 2025-12-02 ended: archiving"),
        (DayEnd(day=day, state="done", archived=["2025-12-01", "2025-12-02"], ticks=1234,
                kept_from="2025-11-21"),
         "day 2025-12-02 ended: archived (1,234 ticks); kept from 2025-11-21"),
        (DayEnd(day=day, state="failed", error="disk full"),
         "day 2025-12-02 ended: FAILED: disk full"),
    ]  # fmt: skip
    for record, line in steps:
        status = build_status(None, now, 1, day_end=record)
        assert line in progress_line(status, 1.0)
        console = Console(file=io.StringIO(), width=200)
        console.print(render(status))
        assert line in console.file.getvalue()  # type: ignore[attr-defined]
    status = build_status(None, now, 1, day_end=DayEnd(next_end_ns=1_764_660_720 * S))
    assert "ended" not in progress_line(status, 1.0)
    shown = json.loads(json.dumps(status.as_dict()))["day"]
    assert shown["day"] == "" and shown["next_end"] == "2025-12-02T07:32:00+00:00"


def test_the_end_of_day_shows_in_the_metrics(tmp_path: Path) -> None:
    stats_dir = tmp_path / "stats"
    stats_dir.mkdir()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats_dir))
    assert "feedmux_eod" not in generate_latest(registry).decode()  # an older run: no record
    write_json(tmp_path / "eod.json", DayEnd(day=20_424, state="failed", archived=["2025-12-01"]))
    text = generate_latest(registry).decode()
    for line in ("feedmux_eod_last_day 20424.0", "feedmux_eod_failed 1.0",
                 "feedmux_eod_archived_days_total 1.0"):  # fmt: skip
        assert line in text, line
