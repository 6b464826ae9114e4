"""Polygon.io's (now Massive's) stocks WebSocket, the client side: one connection's protocol
state (a ``providers.base.Session``), sans-I/O.

The conversation: the server greets (status ``connected``), the client authenticates by
message and waits for ``auth_success``; subscriptions are incremental (``subscribe`` /
``unsubscribe`` of comma-separated topics, ``T.AAPL`` for trades, ``Q.AAPL`` for quotes) and
the server answers one status per topic. Every frame is a JSON array whose events (trades,
quotes, statuses) are handled one by one; each push goes to the route with its own bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from feedmux.model import Depth, Tick
from feedmux.providers.base import (
    SAMPLE_BYTES,
    BadMessage,
    Event,
    Failure,
    ListKind,
    Peek,
    Reply,
    Request,
    Route,
    SubscribeModel,
    first_line,
)
from feedmux.providers.polygon.wire import (
    DEFAULT_MAX_FRAME_BYTES,
    MARKET,
    QUOTES,
    TICKER,
    TRADES,
    WHOLE_MARKET,
    QuoteKey,
    StatusEvent,
    TradeKey,
    canonical,
    decode_head,
    decode_push,
    read_frame,
    request,
    schema_error,
    topic,
    topic_code,
)
from feedmux.transports.frames import OPCODE_BINARY, OPCODE_PING, OPCODE_TEXT, Message

DEFAULT_CODES_PER_REQUEST = 1000  # UNCONFIRMED: no documented cap on a message's topics
KEYS_MAX = 200_000  # route keys kept per list; a server inventing tickers cannot grow it more
AUTH = Request("auth", (), "auth")


@dataclass
class _Change:
    """A change of one list in flight: the topics whose answer is still due."""

    request: Request
    number: int  # the session's count of changes: the oldest is answered first
    adds: set[str]  # codes being added (their pushes may precede the answer)
    waiting: set[tuple[bool, str]]  # (subscribe?, topic) not answered yet


@dataclass
class _List:
    """What one list kind (trades or quotes) holds on the server, and which pushes are due."""

    prefix: str
    book: bool
    acked: dict[str, None] = field(default_factory=dict)  # codes the server said it holds
    expects: set[str] = field(default_factory=set)  # whose pushes are welcome: acked + adds
    change: _Change | None = None
    keys: dict[str, Peek] = field(default_factory=dict)  # ticker -> key, for expected tickers

    def key(self, sym: str, only_subscribed: bool) -> Peek | None:
        """The route key of a push for ``sym``, or None if it is not expected here (or no
        ticker at all)."""
        if not TICKER.fullmatch(sym):
            return None
        code = canonical(sym)
        expects = self.expects
        if only_subscribed and code not in expects and WHOLE_MARKET not in expects:
            return None
        key = Peek(code, self.book)
        if len(self.keys) < KEYS_MAX:
            self.keys[sym] = key
        return key

    def forget(self, code: str) -> None:
        """``code`` is no longer expected (unless being added again)."""
        if self.change is None or code not in self.change.adds:
            self.expects.discard(code)
            self.keys.clear()  # rare: a removal; the keys are rebuilt as pushes come

    def reset(self) -> None:
        self.acked.clear()
        self.expects.clear()
        self.keys.clear()
        self.change = None


def _failure(status: str, message: str, authenticated_before: bool) -> Failure | None:
    """A status no retry can fix: a refused key (or a plan without WebSocket access), or the
    account's connection taken by another client. Once this session has worked, a
    ``max_connections`` is more likely its own old link, not yet timed out by the server:
    retried with the backoff."""
    detail = f"status {status}: {first_line(message)}"
    if status == "auth_failed":
        return Failure("plan" if "plan" in message.lower() else "token", detail)
    if status == "max_connections" and not authenticated_before:
        return Failure("connections", detail)
    return None


class PolygonClient:
    """Protocol state of one stocks connection (a ``Session``)."""

    def __init__(
        self,
        name: str,
        *,
        codes_per_request: int = DEFAULT_CODES_PER_REQUEST,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        subscribe_model: SubscribeModel = "add_remove",
        only_subscribed: bool = True,  # False: route pushes of any ticker (checkers, tools)
    ) -> None:
        self.name = name
        self.codes_per_request = max(1, codes_per_request)
        self.max_frame_bytes = max_frame_bytes
        # "replace": every change names the whole list again (re-subscribing is harmless);
        # "add_remove" (the vendor's model): only the difference.
        self.subscribe_model = subscribe_model
        self.only_subscribed = only_subscribed
        self.events: list[Event] = []
        self.bad_messages: dict[str, int] = {}
        self.ready = False  # until auth_success
        self._auth_waiting = False
        self._worked = False  # authenticated on a link of this session once: it is ours
        self._changes = 0
        self._trades = _List(TRADES, False)
        self._books = _List(QUOTES, True)
        self._lists: dict[str, _List] = {"trades": self._trades, "books": self._books}
        self._by_prefix: dict[str, _List] = {TRADES: self._trades, QUOTES: self._books}

    # -- requests -------------------------------------------------------------------------------
    def opening(self, token: str) -> list[bytes]:
        self._auth_waiting = True
        return [request("auth", token)]

    def heartbeat(self, wall_ns: int = 0) -> None:
        return None  # WebSocket pings (the server's) keep the link: no application heartbeat

    def subscribe(self, kind: ListKind, codes: list[str], levels: int = 0) -> list[bytes]:
        """Requests that make the ``kind`` list exactly ``codes``: subscribes first, then
        unsubscribes, at most ``codes_per_request`` topics a message. The difference is taken
        from what the server confirmed: a change whose answer never came (the caller asks
        again) is sent again. ``levels`` is moot: a quote is one level."""
        lst = self._lists[kind]
        wanted = dict.fromkeys(codes)
        foreign = next((c for c in wanted if not c.endswith(MARKET)), None)
        if foreign is not None:  # e.g. added live: refused like a bad code, the manager finds it
            req = Request(kind, tuple(codes), f"{lst.prefix} topics")
            msg = f"not a US code: {foreign}"
            self.events.append(Reply("bad_code", 0, msg, req, label=req.label))
            return []
        if self.subscribe_model == "replace":
            adds = list(wanted)
        else:
            adds = [c for c in wanted if c not in lst.acked]
        removes = [c for c in lst.acked if c not in wanted]
        label = f"{lst.prefix} topics +{len(adds)} -{len(removes)}"
        req = Request(kind, tuple(codes), label)
        lst.change = None  # superseded: its late answers still say what the server holds
        lst.expects = set(lst.acked).union(adds)
        lst.keys.clear()
        if not adds and not removes:
            self.events.append(Reply("ok", 0, "nothing to change", req, label=label))
            return []
        self._changes += 1
        waiting = {(True, topic(lst.prefix, c)) for c in adds}
        waiting.update((False, topic(lst.prefix, c)) for c in removes)
        lst.change = _Change(req, self._changes, set(adds), waiting)
        return self._messages("subscribe", lst.prefix, adds) + self._messages(
            "unsubscribe", lst.prefix, removes)  # fmt: skip

    def _messages(self, action: str, prefix: str, codes: list[str]) -> list[bytes]:
        step = self.codes_per_request
        return [request(action, ",".join(topic(prefix, c) for c in codes[i : i + step]))
                for i in range(0, len(codes), step)]  # fmt: skip

    def pending(self) -> int:
        """The auth and list changes still waiting for their answer."""
        changes = sum(1 for lst in self._lists.values() if lst.change is not None)
        return changes + self._auth_waiting

    def reset(self) -> None:
        """The connection is gone: a new one starts unauthenticated, with nothing subscribed."""
        self.ready = False
        self._auth_waiting = False
        for lst in self._lists.values():
            lst.reset()

    # -- messages in ----------------------------------------------------------------------------
    def receive_read(self, messages: list[Message], recv_ns: int, route: Route) -> bool:
        """The messages of one socket read: each trade or quote of a frame handed to ``route``
        with its own bytes, undecoded; statuses handled here. True when a push, a status or
        a ping came (the server pings; the link answers)."""
        alive = False
        for opcode, data in messages:
            if opcode == OPCODE_TEXT:
                alive = self._frame(data, recv_ns, route) or alive
            elif opcode == OPCODE_PING:
                alive = True
            elif opcode == OPCODE_BINARY:
                self.bad_binary(data)
        return alive

    def _frame(self, data: bytes, recv_ns: int, route: Route) -> bool:
        events = read_frame(data, self.max_frame_bytes)
        if isinstance(events, BadMessage):
            self._count(events)
            return False
        trades, books, only = self._trades, self._books, self.only_subscribed
        trade_keys, quote_keys = trades.keys, books.keys  # cleared in place, never replaced
        alive = False
        for event in events:  # the hot loop: one decode of the event's type and ticker
            try:
                item = decode_head(event)
            except msgspec.ValidationError as exc:  # the frame parsed: only a shape is wrong
                self._count(schema_error(exc, bytes(event)))
                continue
            if type(item) is TradeKey:
                key = trade_keys.get(item.sym) or trades.key(item.sym, only)
            elif type(item) is QuoteKey:
                key = quote_keys.get(item.sym) or books.key(item.sym, only)
            else:
                assert type(item) is StatusEvent
                self._status(item)
                alive = True
                continue
            if key is None:
                what = "quote" if type(item) is QuoteKey else "trade"
                if TICKER.fullmatch(item.sym):
                    self._bad("unsubscribed", f"{what} for {item.sym}, not subscribed here",
                              bytes(event))  # fmt: skip
                else:
                    self._bad("ticker", f"{what} for {item.sym[:40]!r}: no ticker", bytes(event))
                continue
            route(key, bytes(event), recv_ns)
            alive = True
        return alive

    def receive(self, payload: bytes, recv_ns: int) -> Tick | Depth | None:
        """Decode one text message: its first trade or quote (a bad one counted), or None with
        its statuses handled. A frame of several pushes: use ``receive_read``."""
        pushes: list[bytes] = []
        self._frame(payload, recv_ns, lambda _key, push, _ns: pushes.append(push))
        first: Tick | Depth | None = None
        for push in pushes:
            item = decode_push(push, recv_ns, self.max_frame_bytes)
            if isinstance(item, BadMessage):
                self._count(item)
            elif first is None:
                first = item
        return first

    def bad_binary(self, payload: bytes) -> None:
        self._bad("binary", "binary frame (the server sends text)", payload)

    # -- statuses -------------------------------------------------------------------------------
    def _status(self, event: StatusEvent) -> None:
        status, message = event.status, event.message
        if status == "connected":  # the greeting: alive, nothing more
            return
        if status == "auth_success" or (status == "success" and message == "authenticated"):
            self.ready, self._auth_waiting, self._worked = True, False, True
            self.events.append(Reply("ok", 0, message, AUTH, label="auth"))
            return
        if status == "success":
            action, sep, name = message.partition(" to: ")  # "subscribed to: T.AAPL"
            if sep and action in ("subscribed", "unsubscribed"):
                self._answered(action == "subscribed", name.strip())
            return  # any other success says nothing we act on
        if status in ("auth_failed", "max_connections", "auth_timeout"):
            # auth_timeout: the server drops the link; a reconnect authenticates again.
            self._auth_waiting = False
            failure = _failure(status, message, self._worked)
            self.events.append(Reply("refused", 0, f"{status}: {message}", AUTH,
                                     failure=failure, label="auth"))  # fmt: skip
            return
        self._refused(status, message)

    def _answered(self, subscribed: bool, name: str) -> None:
        """One topic's answer: what the server holds now; a change answered whole is one
        Reply."""
        parsed = topic_code(name)
        if parsed is None:
            return  # a topic of another kind (aggregates): not ours
        lst = self._by_prefix[parsed[0]]
        code = parsed[1]
        if subscribed:
            lst.acked[code] = None
            lst.expects.add(code)
        else:
            lst.acked.pop(code, None)
            lst.forget(code)
        change = lst.change
        if change is None:
            return
        change.waiting.discard((subscribed, name))
        if not change.waiting:
            lst.change = None
            request = change.request
            msg = f"{request.label}: every topic answered"
            self.events.append(Reply("ok", 0, msg, request, label=request.label))

    def _refused(self, status: str, message: str) -> None:
        """Any other status (``error``): the refusal of our oldest change in flight, as a
        whole (sent again after a backoff), else of nothing we know."""
        msg = f"{status}: {message}"
        waiting = [lst for lst in self._lists.values() if lst.change is not None]
        if not waiting:
            self.events.append(Reply("refused", 0, msg, None, label=f"status {status}"))
            return
        lst = min(waiting, key=lambda x: x.change.number if x.change is not None else 0)
        change, lst.change = lst.change, None
        assert change is not None
        self.events.append(Reply("refused", 0, msg, change.request, envelope=True,
                                 label=change.request.label))  # fmt: skip

    # -- bad messages ---------------------------------------------------------------------------
    def _count(self, bad: BadMessage) -> None:
        self.bad_messages[bad.kind] = self.bad_messages.get(bad.kind, 0) + 1
        self.events.append(bad)

    def _bad(self, kind: str, detail: str, message: bytes) -> None:
        self._count(BadMessage(kind, detail, message[:SAMPLE_BYTES]))
