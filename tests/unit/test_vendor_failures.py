"""Which vendor failures are permanent, what the run says about them, and when it gives up."""

from __future__ import annotations

import http.server
import io
import json
from collections.abc import Iterator

import msgspec
import pytest
from rich.console import Console

from feedmux.errors import ConfigError
from feedmux.ingest.subscriptions import SubscriptionManager
from feedmux.ops.config import Settings
from feedmux.ops.status import build_status, progress_line, render
from feedmux.providers.alltick.protocol import AllTickClient, handshake_failure, reply_failure
from feedmux.providers.alltick.provider import PACING
from feedmux.providers.alltick.provider import PROVIDER as ALLTICK
from feedmux.providers.alltick.server import ENVELOPE_ERROR, AllTickServer, plan_rules
from feedmux.providers.base import BODY_LINE_MAX, Failure, Reply, first_line, give_up_message
from feedmux.simulator.market import a_share_universe
from feedmux.stats import RunStats
from feedmux.transports.ws import HandshakeRefused, WsLink
from tests.conftest import FakeClock, http_serving
from tests.stats_samples import connection_stats, receiver_stats
from tests.unit.test_subscriptions import answer, drive

UNIVERSE = a_share_universe()
# valid spellings the replay server does not list
UNKNOWN = [next(c for c in (f"{p}{i:03d}.{x}" for i in range(1000)) if c not in UNIVERSE)
           for p, x in (("600", "SH"), ("300", "SZ"), ("000", "SZ"))]  # fmt: skip
HTML = b"<!DOCTYPE html>\n<html><body>\n" + b"<p>a long page</p>\n" * 500 + b"</body></html>"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, "token"), (403, "token"), (404, "not_websocket"), (410, "not_websocket"),
     (200, "not_websocket"), (400, "handshake"), (426, "handshake"), (408, "transient"),
     (429, "transient"), (500, "transient"), (502, "transient"), (503, "transient")],
)  # fmt: skip
def test_handshake_statuses_are_classified(status: int, kind: str) -> None:
    failure = handshake_failure(status, HTML)
    assert failure.kind == kind
    assert failure.permanent == (kind != "transient")
    assert failure.detail == f"HTTP {status}"
    assert failure.body == "<!DOCTYPE html>"  # one line of the page, never the page


def test_a_vendor_verdict_in_a_handshake_body_wins_over_the_status() -> None:
    body = b'{"ret":401,"msg":"token invalid","data":{}}'
    assert handshake_failure(200, body) == Failure("token", "HTTP 200, ret=401 token invalid",
                                                   body.decode())  # fmt: skip
    assert handshake_failure(404, b'{"ret":600}').kind == "not_websocket"  # not about the link
    assert handshake_failure(502, b"{not json").kind == "transient"


def test_reply_codes_are_classified() -> None:
    assert reply_failure(401, "token invalid") == Failure("token", "ret=401 token invalid")
    assert reply_failure(603, "token level not enough") == Failure(
        "plan", "ret=603 token level not enough"
    )
    for ret in (200, 429, 600, 604, 605, 606):  # retried, or handled per code
        assert reply_failure(ret, "x") is None


def test_a_body_is_quoted_by_one_short_line() -> None:
    assert first_line(b"\n\n  Not Found  \nmore") == "Not Found"
    assert first_line(None) == "" and first_line(b"") == ""
    long = first_line("x" * 1000)
    assert len(long) == BODY_LINE_MAX and long.endswith("...")
    assert first_line(b"\xff\xfe bad utf-8") == "\ufffd\ufffd bad utf-8"


def test_give_up_messages_say_what_to_check() -> None:
    url = "wss://x/y"
    token = give_up_message(handshake_failure(401), 3, url)
    assert token == "vendor refused the token (HTTP 401) 3 times: check --token / FEEDMUX_TOKEN"
    page = give_up_message(handshake_failure(404, HTML), 3, url)
    assert page == "wss://x/y is not a WebSocket endpoint: HTTP 404 3 times: check --url"
    assert "once" not in give_up_message(handshake_failure(400), 1, url)
    assert "1 time:" in give_up_message(handshake_failure(400), 1, url)


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", str(len(HTML)))
        self.end_headers()
        self.wfile.write(HTML)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    with http_serving(_Page, "/quote?token=secret") as url:
        yield url


def test_a_refused_handshake_raises_one_short_classified_line(page_url: str) -> None:
    with pytest.raises(HandshakeRefused) as caught:
        WsLink(page_url, 5.0)
    assert str(caught.value) == "HTTP 404: <!DOCTYPE html>"
    assert caught.value.failure.kind == "not_websocket"


def test_a_wrong_token_gives_up_after_the_same_refusal_n_times() -> None:
    clock = FakeClock()
    server = AllTickServer(plan_rules(token="the-right-one"), set(UNIVERSE))
    manager = SubscriptionManager(ALLTICK, UNIVERSE[:5], 3000, PACING, give_up_after=3)
    drive(manager, server, clock, seconds=60)  # drive() opens with a token the server refuses
    assert manager.fatal == (Failure("token", "ret=401 token invalid"), 3)
    assert len([v for v in server.violations if v.rule == "token"]) >= 3


def _fail(manager: SubscriptionManager, clock: FakeClock, failure: Failure | None) -> None:
    manager.on_disconnected(0, clock.advance(1), "x", failure)


def test_transient_failures_are_retried_for_ever_and_break_a_run_of_permanent_ones() -> None:
    clock = FakeClock()
    manager = SubscriptionManager(ALLTICK, ["600519.SH"], 3000, PACING, give_up_after=2)
    for _ in range(50):
        _fail(manager, clock, None)  # refused connection, reset, timeout
        _fail(manager, clock, handshake_failure(503))
    assert manager.fatal is None
    _fail(manager, clock, handshake_failure(404))
    _fail(manager, clock, None)
    _fail(manager, clock, handshake_failure(404))
    _fail(manager, clock, handshake_failure(401))  # a different one starts a new count
    assert manager.fatal is None
    _fail(manager, clock, handshake_failure(401))
    assert manager.fatal == (handshake_failure(401), 2)


def test_a_confirmed_subscription_resets_the_count() -> None:
    clock = FakeClock()
    manager = SubscriptionManager(ALLTICK, ["600519.SH"], 3000, PACING, give_up_after=2)
    manager.on_connected(0, clock.now)
    [(_, message)] = manager.due(clock.now)
    answer(manager, 0, message, 401, "token invalid", clock.now)
    _fail(manager, clock, None)  # the failure the reply left on the link is counted
    assert manager.connections[0].same_failures == 1
    manager.on_connected(0, clock.advance(5))
    [(_, message)] = manager.due(clock.now)
    answer(manager, 0, message, 200, "ok", clock.now)
    assert manager.connections[0].same_failures == 0
    _fail(manager, clock, handshake_failure(401))
    assert manager.fatal is None


def test_a_depth_refusal_for_the_plan_stops_the_books_not_the_run() -> None:
    clock = FakeClock()
    manager = SubscriptionManager(ALLTICK, ["600519.SH"], 3000, PACING, depth_levels=5)
    manager.on_connected(0, clock.now)
    message = manager.connections[0].session.subscribe_depth(["600519.SH"], 5)
    answer(manager, 0, message, 603, "token level not enough", clock.now)
    assert manager.connections[0].failure is None


def test_a_universe_whose_every_code_is_refused_is_fatal() -> None:
    clock = FakeClock()
    unknown = UNKNOWN
    server = AllTickServer(plan_rules(token="tok"), set(UNIVERSE))
    manager = SubscriptionManager(ALLTICK, unknown, 3000, PACING)
    drive(manager, server, clock, seconds=20)
    assert sorted(manager.rejected) == sorted(unknown)
    assert manager.fatal is not None
    failure, _ = manager.fatal
    assert failure.kind == "codes"
    assert failure.detail.startswith("the vendor refused every code: ")
    assert f"{UNKNOWN[0]} (ret=600 code invalid)" in failure.detail


def test_a_refused_code_among_good_ones_is_not_fatal() -> None:
    clock = FakeClock()
    server = AllTickServer(plan_rules(token="tok"), set(UNIVERSE))
    manager = SubscriptionManager(ALLTICK, [*UNIVERSE[:3], UNKNOWN[0]], 3000, PACING)
    drive(manager, server, clock, seconds=20)
    assert list(manager.rejected) == UNKNOWN[:1]
    assert manager.fatal is None


def test_a_token_refusal_with_cmd_id_0_is_matched_to_the_waiting_request() -> None:
    # spec: errors about the envelope come back with cmd_id 0 and maybe no seq_id
    clock = FakeClock()
    manager = SubscriptionManager(ALLTICK, ["600519.SH"], 3000, PACING, give_up_after=1)
    manager.on_connected(0, clock.now)
    manager.due(clock.now)
    session = manager.connections[0].session
    message = b'{"ret":401,"msg":"token invalid","cmd_id":0,"seq_id":0,"trace":"","data":{}}'
    assert session.receive(message, clock.now) is None
    [reply] = session.events
    assert isinstance(reply, Reply) and reply.request is not None
    assert (
        reply.request.kind == "trades" and reply.what() == "cmd 22004 (an envelope error, cmd_id 0)"
    )
    assert session.pending() == 0 and session.bad_messages == {}
    manager.on_reply(0, reply, clock.now)
    assert manager.connections[0].failure == Failure("token", "ret=401 token invalid")
    manager.on_disconnected(0, clock.now, "refused")
    assert manager.fatal == (Failure("token", "ret=401 token invalid"), 1)


def test_an_envelope_error_goes_to_the_waiting_subscribe_not_a_heartbeat_left_unanswered() -> None:
    # In a stall a heartbeat's reply is lost; the error that comes later is the subscribe's.
    session = AllTickClient("c")
    session.heartbeat()
    session.subscribe_trades(["600519.SH"])
    session.receive(ENVELOPE_ERROR, 0)
    [reply] = session.events
    assert isinstance(reply, Reply) and reply.envelope and reply.ret == 201
    assert reply.request is not None and reply.request.kind == "trades"
    assert reply.what() == "cmd 22004 (an envelope error, cmd_id 0)"


def test_an_envelope_error_on_a_subscribe_is_shown_and_retried_after_a_backoff() -> None:
    clock = FakeClock()
    codes = UNIVERSE[:3]
    server = AllTickServer(plan_rules(token="tok"), set(UNIVERSE))
    manager = SubscriptionManager(ALLTICK, codes, 3000, PACING)
    assert server.open(0, "tok", clock.now)
    manager.on_connected(0, clock.now)
    assert len(manager.due(clock.now)) == 1  # the subscribe; the vendor refuses its envelope
    session = manager.connections[0].session
    assert session.receive(ENVELOPE_ERROR, clock.now) is None
    [reply] = session.events
    session.events.clear()
    assert isinstance(reply, Reply) and reply.envelope and reply.request is not None
    assert reply.what() == "cmd 22004 (an envelope error, cmd_id 0)"
    assert session.bad_messages == {}  # not an unknown_cmd message
    manager.on_reply(0, reply, clock.now)
    conn = manager.connections[0]
    assert conn.last_error == "ret=201 request header param invalid" and conn.failure is None
    row = connection_stats(codes=3, messages=1, error=conn.last_error)
    stats = RunStats(receiver=receiver_stats(connections=[row]))
    table = io.StringIO()
    Console(file=table, width=120).print(render(build_status(None, stats, 0)))
    assert "ret=201 request header param invalid" in table.getvalue()
    refused_at = clock.now
    sent = drive(manager, server, clock, seconds=10)
    [retry_at] = [t for t, _, f in sent if json.loads(f)["cmd_id"] == 22004]
    assert retry_at - refused_at >= 2 * PACING.cross_interval_ns  # the widened spacing
    assert server.subscriptions() == {0: codes} and server.violations == []
    assert manager.all_confirmed() and conn.last_error == "" and conn.reconnects == 0


def test_an_envelope_error_for_the_token_or_plan_is_still_permanent() -> None:
    clock = FakeClock()
    for ret, kind in ((401, "token"), (603, "plan")):
        manager = SubscriptionManager(ALLTICK, ["600519.SH"], 3000, PACING)
        manager.on_connected(0, clock.now)
        manager.due(clock.now)
        session = manager.connections[0].session
        session.receive(ENVELOPE_ERROR.replace(b"201", str(ret).encode()), clock.now)
        manager.on_reply(0, session.events.pop(), clock.now)
        conn = manager.connections[0]
        assert conn.failure is not None and conn.failure.kind == kind
        assert conn.refused == ["600519.SH"] and conn.refusal is not None
        assert not conn.refusal.retried


def test_a_code_refusal_with_cmd_id_0_still_searches_for_the_bad_code() -> None:
    clock = FakeClock()
    manager = SubscriptionManager(ALLTICK, [UNIVERSE[0], UNKNOWN[0]], 3000, PACING)
    manager.on_connected(0, clock.now)
    manager.due(clock.now)
    session = manager.connections[0].session
    session.receive(ENVELOPE_ERROR.replace(b"201", b"600"), clock.now)
    manager.on_reply(0, session.events.pop(), clock.now)
    conn = manager.connections[0]
    assert conn.held_back == {UNKNOWN[0]} and conn.refusal is None


def test_status_counts_refused_codes_and_names_the_first_few() -> None:
    receiver = receiver_stats(ticks=5, codes_desired=3, codes_subscribed=3, codes_rejected=12,
                              rejected=UNKNOWN)  # fmt: skip
    status = build_status(None, RunStats(receiver=receiver), 0)
    assert status.codes_rejected == 12 and status.rejected == UNKNOWN
    assert "codes 3/3 (refused 12)" in progress_line(status, 1.0)
    console = Console(width=140, record=True, file=io.StringIO())
    console.print(render(status, "test"))
    assert f"refused codes: 12 ({', '.join(UNKNOWN)} ...)" in console.export_text()


def test_give_up_after_must_be_at_least_one() -> None:
    base = Settings(url="wss://x/y", token="t", codes=["600519.SH"])
    base.validate()
    assert base.give_up_after == 3
    with pytest.raises(ConfigError, match="--give-up-after must be >= 1, got 0"):
        msgspec.structs.replace(base, give_up_after=0).validate()
    with pytest.raises(ValueError, match="give_up_after"):
        SubscriptionManager(ALLTICK, ["600519.SH"], 3000, PACING, give_up_after=0)
