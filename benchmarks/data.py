"""Seeded benchmark input: a journal file of AllTick trade frames, made once and cached.

The first frames are one trade for each code (the opening burst); the rest are trades of
random codes. Every frame's vendor ``seq`` is its index in the file, so a send log (index →
send time) and a commit log or subscriber (seq → arrival time) give per-tick latency.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from feedmux.ingest.journal import FRAME_TEXT, Record, journal_files, write_journal_file
from feedmux.simulator.market import Market, a_share_universe

CACHE = Path(__file__).parent / ".cache"
T0_MS = 1_763_000_000_000  # the frames' exchange time starts here (2025-11-13, 10:13 Shanghai)


def codes_for(count: int, seed: int) -> list[str]:
    universe = a_share_universe(seed)
    if count >= len(universe):
        return universe
    return sorted(random.Random(seed).sample(universe, count))


def _records(codes: list[str], ticks: int, seed: int) -> Iterator[Record]:
    market = Market(codes, seed)
    rng = random.Random(seed)
    for index in range(ticks):
        code = codes[index] if index < len(codes) else rng.choice(codes)
        now_ms = T0_MS + index // 50  # about 50,000 ticks per second of exchange time
        yield Record(FRAME_TEXT, now_ms * 1_000_000, 0, market.trade(code, now_ms, seq=index))


def market_file(codes: list[str], ticks: int, seed: int) -> Path:
    """The path of the cached input file for these parameters (made if missing)."""
    path = CACHE / f"market-{len(codes)}c-{ticks}t-s{seed}.fmj"
    if not path.exists():
        partial = path.with_suffix(".partial")
        write_journal_file(partial, _records(codes, ticks, seed))
        partial.rename(path)
    journal_files(path)  # a readable journal
    return path
