"""The receiver's connection table, with fake links, poller and journal on a fake clock."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import websocket
import zmq

from feedmux.ingest.connections import ConnectionTable
from feedmux.ingest.subscriptions import SubscriptionManager
from feedmux.model import Depth, Tick
from feedmux.providers.alltick.protocol import handshake_failure
from feedmux.providers.alltick.provider import PACING
from feedmux.providers.alltick.provider import PROVIDER as ALLTICK
from feedmux.providers.base import Peek
from feedmux.stats.receiver import ConnectionStats
from feedmux.transports.frames import OPCODE_TEXT, Message
from feedmux.transports.ws import HandshakeRefused
from tests.conftest import FakeClock

TOKEN = "s3cret-token"
TRADE = (b'{"cmd_id":22998,"data":{"code":"600519.SH","seq":1,"tick_time":1700000000000,'
         b'"price":"10.00","volume":"100","turnover":"1000","trade_direction":1}}')  # fmt: skip


class FakeLink:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.inbox: list[list[Message]] = []  # what each read returns
        self.sent: list[bytes] = []
        self.ended: str | None = None
        self.refused: str | None = None
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[Message]:
        return self.inbox.pop(0) if self.inbox else []

    def send_text(self, payload: bytes) -> None:
        self.sent.append(payload)

    def close(self) -> None:
        self.closed = True


class FakePoller:
    def __init__(self) -> None:
        self.fds: set[int] = set()

    def register(self, socket: int, flags: int = 0) -> None:
        self.fds.add(socket)

    def unregister(self, socket: int) -> None:
        self.fds.remove(socket)


class FakeJournal:
    def __init__(self) -> None:
        self.records: list[tuple[str, int, Any]] = []

    def messages(self, recv_ns: int, conn: int, messages: list[Message]) -> None:
        self.records.append(("messages", conn, len(messages)))

    def sent(self, recv_ns: int, conn: int, request: bytes) -> None:
        self.records.append(("sent", conn, request))

    def event(self, recv_ns: int, conn: int, name: str, **detail: Any) -> None:
        self.records.append((name, conn, detail))


class Rig:
    """One table over a one-code manager; ``opens`` says what each connect attempt gives."""

    def __init__(self, codes: list[str] | None = None, token: str = TOKEN, *,
                 max_codes_per_conn: int = 3000, max_conns: int = 10) -> None:  # fmt: skip
        self.clock = FakeClock()
        self.manager = SubscriptionManager(ALLTICK, codes or ["600519.SH"], max_codes_per_conn,
                                           PACING, jitter=lambda: 0.0, max_conns=max_conns,
                                           tokens=len(token.split(",")))  # fmt: skip
        self.tokens_used: list[str] = []  # by each connect attempt
        self.poller, self.journal = FakePoller(), FakeJournal()
        self.opens: list[FakeLink | Exception] = []
        self.items: list[Tick | Depth] = []  # pushes routed, decoded as a shard would
        self.events = 0
        self.table = ConnectionTable(
            self.manager, self.poller, self.open_link, self.journal,  # type: ignore[arg-type]
            logging.getLogger("test"), token=token, url="wss://vendor/path",
            route=self.route, on_events=self.count, clock=self.clock,
            wall=self.clock,
        )  # fmt: skip

    def route(self, key: Peek, payload: bytes, recv_ns: int) -> None:
        item = ALLTICK.decode(payload, recv_ns)
        assert isinstance(item, Tick | Depth) and item.code == key.code
        self.items.append(item)

    def count(self) -> None:
        self.events += 1

    def open_link(self, token: str) -> FakeLink:
        self.tokens_used.append(token)
        opened = self.opens.pop(0)
        if isinstance(opened, Exception):
            raise opened
        return opened

    def up(self, fd: int = 7) -> FakeLink:
        link = FakeLink(fd)
        self.opens.append(link)
        self.table.connect_due()
        return link

    def answer(self, link: FakeLink, ret: int = 200, msg: str = "ok") -> None:
        """The vendor answers the last request the link sent."""
        body = json.loads(link.sent[-1])
        reply = {"cmd_id": body["cmd_id"] + 1, "ret": ret, "msg": msg, "seq_id": body["seq_id"],
                 "trace": body["trace"], "data": {}}  # fmt: skip
        link.inbox.append([(OPCODE_TEXT, json.dumps(reply).encode())])
        self.table.on_ready(link.fd, zmq.POLLIN)


def test_a_connection_opens_subscribes_and_its_ticks_flow() -> None:
    rig = Rig()
    link = rig.up()
    conn = rig.manager.connections[0]
    assert conn.link is link and rig.poller.fds == {7} and conn.connected
    rig.table.send_due()
    assert [json.loads(f)["cmd_id"] for f in link.sent] == [22004]
    rig.answer(link)
    assert conn.confirmed == ["600519.SH"] and rig.events == 1
    link.inbox.append([(OPCODE_TEXT, TRADE), (OPCODE_TEXT, TRADE)])
    rig.clock.advance(1)
    rig.table.on_ready(7, zmq.POLLIN)
    assert [t.code for t in rig.items] == ["600519.SH", "600519.SH"]
    assert conn.messages == 3 and conn.last_message_ns == rig.clock.now
    assert [r[0] for r in rig.journal.records] == ["connect", "sent", "messages", "messages"]
    entry = conn.stats(rig.clock.advance(2), TOKEN)
    assert entry == ConnectionStats(state="up", codes=1, confirmed=1, messages=3,
                                    last_message_age_s=2.0, reconnects=0, watchdog_trips=0,
                                    bad_messages={}, error="")  # fmt: skip


def test_several_tokens_carry_more_connections_each_on_its_own_token() -> None:
    rig = Rig(["600519.SH", "000001.SZ", "300750.SZ"], "tok-a,tok-b", max_codes_per_conn=1,
              max_conns=1)  # fmt: skip
    assert len(rig.manager.connections) == 2  # one per token; the third code has no room
    assert "no room: 2 connections (2 tokens)" in rig.manager.rejected["300750.SZ"]
    rig.opens += [FakeLink(7), FakeLink(8)]
    rig.table.connect_due()
    assert rig.tokens_used == ["tok-a", "tok-b"]


def test_a_refused_handshake_is_dropped_classified_and_the_token_never_kept() -> None:
    rig = Rig()
    refused = handshake_failure(401, f"bad token {TOKEN}".encode())
    rig.opens.append(HandshakeRefused(refused))
    rig.table.connect_due()
    conn = rig.manager.connections[0]
    assert not conn.connected and conn.link is None and rig.poller.fds == set()
    assert conn.last_failure is not None and TOKEN not in conn.last_failure.body
    assert TOKEN not in conn.last_error and conn.connect_at_ns > rig.clock.now
    assert rig.journal.records[-1][0] == "disconnect"


def test_a_transient_connect_failure_is_retried_after_the_spacing() -> None:
    rig = Rig()
    rig.opens.append(ConnectionRefusedError("refused"))
    rig.table.connect_due()
    conn = rig.manager.connections[0]
    assert conn.last_failure is None and "connect failed" in conn.last_error
    rig.table.connect_due()  # not due yet: nothing is tried
    assert rig.opens == []
    rig.clock.now = conn.connect_at_ns
    link = rig.up()
    assert conn.link is link


@pytest.mark.parametrize("how", ["ended", "refused", "pollerr", "read error"])
def test_a_link_that_ends_breaks_or_fails_is_dropped_and_unregistered(how: str) -> None:
    rig = Rig()
    link = rig.up()
    conn = rig.manager.connections[0]
    flags = zmq.POLLIN
    if how in ("ended", "refused"):
        link.ended = "server closed: 1001 going away"
        link.refused = "too_big" if how == "refused" else None
    elif how == "pollerr":
        flags = zmq.POLLERR
    else:
        link.read = _broken  # type: ignore[method-assign]
    rig.table.on_ready(7, flags)
    assert conn.link is None and link.closed and rig.poller.fds == set() and not conn.connected
    assert conn.reconnects == 1 and rig.table.by_fd == {}
    assert conn.session.bad_messages == ({"too_big": 1} if how == "refused" else {})
    rig.table.on_ready(7, zmq.POLLIN)  # a stale descriptor is ignored


def _broken() -> list[Message]:
    raise websocket.WebSocketConnectionClosedException("reset")


def test_a_reply_refusing_the_token_drops_the_link_and_counts_the_failure() -> None:
    rig = Rig()
    link = rig.up()
    rig.table.send_due()
    rig.answer(link, 401, "token invalid")
    conn = rig.manager.connections[0]
    assert conn.link is None and conn.same_failures == 1
    assert conn.last_failure is not None and conn.last_failure.kind == "token"


def test_a_send_that_fails_drops_the_link() -> None:
    rig = Rig()
    link = rig.up()
    link.send_text = _failing_send  # type: ignore[method-assign]
    rig.table.send_due()
    assert rig.manager.connections[0].link is None and link.closed


def _failing_send(payload: bytes) -> None:
    raise BrokenPipeError("gone")


def test_a_silent_link_is_torn_down_by_the_watchdog() -> None:
    rig = Rig()
    link = rig.up()
    rig.clock.advance(PACING.watchdog_ns / 1e9 + 1)
    rig.table.drop_stale(30)
    conn = rig.manager.connections[0]
    assert conn.link is None and link.closed and conn.watchdog_trips == 1
    assert "watchdog: no message for 30 s" in conn.last_error


def test_close_shuts_every_link_without_scheduling_a_reconnect() -> None:
    rig = Rig(["600519.SH", "000001.SZ"])
    link = rig.up()
    rig.table.close()
    assert link.closed and rig.poller.fds == set() and rig.manager.connections[0].reconnects == 0
