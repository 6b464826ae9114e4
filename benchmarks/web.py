"""The web gateway (``feedmux web``): its CPU per update and per page, and the lag from the
vendor to the browser, at 10,000 ticks/s (issue: "the web gateway's CPU per update and per
client, and the end-to-end lag from vendor send to the browser's receipt").

    python -m benchmarks.web [--rate R] [--seconds S] [--pages 0,1,10,100] [--shards N]
                             [--browser-seconds S] [--no-browser] [--seed S] [--quick]
                             [--json PATH]

Method. One ``feedmux run --replay`` plays the seeded synthetic A-share market (5,430 codes)
at ``--rate`` ticks/s for the whole benchmark, with ``--min-move trades=0.01`` so that it
publishes both feeds a gateway can follow: every trade (``T|``) and the moves (``MT|``). It is
the load, not what is measured. Then, each in fresh subprocesses:

1. The gateway: for each feed and each page count, a new ``feedmux web --feed F``; once a
   probe page sees it caught up (an update whose newest trade is under a second old), N
   simulated pages connect (``benchmarks.clients.web_pages``: asyncio websockets clients in
   one process, each decoding every message as a page does). Over a window of ``--seconds``
   the gateway's CPU is read from ``/proc/<pid>/stat`` (utime + stime, all threads) and that
   of its main thread, the event loop, from ``/proc/<pid>/task/<pid>/stat``: the loop takes
   the changed lines (a code's line of the page's table: the protocol's ``Line``), encodes
   each update and writes it to the pages; the other threads (its Subscriber's, ZMQ's) take
   in the ticks. So: % of a core, the ingest's µs per tick the pipeline received, the loop's
   ms per update (the gateway's /stats count the updates and their lines) and µs per line
   sent (lines times pages), and over the page counts the marginal CPU of a page
   (least-squares slopes). The pages count each update sent in the window (by its
   ``server_ms``) and its lines: lines/s and updates/s per page, and whether each page got
   every update the gateway sent (the gateway numbers them; a page it skipped for being
   behind gets a snapshot instead, counted apart). /proc counts CPU in 10 ms ticks: ±0.1% of
   a core over a 10 s window.
2. What a competent user writes instead (``benchmarks.clients.web_forward``): one process
   with a whole-market ``feedmux.Subscriber`` that forwards every tick to every page as JSON,
   encoded once, ``broadcast`` to all, no conflation. Same load and page counts: its CPU (the
   loop: encoding and sends), and whether it keeps up: each page's count of the ticks received
   in the window (by their ``recv_ms``) against the forwarder's own count, what arrived by
   ``grace`` after it.
3. The browser: headless chromium (selenium) opens ``http://127.0.0.1:PORT/?lag=1`` of a
   gateway on the trades feed; the page then notes, for every line it applies,
   ``Date.now() - line.recv_ms`` in ``window.feedmux.lags``; those of a ``--browser-seconds``
   window give p50/p90/p99/max. The window holds no minute's close: then every code's line
   comes again with its bar, unchanged ``recv_ms``, and the hook would count the time since
   each code's last trade (seconds for a quiet code) as lag.

Lag is measured from ``recv_ms``, when feedmux read the trade off the replay server's socket
on the same machine (the server's send is not stamped; on loopback it comes just before),
to the page's receipt (the simulated pages: the message's arrival, for the lines with a new
trade; the browser: when the line is applied). A line is sent at the next push after its
trade, so lag includes up to one web interval (250 ms) of conflation wait by design: about
half of one on average.

The machine is shared: every window also records the CPU the pages, the pipeline and the rest
of the machine took (``others_pct``: all busy CPU minus this benchmark's processes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from websockets.sync.client import connect

from benchmarks import procs
from benchmarks.clients.web_pages import quantiles
from benchmarks.data import codes_for
from benchmarks.harness import env, environment, save_json, stop, wait
from feedmux import Subscriber
from feedmux.model import Tick
from feedmux.stats import read_stats
from feedmux.web.protocol import Update, WebStats, server_decoder, stats_decoder

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000")  # fmt: skip
FEEDS = ("trades", "moves")
MIN_MOVE = 0.01
ALL_CODES = 5430  # the synthetic A-share market of feedmux run --replay
BAR_S = 3.0  # a minute's bars are all published this soon after it
NOISY_PCT = 50.0  # the rest of the machine's CPU in a window, beyond which the table says so
LOOP = "server-loop"  # the server's main thread, a part of its CPU
SERVING = re.compile(r"feedmux web: (?:serving )?http://[^:/]+:(\d+)/")
STOPPED = re.compile(r"stopped \(([\d,]+) updates, ([\d,]+) lines to ([\d,]+) pages?\)")


@dataclass(frozen=True)
class Params:
    rate: float = 10_000.0  # ticks/s of the replay server
    seconds: float = 10.0  # each CPU window
    pages: tuple[int, ...] = (0, 1, 10, 100)
    browser_seconds: float = 15.0
    browser: bool = True
    shards: int = 2
    codes: int = ALL_CODES
    seed: int = 7
    interval_ms: int = 250  # feedmux web --web-interval (its default)
    settle_s: float = 2.0  # from every page connected to the window
    grace_s: float = 2.0  # after the window, for what was sent in it to arrive


QUICK = Params(rate=1000.0, seconds=1.5, pages=(0, 2), browser_seconds=2.0, shards=1,
               codes=300, settle_s=0.5, grace_s=1.0)  # fmt: skip


@dataclass
class Window:
    """One measured window: a server (``gateway`` or ``forward``), a feed, N pages."""

    server: str
    feed: str
    pages: int
    seconds: float = 0.0  # the window as sampled
    ticks_per_s: float = 0.0  # the pipeline's receiver, in the window
    cpu_pct: float = 0.0  # the server's, % of one core
    loop_pct: float = 0.0  # of it, its event loop's thread: updates and pages (forward: sends)
    us_per_tick: float = 0.0  # its CPU per tick the pipeline received
    feed_us_per_tick: float = 0.0  # that of its other threads: the Subscriber's, ZMQ's
    ms_per_update: float | None = None  # gateway: its loop's CPU per update sent to all pages
    sent_updates_per_s: float | None = None  # gateway: updates it sent (its /stats)
    lines_per_update: float | None = None  # gateway: lines in each (its /stats)
    us_per_line: float | None = None  # its loop's CPU per line (forward: tick) sent to a page
    lines_per_s: float | None = None  # received per page, mean (forward: ticks)
    updates_per_s: float | None = None  # received per page, mean (forward: messages = ticks)
    updates_sent: int | None = None  # gateway: updates in the window (forward: ticks)
    every_update: bool | None = None  # each page got every update (forward: every tick)
    missing: int = 0  # over all pages: updates (ticks) sent in the window and not received
    received_min_pct: float | None = None  # the least any page received of what was sent
    snapshots: int = 0  # gateway: pages skipped for being behind, then sent a snapshot
    closed: int = 0  # pages the server closed
    delivery_ms: dict[str, float] = field(default_factory=dict)  # update arrival - server_ms
    lag_ms: dict[str, float] = field(default_factory=dict)  # the first page's new trades
    repeats_per_s: float | None = None  # lines it got again with no new trade (bars)
    pipeline_lag_ms: dict[str, float] = field(default_factory=dict)  # PipelineLag's
    pages_cpu_pct: float = 0.0
    pipeline_cpu_pct: float = 0.0
    others_pct: float = 0.0  # the rest of the machine (of one core)
    rss_mb: float = 0.0  # the server's at the window's end
    start_s: float | None = None  # gateway: from its start to serving
    log: str = ""  # the gateway's stop line, the forwarder's gaps
    error: str = ""  # why the window was not measured


# -- processes -------------------------------------------------------------------------------
class Processes:
    """Every process the benchmark starts, stopped (newest first) however it ends: each in a
    session of its own, so a Ctrl-C reaches only the benchmark, which stops them in order."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, env=env(), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
        stop(proc, timeout)
        with contextlib.suppress(ValueError):
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # the finally blocks stop what was started


def receiver_ticks(run_dir: Path) -> int:
    receiver = read_stats(run_dir / "stats").receiver
    return receiver.ticks if receiver is not None else 0


def start_pipeline(p: Params, ps: Processes, work: Path) -> subprocess.Popen[bytes]:
    """``feedmux run --replay`` at ``p.rate``, once every code is subscribed and the ticks
    flow at the rate."""
    cmd = [sys.executable, "-m", "feedmux", "run", "--replay", "--replay-rate", str(p.rate),
           "--replay-warmup", "1", "--seed", str(p.seed), "--shards", str(p.shards),
           "--min-move", f"trades={MIN_MOVE}", "--data-dir", str(work / "data"),
           "--run-dir", str(work / "run"), "--display", "plain",
           "--stats-interval-ms", "100"]  # fmt: skip
    if p.codes < ALL_CODES:
        codes_file = work / "codes.txt"
        codes_file.write_text("\n".join(codes_for(p.codes, p.seed)) + "\n")
        cmd += ["--symbols-file", str(codes_file)]
    run = ps.start(cmd, work / "run.log")
    stats = work / "run" / "stats"

    def subscribed() -> bool:
        if run.poll() is not None:
            raise RuntimeError(f"feedmux run exited: {(work / 'run.log').read_text()[-2000:]}")
        receiver = read_stats(stats).receiver
        return receiver is not None and receiver.codes_subscribed >= p.codes

    wait(subscribed, 120, "feedmux run to subscribe every code")

    def flowing() -> bool:
        before = receiver_ticks(work / "run")
        time.sleep(1.0)
        return receiver_ticks(work / "run") - before >= 0.8 * p.rate

    wait(flowing, 60, f"the ticks to flow at {p.rate:,.0f}/s")
    return run


class PipelineLag:
    """A whole-market Subscriber on a thread of this process: each trade's arrival minus its
    ``recv_ns``, for the trades received in a window. What the pipeline itself adds, under
    the lag a page sees (it stalls at times on a shared machine)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._window = (0, 0)  # recv_ns from, to
        self._lags: array[float] = array("d")
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline-lag", daemon=True)

    def __enter__(self) -> PipelineLag:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the lag subscriber heard from no shard in 60 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with Subscriber(run_dir=self.run_dir, on_gap="count") as sub:
            if sub.wait_ready(60):
                self._ready.set()
            while not self._stop.is_set():
                tick = sub.recv(timeout=0.2)
                if isinstance(tick, Tick) and self._window[0] <= tick.recv_ns < self._window[1]:
                    self._lags.append((time.time_ns() - tick.recv_ns) / 1e6)

    def begin(self, t0: float, seconds: float) -> None:
        self._lags = array("d")
        self._window = (int(t0 * 1e9), int((t0 + seconds) * 1e9))

    def end(self) -> dict[str, float]:
        """The window's percentiles (call after it: what it received arrives meanwhile)."""
        time.sleep(max(0.0, self._window[1] / 1e9 + 0.5 - time.time()))
        return quantiles(list(self._lags))


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    start_s: float  # from its start to serving (it serves once it has loaded the market)


def start_gateway(p: Params, ps: Processes, work: Path, feed: str, name: str) -> Gateway:
    log = work / f"{name}.log"
    began = time.monotonic()
    gateway = ps.start([sys.executable, "-m", "feedmux", "web", "--port", "0", "--run-dir",
                        str(work / "run"), "--data-dir", str(work / "data"), "--feed", feed,
                        "--web-interval", str(p.interval_ms)], log)  # fmt: skip
    port: list[int] = []

    def serving() -> bool:
        if gateway.poll() is not None:
            raise RuntimeError(f"feedmux web exited: {log.read_text()[-2000:]}")
        found = SERVING.search(log.read_text())
        if found:
            port.append(int(found[1]))
        return bool(found)

    wait(serving, 60, "feedmux web to serve")
    start_s = time.monotonic() - began
    caught_up(port[0])
    return Gateway(gateway, port[0], log, round(start_s, 2))


def caught_up(port: int, timeout: float = 60) -> None:
    """A probe page until an update's newest trade is under a second old: the gateway has
    read the store, taken its snapshot and caught up with the feed."""
    deadline = time.monotonic() + timeout
    with connect(f"ws://127.0.0.1:{port}/ws", max_size=None, compression=None) as ws:
        while time.monotonic() < deadline:
            message = server_decoder.decode(ws.recv(timeout=timeout))
            if (isinstance(message, Update) and message.lines
                    and time.time() * 1000 - message.newest_ms < 1000):  # fmt: skip
                return
    raise RuntimeError(f"feedmux web did not catch up with the feed in {timeout:g} s")


@dataclass
class Sample:
    wall: float
    ticks: int
    machine_s: float
    cpu: dict[str, float]  # by role: server, pages, pipeline, browser
    web: WebStats | None = None  # the gateway's /stats


def cpu_of(pids: list[int]) -> float:
    return sum(s for s in (procs.cpu_s(pid) for pid in pids) if s is not None)


def main_thread_s(pid: int) -> float:
    """CPU seconds of ``pid``'s main thread: a server's event loop (the gateway's updates and
    pages; the forwarder's encoding and sends), apart from its Subscriber's thread and ZMQ's."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * procs.TICK_S


@dataclass
class Load:
    """The running pipeline: its run directory, its processes, the lag subscriber."""

    run_dir: Path
    pipeline: list[int]  # feedmux run's tree (its replay server included)
    lag: PipelineLag

    def roles(self, **servers: list[int]) -> dict[str, list[int]]:
        """The processes whose CPU a window reads: ``servers`` (server, pages, browser), the
        pipeline's and this one's (the lag subscriber)."""
        return {**servers, "pipeline": self.pipeline, "bench": [os.getpid()]}


def web_stats(port: int) -> WebStats:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as reply:
        return stats_decoder.decode(reply.read())


def take(load: Load, roles: dict[str, list[int]], port: int | None = None) -> Sample:
    """The CPU of ``roles`` now; with ``port``, the gateway's /stats as well."""
    cpu = {role: cpu_of(pids) for role, pids in roles.items()}
    cpu[LOOP] = main_thread_s(roles["server"][0])  # a part of "server"
    sample = Sample(time.monotonic(), receiver_ticks(load.run_dir), procs.machine_busy_s(), cpu)
    sample.web = web_stats(port) if port else None
    return sample


def window(t0: float, seconds: float, load: Load, roles: dict[str, list[int]],
           port: int | None = None) -> tuple[Sample, Sample]:  # fmt: skip
    """Samples at ``t0`` and ``t0 + seconds`` (epoch seconds)."""
    load.lag.begin(t0, seconds)
    time.sleep(max(0.0, t0 - time.time()))
    first = take(load, roles, port)
    time.sleep(max(0.0, t0 + seconds - time.time()))
    return first, take(load, roles, port)


def fill(w: Window, a: Sample, b: Sample) -> float:
    """The CPU columns of ``w`` from two samples; returns the server's CPU seconds."""
    wall = b.wall - a.wall
    used = {role: b.cpu[role] - a.cpu.get(role, 0.0) for role in b.cpu}
    ticks = b.ticks - a.ticks
    w.seconds = round(wall, 2)
    w.ticks_per_s = round(ticks / wall, 1)
    w.cpu_pct = round(used["server"] / wall * 100, 2)
    w.loop_pct = round(used[LOOP] / wall * 100, 2)
    w.us_per_tick = round(used["server"] / max(1, ticks) * 1e6, 3)
    w.feed_us_per_tick = round((used["server"] - used[LOOP]) / max(1, ticks) * 1e6, 3)
    w.pages_cpu_pct = round(used.get("pages", 0.0) / wall * 100, 1)
    w.pipeline_cpu_pct = round(used["pipeline"] / wall * 100, 1)
    ours = sum(s for role, s in used.items() if role != LOOP)
    w.others_pct = round(max(0.0, b.machine_s - a.machine_s - ours) / wall * 100, 1)
    if a.web is not None and b.web is not None:  # the gateway's own count of what it sent
        updates = b.web.updates - a.web.updates
        w.sent_updates_per_s = round(updates / wall, 2)
        w.lines_per_update = round((b.web.lines_sent - a.web.lines_sent) / max(1, updates), 1)
        w.ms_per_update = round(used[LOOP] / max(1, updates) * 1e3, 3)
    return used[LOOP]


def rss_mb(pid: int) -> float:
    return round((procs.rss_bytes(pid) or 0) / 2**20, 1)


def pages_process(p: Params, ps: Processes, work: Path, *, name: str, url: str, count: int,
                  forward: bool) -> tuple[subprocess.Popen[bytes], Path, float]:  # fmt: skip
    """The simulated pages, once all are in: the process, its report's path, the window's
    start (epoch seconds)."""
    out = work / f"{name}-pages.json"
    cmd = [sys.executable, "-m", "benchmarks.clients.web_pages", "--url", url, "--pages",
           str(count), "--seconds", str(p.seconds), "--settle", str(p.settle_s), "--grace",
           str(p.grace_s), "--out", str(out)]  # fmt: skip
    proc = ps.start([*cmd, *(["--forward"] if forward else [])], work / f"{name}-pages.log")
    ready = Path(f"{out}.ready")

    def in_() -> bool:
        if proc.poll() is not None and not ready.exists():
            log = (work / f"{name}-pages.log").read_text()[-2000:]
            raise RuntimeError(f"the pages exited: {log}")
        return ready.exists() and bool(ready.read_text())

    wait(in_, 120, f"{count} pages to connect")
    return proc, out, float(ready.read_text())


def pages_report(ps: Processes, proc: subprocess.Popen[bytes], out: Path,
                 p: Params) -> dict[str, Any]:  # fmt: skip
    wait(lambda: proc.poll() is not None, p.grace_s + 60, "the pages' report")
    ps.stop(proc)
    if not out.exists():
        raise RuntimeError(f"the pages wrote no report ({out})")
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def per_page(w: Window, report: dict[str, Any], sent: int, line_s: float) -> None:
    """The pages' columns of ``w``; ``sent``: updates (ticks) the server sent in the window;
    ``line_s``: its event loop's CPU seconds, for its cost per line sent."""
    pages = report["pages"]
    seconds = report["seconds"]
    lines = sum(pg["lines"] for pg in pages)
    w.lines_per_s = round(lines / len(pages) / seconds, 1)
    w.updates_per_s = round(sum(pg["updates"] for pg in pages) / len(pages) / seconds, 2)
    w.updates_sent = sent
    w.missing = sum(max(0, sent - pg["updates"]) if w.server == "forward" else pg["missing"]
                    for pg in pages)  # fmt: skip
    w.received_min_pct = round(min(pg["updates"] for pg in pages) / max(1, sent) * 100, 2)
    # Nothing sent in the window (the pipeline itself behind): nothing to have got.
    w.every_update = (sent > 0 and w.missing == 0
                      and all(not pg["closed"] for pg in pages))  # fmt: skip
    w.snapshots = sum(pg["snapshots"] for pg in pages)
    w.closed = sum(1 for pg in pages if pg["closed"])
    w.us_per_line = round(line_s / lines * 1e6, 3) if lines else None
    w.delivery_ms = report["delivery_ms"]
    w.lag_ms = report["lag_ms"]
    w.repeats_per_s = round(pages[0]["repeats"] / seconds, 1)


# -- the three measurements ------------------------------------------------------------------
def measure_gateway(p: Params, ps: Processes, work: Path, load: Load, *,
                    feed: str, count: int) -> Window:  # fmt: skip
    name = f"gateway-{feed}-{count}"
    started = start_gateway(p, ps, work, feed, name)
    gateway, port, log = started.proc, started.port, started.log
    w = Window("gateway", feed, count, start_s=started.start_s)
    roles = load.roles(server=[gateway.pid])
    pages = None
    try:
        if count:
            pages, out, t0 = pages_process(p, ps, work, name=name, count=count, forward=False,
                                           url=f"ws://127.0.0.1:{port}/ws")  # fmt: skip
            roles["pages"] = [pages.pid]
        else:
            t0 = math.ceil((time.time() + p.settle_s) * 10) / 10
        a, b = window(t0, p.seconds, load, roles, port)
        server_s = fill(w, a, b)
        w.pipeline_lag_ms = load.lag.end()
        w.rss_mb = rss_mb(gateway.pid)
        if pages is not None:
            report = pages_report(ps, pages, out, p)
            per_page(w, report, report["updates_sent"], server_s)
    finally:
        if pages is not None:
            ps.stop(pages)
        ps.stop(gateway)
    stopped = STOPPED.search(log.read_text())
    w.log = stopped[0] if stopped else log.read_text()[-300:]
    return w


def measure_forward(p: Params, ps: Processes, work: Path, load: Load,
                    count: int) -> Window:  # fmt: skip
    name = f"forward-{count}"
    ready, out = work / f"{name}.port", work / f"{name}.json"
    forward = ps.start([sys.executable, "-m", "benchmarks.clients.web_forward", "--run-dir",
                        str(work / "run"), "--ready", str(ready), "--out", str(out),
                        "--pages", str(count)], work / f"{name}.log")  # fmt: skip

    def up() -> bool:
        if forward.poll() is not None:
            raise RuntimeError(f"the forwarder exited: {(work / f'{name}.log').read_text()}")
        return ready.exists() and bool(ready.read_text())

    wait(up, 60, "the forwarder to subscribe")
    w = Window("forward", "trades", count)
    roles = load.roles(server=[forward.pid])
    pages = None
    report = None
    try:
        if count:
            url = f"ws://127.0.0.1:{ready.read_text()}/"
            pages, pages_out, t0 = pages_process(p, ps, work, name=name, url=url, count=count,
                                                 forward=True)  # fmt: skip
            roles["pages"] = [pages.pid]
        else:
            t0 = math.ceil((time.time() + p.settle_s) * 10) / 10
        a, b = window(t0, p.seconds, load, roles)
        server_s = fill(w, a, b)
        w.pipeline_lag_ms = load.lag.end()
        w.rss_mb = rss_mb(forward.pid)
        if pages is not None:
            report = pages_report(ps, pages, pages_out, p)
    finally:
        if pages is not None:
            ps.stop(pages)
        ps.stop(forward)
    counts = json.loads(out.read_text())
    bucket = counts["bucket_ns"] / 1e9
    first, last = round(t0 / bucket), round((t0 + p.seconds) / bucket)
    sent = sum(n for k, n in counts["buckets"].items() if first <= int(k) < last)
    w.log = f"{counts['gaps']:,} ticks missed by its Subscriber (gaps)"
    if report is not None:
        per_page(w, report, sent, server_s)
    return w


def measure_browser(p: Params, ps: Processes, work: Path, load: Load) -> dict[str, Any]:
    """Lag into headless chromium: ``window.feedmux.lags`` of the page opened with ``?lag=1``
    (what it noted over a window of ``p.browser_seconds``)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        return {"skipped": f"{' and '.join(missing)} not installed"}
    from selenium import webdriver  # noqa: PLC0415 (a dev dependency: only for this part)
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    started = start_gateway(p, ps, work, "trades", "gateway-browser")
    gateway, port = started.proc, started.port
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROME_FLAGS:
        options.add_argument(arg)
    service = Service(CHROMEDRIVER, log_output=str(work / "chromedriver.log"),
                      popen_kw={"start_new_session": True})  # fmt: skip
    driver = None
    try:
        driver = chrome = webdriver.Chrome(service=service, options=options)
        chrome.get(f"http://127.0.0.1:{port}/?lag=1")
        count = "return (window.feedmux && window.feedmux.lags) ? window.feedmux.lags.length : -1"
        wait(lambda: chrome.execute_script(count) > 0, 60, "the page's first lags")
        browser_pids = procs.descendants(service.process.pid)
        roles = load.roles(server=[gateway.pid], browser=browser_pids)
        time.sleep(p.settle_s)
        time.sleep(between_bars(p.browser_seconds))
        t0 = time.time()
        first = chrome.execute_script(count)
        perf0 = chrome.execute_script(PERF)
        load.lag.begin(t0, p.browser_seconds)
        a = take(load, roles)
        time.sleep(p.browser_seconds)
        lags = chrome.execute_script("return window.feedmux.lags.slice(arguments[0])", first)
        perf1 = chrome.execute_script(PERF)
        b = take(load, roles)
        w = Window("browser", "trades", 1)
        fill(w, a, b)
        pipeline_lag = load.lag.end()
        used = b.cpu["browser"] - a.cpu["browser"]
        result = {
            "window_s": round(b.wall - a.wall, 2), "t0": t0, "lines": len(lags),
            "spans_minute": t0 % 60 + (b.wall - a.wall) >= 60 or t0 % 60 < BAR_S,
            "lines_per_s": round(len(lags) / (b.wall - a.wall), 1),
            "lag_ms": quantiles([float(x) for x in lags]),
            "gateway_cpu_pct": w.cpu_pct, "browser_cpu_pct": round(used / w.seconds * 100, 1),
            "pipeline_cpu_pct": w.pipeline_cpu_pct, "others_pct": w.others_pct,
            "ticks_per_s": w.ticks_per_s, "pipeline_lag_ms": pipeline_lag,
            "browser": chrome.capabilities.get("browserVersion", ""),
            "page": page_perf(perf0, perf1, b.wall - a.wall),
        }  # fmt: skip
    finally:
        if driver is not None:
            left = procs.descendants(service.process.pid)[1:]
            with contextlib.suppress(Exception):
                driver.quit()
            for pid in left:  # quit ends chromium; what survived it is ended by its pid
                with contextlib.suppress(OSError):
                    if b"chrom" in Path(f"/proc/{pid}/cmdline").read_bytes():  # still ours
                        os.kill(pid, signal.SIGKILL)
        elif getattr(service, "process", None) is not None:
            service.stop()
        ps.stop(gateway)
    return result


def between_bars(seconds: float) -> float:
    """How long to wait for a window of ``seconds`` that holds no minute's close. Then every
    code's line is sent again with its bar, and the page's hook counts each as a lag: the time
    since that code's last trade, seconds for a quiet code, not a delay (the simulated pages
    tell these lines apart by their unchanged ``recv_ms``)."""
    at = time.time() % 60
    if seconds > 60 - 2 * BAR_S:
        return 0.0  # no such window
    if at < BAR_S:
        return BAR_S - at
    return 0.0 if at + seconds < 60 else 60 - at + BAR_S


# The page's own counters (static/app.js): a render is one frame's work, an apply the parsing
# and applying of one message.
PERF = """const p = window.feedmux.perf; return {renders: p.renders, render_ms: p.renderMsTotal,
    render_max_ms: p.renderMsMax, messages: p.messages, apply_ms: p.applyMsTotal,
    apply_max_ms: p.applyMsMax};"""


def page_perf(a: dict[str, float], b: dict[str, float], seconds: float) -> dict[str, float]:
    """The page's work over the window: renders and messages a second, their mean ms; the
    longest of each since the page opened."""
    renders, messages = b["renders"] - a["renders"], b["messages"] - a["messages"]
    return {
        "renders_per_s": round(renders / seconds, 1),
        "render_ms_mean": round((b["render_ms"] - a["render_ms"]) / max(1, renders), 2),
        "render_ms_max": round(b["render_max_ms"], 1),
        "messages_per_s": round(messages / seconds, 2),
        "apply_ms_mean": round((b["apply_ms"] - a["apply_ms"]) / max(1, messages), 2),
        "apply_ms_max": round(b["apply_max_ms"], 1),
        "busy_pct": round((b["render_ms"] - a["render_ms"] + b["apply_ms"] - a["apply_ms"])
                          / seconds / 10, 1),  # of the page's main thread
    }  # fmt: skip


# -- the report ------------------------------------------------------------------------------
def slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def marginal(windows: list[Window]) -> dict[str, dict[str, Any]]:
    """Per server and feed: the least-squares slope of CPU over pages (% of a core a page), of
    the whole process and of its event loop (the ingest does not depend on pages but is the
    noisier), and the loop's per line (tick) a page receives (µs); over the windows that kept
    up (a server behind does less than its pages need: its CPU would flatten the slope)."""
    out: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys((w.server, w.feed) for w in windows):
        ws = [w for w in windows if (w.server, w.feed) == key and not w.error
              and w.every_update is not False]  # fmt: skip
        if len({w.pages for w in ws}) < 2:
            continue
        pages = [float(w.pages) for w in ws]
        pct = slope(pages, [w.cpu_pct for w in ws])
        loop = slope(pages, [w.loop_pct for w in ws])
        lines = [w.lines_per_s for w in ws if w.lines_per_s]
        per_line = loop / 100 / (sum(lines) / len(lines)) * 1e6 if lines else 0.0
        out[f"{key[0]} {key[1]}"] = {"pct_per_page": round(pct, 4),
                                     "loop_pct_per_page": round(loop, 4),
                                     "loop_us_per_line_per_page": round(per_line, 3),
                                     "pages": [w.pages for w in ws]}  # fmt: skip
    return out


def commit() -> str:
    head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                          capture_output=True, text=True, check=False)  # fmt: skip
    return head.stdout.strip()


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pcts(d: dict[str, float], keys: tuple[str, ...] = ("p50", "p99")) -> str:
    return "/".join(f"{d[k]:.0f}" for k in keys) if d else "-"


def table(doc: dict[str, Any]) -> str:
    p = doc["params"]
    lines = [
        f"feedmux web at {doc['commit']}: {p['rate']:,.0f} ticks/s into {p['codes']:,} codes "
        f"({p['shards']} shards, --min-move trades={MIN_MOVE}), web interval "
        f"{p['interval_ms']} ms, windows of {p['seconds']:g} s",
        f"{'server':<8}{'feed':<7}{'pages':>6}{'ticks/s':>8}{'CPU %':>7}{'loop %':>7}"
        f"{'us/tick':>8}{'ms/upd':>7}{'lines/upd':>10}{'us/line':>8}{'lines/s/pg':>11}"
        f"{'upd/s/pg':>9}  "
        f"{'every update':<14}{'deliver ms':>11}{'lag ms':>10}{'pipe lag':>9}{'pages %':>8}"
        f"{'pipe %':>7}{'others %':>9}",
    ]  # fmt: skip
    for w in doc["windows"]:
        if w["every_update"] is None:
            every = "-"
        elif not w["updates_sent"]:
            every = "NO: none sent"
        elif w["every_update"]:
            every = "yes"
        else:
            every = f"NO ({w['received_min_pct']:.0f}%)"
        extra = f" +{w['snapshots']} snap" if w["snapshots"] else ""
        extra += f" {w['closed']} closed" if w["closed"] else ""
        if w["error"]:
            lines.append(f"{w['server']:<8}{w['feed']:<7}{w['pages']:>6}  not measured: "
                         f"{w['error'].splitlines()[0][:120]}")  # fmt: skip
            continue
        lines.append(
            f"{w['server']:<8}{w['feed']:<7}{w['pages']:>6}{w['ticks_per_s']:>8,.0f}"
            f"{w['cpu_pct']:>7.1f}{w['loop_pct']:>7.1f}{w['feed_us_per_tick']:>8.2f}"
            f"{_num(w['ms_per_update'], '.2f'):>7}"
            f"{_num(w['lines_per_update'], ',.0f'):>10}{_num(w['us_per_line'], '.2f'):>8}"
            f"{_num(w['lines_per_s'], ',.0f'):>11}{_num(w['updates_per_s'], ',.1f'):>9}  "
            f"{every + extra:<14}{_pcts(w['delivery_ms']):>11}{_pcts(w['lag_ms']):>10}"
            f"{_pcts(w['pipeline_lag_ms']):>9}{w['pages_cpu_pct']:>8.0f}"
            f"{w['pipeline_cpu_pct']:>7.0f}{w['others_pct']:>9.0f}"
        )  # fmt: skip
    lines += [
        "CPU %: the server process, of one core; loop %: of it, its event loop's thread "
        "(updates and pages; forward: encoding and sends); us/tick: the rest (its Subscriber's "
        "and ZMQ's threads) per tick the pipeline received",
        "ms/upd, lines/upd: the loop's CPU per update the gateway sent, and the lines in each "
        "(its /stats); us/line: the loop's CPU per line sent, lines x pages (forward: per tick "
        "sent to a page)",
        "lines/s/pg, upd/s/pg: received by each page (mean); every update: each page got every "
        "update (forward: tick) sent in the window, else the least share a page got",
        "deliver: an update's arrival at a page - its server_ms (p50/p99, all pages; one "
        "process decodes for every page, so with many its turn-taking is in it); lag: "
        "arrival - the line's recv_ms (p50/p99, the first page, lines with a new trade), which "
        "includes up to one web "
        "interval of conflation wait (gateway); pipe lag: p50/p99 of a Subscriber's arrival - "
        "recv_ms, what the pipeline itself adds",
        "pages %, pipe %: CPU of the pages' process and of feedmux run (the replay server "
        "in it); others %: the rest of the machine; all of one core",
    ]  # fmt: skip
    for key, m in doc["marginal"].items():
        lines.append(f"marginal CPU of a page, {key}: {m['pct_per_page']:.3f}% of a core "
                     f"(its loop: {m['loop_pct_per_page']:.3f}%, "
                     f"{m['loop_us_per_line_per_page']:.3f} us per line the page "
                     f"receives), over {'/'.join(map(str, m['pages']))} pages (those kept "
                     "up)")  # fmt: skip
    b = doc["browser"]
    if "skipped" in b:
        lines.append(f"browser: skipped ({b['skipped']})")
    else:
        lag = b["lag_ms"]
        lines.append(
            f"browser (headless chromium {b['browser']}, trades feed, {b['window_s']:g} s, "
            f"{b['lines']:,} lines): lag ms p50 {lag.get('p50', math.nan):.0f}, "
            f"p90 {lag.get('p90', math.nan):.0f}, p99 {lag.get('p99', math.nan):.0f}, "
            f"max {lag.get('max', math.nan):.0f} (from feedmux's receipt to the line applied "
            f"in the page; includes up to one {p['interval_ms']} ms interval of conflation "
            f"wait by design; the pipeline's own p99 "
            f"{b['pipeline_lag_ms'].get('p99', math.nan):.0f}); gateway CPU "
            f"{b['gateway_cpu_pct']:.1f}%, chromium "
            f"{b['browser_cpu_pct']:.0f}%, others {b['others_pct']:.0f}%"
        )  # fmt: skip
        pg = b["page"]
        lines.append(
            f"  the page: {pg['messages_per_s']:.1f} messages/s applied in "
            f"{pg['apply_ms_mean']:.1f} ms each (max {pg['apply_ms_max']:.0f}), "
            f"{pg['renders_per_s']:.1f} renders/s of "
            f"{pg['render_ms_mean']:.1f} ms (max {pg['render_ms_max']:.0f}): its main thread "
            f"{pg['busy_pct']:.0f}% busy"
        )  # fmt: skip
    noisy = [f"{w['server']} {w['feed']} {w['pages']}" for w in doc["windows"]
             if w["others_pct"] > NOISY_PCT]  # fmt: skip
    if "others_pct" in b and b["others_pct"] > NOISY_PCT:
        noisy.append("browser")
    if noisy:
        lines.append(f"the rest of the machine took over {NOISY_PCT:g}% of a core in: "
                     f"{', '.join(noisy)} (those numbers are the less sure)")  # fmt: skip
    starts = [w["start_s"] for w in doc["windows"] if w["start_s"] is not None]
    if starts:
        lines.append(f"feedmux web from its start to serving (the market loaded): "
                     f"{min(starts):.1f}-{max(starts):.1f} s")  # fmt: skip
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------
def measured(empty: Window, measure: Callable[[], Window]) -> Window:
    """``measure()``, or ``empty`` with the error that stopped it (a server that cannot let
    its pages in or falls over is a result too; the processes were stopped)."""
    try:
        return measure()
    except (RuntimeError, OSError) as exc:
        empty.error = str(exc)[-500:]
        return empty


def run(p: Params, work: Path) -> dict[str, Any]:
    measured_at = commit()
    ps = Processes()
    windows: list[Window] = []
    started = time.monotonic()
    try:
        print(f"feedmux run --replay at {p.rate:,.0f} ticks/s ...", flush=True)
        run = start_pipeline(p, ps, work)
        with PipelineLag(work / "run") as lag:
            load = Load(work / "run", procs.descendants(run.pid), lag)
            for feed in FEEDS:
                for count in p.pages:
                    w = measured(Window("gateway", feed, count), partial(
                        measure_gateway, p, ps, work, load, feed=feed, count=count))  # fmt: skip
                    windows.append(w)
                    print(f"  gateway {feed}, {count} pages: CPU {w.cpu_pct:.1f}% {w.error}",
                          flush=True)  # fmt: skip
            for count in p.pages:
                w = measured(Window("forward", "trades", count),
                             partial(measure_forward, p, ps, work, load, count))  # fmt: skip
                windows.append(w)
                print(f"  forwarder, {count} pages: CPU {w.cpu_pct:.1f}% {w.error}", flush=True)
            browser = (measure_browser(p, ps, work, load) if p.browser
                       else {"skipped": "--no-browser"})  # fmt: skip
            print(f"  browser: {browser.get('lag_ms') or browser.get('skipped')}", flush=True)
    finally:
        ps.stop_all()
    return {
        "benchmark": "web", "commit": measured_at, "environment": environment(),
        "params": asdict(p), "wall_s": round(time.monotonic() - started, 1),
        "windows": [asdict(w) for w in windows], "marginal": marginal(windows),
        "browser": browser,
        "lag_note": "from recv_ms (feedmux's read of the trade) to the page's receipt; a line "
                    "waits for the next push, so up to one web interval of conflation is in it",
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="feedmux web: CPU per update and per page, and the "
                                 "lag into a browser, against a forwarding script")  # fmt: skip
    ap.add_argument("--rate", type=float, help=f"ticks/s (default {Params.rate:,.0f})")
    ap.add_argument("--seconds", type=float, help=f"each window (default {Params.seconds:g})")
    ap.add_argument("--pages", help="page counts, comma separated (default "
                    f"{','.join(map(str, Params.pages))})")  # fmt: skip
    ap.add_argument("--shards", type=int, help=f"feedmux run --shards (default {Params.shards})")
    ap.add_argument("--browser-seconds", type=float,
                    help=f"the browser's window (default {Params.browser_seconds:g})")  # fmt: skip
    ap.add_argument("--no-browser", action="store_true", help="skip the chromium lag")
    ap.add_argument("--seed", type=int, help=f"of the synthetic market (default {Params.seed})")
    ap.add_argument("--quick", action="store_true", help="seconds, not minutes (smoke test)")
    ap.add_argument("--work", type=Path, help="keep logs and data here (default: a temporary "
                    "directory, removed)")  # fmt: skip
    ap.add_argument("--json", metavar="PATH", help="write the results here")
    args = ap.parse_args(argv)
    p = QUICK if args.quick else Params()
    given = {"rate": args.rate, "seconds": args.seconds, "shards": args.shards,
             "browser_seconds": args.browser_seconds, "seed": args.seed,
             "pages": tuple(int(n) for n in args.pages.split(",")) if args.pages else None
             }  # fmt: skip
    p = replace(p, **{k: v for k, v in given.items() if v is not None})
    if args.no_browser:
        p = replace(p, browser=False)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    with _workdir(args.work) as work:
        doc = run(p, work)
    print(table(doc))
    if args.json:
        save_json(args.json, doc)
    return 0


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    work = Path(tempfile.mkdtemp(prefix="feedmux-web-"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
