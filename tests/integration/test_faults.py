"""The pipeline under the replay server's scheduled faults."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from feedmux import read_ticks
from feedmux.simulator.market import a_share_universe
from feedmux.stats import read_stats
from tests.conftest import wait_for
from tests.integration.helpers import feedmux, read_json, sent_ticks, start_replay, stop

pytestmark = pytest.mark.integration


def test_stalled_feed_trips_the_watchdog_which_reconnects_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    codes = a_share_universe()[::25]
    symbols = tmp_path / "symbols.txt"
    symbols.write_text(" ".join(codes))
    # 2 s into the feed the server goes silent for 8 s: no data, no heartbeat replies
    replay, report, url = start_replay(tmp_path, "--rate", "500", "--symbols-file", str(symbols),
                                       "--stall-after", "2", "--stall-for", "8")  # fmt: skip
    run_dir = tmp_path / "run"
    run = feedmux("run", "--url", url, "--symbols-file", str(symbols), "--shards", "2",
                  "--watchdog", "3", "--data-dir", str(tmp_path / "data"),
                  "--run-dir", str(run_dir))  # fmt: skip

    def connection() -> dict[str, object]:
        receiver = read_stats(run_dir / "stats").get("receiver", {})
        return receiver.get("connections", [{}])[0]  # type: ignore[no-any-return]

    try:
        wait_for(lambda: connection().get("watchdog_trips", 0) >= 1, 30, "the watchdog to trip")
        sent_before = read_json(report)["ticks_sent"]
        wait_for(lambda: read_json(report)["ticks_sent"] > sent_before + 1000, 40,
                 "the feed to flow again after the stall")  # fmt: skip
        assert connection()["state"] == "up"
        replay.send_signal(signal.SIGUSR1)
        wait_for(lambda: read_json(report).get("feed") == "done", 10, "the feed to end")
        sent = read_json(report)["frames_sent"]
        wait_for(lambda: read_stats(run_dir / "stats")["receiver"]["ticks"] == sent, 15,
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
    assert read_json(report)["violations"] == []
