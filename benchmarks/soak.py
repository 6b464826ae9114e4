"""A whole trading day (or several) through ``feedmux run``: memory, CPU and disk over the
day, and every tick stored once (issue 19).

    python -m benchmarks.soak [--day-minutes M] [--days D] [--rate R] [--shards N]
                              [--codes N] [--session-date YYYY-MM-DD] [--seed S] [--tiny]
                              [--run-arg ARG ...] [--work DIR] [--json PATH] [--png PATH]

Method. Two subprocesses: ``feedmux replay --sessions`` plays the seeded synthetic A-share
market (5,430 codes by default) through ``--days`` consecutive trading days from
``--session-date``, each compressed into ``--day-minutes`` wall minutes (09:10-15:30: the
auctions, lunch, after-hours; a trade of every code in every continuous minute plus
``--rate`` random trades a wall second on average, by a Zipf-like activity per code and an
intraday U: feedmux/simulator/schedule.py); ``feedmux run --shards N`` subscribes to every
code and stores the ticks (SQLite, the journal on; ``--run-arg`` adds options, e.g.
``--run-arg=--eod-export --run-arg=DIR`` or ``--run-arg="--eod-export DIR"``). Every second
the benchmark reads, from /proc, the resident memory (RSS) and CPU seconds of each process of
the run's tree (the supervisor, the receiver, each shard, by process title: benchmarks.procs)
and of the replay server (reported apart: it is the load, not feedmux), the server's simulated
clock from its report and the ticks the shards stored from their stats.

Warm-up ends with the first 30 simulated minutes of continuous trading of day 1 (10:00 for
A-shares): the opening auction's burst is behind, every code has traded about 30 times, so
each shard's state for each code exists. From the first sample at or past it to the end (the
feed done and drained), each process's highest RSS is compared with its RSS at warm-up end:
``growth_pct``, and ``flat`` when it is at most 10% (the issue's rule). ``mb_per_day`` is the
least-squares slope of RSS over the simulated time played after warm-up, times one day
(09:10-15:30): what each real day would add at this activity.

Once the feed is done and the shards' stats count every sent tick stored (or DRAIN_S passed)
the run is stopped (SIGTERM: it shuts down in order); then disk bytes per tick of the journal
(``<data-dir>/journal``) and of the store (``<data-dir>/ticks``: SQLite files with their WAL),
and every sent tick stored exactly once: the rows of every shard file (``ticks`` and
``ticks_recent``) counted by identity ``(code, trading day, seq)`` against the server's count
of ticks sent, day by day.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from benchmarks import procs
from benchmarks.data import codes_for
from benchmarks.harness import env, environment, replay_report, stop, wait
from feedmux.client.query import present, recent_tables, shard_files
from feedmux.market.day import day_date
from feedmux.market.sessions import MINUTE_NS, Phase, load_sessions
from feedmux.simulator.schedule import Day, plan
from feedmux.stats import read_replay, read_stats
from feedmux.stats.replay import ReplayStats

REPO = Path(__file__).resolve().parent.parent
SAMPLE_S = 1.0
WARMUP_MIN = 30  # simulated minutes of day 1's continuous trading
WARMUP_RULE = f"the first {WARMUP_MIN} simulated minutes of continuous trading of day 1"
FLAT_PCT = 10.0  # the rule: after warm-up no process grows more than this
DRAIN_S = 300.0  # after the feed: time to store what is still in flight
START_S = 120.0  # for the run to start and the feed to begin
ROOT = "supervisor"  # the feedmux run process itself
SERVER = "replay"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Params:
    codes: int = 5430
    shards: int = 8
    rate: float = 5000.0  # random trades per wall second, on average over continuous trading
    day_minutes: float = 20.0  # wall minutes per simulated day (09:10-15:30)
    days: int = 1
    session_date: str = "2026-12-02"  # a Wednesday
    seed: int = 7
    warmup_s: float = 5.0  # the server's --warmup: every connection subscribed before it feeds
    run_args: tuple[str, ...] = ()


TINY = Params(codes=300, shards=2, rate=300.0, day_minutes=1.0, warmup_s=1.0)


@dataclass
class Sample:
    t_s: float  # wall seconds since the run started
    feed: str  # the server's feed: waiting, running, done
    day: int  # which simulated day plays (0: the first)
    sim_ns: int  # the server's simulated clock
    sent: int  # ticks the server sent
    stored: int  # ticks the shards stored (their stats)
    rss_mb: dict[str, float]  # by process
    cpu_s: dict[str, float]
    pids: dict[str, int]


@dataclass
class ProcessResult:
    name: str
    rss_start_mb: float  # the first sample's
    rss_warm_mb: float  # at warm-up end
    rss_max_mb: float  # the highest after warm-up
    rss_end_mb: float  # the last sample's (the feed done and drained)
    growth_pct: float  # (max - warm) / warm
    mb_per_day: float  # RSS slope after warm-up over simulated time, times one day
    cpu_s: float  # CPU seconds by the end
    cpu_pct: float  # % of one core, mean over the feed
    restarts: int  # other pids seen under this name (a restarted worker)
    flat: bool  # growth_pct <= FLAT_PCT


@dataclass
class Ticks:
    sent: int
    stored_rows: int  # rows in every shard file (ticks and ticks_recent)
    stored_distinct: int  # distinct identities (code, trading day, seq)
    duplicates: int  # rows beyond one per identity
    missing: int  # sent, not stored
    sent_by_day: dict[str, int] = field(default_factory=dict)
    stored_by_day: dict[str, int] = field(default_factory=dict)  # distinct identities
    stored_once: bool = False  # every sent tick stored exactly once, day by day


@dataclass
class Disk:
    journal_bytes: int
    store_bytes: int  # SQLite files, WAL and shared memory files included
    journal_bytes_per_tick: float
    store_bytes_per_tick: float
    files: dict[str, int] = field(default_factory=dict)  # store file: bytes


# -- the run ---------------------------------------------------------------------------------
def warmup_end_ns(day: Day) -> int:
    """The end of the first WARMUP_MIN minutes of ``day``'s continuous trading (its first
    market's: A-shares first)."""
    market = next(iter(day.segments))
    left = WARMUP_MIN * MINUTE_NS
    for segment in day.segments[market]:
        if segment.phase != Phase.CONTINUOUS:
            continue
        if segment.end_ns - segment.start_ns >= left:
            return segment.start_ns + left
        left -= segment.end_ns - segment.start_ns
    raise RuntimeError(f"{day.date} has under {WARMUP_MIN} minutes of continuous trading")


def start_replay(p: Params, work: Path, codes_file: Path) -> tuple[subprocess.Popen[bytes], Path]:
    report = work / "server.json"
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "feedmux", "replay", "--port", "0", "--symbols-file",
         str(codes_file), "--sessions", "--session-date", p.session_date, "--session-days",
         str(p.days), "--day-minutes", str(p.day_minutes), "--rate", str(p.rate), "--seed",
         str(p.seed), "--warmup", str(p.warmup_s), "--report", str(report),
         "--log-level", "INFO"],
        env=env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait(lambda: read_replay(report) is not None or proc.poll() is not None, 120,
         "the replay server")  # fmt: skip
    if proc.poll() is not None:
        raise RuntimeError(f"the replay server exited: {(work / 'server.log').read_text()}")
    return proc, report


def start_run(p: Params, work: Path, url: str, codes_file: Path) -> subprocess.Popen[bytes]:
    log = (work / "run.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "feedmux", "run", "--url", url, "--symbols-file",
         str(codes_file), "--shards", str(p.shards), "--data-dir", str(work / "data"),
         "--run-dir", str(work / "run"), "--display", "plain", *p.run_args],
        env=env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def take(run: subprocess.Popen[bytes], server: subprocess.Popen[bytes], report: ReplayStats,
         run_dir: Path, t_s: float) -> Sample:  # fmt: skip
    """One sample of every process and of the feed."""
    rss: dict[str, float] = {}
    cpu: dict[str, float] = {}
    pids = {name.removeprefix("feedmux-"): pid
            for name, pid in procs.pids_by_role(run.pid, ROOT).items()}  # fmt: skip
    pids[SERVER] = server.pid
    for name, pid in list(pids.items()):
        memory, seconds = procs.rss_bytes(pid), procs.cpu_s(pid)
        if memory is None or seconds is None:  # gone meanwhile
            del pids[name]
            continue
        rss[name], cpu[name] = round(memory / 2**20, 2), round(seconds, 2)
    sessions = report.sessions
    stored = sum(s.stored for s in read_stats(run_dir / "stats").shards.values())
    return Sample(round(t_s, 2), report.feed, sessions.day_index if sessions else 0,
                  sessions.now_ns if sessions else 0, report.ticks_sent, stored, rss, cpu,
                  pids)  # fmt: skip


def sample_run(p: Params, run: subprocess.Popen[bytes], server: subprocess.Popen[bytes], *,
               report_path: Path, run_dir: Path, log: Path) -> list[Sample]:  # fmt: skip
    """Samples every SAMPLE_S from the run's start until the feed is done and every tick it
    sent is stored (or DRAIN_S passed)."""
    start = time.monotonic()
    deadline = start + START_S + p.days * p.day_minutes * 60 * 2
    samples: list[Sample] = []
    done_at: float | None = None
    at = start
    while True:
        if run.poll() is not None:
            raise RuntimeError(f"feedmux run exited ({run.returncode}): see {log}")
        report = read_replay(report_path)
        now = time.monotonic()
        if report is not None:
            sample = take(run, server, report, run_dir, now - start)
            samples.append(sample)
            if report.feed == "done":
                done_at = now if done_at is None else done_at
                if sample.stored >= report.ticks_sent or now - done_at > DRAIN_S:
                    return samples
            elif report.feed == "waiting" and now - start > START_S:
                raise RuntimeError(f"the feed did not start in {START_S:g} s: see {log}")
        if now > deadline:
            raise RuntimeError(f"the day did not end in time: see {log}")
        at += SAMPLE_S
        time.sleep(max(0.0, at - time.monotonic()))


# -- the results -----------------------------------------------------------------------------
def played_ns(sample: Sample, days: list[Day]) -> int:
    """Simulated time played up to ``sample`` (whole days before it, nights not counted)."""
    whole = sum(d.end_ns - d.start_ns for d in days[: sample.day])
    return whole + max(0, sample.sim_ns - days[sample.day].start_ns)


def slope(xs: list[float], ys: list[float]) -> float:
    """The least-squares slope of ys over xs (0 for fewer than two distinct xs)."""
    n = len(xs)
    mx, my = sum(xs) / max(1, n), sum(ys) / max(1, n)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def warm_index(samples: list[Sample], warm_ns: int) -> int:
    for i, s in enumerate(samples):
        if s.feed != "waiting" and (s.day > 0 or s.sim_ns >= warm_ns):
            return i
    raise RuntimeError("the feed ended before the warm-up did")


def processes(samples: list[Sample], warm: int, days: list[Day]) -> list[ProcessResult]:
    day_h = (days[0].end_ns - days[0].start_ns) / 3600e9
    running = [s for s in samples if s.feed != "waiting"]
    first, last = running[0], running[-1]
    out = []
    names = [n for n in samples[warm].rss_mb if n != SERVER] + [SERVER]
    for name in names:
        after = [s for s in samples[warm:] if name in s.rss_mb]
        if not after:
            continue
        warm_mb = after[0].rss_mb[name]
        peak = max(s.rss_mb[name] for s in after)
        hours = [played_ns(s, days) / 3600e9 for s in after]
        cpu_end = last.cpu_s.get(name, 0.0)
        wall = max(1e-9, last.t_s - first.t_s)
        out.append(ProcessResult(
            name=name,
            rss_start_mb=next(s.rss_mb[name] for s in samples if name in s.rss_mb),
            rss_warm_mb=warm_mb, rss_max_mb=peak, rss_end_mb=after[-1].rss_mb[name],
            growth_pct=round((peak - warm_mb) / warm_mb * 100, 2),
            mb_per_day=round(slope(hours, [s.rss_mb[name] for s in after]) * day_h, 2),
            cpu_s=cpu_end,
            cpu_pct=round((cpu_end - first.cpu_s.get(name, 0.0)) / wall * 100, 1),
            restarts=len({s.pids[name] for s in samples if name in s.pids}) - 1,
            flat=(peak - warm_mb) / warm_mb * 100 <= FLAT_PCT,
        ))  # fmt: skip
    return out


def stored_ticks(data_dir: Path) -> tuple[Counter[int], Counter[int]]:
    """Rows and distinct identities by trading day, over every shard file (a code found in
    two files is checked across them)."""
    rows: Counter[int] = Counter()
    distinct: Counter[int] = Counter()
    files: dict[str, list[Path]] = {}
    unions: dict[Path, str] = {}
    for path in shard_files(data_dir):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            tables = [*present(conn, "ticks"), *recent_tables(conn, "ticks")]
            if not tables:
                continue
            union = unions[path] = " UNION ALL ".join(
                f"SELECT code, trading_day, seq FROM {t}" for t in tables)  # fmt: skip
            rows.update(dict(conn.execute(
                f"SELECT trading_day, COUNT(*) FROM ({union}) GROUP BY trading_day")))  # fmt: skip
            distinct.update(dict(conn.execute(
                f"SELECT trading_day, COUNT(*) FROM (SELECT DISTINCT code, trading_day, seq "
                f"FROM ({union})) GROUP BY trading_day")))  # fmt: skip
            for (code,) in conn.execute(f"SELECT DISTINCT code FROM ({union})"):
                files.setdefault(code, []).append(path)
    shared = {code: paths for code, paths in files.items() if len(paths) > 1}
    if shared:  # routing keeps a code on one shard; if not, its identities may repeat
        keys: Counter[tuple[str, int, int]] = Counter()
        for path in {p for paths in shared.values() for p in paths}:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                found = conn.execute(f"SELECT DISTINCT code, trading_day, seq FROM "
                                     f"({unions[path]})")  # fmt: skip
                keys.update(k for k in found if k[0] in shared)
        for (_, day, _), n in keys.items():
            distinct[day] -= n - 1
    return rows, distinct


def ticks_of(report: ReplayStats, data_dir: Path) -> Ticks:
    rows, distinct = stored_ticks(data_dir)
    stored_by_day = {day_date(d).isoformat(): n for d, n in sorted(distinct.items())}
    sent_by_day = dict(report.sessions.sent_by_day) if report.sessions else {}
    total_rows, total = sum(rows.values()), sum(distinct.values())
    return Ticks(
        sent=report.ticks_sent, stored_rows=total_rows, stored_distinct=total,
        duplicates=total_rows - total, missing=report.ticks_sent - total,
        sent_by_day=sent_by_day, stored_by_day=stored_by_day,
        stored_once=total_rows == total == report.ticks_sent and stored_by_day == sent_by_day,
    )  # fmt: skip


def keeping_up(samples: list[Sample]) -> dict[str, float]:
    """How far storing trailed sending: the most ticks sent and not yet stored at a sample;
    the oldest unstored tick's age at a sample (since the first sample that counted it sent:
    1 s resolution, and the stats a process writes each second lag by up to one); and the
    seconds from the feed's end until all was stored."""
    done = next((s for s in samples if s.feed == "done"), samples[-1])
    lag_s, j = 0.0, 0
    for s in samples:
        if s.stored >= s.sent:
            continue
        while samples[j].sent <= s.stored:  # the first sample that counts tick stored + 1 sent
            j += 1
        lag_s = max(lag_s, s.t_s - samples[j].t_s)
    return {"max_behind": max(s.sent - s.stored for s in samples), "max_lag_s": round(lag_s, 1),
            "drain_s": round(samples[-1].t_s - done.t_s, 1)}  # fmt: skip


def others_pct(samples: list[Sample], busy_s: float, wall_s: float) -> float:
    """% of one core that processes other than the run's and the server's took over the
    ``wall_s`` in which the machine was ``busy_s`` busy (it is shared: the noise under these
    numbers)."""
    ours = sum(samples[-1].cpu_s.values())  # each process's whole life: it started with us
    return round(max(0.0, busy_s - ours) / max(1e-9, wall_s) * 100, 1)


def dir_bytes(path: Path) -> dict[str, int]:
    return {str(f.relative_to(path)): f.stat().st_size for f in sorted(path.rglob("*"))
            if f.is_file()}  # fmt: skip


def disk_of(data_dir: Path, ticks: int) -> Disk:
    journal = sum(dir_bytes(data_dir / "journal").values())
    store = dir_bytes(data_dir / "ticks")
    per = max(1, ticks)
    return Disk(journal, sum(store.values()), round(journal / per, 1),
                round(sum(store.values()) / per, 1), store)  # fmt: skip


def commit() -> str:
    head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                          capture_output=True, text=True, check=False)  # fmt: skip
    return head.stdout.strip()


def series(samples: list[Sample]) -> dict[str, Any]:
    """The samples column by column (what the chart draws)."""
    names = sorted({n for s in samples for n in s.rss_mb})
    return {
        "t_s": [s.t_s for s in samples], "feed": [s.feed for s in samples],
        "day": [s.day for s in samples], "sim_ns": [s.sim_ns for s in samples],
        "sent": [s.sent for s in samples], "stored": [s.stored for s in samples],
        "rss_mb": {n: [s.rss_mb.get(n) for s in samples] for n in names},
        "cpu_s": {n: [s.cpu_s.get(n) for s in samples] for n in names},
    }  # fmt: skip


def soak(p: Params, work: Path) -> dict[str, Any]:
    measured_at = commit()  # the code that runs: what is checked out when it starts
    codes = codes_for(p.codes, p.seed)
    codes_file = work / "codes.txt"
    codes_file.write_text("\n".join(codes) + "\n")
    days = list(plan(load_sessions(), codes, date.fromisoformat(p.session_date),
                     day_minutes=p.day_minutes, days=p.days).days)  # fmt: skip
    warm_ns = warmup_end_ns(days[0])
    busy_s, began = procs.machine_busy_s(), time.monotonic()
    server, report_path = start_replay(p, work, codes_file)
    run = None
    try:
        run = start_run(p, work, replay_report(report_path).url, codes_file)
        samples = sample_run(p, run, server, report_path=report_path, run_dir=work / "run",
                             log=work / "run.log")  # fmt: skip
        report = replay_report(report_path)
        busy_s, wall_s = procs.machine_busy_s() - busy_s, time.monotonic() - began
        stop(run)
        code = run.returncode
    finally:
        if run is not None:
            stop(run)
        stop(server)
    if code != 0:
        raise RuntimeError(f"feedmux run stopped with {code}: see {work / 'run.log'}")
    warm = warm_index(samples, warm_ns)
    results = processes(samples, warm, days)
    ticks = ticks_of(report, work / "data")
    feedmux = [r for r in results if r.name != SERVER]
    return {
        "benchmark": "soak",
        "commit": measured_at,
        "environment": environment(),
        "params": asdict(p),
        "dates": [d.date.isoformat() for d in days],
        "factor": report.sessions.factor if report.sessions else 0.0,
        "warmup": {"rule": WARMUP_RULE, "sim_ns": warm_ns, "t_s": samples[warm].t_s},
        "flat_rule": f"after warm-up no process grows more than {FLAT_PCT:g}%",
        "flat": all(r.flat for r in feedmux),
        "processes": [asdict(r) for r in feedmux],
        "server": next((asdict(r) for r in results if r.name == SERVER), None),
        "ticks": asdict(ticks),
        "disk": asdict(disk_of(work / "data", ticks.sent)),
        "wall_s": samples[-1].t_s,
        "keeping_up": keeping_up(samples),
        "others_pct": others_pct(samples, busy_s, wall_s),
        "series": series(samples),
    }


# -- output ----------------------------------------------------------------------------------
def table(doc: dict[str, Any]) -> str:
    p, ticks, disk = doc["params"], doc["ticks"], doc["disk"]
    days = ", ".join(doc["dates"])
    lines = [
        f"soak at {doc['commit']}: {p['codes']:,} codes, {p['shards']} shards, {days} "
        f"({p['day_minutes']:g} wall min a day, {doc['factor']:.1f}x), {p['rate']:,.0f} "
        f"random ticks/s on average; warm-up ends at {doc['warmup']['t_s']:.0f} s",
        f"{'process':<18}{'RSS start':>10}{'warm-up':>9}{'max after':>10}{'end':>8}"
        f"{'growth %':>9}{'MB/day':>8}{'CPU s':>8}{'CPU %':>7}  flat",
    ]  # fmt: skip
    rows = [*doc["processes"], *([doc["server"]] if doc["server"] else [])]
    for r in rows:
        name = r["name"] if r["name"] != SERVER else "(replay server)"
        flat = ("yes" if r["flat"] else "NO") if r["name"] != SERVER else "-"
        flat += f" ({r['restarts']} restarts)" if r["restarts"] else ""
        lines.append(f"{name:<18}{r['rss_start_mb']:>10.1f}{r['rss_warm_mb']:>9.1f}"
                     f"{r['rss_max_mb']:>10.1f}{r['rss_end_mb']:>8.1f}{r['growth_pct']:>9.1f}"
                     f"{r['mb_per_day']:>8.1f}{r['cpu_s']:>8.0f}{r['cpu_pct']:>7.1f}  "
                     f"{flat}")  # fmt: skip
    lines.append(f"other processes of the machine took {doc['others_pct']:.0f}% of one core "
                 f"over the run ({doc['environment']['cpus']} cores)")  # fmt: skip
    lines.append(f"memory flat (after warm-up no process grows over {FLAT_PCT:g}%): "
                 f"{'yes' if doc['flat'] else 'NO'}")  # fmt: skip
    once = "every tick stored once" if ticks["stored_once"] else "NOT every tick stored once"
    lines.append(
        f"ticks: {ticks['sent']:,} sent, {ticks['stored_rows']:,} rows stored, "
        f"{ticks['duplicates']:,} duplicates, {ticks['missing']:,} missing: {once}"
    )
    for day, sent in ticks["sent_by_day"].items():
        lines.append(f"  {day}: {sent:,} sent, {ticks['stored_by_day'].get(day, 0):,} stored")
    behind = doc["keeping_up"]
    lines.append(f"keeping up: at most {behind['max_behind']:,} ticks sent and not yet stored "
                 f"(the oldest sent {behind['max_lag_s']:g} s before), all stored "
                 f"{behind['drain_s']:g} s "
                 "after the feed ended")  # fmt: skip
    lines.append(f"disk: journal {disk['journal_bytes'] / 1e6:,.0f} MB "
                 f"({disk['journal_bytes_per_tick']:.0f} B/tick), store "
                 f"{disk['store_bytes'] / 1e6:,.0f} MB ({disk['store_bytes_per_tick']:.0f} "
                 f"B/tick, WAL included)")  # fmt: skip
    return "\n".join(lines)


def colors(names: list[str]) -> dict[str, dict[str, Any]]:
    """One line style per process: the shards in shades of one map, the rest apart."""
    import matplotlib as mpl  # noqa: PLC0415

    shards = [n for n in names if n.startswith("shard-")]
    shades = mpl.colormaps["viridis"]
    out: dict[str, dict[str, Any]] = {
        n: {"color": shades(i / max(1, len(shards) - 1) * 0.85)} for i, n in enumerate(shards)
    }
    fixed = {"supervisor": "#000000", "receiver": "#c53030", "resource-tracker": "#b7791f"}
    for n in names:
        if n == SERVER:
            out[n] = {"color": "#888888", "linestyle": "--"}
        elif n not in out:
            out[n] = {"color": fixed.get(n, "#805ad5")}
    return out


def chart(doc: dict[str, Any], path: Path) -> None:
    """RSS per process over time, in MB and against its warm-up value, CPU % per process, and
    the ticks sent and stored per second."""
    import matplotlib as mpl  # noqa: PLC0415 (a dev dependency: only when a chart is asked for)

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    s = doc["series"]
    minutes = [t / 60 for t in s["t_s"]]
    fig, (top, growth, middle, bottom) = plt.subplots(
        4, 1, figsize=(11, 14), sharex=True, height_ratios=(3, 2, 2, 1.3),
        constrained_layout=True)  # fmt: skip
    names = [r["name"] for r in doc["processes"]] + ([SERVER] if doc["server"] else [])
    styles = colors(names)
    warm_at = next(i for i, t in enumerate(s["t_s"]) if t >= doc["warmup"]["t_s"])
    for name in names:
        label = "replay server (the load)" if name == SERVER else name
        rss = s["rss_mb"][name]
        top.plot(minutes, rss, label=label, linewidth=1, **styles[name])
        warm = rss[warm_at]
        if warm and name != "resource-tracker":  # multiprocessing's helper: idle, flat
            pct = [(v / warm - 1) * 100 if v is not None else None for v in rss[warm_at:]]
            growth.plot(minutes[warm_at:], pct, label=label, linewidth=1, **styles[name])
        cpu = s["cpu_s"][name]
        pct = [None] + [
            (b - a) / (t1 - t0) * 100 if a is not None and b is not None and t1 > t0 else None
            for a, b, t0, t1 in zip(cpu, cpu[1:], s["t_s"], s["t_s"][1:], strict=False)
        ]  # fmt: skip
        middle.plot(minutes, smooth(pct, 10), label=label, linewidth=1, **styles[name])
    for what, color in (("sent", "#888888"), ("stored", "#2b6cb0")):
        counts = s[what]
        rate = [None] + [
            (b - a) / (t1 - t0) if t1 > t0 else None
            for a, b, t0, t1 in zip(counts, counts[1:], s["t_s"], s["t_s"][1:], strict=False)
        ]
        bottom.plot(minutes, smooth(rate, 10), color=color, linewidth=1, label=what)
    bottom.legend(fontsize=7, loc="upper right")
    growth.axhline(FLAT_PCT, color="#c05621", linewidth=1)
    growth.text(minutes[-1], FLAT_PCT, f"{FLAT_PCT:g}%: the flat rule ", color="#c05621",
                ha="right", va="bottom", fontsize=8)  # fmt: skip
    growth.set_ylim(min(-2.0, growth.get_ylim()[0]), max(FLAT_PCT * 1.3, growth.get_ylim()[1]))
    warm = doc["warmup"]["t_s"] / 60
    for ax in (top, growth, middle, bottom):
        ax.axvline(warm, color="#c05621", linestyle="--", linewidth=1)
        for i, day in enumerate(s["day"][1:], 1):
            if day != s["day"][i - 1]:
                ax.axvline(minutes[i], color="#444444", linestyle=":", linewidth=1)
    top.text(warm, top.get_ylim()[1], " warm-up end", color="#c05621", va="top", fontsize=8)
    top.set_ylabel("RSS (MB)")
    top.legend(fontsize=7, ncol=4, loc="lower right")
    clock = top.twiny()  # the simulated clock above: where in the day each wall minute was
    clock.set_xlim(top.get_xlim())
    marks = sim_marks(doc)
    clock.set_xticks([m for m, _ in marks], [label for _, label in marks], fontsize=7)
    flat = "flat" if doc["flat"] else "NOT flat"
    top.set_title(f"RSS per process ({flat}: after warm-up no process grows over "
                  f"{FLAT_PCT:g}%)")  # fmt: skip
    growth.set_ylabel("RSS growth since warm-up end (%)")
    middle.set_ylabel("CPU % of one core (10 s mean)")
    bottom.set_ylabel("ticks/s (10 s mean)")
    bottom.set_xlabel("wall minutes since feedmux run started (dotted: the next trading day)")
    p = doc["params"]
    fig.suptitle(f"feedmux soak at {doc['commit']}: {p['codes']:,} codes, {p['shards']} shards, "
                 f"{', '.join(doc['dates'])} at {doc['factor']:.1f}x, {p['rate']:,.0f} ticks/s "
                 f"— {doc['environment']['cpus']} CPUs, {doc['environment']['time']}",
                 fontsize=9)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sim_marks(doc: dict[str, Any]) -> list[tuple[float, str]]:
    """(wall minute, simulated HH:MM) where each day's feed passed 09:30, 11:30, 13:00 and
    15:00 (Shanghai)."""
    s = doc["series"]
    marks = []
    for day_index, day in enumerate(doc["dates"]):
        for clock in ("09:30", "11:30", "13:00", "15:00"):
            at = datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=SHANGHAI)
            at_ns = int(at.timestamp()) * 10**9
            first = next((i for i, (d, ns) in enumerate(zip(s["day"], s["sim_ns"], strict=True))
                          if d == day_index and ns >= at_ns), None)  # fmt: skip
            if first is not None:
                marks.append((s["t_s"][first] / 60, clock))
    return marks


def smooth(values: list[float | None], width: int) -> list[float | None]:
    """The trailing mean over ``width`` values (None where a value is missing)."""
    out: list[float | None] = []
    for i, v in enumerate(values):
        window = [x for x in values[max(0, i - width + 1) : i + 1] if x is not None]
        out.append(sum(window) / len(window) if v is not None and window else None)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="a whole trading day through feedmux run: RSS and "
        "CPU per process, disk per tick, every tick stored once"
    )
    ap.add_argument("--day-minutes", type=float, help=f"wall minutes a day (default "
                    f"{Params.day_minutes:g}; --tiny {TINY.day_minutes:g})")  # fmt: skip
    ap.add_argument("--days", type=int, help="consecutive trading days (default 1)")
    ap.add_argument("--rate", type=float, help=f"random ticks per wall second, on average "
                    f"(default {Params.rate:g}; --tiny {TINY.rate:g})")  # fmt: skip
    ap.add_argument("--shards", type=int, help=f"feedmux run --shards (default {Params.shards};"
                    f" --tiny {TINY.shards})")  # fmt: skip
    ap.add_argument("--codes", type=int, help=f"codes of the synthetic market (default "
                    f"{Params.codes:,}; --tiny {TINY.codes})")  # fmt: skip
    ap.add_argument("--session-date", help=f"the first day (default {Params.session_date})")
    ap.add_argument("--seed", type=int, help=f"seed of the market (default {Params.seed})")
    ap.add_argument("--tiny", action="store_true", help="a few hundred codes, a day in about a "
                    "minute (the smoke test)")  # fmt: skip
    ap.add_argument("--run-arg", action="append", default=[], metavar="ARG",
                    help="more options for feedmux run (repeatable; each split as a shell "
                    "would: --run-arg='--eod-export DIR')")  # fmt: skip
    ap.add_argument("--work", type=Path, help="keep the data and logs here (default: a "
                    "temporary directory, removed)")  # fmt: skip
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    ap.add_argument("--png", type=Path, metavar="PATH", help="write the chart here")
    args = ap.parse_args(argv)
    p = TINY if args.tiny else Params()
    given = {"day_minutes": args.day_minutes, "days": args.days, "rate": args.rate,
             "shards": args.shards, "codes": args.codes, "session_date": args.session_date,
             "seed": args.seed}  # fmt: skip
    p = replace(p, **{k: v for k, v in given.items() if v is not None},
                run_args=tuple(a for arg in args.run_arg for a in shlex.split(arg)))  # fmt: skip
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        doc = soak(p, args.work)
    else:
        with tempfile.TemporaryDirectory(prefix="feedmux-soak-") as work:
            doc = soak(p, Path(work))
    print(table(doc))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        # The series on one line: readable numbers above, not 30,000 lines of them.
        text = json.dumps({**doc, "series": "SERIES"}, indent=1)
        args.json.write_text(text.replace('"SERIES"', json.dumps(doc["series"])) + "\n")
    if args.png:
        chart(doc, args.png)
    return 0 if doc["ticks"]["stored_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
