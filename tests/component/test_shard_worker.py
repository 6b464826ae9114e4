"""One shard worker process against real ZeroMQ sockets."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest
import zmq
from feedmux.workers import shard

from feedmux import SnapshotClient, Subscriber, read_ticks, wire
from feedmux.model import Tick
from feedmux.ops.config import Settings
from feedmux.stats import read_stats
from feedmux.transports import zmq as zt
from tests.conftest import scaled, wait_for
from tests.services import redis_prefix


def ticks(n: int, start: int = 1) -> list[Tick]:
    return [Tick(f"60{i % 9:04d}.SH", start + i, 10**18 + i, 10**18 + i, 1.0 + i, 100.0, 100.0, 1)
            for i in range(n)]  # fmt: skip


def shard_settings(tmp_path: Path, **options: Any) -> Settings:
    settings = Settings(url="ws://127.0.0.1:1/x", token="t", codes=["600000.SH"], shards=1,
                        data_dir=str(tmp_path), run_dir=str(tmp_path / "run"),
                        **{"bar_sessions": "none", "bar_label": "start", **options})  # fmt: skip
    settings.paths.prepare()
    return settings


@pytest.fixture
def running_shard(tmp_path: Path) -> Iterator[tuple[Settings, BaseProcess]]:
    with started(shard_settings(tmp_path)) as running:
        yield running


@contextlib.contextmanager
def started(settings: Settings) -> Iterator[tuple[Settings, BaseProcess]]:
    """Shard 0 of 1 in its own process, ready; killed afterwards if a test left it running."""
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe(duplex=False)
    worker = spawn.Process(target=shard.main, args=(settings, 0, theirs))
    worker.start()
    try:
        assert ours.poll(scaled(30)) and ours.recv() == 0
        yield settings, worker
    finally:
        if worker.is_alive():
            worker.kill()
            worker.join()


def test_shard_stores_on_timer_publishes_snapshots_and_flushes_on_stop(
    tmp_path: Path, running_shard: tuple[Settings, BaseProcess]
) -> None:
    settings, worker = running_shard
    subscriber = Subscriber(run_dir=settings.run_dir, shards=1)
    ctx = zt.context()
    bus = zt.push(ctx, settings.paths.shard_in(0))
    try:
        assert subscriber.wait_ready(scaled(10))
        bus.send(wire.encode(wire.Resume(1, 1)))  # what a receiver says first
        bus.send(wire.encode(wire.Burst(1, ticks(5))))
        # 5 rows never fill a 100-row batch: only the 200 ms timer can store them.
        wait_for(lambda: len(read_ticks(tmp_path)) == 5, 10, "the timer flush")
        got = [subscriber.recv(timeout=scaled(5)) for _ in range(5)]
        assert got == ticks(5)
        snapshot = SnapshotClient(settings.run_dir, shards=1).get()
        assert {c: (q.tick, q.shard, q.pub_seq) for c, q in snapshot.items()} == {
            t.code: (t, 0, i) for i, t in enumerate(ticks(5), start=1)
        }
        assert (
            SnapshotClient(settings.run_dir, shards=1).get(["600001"])["600001.SH"].tick
            == (ticks(5)[1])
        )
        with Subscriber(codes=["sh600003"], run_dir=settings.run_dir, shards=1) as only:
            assert only.wait_ready(scaled(10))
            bus.send(wire.encode(wire.Burst(6, ticks(9, start=6))))
            got_one = only.recv(timeout=scaled(5))
            assert got_one is not None and got_one.code == "600003.SH"
            assert only.recv(timeout=0.3) is None  # the other eight codes were filtered out
        assert [subscriber.recv(timeout=scaled(5)) for _ in range(9)] == ticks(9, start=6)

        bus.send(wire.encode(wire.Burst(15, ticks(250, start=15))))
        bus.send(wire.encode(wire.End(265)))
        worker.terminate()  # SIGTERM: the worker stores what it holds, then exits 0
        worker.join(scaled(30))
        assert worker.exitcode == 0
        stored = read_ticks(tmp_path)
        assert sorted(stored["seq"]) == list(range(1, 265))
        # Its data clock: the newest tick time (in 2001) plus the seconds since, not the wall's
        data_ns = read_stats(settings.paths.stats_dir).shards[0].data_ns
        newest = max(t.time_ns for t in ticks(250, start=15))
        assert newest <= data_ns < newest + scaled(60) * 10**9
    finally:
        subscriber.close()
        bus.close(linger=0)
        ctx.term()


def test_garbage_on_the_bus_does_not_kill_the_shard(
    tmp_path: Path, running_shard: tuple[Settings, BaseProcess]
) -> None:
    settings, worker = running_shard
    ctx = zmq.Context()
    bus = zt.push(ctx, settings.paths.shard_in(0))
    try:
        bus.send(b"\x00garbage")
        bus.send(wire.encode(wire.Resume(1, 1)))
        bus.send(wire.encode(wire.Burst(1, ticks(3))))
        wait_for(lambda: len(read_ticks(tmp_path)) == 3, 10, "the good batch to be stored")
        assert worker.is_alive()
    finally:
        bus.close(linger=0)
        ctx.term()
        worker.terminate()
        worker.join(scaled(30))
    assert worker.exitcode == 0


def test_a_bars_subscriber_gets_each_closed_minute_bar(
    running_shard: tuple[Settings, BaseProcess],
) -> None:
    """A tick in the next minute closes a code's bar: it arrives as a Bar, equal to the OHLCV of
    that minute's ticks, and trades still arrive beside it."""
    from feedmux.model import Bar  # noqa: PLC0415
    from feedmux.shard.bars import MINUTE_NS  # noqa: PLC0415

    settings, _worker = running_shard
    minute = (10**18 // MINUTE_NS + 1) * MINUTE_NS
    prices = [10.0, 10.5, 9.8, 10.2]
    sent = [Tick("600000.SH", i + 1, minute + i * 10**9, minute + i * 10**9, p, 100.0 * (i + 1),
                 p * 100.0, 1) for i, p in enumerate(prices)]  # fmt: skip
    sent.append(Tick("600000.SH", 9, minute + MINUTE_NS + 10**9, minute + MINUTE_NS, 11.0, 50.0,
                     550.0, 1))  # fmt: skip
    ctx = zt.context()
    bus = zt.push(ctx, settings.paths.shard_in(0))
    with Subscriber(run_dir=settings.run_dir, shards=1, bars=True) as subscriber:
        try:
            assert subscriber.wait_ready(scaled(10))
            bus.send(wire.encode(wire.Resume(1, 1)))
            bus.send(wire.encode(wire.Burst(1, sent)))
            got = [subscriber.recv(timeout=scaled(5)) for _ in range(len(sent) + 1)]
        finally:
            ctx.destroy(linger=0)
    bars = [item for item in got if isinstance(item, Bar)]
    assert [t for t in got if isinstance(t, Tick)] == sent
    assert len(bars) == 1
    bar = bars[0]
    assert (bar.code, bar.minute_ns, bar.open, bar.high, bar.low, bar.close, bar.volume,
            bar.count) == ("600000.SH", minute, 10.0, 10.5, 9.8, 10.2, 1000.0, 4)  # fmt: skip


def test_a_stop_after_a_quiet_spell_still_waits_for_the_receivers_last_ticks_and_end(
    tmp_path: Path, running_shard: tuple[Settings, BaseProcess]
) -> None:
    """The quiet timer counts from the stop request, not from the last bus message: after a
    feed that was quiet for longer than the drain bound, the receiver's last ticks and its End,
    handed over shortly after the stop, are still stored before the shard exits."""
    import time  # noqa: PLC0415

    settings, worker = running_shard
    ctx = zt.context()
    bus = zt.push(ctx, settings.paths.shard_in(0))
    try:
        bus.send(wire.encode(wire.Resume(1, 1)))
        bus.send(wire.encode(wire.Burst(1, ticks(3))))
        wait_for(lambda: len(read_ticks(tmp_path)) == 3, 10, "the first ticks stored")
        time.sleep(shard.DRAIN_QUIET_NS / 1e9 + 0.2)  # the point: a feed quieter than the bound
        worker.terminate()
        time.sleep(shard.DRAIN_QUIET_NS / 1e9 / 2)  # the receiver's last turn, within the bound
        for message in (wire.Burst(4, ticks(2, start=4)), wire.End(6)):
            try:  # no waiting: a shard already gone has no peer socket to take them
                bus.send(wire.encode(message), zmq.NOBLOCK)
            except zmq.Again:
                break
        worker.join(scaled(30))
    finally:
        bus.close(linger=0)
        ctx.term()
    assert worker.exitcode == 0
    assert sorted(read_ticks(tmp_path)["seq"]) == [1, 2, 3, 4, 5]


@pytest.fixture
def redis_target() -> Iterator[tuple[str, str]]:
    yield from redis_prefix()


def test_with_redis_trades_books_and_every_bar_go_to_redis_and_acks_wait_for_them_only(
    tmp_path: Path, redis_target: tuple[str, str]
) -> None:
    """Redis gets the families that are relayed (trades, books, bars: the bar a tick closed
    and the one closed at shutdown), not the moves; the stats count them; and the ack covers
    a re-sent message (stored, not published again), not held back waiting for its copy."""
    from feedmux import StreamReader, families  # noqa: PLC0415
    from feedmux.model import Depth  # noqa: PLC0415
    from feedmux.shard.bars import MINUTE_NS  # noqa: PLC0415
    from feedmux.stats import read_stats  # noqa: PLC0415

    url, prefix = redis_target
    settings = shard_settings(tmp_path, redis_url=url, redis_prefix=prefix,
                              min_move={"trades": 0.01})  # fmt: skip
    minute = (10**18 // MINUTE_NS + 1) * MINUTE_NS
    sent = [Tick("600000.SH", i + 1, minute + i * 25 * 10**9, minute, 10.0 + i, 100.0, 1000.0, 1)
            for i in range(4)]  # fmt: skip  # seconds 0, 25, 50, 75: the 4th closes a bar
    book = Depth("600000.SH", 1, minute, minute, [(9.9, 100.0)], [(10.1, 200.0)])
    ctx = zt.context()
    acks = zt.pull(ctx, settings.paths.acks)
    bus = zt.push(ctx, settings.paths.shard_in(0))
    reported = []
    try:
        with started(settings) as (_, worker):
            bus.send(wire.encode(wire.Resume(1, 1)))
            bus.send(wire.encode(wire.Burst(1, sent, [book])))
            bus.send(wire.encode(wire.Burst(6, sent)))  # a resubscription re-sends the ticks
            bus.send(wire.encode(wire.End(10)))
            wait_for(lambda: len(read_ticks(tmp_path)) == 4, 10, "the ticks stored")
            worker.terminate()
            worker.join(scaled(30))
            assert worker.exitcode == 0
        while acks.poll(scaled(500)):  # the last ack was sent before the worker exited
            reported.append(wire.feedback_decoder.decode(acks.recv()))
    finally:
        ctx.destroy(linger=0)
    with StreamReader(url, 1, prefix=prefix) as reader:
        entries = reader.read(block_ms=100)
    in_redis = [families.of_topic(m.topic).name for m in entries]  # type: ignore[union-attr]
    stats = read_stats(settings.paths.stats_dir).shards[0]
    last_ack = [r.next_seq for r in reported if isinstance(r, wire.Ack)][-1:]
    assert (in_redis.count("trades"), in_redis.count("books"), in_redis.count("bars"),
            len(in_redis), stats.redis.published if stats.redis else None, last_ack) == (
        4, 1, 2, 7, stats.published + stats.bars.published, [10])  # fmt: skip
