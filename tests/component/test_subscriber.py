"""Subscriber gaps and snapshot-then-stream, against a scripted publisher and a real shard."""

from __future__ import annotations

from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from feedmux import GapError, Subscriber, families, wire
from feedmux.model import Tick
from feedmux.ops.config import RunPaths, Settings
from feedmux.transports import zmq as zt
from tests.component.test_shard_worker import running_shard, ticks
from tests.conftest import scaled, wait_for

__all__ = ["running_shard"]  # the fixture, shared


class Publisher:
    """Shard 0's PUB socket, scripted: any pub_seq, heartbeats on demand."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.ctx = zt.context()
        self.sock = zt.pub(self.ctx, RunPaths(run_dir).shard_pub(0))

    def trade(self, pub_seq: int) -> None:
        tick = Tick("600000.SH", pub_seq, 0, 0, 1.0, 1.0, 1.0, 0)
        self.sock.send_multipart([families.TRADES.topic(tick.code),
                                  wire.encode(wire.Published(0, pub_seq, tick))])  # fmt: skip

    def heartbeat(self, last_pub_seq: int) -> None:
        self.sock.send_multipart([families.HEARTBEAT_TOPIC,
                                  wire.encode(wire.Heartbeat(0, last_pub_seq))])  # fmt: skip


@pytest.fixture
def publisher(tmp_path: Path) -> Iterator[tuple[Publisher, Subscriber]]:
    pub = Publisher(tmp_path / "run")
    sub = Subscriber(run_dir=tmp_path / "run", shards=1)

    def connected() -> bool:
        pub.heartbeat(0)
        return bool(sub.wait_ready(0.05))

    wait_for(connected, 10, "the subscription to reach the publisher")
    try:
        yield pub, sub
    finally:
        sub.close()
        pub.ctx.destroy(linger=0)


def seqs(sub: Subscriber, n: int) -> list[int]:
    out = []
    for _ in range(n):
        tick = sub.recv(timeout=scaled(5))
        assert tick is not None
        out.append(tick.seq)
    return out


def test_a_hole_raises_once_and_keeps_the_message_that_showed_it(
    publisher: tuple[Publisher, Subscriber],
) -> None:
    pub, sub = publisher
    for seq in (1, 2, 5, 6):
        pub.trade(seq)
    assert seqs(sub, 2) == [1, 2]
    with pytest.raises(GapError) as gap:
        sub.recv(timeout=scaled(5))
    assert (gap.value.shard, gap.value.missed) == (0, 2)
    assert seqs(sub, 2) == [5, 6] and sub.gaps == 2


def test_a_restart_and_a_hole_at_the_end_of_a_burst_are_reported(
    publisher: tuple[Publisher, Subscriber],
) -> None:
    pub, sub = publisher
    sub.on_gap = "count"
    for seq in (1, 2, 3, 1):  # the shard restarted: its numbering began again
        pub.trade(seq)
    assert seqs(sub, 4) == [1, 2, 3, 1]
    pub.heartbeat(4)  # three more were published after 1, none arrived
    assert sub.recv(timeout=0.5) is None
    assert [e.missed for e in sub.gap_events] == [None, 3] and sub.gaps == 3


def test_snapshot_then_stream_has_no_gap_and_no_duplicate(
    tmp_path: Path, running_shard: tuple[Settings, BaseProcess]
) -> None:
    settings, _ = running_shard
    ctx = zt.context()
    bus = zt.push(ctx, settings.paths.shard_in(0))
    try:
        with Subscriber(run_dir=settings.run_dir, shards=1) as sub:
            assert sub.wait_ready(scaled(10))
            bus.send(wire.encode(wire.Resume(1, 1)))
            bus.send(wire.encode(wire.Burst(1, ticks(20))))  # published, not read yet
            wait_for(lambda: sub._sock.poll(0) != 0, 10, "the shard to publish")
            snap = sub.snapshot()
            assert snap.ticks == {t.code: t for t in ticks(20)}  # the last of each of 9 codes
            bus.send(wire.encode(wire.Burst(21, ticks(5, start=21))))
            assert [sub.recv(timeout=scaled(5)) for _ in range(5)] == ticks(5, start=21)
            assert sub.recv(timeout=0.3) is None and sub.gap_events == []
    finally:
        bus.close(linger=0)
        ctx.term()
