"""`feedmux tail --nats` in a subprocess against the machine's NATS server: tail's lines from a
stream a shard's publisher filled, the stream and prefix taken as `feedmux run` takes them, a
reader that goes away (`| head`), and start-up errors (exit 2, no password shown)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest

from feedmux import families
from feedmux.ops.cli import _tail_line
from tests.component.test_nats_subscriber import market, publish, publisher
from tests.conftest import scaled
from tests.nats_servers import Target, free_ports, local_target

pytestmark = pytest.mark.integration


@pytest.fixture
def target() -> Iterator[Target]:
    yield from local_target()


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_tail_left() -> Iterator[None]:
    """A test that fails leaves no tail behind (one that hung would wait for ever)."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def tail(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "feedmux", "tail", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})  # fmt: skip
    _started.append(proc)
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=scaled(timeout))
    return proc.returncode, out, err


def test_tail_nats_prints_tail_s_lines_from_the_stream(target: Target) -> None:
    sent = market(3)
    with publisher(target) as shard:
        publish(shard, sent)
    trades = [it for f, _, it in sent if f is families.TRADES]
    code, out, err = finish(tail("--nats", target.url, "--nats-stream", target.stream,
                                 "--nats-prefix", target.prefix, "--start", "all", "--count",
                                 str(len(trades))))  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == [_tail_line(t) for t in trades]  # the whole market: in order
    # Two codes, books and bars too: a consumer each; the prefix and stream from the
    # environment, as `feedmux run` takes them.
    mine = [it for _, c, it in sent if c in ("BRK.B.US", "600519.SH")]
    env = {"FEEDMUX_NATS_STREAM": target.stream, "FEEDMUX_NATS_PREFIX": target.prefix}
    code, out, err = finish(tail("--nats", target.url, "--start", "1", "--books", "--bars",
                                 "--count", str(len(mine)), "BRK.B.US", "600519.SH",
                                 env=env))  # fmt: skip
    assert code == 0, err
    assert Counter(out.splitlines()) == Counter(_tail_line(it) for it in mine)
    us = [it for f, c, it in sent if f is families.TRADES and c.endswith(".US")]
    code, out, err = finish(tail("--nats", target.url, "--start", "all", "--markets", "us",
                                 "--count", str(len(us)), env=env))  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == [_tail_line(t) for t in us]  # one market: one consumer, in order


def test_tail_nats_whose_reader_goes_away_exits_141(target: Target) -> None:
    sent = market(10)
    with publisher(target) as shard:
        publish(shard, sent)
    trades = [it for f, _, it in sent if f is families.TRADES]
    proc = tail("--nats", target.url, "--nats-stream", target.stream, "--nats-prefix",
                target.prefix, "--start", "all")  # fmt: skip
    assert proc.stdout is not None
    # `| head -N` that reads every line: tail has nothing more to write, so only its idle
    # check of the pipe can see the reader gone (a write's EPIPE never comes).
    lines = [proc.stdout.readline() for _ in trades]
    proc.stdout.close()
    assert lines == [_tail_line(t) + "\n" for t in trades]
    assert proc.wait(scaled(20)) == 141  # as a shell shows a SIGPIPE
    assert proc.stderr is not None
    assert proc.stderr.read() == ""  # no traceback


@pytest.mark.parametrize(("args", "said"), [
    (["--nats", "nats://feed:s3cret@127.0.0.1:{port}"], "cannot reach NATS at nats://feed:***@"),
    (["--nats", "nats://s3cret@127.0.0.1:{port}"], "cannot reach NATS at nats://***@"),  # a token
    (["--nats", "{url}", "--nats-stream", "NO_SUCH_STREAM"], "no stream NO_SUCH_STREAM at "),
    (["--nats", "{url}", "--moves"], "--moves: not with --nats"),
    (["--start", "all"], "--start: only with --nats"),
])  # fmt: skip
def test_tail_nats_start_up_errors_exit_2_at_once(target: Target, args: list[str],
                                                  said: str) -> None:  # fmt: skip
    (port,) = free_ports(1)
    code, out, err = finish(tail(*[a.format(port=port, url=target.url) for a in args]), 15)
    assert code == 2, (out, err)
    assert said in err and "s3cret" not in err and "Traceback" not in err
