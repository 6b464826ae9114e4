"""The replay server's iTick frames: synthetic trades and books as iTick pushes them, and the
broken frames a hostile server might send."""

from __future__ import annotations

from feedmux.providers.base import Trade
from feedmux.providers.itick.wire import DIRECTION
from feedmux.transports.frames import OPCODE_BINARY, OPCODE_TEXT

_TRADE = b'{"code":1,"data":{"s":"%s","ld":%.2f,"t":%d,"v":%d,"d":%d,"te":%d,"type":"tick"}}'
_LEVEL = b'{"po":%d,"p":%.2f,"v":%d,"o":%d}'
_BOOK = b'{"code":1,"data":{"s":"%s","a":[%s],"b":[%s],"type":"depth"}}'


def spelling(code: str, variant: int) -> str:
    """How a push names ``code``: dotted (``AAPL.US``, as iTick's samples do) for even
    variants, bare (``600519``, as its tick sample does) for odd ones; Hong Kong's
    zero-padded (``00700``) for variants 2 and 3."""
    symbol, _, region = code.rpartition(".")
    if region == "HK" and variant >= 2:
        symbol = f"{int(symbol):05d}"
    return symbol if variant & 1 else f"{symbol}.{region}"


def trade_frame(trade: Trade) -> bytes:
    """One tick push; ``trade.variant`` picks the code's spelling (and, for a US code, an
    extended-hours session now and then). iTick has no seq: ``trade.seq`` is not sent."""
    session = 2 if trade.variant == 2 and trade.code.endswith(".US") else 0
    return _TRADE % (spelling(trade.code, trade.variant).encode(), trade.price, trade.time_ms,
                     trade.volume, DIRECTION[trade.direction], session)  # fmt: skip


def book_frame(code: str, seq: int, time_ms: int, bids: list[tuple[float, int]],
               asks: list[tuple[float, int]]) -> bytes:  # fmt: skip
    """One depth push: positions from 1 (the best); no time, as iTick documents it."""
    sides = [b",".join(_LEVEL % (i, price, volume, max(1, volume // 100))
                       for i, (price, volume) in enumerate(levels, 1))
             for levels in (asks, bids)]  # fmt: skip
    return _BOOK % (code.encode(), sides[0], sides[1])


# Frames a broken or hostile server might send: each must be counted and skipped, never fatal.
_BAD_TICK = b'{"code":1,"data":{"s":"%s","ld":%s,"t":%s,"v":100,"type":"tick"}}'
GARBAGE_FRAMES: tuple[tuple[int, bytes], ...] = (
    (OPCODE_TEXT, b'{"code":1,"data":{"s":"600519.SH","ld":17'),  # truncated JSON
    (OPCODE_TEXT, b"not json at all"),
    (OPCODE_TEXT, _BAD_TICK % (b"600519.SH", b'"abc"', b"1")),  # wrong type
    (OPCODE_TEXT, _BAD_TICK % (b"600519.SH", b"1.5", b'{"x":1}')),  # wrong type
    (OPCODE_TEXT, b'{"code":1,"data":{"s":"600519.SH","type":"tick"}}'),  # missing fields
    (OPCODE_TEXT, _BAD_TICK % (b"600519.SH", b"0", b"1")),  # zero price
    (OPCODE_TEXT, _BAD_TICK % (b"600519.SH", b"-5.0", b"1")),  # negative price
    (OPCODE_TEXT, _BAD_TICK % (b"", b"1.5", b"1")),  # empty code
    (OPCODE_TEXT, _BAD_TICK % (b"920118", b"1.5", b"1")),  # a code of no region served
    (OPCODE_TEXT, b'{"code":1,"data":{"s":"600519.SH","type":"kline@1"}}'),  # unknown type
    (OPCODE_TEXT, _BAD_TICK % (b"999999.SH", b"1.5", b"1")),  # no board lists it
    (OPCODE_TEXT, b'{"code":0,"msg":"internal error"}'),  # an error frame
    (OPCODE_TEXT, b'{"resAc":"pong","data":{"params":"no ping"}}'),  # a pong to no ping
    (
        OPCODE_TEXT,
        _BAD_TICK[:-2] % (b"600519.SH", b"1.5", b"1") + b',"note":"\xff\xfe"}}',
    ),  # invalid UTF-8 in a field the decoder skips
    (OPCODE_BINARY, b"\x00\x01\x02 binary"),
)
