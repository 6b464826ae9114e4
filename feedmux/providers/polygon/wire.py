"""Polygon.io's (now Massive's) stocks WebSocket messages, sans-I/O: codes and topics, the
events of a frame (every frame is a JSON array of events: trades, quotes and statuses mixed),
each event's route key, its full decoding, and the request messages.

Nothing here holds connection state: ``split_frame`` and ``decode_push`` run anywhere.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from feedmux.model import Depth, Tick
from feedmux.providers.base import SAMPLE_BYTES, BadMessage, Peek, unreadable

MARKET = ".US"  # feedmux's suffix for the only market the stocks cluster serves
WILDCARD = "*"  # a topic's ticker for the whole market: ``T.*``
WHOLE_MARKET = WILDCARD + MARKET  # the canonical code that asks for it
TRADES, QUOTES = "T", "Q"  # topic prefixes (and event types) of trades and quotes (NBBO)
DEFAULT_MAX_FRAME_BYTES = 4 << 20  # UNCONFIRMED: none documented; a ``T.*`` array can be big

_Sym = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
# A ticker: letters, digits and share-class dots (BRK.B); anything else (a "|", a space) would
# make a code no topic or store should hold, whatever a T.* stream brings. Checked where a
# ticker is first seen (the session keeps each one's key), not on every event.
TICKER = re.compile(r"[A-Za-z0-9][A-Za-z0-9.]{0,15}")
_Seq = Annotated[int, msgspec.Meta(ge=0)]
_Millis = Annotated[int, msgspec.Meta(gt=10**12, lt=10**14)]  # SIP time, Unix ms (2001 on)
_Positive = Annotated[float, msgspec.Meta(gt=0, lt=1e15)]
_NonNegative = Annotated[float, msgspec.Meta(ge=0, lt=1e18)]


# -- codes and topics ------------------------------------------------------------------------------
def canonical(sym: str) -> str:
    """feedmux's code for a ticker: ``AAPL`` -> ``AAPL.US``, ``BRK.B`` -> ``BRK.B.US``."""
    return sym + MARKET


def vendor_code(code: str) -> str:
    """The ticker of a canonical US code (``*.US``: ``*``, the whole market)."""
    if not code.endswith(MARKET) or len(code) == len(MARKET):
        raise ValueError(f"{code} is not a US code")
    return code[: -len(MARKET)]


def topic(prefix: str, code: str) -> str:
    """A subscription topic: ``T.AAPL`` for ``AAPL.US``'s trades."""
    return f"{prefix}.{vendor_code(code)}"


def topic_code(name: str) -> tuple[str, str] | None:
    """A trade or quote topic's prefix and canonical code (``Q.BRK.B`` -> ``Q``, ``BRK.B.US``);
    None for any other topic."""
    prefix, dot, sym = name.partition(".")
    if not dot or not sym or prefix not in (TRADES, QUOTES):
        return None
    return prefix, canonical(sym)


# -- events ----------------------------------------------------------------------------------------
class TradeEvent(msgspec.Struct, tag_field="ev", tag=TRADES, gc=False):
    """A trade; the exchange, trade id, tape and conditions are not kept (not declared: skipped
    unparsed). ``ds``: the size as a decimal string, fractional shares (newer docs)."""

    sym: _Sym
    p: _Positive
    t: _Millis
    q: _Seq
    s: _NonNegative | None = None
    ds: _NonNegative | None = None


class QuoteEvent(msgspec.Struct, tag_field="ev", tag=QUOTES, gc=False):
    """The best bid and offer: a one-level book; a side priced 0 (or absent) is empty."""

    sym: _Sym
    t: _Millis
    q: _Seq
    bp: _NonNegative = 0.0
    bs: _NonNegative = 0.0
    ap: _NonNegative = 0.0
    as_: _NonNegative = msgspec.field(name="as", default=0.0)


class StatusEvent(msgspec.Struct, tag_field="ev", tag="status"):
    """The server's word on the connection, the auth or one topic of a request."""

    status: str
    message: str = ""


class TradeKey(msgspec.Struct, tag_field="ev", tag=TRADES, gc=False):
    """A trade's route key: its ticker (the rest of the event is skipped, not parsed)."""

    sym: _Sym


class QuoteKey(msgspec.Struct, tag_field="ev", tag=QUOTES, gc=False):
    """A quote's route key."""

    sym: _Sym


Head = TradeKey | QuoteKey | StatusEvent

# strict=False: "ds" is a string; a price or size sent as a string is read too.
_push_decoder = msgspec.json.Decoder(TradeEvent | QuoteEvent | StatusEvent, strict=False)
# Only what routes an event: its type and ticker (prices, sizes and times are skipped).
decode_head = msgspec.json.Decoder(Head).decode
_frame_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_encode = msgspec.json.Encoder().encode


def read_frame(payload: bytes, max_frame_bytes: int) -> list[msgspec.Raw] | BadMessage:
    """A frame's events, each still raw (its own bytes), or why the whole frame is skipped."""
    bad = unreadable(payload, max_frame_bytes)
    if bad is not None:
        return bad
    try:
        return _frame_decoder.decode(payload)
    except msgspec.ValidationError as exc:
        return BadMessage("not_array", str(exc), payload[:SAMPLE_BYTES])
    except msgspec.DecodeError as exc:
        return BadMessage("json", str(exc), payload[:SAMPLE_BYTES])


def schema_error(exc: msgspec.ValidationError, event: bytes) -> BadMessage:
    """An event of the wrong shape (an unknown ``ev``: its own kind), as a bad message."""
    detail = str(exc)
    kind = "unknown_ev" if detail.startswith("Invalid value") and "`$.ev`" in detail else "schema"
    return BadMessage(kind, detail, event[:SAMPLE_BYTES])


def head(event: msgspec.Raw) -> Head | BadMessage:
    """One event's type and ticker (a status whole), or why it is skipped."""
    try:
        return decode_head(event)
    except msgspec.ValidationError as exc:  # the frame parsed: only its shape can be wrong
        return schema_error(exc, bytes(event))


def split_frame(payload: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
                ) -> list[tuple[Peek, bytes]]:  # fmt: skip
    """Each trade and quote of a frame with its key, whatever is subscribed ([] for statuses
    or a bad frame; a bad event is left out, the others kept)."""
    events = read_frame(payload, max_frame_bytes)
    if isinstance(events, BadMessage):
        return []
    out = []
    for event in events:
        key = head(event)
        if type(key) is TradeKey and TICKER.fullmatch(key.sym):
            out.append((Peek(canonical(key.sym), False), bytes(event)))
        elif type(key) is QuoteKey and TICKER.fullmatch(key.sym):
            out.append((Peek(canonical(key.sym), True), bytes(event)))
    return out


def _side(price: float, size: float) -> list[tuple[float, float]]:
    return [(price, size)] if price > 0 else []


def decode_push(payload: bytes, recv_ns: int, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
                ) -> Tick | Depth | BadMessage:  # fmt: skip
    """One event (a trade or a quote object, as ``split_frame`` gives it), fully, with no
    connection state. Polygon gives no aggressor side: direction 0 (unknown)."""
    bad = unreadable(payload, max_frame_bytes)
    if bad is not None:
        return bad
    try:
        event = _push_decoder.decode(payload)
    except msgspec.ValidationError as exc:
        return schema_error(exc, payload)
    except msgspec.DecodeError as exc:
        return BadMessage("json", str(exc), payload[:SAMPLE_BYTES])
    if type(event) is TradeEvent:
        size = event.s if event.s is not None else event.ds
        if size is None:
            return BadMessage("schema", "trade without a size (s or ds)", payload[:SAMPLE_BYTES])
        return Tick(canonical(event.sym), event.q, event.t * 1_000_000, recv_ns, event.p, size,
                    event.p * size, 0)  # fmt: skip
    if type(event) is QuoteEvent:
        return Depth(canonical(event.sym), event.q, event.t * 1_000_000, recv_ns,
                     _side(event.bp, event.bs), _side(event.ap, event.as_))  # fmt: skip
    return BadMessage("not_push", "a status is not a push", payload[:SAMPLE_BYTES])


def status_frame(*events: tuple[str, str]) -> bytes:
    """A frame of status events, each ``(status, message)``."""
    return _encode([StatusEvent(status, message) for status, message in events])


# -- requests --------------------------------------------------------------------------------------
class WireRequest(msgspec.Struct, frozen=True):
    """A request as the server reads it: ``params`` is the token, or comma-separated topics."""

    action: str
    params: str = ""


_request_decoder = msgspec.json.Decoder(WireRequest)


def request(action: str, params: str) -> bytes:
    return _encode(WireRequest(action, params))


def parse_request(payload: bytes | str) -> WireRequest:
    """A request, decoded (``msgspec.DecodeError`` if it is none)."""
    return _request_decoder.decode(payload)


def request_codes(payload: bytes) -> list[str]:
    """The codes a subscribe request asks for (trades and quotes); [] for any other request."""
    try:
        req = parse_request(payload)
    except msgspec.DecodeError:
        return []
    if req.action != "subscribe":
        return []
    codes = (topic_code(name.strip()) for name in req.params.split(","))
    return list(dict.fromkeys(code for _, code in filter(None, codes)))
