"""A worker's stop flag: a plain read on every loop turn, the parent checked on the timer."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from feedmux.workers._process import StopFlag


class FakeParent:
    """``os.getppid`` as a supervised worker sees it, counting calls; ``die`` reparents."""

    def __init__(self) -> None:
        self.pid = os.getppid()
        self.current = self.pid
        self.calls = 0

    def getppid(self) -> int:
        self.calls += 1
        return self.current

    def die(self) -> None:
        self.current = 1 if self.pid != 1 else 2  # init adopts it (unless init was the parent)


@pytest.fixture
def parent(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeParent]:
    """The supervisor of a StopFlag made here; the signal handlers it installs are put back."""
    fake = FakeParent()
    monkeypatch.setattr(os, "getppid", fake.getppid)
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: SimpleNamespace(pid=fake.pid))
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield fake
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_reading_requested_costs_no_system_call_and_the_parent_is_checked_on_demand(
    parent: FakeParent,
) -> None:
    stop = StopFlag(supervised=True)
    before = parent.calls
    for _ in range(1000):  # the receiver's and the shard's loop turns
        assert not stop.requested
    assert parent.calls == before
    stop.check_parent()  # the stats tick: the supervisor is still there
    assert not stop.requested and not stop.orphaned
    parent.die()  # reparented: the supervisor is gone
    assert not stop.requested  # noticed at the next check, not before
    stop.check_parent()
    assert stop.requested and stop.orphaned


def test_sigterm_sets_requested(parent: FakeParent) -> None:
    stop = StopFlag(supervised=True)
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested and not stop.orphaned
