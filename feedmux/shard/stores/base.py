"""The contract every store implements."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from feedmux.model import Bar, Depth, Tick


class WriteResult(NamedTuple):
    inserted: int
    duplicates: int  # rows already stored (same identity: code, trading day, seq): skipped


class Sink(Protocol):
    def write_batch(self, ticks: list[Tick]) -> WriteResult:
        """Store ticks idempotently: a tick whose identity (code, trading day, seq; see
        feedmux/identity.py) is already stored is skipped and counted."""
        ...

    def write_books(self, books: list[Depth]) -> WriteResult:
        """Store order books idempotently, the same way."""
        ...

    def write_bars(self, bars: list[Bar]) -> WriteResult:
        """Upsert minute bars by (code, minute): a bar amended by a late tick replaces it."""
        ...

    def recent_ticks(self, since_ns: int) -> list[Tick]:
        """Stored ticks with ``time_ns >= since_ns`` (a restarted shard rebuilds its bars)."""
        ...

    def latest(self) -> tuple[list[Tick], list[Depth]]:
        """The stored tick and book with the highest identity (trading day, seq) of each code."""
        ...

    def close(self) -> None: ...
