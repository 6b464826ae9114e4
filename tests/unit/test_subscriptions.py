import json

import pytest

from feedmux.providers.alltick import Reply, Request
from feedmux.simulator.alltick_server import AllTickServer, ServerRules
from feedmux.simulator.market import a_share_universe
from feedmux.subscriptions import Pacing, SubscriptionManager, assign
from tests.conftest import FakeClock

UNIVERSE = a_share_universe()


def test_assign_uses_fewest_connections_evenly() -> None:
    parts = assign(UNIVERSE, 3000)
    assert len(parts) == 2 and all(len(p) <= 3000 for p in parts)
    assert [c for p in parts for c in p] == UNIVERSE
    assert assign(["A.US"], 3000) == [["A.US"]]


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


@pytest.mark.parametrize("cap", [1, 100])
def test_bad_cap_is_refused(cap: int) -> None:
    if cap < 1:
        with pytest.raises(ValueError):
            assign(UNIVERSE, cap)
    else:
        assert all(len(p) <= cap for p in assign(UNIVERSE, cap))
