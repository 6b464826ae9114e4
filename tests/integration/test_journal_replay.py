"""A run's journal, served again by `feedmux replay --journal`, reproduces the run's store."""

from __future__ import annotations

import signal
from pathlib import Path

import pandas as pd
import pytest

from feedmux import read_bars, read_ticks
from feedmux.ingest.journal import read_journal
from feedmux.simulator.market import a_share_universe
from tests.conftest import wait_for
from tests.integration.helpers import TOKEN, feedmux, receiver_in, replay_report, start_replay, stop

pytestmark = pytest.mark.integration
COLUMNS = ["code", "seq", "time", "price", "volume", "turnover", "direction"]


# The universe spans two connections: the second comes up ~3.3 s after the first (AllTick's
# cross-connection pacing), so a replay at max speed must wait for its codes, not drop them.
TWO_CONNS = ["--max-codes-per-conn", "160"]


def _run_until_fed(tmp: Path, replay_args: list[str], symbols: Path) -> tuple[Path, Path]:
    """Run the pipeline against a replay server until its feed is done and read; the data
    directory and the replay server's report."""
    tmp.mkdir(exist_ok=True)
    replay, report, url = start_replay(tmp, *replay_args, *TWO_CONNS)
    data_dir, run_dir = tmp / "data", tmp / "run"
    run = feedmux("run", "--url", url, "--symbols-file", str(symbols), "--shards", "2",
                  "--data-dir", str(data_dir), "--run-dir", str(run_dir), *TWO_CONNS)  # fmt: skip
    try:
        if "--journal" not in replay_args:
            wait_for(lambda: len(replay_report(report).subscriptions) == 2
                     and replay_report(report).ticks_sent > 6000, 60,
                     "some feed on two connections")  # fmt: skip
            replay.send_signal(signal.SIGUSR1)
        wait_for(lambda: replay_report(report).feed == "done", 60, "the feed to end")
        sent = replay_report(report).frames_sent
        wait_for(lambda: receiver_in(run_dir).ticks == sent, 30,
                 "the receiver to read every frame")  # fmt: skip
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    return data_dir, report


@pytest.mark.slow
def test_a_journal_replayed_at_max_speed_reproduces_the_recorded_run(tmp_path: Path) -> None:
    symbols = tmp_path / "symbols.txt"
    symbols.write_text(" ".join(a_share_universe()[::18]))
    first, recording = _run_until_fed(tmp_path / "recorded", ["--rate", "1500", "--symbols-file",
                                                   str(symbols)], symbols)  # fmt: skip
    journal = first / "journal"
    raw = b"".join(r.payload for r in read_journal(journal))  # as written, not compressed
    assert TOKEN.encode() not in raw and b"token=***" not in raw  # the URL is kept without it
    assert replay_report(recording).connections_opened == 2  # the case that used to drop frames
    second, report = _run_until_fed(
        tmp_path / "replayed", ["--journal", str(journal), "--speed", "max"], symbols
    )
    recorded = read_ticks(first)[COLUMNS].sort_values(["code", "seq"], ignore_index=True)
    replayed = read_ticks(second)[COLUMNS].sort_values(["code", "seq"], ignore_index=True)
    assert len(recorded) > 4000
    assert recorded.equals(replayed)
    assert replay_report(report).frames_skipped == {}  # and it would say so if it had skipped
    # Bars follow the recorded time, not the wall clock: the replay builds the same bars.
    assert len(read_bars(first)) > 0
    pd.testing.assert_frame_equal(read_bars(second), read_bars(first))
