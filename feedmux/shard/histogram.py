"""Fixed-bucket histograms a worker fills and writes in its stats (Prometheus reads them).

Observed per batch, never per tick, so the hot path pays nothing. Counts are cumulative over a
process's life, as Prometheus expects; a restart is an ordinary counter reset.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from feedmux.shard.stores.base import WriteResult
from feedmux.stats.shard import HistogramState

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ROWS_BUCKETS = (1, 5, 10, 25, 50, 75, 100, 250, 500, 1000, 5000)


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def state(self) -> HistogramState:
        """For the stats file: upper bounds and per-bucket (not cumulative) counts."""
        return HistogramState(bounds=list(self.bounds), counts=list(self.counts), sum=self.sum,
                              count=self.count)  # fmt: skip


class Received(Protocol):
    @property
    def recv_ns(self) -> int: ...


R = TypeVar("R", bound=Received)


class WriteTimer:
    """Wraps a store's write: rows per batch, seconds per commit, receive → commit age."""

    def __init__(self, wall_clock: Callable[[], int] = time.time_ns) -> None:
        self.rows = Histogram(ROWS_BUCKETS)
        self.commit_s = Histogram(LATENCY_BUCKETS_S)
        self.receive_to_commit_s = Histogram(LATENCY_BUCKETS_S)
        self._clock = wall_clock

    def wrap(self, write: Callable[[list[R]], WriteResult]) -> Callable[[list[R]], WriteResult]:
        def timed(batch: list[R]) -> WriteResult:
            start = self._clock()
            result = write(batch)
            end = self._clock()
            if batch:  # the empty batch at exit only merges
                self.rows.observe(len(batch))
                self.commit_s.observe((end - start) / 1e9)
                self.receive_to_commit_s.observe((end - batch[0].recv_ns) / 1e9)
            return result

        return timed
