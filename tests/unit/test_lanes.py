"""Store lanes without sockets: batching, every target, what an ack may claim, retries, close."""

from __future__ import annotations

import time
from typing import Any

from feedmux import families, wire
from feedmux.model import Tick
from feedmux.shard.batching import Batcher
from feedmux.shard.lanes import Lane, Lanes, Target
from feedmux.shard.state import ShardState
from feedmux.shard.stores.background import BackgroundWriter
from feedmux.shard.stores.retry import RetryingWriter
from tests.conftest import FakeClock, wait_for
from tests.unit.test_background_writer import SlowSink

DELAY_NS = 200_000_000


class FakeWriter:
    """Takes batches and commits them only when told (``commit``): a store as slow as a test
    wants."""

    def __init__(self) -> None:
        self.received: list[list[int]] = []
        self.written = 0
        self.closed = False

    @property
    def submitted(self) -> int:
        return sum(len(b) for b in self.received)

    def submit(self, batch: list[int]) -> None:
        self.received.append(list(batch))

    def write_now(self, batch: list[int]) -> None:
        self.submit(batch)
        self.commit()

    def commit(self, rows: int | None = None) -> None:
        """The next ``rows`` handed-over rows (all of them by default) are committed."""
        self.written = self.submitted if rows is None else min(self.submitted, self.written + rows)

    def close(self, timeout_s: float) -> int:
        self.closed = True
        return self.backlog

    @property
    def stored(self) -> int:
        return self.written

    duplicates = failures = batches = last_commit_ns = 0

    @property
    def backlog(self) -> int:
        return self.submitted - self.written


def lane(clock: FakeClock, *writers: FakeWriter, **options: bool) -> Lane[int]:
    targets = [Target(f"store-{i}", w) for i, w in enumerate(writers)]
    return Lane("ticks", targets, Batcher(100, DELAY_NS, clock), **options)


def test_rows_go_in_batches_of_100_to_every_store() -> None:
    first, second = FakeWriter(), FakeWriter()
    ticks = lane(FakeClock(), first, second)
    ticks.add(list(range(150)))
    ticks.add(list(range(150, 250)))
    assert first.received == second.received == [list(range(100)), list(range(100, 200))]
    assert ticks.backlog == 250  # 200 with the stores, 50 pending


def test_a_partial_batch_goes_out_200_ms_after_its_first_row() -> None:
    clock = FakeClock()
    store = FakeWriter()
    ticks = lane(clock, store)
    ticks.add([1, 2])
    assert ticks.deadline() == clock.now + DELAY_NS
    clock.advance(0.1)
    ticks.add([3])
    clock.advance(0.099)
    ticks.flush_due()
    assert store.received == []
    clock.advance(0.001)
    ticks.flush_due()
    assert store.received == [[1, 2, 3]] and ticks.deadline() is None


def test_the_lane_has_written_what_its_slowest_store_committed() -> None:
    fast, slow = FakeWriter(), FakeWriter()
    ticks = lane(FakeClock(), fast, slow)
    ticks.add(list(range(300)))
    fast.commit()
    slow.commit(100)
    assert ticks.written == 100 and ticks.stored == 100 and ticks.slowest.writer is slow
    assert ticks.backlog == 200


def feed(state: ShardState, lanes: Lanes, first_seq: int, ticks: list[Tick]) -> None:
    lanes.take(state.on_bus(wire.encode(wire.Burst(first_seq, ticks))))


MINUTE_NS = 60 * 10**9
T0 = 1_764_000_000 * 10**9  # on a minute


def moving(seqs: range) -> list[Tick]:
    """Ticks a second apart, each moving the price: one trade and one move each."""
    return [Tick("600519.SH", s, T0 + s * 10**9, T0, 10.0 + s, 1.0, 1.0, 1) for s in seqs]


def test_the_ack_never_claims_ticks_the_slowest_store_or_redis_lacks() -> None:
    """Bars and moves interleave with the ticks; stores and Redis commit at their own pace."""
    clock = FakeClock()
    sqlite, postgres, redis = FakeWriter(), FakeWriter(), FakeWriter()

    def one(*writers: FakeWriter) -> Lane[Any]:
        targets = [Target(f"t{i}", w) for i, w in enumerate(writers)]
        return Lane("x", targets, Batcher(100, DELAY_NS, clock))

    lanes = Lanes(one(sqlite, postgres), one(FakeWriter()), one(FakeWriter()), redis=one(redis))
    state = ShardState(0, wall_clock=FakeClock(T0), min_move={"trades": 0.01})
    state.on_bus(wire.encode(wire.Resume(1, 1)))
    feed(state, lanes, 1, moving(range(1, 51)))  # seconds 1..50
    feed(state, lanes, 51, moving(range(51, 101)))  # 51..100: a bar closes at 60
    lanes.ticks.flush()
    lanes.redis.flush()  # type: ignore[union-attr]
    assert redis.submitted == 100 + 1  # the trades, then the bar; no moves
    assert state.move_seqs[families.TRADE_MOVES] == 100

    def ack() -> int | None:
        message = state.committed(*lanes.written())
        return None if message is None else wire.feedback_decoder.decode(message).next_seq

    sqlite.commit()
    redis.commit()
    assert ack() is None  # PostgreSQL has nothing yet
    postgres.commit(50)
    assert ack() == 51
    postgres.commit()
    redis.written = 99  # Redis lacks the second message's last trade
    assert ack() is None
    redis.written = 100  # and only the bar that message closed: a bar holds no ack back
    assert ack() == 101


def test_a_failing_store_is_retried_and_drops_nothing_while_the_other_goes_on() -> None:
    failing, healthy = SlowSink(failures=2), SlowSink()
    failing.release.set()
    healthy.release.set()
    writers = [BackgroundWriter(RetryingWriter(s.write, time.monotonic_ns), f"test-{i}")
               for i, s in enumerate((failing, healthy))]  # fmt: skip
    ticks = Lane("ticks", [Target(f"s{i}", w) for i, w in enumerate(writers)],
                 Batcher(100, DELAY_NS, FakeClock()))  # fmt: skip
    ticks.add(list(range(250)))
    wait_for(lambda: healthy.rows == list(range(200)), 10, "the healthy store")
    wait_for(lambda: ticks.written == 200, 10, "the failing store's retries")
    assert failing.rows == list(range(200)) and ticks.failures == 2
    assert ticks.close(10.0) == 0
    assert failing.rows == healthy.rows == list(range(250))


def test_close_writes_what_is_pending_then_an_empty_batch_then_closes_the_stores() -> None:
    store = FakeWriter()
    closed: list[str] = []
    ticks = Lane("ticks", [Target("s", store, close=lambda: closed.append("s"))],
                 Batcher(100, DELAY_NS, FakeClock()), empty_batch_at_close=True)  # fmt: skip
    ticks.add([1, 2, 3])
    assert ticks.close(1.0) == 3  # the fake commits nothing until told
    assert store.received == [[1, 2, 3], []] and store.closed and closed == ["s"]


def test_the_empty_merge_batch_waits_until_every_lane_of_the_file_stopped_writing() -> None:
    """SQLite's end-of-run merge (an empty tick batch) shares the shard's file with the books
    and bars writers: run while they still wrote, it failed "database is locked" at every clean
    stop and left the run showing "store failing"."""
    events: list[str] = []

    class Logged(FakeWriter):
        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind = kind

        def write_now(self, batch: list[int]) -> None:
            events.append(f"{self.kind} merge")
            super().write_now(batch)

        def close(self, timeout_s: float) -> int:
            events.append(f"{self.kind} writer closed")
            return super().close(timeout_s)

    def one(kind: str, **options: bool) -> Lane[Any]:
        return Lane(kind, [Target("s", Logged(kind))], Batcher(100, DELAY_NS, FakeClock()),
                    **options)  # fmt: skip

    lanes = Lanes(one("ticks", empty_batch_at_close=True), one("books"), one("bars"))
    lanes.close(1.0)
    assert events[-1] == "ticks merge"
    assert sorted(events[:-1]) == [f"{k} writer closed" for k in ("bars", "books", "ticks")]
