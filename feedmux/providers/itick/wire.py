"""iTick's stock WebSocket messages, sans-I/O: typed shapes, the push decoder and the peek.

A push is ``{"code":1,"data":{...,"type":"tick"|"quote"|"depth"}}``, one per message; a reply
carries ``resAc`` (``auth``, ``subscribe``, ``pong``) or is the greeting. ``peek`` reads what the
receiver needs of a push (a tick's identity content, a book's code); ``decode_push`` turns one
push, with its arrival marker (``identity``), into a ``Tick`` or ``Depth`` in any process.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Annotated

import msgspec

from feedmux.model import Depth, Tick
from feedmux.providers.base import SAMPLE_BYTES, BadMessage, Peek, unreadable
from feedmux.providers.itick import identity
from feedmux.providers.itick.symbols import canonical

DEFAULT_MAX_FRAME_BYTES = 64 * 1024  # a tick is ~120 bytes, a 10-level book ~1 KiB
# iTick's d: 0 neutral, 1 sell, 2 buy; feedmux's: 0 unknown, 1 buy, 2 sell
DIRECTION = (0, 2, 1)

_Code = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
_Positive = Annotated[float, msgspec.Meta(gt=0, lt=1e15)]
_NonNegative = Annotated[float, msgspec.Meta(ge=0, lt=1e18)]
_Millis = Annotated[int, msgspec.Meta(gt=0, lt=1 << 41)]  # the seq's 41 bits of time


class TickData(msgspec.Struct, tag_field="type", tag="tick", gc=False):
    s: _Code
    ld: _Positive
    t: _Millis
    v: _NonNegative
    d: Annotated[int, msgspec.Meta(ge=0, le=2)] = 0
    te: Annotated[int, msgspec.Meta(ge=0, le=255)] = 0  # session: 0 regular, 1 pre, 2 after


class Level(msgspec.Struct, gc=False):
    p: _Positive
    v: _NonNegative
    po: Annotated[int, msgspec.Meta(ge=0)] = 0  # position: 1 is the best


class DepthData(msgspec.Struct, tag_field="type", tag="depth", gc=False):
    s: _Code
    a: list[Level] = []
    b: list[Level] = []
    t: _Millis | None = None  # not documented: the read time stands in


class QuoteData(msgspec.Struct, tag_field="type", tag="quote", gc=False):
    """A day's OHLC snapshot: no feedmux family takes it (never asked for, counted)."""

    s: str = ""


class Push(msgspec.Struct, gc=False):
    data: TickData | DepthData | QuoteData


class PeekTick(msgspec.Struct, tag_field="type", tag="tick", gc=False):
    s: _Code  # price, volume and the rest are skipped, not parsed: the shard checks them
    t: _Millis


class PeekDepth(msgspec.Struct, tag_field="type", tag="depth", gc=False):
    s: _Code  # levels are skipped, not parsed
    t: _Millis | None = None


class PeekPush(msgspec.Struct, gc=False):
    """What the receiver reads of a push: its code and time only (its identity and route)."""

    data: PeekTick | PeekDepth | QuoteData


class AnswerData(msgspec.Struct):
    params: str | int = ""
    type: str = ""  # set: a push that did not validate


class Answer(msgspec.Struct):
    """Anything that is no valid push: the greeting, a reply, an error."""

    code: int | None = None
    resAc: str = ""  # noqa: N815 (iTick's name)
    msg: str | None = None
    data: AnswerData | None = None


class WireRequest(msgspec.Struct, omit_defaults=True):
    """A request as iTick reads it."""

    ac: str
    params: str = ""
    types: str = ""


# strict=False: a number sent as a string ("225.21") is read as the number.
_push_decoder = msgspec.json.Decoder(Push, strict=False)
peek_decoder = msgspec.json.Decoder(PeekPush, strict=False)
_reply_decoder = msgspec.json.Decoder(Answer, strict=False)
_request_decoder = msgspec.json.Decoder(WireRequest)
encode = msgspec.json.Encoder().encode
PUSH_TYPES = frozenset(("tick", "depth", "quote"))


def bad(kind: str, detail: str, payload: bytes) -> BadMessage:
    return BadMessage(kind, detail, payload[:SAMPLE_BYTES])


checked = unreadable  # why a message cannot be read at all (too big, not UTF-8), or None


def parse_answer(payload: bytes) -> Answer | BadMessage:
    """A message that is no valid push: a reply, or why it was skipped."""
    try:
        reply = _reply_decoder.decode(payload)
    except msgspec.ValidationError as exc:
        return bad("schema", str(exc), payload)
    except msgspec.DecodeError as exc:
        return bad("json", str(exc), payload)
    kind = reply.data.type if reply.data is not None else ""
    if kind in PUSH_TYPES:  # a push that broke a rule: say which
        try:
            _push_decoder.decode(payload)
        except msgspec.DecodeError as exc:
            return bad("schema", str(exc), payload)
    if kind:
        return bad("unknown_type", f"push type {kind!r}", payload)
    return reply


def tick_of(d: TickData, code: str, arrival: int, recv_ns: int) -> Tick:
    price, volume, t_ms, direction = d.ld, d.v, d.t, DIRECTION[d.d]
    seq = identity.seq_of(t_ms, arrival)
    # iTick gives no turnover for stocks: one trade's is its price times its volume.
    return Tick(code, seq, t_ms * 1_000_000, recv_ns, price, volume, price * volume, direction)


_POSITION = attrgetter("po")


def book_ms(t: int | None, recv_ns: int) -> int:
    """A book's ms: its own if it names one, else the one it was read in."""
    return recv_ns // 1_000_000 if t is None else t


def depth_of(b: DepthData, code: str, arrival: int, recv_ns: int) -> Depth:
    bids = [(level.p, level.v) for level in sorted(b.b, key=_POSITION)]
    asks = [(level.p, level.v) for level in sorted(b.a, key=_POSITION)]
    seq = identity.seq_of(book_ms(b.t, recv_ns), arrival)
    time_ns = recv_ns if b.t is None else b.t * 1_000_000
    return Depth(code, seq, time_ns, recv_ns, bids, asks)


def decode_push(
    payload: bytes, recv_ns: int, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> Tick | Depth | BadMessage:
    """One push as the receiver handed it on (its arrival marked in front, if any), fully,
    with no connection state (``Provider.decode``)."""
    arrival, message = 0, payload
    if payload[:1] != b"{":  # a marker (or a bad message)
        unmarked = identity.unmark(payload)
        if unmarked is None:
            return bad("marker", "bad arrival marker", payload)
        arrival, message = unmarked
    refused = checked(message, max_frame_bytes)
    if refused is not None:
        return refused
    try:
        data = _push_decoder.decode(message).data
    except msgspec.DecodeError:
        reply = parse_answer(message)
        if isinstance(reply, BadMessage):
            return reply
        return bad("not_push", f"resAc {reply.resAc!r} is not a push", message)
    if type(data) is QuoteData:
        return bad("quote", "a quote (no family takes it)", message)
    assert type(data) is TickData or type(data) is DepthData
    code = canonical(data.s)
    if code is None:
        return bad("code", f"no code iTick serves here: {data.s!r}", message)
    if type(data) is TickData:
        return tick_of(data, code, arrival, recv_ns)
    assert type(data) is DepthData
    return depth_of(data, code, arrival, recv_ns)


def peek(payload: bytes) -> Peek | None:
    """A push's route key (its canonical code, and whether it is a book) from the vendor's
    bytes; None for a quote, a reply or a bad message."""
    try:
        data = peek_decoder.decode(payload).data
    except msgspec.DecodeError:
        return None
    if type(data) is QuoteData:
        return None
    code = canonical(data.s)
    return None if code is None else Peek(code, type(data) is PeekDepth)


def request(payload: bytes | str) -> WireRequest | None:
    """A request as the server reads it; None if it is none."""
    try:
        return _request_decoder.decode(payload)
    except msgspec.DecodeError:
        return None
