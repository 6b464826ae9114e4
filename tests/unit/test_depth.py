"""Order books (22002 / 22999) through every pure layer."""

from __future__ import annotations

import json
from pathlib import Path

from feedmux import families, wire
from feedmux.client.reader import read_books
from feedmux.ingest.subscriptions import SubscriptionManager
from feedmux.model import Depth
from feedmux.providers.alltick.protocol import AllTickClient
from feedmux.providers.alltick.provider import PACING
from feedmux.providers.alltick.provider import PROVIDER as ALLTICK
from feedmux.providers.alltick.server import AllTickServer, plan_rules
from feedmux.shard.state import ShardState
from feedmux.shard.stores.sqlite import SqliteSink, shard_db_path
from feedmux.simulator.market import a_share_universe
from tests.conftest import FakeClock
from tests.unit.test_subscriptions import drive

SPEC_DEPTH = (
    b'{"cmd_id":22999,"data":{"code":"600519.SH","seq":1605509068000002,'
    b'"tick_time":1605509068123,"bids":[{"price":"1745.40","volume":"200"}],'
    b'"asks":[{"price":"1745.60","volume":"100"}]}}'
)


def test_spec_depth_frame_decodes() -> None:
    book = AllTickClient("t", only_subscribed=False).receive(SPEC_DEPTH, recv_ns=9)
    assert book == Depth("600519.SH", 1605509068000002, 1605509068123 * 10**6, 9,
                         [(1745.4, 200.0)], [(1745.6, 100.0)])  # fmt: skip


def test_one_empty_side_is_a_book_and_a_bad_level_is_a_bad_frame() -> None:
    session = AllTickClient("t", only_subscribed=False)
    limit_up = SPEC_DEPTH.replace(b'[{"price":"1745.60","volume":"100"}]', b"[]")
    book = session.receive(limit_up, 0)
    assert isinstance(book, Depth) and book.asks == [] and book.bids
    assert session.receive(SPEC_DEPTH.replace(b'"1745.40"', b'"-1"'), 0) is None
    assert session.bad_messages == {"schema": 1}


def test_depth_request_carries_the_levels() -> None:
    request = json.loads(AllTickClient("c").subscribe_depth(["600519.SH"], 5))
    assert request["cmd_id"] == 22002
    assert request["data"] == {"symbol_list": [{"code": "600519.SH", "depth_level": 5}]}


def test_manager_subscribes_books_after_trades_within_every_rule() -> None:
    universe = a_share_universe()
    clock = FakeClock()
    server = AllTickServer(plan_rules(token="tok"), set(universe))
    manager = SubscriptionManager(ALLTICK, universe, 3000, PACING, depth_levels=5)
    drive(manager, server, clock, seconds=20)
    assert server.violations == []
    books = [c for codes in server.book_subscriptions().values() for c in codes]
    assert sorted(books) == sorted(universe)
    assert manager.settled(universe, subscribed=True)
    manager.unsubscribe(universe[:10])
    assert not manager.settled(universe[:10], subscribed=False)
    drive(manager, server, clock, seconds=10)
    assert manager.settled(universe[:10], subscribed=False) and server.violations == []
    assert not set(universe[:10]) & set(server.book_subscribers)


def test_server_caps_levels_by_market_and_cancel_type_1_keeps_trades() -> None:
    codes = ["600519.SH", "AAPL.US", "700.HK"]
    server = AllTickServer(plan_rules(token="tok"), set(codes))
    server.open(1, "tok", 0)

    def request(cmd: int, seq: int, data: dict[str, object]) -> bytes:
        return json.dumps({"cmd_id": cmd, "seq_id": seq, "trace": "t", "data": data}).encode()

    server.receive(1, request(22004, 1, {"symbol_list": [{"code": c} for c in codes]}), 0)
    entries = [{"code": c, "depth_level": 20} for c in codes]
    server.receive(1, request(22002, 2, {"symbol_list": entries}), 3 * 10**9)
    assert dict(server.book_subscribers) == {"600519.SH": ((1, 5),), "AAPL.US": ((1, 1),),
                                             "700.HK": ((1, 10),)}  # fmt: skip
    server.receive(1, request(22006, 3, {"cancel_type": 1}), 6 * 10**9)
    assert server.book_subscribers == {} and len(server.subscribers) == 3


def book(code: str, seq: int) -> Depth:
    return Depth(code, seq, 10**18 + seq, 10**18 + seq, [(9.99, 100.0)] if seq % 2 else [],
                 [(10.01, 200.0)])  # fmt: skip


def test_shard_publishes_caches_and_stores_books() -> None:
    state = ShardState(1)
    state.on_bus(wire.encode(wire.Resume(1, 1)))
    books = [book(f"60{i % 3:04d}.SH", i) for i in range(1, 151)]
    out = state.on_bus(wire.encode(wire.Burst(1, [], books)))
    assert out.ticks == [] and out.books == books
    topic, payload = out.published[-1]
    published = families.BOOKS.decoder.decode(payload)
    assert topic == b"D|" + published.depth.code.encode() and published.book_seq == 150
    assert state.expected_bus_seq == 151 and state.received_books == 150
    reply = wire.snapshot_reply_decoder.decode(
        state.snapshot_reply(wire.encode(wire.SnapshotRequest(None)))
    )
    # seq i went to code 60000{i % 3}: the last of each is 150, 148 and 149
    assert {b.code: b.seq for b in reply.books} == {"600000.SH": 150, "600001.SH": 148,
                                                     "600002.SH": 149}  # fmt: skip


def test_books_round_trip_through_sqlite(tmp_path: Path) -> None:
    sink = SqliteSink(shard_db_path(tmp_path, 0))
    written = [book("600519.SH", 1), book("600519.SH", 2), book("000001.SZ", 3)]
    assert sink.write_books(written) == (3, 0)
    assert sink.write_books(written[:1]) == (0, 1)  # duplicates skipped, counted
    sink.close()
    df = read_books(tmp_path, codes=["600519"])
    assert list(df["seq"]) == [1, 2]
    assert list(df["bids"]) == [[[9.99, 100.0]], []]
    assert str(df["time"].dtype) == "datetime64[ns, UTC]"
