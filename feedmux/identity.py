"""A tick's identity: ``(code, trading day, seq)``, the same in every store, the archive, the
readers and the shard's re-send filter.

Why this key: exchange feeds restart ``seq`` each trading day, so ``(code, seq)`` alone would
drop day 2 as duplicates of day 1. ``(code, seq, time)`` would keep a re-sent tick whose time
the vendor corrected as a second trade. The trading day changes only when the numbering may
restart, and a corrected time stays within its day. The cost: a vendor that restarts its
numbering within a day collides with that day's earlier ticks (none is known to).

``trading_day`` is the single place that decides a tick's day; a market-sessions calendar can
replace it. Books (order-book updates) use the same key.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from feedmux.model import Depth, Tick

DAY_NS = 86_400 * 10**9
# A-shares: the Asia/Shanghai calendar date of the tick's time. China has kept UTC+8 without
# daylight saving since 1991, so a fixed offset is exact, cheap per tick and easy in SQL.
EXCHANGE_UTC_OFFSET_NS = 8 * 3_600 * 10**9
_EPOCH = date(1970, 1, 1)


def trading_day(time_ns: int) -> int:
    """The trading day of a tick time (ns UTC), as days since 1970-01-01 in the exchange's
    calendar (an integer: stored in every key, computed in SQL by ``trading_day_sql``)."""
    return (time_ns + EXCHANGE_UTC_OFFSET_NS) // DAY_NS


def trading_day_sql(column: str = "time_ns") -> str:
    """``trading_day`` as a SQL expression (SQLite and PostgreSQL integer arithmetic; tick times
    are after 1970, so truncating division floors)."""
    return f"(({column} + {EXCHANGE_UTC_OFFSET_NS}) / {DAY_NS})"


def day_date(day: int) -> date:
    """A ``trading_day`` as a calendar date."""
    return _EPOCH + timedelta(days=day)


def identity(item: Tick | Depth) -> tuple[int, int]:
    """The part of the identity that orders a code's items: ``(trading day, seq)``."""
    return trading_day(item.time_ns), item.seq


class ResendFilter:
    """Per code, the highest identity seen (from the stream, or the store after a restart),
    of ticks or of books (one filter for each).

    An item at or below it is a re-send (a resubscription, a reconnect, a re-run on the same
    data): it is not published, and a tick is not added to bars. Vendor seqs grow per code
    within a day, and the day only moves forward, so anything not above the highest was taken
    before. The shard's one place for this comparison: its bars and snapshot trust it.
    """

    __slots__ = ("_highest", "resent")

    def __init__(self) -> None:
        self._highest: dict[str, tuple[int, int]] = {}
        self.resent = 0

    def seed(self, items: Sequence[Tick | Depth]) -> None:
        """Remember stored items (a restart) without counting them."""
        for item in items:
            key = identity(item)
            if key > self._highest.get(item.code, (-1, -1)):
                self._highest[item.code] = key

    def is_new(self, item: Tick | Depth) -> bool:
        """True for an item above its code's highest identity (and remember it)."""
        key = identity(item)
        held = self._highest.get(item.code)
        if held is not None and key <= held:
            self.resent += 1
            return False
        self._highest[item.code] = key
        return True
