"""AllTick's server-side rules, sans-I/O: what the replay server answers and when it hangs up.

Every broken rule is recorded as a ``Violation`` so tests can prove a client never breaks one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import msgspec

from feedmux.providers.alltick.protocol import (
    CMD_CANCEL,
    CMD_HEARTBEAT,
    CMD_SUBSCRIBE_DEPTH,
    CMD_SUBSCRIBE_TRADES,
    RET_OK,
    RET_RATE_LIMIT,
)
from feedmux.providers.base import Outcome, ServerRules, Violation, subscriber_maps

SUBSCRIPTION_CMDS = (CMD_SUBSCRIBE_DEPTH, CMD_SUBSCRIBE_TRADES, CMD_CANCEL)
SETTLE_MIN_NS = 5_000_000_000
PATH = "/quote-stock-b-ws-api"  # the stock endpoint's path (forex and crypto use another)


def plan_rules(token: str, **limits: int) -> ServerRules:
    """A plan's limits; the defaults are the all-market plan's (spec rules 2-6)."""
    plan = ServerRules(token=token, max_codes_per_conn=3000, max_conns=10,
                       request_interval_ns=1_000_000_000, cross_interval_ns=3_000_000_000,
                       heartbeat_timeout_ns=30_000_000_000,
                       reconnect_spacing_ns=3_000_000_000)  # fmt: skip
    return msgspec.structs.replace(plan, **limits)


@dataclass
class _Conn:
    token: str  # "" if it is no token of the plan
    opened_ns: int
    last_request_ns: int | None = None
    last_heartbeat_ns: int = 0
    trades: list[str] = field(default_factory=list)
    books: dict[str, int] = field(default_factory=dict)  # code -> depth levels


class _SymbolEntry(msgspec.Struct):
    code: str
    depth_level: int = 0


class _Data(msgspec.Struct):
    symbol_list: list[_SymbolEntry] | None = None
    cancel_type: int | None = None


class _Request(msgspec.Struct):
    cmd_id: int
    seq_id: int
    trace: str = ""
    data: _Data | None = None


_request_decoder = msgspec.json.Decoder(_Request)
_encode = msgspec.json.Encoder().encode


# The vendor's answer to a request whose envelope it refuses (spec: ``cmd_id`` 0, seq_id 0).
ENVELOPE_ERROR = _encode({"ret": 201, "msg": "request header param invalid", "cmd_id": 0,
                          "seq_id": 0, "trace": "", "data": {}})  # fmt: skip


def _reply(cmd_id: int, seq_id: int, trace: str, ret: int, msg: str) -> bytes:
    return _encode(
        {"ret": ret, "msg": msg, "cmd_id": cmd_id + 1, "seq_id": seq_id, "trace": trace, "data": {}}
    )


def _max_levels(code: str) -> int:
    return {"US": 1, "HK": 10}.get(code.rsplit(".", 1)[-1], 5)


class AllTickServer:
    """State of every connection of one token, and the rules that judge them (a
    ``providers.base.Simulator``)."""

    def __init__(self, rules: ServerRules, universe: set[str]) -> None:
        self.rules = rules
        self.universe = universe
        self.violations: list[Violation] = []
        self._conns: dict[int, _Conn] = {}
        self._last_close_ns: dict[str, int] = {}  # token -> its last close
        # each token's last subscription or cancel request, on any connection, open or closed
        self._last_subscription: dict[str, tuple[int, int]] = {}  # token -> (time, connection)
        self.subscribers: dict[str, tuple[int, ...]] = {}  # code -> connections that get it
        # code -> (connection, levels) for each connection that gets its order book
        self.book_subscribers: dict[str, tuple[tuple[int, int], ...]] = {}
        self.changed_ns = 0  # when a subscription list last changed (a client still settling)

    def _violate(self, now_ns: int, conn: int, rule: str, detail: str) -> None:
        self.violations.append(Violation(now_ns, conn, rule, detail))

    def open(self, conn: int, token: str, now_ns: int) -> Outcome:
        """A new connection: accepted silently (the token is checked at its first request),
        or dropped at once past a limit of its token."""
        rules = self.rules
        token = token if token in rules.tokens else ""
        why = "too many requests and connection will be closed"
        refused = Outcome(close=True, close_code=1008, close_reason=why)
        if sum(1 for s in self._conns.values() if s.token == token) >= rules.max_conns:
            self._violate(now_ns, conn, "connection cap", f"more than {rules.max_conns}")
            return refused
        last_close = self._last_close_ns.get(token)
        if last_close is not None and now_ns - last_close < rules.reconnect_spacing_ns:
            gap_ms = (now_ns - last_close) // 1_000_000
            self._violate(now_ns, conn, "reconnect spacing", f"reconnected after {gap_ms} ms")
            return refused
        self._conns[conn] = _Conn(token, now_ns, last_heartbeat_ns=now_ns)
        return Outcome()

    def close(self, conn: int, now_ns: int) -> None:
        state = self._conns.pop(conn, None)
        if state is not None:
            self._last_close_ns[state.token] = now_ns
            self._rebuild_subscribers(now_ns)

    def expired(self, now_ns: int) -> list[tuple[int, Outcome]]:
        """Connections that sent no heartbeat within the timeout: closed."""
        limit = self.rules.heartbeat_timeout_ns
        late = [c for c, s in self._conns.items() if now_ns - s.last_heartbeat_ns > limit]
        for conn in late:
            self._violate(now_ns, conn, "heartbeat timeout", f"none for {limit // 10**9} s")
        return [(c, Outcome(close=True, close_code=1008, close_reason="heartbeat timeout"))
                for c in late]  # fmt: skip

    def receive(self, conn: int, message: bytes | str, now_ns: int, *,
                envelope_error: bool = False) -> Outcome:  # fmt: skip
        """Judge and answer one request. ``envelope_error``: answer a subscription or cancel
        request with the documented ``cmd_id`` 0 error instead of applying it (``--fault
        envelope-error``; the outcome says so); it still counts for the spacing rules."""
        state = self._conns.get(conn)
        if state is None:
            return Outcome(close=True)
        try:
            req = _request_decoder.decode(message)
        except msgspec.DecodeError as exc:
            self._violate(now_ns, conn, "malformed request", str(exc))
            return Outcome([_reply(-1, 0, "", 400, "request header param invalid")])
        if not state.token:
            self._violate(now_ns, conn, "token", "token invalid")
            return Outcome([_reply(req.cmd_id, req.seq_id, req.trace, 401, "token invalid")], True)
        refused = self._timing(conn, state, req, now_ns)
        if refused is not None:
            return refused
        if envelope_error and req.cmd_id in SUBSCRIPTION_CMDS:
            return Outcome([ENVELOPE_ERROR], envelope_error=True)
        if req.cmd_id == CMD_HEARTBEAT:
            state.last_heartbeat_ns = now_ns
            return Outcome([_reply(req.cmd_id, req.seq_id, req.trace, RET_OK, "ok")])
        if req.cmd_id not in SUBSCRIPTION_CMDS:
            self._violate(now_ns, conn, "unknown command", str(req.cmd_id))
            msg = "request header param invalid"
            return Outcome([_reply(req.cmd_id, req.seq_id, req.trace, 400, msg)])
        return self._subscription(conn, state, req, now_ns)

    def _timing(self, conn: int, state: _Conn, req: _Request, now_ns: int) -> Outcome | None:
        """The spacing rules (spec rule 2); every request counts, a refused one too."""
        last_request, state.last_request_ns = state.last_request_ns, now_ns
        if req.cmd_id in SUBSCRIPTION_CMDS:
            # Any two subscription/cancel requests of one token, on one connection or not, at
            # least the cross interval apart (heartbeats excepted).
            last = self._last_subscription.get(state.token)
            self._last_subscription[state.token] = (now_ns, conn)
            if last is not None and now_ns - last[0] < self.rules.cross_interval_ns:
                gap_ms = (now_ns - last[0]) // 1_000_000
                self._violate(now_ns, conn, "request spacing",
                              f"cmd {req.cmd_id} {gap_ms} ms after the token's last "
                              f"(conn {last[1]})")  # fmt: skip
                msg = "too many requests and connection will be closed"
                return Outcome([_reply(req.cmd_id, req.seq_id, req.trace, 606, msg)], close=True)
        if last_request is not None and now_ns - last_request < self.rules.request_interval_ns:
            gap_ms = (now_ns - last_request) // 1_000_000
            self._violate(now_ns, conn, "request rate", f"cmd {req.cmd_id} {gap_ms} ms after last")
            return Outcome(
                [_reply(req.cmd_id, req.seq_id, req.trace, RET_RATE_LIMIT, "rate limit")]
            )
        return None

    def _subscription(self, conn: int, state: _Conn, req: _Request, now_ns: int) -> Outcome:
        ok = _reply(req.cmd_id, req.seq_id, req.trace, RET_OK, "ok")
        if req.cmd_id == CMD_CANCEL:
            cancel_type = 0 if req.data is None else req.data.cancel_type
            if cancel_type in (0, 2):
                state.trades = []
            if cancel_type in (0, 1):
                state.books = {}
            self._rebuild_subscribers(now_ns)
            return Outcome([ok])
        if req.data is None or not req.data.symbol_list:
            return Outcome([_reply(req.cmd_id, req.seq_id, req.trace, 601, "body empty")])
        levels = {entry.code: entry.depth_level for entry in req.data.symbol_list}
        codes = list(levels)
        unknown = [c for c in codes if c not in self.universe]
        if unknown:
            self._violate(now_ns, conn, "code invalid", ",".join(unknown[:10]))
            return Outcome([_reply(req.cmd_id, req.seq_id, req.trace, 600, "code invalid")])
        cap = self.rules.max_codes_per_conn
        if len(codes) > cap:
            # The real server acks and silently ignores the excess; recorded here for tests.
            self._violate(now_ns, conn, "code cap", f"{len(codes)} codes, {cap} kept")
            codes = codes[:cap]
        if req.cmd_id == CMD_SUBSCRIBE_DEPTH:
            # A-shares carry at most 5 levels, US 1, HK 10 (spec rule 8).
            state.books = {c: max(1, min(levels[c] or 5, _max_levels(c))) for c in codes}
        else:
            state.trades = codes
        self._rebuild_subscribers(now_ns)
        return Outcome([ok])

    def _rebuild_subscribers(self, now_ns: int) -> None:
        self.changed_ns = now_ns
        self.subscribers, self.book_subscribers = subscriber_maps(
            (conn, state.trades, state.books.items()) for conn, state in self._conns.items()
        )

    @property
    def subscription_requested(self) -> bool:
        """A client of the token has sent a subscription or cancel request."""
        return bool(self._last_subscription)

    def settling(self, now_ns: int) -> bool:
        """Subscriptions changed so recently that a client may still be adding connections:
        its next request may come a cross interval after its last (twice, slack)."""
        return now_ns - self.changed_ns < max(2 * self.rules.cross_interval_ns, SETTLE_MIN_NS)

    def book_subscriptions(self) -> dict[int, list[str]]:
        """Each open connection's order-book list, as the server holds it now."""
        return {conn: list(state.books) for conn, state in self._conns.items()}

    def subscriptions(self) -> dict[int, list[str]]:
        """Each open connection's trade list, as the server holds it now."""
        return {conn: list(state.trades) for conn, state in self._conns.items()}


def token_of(path: str) -> str:
    """The token of a connection request's path (``?token=...``)."""
    return parse_qs(urlsplit(path).query).get("token", [""])[0]
