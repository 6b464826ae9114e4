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

    code: str  # canonical AllTick form, e.g. "600519.SH"
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


TICK_COLUMNS = ("code", "seq", "time", "recv_time", "price", "volume", "turnover", "direction")
