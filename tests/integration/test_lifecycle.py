"""The run's life as a host treats it: readers that go away, a second instance, a supervisor
killed with -9, a terminal hung up, clients asking when nothing runs."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import msgspec
import pytest

from feedmux import Control, SnapshotClient, Subscriber, read_ticks
from feedmux.errors import NotRunningError
from feedmux.ops import instance
from feedmux.ops.config import Manifest
from feedmux.stats import read_stats
from tests.conftest import scaled, wait_for
from tests.integration.helpers import TOKEN, read_json, receiver_in, stop

pytestmark = pytest.mark.integration

CODES = "600519,000001,AAPL,700.HK"
SMALL = ("--shards", "2", "--codes", CODES)


class Procs:
    """Every process a test starts, each in its own session: killed with its group at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[subprocess.Popen[str]] = []

    def feedmux(self, *args: str, stdout: int | IO[Any] | None = subprocess.PIPE,
                name: str = "feedmux") -> subprocess.Popen[str]:  # fmt: skip
        env = {**os.environ, "FEEDMUX_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
        err = (self.tmp / f"{name}-{len(self.started)}.err").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "feedmux", *args], env=env, text=True,
                                stdout=stdout, stderr=err, start_new_session=True)  # fmt: skip
        err.close()
        proc.err_path = err.name  # type: ignore[attr-defined]
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group: its workers too
            if proc.poll() is None:  # not a group leader (started by a helper)
                proc.kill()
            proc.wait()


def _stderr(proc: subprocess.Popen[str]) -> str:
    return Path(proc.err_path).read_text()  # type: ignore[attr-defined]


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    started = Procs(tmp_path)
    try:
        yield started
    finally:
        started.cleanup()


def _dirs(tmp: Path) -> tuple[Path, Path, tuple[str, ...]]:
    run_dir, data_dir = tmp / "run", tmp / "data"
    return run_dir, data_dir, ("--data-dir", str(data_dir), "--run-dir", str(run_dir))


def _stored(run_dir: Path) -> int:
    return sum(s.stored for s in read_stats(run_dir / "stats").shards.values())


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            state, ppid = _state(int(entry.name))
            if ppid == pid and state not in ("Z", ""):
                found.append(int(entry.name))
    return found


def _state(pid: int) -> tuple[str, int]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return "", 0
    return fields[0], int(fields[1])


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    return _state(pid)[0] not in ("Z", "")


def _no_traceback(proc: subprocess.Popen[str]) -> None:
    err = _stderr(proc)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def _started(run_dir: Path) -> bool:
    return _stored(run_dir) > 0 and read_stats(run_dir / "stats").receiver is not None


@pytest.mark.parametrize("display", ["plain", "live"])  # live: a table forced into a pipe
def test_a_run_whose_reader_goes_away_runs_to_its_stop_and_leaves_nothing(
    tmp_path: Path, procs: Procs, display: str
) -> None:
    run_dir, _, dirs = _dirs(tmp_path)
    run = procs.feedmux("run", "--replay", *SMALL, "--replay-rate", "200", "--stop-after", "5",
                        "--display", display, *dirs)  # fmt: skip
    assert run.stdout is not None
    lines = [run.stdout.readline() for _ in range(2)]  # `| head -2`
    run.stdout.close()
    assert lines[0].startswith("replay server:"), lines
    wait_for(lambda: _started(run_dir), 30, "the run to store")
    workers = _children(run.pid)  # replay server, receiver, shards
    assert len(workers) >= 4
    assert run.wait(scaled(40)) == 0  # --stop-after still stops it, in order
    _no_traceback(run)
    log = (run_dir / "feedmux.log").read_text()
    assert "stopped cleanly" in log and "stdout closed" in log
    wait_for(lambda: not any(_alive(p) for p in workers), 10, "every worker to exit")


def test_one_instance_per_dir_readers_that_go_away_and_a_hung_up_terminal(
    tmp_path: Path, procs: Procs
) -> None:
    run_dir, data_dir, dirs = _dirs(tmp_path)
    run = procs.feedmux("run", "--replay", *SMALL, "--replay-rate", "200", "--display", "plain",
                        *dirs)  # fmt: skip
    wait_for(lambda: _started(run_dir), 30, "the run to store")
    manifest = (run_dir / "run.json").read_bytes()

    second = procs.feedmux("run", "--replay", *SMALL, *dirs, name="second")
    out, _ = second.communicate(timeout=scaled(15))  # refused at once, not after a start
    err = _stderr(second)
    assert second.returncode == 2, (out, err)
    assert f"another feedmux run (pid {run.pid}, since " in err and str(run_dir) in err
    assert "replay server" not in out
    assert (run_dir / "run.json").read_bytes() == manifest  # nothing taken over

    readers = [procs.feedmux(*args, "--run-dir", str(run_dir), name=args[0])
               for args in (("status", "--json"), ("status",), ("tail",),
                            ("tail", "600000.SH"))]  # fmt: skip
    # `| head -0`: the reader is gone at once (the last tail's code is not in the run, so
    # it never writes: it must look at the pipe).
    for reader in readers:
        assert reader.stdout is not None
        reader.stdout.close()
    for reader in readers:
        assert reader.wait(scaled(20)) == 141, reader.args  # as a shell shows a SIGPIPE
        _no_traceback(reader)
    assert "600000.SH is not subscribed" in _stderr(readers[-1])  # said, not waited on

    with (tmp_path / "tail.out").open("w") as tail_out:  # a tail that outlives the run
        watcher = procs.feedmux("tail", "--run-dir", str(run_dir), stdout=tail_out, name="tail")
    wait_for(lambda: (tmp_path / "tail.out").stat().st_size > 0, 20, "tail to print ticks")
    os.killpg(run.pid, signal.SIGHUP)  # the terminal closed: the whole process group gets it
    out, _ = run.communicate(timeout=scaled(60))
    assert run.returncode == 0, (out, _stderr(run))
    assert watcher.wait(scaled(10)) == 1  # it says so, not wait for ever
    assert f"feedmux tail: the feedmux run in {run_dir} stopped" in _stderr(watcher)
    received = receiver_in(run_dir)
    assert received.final and received.unconfirmed == 0
    assert len(read_ticks(data_dir)) == received.ticks > 0
    assert f"all {received.ticks:,} received ticks and books are stored" in out


def test_closing_its_terminal_stops_a_live_run_in_order(tmp_path: Path, procs: Procs) -> None:
    run_dir, data_dir, dirs = _dirs(tmp_path)
    master, slave = pty.openpty()
    env = {**os.environ, "FEEDMUX_TOKEN": TOKEN, "TERM": "xterm-256color"}
    # A session of its own whose controlling terminal is the pty, as a login shell's is.
    as_login = (
        "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "os.execv(sys.executable, [sys.executable, '-m', 'feedmux', *sys.argv[1:]])"
    )
    run = subprocess.Popen([sys.executable, "-c", as_login, "run", "--replay", *SMALL,
                            "--replay-rate", "200", *dirs],
                           stdin=slave, stdout=slave, stderr=slave, env=env,
                           start_new_session=True)  # fmt: skip
    procs.started.append(run)
    os.close(slave)
    done = threading.Event()

    def drain() -> None:  # the terminal's screen, so the live table never blocks on it
        while not done.is_set():
            if select.select([master], [], [], 0.1)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        wait_for(lambda: _started(run_dir), 30, "the run to store")
    finally:
        done.set()
        reader.join()
        os.close(master)  # the terminal closes: SIGHUP to its processes, then EIO on writes
    assert run.wait(scaled(60)) == 0
    log = (run_dir / "feedmux.log").read_text()
    assert "stopped cleanly" in log, log[-2000:]
    received = receiver_in(run_dir)
    assert received.final and received.unconfirmed == 0
    assert len(read_ticks(data_dir)) == received.ticks > 0


def test_a_killed_supervisor_leaves_no_orphan_and_a_new_run_loses_nothing(
    tmp_path: Path, procs: Procs
) -> None:
    run_dir, data_dir, dirs = _dirs(tmp_path)
    feed = ("--replay", *SMALL, "--replay-rate", "300")  # the journal is on by default
    run = procs.feedmux("run", *feed, *dirs, stdout=subprocess.DEVNULL)
    wait_for(lambda: _started(run_dir), 30, "the run to store")
    children = _children(run.pid)  # replay server, receiver, shards (and mp's tracker)
    workers = [p for p in children if _title(p).startswith("feedmux-")]
    assert len(workers) == 4

    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + scaled(15)
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        holder = instance.running(run_dir)  # what `feedmux status` asks
        time.sleep(0.1)  # still alive this much later: not already exiting during the question
        if any(_alive(p) for p in workers):
            assert holder is not None and holder.pid == run.pid
            assert not holder.supervisor_alive()
    wait_for(lambda: not any(_alive(p) for p in children), 15, "the orphaned workers to stop")
    received = receiver_in(run_dir)
    assert received.final and received.unconfirmed == 0  # handed over and confirmed
    before = len(read_ticks(data_dir))
    assert before == received.ticks > 0

    # another seed: the new replay server's seqs are new ticks, not the first run's again
    again = procs.feedmux("run", *feed, "--seed", "8", *dirs, name="again")
    wait_for(lambda: read_json(run_dir / "run.json").get("pid") == again.pid, 30,
             "the new run to start")  # fmt: skip
    wait_for(lambda: _started(run_dir), 30, "the new run to store")
    code, out = stop(again)
    assert code == 0 and "stopped cleanly" in out, (out, _stderr(again))
    received = receiver_in(run_dir)
    assert len(read_ticks(data_dir)) == before + received.ticks > before


def test_clients_answer_at_once_when_nothing_runs(tmp_path: Path, procs: Procs) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    (run_dir / "run.json").write_bytes(msgspec.json.encode(Manifest(
        shards=2, pid=gone.pid, data_dir=str(tmp_path))))  # a stopped instance's  # fmt: skip
    t0 = time.monotonic()
    with pytest.raises(NotRunningError, match=f"no feedmux run in {run_dir}"):
        Control(run_dir).subscriptions()
    with pytest.raises(NotRunningError, match=f"no feedmux run in {run_dir}"):
        Subscriber(run_dir=run_dir)
    with pytest.raises(NotRunningError):
        Control(tmp_path / "never-ran").subscribe(["600519"])
    with pytest.raises(NotRunningError, match=f"no feedmux run in {run_dir}"):
        SnapshotClient(run_dir).get(["600519"])
    assert time.monotonic() - t0 < 1.0

    commands = (("subscribe", "600519"), ("unsubscribe", "600519"), ("subscriptions",),
                ("silent",), ("tail",), ("snapshot", "600519"))  # fmt: skip
    t0 = time.monotonic()
    clients = [procs.feedmux(*c, "--run-dir", str(run_dir), name=c[0]) for c in commands]
    for command, client in zip(commands, clients, strict=True):
        client.communicate(timeout=scaled(20))
        assert client.returncode == 1, (command, _stderr(client))  # as status's "not running"
        assert f"feedmux {command[0]}: no feedmux run in {run_dir}" in _stderr(client)
    assert time.monotonic() - t0 < scaled(8)  # five interpreters starting at once; not 90 s
