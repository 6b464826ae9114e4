"""A broken or hostile vendor edge on one connection of two (``feedmux replay --fault``): the
hit connection is rebuilt and resubscribed quickly, the other goes on, and every tick the
server sent is stored once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from feedmux import read_ticks
from feedmux.journal import EVENT, read_journal
from feedmux.simulator.market import a_share_universe
from feedmux.stats import read_stats
from tests.conftest import wait_for
from tests.integration.helpers import end_feed, feedmux, read_json, sent_ticks, start_replay, stop

pytestmark = pytest.mark.integration

CODES = a_share_universe()[::54]  # 100 codes ...
PER_CONN = "60"  # ... on two connections
# The run's watchdog is far above the time allowed for recovery, so the watchdog cannot be
# what rebuilt the link: it must be dropped for what it sent. Recovery takes AllTick's
# reconnect spacing (3.3 s) plus at most one request spacing (3.3 s; an envelope error: the
# widened 6.6 s), plus slack.
WATCHDOG_S = "60"
RECOVERY_S = 12

# fault -> what the run's log must say about it
FAULTS = {
    "huge-header": "frame too big",
    "oversized-control": "control frame",
    "reserved-opcode": "reserved opcode",
    "close-1001": "server closed: 1001 going away",
    "envelope-error": "ret=201 request header param invalid",
}


def _receiver(run_dir: Path) -> dict[str, Any]:
    return read_stats(run_dir / "stats").get("receiver", {})


def _recovered(run_dir: Path, reconnects: int) -> bool:
    """Both connections up with all their codes, after ``reconnects`` reconnects."""
    conns = _receiver(run_dir).get("connections", [])
    return (
        len(conns) == 2
        and sum(c["reconnects"] for c in conns) == reconnects
        and sum(c["confirmed"] for c in conns) == len(CODES)
        and all(c["state"] == "up" and c["confirmed"] == c["codes"] for c in conns)
    )


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_on_one_connection_is_recovered_and_nothing_is_lost(
    tmp_path: Path, fault: str
) -> None:
    symbols = tmp_path / "symbols.txt"
    symbols.write_text(" ".join(CODES))
    replay, report, url = start_replay(tmp_path, "--rate", "400", "--symbols-file", str(symbols),
                                       "--max-codes-per-conn", PER_CONN, "--fault", fault,
                                       "--fault-after", "1")  # fmt: skip
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    run = feedmux("run", "--url", url, "--symbols-file", str(symbols), "--shards", "2",
                  "--data-dir", str(data_dir), "--run-dir", str(run_dir),
                  "--max-codes-per-conn", PER_CONN, "--watchdog", WATCHDOG_S)  # fmt: skip
    try:
        wait_for(lambda: read_json(report).get("faults"), 30, f"the {fault} fault")
        reconnects = 0 if fault == "envelope-error" else 1  # its link is fine, its request not
        wait_for(lambda: _recovered(run_dir, reconnects), RECOVERY_S,
                 "the hit connection to be back with all its codes")  # fmt: skip
        sent_then = read_json(report)["ticks_sent"]
        wait_for(lambda: read_json(report)["ticks_sent"] > sent_then + 800, 30,
                 "the feed to go on on both connections")  # fmt: skip
        end_feed(replay, report)
        sent = read_json(report)["frames_sent"]
        wait_for(lambda: _receiver(run_dir)["ticks"] == sent, 15,
                 "the receiver to read every frame")  # fmt: skip
        receiver = _receiver(run_dir)
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    [done] = read_json(report)["faults"]
    assert done["name"] == fault
    assert FAULTS[fault] in output
    conns = receiver["connections"]
    assert sum(c["reconnects"] for c in conns) == reconnects
    assert read_json(report)["violations"] == []
    ticks = sent_ticks(tmp_path / "sent.log")
    stored = read_ticks(data_dir)
    assert len(stored) == len(ticks)  # nothing twice ...
    keys = set(zip(stored["code"], stored["seq"], strict=True))
    assert keys == {(t.code, t.seq) for t in ticks}  # ... nothing lost
    # After the recovery both connections carry ticks: one alone has only about half the codes.
    assert len({t.code for t in ticks[sent_then:]}) > 0.7 * len(CODES)
    if fault != "envelope-error":  # the journal says why the link went down
        events = b"".join(r.payload for r in read_journal(data_dir / "journal") if r.kind == EVENT)
        assert FAULTS[fault].encode() in events
