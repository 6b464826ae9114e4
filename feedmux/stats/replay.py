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
