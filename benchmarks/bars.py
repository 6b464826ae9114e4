"""What following the exchanges' sessions costs the bar builder, per tick.

    python -m benchmarks.bars [--ticks N] [--seed S] [--json PATH] [--tiny]

A seeded stream of trades of the whole A-share universe (5,430 codes) at ``--rate`` ticks per
second of exchange time (5,000: the quickstart's feed), from 09:30 Shanghai on 2026-12-02, fed
to a shard's ``BarBuilder`` as a live feed (its clock follows the ticks; the timer's ``due``
every 1,000 ticks), once per bar mode, each in its own process (one cannot warm the other's
caches):

- plain: clock minutes (``--bar-sessions none``), the cost before market hours existed;
- exchange: the sessions' bar slots, flat bars for quiet minutes, end labels (the default);
- extended: the same with ``--bars-extended``.

Reported: µs per tick (best of 5) and the bars that left the builder.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from typing import Any

from benchmarks.harness import environment
from feedmux.market.calendar import Calendars
from feedmux.market.sessions import MINUTE_NS, BarSlots, Sessions
from feedmux.model import Tick
from feedmux.shard.bars import BarBuilder
from feedmux.simulator.market import a_share_universe

MODES = ("plain", "exchange", "extended")
START_NS = 1_796_175_000_000_000_000  # 2026-12-02 09:30 Shanghai
ROUNDS = 5


class _Clock:
    now = START_NS

    def __call__(self) -> int:
        return self.now


def _ticks(count: int, seed: int, rate: float) -> list[Tick]:
    rng = random.Random(seed)
    codes = a_share_universe(seed)
    step = int(1e9 / rate)
    return [Tick(rng.choice(codes), i, START_NS + i * step, 0, 10.0 + rng.random(), 100.0,
                 1000.0, 1) for i in range(count)]  # fmt: skip


def measure(mode: str, count: int, seed: int, rate: float) -> dict[str, Any]:
    ticks = _ticks(count, seed, rate)
    sessions = Sessions(Calendars.load()) if mode != "plain" else None
    best, bars = float("inf"), 0
    for _ in range(ROUNDS):
        clock = _Clock()
        builder = BarBuilder(clock, slots=BarSlots(sessions, extended=mode == "extended"),
                             label_ns=0 if mode == "plain" else MINUTE_NS)  # fmt: skip
        add, due = builder.add, builder.due
        out = 0
        began = time.perf_counter()
        for i, tick in enumerate(ticks):
            clock.now = tick.time_ns
            out += len(add(tick))
            if i % 1000 == 0:
                out += len(due())
        best = min(best, time.perf_counter() - began)
        bars = out
    return {
        "mode": mode,
        "ticks": count,
        "rate": rate,
        "us_per_tick": best / count * 1e6,
        "bars": bars,
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'mode':<10}{'µs/tick':>9}{'bars':>10}"]
    lines += [f"{r['mode']:<10}{r['us_per_tick']:>9.3f}{r['bars']:>10,}" for r in results]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the bar builder's cost per tick, by bar mode")
    ap.add_argument("--ticks", type=int, default=500_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rate", type=float, default=5000.0, help="ticks per second (default 5000)")
    ap.add_argument("--tiny", action="store_true", help="a few thousand ticks (the smoke test)")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    ap.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)  # a child's job
    args = ap.parse_args(argv)
    count = 5000 if args.tiny else args.ticks
    if args.one:
        print(json.dumps(measure(args.one, count, args.seed, args.rate)))
        return 0
    results = []
    for mode in MODES:
        child = subprocess.run([sys.executable, "-m", "benchmarks.bars", "--one", mode,
                                "--ticks", str(count), "--seed", str(args.seed),
                                "--rate", str(args.rate)],
                               check=True, capture_output=True, text=True)  # fmt: skip
        results.append(json.loads(child.stdout))
    print(table(results))
    if args.json:
        doc = {
            "environment": environment(),
            "seed": args.seed,
            "rate": args.rate,
            "results": results,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
