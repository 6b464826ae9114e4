"""Does the pipeline use a second core? The throughput ramp, pinned to 1 core and to 2.

Each configuration's ramp (``benchmarks.pipeline.ramp``) runs twice in fresh processes, the
replay server and every client process pinned with ``taskset -c 0`` and then ``taskset -c
0,1`` (children inherit the pinning); the result is each peak and their ratio. A peak written
"≥" (the ramp ended before the client fell behind) makes its ratio a bound, not a measure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.harness import Config, Params, ramp
from benchmarks.labels import rate_label

PINNINGS = (("1 core", "0"), ("2 cores", "0,1"))


def run(configs: list[Config], p: Params, *, data: Path, codes_file: Path,
        tmp: Path) -> list[dict[str, Any]]:  # fmt: skip
    results = []
    for i, config in enumerate(configs):
        row: dict[str, Any] = {"name": config.name, "kind": config.kind,
                               "shards": config.shards}  # fmt: skip
        for label, cpus in PINNINGS:
            print(f"scaling [{i + 1}/{len(configs)}] {config.name}, {label} ...", flush=True)
            work = tmp / f"scaling-{i}-{cpus}"
            work.mkdir()
            rate, stop = ramp(config, p, data, codes_file, work, cpus=cpus)
            row[label] = {"max_rate": rate, "ramp_stop": stop}
            print(f"    {rate_label(rate, stop)} ticks/s ({stop})", flush=True)
        one, two = row["1 core"], row["2 cores"]
        row["ratio"], row["ratio_is"] = None, "not a measure"  # 1 core kept up: no limit seen
        if _fell_behind(one) and one["max_rate"]:
            row["ratio"] = round(two["max_rate"] / one["max_rate"], 3)
            row["ratio_is"] = "a measure" if _fell_behind(two) else "a lower bound"
        results.append(row)
    return results


def _fell_behind(peak: dict[str, Any]) -> bool:
    return str(peak["ramp_stop"]).startswith("fell behind at ")


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'scaling (taskset)':<50} {'1 core':>11} {'2 cores':>11} {'2/1':>8}"]
    for r in results:
        one, two = (rate_label(r[k]["max_rate"], r[k]["ramp_stop"]) for k in ("1 core", "2 cores"))
        bound = ">=" if r["ratio_is"] == "a lower bound" else ""
        ratio = "-" if r["ratio"] is None else f"{bound}{r['ratio']:.2f}x"
        lines.append(f"{r['name']:<50} {one:>11} {two:>11} {ratio:>8}")
    return "\n".join(lines)
