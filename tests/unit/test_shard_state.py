import pytest

from feedmux import families, wire
from feedmux.model import Depth, Tick
from feedmux.providers.alltick.provider import PROVIDER
from feedmux.shard.state import Output, ShardState
from feedmux.simulator.market import Market
from tests.conftest import FakeClock


def ticks(n: int, start: int = 0) -> list[Tick]:
    return [Tick(f"60{i % 7:04d}.SH", start + i, 0, 0, 1.0 + i, 1.0, 1.0, 0) for i in range(n)]


def test_a_burst_is_published_snapshotted_and_handed_to_the_stores() -> None:
    state = ShardState(2)
    state.on_bus(wire.encode(wire.Resume(1, 1)))
    out = state.on_bus(wire.encode(wire.Burst(1, ticks(150))))
    publications = out.published
    assert len(publications) == 150 and out.ticks == ticks(150) and out.relayed == publications
    topic, payload = publications[-1]
    published = families.TRADES.decoder.decode(payload)
    assert topic == families.TRADES.topic(published.tick.code)
    assert (published.shard, published.pub_seq) == (2, 150)
    reply = wire.snapshot_reply_decoder.decode(state.snapshot_reply(wire.encode(
        wire.SnapshotRequest(None))))  # fmt: skip
    assert reply.last_pub_seq == 150 and len(reply.ticks) == 7
    assert {t.code: t.seq for t in reply.ticks} == {t.code: t.seq for t in ticks(150)}


def resumed(shard: int = 0, epoch: int = 5, next_seq: int = 1) -> ShardState:
    state = ShardState(shard)
    assert state.take_feedback() == [wire.encode(wire.Rewind(shard, 0, 0))]  # "I hold nothing"
    state.on_bus(wire.encode(wire.Resume(epoch, next_seq)))
    return state


def test_nothing_is_taken_before_the_receiver_says_where_to_start() -> None:
    state = ShardState(0)
    assert state.on_bus(wire.encode(wire.Burst(1, ticks(5)))) == Output()
    state.on_bus(wire.encode(wire.Resume(5, 1)))
    publications = state.on_bus(wire.encode(wire.Burst(1, ticks(5)))).published
    assert len(publications) == 5 and state.received == 5 and state.bus_ignored == 1


def test_a_hole_asks_for_a_resend_once_and_the_resend_fills_it() -> None:
    state = resumed()
    state.on_bus(wire.encode(wire.Burst(1, ticks(5))))
    for _ in range(3):  # 6, 7, 8 never came: ignored, asked for once
        state.on_bus(wire.encode(wire.Burst(9, ticks(2, 100))))
    assert state.received == 5 and state.take_feedback() == [wire.encode(wire.Rewind(0, 5, 6))]
    state.on_bus(wire.encode(wire.Resume(5, 1)))  # the resend starts at the oldest unacked
    stored = state.on_bus(wire.encode(wire.Burst(1, ticks(8)))).ticks  # overlaps: trimmed
    stored += state.on_bus(wire.encode(wire.Burst(9, ticks(2, 100)))).ticks
    assert state.received == 10 and state.expected_bus_seq == 11
    assert [t.seq for t in stored] == [5, 6, 7, 100, 101]
    state.on_bus(wire.encode(wire.End(11)))
    assert state.ended and state.bus_gaps == 0


def test_acks_follow_what_the_writers_committed() -> None:
    state = resumed(shard=3, epoch=9)
    state.on_bus(wire.encode(wire.Burst(1, ticks(30))))
    state.on_bus(wire.encode(wire.Burst(31, ticks(20, 30))))
    assert state.committed(0, 0) is None
    assert state.committed(29, 0) is None  # the first message is not all stored yet
    assert state.committed(30, 0) == wire.encode(wire.Ack(3, 9, 31))
    assert state.committed(30, 0) is None  # nothing new
    assert state.committed(50, 0) == wire.encode(wire.Ack(3, 9, 51))


def test_with_redis_on_acks_wait_for_redis_too() -> None:
    state = resumed(shard=1, epoch=2)
    state.on_bus(wire.encode(wire.Burst(1, ticks(30))))
    assert state.committed(30, 0, relays_written=29) is None  # stored, not all in Redis yet
    assert state.committed(30, 0, relays_written=30) == wire.encode(wire.Ack(1, 2, 31))


def test_lost_markers_count_as_gaps_and_a_new_receiver_restarts_the_count() -> None:
    state = resumed()
    state.on_bus(wire.encode(wire.Burst(1, ticks(5))))
    state.on_bus(wire.encode(wire.Lost(6, 10)))
    state.on_bus(wire.encode(wire.Burst(16, ticks(1, 50))))
    assert state.bus_gaps == 10 and state.received == 6
    state.on_bus(wire.encode(wire.Resume(6, 1)))  # another epoch: a restarted receiver
    state.on_bus(wire.encode(wire.Burst(1, ticks(2, 200))))
    assert state.received == 8 and state.expected_bus_seq == 3


def test_garbage_on_the_bus_is_counted_not_fatal() -> None:
    state = ShardState(0)
    assert state.on_bus(b"\xc1garbage") == Output()
    assert state.bad_messages == 1


DAY_NS = 86_400 * 10**9
MORNING = 1_764_000_000 * 10**9 + 2 * 3_600 * 10**9  # 10:00 in Shanghai


def day_ticks(day: int, seqs: list[int], code: str = "600519.SH", late_s: int = 0) -> list[Tick]:
    """Ticks of trading day ``day`` numbered ``seqs`` (a vendor restarting its seqs daily);
    ``late_s``: the same ticks sent that many seconds later (a re-run's synthetic market)."""
    at = MORNING + day * DAY_NS + late_s * 10**9
    return [Tick(code, s, at + s * 10**9, at + s * 10**9, 10.0 + s, 1.0, 10.0, 1) for s in seqs]


def test_a_restarted_numbering_on_a_new_day_is_published_and_its_resends_are_not() -> None:
    state = resumed(next_seq=1)
    assert len(trades(state, 1, day_ticks(0, [1]))) == 1
    day2 = day_ticks(1, [1, 2])
    assert len(trades(state, 2, day2)) == 2 and state.resent_dropped == 0  # not day 1's seq 1
    assert state.snapshot.get(["600519.SH"]) == [day2[-1]]  # the snapshot follows the new day
    again = state.on_bus(wire.encode(wire.Burst(4, day_ticks(1, [1, 2], late_s=3))))
    assert again.published == [] and state.resent_dropped == 2  # another time: the same ticks
    assert [t.seq for t in again.ticks] == [1, 2]  # to the stores still: they keep one copy


def test_after_a_restart_the_stores_ticks_are_resends_and_build_no_bars() -> None:
    stored = day_ticks(0, [1, 2, 3])
    state = ShardState(0, wall_clock=FakeClock(MORNING))
    state.restore([stored[-1]], [])  # the store's latest tick of each code
    state.restore_bars(stored)
    state.on_bus(wire.encode(wire.Resume(1, 1)))
    again = day_ticks(0, [1, 2, 3, 4], late_s=600)  # a re-run: same seqs, 10 minutes later
    out = state.on_bus(wire.encode(wire.Burst(1, again)))
    assert [t.seq for t in trades_of(out)] == [4]  # only seq 4 is new
    assert state.resent_dropped == 3
    bars = {b.minute_ns: b for b in [*out.bars, *state.close_bars().bars]}  # the last of each
    assert sum(b.count for b in bars.values()) == 4  # 3 restored + the new one, not 7


def trades(state: ShardState, first_seq: int, ticks: list[Tick]) -> list[Tick]:
    """The ticks a bus burst published on the trade topics."""
    return trades_of(state.on_bus(wire.encode(wire.Burst(first_seq, ticks))))


def trades_of(out: Output) -> list[Tick]:
    return [families.TRADES.decoder.decode(p).tick for t, p in out.published
            if t.startswith(b"T|")]  # fmt: skip


def day_books(day: int, seqs: list[int], code: str = "600519.SH", late_s: int = 0) -> list[Depth]:
    at = MORNING + day * DAY_NS + late_s * 10**9
    return [Depth(code, s, at + s * 10**9, at + s * 10**9, [(10.0, 1.0)], [(10.1, 2.0)])
            for s in seqs]  # fmt: skip


def books_published(state: ShardState, first_seq: int, books: list[Depth]) -> list[Depth]:
    publications = state.on_bus(wire.encode(wire.Burst(first_seq, [], books))).published
    return [families.BOOKS.decoder.decode(p).depth for t, p in publications
            if t.startswith(families.BOOKS.topic(""))]  # fmt: skip


def test_re_sent_books_are_stored_but_not_published_again_nor_after_a_restart() -> None:
    state = resumed(next_seq=1)
    assert [b.seq for b in books_published(state, 1, day_books(0, [1, 2]))] == [1, 2]
    again = day_books(0, [1, 2, 3], late_s=5)  # a re-run: the same books, and one new
    assert [b.seq for b in books_published(state, 3, again)] == [3]
    assert [b.seq for b in books_published(state, 6, day_books(1, [1]))] == [1]  # a new day
    assert state.books_added == 6 and state.book_seq == 4  # every book to the stores
    restarted = ShardState(0)
    restarted.restore([], [day_books(1, [1])[0]])  # the store's latest book of the code
    restarted.on_bus(wire.encode(wire.Resume(1, 1)))
    assert [b.seq for b in books_published(restarted, 1, day_books(1, [1, 2]))] == [2]


def test_each_new_tick_s_identity_is_computed_once_on_the_shard_s_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One re-send filter decides; the bars and the snapshot trust it (no second comparison)."""
    import feedmux.identity  # noqa: PLC0415

    calls = []
    real = feedmux.identity.trading_day

    def counted(*args: int | str) -> int:
        calls.append(args)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(feedmux.identity, "trading_day", counted)
    state = resumed(next_seq=1)
    assert len(trades(state, 1, day_ticks(0, list(range(1, 51))))) == 50
    assert len(calls) == 50


def test_with_redis_on_bars_and_moves_never_let_the_ack_claim_ticks_redis_lacks() -> None:
    """Redis holds the publications of the first message only: its trades, the moves and the bar
    they produced count for nothing, so the second message's ticks are not acknowledged."""
    state = ShardState(0, wall_clock=FakeClock(MORNING), min_move={"trades": 0.01})
    state.on_bus(wire.encode(wire.Resume(1, 1)))
    first = day_ticks(0, list(range(1, 11)), late_s=45)  # every tick moves the price ...
    second = day_ticks(0, list(range(11, 21)), late_s=45)  # ... and these cross the minute
    out = state.on_bus(wire.encode(wire.Burst(1, first)))
    held = len(out.relayed)  # what the shard sent to Redis for the first message, all there
    out = state.on_bus(wire.encode(wire.Burst(11, second)))
    assert any(t.startswith(families.BARS.prefix) for t, _ in out.published)  # a bar closed
    assert state.committed(20, 0, held) == wire.encode(wire.Ack(0, 1, 11))


def test_with_redis_on_re_sent_ticks_do_not_hold_the_ack_back() -> None:
    """A re-sent tick is stored again but not published: Redis gets nothing for it to hold."""
    state = resumed(shard=0, epoch=1)
    sent = 0
    for first in (1, 6):  # the same five ticks twice (a resubscription)
        sent += len(state.on_bus(wire.encode(wire.Burst(first, day_ticks(0, [1, 2, 3, 4, 5]))))
                    .relayed)  # fmt: skip
    assert sent == 5
    assert state.committed(10, 0, sent) == wire.encode(wire.Ack(0, 1, 11))


def test_bars_closed_by_the_clock_and_at_shutdown_go_to_stores_and_relays_holding_no_ack() -> None:
    wall = FakeClock(MORNING)
    state = ShardState(0, wall_clock=wall)
    state.on_bus(wire.encode(wire.Resume(1, 1)))
    first = [*day_ticks(0, [1, 2]), *day_ticks(0, [3], code="000001.SZ")]
    out = state.on_bus(wire.encode(wire.Burst(1, first)))
    assert len(out.relayed) == 3 and out.bars == []
    wall.advance(120)  # the data clock passed the minute's end
    due = state.bars_due()
    assert sorted(b.code for b in due.bars) == ["000001.SZ", "600519.SH"]
    assert due.relayed == due.published and len(due.published) == 2
    assert state.committed(3, 0, 3) == wire.encode(wire.Ack(0, 1, 4))  # the bars not needed
    later = day_ticks(0, [200])  # seq 200 is 200 s after the first minute
    assert len(state.on_bus(wire.encode(wire.Burst(4, later))).relayed) == 1
    closed = state.close_bars()
    assert [b.count for b in closed.bars] == [1] and closed.relayed == closed.published
    assert state.relayed_total == 3 + 2 + 1 + 1
    assert state.committed(4, 0, 3 + 2 + 1) == wire.encode(wire.Ack(0, 1, 5))


def test_pushes_are_decoded_here_and_a_bad_one_is_counted_and_still_takes_its_seq() -> None:
    market = Market(["600519.SH", "000001.SZ"], seed=1)
    good = [market.trade(code, 1_763_000_000_000 + i, seq=i)
            for i, code in enumerate(["600519.SH", "000001.SZ"] * 2)]  # fmt: skip
    bad = b'{"cmd_id":22998,"data":{"code":"600519.SH","seq":"x"}}'
    state = ShardState(0, decode=PROVIDER.decode)
    state.on_bus(wire.encode(wire.Resume(1, 1)))
    out = state.on_bus(wire.encode(wire.Pushes(1, [good[0], bad, good[1]], [7, 8, 9])))
    assert [(t.code, t.seq, t.recv_ns) for t in out.ticks] == [("600519.SH", 0, 7),
                                                              ("000001.SZ", 1, 9)]  # fmt: skip
    assert state.bad_pushes == {"schema": 1} and len(state.bad_samples) == 1
    # A resend overlapping what was taken (seqs 2 and 3): only seq 4 and on are new.
    out = state.on_bus(
        wire.encode(wire.Pushes(2, [bad, good[1], good[2], good[3]], [8, 9, 10, 11]))
    )
    assert [t.seq for t in out.ticks] == [2, 3] and state.expected_bus_seq == 6
    assert state.bad_pushes == {"schema": 1} and state.received == 4
    assert state.committed(4, 0) == wire.encode(wire.Ack(0, 1, 6))  # the bad push is acked too
    # An internal message whose lists disagree is refused whole, not half-taken.
    assert state.on_bus(wire.encode(wire.Pushes(6, [good[0]], []))) == Output()
    assert state.bad_messages == 1 and state.expected_bus_seq == 6


def test_after_a_restart_what_the_store_had_goes_to_the_relays_again_but_not_to_pub() -> None:
    """The store lane may run ahead of a relay's (acks wait for both; the lanes write apart):
    a shard that died between them restarts knowing the store's ticks but not whether NATS or
    Redis got them. The receiver resends every unacked message: those ticks go to the relays
    again (seq 0, JetStream keeps one by its message id), not to subscribers; a later re-send of
    a tick this incarnation relayed itself goes nowhere."""
    stored = day_ticks(0, [1, 2, 3])
    state = ShardState(0, wall_clock=FakeClock(MORNING))
    state.restore([stored[-1]], [], restarted=True)
    state.on_bus(wire.encode(wire.Resume(1, 1, until=4)))  # bus seqs 1-3: sent to the last one
    out = state.on_bus(wire.encode(wire.Burst(1, day_ticks(0, [2, 3, 4]))))
    relayed = [families.TRADES.decoder.decode(p) for _, p in out.relayed]
    assert [(m.seq, m.item.seq) for m in relayed] == [(0, 2), (0, 3), (1, 4)]
    assert [t.seq for t in trades_of(out)] == [4]  # PUB: the new one only
    assert state.committed(3, 0, 3) == wire.encode(wire.Ack(0, 1, 4))  # waits for all three
    again = state.on_bus(wire.encode(wire.Burst(4, day_ticks(0, [4, 5], late_s=60))))
    assert [families.TRADES.decoder.decode(p).item.seq for t, p in again.relayed
            if t.startswith(families.TRADES.prefix)] == [5]  # fmt: skip


def test_only_the_receiver_s_resend_after_a_restart_goes_to_the_relays_again() -> None:
    """A vendor's own re-send (a resubscription, a journal served again) after the resend was
    caught up, or in a new run on a stored day, was relayed when it first came: relaying it
    again would store it twice in JetStream once the duplicate window has passed."""
    stored = day_ticks(0, [1, 2, 3])
    restarted = ShardState(0, wall_clock=FakeClock(MORNING))
    restarted.restore([stored[-1]], [], restarted=True)
    restarted.on_bus(wire.encode(wire.Resume(1, 5, until=6)))  # only bus seq 5 is resent
    out = restarted.on_bus(wire.encode(wire.Burst(5, day_ticks(0, [3]))))
    assert [families.TRADES.decoder.decode(p).seq for _, p in out.relayed] == [0]
    later = restarted.on_bus(wire.encode(wire.Burst(6, day_ticks(0, [2, 3], late_s=3600))))
    assert later.relayed == []  # caught up: a re-send now was relayed before
    new_run = ShardState(0, wall_clock=FakeClock(MORNING))
    new_run.restore([stored[-1]], [], restarted=False)
    new_run.on_bus(wire.encode(wire.Resume(1, 1, until=3)))
    assert new_run.on_bus(wire.encode(wire.Burst(1, day_ticks(0, [2, 3])))).relayed == []
    new_receiver = ShardState(0, wall_clock=FakeClock(MORNING))
    new_receiver.restore([stored[-1]], [], restarted=True)
    new_receiver.on_bus(wire.encode(wire.Resume(1, 1, until=3)))
    new_receiver.on_bus(wire.encode(wire.Resume(2, 1)))  # the receiver restarted: seqs anew
    assert new_receiver.on_bus(wire.encode(wire.Burst(1, day_ticks(0, [2])))).relayed == []
