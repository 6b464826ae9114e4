"""Operating a running instance: the live table on a terminal, /metrics, snapshots from the
command line and Python, threshold publishing, and consumers on tcp:// with CURVE."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from feedmux import SnapshotClient, Subscriber, read_books, read_ticks
from feedmux.model import Tick
from feedmux.ops.cli import main
from feedmux.shard.moves import TradeMoves
from feedmux.stats import read_stats
from tests.conftest import scaled, wait_for
from tests.integration.helpers import TOKEN, feedmux, stop

pytestmark = pytest.mark.integration
CODES = "600519,000001,600000,000002,AAPL.US"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A process on a pseudo-terminal of 140 x 50, its output collected as it comes."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 140, 0, 0))
        env = {**os.environ, "FEEDMUX_TOKEN": TOKEN, "TERM": "xterm-256color"}
        env.pop("COLUMNS", None)
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                     env=env, start_new_session=True)  # fmt: skip
        os.close(slave)
        self.master = master
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the other side closed
                return
            if not data:
                return
            self._chunks.append(data)

    @property
    def raw(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw)

    def interrupt(self) -> int:
        """SIGINT to its process group, as Ctrl-C at the terminal sends it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(timeout=scaled(90))
        self._reader.join(timeout=5)
        os.close(self.master)
        return code


def _scrape(url: str) -> dict[str, float]:
    """Sample name with labels -> value, from the Prometheus text format."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _total(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def test_live_table_metrics_snapshots_and_moves_on_a_terminal(tmp_path: Path) -> None:
    data_dir, run_dir = tmp_path / "data", tmp_path / "data" / "run"
    term = Terminal([sys.executable, "-m", "feedmux", "run", "--replay", "--codes", CODES,
                     "--shards", "2", "--replay-rate", "400", "--replay-duration", "6",
                     "--replay-warmup", "2", "--metrics-port", "0", "--min-move", "trades=0.05",
                     "--depth", "5", "--data-dir", str(data_dir)], tmp_path)  # fmt: skip
    try:
        wait_for(lambda: "metrics: http://" in term.text, 60, "the run to start")
        with Subscriber(run_dir=run_dir, trades=False, trade_moves=True) as moves_sub:
            assert moves_sub.wait_ready(scaled(10))
            # The table renders, and redraws in place with new numbers.
            wait_for(lambda: len(set(re.findall(r"received ([\d,]+) ticks \(", term.text))) >= 3,
                     30, "the live table to update")  # fmt: skip
            for heading in ("connections", "msgs/s", "last msg", "shards", "ticks/s", "queue",
                            "last commit", "drops", "silent codes", "recent warnings"):  # fmt: skip
                assert heading in term.text, heading
            assert "\x1b[2K" in term.raw  # lines erased and drawn again, not scrolled
            # Worker logs do not scribble over the table: they go to the run's log file.
            assert (run_dir / "feedmux.log").exists()

            port = re.search(r"metrics: http://127\.0\.0\.1:(\d+)/metrics", term.text)
            assert port is not None
            url = f"http://127.0.0.1:{port.group(1)}/metrics"
            first = _scrape(url)
            wait_for(lambda: _total(_scrape(url), "feedmux_ticks_stored_total")
                     > _total(first, "feedmux_ticks_stored_total"), 20,
                     "the stored counter to move")  # fmt: skip
            later = _scrape(url)
            assert _total(later, "feedmux_ticks_received_total") > 0
            assert _total(later, "feedmux_batch_rows_count") > 0
            assert _total(later, "feedmux_commit_seconds_count") > 0

            status = subprocess.run([sys.executable, "-m", "feedmux", "status", "--json",
                                     "--run-dir", str(run_dir)], capture_output=True, text=True,
                                    timeout=scaled(30), check=False)  # fmt: skip
            assert status.returncode == 0, status.stderr
            shown = json.loads(status.stdout)
            assert shown["running"] and len(shown["shards"]) == 2 and shown["received"] > 0

            # The feed ends (--replay-duration); once every received tick is stored, the
            # snapshot and the store agree.
            def settled() -> bool:
                stats = read_stats(run_dir / "stats")
                receiver = stats.receiver
                if receiver is None:
                    return False
                conns = receiver.connections
                quiet = bool(conns) and all((c.last_message_age_s or 0) > 1.0 for c in conns)
                stored = sum(s.stored for s in stats.shards.values())
                return quiet and receiver.unconfirmed == 0 and stored == receiver.ticks

            wait_for(settled, 60, "the feed to end and every tick to be stored")
            got_moves = []
            while (item := moves_sub.recv(timeout=1.0)) is not None:
                assert isinstance(item, Tick)
                got_moves.append(item)
        _check_snapshot_agrees_with_store(run_dir, data_dir)
        _check_moves(got_moves, data_dir)
    finally:
        code = term.interrupt()
    assert code == 0, term.text[-3000:]
    assert "stopped cleanly" in term.text


def _check_snapshot_agrees_with_store(run_dir: Path, data_dir: Path) -> None:
    stored = read_ticks(data_dir)
    last = stored.loc[stored.groupby("code")["seq"].idxmax()].set_index("code")
    quotes = SnapshotClient(run_dir).get()
    assert set(quotes) == set(last.index)
    for code, quote in quotes.items():
        row = last.loc[code]
        assert (quote.tick.seq, quote.tick.price, quote.tick.volume) == (
            row["seq"], row["price"], row["volume"]), code  # fmt: skip
        assert quote.pub_seq > 0
    books = read_books(data_dir)
    last_books = books.loc[books.groupby("code")["seq"].idxmax()].set_index("code")
    assert {c: q.book.seq for c, q in quotes.items() if q.book is not None} == last_books[
        "seq"].to_dict()  # fmt: skip
    df = SnapshotClient(run_dir).all().set_index("code")
    assert df["seq"].to_dict() == last["seq"].to_dict()
    assert df["bid"].to_dict() == {c: b[0][0] for c, b in last_books["bids"].items()}
    assert df["time"].to_dict() == last["time"].to_dict()
    out = io.StringIO()
    sys_stdout, sys.stdout = sys.stdout, out
    try:
        assert main(["snapshot", "--run-dir", str(run_dir), "--format", "csv"], env={}) == 0
    finally:
        sys.stdout = sys_stdout
    printed = pd.read_csv(io.StringIO(out.getvalue())).set_index("code")
    assert printed["seq"].to_dict() == last["seq"].to_dict()
    assert printed["ask"].to_dict() == {c: a[0][0] for c, a in last_books["asks"].items()}
    assert printed["price"].to_dict() == last["price"].to_dict()


def _check_moves(got: list[Tick], data_dir: Path) -> None:
    """What arrived on MT| is, code by code, what the move rule picks from the stored ticks
    (the tail of it: the subscriber connected after the first ones)."""
    assert got, "no moves published"
    stored = read_ticks(data_dir).sort_values(["code", "seq"])
    assert len(got) < len(stored)  # only the moves, not every tick
    for code, rows in stored.groupby("code"):
        rule = TradeMoves(0.05)
        expected = [r.seq for r in rows.itertuples()
                    if rule.passes(Tick(r.code, r.seq, 0, 0, r.price, 0.0, 0.0, 0))]  # fmt: skip
        received = [t.seq for t in got if t.code == code]
        assert received == expected[len(expected) - len(received) :], code


def _free_ports(count: int) -> int:
    """A base port with ``count`` free ports from it (loopback)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count >= 65535:
            continue
        try:
            held = []
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    raise AssertionError("no run of free ports")


def test_consumer_on_tcp_with_curve_and_the_wrong_key_gets_nothing(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("server", "alice", "mallory"):
        assert main(["keygen", str(keys), "--name", name], env={}) == 0
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "alice.key").write_bytes((keys / "alice.key").read_bytes())
    assert (keys / "server.key_secret").stat().st_mode & 0o077 == 0
    public, internal = _free_ports(4), _free_ports(4)
    run = feedmux("run", "--replay", "--codes", CODES, "--shards", "2", "--replay-rate", "300",
                  "--public", f"tcp://127.0.0.1:{public}",
                  "--internal", f"tcp://127.0.0.1:{internal}",
                  "--curve-secret", str(keys / "server.key_secret"),
                  "--curve-clients", str(allowed), cwd=tmp_path)  # fmt: skip
    endpoint = f"tcp://127.0.0.1:{public}"
    try:
        run_dir = tmp_path / "feedmux-data" / "run"
        wait_for((run_dir / "stats" / "receiver.json").exists, 60, "the run to start")
        with (Subscriber(endpoint=endpoint, shards=2, server_key=keys / "server.key",
                         client_key=keys / "alice.key_secret") as alice,
              Subscriber(endpoint=endpoint, shards=2, server_key=keys / "server.key",
                         client_key=keys / "mallory.key_secret") as mallory):  # fmt: skip
            assert alice.wait_ready(scaled(15))
            tick = alice.recv(timeout=scaled(10))
            assert isinstance(tick, Tick)
            quotes = SnapshotClient(endpoint=endpoint, shards=2, server_key=keys / "server.key",
                                    client_key=keys / "alice.key_secret").get()  # fmt: skip
            assert quotes
            # alice has been receiving all along; mallory's handshake is refused
            assert mallory.recv(timeout=3.0) is None and not mallory.heard_from
            assert alice.recv(timeout=scaled(5)) is not None
        # the internal sockets are on tcp too: the control socket answers there
        listing = subprocess.run([sys.executable, "-m", "feedmux", "subscriptions",
                                  "--run-dir", str(run_dir)], capture_output=True, text=True,
                                 timeout=scaled(30), check=False)  # fmt: skip
        assert listing.returncode == 0 and "600519.SH" in listing.stdout, listing.stderr
        assert json.loads((run_dir / "run.json").read_text())["public"] == endpoint
    finally:
        code, output = stop(run)
    assert code == 0, output
    assert "(CURVE)" in output and "stopped cleanly" in output


def test_a_run_from_a_config_file_and_its_status_afterwards(tmp_path: Path) -> None:
    config = tmp_path / "feedmux.toml"
    config.write_text(f'codes = "{CODES}"\nshards = 1\nreplay = true\nreplay-rate = 200\n'
                      f'stop_after = 4\ndata_dir = "{tmp_path / "data"}"\n')  # fmt: skip
    run = feedmux("run", "--config", str(config), "--shards", "2", cwd=tmp_path)  # flag wins
    output, _ = run.communicate(timeout=scaled(60))  # stop_after in the file ends it
    assert run.returncode == 0, output
    assert "2 shard workers up" in output and "stopped cleanly" in output
    assert len(read_ticks(tmp_path / "data")) > 0
    # The instance is gone: `feedmux status` finds it through the same file, shows its last
    # numbers and says so with exit 1.
    argv = [sys.executable, "-m", "feedmux", "status", "--config", str(config)]
    status = subprocess.run(argv, capture_output=True, text=True, timeout=scaled(30), check=False)
    assert status.returncode == 1, status.stderr
    assert "NOT RUNNING" in status.stdout and "received" in status.stdout
