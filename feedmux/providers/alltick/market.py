"""The replay server's AllTick frames: synthetic trades and books as AllTick pushes them, and
the broken frames a hostile server might send."""

from __future__ import annotations

from feedmux.providers.base import Trade
from feedmux.transports.frames import OPCODE_BINARY, OPCODE_TEXT

_TRADE_FORMATS = (
    # Every shape AllTick is known to send: seq and tick_time as int or string, seconds or ms.
    b'{"cmd_id":22998,"data":{"code":"%s","seq":%d,"tick_time":%d,'
    b'"price":"%.2f","volume":"%d","turnover":"%.2f","trade_direction":%d}}',
    b'{"cmd_id":22998,"data":{"code":"%s","seq":"%d","tick_time":"%d",'
    b'"price":"%.2f","volume":"%d","turnover":"%.2f","trade_direction":%d}}',
)


def trade_frame(trade: Trade) -> bytes:
    """One 22998 frame; ``trade.variant`` picks its shape (one in four gives tick_time in
    seconds, as AllTick's samples do)."""
    tick_time = trade.time_ms // 1000 if trade.variant == 3 else trade.time_ms
    return _TRADE_FORMATS[trade.variant & 1] % (
        trade.code.encode(),
        trade.seq,
        tick_time,
        trade.price,
        trade.volume,
        trade.price * trade.volume,
        trade.direction,  # AllTick's trade_direction means what feedmux's does
    )


def book_frame(code: str, seq: int, time_ms: int, bids: list[tuple[float, int]],
               asks: list[tuple[float, int]]) -> bytes:  # fmt: skip
    """One 22999 frame."""
    side = [b",".join(b'{"price":"%.2f","volume":"%d"}' % level for level in levels)
            for levels in (bids, asks)]  # fmt: skip
    return b'{"cmd_id":22999,"data":{"code":"%s","seq":%d,"tick_time":%d,"bids":[%s],' \
        b'"asks":[%s]}}' % (code.encode(), seq, time_ms, side[0], side[1])  # fmt: skip


# Frames a broken or hostile server might send: each must be counted and skipped, never fatal.
# (A frame over --max-frame-bytes is a link fault instead: refused from its header, link dropped.)
_BAD_TRADE = (
    b'{"cmd_id":22998,"data":{"code":"%s","seq":%s,"tick_time":%s,"price":%s,"volume":"1"}}'
)
GARBAGE_FRAMES: tuple[tuple[int, bytes], ...] = (
    (OPCODE_TEXT, b'{"cmd_id":22998,"data":{"code":"600519.SH","seq":'),  # truncated JSON
    (OPCODE_TEXT, b"not json at all"),
    (OPCODE_TEXT, _BAD_TRADE % (b"600519.SH", b'"x"', b"1", b'"1.00"')),  # wrong type
    (OPCODE_TEXT, b'{"cmd_id":22998,"data":{"code":"600519.SH"}}'),  # missing fields
    (OPCODE_TEXT, _BAD_TRADE % (b"600519.SH", b"1", b"1", b'"0"')),  # zero price
    (OPCODE_TEXT, _BAD_TRADE % (b"600519.SH", b"1", b"1", b'"-5.00"')),  # negative price
    (OPCODE_TEXT, _BAD_TRADE % (b"600519.SH", b"1", b"1", b'"abc"')),  # non-numeric price
    (OPCODE_TEXT, _BAD_TRADE % (b"", b"1", b"1", b'"1.00"')),  # empty code
    (OPCODE_TEXT, b'{"cmd_id":31337,"data":{}}'),  # unknown cmd_id
    (OPCODE_TEXT, _BAD_TRADE % (b"999999.SH", b"1", b"1", b'"1.00"')),  # never subscribed
    (
        OPCODE_TEXT,
        _BAD_TRADE[:-2] % (b"600519.SH", b"1", b"1", b'"1.00"') + b',"note":"\xff\xfe"}}',
    ),  # invalid UTF-8 in a field the decoder skips
    (OPCODE_BINARY, b"\x00\x01\x02 binary"),
)
