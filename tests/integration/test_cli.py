"""The feedmux command as a user runs it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from feedmux import read_ticks
from feedmux.market.sessions import load_sessions
from feedmux.ops.cli import main
from feedmux.simulator.market import a_share_universe
from tests.conftest import scaled, wait_for
from tests.integration.helpers import TOKEN, feedmux, stop


def test_bad_symbol_in_file_is_named_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    symbols = tmp_path / "watch.txt"
    symbols.write_text("600519\n000001.SZ, 12345X\n")
    code = main(["run", "--symbols-file", str(symbols), "--data-dir", str(tmp_path)],
                env={"FEEDMUX_TOKEN": "x"})  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert f"{symbols}:2: '12345X'" in err
    assert not (tmp_path / "run").exists()  # nothing started


def test_empty_symbol_list_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    symbols = tmp_path / "watch.txt"
    symbols.write_text("# nothing yet\n")
    assert main(["run", "--symbols-file", str(symbols)], env={"FEEDMUX_TOKEN": "x"}) == 2
    assert "lists no codes" in capsys.readouterr().err


def test_missing_token_says_how_to_give_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--codes", "600519"], env={}) == 2
    assert "FEEDMUX_TOKEN" in capsys.readouterr().err


def test_unwritable_data_dir_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["run", "--codes", "600519", "--data-dir", str(blocker / "data")],
                env={"FEEDMUX_TOKEN": "x"})  # fmt: skip
    assert code == 2
    assert "not writable" in capsys.readouterr().err


def test_end_of_day_mistakes_stop_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    base = ["run", "--codes", "600519", "--data-dir", str(tmp_path / "data")]
    env = {"FEEDMUX_TOKEN": "x"}
    assert main([*base, "--eod-export", str(blocker / "archive")], env=env) == 2
    assert "--eod-export directory" in capsys.readouterr().err
    assert main([*base, "--eod-at", "3pm"], env=env) == 2
    assert "HH:MM" in capsys.readouterr().err
    assert main([*base, "--keep-days", "-1"], env=env) == 2
    assert "--keep-days" in capsys.readouterr().err
    assert main([*base, "--eod-export", str(tmp_path / "a"), "--store",
                 "postgresql://127.0.0.1/test"], env=env) == 2  # fmt: skip
    assert "SQLite" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.mark.integration
def test_replay_quickstart_runs_and_stops_cleanly(tmp_path: Path) -> None:
    secret = "cmdline-secret-4d1f"  # on the command line: ps must not show it
    run = feedmux("run", "--replay", "--shards", "2", "--codes", "600519,000001,AAPL,700.HK",
                  "--replay-rate", "500", "--stop-after", "10", "--token", secret,
                  cwd=tmp_path)  # fmt: skip
    wait_for((tmp_path / "feedmux-data" / "run" / "run.json").exists, 30, "the run to start")

    def titles() -> list[str]:
        return [_cmdline(pid) for pid in Path("/proc").iterdir() if pid.name.isdigit()]

    wait_for(lambda: "feedmux-receiver" in titles(), 30, "the receiver to start")
    assert "feedmux run" in titles() and not [t for t in titles() if secret in t]
    tail = feedmux("tail", "sh600519", "--count", "3", cwd=tmp_path)
    tail_output, _ = tail.communicate(timeout=scaled(30))
    assert tail.returncode == 0, tail_output
    lines = tail_output.splitlines()
    assert len(lines) == 3 and all(line.startswith("600519.SH ") for line in lines), lines
    output, _ = run.communicate(timeout=scaled(90))  # --stop-after ends it by itself
    assert run.returncode == 0, output
    assert "replay server: ws://127.0.0.1:" in output
    assert "received" in output and "stopped cleanly" in output
    # Every progress line while feeding has a measured rate: the first one too, not "0/s".
    rates = re.findall(r"ticks \(\s*([\d,]+)/s\)", output.split("stopping:")[0])
    assert rates and "0" not in rates, output
    stored = read_ticks(tmp_path / "feedmux-data")
    assert set(stored["code"]) == {"600519.SH", "000001.SZ", "AAPL.US", "700.HK"}
    assert TOKEN not in output and secret not in output


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""  # gone meanwhile


@pytest.mark.integration
def test_a_worker_that_cannot_start_stops_the_rest_and_says_why(tmp_path: Path) -> None:
    taken = socket.socket()  # another program holds the port shard 1 publishes on
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    base = taken.getsockname()[1] - 2  # shard i publishes on PORT+2i
    try:
        run = feedmux("run", "--replay", "--shards", "3", "--codes", "600519,000001",
                      "--data-dir", str(tmp_path / "data"), "--stop-after", "30",
                      "--public", f"tcp://127.0.0.1:{base}")  # fmt: skip
        output, _ = run.communicate(timeout=scaled(60))  # left-over workers would hang the exit
    finally:
        taken.close()
    assert run.returncode == 2, output
    assert "shard-1 did not start (exit code" in output
    assert "Address already in use" in output


@pytest.mark.integration
def test_a_store_file_that_is_no_database_stops_the_start_and_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "data" / "ticks" / "shard-1.sqlite"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"this is not an SQLite database, it only has the name of one")
    run = feedmux("run", "--replay", "--shards", "3", "--codes", "600519,000001",
                  "--data-dir", str(tmp_path / "data"), "--stop-after", "30")  # fmt: skip
    output, _ = run.communicate(timeout=scaled(60))
    assert run.returncode == 2, output
    assert f"{broken}: file is not a database" in output  # found before any worker starts
    assert "did not start" not in output


def _a_shares_trade(minutes: int) -> bool | None:
    """Whether A-shares trade continuously for the next ``minutes`` on the wall clock (the data
    clock of a run without ticks): True throughout, False not at all, None partly."""
    now = time.time_ns()
    trading = load_sessions().trading_ns("SH", now, now + minutes * 60 * 10**9)
    return True if trading == minutes * 60 * 10**9 else False if trading == 0 else None


@pytest.mark.integration
@pytest.mark.slow
def test_silent_codes_are_listed_and_subscriptions_change_from_the_cli(tmp_path: Path) -> None:
    """Silent while A-shares trade; outside their hours, nothing is silent (silence counts
    continuous trading only: tests/unit/test_silent.py has every phase)."""
    trading = _a_shares_trade(5)
    if trading is None:
        pytest.skip("A-share trading starts or stops within minutes: either outcome is right")
    # --replay-rate 0: the server confirms the codes but never sends a tick
    run = feedmux("run", "--replay", "--shards", "2", "--codes", "600519,000001",
                  "--replay-rate", "0", "--silent-after", "1",
                  "--data-dir", str(tmp_path / "data"))  # fmt: skip
    run_dir = tmp_path / "data" / "run"
    try:
        wait_for(lambda: len(_run_cli("subscriptions", run_dir).splitlines()) == 2, 30,
                 "both codes to be listed")  # fmt: skip
        listed = a_share_universe()[3000]  # the built-in server lists the synthetic market
        assert f"subscribed 1 code(s): {listed}" in _run_cli("subscribe", run_dir, listed)
        assert "unsubscribed 1 code(s): 000001.SZ" in _run_cli("unsubscribe", run_dir, "000001")
        assert _run_cli("subscriptions", run_dir).split() == ["600519.SH", listed]
        never = "error: never subscribed: 300750.SZ"  # a typo or a stale list: said, not ignored
        assert never in _run_cli("unsubscribe", run_dir, "300750", "600519")
        assert _run_cli("subscriptions", run_dir).split() == ["600519.SH", listed]
        snapshot = _run_cli("snapshot", run_dir, "600519", "300750")
        assert "600519.SH: subscribed, no tick yet" in snapshot
        assert "300750.SZ: not subscribed" in snapshot
        if trading:
            wait_for(lambda: "2 silent code(s)" in _run_cli("silent", run_dir, "--threshold",
                                                            "1"),
                     20, "both codes to be reported silent")  # fmt: skip
        silent = _run_cli("silent", run_dir, "--threshold", "1")
        if trading:
            assert "600519.SH  never ticked" in silent and f"{listed}  never ticked" in silent
        else:  # both subscribed for seconds (the changes above are 3 s apart): not silent
            assert "0 silent code(s)" in silent
        status = _run_cli("status", run_dir)
        assert f"markets  SH {'continuous' if trading else ''}" in status
    finally:
        code, output = stop(run)
    assert code == 3, output  # the codes were subscribed, but a run with no tick is no success
    assert "no tick received in" in output
    reports = [x for x in output.splitlines() if x.startswith("silent codes")]
    if not trading:
        assert reports == [], reports
        return
    assert reports and all(
        x.startswith("silent codes (subscribed, no tick for 1 s of trading): ") for x in reports
    )
    assert "600519.SH" in reports[-1]  # never ticked, subscribed throughout


def _run_cli(command: str, run_dir: Path, *args: str) -> str:
    proc = feedmux(command, *args, "--run-dir", str(run_dir))
    out, _ = proc.communicate(timeout=scaled(60))
    return out


@pytest.mark.parametrize(
    ("args", "code"),
    # One shard, 4 s: on a loaded machine 8 shards took most of 3 s to start, and a run that
    # stored no tick ends with exit 3.
    [(["status"], 1),
     (["run", "--replay", "--codes", "600519", "--shards", "1", "--stop-after", "4"], 0)],
)  # fmt: skip
def test_a_closed_stdout_is_no_crash(tmp_path: Path, args: list[str], code: int) -> None:
    # `feedmux ... >&-`: Python then has no sys.stdout at all
    proc = subprocess.run([sys.executable, "-m", "feedmux", *args, "--data-dir",
                           str(tmp_path / "data")], check=False, stderr=subprocess.PIPE,
                          text=True, timeout=scaled(60),
                          preexec_fn=lambda: os.close(1))  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, proc.stderr
