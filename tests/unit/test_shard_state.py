from feedmux import wire
from feedmux.model import Tick
from feedmux.shard_state import ShardState
from tests.conftest import FakeClock


def ticks(n: int, start: int = 0) -> list[Tick]:
    return [Tick(f"60{i % 7:04d}.SH", start + i, 0, 0, 1.0 + i, 1.0, 1.0, 0) for i in range(n)]


def test_batch_is_published_snapshotted_and_batched() -> None:
    state = ShardState(2, batch_rows=100, batch_delay_ns=200_000_000, clock=FakeClock())
    frames, batches, _ = state.on_bus(wire.encode(wire.Batch(1, ticks(150))))
    assert len(frames) == 150 and [len(b) for b in batches] == [100]
    topic, payload = frames[-1]
    published = wire.published_decoder.decode(payload)
    assert topic == wire.trade_topic(published.tick.code)
    assert (published.shard, published.pub_seq) == (2, 150)
    reply = wire.snapshot_reply_decoder.decode(state.snapshot_reply(wire.encode(
        wire.SnapshotRequest(None))))  # fmt: skip
    assert reply.last_pub_seq == 150 and len(reply.ticks) == 7
    assert {t.code: t.seq for t in reply.ticks} == {t.code: t.seq for t in ticks(150)}


def test_bus_gap_is_counted_and_end_is_seen() -> None:
    state = ShardState(0, 100, 200_000_000, FakeClock())
    state.on_bus(wire.encode(wire.Batch(1, ticks(5))))
    state.on_bus(wire.encode(wire.Batch(9, ticks(2, 100))))  # 6, 7, 8 never came
    assert state.bus_gaps == 3 and state.received == 7
    state.on_bus(wire.encode(wire.End(11)))
    assert state.ended


def test_garbage_on_the_bus_is_counted_not_fatal() -> None:
    state = ShardState(0, 100, 200_000_000, FakeClock())
    assert state.on_bus(b"\xc1garbage") == ([], [], [])
    assert state.bad_messages == 1
