"""The pipeline under the replay server's scheduled faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedmux import read_ticks
from feedmux.simulator.market import a_share_universe
from feedmux.stats.receiver import ConnectionStats
from feedmux.stats.replay import ReplayStats
from tests.conftest import wait_for
from tests.integration.helpers import (
    end_feed,
    feedmux,
    receiver_in,
    replay_report,
    sent_ticks,
    shards_in,
    start_replay,
    stop,
)
from tests.stats_samples import connection_stats

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_stalled_feed_trips_the_watchdog_which_reconnects_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    codes = a_share_universe()[::25]
    symbols = tmp_path / "symbols.txt"
    symbols.write_text(" ".join(codes))
    # 2 s into the feed the server goes silent for 12 s: no data, no heartbeat replies. A 5 s
    # watchdog trips inside it (the default 30 s works the same, in a test twice as long);
    # the server still counts our heartbeats.
    replay, report, url = start_replay(tmp_path, "--rate", "500", "--symbols-file", str(symbols),
                                       "--stall-after", "2", "--stall-for", "12")  # fmt: skip
    run_dir = tmp_path / "run"
    run = feedmux("run", "--url", url, "--symbols-file", str(symbols), "--shards", "2",
                  "--data-dir", str(tmp_path / "data"), "--run-dir", str(run_dir),
                  "--watchdog", "5")  # fmt: skip

    def connection() -> ConnectionStats:
        return (receiver_in(run_dir).connections or [connection_stats(state="down")])[0]

    try:
        wait_for(lambda: connection().watchdog_trips >= 1, 60, "the watchdog to trip")
        sent_before = replay_report(report).ticks_sent
        wait_for(lambda: replay_report(report).ticks_sent > sent_before + 1000, 60,
                 "the feed to flow again after the stall")  # fmt: skip
        assert connection().state == "up"
        end_feed(replay, report)
        sent = replay_report(report).frames_sent
        wait_for(lambda: receiver_in(run_dir).ticks == sent, 15,
                 "the receiver to read every frame")  # fmt: skip
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    assert "reconnects" in output and "watchdog" in output  # the status line shows it
    ticks = sent_ticks(tmp_path / "sent.log")
    stored = read_ticks(tmp_path / "data")
    assert len(stored) == len(ticks)
    assert set(zip(stored["code"], stored["seq"], strict=True)) == {(t.code, t.seq) for t in ticks}
    assert replay_report(report).violations == []


def _run_with_faults(
    tmp_path: Path, *faults: str, ticks: int = 9000
) -> tuple[Path, ReplayStats, str]:
    """Feed 202 codes through a run while the server applies ``faults``, ``ticks`` in all at
    800/s; stop once the receiver has read everything. Returns the run dir, the final report
    and the run's output."""
    codes = sorted({*a_share_universe()[::27], "600519.SH"})  # the code of the garbage pushes
    symbols = tmp_path / "symbols.txt"
    symbols.write_text(" ".join(codes))
    replay, report, url = start_replay(tmp_path, "--rate", "800", "--symbols-file", str(symbols),
                                       *faults)  # fmt: skip
    run_dir = tmp_path / "run"
    run = feedmux("run", "--url", url, "--symbols-file", str(symbols), "--shards", "2",
                  "--data-dir", str(tmp_path / "data"), "--run-dir", str(run_dir))  # fmt: skip
    try:
        wait_for(lambda: replay_report(report).ticks_sent > ticks, 60, f"{ticks} ticks of feed")
        end_feed(replay, report)
        sent = replay_report(report).frames_sent

        def read_all() -> bool:
            receiver = receiver_in(run_dir)
            bad = sum(sum(c.bad_messages.values()) for c in receiver.connections)
            return receiver.ticks + bad == sent

        wait_for(read_all, 15, "the receiver to read every frame")
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    return run_dir, replay_report(report), output


def _assert_stored_once(tmp_path: Path) -> None:
    ticks = sent_ticks(tmp_path / "sent.log")
    stored = read_ticks(tmp_path / "data")
    assert len(stored) == len(ticks)
    assert set(zip(stored["code"], stored["seq"], strict=True)) == {(t.code, t.seq) for t in ticks}


@pytest.mark.slow
def test_abrupt_drop_and_clean_close_reconnect_within_the_rules_and_lose_nothing(
    tmp_path: Path,
) -> None:
    run_dir, report, output = _run_with_faults(tmp_path, "--drop-after", "3",
                                               "--close-after", "8")  # fmt: skip
    assert report.connections_opened == 3  # the first, after the drop, after the close
    assert report.violations == []  # reconnects kept AllTick's spacing
    assert receiver_in(run_dir).connections[0].reconnects == 2
    assert "reconnects 2 (watchdog 0)" in output
    _assert_stored_once(tmp_path)


def test_garbage_and_duplicates_are_counted_and_skipped(tmp_path: Path) -> None:
    run_dir, report, output = _run_with_faults(tmp_path, "--garbage-every", "40",
                                               "--duplicate-every", "25", ticks=4000)  # fmt: skip
    bad = dict(receiver_in(run_dir).connections[0].bad_messages)
    shards = shards_in(run_dir)
    for shard in shards:  # a push whose code can be read is decoded, and refused, there
        for kind, n in shard.bad_pushes.items():
            bad[kind] = bad.get(kind, 0) + n
    assert set(bad) == {"json", "schema", "binary", "unknown_cmd", "unsubscribed", "utf8"}
    assert sum(bad.values()) == report.garbage_sent > 90  # each kind several times
    assert sum(s.resent_dropped for s in shards) == report.ticks_sent // 25
    assert f"bad messages {report.garbage_sent}" in output
    _assert_stored_once(tmp_path)  # no duplicate rows, nothing lost
