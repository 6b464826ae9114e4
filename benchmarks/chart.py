"""The results as a PNG: lossless throughput by configuration against the best single process
(the reference line), latency percentiles, and CPU per tick by rate when the cost was run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to a file
import matplotlib.pyplot as plt

from benchmarks.labels import rate_label
from benchmarks.targets import peak

COLORS = {"feedmux": "#2b6cb0", "best": "#c05621"}  # the rest: grey context


def chart(doc: dict[str, Any], path: Path) -> None:
    results = doc["results"]
    costs = doc.get("cost", [])
    names = [r["name"].split(" (")[0] for r in results]
    best = next((r for r in results if r["kind"] == "best"), None)
    panels = 3 if costs else 2
    fig, axes = plt.subplots(panels, 1, figsize=(10, 4 * panels), constrained_layout=True)
    top, bottom = axes[0], axes[1]
    rates = [r["max_rate"] for r in results]
    top.barh(names, rates, color=[COLORS.get(r["kind"], "#888888") for r in results])
    for y, r in enumerate(results):
        ratio = f" ({peak(r) / peak(best):.2f}x best)" if best and peak(best) else ""
        top.text(r["max_rate"], y, " " + rate_label(r["max_rate"], r["ramp_stop"]) + ratio,
                 va="center")  # fmt: skip
    if best is not None and best["max_rate"]:
        top.axvline(best["max_rate"], color=COLORS["best"], linestyle="--", linewidth=1,
                    label="best single process (the reference)")  # fmt: skip
        top.legend(loc="lower right")
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
    if costs:
        _cost_panel(axes[2], costs)
    env = doc["environment"]
    fig.suptitle(f"feedmux benchmarks — {env['cpus']} CPUs, Python {env['python']}, "
                 f"{env['time']}", fontsize=9)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cost_panel(ax: Any, costs: list[dict[str, Any]]) -> None:
    rates = sorted({x["rate"] for c in costs for x in c["rates"]})
    width = 0.8 / max(1, len(rates))
    for k, rate in enumerate(rates):
        values = [next((x["total_us_per_tick"] for x in c["rates"] if x["rate"] == rate), 0.0)
                  for c in costs]  # fmt: skip
        offsets = [i + (k - (len(rates) - 1) / 2) * width for i in range(len(costs))]
        ax.bar(offsets, values, width, label=f"{rate:,.0f} ticks/s")
    best = next((c for c in costs if c["kind"] == "best"), None)
    if best is not None:
        for x in best["rates"]:  # the goal: at most 2x the best single process's
            ax.axhline(2 * x["total_us_per_tick"], linestyle=":", linewidth=1, color="#c05621")
    ax.set_xticks(range(len(costs)), [c["name"].split(" (")[0] for c in costs], rotation=20,
                  ha="right")  # fmt: skip
    ax.set_ylabel("CPU µs per tick, all client processes")
    ax.set_yscale("log")
    ax.set_title("CPU per tick at fixed rates (dotted: 2x the best single process's)")
    ax.legend()
