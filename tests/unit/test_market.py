import json

import pytest
from websockets.frames import Frame, Opcode

from feedmux.codes import parse_codes
from feedmux.providers.alltick.protocol import AllTickClient
from feedmux.simulator.market import Market, a_share_universe, text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_text_frame_matches_websockets_serialisation(size: int) -> None:
    payload = b"x" * size
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert text_frame(payload) == expected


def test_universe_is_the_a_share_market_and_stable() -> None:
    universe = a_share_universe()
    assert 5300 <= len(universe) <= 5500 and len(set(universe)) == len(universe)
    assert parse_codes(universe) == universe  # every code is a valid canonical code
    assert {c[:3] for c in universe} == {"600", "601", "603", "605", "688", "000", "001", "002",
                                         "003", "300", "301", "920"}  # fmt: skip
    assert a_share_universe(seed=7) == universe and a_share_universe(seed=8) != universe


def test_trades_decode_with_increasing_seq_in_every_shape() -> None:
    market = Market(["600519.SH"], seed=1)
    client = AllTickClient("t", only_subscribed=False)
    ticks = [client.receive(market.trade("600519.SH", 1_700_000_000_123), 0) for _ in range(200)]
    assert all(t is not None for t in ticks) and client.bad_messages == {}
    seqs = [t.seq for t in ticks if t is not None]
    assert seqs == sorted(set(seqs))
    times = {t.time_ns for t in ticks if t is not None}
    assert times == {1_700_000_000_123_000_000, 1_700_000_000_000_000_000}  # ms and seconds


def test_a_later_market_numbers_after_an_earlier_one_as_a_vendor_does() -> None:
    # The replay server numbers from the wall clock: the quickstart run twice on one data dir
    # gets new ticks, not re-sends of the first run's seqs.
    first, later = Market(["600519.SH"], seed=1, seq_base=1_000_000), Market(
        ["600519.SH"], seed=1, seq_base=2_000_000)  # fmt: skip
    seqs = [json.loads(m.trade("600519.SH", 1))["data"]["seq"] for m in (first, later)]
    books = [json.loads(m.book("600519.SH", 1, 1))["data"]["seq"] for m in (first, later)]
    assert int(seqs[1]) > int(seqs[0]) and books[1] > books[0]
    assert Market(["600519.SH"], seed=1).trade("600519.SH", 1) == Market(
        ["600519.SH"], seed=1).trade("600519.SH", 1)  # seeded: the same without a base  # fmt: skip


def test_a_new_day_numbers_trades_and_books_anew_from_the_first_days_seqs() -> None:
    market = Market(["600519.SH", "000001.SZ"], seed=1, seq_base=1_000_000)

    def seqs() -> list[int]:
        return [int(json.loads(market.trade(c, 1))["data"]["seq"]) for c in market.codes] + [
            int(json.loads(market.book(c, 1, 1))["data"]["seq"]) for c in market.codes]  # fmt: skip

    day_one = seqs()
    assert seqs() != day_one  # they grow within the day
    market.new_day()
    assert seqs() == day_one  # an exchange's numbering starts again each day
