"""The end of a trading day: when a run rolls its day over. Pure: a ``Sessions`` and instants
in, no clock.

A day ends ``MARGIN_NS`` after the last session of any of the run's markets on it, after-hours
included (A-shares: 15:30 + 2 min; a run with US codes: after New York's after-hours, which is
the next morning in Shanghai), or, with ``--eod-at HH:MM``, at that time of the main market's
clock on each of its trading days. The margin lets the last bars close and late ticks arrive.

``Rollover.due`` is asked with the run's data clock (feedmux/stats/shard.py ``data_clock``): a
compressed replay ends its days on its own time, and a data clock that jumps over a night (a
replay of two days) ends the day it left. A day ends only if the clock was seen inside it: a run
started after a close leaves that day to the end-of-day job's catch-up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from zoneinfo import ZoneInfo

from feedmux.errors import ConfigError
from feedmux.market.calendar import CALENDAR_OF
from feedmux.market.day import DEFAULT_ZONE, EXCHANGE_ZONES, day_date
from feedmux.market.sessions import MINUTE_NS, Phase, Sessions, market_day

MARGIN_NS = 2 * MINUTE_NS
_OFF = frozenset({Phase.CLOSED, Phase.HOLIDAY})
_KEPT = 64  # days whose end is remembered


def parse_at(text: str) -> dt.time | None:
    """``--eod-at`` (HH:MM, the main market's local time); None for ""."""
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, "%H:%M").time()
    except ValueError:
        raise ConfigError(f"--eod-at {text!r}: give the time as HH:MM, e.g. 15:35") from None


class Rollover:
    """Which trading day ended, asked with the data clock as it advances.

    ``markets``: the run's markets (code suffixes); ``main``: the one whose calendar dates name
    the days (the market of most codes). A day counts once the clock was seen inside it, so a
    run started after a close does not end that day again (the day's data is an earlier run's).
    """

    def __init__(self, sessions: Sessions, markets: Collection[str], main: str,
                 at: str = "") -> None:  # fmt: skip
        self.sessions = sessions
        self.markets = [m for m in markets if m in CALENDAR_OF]
        self.main = main
        self.at = parse_at(at)
        self.zone = ZoneInfo(EXCHANGE_ZONES.get(main, DEFAULT_ZONE))
        self.pending: int | None = None  # the day under way, not ended yet
        self.ended = -1  # the last day ended
        self._ends: dict[int, int | None] = {}

    def end_ns(self, day: int) -> int | None:
        """When ``day`` ends (ns UTC); None when none of the markets trades on it."""
        if day in self._ends:
            return self._ends[day]
        found = self._ends[day] = self._end(day)
        if len(self._ends) > _KEPT:
            del self._ends[next(iter(self._ends))]
        return found

    def _end(self, day: int) -> int | None:
        ends = [s.end_ns for m in self.markets for s in self.sessions.day(m, day)
                if s.phase not in _OFF]  # fmt: skip
        if not ends and self.markets:
            return None  # a holiday or a weekend everywhere
        if self.at is not None:
            local = dt.datetime.combine(day_date(day), self.at, self.zone)
            return int(local.timestamp()) * 10**9
        if not ends:
            return None  # codes of no known market: no close (give --eod-at)
        return max(ends) + MARGIN_NS

    def due(self, now_ns: int) -> int | None:
        """The day that ended by ``now_ns`` (once), else None."""
        ended = None
        if self.pending is not None:
            end = self.end_ns(self.pending)
            if end is None or now_ns >= end:
                ended = self.ended = self.pending
                self.pending = None
        if self.pending is None:
            today = market_day(now_ns, self.main)
            end = self.end_ns(today)
            if today > self.ended and end is not None and now_ns < end:
                self.pending = today
        return ended

    def next_end_ns(self) -> int | None:
        """When the day under way ends (None: none is under way)."""
        return None if self.pending is None else self.end_ns(self.pending)


def first_kept_day(sessions: Sessions, main: str, ended: int, keep: int) -> int:
    """``--keep-days``: the oldest day kept when ``ended`` just ended, ``keep`` trading days
    of the main market counted back from it (every day counts for a market of no calendar)."""
    calendar = CALENDAR_OF.get(main)
    day, found = ended, 1
    while found < keep:
        day -= 1
        if calendar is None or sessions.calendars.hours(calendar, day) is not None:
            found += 1
    return day
