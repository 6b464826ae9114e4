"""The gateway's feed thread loses nothing it takes from its subscriber."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from feedmux.market.sessions import BarSlots
from feedmux.model import Tick
from feedmux.ops.config import Manifest
from feedmux.web.board import Board
from feedmux.web.feed import Feed

RUN = Manifest(shards=1, pid=1, data_dir="")


class ListSubscriber:
    """Hands out a list's items as ``Subscriber.recv`` would; stops the feed when done."""

    def __init__(self, items: list[Tick], feed: Feed) -> None:
        self.items = list(reversed(items))
        self.feed = feed
        self.gap_events: list[Any] = []
        self.heard_at = 0.0

    def recv(self, timeout: float | None = None) -> Tick | None:
        if not self.items:
            self.feed._stop.set()
            return None
        return self.items.pop()


def test_every_item_taken_in_a_long_burst_reaches_the_board() -> None:
    board = Board(BarSlots(None), with_trades=True)
    feed = Feed(Path("unused"), board, threading.Lock(), choice="trades", manifest=RUN, store="")
    t0 = 1_796_000_000_000_000_000
    ticks = [Tick(f"{600000 + i % 50}.SH", i, t0 + i, t0 + i, 10.0 + i / 100, 1.0, 10.0, 1)
             for i in range(2500)]  # fmt: skip
    feed._follow(ListSubscriber(ticks, feed))  # type: ignore[arg-type]
    rows = {r.code: r for r in board.lines()}
    assert sum(r.volume for r in rows.values()) == len(ticks)
    assert {c: r.price for c, r in rows.items()} == {t.code: t.price for t in ticks[-50:]}
