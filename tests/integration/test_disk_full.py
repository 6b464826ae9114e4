"""A full data dir degrades the run (counted, reported, retried), never crash-loops it, and once
space is freed everything received is stored exactly once."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from feedmux import read_ticks
from feedmux.ingest.journal import read_journal
from feedmux.simulator.market import a_share_universe
from feedmux.stats import RunStats, read_stats
from feedmux.stats.process import ProcessStats
from feedmux.stats.shard import ShardStats
from tests import services
from tests.conftest import wait_for
from tests.integration.helpers import (
    end_feed,
    feedmux,
    receiver_in,
    replay_report,
    sent_ticks,
    start_replay,
    stop,
)

pytestmark = pytest.mark.integration
DISK_MB = 24  # the run's baseline (stores, WAL, journal, stats) is a few MB: room to fill fast


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_MB mounted for this test only (root needed), always unmounted."""
    yield from services.small_disk(tmp_path / "disk", DISK_MB)


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the disk is full."""
    chunk = b"\0" * (256 << 10)
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        fd = f.fileno()
        for size in (4096, 512, 1):  # the last pages too
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue


def _status(data_dir: Path, *flags: str) -> str:
    shown = feedmux("status", "--data-dir", str(data_dir), *flags)
    return shown.communicate(timeout=30)[0]


def _shards(stats: RunStats) -> list[ShardStats]:
    return list(stats.shards.values())


@pytest.mark.slow
def test_a_full_disk_degrades_and_catches_up_with_nothing_lost(
    tmp_path: Path, small_disk: Path
) -> None:
    symbols = tmp_path / "symbols.txt"
    symbols.write_text(" ".join(a_share_universe()[::20]))
    replay, report, url = start_replay(tmp_path, "--rate", "1000", "--symbols-file", str(symbols))
    data_dir = small_disk / "data"
    stats_dir = data_dir / "run" / "stats"  # the run dir (stats, log) is on the full disk too
    # A small ledger, so the receiver spills (and finds it cannot) ~6 s into the outage; it
    # drops only after twice that.
    run = feedmux("run", "--url", url, "--symbols-file", str(symbols), "--shards", "2",
                  "--data-dir", str(data_dir), "--bus-window", "500",
                  "--bus-memory", "3000")  # fmt: skip
    try:
        wait_for(lambda: len(_shards(read_stats(stats_dir))) == 2
                 and all(s.stored > 300 for s in _shards(read_stats(stats_dir))), 30,
                 "both shards to store")  # fmt: skip
        filler = small_disk / "filler"
        _fill(filler)

        def failing(kind: str, stats: list[ProcessStats]) -> bool:
            return all(any(f.kind == kind and f.failing for f in s.failing_writes)
                       for s in stats)  # fmt: skip

        wait_for(lambda: failing("store", _shards(read_stats(stats_dir))), 30,
                 "both shards to report their store failing")  # fmt: skip
        status = _status(data_dir)
        assert "store failing: disk full" in status, status
        shown = json.loads(_status(data_dir, "--json"))
        assert any("store failing: disk full" in line for line in shown["failing"])
        assert [s["restarts"] for s in shown["shards"]] == [0, 0]
        wait_for(lambda: failing("spill", [receiver_in(data_dir / "run")]), 30,
                 "the receiver to keep receiving until it cannot spill either")  # fmt: skip
        assert run.poll() is None
        filler.unlink()
        end_feed(replay, report)
        sent = replay_report(report).frames_sent
        wait_for(lambda: receiver_in(data_dir / "run").ticks == sent
                 and sum(s.stored for s in _shards(read_stats(stats_dir))) == sent, 60,
                 "every tick to be stored once space is back")  # fmt: skip
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    assert "Traceback" not in output and "restarting" not in output, output
    assert output.count("writes failing") < 10  # once per kind and process, not per write
    ticks = sent_ticks(tmp_path / "sent.log")
    stored = read_ticks(data_dir)
    assert len(stored) == len(ticks)
    assert set(zip(stored["code"], stored["seq"], strict=True)) == {(t.code, t.seq) for t in ticks}
    assert len(list(read_journal(data_dir / "journal"))) > 0  # paused, not broken


def test_a_run_started_on_a_full_disk_says_so(tmp_path: Path, small_disk: Path) -> None:
    data_dir = small_disk / "data"
    data_dir.mkdir()
    _fill(small_disk / "filler")
    run = feedmux("run", "--replay", "--codes", "600519,000001", "--shards", "2",
                  "--data-dir", str(data_dir), "--stop-after", "5")  # fmt: skip
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 2, output
    assert "No space left on device" in output and "Traceback" not in output, output
