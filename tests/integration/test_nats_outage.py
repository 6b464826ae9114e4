"""NATS going away under a run, on a private server of the test's: paused (SIGSTOP: connections
open, nothing answers) mid-run, the run goes on, status shows the NATS lane failing with a
backlog, and once it is back every trade is in the stream once; a shard killed meanwhile loses
and duplicates nothing; NATS absent at start stops the run with a clear message."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from feedmux.ops.status import Status, build_status
from feedmux.stats import read_stats
from tests.conftest import scaled, wait_for
from tests.integration.helpers import (
    end_feed,
    feedmux,
    receiver_in,
    sent_ticks,
    shards_in,
    start_sampled_run,
    stop,
)
from tests.integration.test_nats_cluster import all_confirmed, assert_every_trade_once, in_stream
from tests.nats_servers import Node, Target, free_ports, fresh_names, private_server

pytestmark = pytest.mark.integration

RATE = 2000
PAUSE_TICKS = 12 * RATE  # the server stays paused while about 12 s of feed come in


@pytest.fixture
def solo(tmp_path: Path) -> Iterator[Node]:
    node = private_server(tmp_path)
    try:
        yield node
    finally:
        node.stop()


def status_of(run_dir: Path) -> Status:
    return build_status(None, read_stats(run_dir / "stats"), 2)


def nats_failing(run_dir: Path) -> bool:
    """Status shows the NATS lane behind (a backlog) and failing (its writes, per shard)."""
    status = status_of(run_dir)
    return (status.nats is not None and status.nats.backlog > 0 and status.nats.failures > 0
            and any(": nats failing: " in line for line in status.failing))  # fmt: skip


def start(tmp_path: Path, solo: Node) -> tuple[Target, tuple[Any, ...]]:
    stream, prefix = fresh_names()
    target = Target(solo.url, stream, prefix)
    return target, start_sampled_run(tmp_path, RATE, 2, *target.flags())


@pytest.mark.slow
def test_a_paused_server_holds_back_only_the_nats_lane_and_nothing_is_lost(
    tmp_path: Path, solo: Node
) -> None:
    target, (replay, report, run, run_dir, data_dir, _) = start(tmp_path, solo)
    try:
        wait_for(lambda: in_stream(run_dir) > 2000, 60, "trades in JetStream")
        solo.pause()
        at_pause = receiver_in(run_dir).ticks
        wait_for(lambda: nats_failing(run_dir), 30, "status to show the NATS lane failing")
        shown = status_of(run_dir)
        assert shown.nats is not None and shown.nats.lag_s > 0
        wait_for(lambda: receiver_in(run_dir).ticks > at_pause + PAUSE_TICKS, 60,
                 "the run to go on receiving")  # fmt: skip
        assert status_of(run_dir).stored > at_pause  # the stores too
        solo.resume()
        end_feed(replay, report)
        sent = sent_ticks(tmp_path / "sent.log")
        wait_for(lambda: all_confirmed(run_dir, len(sent)), 90,
                 "every trade acknowledged: stored, and in JetStream")  # fmt: skip
        assert not status_of(run_dir).failing
    finally:
        solo.resume()
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    assert ": nats failing: JetStream acked " in output  # the progress line said so
    assert_every_trade_once(solo.url, target.prefix, sent, data_dir)
    log = (run_dir / "feedmux.log").read_text()
    for shard in (0, 1):  # each shard said it once: not per failed batch
        assert log.count(f"shard-{shard} WARNING nats writes failing") == 1, log[-5000:]


@pytest.mark.slow
def test_a_shard_killed_while_nats_is_paused_loses_and_duplicates_nothing(
    tmp_path: Path, solo: Node
) -> None:
    """The killed shard held trades stored but not in JetStream (not acknowledged, so the
    receiver sends them again), and maybe some the paused server read but had not acked."""
    target, (replay, report, run, run_dir, data_dir, _) = start(tmp_path, solo)
    try:
        wait_for(lambda: in_stream(run_dir) > 2000, 60, "trades in JetStream")
        solo.pause()
        wait_for(lambda: nats_failing(run_dir), 30, "status to show the NATS lane failing")
        victim = shards_in(run_dir)[1]
        os.kill(victim.pid, signal.SIGKILL)

        def restarted() -> bool:
            now = shards_in(run_dir)[1]
            return now.pid != victim.pid and now.restarts == 1

        wait_for(restarted, 30, "the supervisor to restart shard 1")  # NATS still paused
        solo.resume()
        end_feed(replay, report)
        sent = sent_ticks(tmp_path / "sent.log")
        wait_for(lambda: all_confirmed(run_dir, len(sent)), 90,
                 "every trade acknowledged: stored, and in JetStream")  # fmt: skip
    finally:
        solo.resume()
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    assert "shard-1 exited unexpectedly (code -9)" in output and "shard-1 restarted in" in output
    assert_every_trade_once(solo.url, target.prefix, sent, data_dir)


def test_nats_absent_at_start_stops_the_run_with_a_clear_message(tmp_path: Path) -> None:
    (port,) = free_ports(1)  # nothing listens there
    url = f"nats://feed:secret@127.0.0.1:{port}"
    began = time.monotonic()
    run = feedmux("run", "--replay", "--data-dir", str(tmp_path / "d"), "--run-dir",
                  str(tmp_path / "r"), "--stop-after", "30", "--nats", url)  # fmt: skip
    code, output = stop(run) if run.wait(scaled(30)) is not None else (None, "")
    assert code == 2, output
    assert time.monotonic() - began < scaled(10)  # a refusal is final at start: no waiting
    assert (f"cannot reach NATS at nats://feed:***@127.0.0.1:{port}: connection refused (is the "
            "server up, and is that its port?)") in output  # fmt: skip
    assert "secret" not in output and "stopping" not in output  # nothing had started
