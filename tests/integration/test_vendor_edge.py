"""A broken or hostile vendor edge on one connection of two (``feedmux replay --fault``): the
hit connection is rebuilt and resubscribed quickly, the other goes on, and every tick the
server sent is stored once."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedmux import read_ticks
from feedmux.ingest.journal import EVENT, read_journal
from feedmux.simulator.market import a_share_universe
from feedmux.stats.receiver import ReceiverStats
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

CODES = a_share_universe()[::54]  # 100 codes ...
PER_CONN = "60"  # ... on two connections
# The run's watchdog is far above the time allowed for recovery, so the watchdog cannot be
# what rebuilt a link: it must be dropped for what it sent. Recovery takes AllTick's reconnect
# spacing (3.3 s) plus a request spacing, here 1 s at the server and 1.1 s at the client (the
# subject is the frames, not the spacing; an envelope error's retry waits the widened 2.2 s),
# plus slack.
WATCHDOG_S = "60"
RECOVERY_S = 12
SERVER_SPACING = ("--cross-interval-ms", "1000")
CLIENT_SPACING = ("--cross-interval-ms", "1100")

# fault -> what the run's log must say about it
FAULTS = {
    "huge-header": "frame too big",
    "oversized-control": "control frame",
    "reserved-opcode": "reserved opcode",
    "close-1001": "server closed: 1001 going away",
    "envelope-error": "ret=201 request header param invalid",
}


def _receiver(run_dir: Path) -> ReceiverStats:
    return receiver_in(run_dir)


def _recovered(run_dir: Path, reconnects: int) -> bool:
    """Both connections up with all their codes, after ``reconnects`` reconnects."""
    conns = _receiver(run_dir).connections
    return (
        len(conns) == 2
        and sum(c.reconnects for c in conns) == reconnects
        and sum(c.confirmed for c in conns) == len(CODES)
        and all(c.state == "up" and c.confirmed == c.codes for c in conns)
    )


# Two faults a second apart hit both connections of one run, one each (a suite-time saving:
# each fault still has its own end-to-end check). The frame-level pairs are slow (CI).
@pytest.mark.parametrize("faults", [
    pytest.param(("huge-header", "close-1001"), marks=pytest.mark.slow),
    pytest.param(("oversized-control", "reserved-opcode"), marks=pytest.mark.slow),
    ("envelope-error",),
], ids="+".join)  # fmt: skip
def test_a_fault_on_a_connection_is_recovered_and_nothing_is_lost(
    tmp_path: Path, faults: tuple[str, ...]
) -> None:
    symbols = tmp_path / "symbols.txt"
    symbols.write_text(" ".join(CODES))
    flags = [arg for fault in faults for arg in ("--fault", fault)]
    replay, report, url = start_replay(tmp_path, "--rate", "1000", "--symbols-file",
                                       str(symbols), "--max-codes-per-conn", PER_CONN, *flags,
                                       "--fault-after", "1", *SERVER_SPACING)  # fmt: skip
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    run = feedmux("run", "--url", url, "--symbols-file", str(symbols), "--shards", "2",
                  "--data-dir", str(data_dir), "--run-dir", str(run_dir), *CLIENT_SPACING,
                  "--max-codes-per-conn", PER_CONN, "--watchdog", WATCHDOG_S)  # fmt: skip
    try:
        wait_for(lambda: len(replay_report(report).faults) == len(faults), 30,
                 "the faults")  # fmt: skip
        # A link that only got an envelope error is fine: its request is sent again.
        reconnects = sum(fault != "envelope-error" for fault in faults)
        wait_for(lambda: _recovered(run_dir, reconnects), RECOVERY_S,
                 "the hit connections to be back with all their codes")  # fmt: skip
        sent_then = replay_report(report).ticks_sent
        wait_for(lambda: replay_report(report).ticks_sent > sent_then + 800, 30,
                 "the feed to go on on both connections")  # fmt: skip
        end_feed(replay, report)
        sent = replay_report(report).frames_sent
        wait_for(lambda: _receiver(run_dir).ticks == sent, 15,
                 "the receiver to read every frame")  # fmt: skip
        receiver = _receiver(run_dir)
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    assert [done.name for done in replay_report(report).faults] == list(faults)
    for fault in faults:
        assert FAULTS[fault] in output, fault
    conns = receiver.connections
    assert sum(c.reconnects for c in conns) == reconnects
    assert replay_report(report).violations == []
    ticks = sent_ticks(tmp_path / "sent.log")
    stored = read_ticks(data_dir)
    assert len(stored) == len(ticks)  # nothing twice ...
    keys = set(zip(stored["code"], stored["seq"], strict=True))
    assert keys == {(t.code, t.seq) for t in ticks}  # ... nothing lost
    # After the recovery both connections carry ticks: one alone has only about half the codes.
    assert len({t.code for t in ticks[sent_then:]}) > 0.7 * len(CODES)
    events = b"".join(r.payload for r in read_journal(data_dir / "journal") if r.kind == EVENT)
    for fault in faults:  # the journal says why a link went down
        assert fault == "envelope-error" or FAULTS[fault].encode() in events, fault
