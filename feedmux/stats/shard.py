"""A shard's stats: what it took from the bus, published, and stored, in total and per store."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from feedmux.stats.process import ProcessStats

SHARD = "shard"


class HistogramState(msgspec.Struct, kw_only=True):
    """A histogram as written: upper bounds and per-bucket (not cumulative) counts, the last
    count being the +Inf bucket's."""

    bounds: list[float]
    counts: list[int]
    sum: float
    count: int


class StoreStats(msgspec.Struct, kw_only=True):
    """One store's own numbers (the shard's totals are the slowest store's)."""

    stored: int
    duplicates: int
    backlog: int  # rows handed to its writer, not yet committed
    failures: int  # failed writes, retried
    last_commit_ns: int  # wall clock; 0: none yet
    batch_rows: HistogramState
    commit_s: HistogramState
    receive_to_commit_s: HistogramState  # from the receiver's socket read to this commit


class RedisStats(msgspec.Struct, kw_only=True):
    """--redis: the shard's stream."""

    published: int
    backlog: int
    failures: int


class NatsStats(msgspec.Struct, kw_only=True):
    """--nats: the shard's publications to JetStream."""

    published: int  # stored in the stream by this shard
    duplicates: int  # the stream had them already (a retried batch, a restart, a twin)
    backlog: int  # handed to the lane, not yet acked by JetStream
    failures: int  # failed batches (retried)
    last_ack_ns: int  # wall clock of the last acked batch; 0: none yet
    started_ns: int = 0  # wall clock of the lane's start: its lag counts from here until an ack


class BarStats(msgspec.Struct, kw_only=True):
    published: int
    stored: int  # in every store
    late: int  # ticks that amended a bar already closed (it was published again)
    too_late: int  # ticks older than the bars kept: stored, in no bar
    resent: int  # resent ticks: bars take new ticks only
    outside: int = 0  # ticks outside every bar's hours (market closed; extended hours unasked)


class MoveStats(msgspec.Struct, kw_only=True):
    """Publications on the --min-move topics, by the family they are moves of."""

    trades: int
    books: int


class ShardStats(ProcessStats, tag=SHARD, kw_only=True):
    shard: int
    pid: int
    # Cumulative over the run (an earlier incarnation's counts carried: see ``carry``).
    # A row counts as stored once every store has it.
    received: int  # ticks taken from the bus
    published: int  # ticks and books published (bars and moves are counted apart)
    stored: int
    duplicates: int  # rows a store already had
    resent_dropped: int  # ticks the receiver resent that this shard had already
    books_received: int
    books_stored: int
    books_duplicates: int
    books_resent_dropped: int
    restarts: int
    # Since this process started.
    batches: int
    write_failures: int  # failed writes of every store, bars and Redis included (retried)
    backlog: int  # ticks received, not yet in every store
    last_commit_ns: int  # the slowest store's last commit (wall clock); 0: none yet
    stores: dict[str, StoreStats]  # by store, as shown (password masked)
    receive_to_publish_s: HistogramState
    moves: MoveStats
    bars: BarStats
    redis: RedisStats | None  # None: no --redis
    nats: NatsStats | None = None  # None: no --nats
    bus_gaps: int  # bus messages that will never come (the receiver dropped them)
    bus_ignored: int  # messages seen twice or out of order (a resend follows)
    rewinds_asked: int
    bad_messages: int  # bus messages that did not decode
    bad_pushes: dict[str, int]  # vendor pushes that did not decode here, by kind (cumulative)
    codes: int  # codes in the snapshot
    acks_dropped: int
    # The shard's data clock when these stats were written (ns UTC): its newest tick time plus
    # the wall time since that tick came (feedmux/shard/bars.py); 0: no tick yet. A replay's
    # or a delayed feed's "now", on which silence and market sessions are judged.
    data_ns: int = 0
    # The last trading day ended (feedmux/stats/eod.py) whose rows this shard took before the
    # day ended are all in every store: the supervisor then archives it. -1: none.
    day_done: int = -1

    @property
    def name(self) -> str:
        return f"{SHARD}-{self.shard}"

    def carry(self, before: ShardStats | None) -> ShardStats:
        """These counts on top of an earlier incarnation's in this run, so that totals survive
        a restart (``before``: its last stats; None if this is the first)."""
        if before is None:
            return self
        return msgspec.structs.replace(
            self,
            received=before.received + self.received,
            published=before.published + self.published,
            stored=before.stored + self.stored,
            duplicates=before.duplicates + self.duplicates,
            resent_dropped=before.resent_dropped + self.resent_dropped,
            books_received=before.books_received + self.books_received,
            books_stored=before.books_stored + self.books_stored,
            books_duplicates=before.books_duplicates + self.books_duplicates,
            books_resent_dropped=before.books_resent_dropped + self.books_resent_dropped,
            restarts=before.restarts + 1,
            redis=_carry_redis(before.redis, self.redis),
            nats=_carry_nats(before.nats, self.nats),
            bad_pushes={k: before.bad_pushes.get(k, 0) + self.bad_pushes.get(k, 0)
                        for k in before.bad_pushes.keys() | self.bad_pushes.keys()},
        )  # fmt: skip


def data_clock(shards: Iterable[ShardStats], wall_ns: int) -> int:
    """The run's data clock at ``wall_ns``: the latest of the shards' data clocks, each advanced
    by the wall time since its stats were written; the wall clock while no shard had a tick."""
    clocks = [s.data_ns + max(0, wall_ns - s.time_ns) for s in shards if s.data_ns]
    return max(clocks, default=wall_ns)


def _carry_redis(before: RedisStats | None, now: RedisStats | None) -> RedisStats | None:
    if before is None or now is None:
        return now
    return RedisStats(published=before.published + now.published, backlog=now.backlog,
                      failures=before.failures + now.failures)  # fmt: skip


def _carry_nats(before: NatsStats | None, now: NatsStats | None) -> NatsStats | None:
    if before is None or now is None:
        return now
    return NatsStats(published=before.published + now.published,
                     duplicates=before.duplicates + now.duplicates, backlog=now.backlog,
                     failures=before.failures + now.failures,
                     last_ack_ns=now.last_ack_ns or before.last_ack_ns,
                     started_ns=now.started_ns)  # fmt: skip
