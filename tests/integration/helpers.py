"""Run the feedmux CLI in subprocesses and check what the replay server sent against them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from feedmux import read_ticks
from feedmux.model import Depth, Tick
from feedmux.providers.alltick.protocol import AllTickClient
from feedmux.simulator.market import a_share_universe
from feedmux.stats import read_replay, read_stats
from feedmux.stats.receiver import ReceiverStats
from feedmux.stats.replay import ReplayStats
from feedmux.stats.shard import ShardStats
from tests.conftest import scaled, wait_for
from tests.stats_samples import receiver_stats, replay_stats

TOKEN = "integration-secret-token"


# The replay server stamps ticks with the wall clock, so bars by the exchanges' sessions would
# depend on the hour a test runs (none at night): these tests take plain clock minutes, labelled
# by their start; tests/integration/test_sessions.py runs the defaults on a simulated day.
PLAIN_BARS = {"FEEDMUX_BAR_SESSIONS": "none", "FEEDMUX_BAR_LABEL": "start"}


def feedmux(*args: str, token: str = TOKEN, **kw: Any) -> subprocess.Popen[str]:
    """``token``: FEEDMUX_TOKEN (several, comma-separated, for a vendor that caps each)."""
    env = {**PLAIN_BARS, **os.environ, "FEEDMUX_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "feedmux", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)  # fmt: skip


def read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def replay_report(path: Path) -> ReplayStats:
    """The replay server's report (``--report``); all zero until it wrote one."""
    return read_replay(path) or replay_stats()


def receiver_in(run_dir: Path) -> ReceiverStats:
    """The receiver's latest stats; all zero until it wrote some."""
    return read_stats(run_dir / "stats").receiver or receiver_stats()


def shards_in(run_dir: Path) -> list[ShardStats]:
    """Every shard's latest stats, by shard number (those that wrote some)."""
    return [s for _, s in sorted(read_stats(run_dir / "stats").shards.items())]


def start_replay(tmp: Path, *args: str,
                 token: str = TOKEN) -> tuple[subprocess.Popen[str], Path, str]:  # fmt: skip
    report = tmp / "replay-report.json"
    proc = feedmux("replay", "--port", "0", "--report", str(report),
                   "--sent-messages", str(tmp / "sent.log"), *args, token=token)  # fmt: skip
    wait_for(lambda: bool(replay_report(report).url) or proc.poll() is not None, 30,
             "the replay server to listen")  # fmt: skip
    assert proc.poll() is None, proc.communicate()[0]
    return proc, report, replay_report(report).url


def end_feed(replay: subprocess.Popen[str], report: Path) -> None:
    """End the replay server's feed (SIGUSR1; it keeps serving) and wait until it says so."""
    replay.send_signal(signal.SIGUSR1)
    wait_for(lambda: replay_report(report).feed == "done", 10, "the feed to end")


def sent_messages(path: Path) -> tuple[list[Tick], list[Depth]]:
    """Every trade and book the server sent, decoded as feedmux decodes them (recv_ns 0)."""
    client = AllTickClient("checker", only_subscribed=False)
    ticks, books = [], []
    for line in path.read_bytes().splitlines():
        item = client.receive(line, 0)
        assert item is not None, line
        if isinstance(item, Depth):
            books.append(item)
        else:
            ticks.append(item)
    return ticks, books


def sent_ticks(path: Path) -> list[Tick]:
    return sent_messages(path)[0]


def stop(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=scaled(timeout))
    return proc.returncode, out


def stop_at_full_load(run: subprocess.Popen[str], replay: subprocess.Popen[str], run_dir: Path,
                      data_dir: Path, at_least: int) -> set[tuple[str, int]]:  # fmt: skip
    """SIGTERM to a run once it has stored ``at_least`` ticks, the feed still coming: it must
    stop cleanly with every tick it received stored. The stored ``(code, seq)``s."""
    try:
        wait_for(lambda: sum(s.stored for s in shards_in(run_dir)) > at_least, 90,
                 "the pipeline to be at full load")  # fmt: skip
        run.send_signal(signal.SIGTERM)  # the feed keeps coming until the receiver closes
        code, output = stop(run)
    finally:
        stop(run)
        stop(replay)
    assert code == 0, output
    received = receiver_in(run_dir)
    assert received.final and received.unconfirmed == 0
    stored = read_ticks(data_dir)
    assert len(stored) == received.ticks > at_least
    assert f"all {received.ticks:,} received ticks and books are stored" in output
    return set(zip(stored["code"], stored["seq"], strict=True))


def start_sampled_run(tmp: Path, rate: int, shards: int, *run_flags: str,
                      every: int = 10) -> tuple[Any, ...]:  # fmt: skip
    """A replay server feeding every ``every``-th code of the market at ``rate``, and a run on
    it: (replay, report path, run, run dir, data dir, codes)."""
    codes = a_share_universe()[::every]
    symbols = tmp / "symbols.txt"
    symbols.write_text(" ".join(codes))
    replay, report, url = start_replay(tmp, "--rate", str(rate), "--symbols-file", str(symbols))
    run_dir, data_dir = tmp / "run", tmp / "data"
    run = feedmux("run", "--url", url, "--symbols-file", str(symbols), "--shards", str(shards),
                  "--data-dir", str(data_dir), "--run-dir", str(run_dir), *run_flags)  # fmt: skip
    return replay, report, run, run_dir, data_dir, codes
