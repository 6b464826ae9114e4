import json
from dataclasses import replace

from feedmux.ingest.subscriptions import SubscriptionManager
from feedmux.providers.base import Outcome, Reply
from feedmux.providers.polygon.provider import PACING
from feedmux.providers.polygon.provider import PROVIDER as POLYGON
from feedmux.providers.polygon.server import PolygonServer, plan_rules
from feedmux.simulator.market import us_universe
from feedmux.transports.frames import OPCODE_TEXT
from tests.conftest import FakeClock

S = 1_000_000_000
MS = 1_000_000
CODES = {"AAPL.US", "MSFT.US", "BRK.B.US", "NVDA.US"}


def server(token: str = "key", universe: set[str] = CODES, **kw: int) -> PolygonServer:
    return PolygonServer(plan_rules(token, **kw), universe)


def statuses(outcome: Outcome) -> list[tuple[str, str]]:
    return [(e["status"], e["message"]) for r in outcome.replies for e in json.loads(r)]


def auth(key: str = "key") -> bytes:
    return json.dumps({"action": "auth", "params": key}).encode()


def sub(*topics: str, action: str = "subscribe") -> bytes:
    return json.dumps({"action": action, "params": ",".join(topics)}).encode()


def authed(srv: PolygonServer, conn: int = 1, now: int = 0, key: str = "key") -> None:
    srv.open(conn, "", now)
    assert statuses(srv.receive(conn, auth(key), now)) == [("auth_success", "authenticated")]


def rules(srv: PolygonServer) -> list[str]:
    return [v.rule for v in srv.violations]


def test_a_connection_is_greeted_and_authenticates_by_message() -> None:
    srv = server()
    assert statuses(srv.open(1, "", 0)) == [("connected", "Connected Successfully")]
    outcome = srv.receive(1, auth(), 0)
    assert statuses(outcome) == [("auth_success", "authenticated")] and not outcome.close
    assert srv.violations == [] and POLYGON.replay_token("/stocks?x=1", {}) == ""


def test_a_wrong_key_is_refused_and_closed() -> None:
    srv = server()
    srv.open(1, "", 0)
    outcome = srv.receive(1, auth("nope"), 0)
    assert statuses(outcome) == [("auth_failed", "authentication failed")]
    assert outcome.close and outcome.close_code == 1008 and rules(srv) == ["token"]


def test_requests_before_auth_are_refused_and_not_applied() -> None:
    srv = server()
    srv.open(1, "", 0)
    assert statuses(srv.receive(1, sub("T.AAPL"), 0)) == [("error", "not authorized")]
    assert srv.subscribers == {} and rules(srv) == ["auth order"]


def test_one_connection_per_account_at_a_time() -> None:
    srv = server("a,b")
    authed(srv, 1, key="a")
    srv.open(2, "", 0)
    outcome = srv.receive(2, auth("a"), 0)
    assert statuses(outcome) == [("max_connections", "Maximum number of connections exceeded.")]
    assert outcome.close and outcome.close_code == 1008 and rules(srv) == ["connection cap"]
    authed(srv, 3, key="b")  # another account has its own
    srv.close(1, S)
    authed(srv, 4, now=S, key="a")  # once the first is gone
    assert rules(srv) == ["connection cap"]


def test_no_auth_in_time_is_told_and_closed_once() -> None:
    srv = server()
    srv.open(1, "", 0)
    authed(srv, 2)
    assert srv.expired(10 * S) == []
    [(conn, outcome)] = srv.expired(10 * S + 1)
    assert conn == 1 and outcome.close and outcome.close_code == 1008
    assert statuses(outcome) == [("auth_timeout", "No authentication request received.")]
    assert srv.expired(20 * S) == [] and rules(srv) == ["auth timeout"]


def test_each_topic_is_answered_and_applied() -> None:
    srv = server()
    authed(srv)
    outcome = srv.receive(1, sub("T.AAPL", "T.BRK.B", "Q.AAPL", "AM.AAPL"), S)
    assert statuses(outcome) == [
        ("success", "subscribed to: T.AAPL"), ("success", "subscribed to: T.BRK.B"),
        ("success", "subscribed to: Q.AAPL"), ("success", "subscribed to: AM.AAPL"),
    ]  # fmt: skip
    assert srv.subscribers == {"AAPL.US": (1,), "BRK.B.US": (1,)}
    assert srv.book_subscribers == {"AAPL.US": ((1, 1),)}  # a quote: one level
    assert srv.subscriptions() == {1: ["AAPL.US", "BRK.B.US"]}
    assert statuses(srv.receive(1, sub("T.AAPL", action="unsubscribe"), 2 * S)) == [
        ("success", "unsubscribed to: T.AAPL")]  # fmt: skip
    assert srv.subscribers == {"BRK.B.US": (1,)} and srv.violations == []
    assert srv.subscription_requested and srv.settling(2 * S) and not srv.settling(6 * S)
    srv.close(1, 7 * S)
    assert srv.subscribers == {} and srv.book_subscribers == {}


def test_an_unknown_ticker_is_acknowledged_but_carries_nothing() -> None:
    srv = server()
    authed(srv)
    assert statuses(srv.receive(1, sub("T.NOPE"), S)) == [("success", "subscribed to: T.NOPE")]
    assert srv.subscribers == {} and srv.violations == []


def test_the_wildcard_subscribes_the_whole_universe() -> None:
    srv = server()
    authed(srv)
    srv.receive(1, sub("T.*"), S)
    assert set(srv.subscribers) == CODES
    srv.receive(1, sub("T.*", action="unsubscribe"), 2 * S)
    assert srv.subscribers == {}


def test_requests_too_close_are_recorded_and_still_applied() -> None:
    srv = server()
    authed(srv)
    srv.receive(1, sub("T.AAPL"), S)
    srv.receive(1, sub("T.MSFT"), S + 99 * MS)
    assert set(srv.subscribers) == {"AAPL.US", "MSFT.US"} and rules(srv) == ["request rate"]
    srv.receive(1, sub("T.NVDA"), S + 199 * MS)
    assert rules(srv) == ["request rate"]


def test_too_many_topics_in_one_message_are_recorded() -> None:
    srv = PolygonServer(plan_rules("key"), CODES, max_topics=2)
    authed(srv)
    srv.receive(1, sub("T.AAPL", "T.MSFT", "T.NVDA"), S)
    assert len(srv.subscribers) == 3 and rules(srv) == ["message size"]


def test_the_plan_cap_keeps_the_first_topics() -> None:
    srv = server(max_codes_per_conn=2)
    authed(srv)
    srv.receive(1, sub("T.AAPL", "T.MSFT", "T.NVDA"), S)
    assert len(srv.subscribers) == 2 and rules(srv) == ["code cap"]


def test_malformed_and_unknown_requests_are_recorded() -> None:
    srv = server()
    authed(srv)
    assert statuses(srv.receive(1, b"{nope", S))[0][0] == "error"
    assert statuses(srv.receive(1, b'{"action":"dance"}', 2 * S))[0][0] == "error"
    assert statuses(srv.receive(1, sub("AAPL"), 3 * S))[0][0] == "error"
    assert rules(srv) == ["malformed request", "unknown action", "bad topic"]


def test_an_envelope_fault_is_an_error_status_not_applied() -> None:
    srv = server()
    authed(srv)
    outcome = srv.receive(1, sub("T.AAPL"), S, envelope_error=True)
    assert outcome.envelope_error and statuses(outcome) == [("error", "request refused")]
    assert srv.subscribers == {}


# -- the client against the server -----------------------------------------------------------------
def drive(manager: SubscriptionManager, srv: PolygonServer, clock: FakeClock, seconds: float,
          step: float = 0.01) -> list[bytes]:  # fmt: skip
    """The manager's connection against the server, every answer fed back; the requests sent."""
    sent: list[bytes] = []
    conn = manager.connections[0]
    session = conn.session

    def deliver(outcome: Outcome) -> None:
        session.receive_read([(OPCODE_TEXT, r) for r in outcome.replies], clock.now,
                             lambda *_: None)  # fmt: skip
        for event in session.events:
            if isinstance(event, Reply):
                manager.on_reply(0, event, clock.now)
        session.events.clear()

    end = clock.now + int(seconds * 1e9)
    while clock.now < end:
        if manager.connect_due(clock.now):
            manager.on_connected(0, clock.now)
            deliver(srv.open(1, "", clock.now))
            for message in session.opening("key"):
                deliver(srv.receive(1, message, clock.now))
        for _, message in manager.due(clock.now):
            sent.append(message)
            deliver(srv.receive(1, message, clock.now))
        clock.advance(step)
    return sent


def test_the_whole_market_subscribes_on_one_connection_within_every_rule() -> None:
    universe = us_universe()
    clock = FakeClock()
    srv = PolygonServer(plan_rules("key"), set(universe))
    manager = SubscriptionManager(POLYGON, universe, POLYGON.max_codes_per_conn, PACING,
                                  max_conns=POLYGON.max_conns, depth_levels=1)  # fmt: skip
    sent = drive(manager, srv, clock, seconds=5)  # 16 messages, 200 ms apart
    assert srv.violations == [] and manager.all_confirmed()
    conn = manager.connections[0]
    assert conn.depth_confirmed == conn.confirmed == universe
    assert set(srv.subscribers) == set(srv.book_subscribers) == set(universe)
    assert len(sent) == 2 * 8  # 8,000 trade topics, then 8,000 quote topics, 1,000 a message
    # A change: one code out, one in; only the difference goes.
    manager.unsubscribe(["AAPL.US"])
    sent = drive(manager, srv, clock, seconds=1)
    assert [json.loads(m) for m in sent] == [
        {"action": "unsubscribe", "params": "T.AAPL"},
        {"action": "unsubscribe", "params": "Q.AAPL"},
    ]
    assert "AAPL.US" not in srv.subscribers and srv.violations == []


def test_hasty_pacing_is_caught_by_the_server() -> None:
    universe = us_universe()[:3000]
    srv = PolygonServer(plan_rules("key"), set(universe))
    hasty = replace(PACING, request_interval_ns=20 * MS, cross_interval_ns=20 * MS)
    manager = SubscriptionManager(POLYGON, universe, POLYGON.max_codes_per_conn, hasty,
                                  max_conns=1)  # fmt: skip
    drive(manager, srv, FakeClock(), seconds=1)
    assert set(rules(srv)) == {"request rate"}
