"""Each subscribed market's session on the data clock, for the status table, ``feedmux status``
and /metrics. Pure: a ``Sessions`` and the time in, rows out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from feedmux.market.calendar import CALENDAR_OF
from feedmux.market.day import EXCHANGE_ZONES
from feedmux.market.sessions import Sessions, market_of

_LOOK_AHEAD = 24  # segments searched for the next phase (a week of holidays has ~20)


@dataclass(frozen=True)
class MarketRow:
    market: str  # a code suffix: SH, HK, US (any other: always continuous)
    phase: str  # a feedmux.market.sessions.Phase value
    next_phase: str  # "" when no change is in sight (a market of no known hours)
    next_ns: int  # when ``next_phase`` begins (ns UTC); 0 with no next phase
    next_local: str  # that time at the exchange: "13:00", or "12-07 09:15" on another day

    def line(self, *, then: bool = True) -> str:
        """For people: ``SH lunch (continuous 13:00)``, phases in words (JSON keeps names);
        ``then=False`` leaves out the next change."""
        later = (
            f" ({_words(self.next_phase)} {self.next_local})" if self.next_phase and then else ""
        )
        return f"{self.market} {_words(self.phase)}{later}"


def _words(phase: str) -> str:
    return phase.replace("_", " ")


def markets_of(codes: Iterable[str]) -> list[str]:
    """The markets of ``codes`` (``*.US`` included), sorted."""
    return sorted({market_of(code) for code in codes})


def market_rows(markets: Iterable[str], sessions: Sessions, now_ns: int) -> list[MarketRow]:
    """Each market's phase at ``now_ns`` and the next phase change, if one is in sight."""
    rows = []
    for market in markets:
        segment = sessions.segment(market, now_ns)
        phase, next_phase, next_ns = segment.phase, "", 0
        at = segment.end_ns
        for _ in range(_LOOK_AHEAD):
            if at >= 2**63 - 1:  # a market of no known hours: continuous for ever
                break
            later = sessions.segment(market, at)
            if later.phase != phase:
                next_phase, next_ns = str(later.phase), at
                break
            at = later.end_ns
        rows.append(MarketRow(market, str(phase), next_phase, next_ns,
                              _local(market, now_ns, next_ns) if next_phase else ""))  # fmt: skip
    return rows


def _local(market: str, now_ns: int, at_ns: int) -> str:
    zone = ZoneInfo(EXCHANGE_ZONES.get(market, "UTC"))
    now = dt.datetime.fromtimestamp(now_ns // 10**9, zone)
    at = dt.datetime.fromtimestamp(at_ns // 10**9, zone)
    return at.strftime("%H:%M" if at.date() == now.date() else "%m-%d %H:%M")


def line(rows: list[MarketRow]) -> str:
    """``SH continuous (lunch 11:30) · US closed (pre_market 04:00)``."""
    return " · ".join(row.line() for row in rows)


def unknown_days(sessions: Sessions, codes: Iterable[str], today: dt.date) -> list[str]:
    """A warning for each subscribed market whose calendar ends within a month: after that
    day, weekdays count as trading days (a holiday then shows silent codes; no bar is lost)."""
    out = []
    for calendar in sorted({CALENDAR_OF[m] for m in markets_of(codes) if m in CALENDAR_OF}):
        until = sessions.calendars.known_until(calendar)
        if until is not None and until < today + dt.timedelta(days=30):
            name = "A-share" if calendar == "CN" else calendar
            out.append(f"the {name} calendar knows trading days only to {until}: later weekdays "
                       "count as trading days until --calendar-file lists the holidays (a newer "
                       "exchange-calendars may know them)")  # fmt: skip
    return out
