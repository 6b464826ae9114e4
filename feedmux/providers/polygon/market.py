"""The replay server's Polygon frames: synthetic trades and quotes as the stocks cluster pushes
them (event objects, packed into JSON arrays), and the broken frames a hostile server might
send."""

from __future__ import annotations

from feedmux.providers.base import Trade
from feedmux.providers.polygon.wire import vendor_code
from feedmux.transports.frames import OPCODE_BINARY, OPCODE_TEXT

PACK_EVENTS = 100  # events per frame at most, as the server batches them

# Every shape the vendor's docs and mock server show: conditions or none, the trade reporting
# facility's fields, the size as an int or as a decimal string (fractional shares).
_TRADE_FORMATS = (
    b'{"ev":"T","sym":"%s","i":"%d","x":%d,"p":%r,"s":%d,"c":[14,41],"t":%d,"q":%d,"z":%d}',
    b'{"ev":"T","sym":"%s","i":"%d","x":%d,"p":%r,"s":%d,"t":%d,"q":%d,"z":%d}',
    b'{"ev":"T","sym":"%s","i":"%d","x":%d,"p":%r,"s":%d,"c":[12],"t":%d,"q":%d,"z":%d,'
    b'"trfi":202,"trft":1}',
    b'{"ev":"T","sym":"%s","i":"%d","x":%d,"p":%r,"ds":"%d","t":%d,"q":%d,"z":%d}',
)


def trade_frame(trade: Trade) -> bytes:
    """One ``T`` event; ``trade.variant`` picks its shape. The vendor gives no aggressor side:
    ``trade.direction`` is not sent."""
    seq = trade.seq
    return _TRADE_FORMATS[trade.variant & 3] % (
        vendor_code(trade.code).encode(), seq % 1_000_000_000, 1 + seq % 19, trade.price,
        trade.volume, trade.time_ms, seq, 1 + seq % 3,
    )  # fmt: skip


def book_frame(code: str, seq: int, time_ms: int, bids: list[tuple[float, int]],
               asks: list[tuple[float, int]]) -> bytes:  # fmt: skip
    """One ``Q`` event: the best level of each side (an empty side: price and size 0)."""
    bid = bids[0] if bids else (0.0, 0)
    ask = asks[0] if asks else (0.0, 0)
    return (b'{"ev":"Q","sym":"%s","bx":%d,"bp":%r,"bs":%d,"ax":%d,"ap":%r,"as":%d,"c":1,'
            b'"i":[604],"t":%d,"q":%d,"z":%d}') % (
        vendor_code(code).encode(), 1 + seq % 19, float(bid[0]), bid[1], 1 + seq % 17,
        float(ask[0]), ask[1], time_ms, seq, 1 + seq % 3,
    )  # fmt: skip


def pack(pushes: list[bytes]) -> list[bytes]:
    """Events in JSON arrays of at most ``PACK_EVENTS``, as the server sends them."""
    return [b"[" + b",".join(pushes[i : i + PACK_EVENTS]) + b"]"
            for i in range(0, len(pushes), PACK_EVENTS)]  # fmt: skip


# Frames a broken or hostile server might send: each is counted once (by the session, or by
# the decoder of a push whose ticker can be read) and skipped, never fatal, and yields no tick.
# (The code of their pushes is AAPL: subscribed wherever these are sent in tests.)
_STATUS = b'{"ev":"status","status":"connected","message":"Connected Successfully"}'


def _trade(sym: bytes = b"AAPL", price: bytes = b"1.5", extra: bytes = b"") -> bytes:
    return b'{"ev":"T","sym":"%s","i":"1","x":4,"p":%s,"s":100,"t":1,"q":1,"z":3%s}' % (
        sym, price, extra)  # fmt: skip


def _array(*events: bytes) -> bytes:
    return b"[" + b",".join(events) + b"]"


GARBAGE_FRAMES: tuple[tuple[int, bytes], ...] = (
    (OPCODE_TEXT, b'[{"ev":"T","sym":"AAPL","p":'),  # truncated JSON
    (OPCODE_TEXT, b"not json at all"),
    (OPCODE_TEXT, _trade()),  # an event, not an array of them
    (OPCODE_TEXT, _array(_STATUS, _trade(price=b"0"))),  # a bad event (zero price) and a good one
    (OPCODE_TEXT, _array(_trade(price=b'"abc"'))),  # wrong type
    (OPCODE_TEXT, _array(_trade(price=b"-5.0"))),  # negative price
    (OPCODE_TEXT, b'[{"ev":"T","sym":"AAPL","p":1.5}]'),  # missing fields
    (OPCODE_TEXT, b'[{"ev":"T","sym":17}]'),  # a ticker that is no string
    (OPCODE_TEXT, _array(_trade(sym=b""))),  # empty ticker
    (OPCODE_TEXT, b'[{"ev":"XQ","sym":"AAPL"}]'),  # unknown event type
    (OPCODE_TEXT, b"[null]"),  # an event that is no object
    (OPCODE_TEXT, _array(_trade(sym=b"ZZZZZZ"))),  # never subscribed (no such ticker)
    (OPCODE_TEXT, _array(_trade(extra=b',"note":"\xff\xfe"'))),  # invalid UTF-8, skipped field
    (OPCODE_BINARY, b"\x00\x01\x02 binary"),
)
