"""Threshold publishing (``--min-move``): only price moves of at least a set size.

A UI does not need every trade of 5,000 codes; it needs to know when a price changed by a
tick size or more. A code's first trade (or book) always passes; after that one passes when
its price (a book: its best bid or best ask) is at least ``min_move`` away from the last one
that passed. The stores and the full topics keep every tick; these are extra topic families.
"""

from __future__ import annotations

from feedmux.errors import ConfigError
from feedmux.model import Depth, Tick

FAMILIES = ("trades", "books")
_EPSILON = 1e-9  # 10.01 - 10.00 is 0.00999999999999979 in binary floating point


def parse_min_moves(specs: list[str]) -> dict[str, float]:
    """``["trades=0.01", "books=0.02"]`` (a bare number means trades) → {family: size}."""
    out: dict[str, float] = {}
    for spec in specs:
        family, _, size = spec.rpartition("=")
        family = family or "trades"
        if family not in FAMILIES:
            raise ConfigError(f"--min-move {spec!r}: the family must be trades or books")
        try:
            value = float(size)
        except ValueError:
            raise ConfigError(f"--min-move {spec!r}: {size!r} is not a price step") from None
        if not value > 0:
            raise ConfigError(f"--min-move {spec!r}: the step must be > 0")
        out[family] = value
    return out


class TradeMoves:
    __slots__ = ("_last", "min_move")

    def __init__(self, min_move: float) -> None:
        self.min_move = min_move - _EPSILON
        self._last: dict[str, float] = {}

    def reset(self) -> None:
        """A new trading day: each code's first trade passes again."""
        self._last.clear()

    def passes(self, tick: Tick) -> bool:
        last = self._last.get(tick.code)
        if last is not None and abs(tick.price - last) < self.min_move:
            return False
        self._last[tick.code] = tick.price
        return True


class BookMoves:
    __slots__ = ("_last", "min_move")

    def __init__(self, min_move: float) -> None:
        self.min_move = min_move - _EPSILON
        self._last: dict[str, tuple[float | None, float | None]] = {}

    def reset(self) -> None:
        self._last.clear()

    def passes(self, book: Depth) -> bool:
        best = (book.bids[0][0] if book.bids else None, book.asks[0][0] if book.asks else None)
        last = self._last.get(book.code)
        if last is not None and not any(
            _moved(before, now, self.min_move) for before, now in zip(last, best, strict=True)
        ):
            return False
        self._last[book.code] = best
        return True


def _moved(before: float | None, now: float | None, step: float) -> bool:
    if before is None or now is None:
        return before is not now  # a side appeared or emptied (limit up/down)
    return abs(now - before) >= step
