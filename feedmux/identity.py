"""A tick's identity: ``(code, trading day, seq)``, the same in every store, the archive, the
readers and the shard's re-send filter.

Why this key: exchange feeds restart ``seq`` each trading day, so ``(code, seq)`` alone would
drop day 2 as duplicates of day 1. ``(code, seq, time)`` would keep a re-sent tick whose time
the vendor corrected as a second trade. The trading day changes only when the numbering may
restart, and a corrected time stays within its day. The cost: a vendor that restarts its
numbering within a day collides with that day's earlier ticks (none is known to).

The trading day is ``feedmux.market.day.trading_day``: the one function that decides it, for
stores, bars, export partitions and journal rotation. Books (order-book updates) use the same
key.
"""

from __future__ import annotations

from collections.abc import Sequence

from feedmux.market.day import trading_day
from feedmux.model import Depth, Tick


def identity(item: Tick | Depth) -> tuple[int, int]:
    """The part of the identity that orders a code's items: ``(trading day, seq)``."""
    return trading_day(item.time_ns, item.code), item.seq


class ResendFilter:
    """Per code, the highest identity seen (from the stream, or the store after a restart),
    of ticks or of books (one filter for each).

    An item at or below it is a re-send (a resubscription, a reconnect, a re-run on the same
    data): it is not published, and a tick is not added to bars. Vendor seqs grow per code
    within a day, and the day only moves forward, so anything not above the highest was taken
    before. The shard's one place for this comparison: its bars and snapshot trust it.
    """

    __slots__ = ("_highest", "_stored", "resent")

    def __init__(self) -> None:
        self._highest: dict[str, tuple[int, int]] = {}
        self._stored: dict[str, tuple[int, int]] = {}  # the seed: what a store had at restart
        self.resent = 0

    def seed(self, items: Sequence[Tick | Depth]) -> None:
        """Remember stored items (a restart) without counting them."""
        for item in items:
            key = identity(item)
            if key > self._highest.get(item.code, (-1, -1)):
                self._highest[item.code] = key
            if key > self._stored.get(item.code, (-1, -1)):
                self._stored[item.code] = key

    def forget_stored(self) -> None:
        """The seed's resend is over: ``stored_before`` is False from now on."""
        self._stored.clear()

    def stored_before(self, item: Tick | Depth) -> bool:
        """Whether a re-send is at or below what the store had when this shard started: an
        earlier incarnation stored it, but may not have relayed it before it died."""
        held = self._stored.get(item.code)
        return held is not None and identity(item) <= held

    def is_new(self, item: Tick | Depth) -> bool:
        """True for an item above its code's highest identity (and remember it)."""
        key = identity(item)
        held = self._highest.get(item.code)
        if held is not None and key <= held:
            self.resent += 1
            return False
        self._highest[item.code] = key
        return True
