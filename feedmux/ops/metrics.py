"""Prometheus metrics (``feedmux run --metrics-port``), read from the workers' stats files.

Each worker counts in its own memory and writes its numbers once a second; at every scrape
this collector reads all of them. So the numbers are right across processes with no shared
memory, no locks on the hot path, and a shard's counters survive its restart (it resumes
from its last stats). prometheus-client does the exposition format and the HTTP server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import accumulate
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from feedmux import families
from feedmux.errors import ConfigError
from feedmux.market.sessions import PHASES, Sessions
from feedmux.ops.markets import market_rows
from feedmux.stats import RunStats, read_stats
from feedmux.stats.eod import EOD_FILE, read_day_end
from feedmux.stats.receiver import ReceiverStats
from feedmux.stats.shard import HistogramState, ShardStats, data_clock
from feedmux.writes import KNOWN_REASONS


def _buckets(state: HistogramState) -> list[tuple[str, float]]:
    """A stats histogram (per-bucket counts) as Prometheus's cumulative buckets."""
    bounds = [*(str(float(b)) for b in state.bounds), "+Inf"]
    return list(zip(bounds, accumulate(state.counts), strict=True))


class StatsCollector(Collector):
    """``markets`` (the subscribed markets, asked at each scrape) and ``sessions``: each
    market's session, on the run's data clock, as a state set."""

    def __init__(self, stats_dir: Path, markets: Callable[[], list[str]] | None = None,
                 sessions: Sessions | None = None, wall: Callable[[], int] = time.time_ns,
                 ) -> None:  # fmt: skip
        self.stats_dir = stats_dir
        self.markets = markets
        # Its own: the scrapes run on the server's thread, and Sessions caches as it looks up.
        self.sessions = None if sessions is None else Sessions(sessions.calendars)
        self.wall = wall

    def collect(self) -> Iterator[Metric]:
        stats = read_stats(self.stats_dir)
        yield from self._receiver(stats.receiver, list(stats.shards.values()))
        yield from self._shards(list(stats.shards.values()))
        yield from self._writes(stats)
        yield from self._sessions(list(stats.shards.values()))
        yield from self._day_end()

    def _day_end(self) -> Iterator[Metric]:
        """The end of day (feedmux/ops/eod.py): the last day ended, and whether its job failed."""
        record = read_day_end(self.stats_dir.parent / EOD_FILE)
        if record is None:
            return
        yield GaugeMetricFamily("feedmux_eod_last_day", "The last trading day ended in this "
                                "run, as days since 1970-01-01 (-1: none yet)",
                                value=record.day)  # fmt: skip
        yield GaugeMetricFamily("feedmux_eod_failed", "1 when the last end of day's archive or "
                                "removal failed (see the log)",
                                value=1 if record.state == "failed" else 0)  # fmt: skip
        yield CounterMetricFamily("feedmux_eod_archived_days", "Days archived by --eod-export "
                                  "in this run", value=len(record.archived))  # fmt: skip

    def _sessions(self, shards: list[ShardStats]) -> Iterator[Metric]:
        """The data clock, and 1 for each market's phase now (0 for its others)."""
        now = data_clock(shards, self.wall())
        yield GaugeMetricFamily("feedmux_market_data_clock_seconds", "The feed's own clock: "
                                "its newest tick time plus the wall time since (the wall clock "
                                "before any tick)", value=now / 1e9)  # fmt: skip
        if self.markets is None or self.sessions is None:
            return
        session = GaugeMetricFamily("feedmux_market_session", "1 for each subscribed market's "
                                    "session now, on the data clock (0 for its others)",
                                    labels=["market", "session"])  # fmt: skip
        for row in market_rows(self.markets(), self.sessions, now):
            for phase in PHASES:
                session.add_metric([row.market, phase.value], 1 if row.phase == phase else 0)
        yield session

    def _writes(self, stats: RunStats) -> Iterator[Metric]:
        """Writes to disk that fail (a full disk): how many, and which fail now."""
        labels = ["process", "kind", "reason"]
        failures = CounterMetricFamily(
            "feedmux_disk_write_failures",
            "Failed writes: store, stats, journal, spill, log (or Redis)", labels=labels,
        )  # fmt: skip
        failing = GaugeMetricFamily(
            "feedmux_disk_writes_failing",
            "1 while that kind of write fails (e.g. store failing: disk full)", labels=labels,
        )  # fmt: skip
        for s in stats.processes():
            for f in s.failing_writes:
                reason = f.reason if f.reason in KNOWN_REASONS else "other"  # bounded labels
                failures.add_metric([s.name, f.kind, reason], f.failures)
                failing.add_metric([s.name, f.kind, reason], 1 if f.failing else 0)
        yield from (failures, failing)

    def _receiver(self, r: ReceiverStats | None, shards: list[ShardStats]) -> Iterator[Metric]:
        """None (no stats yet): its counters read 0."""
        yield CounterMetricFamily("feedmux_ticks_received", "Trades routed by the receiver "
                                  "(since it started)", value=r.ticks if r else 0)  # fmt: skip
        yield CounterMetricFamily("feedmux_books_received", "Order books routed by the receiver",
                                  value=r.books if r else 0)  # fmt: skip
        frames = CounterMetricFamily("feedmux_messages_received", "Vendor messages by connection",
                                     labels=["connection"])  # fmt: skip
        reconnects = CounterMetricFamily("feedmux_reconnects", "Reconnects by connection",
                                         labels=["connection"])  # fmt: skip
        trips = CounterMetricFamily("feedmux_watchdog_trips", "Reconnects for a silent link",
                                    labels=["connection"])  # fmt: skip
        up = GaugeMetricFamily("feedmux_connection_up", "1 when the connection is up",
                               labels=["connection"])  # fmt: skip
        errors: dict[str, int] = {}
        for i, c in enumerate(r.connections if r else []):
            frames.add_metric([str(i)], c.messages)
            reconnects.add_metric([str(i)], c.reconnects)
            trips.add_metric([str(i)], c.watchdog_trips)
            up.add_metric([str(i)], 1 if c.state == "up" else 0)
            for kind, n in c.bad_messages.items():
                errors[kind] = errors.get(kind, 0) + n
        for shard in shards:  # pushes are decoded in the shards
            for kind, n in shard.bad_pushes.items():
                errors[kind] = errors.get(kind, 0) + n
        decode = CounterMetricFamily("feedmux_decode_errors", "Bad vendor frames, counted and "
                                     "skipped, by kind", labels=["kind"])  # fmt: skip
        for kind, n in sorted(errors.items()):
            decode.add_metric([kind], n)
        yield from (frames, reconnects, trips, up, decode)
        subs = GaugeMetricFamily("feedmux_subscriptions", "Codes by subscription state",
                                 labels=["state"])  # fmt: skip
        for state, n in (("desired", r.codes_desired if r else 0),
                         ("confirmed", r.codes_subscribed if r else 0),
                         ("rejected", r.codes_rejected if r else 0)):  # fmt: skip
            subs.add_metric([state], n)
        yield subs
        routed = CounterMetricFamily("feedmux_bus_messages_sent", "Receiver -> shard messages",
                                     value=r.bus_messages if r else 0)  # fmt: skip
        queue = GaugeMetricFamily("feedmux_shard_queue_ticks", "Ticks the receiver holds for a "
                                  "shard (memory and spilled)", labels=["shard"])  # fmt: skip
        dropped = CounterMetricFamily("feedmux_ticks_dropped", "Ticks dropped for a slow shard "
                                      "(--overflow drop)", labels=["shard"])  # fmt: skip
        spilled = CounterMetricFamily("feedmux_ticks_spilled", "Ticks spilled to disk for a slow "
                                      "shard (--overflow spill)", labels=["shard"])  # fmt: skip
        for i, q in enumerate(r.bus if r else []):
            queue.add_metric([str(i)], q.held)  # the spilled ticks are held ones
            dropped.add_metric([str(i)], q.dropped_total)
            spilled.add_metric([str(i)], q.spilled_total)
        yield from (routed, queue, dropped, spilled)

    def _shards(self, shards: list[ShardStats]) -> Iterator[Metric]:
        def counter(name: str, doc: str, count: Callable[[ShardStats], int]) -> Metric:
            m = CounterMetricFamily(name, doc, labels=["shard"])
            for s in shards:
                m.add_metric([str(s.shard)], count(s))
            return m

        yield counter("feedmux_ticks_routed", "Trades a shard took from the bus",
                      lambda s: s.received)  # fmt: skip
        yield counter("feedmux_ticks_stored", "Trades in every store", lambda s: s.stored)
        yield counter("feedmux_ticks_published", "Ticks and books published on PUB",
                      lambda s: s.published)  # fmt: skip
        yield counter("feedmux_duplicates", "Rows a store already had", lambda s: s.duplicates)
        yield counter("feedmux_bus_gaps", "Bus messages that will never come",
                      lambda s: s.bus_gaps)  # fmt: skip
        yield counter("feedmux_shard_restarts", "Shard worker restarts", lambda s: s.restarts)
        yield counter("feedmux_store_write_failures", "Failed store writes (retried)",
                      lambda s: s.write_failures)  # fmt: skip
        backlog = GaugeMetricFamily("feedmux_store_backlog_rows", "Rows received, not yet in "
                                    "every store", labels=["shard"])  # fmt: skip
        last = GaugeMetricFamily("feedmux_last_commit_timestamp_seconds", "Wall-clock time of "
                                 "the last commit", labels=["shard", "store"])  # fmt: skip
        rows = HistogramMetricFamily("feedmux_batch_rows", "Rows per committed batch",
                                     labels=["shard", "store"])  # fmt: skip
        commit = HistogramMetricFamily("feedmux_commit_seconds", "Time one batch commit takes",
                                       labels=["shard", "store"])  # fmt: skip
        stage = HistogramMetricFamily("feedmux_stage_latency_seconds", "From the receiver's "
                                      "socket read to a stage: publish, or commit to a store",
                                      labels=["shard", "stage"])  # fmt: skip
        moves = CounterMetricFamily("feedmux_moves_published", "Publications on the --min-move "
                                    "topics", labels=["shard", "family"])  # fmt: skip
        for s in shards:
            shard = str(s.shard)
            backlog.add_metric([shard], s.backlog)
            # labelled by the family they are moves of
            for family, n in ((families.TRADES, s.moves.trades), (families.BOOKS, s.moves.books)):
                moves.add_metric([shard, family.name], n)
            h = s.receive_to_publish_s
            stage.add_metric([shard, "publish"], _buckets(h), h.sum)
            for store, st in s.stores.items():
                last.add_metric([shard, store], st.last_commit_ns / 1e9)
                rows.add_metric([shard, store], _buckets(st.batch_rows), st.batch_rows.sum)
                commit.add_metric([shard, store], _buckets(st.commit_s), st.commit_s.sum)
                h = st.receive_to_commit_s
                stage.add_metric([shard, f"commit:{store}"], _buckets(h), h.sum)
        yield from (backlog, last, rows, commit, stage, moves)
        yield from self._nats([s for s in shards if s.nats is not None])

    def _nats(self, shards: list[ShardStats]) -> Iterator[Metric]:
        """--nats: each shard's JetStream lane."""
        if not shards:
            return
        published = CounterMetricFamily("feedmux_nats_published", "Publications JetStream "
                                        "stored", labels=["shard"])  # fmt: skip
        duplicates = CounterMetricFamily(
            "feedmux_nats_duplicates",
            "Publications JetStream had already (a retry, a restart)",
            labels=["shard"],
        )
        failures = CounterMetricFamily("feedmux_nats_failures", "Failed JetStream batches "
                                       "(retried)", labels=["shard"])  # fmt: skip
        backlog = GaugeMetricFamily("feedmux_nats_backlog_messages", "Publications not yet "
                                    "acked by JetStream", labels=["shard"])  # fmt: skip
        last = GaugeMetricFamily("feedmux_nats_last_ack_timestamp_seconds", "Wall-clock time "
                                 "of JetStream's last ack", labels=["shard"])  # fmt: skip
        for s in shards:
            assert s.nats is not None
            shard = str(s.shard)
            published.add_metric([shard], s.nats.published)
            duplicates.add_metric([shard], s.nats.duplicates)
            failures.add_metric([shard], s.nats.failures)
            backlog.add_metric([shard], s.nats.backlog)
            last.add_metric([shard], s.nats.last_ack_ns / 1e9)
        yield from (published, duplicates, failures, backlog, last)


def serve(stats_dir: Path, port: int, host: str = "127.0.0.1", *,
          markets: Callable[[], list[str]] | None = None,
          sessions: Sessions | None = None) -> int:  # fmt: skip
    """Serve /metrics on a daemon thread; the port (``port`` 0 picks a free one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats_dir, markets, sessions))
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"--metrics-port {port} on {host}: {exc}") from None
    return int(server.server_port)
