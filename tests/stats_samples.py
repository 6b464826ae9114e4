"""Workers' stats for tests, built from the Structs the workers write (never a hand-written
dict that can drift): every number zero unless a test says otherwise."""

from __future__ import annotations

from typing import Any

import msgspec

from feedmux.shard.histogram import LATENCY_BUCKETS_S, ROWS_BUCKETS, Histogram
from feedmux.stats.receiver import ConnectionStats, JournalStats, ReceiverStats
from feedmux.stats.replay import ReplayStats
from feedmux.stats.shard import BarStats, MoveStats, ShardStats, StoreStats


def receiver_stats(**changes: Any) -> ReceiverStats:
    zero = ReceiverStats(
        final=False, time_ns=0, cpu_s=0.0, max_rss_kb=0, failing_writes=[], ticks=0, books=0,
        bus_messages=0, unconfirmed=0, bad_feedback=0, overflow="spill", bus=[],
        journal=JournalStats(path="", records=0, bytes=0, files=0, error="", lost=0),
        codes_desired=0, codes_subscribed=0, codes_rejected=0, rejected=[], gave_up=None,
        connections=[],
    )  # fmt: skip
    return msgspec.structs.replace(zero, **changes)


def connection_stats(**changes: Any) -> ConnectionStats:
    zero = ConnectionStats(state="up", codes=0, confirmed=0, messages=0, last_message_age_s=None,
                           reconnects=0, watchdog_trips=0, bad_messages={}, error="")  # fmt: skip
    return msgspec.structs.replace(zero, **changes)


def store_stats(**changes: Any) -> StoreStats:
    zero = StoreStats(stored=0, duplicates=0, backlog=0, failures=0, last_commit_ns=0,
                      batch_rows=Histogram(ROWS_BUCKETS).state(),
                      commit_s=Histogram(LATENCY_BUCKETS_S).state(),
                      receive_to_commit_s=Histogram(LATENCY_BUCKETS_S).state())  # fmt: skip
    return msgspec.structs.replace(zero, **changes)


def shard_stats(shard: int, **changes: Any) -> ShardStats:
    zero = ShardStats(
        final=False, time_ns=0, cpu_s=0.0, max_rss_kb=0, failing_writes=[], shard=shard, pid=1,
        received=0, published=0, stored=0, duplicates=0, resent_dropped=0, books_received=0,
        books_stored=0, books_duplicates=0, books_resent_dropped=0, restarts=0, batches=0,
        write_failures=0, backlog=0, last_commit_ns=0, stores={},
        receive_to_publish_s=Histogram(LATENCY_BUCKETS_S).state(),
        moves=MoveStats(trades=0, books=0),
        bars=BarStats(published=0, stored=0, late=0, too_late=0, resent=0), redis=None,
        bus_gaps=0, bus_ignored=0, rewinds_asked=0, bad_messages=0, bad_pushes={}, codes=0,
        acks_dropped=0,
    )  # fmt: skip
    return msgspec.structs.replace(zero, **changes)


def replay_stats(**changes: Any) -> ReplayStats:
    zero = ReplayStats(
        url="", feed="waiting", ticks_sent=0, books_sent=0, garbage_sent=0, frames_sent=0,
        connections_opened=0, frames_skipped={}, cpu_s=0.0, feed_cpu_s=0.0, violations=[],
        subscriptions={}, subscribed=[], books=[], steps=[], frame_index=0, faults=[],
        frames_total=None,
    )  # fmt: skip
    return msgspec.structs.replace(zero, **changes)
