import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from feedmux.model import Bar, Tick
from feedmux.shard.bars import MINUTE_NS, BarBuilder
from tests.conftest import FakeClock

T0 = 1_764_003_600 * 10**9 // MINUTE_NS * MINUTE_NS  # a minute boundary, 01:00 in Shanghai


def tick(seq: int, at_s: float, price: float = 10.0, code: str = "600519.SH") -> Tick:
    return Tick(code, seq, T0 + int(at_s * 1e9), 0, price, 100.0, price * 100, 1)


def test_a_bar_closes_when_its_code_ticks_in_a_later_minute_or_the_clock_passes_grace() -> None:
    clock = FakeClock(T0)
    bars = BarBuilder(clock)

    def live(t: Tick) -> list[Bar]:  # a live feed: ticks arrive at their own time
        clock.now = max(clock.now, t.time_ns)
        return bars.add(t)

    assert live(tick(1, 1, 10.0)) == []
    assert live(tick(2, 30, 12.0)) == []
    assert live(tick(3, 10, 9.0)) == []  # earlier time, later arrival: not the close
    closed = live(tick(4, 61, 11.0))
    assert [b.row() for b in closed] == [("600519.SH", T0, 10.0, 12.0, 9.0, 12.0, 300.0, 3100.0, 3)]
    clock.now = T0 + int(121.5e9)  # minute 1 ended 1.5 s ago
    assert bars.due() == []
    clock.advance(1)
    assert [b.minute_ns for b in bars.due()] == [T0 + MINUTE_NS]  # 2 s of grace are up


def test_a_replayed_journal_closes_bars_by_its_own_time_not_the_wall_clock() -> None:
    clock = FakeClock(T0 + 10 * 86_400 * 10**9)  # replaying a capture from ten days ago
    bars = BarBuilder(clock)
    bars.add(tick(1, 1))
    bars.add(tick(2, 30))
    assert bars.due() == []  # the recorded minute is still open
    clock.advance(0.5)
    assert bars.add(tick(3, 45)) == [] and bars.due() == []
    assert [b.count for b in bars.add(tick(4, 65))] == [3]


def test_a_late_tick_amends_its_bar_and_a_too_late_one_is_left_out() -> None:
    """(Re-sends never reach the builder: the shard's one filter drops them, see
    tests/unit/test_shard_state.py.)"""
    bars = BarBuilder(FakeClock(T0))
    bars.add(tick(1, 1, 10.0))
    bars.add(tick(2, 61, 10.0))  # closes minute 0
    amended = bars.add(tick(3, 59, 15.0))  # late: minute 0 again, a higher seq
    assert [(b.minute_ns, b.high, b.close, b.count) for b in amended] == [(T0, 15.0, 15.0, 2)]
    assert bars.late == 1
    assert bars.add(tick(9, -600, 1.0)) == [] and bars.too_late == 1  # beyond 5 minutes
    next_day = bars.add(tick(1, 86_400))  # restarted on the next trading day
    assert [b.count for b in next_day] == [1]  # (it closes minute 1)


def test_a_tick_for_a_minute_whose_bar_the_clock_closed_amends_that_bar() -> None:
    clock = FakeClock(T0)
    bars = BarBuilder(clock)
    bars.add(tick(1, 30, 10.0))
    clock.now = T0 + int(63e9)  # the data clock is past the minute and its grace ...
    [closed] = bars.due()
    assert closed.count == 1
    # ... and then a tick of that minute comes (a connection that lagged): the same bar,
    # amended, not a new bar of that minute that would replace it in the store.
    [amended] = bars.add(tick(2, 10, 8.0))
    assert amended.row() == ("600519.SH", T0, 8.0, 10.0, 8.0, 10.0, 200.0, 1800.0, 2)
    assert bars.late == 1 and bars.close_all() == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 299), st.integers(1, 50), st.integers(0, 60)),
                min_size=1, max_size=80))  # fmt: skip
def test_bars_equal_a_pandas_resample_whatever_the_arrival_order(
    moves: list[tuple[int, int, int]],
) -> None:
    ticks = [tick(seq, at_s, float(price)) for seq, (at_s, price, _) in enumerate(moves, 1)]
    clock = FakeClock(T0)
    bars = BarBuilder(clock)
    emitted = {}
    for t, (_, _, lag_s) in zip(ticks, moves, strict=True):
        # The data clock runs up to 60 s ahead of a tick (a stalled connection, a replay's
        # wait): bars close on it, and later ticks of their minutes amend them. (Not so far
        # that closed bars are forgotten: 5 minutes beyond the ticks' last.)
        clock.now = max(clock.now, t.time_ns)
        for bar in bars.add(t):
            emitted[bar.minute_ns] = bar.row()
        clock.now = max(clock.now, t.time_ns + lag_s * 10**9)
        for bar in bars.due():
            emitted[bar.minute_ns] = bar.row()
    for bar in bars.close_all():
        emitted[bar.minute_ns] = bar.row()
    df = pd.DataFrame([(t.time_ns, t.seq, t.price, t.volume) for t in ticks],
                         columns=["time", "seq", "price", "volume"])  # fmt: skip
    df = df.sort_values(["time", "seq"])
    df["minute"] = df["time"] // MINUTE_NS * MINUTE_NS
    expected = df.groupby("minute").agg(
        open=("price", "first"), high=("price", "max"), low=("price", "min"),
        close=("price", "last"), volume=("volume", "sum"), count=("price", "size"),
    )  # fmt: skip
    got = {m: (r[2], r[3], r[4], r[5], r[6], r[8]) for m, r in emitted.items()}
    assert got == {
        m: tuple(row)
        for m, row in zip(expected.index, expected.itertuples(index=False), strict=True)
    }
