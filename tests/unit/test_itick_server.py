import json
from dataclasses import replace

from feedmux.ingest.subscriptions import SubscriptionManager
from feedmux.providers.base import Outcome, Reply, SessionOptions
from feedmux.providers.itick.protocol import ITickClient
from feedmux.providers.itick.provider import PACING
from feedmux.providers.itick.provider import PROVIDER as ITICK
from feedmux.providers.itick.server import ITickServer, plan_rules
from feedmux.simulator.market import a_share_universe, hk_universe, us_universe
from feedmux.transports.frames import OPCODE_TEXT
from tests.conftest import FakeClock

S = 1_000_000_000
CODES = ["600519.SH", "000001.SZ", "AAPL.US", "700.HK", "BRK.B.US"]


def server(**kw: int) -> ITickServer:
    return ITickServer(plan_rules(token="tok,other", **kw), set(CODES))


def request(ac: str, params: str = "", types: str = "tick") -> bytes:
    return json.dumps({"ac": ac, "params": params, "types": types}).encode()


def said(outcome: Outcome) -> list[dict[str, object]]:
    return [json.loads(r) for r in outcome.replies]


def msgs(outcome: Outcome) -> list[object]:
    return [r.get("msg") for r in said(outcome)]


def rules(srv: ITickServer) -> list[str]:
    return [v.rule for v in srv.violations]


# -- connections -----------------------------------------------------------------------------------
def test_a_connection_is_greeted_then_told_its_token_is_good() -> None:
    outcome = server().open(1, "tok", 0)
    assert said(outcome) == [
        {"code": 1, "msg": "Connected Successfully"},
        {"code": 1, "resAc": "auth", "msg": "authenticated", "data": {"params": "tok"}},
    ]
    assert not outcome.close and outcome.evict == []


def test_a_wrong_token_is_refused_and_closed() -> None:
    srv = server()
    outcome = srv.open(1, "nope", 0)
    assert msgs(outcome) == ["Connected Successfully", "auth failed"] and outcome.close
    assert rules(srv) == ["token"] and srv.subscriptions() == {}
    session = ITickClient("c", ITICK_OPTIONS)
    session.receive_read([(OPCODE_TEXT, r) for r in outcome.replies], 0, lambda k, b, r: None)
    [reply] = session.events
    assert isinstance(reply, Reply) and reply.failure is not None
    assert reply.failure.kind == "token"


def test_a_tokens_newer_connection_disconnects_the_older() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    srv.receive(1, request("subscribe", "AAPL$US"), 0)
    srv.open(2, "other", 0)  # another token: its own connection
    outcome = srv.open(3, "tok", S)
    assert outcome.evict == [1] and not outcome.close
    assert rules(srv) == ["connection cap"]
    assert srv.subscriptions() == {2: [], 3: []} and srv.subscribers == {}
    roomy = server(max_conns=2)
    roomy.open(1, "tok", 0)
    assert roomy.open(2, "tok", 0).evict == [] and roomy.violations == []


# -- subscriptions ---------------------------------------------------------------------------------
def test_subscribe_adds_and_unsubscribe_removes() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    assert msgs(srv.receive(1, request("subscribe", "600519$SH,AAPL$US"), 0)) == [
        "subscribe Successfully"]  # fmt: skip
    srv.receive(1, request("subscribe", "700$HK"), S)
    srv.receive(1, request("subscribe", "700$HK", "depth"), 2 * S)
    assert srv.subscriptions() == {1: ["600519.SH", "AAPL.US", "700.HK"]}
    assert srv.book_subscriptions() == {1: ["700.HK"]}
    assert srv.book_subscribers == {"700.HK": ((1, 5),)}
    reply = said(srv.receive(1, request("unsubscribe", "AAPL$US,700$HK", "tick,depth"), 3 * S))
    assert reply == [{"code": 1, "resAc": "unsubscribe", "msg": "unsubscribe Successfully"}]
    assert srv.subscriptions() == {1: ["600519.SH"]} and srv.book_subscribers == {}
    assert srv.subscribers == {"600519.SH": (1,)}
    assert srv.violations == []


def test_at_most_500_codes_on_a_connection_trades_and_books_together() -> None:
    universe = [f"{600000 + i}.SH" for i in range(501)]
    srv = ITickServer(plan_rules(token="tok"), set(universe))
    srv.open(1, "tok", 0)
    params = ",".join(c.replace(".", "$") for c in universe)
    assert msgs(srv.receive(1, request("subscribe", params), 0)) == [
        "exceeding the maximum subscription limit"]  # fmt: skip
    assert rules(srv) == ["code cap"] and srv.subscriptions() == {1: []}  # nothing applied
    cut = params.rpartition(",")[0]
    assert msgs(srv.receive(1, request("subscribe", cut), S))[0] == "subscribe Successfully"
    books = srv.receive(1, request("subscribe", cut, "depth"), 2 * S)
    assert msgs(books) == ["subscribe Successfully"]  # the same codes' books take no more room
    limit = msgs(srv.receive(1, request("subscribe", "600500$SH", "depth"), 3 * S))
    assert limit == ["exceeding the maximum subscription limit"]
    assert rules(srv) == ["code cap", "code cap"] and len(srv.subscriptions()[1]) == 500


def test_an_unknown_code_refuses_the_whole_message() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    for i, params in enumerate(("600519$SH,MSFT$US", "600519$SH,920118$BJ", "x$$y", "")):
        outcome = srv.receive(1, request("subscribe", params), i * S)
        assert said(outcome) == [{"code": 0, "resAc": "subscribe",
                                  "msg": "cannot be resolved action"}]  # fmt: skip
    assert rules(srv) == ["code invalid"] * 4 and srv.subscriptions() == {1: []}


def test_unknown_actions_types_and_malformed_requests_are_unresolved() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    assert msgs(srv.receive(1, request("trade", "600519$SH"), 0)) == [
        "cannot be resolved action"]  # fmt: skip
    assert msgs(srv.receive(1, request("subscribe", "600519$SH", "quote"), S)) == [
        "cannot be resolved action"]  # fmt: skip
    assert msgs(srv.receive(1, b"{not json", 2 * S)) == ["cannot be resolved action"]
    assert rules(srv) == ["unknown action", "types", "malformed request"]


def test_requests_closer_than_the_interval_break_the_rate_rule() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    srv.open(2, "other", 0)
    srv.receive(1, request("subscribe", "600519$SH"), 0)
    srv.receive(2, request("subscribe", "600519$SH"), S // 10)  # another connection: its own
    srv.receive(1, request("ping", "1731688569840"), S)
    srv.receive(1, request("subscribe", "AAPL$US"), S + S // 2)  # pings count
    assert rules(srv) == ["request rate"]
    assert srv.subscriptions()[1] == ["600519.SH", "AAPL.US"]  # recorded, still applied


def test_an_envelope_error_is_unresolved_and_not_applied() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    assert not srv.subscription_requested
    outcome = srv.receive(1, request("subscribe", "600519$SH"), 0, envelope_error=True)
    assert outcome.envelope_error and msgs(outcome) == ["cannot be resolved action"]
    assert srv.subscriptions() == {1: []} and srv.subscription_requested
    assert srv.violations == []


def test_subscriptions_settle_after_the_last_change() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    srv.receive(1, request("subscribe", "600519$SH"), 10 * S)
    assert srv.settling(14 * S) and not srv.settling(15 * S)


# -- heartbeat -------------------------------------------------------------------------------------
def test_a_ping_not_naming_a_time_in_ms_is_a_violation_and_still_answered() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    assert said(srv.receive(1, request("ping", "7"), 0)) == [
        {"resAc": "pong", "data": {"params": "7"}}
    ]
    assert [v.rule for v in srv.violations] == ["ping"]


def test_a_ping_gets_a_pong_naming_it() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    assert said(srv.receive(1, request("ping", "1731688569840"), 0)) == [
        {"resAc": "pong", "data": {"params": "1731688569840"}}]  # fmt: skip


def test_a_connection_with_no_ping_for_a_minute_is_closed() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    srv.open(2, "other", 0)
    srv.receive(2, request("ping", "1731688569840"), 50 * S)
    assert srv.expired(60 * S) == []
    [(conn, outcome)] = srv.expired(60 * S + 1)
    assert conn == 1 and outcome.close and outcome.close_reason == "heartbeat timeout"
    assert rules(srv) == ["heartbeat timeout"] and list(srv.subscriptions()) == [2]
    assert srv.expired(61 * S) == []  # once


# -- feedmux against it ----------------------------------------------------------------------------
ITICK_OPTIONS = SessionOptions(max_frame_bytes=ITICK.max_frame_bytes, codes_per_request=200,
                               subscribe_model="add_remove")  # fmt: skip
UNIVERSE = a_share_universe()[:900] + hk_universe(7, 100) + us_universe(7, 200)
TOKENS = ["t0", "t1", "t2"]


def deliver(manager: SubscriptionManager, i: int, replies: list[bytes], now: int) -> None:
    session = manager.connections[i].session
    session.receive_read([(OPCODE_TEXT, r) for r in replies], now, lambda k, b, r: None)
    for event in session.events:
        assert isinstance(event, Reply), event
        manager.on_reply(i, event, now)
    session.events.clear()


def drive(manager: SubscriptionManager, srv: ITickServer, clock: FakeClock, seconds: float,
          step: float = 0.05) -> list[tuple[int, int, bytes]]:  # fmt: skip
    """Run feedmux's manager and sessions against the server; (time, conn, request) sent."""
    sent: list[tuple[int, int, bytes]] = []
    end = clock.now + int(seconds * 1e9)
    while clock.now < end:
        for i in manager.connect_due(clock.now):
            outcome = srv.open(i, TOKENS[manager.token_index(i)], clock.now)
            manager.on_connected(i, clock.now)
            deliver(manager, i, outcome.replies, clock.now)
            for older in outcome.evict:
                manager.on_disconnected(older, clock.now)
        for i, message in manager.due(clock.now, WALL_NS + clock.now):
            sent.append((clock.now, i, message))
            outcome = srv.receive(i, message, clock.now)
            deliver(manager, i, outcome.replies, clock.now)
        for i, _ in srv.expired(clock.now):
            manager.on_disconnected(i, clock.now)
        clock.advance(step)
    return sent


WALL_NS = 1_780_000_000 * 10**9  # the time of day the drive starts at


def manager_of(pacing: object = PACING) -> SubscriptionManager:
    return SubscriptionManager(ITICK, UNIVERSE, ITICK.max_codes_per_conn, pacing,  # type: ignore[arg-type]
                               max_conns=ITICK.max_conns, tokens=len(TOKENS),
                               options=ITICK_OPTIONS)  # fmt: skip


def test_feedmux_subscribes_and_changes_lists_within_every_rule() -> None:
    clock = FakeClock()
    srv = ITickServer(plan_rules(token=",".join(TOKENS)), set(UNIVERSE))
    manager = manager_of()
    drive(manager, srv, clock, seconds=20)
    assert srv.violations == [] and manager.all_confirmed()
    held = [c for codes in srv.subscriptions().values() for c in codes]
    assert sorted(held) == sorted(UNIVERSE) and len(srv.subscriptions()) == 3
    gone = UNIVERSE[::7]
    manager.unsubscribe(gone)
    sent = drive(manager, srv, clock, seconds=130)  # heartbeats: none times out
    assert srv.violations == [] and manager.all_confirmed()
    held = [c for codes in srv.subscriptions().values() for c in codes]
    assert sorted(held) == sorted(set(UNIVERSE) - set(gone))
    acs = [json.loads(m)["ac"] for _, _, m in sent]
    assert "unsubscribe" in acs and acs.count("ping") >= 3 * 4


def test_aggressive_pacing_is_caught_by_the_server() -> None:
    clock = FakeClock()
    srv = ITickServer(plan_rules(token=",".join(TOKENS)), set(UNIVERSE))
    hasty = replace(PACING, request_interval_ns=S // 10, cross_interval_ns=S // 10)
    drive(manager_of(hasty), srv, clock, seconds=5)
    assert "request rate" in rules(srv)


def test_a_code_the_server_does_not_know_is_found_alone_and_the_rest_subscribed() -> None:
    clock = FakeClock()
    srv = ITickServer(plan_rules(token=",".join(TOKENS)), set(UNIVERSE))
    unknown = "688999.SH"
    assert unknown not in UNIVERSE
    manager = SubscriptionManager(ITICK, [*UNIVERSE[:300], unknown, *UNIVERSE[300:]],
                                  ITICK.max_codes_per_conn, PACING, max_conns=ITICK.max_conns,
                                  tokens=len(TOKENS), options=ITICK_OPTIONS)  # fmt: skip
    drive(manager, srv, clock, seconds=600)
    assert list(manager.rejected) == [unknown] and "cannot be resolved" in manager.rejected[unknown]
    held = sorted(c for codes in srv.subscriptions().values() for c in codes)
    assert held == sorted(UNIVERSE) and manager.fatal is None
    assert {v.rule for v in srv.violations} == {"code invalid"}
