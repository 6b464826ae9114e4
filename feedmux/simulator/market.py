"""A seeded synthetic market: the A-share universe and the trade frames AllTick would push."""

from __future__ import annotations

import random

# How many stocks each board lists (close to the real market in 2026), by prefix and exchange.
A_SHARE_BOARDS: tuple[tuple[str, str, int], ...] = (
    ("600", "SH", 900), ("601", "SH", 180), ("603", "SH", 650), ("605", "SH", 100),
    ("688", "SH", 590),
    ("000", "SZ", 460), ("001", "SZ", 60), ("002", "SZ", 900), ("003", "SZ", 40),
    ("300", "SZ", 900), ("301", "SZ", 380),
    ("920", "BJ", 270),
)  # fmt: skip


def a_share_universe(seed: int = 7) -> list[str]:
    """About 5,400 distinct A-share codes in canonical form, the same for the same seed."""
    rng = random.Random(seed)
    codes: list[str] = []
    for prefix, exchange, count in A_SHARE_BOARDS:
        for suffix in sorted(rng.sample(range(1000), count)):
            codes.append(f"{prefix}{suffix:03d}.{exchange}")
    return codes


_TRADE_FORMATS = (
    # Every shape AllTick is known to send: seq and tick_time as int or string, seconds or ms.
    b'{"cmd_id":22998,"data":{"code":"%s","seq":%d,"tick_time":%d,'
    b'"price":"%.2f","volume":"%d","turnover":"%.2f","trade_direction":%d}}',
    b'{"cmd_id":22998,"data":{"code":"%s","seq":"%d","tick_time":"%d",'
    b'"price":"%.2f","volume":"%d","turnover":"%.2f","trade_direction":%d}}',
)


class Market:
    """Random-walk prices per code; ``trade(code, now_ms)`` is one pre-encoded 22998 frame."""

    def __init__(self, codes: list[str], seed: int = 7, seq_base: int = 0) -> None:
        """``seq_base``: where numbering starts (the replay server uses the wall clock in µs,
        as AllTick's seqs grow with time, so a later run's ticks are new, not re-sends)."""
        self._rng = random.Random(seed)
        rng = self._rng
        self.codes = codes
        self._code_bytes = {c: c.encode() for c in codes}
        self._price = {c: round(rng.lognormvariate(2.7, 0.8), 2) + 1.0 for c in codes}
        self._seq = {c: seq_base + rng.randrange(1, 10**9) * 1000 for c in codes}
        self._book_seq = dict.fromkeys(codes, seq_base)

    def trade(self, code: str, now_ms: int, seq: int | None = None) -> bytes:
        """``seq``: use this vendor seq (it must grow per code) instead of the code's next."""
        rng = self._rng
        price = self._price[code]
        price = max(0.01, round(price + rng.choice((-0.02, -0.01, 0.0, 0.01, 0.02)), 2))
        self._price[code] = price
        seq = self._seq[code] + 1 if seq is None else seq
        self._seq[code] = seq
        volume = rng.randrange(1, 50) * 100
        form = rng.randrange(4)
        # One in four ticks gives tick_time in seconds, as AllTick's samples do.
        tick_time = now_ms // 1000 if form == 3 else now_ms
        return _TRADE_FORMATS[form & 1] % (
            self._code_bytes[code],
            seq,
            tick_time,
            price,
            volume,
            price * volume,
            rng.randrange(3),
        )

    def book(self, code: str, now_ms: int, levels: int) -> bytes:
        """One 22999 frame: ``levels`` levels a side around the last price; now and then one
        side is empty, as at a limit up or down."""
        rng = self._rng
        price = self._price[code]
        seq = self._book_seq[code] + 1
        self._book_seq[code] = seq
        side = rng.randrange(40)  # 0: no asks (limit up), 1: no bids (limit down)
        bids = [] if side == 1 else [
            b'{"price":"%.2f","volume":"%d"}' % (max(0.01, price - 0.01 * (i + 1)),
                                                rng.randrange(1, 500) * 100)
            for i in range(levels)
        ]  # fmt: skip
        asks = [] if side == 0 else [
            b'{"price":"%.2f","volume":"%d"}' % (price + 0.01 * (i + 1),
                                                rng.randrange(1, 500) * 100)
            for i in range(levels)
        ]  # fmt: skip
        return b'{"cmd_id":22999,"data":{"code":"%s","seq":%d,"tick_time":%d,"bids":[%s],' \
            b'"asks":[%s]}}' % (self._code_bytes[code], seq, now_ms, b",".join(bids),
                                b",".join(asks))  # fmt: skip


OPCODE_TEXT, OPCODE_BINARY = 0x1, 0x2

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


def text_frame(payload: bytes, opcode: int = OPCODE_TEXT) -> bytes:
    """A complete unmasked server-to-client WebSocket frame (RFC 6455 section 5.2).

    Pre-framing lets the replay server write trades straight to the transport: a benchmark
    should measure the client, not the server's framing.
    """
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 1 << 16:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload
