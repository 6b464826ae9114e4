"""The results as a PNG: lossless throughput by configuration, and latency percentiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to a file
import matplotlib.pyplot as plt

from benchmarks.labels import rate_label


def chart(doc: dict[str, Any], path: Path) -> None:
    results = doc["results"]
    names = [r["name"].split(" (")[0] for r in results]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), constrained_layout=True)
    rates = [r["max_rate"] for r in results]
    colors = ["#888888" if r["kind"] != "feedmux" else "#2b6cb0" for r in results]
    top.barh(names, rates, color=colors)
    for y, r in enumerate(results):
        top.text(r["max_rate"], y, " " + rate_label(r["max_rate"], r["ramp_stop"]), va="center")
    top.invert_yaxis()
    top.set_xlabel("highest rate with every tick stored (ticks/s)")
    top.set_title("Lossless sustained throughput, same stream, same machine")
    width = 0.25
    for k, q in enumerate(("p50", "p99", "p99.9")):
        values = [r["latency_ms"].get("commit", {}).get(q, 0.0) for r in results]
        bottom.bar([i + (k - 1) * width for i in range(len(results))], values, width, label=q)
    bottom.set_xticks(range(len(results)), names, rotation=20, ha="right")
    bottom.set_ylabel("ms")
    bottom.set_yscale("log")
    rate = doc["params"]["latency_rate"]
    bottom.set_title(f"Latency from server send to committed in the store, at {rate:,.0f} ticks/s")
    bottom.legend()
    env = doc["environment"]
    fig.suptitle(f"feedmux benchmarks — {env['cpus']} CPUs, Python {env['python']}, "
                 f"{env['time']}", fontsize=9)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
