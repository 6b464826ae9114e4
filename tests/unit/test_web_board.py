"""The page's board: conflation, the day's open and volume, the day's end."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from feedmux.market.sessions import MINUTE_NS, BarSlots, load_sessions
from feedmux.model import Bar, Tick
from feedmux.web import protocol as p
from feedmux.web.board import Board

PLAIN = BarSlots(None)  # --bar-sessions none: clock minutes

T0 = 1_700_000_000_000_000_000 - 1_700_000_000_000_000_000 % MINUTE_NS + 2 * 3600 * 10**9
# 02:00 UTC, 10:00 in Shanghai, on a minute


def tick(code: str, seq: int, at_s: float, price: float, volume: float = 100.0) -> Tick:
    at = T0 + int(at_s * 1e9)
    return Tick(code, seq, at, at + 1_000_000, price, volume, volume * price, 1)


def bar(code: str, minute: int, o: float, c: float, volume: float) -> Bar:
    """The bar of minute ``minute`` after T0, labelled with its end."""
    return Bar(code, T0 + (minute + 1) * MINUTE_NS, o, max(o, c), min(o, c), c, volume,
               volume * c, 3)  # fmt: skip


def lines(board: Board) -> dict[str, p.Line]:
    return {r.code: r for r in board.take()}


def test_each_changed_code_is_taken_once_as_it_is_now() -> None:
    board = Board(PLAIN)
    for i, price in enumerate([10.0, 10.1, 10.2, 10.15]):
        board.tick(tick("600519.SH", i + 1, i, price))
    board.tick(tick("000001.SZ", 1, 0.5, 7.0))
    taken = board.take()
    assert sorted(r.code for r in taken) == ["000001.SZ", "600519.SH"]
    line = lines_by_code(taken)["600519.SH"]
    assert (line.price, line.open) == (10.15, 10.0)
    assert line.time_ms == (T0 + 3 * 10**9) / 1e6
    assert board.take() == []  # nothing changed since
    board.tick(tick("000001.SZ", 2, 1, 7.1))
    assert [r.code for r in board.take()] == ["000001.SZ"]


def lines_by_code(taken: list[p.Line]) -> dict[str, p.Line]:
    return {r.code: r for r in taken}


def test_the_last_to_arrive_is_the_price_as_in_the_snapshot_and_the_earliest_the_open() -> None:
    board = Board(PLAIN)
    board.tick(tick("600519.SH", 5, 10.6, 10.5))
    board.tick(tick("600519.SH", 6, 10, 10.4))  # a vendor's time can step back within a second
    board.tick(tick("600519.SH", 2, 2, 10.0))  # an older one arrived late: the day's open
    line = lines(board)["600519.SH"]
    assert (line.price, line.open) == (10.0, 10.0)


def test_the_volume_is_the_closed_bars_plus_the_trades_after_them() -> None:
    board = Board(PLAIN, end_label=True, with_trades=True)
    board.bar(bar("600519.SH", 0, 10.0, 10.2, 1000))  # from the store: minute 0
    board.tick(tick("600519.SH", 7, 61, 10.3, volume=50), counted=False)  # the snapshot's
    board.tick(tick("600519.SH", 8, 62, 10.4, volume=30))  # live, minute 1
    board.tick(tick("600519.SH", 9, 121, 10.5, volume=20))  # live, minute 2
    line = lines(board)["600519.SH"]
    assert line.volume == 1000 + 30 + 20
    assert line.open == 10.0  # the first bar's open
    # Minute 1's bar closes with everything in it (the snapshot's 50, the 30, and more).
    board.bar(bar("600519.SH", 1, 10.2, 10.4, 200))
    assert lines(board)["600519.SH"].volume == 1000 + 200 + 20
    # An amendment (a late tick) of minute 1 replaces it, not adds to it.
    board.bar(bar("600519.SH", 1, 10.2, 10.4, 210))
    assert lines(board)["600519.SH"].volume == 1000 + 210 + 20


def test_the_moves_feed_counts_volume_from_bars_alone() -> None:
    board = Board(PLAIN, with_trades=False)
    board.tick(tick("600519.SH", 1, 1, 10.0, volume=500))
    assert lines(board)["600519.SH"].volume == 0
    board.bar(bar("600519.SH", 0, 10.0, 10.0, 700))
    assert lines(board)["600519.SH"].volume == 700


def test_start_labelled_bars_cover_the_minute_after_their_label() -> None:
    board = Board(PLAIN, end_label=False, with_trades=True)
    start_label = Bar("600519.SH", T0, 10.0, 10.0, 10.0, 10.0, 100, 1000, 1)
    board.bar(start_label)
    board.tick(tick("600519.SH", 1, 30, 10.0, volume=5))  # inside the bar: counted there
    board.tick(tick("600519.SH", 2, 61, 10.0, volume=7))  # after it
    assert lines(board)["600519.SH"].volume == 100 + 7


def test_a_new_trading_day_starts_the_line_afresh() -> None:
    board = Board(PLAIN)
    board.bar(bar("600519.SH", 0, 10.0, 10.2, 1000))
    board.tick(tick("600519.SH", 9, 30, 10.2, volume=10))
    day = 86_400
    board.tick(tick("600519.SH", 1, day, 11.0, volume=3))
    line = lines(board)["600519.SH"]
    assert (line.open, line.price, line.volume) == (11.0, 11.0, 3)
    board.tick(tick("600519.SH", 10, 40, 9.0))  # yesterday's, late: not today's line
    assert board.take() == []
    assert board.lines()[0].price == 11.0


def test_subscribed_codes_show_before_their_first_trade() -> None:
    board = Board(PLAIN)
    board.add_codes(["600519.SH", "AAPL.US"])
    assert [(r.code, r.price) for r in board.lines()] == [("600519.SH", 0.0), ("AAPL.US", 0.0)]
    assert board.markets == {"SH", "US"}


def test_the_protocol_round_trips_as_json_arrays() -> None:
    line = p.Line("600519.SH", 10.5, 10.0, 1.0, 10.5, 1.5e12, 1.5e12)
    update = p.Update(1.0, [line], {"SH": "continuous"}, "up", 1.5e12, 1)
    raw = p.encode(update)
    assert b'"type":"update"' in raw and b'["600519.SH",10.5,10.0' in raw
    assert p.server_decoder.decode(raw) == update
    assert p.client_decoder.decode(b'{"type":"watch","code":null}') == p.Watch(None)


SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = dt.date(2026, 12, 3)


def at(hhmmss: str) -> int:
    t = dt.datetime.combine(DAY, dt.time.fromisoformat(hhmmss), SHANGHAI)
    return int(t.timestamp()) * 10**9


def trade(seq: int, hhmmss: str, volume: float) -> Tick:
    return Tick("600519.SH", seq, at(hhmmss), at(hhmmss), 10.0, volume, volume * 10, 1)


def ending(hhmm: str, volume: float) -> Bar:
    return Bar("600519.SH", at(hhmm + ":00"), 10.0, 10.0, 10.0, 10.0, volume, volume * 10, 1)


def test_trades_count_until_the_bar_the_shards_put_them_in_closes() -> None:
    board = Board(BarSlots(load_sessions()), end_label=True, with_trades=True)
    board.tick(trade(1, "09:25:00", 500))  # the opening auction: in the 09:30-09:31 bar
    board.tick(trade(2, "09:30:10", 10))
    assert lines(board)["600519.SH"].volume == 510
    board.bar(ending("09:31", 510))
    assert lines(board)["600519.SH"].volume == 510  # not 1,010
    board.tick(trade(3, "11:29:30", 7))
    board.tick(trade(4, "11:30:00.200", 3))  # at the bell: in the last morning bar
    board.bar(ending("11:30", 10))
    assert lines(board)["600519.SH"].volume == 520  # not counted twice over lunch
    board.tick(trade(5, "14:59:50", 4))
    board.tick(trade(6, "15:00:00.100", 6))  # the closing auction: in the last bar
    board.bar(ending("15:00", 10))
    assert lines(board)["600519.SH"].volume == 530
    assert board.lines()[0].open == 10.0


def test_a_us_trade_outside_the_sessions_makes_no_bar_and_no_volume() -> None:
    board = Board(BarSlots(load_sessions()), end_label=True, with_trades=True)
    new_york = ZoneInfo("America/New_York")
    early = int(dt.datetime(2026, 12, 3, 8, 0, tzinfo=new_york).timestamp()) * 10**9
    board.tick(Tick("AAPL.US", 1, early, early, 200.0, 1000, 200_000, 1))
    assert lines(board)["AAPL.US"].volume == 0
    board.tick(Tick("AAPL.US", 2, early + 10**9, early, 201.0, 1000, 201_000, 1))
    assert board.lines()[0].price == 201.0  # shown as traded, in no bar


def test_an_amendment_within_the_shards_horizon_replaces_its_bar() -> None:
    board = Board(PLAIN, end_label=True, with_trades=False)
    for minute in range(8):
        board.bar(bar("600519.SH", minute, 10.0, 10.0, 100))
    board.bar(bar("600519.SH", 1, 10.0, 10.0, 107))  # a late trade, six bars back
    assert lines(board)["600519.SH"].volume == 807
    board.bar(bar("600519.SH", 9, 10.0, 10.0, 5))
    assert lines(board)["600519.SH"].volume == 812
    assert not board.bar(bar("600519.SH", -3, 10.0, 10.0, 1))  # 12 minutes back: not taken
    assert board.lines()[0].volume == 812


def test_the_snapshot_sets_the_price_but_not_the_open_or_the_volume() -> None:
    board = Board(PLAIN, with_trades=True)
    board.tick(tick("600519.SH", 9, 30, 12.0, volume=50), counted=False)
    line = lines(board)["600519.SH"]
    assert (line.price, line.open, line.volume) == (12.0, 0.0, 0.0)


def test_a_line_without_trades_today_rolls_to_the_new_day() -> None:
    board = Board(PLAIN, with_trades=False)
    board.bar(bar("600519.SH", 0, 10.0, 10.2, 1000))
    board.take()
    board.roll(T0 + 86_400 * 10**9)
    line = lines(board)["600519.SH"]
    assert (line.volume, line.open) == (0.0, 0.0)
