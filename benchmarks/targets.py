"""Issue 15's goals, checked against a benchmark document (the JSON ``benchmarks.pipeline``
writes, so a saved run can be checked again): the best single process is the reference.

feedmux with the most shards must reach the best single process's peak lossless rate (the gap
of every other shard count is shown too), cost at most 2x its CPU per tick at 10,000 and at
400 ticks/s, store and publish the opening burst within 2x its time, deliver to a Subscriber
within 0.3 ms (p50) and 1.5 ms (p99) and commit within 300 ms (p99) at 10,000 ticks/s, idle
under 1% of a core, and grow its peak >= 1.6x from 1 core to 2.
"""

from __future__ import annotations

from typing import Any

Check = dict[str, Any]  # what, value, target, met (None: not measured), goal (False: context)


def peak(result: dict[str, Any]) -> float:
    """The highest rate kept up with; for one that fell behind at the first step, that step's
    rate (an upper bound, so a ratio against it is not flattered)."""
    if result["max_rate"] or not result["ramp_stop"].startswith("fell behind at "):
        return float(result["max_rate"])
    return float(result["ramp_stop"].split(" at ")[-1].split("/")[0].replace(",", ""))


def _check(what: str, value: float | None, op: str, need: float, goal: bool = True) -> Check:
    met = None if value is None else (value >= need if op == ">=" else value <= need)
    return {"what": what, "value": value, "target": f"{op} {need:g}", "met": met, "goal": goal}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def targets(doc: dict[str, Any]) -> list[Check]:
    results = doc["results"]
    best = next((r for r in results if r["kind"] == "best"), None)
    shards = sorted((r for r in results if r["kind"] == "feedmux" and not r.get("args")),
                    key=lambda r: r["shards"])  # fmt: skip
    if not shards:
        return []
    top = shards[-1]
    name = top["name"]
    checks: list[Check] = []
    for r in shards:  # the goal is the most shards' ratio; the others show the gap
        value = _ratio(peak(r), peak(best)) if best else None
        checks.append(_check(f"{r['name']}: peak x best", value, ">=", 1.0, r is top))
    burst = max(top["burst_s"].values(), default=None)
    best_burst = best["burst_s"].get("commit") if best else None
    checks.append(_check(f"{name}: burst stored+published x best", _ratio(burst, best_burst),
                         "<=", 2.0))  # fmt: skip
    publish, commit = top["latency_ms"].get("publish", {}), top["latency_ms"].get("commit", {})
    checks += [
        _check(f"{name}: p50 send->Subscriber ms", publish.get("p50"), "<=", 0.3),
        _check(f"{name}: p99 send->Subscriber ms", publish.get("p99"), "<=", 1.5),
        _check(f"{name}: p99 send->committed ms", commit.get("p99"), "<=", 300.0),
    ]
    cost = {c["name"]: c for c in doc.get("cost", [])}
    for rate in (10_000.0, 400.0):
        ours, theirs = (
            next((x["total_us_per_tick"] for x in cost[n]["rates"] if x["rate"] == rate), None)
            if n in cost else None
            for n in (name, best["name"] if best else "")
        )  # fmt: skip
        checks.append(_check(f"{name}: CPU/tick at {rate:,.0f}/s x best", _ratio(ours, theirs),
                             "<=", 2.0))  # fmt: skip
    idle = cost[name]["idle_total_pct"] if name in cost else None
    checks.append(_check(f"{name}: idle CPU, % of a core", idle, "<=", 1.0))
    scaling = {s["name"]: s for s in doc.get("scaling", [])}
    grown = scaling[name]["ratio"] if name in scaling else None
    checks.append(_check(f"{name}: peak on 2 cores / on 1 core", grown, ">=", 1.6))
    return checks


def lines(checks: list[Check]) -> list[str]:
    out = []
    for c in checks:
        value = "not measured" if c["value"] is None else f"{c['value']:,.2f}"
        mark = "gap " if not c["goal"] else {True: "met ", False: "MISS", None: "----"}[c["met"]]
        out.append(f"  {mark} {c['what']}: {value} (target {c['target']})")
    return out
