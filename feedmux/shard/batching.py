"""Collect rows and say when to flush: at ``max_rows`` rows or ``max_delay_ns`` after the first.

Pure state with an injected clock: the owner asks ``deadline()`` to set its poll timeout, so the
timer fires even when no new row arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    __slots__ = ("_clock", "_first_ns", "_rows", "max_delay_ns", "max_rows")

    def __init__(self, max_rows: int, max_delay_ns: int, clock: Callable[[], int]) -> None:
        if max_rows < 1 or max_delay_ns < 0:
            raise ValueError("max_rows must be >= 1 and max_delay_ns >= 0")
        self.max_rows = max_rows
        self.max_delay_ns = max_delay_ns
        self._clock = clock
        self._rows: list[T] = []
        self._first_ns = 0

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: T) -> list[T] | None:
        """Add a row; returns the batch to write when it reached ``max_rows``."""
        if not self._rows:
            self._first_ns = self._clock()
        self._rows.append(row)
        if len(self._rows) >= self.max_rows:
            return self.take()
        return None

    def extend(self, rows: list[T]) -> list[list[T]]:
        """Add rows; the batches of ``max_rows`` they filled, in order."""
        if not rows:
            return []
        if not self._rows:
            self._first_ns = self._clock()
        pending = self._rows
        pending.extend(rows)
        size = self.max_rows
        if len(pending) < size:
            return []
        cut = len(pending) - len(pending) % size
        full = [pending[at : at + size] for at in range(0, cut, size)]
        self._rows = pending[cut:]
        if self._rows:  # the rest came just now
            self._first_ns = self._clock()
        return full

    def deadline(self) -> int | None:
        """Clock time at which the pending rows are due, or None when empty."""
        return self._first_ns + self.max_delay_ns if self._rows else None

    def due(self) -> list[T] | None:
        """The pending rows if their deadline has passed."""
        if self._rows and self._clock() >= self._first_ns + self.max_delay_ns:
            return self.take()
        return None

    def take(self) -> list[T]:
        """All pending rows, now (e.g. at shutdown)."""
        rows, self._rows = self._rows, []
        return rows
