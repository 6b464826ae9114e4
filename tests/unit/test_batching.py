import pytest

from feedmux.shard.batching import Batcher
from tests.conftest import FakeClock


def test_flushes_at_max_rows() -> None:
    batcher: Batcher[int] = Batcher(100, 200_000_000, FakeClock())
    results = [batcher.add(i) for i in range(250)]
    full = [r for r in results if r is not None]
    assert full == [list(range(100)), list(range(100, 200))]
    assert len(batcher) == 50


def test_timer_fires_without_new_rows() -> None:
    clock = FakeClock()
    batcher: Batcher[int] = Batcher(100, 200_000_000, clock)
    assert batcher.deadline() is None and batcher.due() is None
    batcher.add(1)
    clock.advance(0.1)
    batcher.add(2)
    assert batcher.deadline() == clock.now - 100_000_000 + 200_000_000
    clock.advance(0.099)
    assert batcher.due() is None
    clock.advance(0.001)  # 200 ms after the FIRST row, not the last
    assert batcher.due() == [1, 2]
    assert batcher.deadline() is None


def test_take_returns_everything_pending() -> None:
    batcher: Batcher[int] = Batcher(10, 10, FakeClock())
    batcher.add(1)
    assert batcher.take() == [1] and batcher.take() == []


def test_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        Batcher(0, 1, FakeClock())


def test_extend_cuts_full_batches_and_keeps_the_rest_timed_from_now() -> None:
    clock = FakeClock()
    batcher: Batcher[int] = Batcher(100, 200_000_000, clock)
    assert batcher.extend([]) == [] and batcher.deadline() is None
    assert batcher.extend(list(range(60))) == []
    clock.advance(0.1)
    assert batcher.extend(list(range(60, 310))) == [list(range(0, 100)), list(range(100, 200)),
                                                    list(range(200, 300))]  # fmt: skip
    assert len(batcher) == 10 and batcher.deadline() == clock.now + 200_000_000
    assert batcher.extend(list(range(310, 400))) == [list(range(300, 400))]
    assert len(batcher) == 0 and batcher.deadline() is None
