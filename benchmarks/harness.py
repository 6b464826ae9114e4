"""The benchmark harness: the configurations, their processes (the replay server and a client,
each in a fresh subprocess), and the two runs every configuration gets (``ramp`` and
``latency``); ``benchmarks.pipeline`` runs them and reports, ``benchmarks.cost``,
``benchmarks.scaling`` and ``benchmarks.profile`` reuse the parts."""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import platform
import signal
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks.clients.stats import read_client_stats
from feedmux.shard.stores.commit_log import read_commit_log
from feedmux.stats import read_replay, read_stats
from feedmux.stats.replay import ReplayStats

TOKEN = "benchmark-token-0123456789"
RESULTS = Path(__file__).parent / "results"
SEND = struct.Struct("<qqq")


def environment() -> dict[str, Any]:
    """The machine and the package versions, for the JSON of any benchmark."""
    packages = ["feedmux", "websocket-client", "msgspec", "pyzmq", "websockets", "nats-py"]
    return {
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "platform": platform.platform(),
        "versions": {name: version(name) for name in packages},
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }  # fmt: skip


@dataclass(frozen=True)
class Config:
    name: str
    kind: str  # bare | naive | strong | best | feedmux
    shards: int = 0
    slow: bool = False  # ramp from Params.slow_start: one commit per tick is far slower
    args: tuple[str, ...] = ()  # feedmux run's options beyond the defaults: a variant


CONFIGS = (
    Config("ceiling (bare websocket-client)", "bare"),
    Config("naive (WebSocketApp, json, 1 insert/tick)", "naive", slow=True),
    Config("strong (msgspec, 100-row batches)", "strong"),
    Config("best single process (big reads, msgspec, batches)", "best"),
    Config("feedmux 1 shard", "feedmux", 1),
    Config("feedmux 2 shards", "feedmux", 2),
    Config("feedmux 4 shards", "feedmux", 4),
    Config("feedmux 8 shards", "feedmux", 8),
    # The trade-off --bus-delay-ms offers: fewer, larger bus messages for latency.
    Config("feedmux 8 shards, --bus-delay-ms 20", "feedmux", 8, args=("--bus-delay-ms", "20")),
)


@dataclass(frozen=True)
class Params:
    codes: int = 5430
    ticks: int = 3_500_000  # frames in the data file: enough for the whole ramp
    seed: int = 7
    ramp_start: float = 5000.0
    slow_start: float = 100.0
    ramp_factor: float = 1.25
    step_s: float = 3.0
    gap_s: float = 1.0
    check_after_s: float = 0.5  # a step is kept up with if all is stored this soon after it
    max_steps: int = 18  # up to 5,000 x 1.25^17 = 222k ticks/s
    latency_rate: float = 10_000.0
    latency_s: float = 10.0
    warmup_s: float = 5.0  # lets every connection subscribe (AllTick: 3 s apart) first


TINY = Params(codes=60, ticks=20_000, ramp_start=300.0, slow_start=50.0, ramp_factor=2.0,
              step_s=0.5, gap_s=0.5, max_steps=2, latency_rate=300.0, latency_s=1.0,
              warmup_s=0.5)  # fmt: skip


@dataclass
class Result:
    name: str
    kind: str
    shards: int
    args: list[str] = field(default_factory=list)  # a variant's options (targets skip it)
    max_rate: float = 0.0
    ramp_stop: str = ""
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    burst_s: dict[str, float] = field(default_factory=dict)
    cpu_us_per_tick: dict[str, float] = field(default_factory=dict)
    max_rss_mb: dict[str, float] = field(default_factory=dict)
    lost: int = 0


# -- processes -------------------------------------------------------------------------------
def save_json(path: str, doc: Any) -> None:
    """A benchmark's ``--json`` output (its folder made if missing)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=1))


def env() -> dict[str, str]:
    return {**os.environ, "FEEDMUX_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}


def replay_report(path: Path) -> ReplayStats:
    """The replay server's report (written as soon as it serves: see ``start_server``)."""
    report = read_replay(path)
    if report is None:
        raise RuntimeError(f"the replay server's report {path} is missing or does not decode")
    return report


def wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def pinned(cpus: str | None) -> list[str]:
    """The command prefix that keeps a process (and its children) on ``cpus``, e.g. "0,1"."""
    return ["taskset", "-c", cpus] if cpus else []


def start_server(work: Path, data: Path, codes_file: Path, p: Params, rate: float,
                  *server_args: str, cpus: str | None = None,
                  ) -> tuple[subprocess.Popen[bytes], Path]:  # fmt: skip
    report = work / "server.json"
    proc = subprocess.Popen(
        [*pinned(cpus), sys.executable, "-m", "feedmux", "replay", "--port", "0",
         "--journal", str(data), "--symbols-file", str(codes_file), "--journal-rate", str(rate),
         "--warmup", str(p.warmup_s),
         "--report", str(report), "--log-level", "WARNING", *server_args],
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait(lambda: read_replay(report) is not None, 120, "the replay server")
    return proc, report


def start_client(config: Config, url: str, codes_file: Path, out: Path, latency: bool, *,
                  cpus: str | None = None, stats_ms: int | None = 100,
                  ) -> subprocess.Popen[bytes]:  # fmt: skip
    """The client; feedmux writes its stats files every ``stats_ms`` (None: its default)."""
    if config.kind == "feedmux":
        cmd = ["-m", "feedmux", "run", "--url", url, "--symbols-file", str(codes_file),
               "--shards", str(config.shards), "--data-dir", str(out / "data"),
               "--run-dir", str(out / "run")]  # fmt: skip
        cmd += ["--stats-interval-ms", str(stats_ms)] if stats_ms else []
        cmd += ["--commit-log"] if latency else []
        cmd += config.args
    else:
        cmd = ["-m", f"benchmarks.clients.{config.kind}", "--url", url, "--codes-file",
               str(codes_file), "--out", str(out)]  # fmt: skip
    return subprocess.Popen([*pinned(cpus), sys.executable, *cmd], env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def stop(proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def usage(config: Config, out: Path) -> dict[str, tuple[float, int]]:
    """Each client process's CPU seconds and peak RSS (kB), by process name."""
    if config.kind != "feedmux":
        client = read_client_stats(out)
        return {} if client is None else {config.kind: (client.cpu_s, client.max_rss_kb)}
    return {s.name: (s.cpu_s, s.max_rss_kb) for s in read_stats(out / "run" / "stats").processes()}


def stored(config: Config, out: Path) -> int:
    if config.kind != "feedmux":
        client = read_client_stats(out)
        return 0 if client is None else client.stored
    return sum(s.stored for s in read_stats(out / "run" / "stats").shards.values())


# -- the two runs ----------------------------------------------------------------------------
def ramp(config: Config, p: Params, data: Path, codes_file: Path, work: Path, *,
         cpus: str | None = None, held: Callable[[], int] | None = None,
         ) -> tuple[float, str]:  # fmt: skip
    """The highest server rate whose every frame was stored in time, and why the ramp ended;
    ``cpus`` pins the server and the client (taskset) to those cores; ``held``: how many
    frames a relay holds too (e.g. trades in a NATS stream), which must keep up as well."""
    start = p.slow_start if config.slow else p.ramp_start
    server, report = start_server(work, data, codes_file, p, start, "--ramp",
                                   str(p.ramp_factor), "--step", str(p.step_s), "--gap",
                                   str(p.gap_s), cpus=cpus)  # fmt: skip
    client = start_client(config, replay_report(report).url, codes_file, work / "client", False,
                           cpus=cpus)  # fmt: skip
    best, why = 0.0, f"reached the last step ({p.max_steps})"
    try:
        for k in range(p.max_steps):

            def step_done(k: int = k) -> bool:
                steps = replay_report(report).steps
                return len(steps) > k and steps[k].end_index is not None

            wait(step_done, 120 + p.step_s, f"step {k + 1} of the server")
            step = replay_report(report).steps[k]
            assert step.end_index is not None and step.end_ns is not None
            if step.end_index - step.first_index < 0.9 * step.rate * p.step_s:
                why = f"the server could not send {step.rate:,.0f}/s (CPU-bound)"
                if step.end_index >= (replay_report(report).frames_total or 0):
                    why = "the data file ran out"
                break
            time.sleep(max(0.0, step.end_ns / 1e9 + p.check_after_s - time.time()))
            have, relay = stored(config, work / "client"), held() if held else step.end_index
            if min(have, relay) < step.end_index:
                why = f"fell behind at {step.rate:,.0f}/s"
                if held is not None:  # which one
                    why += f": of {step.end_index:,} sent, {have:,} stored, {relay:,} relayed"
                break
            best = step.rate
    finally:
        stop(client)
        stop(server)
    return best, why


def send_log(path: Path) -> Iterator[tuple[int, int, int]]:
    """The server's ``--write-times`` records: (send_ns, first frame index, frames) per write."""
    data = path.read_bytes()
    for at in range(0, len(data) - SEND.size + 1, SEND.size):
        yield SEND.unpack_from(data, at)


def send_times(path: Path) -> tuple[array[int], array[int]]:
    """(first index, send_ns) per server write, for a bisect from frame index to send time."""
    firsts, times = array("q"), array("q")
    for send_ns, first, _count in send_log(path):
        firsts.append(first)
        times.append(send_ns)
    return firsts, times


def frames_between(path: Path, t0_ns: int, t1_ns: int) -> int:
    """Frames the server wrote from ``t0_ns`` (included) to ``t1_ns``."""
    return sum(count for send_ns, _first, count in send_log(path) if t0_ns <= send_ns < t1_ns)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values.sort()

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {"p50": at(0.5), "p99": at(0.99), "p99.9": at(0.999), "max": round(values[-1], 3)}


def latency(config: Config, p: Params, data: Path, codes_file: Path, work: Path, *,
            result: Result) -> None:  # fmt: skip
    """Burst, then a fixed rate: latency percentiles, burst times, CPU and RSS per process."""
    send_log = work / "send.bin"
    server, report = start_server(work, data, codes_file, p, p.latency_rate, "--burst",
                                   "--write-times", str(send_log))  # fmt: skip
    out = work / "client"
    client = start_client(config, replay_report(report).url, codes_file, out, True)
    subscriber = None
    arrivals_file = work / "arrivals.bin"
    try:
        if config.kind == "feedmux":
            wait((out / "run" / "run.json").exists, 60, "feedmux to start")
            subscriber = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.subscriber", "--run-dir", str(out / "run"),
                 "--shards", str(config.shards), "--out", str(arrivals_file)], env=env(),
            )  # fmt: skip
            wait(arrivals_file.with_suffix(".ready").exists, 60, "the subscriber")
        wait(lambda: replay_report(report).feed == "running", 120, "the feed to start")
        time.sleep(p.latency_s)
        sent = replay_report(report).frame_index
        server.send_signal(signal.SIGUSR1)  # end the feed; what was sent must all arrive
        wait(lambda: replay_report(report).feed == "done", 30, "the feed to end")
        sent = replay_report(report).frame_index
        with contextlib.suppress(RuntimeError):  # what is missing then is counted as lost
            wait(lambda: stored(config, out) >= sent, 60, "the client to store everything")
        result.lost = sent - stored(config, out)
    finally:
        if subscriber is not None:
            stop(subscriber)
        stop(client)
        stop(server)
    measure(config, p, sent, work, result)


def measure(config: Config, p: Params, sent: int, work: Path, result: Result) -> None:
    firsts, times = send_times(work / "send.bin")

    def sent_at(index: int) -> int:
        return times[bisect.bisect_right(firsts, index) - 1]

    out = work / "client"
    logs = sorted((out / "run" / "commits").glob("*.bin")) if config.kind == "feedmux" else [
        out / "commits.bin"]  # fmt: skip
    commits = [(ns, seq) for log in logs if log.exists() for ns, seqs in read_commit_log(log)
               for seq in seqs]  # fmt: skip
    steady_from = p.codes + int(p.latency_rate)  # skip the burst and the first second after
    arrivals = array("q")
    if (work / "arrivals.bin").exists():
        arrivals.frombytes((work / "arrivals.bin").read_bytes())
    published = list(zip(arrivals[::2], arrivals[1::2], strict=True))
    for what, events in (("commit", commits), ("publish", published)):
        if not events:
            continue
        steady = [(ns - sent_at(seq)) / 1e6 for ns, seq in events if seq >= steady_from]
        result.latency_ms[what] = percentiles(steady)
        burst = [ns for ns, seq in events if seq < p.codes]
        if len(burst) == p.codes:
            result.burst_s[what] = round((max(burst) - sent_at(0)) / 1e9, 3)
    for name, (cpu_s, max_rss_kb) in usage(config, out).items():
        result.cpu_us_per_tick[name] = round(cpu_s / max(1, sent) * 1e6, 2)
        result.max_rss_mb[name] = round(max_rss_kb / 1024, 1)
