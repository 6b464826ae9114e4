"""The benchmark replay harness: feedmux and its baselines side by side on the same stream.

    python -m benchmarks.pipeline [--tiny] [--only NAME ...] [--json PATH] [--png PATH]

Every configuration runs in fresh subprocesses against `feedmux replay --journal` serving the
same seeded, pre-framed frames (the server then costs little: a benchmark measures the client):

1. Throughput: the server ramps its rate step by step; a step is kept up with when, shortly
   after it ends, the client has stored every frame sent so far. The result is the highest
   rate kept up with (lossless sustained throughput).
2. Latency and burst: one tick for every code at once (the opening burst), then a fixed
   moderate rate. The server logs when it wrote each frame, the stores log when they committed
   each tick, and a Subscriber notes when each arrived: p50/p99/p99.9 of send→commit and
   send→Subscriber, and how long the burst took to be stored and published. CPU seconds per
   tick and peak RSS come from each process's own accounting in the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import cost, scaling, stores
from benchmarks.data import codes_for, market_file
from benchmarks.harness import (
    CONFIGS,
    TINY,
    Config,
    Params,
    Result,
    environment,
    latency,
    ramp,
    save_json,
)
from benchmarks.labels import rate_label
from benchmarks.targets import lines as target_lines
from benchmarks.targets import peak, targets


# -- report ----------------------------------------------------------------------------------
def table(results: list[Result]) -> str:
    """The results side by side; "of best" is each peak over the best single process's."""
    best = next((peak(asdict(r)) for r in results if r.kind == "best"), 0.0)
    lines = [
        f"{'configuration':<50} {'max ticks/s':>11} {'of best':>7} {'commit p50/p99 ms':>18} "
        f"{'sub p50/p99 ms':>15} {'burst s':>8} {'cpu us/tick':>11} {'max RSS MB':>10}",
    ]  # fmt: skip
    nan = float("nan")
    for r in results:
        commit = r.latency_ms.get("commit", {})
        sub = r.latency_ms.get("publish", {})
        ratio = f"{peak(asdict(r)) / best:.2f}x" if best else "-"
        rate = rate_label(r.max_rate, r.ramp_stop)
        burst = max(r.burst_s.values()) if r.burst_s else nan
        lines.append(
            f"{r.name:<50} {rate:>11} {ratio:>7} "
            f"{commit.get('p50', nan):>8.1f}/{commit.get('p99', nan):<9.1f} "
            f"{sub.get('p50', nan):>7.2f}/{sub.get('p99', nan):<7.2f} {burst:>8.3f} "
            f"{sum(r.cpu_us_per_tick.values()):>11.1f} "
            f"{max(r.max_rss_mb.values(), default=0):>10.1f}"
        )
    return "\n".join(lines)


def _select(names: list[str] | None, configs: list[Config]) -> list[Config]:
    """``--scaling`` without names: the best single process and the most shards."""
    if names:
        return [c for c in configs if any(n in c.name for n in names)]
    top = max((c for c in configs if c.kind == "feedmux" and not c.args), key=lambda c: c.shards,
              default=None)  # fmt: skip
    return [c for c in configs if c.kind == "best" or c is top]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="feedmux benchmarks, baselines side by side")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    ap.add_argument("--only", nargs="*", help="configurations whose name contains any of these")
    ap.add_argument("--no-ramp", action="store_true", help="only the latency and burst run")
    ap.add_argument("--cost", action="store_true",
                    help="also CPU per tick by process role at fixed rates, and idle CPU "
                         "(benchmarks.cost)")  # fmt: skip
    ap.add_argument("--scaling", nargs="*", metavar="NAME",
                    help="also the ramp pinned to 1 core and to 2 (benchmarks.scaling): of "
                         "these configurations, or of best and the most shards")  # fmt: skip
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    ap.add_argument("--png", metavar="PATH", help="write the chart here")
    args = ap.parse_args(argv)
    p = TINY if args.tiny else Params()
    configs = [c for c in CONFIGS if not args.only or any(o in c.name for o in args.only)]
    codes = codes_for(p.codes, p.seed)
    data = market_file(codes, p.ticks, p.seed)
    results: list[Result] = []
    doc: dict[str, Any] = {"environment": environment(), "params": asdict(p)}
    with tempfile.TemporaryDirectory(prefix="feedmux-bench-") as tmp:
        codes_file = Path(tmp) / "codes.txt"
        codes_file.write_text("\n".join(codes))
        for i, config in enumerate(configs):
            result = Result(config.name, config.kind, config.shards, list(config.args))
            print(f"[{i + 1}/{len(configs)}] {config.name} ...", flush=True)
            if not args.no_ramp:
                work = Path(tmp) / f"{i}-ramp"
                work.mkdir()
                result.max_rate, result.ramp_stop = ramp(config, p, data, codes_file, work)
                print(f"    ramp: {result.max_rate:,.0f} ticks/s ({result.ramp_stop})", flush=True)
            work = Path(tmp) / f"{i}-latency"
            work.mkdir()
            latency(config, p, data, codes_file, work, result=result)
            results.append(result)
        if args.cost:
            cp = cost.TINY_COST if args.tiny else cost.CostParams()
            doc["cost_params"] = asdict(cp)
            costs = cost.run(configs, p, cp, data=data, codes_file=codes_file, tmp=Path(tmp))
            doc["cost"] = [asdict(c) for c in costs]
        if args.scaling is not None:
            doc["scaling"] = scaling.run(_select(args.scaling, configs), p, data=data,
                                         codes_file=codes_file, tmp=Path(tmp))  # fmt: skip
    print("stores: 100-row batches of the same ticks ...", flush=True)
    doc["results"] = [asdict(r) for r in results]
    doc["stores"] = stores.run(2_000 if args.tiny else 200_000)
    doc["targets"] = targets(doc)
    print(table(results))
    if "cost" in doc:
        from benchmarks.cost import table as cost_table  # noqa: PLC0415

        print(cost_table(doc["cost"]))
    if "scaling" in doc:
        from benchmarks.scaling import table as scaling_table  # noqa: PLC0415

        print(scaling_table(doc["scaling"]))
    print(stores.table(doc["stores"]))
    print("\n".join(target_lines(doc["targets"])))
    if args.json:
        save_json(args.json, doc)
    if args.png:
        from benchmarks.chart import chart  # noqa: PLC0415 (matplotlib is optional)

        chart(doc, Path(args.png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
