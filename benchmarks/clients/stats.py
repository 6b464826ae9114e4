"""A baseline client's numbers (``<out>/stats.json``), as its ``Progress`` writes them and the
benchmark reads them."""

from __future__ import annotations

from pathlib import Path

import msgspec


class ClientStats(msgspec.Struct, kw_only=True):
    received: int
    stored: int
    final: bool
    cpu_s: float
    max_rss_kb: int


def read_client_stats(out: Path) -> ClientStats | None:
    """None until the client wrote its first numbers."""
    try:
        return msgspec.json.decode((out / "stats.json").read_bytes(), type=ClientStats)
    except (OSError, msgspec.DecodeError):
        return None
