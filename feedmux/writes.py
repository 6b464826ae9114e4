"""Writes to disk that fail (a full disk, above all): counted always, logged once per kind.

Every process keeps one ``WriteHealth`` (``health``). The store, stats, journal, spill and log
writers tell it of each failure and success; it logs when a kind starts failing and when it
works again, and its ``failures`` go into the process's stats file, so ``feedmux status`` and
the metrics say "store failing: disk full" while the process keeps going and retries.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
import threading

import msgspec

log = logging.getLogger(__name__)

# What happens to what could not be written, by kind: said once, when a kind starts failing.
MEANWHILE = {
    "store": "rows are kept in memory and retried",
    "redis": "publications are kept in memory and retried",
    "nats": "publications are kept in memory and retried",
    "stats": "the last numbers stay",
    "journal": "messages are not journaled (counted); a new file is tried every 5 s",
    "spill": "ticks stay in memory up to --bus-memory, then are dropped (counted); the spill "
    "is tried again every 200 ms",
    "log": "log lines are lost",
    "universe": "the saved subscriptions are written again every second",
}
_FULL = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL, READ_ONLY = "disk full", "read-only file system"
KNOWN_REASONS = frozenset({DISK_FULL, READ_ONLY})  # any other is an error's first line


class WriteFailure(msgspec.Struct, kw_only=True):
    """One kind of write that failed in this process; ``failing``: it still does."""

    kind: str
    reason: str  # "disk full", "read-only file system", or the error's first line
    failures: int
    failing: bool
    error: str  # the last error, one line

    def line(self) -> str:
        state = "failing" if self.failing else "failed earlier"
        return f"{self.kind} {state}: {self.reason} ({self.failures:,} failed writes)"


def reason_of(exc: BaseException) -> str:
    """What a write error means to an operator, looking through its causes."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _FULL:
            return DISK_FULL
        if isinstance(seen, OSError) and seen.errno == errno.EROFS:
            return READ_ONLY
        text = str(seen)
        if "disk is full" in text or "No space left" in text:  # SQLite says it in words
            return DISK_FULL
        seen = seen.__cause__ or seen.__context__
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


class WriteHealth:
    """The failing writes of one process; safe to call from writer threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[str, WriteFailure] = {}
        self._sources: dict[str, set[str]] = {}  # kind -> the writers failing now

    def failed(self, kind: str, exc: BaseException, source: str = "") -> None:
        """A write of ``kind`` failed (it is kept and retried, or counted as lost)."""
        with self._lock:
            entry = self._kinds.get(kind)
            if entry is None:
                entry = self._kinds[kind] = WriteFailure(
                    kind=kind, reason="", failures=0, failing=False, error=""
                )
            started = not entry.failing
            entry.failures += 1
            entry.failing = True
            entry.reason, entry.error = reason_of(exc), _first_line(exc)
            self._sources.setdefault(kind, set()).add(source)
        if started:
            meanwhile = MEANWHILE.get(kind, "retried")
            reason = "" if entry.reason == entry.error else f" ({entry.reason})"  # no echo
            self._say(kind, f"{kind} writes failing{reason}: {entry.error}; "
                      f"{meanwhile} until they work again")  # fmt: skip

    def ok(self, kind: str, source: str = "") -> None:
        """A write of ``kind`` by ``source`` worked."""
        entry = self._kinds.get(kind)
        if entry is None or not entry.failing:
            return  # the common case: nothing to do, no lock
        with self._lock:
            sources = self._sources.get(kind, set())
            sources.discard(source)
            recovered = entry.failing and not sources
            if recovered:
                entry.failing = False
        if recovered:
            self._say(kind, f"{kind} writes work again after {entry.failures:,} failures",
                      logging.INFO)  # fmt: skip

    def failing(self, kind: str) -> bool:
        entry = self._kinds.get(kind)
        return entry is not None and entry.failing

    def failures(self) -> list[WriteFailure]:
        """Every kind that ever failed, for the stats file."""
        with self._lock:
            return [msgspec.structs.replace(e) for e in self._kinds.values()]

    @staticmethod
    def _say(kind: str, text: str, level: int = logging.WARNING) -> None:
        if kind == "log":  # the log file is what fails: say it where it can still be seen
            with contextlib.suppress(OSError):  # stderr may be a closed pipe too
                print(f"feedmux: log file: {text}", file=sys.stderr, flush=True)
        else:
            log.log(level, "%s", text)


health = WriteHealth()  # this process's


class LogFileHandler(logging.FileHandler):
    """A log file that may stop taking lines (disk full): the lines are lost and counted, not
    a traceback per line on stderr; it writes again once there is room."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(msg + self.terminator)
            self.stream.flush()
        except RecursionError:  # as logging.StreamHandler does
            raise
        except OSError as exc:
            self._drop_buffer()
            health.failed("log", exc)
            return
        except Exception:  # a bad format call: logging's own report, never the caller's crash
            self.handleError(record)
            return
        health.ok("log")

    def _drop_buffer(self) -> None:
        """Forget what could not be written, so a later line does not fail on it again."""
        stream = self.stream
        self.stream = None
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
