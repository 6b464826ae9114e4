"""--min-move: only price moves of at least a step reach the move topics; the rest all do."""

from __future__ import annotations

import pytest

from feedmux import families, wire
from feedmux.errors import ConfigError
from feedmux.model import Depth, Tick
from feedmux.shard.moves import BookMoves, TradeMoves, parse_min_moves
from feedmux.shard.state import ShardState


def tick(code: str, seq: int, price: float) -> Tick:
    return Tick(code, seq, seq, seq, price, 100.0, price * 100, 1)


def book(code: str, seq: int, bid: float | None, ask: float | None) -> Depth:
    return Depth(code, seq, seq, seq, [(bid, 1.0)] if bid else [], [(ask, 1.0)] if ask else [])


def test_a_trade_passes_when_its_price_is_a_step_away_from_the_last_one_that_passed() -> None:
    moves = TradeMoves(0.01)
    prices = [10.00, 10.004, 10.009, 10.01, 10.005, 10.0, 9.99, 9.99]
    passed = [p for i, p in enumerate(prices) if moves.passes(tick("A.SH", i, p))]
    # 10.01 - 10.00 is below 0.01 in binary floating point; it is a move all the same
    assert passed == [10.00, 10.01, 10.0, 9.99]
    assert TradeMoves(0.01).passes(tick("B.SZ", 1, 5.0))  # each code apart: its first passes


def test_a_book_passes_when_its_best_bid_or_ask_moves_a_step_or_a_side_empties() -> None:
    moves = BookMoves(0.02)
    books = [book("A.SH", 1, 10.0, 10.02), book("A.SH", 2, 10.01, 10.03),
             book("A.SH", 3, 10.0, 10.04), book("A.SH", 4, None, 10.04),
             book("A.SH", 5, None, 10.04)]  # fmt: skip
    assert [moves.passes(b) for b in books] == [True, False, True, True, False]


@pytest.mark.parametrize(
    ("spec", "message"),
    [("quotes=0.01", "trades or books"), ("trades=x", "not a price step"),
     ("trades=0", "> 0")],
)  # fmt: skip
def test_bad_min_move_says_why(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_min_moves([spec])


def test_min_move_specs() -> None:
    assert parse_min_moves(["0.01", "books=0.05"]) == {"trades": 0.01, "books": 0.05}


def test_shard_publishes_every_trade_and_numbers_the_moves_apart() -> None:
    state = ShardState(0, min_move={"trades": 0.05})
    state.on_bus(wire.encode(wire.Resume(1, 1)))
    prices = [10.0, 10.01, 10.06, 10.02, 10.0, 10.2]
    ticks = [tick("600519.SH", i + 1, p) for i, p in enumerate(prices)]
    publications = state.on_bus(wire.encode(wire.Burst(1, ticks))).published
    trades = [families.TRADES.decoder.decode(p) for t, p in publications if t.startswith(b"T|")]
    moves = [families.TRADES.decoder.decode(p) for t, p in publications if t.startswith(b"MT|")]
    assert [m.tick.price for m in trades] == prices  # the full topic keeps every tick
    assert [m.tick.price for m in moves] == [10.0, 10.06, 10.0, 10.2]
    assert [m.pub_seq for m in moves] == [1, 2, 3, 4]  # its own numbering, without holes
    reply = wire.snapshot_reply_decoder.decode(state.snapshot_reply(
        wire.encode(wire.SnapshotRequest(None))))  # fmt: skip
    assert reply.move_seqs["MT|"] == 4 and reply.pub_seqs == {"600519.SH": 6}
