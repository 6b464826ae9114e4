"""A seeded synthetic market: the A-share universe, and its trades and books in a vendor's form."""

from __future__ import annotations

import random

from feedmux.providers import provider
from feedmux.providers.base import Provider, Trade
from feedmux.transports.frames import OPCODE_TEXT

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


# Tickers every US universe lists, dotted share classes among them (they must round-trip).
US_NAMED = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "BRK.A", "BRK.B", "BF.B",
            "JPM", "V", "SPY", "QQQ")  # fmt: skip
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def us_universe(seed: int = 7, count: int = 8000) -> list[str]:
    """About ``count`` distinct US tickers in canonical form (``AAPL.US``, ``BRK.B.US``),
    the named ones first, the same for the same seed."""
    rng = random.Random(seed)
    tickers = dict.fromkeys(US_NAMED)
    while len(tickers) < count:
        ticker = "".join(rng.choices(_LETTERS, k=rng.choice((2, 3, 3, 4, 4, 4, 5))))
        if rng.random() < 0.01:
            ticker += "." + rng.choice("ABC")  # a share class
        tickers.setdefault(ticker)
    return [f"{t}.US" for t in tickers]


def hk_universe(seed: int = 7, count: int = 300) -> list[str]:
    """``count`` distinct Hong Kong codes in canonical form (``700.HK``), 700 and 5 first."""
    rng = random.Random(seed)
    codes = dict.fromkeys((700, 5, 9988, 3690))
    while len(codes) < count:
        codes.setdefault(rng.randrange(1, 10000))
    return [f"{c}.HK" for c in codes]


class Market:
    """Random-walk prices per code; ``trade(code, now_ms)`` is one pre-encoded trade push, in
    the vendor's form."""

    def __init__(self, codes: list[str], seed: int = 7, seq_base: int = 0, *,
                 vendor: Provider | None = None) -> None:  # fmt: skip
        """``seq_base``: where numbering starts (the replay server uses the wall clock in µs,
        as vendors' seqs grow with time, so a later run's ticks are new, not re-sends)."""
        self.vendor = vendor if vendor is not None else provider()
        self._rng = random.Random(seed)
        rng = self._rng
        self.codes = codes
        self._price = {c: round(rng.lognormvariate(2.7, 0.8), 2) + 1.0 for c in codes}
        self._seq = {c: seq_base + rng.randrange(1, 10**9) * 1000 for c in codes}
        self._book_seq = dict.fromkeys(codes, seq_base)
        self._first = (dict(self._seq), dict(self._book_seq))

    def new_day(self) -> None:
        """Vendor seqs start again from the first day's numbers, as exchanges number each
        trading day anew: only the identity's trading day tells the days' ticks apart."""
        self._seq, self._book_seq = (dict(seqs) for seqs in self._first)

    def trade(self, code: str, now_ms: int, seq: int | None = None) -> bytes:
        """``seq``: use this vendor seq (it must grow per code) instead of the code's next."""
        rng = self._rng
        price = self._price[code]
        price = max(0.01, round(price + rng.choice((-0.02, -0.01, 0.0, 0.01, 0.02)), 2))
        self._price[code] = price
        seq = self._seq[code] + 1 if seq is None else seq
        self._seq[code] = seq
        volume = rng.randrange(1, 50) * 100
        variant = rng.randrange(4)
        trade = Trade(code, seq, now_ms, price, volume, rng.randrange(3), variant)
        return self.vendor.trade_frame(trade)

    def book(self, code: str, now_ms: int, levels: int) -> bytes:
        """One book push: ``levels`` levels a side around the last price; now and then one
        side is empty, as at a limit up or down."""
        rng = self._rng
        price = self._price[code]
        seq = self._book_seq[code] + 1
        self._book_seq[code] = seq
        side = rng.randrange(40)  # 0: no asks (limit up), 1: no bids (limit down)
        bids = [] if side == 1 else [
            (max(0.01, price - 0.01 * (i + 1)), rng.randrange(1, 500) * 100)
            for i in range(levels)
        ]  # fmt: skip
        asks = [] if side == 0 else [
            (price + 0.01 * (i + 1), rng.randrange(1, 500) * 100) for i in range(levels)
        ]  # fmt: skip
        return self.vendor.book_frame(code, seq, now_ms, bids, asks)


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
