"""The replay server's report (``feedmux replay --report``): what it sent, and what its
clients did against the vendor's rules."""

from __future__ import annotations

import msgspec

from feedmux.providers.base import Violation


class Fault(msgspec.Struct, frozen=True):
    """One injected link fault."""

    name: str
    conn: int
    time_ns: int


class Step(msgspec.Struct, kw_only=True):
    """One rate step of a --rate feed of journal frames (--ramp: each faster than the last)."""

    rate: float  # frames per second
    first_index: int  # the first frame's index in the journal
    start_ns: int
    end_index: int | None = None  # None: still running
    end_ns: int | None = None


class SessionsReport(msgspec.Struct, kw_only=True):
    """The simulated trading day of a ``--sessions`` feed (feedmux/simulator/schedule.py)."""

    date: str  # the simulated day, YYYY-MM-DD
    factor: float  # simulated seconds per wall second
    start_ns: int  # the simulated day runs from here (ns UTC) ...
    end_ns: int  # ... to here
    now_ns: int  # the simulated clock: where the feed is (its start until it starts)
    phases: dict[str, str]  # each market's phase then
    sent: dict[str, int]  # trades sent, by their market's phase
    muted: dict[str, int]  # trades withheld by --mute, by code
    # --session-days: every day played (YYYY-MM-DD), the one playing (date, start_ns,
    # end_ns, now_ns are its own), and the trades sent on each
    dates: list[str] = []
    day_index: int = 0
    sent_by_day: dict[str, int] = {}


class ReplayStats(msgspec.Struct, kw_only=True):
    url: str  # "" until it serves
    feed: str  # "waiting", "running" or "done"
    ticks_sent: int
    books_sent: int
    garbage_sent: int
    resent: int = 0  # latest trades sent again after a subscription (--resend-on-subscribe)
    frames_sent: int
    connections_opened: int
    frames_skipped: dict[str, int]  # journal frames not sent, by reason
    cpu_s: float
    feed_cpu_s: float  # CPU spent feeding, start-up excluded (set when the feed ends)
    violations: list[Violation]  # of the vendor's rules, by the clients
    subscriptions: dict[str, int]  # codes subscribed, by connection
    subscribed: list[str]
    books: list[str]  # codes whose books are subscribed
    steps: list[Step]
    frame_index: int  # the next journal frame to send (--rate)
    faults: list[Fault]
    frames_total: int | None  # journal frames loaded (--rate); None otherwise
    sessions: SessionsReport | None = None  # --sessions: the simulated day
