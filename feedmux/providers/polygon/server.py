"""Polygon's stocks cluster, the server side, sans-I/O: what the replay server answers, and when
it hangs up. Every broken rule is recorded as a ``Violation`` so tests can prove a client never
breaks one.

The rules: authenticate first (by message, within the auth timeout); one connection per
account at a time; subscription requests at least the request interval apart on a
connection, each naming at most ``max_topics`` topics. A ticker the server does not know is
acknowledged like any other (the real server accepts any ticker silently): no data comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from feedmux.providers.base import Outcome, ServerRules, Violation, subscriber_maps
from feedmux.providers.polygon.wire import (
    QUOTES,
    TRADES,
    WILDCARD,
    canonical,
    parse_request,
    status_frame,
)

PATH = "/stocks"
MAX_TOPICS = 1000  # UNCONFIRMED: the client's chunk; more in one message is recorded
STATUS_EVENTS = 100  # statuses per answer frame, as the server batches events
SETTLE_MIN_NS = 3_000_000_000
CLOSE_POLICY = 1008
CONNECTED = ("connected", "Connected Successfully")
AUTH_SUCCESS = ("auth_success", "authenticated")
AUTH_FAILED = ("auth_failed", "authentication failed")
AUTH_TIMEOUT = ("auth_timeout", "No authentication request received.")
MAX_CONNECTIONS = ("max_connections", "Maximum number of connections exceeded.")
NOT_AUTHORIZED = ("error", "not authorized")  # UNCONFIRMED: the answer to a request before auth


def plan_rules(token: str, **limits: int) -> ServerRules:
    """A plan's limits: one connection per account, no documented cap on topics; the pacing
    is the client's conservative default (UNCONFIRMED: none documented)."""
    plan = ServerRules(token=token, max_codes_per_conn=100_000, max_conns=1,
                       request_interval_ns=100_000_000, cross_interval_ns=100_000_000,
                       heartbeat_timeout_ns=10_000_000_000,  # the auth timeout
                       reconnect_spacing_ns=0)  # fmt: skip
    return msgspec.structs.replace(plan, **limits)


@dataclass
class _Conn:
    opened_ns: int
    token: str = ""  # the account, once authenticated
    timed_out: bool = False
    last_request_ns: int | None = None
    topics: dict[str, dict[str, None]] = field(
        default_factory=lambda: {TRADES: {}, QUOTES: {}}
    )  # prefix -> tickers held ("*": every one)


def _answers(*events: tuple[str, str]) -> list[bytes]:
    """Status events in frames of at most ``STATUS_EVENTS``."""
    return [status_frame(*events[i : i + STATUS_EVENTS])
            for i in range(0, len(events), STATUS_EVENTS)]  # fmt: skip


class PolygonServer:
    """Every connection's state and the rules that judge them (a ``Simulator``)."""

    def __init__(self, rules: ServerRules, universe: set[str], *,
                 max_topics: int = MAX_TOPICS) -> None:  # fmt: skip
        self.rules = rules
        self.universe = universe
        self.max_topics = max_topics
        self.violations: list[Violation] = []
        self._conns: dict[int, _Conn] = {}
        self.subscribers: dict[str, tuple[int, ...]] = {}
        self.book_subscribers: dict[str, tuple[tuple[int, int], ...]] = {}
        self.changed_ns = 0
        self._requested = False

    def _violate(self, now_ns: int, conn: int, rule: str, detail: str) -> None:
        self.violations.append(Violation(now_ns, conn, rule, detail))

    # -- connections ----------------------------------------------------------------------------
    def open(self, conn: int, token: str, now_ns: int) -> Outcome:
        """A new connection: greeted; its account is known only once it authenticates."""
        self._conns[conn] = _Conn(now_ns)
        return Outcome(_answers(CONNECTED))

    def close(self, conn: int, now_ns: int) -> None:
        if self._conns.pop(conn, None) is not None:
            self._rebuild_subscribers(now_ns)

    def expired(self, now_ns: int) -> list[tuple[int, Outcome]]:
        """Connections that did not authenticate within the auth timeout: told, then closed."""
        limit = self.rules.heartbeat_timeout_ns
        late = [c for c, s in self._conns.items()
                if not s.token and not s.timed_out and now_ns - s.opened_ns > limit]  # fmt: skip
        out = []
        for conn in late:
            self._conns[conn].timed_out = True
            self._violate(now_ns, conn, "auth timeout", f"no auth within {limit / 1e9:g} s")
            outcome = Outcome(_answers(AUTH_TIMEOUT), close=True, close_code=CLOSE_POLICY,
                              close_reason=AUTH_TIMEOUT[1])  # fmt: skip
            out.append((conn, outcome))
        return out

    # -- requests -------------------------------------------------------------------------------
    def receive(self, conn: int, message: bytes | str, now_ns: int, *,
                envelope_error: bool = False) -> Outcome:  # fmt: skip
        """Judge and answer one request. ``envelope_error``: answer a subscription request
        with an ``error`` status instead of applying it (the vendor has no envelope error;
        this is the closest refusal); it still counts for the rate."""
        state = self._conns.get(conn)
        if state is None:
            return Outcome(close=True)
        try:
            req = parse_request(message)
        except msgspec.DecodeError as exc:
            self._violate(now_ns, conn, "malformed request", str(exc))
            return Outcome(_answers(("error", "invalid request")))
        if req.action == "auth":
            return self._auth(conn, state, req.params, now_ns)
        if req.action not in ("subscribe", "unsubscribe"):
            self._violate(now_ns, conn, "unknown action", req.action[:40])
            return Outcome(_answers(("error", f"unknown action: {req.action[:40]}")))
        if not state.token:
            self._violate(now_ns, conn, "auth order", f"{req.action} before auth_success")
            return Outcome(_answers(NOT_AUTHORIZED))
        self._requested = True
        last, state.last_request_ns = state.last_request_ns, now_ns
        if last is not None and now_ns - last < self.rules.request_interval_ns:
            gap_ms = (now_ns - last) // 1_000_000
            self._violate(now_ns, conn, "request rate", f"{req.action} {gap_ms} ms after last")
        if envelope_error:
            return Outcome(_answers(("error", "request refused")), envelope_error=True)
        return self._subscription(conn, state, req.action == "subscribe", req.params, now_ns)

    def _auth(self, conn: int, state: _Conn, key: str, now_ns: int) -> Outcome:
        if state.token:
            self._violate(now_ns, conn, "auth order", "authenticated twice")
            return Outcome(_answers(AUTH_SUCCESS))
        if key not in self.rules.tokens:
            self._violate(now_ns, conn, "token", "authentication failed")
            return Outcome(_answers(AUTH_FAILED), close=True, close_code=CLOSE_POLICY,
                           close_reason=AUTH_FAILED[1])  # fmt: skip
        others = sum(1 for s in self._conns.values() if s.token == key)
        if others >= self.rules.max_conns:
            self._violate(now_ns, conn, "connection cap", f"more than {self.rules.max_conns}")
            return Outcome(_answers(MAX_CONNECTIONS), close=True, close_code=CLOSE_POLICY,
                           close_reason=MAX_CONNECTIONS[1])  # fmt: skip
        state.token = key
        return Outcome(_answers(AUTH_SUCCESS))

    def _subscription(self, conn: int, state: _Conn, add: bool, params: str,
                      now_ns: int) -> Outcome:  # fmt: skip
        """Apply each topic and answer each with its status; a topic of another kind
        (aggregates) is acknowledged and carries nothing here."""
        names = [n.strip() for n in params.split(",") if n.strip()]
        if len(names) > self.max_topics:
            detail = f"{len(names)} topics in one message, {self.max_topics} at most"
            self._violate(now_ns, conn, "message size", detail)
        answers: list[tuple[str, str]] = []
        cap = self.rules.max_codes_per_conn
        for name in names:
            prefix, dot, sym = name.partition(".")
            if not dot or not sym or not prefix:
                self._violate(now_ns, conn, "bad topic", name[:40])
                answers.append(("error", f"invalid topic: {name[:40]}"))
                continue
            held = state.topics.get(prefix)
            if held is not None and add:
                if sym in held or sum(map(len, state.topics.values())) < cap:
                    held[sym] = None
                else:  # acknowledged, not applied (the cap is not the vendor's: a plan's)
                    self._violate(now_ns, conn, "code cap", f"{name}: {cap} topics held")
            elif held is not None:
                held.pop(sym, None)
            answers.append(("success", f"{'subscribed' if add else 'unsubscribed'} to: {name}"))
        self._rebuild_subscribers(now_ns)
        return Outcome(_answers(*answers))

    def _rebuild_subscribers(self, now_ns: int) -> None:
        self.changed_ns = now_ns
        self.subscribers, self.book_subscribers = subscriber_maps(
            (conn, self._codes(state.topics[TRADES]),
             ((code, 1) for code in self._codes(state.topics[QUOTES])))  # a quote: one level
            for conn, state in self._conns.items())  # fmt: skip

    def _codes(self, held: dict[str, None]) -> list[str] | set[str]:
        """The universe's codes a list of tickers carries (unknown tickers carry nothing)."""
        if WILDCARD in held:
            return self.universe
        return [code for sym in held if (code := canonical(sym)) in self.universe]

    # -- state ----------------------------------------------------------------------------------
    @property
    def subscription_requested(self) -> bool:
        """A client has sent a subscribe or unsubscribe request."""
        return self._requested

    def settling(self, now_ns: int) -> bool:
        """Subscriptions changed so recently that a client may still be sending chunks."""
        return now_ns - self.changed_ns < max(2 * self.rules.cross_interval_ns, SETTLE_MIN_NS)

    def subscriptions(self) -> dict[int, list[str]]:
        """Each open connection's trade list (canonical; ``*.US``: the whole market)."""
        return {c: [canonical(sym) for sym in s.topics[TRADES]] for c, s in self._conns.items()}

    def book_subscriptions(self) -> dict[int, list[str]]:
        """Each open connection's quote list."""
        return {c: [canonical(sym) for sym in s.topics[QUOTES]] for c, s in self._conns.items()}
