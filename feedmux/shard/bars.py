"""One-minute bars per code, built by each shard from the ticks it takes. Pure state, no I/O.

A bar covers ``[minute, minute + 60 s)`` of exchange time (minutes fall on the same instants in
UTC and in the exchange's zone), plus, by the exchange's convention (feedmux/market/sessions.py,
``BarSlots``), the ticks folded into it: the opening auction's into the first bar, a lunch
break's into the last morning bar, the closing auction's into the last bar. A tick in no bar
(the market closed; pre-market and after-hours unless ``--bars-extended``) is stored, counted
in ``outside`` and left out. Open and close are the ticks with the lowest and highest
``(time, seq)``, so arrival order does not matter.

Inside, a bar is keyed by its first minute's start; what leaves the builder is labelled by
``label_ns`` added to it: 0 (``--bar-label start``) or 60 s (``end``: 09:31 is 09:30-09:31,
as A-share tools show it). Closing works on the start, so the label changes nothing else.

Closing, and the late-tick policy:

- a bar closes (is emitted) when its code ticks in a later minute, or when the data clock
  passes the minute's end by ``grace_ns`` (default 2 s), so quiet codes close on time. The data
  clock is the newest tick time seen plus the time elapsed since it arrived: the wall clock
  for a live feed, the recorded time for a journal replayed at any speed;
- a tick for a minute already closed, within the last ``keep_minutes`` (default 5), amends that
  bar and emits it again: stores upsert by (code, minute), so the stored bar stays equal to a
  resample of the stored ticks. Such ticks are counted in ``late``;
- a tick older than that is stored as a tick but left out of bars, counted in ``too_late``;
- ``add`` takes only new ticks: re-sends (a resubscription, a resend after a shard restart, a
  re-run on the same data) are left out before, by the shard's one ``ResendFilter`` on the
  identity every store keys on (feedmux/identity.py), seeded from the store. (A late tick has
  a higher seq; a vendor that restarts its seqs does so on a new trading day.) After a restart
  the builder is seeded from the store's recent ticks, so the minute in progress is rebuilt
  whole.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from feedmux.identity import ResendFilter, identity
from feedmux.market.day import trading_day
from feedmux.market.sessions import MINUTE_NS, BarSlots
from feedmux.model import Bar, Tick

__all__ = ["MINUTE_NS", "BarBuilder"]


def new_bar(tick: Tick, minute_ns: int) -> Bar:
    key = (tick.time_ns, tick.seq)
    return Bar(tick.code, minute_ns, tick.price, tick.price, tick.price, tick.price, tick.volume,
               tick.turnover, 1, key, key)  # fmt: skip


def flat_bar(code: str, minute_ns: int, price: float) -> Bar:
    """A regular minute without a trade: the last close, no volume (A-share convention)."""
    return Bar(code, minute_ns, price, price, price, price, 0.0, 0.0, 0)


class BarBuilder:
    def __init__(self, clock: Callable[[], int], grace_ns: int = 2_000_000_000,
                 keep_minutes: int = 5, *, slots: BarSlots | None = None,
                 label_ns: int = 0) -> None:  # fmt: skip
        """``slots``: which bar a tick belongs to (default: plain clock minutes)."""
        self._clock = clock  # wall clock, ns UTC
        slots = slots or BarSlots(None)
        self._slot, self._next_slot = slots.slot, slots.next_slot
        self._held_until = slots.held_until
        self.label_ns = label_ns
        self.grace_ns = grace_ns
        self.keep_ns = keep_minutes * MINUTE_NS
        self._open: dict[str, Bar] = {}  # the current bar of each code
        self._newest: dict[str, int] = {}  # the newest minute of each code, open or closed
        self._closed: dict[tuple[str, int], Bar] = {}  # recent closed bars, for late ticks
        self._data_ns = 0  # the newest tick time seen ...
        self._seen_ns = 0  # ... and the clock when it was seen
        self._purged_to = 0  # closed bars before this minute are forgotten
        self._floor = 0  # bars before it are of a day that ended: their ticks are too late
        self.late = 0
        self.too_late = 0
        self.outside = 0  # ticks in no bar (closed hours; extended hours unless asked)

    def _out(self, bars: list[Bar]) -> list[Bar]:
        """Bars as they leave: labelled (copies: the builder may amend its own later)."""
        if not self.label_ns or not bars:
            return bars
        label = self.label_ns
        return [msgspec.structs.replace(b, minute_ns=b.minute_ns + label) for b in bars]

    def add(self, tick: Tick) -> list[Bar]:
        """Take a new tick (not a re-send); the bars it closed or amended (to store and
        publish)."""
        if tick.time_ns > self._data_ns:
            self._data_ns, self._seen_ns = tick.time_ns, self._clock()
        code = tick.code
        minute = self._slot(code, tick.time_ns)
        if minute is None:
            self.outside += 1
            return []
        if minute < self._floor:  # its day's bars are stored and forgotten: not made again
            self.too_late += 1
            return []
        current = self._open.get(code)
        if current is not None and current.minute_ns == minute:
            if current.count:
                current.add(tick)
            else:  # a flat bar (no trade yet): the tick opens it
                self._open[code] = new_bar(tick, minute)
            return []
        newest = self._newest.get(code)
        if newest is None or minute > newest:
            self._newest[code] = minute
            self._open[code] = new_bar(tick, minute)
            if current is None:
                return []
            self._closed[(code, current.minute_ns)] = current
            return self._out([current, *self._flats(current, minute)])
        # A minute already closed: by a later tick, or by the clock (``due``) with no open
        # bar left, which must not start that minute's bar again (it would replace the
        # stored one, without the ticks it had).
        return self._late(tick, minute, newest)

    def _flats(self, bar: Bar, before: int) -> list[Bar]:
        """Flat bars (the last close, no volume) for the regular minutes after ``bar`` and
        before ``before`` in which its code did not trade (``BarSlots.next_slot``: A-shares
        and Hong Kong; a US code has bars only in minutes it traded). They are closed."""
        out = []
        minute = self._next_slot(bar.code, bar.minute_ns)
        while minute is not None and minute < before:
            flat = self._closed[(bar.code, minute)] = flat_bar(bar.code, minute, bar.close)
            out.append(flat)
            minute = self._next_slot(bar.code, minute)
        return out

    def _late(self, tick: Tick, minute: int, newest: int) -> list[Bar]:
        key = (tick.code, minute)
        bar = self._closed.get(key)  # kept for keep_minutes, or while a segment folds into it
        if bar is None and (newest - minute > self.keep_ns or minute < self._purged_to):
            self.too_late += 1  # its bar is forgotten
            return []
        self.late += 1
        if bar is None or not bar.count:  # no tick in that minute until now
            bar = self._closed[key] = new_bar(tick, minute)
        else:
            bar.add(tick)
        return self._out([bar, *self._repriced(bar)])

    def _repriced(self, bar: Bar) -> list[Bar]:
        """The flat bars right after an amended one, at its close (they carried the old one);
        the closed ones among them, to store and publish again."""
        code, price = bar.code, bar.close
        out = []
        minute = self._next_slot(code, bar.minute_ns)
        while minute is not None:
            current = self._open.get(code)
            if current is not None and current.minute_ns == minute:
                if not current.count and current.close != price:
                    self._open[code] = flat_bar(code, minute, price)
                break
            later = self._closed.get((code, minute))
            if later is None or later.count or later.close == price:
                break
            flat = self._closed[(code, minute)] = flat_bar(code, minute, price)
            out.append(flat)
            minute = self._next_slot(code, minute)
        return out

    def due(self) -> list[Bar]:
        """Open bars whose minute ended ``grace_ns`` ago or more: closed now. A code whose
        market fills its day (``BarSlots.next_slot``) then has a flat bar open for its next
        regular minute, until it trades or that minute ends too."""
        now = self.now()
        cutoff = now - self.grace_ns - MINUTE_NS
        done: list[Bar] = []
        for closing in [bar for bar in self._open.values() if bar.minute_ns <= cutoff]:
            code, bar = closing.code, closing
            while True:
                done.append(bar)
                self._closed[(code, bar.minute_ns)] = bar
                minute = self._next_slot(code, bar.minute_ns)
                if minute is None:
                    del self._open[code]
                    break
                bar = self._open[code] = flat_bar(code, minute, bar.close)
                self._newest[code] = minute
                if minute > cutoff:
                    break
        horizon = now - self.keep_ns - MINUTE_NS
        if horizon - horizon % MINUTE_NS > self._purged_to:  # bars expire a minute at a time
            self._purged_to = horizon - horizon % MINUTE_NS
            for key in [k for k in self._closed if k[1] < self._purged_to]:
                if self._held_until(*key) + self.keep_ns <= now:  # no segment folds into it
                    del self._closed[key]
        return self._out(done)

    def end_day(self, at_ns: int) -> list[Bar]:
        """The run's trading day ended at ``at_ns`` (the run's data clock, which may be ahead
        of this shard's): every bar before it closes (flat ones too), and the day's state is
        forgotten, so a code that stops trading leaves nothing behind. A tick for a bar before
        ``at_ns`` is then ``too_late``. The bars to store and publish."""
        if at_ns > self._data_ns:
            self._data_ns, self._seen_ns = at_ns, self._clock()
        done = self.due()  # labelled already
        stale = [code for code, bar in self._open.items() if bar.minute_ns < at_ns]
        if stale:  # within the grace of the day's end: closed now, flat ones too
            done += self._out([self._open.pop(code) for code in stale])
        self._newest = {c: m for c, m in self._newest.items() if m >= at_ns or c in self._open}
        self._closed = {key: bar for key, bar in self._closed.items() if key[1] >= at_ns}
        self._floor = max(self._floor, at_ns - at_ns % MINUTE_NS)
        return done

    def now(self) -> int:
        """The data clock (see the module's docstring)."""
        return self._data_ns + (self._clock() - self._seen_ns) if self._data_ns else 0

    def close_all(self) -> list[Bar]:
        """Every open bar with a trade (at shutdown; a flat one is a guess about a minute in
        progress: the next run rebuilds it from the stored ticks)."""
        bars = [bar for bar in self._open.values() if bar.count]
        self._open.clear()
        self._newest.clear()
        return self._out(bars)

    def restore(self, ticks: list[Tick], latest: list[Tick] | None = None) -> list[Bar]:
        """Rebuild the recent bars from stored ticks (after a restart); the bars that closed
        meanwhile (to store again: stores upsert). ``latest``: each code's last stored tick,
        so a code quiet since before those ticks has its flat bars again."""
        seen = ResendFilter()  # a store may hand over a tick twice (SQLite: before a merge)
        for tick in sorted(ticks, key=identity):
            if seen.is_new(tick):
                self.add(tick)
        self._resume([t for t in latest or [] if t.code not in self._newest])
        self.late = self.too_late = self.outside = 0
        return self.due()

    def _resume(self, latest: list[Tick]) -> None:
        """Open a flat bar after each code's last trade, where that trade is of the newest
        trading day among them (an older day's bars are all stored)."""
        if not latest:
            return
        newest = max(t.time_ns for t in latest)
        for tick in latest:
            if trading_day(tick.time_ns, tick.code) != trading_day(newest, tick.code):
                continue
            minute = self._slot(tick.code, tick.time_ns)
            after = None if minute is None else self._next_slot(tick.code, minute)
            if after is not None:
                self._open[tick.code] = flat_bar(tick.code, after, tick.price)
                self._newest[tick.code] = after
        if newest > self._data_ns:
            self._data_ns, self._seen_ns = newest, self._clock()
