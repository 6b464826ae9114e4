"""Where a tick's CPU goes, process by process: py-spy on every process of a client, at a
fixed rate, with each role's CPU per tick over the same window.

    python -m benchmarks.profile --shards 8 --rate 400 --seconds 10
    python -m benchmarks.profile --config best --rate 10000 --seconds 10 --top 20
    python -m benchmarks.profile --shards 2 --idle --seconds 10   # the feed ended: idle CPU

The replay server sends the opening burst (a trade of every code), then the benchmark's seeded
frames at ``--rate``; once the feed
has run ``--settle`` seconds, ``py-spy record --nonblocking --nolineno --format raw`` samples
each process of the client's tree (found from /proc, see ``benchmarks.procs``) for
``--seconds``, while the window's CPU per process is read from /proc. Printed per role: its CPU
(us per tick and % of a core) and the functions with the most samples, by self (the function
was running) and by total (it was on the stack). Samples are taken while a thread is active
(py-spy leaves out threads it sees idle), so they show where CPU goes, not where time waits.
The collapsed stacks are kept under ``--out`` (default ``benchmarks/results/profile-<time>``),
one ``<role>.txt`` per process: flamegraph.pl and speedscope read them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import procs
from benchmarks.cost import Window, root_role
from benchmarks.data import codes_for, market_file
from benchmarks.harness import (
    CONFIGS,
    RESULTS,
    Config,
    Params,
    frames_between,
    replay_report,
    start_client,
    start_server,
    stop,
    wait,
)

# py-spy from the venv this runs in (the `bench` extra), else from PATH
PY_SPY = next((str(p) for p in (Path(sys.executable).parent / "py-spy",) if p.exists()),
              shutil.which("py-spy") or "py-spy")  # fmt: skip
WRAPPERS = ("(<frozen runpy>)", "(multiprocessing/", "(<string>)", "(feedmux/__main__.py)")
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


@dataclass
class RoleProfile:
    role: str
    pid: int
    us_per_tick: float
    core_pct: float
    samples: int
    self_top: list[tuple[str, int]]
    total_top: list[tuple[str, int]]
    module_top: list[tuple[str, int]]
    error: str = ""  # why py-spy failed on this process


def collapsed(path: Path) -> Counter[tuple[str, ...]]:
    """py-spy's raw output: each stack (outermost first) and its samples."""
    stacks: Counter[tuple[str, ...]] = Counter()
    if not path.exists():
        return stacks
    for line in path.read_text(errors="replace").splitlines():
        match = _LINE.match(line.strip())
        if match:
            stacks[tuple(match["stack"].split(";"))] += int(match["count"])
    return stacks


Top = list[tuple[str, int]]


def _module(frame: str) -> str:
    """``func (path/module.py)`` -> ``path/module.py``."""
    return frame[frame.rfind("(") + 1 : -1] if frame.endswith(")") else frame


def summarise(stacks: Counter[tuple[str, ...]], top: int) -> tuple[int, Top, Top, Top]:
    """(samples, top functions by self samples, by total samples, top modules by self).
    The start-up frames every sample goes through (runpy, multiprocessing) are left out of
    the totals: they say nothing."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    for stack, count in stacks.items():
        own[stack[-1]] += count
        modules[_module(stack[-1])] += count
        for frame in set(stack):  # a recursive function counts once per sample
            if not any(w in frame for w in WRAPPERS):
                total[frame] += count
    return (sum(stacks.values()), own.most_common(top), total.most_common(top),
            modules.most_common(top))  # fmt: skip


def _config(args: argparse.Namespace) -> Config:
    if args.shards:
        found = [c for c in CONFIGS if c.kind == "feedmux" and c.shards == args.shards]
        return found[0] if found else Config(f"feedmux {args.shards} shards", "feedmux",
                                             args.shards)  # fmt: skip
    found = [c for c in CONFIGS if args.config in c.name or args.config == c.kind]
    if not found:
        raise SystemExit(f"no configuration matches {args.config!r}")
    return found[0]


def profile(config: Config, args: argparse.Namespace, out: Path) -> list[RoleProfile]:
    p = Params()
    p = Params(ticks=max(p.ticks, int(args.rate * (args.settle + args.seconds + 30))))
    codes = codes_for(p.codes, p.seed)
    data = market_file(codes, p.ticks, p.seed)
    with tempfile.TemporaryDirectory(prefix="feedmux-profile-") as tmp:
        work = Path(tmp)
        codes_file = work / "codes.txt"
        codes_file.write_text("\n".join(codes))
        send_log = work / "send.bin"
        server, report = start_server(work, data, codes_file, p, args.rate, "--burst",
                                       "--write-times", str(send_log))  # fmt: skip
        client = start_client(config, replay_report(report).url, codes_file, work / "client", False,
                               stats_ms=None)  # fmt: skip
        spies: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
        try:
            wait(lambda: replay_report(report).feed == "running", 120, "the feed to start")
            time.sleep(args.settle)
            if args.idle:
                server.send_signal(signal.SIGUSR1)  # end the feed, keep the connections
                time.sleep(args.settle)
            window = Window(client.pid, root_role(config), server.pid)
            for role, pid in procs.pids_by_role(client.pid, root_role(config)).items():
                cmd = [PY_SPY, "record", "--nonblocking", "--nolineno", "--format", "raw",
                       "--rate", str(args.sample_rate), "--duration", str(args.seconds),
                       "--pid", str(pid), "--output", str(out / f"{role}.txt")]  # fmt: skip
                cmd += ["--native"] if args.native else []
                spies[role] = (pid, subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                                     stderr=subprocess.PIPE))  # fmt: skip
            time.sleep(args.seconds)
            t0_ns, t1_ns, used, _server_s = window.close()
            for role, (_pid, spy) in spies.items():
                _, err = spy.communicate(timeout=args.seconds + 60)
                if spy.returncode != 0:  # kept, and its first line shown with the role
                    (out / f"{role}.err").write_bytes(err)
        finally:
            for _pid, spy in spies.values():
                if spy.poll() is None:
                    spy.kill()
                    spy.wait()
            stop(client)
            stop(server)
        ticks = frames_between(send_log, t0_ns, t1_ns)
    seconds = (t1_ns - t0_ns) / 1e9
    results = []
    for role, (pid, _spy) in spies.items():
        samples, own, total, modules = summarise(collapsed(out / f"{role}.txt"), args.top)
        cpu = used.get(role, 0.0)
        failed = out / f"{role}.err"
        error = (
            failed.read_text(errors="replace").strip().splitlines()[:2] if failed.exists() else []
        )
        results.append(RoleProfile(role, pid, round(cpu / max(1, ticks) * 1e6, 2),
                                   round(cpu / seconds * 100, 2), samples, own, total,
                                   modules, " ".join(error)))  # fmt: skip
    return results


def report(config: Config, args: argparse.Namespace, results: list[RoleProfile]) -> str:
    feed = "feed ended (idle)" if args.idle else f"{args.rate:,.0f} ticks/s"
    lines = [f"{config.name}, {feed}, {args.seconds:g} s window, py-spy at "
             f"{args.sample_rate}/s (--nonblocking)"]  # fmt: skip
    for r in results:
        lines.append(f"\n== {r.role} (pid {r.pid}): {r.us_per_tick:.1f} us/tick, "
                     f"{r.core_pct:.1f}% of a core, {r.samples} samples")  # fmt: skip
        if r.error:
            lines.append(f"  py-spy failed: {r.error}")
        for title, rows in (("self", r.self_top), ("total", r.total_top),
                            ("self, per module", r.module_top)):  # fmt: skip
            lines.append(f"  top by {title}:")
            for frame, count in rows:
                share = count / r.samples if r.samples else 0.0
                lines.append(f"    {share:6.1%}  {count:>6}  {frame}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="py-spy on every process of a client")
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--shards", type=int, help="feedmux run --shards N")
    which.add_argument("--config", help="a configuration's kind or part of its name (best...)")
    ap.add_argument("--rate", type=float, default=400.0, help="ticks/s the server sends")
    ap.add_argument("--seconds", type=int, default=10, help="the sampled window (whole s)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds of feed before it")
    ap.add_argument("--idle", action="store_true", help="end the feed first: profile idling")
    ap.add_argument("--sample-rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    ap.add_argument("--top", type=int, default=12, help="functions listed per role and order")
    ap.add_argument("--out", type=Path, help="where the raw stacks go")
    args = ap.parse_args(argv)
    config = _config(args)
    out = args.out or RESULTS / f"profile-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    results = profile(config, args, out)
    text = report(config, args, results)
    (out / "summary.txt").write_text(text + "\n")
    (out / "summary.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    print(text)
    print(f"\nraw stacks and this summary: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
