"""Which codes each connection carries, and when each request may go out: the vendor-independent
part of subscribing, for any ``providers.base.Provider``.

Pure state driven by an injected ``now_ns``. The vendor's session builds the requests and
classifies the answers; this keeps the rules every vendor shares:
- each connection has one desired list per kind; any number of add/remove calls between two
  requests coalesce into one change (the session sends the full list, or the difference);
- at most one request per ``request_interval`` per connection, heartbeats included;
- any two subscription requests of a token (each token its own), on one connection or not,
  at least ``cross_interval`` apart (heartbeats excepted); after a "too many requests" answer
  that spacing doubles (up to ``spacing_max``) and each confirmed request halves the excess
  again;
- a heartbeat every ``heartbeat_interval`` (0: none); reconnects ``reconnect_spacing`` after a
  close, with a capped, jittered backoff;
- at most ``max_codes_per_conn`` codes on a connection, at most ``max_conns`` connections per
  token (connection i uses token ``i // max_conns``: several tokens carry a larger universe);
- a change the session sends as several messages (chunks) goes out one message at a time,
  as far apart as any two subscription requests of the token; the next change waits until
  the last is out (refused or not: the session counts on them).

Assignment is stable: a code stays on its connection until removed; a new code goes to the
connection with the fewest codes that has room. When the vendor refuses a list for a bad code
(verdict ``bad_code``) the manager holds back half of the newly added codes and tries again,
until each bad code is found alone; those are reported in ``rejected`` and never retried.

A reply refused for its envelope is retried after the widened spacing, unless it carries a
permanent failure; any refusal is kept on the connection (``refusal``) so a caller waiting on
the change learns the vendor's ``ret`` and ``msg``.

Failures are classified (``providers.base.Failure``): transient ones (refused connection, 5xx,
timeouts, resets) are retried with the backoff for ever; the same permanent one (a refused
token, a URL with no WebSocket) ``give_up_after`` times in a row on a connection, or a universe
of which the vendor refused every code, sets ``fatal``: the caller stops the run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from feedmux.ingest.connection import NEVER, Connection, Refusal
from feedmux.providers.base import Failure, Pacing, Provider, Reply, SessionOptions

_NEVER = NEVER
REPLY_TIMEOUT_NS = 10_000_000_000  # an unanswered request is retried after this
REFUSED_SHOWN = 5  # refused codes named in a message; the rest are counted
NARROWED_NS = 100_000_000  # a widened spacing this close to the cross interval is back to it

__all__ = ["Connection", "Pacing", "Refusal", "SubscriptionManager"]


def _release_half(conn: Connection) -> None:
    """Binary search for bad codes: after a verdict, try half of what is still held back."""
    if conn.held_back:
        held = [c for c in conn.desired if c in conn.held_back]
        conn.held_back = set(held[len(held) // 2 :]) if len(held) > 1 else set()


def _keep_searching(conn: Connection) -> None:
    """The codes being tried were removed: release more, or nothing is ever sent again."""
    confirmed = set(conn.confirmed)
    while conn.held_back and confirmed.issuperset(conn.request_list()):
        _release_half(conn)


class SubscriptionManager:
    def __init__(
        self,
        provider: Provider,
        codes: list[str],
        max_codes_per_conn: int,
        pacing: Pacing,
        *,
        name: str = "feedmux",
        max_conns: int = 10,
        tokens: int = 1,
        depth_levels: int = 0,
        options: SessionOptions | None = None,  # each connection's protocol (the vendor's)
        jitter: Callable[[], float] = random.random,
        give_up_after: int = 3,
    ) -> None:
        if min(max_codes_per_conn, max_conns, tokens, give_up_after) < 1:
            raise ValueError("max_codes_per_conn, max_conns, tokens and give_up_after must be "
                             ">= 1")  # fmt: skip
        self.provider = provider
        self.give_up_after = give_up_after
        # (failure, times in a row): a permanent failure; the caller stops the run
        self.fatal: tuple[Failure, int] | None = None
        self.pacing = pacing
        self.name = name
        self.max_codes_per_conn = max_codes_per_conn
        self.max_conns = max_conns  # per token
        self.tokens = tokens
        self.depth_levels = depth_levels  # 0: no order books
        self._jitter = jitter
        self.options = options or SessionOptions(
            max_frame_bytes=provider.max_frame_bytes, codes_per_request=provider.codes_per_request,
            subscribe_model=provider.subscribe_model)  # fmt: skip
        self.connections: list[Connection] = []
        self.owner: dict[str, int] = {}  # code -> connection index
        self.rejected: dict[str, str] = {}  # code -> why the vendor or a limit refused it
        self.confirmed_at: dict[str, int] = {}  # code -> when the server first acked it
        self._last_close_ns = _NEVER
        self._last_subscription: dict[int, int] = {}  # token -> its last subscription request
        self._widened_ns = 0  # added to the cross interval after the vendor's "too many"
        self.version = 0  # bumped by every change of state; lets callers skip re-checking
        wanted = max(1, math.ceil(len(codes) / max_codes_per_conn))
        for _ in range(min(self.conn_cap, wanted)):
            self._new_connection()
        self.subscribe(codes)

    def _new_connection(self) -> Connection:
        index = len(self.connections)
        session = self.provider.session(f"{self.name}-c{index}", self.options)
        conn = Connection(index, session)
        self.connections.append(conn)
        return conn

    @property
    def conn_cap(self) -> int:
        """Connections the tokens may hold together."""
        return self.max_conns * self.tokens

    def token_index(self, index: int) -> int:
        """The token connection ``index`` uses."""
        return index // self.max_conns

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
            elif len(self.connections) < self.conn_cap:
                conn = self._new_connection()
            else:
                tokens = f" ({self.tokens} tokens)" if self.tokens > 1 else ""
                self.rejected[code] = (f"no room: {self.conn_cap} connections{tokens} of "
                                       f"{self.max_codes_per_conn} codes are full")  # fmt: skip
                continue
            conn.desired.append(code)
            self.owner[code] = conn.index

    def unsubscribe(self, codes: list[str]) -> None:
        self.version += 1
        for code in codes:
            self.rejected.pop(code, None)
            index = self.owner.pop(code, None)
            if index is not None:
                conn = self.connections[index]
                conn.desired.remove(code)
                conn.held_back.discard(code)
                _keep_searching(conn)

    def desired(self) -> list[str]:
        return [c for conn in self.connections for c in conn.desired]

    def settled(self, codes: list[str], subscribed: bool) -> bool:
        """True when the server agrees: every code confirmed (with its book, if any) by the
        connection that carries it, or rejected (``subscribed``), or no longer on any
        connection's confirmed lists (not ``subscribed``)."""
        if subscribed:
            trades = [set(conn.confirmed) for conn in self.connections]
            books = [set(conn.depth_confirmed) for conn in self.connections]
            return all(
                c in self.rejected
                or (
                    (i := self.owner.get(c)) is not None
                    and c in trades[i]
                    and (not self.depth_levels or c in books[i])
                )
                for c in codes
            )
        live = {c for conn in self.connections for c in (*conn.confirmed, *conn.depth_confirmed)}
        return not live.intersection(codes)

    def _unconfirm(self, codes: set[str]) -> None:
        """``codes`` left a connection's confirmed list: no longer live unless on another's."""
        live = {c for conn in self.connections for c in conn.confirmed}
        for code in codes - live:
            self.confirmed_at.pop(code, None)

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
        conn.waiting_since_ns = None  # a new link waits anew
        conn.refusal = None  # a refusal on a lost link is no news of the next one
        conn.queued = []  # the rest of a change in chunks: the next link sends it whole
        dropped, conn.confirmed = set(conn.confirmed), []
        self._unconfirm(dropped)  # subscribed again only when re-acked
        conn.depth_confirmed = []
        conn.depth_refused = None
        conn.session.reset()
        conn.last_error = error or conn.last_error
        # The server counts spacing from the last close of ANY connection of the token; on top
        # of it, capped exponential backoff with jitter so a down vendor is not hammered.
        spacing = self.pacing.reconnect_spacing_ns
        backoff = min(self.pacing.reconnect_max_ns, spacing * 2 ** min(conn.failures - 1, 20))
        delay = max(spacing, int(backoff * (0.5 + self._jitter() / 2)))
        conn.connect_at_ns = max(now_ns, self._last_close_ns) + delay

    def _count_failure(self, conn: Connection, failure: Failure | None) -> None:
        if failure is None or not failure.permanent:
            conn.last_failure, conn.same_failures = None, 0  # transient: retried for ever
            return
        last = conn.last_failure
        same = last is not None and (last.kind, last.detail) == (failure.kind, failure.detail)
        conn.same_failures = conn.same_failures + 1 if same else 1
        conn.last_failure = failure
        if conn.same_failures >= self.give_up_after and self.fatal is None:
            self.fatal = (failure, conn.same_failures)

    def stale(self, now_ns: int) -> list[int]:
        """Connected links with no message at all (data, ack or heartbeat reply) for the
        watchdog time: "connected but silent". The caller tears them down; each is counted."""
        limit = now_ns - self.pacing.watchdog_ns
        out = []
        for conn in self.connections:
            if conn.connected and max(conn.connected_at_ns, conn.last_message_ns) < limit:
                conn.watchdog_trips += 1
                out.append(conn.index)
        return out

    def _connect_time(self, conn: Connection) -> int:
        # A link lost after this one's was scheduled moves the token's last close: wait on.
        return max(conn.connect_at_ns, self._last_close_ns + self.pacing.reconnect_spacing_ns)

    def connect_due(self, now_ns: int) -> list[int]:
        """Connections to open now."""
        return [c.index for c in self.connections
                if not c.connected and self._connect_time(c) <= now_ns]  # fmt: skip

    # -- outgoing -------------------------------------------------------------------------------
    def spacing_ns(self) -> int:
        """The spacing between two subscription requests of the token now."""
        return self.pacing.cross_interval_ns + self._widened_ns

    def _widen(self) -> None:
        spacing = min(self.pacing.spacing_max_ns, 2 * self.spacing_ns())
        self._widened_ns = max(0, spacing - self.pacing.cross_interval_ns)

    def _narrow(self) -> None:
        self._widened_ns //= 2
        if self._widened_ns < NARROWED_NS:
            self._widened_ns = 0

    def _token_spacing_time(self, conn: Connection) -> int:
        """When the token of ``conn`` may send its next subscription request."""
        last = self._last_subscription.get(self.token_index(conn.index), _NEVER)
        return last + self.spacing_ns()

    def _sent_subscription(self, conn: Connection, now_ns: int) -> None:
        conn.last_request_ns = conn.last_subscription_ns = now_ns
        self._last_subscription[self.token_index(conn.index)] = now_ns

    def _subscription_time(self, conn: Connection) -> int:
        # Spec rule 2: token-wide, this connection's own last request included.
        return max(
            conn.last_request_ns + self.pacing.request_interval_ns,
            self._token_spacing_time(conn),
            conn.retry_at_ns,
        )

    def _heartbeat_time(self, conn: Connection) -> int:
        if not self.pacing.heartbeat_interval_ns:
            return -_NEVER  # the vendor needs none
        return max(
            conn.last_heartbeat_ns + self.pacing.heartbeat_interval_ns,
            conn.last_request_ns + self.pacing.request_interval_ns,
        )

    def _wants_subscription(self, conn: Connection) -> bool:
        return conn.needs_request() or conn.needs_depth_request(self.depth_levels)

    def _subscription_request(self, conn: Connection, now_ns: int) -> list[bytes]:
        session = conn.session
        if conn.needs_request():  # the trade list first; order books follow what it confirmed
            requests = session.subscribe("trades", conn.request_list(), 0)
        else:
            requests = session.subscribe("books", conn.confirmed, self.depth_levels)
        conn.inflight_since = now_ns
        conn.waiting_since_ns = None
        self._sent_subscription(conn, now_ns)
        conn.queued = requests[1:]  # the rest of the change, one per request interval
        return requests[:1]

    def _queued_time(self, conn: Connection) -> int:
        # the next message of a change: a request, and a subscription request of the token
        return max(conn.last_request_ns + self.pacing.request_interval_ns,
                   self._token_spacing_time(conn))  # fmt: skip

    def due(self, now_ns: int, wall_ns: int = 0) -> list[tuple[int, bytes]]:
        """Requests to send now, as ``(connection index, message)``: at most one subscription
        request per token (its spacing holds any other back), and the heartbeats due
        (``wall_ns``: the time of day, for a vendor's heartbeat that carries it)."""
        out: list[tuple[int, bytes]] = []
        for conn in self.connections:
            if conn.inflight_since is not None and now_ns - conn.inflight_since > REPLY_TIMEOUT_NS:
                conn.inflight_since = None  # lost reply: the full list is simply sent again
        for conn in self.connections:
            if conn.queued and conn.connected and self._queued_time(conn) <= now_ns:
                out.append((conn.index, conn.queued.pop(0)))
                self._sent_subscription(conn, now_ns)
                if conn.inflight_since is not None:  # the reply is due after the last message
                    conn.inflight_since = now_ns  # (the rest of a refused change: only sent)
        ready: dict[int, list[Connection]] = {}  # by token
        for conn in self.connections:
            if self._wants_subscription(conn):
                if conn.waiting_since_ns is None:
                    conn.waiting_since_ns = now_ns  # first seen wanting: the change is new
                if self._subscription_time(conn) <= now_ns:
                    ready.setdefault(self.token_index(conn.index), []).append(conn)
        for waiting in ready.values():  # each token's longest wait first: none starves
            conn = min(waiting, key=lambda c: (c.waiting_since_ns, c.last_subscription_ns))
            out += [(conn.index, f) for f in self._subscription_request(conn, now_ns)]
        for conn in self.connections:
            if conn.connected and self._heartbeat_time(conn) <= now_ns:
                conn.last_heartbeat_ns = now_ns
                heartbeat = conn.session.heartbeat(wall_ns)
                if heartbeat is not None:
                    conn.last_request_ns = now_ns
                    out.append((conn.index, heartbeat))
        return out

    def next_deadline(self) -> int | None:
        """The earliest time at which ``due`` may return something."""
        times = []
        for conn in self.connections:
            if not conn.connected:
                times.append(self._connect_time(conn))
                continue
            if conn.queued:
                times.append(self._queued_time(conn))
            if self._wants_subscription(conn):
                times.append(self._subscription_time(conn))
            elif conn.inflight_since is not None:
                times.append(conn.inflight_since + REPLY_TIMEOUT_NS)
            times.append(self._heartbeat_time(conn))
        return min(times) if times else None

    # -- replies --------------------------------------------------------------------------------
    def on_reply(self, index: int, reply: Reply, now_ns: int) -> None:
        conn = self.connections[index]
        request = reply.request
        retry_later = reply.verdict == "retry_later"
        if retry_later and (request is None or request.kind != "heartbeat"):
            self._widen()  # the vendor says we asked too often: space the token's requests more
        books = request is not None and request.kind == "books"
        failure = reply.failure
        if failure is not None and not books:  # a depth refusal stops the books only
            conn.failure = failure
        if request is None or request.kind not in ("trades", "books"):
            return  # heartbeat replies and unknown requests change nothing here
        self.version += 1
        conn.inflight_since = None
        sent = list(request.codes)
        if reply.ok:
            self._narrow()
            conn.refusal = None
        elif retry_later:  # our pacing: the same list again, after the spacing
            conn.retry_at_ns = conn.last_subscription_ns + self.spacing_ns()
        elif reply.envelope and failure is None and reply.verdict != "bad_code":
            # The envelope refused (a one-off?): the same list again after a growing backoff,
            # counted from when the refused request went out (before other connections').
            self._widen()
            conn.retry_at_ns = conn.last_subscription_ns + self.spacing_ns()
            conn.waiting_since_ns = conn.last_subscription_ns  # its place in line
            self._refuse(conn, reply, books, retried=True)
            return
        if books:
            self._on_depth_reply(conn, reply, sent)
            return
        if reply.ok:
            for code in set(sent).difference(conn.confirmed):
                self.confirmed_at.setdefault(code, now_ns)
            gone = set(conn.confirmed).difference(sent)
            conn.confirmed = sent
            self._unconfirm(gone)
            conn.last_error = ""
            conn.failures = 0  # the link works: the next loss starts the backoff afresh
            conn.last_failure, conn.same_failures = None, 0
            _release_half(conn)
            return
        conn.last_error = reply.error()
        if retry_later:
            return
        added = [c for c in sent if c not in set(conn.confirmed)]
        if reply.verdict == "bad_code" and len(added) == 1:
            self.unsubscribe(added)
            self.rejected[added[0]] = conn.last_error
            _release_half(conn)
            if not self.owner and self.fatal is None:
                self.fatal = (Failure("codes", self._all_refused()), 1)
        elif reply.verdict == "bad_code" and added:
            conn.held_back.update(added[len(added) // 2 :])
        else:
            conn.refused = sent
            self._refuse(conn, reply, books, retried=False)

    def _refuse(self, conn: Connection, reply: Reply, books: bool, retried: bool) -> None:
        error = reply.error()
        conn.last_error = f"depth: {error}" if books else error
        conn.refusal = Refusal(conn.last_subscription_ns, conn.last_error, retried)

    def refusal(self, codes: list[str], subscribed: bool, since_ns: int, *,
                retried: bool) -> str:  # fmt: skip
        """Why the vendor refused a request that carried a change to ``codes`` made at
        ``since_ns`` (added if ``subscribed``, else removed), among the refusals being
        ``retried`` (or not); "" if none was refused."""
        wanted = set(codes)
        for conn in self.connections:
            why = conn.refusal
            if why is None or why.sent_ns < since_ns or why.retried != retried:
                continue
            held = conn.desired if subscribed else conn.confirmed + conn.depth_confirmed
            if wanted.intersection(held):
                then = "sent again after a backoff" if why.retried else "not sent again"
                return (f"the vendor refused connection {conn.index}'s request: {why.error} "
                        f"({then})")  # fmt: skip
        return ""

    def _all_refused(self) -> str:
        shown = [f"{code} ({why})" for code, why in list(self.rejected.items())[:REFUSED_SHOWN]]
        more = len(self.rejected) - len(shown)
        return "the vendor refused every code: " + ", ".join(shown) + (
            f" and {more} more" if more > 0 else "")  # fmt: skip

    def _on_depth_reply(self, conn: Connection, reply: Reply, sent: list[str]) -> None:
        if reply.ok:
            conn.depth_confirmed = sent
        elif reply.verdict != "retry_later":  # codes the trade list accepted: the plan's refusal
            conn.depth_refused = sent
            self._refuse(conn, reply, True, retried=False)
            return
        conn.last_error = "" if reply.ok else f"depth: {reply.error()}"

    # -- status ---------------------------------------------------------------------------------
    def all_confirmed(self) -> bool:
        return all(c.connected and c.confirmed == c.desired for c in self.connections)

    def confirmed_codes(self) -> int:
        return sum(len(c.confirmed) for c in self.connections)
