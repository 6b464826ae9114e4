"""The page's model of the market: each code's line, and which lines changed since the last
update (conflation: a code that traded 40 times in an interval is sent once, as it is now).

No sockets and no threads: the feed applies ticks and bars, the gateway takes the changes.

A code's day volume is its closed bars' (the store's at start, then each ``B|`` bar) plus, on
the trades feed, the trades of the bars not closed yet. Trades go to bars as the shards put
them (``BarSlots``: an auction's into the next bar, the lunch break's into the last morning
bar, none outside the sessions), so a bar that closes takes over exactly the trades it holds.
The moves feed, which skips trades, still shows each minute's volume.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from feedmux.market.day import trading_day
from feedmux.market.sessions import MINUTE_NS, BarSlots, market_of
from feedmux.model import Bar, Tick
from feedmux.web.protocol import Line, PageBar

# A shard amends a closed bar for its keep_minutes (5) and purges after two more: a bar older
# than this behind a code's newest is not an amendment the board could take.
AMEND_NS = 10 * MINUTE_NS
_NEVER = (1 << 63, 0)


@dataclass(slots=True)
class _Code:
    code: str
    day: int = -1  # trading day of what the line holds
    price: float = 0.0
    open: float = 0.0
    open_key: tuple[int, int] = _NEVER  # (time_ns, seq) of the open
    time_ns: int = 0
    recv_ns: int = 0
    bars_volume: float = 0.0  # of the day's closed bars
    bars_turnover: float = 0.0
    closed: int = -1  # start of the newest closed bar: trades of this bar or before are in bars
    recent: dict[int, tuple[float, float]] = field(default_factory=dict)  # bar start -> its sums
    open_bars: dict[int, tuple[float, float]] = field(default_factory=dict)  # not closed yet

    def start_day(self, day: int) -> None:
        self.day, self.open, self.open_key = day, 0.0, _NEVER
        self.bars_volume = self.bars_turnover = 0.0
        self.closed = -1
        self.recent.clear()
        self.open_bars.clear()

    def line(self) -> Line:
        volume, turnover = self.bars_volume, self.bars_turnover
        for v, t in self.open_bars.values():
            volume += v
            turnover += t
        return Line(self.code, self.price, self.open, volume, turnover, self.time_ns / 1e6,
                    self.recv_ns / 1e6)  # fmt: skip


class Board:
    """Every code's line and the set of codes changed since ``take``.

    ``slots``: the run's bars (``--bar-sessions``, ``--bars-extended``); ``end_label``: its
    bars are labelled with their end (``--bar-label end``). ``with_trades``: the feed carries
    every trade, so their volume counts until their bar closes.
    """

    def __init__(self, slots: BarSlots, end_label: bool = True, with_trades: bool = True) -> None:
        self._codes: dict[str, _Code] = {}
        self._changed: set[str] = set()
        self._slots = slots
        self.end_label = end_label
        self.with_trades = with_trades
        self.newest_recv_ns = 0
        self.newest_time_ns = 0
        self.markets: set[str] = set()  # the codes' markets ("SH", "US")

    def __len__(self) -> int:
        return len(self._codes)

    @property
    def now_ns(self) -> int:
        """The data clock: the newest trade's exchange time (a replayed day is not the wall's);
        the wall's before any trade."""
        return self.newest_time_ns or time.time_ns()

    def _state(self, code: str) -> _Code:
        state = self._codes.get(code)
        if state is None:
            state = self._codes[code] = _Code(code)
            self._changed.add(code)
            self.markets.add(market_of(code))
        return state

    def add_codes(self, codes: list[str]) -> None:
        """Codes subscribed, shown before their first trade."""
        for code in codes:
            self._state(code)

    def _day(self, state: _Code, time_ns: int) -> bool:
        """Whether ``time_ns`` belongs to the line's day (a later one starts the line's next)."""
        day = trading_day(time_ns, state.code)
        if day > state.day:
            state.start_day(day)
        return day == state.day

    def roll(self, now_ns: int) -> None:
        """Lines of a trading day before ``now_ns``'s (the data clock) start the new day: a
        code that has not traded today (suspended) shows no volume of yesterday as today's."""
        for code, state in self._codes.items():
            if 0 <= state.day < trading_day(now_ns, code):
                state.start_day(trading_day(now_ns, code))
                self._changed.add(code)

    def tick(self, tick: Tick, *, counted: bool = True) -> None:
        """A trade: the latest to arrive sets the price, as in the shards' snapshots (a
        vendor's times can step back within a second). ``counted``: seen as it was published
        (False for a snapshot's: neither its volume nor its place as the open is known)."""
        state = self._state(tick.code)
        if not self._day(state, tick.time_ns):
            return
        state.price, state.time_ns, state.recv_ns = tick.price, tick.time_ns, tick.recv_ns
        if counted:
            key = (tick.time_ns, tick.seq)
            if key < state.open_key:
                state.open_key, state.open = key, tick.price
            if self.with_trades:
                slot = self._slots.slot(tick.code, tick.time_ns)
                if slot is not None and slot > state.closed:
                    v, t = state.open_bars.get(slot, (0.0, 0.0))
                    state.open_bars[slot] = (v + tick.volume, t + tick.turnover)
        self.newest_recv_ns = max(self.newest_recv_ns, tick.recv_ns)
        self.newest_time_ns = max(self.newest_time_ns, tick.time_ns)
        self._changed.add(tick.code)

    def bar(self, bar: Bar) -> bool:
        """A closed (or amended) 1-minute bar, from the store or ``B|``; False: not taken (of
        an earlier day, or too old to be an amendment)."""
        state = self._state(bar.code)
        start = self.bar_start(bar)
        if not self._day(state, start):
            return False
        if start < state.closed - AMEND_NS:
            return False
        old_v, old_t = state.recent.get(start, (0.0, 0.0))
        state.bars_volume += bar.volume - old_v
        state.bars_turnover += bar.turnover - old_t
        state.recent[start] = (bar.volume, bar.turnover)
        if start > state.closed:
            state.closed = start
            for old in [s for s in state.recent if s < start - AMEND_NS]:
                del state.recent[old]
            for held in [s for s in state.open_bars if s <= start]:
                del state.open_bars[held]
        if (start, -1) < state.open_key:  # the bar's open is its first trade's price
            state.open_key, state.open = (start, -1), bar.open
        self._changed.add(bar.code)
        return True

    def bar_start(self, bar: Bar) -> int:
        return bar.minute_ns - MINUTE_NS if self.end_label else bar.minute_ns

    def day_of(self, code: str) -> int:
        """The trading day a code's line holds (-1: none yet)."""
        state = self._codes.get(code)
        return -1 if state is None else state.day

    def take(self) -> list[Line]:
        """The lines changed since the last call, each once, as they are now."""
        changed, self._changed = self._changed, set()
        return [self._codes[code].line() for code in changed]

    def lines(self) -> list[Line]:
        """Every line, sorted by code (a new page's snapshot)."""
        return [self._codes[code].line() for code in sorted(self._codes)]


def page_bar(bar: Bar) -> PageBar:
    return PageBar(bar.minute_ns / 1e6, bar.open, bar.high, bar.low, bar.close, bar.volume)
