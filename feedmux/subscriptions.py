"""Which codes each connection carries, and when each request may go out.

Pure state driven by an injected ``now_ns``. It enforces AllTick's rules (spec rules 1-6):
- a subscribe REPLACES the connection's list, so every request carries the full list, and any
  number of add/remove calls between two requests coalesce into one;
- at most one request per ``request_interval`` per connection, heartbeats included;
- subscription requests on different connections at least ``cross_interval`` apart;
- a heartbeat every ``heartbeat_interval``; reconnects ``reconnect_spacing`` after a close;
- at most ``max_codes_per_conn`` codes on a connection, at most ``max_conns`` connections.

Assignment is stable: a code stays on its connection until removed; a new code goes to the
connection with the fewest codes that has room. When the vendor refuses a list for a bad code
(600/604) the manager holds back half of the newly added codes and tries again, until each bad
code is found alone; those are reported in ``rejected`` and never retried on their own.

Failures are classified (``providers.alltick.Failure``): transient ones (refused connection, 5xx,
timeouts, resets) are retried with the backoff for ever; the same permanent one (a refused
token, a URL with no WebSocket) ``give_up_after`` times in a row on a connection, or a universe
of which the vendor refused every code, sets ``fatal``: the caller stops the run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from feedmux.providers.alltick import (
    CANCEL_DEPTH,
    CMD_CANCEL,
    CMD_SUBSCRIBE_DEPTH,
    CMD_SUBSCRIBE_TRADES,
    DEFAULT_MAX_FRAME_BYTES,
    RET_RATE_LIMIT,
    AllTickClient,
    Failure,
    Reply,
    first_line,
    reply_failure,
)

_NEVER = -(2**62)
REPLY_TIMEOUT_NS = 10_000_000_000  # an unanswered request is retried after this
RETRY_LATER = frozenset((RET_RATE_LIMIT, 605, 606))  # 606: the server also closes the link
BAD_CODE = frozenset((600, 604))
REFUSED_SHOWN = 5  # refused codes named in a message; the rest are counted
SUBSCRIPTION_CMDS = frozenset(
    (CMD_SUBSCRIBE_TRADES, CMD_SUBSCRIBE_DEPTH, CMD_CANCEL)
)  # code invalid / code unauthorized: find the culprit


@dataclass(frozen=True)
class Pacing:
    request_interval_ns: int = 1_100_000_000  # spec: 1 s; 10 % margin for network jitter
    cross_interval_ns: int = 3_300_000_000  # spec: 3 s across connections of one token
    heartbeat_interval_ns: int = 10_000_000_000
    reconnect_spacing_ns: int = 3_300_000_000  # spec: 3 s on paid plans (10 s free)
    reconnect_max_ns: int = 60_000_000_000  # backoff cap; reconnecting never stops
    watchdog_ns: int = 30_000_000_000  # no frame at all for this long: tear down, reconnect


@dataclass
class ConnectionState:
    index: int
    client: AllTickClient
    desired: list[str] = field(default_factory=list)  # the codes assigned to this connection
    confirmed: list[str] = field(default_factory=list)  # what the server acked last
    held_back: set[str] = field(default_factory=set)  # left out while a bad code is searched
    connected: bool = False
    inflight_since: int | None = None
    last_request_ns: int = _NEVER
    last_heartbeat_ns: int = _NEVER
    retry_at_ns: int = _NEVER
    refused: list[str] | None = None  # a list the server refused; not retried until it changes
    depth_confirmed: list[str] = field(default_factory=list)  # order-book list the server acked
    depth_refused: list[str] | None = None
    last_error: str = ""
    connect_at_ns: int = _NEVER  # when to (re)connect while disconnected
    connected_at_ns: int = _NEVER
    failures: int = 0  # consecutive losses without a confirmed subscription in between
    watchdog_trips: int = 0
    last_subscription_ns: int = _NEVER
    reconnects: int = 0
    failure: Failure | None = None  # a permanent refusal on this link: drop it, count it
    last_failure: Failure | None = None  # the permanent failure of the last attempts ...
    same_failures: int = 0  # ... and how many attempts in a row ended with it

    def request_list(self) -> list[str]:
        if not self.held_back:
            return self.desired
        return [c for c in self.desired if c not in self.held_back]

    def needs_request(self) -> bool:
        if not self.connected or self.inflight_since is not None:
            return False
        wanted = self.request_list()
        return wanted not in (self.confirmed, self.refused)

    def needs_depth_request(self, depth_levels: int) -> bool:
        """Order books follow the codes whose trades the server confirmed."""
        if not depth_levels or not self.connected or self.inflight_since is not None:
            return False
        return self.confirmed not in (self.depth_confirmed, self.depth_refused)


def _release_half(conn: ConnectionState) -> None:
    """Binary search for bad codes: after a verdict, try half of what is still held back."""
    if conn.held_back:
        held = [c for c in conn.desired if c in conn.held_back]
        conn.held_back = set(held[len(held) // 2 :]) if len(held) > 1 else set()


class SubscriptionManager:
    def __init__(
        self,
        codes: list[str],
        max_codes_per_conn: int,
        pacing: Pacing,
        *,
        name: str = "feedmux",
        max_conns: int = 10,
        depth_levels: int = 0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        jitter: Callable[[], float] = random.random,
        give_up_after: int = 3,
    ) -> None:
        if max_codes_per_conn < 1 or max_conns < 1 or give_up_after < 1:
            raise ValueError("max_codes_per_conn, max_conns and give_up_after must be >= 1")
        self.give_up_after = give_up_after
        # (failure, times in a row): a permanent failure; the caller stops the run
        self.fatal: tuple[Failure, int] | None = None
        self.pacing = pacing
        self.name = name
        self.max_codes_per_conn = max_codes_per_conn
        self.max_conns = max_conns
        self.depth_levels = depth_levels  # 0: no order books
        self._jitter = jitter
        self.max_frame_bytes = max_frame_bytes
        self.connections: list[ConnectionState] = []
        self.owner: dict[str, int] = {}  # code -> connection index
        self.rejected: dict[str, str] = {}  # code -> why the vendor or a limit refused it
        self.confirmed_at: dict[str, int] = {}  # code -> when the server first acked it
        self._last_close_ns = _NEVER
        self.version = 0  # bumped by every change of state; lets callers skip re-checking
        for _ in range(min(max_conns, max(1, math.ceil(len(codes) / max_codes_per_conn)))):
            self._new_connection()
        self.subscribe(codes)

    def _new_connection(self) -> ConnectionState:
        index = len(self.connections)
        conn = ConnectionState(index, AllTickClient(f"{self.name}-c{index}", self.max_frame_bytes))
        self.connections.append(conn)
        return conn

    # -- the desired set ------------------------------------------------------------------------
    def subscribe(self, codes: list[str]) -> None:
        """Add codes; each goes to the connection with the fewest codes that has room."""
        self.version += 1
        for code in codes:
            if code in self.owner:
                continue
            self.rejected.pop(code, None)  # asked again: try again
            room = [c for c in self.connections if len(c.desired) < self.max_codes_per_conn]
            if room:
                conn = min(room, key=lambda c: len(c.desired))
            elif len(self.connections) < self.max_conns:
                conn = self._new_connection()
            else:
                self.rejected[code] = (f"no room: {self.max_conns} connections of "
                                       f"{self.max_codes_per_conn} codes are full")  # fmt: skip
                continue
            conn.desired.append(code)
            self.owner[code] = conn.index

    def unsubscribe(self, codes: list[str]) -> None:
        self.version += 1
        for code in codes:
            self.rejected.pop(code, None)
            self.confirmed_at.pop(code, None)
            index = self.owner.pop(code, None)
            if index is not None:
                conn = self.connections[index]
                conn.desired.remove(code)
                conn.held_back.discard(code)

    def desired(self) -> list[str]:
        return [c for conn in self.connections for c in conn.desired]

    def settled(self, codes: list[str], subscribed: bool) -> bool:
        """True when the server agrees: every code confirmed or rejected (``subscribed``), or
        no longer on any connection's confirmed list (not ``subscribed``)."""
        books = {c for conn in self.connections for c in conn.depth_confirmed}
        if subscribed:
            return all(
                c in self.rejected
                or (c in self.confirmed_at and (not self.depth_levels or c in books))
                for c in codes
            )
        live = {c for conn in self.connections for c in conn.confirmed}
        return not live.union(books).intersection(codes)

    # -- connection lifecycle -------------------------------------------------------------------
    def on_connected(self, index: int, now_ns: int) -> None:
        conn = self.connections[index]
        conn.connected = True
        conn.connected_at_ns = now_ns
        conn.confirmed = []  # a new connection starts with nothing subscribed
        conn.refused = None
        conn.inflight_since = None
        conn.last_heartbeat_ns = now_ns  # the first heartbeat is due one interval after connect

    def on_disconnected(
        self, index: int, now_ns: int, error: str = "", failure: Failure | None = None
    ) -> None:
        """The link is gone (or never came up, for ``failure``): reconnect after the vendor's
        spacing, unless the same permanent failure happened ``give_up_after`` times."""
        self.version += 1
        conn = self.connections[index]
        self._count_failure(conn, failure or conn.failure)
        conn.failure = None
        if conn.connected:
            self._last_close_ns = now_ns
            conn.reconnects += 1
        conn.failures += 1
        conn.connected = False
        conn.inflight_since = None
        for code in conn.confirmed:
            self.confirmed_at.pop(code, None)  # subscribed again only when re-acked
        conn.confirmed = []
        conn.depth_confirmed = []
        conn.depth_refused = None
        conn.client.reset()
        conn.last_error = error or conn.last_error
        # The server counts spacing from the last close of ANY connection of the token; on top
        # of it, capped exponential backoff with jitter so a down vendor is not hammered.
        spacing = self.pacing.reconnect_spacing_ns
        backoff = min(self.pacing.reconnect_max_ns, spacing * 2 ** min(conn.failures - 1, 20))
        delay = max(spacing, int(backoff * (0.5 + self._jitter() / 2)))
        conn.connect_at_ns = max(now_ns, self._last_close_ns) + delay

    def _count_failure(self, conn: ConnectionState, failure: Failure | None) -> None:
        if failure is None or not failure.permanent:
            conn.last_failure, conn.same_failures = None, 0  # transient: retried for ever
            return
        last = conn.last_failure
        same = last is not None and (last.kind, last.detail) == (failure.kind, failure.detail)
        conn.same_failures = conn.same_failures + 1 if same else 1
        conn.last_failure = failure
        if conn.same_failures >= self.give_up_after and self.fatal is None:
            self.fatal = (failure, conn.same_failures)

    def stale(self, now_ns: int, last_frame_ns: list[int]) -> list[int]:
        """Connected links with no frame at all (data, ack or heartbeat reply) for the
        watchdog time: "connected but silent". The caller tears them down; each is counted."""
        limit = now_ns - self.pacing.watchdog_ns
        out = []
        for conn in self.connections:
            if conn.connected and max(conn.connected_at_ns, last_frame_ns[conn.index]) < limit:
                conn.watchdog_trips += 1
                out.append(conn.index)
        return out

    def connect_due(self, now_ns: int) -> list[int]:
        """Connections to open now."""
        return [c.index for c in self.connections if not c.connected and c.connect_at_ns <= now_ns]

    # -- outgoing -------------------------------------------------------------------------------
    def _subscription_time(self, conn: ConnectionState) -> int:
        # The 3 s rule is across connections: this connection's own last request only
        # holds it back by the per-connection interval.
        others = max(
            (c.last_subscription_ns for c in self.connections if c is not conn), default=_NEVER
        )
        return max(
            conn.last_request_ns + self.pacing.request_interval_ns,
            others + self.pacing.cross_interval_ns,
            conn.retry_at_ns,
        )

    def _heartbeat_time(self, conn: ConnectionState) -> int:
        return max(
            conn.last_heartbeat_ns + self.pacing.heartbeat_interval_ns,
            conn.last_request_ns + self.pacing.request_interval_ns,
        )

    def due(self, now_ns: int) -> list[tuple[int, bytes]]:
        """Requests to send now, as ``(connection index, frame)``."""
        out: list[tuple[int, bytes]] = []
        for conn in self.connections:
            if not conn.connected:
                continue
            if conn.inflight_since is not None and now_ns - conn.inflight_since > REPLY_TIMEOUT_NS:
                conn.inflight_since = None  # lost reply: the full list is simply sent again
            if conn.needs_request() and self._subscription_time(conn) <= now_ns:
                wanted = conn.request_list()
                # An empty list cannot be sent (the vendor answers 601): cancel instead.
                frame = conn.client.subscribe_trades(wanted) if wanted else conn.client.cancel()
                conn.inflight_since = now_ns
                conn.last_request_ns = conn.last_subscription_ns = now_ns
                out.append((conn.index, frame))
            elif (
                conn.needs_depth_request(self.depth_levels)
                and self._subscription_time(conn) <= now_ns
            ):
                client = conn.client
                frame = (client.subscribe_depth(conn.confirmed, self.depth_levels)
                         if conn.confirmed else client.cancel(CANCEL_DEPTH))  # fmt: skip
                conn.inflight_since = now_ns
                conn.last_request_ns = conn.last_subscription_ns = now_ns
                out.append((conn.index, frame))
            elif self._heartbeat_time(conn) <= now_ns:
                conn.last_request_ns = conn.last_heartbeat_ns = now_ns
                out.append((conn.index, conn.client.heartbeat()))
        return out

    def next_deadline(self) -> int | None:
        """The earliest time at which ``due`` may return something."""
        times = []
        for conn in self.connections:
            if not conn.connected:
                times.append(conn.connect_at_ns)
                continue
            if conn.needs_request() or conn.needs_depth_request(self.depth_levels):
                times.append(self._subscription_time(conn))
            elif conn.inflight_since is not None:
                times.append(conn.inflight_since + REPLY_TIMEOUT_NS)
            times.append(self._heartbeat_time(conn))
        return min(times) if times else None

    # -- replies --------------------------------------------------------------------------------
    def on_reply(self, index: int, reply: Reply, now_ns: int) -> None:
        conn = self.connections[index]
        request = reply.request
        books = request is not None and (request.cmd_id == CMD_SUBSCRIBE_DEPTH or (
            request.cmd_id == CMD_CANCEL and request.data.get("cancel_type") == CANCEL_DEPTH
        ))  # fmt: skip
        if not reply.ok and not books:  # a depth refusal stops the books only, not the run
            conn.failure = reply_failure(reply.ret, reply.msg) or conn.failure
        if request is None or request.cmd_id not in SUBSCRIPTION_CMDS:
            return  # heartbeat replies and unknown seq_ids change nothing here
        self.version += 1
        conn.inflight_since = None
        if request.cmd_id == CMD_CANCEL:
            sent: list[str] = []
        else:
            symbol_list = request.data["symbol_list"]
            assert isinstance(symbol_list, list)
            sent = [entry["code"] for entry in symbol_list]
        if books:
            self._on_depth_reply(conn, reply, sent, now_ns)
            return
        if reply.ok:
            for code in set(sent).difference(conn.confirmed):
                self.confirmed_at.setdefault(code, now_ns)
            for code in set(conn.confirmed).difference(sent):
                self.confirmed_at.pop(code, None)
            conn.confirmed = sent
            conn.last_error = ""
            conn.failures = 0  # the link works: the next loss starts the backoff afresh
            conn.last_failure, conn.same_failures = None, 0
            _release_half(conn)
            return
        conn.last_error = f"ret={reply.ret} {first_line(reply.msg)}"
        if reply.ret in RETRY_LATER:
            conn.retry_at_ns = now_ns + self.pacing.request_interval_ns
            return
        added = [c for c in sent if c not in set(conn.confirmed)]
        if reply.ret in BAD_CODE and len(added) == 1:
            self.unsubscribe(added)
            self.rejected[added[0]] = conn.last_error
            _release_half(conn)
            if not self.owner and self.fatal is None:
                self.fatal = (Failure("codes", self._all_refused()), 1)
        elif reply.ret in BAD_CODE and added:
            conn.held_back.update(added[len(added) // 2 :])
        else:
            conn.refused = sent

    def _all_refused(self) -> str:
        shown = [f"{code} ({why})" for code, why in list(self.rejected.items())[:REFUSED_SHOWN]]
        more = len(self.rejected) - len(shown)
        return "the vendor refused every code: " + ", ".join(shown) + (
            f" and {more} more" if more > 0 else "")  # fmt: skip

    def _on_depth_reply(
        self, conn: ConnectionState, reply: Reply, sent: list[str], now_ns: int
    ) -> None:
        if reply.ok:
            conn.depth_confirmed = sent
        elif reply.ret in RETRY_LATER:
            conn.retry_at_ns = now_ns + self.pacing.request_interval_ns
        else:  # codes the trade list accepted: a refusal here is the plan's, not the code's
            conn.depth_refused = sent
        conn.last_error = "" if reply.ok else f"depth: ret={reply.ret} {first_line(reply.msg)}"

    # -- status ---------------------------------------------------------------------------------
    def all_confirmed(self) -> bool:
        return all(c.connected and c.confirmed == c.desired for c in self.connections)

    def confirmed_codes(self) -> int:
        return sum(len(c.confirmed) for c in self.connections)
