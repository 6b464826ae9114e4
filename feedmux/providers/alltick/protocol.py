"""AllTick's stock WebSocket protocol, sans-I/O (as AllTick documents it for its stock
API; the rules the replay server enforces are in ``server.py``).

``AllTickClient`` (a ``providers.base.Session``) builds request messages and turns received messages
into ``Tick`` objects and typed events; ``peek`` and ``decode_push`` read a push with no
connection state. Nothing here owns a socket, thread or clock: the caller passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import msgspec

from feedmux.model import Depth, Tick
from feedmux.providers.base import (
    BadMessage,
    Event,
    Failure,
    ListKind,
    Peek,
    Reply,
    Request,
    RequestKind,
    Route,
    Verdict,
    first_line,
    handshake_status,
    unreadable,
)
from feedmux.transports.frames import OPCODE_BINARY, OPCODE_TEXT, Message

CMD_HEARTBEAT = 22000
CMD_SUBSCRIBE_DEPTH = 22002
CMD_SUBSCRIBE_TRADES = 22004
CMD_CANCEL = 22006
CMD_TRADE_PUSH = 22998
CMD_DEPTH_PUSH = 22999
RET_OK = 200
RET_RATE_LIMIT = 429
RET_TOKEN = 401
RET_PLAN = 603  # token level not enough
CANCEL_ALL, CANCEL_DEPTH, CANCEL_TRADES = 0, 1, 2
SECONDS_BELOW = 100_000_000_000  # a tick_time below this is seconds, not milliseconds
DEFAULT_MAX_FRAME_BYTES = 64 * 1024  # a trade is ~200 bytes, a 10-level book ~1 KiB

_Positive = Annotated[float, msgspec.Meta(gt=0, lt=1e15)]
_NonNegative = Annotated[float, msgspec.Meta(ge=0, lt=1e18)]


class TradeData(msgspec.Struct, gc=False):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    seq: Annotated[int, msgspec.Meta(ge=0)]
    tick_time: Annotated[int, msgspec.Meta(gt=0)]
    price: _Positive
    volume: _NonNegative
    turnover: _NonNegative = 0.0
    trade_direction: Annotated[int, msgspec.Meta(ge=0, le=2)] = 0


class LevelData(msgspec.Struct, gc=False):
    price: _Positive
    volume: _NonNegative


class DepthData(msgspec.Struct, gc=False):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    seq: Annotated[int, msgspec.Meta(ge=0)]
    tick_time: Annotated[int, msgspec.Meta(gt=0)]
    bids: list[LevelData] = []
    asks: list[LevelData] = []


class TradePush(msgspec.Struct, tag_field="cmd_id", tag=CMD_TRADE_PUSH, gc=False):
    data: TradeData


class DepthPush(msgspec.Struct, tag_field="cmd_id", tag=CMD_DEPTH_PUSH, gc=False):
    data: DepthData


class Response(msgspec.Struct, tag_field="cmd_id"):
    ret: int
    msg: str = ""
    seq_id: int = 0
    trace: str = ""


class HeartbeatReply(Response, tag=CMD_HEARTBEAT + 1):
    pass


class DepthAck(Response, tag=CMD_SUBSCRIBE_DEPTH + 1):
    pass


class TradesAck(Response, tag=CMD_SUBSCRIBE_TRADES + 1):
    pass


class CancelAck(Response, tag=CMD_CANCEL + 1):
    pass


class EnvelopeError(Response, tag=0):
    """An error about a request's envelope (spec: ``cmd_id`` 0), e.g. a refused token or
    ``ret=201 request header param invalid``; it answers the oldest request still waiting."""


# strict=False accepts "1745.50" for a float and "1605509068" for an int (both forms occur).
_decoder = msgspec.json.Decoder(
    TradePush | DepthPush | HeartbeatReply | DepthAck | TradesAck | CancelAck | EnvelopeError,
    strict=False,
)
_encode = msgspec.json.Encoder().encode


class WireRequest(msgspec.Struct, frozen=True):
    """A request as AllTick reads it."""

    cmd_id: int
    seq_id: int
    trace: str
    data: dict[str, object]


@dataclass(frozen=True, slots=True)
class _Sent:
    """A request in flight: what went on the wire and what the manager sees."""

    cmd_id: int
    codes: list[str]
    cancel_type: int | None
    request: Request


# -- reply codes: what each means for the manager ------------------------------------------------
RETRY_LATER = frozenset((RET_RATE_LIMIT, 605, 606))  # 606: the server also closes the link
BAD_CODE = frozenset((600, 604))  # code invalid / code unauthorized: find the culprit


def verdict_of(ret: int) -> Verdict:
    if ret == RET_OK:
        return "ok"
    if ret in RETRY_LATER:
        return "retry_later"
    if ret in BAD_CODE:
        return "bad_code"
    return "refused"


def reply_failure(ret: int, msg: str) -> Failure | None:
    """A ``ret`` that no retry can fix (spec: 401 token, 603 plan), or None."""
    if ret == RET_TOKEN:
        return Failure("token", f"ret={ret} {first_line(msg)}")
    if ret == RET_PLAN:
        return Failure("plan", f"ret={ret} {first_line(msg)}")
    return None


def make_reply(ret: int, msg: str, request: Request | None, *, cmd_id: int = 0,
               envelope: bool = False) -> Reply:  # fmt: skip
    """AllTick's answer ``ret``/``msg`` to ``request``, classified; ``cmd_id`` is the reply's
    (the request's + 1; for an envelope error, the refused request's + 1, or 0 if unknown)."""
    if envelope:
        sent = request.label if request is not None and request.label else "a request"
        label = f"{sent} (an envelope error, cmd_id 0)"
    else:
        label = f"cmd {cmd_id}"
    return Reply(verdict_of(ret), ret, msg, request, envelope, reply_failure(ret, msg), label)


def handshake_failure(status: int, body: bytes | str | None = None) -> Failure:
    """A refused WebSocket handshake, classified: AllTick's own verdict in a JSON body (e.g.
    ``{"ret":401,"msg":"token invalid"}``) says more than the status."""
    failure = handshake_status(status, first_line(body))
    vendor = _vendor_refusal(body)
    if vendor is not None:
        return Failure(vendor.kind, f"{failure.detail}, {vendor.detail}", failure.body)
    return failure


class _RetBody(msgspec.Struct):
    ret: int
    msg: str = ""


def _vendor_refusal(body: bytes | str | None) -> Failure | None:
    if not body or len(body) > 4096:
        return None
    try:
        parsed = msgspec.json.decode(body, type=_RetBody)
    except msgspec.DecodeError:
        return None
    return reply_failure(parsed.ret, parsed.msg)


def normalize_time(tick_time: int) -> int:
    """Vendor tick_time (seconds or milliseconds) → integer nanoseconds."""
    if tick_time < SECONDS_BELOW:
        return tick_time * 1_000_000_000
    return tick_time * 1_000_000


def parse(payload: bytes, max_frame_bytes: int) -> BadMessage | TradePush | DepthPush | Response:
    """One text message decoded, or why it was skipped."""
    bad = unreadable(payload, max_frame_bytes)
    if bad is not None:
        return bad
    try:
        msg: TradePush | DepthPush | Response = _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        detail = str(exc)
        kind = "unknown_cmd" if detail.endswith("`$.cmd_id`") else "schema"
        return BadMessage(kind, detail, payload[:200])
    except msgspec.DecodeError as exc:
        return BadMessage("json", str(exc), payload[:200])
    return msg


def tick_of(d: TradeData, recv_ns: int) -> Tick:
    return Tick(d.code, d.seq, normalize_time(d.tick_time), recv_ns, d.price, d.volume,
                d.turnover, d.trade_direction)  # fmt: skip


def depth_of(b: DepthData, recv_ns: int) -> Depth:
    return Depth(b.code, b.seq, normalize_time(b.tick_time), recv_ns,
                 [(level.price, level.volume) for level in b.bids],
                 [(level.price, level.volume) for level in b.asks])  # fmt: skip


def decode_push(
    payload: bytes, recv_ns: int, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> Tick | Depth | BadMessage:
    """One push, fully, with no connection state (``Provider.decode``)."""
    msg = parse(payload, max_frame_bytes)
    if type(msg) is TradePush:
        return tick_of(msg.data, recv_ns)
    if type(msg) is DepthPush:
        return depth_of(msg.data, recv_ns)
    if isinstance(msg, BadMessage):
        return msg
    return BadMessage("not_push", f"cmd {type(msg).__struct_config__.tag} is not a push",
                    payload[:200])  # fmt: skip


class _PeekData(msgspec.Struct):
    code: str


class _PeekPush(msgspec.Struct):
    cmd_id: int
    data: _PeekData


_peek_decoder = msgspec.json.Decoder(_PeekPush)


def peek(payload: bytes) -> Peek | None:
    """A push's code (and whether it is a book), reading only ``cmd_id`` and ``data.code``:
    prices, sizes and times are skipped, not parsed."""
    try:
        push = _peek_decoder.decode(payload)
    except msgspec.DecodeError:
        return None  # a reply, or a bad message
    if push.cmd_id == CMD_TRADE_PUSH:
        return Peek(push.data.code, False)
    if push.cmd_id == CMD_DEPTH_PUSH:
        return Peek(push.data.code, True)
    return None


class _Symbol(msgspec.Struct):
    code: str


class _SymbolList(msgspec.Struct):
    symbol_list: list[_Symbol] = []


class _Subscribe(msgspec.Struct):
    data: _SymbolList


_subscribe_decoder = msgspec.json.Decoder(_Subscribe)


def request_codes(payload: bytes) -> list[str]:
    """The codes a subscribe request we sent asks for; [] for a heartbeat or a cancel."""
    try:
        return [s.code for s in _subscribe_decoder.decode(payload).data.symbol_list]
    except msgspec.DecodeError:
        return []


_KIND_OF_CMD: dict[int, RequestKind] = {
    CMD_HEARTBEAT: "heartbeat", CMD_SUBSCRIBE_TRADES: "trades", CMD_SUBSCRIBE_DEPTH: "books",
}  # fmt: skip
_CANCEL_OF: dict[str, int] = {"trades": CANCEL_TRADES, "books": CANCEL_DEPTH}


class AllTickClient:
    """Protocol state of one AllTick connection (a ``Session``)."""

    def __init__(
        self,
        name: str,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        *,
        only_subscribed: bool = True,  # False: decode pushes for any code (checkers, tools)
    ) -> None:
        self.name = name
        self.only_subscribed = only_subscribed
        self.max_frame_bytes = max_frame_bytes
        self.events: list[Event] = []
        self.bad_messages: dict[str, int] = {}
        self.ready = True  # no auth message: the token is in the URL
        self._next_seq_id = 1
        self._pending: dict[int, _Sent] = {}
        # Codes whose pushes this connection expects: what the server acked plus what is
        # being asked for (a push may precede its ack). Anything else is counted and skipped.
        self._acked: dict[str, set[str]] = {"trades": set(), "books": set()}
        self._expects: dict[str, set[str]] = {"trades": set(), "books": set()}

    # -- requests -------------------------------------------------------------------------------
    def _request(self, cmd_id: int, data: dict[str, object], kind: RequestKind,
                 codes: list[str], cancel_type: int | None = None) -> bytes:  # fmt: skip
        seq_id = self._next_seq_id
        self._next_seq_id = seq_id % 0xFFFFFFFF + 1
        wire = WireRequest(cmd_id, seq_id, f"{self.name}-{seq_id}", data)
        request = Request(kind, tuple(codes), f"cmd {cmd_id}")
        self._pending[seq_id] = _Sent(cmd_id, codes, cancel_type, request)
        if kind in self._expects:
            self._expects[kind].update(codes)
        return _encode(wire)

    def _settle(self, ret: int, sent: _Sent | None) -> None:
        """A subscription list changed (or was refused): expect exactly the acked lists plus
        what is still being asked for."""
        if sent is not None and ret == RET_OK:
            kind = sent.request.kind
            if sent.cmd_id == CMD_CANCEL:
                for listed, cancelled in (("trades", CANCEL_TRADES), ("books", CANCEL_DEPTH)):
                    if sent.cancel_type in (CANCEL_ALL, cancelled):
                        self._acked[listed] = set()
            elif kind in self._acked:
                self._acked[kind] = set(sent.codes)
        for listed, expects in self._expects.items():
            asked = [set(s.codes) for s in self._pending.values() if s.request.kind == listed]
            expects.clear()
            expects.update(self._acked[listed].union(*asked))

    def opening(self, token: str) -> list[bytes]:
        return []  # the token is in the URL; the server says nothing until we speak

    def heartbeat(self, wall_ns: int = 0) -> bytes:
        return self._request(CMD_HEARTBEAT, {}, "heartbeat", [])

    def subscribe(self, kind: ListKind, codes: list[str], levels: int = 0) -> list[bytes]:
        """A request that REPLACES this connection's ``kind`` list with ``codes``; an empty
        list cannot be sent (the vendor answers 601): a cancel of that kind instead."""
        if not codes:
            return [self.cancel(_CANCEL_OF[kind])]
        if kind == "trades":
            return [self.subscribe_trades(codes)]
        return [self.subscribe_depth(codes, levels)]

    def subscribe_trades(self, codes: list[str]) -> bytes:
        """A request that REPLACES this connection's trade list with ``codes``."""
        data: dict[str, object] = {"symbol_list": [{"code": c} for c in codes]}
        return self._request(CMD_SUBSCRIBE_TRADES, data, "trades", codes)

    def subscribe_depth(self, codes: list[str], levels: int) -> bytes:
        """A request that REPLACES this connection's order-book list with ``codes``."""
        entries = [{"code": c, "depth_level": levels} for c in codes]
        return self._request(CMD_SUBSCRIBE_DEPTH, {"symbol_list": entries}, "books", codes)

    def cancel(self, cancel_type: int = CANCEL_TRADES) -> bytes:
        kind: RequestKind = "books" if cancel_type == CANCEL_DEPTH else "trades"
        data: dict[str, object] = {"cancel_type": cancel_type}
        return self._request(CMD_CANCEL, data, kind, [], cancel_type)

    def pending(self) -> int:
        return len(self._pending)

    def reset(self) -> None:
        """Forget in-flight requests and lists (the connection is gone; a new one starts
        with nothing subscribed)."""
        self._pending.clear()
        for codes in (*self._acked.values(), *self._expects.values()):
            codes.clear()

    # -- messages in ----------------------------------------------------------------------------
    def receive(self, message: bytes, recv_ns: int) -> Tick | Depth | None:
        """Decode one text message: a Tick or Depth, or None with any control event appended to
        ``events``."""
        msg = parse(message, self.max_frame_bytes)
        if type(msg) is TradePush:
            d = msg.data
            if self.only_subscribed and d.code not in self._expects["trades"]:
                self._bad("unsubscribed", f"trade for {d.code}, not subscribed here", message)
                return None
            return tick_of(d, recv_ns)
        if type(msg) is DepthPush:
            b = msg.data
            if self.only_subscribed and b.code not in self._expects["books"]:
                self._bad("unsubscribed", f"book for {b.code}, not subscribed here", message)
                return None
            return depth_of(b, recv_ns)
        if isinstance(msg, BadMessage):
            self.bad_messages[msg.kind] = self.bad_messages.get(msg.kind, 0) + 1
            self.events.append(msg)
            return None
        assert isinstance(msg, Response)
        sent = self._pending.pop(msg.seq_id, None)
        cmd_id = type(msg).__struct_config__.tag
        assert isinstance(cmd_id, int)
        envelope = type(msg) is EnvelopeError
        if envelope and sent is None and self._pending:
            # The oldest unanswered subscription or cancel (a heartbeat whose reply was lost,
            # in a stall, must not take it), else the oldest request.
            pending = self._pending
            first = next((s for s, r in pending.items() if r.cmd_id != CMD_HEARTBEAT), None)
            sent = pending.pop(next(iter(pending)) if first is None else first)
        if envelope:
            cmd_id = 0 if sent is None else sent.cmd_id + 1
        if cmd_id != CMD_HEARTBEAT + 1:
            self._settle(msg.ret, sent)
        request = None if sent is None else sent.request
        reply = make_reply(msg.ret, msg.msg, request, cmd_id=cmd_id, envelope=envelope)
        self.events.append(reply)
        return None

    def receive_read(self, messages: list[Message], recv_ns: int, route: Route) -> bool:
        """The messages of one socket read: a push is only peeked (its code) and handed to
        ``route`` undecoded, for the shard to decode; anything else is decoded here. True
        when one was a push or a reply to us: what shows the feed is alive (pings, pongs and
        messages counted as bad do not feed the watchdog)."""
        events = len(self.events)
        receive = self.receive
        expects = self._expects
        only_subscribed = self.only_subscribed
        alive = False
        for opcode, data in messages:
            if opcode == OPCODE_TEXT:
                key = peek(data)
                if key is None:  # a reply, or a bad message: decoded and counted here
                    item = receive(data, recv_ns)
                    if item is None:
                        continue
                    key = Peek(item.code, type(item) is Depth)  # read whole, still routed raw
                if only_subscribed and key.code not in expects["books" if key.book else "trades"]:
                    what = "book" if key.book else "trade"
                    self._bad("unsubscribed", f"{what} for {key.code}, not subscribed here", data)
                    continue
                route(key, data, recv_ns)
                alive = True
            elif opcode == OPCODE_BINARY:
                self.bad_binary(data)
        return alive or any(type(e) is Reply for e in self.events[events:])

    def bad_binary(self, message: bytes) -> None:
        self._bad("binary", "binary frame (AllTick sends text)", message)

    def _bad(self, kind: str, detail: str, message: bytes) -> None:
        self.bad_messages[kind] = self.bad_messages.get(kind, 0) + 1
        self.events.append(BadMessage(kind, detail, message[:200]))
