import json

import pytest

from feedmux.providers.alltick import Reply, Request
from feedmux.simulator.alltick_server import AllTickServer, ServerRules
from feedmux.simulator.market import a_share_universe
from feedmux.subscriptions import Pacing, SubscriptionManager
from tests.conftest import FakeClock

UNIVERSE = a_share_universe()


def test_full_market_takes_the_fewest_connections_evenly() -> None:
    manager = SubscriptionManager(UNIVERSE, 3000, Pacing())
    assert [len(c.desired) for c in manager.connections] == [2715, 2715]
    assert sorted(manager.desired()) == sorted(UNIVERSE)
    single = SubscriptionManager(["A.US"], 3000, Pacing())
    assert [len(c.desired) for c in single.connections] == [1]


def drive(manager: SubscriptionManager, server: AllTickServer, clock: FakeClock,
          seconds: float, step: float = 0.05) -> list[tuple[int, int, bytes]]:  # fmt: skip
    """Run client and server against each other; returns (time, conn, request) sent."""
    sent: list[tuple[int, int, bytes]] = []
    end = clock.now + int(seconds * 1e9)
    while clock.now < end:
        for i in manager.connect_due(clock.now):
            if server.open(i, "tok", clock.now):
                manager.on_connected(i, clock.now)
        for i, frame in manager.due(clock.now):
            sent.append((clock.now, i, frame))
            outcome = server.receive(i, frame, clock.now)
            client = manager.connections[i].client
            for reply in outcome.replies:
                client.receive(reply, clock.now)
            for event in client.events:
                assert isinstance(event, Reply)
                manager.on_reply(i, event, clock.now)
            client.events.clear()
            if outcome.close:
                server.close(i, clock.now)
                manager.on_disconnected(i, clock.now)
        for i in server.expired(clock.now):
            server.close(i, clock.now)
            manager.on_disconnected(i, clock.now)
        clock.advance(step)
    return sent


def test_full_market_subscribes_within_every_rule() -> None:
    clock = FakeClock()
    server = AllTickServer(ServerRules(token="tok"), set(UNIVERSE))
    manager = SubscriptionManager(UNIVERSE, 3000, Pacing())
    sent = drive(manager, server, clock, seconds=65)
    assert server.violations == []
    union = [c for codes in server.subscriptions().values() for c in codes]
    assert sorted(union) == sorted(UNIVERSE)  # every code once, none twice
    assert manager.all_confirmed()
    subs = [t for t, _, f in sent if json.loads(f)["cmd_id"] == 22004]
    assert len(subs) == 2 and subs[1] - subs[0] >= 3_000_000_000
    heartbeats = [(t, i) for t, i, f in sent if json.loads(f)["cmd_id"] == 22000]
    assert len(heartbeats) >= 2 * 6  # one per 10 s per connection, so none timed out


def test_aggressive_pacing_is_caught_by_the_server() -> None:
    clock = FakeClock()
    server = AllTickServer(ServerRules(token="tok"), set(UNIVERSE))
    hasty = Pacing(request_interval_ns=10**8, cross_interval_ns=10**8)
    drive(SubscriptionManager(UNIVERSE, 3000, hasty), server, clock, seconds=5)
    assert {v.rule for v in server.violations} >= {"cross-connection spacing"}


def first_subscribe(clock: FakeClock) -> tuple[SubscriptionManager, Request]:
    """A one-code manager that has just sent its first subscribe request."""
    manager = SubscriptionManager(["600519.SH"], 3000, Pacing())
    manager.on_connected(0, clock.now)
    [(_, frame)] = manager.due(clock.now)
    return manager, Request(22004, 1, "x", json.loads(frame)["data"])


def test_rate_limited_request_is_retried_after_the_interval() -> None:
    clock = FakeClock()
    manager, request = first_subscribe(clock)
    manager.on_reply(0, Reply(22005, 429, "rate limit", 1, request), clock.now)
    assert manager.due(clock.advance(0.5)) == []
    assert [json.loads(f)["cmd_id"] for _, f in manager.due(clock.advance(0.7))] == [22004]


def test_refused_list_is_not_retried_forever() -> None:
    clock = FakeClock()
    manager, request = first_subscribe(clock)
    manager.on_reply(0, Reply(22005, 604, "code unauthorized", 1, request), clock.now)
    later = [json.loads(f)["cmd_id"] for _, f in manager.due(clock.advance(5))]
    assert later == []  # nothing until the next heartbeat; the refused list is not resent
    assert "604" in manager.connections[0].last_error


def test_reconnect_waits_the_spacing_after_a_close_and_resubscribes() -> None:
    clock = FakeClock()
    manager = SubscriptionManager(["600519.SH"], 3000, Pacing())
    manager.on_connected(0, clock.now)
    manager.due(clock.now)
    manager.on_disconnected(0, clock.now, "dropped")
    assert manager.connect_due(clock.advance(3.0)) == []
    assert manager.connect_due(clock.advance(0.4)) == [0]
    manager.on_connected(0, clock.now)
    assert [json.loads(f)["cmd_id"] for _, f in manager.due(clock.now)] == [22004]


def test_lost_reply_is_resent_after_timeout() -> None:
    clock = FakeClock()
    manager = SubscriptionManager(["600519.SH"], 3000, Pacing())
    manager.on_connected(0, clock.now)
    assert len(manager.due(clock.now)) == 1
    assert all(json.loads(f)["cmd_id"] != 22004 for _, f in manager.due(clock.advance(5)))
    assert [json.loads(f)["cmd_id"] for _, f in manager.due(clock.advance(6))] == [22004]


def test_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        SubscriptionManager(UNIVERSE, 0, Pacing())


def test_burst_of_changes_coalesces_and_assignment_is_stable() -> None:
    clock = FakeClock()
    start, extra = UNIVERSE[:5000], UNIVERSE[5000:]
    server = AllTickServer(ServerRules(token="tok"), set(UNIVERSE))
    manager = SubscriptionManager(start, 3000, Pacing())
    drive(manager, server, clock, seconds=8)
    before = dict(manager.owner)
    for k in range(50):  # 50 separate calls of each kind in quick succession
        manager.subscribe(extra[6 * k : 6 * k + 6])
        manager.unsubscribe(start[4 * k : 4 * k + 4])
    sent = drive(manager, server, clock, seconds=10)
    removed, added = set(start[:200]), set(extra[:300])
    want = (set(start) - removed) | added
    union = [c for codes in server.subscriptions().values() for c in codes]
    assert sorted(union) == sorted(want) and server.violations == []
    assert all(manager.owner[c] == before[c] for c in set(start) - removed)  # nobody moved
    subscribes = [f for _, _, f in sent if json.loads(f)["cmd_id"] == 22004]
    assert len(subscribes) == 2  # 100 calls became one request per connection
    assert manager.settled(sorted(added), subscribed=True)
    assert manager.settled(sorted(removed), subscribed=False)


def test_bad_codes_are_found_by_halving_and_reported() -> None:
    clock = FakeClock()
    good = UNIVERSE[:40]
    # valid spellings the vendor does not list
    bad = [next(c for c in (f"{p}{i:03d}.{x}" for i in range(1000)) if c not in UNIVERSE)
           for p, x in (("600", "SH"), ("300", "SZ"))]  # fmt: skip
    server = AllTickServer(ServerRules(token="tok"), set(UNIVERSE))
    manager = SubscriptionManager(good[:10], 3000, Pacing())
    drive(manager, server, clock, seconds=3)
    manager.subscribe(good[10:25] + bad[:1] + good[25:] + bad[1:])
    drive(manager, server, clock, seconds=40)
    assert sorted(manager.rejected) == sorted(bad)
    assert all("600" in why for why in manager.rejected.values())
    assert sorted(server.subscriptions()[0]) == sorted(good)
    assert {v.rule for v in server.violations} == {"code invalid"}  # no pacing rule broken
    assert manager.settled(good + bad, subscribed=True)


def test_connections_grow_to_the_cap_then_codes_are_refused() -> None:
    manager = SubscriptionManager(UNIVERSE[:5], 2, Pacing(), max_conns=3)
    assert [len(c.desired) for c in manager.connections] == [2, 2, 1]
    manager.subscribe(UNIVERSE[5:8])
    assert [len(c.desired) for c in manager.connections] == [2, 2, 2]
    assert sorted(manager.rejected) == sorted(UNIVERSE[6:8])
    assert "no room" in manager.rejected[UNIVERSE[6]]
    manager.unsubscribe(UNIVERSE[:1])
    manager.subscribe(UNIVERSE[6:7])  # asked again, with room now: accepted
    assert UNIVERSE[6] not in manager.rejected and UNIVERSE[6] in manager.owner


def test_emptied_connection_cancels() -> None:
    clock = FakeClock()
    server = AllTickServer(ServerRules(token="tok"), set(UNIVERSE))
    manager = SubscriptionManager(UNIVERSE[:3], 3000, Pacing())
    drive(manager, server, clock, seconds=2)
    manager.unsubscribe(UNIVERSE[:3])
    sent = drive(manager, server, clock, seconds=2)
    assert [json.loads(f)["cmd_id"] for _, _, f in sent] == [22006]
    assert server.subscribers == {} and manager.settled(UNIVERSE[:3], subscribed=False)


def test_after_a_606_close_the_connection_comes_back_and_resubscribes() -> None:
    clock = FakeClock()
    server = AllTickServer(ServerRules(token="tok"), set(UNIVERSE))
    manager = SubscriptionManager(UNIVERSE, 3000, Pacing(cross_interval_ns=10**8))  # too hasty
    drive(manager, server, clock, seconds=2)
    assert [v.rule for v in server.violations] == ["cross-connection spacing"]
    closed = manager.connections[1]  # its subscribe came 0.1 s after connection 0's
    assert (closed.connected, closed.reconnects, closed.last_error) == (
        False, 1, "ret=606 too many requests and connection will be closed")  # fmt: skip
    manager.pacing = Pacing()  # as shipped
    drive(manager, server, clock, seconds=30)
    assert [v.rule for v in server.violations] == ["cross-connection spacing"]  # no new one
    assert manager.all_confirmed()
    union = [c for codes in server.subscriptions().values() for c in codes]
    assert sorted(union) == sorted(UNIVERSE)


def test_reconnect_backoff_grows_to_the_cap_never_below_spacing_and_resets() -> None:
    clock = FakeClock()
    pacing = Pacing(reconnect_max_ns=20 * 10**9)
    manager = SubscriptionManager(["600519.SH"], 3000, pacing, jitter=lambda: 1.0)
    delays = []
    for _ in range(6):  # the vendor is down: every attempt fails at once
        manager.on_disconnected(0, clock.now, "connect failed")
        delays.append((manager.connections[0].connect_at_ns - clock.now) / 1e9)
        clock.now = manager.connections[0].connect_at_ns
    assert delays == [3.3, 6.6, 13.2, 20.0, 20.0, 20.0]
    low = SubscriptionManager(["600519.SH"], 3000, pacing, jitter=lambda: 0.0)
    for _ in range(3):
        low.on_disconnected(0, clock.now)
    assert low.connections[0].connect_at_ns - clock.now >= pacing.reconnect_spacing_ns
    # a confirmed subscription resets the backoff
    manager.on_connected(0, clock.now)
    [(_, frame)] = manager.due(clock.now)
    body = json.loads(frame)
    request = Request(22004, body["seq_id"], "t", body["data"])
    manager.on_reply(0, Reply(22005, 200, "ok", body["seq_id"], request), clock.now)
    manager.on_disconnected(0, clock.now)
    assert manager.connections[0].connect_at_ns - clock.now == pacing.reconnect_spacing_ns


def test_watchdog_flags_connected_links_silent_too_long() -> None:
    clock = FakeClock()
    manager = SubscriptionManager(UNIVERSE[:4000], 3000, Pacing(watchdog_ns=30 * 10**9))
    manager.on_connected(0, clock.now)
    manager.on_connected(1, clock.now)
    last_frame = [clock.now, clock.now]
    clock.advance(25)
    last_frame[1] = clock.now  # a heartbeat reply counts as a frame
    assert manager.stale(clock.advance(6), last_frame) == [0]
    assert manager.connections[0].watchdog_trips == 1
    manager.on_disconnected(0, clock.now, "watchdog")
    assert manager.stale(clock.advance(100), last_frame) == [1]  # a down link is not stale
