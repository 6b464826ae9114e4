"""The normalised message shapes that travel through the whole pipeline."""

from __future__ import annotations

import msgspec

# Direction codes as AllTick sends them (other vendors are mapped onto these).
DIRECTION_UNKNOWN = 0
DIRECTION_BUY = 1
DIRECTION_SELL = 2


class Tick(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One trade, normalised.

    On the wire (msgpack) a Tick is the array
    ``[code, seq, time_ns, recv_ns, price, volume, turnover, direction]``.
    """

    code: str  # canonical form (feedmux/codes.py), e.g. "600519.SH"
    seq: int  # vendor sequence number; unique per code
    time_ns: int  # exchange time, integer nanoseconds since the epoch, UTC
    recv_ns: int  # receive time at the socket read, integer nanoseconds since the epoch, UTC
    price: float
    volume: float
    turnover: float
    direction: int  # 0 unknown, 1 buy, 2 sell


class Depth(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One order-book update: the top levels of each side, best first; a side may be empty
    (limit up or down).

    On the wire (msgpack): ``[code, seq, time_ns, recv_ns, [[price, volume], ...] (bids),
    [[price, volume], ...] (asks)]``.
    """

    code: str
    seq: int
    time_ns: int
    recv_ns: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


class Bar(msgspec.Struct, array_like=True, gc=False):
    """On the wire (msgpack): ``[code, minute_ns, open, high, low, close, volume, turnover,
    count]``; ``minute_ns`` is the bar's time, nanoseconds UTC: its end (a new store's default)
    or its start, as the store's ``--bar-label`` says."""

    code: str
    minute_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    turnover: float
    count: int
    first: tuple[int, int] = (0, 0)  # (time_ns, seq) of the open, of the close: not stored
    last: tuple[int, int] = (0, 0)

    def add(self, tick: Tick) -> None:
        key = (tick.time_ns, tick.seq)
        if key < self.first:
            self.first, self.open = key, tick.price
        if key >= self.last:
            self.last, self.close = key, tick.price
        self.high = max(self.high, tick.price)
        self.low = min(self.low, tick.price)
        self.volume += tick.volume
        self.turnover += tick.turnover
        self.count += 1

    def row(self) -> tuple[str, int, float, float, float, float, float, float, int]:
        return (self.code, self.minute_ns, self.open, self.high, self.low, self.close,
                self.volume, self.turnover, self.count)  # fmt: skip


TICK_COLUMNS = ("code", "seq", "time", "recv_time", "price", "volume", "turnover", "direction")
