from __future__ import annotations

import threading
import time

from feedmux.errors import StoreError
from feedmux.shard.stores.background import BackgroundWriter
from feedmux.shard.stores.base import WriteResult
from feedmux.shard.stores.retry import RetryingWriter
from tests.conftest import wait_for


class SlowSink:
    """Blocks each write until released; fails the first ``failures`` writes."""

    def __init__(self, failures: int = 0) -> None:
        self.rows: list[int] = []
        self.release = threading.Event()
        self.failures = failures

    def write(self, batch: list[int]) -> WriteResult:
        self.release.wait()
        if self.failures:
            self.failures -= 1
            raise StoreError("disk unhappy")
        self.rows += batch
        return WriteResult(len(batch), 0)


def test_a_blocked_commit_does_not_block_the_caller_and_order_is_kept() -> None:
    sink = SlowSink()
    writer = BackgroundWriter(RetryingWriter(sink.write, time.monotonic_ns), "test-writer")
    started = time.monotonic()
    for i in range(10):
        writer.submit([i * 2, i * 2 + 1])  # the first write is stuck: these just queue
    assert time.monotonic() - started < 1.0 and writer.backlog == 20 and writer.written == 0
    sink.release.set()
    wait_for(lambda: writer.written == 20, 10, "the writer thread to catch up")
    assert sink.rows == list(range(20)) and writer.backlog == 0
    assert writer.close(1.0) == 0


def test_a_failing_store_is_retried_and_close_writes_what_is_left() -> None:
    sink = SlowSink(failures=2)
    sink.release.set()
    writer = BackgroundWriter(RetryingWriter(sink.write, time.monotonic_ns), "test-writer")
    writer.submit([1, 2])
    writer.submit([3])
    assert writer.close(10.0) == 0  # backoff 0.1 s, then 0.2 s: well inside the 10 s
    assert sink.rows == [1, 2, 3] and writer.writer.failures == 2 and writer.stored == 3


def test_a_retry_happens_even_while_batches_keep_coming() -> None:
    sink = SlowSink(failures=1)
    sink.release.set()
    writer = BackgroundWriter(RetryingWriter(sink.write, time.monotonic_ns), "test-writer")
    deadline = time.monotonic() + 5
    n = 0
    while writer.written == 0 and time.monotonic() < deadline:
        writer.submit([n])  # faster than the 0.1 s backoff: the queue is never empty for long
        n += 1
        time.sleep(0.01)
    assert writer.written > 0  # the failed batch was retried, and the rest followed in order
    assert writer.close(5.0) == 0 and sink.rows == list(range(n))
