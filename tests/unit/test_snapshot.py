from feedmux.model import Tick
from feedmux.shard.snapshot import SnapshotCache


def tick(code: str, seq: int, price: float = 1.0) -> Tick:
    return Tick(code, seq, 0, 0, price, 1.0, 1.0, 0)


def test_keeps_the_latest_of_each_code() -> None:
    """The shard's re-send filter hands over only newer ticks (tests/unit/test_shard_state.py)."""
    cache = SnapshotCache()
    cache.apply(1, tick("A.SH", 5, 1.0))
    cache.apply(2, tick("A.SH", 6, 2.0))
    cache.apply(4, tick("B.SZ", 1, 3.0))
    assert cache.get(["A.SH", "B.SZ", "C.SH"]) == [tick("A.SH", 6, 2.0), tick("B.SZ", 1, 3.0)]
    assert cache.pub_seqs == {"A.SH": 2, "B.SZ": 4}
    assert cache.last_pub_seq == 4 and len(cache) == 2


def test_first_tick_time_is_kept_per_code() -> None:
    cache = SnapshotCache()
    cache.apply(1, Tick("A.SH", 5, 0, 100, 1.0, 1.0, 1.0, 0))
    cache.apply(2, Tick("A.SH", 6, 0, 200, 1.0, 1.0, 1.0, 0))
    assert cache.first_recv_ns == {"A.SH": 100}
    assert cache.get(["A.SH"])[0].recv_ns == 200
