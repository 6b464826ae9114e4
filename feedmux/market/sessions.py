"""Each market's sessions: what phase it is in at any instant, and which one-minute bar a tick at
that instant belongs to by the exchange's convention. Pure: a ``Calendars`` in, no clock.

A trading day is cut into segments, each with a phase and a bar rule (local times; the regular
hours come from the calendar, so half days and holidays follow it):

========  ==============================  =================  ==================================
market    segment                         phase              bars
========  ==============================  =================  ==================================
SH SZ BJ  09:15-09:30                     opening_auction    folded into the first bar
          09:30-11:30, 13:00-14:57        continuous         one a minute
          11:30-13:00                     lunch              folded into the last morning bar
          14:57-15:00                     closing_auction    one a minute
          15:00-15:05                     closed             folded into the 15:00 bar (the
                                                             closing auction prints at 15:00)
          15:05-15:30                     after_hours        only with ``--bars-extended``
HK        09:00-09:30                     opening_auction    folded into the first bar
          09:30-12:00, 13:00-16:00        continuous         one a minute
          12:00-13:00                     lunch              folded into the last morning bar
          16:00-16:10                     closing_auction    folded into the last bar
US        04:00-09:30                     pre_market         only with ``--bars-extended``
          09:30-16:00                     continuous         one a minute
          16:00-20:00                     after_hours        only with ``--bars-extended``
========  ==============================  =================  ==================================

Any other time is ``closed`` (``holiday`` all day on a weekday the calendar says is closed),
and a tick then is in no bar. So an A-share day has 240 bars, a Hong Kong day 330 (150 on a
half day) and a US day 390 (210). A code of no known market (no ``.SH``/``.SZ``/``.BJ``/``.HK``/
``.US`` suffix) is always ``continuous``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from feedmux.errors import ConfigError
from feedmux.market.calendar import CALENDAR_OF, Calendars, Hours
from feedmux.market.day import EXCHANGE_ZONES, day_date, trading_day

MINUTE_NS = 60_000_000_000
# Calendars whose convention is a bar for every regular minute, traded or not (a flat one).
FILLED = frozenset({"CN", "HK"})


class Phase(StrEnum):
    CLOSED = "closed"
    HOLIDAY = "holiday"
    PRE_MARKET = "pre_market"
    OPENING_AUCTION = "opening_auction"
    CONTINUOUS = "continuous"
    LUNCH = "lunch"
    CLOSING_AUCTION = "closing_auction"
    AFTER_HOURS = "after_hours"


PHASES = tuple(Phase)


class Rule(IntEnum):
    """Which bar a tick in a segment goes to."""

    NONE = 0  # no bar
    OWN = 1  # its own minute's
    NEXT = 2  # the first regular bar after the segment
    PREVIOUS = 3  # the last regular bar before it
    EXTENDED = 4  # its own minute's with --bars-extended, else none


class Segment(NamedTuple):
    start_ns: int
    end_ns: int
    phase: Phase
    rule: Rule
    # NEXT, PREVIOUS: the start of the bar its ticks go to; OWN: the start of the day's next
    # OWN segment (-1: none)
    target_ns: int = -1


# Segments as (start, end, phase, rule) in minutes after local midnight, from a day's hours.
_Plan = list[tuple[int, int, Phase, Rule]]


def _cn(h: Hours) -> _Plan:
    plan = [(h.open - 15, h.open, Phase.OPENING_AUCTION, Rule.NEXT)]
    if h.break_start:
        plan += [(h.open, h.break_start, Phase.CONTINUOUS, Rule.OWN),
                 (h.break_start, h.break_end, Phase.LUNCH, Rule.PREVIOUS),
                 (h.break_end, h.close - 3, Phase.CONTINUOUS, Rule.OWN)]  # fmt: skip
    else:
        plan.append((h.open, h.close - 3, Phase.CONTINUOUS, Rule.OWN))
    return [*plan, (h.close - 3, h.close, Phase.CLOSING_AUCTION, Rule.OWN),
            (h.close, h.close + 5, Phase.CLOSED, Rule.PREVIOUS),
            (h.close + 5, h.close + 30, Phase.AFTER_HOURS, Rule.EXTENDED)]  # fmt: skip


def _hk(h: Hours) -> _Plan:
    plan = [(h.open - 30, h.open, Phase.OPENING_AUCTION, Rule.NEXT)]
    if h.break_start:
        plan += [(h.open, h.break_start, Phase.CONTINUOUS, Rule.OWN),
                 (h.break_start, h.break_end, Phase.LUNCH, Rule.PREVIOUS),
                 (h.break_end, h.close, Phase.CONTINUOUS, Rule.OWN)]  # fmt: skip
    else:
        plan.append((h.open, h.close, Phase.CONTINUOUS, Rule.OWN))
    return [*plan, (h.close, h.close + 10, Phase.CLOSING_AUCTION, Rule.PREVIOUS)]


def _us(h: Hours) -> _Plan:
    return [(240, h.open, Phase.PRE_MARKET, Rule.EXTENDED),
            (h.open, h.close, Phase.CONTINUOUS, Rule.OWN),
            (h.close, h.close + 240, Phase.AFTER_HOURS, Rule.EXTENDED)]  # fmt: skip


_PLANS = {"CN": _cn, "HK": _hk, "US": _us}


def _filled(plan: _Plan, closed: Phase) -> _Plan:
    """The plan with its gaps (and the day's ends) as closed segments."""
    out: _Plan = []
    at = 0
    for start, end, phase, rule in plan:
        if start > at:
            out.append((at, start, closed, Rule.NONE))
        if end > start:
            out.append((start, end, phase, rule))
            at = end
    if at < 1440:
        out.append((at, 1440, closed, Rule.NONE))
    return out


class Sessions:
    """The phase of each market at any instant, and the bar a tick belongs to. Each market's
    current segment is kept, so a lookup in it costs two comparisons."""

    def __init__(self, calendars: Calendars) -> None:
        self.calendars = calendars
        self._days: dict[tuple[str, int], tuple[Segment, ...]] = {}
        self._current: dict[str, Segment] = {}
        self._totals: dict[tuple[str, int], int] = {}  # a whole day's continuous trading
        self._zones = {market: ZoneInfo(zone) for market, zone in EXCHANGE_ZONES.items()}

    def segment(self, market: str, time_ns: int) -> Segment:
        """The segment of ``market`` (a code suffix: SH, HK, US; anything else: always
        continuous) holding ``time_ns`` (ns UTC)."""
        current = self._current.get(market)
        if current is not None and current.start_ns <= time_ns < current.end_ns:
            return current
        zone = self._zones.get(market)
        if zone is None or market not in CALENDAR_OF:
            return Segment(-(2**63), 2**63 - 1, Phase.CONTINUOUS, Rule.OWN)
        for segment in self.day(market, market_day(time_ns, market)):
            if segment.start_ns <= time_ns < segment.end_ns:
                self._current[market] = segment
                return segment
        raise AssertionError((market, time_ns))  # a day's segments cover it whole

    def day(self, market: str, day: int) -> tuple[Segment, ...]:
        """``market``'s segments on ``day`` (days since 1970-01-01, its local calendar)."""
        key = (market, day)
        segments = self._days.get(key)
        if segments is None:
            segments = self._days[key] = self._build(market, day)
            if len(self._days) > 64:  # a long replay crosses many days: keep the recent ones
                del self._days[next(iter(self._days))]
        return segments

    def _build(self, market: str, day: int) -> tuple[Segment, ...]:
        calendar = CALENDAR_OF[market]
        date = day_date(day)
        hours = self.calendars.hours(calendar, day)
        if hours is None:
            closed = Phase.CLOSED if date.weekday() >= 5 else Phase.HOLIDAY
            plan = _filled([], closed)
        else:
            plan = _filled(_PLANS[calendar](hours), Phase.CLOSED)
        zone = self._zones[market]

        spans = [(_at(date, start, zone), _at(date, end, zone), phase, rule)
                 for start, end, phase, rule in plan]  # fmt: skip
        own = [(start, end) for start, end, _, rule in spans if rule == Rule.OWN]
        out = []
        for start, end, phase, rule in spans:
            target = -1
            if rule == Rule.NEXT:
                after = [s for s, _ in own if s >= end]
                target = after[0] if after else -1
            elif rule == Rule.PREVIOUS:
                before = [e for _, e in own if e <= start]
                target = before[-1] - MINUTE_NS if before else -1
            elif rule == Rule.OWN:
                later = [s for s, _ in own if s >= end]
                target = later[0] if later else -1
            out.append(Segment(start, end, phase, rule, target))
        return tuple(out)

    def phase(self, market: str, time_ns: int) -> Phase:
        return self.segment(market, time_ns).phase

    def trading_ns(self, market: str, start_ns: int, end_ns: int) -> int:
        """Nanoseconds of continuous trading of ``market`` within ``[start_ns, end_ns)``: the
        time a live code is expected to tick in (auctions, lunch and closed hours left out).
        Whole days in between are summed once each and kept (the silent-code check asks this
        for every code every few seconds, back as far as two weeks)."""
        if start_ns >= end_ns:
            return 0
        zone = self._zones.get(market)
        if zone is None or market not in CALENDAR_OF:
            return end_ns - start_ns  # no known market: always trading
        first, last = market_day(start_ns, market), market_day(end_ns, market)
        total = self._within(market, first, start_ns, end_ns)
        if last != first:
            total += self._within(market, last, start_ns, end_ns)
        for day in range(first + 1, last):
            whole = self._totals.get((market, day))
            if whole is None:
                whole = self._totals[(market, day)] = self._within(market, day, 0, 2**63 - 1)
            total += whole
        return total

    def _within(self, market: str, day: int, start_ns: int, end_ns: int) -> int:
        return sum(max(0, min(end_ns, s.end_ns) - max(start_ns, s.start_ns))
                   for s in self.day(market, day) if s.phase == Phase.CONTINUOUS)  # fmt: skip


def market_day(time_ns: int, market: str) -> int:
    """The trading day at ``time_ns`` on ``market`` (a code suffix): the one function's."""
    return trading_day(time_ns, "." + market)


def _at(date: dt.date, minutes: int, zone: ZoneInfo) -> int:
    """ns UTC of ``minutes`` after ``date``'s local midnight in ``zone`` (1440: the next
    midnight), by the wall clock there (daylight saving time respected)."""
    if minutes >= 1440:
        date, minutes = date + dt.timedelta(days=1), minutes - 1440
    local = dt.datetime.combine(date, dt.time(minutes // 60, minutes % 60), zone)
    return int(local.timestamp()) * 10**9


def market_of(code: str) -> str:
    """A code's market: its suffix (``600519.SH`` -> ``SH``)."""
    return code.rpartition(".")[2].upper()


def main_market(codes: Iterable[str]) -> str:
    """The market of most of ``codes`` (SH for none): whose calendar dates name a run's days
    (journal folders, the end of day)."""
    counts = Counter(market_of(code) for code in codes)
    return counts.most_common(1)[0][0] if counts else "SH"


class BarSlots:
    """Which one-minute bar (its start, ns UTC) a tick belongs to; None: no bar. ``sessions``
    None: plain clock minutes around the clock (``--bar-sessions none``)."""

    def __init__(self, sessions: Sessions | None, extended: bool = False) -> None:
        self.sessions = sessions
        self.extended = extended
        self._market: dict[str, str] = {}
        self._held: dict[tuple[str, int], int] = {}

    def _market_of(self, code: str) -> str:
        market = self._market.get(code)  # once a code: this runs for every tick
        if market is None:
            market = self._market[code] = market_of(code)
        return market

    def slot(self, code: str, time_ns: int) -> int | None:
        if self.sessions is None:
            return time_ns - time_ns % MINUTE_NS
        market = self._market_of(code)
        segment = self.sessions.segment(market, time_ns)
        rule = segment.rule
        if rule == Rule.OWN or (rule == Rule.EXTENDED and self.extended):
            return time_ns - time_ns % MINUTE_NS
        if rule in (Rule.NEXT, Rule.PREVIOUS):
            return segment.target_ns if segment.target_ns >= 0 else None
        return None

    def held_until(self, code: str, minute_ns: int) -> int:
        """Until when ticks may still fold into the bar starting at ``minute_ns`` (ns UTC): the
        end of the lunch break or closing auction right after it; 0 for any other bar."""
        if self.sessions is None:
            return 0
        market = self._market_of(code)
        key = (market, minute_ns)
        held = self._held.get(key)
        if held is None:
            held = 0
            segment = self.sessions.segment(market, minute_ns)
            if segment.rule == Rule.OWN and minute_ns + MINUTE_NS == segment.end_ns:
                after = self.sessions.segment(market, segment.end_ns)
                held = after.end_ns if after.rule == Rule.PREVIOUS else 0
            if len(self._held) > 4096:  # a day has a few such bars a market: keep them few
                self._held.clear()
            self._held[key] = held
        return held

    def next_slot(self, code: str, minute_ns: int) -> int | None:
        """The regular bar after the one starting at ``minute_ns``, on the same day, where the
        market's convention has a bar for every regular minute (A-shares: 240 a day; Hong
        Kong); None otherwise (the day's last bar, a US code, plain minutes)."""
        if self.sessions is None:
            return None
        market = self._market_of(code)
        if CALENDAR_OF.get(market) not in FILLED:
            return None
        segment = self.sessions.segment(market, minute_ns)
        if segment.rule != Rule.OWN:
            return None
        if minute_ns + MINUTE_NS < segment.end_ns:
            return minute_ns + MINUTE_NS
        return segment.target_ns if segment.target_ns >= 0 else None


def load_sessions(calendar_file: str = "", run_dir: Path | None = None) -> Sessions:
    """The sessions of every market, from the library's days and the override file, if any
    (``run_dir``: where the supervisor leaves the compiled days for its workers)."""
    return Sessions(Calendars.load(Path(calendar_file) if calendar_file else None, run_dir))


def sessions_of_run(calendar_file: str, run_dir: Path | None = None) -> tuple[Sessions, str]:
    """A running instance's sessions for a reader of it (``feedmux status``, ``Control``):
    with its calendar file, or, if that file is gone or broken since the run started (the run
    itself read it then), the library's days and why (a warning to show)."""
    try:
        return load_sessions(calendar_file, run_dir), ""
    except ConfigError as e:
        return load_sessions("", run_dir), f"{e}: the library's days are used instead"
