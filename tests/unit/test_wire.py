import msgspec

from feedmux import families, wire
from feedmux.ingest.fanout import ShardOutbox
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
    assert families.TRADES.decoder.decode(payload) == wire.Published(3, 42, TICK)
    assert families.TRADES.topic("600519.SH") == b"T|600519.SH"


def test_bus_messages_round_trip() -> None:
    for msg in (wire.Burst(7, [TICK, TICK]), wire.End(9), wire.Resume(3, 5), wire.Lost(5, 2)):
        assert wire.bus_decoder.decode(wire.encode(msg)) == msg
    for report in (wire.Ack(1, 2, 3), wire.Rewind(1, 0, 0)):
        assert wire.feedback_decoder.decode(wire.encode(report)) == report


def test_outbox_groups_by_shard_and_numbers_without_holes() -> None:
    outbox = ShardOutbox(Router(4))
    codes = [f"60{i:04d}.SH" for i in range(40)]
    next_seq = dict.fromkeys(range(4), 1)
    for round_ in range(3):
        for code in codes:
            outbox.add(Tick(code, round_, 0, 0, 1.0, 1.0, 1.0, 0))
        for shard, first, end, raw in outbox.drain():
            burst = wire.bus_decoder.decode(raw)
            assert isinstance(burst, wire.Burst)
            assert all(shard_of(t.code, 4) == shard for t in burst.ticks)
            assert burst.first_seq == first == next_seq[shard]
            assert end == first + len(burst.ticks)
            next_seq[shard] = end
    assert (outbox.routed_ticks, outbox.routed_books, outbox.pending) == (120, 0, 0)


def test_the_bus_and_feedback_messages_are_the_documented_arrays() -> None:
    # docs/wire.md is the contract: a receiver and a shard of different versions still agree.
    decode = msgspec.msgpack.decode
    assert decode(wire.encode(wire.Burst(7, [], []))) == ["B", 7, [], []]
    assert decode(wire.encode(wire.Resume(5, 9, 12))) == ["R", 5, 9, 12]
    assert decode(wire.encode(wire.Lost(3, 2))) == ["L", 3, 2]
    assert decode(wire.encode(wire.End(4))) == ["E", 4]
    assert decode(wire.encode(wire.Ack(1, 5, 9))) == ["A", 1, 5, 9]
    assert decode(wire.encode(wire.Rewind(1, 5, 6))) == ["W", 1, 5, 6]
