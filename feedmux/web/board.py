"""The page's model of the market: each code's line, and which lines changed since the last
update (conflation: a code that traded 40 times in an interval is sent once, as it is now).

No sockets and no threads: the feed applies ticks and bars, the gateway takes the changes.

A code's day volume is its closed bars' (the store's at start, then each ``B|`` bar) plus, on
the trades feed, the trades after the newest of those bars; a bar that closes takes over the
trades it holds. So the moves feed, which skips trades, still shows each minute's volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from feedmux.market.day import trading_day
from feedmux.market.sessions import market_of
from feedmux.model import Bar, Tick
from feedmux.web.protocol import Line, PageBar

MINUTE_NS = 60_000_000_000
_RECENT_BARS = 5  # amendments of a code's last bars replace them; older ones are ignored


@dataclass(slots=True)
class _Code:
    code: str
    day: int = -1  # trading day of what the line holds
    price: float = 0.0
    open: float = 0.0
    open_key: tuple[int, int] = (1 << 63, 0)  # (time_ns, seq) of the open
    time_ns: int = 0
    recv_ns: int = 0
    bars_volume: float = 0.0  # of the day's closed bars
    bars_turnover: float = 0.0
    covered_ns: int = 0  # the trades before this are in the closed bars
    recent: dict[int, tuple[float, float]] = field(default_factory=dict)  # minute -> bar's
    after: dict[int, tuple[float, float]] = field(default_factory=dict)  # trades' minute -> sum

    def start_day(self, day: int) -> None:
        self.day, self.open, self.open_key = day, 0.0, (1 << 63, 0)
        self.bars_volume = self.bars_turnover = 0.0
        self.covered_ns = 0
        self.recent.clear()
        self.after.clear()

    def line(self) -> Line:
        volume, turnover = self.bars_volume, self.bars_turnover
        for v, t in self.after.values():
            volume += v
            turnover += t
        return Line(self.code, self.price, self.open, volume, turnover, self.time_ns / 1e6,
                   self.recv_ns / 1e6)  # fmt: skip


class Board:
    """Every code's line and the set of codes changed since ``take``.

    ``end_label``: the store's bars are labelled with their end (``--bar-label end``), so a
    bar at ``minute_ns`` holds the trades before it; otherwise before ``minute_ns`` + 1 min.
    ``with_trades``: the feed carries every trade (their volume is added until a bar closes).
    """

    def __init__(self, end_label: bool = True, with_trades: bool = True) -> None:
        self._codes: dict[str, _Code] = {}
        self._changed: set[str] = set()
        self.end_label = end_label
        self._with_trades = with_trades
        self.newest_recv_ns = 0
        self.newest_time_ns = 0
        self.markets: set[str] = set()  # the codes' markets ("SH", "US")

    def __len__(self) -> int:
        return len(self._codes)

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

    def tick(self, tick: Tick, *, counted: bool = True) -> None:
        """A trade: the latest to arrive sets the price. ``counted``: its volume is not in
        the store's bars or an earlier ``tick`` (False for a snapshot's ticks)."""
        state = self._state(tick.code)
        if not self._day(state, tick.time_ns):
            return
        key = (tick.time_ns, tick.seq)
        if key < state.open_key:
            state.open_key, state.open = key, tick.price
        # The latest to arrive is the price, as in the shards' snapshots: a vendor's times
        # can step back within a second while its sequence goes on.
        state.price, state.time_ns, state.recv_ns = tick.price, tick.time_ns, tick.recv_ns
        if counted and self._with_trades and tick.time_ns >= state.covered_ns:
            minute = tick.time_ns - tick.time_ns % MINUTE_NS
            v, t = state.after.get(minute, (0.0, 0.0))
            state.after[minute] = (v + tick.volume, t + tick.turnover)
        self.newest_recv_ns = max(self.newest_recv_ns, tick.recv_ns)
        self.newest_time_ns = max(self.newest_time_ns, tick.time_ns)
        self._changed.add(tick.code)

    def bar(self, bar: Bar) -> None:
        """A closed (or amended) 1-minute bar, from the store or ``B|``."""
        state = self._state(bar.code)
        if not self._day(state, bar.minute_ns - (MINUTE_NS if self.end_label else 0)):
            return
        before = state.recent.get(bar.minute_ns)
        if before is None and state.recent and bar.minute_ns < min(state.recent):
            return  # an amendment older than the bars kept: its change is not known
        old_v, old_t = before or (0.0, 0.0)
        state.bars_volume += bar.volume - old_v
        state.bars_turnover += bar.turnover - old_t
        state.recent[bar.minute_ns] = (bar.volume, bar.turnover)
        if len(state.recent) > _RECENT_BARS:
            del state.recent[min(state.recent)]
        end = bar.minute_ns + (0 if self.end_label else MINUTE_NS)
        if end > state.covered_ns:
            state.covered_ns = end
            for minute in [m for m in state.after if m < end]:
                del state.after[minute]
        start = end - MINUTE_NS
        if (start, -1) < state.open_key:  # the bar's open is its first trade's price
            state.open_key, state.open = (start, -1), bar.open
        self._changed.add(bar.code)

    def take(self) -> list[Line]:
        """The lines changed since the last call, each once, as they are now."""
        changed, self._changed = self._changed, set()
        return [self._codes[code].line() for code in changed]

    def lines(self) -> list[Line]:
        """Every line, sorted by code (a new page's snapshot)."""
        return [self._codes[code].line() for code in sorted(self._codes)]


def page_bar(bar: Bar) -> PageBar:
    return PageBar(bar.minute_ns / 1e6, bar.open, bar.high, bar.low, bar.close, bar.volume)
