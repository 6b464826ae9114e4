"""The replay server's trading day (``feedmux replay --sessions``): which trades the synthetic
market makes in any span of simulated time, following each market's sessions, and the clock
that plays the day in compressed wall time. Pure: a ``Sessions``, the codes and simulated
instants in, ``Event``s out; no sockets, no wall clock (the server passes its times in).

The simulated day runs from ``LEAD_NS`` before the first session of the universe's markets
(auctions and pre-market included) to the end of the last one (after-hours included):
09:10-15:30 for A-shares. What each subscribed code gets, by its own market's phase (stamps
are exchange times):

- opening auction: one trade at the match, all codes at once (a burst): A-shares 09:25:00,
  Hong Kong 09:20:00 (the end of its no-cancellation period);
- continuous: one trade per code at the start of every minute, so every code that is fed has
  every one-minute bar; between them, trades of random codes at ``rate`` per *wall* second
  on average (a compressed day costs no more CPU than a real one), at random instants, as a
  real market trades: by code, a few very active codes and a long quiet tail (``activity``:
  Zipf-like), and by time, more after the open and before the close than at midday
  (``intensity``: a U over the day's continuous trading);
- closing auction: nothing, then the match, one trade per code at once: A-shares at 15:00:00
  (the auction's end; bars fold it into the 14:59 bar), Hong Kong at 16:08:00 (12:08:00 on a
  half day), within its auction;
- after-hours and pre-market: only the codes that trade then (STAR 688xxx.SH, ChiNext
  300/301xxx.SZ, every BJ code; every US code): one trade each at the segment's start, then
  random ones at ``EXTENDED_SHARE`` of ``rate``;
- lunch, closed hours, a holiday: nothing.

A code of no known market (no SH/SZ/BJ/HK/US suffix) is continuous all day, as the sessions
say. Each code's trades come in time order (a span's events are sorted), so its vendor seq
grows with its time.

Several days (``--session-days``) are consecutive trading days of the calendar, each its own
``Day`` played with the first one's compression; the overnight gap takes no wall time.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import itertools
import random
from collections.abc import Collection, Iterable, Mapping
from operator import itemgetter
from typing import NamedTuple
from zoneinfo import ZoneInfo

from feedmux.codes import normalize
from feedmux.errors import ConfigError
from feedmux.market.calendar import CALENDAR_OF
from feedmux.market.day import DEFAULT_ZONE, EXCHANGE_ZONES
from feedmux.market.sessions import MINUTE_NS, Phase, Rule, Segment, Sessions, market_of

_EPOCH = dt.date(1970, 1, 1)
LEAD_NS = 5 * MINUTE_NS  # the day starts this long before its first session
EXTENDED_SHARE = 0.1  # random trades after hours and pre-market: this share of the rate
# Each calendar's auction matches, from the end of the auction's segment.
OPEN_MATCH_NS = {"CN": -5 * MINUTE_NS, "HK": -10 * MINUTE_NS}
CLOSE_MATCH_NS = {"CN": 0, "HK": -2 * MINUTE_NS}
FED = frozenset({Phase.OPENING_AUCTION, Phase.CONTINUOUS, Phase.CLOSING_AUCTION,
                 Phase.PRE_MARKET, Phase.AFTER_HOURS})  # fmt: skip
EXTENDED = frozenset({Phase.PRE_MARKET, Phase.AFTER_HOURS})
ANY = ""  # the market of codes of no known market: continuous all day
MARKET_ORDER = ("SH", "SZ", "BJ", "HK", "US")  # whose calendar and clock come first
DEFAULT_DAY_SEARCH = 31  # days back to look for the latest trading day (or on to the next)
# A code's share of the random trades goes as rank^-ZIPF_EXPONENT: of 5,430 codes the busiest
# 1% take 10-17% of them, the busiest one 70-110x as many as the median one (the exponent 1
# of word counts would give that one 11% of the market: too steep for stocks). u (below) is
# kept above ACTIVITY_FLOOR, so no seed makes one code more than ~1.2% of a 5,430-code market.
ZIPF_EXPONENT = 0.6
ACTIVITY_FLOOR = 1 / 5000
# The intraday U: 1 + U_DEPTH·(2x-1)² over the day's continuous trading (x from 0 to 1),
# scaled to a mean of 1: twice the mean rate at the open and the close, half of it at midday.
U_DEPTH = 3.0


class Event(NamedTuple):
    """One trade to make: ``code`` at ``time_ns`` (ns UTC, whole milliseconds)."""

    time_ns: int
    code: str
    phase: Phase  # its market's phase (the closing match: closing_auction)


class Round(NamedTuple):
    """One trade for every code of ``market`` (after hours: every code that trades then)."""

    time_ns: int
    market: str
    phase: Phase


class Span(NamedTuple):
    """Simulated time in which each listed market keeps one phase with random trades."""

    start_ns: int
    end_ns: int
    phases: tuple[tuple[str, Phase], ...]


def trades_extended(code: str) -> bool:
    """Whether ``code`` trades after hours (or pre-market): STAR, ChiNext, BJ; US codes."""
    market = market_of(code)
    number = code.rpartition(".")[0]
    return (market in ("US", "BJ") or (market == "SH" and number.startswith("688"))
            or (market == "SZ" and number.startswith(("300", "301"))))  # fmt: skip


def day_number(date: dt.date) -> int:
    return (date - _EPOCH).days


def activity(code: str, seed: int) -> float:
    """``code``'s weight among the random trades: u^-ZIPF_EXPONENT for a uniform u in (0, 1]
    drawn from the code and the seed. The code of rank r among N has u near r/N, so weights
    go as rank^-ZIPF_EXPONENT (Zipf), and a code's weight is the same whatever else trades."""
    digest = hashlib.blake2b(f"{seed}:{code}".encode(), digest_size=8).digest()
    u = max(ACTIVITY_FLOOR, (int.from_bytes(digest, "big") + 1) / 2**64)
    return float(u**-ZIPF_EXPONENT)


def intensity(x: float) -> float:
    """The rate of random trades at ``x`` (0: the start of the day's continuous trading, 1:
    its end) over the day's mean rate: a U whose mean over [0, 1] is 1."""
    return (1 + U_DEPTH * (2 * x - 1) ** 2) / (1 + U_DEPTH / 3)


def intensity_share(x: float) -> float:
    """The share of the day's random trades made before ``x``: the integral of ``intensity``."""
    return (x + U_DEPTH * ((2 * x - 1) ** 3 + 1) / 6) / (1 + U_DEPTH / 3)


def _zone(markets: Iterable[str]) -> ZoneInfo:
    """The clock of the universe's first market (A-shares first)."""
    present = set(markets)
    first = next((m for m in MARKET_ORDER if m in present), "")
    return ZoneInfo(EXCHANGE_ZONES.get(first, DEFAULT_ZONE))


def _calendar(markets: Iterable[str]) -> str:
    present = set(markets)
    first = next((m for m in MARKET_ORDER if m in present), "SH")
    return CALENDAR_OF[first]


def latest_trading_day(sessions: Sessions, markets: Iterable[str], today: dt.date) -> dt.date:
    """The most recent trading day up to ``today`` of the A-share calendar (of the first
    market of ``markets`` in MARKET_ORDER, if it has no A-shares)."""
    calendar = _calendar(markets)
    for back in range(DEFAULT_DAY_SEARCH):
        date = today - dt.timedelta(days=back)
        if sessions.calendars.hours(calendar, day_number(date)) is not None:
            return date
    raise ConfigError(f"no trading day of the {calendar} calendar in the {DEFAULT_DAY_SEARCH} "
                      f"days up to {today}: give the session date")  # fmt: skip


def trading_days(sessions: Sessions, markets: Iterable[str], first: dt.date,
                 count: int) -> list[dt.date]:  # fmt: skip
    """``first`` and the trading days after it of the calendar ``latest_trading_day`` uses,
    ``count`` in all."""
    calendar = _calendar(markets)
    days = [first]
    date = first
    while len(days) < count:
        date += dt.timedelta(days=1)
        if (date - days[-1]).days > DEFAULT_DAY_SEARCH:
            raise ConfigError(f"no trading day of the {calendar} calendar in the "
                              f"{DEFAULT_DAY_SEARCH} days after {days[-1]}")  # fmt: skip
        if sessions.calendars.hours(calendar, day_number(date)) is not None:
            days.append(date)
    return days


class Day:
    """One simulated day of some markets: its window, each market's fed segments, the rounds
    (instants at which every code of a market trades once) and the spans of random trades."""

    def __init__(self, sessions: Sessions, date: dt.date, markets: Iterable[str]) -> None:
        self.date = date
        markets = set(markets)
        known = [m for m in MARKET_ORDER if m in markets]
        if not known:
            raise ConfigError("a simulated trading day needs codes of a market with hours "
                              f"({', '.join(MARKET_ORDER)})")  # fmt: skip
        number = day_number(date)
        segments: dict[str, list[Segment]] = {
            m: [s for s in sessions.day(m, number) if s.phase in FED] for m in known
        }
        fed = [s for found in segments.values() for s in found]
        if not fed:
            raise ConfigError(f"session date {date} is not a trading day of {', '.join(known)}: "
                              "give a trading day")  # fmt: skip
        self.start_ns = min(s.start_ns for s in fed) - LEAD_NS
        self.end_ns = max(s.end_ns for s in fed)
        self.closed = [m for m in known if not segments[m]]  # markets on holiday that day
        if markets - set(known):
            segments[ANY] = [Segment(self.start_ns, self.end_ns, Phase.CONTINUOUS, Rule.OWN)]
        self.segments = segments
        self.zone = _zone(markets)
        self.rounds = sorted(self._rounds())
        self._round_times = [r.time_ns for r in self.rounds]
        self.spans = self._spans()
        self._span_starts = [s.start_ns for s in self.spans]
        # The continuous clock: trading time of any market's continuous phase, lunch and
        # the rest left out, for the intraday intensity. Each span's start on it (None: no
        # market of the span is continuous).
        self.continuous_at: list[int | None] = []
        self.continuous_ns = 0
        for span in self.spans:
            if any(phase == Phase.CONTINUOUS for _, phase in span.phases):
                self.continuous_at.append(self.continuous_ns)
                self.continuous_ns += span.end_ns - span.start_ns
            else:
                self.continuous_at.append(None)

    def _rounds(self) -> Iterable[Round]:
        for market, found in self.segments.items():
            calendar = CALENDAR_OF.get(market, "")
            for s in found:
                if s.phase == Phase.OPENING_AUCTION:
                    yield Round(s.end_ns + OPEN_MATCH_NS[calendar], market, s.phase)
                elif s.phase == Phase.CLOSING_AUCTION:
                    yield Round(s.end_ns + CLOSE_MATCH_NS[calendar], market, s.phase)
                elif s.phase == Phase.CONTINUOUS:
                    first = -(-s.start_ns // MINUTE_NS) * MINUTE_NS
                    for minute in range(first, s.end_ns, MINUTE_NS):
                        yield Round(minute, market, s.phase)
                else:  # pre-market, after-hours: once at the start
                    yield Round(s.start_ns, market, s.phase)

    def _spans(self) -> list[Span]:
        random_fed = [(m, s) for m, found in self.segments.items() for s in found
                      if s.phase == Phase.CONTINUOUS or s.phase in EXTENDED]  # fmt: skip
        cuts = sorted({t for _, s in random_fed for t in (s.start_ns, s.end_ns)})
        spans = []
        for start, end in itertools.pairwise(cuts):
            phases = tuple((m, s.phase) for m, s in random_fed
                           if s.start_ns <= start and end <= s.end_ns)  # fmt: skip
            if phases:
                spans.append(Span(start, end, phases))
        return spans

    def rounds_in(self, start_ns: int, end_ns: int) -> list[Round]:
        lo = bisect.bisect_left(self._round_times, start_ns)
        hi = bisect.bisect_left(self._round_times, end_ns)
        return self.rounds[lo:hi]

    def spans_in(self, start_ns: int, end_ns: int) -> Iterable[tuple[int, Span]]:
        index = max(0, bisect.bisect_right(self._span_starts, start_ns) - 1)
        while index < len(self.spans) and self.spans[index].start_ns < end_ns:
            if self.spans[index].end_ns > start_ns:
                yield index, self.spans[index]
            index += 1

    def position(self, index: int, time_ns: int) -> float:
        """Where ``time_ns`` (in span ``index``, which has continuous trading) is in the day's
        continuous trading, from 0 to 1."""
        at = self.continuous_at[index]
        assert at is not None
        return (at + time_ns - self.spans[index].start_ns) / self.continuous_ns

    def phase(self, market: str, time_ns: int) -> Phase:
        """``market``'s phase at ``time_ns`` (closed outside its fed segments)."""
        for s in self.segments.get(market, ()):
            if s.start_ns <= time_ns < s.end_ns:
                return s.phase
        return Phase.CLOSED if market not in self.closed else Phase.HOLIDAY

    def at(self, text: str, what: str) -> int:
        """ns UTC of a local ``HH:MM[:SS]`` on this day, by the universe's first market."""
        return _local_ns(self.date, text, self.zone, what)


def _local_ns(date: dt.date, text: str, zone: ZoneInfo, what: str) -> int:
    for form in ("%H:%M", "%H:%M:%S"):
        try:
            clock = dt.datetime.strptime(text, form).time()
        except ValueError:
            continue
        return int(dt.datetime.combine(date, clock, zone).timestamp()) * 10**9
    raise ConfigError(f"{what}: {text!r} is not HH:MM or HH:MM:SS")


def parse_mutes(entries: Iterable[str], date: dt.date, codes: Collection[str]) -> dict[str, int]:
    """``CODE@HH:MM[:SS]`` (its exchange's time on ``date``) as {code: ns UTC}."""
    out: dict[str, int] = {}
    for entry in entries:
        raw, at, clock = entry.partition("@")
        if not at or not raw.strip():
            raise ConfigError(f"mute {entry!r}: give CODE@HH:MM, e.g. 600519.SH@10:30")
        try:
            code = normalize(raw.strip())  # any spelling: 600519, sh600519, 600519.SH
        except ValueError:
            raise ConfigError(f"mute {entry!r}: {raw.strip()!r} is not a code") from None
        zone = ZoneInfo(EXCHANGE_ZONES.get(market_of(code), DEFAULT_ZONE))
        out[code] = _local_ns(date, clock.strip(), zone, f"mute {entry!r}")
        if code not in codes:
            raise ConfigError(f"mute {entry!r}: {code} is not in the server's codes")
    return out


class Clock(NamedTuple):
    """Simulated time from wall time: ``start_ns`` when the feed starts, then ``factor``
    simulated seconds per wall second."""

    start_ns: int
    factor: float

    def at(self, wall_s: float) -> int:
        """The simulated time ``wall_s`` wall seconds after the feed's start."""
        return self.start_ns + int(wall_s * self.factor * 1e9)


def clock_of(day: Day, day_minutes: float | None, start: str = "") -> Clock:
    """The day played in ``day_minutes`` wall minutes (None: real time), from its start or
    from the local ``start`` (HH:MM[:SS])."""
    factor = 1.0
    if day_minutes is not None:
        factor = (day.end_ns - day.start_ns) / (day_minutes * 60e9)
    start_ns = day.start_ns
    if start:
        start_ns = day.at(start, "session start")
        if not day.start_ns <= start_ns < day.end_ns:
            zone = day.zone
            first, last = (dt.datetime.fromtimestamp(t / 1e9, zone).strftime("%H:%M")
                           for t in (day.start_ns, day.end_ns))  # fmt: skip
            raise ConfigError(f"session start {start} is outside the simulated day "
                              f"({first}-{last} {zone.key})")  # fmt: skip
    return Clock(start_ns, factor)


class Pool(NamedTuple):
    """The codes of a span's random trades (with their phase) and their cumulative weights."""

    codes: list[tuple[str, Phase]]
    weights: list[float]


class Schedule:
    """What the market sends in each span of simulated time, for the codes subscribed then;
    a muted code's trades are withheld from its instant on, and counted."""

    def __init__(self, day: Day, rate: float, factor: float,
                 mutes: Mapping[str, int] | None = None, seed: int = 7) -> None:  # fmt: skip
        self.rate = rate
        self.factor = factor
        self.mutes = dict(mutes or {})
        self.muted: dict[str, int] = {}  # trades withheld, by code
        self.seed = seed
        self._rng = random.Random(seed)
        self._activity: dict[str, float] = {}
        self.begin(day)

    def begin(self, day: Day) -> None:
        """Play ``day`` from now on (the next of several): the same rate, compression, mutes
        and random stream."""
        self.day = day
        self._source: Collection[str] | None = None
        self._codes: dict[str, list[str]] = {}  # by market
        self._extended: dict[str, list[str]] = {}  # by market: those trading after hours
        self._pools: dict[int, tuple[Pool, Pool]] = {}
        self._carry = [0.0, 0.0]  # random trades due but not made yet: continuous, extended
        # The wall seconds of the day's continuous trading, over which the U is spread.
        self._continuous_s = day.continuous_ns / self.factor / 1e9

    def _group(self, codes: Collection[str]) -> None:
        self._source = codes
        self._codes, self._extended, self._pools = {}, {}, {}
        for code in sorted(codes):
            market = market_of(code)
            market = market if market in CALENDAR_OF else ANY
            if market not in self.day.segments:
                continue  # a market the day was not planned for: it never trades
            self._codes.setdefault(market, []).append(code)
            if trades_extended(code):
                self._extended.setdefault(market, []).append(code)

    def _pool(self, index: int, span: Span) -> tuple[Pool, Pool]:
        """The codes of random trades in a span: continuous, extended."""
        pool = self._pools.get(index)
        if pool is None:
            regular: list[tuple[str, Phase]] = []
            extended: list[tuple[str, Phase]] = []
            for market, phase in span.phases:
                if phase in EXTENDED:
                    extended += ((c, phase) for c in self._extended.get(market, ()))
                else:
                    regular += ((c, phase) for c in self._codes.get(market, ()))
            pool = self._pools[index] = (self._weighed(regular), self._weighed(extended))
        return pool

    def _weighed(self, codes: list[tuple[str, Phase]]) -> Pool:
        weights = self._activity
        for code, _ in codes:
            if code not in weights:
                weights[code] = activity(code, self.seed)
        return Pool(codes, list(itertools.accumulate(weights[c] for c, _ in codes)))

    def events(self, start_ns: int, end_ns: int, codes: Collection[str]) -> list[Event]:
        """The trades of ``[start_ns, end_ns)`` for ``codes``, in time order (muted ones
        left out and counted). The random ones are as many as ``rate`` asks for the wall time
        the span takes, shaped by the intraday U in continuous trading (a fraction is carried
        to the next call)."""
        if codes is not self._source:
            self._group(codes)
        out: list[Event] = []
        for r in self.day.rounds_in(start_ns, end_ns):
            group = self._extended if r.phase in EXTENDED else self._codes
            out += (Event(r.time_ns, code, r.phase) for code in group.get(r.market, ()))
        rounds = len(out)
        day = self.day
        for index, span in day.spans_in(start_ns, end_ns):
            low, high = max(start_ns, span.start_ns), min(end_ns, span.end_ns)
            wall_s = (high - low) / self.factor / 1e9
            regular, extended = self._pool(index, span)
            if day.continuous_at[index] is not None:
                x_low, x_high = day.position(index, low), day.position(index, high)
                due = (intensity_share(x_high) - intensity_share(x_low)) * self._continuous_s
                out += self._random(0, regular, due * self.rate, low, high, shaped=index)
            out += self._random(1, extended, wall_s * self.rate * EXTENDED_SHARE, low, high)
        if len(out) > rounds:
            out.sort(key=itemgetter(0))
        return self._unmuted(out) if self.mutes else out

    def _random(self, kind: int, pool: Pool, due: float, low: int, high: int, *,
                shaped: int | None = None) -> list[Event]:  # fmt: skip
        """``due`` more random trades of ``pool``'s codes (``kind``: which carry) within
        ``[low, high)``, in whole milliseconds; ``shaped``: the span whose continuous trading
        they are in, for instants that follow the intraday U within it."""
        if not pool.codes:
            self._carry[kind] = 0.0  # nothing is made up for time nobody could trade in
            return []
        first_ms, end_ms = -(-low // 1_000_000), -(-high // 1_000_000)
        self._carry[kind] += due
        count = int(self._carry[kind])
        if count <= 0 or end_ms <= first_ms:
            return []  # under a millisecond: due later
        self._carry[kind] -= count
        rng = self._rng
        picked = rng.choices(pool.codes, cum_weights=pool.weights, k=count)
        if shaped is None:
            times = [rng.randrange(first_ms, end_ms) for _ in picked]
        else:
            times = self._shaped_times(shaped, count, first_ms, end_ms)
        return [Event(ms * 1_000_000, code, phase)
                for ms, (code, phase) in zip(times, picked, strict=True)]  # fmt: skip

    def _shaped_times(self, index: int, count: int, first_ms: int, end_ms: int) -> list[int]:
        """``count`` instants (ms) in ``[first_ms, end_ms)`` of span ``index``, with a density
        that follows ``intensity`` (rejection: the U is convex, so its highest value in the
        range is at an end; a server step's range is short, so nearly every draw is kept)."""
        rng, day = self._rng, self.day
        top = max(intensity(day.position(index, first_ms * 1_000_000)),
                  intensity(day.position(index, (end_ms - 1) * 1_000_000)))  # fmt: skip
        times: list[int] = []
        while len(times) < count:
            ms = rng.randrange(first_ms, end_ms)
            if rng.random() * top <= intensity(day.position(index, ms * 1_000_000)):
                times.append(ms)
        return times

    def _unmuted(self, events: list[Event]) -> list[Event]:
        mutes, muted = self.mutes, self.muted
        kept = []
        for event in events:
            since = mutes.get(event.code)
            if since is not None and event.time_ns >= since:
                muted[event.code] = muted.get(event.code, 0) + 1
            else:
                kept.append(event)
        return kept

    def phases(self, time_ns: int) -> dict[str, Phase]:
        """Each market's phase at ``time_ns`` (for the report)."""
        return {m or "other": self.day.phase(m, time_ns) for m in self.day.segments}


class Plan(NamedTuple):
    """What ``--sessions`` plays: the days, the first one's clock, and the mutes."""

    days: tuple[Day, ...]  # consecutive trading days, the first on the session date
    clock: Clock
    mutes: dict[str, int]

    @property
    def day(self) -> Day:
        return self.days[0]

    def clock_of(self, index: int) -> Clock:
        """Day ``index``'s clock: the first from its start (or --session-start), each next
        from its own start at the same compression."""
        if index == 0:
            return self.clock
        return Clock(self.days[index].start_ns, self.clock.factor)

    def schedule(self, rate: float, seed: int) -> Schedule:
        return Schedule(self.day, rate, self.clock.factor, self.mutes, seed)


def plan(sessions: Sessions, codes: Collection[str], date: dt.date, *,
         day_minutes: float | None = None, start: str = "",
         mutes: Iterable[str] = (), days: int = 1) -> Plan:  # fmt: skip
    """The simulated day of ``codes``' markets on ``date`` (and the ``days`` - 1 trading days
    after it), checked (a ConfigError says what is wrong: not a trading day, a start outside
    it, a bad mute)."""
    markets = {market_of(c) for c in codes}
    first = Day(sessions, date, markets)
    later = tuple(Day(sessions, d, markets)
                  for d in trading_days(sessions, markets, date, days)[1:])  # fmt: skip
    return Plan((first, *later), clock_of(first, day_minutes, start),
                parse_mutes(mutes, date, codes))  # fmt: skip


def session_date(text: str, sessions: Sessions, codes: Collection[str],
                 today: dt.date) -> dt.date:  # fmt: skip
    """``--session-date`` (YYYY-MM-DD), or the latest trading day up to ``today``."""
    if not text:
        return latest_trading_day(sessions, {market_of(c) for c in codes}, today)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"session date {text!r} is not a date (YYYY-MM-DD)") from None
