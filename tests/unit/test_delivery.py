"""The delivery ledger and the receiver's bus sender against real ShardState, over a channel
that loses what a crash loses."""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

import pytest
import zmq
from hypothesis import example, given, settings
from hypothesis import strategies as st

from feedmux import wire
from feedmux.errors import StoreError
from feedmux.ingest.bus import END_WAIT_S, BusSender
from feedmux.ingest.delivery import SPILL_RETRY_NS, Delivery
from feedmux.ingest.fanout import ShardOutbox
from feedmux.ingest.spill import SpillFile
from feedmux.model import Tick
from feedmux.routing import Router
from feedmux.shard.state import ShardState
from tests.conftest import FakeClock


def tick(n: int) -> Tick:
    return Tick(f"60{n % 5:04d}.SH", n, 0, 0, 1.0, 1.0, 1.0, 0)


class FakePush:
    """A PUSH socket: what it took is the channel to the shard; ``room`` messages, then
    ``zmq.Again`` (a slow shard), when set."""

    def __init__(self) -> None:
        self.channel: list[bytes] = []
        self.room: int | None = None

    def send(self, data: bytes, flags: int = 0) -> None:
        if self.room is not None:
            if self.room == 0:
                raise zmq.Again
            self.room -= 1
        self.channel.append(data)


class FakePull:
    """The acks socket: the shards' feedback, in order; ``zmq.Again`` when none is waiting."""

    def __init__(self) -> None:
        self.inbox: deque[bytes] = deque()

    def recv(self, flags: int = 0) -> bytes:
        if not self.inbox:
            raise zmq.Again
        return self.inbox.popleft()


class Pipeline:
    """The receiver's real bus sender and one shard, by hand: the channel is a list, the
    store a list."""

    def __init__(self, tmp: Path, window: int, memory: int, overflow: str = "spill") -> None:
        self.clock = FakeClock()  # when a failed spill is tried again
        self.delivery = Delivery(1, 77, window_items=window, memory_items=memory,
                                 overflow=overflow, spill_dir=tmp,  # type: ignore[arg-type]
                                 clock=self.clock)  # fmt: skip
        self.queue = self.delivery.queues[0]
        self.push, self.acks = FakePush(), FakePull()
        self.bus = BusSender(self.delivery, ShardOutbox(Router(1)), [self.push], self.acks)
        self.channel = self.push.channel
        self.store: list[tuple[str, int]] = []
        self.next_tick = 0
        self.restart()

    def restart(self) -> None:
        """kill -9: what was in flight and in the shard's memory is gone; the store stays."""
        self.channel.clear()
        self.shard = ShardState(0)
        self.taken: list[Tick] = []  # handed to the store, not yet committed
        self.written = len(self.store)  # the writer's count starts again in a new process
        self.base = len(self.store)
        self.send_feedback()

    def route(self, n: int) -> None:
        """A read burst of ``n`` ticks, into the ledger (not sent yet)."""
        for i in range(n):
            self.bus.outbox.add(tick(self.next_tick + i))
        self.bus.flush()
        self.next_tick += n

    def send(self) -> None:
        self.bus.send()

    def deliver(self) -> None:
        for message in self.channel:
            self.taken += self.shard.on_bus(message).ticks
        self.channel.clear()

    def commit(self) -> None:
        rows, self.taken = self.taken, []
        self.store.extend((t.code, t.seq) for t in rows)
        self.send_feedback()

    def send_feedback(self) -> None:
        self.acks.inbox.extend(self.shard.take_feedback())
        ack = self.shard.committed(len(self.store) - self.base, 0)
        if ack is not None:
            self.acks.inbox.append(ack)
        self.bus.take_feedback()

    def step(self, action: str, n: int) -> bool:
        """One generated step: r(oute n), s(end), d(eliver), c(ommit), k(ill the shard);
        False for an action the test handles itself."""
        match action:
            case "r":
                self.route(n)
            case "s":
                self.send()
            case "d":
                self.deliver()
            case "c":
                self.commit()
            case "k":
                self.restart()
            case _:
                return False
        return True

    def settle(self) -> None:
        """Send, deliver and commit until every routed tick is confirmed (each round moves at
        most a window, so a long backlog takes many rounds)."""
        for _ in range(10_000):
            self.send()
            self.deliver()
            self.commit()
            if self.delivery.unconfirmed() == 0 and self.queue.held_items == 0:
                return


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("rsdck"), st.integers(1, 40)), max_size=60),
       st.integers(5, 60), st.integers(0, 100))  # fmt: skip
def test_every_routed_tick_is_stored_whatever_crashes_in_between(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]], window: int,
    extra_memory: int,
) -> None:  # fmt: skip
    p = Pipeline(tmp_path_factory.mktemp("spill"), window, window + extra_memory)
    for action, n in steps:
        p.step(action, n)  # every sampled action is one of the pipeline's
    p.settle()
    routed = {(t.code, t.seq) for t in map(tick, range(p.next_tick))}
    assert set(p.store) == routed  # nothing lost (duplicates the sink would skip are allowed)
    assert p.delivery.unconfirmed() == 0 and p.queue.held_items == 0


def test_beyond_memory_the_queue_spills_to_disk_in_order_and_catches_up(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, window=10, memory=20)
    for _ in range(10):
        p.route(5)  # 50 ticks: 20 in memory, 30 spilled
    assert p.queue.spilled_items == 30 and p.queue.spilled_total == 30
    assert (tmp_path / "shard-0.spill").stat().st_size > 0
    p.settle()
    assert p.store == [(t.code, t.seq) for t in map(tick, range(50))]  # in order, once each
    assert p.queue.spilled_items == 0 and (tmp_path / "shard-0.spill").stat().st_size == 0


def test_the_drop_policy_counts_a_gap_and_goes_on(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, window=10, memory=10, overflow="drop")
    for _ in range(6):
        p.route(5)  # 30 ticks, 10 fit
    assert p.queue.dropped_total == 20
    p.settle()
    assert len(p.store) == 10 and p.shard.bus_gaps == 20
    p.route(5)
    p.settle()
    assert len(p.store) == 15 and p.delivery.unconfirmed() == 0


def test_the_window_holds_messages_back_until_acks_come(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, window=10, memory=1000)
    for _ in range(4):
        p.route(5)
    p.send()

    def bursts() -> int:
        return sum(type(wire.bus_decoder.decode(m)) is wire.Burst for m in p.channel)

    assert bursts() == 2  # 10 ticks in flight: the window is full
    p.deliver()
    p.commit()
    p.send()
    assert bursts() == 2  # the acks opened the window again


def test_feedback_from_another_epoch_or_garbage_are_ignored(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, window=10, memory=100)
    p.route(5)
    p.send()
    p.delivery.on_feedback(wire.encode(wire.Ack(0, 12345, 6)))  # an earlier receiver's epoch
    p.delivery.on_feedback(b"\x00junk")
    p.delivery.on_feedback(wire.encode(wire.Ack(9, 77, 6)))  # no such shard
    assert p.delivery.unconfirmed() == 5 and p.delivery.bad_feedback == 2


def test_a_spill_that_cannot_be_written_keeps_ticks_in_memory_then_counts_drops(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "spill"
    blocked.write_text("where the spill directory should be: like a full disk")
    p = Pipeline(blocked, window=10, memory=20)
    for _ in range(8):
        p.route(5)  # 40 ticks: 20 in memory, 20 more kept in memory behind the failed spill
    assert p.queue.dropped_total == 0 and p.queue.held_items == 40
    p.route(5)  # beyond both: counted as dropped (a gap the shard reports), never silent
    assert p.queue.dropped_total == 5
    p.settle()
    assert p.store == [(t.code, t.seq) for t in map(tick, range(40))]
    assert p.shard.bus_gaps == 5
    blocked.write_text("full again")
    for _ in range(6):
        p.route(5)  # 30: 20 in memory, 10 behind the spill
    blocked.unlink()  # room again: what waited in memory goes to the spill first, in order
    p.clock.advance(1)  # once the next try is due
    p.route(5)
    assert p.queue.spilled_items == 15 and p.queue.unspilled_items == 0
    p.settle()
    assert p.store[40:] == [(t.code, t.seq) for t in map(tick, range(45, 80))]
    for _ in range(10):
        p.route(5)
    assert p.queue.spilled_items == 30
    p.settle()
    assert p.store[75:] == [(t.code, t.seq) for t in map(tick, range(80, 130))]
    assert p.delivery.unconfirmed() == 0 and p.queue.held_items == 0


class FullDisk(SpillFile):
    """A spill whose writes fail while ``full`` (as on a full disk); reads still work."""

    full = False
    tries = 0

    def append(self, first: int, end: int, payload: bytes, weight: int) -> None:
        self.tries += 1
        if self.full:
            raise StoreError(f"cannot write spill file {self.path}: disk full")
        super().append(first, end, payload, weight)


def with_full_disk(p: Pipeline, tmp: Path) -> FullDisk:
    spill = FullDisk(tmp / "stub.spill")
    p.queue._spill = spill  # the ledger makes its own SpillFile; this one can fail on demand
    return spill


def test_once_the_disk_is_freed_the_spill_takes_everything_again_lost_markers_too(
    tmp_path: Path,
) -> None:
    p = Pipeline(tmp_path, window=10, memory=10)
    disk = with_full_disk(p, tmp_path)
    p.route(5)
    p.route(5)  # memory is full
    disk.full = True
    p.route(5)
    p.route(5)  # kept in memory behind the spill
    p.route(5)  # beyond that too: dropped, a Lost marker behind the 10 kept
    assert p.queue.dropped_total == 5 and p.queue.unspilled_items == 10
    disk.full = False
    p.clock.advance(1)
    for _ in range(30):
        p.route(1)  # the disk takes writes again: all of it goes to the spill, in order
    assert p.queue.dropped_total == 5
    assert p.queue.unspilled_items == 0 and p.queue.spilled_total == 40
    p.settle()
    kept = [*range(20), *range(25, 55)]
    assert p.store == [(t.code, t.seq) for t in map(tick, kept)]
    assert p.shard.bus_gaps == 5 and p.delivery.unconfirmed() == 0 and p.queue.held_items == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("rrsdckft"), st.integers(1, 20)), max_size=80),
       st.integers(5, 30), st.integers(0, 30))  # fmt: skip
@example(steps=[("r", 5)] * 8, window=5, extra_memory=0)  # 100 ticks: 20 windows to settle
def test_a_disk_that_fills_and_frees_loses_only_what_is_counted_and_keeps_order(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]], window: int,
    extra_memory: int,
) -> None:  # fmt: skip
    tmp = tmp_path_factory.mktemp("spill")
    p = Pipeline(tmp, window, window + extra_memory)
    disk = with_full_disk(p, tmp)
    for action, n in steps:
        if p.step(action, n):
            continue
        if action == "t":
            p.clock.advance(n / 100)  # spill retries come due
        else:
            disk.full = not disk.full
    disk.full = False
    p.clock.advance(1)
    dropped = p.queue.dropped_total
    for _ in range(3):
        p.route(20)  # the disk takes writes again: nothing more is dropped, however much comes
    assert p.queue.dropped_total == dropped
    p.settle()
    routed = {(t.code, t.seq) for t in map(tick, range(p.next_tick))}
    assert set(p.store) <= routed
    assert len(routed - set(p.store)) == p.queue.dropped_total  # every tick lost is counted
    assert p.delivery.unconfirmed() == 0 and p.queue.held_items == 0


def test_a_full_disk_is_tried_again_now_and_then_not_at_every_message(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, window=50, memory=100)
    disk = with_full_disk(p, tmp_path)
    p.route(100)  # memory is full
    disk.full = True
    for _ in range(50):
        p.route(1)  # in the read loop: a failing write (and open) per message would slow it
    assert disk.tries == 1 and p.queue.unspilled_items == 50
    p.clock.advance(SPILL_RETRY_NS / 1e9)
    p.route(1)
    assert disk.tries == 2 and p.queue.unspilled_items == 51
    disk.full = False
    p.route(1)  # the disk has room, but the next try is not due yet: kept in memory, in order
    assert disk.tries == 2 and p.queue.unspilled_items == 52
    p.clock.advance(SPILL_RETRY_NS / 1e9)
    p.route(1)  # due: everything waiting goes to the spill, then the new message
    assert p.queue.unspilled_items == 0 and p.queue.spilled_items == 53
    p.settle()
    assert p.store == [(t.code, t.seq) for t in map(tick, range(153))]


def test_a_full_socket_leaves_messages_in_the_ledger_for_the_next_turn(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, window=100, memory=1000)
    p.send()  # the Resume that answers the shard's first feedback
    sent = p.bus.messages
    p.push.room = 1  # the shard is slow: its socket takes one message
    for _ in range(3):
        p.route(5)
        p.send()
    assert p.bus.messages == sent + 1 and p.queue.pending_items == 10
    p.push.room = None
    p.send()
    assert p.bus.messages == sent + 3 and p.queue.pending_items == 0
    p.settle()
    assert p.store == [(t.code, t.seq) for t in map(tick, range(15))]


def test_finish_sends_the_last_ticks_and_an_end_and_waits_for_the_store(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, window=10, memory=100)
    for _ in range(5):
        p.route(5)
    turns: list[int] = []

    def wait() -> None:  # the shard's turn while the receiver waits on the acks socket
        turns.append(len(p.channel))
        p.deliver()
        p.commit()

    assert p.bus.finish(wait, logging.getLogger("test"), clock=lambda: p.clock.now / 1e9)
    assert p.store == [(t.code, t.seq) for t in map(tick, range(25))]
    assert p.delivery.unconfirmed() == 0 and len(turns) >= 3  # a window at a time
    assert p.shard.ended  # the End came after the data


def test_finish_gives_up_after_the_wait_and_says_how_many_are_unconfirmed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pipeline(tmp_path, window=10, memory=100)
    p.route(5)
    clock = p.clock
    start = clock.now
    assert not p.bus.finish(lambda: clock.advance(1), logging.getLogger("test"),
                            clock=lambda: clock.now / 1e9)  # fmt: skip
    assert clock.now - start >= END_WAIT_S * 10**9
    assert "5 routed ticks and books were not confirmed" in caplog.text


def test_a_restarted_shard_is_told_where_the_resend_of_what_it_had_ends(tmp_path: Path) -> None:
    """The shard relays again only what its last incarnation was sent (state.py): the Resume
    answering its first Rewind says up to where that is."""
    p = Pipeline(tmp_path, window=100, memory=1000)
    p.route(5)
    p.send()
    p.deliver()
    p.commit()  # bus seqs 1-5 acked
    p.route(5)
    p.send()  # 6-10 sent, then the shard dies
    p.restart()
    p.send()
    resumes = [m for m in map(wire.bus_decoder.decode, p.channel) if type(m) is wire.Resume]
    assert [(r.next_seq, r.until) for r in resumes] == [(6, 11)]
