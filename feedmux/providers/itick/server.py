"""iTick's server-side rules, sans-I/O: what the replay server answers and when it hangs up.

Documented: the token in the handshake, checked at once (``auth failed``, then a close); one
connection per token (a newer one disconnects the older); at most 500 subscriptions per
connection; ``ping``/``pong``. Not documented, so the conservative rule is enforced: a code the
server does not know refuses the message (``cannot be resolved action``); the cap counts
distinct codes, trades and books together; a request at most every ``request_interval``; no
ping for ``heartbeat_timeout``: closed; ``unsubscribe`` removes (subscriptions add).

Every broken rule is recorded as a ``Violation`` so tests can prove a client never breaks one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from feedmux.providers.base import Outcome, ServerRules, Violation, subscriber_maps
from feedmux.providers.itick import wire
from feedmux.providers.itick.symbols import parse_params

PATH = "/stock"
SETTLE_MIN_NS = 5_000_000_000
BOOK_LEVELS = 5  # iTick's books: five levels a side
TYPES = frozenset(("tick", "depth"))  # what feedmux may ask for (quote and klines: never)
CLOSE_POLICY = 1008
MS_DIGITS = 13  # a ping's params: the time in ms (13 digits from 2001 to 2286)


def plan_rules(token: str, **limits: int) -> ServerRules:
    """A plan's limits (the paid plan's: one connection per token, 500 codes on it)."""
    plan = ServerRules(token=token, max_codes_per_conn=500, max_conns=1,
                       request_interval_ns=1_000_000_000, cross_interval_ns=1_000_000_000,
                       heartbeat_timeout_ns=60_000_000_000,
                       reconnect_spacing_ns=3_000_000_000)  # fmt: skip
    return msgspec.structs.replace(plan, **limits)


_encode = msgspec.json.Encoder().encode
GREETING = _encode({"code": 1, "msg": "Connected Successfully"})
AUTH_FAILED = _encode({"code": 0, "resAc": "auth", "msg": "auth failed"})
SUBSCRIBED = _encode({"code": 1, "resAc": "subscribe", "msg": "subscribe Successfully"})
UNSUBSCRIBED = _encode({"code": 1, "resAc": "unsubscribe", "msg": "unsubscribe Successfully"})
LIMIT = _encode({"code": 0, "resAc": "subscribe",
                 "msg": "exceeding the maximum subscription limit"})  # fmt: skip


def authenticated(token: str) -> bytes:
    return _encode({"code": 1, "resAc": "auth", "msg": "authenticated",
                    "data": {"params": token}})  # fmt: skip


def unresolved(ac: str) -> bytes:
    """The answer to a request the server cannot read, or whose parameters are wrong."""
    return _encode({"code": 0, "resAc": ac or "subscribe", "msg": "cannot be resolved action"})


def pong(params: str) -> bytes:
    return _encode({"resAc": "pong", "data": {"params": params}})


@dataclass
class _Conn:
    token: str
    last_ping_ns: int
    last_request_ns: int | None = None
    trades: dict[str, None] = field(default_factory=dict)  # in the order subscribed
    books: dict[str, None] = field(default_factory=dict)

    def codes(self) -> int:
        """Subscriptions as the cap counts them: distinct codes."""
        return len(self.trades.keys() | self.books.keys())


class ITickServer:
    """Every connection's state, and the rules that judge them (a ``Simulator``)."""

    def __init__(self, rules: ServerRules, universe: set[str]) -> None:
        self.rules = rules
        self.universe = universe
        self.violations: list[Violation] = []
        self._conns: dict[int, _Conn] = {}  # in the order they opened
        self._subscribed_ns: int | None = None  # the last subscription request of anyone
        self.subscribers: dict[str, tuple[int, ...]] = {}
        self.book_subscribers: dict[str, tuple[tuple[int, int], ...]] = {}
        self.changed_ns = 0  # when a subscription list last changed

    def _violate(self, now_ns: int, conn: int, rule: str, detail: str) -> None:
        self.violations.append(Violation(now_ns, conn, rule, detail))

    def open(self, conn: int, token: str, now_ns: int) -> Outcome:
        """The greeting, then the verdict on the handshake's token; a token's connection
        past its cap disconnects its oldest."""
        rules = self.rules
        if token not in rules.tokens:
            self._violate(now_ns, conn, "token", "auth failed")
            return Outcome([GREETING, AUTH_FAILED], close=True, close_code=CLOSE_POLICY,
                           close_reason="auth failed")  # fmt: skip
        same = [c for c, state in self._conns.items() if state.token == token]
        evict = same[: max(0, len(same) - rules.max_conns + 1)]
        if evict:
            self._violate(now_ns, conn, "connection cap",
                          f"more than {rules.max_conns}: closes {evict}")  # fmt: skip
            for older in evict:
                del self._conns[older]
            self._rebuild(now_ns)
        self._conns[conn] = _Conn(token, last_ping_ns=now_ns)
        return Outcome([GREETING, authenticated(token)], evict=evict)

    def close(self, conn: int, now_ns: int) -> None:
        if self._conns.pop(conn, None) is not None:
            self._rebuild(now_ns)

    def expired(self, now_ns: int) -> list[tuple[int, Outcome]]:
        """Connections that sent no ping within the timeout: closed."""
        limit = self.rules.heartbeat_timeout_ns
        late = [c for c, state in self._conns.items() if now_ns - state.last_ping_ns > limit]
        for conn in late:
            self._violate(now_ns, conn, "heartbeat timeout", f"no ping for {limit // 10**9} s")
            del self._conns[conn]
        if late:
            self._rebuild(now_ns)
        return [(c, Outcome(close=True, close_code=CLOSE_POLICY, close_reason="heartbeat timeout"))
                for c in late]  # fmt: skip

    def receive(self, conn: int, message: bytes | str, now_ns: int, *,
                envelope_error: bool = False) -> Outcome:  # fmt: skip
        """Judge and answer one request. ``envelope_error``: answer a subscription request
        with ``cannot be resolved action`` instead of applying it (``--fault
        envelope-error``; the outcome says so)."""
        state = self._conns.get(conn)
        if state is None:
            return Outcome(close=True)
        req = wire.request(message)
        if req is None:
            self._violate(now_ns, conn, "malformed request", repr(message[:100]))
            return Outcome([unresolved("")])
        last, state.last_request_ns = state.last_request_ns, now_ns
        if last is not None and now_ns - last < self.rules.request_interval_ns:
            gap_ms = (now_ns - last) // 1_000_000
            self._violate(now_ns, conn, "request rate", f"{req.ac} {gap_ms} ms after the last")
        if req.ac == "ping":
            state.last_ping_ns = now_ns
            if not (req.params.isdigit() and len(req.params) == MS_DIGITS):
                self._violate(now_ns, conn, "ping", f"params {req.params[:40]!r}: no ms time")
            return Outcome([pong(req.params)])
        if req.ac not in ("subscribe", "unsubscribe"):
            self._violate(now_ns, conn, "unknown action", req.ac)
            return Outcome([unresolved(req.ac)])
        self._subscribed_ns = now_ns
        if envelope_error:
            return Outcome([unresolved(req.ac)], envelope_error=True)
        return self._subscription(conn, state, req, now_ns)

    def _subscription(self, conn: int, state: _Conn, req: wire.WireRequest,
                      now_ns: int) -> Outcome:  # fmt: skip
        """A subscribe adds, an unsubscribe removes; a bad message changes nothing."""
        types = [t for t in req.types.split(",") if t]
        if not types or not TYPES.issuperset(types):
            self._violate(now_ns, conn, "types", repr(req.types))
            return Outcome([unresolved(req.ac)])
        parsed = parse_params(req.params)
        codes = [c for c in parsed if c is not None and c in self.universe]
        if not codes or len(codes) < len(parsed):
            self._violate(now_ns, conn, "code invalid", req.params[:200])
            return Outcome([unresolved(req.ac)])
        lists = [state.trades if t == "tick" else state.books for t in types]
        if req.ac == "unsubscribe":
            for listed in lists:
                for code in codes:
                    listed.pop(code, None)
            self._rebuild(now_ns)
            return Outcome([UNSUBSCRIBED])
        after = state.codes() + len(set(codes) - state.trades.keys() - state.books.keys())
        if after > self.rules.max_codes_per_conn:
            self._violate(now_ns, conn, "code cap",
                          f"{after} codes > {self.rules.max_codes_per_conn}")  # fmt: skip
            return Outcome([LIMIT])
        for listed in lists:
            listed.update(dict.fromkeys(codes))
        self._rebuild(now_ns)
        return Outcome([SUBSCRIBED])

    def _rebuild(self, now_ns: int) -> None:
        self.changed_ns = now_ns
        self.subscribers, self.book_subscribers = subscriber_maps(
            (conn, state.trades, ((code, BOOK_LEVELS) for code in state.books))
            for conn, state in self._conns.items())  # fmt: skip

    @property
    def subscription_requested(self) -> bool:
        """A client has sent a subscription request."""
        return self._subscribed_ns is not None

    def settling(self, now_ns: int) -> bool:
        """Subscriptions changed so recently that a client may still be adding connections."""
        return now_ns - self.changed_ns < max(2 * self.rules.cross_interval_ns, SETTLE_MIN_NS)

    def subscriptions(self) -> dict[int, list[str]]:
        """Each open connection's trade list, as the server holds it now."""
        return {conn: list(state.trades) for conn, state in self._conns.items()}

    def book_subscriptions(self) -> dict[int, list[str]]:
        """Each open connection's order-book list, as the server holds it now."""
        return {conn: list(state.books) for conn, state in self._conns.items()}


def token_of(headers: dict[str, str]) -> str:
    """The token a client put in its handshake (header ``token``, any case)."""
    return next((value for name, value in headers.items() if name.lower() == "token"), "")
