"""What a tick costs: CPU microseconds per tick by process role, at fixed rates, and when idle.

    python -m benchmarks.cost [--tiny] [--only NAME ...] [--rates 400 2000 10000]
                              [--seconds S] [--idle-seconds S] [--json PATH]

Method (steady-state windows). For each configuration and rate, fresh processes: the replay
server sends one trade of every code at once (the opening burst, so that every code has been
seen), then the seeded frames at a fixed rate; once the feed has run for ``settle_s`` (start-up,
the subscriptions and the burst are behind), the CPU seconds
of every process of the client's tree (``utime + stime`` from ``/proc/<pid>/stat``, see
``benchmarks.procs``) are read, again ``seconds`` later, and the difference is divided by the
frames the server wrote in between (from its ``--write-times`` log, exact to the write). The
cost therefore includes whatever a process does per unit of time at that rate (polling,
timers, stats files), which is what a user pays: at 400 ticks/s that fixed part dominates.
The feed is then ended (the server keeps the connections up and answers heartbeats); once the
client has stored every frame and ``settle_s`` has passed, the same reading over
``idle_seconds`` gives the idle CPU, in % of one core, after the lowest rate's run.

Roles are found from /proc only: the ``feedmux run`` process is the supervisor, its children
carry process titles (``feedmux-receiver``, ``feedmux-shard-N``; multiprocessing's resource
tracker is "resource-tracker"); a baseline is one process, named by its kind. The replay
server's CPU is measured over the same windows and reported apart, never in the client's cost.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import procs
from benchmarks.data import codes_for, market_file
from benchmarks.harness import (
    CONFIGS,
    TINY,
    Config,
    Params,
    environment,
    frames_between,
    replay_report,
    save_json,
    start_client,
    start_server,
    stop,
    stored,
    wait,
)

RATES = (400.0, 2_000.0, 10_000.0)
READERS = {c.kind for c in CONFIGS if c.kind != "feedmux"}  # a baseline's one process


@dataclass(frozen=True)
class CostParams:
    rates: tuple[float, ...] = RATES
    seconds: float = 10.0  # the measured window at each rate
    settle_s: float = 3.0  # after the feed starts, and after it ends before the idle window
    idle_seconds: float = 10.0
    caught_up_s: float = 10.0  # the client must have stored everything this soon after the end


TINY_COST = CostParams(rates=(300.0,), seconds=2.0, settle_s=1.0, idle_seconds=2.0)


@dataclass
class RateCost:
    rate: float
    ticks: int  # frames the server wrote within the window
    window_s: float
    us_per_tick: dict[str, float]  # by role
    total_us_per_tick: float
    server_us_per_tick: float
    kept_up: bool  # every frame stored within caught_up_s of the feed's end
    apart_us_per_tick: dict[str, float] = field(default_factory=dict)  # e.g. nats-server
    # % of one core that processes other than these took over the window: the noise
    others_pct: float = 0.0


@dataclass
class Cost:
    name: str
    kind: str
    shards: int
    rates: list[RateCost] = field(default_factory=list)
    idle_pct: dict[str, float] = field(default_factory=dict)  # % of one core, by role
    idle_total_pct: float = 0.0
    server_idle_pct: float = 0.0


def root_role(config: Config) -> str:
    return "supervisor" if config.kind == "feedmux" else config.kind


class Window:
    """CPU seconds of the client's tree (by role) and of the server between two readings;
    ``apart``: other processes (by name: pid) read over the same window, e.g. a NATS server,
    and the whole machine's busy time (what the rest of the machine took is the noise)."""

    def __init__(self, client: int, role: str, server: int,
                 apart: dict[str, int] | None = None) -> None:  # fmt: skip
        self.client, self.role, self.server = client, role, server
        self.apart = apart or {}
        self.t0_ns = time.time_ns()
        self.m0 = procs.machine_busy_s()
        self.c0 = procs.sample(client, role)
        self.s0 = sum(procs.sample(server, "replay").values())
        self.a0 = {name: procs.cpu_s(pid) for name, pid in self.apart.items()}
        self.apart_s: dict[str, float] = {}  # by close: each apart process's (one gone: left out)
        self.machine_s = 0.0  # by close

    def close(self) -> tuple[int, int, dict[str, float], float]:
        """(start ns, end ns, CPU s by role, server CPU s)."""
        t1_ns = time.time_ns()
        c1 = procs.sample(self.client, self.role)
        s1 = sum(procs.sample(self.server, "replay").values())
        for name, pid in self.apart.items():
            before, now = self.a0[name], procs.cpu_s(pid)
            if before is not None and now is not None:
                self.apart_s[name] = now - before
        self.machine_s = procs.machine_busy_s() - self.m0
        used = {name: c1[name] - self.c0.get(name, 0.0) for name in c1}
        return self.t0_ns, t1_ns, used, s1 - self.s0


def measure(config: Config, p: Params, cp: CostParams, rate: float, *, data: Path,
            codes_file: Path, work: Path, idle: bool, held: Callable[[], int] | None = None,
            apart: dict[str, int] | None = None) -> tuple[RateCost, Cost | None]:  # fmt: skip
    """One rate in fresh processes; with ``idle``, the idle window after it too (returned as a
    Cost holding only the idle numbers). ``held``: frames a relay holds, which must catch up
    too (see ``harness.ramp``); ``apart``: processes measured over the window, reported apart."""
    send_log = work / "send.bin"
    server, report = start_server(work, data, codes_file, p, rate, "--burst", "--write-times",
                                   str(send_log))  # fmt: skip
    out = work / "client"
    # feedmux's stats files at its default interval, as users run it (the ramp asks for 100 ms)
    client = start_client(config, replay_report(report).url, codes_file, out, False, stats_ms=None)
    idle_cost = None
    try:
        wait(lambda: replay_report(report).feed == "running", 120, "the feed to start")
        time.sleep(cp.settle_s)
        window = Window(client.pid, root_role(config), server.pid, apart)
        time.sleep(cp.seconds)
        t0_ns, t1_ns, used, server_s = window.close()
        apart_s = window.apart_s
        others_s = window.machine_s - sum(used.values()) - server_s - sum(apart_s.values())
        server.send_signal(signal.SIGUSR1)  # end the feed; the connections stay up
        wait(lambda: replay_report(report).feed == "done", 30, "the feed to end")
        sent = replay_report(report).frame_index
        kept_up = True
        try:
            wait(lambda: min(stored(config, out), held() if held else sent) >= sent,
                 cp.caught_up_s, "the client")  # fmt: skip
        except RuntimeError:
            kept_up = False
        if idle:
            time.sleep(cp.settle_s)
            idle_window = Window(client.pid, root_role(config), server.pid)
            time.sleep(cp.idle_seconds)
            i0, i1, idle_used, idle_server = idle_window.close()
            seconds = (i1 - i0) / 1e9
            idle_cost = Cost(config.name, config.kind, config.shards,
                             idle_pct={k: round(v / seconds * 100, 2)
                                       for k, v in idle_used.items()},
                             idle_total_pct=round(sum(idle_used.values()) / seconds * 100, 2),
                             server_idle_pct=round(idle_server / seconds * 100, 2))  # fmt: skip
    finally:
        stop(client)
        stop(server)
    ticks = max(1, frames_between(send_log, t0_ns, t1_ns))
    per_tick = {k: round(v / ticks * 1e6, 2) for k, v in used.items()}
    return RateCost(rate=rate, ticks=ticks, window_s=round((t1_ns - t0_ns) / 1e9, 2),
                    us_per_tick=per_tick,
                    total_us_per_tick=round(sum(used.values()) / ticks * 1e6, 2),
                    server_us_per_tick=round(server_s / ticks * 1e6, 2),
                    kept_up=kept_up,
                    apart_us_per_tick={k: round(v / ticks * 1e6, 2) for k, v in apart_s.items()},
                    others_pct=round(max(0.0, others_s) / ((t1_ns - t0_ns) / 1e9) * 100, 1),
                    ), idle_cost  # fmt: skip


def run(configs: list[Config], p: Params, cp: CostParams, *, data: Path, codes_file: Path,
        tmp: Path) -> list[Cost]:  # fmt: skip
    results = []
    for i, config in enumerate(configs):
        cost = Cost(config.name, config.kind, config.shards)
        print(f"cost [{i + 1}/{len(configs)}] {config.name} ...", flush=True)
        for k, rate in enumerate(sorted(cp.rates)):
            work = tmp / f"cost-{i}-{k}"
            work.mkdir()
            rate_cost, idle = measure(
                config, p, cp, rate, data=data, codes_file=codes_file, work=work, idle=k == 0
            )
            cost.rates.append(rate_cost)
            if idle is not None:
                cost.idle_pct = idle.idle_pct
                cost.idle_total_pct = idle.idle_total_pct
                cost.server_idle_pct = idle.server_idle_pct
            print(f"    {rate:,.0f}/s: {rate_cost.total_us_per_tick:.1f} us/tick"
                  f"{'' if rate_cost.kept_up else ' (fell behind)'}", flush=True)  # fmt: skip
        results.append(cost)
    return results


def _group(us: dict[str, float]) -> tuple[float, float, float, float, float]:
    """(the reading process: receiver or a baseline's one process, every shard, the largest
    shard, supervisor, the rest)."""
    shards = [v for k, v in us.items() if k.startswith("feedmux-shard-")]
    reader = sum(v for k, v in us.items() if k == "feedmux-receiver" or k in READERS)
    supervisor = us.get("supervisor", 0.0)
    rest = max(0.0, sum(us.values()) - reader - sum(shards) - supervisor)  # no -0.00
    return reader, sum(shards), max(shards, default=0.0), supervisor, rest


def table(results: list[dict[str, Any]]) -> str:
    """CPU us per tick by role at each rate, then idle % of a core (from ``asdict`` rows)."""
    lines = [f"{'CPU us per tick':<50} {'rate/s':>7} {'total':>7} {'reader':>7} "
             f"{'shards':>7} {'max sh.':>7} {'superv.':>7} {'other':>6} {'server':>7}"]  # fmt: skip
    for c in results:
        for r in c["rates"]:
            reader, shards, top, sup, rest = _group(r["us_per_tick"])
            note = "" if r["kept_up"] else "  fell behind"
            lines.append(f"{c['name']:<50} {r['rate']:>7,.0f} {r['total_us_per_tick']:>7.1f} "
                         f"{reader:>7.1f} {shards:>7.1f} {top:>7.1f} {sup:>7.1f} {rest:>6.1f} "
                         f"{r['server_us_per_tick']:>7.1f}{note}")  # fmt: skip
    lines.append(f"{'idle, % of one core':<50} {'':>7} {'total':>7} {'reader':>7} {'shards':>7} "
                 f"{'max sh.':>7} {'superv.':>7} {'other':>6} {'server':>7}")  # fmt: skip
    for c in results:
        reader, shards, top, sup, rest = _group(c["idle_pct"])
        lines.append(f"{c['name']:<50} {'':>7} {c['idle_total_pct']:>7.2f} {reader:>7.2f} "
                     f"{shards:>7.2f} {top:>7.2f} {sup:>7.2f} {rest:>6.2f} "
                     f"{c['server_idle_pct']:>7.2f}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="CPU per tick by process role, and idle CPU")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    ap.add_argument("--only", nargs="*", help="configurations whose name contains any of these")
    ap.add_argument("--rates", nargs="*", type=float, help="ticks/s (default 400 2000 10000)")
    ap.add_argument("--seconds", type=float, help="the measured window at each rate")
    ap.add_argument("--idle-seconds", type=float, help="the idle window")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    args = ap.parse_args(argv)
    p, cp = (TINY, TINY_COST) if args.tiny else (Params(), CostParams())
    cp = CostParams(rates=tuple(args.rates or cp.rates), seconds=args.seconds or cp.seconds,
                    settle_s=cp.settle_s, idle_seconds=args.idle_seconds or cp.idle_seconds,
                    caught_up_s=cp.caught_up_s)  # fmt: skip
    needed = int(max(cp.rates) * (cp.seconds + cp.settle_s + 5))
    if needed > p.ticks:  # the data file must outlast the window
        p = Params(**{**asdict(p), "ticks": max(p.ticks, needed)})
    configs = [c for c in CONFIGS if not args.only or any(o in c.name for o in args.only)]
    codes = codes_for(p.codes, p.seed)
    data = market_file(codes, p.ticks, p.seed)
    with tempfile.TemporaryDirectory(prefix="feedmux-cost-") as tmp:
        codes_file = Path(tmp) / "codes.txt"
        codes_file.write_text("\n".join(codes))
        results = [
            asdict(c) for c in run(configs, p, cp, data=data, codes_file=codes_file, tmp=Path(tmp))
        ]
    print(table(results))
    if args.json:
        doc = {"environment": environment(), "params": asdict(cp), "cost": results}
        save_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
