"""Live subscription changes, the caller's side: ``Control`` asks a running ``feedmux run`` to
change its codes and waits for the vendor's answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from feedmux import wire
from feedmux.client.subscriber import SnapshotClient
from feedmux.codes import WHOLE_MARKET, is_whole_market, parse_codes
from feedmux.errors import ConsumerError, SubscriptionError
from feedmux.market.sessions import Phase, Segment, Sessions, market_of, sessions_of_run
from feedmux.ops import instance
from feedmux.ops.config import RunPaths, read_manifest
from feedmux.stats import read_stats
from feedmux.stats.shard import data_clock
from feedmux.transports import zmq as zt

_log = logging.getLogger(__name__)
ALIVE_CHECK_S = 0.5  # while waiting for the receiver, check this often that the run lives
LOOK_BACK_NS = 14 * 86_400 * 10**9  # trading since longer ago is counted from two weeks ago


def not_subscribed(codes: Iterable[str], subscribed: Iterable[str]) -> list[str]:
    """Those of ``codes`` that ``subscribed`` (a run's subscriptions) neither lists nor covers
    with a whole market (``*.US`` covers ``AAPL.US``)."""
    listed = set(subscribed)
    return [c for c in codes if c not in listed and f"{WHOLE_MARKET}.{market_of(c)}" not in listed]


def silent_codes(
    confirmed_ns: Mapping[str, int],
    last_tick_ns: Mapping[str, int],
    threshold_s: float,
    now_ns: int,
    sessions: Sessions,
) -> dict[str, float | None]:
    """Codes subscribed but silent at ``now_ns`` (the data clock), each with the seconds of
    continuous trading since its last tick (None: it never ticked).

    A code is silent only while its market trades continuously, and when its market traded
    continuously for more than ``threshold_s`` both since its last tick (``last_tick_ns``:
    exchange time) and since it was confirmed subscribed (``confirmed_ns``). So nothing is
    silent at lunch, in an auction, after the close or on a holiday, and a code that ticked
    just before lunch is not silent just after it. A whole market (``*.US``) is silent when
    none of its codes ticked in that time. A code of no known market is always trading."""
    threshold = threshold_s * 1e9
    newest = dict(last_tick_ns)
    for code in confirmed_ns:
        if is_whole_market(code):
            market = "." + code.rpartition(".")[2]
            within = [t for c, t in last_tick_ns.items() if c.endswith(market)]
            if within:
                newest[code] = max(within)
    quiet_since = _TradingSince(sessions, now_ns)
    out: dict[str, float | None] = {}
    for code, since in sorted(confirmed_ns.items()):
        market = market_of(code)
        if not quiet_since.trading(market) or quiet_since(market, since) <= threshold:
            continue
        last = newest.get(code)
        if last is None:
            out[code] = None
        elif (quiet := quiet_since(market, last)) > threshold:
            out[code] = quiet / 1e9
    return out


class _TradingSince:
    """Nanoseconds of continuous trading of a market from a time until ``now_ns``; a time in
    the segment trading now costs a subtraction (5,000 codes are checked every few seconds)."""

    def __init__(self, sessions: Sessions, now_ns: int) -> None:
        self.sessions = sessions
        self.now_ns = now_ns
        self._now: dict[str, Segment] = {}

    def _segment(self, market: str) -> Segment:
        segment = self._now.get(market)
        if segment is None:
            segment = self._now[market] = self.sessions.segment(market, self.now_ns)
        return segment

    def trading(self, market: str) -> bool:
        return self._segment(market).phase == Phase.CONTINUOUS

    def __call__(self, market: str, since_ns: int) -> int:
        segment = self._segment(market)
        if since_ns >= segment.start_ns and segment.phase == Phase.CONTINUOUS:
            return max(0, self.now_ns - since_ns)
        start = max(since_ns, self.now_ns - LOOK_BACK_NS)  # not every day since a bad time
        return self.sessions.trading_ns(market, start, self.now_ns)


class Silence(NamedTuple):
    silent: dict[str, float | None]  # code -> seconds of trading since its last tick
    markets: list[str]  # the markets of the subscribed codes (SH, HK, US, ...)
    now_ns: int  # the data clock they were judged at


class Control:
    """Change a running ``feedmux run``'s subscriptions; each call returns once the vendor
    confirmed the change, or raises (``SubscriptionError`` names each refused code)."""

    def __init__(self, run_dir: str | Path = Path("feedmux-data") / "run",
                 timeout: float = 90.0) -> None:  # fmt: skip
        self.paths = RunPaths.of_run(Path(run_dir))
        self.timeout = timeout
        self._sessions: Sessions | None = None

    def _request(self, request: wire.ControlRequest) -> wire.ControlReply:
        instance.require(self.paths.root)  # nothing runs: say so now, not after the timeout
        ctx = zt.context()
        try:
            sock = zt.req(ctx, self.paths.control)
            sock.send(wire.encode(request))
            if not self._answered(sock):
                raise ConsumerError(f"no answer from the receiver within {self.timeout} s: is "
                                    f"feedmux running with run dir {self.paths.root}?")  # fmt: skip
            reply = wire.control_reply_decoder.decode(sock.recv())
        finally:
            ctx.destroy(linger=0)
        if reply.error:
            raise ConsumerError(reply.error)
        return reply

    def _answered(self, sock: zt.Sock) -> bool:
        """Wait for the reply; an instance that stops meanwhile ends the wait at once."""
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            if sock.poll(int(min(left, ALIVE_CHECK_S) * 1000)):
                return True
            instance.require(self.paths.root)
        return False

    def _change(self, request: wire.Subscribe | wire.Unsubscribe) -> list[str]:
        reply = self._request(request)
        if reply.rejected:
            raise SubscriptionError(reply.rejected)
        return request.codes

    def subscribe(self, codes: list[str], wait: bool = True) -> list[str]:
        """Add codes (any spelling); returns them in canonical form once subscribed.

        ``wait=False`` returns once the receiver has queued the change: AllTick wants any two
        subscription requests of a token 3 s apart, so a burst of changes is faster sent
        without waiting, then confirmed with one waiting call. A waiting call whose change
        the vendor refused raises ``ConsumerError`` with the vendor's ``ret`` and ``msg``: at
        once if the request is not sent again, after 60 s if every retry is refused.
        """
        return self._change(wire.Subscribe(parse_codes(codes), wait))

    def unsubscribe(self, codes: list[str], wait: bool = True) -> list[str]:
        """Remove codes; returns them in canonical form once the server stopped them."""
        return self._change(wire.Unsubscribe(parse_codes(codes), wait))

    def subscriptions(self) -> list[str]:
        """The desired codes of the running instance."""
        return self._request(wire.ListSubscriptions()).codes

    def silent(self, threshold_s: float = 60.0,
               sessions: Sessions | None = None) -> dict[str, float | None]:  # fmt: skip
        """Codes subscribed but without a tick while their market trades: code -> seconds of
        continuous trading since its last tick (None: never ticked), more than ``threshold_s``
        (see ``silent_codes``). "Subscribed but silent" is how a vendor-side problem with a
        code usually shows. ``sessions``: the markets' hours (default: loaded once, with the
        run's calendar file)."""
        return self.silence(threshold_s, sessions).silent

    def silence(self, threshold_s: float = 60.0, sessions: Sessions | None = None) -> Silence:
        """``silent`` with what it was judged on: the subscribed markets and the data clock."""
        listed = self._request(wire.ListSubscriptions())
        markets = sorted({market_of(code) for code in listed.codes})
        confirmed = listed.confirmed_age_s
        if not confirmed:
            return Silence({}, markets, self.data_clock())
        # Every code's latest tick, as the shards hold them: the supervisor asks every few
        # seconds, so neither the 5,000 codes are sent nor Quotes built.
        replies = SnapshotClient(self.paths.root, timeout=self.timeout).replies(None)
        last_tick = {t.code: t.time_ns for reply in replies for t in reply.ticks}
        # The stats are up to a second old: a replay faster than real time is ahead of them.
        now = max(self.data_clock(), max(last_tick.values(), default=0))
        # The receiver counts since a confirmation on the wall clock: taken as data time (a
        # compressed replay's codes are then silent later, never sooner).
        since = {code: now - int(age * 1e9) for code, age in confirmed.items()}
        found = silent_codes(since, last_tick, threshold_s, now, sessions or self.sessions())
        return Silence(found, markets, now)

    def data_clock(self) -> int:
        """The feed's own "now" (ns UTC): see ``feedmux.stats.shard.data_clock``."""
        return data_clock(read_stats(self.paths.stats_dir).shards.values(), time.time_ns())

    def sessions(self) -> Sessions:
        """The markets' hours with the run's calendar file, loaded once."""
        if self._sessions is None:
            calendar_file = read_manifest(self.paths.root).calendar_file
            self._sessions, problem = sessions_of_run(calendar_file, self.paths.root)
            if problem:
                _log.warning("%s", problem)
        return self._sessions

    def rejected(self) -> dict[str, str]:
        """Codes the vendor or a plan limit refused, with the reasons."""
        return self._request(wire.ListSubscriptions()).rejected
