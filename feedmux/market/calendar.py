"""Which days each exchange trades, and its regular hours on each: from the ``exchange-calendars``
library, with a local override file for the days it does not know yet. No sockets, no clock.

The library takes seconds of CPU and pandas to load its three calendars, too much for every
shard and every start: its days are compiled once per library version (and month) into a small
msgpack table in the user's cache directory (``$XDG_CACHE_HOME/feedmux``), and the supervisor
puts a copy in the run dir, which every process decodes in milliseconds. Overrides are applied
on top in each process, so editing the file needs no rebuild. A day outside what the library
knows (it records Shanghai's holidays only as far as announced) is taken as a regular trading
day if it is a weekday: a wrong guess costs silent-code warnings on a holiday, not missing
bars; ``Calendars.known_until`` says where guessing starts (the supervisor warns a month ahead).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import tempfile
import tomllib
import warnings
from pathlib import Path

import msgspec

from feedmux.errors import ConfigError
from feedmux.market.day import day_date

_EPOCH = dt.date(1970, 1, 1)
# Each calendar of the library, the code suffixes that use it and its regular hours (minutes
# after local midnight: open, lunch start, lunch end, close; 0, 0: no lunch). The three A-share
# exchanges share Shanghai's holidays.
LIBRARY_NAMES = {"CN": "XSHG", "HK": "XHKG", "US": "XNYS"}
CALENDAR_OF = {"SH": "CN", "SZ": "CN", "BJ": "CN", "HK": "HK", "US": "US"}
REGULAR = {"CN": (570, 690, 780, 900), "HK": (570, 720, 780, 960), "US": (570, 0, 0, 960)}


class Hours(msgspec.Struct, array_like=True, frozen=True):
    """One trading day's regular session, in minutes after the exchange's local midnight."""

    open: int
    break_start: int  # the lunch break; 0, 0: none (a half day, or no lunch at all)
    break_end: int
    close: int


class Table(msgspec.Struct, frozen=True):
    """One calendar's days as the library knows them: ``days`` maps a day (since 1970-01-01)
    to its hours; a day in ``[first, last]`` missing from it is a holiday or a weekend."""

    first: int
    last: int
    days: dict[int, Hours]


class Compiled(msgspec.Struct, frozen=True):
    version: str
    tables: dict[str, Table]


_COLUMNS = ("open", "break_start", "break_end", "close")


def _minutes(stamp: object, zone: str) -> int:
    import pandas as pd  # noqa: PLC0415

    if pd.isna(stamp):  # type: ignore[call-overload]
        return 0
    local = pd.Timestamp(stamp).tz_convert(zone)  # type: ignore[arg-type]
    return int(local.hour) * 60 + int(local.minute)


def _compile() -> Compiled:
    """Every calendar's days from the library (slow: pandas and the library's rules)."""
    import exchange_calendars as xcals  # type: ignore[import-untyped]  # noqa: PLC0415

    tables: dict[str, Table] = {}
    with warnings.catch_warnings():  # its pandas deprecation warnings are not ours to show
        warnings.simplefilter("ignore")
        for name, library_name in LIBRARY_NAMES.items():
            calendar = xcals.get_calendar(library_name)
            zone = str(calendar.tz)
            days: dict[int, Hours] = {}
            for session, row in calendar.schedule.iterrows():
                day = (session.date() - _EPOCH).days
                days[day] = Hours(*(_minutes(row[column], zone) for column in _COLUMNS))
            first = (calendar.first_session.date() - _EPOCH).days
            last = (calendar.last_session.date() - _EPOCH).days
            tables[name] = Table(first, last, days)
    return Compiled(_library_version(), tables)


def _library_version() -> str:
    from importlib.metadata import version  # noqa: PLC0415

    return version("exchange-calendars")


def _cache_path(version: str) -> Path:
    """Per library version and month: the library computes Hong Kong's and New York's days a
    year ahead of the day it is asked, so a month-old table knows a month less."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    month = dt.date.today().strftime("%Y-%m")
    return Path(base) / "feedmux" / f"calendars-{version}-{month}.msgpack"


RUN_COPY = "calendars.msgpack"  # in the run dir: the workers' copy, whatever the cache does
_loaded: Compiled | None = None


def _read(path: Path, version: str) -> Compiled | None:
    with contextlib.suppress(OSError, msgspec.DecodeError, msgspec.ValidationError):
        table = msgspec.msgpack.decode(path.read_bytes(), type=Compiled)
        if table.version == version:
            return table
    return None


def _write(path: Path, table: Compiled) -> None:
    """Atomically (a reader sees the old file or the new one); a failure is only a slower
    next start."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(msgspec.msgpack.encode(table))
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def compiled(run_dir: Path | None = None) -> Compiled:
    """The library's days: from the user's cache, else from ``run_dir``'s copy, else compiled
    (seconds of CPU) and cached. With ``run_dir`` (the supervisor, before any worker starts)
    the run dir gets a copy too, so workers never compile, even with no writable cache."""
    global _loaded
    version = _library_version()
    path = _cache_path(version)
    copy = run_dir / RUN_COPY if run_dir is not None else None
    table = _loaded or _read(path, version) or (_read(copy, version) if copy else None)
    if table is None:
        table = _compile()
        _write(path, table)
        with contextlib.suppress(OSError):
            for old in path.parent.glob("calendars-*.msgpack"):
                if old != path:
                    old.unlink(missing_ok=True)
    if copy is not None and _read(copy, version) is None:
        _write(copy, table)
    _loaded = table
    return table


class Override(msgspec.Struct, forbid_unknown_fields=True):
    """One ``[[day]]`` of the override file."""

    market: str
    date: dt.date
    closed: bool = False  # a holiday
    close: str = ""  # "HH:MM": a half day ending then
    open: bool = False  # a trading day with regular hours (the library says closed)


class OverrideFile(msgspec.Struct, forbid_unknown_fields=True):
    day: list[Override] = []


def _hhmm(text: str, where: str) -> int:
    try:
        parsed = dt.datetime.strptime(text, "%H:%M")
    except ValueError:
        raise ConfigError(f"{where}: close {text!r} is not HH:MM") from None
    return parsed.hour * 60 + parsed.minute


def _entry(match: re.Match[str]) -> str:
    field = f", {match.group(2)}" if match.group(2) else ""
    return f" (day {int(match.group(1)) + 1}{field})"


def read_overrides(path: Path) -> dict[str, dict[int, Hours | None]]:
    """The override file's days per calendar (None: closed). A mistake names the file and the
    entry; it stops the start (exit 2) rather than build wrong bars all day."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"calendar file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"calendar file {path}: not UTF-8 text (TOML is UTF-8)") from None
    try:
        entries = msgspec.convert(tomllib.loads(text), OverrideFile).day
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"calendar file {path}: {e}") from None
    except msgspec.ValidationError as e:  # "... - at `$.day[0]`": the entry as the file counts
        where = re.sub(r" - at `\$\.day\[(\d+)\](?:\.(\w+))?`", _entry, str(e))
        raise ConfigError(f"calendar file {path}: {where}") from None
    out: dict[str, dict[int, Hours | None]] = {}
    for index, entry in enumerate(entries, 1):
        where = f"calendar file {path}, day {index} ({entry.date})"
        name = CALENDAR_OF.get(entry.market.upper())
        if name is None:
            raise ConfigError(f"{where}: market {entry.market!r} is not one of "
                              f"{', '.join(CALENDAR_OF)}")  # fmt: skip
        if sum((entry.closed, bool(entry.close), entry.open)) != 1:
            raise ConfigError(f'{where}: give one of closed = true, open = true, close = "HH:MM"')
        day = (entry.date - _EPOCH).days
        if day in out.get(name, {}):  # SH, SZ and BJ are one calendar: one entry a day
            raise ConfigError(f"{where}: {entry.date} is listed twice for the "
                              f"{'A-share' if name == 'CN' else name} calendar")  # fmt: skip
        open_, lunch_start, lunch_end, close = REGULAR[name]
        hours: Hours | None = None
        if entry.open:
            hours = Hours(open_, lunch_start, lunch_end, close)
        elif entry.close:
            end = _hhmm(entry.close, where)
            if not open_ < end <= close:
                raise ConfigError(f"{where}: close {entry.close} is not within the regular hours")
            if lunch_start < end <= lunch_end:
                raise ConfigError(f"{where}: close {entry.close} is in the lunch break: a half "
                                  "day ends when the morning does")  # fmt: skip
            lunch = end > lunch_end if lunch_start else False
            hours = Hours(open_, lunch_start if lunch else 0, lunch_end if lunch else 0, end)
        out.setdefault(name, {})[day] = hours
    return out


class Calendars:
    """The trading days and regular hours of each calendar (``CN``, ``HK``, ``US``)."""

    def __init__(self, tables: dict[str, Table],
                 overrides: dict[str, dict[int, Hours | None]] | None = None) -> None:  # fmt: skip
        self._tables = tables
        self._overrides = overrides or {}

    @classmethod
    def load(cls, override_file: Path | None = None, run_dir: Path | None = None) -> Calendars:
        overrides = read_overrides(override_file) if override_file is not None else None
        return cls(compiled(run_dir).tables, overrides)

    def hours(self, calendar: str, day: int) -> Hours | None:
        """The day's regular hours; None: no trading (a holiday or a weekend)."""
        override = self._overrides.get(calendar, {})
        if day in override:
            return override[day]
        table = self._tables.get(calendar)
        if table is not None and table.first <= day <= table.last:
            return table.days.get(day)
        if day_date(day).weekday() >= 5:  # beyond what the library knows: a weekday trades
            return None
        return Hours(*REGULAR[calendar])

    def known_until(self, calendar: str) -> dt.date | None:
        """The last day the library or the override file knows (after it, weekdays are taken
        as trading days); None for a calendar the library does not have."""
        table = self._tables.get(calendar)
        if table is None:
            return None
        return day_date(max([table.last, *self._overrides.get(calendar, {})]))
