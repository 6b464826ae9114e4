"""The gateway's pushing to pages: a page whose socket is full is skipped, the others are not
held back, and it gets the state it missed as a snapshot once it drains, or is closed."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from feedmux.market.sessions import BarSlots, load_sessions
from feedmux.model import Tick
from feedmux.ops.config import Manifest
from feedmux.web import gateway as gw
from feedmux.web import protocol as p
from feedmux.web.board import Board
from feedmux.web.feed import Feed

CODES = [f"{600000 + i}.SH" for i in range(50)]
T0 = 1_796_000_000_000_000_000


@dataclass
class Transport:
    unsent: int = 0

    def get_write_buffer_size(self) -> int:
        return self.unsent


@dataclass(eq=False)  # hashed by identity, as connections are
class Socket:
    """What the gateway uses of a page's connection: its transport, and what it was sent."""

    transport: Transport = field(default_factory=Transport)
    sent: list[p.ServerMessage] = field(default_factory=list)
    closed: int = 0

    async def close(self, code: int, reason: str) -> None:
        self.closed += 1


def gateway(monkeypatch: pytest.MonkeyPatch) -> gw.Gateway:
    def broadcast(sockets: list[Socket], message: bytes, text: bool) -> None:
        for sock in sockets:
            sock.sent.append(p.server_decoder.decode(message))

    monkeypatch.setattr(gw, "broadcast", broadcast)
    board = Board(BarSlots(None))
    board.add_codes(CODES)
    lock = threading.Lock()
    run = Manifest(shards=1, pid=1, data_dir="")
    feed = Feed(Path("unused"), board, lock, choice="trades", manifest=run, store="")  # idle
    return gw.Gateway(gw.WebSettings(), board, feed, lock, sessions=load_sessions())


def trade(web: gw.Gateway, n: int) -> None:
    for code in CODES:
        web.board.tick(Tick(code, n, T0 + n, T0 + n, 10.0 + n / 100, 1.0, 10.0, 1))


def push(web: gw.Gateway, now: float) -> None:
    """One interval's push, as ``Gateway.push`` does it."""
    lines = web.board.take()
    web._snapshot_cache = None
    web.updates += 1
    web._send(p.encode(p.Update(now, lines, {}, "up", 0.0, web.updates)), now)


def test_a_full_page_is_skipped_then_gets_a_snapshot_and_the_others_miss_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    web = gateway(monkeypatch)
    quick, slow = Socket(), Socket()
    web.pages = {quick: gw._Page(quick), slow: gw._Page(slow)}  # type: ignore[dict-item]
    trade(web, 1)
    push(web, 1.0)
    slow.transport.unsent = 5 << 20  # its reader stopped: the socket holds 5 MiB
    for n in range(2, 6):
        trade(web, n)
        push(web, float(n))
    assert web.stats().pages_behind == 1
    slow.transport.unsent = 0  # it read everything again
    trade(web, 6)
    push(web, 6.0)
    assert [m.seq for m in quick.sent if isinstance(m, p.Update)] == [1, 2, 3, 4, 5, 6]
    assert [type(m).__name__ for m in slow.sent] == ["Update", "Snapshot"]
    caught_up = slow.sent[-1]
    assert isinstance(caught_up, p.Snapshot)
    assert {line.price for line in caught_up.lines} == {10.06}  # the state it missed, now
    assert web.stats().pages_behind == 0 and not slow.closed


def test_a_page_full_for_too_long_is_closed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    web = gateway(monkeypatch)
    slow = Socket(Transport(5 << 20))

    async def pushes() -> None:
        web.pages = {slow: gw._Page(slow)}  # type: ignore[dict-item]
        for second in range(0, 60, 5):
            trade(web, second + 1)
            push(web, float(second))
        await asyncio.sleep(0)  # the close runs

    asyncio.run(pushes())
    assert slow.closed == 1 and slow.sent == []


def test_a_new_page_gets_the_board_as_of_the_last_change(monkeypatch: pytest.MonkeyPatch) -> None:
    web = gateway(monkeypatch)
    trade(web, 1)
    first: Any = p.server_decoder.decode(web._snapshot())
    trade(web, 2)  # not taken yet: the cached snapshot is still right, with the next update
    assert p.server_decoder.decode(web._snapshot()) == first
    push(web, 1.0)
    after: Any = p.server_decoder.decode(web._snapshot())
    assert {line.price for line in after.lines} == {10.02}
