"""The trading day of a tick: one function for storage identity, bars, export partitions and
journal rotation (with its SQL and vectorised twins, checked equal by tests/unit/test_identity.py).

The trading day is the calendar date of the code's exchange (by its suffix: New York for
``.US``, with its daylight saving time; Hong Kong; Shanghai for A-shares), so a US session
(21:30-04:00 in Shanghai) is one day. Every session feedmux knows (feedmux/market/sessions.py),
pre-market and after-hours included, lies within one calendar day of its exchange, so the date
is the trading day; a product with a night session (futures) would need the session's day here.
A tick on a holiday keeps its date (no such tick is expected; it is stored, not moved).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # pandas only where readers need it: the shard's imports stay light
    import numpy as np
    import pandas as pd

DAY_NS = 86_400 * 10**9
_EPOCH = date(1970, 1, 1)
# Each exchange's calendar, by the code's suffix (feedmux/codes.py's canonical forms). Not
# fixed offsets: New York keeps daylight saving time. Anything else: the A-share calendar.
EXCHANGE_ZONES = {"US": "America/New_York", "HK": "Asia/Hong_Kong", "SH": "Asia/Shanghai",
                  "SZ": "Asia/Shanghai", "BJ": "Asia/Shanghai"}  # fmt: skip
DEFAULT_ZONE = "Asia/Shanghai"
_SQL_YEARS = range(1970, 2101)  # the SQL expression is exact for these years


class _Calendar:
    """One zone's calendar dates; the day of the last time asked is kept with its bounds, so
    a tick of the same day costs two comparisons."""

    __slots__ = ("_day", "_end", "_start", "zone")

    def __init__(self, zone: str) -> None:
        self.zone = ZoneInfo(zone)
        self._start = self._end = self._day = 0

    def day(self, time_ns: int) -> int:
        if self._start <= time_ns < self._end:
            return self._day
        local = datetime.fromtimestamp(time_ns // 10**9, self.zone).date()
        self._day = (local - _EPOCH).days
        self._start, self._end = self.midnight_ns(self._day), self.midnight_ns(self._day + 1)
        return self._day

    def midnight_ns(self, day: int) -> int:
        """When ``day`` begins there (ns UTC)."""
        return int(datetime.combine(day_date(day), time(), self.zone).timestamp()) * 10**9


_CALENDARS = {zone: _Calendar(zone) for zone in {DEFAULT_ZONE, *EXCHANGE_ZONES.values()}}
_BY_CODE: dict[str, _Calendar] = {}


def exchange_zone(code: str) -> str:
    """The time zone whose calendar dates are ``code``'s trading days."""
    return EXCHANGE_ZONES.get(code.rpartition(".")[2].upper(), DEFAULT_ZONE)


def trading_day(time_ns: int, code: str = "") -> int:
    """The trading day of ``code``'s tick at ``time_ns`` (ns UTC): the calendar date of its
    exchange (by the code's suffix; no code: the A-share calendar), as days since 1970-01-01.
    An integer stored in every key; ``trading_day_sql`` and ``trading_days`` compute the same.
    The one place that decides a tick's day: a market-sessions calendar can replace it."""
    calendar = _BY_CODE.get(code)
    if calendar is None:
        calendar = _BY_CODE[code] = _CALENDARS[exchange_zone(code)]
    return calendar.day(time_ns)


def trading_days(codes: pd.Series | Sequence[str], times_ns: np.ndarray) -> np.ndarray:
    """``trading_day`` of many ticks at once (the readers, the archive): int64 days."""
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    codes = pd.Series(codes, dtype=object).reset_index(drop=True)
    times = pd.DatetimeIndex(np.asarray(times_ns, dtype="int64"), tz="UTC")
    zones = codes.map({code: exchange_zone(code) for code in codes.unique()}).to_numpy()
    days = np.zeros(len(codes), dtype="int64")
    for zone in set(zones):
        mask = zones == zone
        local = times[mask].tz_convert(zone).tz_localize(None)
        days[mask] = local.asi8 // DAY_NS
    return days


@lru_cache
def _zone_sql(zone: str, column: str) -> str:
    """One zone's day in SQL integer arithmetic (SQLite and PostgreSQL), exact for
    ``_SQL_YEARS``: the day by the zone's largest offset at a midnight, one less when the
    time precedes that day's midnight (a midnight at a smaller offset: standard time)."""
    calendar = _CALENDARS[zone]
    first = (date(_SQL_YEARS[0], 1, 1) - _EPOCH).days
    last = (date(_SQL_YEARS[-1] + 1, 1, 1) - _EPOCH).days
    offsets = [day * DAY_NS - calendar.midnight_ns(day) for day in range(first, last)]
    high = max(offsets)
    shifted = f"({column} + {high})"
    day = f"({shifted} / {DAY_NS})"
    lows = set(offsets) - {high}
    if not lows:
        return day
    assert len(lows) == 1, zone  # two offsets (daylight saving time) at most
    deficit = high - lows.pop()
    ranges: list[tuple[int, int]] = []  # days whose midnight has the largest offset
    for index, offset in enumerate(offsets):
        if offset == high:
            if ranges and ranges[-1][1] == first + index - 1:
                ranges[-1] = (ranges[-1][0], first + index)
            else:
                ranges.append((first + index, first + index))
    at_high = " OR ".join(f"{day} BETWEEN {a} AND {b}" for a, b in ranges)
    return (f"({day} - CASE WHEN {shifted} % {DAY_NS} >= {deficit} THEN 0 "
            f"WHEN {at_high} THEN 0 ELSE 1 END)")  # fmt: skip


def trading_day_sql(column: str = "time_ns", code: str = "code") -> str:
    """``trading_day`` as a SQL expression over a table's time and code columns (SQLite and
    PostgreSQL integer arithmetic; tick times are after 1970, so truncating division floors).
    Long (the daylight-saving dates are spelled out), but only migrations use it."""
    others = [(suffix, zone) for suffix, zone in EXCHANGE_ZONES.items() if zone != DEFAULT_ZONE]
    cases = " ".join(f"WHEN {code} LIKE '%.{suffix}' THEN {_zone_sql(zone, column)}"
                     for suffix, zone in others)  # fmt: skip
    return f"(CASE {cases} ELSE {_zone_sql(DEFAULT_ZONE, column)} END)"


def day_date(day: int) -> date:
    """A ``trading_day`` as a calendar date."""
    return _EPOCH + timedelta(days=day)


def day_start_ns(day: int, market: str) -> int:
    """When trading day ``day`` begins on ``market`` (a code suffix): its local midnight."""
    return _CALENDARS[EXCHANGE_ZONES.get(market, DEFAULT_ZONE)].midnight_ns(day)
