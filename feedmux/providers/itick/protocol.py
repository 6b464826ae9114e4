"""iTick's stock WebSocket client protocol, sans-I/O: ``ITickClient`` is one connection's
``providers.base.Session``.

The conversation: the token goes in the handshake (header ``token``); the server greets
(``{"code":1,"msg":"Connected Successfully"}``), then says ``resAc":"auth"`` (``ready`` from
then on) or ``auth failed`` and hangs up. Subscriptions are ``{"ac":"subscribe"|"unsubscribe",
"params":"600519$SH,700$HK","types":"tick"|"depth"}``; the server answers each message in
order, with no id (``resAc":"subscribe"``), so a change's messages are matched first in, first
out and make ONE ``Reply`` once all are answered (or at the first refusal). The heartbeat is
``{"ac":"ping","params":"<ms timestamp>"}`` (the manager passes the time of day), answered by a
pong naming the same.

Pushes carry no sequence number: each tick's identity is made here and in the decode
(``identity``): the receiver counts each code's pushes in their ms and marks the push it hands
on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

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
    Route,
    SessionOptions,
    first_line,
)
from feedmux.providers.itick import identity
from feedmux.providers.itick.symbols import canonical, request_params
from feedmux.providers.itick.wire import (
    PeekDepth,
    PeekTick,
    QuoteData,
    WireRequest,
    book_ms,
    checked,
    decode_push,
    encode,
    parse_answer,
    peek_decoder,
)
from feedmux.transports.frames import OPCODE_BINARY, OPCODE_TEXT, Message

TYPES: dict[ListKind, str] = {"trades": "tick", "books": "depth"}
CODE_OK = 1
PLAN_LIMIT = "exceeding the maximum subscription limit"  # the plan's cap: no retry fixes it
AUTH = Request("auth", label="auth")


@dataclass(slots=True)
class _Change:
    """One ``subscribe`` call: the list it makes, and its messages still unanswered."""

    request: Request
    unanswered: int = 0
    reported: bool = False  # its Reply went out (a refusal goes out at once)


@dataclass(frozen=True, slots=True)
class _Sent:
    change: _Change
    ac: str  # subscribe / unsubscribe
    codes: tuple[str, ...]
    replace: bool  # the server's list becomes ``codes`` (the "replace" model)

    @property
    def label(self) -> str:
        return f"{self.ac} {TYPES[self.kind]} ({len(self.codes)} codes)"

    @property
    def kind(self) -> ListKind:
        kind = self.change.request.kind
        assert kind in ("trades", "books")
        return kind

    def apply(self, codes: set[str]) -> None:
        """What the server holds once it accepts this message."""
        if self.replace:
            codes.clear()
        if self.ac == "unsubscribe":
            codes.difference_update(self.codes)
        else:
            codes.update(self.codes)


def answer_reply(code: int, msg: str, request: Request | None, label: str, *,
                 again: bool = False) -> Reply:  # fmt: skip
    """iTick's answer to a subscription message, classified. Over the plan's cap: a failure.
    Any other refusal names no code: the first time, a one-off (sent again after a backoff);
    ``again`` (the same codes refused twice running), a code in it is bad (the manager finds
    which)."""
    if code == CODE_OK:
        return Reply("ok", code, msg, request, label=label)
    if PLAN_LIMIT in msg:
        failure = Failure("plan", f"code={code} {first_line(msg)}")
        return Reply("refused", code, msg, request, failure=failure, label=label)
    if again:
        return Reply("bad_code", code, msg, request, label=label)
    return Reply("refused", code, msg, request, envelope=True, label=label)


class ITickClient:
    """Protocol state of one iTick connection (a ``Session``)."""

    def __init__(self, name: str, options: SessionOptions, *,
                 only_subscribed: bool = True) -> None:  # fmt: skip
        """``only_subscribed``: False decodes pushes for any code (checkers, tools)."""
        self.name = name
        self.options = options
        self.only_subscribed = only_subscribed
        self.events: list[Event] = []
        self.bad_messages: dict[str, int] = {}
        self.ready = False  # until the server says the handshake's token is good
        self._pending: deque[_Sent] = deque()  # answered in order, with no id
        # What the server holds, as its answers say; and the codes whose pushes may come:
        # that, plus what is being asked for or dropped (a push may precede an answer).
        self._held: dict[ListKind, set[str]] = {"trades": set(), "books": set()}
        self._expects: dict[ListKind, set[str]] = {"trades": set(), "books": set()}
        self._ticks = identity.Arrivals()  # each code's pushes in its current ms, here
        self._books = identity.Arrivals()
        self._refused: tuple[str, ...] = ()  # the codes of the last subscribe refused
        self._pings = 0
        self._ping: str | None = None  # the last ping's params, until its pong
        self._keys: dict[bool, dict[str, Peek]] = {False: {}, True: {}}  # by book, code

    # -- requests -------------------------------------------------------------------------------
    def opening(self, token: str) -> list[bytes]:
        return []  # the token went in the handshake; the server speaks first

    def heartbeat(self, wall_ns: int = 0) -> bytes:
        """``{"ac":"ping","params":"<ms timestamp>"}``; its pong must name the same (a later
        ping in the same ms names the next ms: each is its own)."""
        self._pings = max(self._pings + 1, wall_ns // 1_000_000)
        self._ping = str(self._pings)
        return encode(WireRequest("ping", self._ping))

    def subscribe(self, kind: ListKind, codes: list[str], levels: int = 0) -> list[bytes]:
        """Messages that make this connection's ``kind`` list exactly ``codes``: with
        ``add_remove``, the codes to drop (first: room under the cap) then those to add, each
        at most ``codes_per_request`` a message; with ``replace``, the whole list in one (a
        list replaced in parts would keep only its last part), or unsubscribing all for none.
        Nothing to change: an "ok" at once. iTick's books have no level count: ``levels`` is
        not sent."""
        wanted = list(dict.fromkeys(codes))
        change = _Change(Request(kind, tuple(wanted), f"{TYPES[kind]} subscription"))
        believed = self._believed(kind)
        replace = self.options.subscribe_model == "replace"
        parts: list[tuple[str, list[str], bool]] = []
        if replace and wanted:
            parts.append(("subscribe", wanted, True))
        else:
            keep, held = set(wanted), set(believed)
            parts += self._chunks("unsubscribe", [c for c in believed if c not in keep])
            parts += self._chunks("subscribe", [c for c in wanted if c not in held])
        if not parts:
            self.events.append(Reply("ok", CODE_OK, "no change", change.request, label="none"))
            return []
        change.unanswered = len(parts)
        out = []
        for ac, part, whole in parts:
            if ac == "subscribe":  # a latest trade pushed again is a re-send: numbered anew
                (self._ticks if kind == "trades" else self._books).forget(tuple(part))
            self._pending.append(_Sent(change, ac, tuple(part), whole))
            out.append(encode(WireRequest(ac, request_params(part), TYPES[kind])))
        self._settle()
        return out

    def _chunks(self, ac: str, codes: list[str]) -> list[tuple[str, list[str], bool]]:
        size = self.options.codes_per_request
        return [(ac, codes[i : i + size], False) for i in range(0, len(codes), size)]

    def _believed(self, kind: ListKind) -> list[str]:
        """What the server will hold once every message in flight is accepted."""
        codes = set(self._held[kind])
        for sent in self._pending:
            if sent.kind == kind:
                sent.apply(codes)
        return sorted(codes)

    def _settle(self) -> None:
        for kind, expects in self._expects.items():
            expects.clear()
            expects.update(self._held[kind])
            for sent in self._pending:
                if sent.kind == kind:
                    expects.update(sent.codes)

    def pending(self) -> int:
        return len(self._pending) + (self._ping is not None)

    def reset(self) -> None:
        """The connection is gone: a new one authenticates, holds nothing and counts
        identical pushes afresh."""
        self.ready = False
        self._pending.clear()
        self._ping = None
        self._ticks.clear()
        self._books.clear()
        for codes in (*self._held.values(), *self._expects.values()):
            codes.clear()

    # -- messages in ----------------------------------------------------------------------------
    def receive(self, payload: bytes, recv_ns: int) -> Tick | Depth | None:
        """One text message: a tick or book (decoded here), or None with any event."""
        routed = self._push(payload, recv_ns)
        if isinstance(routed, bool):
            return None
        item = decode_push(routed[1], recv_ns, self.options.max_frame_bytes)
        if isinstance(item, BadMessage):
            self._count(item)
            return None
        return item

    def receive_read(self, messages: list[Message], recv_ns: int, route: Route) -> bool:
        """The messages of one socket read: each push for a code subscribed here goes to
        ``route`` undecoded (a push marked with its arrival in its ms); the rest is read here. True
        when one was a push, or a reply or greeting: what shows the feed is alive (messages
        counted as bad do not)."""
        alive = False
        push = self._push
        for opcode, data in messages:
            if opcode == OPCODE_TEXT:
                routed = push(data, recv_ns)
                if isinstance(routed, bool):
                    alive = routed or alive
                    continue
                route(routed[0], routed[1], recv_ns)
                alive = True
            elif opcode == OPCODE_BINARY:
                self.bad_binary(data)
        return alive

    def _push(self, payload: bytes, recv_ns: int) -> tuple[Peek, bytes] | bool:
        """A push's key and the bytes that go on (its arrival in its ms
        marked); for anything else, whether it showed a live server (a reply, a quote: not a
        bad message)."""
        try:
            data = peek_decoder.decode(payload).data
        except msgspec.DecodeError:
            return self._answer(payload)
        if type(data) is QuoteData:  # never asked for: counted, not warned about
            self.bad_messages["quote"] = self.bad_messages.get("quote", 0) + 1
            return True
        code = canonical(data.s)
        if code is None:
            self._bad("code", f"no code iTick serves here: {data.s!r}", payload)
            return False
        book = type(data) is not PeekTick
        if self.only_subscribed and code not in self._expects["books" if book else "trades"]:
            what = "book" if book else "trade"
            self._bad("unsubscribed", f"{what} for {code}, not subscribed here", payload)
            return False
        keys = self._keys[book]
        key = keys.get(code)
        if key is None:
            key = keys[code] = Peek(code, book)
        if type(data) is PeekTick:
            arrival = self._ticks.count(code, data.t)
        else:
            assert type(data) is PeekDepth
            arrival = self._books.count(code, book_ms(data.t, recv_ns))
        return key, identity.mark(payload, arrival) if arrival else payload

    def _answer(self, payload: bytes) -> bool:
        """A message that is no push: the greeting, a reply, or a bad message. True when it
        came from a live server (a bad message does not count)."""
        answer = checked(payload, self.options.max_frame_bytes) or parse_answer(payload)
        if isinstance(answer, BadMessage):
            self._count(answer)
            return False
        msg = answer.msg or ""
        code = CODE_OK if answer.code is None else answer.code
        if answer.resAc == "auth":
            if code == CODE_OK:
                self.ready = True
                self.events.append(Reply("ok", code, msg, AUTH, label="auth"))
            else:
                failure = Failure("token", f"code={code} {first_line(msg)}")
                self.events.append(Reply("refused", code, msg, AUTH, failure=failure,
                                         label="auth"))  # fmt: skip
            return True
        if answer.resAc in ("subscribe", "unsubscribe"):
            self._subscription_answer(code, msg)
            return True
        if answer.resAc == "pong":
            params = "" if answer.data is None else str(answer.data.params)
            if self._ping is None or params != self._ping:
                self._bad("pong", f"pong {params!r}, last ping {self._ping!r}", payload)
                return False
            self._ping = None
            return True
        if not answer.resAc and code == CODE_OK and answer.data is None:
            return True  # the greeting
        kind = "error" if code != CODE_OK else "unknown"
        self._bad(kind, f"code={code} resAc={answer.resAc!r} {first_line(msg)}", payload)
        return False

    def _subscription_answer(self, code: int, msg: str) -> None:
        if not self._pending:
            self.events.append(answer_reply(code, msg, None, "an answer to no request"))
            return
        sent = self._pending.popleft()
        change = sent.change
        change.unanswered -= 1
        if code == CODE_OK:
            sent.apply(self._held[sent.kind])
        self._settle()
        if change.reported or (code == CODE_OK and change.unanswered):
            return  # the change's Reply went out already, or more answers are due
        change.reported = True
        label = change.request.label if code == CODE_OK else sent.label  # what was refused
        again = code != CODE_OK and sent.ac == "subscribe" and sent.codes == self._refused
        if sent.ac == "subscribe":
            self._refused = () if code == CODE_OK else sent.codes
        self.events.append(answer_reply(code, msg, change.request, label, again=again))

    def bad_binary(self, payload: bytes) -> None:
        self._bad("binary", "binary frame (iTick sends text)", payload)

    def _bad(self, kind: str, detail: str, payload: bytes) -> None:
        self._count(BadMessage(kind, detail, payload[:200]))

    def _count(self, event: BadMessage) -> None:
        self.bad_messages[event.kind] = self.bad_messages.get(event.kind, 0) + 1
        self.events.append(event)
