import json

from feedmux.providers.alltick.server import AllTickServer, plan_rules

S = 1_000_000_000
CODES = ["600519.SH", "000001.SZ", "AAPL.US", "700.HK"]


def server(**kw: int) -> AllTickServer:
    return AllTickServer(plan_rules(token="tok", **kw), set(CODES))


def sub(codes: list[str], seq: int = 1) -> bytes:
    return json.dumps({"cmd_id": 22004, "seq_id": seq, "trace": f"t{seq}",
                       "data": {"symbol_list": [{"code": c} for c in codes]}}).encode()  # fmt: skip


def hb(seq: int) -> bytes:
    return json.dumps({"cmd_id": 22000, "seq_id": seq, "trace": "h", "data": {}}).encode()


def rets(outcome: object) -> list[int]:
    return [json.loads(r)["ret"] for r in outcome.replies]  # type: ignore[attr-defined]


def test_subscribe_replaces_the_list() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    assert rets(srv.receive(1, sub(["600519.SH", "AAPL.US"]), 0)) == [200]
    assert rets(srv.receive(1, sub(["AAPL.US"], 2), 3 * S)) == [200]
    assert srv.subscriptions() == {1: ["AAPL.US"]}
    assert srv.subscribers == {"AAPL.US": (1,)}
    assert srv.violations == []


def test_second_request_within_a_second_is_rate_limited_and_not_applied() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    srv.receive(1, sub(["600519.SH"]), 0)
    srv.receive(1, hb(2), 4 * S)
    outcome = srv.receive(1, sub(["AAPL.US"], 3), 4 * S + S // 2)
    assert rets(outcome) == [429] and not outcome.close
    assert srv.subscriptions() == {1: ["600519.SH"]}
    assert [v.rule for v in srv.violations] == ["request rate"]


def test_a_rate_limited_subscription_still_counts_for_the_3s_rule() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    srv.open(2, "tok", 0)
    srv.receive(1, hb(1), 0)
    assert rets(srv.receive(1, sub(["600519.SH"], 2), S // 2)) == [429]
    outcome = srv.receive(2, sub(["AAPL.US"], 3), S)
    assert rets(outcome) == [606] and outcome.close


def test_an_envelope_error_is_not_applied_but_counts_for_the_spacing() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    assert not srv.subscription_requested
    heartbeat = srv.receive(1, hb(1), -2 * S, envelope_error=True)  # answered as usual
    assert rets(heartbeat) == [200] and not heartbeat.envelope_error
    outcome = srv.receive(1, sub(["600519.SH"]), 0, envelope_error=True)
    assert outcome.envelope_error and srv.subscription_requested
    assert [json.loads(r)["cmd_id"] for r in outcome.replies] == [0]
    assert rets(outcome) == [201] and srv.subscriptions() == {1: []}
    assert rets(srv.receive(1, sub(["600519.SH"], 2), S)) == [606]


def test_heartbeats_count_toward_the_rate() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    srv.receive(1, hb(1), 0)
    assert rets(srv.receive(1, hb(2), S // 10)) == [429]


def test_subscriptions_across_connections_3s_apart_or_606_and_close() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    srv.open(2, "tok", 0)
    srv.receive(1, sub(["600519.SH"]), 0)
    outcome = srv.receive(2, sub(["AAPL.US"]), 2 * S)
    assert rets(outcome) == [606] and outcome.close
    assert srv.violations[-1].rule == "request spacing"


def test_subscriptions_on_one_connection_3s_apart_too() -> None:
    # spec rule 2: any two subscription/cancel requests of the token, same connection or not
    srv = server()
    srv.open(1, "tok", 0)
    srv.receive(1, sub(["600519.SH"]), 0)
    cancel = json.dumps({"cmd_id": 22006, "seq_id": 2, "trace": "c", "data": {"cancel_type": 2}})
    outcome = srv.receive(1, cancel.encode(), int(1.5 * S))
    assert rets(outcome) == [606] and outcome.close
    assert srv.violations[-1].rule == "request spacing"
    assert srv.subscriptions() == {1: ["600519.SH"]}  # not applied


def test_heartbeats_are_outside_the_3s_rule() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    srv.open(2, "tok", 0)
    srv.receive(1, sub(["600519.SH"]), 0)
    assert rets(srv.receive(1, hb(2), int(1.1 * S))) == [200]
    assert rets(srv.receive(2, hb(1), int(1.2 * S))) == [200]
    assert rets(srv.receive(2, sub(["AAPL.US"], 2), 3 * S)) == [200]
    assert srv.violations == []


def test_a_closed_connections_last_request_still_counts() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    srv.open(2, "tok", 0)
    srv.receive(1, sub(["600519.SH"]), 0)
    srv.close(1, S)
    assert rets(srv.receive(2, sub(["AAPL.US"]), 2 * S)) == [606]


def test_codes_beyond_the_cap_are_silently_ignored() -> None:
    srv = server(max_codes_per_conn=2)
    srv.open(1, "tok", 0)
    assert rets(srv.receive(1, sub(CODES), 0)) == [200]  # the ack still says ok
    assert srv.subscriptions() == {1: CODES[:2]}
    assert srv.violations[-1].rule == "code cap"


def test_unknown_code_is_600_and_not_applied() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    assert rets(srv.receive(1, sub(["600519.SH", "999999.SH"]), 0)) == [600]
    assert srv.subscriptions() == {1: []}


def test_bad_token_gets_401_and_close() -> None:
    srv = server()
    srv.open(1, "wrong", 0)
    outcome = srv.receive(1, hb(1), 0)
    assert rets(outcome) == [401] and outcome.close


def test_connection_cap_drops_the_extra_connection() -> None:
    srv = server(max_conns=2)
    assert not srv.open(1, "tok", 0).close and not srv.open(2, "tok", 0).close
    refused = srv.open(3, "tok", 0)
    assert refused.close and refused.close_code == 1008
    assert srv.violations[-1].rule == "connection cap"


def test_each_token_has_its_own_connection_cap_and_spacing() -> None:
    srv = AllTickServer(plan_rules(token="a,b", max_conns=1), set(CODES))
    assert not srv.open(1, "a", 0).close and not srv.open(2, "b", 0).close
    assert srv.open(3, "a", 0).close  # a's one connection is taken
    srv.receive(1, sub(["600519.SH"]), 0)
    assert rets(srv.receive(2, sub(["AAPL.US"]), S)) == [200]  # b's spacing is its own
    assert rets(srv.receive(1, hb(2), 2 * S)) == [200]
    assert [v.rule for v in srv.violations] == ["connection cap"]


def test_reconnect_too_soon_is_dropped() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    srv.close(1, 10 * S)
    assert srv.open(2, "tok", 12 * S).close
    assert not srv.open(3, "tok", 13 * S).close
    assert [v.rule for v in srv.violations] == ["reconnect spacing"]


def test_silent_connection_expires_after_30s() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    srv.open(2, "tok", 0)
    srv.receive(2, hb(1), 20 * S)
    assert srv.expired(29 * S) == []
    assert [(conn, outcome.close) for conn, outcome in srv.expired(31 * S)] == [(1, True)]
    assert srv.violations[-1].rule == "heartbeat timeout"


def test_cancel_empties_the_trade_list_and_empty_body_is_601() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    srv.receive(1, sub(["600519.SH"]), 0)
    cancel = json.dumps({"cmd_id": 22006, "seq_id": 2, "trace": "c", "data": {"cancel_type": 2}})
    assert rets(srv.receive(1, cancel.encode(), 3 * S)) == [200]
    assert srv.subscribers == {}
    assert rets(srv.receive(1, sub([], 3), 6 * S)) == [601]


def test_malformed_request_is_400() -> None:
    srv = server()
    srv.open(1, "tok", 0)
    assert rets(srv.receive(1, b"{nope", 0)) == [400]


def test_subscriptions_settle_two_cross_intervals_after_the_last_change() -> None:
    srv = server(cross_interval_ns=3 * S)
    srv.open(1, "tok", 0)
    srv.receive(1, sub(["600519.SH"]), 10 * S)
    assert srv.settling(15 * S)  # a second connection may still subscribe: a replay waits
    assert not srv.settling(16 * S)  # settled: a frame of an unsubscribed code is skipped
