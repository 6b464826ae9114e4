"""Per-process counters, written once a second as JSON files in ``<run_dir>/stats``.

Files (not sockets) so that ``feedmux status`` and the supervisor can read them without a
connection, and a dead process leaves its last numbers behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode


def write_stats(stats_dir: Path, name: str, stats: dict[str, Any]) -> None:
    path = stats_dir / f"{name}.json"
    tmp = stats_dir / f".{name}.json.tmp"
    tmp.write_bytes(_encode(stats))
    os.replace(tmp, path)


def read_stats(stats_dir: Path) -> dict[str, dict[str, Any]]:
    """Every process's latest stats, by process name; unreadable files are skipped."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(stats_dir.glob("*.json")):
        try:
            out[path.stem] = msgspec.json.decode(path.read_bytes())
        except (OSError, msgspec.DecodeError):
            continue  # being replaced right now; the next read gets it
    return out
