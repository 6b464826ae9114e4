"""AllTick's stock WebSocket protocol, sans-I/O (see shared/spec/alltick.md).

``AllTickClient`` builds request frames and turns received frames into ``Tick`` objects and
control events. It owns no socket, thread or clock: the caller passes the receive time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

from feedmux.model import Depth, Tick
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


class Request(msgspec.Struct, frozen=True):
    cmd_id: int
    seq_id: int
    trace: str
    data: dict[str, object]


@dataclass(frozen=True, slots=True)
class Reply:
    """A response to one of our requests; ``request`` is what we sent (None if unknown)."""

    cmd_id: int
    ret: int
    msg: str
    seq_id: int
    request: Request | None
    envelope: bool = False  # came with cmd_id 0: the request's envelope was refused

    @property
    def ok(self) -> bool:
        return self.ret == RET_OK

    def what(self) -> str:
        """The refused request, for a log line."""
        if not self.envelope:
            return f"cmd {self.cmd_id}"
        sent = f"cmd {self.request.cmd_id}" if self.request is not None else "a request"
        return f"{sent} (an envelope error, cmd_id 0)"


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that was counted and skipped; ``sample`` is truncated for logging."""

    kind: str
    detail: str
    sample: bytes


Event = Reply | BadFrame

# -- why a connection failed: permanent (stop after --give-up-after) or transient (retry) -----
EXIT_GAVE_UP = 3  # the receiver's exit status for a permanent failure; the run's too
BODY_LINE_MAX = 120  # a server's body is quoted by one line of at most this many characters
FailureKind = Literal["token", "plan", "not_websocket", "handshake", "codes", "transient"]


class Failure(msgspec.Struct, frozen=True):
    """One classified failure. ``detail`` is one short line ("HTTP 404", "ret=401 token
    invalid") compared to tell identical failures apart; ``body`` a first line of what the
    server said, for the log only."""

    kind: FailureKind
    detail: str
    body: str = ""

    @property
    def permanent(self) -> bool:
        return self.kind != "transient"


class GiveUp(msgspec.Struct, frozen=True):
    """A permanent failure seen ``count`` times in a row: the run stops with ``message``."""

    kind: FailureKind
    message: str
    count: int


def first_line(body: bytes | str | None, limit: int = BODY_LINE_MAX) -> str:
    """The first non-blank line of a server's body, cut to ``limit`` characters."""
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def handshake_failure(status: int, body: bytes | str | None = None) -> Failure:
    """The HTTP status of a refused WebSocket handshake, classified. 401/403: the token;
    404/410 or any 2xx page: no WebSocket there; other 4xx: refused for good; 408, 429 and
    5xx: the server's trouble, retried."""
    line = first_line(body)
    detail = f"HTTP {status}"
    vendor = _vendor_refusal(body)
    if vendor is not None:  # the vendor's own verdict, in its JSON, says more than the status
        return Failure(vendor.kind, f"{detail}, {vendor.detail}", line)
    if status in (401, 403):
        return Failure("token", detail, line)
    if status in (404, 410) or 200 <= status < 300:
        return Failure("not_websocket", detail, line)
    if 400 <= status < 500 and status not in (408, 429):
        return Failure("handshake", detail, line)
    return Failure("transient", detail, line)


class _RetBody(msgspec.Struct):
    ret: int
    msg: str = ""


def _vendor_refusal(body: bytes | str | None) -> Failure | None:
    """A handshake body such as ``{"ret":401,"msg":"token invalid"}``, classified."""
    if not body or len(body) > 4096:
        return None
    try:
        parsed = msgspec.json.decode(body, type=_RetBody)
    except msgspec.DecodeError:
        return None
    return reply_failure(parsed.ret, parsed.msg)


def reply_failure(ret: int, msg: str) -> Failure | None:
    """A ``ret`` that no retry can fix (spec: 401 token, 603 plan), or None."""
    if ret == RET_TOKEN:
        return Failure("token", f"ret={ret} {first_line(msg)}")
    if ret == RET_PLAN:
        return Failure("plan", f"ret={ret} {first_line(msg)}")
    return None


def give_up_message(failure: Failure, count: int, url: str) -> str:
    """What the run says when it stops for ``failure``; ``url`` must hold no token."""
    times = f"{count} time{'s' if count != 1 else ''}"
    if failure.kind == "token":
        return f"vendor refused the token ({failure.detail}) {times}: check --token / FEEDMUX_TOKEN"
    if failure.kind == "plan":
        return (f"vendor refused the request for the plan ({failure.detail}) {times}: "
                "check the token's plan, --max-codes-per-conn, --depth")  # fmt: skip
    if failure.kind == "not_websocket":
        return f"{url} is not a WebSocket endpoint: {failure.detail} {times}: check --url"
    if failure.kind == "handshake":
        return f"{url} refused the WebSocket handshake: {failure.detail} {times}: check --url"
    return f"{failure.detail}: check --codes / --symbols-file"  # codes: one verdict, no count


def _codes_of(request: Request) -> set[str]:
    entries = request.data.get("symbol_list", [])
    assert isinstance(entries, list)
    return {entry["code"] for entry in entries}


def normalize_time(tick_time: int) -> int:
    """Vendor tick_time (seconds or milliseconds) → integer nanoseconds."""
    if tick_time < SECONDS_BELOW:
        return tick_time * 1_000_000_000
    return tick_time * 1_000_000


class AllTickClient:
    """Protocol state of one AllTick connection."""

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
        self.bad_frames: dict[str, int] = {}
        self._next_seq_id = 1
        self._pending: dict[int, Request] = {}
        # Codes whose pushes this connection expects: what the server acked plus what is
        # being asked for (a push may precede its ack). Anything else is counted and skipped.
        self._acked: dict[int, set[str]] = {CMD_SUBSCRIBE_TRADES: set(), CMD_SUBSCRIBE_DEPTH: set()}
        self._expects: dict[int, set[str]] = {CMD_SUBSCRIBE_TRADES: set(),
                                              CMD_SUBSCRIBE_DEPTH: set()}  # fmt: skip

    # -- requests -------------------------------------------------------------------------------
    def _request(self, cmd_id: int, data: dict[str, object]) -> bytes:
        seq_id = self._next_seq_id
        self._next_seq_id = seq_id % 0xFFFFFFFF + 1
        request = Request(cmd_id, seq_id, f"{self.name}-{seq_id}", data)
        self._pending[seq_id] = request
        if cmd_id in self._expects:
            self._expects[cmd_id].update(_codes_of(request))
        return _encode(request)

    def _settle(self, ret: int, request: Request | None) -> None:
        """A subscription list changed (or was refused): expect exactly the acked lists plus
        what is still being asked for."""
        if request is not None and ret == RET_OK:
            if request.cmd_id in self._acked:
                self._acked[request.cmd_id] = _codes_of(request)
            elif request.cmd_id == CMD_CANCEL:
                kind = request.data.get("cancel_type", CANCEL_ALL)
                for cmd, cancelled in ((CMD_SUBSCRIBE_TRADES, CANCEL_TRADES),
                                       (CMD_SUBSCRIBE_DEPTH, CANCEL_DEPTH)):  # fmt: skip
                    if kind in (CANCEL_ALL, cancelled):
                        self._acked[cmd] = set()
        for cmd in self._expects:
            asked = [_codes_of(r) for r in self._pending.values() if r.cmd_id == cmd]
            self._expects[cmd] = self._acked[cmd].union(*asked)

    def heartbeat(self) -> bytes:
        return self._request(CMD_HEARTBEAT, {})

    def subscribe_trades(self, codes: list[str]) -> bytes:
        """A request that REPLACES this connection's trade list with ``codes``."""
        return self._request(CMD_SUBSCRIBE_TRADES, {"symbol_list": [{"code": c} for c in codes]})

    def subscribe_depth(self, codes: list[str], levels: int) -> bytes:
        """A request that REPLACES this connection's order-book list with ``codes``."""
        entries = [{"code": c, "depth_level": levels} for c in codes]
        return self._request(CMD_SUBSCRIBE_DEPTH, {"symbol_list": entries})

    def cancel(self, cancel_type: int = CANCEL_TRADES) -> bytes:
        return self._request(CMD_CANCEL, {"cancel_type": cancel_type})

    def pending(self) -> int:
        return len(self._pending)

    def reset(self) -> None:
        """Forget in-flight requests and lists (the connection is gone; a new one starts
        with nothing subscribed)."""
        self._pending.clear()
        for codes in (*self._acked.values(), *self._expects.values()):
            codes.clear()

    # -- frames in ------------------------------------------------------------------------------
    def receive(self, frame: bytes, recv_ns: int) -> Tick | Depth | None:
        """Decode one text frame: a Tick or Depth, or None with any control event appended to
        ``events``."""
        if len(frame) > self.max_frame_bytes:
            self._bad("oversized", f"{len(frame)} bytes > {self.max_frame_bytes}", frame)
            return None
        if not frame.isascii():  # vendor JSON is ASCII: only others pay for a decode
            try:  # msgspec checks only the strings it keeps, not the fields it skips
                frame.decode()
            except UnicodeDecodeError as exc:
                self._bad("utf8", f"text frame is not UTF-8 ({exc.reason} at {exc.start})", frame)
                return None
        try:
            msg = _decoder.decode(frame)
        except msgspec.ValidationError as exc:
            detail = str(exc)
            self._bad("unknown_cmd" if detail.endswith("`$.cmd_id`") else "schema", detail, frame)
            return None
        except msgspec.DecodeError as exc:
            self._bad("json", str(exc), frame)
            return None
        if type(msg) is TradePush:
            d = msg.data
            if self.only_subscribed and d.code not in self._expects[CMD_SUBSCRIBE_TRADES]:
                self._bad("unsubscribed", f"trade for {d.code}, not subscribed here", frame)
                return None
            return Tick(
                d.code,
                d.seq,
                normalize_time(d.tick_time),
                recv_ns,
                d.price,
                d.volume,
                d.turnover,
                d.trade_direction,
            )
        if type(msg) is DepthPush:
            b = msg.data
            if self.only_subscribed and b.code not in self._expects[CMD_SUBSCRIBE_DEPTH]:
                self._bad("unsubscribed", f"book for {b.code}, not subscribed here", frame)
                return None
            return Depth(
                b.code,
                b.seq,
                normalize_time(b.tick_time),
                recv_ns,
                [(level.price, level.volume) for level in b.bids],
                [(level.price, level.volume) for level in b.asks],
            )
        assert isinstance(msg, Response)
        request = self._pending.pop(msg.seq_id, None)
        cmd_id = type(msg).__struct_config__.tag
        assert isinstance(cmd_id, int)
        envelope = type(msg) is EnvelopeError
        if envelope and request is None and self._pending:
            # The oldest unanswered subscription or cancel (a heartbeat whose reply was lost,
            # in a stall, must not take it), else the oldest request.
            pending = self._pending
            first = next((s for s, r in pending.items() if r.cmd_id != CMD_HEARTBEAT), None)
            request = pending.pop(next(iter(pending)) if first is None else first)
        if envelope:
            cmd_id = 0 if request is None else request.cmd_id + 1
        if cmd_id != CMD_HEARTBEAT + 1:
            self._settle(msg.ret, request)
        self.events.append(Reply(cmd_id, msg.ret, msg.msg, msg.seq_id, request, envelope))
        return None

    def receive_read(
        self, messages: list[Message], recv_ns: int, add: Callable[[Tick | Depth], None]
    ) -> bool:
        """Decode the messages of one socket read, handing each tick and book to ``add``.
        True when one was a push or a reply to us: what shows the feed is alive (pings,
        pongs and frames counted as bad do not feed the watchdog)."""
        events = len(self.events)
        receive = self.receive
        alive = False
        for opcode, data in messages:
            if opcode == OPCODE_TEXT:
                item = receive(data, recv_ns)
                if item is not None:
                    add(item)
                    alive = True
            elif opcode == OPCODE_BINARY:
                self.bad_binary(data)
        return alive or any(type(e) is Reply for e in self.events[events:])

    def bad_binary(self, frame: bytes) -> None:
        self._bad("binary", "binary frame (AllTick sends text)", frame)

    def _bad(self, kind: str, detail: str, frame: bytes) -> None:
        self.bad_frames[kind] = self.bad_frames.get(kind, 0) + 1
        self.events.append(BadFrame(kind, detail, frame[:200]))
