"""A RetryingWriter on its own thread, so a slow commit never holds up publishing.

SQLite's commits are quick, but now and then one checkpoints its write-ahead log and waits
for the disk for tens of milliseconds; on the shard's loop thread that would stall every
subscriber for as long. The sqlite3 module releases the GIL while it waits, so here the
loop goes on publishing meanwhile. Batches are written in order; a failing write is retried
by the RetryingWriter's own backoff, the batch kept.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Generic, TypeVar

from feedmux.shard.stores.retry import RetryingWriter

T = TypeVar("T")


class BackgroundWriter(Generic[T]):
    def __init__(self, writer: RetryingWriter[T], name: str) -> None:
        self.writer = writer
        self._queue: queue.SimpleQueue[list[T] | None] = queue.SimpleQueue()
        self._submitted = 0  # rows handed over (loop thread only)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # Counters the loop reads; each only grows, so a read is never ahead of the truth.
    @property
    def stored(self) -> int:
        return self.writer.stored

    @property
    def duplicates(self) -> int:
        return self.writer.duplicates

    @property
    def written(self) -> int:
        """Rows committed (inserted or found already stored)."""
        return self.writer.stored + self.writer.duplicates

    @property
    def backlog(self) -> int:
        """Rows handed over and not yet committed."""
        return self._submitted - self.written

    @property
    def failures(self) -> int:
        return self.writer.failures

    @property
    def batches(self) -> int:
        return self.writer.batches

    @property
    def last_commit_ns(self) -> int:
        return self.writer.last_commit_ns

    def submit(self, batch: list[T]) -> None:
        self._submitted += len(batch)
        self._queue.put(batch)

    def _run(self) -> None:
        writer = self.writer
        while True:
            retry_at = writer.retry_deadline()
            try:  # with no retry pending, sleep until a batch (or the close) comes
                if retry_at is None:
                    batch = self._queue.get()
                else:
                    batch = self._queue.get(
                        timeout=max(0.0, (retry_at - time.monotonic_ns()) / 1e9)
                    )
            except queue.Empty:
                batch = []
            if batch is None:
                return
            if batch:
                writer.submit(batch)  # writes now, unless a retry is pending: queued in order
            writer.flush()  # a retry that is due happens even under a steady stream of batches

    def close(self, timeout_s: float) -> int:
        """Write what is queued (retrying up to ``timeout_s``); the rows still not written."""
        self._queue.put(None)
        self._thread.join()
        give_up = time.monotonic() + timeout_s
        while self.writer.backlog and time.monotonic() < give_up:
            time.sleep(0.05)
            self.writer.flush()
        return self.writer.backlog

    def write_now(self, batch: list[T]) -> None:
        """After ``close``: one more batch, on the caller's thread (kept if it fails)."""
        self._submitted += len(batch)
        self.writer.submit(batch)
