"""The walking skeleton, end to end: replay server → feedmux run --shards 8 → SQLite/PUB."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from feedmux import SnapshotClient, Subscriber, read_ticks
from feedmux.model import Tick
from feedmux.routing import shard_of
from feedmux.simulator.market import a_share_universe
from tests.conftest import scaled
from tests.integration.helpers import TOKEN, feedmux, replay_report, sent_ticks, start_replay, stop

pytestmark = pytest.mark.integration
SHARDS = 8


def test_full_market_through_8_shards_loses_nothing(tmp_path: Path) -> None:
    universe = a_share_universe()
    symbols = tmp_path / "symbols.txt"
    symbols.write_text("\n".join(universe) + "\n")
    replay, report, url = start_replay(
        tmp_path, "--rate", "3000", "--duration", "6", "--burst", "--warmup", str(scaled(5))
    )
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    subscriber = Subscriber(run_dir=run_dir, shards=SHARDS)  # before the pipeline exists
    run = feedmux("run", "--url", url, "--symbols-file", str(symbols), "--shards", str(SHARDS),
                  "--data-dir", str(data_dir), "--run-dir", str(run_dir),
                  "--log-level", "INFO")  # fmt: skip
    try:
        assert subscriber.wait_ready(scaled(30)), "not every shard's heartbeat reached us"
        assert replay_report(report).ticks_sent == 0, "the feed began before we could listen"
        seen: list[Tick] = []
        deadline_reached = False
        deadline = time.monotonic() + scaled(60)
        while True:
            status = replay_report(report)
            if status.feed == "done" and len(seen) >= status.ticks_sent:
                break
            if time.monotonic() > deadline:
                deadline_reached = True
                break
            tick = subscriber.recv(timeout=0.5)
            if tick is not None:
                seen.append(tick)
        assert not deadline_reached, f"subscriber saw {len(seen)} of {status.ticks_sent}"
        # Every code subscribed exactly once across the connections, each under the cap.
        assert status.subscribed == sorted(universe)
        assert sum(status.subscriptions.values()) == len(universe)
        assert all(n <= 3000 for n in status.subscriptions.values())
        sent = sent_ticks(tmp_path / "sent.log")
        assert len(sent) == status.ticks_sent > len(universe)  # the burst plus the stream
        assert {t.code for t in sent} == set(universe)  # both connections delivered

        # A Subscriber started before the feed saw every tick, once.
        key = lambda t: (t.code, t.seq)  # noqa: E731
        assert Counter(map(key, seen)) == Counter(map(key, sent))
        assert subscriber.gaps == 0

        # Each shard's snapshot is the last tick of each of its codes.
        last: dict[str, Tick] = {}
        for tick in sent:
            last[tick.code] = tick
        for reply in SnapshotClient(run_dir).replies():
            assert {t.code for t in reply.ticks} == {
                c for c in last if shard_of(c, SHARDS) == reply.shard
            }
            for tick in reply.ticks:
                assert (tick.seq, tick.price) == (last[tick.code].seq, last[tick.code].price)
    finally:
        subscriber.close()
        code, output = stop(run)
        _, replay_output = stop(replay)
    assert code == 0, output
    assert "stopped cleanly" in output
    assert TOKEN not in output and TOKEN not in replay_output

    # Every tick the server sent is in the store exactly once, with its values.
    stored = read_ticks(data_dir)
    assert len(stored) == len(sent)
    by_key = {(t.code, t.seq): t for t in sent}
    assert set(zip(stored["code"], stored["seq"], strict=True)) == set(by_key)
    for row in stored.sample(500, random_state=1).itertuples():
        tick = by_key[(row.code, row.seq)]
        assert (row.price, row.volume, row.turnover, row.direction) == (
            tick.price, tick.volume, tick.turnover, tick.direction)  # fmt: skip
        assert row.time.value == tick.time_ns
        assert row.recv_time.value >= tick.time_ns - 1_000_000_000  # received after it happened

    # The server logged no protocol violation.
    assert replay_report(report).violations == []
    assert "VIOLATION" not in replay_output
