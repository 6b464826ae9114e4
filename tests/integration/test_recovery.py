"""Crashes and stops under load: a killed shard, SIGTERM mid-feed. Nothing received is lost."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from feedmux import GapError, SnapshotClient, Subscriber, read_ticks
from feedmux.model import Tick
from feedmux.simulator.market import a_share_universe
from feedmux.stats import RunStats, read_stats
from tests.conftest import wait_for
from tests.integration.helpers import (
    end_feed,
    feedmux,
    receiver_in,
    replay_report,
    sent_ticks,
    start_replay,
    start_sampled_run,
    stop,
    stop_at_full_load,
)

pytestmark = pytest.mark.integration


def _stats(run_dir: Path) -> RunStats:
    return read_stats(run_dir / "stats")


def _stored(run_dir: Path) -> int:
    return sum(s.stored for s in _stats(run_dir).shards.values())


def _start(tmp_path: Path, rate: int, shards: int, *run_flags: str) -> tuple[Any, ...]:
    """A replay server feeding every 6th code of the market at ``rate``, and a run on it:
    (replay, report path, run, run dir, data dir, codes)."""
    return start_sampled_run(tmp_path, rate, shards, *run_flags, every=6)


def _assert_stored_once(data_dir: Path, sent: list[Tick]) -> None:
    stored = read_ticks(data_dir)
    assert len(stored) == len(sent)
    assert set(zip(stored["code"], stored["seq"], strict=True)) == {(t.code, t.seq) for t in sent}


def _latest(ticks: list[Tick]) -> dict[str, Tick]:
    latest: dict[str, Tick] = {}
    for tick in ticks:
        if tick.code not in latest or tick.seq > latest[tick.code].seq:
            latest[tick.code] = tick
    return latest


def test_a_killed_shard_is_restarted_loses_nothing_and_rebuilds_its_snapshot(
    tmp_path: Path,
) -> None:
    replay, report, run, run_dir, data_dir, _ = _start(tmp_path, 4000, 4)  # 905 codes
    try:
        wait_for(lambda: _stored(run_dir) > 10_000, 60, "ticks to be stored")
        victim = _stats(run_dir).shards[1]
        os.kill(victim.pid, signal.SIGKILL)  # mid-batch: it held ticks not yet stored

        def restarted() -> bool:
            now = _stats(run_dir).shards.get(1)
            return now is not None and now.pid != victim.pid and now.restarts == 1

        wait_for(restarted, 30, "the supervisor to restart shard 1")
        sent_at_restart = replay_report(report).ticks_sent
        wait_for(lambda: replay_report(report).ticks_sent > sent_at_restart + 8000, 30,
                 "more feed after the restart")  # fmt: skip
        end_feed(replay, report)
        sent = sent_ticks(tmp_path / "sent.log")
        wait_for(lambda: receiver_in(run_dir).ticks == len(sent), 15,
                 "the receiver to read every frame")  # fmt: skip
        wait_for(lambda: receiver_in(run_dir).unconfirmed == 0, 15,
                 "every shard to confirm it stored what it was sent")  # fmt: skip
        # Every shard's snapshot, the restarted one too, holds each code's last tick.
        snapshot = SnapshotClient(run_dir).get()
        assert {c: (q.tick.seq, q.tick.price, q.tick.volume) for c, q in snapshot.items()} == {
            c: (t.seq, t.price, t.volume) for c, t in _latest(sent).items()
        }
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    assert "shard-1 exited unexpectedly (code -9)" in output and "shard-1 restarted in" in output
    assert "stopped cleanly" in output
    _assert_stored_once(data_dir, sent)  # the resend's duplicates were skipped
    assert receiver_in(run_dir).bus[1].rewinds >= 1  # the new shard asked again


def test_sigterm_at_full_load_stores_every_received_tick(tmp_path: Path) -> None:
    replay, _, url = start_replay(tmp_path, "--rate", "30000", "--burst")
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    run = feedmux("run", "--url", url, "--shards", "2", "--data-dir", str(data_dir),
                  "--run-dir", str(run_dir), "--codes", ",".join(a_share_universe()))  # fmt: skip
    stored = stop_at_full_load(run, replay, run_dir, data_dir, 50_000)
    assert stored <= {(t.code, t.seq) for t in sent_ticks(tmp_path / "sent.log")}


@pytest.mark.slow
def test_a_consumer_that_stops_reading_sees_a_gap_and_catches_up_from_a_snapshot(
    tmp_path: Path,
) -> None:
    replay, report, run, run_dir, _, codes = _start(tmp_path, 3000, 2, "--pub-queue", "2000")
    slow = Subscriber(run_dir=run_dir, shards=2, queue=2000)
    fast = Subscriber(run_dir=run_dir, shards=2, on_gap="count")
    stop_reading = threading.Event()

    def read_fast() -> None:
        while not stop_reading.is_set():
            fast.recv(timeout=0.1)

    reader = threading.Thread(target=read_fast)
    try:
        assert slow.wait_ready(60) and fast.wait_ready(60)
        reader.start()
        assert slow.recv(timeout=10) is not None
        # The slow consumer now reads nothing for 10 s, while we watch the pipeline.
        before = (replay_report(report).ticks_sent, receiver_in(run_dir).ticks)
        lag = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lag = max(lag, receiver_in(run_dir).unconfirmed)
            time.sleep(0.25)
        after = (replay_report(report).ticks_sent, receiver_in(run_dir).ticks)
        sent, received = after[0] - before[0], after[1] - before[1]
        assert sent > 20_000 and received > 0.9 * sent  # the pipeline kept its pace
        assert lag < 5000  # ... and stored as it went: not held up by the consumer
        with pytest.raises(GapError) as gap:  # the drops for this consumer alone
            for _ in range(100_000):
                slow.recv(timeout=10)
        assert gap.value.missed is not None and gap.value.missed > 0
        caught_up = slow.snapshot()
        assert len(caught_up.ticks) == len(codes)
        for _ in range(3000):  # from the snapshot on, the stream is whole again
            item = slow.recv(timeout=10)
            assert item is not None and item.seq > caught_up.ticks[item.code].seq
        assert all(g.missed is not None for g in slow.gap_events)  # drops, not a restart
    finally:
        stop_reading.set()
        if reader.is_alive():
            reader.join()
        slow.close()
        code, output = stop(run)
        stop(replay)
    assert fast.gaps == 0 and fast.gap_events == [] and fast.received > 30_000
    fast.close()
    assert code == 0, output


@pytest.mark.slow
def test_a_stalled_shard_spills_to_disk_and_catches_up_while_the_feed_reads_on(
    tmp_path: Path,
) -> None:
    replay, report, run, run_dir, data_dir, _ = _start(tmp_path, 3000, 2, "--bus-window", "1000",
                                                       "--bus-memory", "2000")  # fmt: skip
    try:
        wait_for(lambda: _stored(run_dir) > 5000, 60, "ticks to be stored")
        stalled = _stats(run_dir).shards[0].pid
        os.kill(stalled, signal.SIGSTOP)  # a shard that takes nothing: a hung disk, say
        try:
            before = receiver_in(run_dir).ticks
            wait_for(lambda: receiver_in(run_dir).bus[0].spilled > 6000, 30,
                     "shard 0's queue to spill to disk")  # fmt: skip
            assert receiver_in(run_dir).ticks > before + 6000  # reading went on
        finally:
            os.kill(stalled, signal.SIGCONT)
        wait_for(lambda: receiver_in(run_dir).bus[0].held < 1000, 60,
                 "shard 0 to catch up from the spill file")  # fmt: skip
        end_feed(replay, report)
        sent = sent_ticks(tmp_path / "sent.log")
        wait_for(lambda: receiver_in(run_dir).ticks == len(sent), 15,
                 "the receiver to read every frame")  # fmt: skip
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    assert "spilled" in output  # the progress line said so while it lasted
    _assert_stored_once(data_dir, sent)
    assert receiver_in(run_dir).bus[0].spilled_total > 6000
    assert not (data_dir / "spill" / "shard-0.spill").exists()  # removed at a clean stop
