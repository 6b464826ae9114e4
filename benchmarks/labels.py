"""How the benchmark table and chart word a measured rate."""

from __future__ import annotations


def rate_label(max_rate: float, ramp_stop: str) -> str:
    """The throughput as measured: "≥" when the ramp ended before the client fell behind."""
    fell_behind = ramp_stop.startswith("fell behind at ")
    if not max_rate:
        return "below " + ramp_stop.removeprefix("fell behind at ") if fell_behind else "-"
    return f"{'' if fell_behind else '>='}{max_rate:,.0f}"
