import msgspec

from feedmux import wire
from feedmux.fanout import ShardOutbox
from feedmux.model import Tick
from feedmux.routing import Router, shard_of

TICK = Tick("600519.SH", 11, 1_700_000_000_000_000_000, 1_700_000_000_001_000_000, 1745.5,
            300.0, 523650.0, 1)  # fmt: skip


def test_published_payload_is_plain_msgpack_for_any_language() -> None:
    payload = wire.encode(wire.Published(3, 42, TICK))
    assert msgspec.msgpack.decode(payload) == [
        3, 42,
        ["600519.SH", 11, 1_700_000_000_000_000_000, 1_700_000_000_001_000_000, 1745.5, 300.0,
         523650.0, 1],
    ]  # fmt: skip
    assert wire.published_decoder.decode(payload) == wire.Published(3, 42, TICK)
    assert wire.trade_topic("600519.SH") == b"T|600519.SH"


def test_bus_messages_round_trip() -> None:
    for msg in (wire.Batch(7, [TICK, TICK]), wire.End(9)):
        assert wire.bus_decoder.decode(wire.encode(msg)) == msg


def test_outbox_groups_by_shard_and_numbers_without_holes() -> None:
    outbox = ShardOutbox(Router(4))
    codes = [f"60{i:04d}.SH" for i in range(40)]
    for round_ in range(3):
        for code in codes:
            outbox.add(Tick(code, round_, 0, 0, 1.0, 1.0, 1.0, 0))
        next_seq: dict[int, int] = {}
        for shard, raw in outbox.drain():
            batch = wire.bus_decoder.decode(raw)
            assert isinstance(batch, wire.Batch)
            assert all(shard_of(t.code, 4) == shard for t in batch.ticks)
            next_seq[shard] = batch.first_seq + len(batch.ticks)
    assert (outbox.routed_ticks, outbox.routed_books, outbox.pending) == (120, 0, 0)
    ends = {s: wire.bus_decoder.decode(raw) for s, raw in outbox.end()}
    assert ends == {s: wire.End(seq) for s, seq in next_seq.items()}
