"""Live subscription changes against the replay server at the all-market plan's limits."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from feedmux import Control, read_ticks
from feedmux.errors import SubscriptionError
from feedmux.ingest.universe import load_universe
from feedmux.simulator.market import a_share_universe
from tests.conftest import scaled, wait_for
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


@pytest.mark.slow
def test_burst_of_live_changes_converges_with_no_606_no_reconnect_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """50 calls from 2 threads (+300/-200 codes) on a 5,122-code run over 2 connections: the
    token's request spacing holds (the server closes a link on a 606), nothing is lost."""
    universe = a_share_universe()
    start, extra = universe[:5122], universe[5122:]
    added, removed = extra[:300], start[:200]
    symbols = tmp_path / "symbols.txt"
    symbols.write_text("\n".join(start))
    replay, report, url = start_replay(tmp_path, "--rate", "1000")
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    run = feedmux("run", "--url", url, "--symbols-file", str(symbols), "--shards", "2",
                  "--data-dir", str(data_dir), "--run-dir", str(run_dir))  # fmt: skip
    try:
        wait_for(lambda: len(replay_report(report).subscribed) == len(start), 30,
                 "the starting universe to be subscribed")  # fmt: skip
        control = Control(run_dir)
        errors: list[BaseException] = []

        def burst(change: str, codes: list[str], size: int) -> None:
            try:
                call = getattr(control, change)
                for i in range(0, len(codes), size):  # 25 calls, each returning at once
                    call(codes[i : i + size], wait=False)
                call(codes)  # then wait until the vendor confirmed all of them
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        began = time.monotonic()
        threads = [threading.Thread(target=burst, args=("subscribe", added, 12)),
                   threading.Thread(target=burst, args=("unsubscribe", removed, 8))]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(scaled(60))
        took = time.monotonic() - began
        print(f"50 live changes confirmed by the server in {took:.1f} s")
        assert errors == []
        want = sorted((set(start) - set(removed)) | set(added))
        wait_for(lambda: replay_report(report).subscribed == want, 5, "the server to agree")
        assert replay_report(report).violations == []  # no "request spacing" (606) above all
        links = receiver_in(run_dir).connections
        assert [(c.state, c.reconnects) for c in links] == [("up", 0), ("up", 0)]
        assert took < scaled(20), f"changes took {took:.1f} s to be confirmed"
        assert sorted(control.subscriptions()) == want
        assert sorted(load_universe(data_dir) or []) == want  # a restart resumes it

        unlisted = next(c for c in (f"600{i:03d}.SH" for i in range(1000)) if c not in universe)
        began = time.monotonic()
        with pytest.raises(SubscriptionError) as refused:
            control.subscribe([unlisted])
        assert refused.value.rejected == {unlisted: "ret=600 code invalid"}
        # Sent at once (the token's 3 s spacing at most), not at the next heartbeat (10 s).
        assert time.monotonic() - began < scaled(6), "a change waited for a timer"
        assert unlisted not in control.subscriptions()

        # End the feed, let the receiver read everything, then stop: nothing may be missing.
        end_feed(replay, report)
        sent_count = replay_report(report).frames_sent
        wait_for(lambda: receiver_in(run_dir).ticks == sent_count, 15,
                 "the receiver to read every frame")  # fmt: skip
        links = receiver_in(run_dir).connections
        assert [c.reconnects for c in links] == [0, 0]
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    violations = [v for v in replay_report(report).violations if v.rule != "code invalid"]
    assert violations == [], violations
    sent = sent_ticks(tmp_path / "sent.log")
    stored = read_ticks(data_dir)
    assert len(stored) == len(sent)
    # every tick sent (before, during and after the changes) is stored, once
    assert set(zip(stored["code"], stored["seq"], strict=True)) == {(t.code, t.seq) for t in sent}
    assert len({t.code for t in sent} & set(added)) > len(added) // 2  # added codes tick
