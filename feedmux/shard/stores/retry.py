"""Keep batches until the sink has them: a failed write is retried with backoff, never dropped.

A failing store (a full disk: SQLite's "database or disk is full" is a StoreError like any
other) is logged once per process by ``feedmux.writes.health`` and counted; its batches wait
here, in order, and go in once the store takes writes again."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from feedmux.errors import StoreError
from feedmux.shard.stores.base import WriteResult
from feedmux.writes import health

T = TypeVar("T")

log = logging.getLogger(__name__)

RETRY_MIN_NS = 100_000_000
RETRY_MAX_NS = 10_000_000_000


class RetryingWriter(Generic[T]):
    """Writes batches with ``write`` (e.g. a sink's ``write_batch``), in order."""

    def __init__(
        self,
        write: Callable[[list[T]], WriteResult],
        clock: Callable[[], int],
        wall_clock: Callable[[], int] = time.time_ns,
        kind: str = "store",  # what status calls it when failing ("redis" for the streams)
    ) -> None:
        self._write = write
        self._clock = clock
        self._wall_clock = wall_clock
        self._queue: deque[list[T]] = deque()
        self._retry_at: int | None = None
        self._backoff_ns = RETRY_MIN_NS
        self.stored = 0
        self.duplicates = 0
        self.batches = 0
        self.failures = 0
        self.last_commit_ns = 0  # wall-clock ns of the last successful commit
        self._kind = kind
        self._source = f"writer-{id(self)}"  # which writer, for the failing/recovered state

    @property
    def backlog(self) -> int:
        return sum(len(b) for b in self._queue)

    def submit(self, batch: list[T]) -> None:
        self._queue.append(batch)
        if self._retry_at is None:
            self.flush()

    def retry_deadline(self) -> int | None:
        return self._retry_at

    def flush(self) -> None:
        """Write queued batches in order; on failure keep them and schedule a retry."""
        if self._retry_at is not None and self._clock() < self._retry_at:
            return
        while self._queue:
            batch = self._queue[0]
            try:
                result = self._write(batch)
            except StoreError as exc:
                self.failures += 1
                self._retry_at = self._clock() + self._backoff_ns
                health.failed(self._kind, exc, self._source)  # logs once, when it starts
                log.debug("write failed, %d rows kept, retry in %.1f s: %s", self.backlog,
                          self._backoff_ns / 1e9, exc)  # fmt: skip
                self._backoff_ns = min(self._backoff_ns * 2, RETRY_MAX_NS)
                return
            self._queue.popleft()
            self.stored += result.inserted
            self.duplicates += result.duplicates
            self.batches += 1
            self.last_commit_ns = self._wall_clock()
        if self._retry_at is not None:
            health.ok(self._kind, self._source)
        self._retry_at = None
        self._backoff_ns = RETRY_MIN_NS
