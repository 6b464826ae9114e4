import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedmux.model import Depth, Tick
from feedmux.providers.base import BadMessage, Failure, Peek, Reply, Request, Trade
from feedmux.providers.polygon.market import GARBAGE_FRAMES
from feedmux.providers.polygon.protocol import PolygonClient
from feedmux.providers.polygon.provider import PROVIDER as POLYGON
from feedmux.transports.frames import OPCODE_BINARY, OPCODE_PING, OPCODE_TEXT

TRADE = b'{"ev":"T","sym":"MSFT","x":4,"i":"12345","z":3,"p":114.125,"s":100,"c":[0,12],' \
    b'"t":1536036818784,"q":3681328}'  # fmt: skip
QUOTE = b'{"ev":"Q","sym":"MSFT","bx":4,"bp":114.125,"bs":100,"ax":7,"ap":114.128,"as":160,' \
    b'"c":0,"i":[604],"t":1536036818784,"q":50385480,"z":3}'  # fmt: skip


def status(status: str, message: str) -> dict[str, str]:
    return {"ev": "status", "status": status, "message": message}


def frame(*events: dict[str, object] | bytes) -> bytes:
    parts = [e if isinstance(e, bytes) else json.dumps(e).encode() for e in events]
    return b"[" + b",".join(parts) + b"]"


def trade(sym: str, price: float = 10.5, seq: int = 1) -> bytes:
    return json.dumps({"ev": "T", "sym": sym, "i": "1", "x": 4, "p": price, "s": 100,
                       "t": 1651684192462, "q": seq, "z": 3}).encode()  # fmt: skip


class Feed:
    """A session and what it routed."""

    def __init__(self, client: PolygonClient | None = None) -> None:
        self.client = client or PolygonClient("c0")
        self.routed: list[tuple[Peek, bytes]] = []

    def read(self, *frames: bytes, opcode: int = OPCODE_TEXT) -> bool:
        route = lambda key, push, _ns: self.routed.append((key, push))  # noqa: E731
        return self.client.receive_read([(opcode, f) for f in frames], 7, route)

    def replies(self) -> list[Reply]:
        out = [e for e in self.client.events if isinstance(e, Reply)]
        self.client.events.clear()
        return out


def authed(**kw: object) -> Feed:
    feed = Feed(PolygonClient("c0", **kw))  # type: ignore[arg-type]
    feed.client.opening("KEY")
    feed.read(frame(status("auth_success", "authenticated")))
    feed.replies()
    return feed


def answer(feed: Feed, messages: list[bytes]) -> None:
    """The server's status for each topic of ``messages``, one frame per message."""
    for message in messages:
        body = json.loads(message)
        done = "subscribed" if body["action"] == "subscribe" else "unsubscribed"
        feed.read(frame(*(status("success", f"{done} to: {t}") for t in body["params"].split(","))))


def subscribed(codes: list[str], kind: str = "trades") -> Feed:
    feed = authed()
    answer(feed, feed.client.subscribe(kind, codes, 1))  # type: ignore[arg-type]
    [reply] = feed.replies()
    assert reply.ok
    return feed


# -- the status conversation -----------------------------------------------------------------------
def test_the_key_goes_in_an_auth_message_and_subscribing_waits_for_auth_success() -> None:
    feed = Feed()
    assert feed.client.opening("KEY") == [b'{"action":"auth","params":"KEY"}']
    assert not feed.client.ready and feed.client.pending() == 1
    assert feed.read(frame(status("connected", "Connected Successfully")))  # alive: no reply
    assert not feed.client.ready and feed.replies() == []
    assert feed.read(frame(status("auth_success", "authenticated")))
    [reply] = feed.replies()
    assert reply.ok and reply.request == Request("auth", (), "auth")
    assert feed.client.ready and feed.client.pending() == 0
    assert feed.client.heartbeat() is None
    assert POLYGON.connect_url("wss://x/stocks", "KEY") == "wss://x/stocks"  # no key in the URL


@pytest.mark.parametrize(
    ("answer_", "failure"),
    [
        (status("auth_failed", "authentication failed"),
         Failure("token", "status auth_failed: authentication failed")),
        (status("auth_failed", "Your plan doesn't include websocket access."),
         Failure("plan", "status auth_failed: Your plan doesn't include websocket access.")),
        (status("max_connections", "Maximum number of connections exceeded."),
         Failure("connections", "status max_connections: Maximum number of connections "
                 "exceeded.")),
        (status("auth_timeout", "No authentication request received."), None),
    ],
)  # fmt: skip
def test_auth_refusals_are_failures_except_the_timeout(
    answer_: dict[str, str], failure: Failure | None
) -> None:
    feed = Feed()
    feed.client.opening("KEY")
    feed.read(frame(status("connected", "Connected Successfully"), answer_))
    [reply] = feed.replies()
    assert not reply.ok and reply.failure == failure
    assert reply.request == Request("auth", (), "auth")
    assert not feed.client.ready  # the server closes; a timeout is retried by reconnecting


def test_max_connections_after_this_session_worked_is_its_own_old_link_and_retried() -> None:
    feed = Feed()
    feed.client.opening("KEY")
    feed.read(frame(status("auth_success", "authenticated")))
    feed.client.reset()  # the link was lost; the server may not know it yet
    feed.client.opening("KEY")
    feed.read(frame(status("max_connections", "Maximum number of connections exceeded.")))
    assert [(r.ok, r.failure) for r in feed.replies()][-1] == (False, None)  # transient


def test_reset_forgets_auth_and_lists() -> None:
    feed = subscribed(["AAPL.US"])
    feed.client.reset()
    assert not feed.client.ready and feed.client.pending() == 0
    feed.read(frame(trade("AAPL")))
    assert feed.routed == [] and feed.client.bad_messages == {"unsubscribed": 1}
    feed.read(frame(status("auth_success", "authenticated")))
    assert feed.client.subscribe("trades", ["AAPL.US"], 0) == [
        b'{"action":"subscribe","params":"T.AAPL"}']  # fmt: skip


# -- subscriptions ---------------------------------------------------------------------------------
def test_a_change_goes_in_chunks_and_gets_one_reply_when_every_topic_is_answered() -> None:
    feed = authed(codes_per_request=2)
    codes = ["AAPL.US", "MSFT.US", "BRK.B.US", "NVDA.US", "V.US"]
    messages = feed.client.subscribe("trades", codes, 0)
    assert [json.loads(m) for m in messages] == [
        {"action": "subscribe", "params": "T.AAPL,T.MSFT"},
        {"action": "subscribe", "params": "T.BRK.B,T.NVDA"},
        {"action": "subscribe", "params": "T.V"},
    ]
    answer(feed, messages[:2])
    assert feed.replies() == [] and feed.client.pending() == 1
    answer(feed, messages[2:])
    [reply] = feed.replies()
    assert reply.ok and reply.request is not None
    assert reply.request.kind == "trades" and reply.request.codes == tuple(codes)
    assert feed.client.pending() == 0


def test_a_change_sends_only_the_difference_subscribes_first() -> None:
    feed = subscribed(["AAPL.US", "MSFT.US", "NVDA.US"])
    messages = feed.client.subscribe("trades", ["MSFT.US", "NVDA.US", "V.US", "SPY.US"], 0)
    assert [json.loads(m) for m in messages] == [
        {"action": "subscribe", "params": "T.V,T.SPY"},
        {"action": "unsubscribe", "params": "T.AAPL"},
    ]
    feed.read(frame(trade("AAPL"), trade("V")))  # before the answers: both still welcome
    assert [k.code for k, _ in feed.routed] == ["AAPL.US", "V.US"]
    answer(feed, messages)
    [reply] = feed.replies()
    assert reply.ok and reply.request is not None and reply.request.label == "T topics +2 -1"
    feed.read(frame(trade("AAPL")))
    assert len(feed.routed) == 2 and feed.client.bad_messages == {"unsubscribed": 1}


def test_an_unchanged_list_is_answered_at_once_and_a_lost_answer_is_asked_again() -> None:
    feed = subscribed(["AAPL.US"])
    assert feed.client.subscribe("trades", ["AAPL.US"], 0) == []
    [reply] = feed.replies()
    assert reply.ok and reply.request == Request("trades", ("AAPL.US",), "T topics +0 -0")
    first = feed.client.subscribe("trades", ["AAPL.US", "MSFT.US"], 0)
    # No answer came: the manager asks again for the same list; what is unconfirmed goes again.
    assert feed.client.subscribe("trades", ["AAPL.US", "MSFT.US"], 0) == first
    answer(feed, first)
    assert [r.ok for r in feed.replies()] == [True]


def test_an_error_status_refuses_the_change_in_flight_and_the_retry_sends_it_again() -> None:
    feed = authed()
    messages = feed.client.subscribe("trades", ["AAPL.US", "MSFT.US"], 0)
    feed.read(frame(status("error", "request refused")))
    [reply] = feed.replies()
    assert reply.verdict == "refused" and reply.envelope and reply.failure is None
    assert reply.request is not None and reply.request.codes == ("AAPL.US", "MSFT.US")
    assert feed.client.subscribe("trades", ["AAPL.US", "MSFT.US"], 0) == messages
    answer(feed, messages)
    assert [r.ok for r in feed.replies()] == [True]
    feed.read(frame(status("error", "something else")))  # nothing in flight: no request
    assert feed.replies()[0].request is None


def test_a_code_of_another_market_is_refused_as_a_bad_code_not_sent() -> None:
    feed = authed()
    assert feed.client.subscribe("trades", ["AAPL.US", "600519.SH"], 0) == []
    [reply] = feed.replies()
    assert reply.verdict == "bad_code" and reply.msg == "not a US code: 600519.SH"


def test_replace_model_names_the_whole_list_again() -> None:
    feed = subscribed(["AAPL.US", "MSFT.US"])
    feed.client.subscribe_model = "replace"
    assert [json.loads(m) for m in feed.client.subscribe("trades", ["MSFT.US", "V.US"], 0)] == [
        {"action": "subscribe", "params": "T.MSFT,T.V"},
        {"action": "unsubscribe", "params": "T.AAPL"},
    ]


def test_books_are_quote_topics_of_one_level() -> None:
    feed = authed()
    messages = feed.client.subscribe("books", ["AAPL.US"], 10)
    assert messages == [b'{"action":"subscribe","params":"Q.AAPL"}']
    feed.read(frame(trade("AAPL")))  # trades are another list
    assert feed.routed == [] and feed.client.bad_messages == {"unsubscribed": 1}
    answer(feed, messages)
    assert [r.request.kind for r in feed.replies() if r.request] == ["books"]


def test_the_whole_market_is_one_wildcard_topic_and_any_ticker_is_welcome() -> None:
    feed = authed()
    messages = feed.client.subscribe("trades", ["*.US"], 0)
    assert messages == [b'{"action":"subscribe","params":"T.*"}']
    answer(feed, messages)
    assert [r.ok for r in feed.replies()] == [True]
    feed.read(frame(trade("AAPL"), trade("ZZZZ"), trade("BRK.B")))
    assert [k for k, _ in feed.routed] == [Peek("AAPL.US", False), Peek("ZZZZ.US", False),
                                           Peek("BRK.B.US", False)]  # fmt: skip
    # whatever the stream brings, only a ticker becomes a code; a trade of 1970 is no trade
    feed.read(frame(trade("A|B"), trade("A B")))
    assert len(feed.routed) == 3 and feed.client.bad_messages == {"ticker": 2}
    old = POLYGON.decode(b'{"ev":"T","sym":"ZZZZ","p":1.5,"s":100,"t":1,"q":1}', 0)
    assert isinstance(old, BadMessage) and old.kind == "schema"
    answer(feed, feed.client.subscribe("trades", [], 0))
    feed.read(frame(trade("AAPL")))
    assert len(feed.routed) == 3 and feed.client.bad_messages == {"ticker": 2, "unsubscribed": 1}


# -- frames of many events -------------------------------------------------------------------------
def test_an_array_of_mixed_events_is_split_and_each_push_routed_with_its_key() -> None:
    feed = subscribed(["MSFT.US", "BRK.B.US"])
    answer(feed, feed.client.subscribe("books", ["MSFT.US"], 1))
    feed.replies()
    message = frame(TRADE, status("success", "subscribed to: T.MSFT"), QUOTE, trade("BRK.B"))
    assert feed.read(message)
    assert [(k, push) for k, push in feed.routed] == [
        (Peek("MSFT.US", False), TRADE), (Peek("MSFT.US", True), QUOTE),
        (Peek("BRK.B.US", False), trade("BRK.B")),
    ]  # fmt: skip
    for key, push in feed.routed:  # the shard decodes each alone, to the code it was routed by
        item = POLYGON.decode(push, 9)
        assert not isinstance(item, BadMessage) and item.code == key.code
    assert POLYGON.split(message) == feed.routed  # a journal's frame, keyed the same


def test_bad_events_are_counted_and_skipped_while_the_good_ones_of_the_array_route() -> None:
    feed = subscribed(["MSFT.US"])
    bad = [b'{"ev":"XQ","sym":"MSFT"}', b'{"ev":"T","sym":""}', b"null", b'{"sym":"MSFT"}']
    assert feed.read(frame(TRADE, *bad, trade("MSFT", price=0.0, seq=2)))
    assert feed.client.bad_messages == {"unknown_ev": 1, "schema": 3}
    assert [push for _, push in feed.routed] == [TRADE, trade("MSFT", price=0.0, seq=2)]
    decoded = [POLYGON.decode(push, 0) for _, push in feed.routed]
    assert isinstance(decoded[0], Tick)
    assert isinstance(decoded[1], BadMessage) and decoded[1].kind == "schema"  # zero price


@pytest.mark.parametrize(("opcode", "payload"), GARBAGE_FRAMES)
def test_each_garbage_frame_is_counted_once_and_yields_nothing(opcode: int, payload: bytes) -> None:
    feed = subscribed(["AAPL.US"])
    feed.read(payload, opcode=opcode)
    decoded = [POLYGON.decode(push, 0) for _, push in feed.routed]
    assert all(isinstance(item, BadMessage) for item in decoded)
    assert sum(feed.client.bad_messages.values()) + len(decoded) == 1


def test_whole_frame_faults_are_named() -> None:
    feed = subscribed(["AAPL.US"])
    feed.read(b"[{", b'{"ev":"T"}', b"[" + b" " * (5 << 20) + b"]")
    feed.read(b"\x00", opcode=OPCODE_BINARY)
    assert feed.client.bad_messages == {"json": 1, "not_array": 1, "oversized": 1, "binary": 1}
    assert not feed.read(b"[{", b"[]")  # nothing useful: not "alive"
    assert feed.read(b"", opcode=OPCODE_PING)  # the server's ping is


def test_receive_decodes_the_first_push_of_a_message() -> None:
    client = PolygonClient("t", only_subscribed=False)
    tick = client.receive(frame(status("connected", "x"), TRADE, QUOTE), 42)
    assert tick == Tick("MSFT.US", 3681328, 1536036818784 * 10**6, 42, 114.125, 100.0, 11412.5, 0)
    assert client.receive(frame(status("connected", "x")), 0) is None


# -- decoding --------------------------------------------------------------------------------------
def test_a_quote_is_a_one_level_book_and_an_unpriced_side_is_empty() -> None:
    assert POLYGON.decode(QUOTE, 5) == Depth("MSFT.US", 50385480, 1536036818784 * 10**6, 5,
                                             [(114.125, 100.0)], [(114.128, 160.0)])  # fmt: skip
    one_sided = json.loads(QUOTE)
    one_sided["ap"], one_sided["as"] = 0, 0
    del one_sided["bp"]
    item = POLYGON.decode(json.dumps(one_sided).encode(), 5)
    assert isinstance(item, Depth) and item.bids == [] and item.asks == []


def test_fractional_size_comes_as_a_string() -> None:
    event = json.loads(TRADE)
    del event["s"]
    event["ds"] = "0.25"
    item = POLYGON.decode(json.dumps(event).encode(), 0)
    assert isinstance(item, Tick) and item.volume == 0.25 and item.turnover == 114.125 * 0.25
    del event["ds"]
    item = POLYGON.decode(json.dumps(event).encode(), 0)
    assert isinstance(item, BadMessage) and item.kind == "schema"


@pytest.mark.parametrize(
    ("field", "value"),
    [("p", 0), ("p", -1), ("p", "x"), ("s", -5), ("q", -1), ("t", 0), ("sym", ""), ("sym", 5)],
)
def test_a_bad_trade_is_a_bad_message(field: str, value: object) -> None:
    event = json.loads(TRADE)
    event[field] = value
    item = POLYGON.decode(json.dumps(event).encode(), 0)
    assert isinstance(item, BadMessage) and item.kind == "schema"


def test_a_status_is_not_a_push() -> None:
    item = POLYGON.decode(json.dumps(status("connected", "x")).encode(), 0)
    assert isinstance(item, BadMessage) and item.kind == "not_push"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_no_bytes_make_the_session_or_the_decoder_raise(payload: bytes) -> None:
    feed = subscribed(["AAPL.US"])
    feed.read(payload, b"[" + payload + b"]")
    POLYGON.decode(payload, 0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["ev", "sym", "p", "s", "ds", "t", "q", "bp",
                                                 "as", "status", "message"]),
                                st.one_of(st.sampled_from(["T", "Q", "status", "AAPL"]),
                                          st.integers(), st.floats(), st.text(max_size=5),
                                          st.none())), max_size=5))  # fmt: skip
def test_no_json_shape_makes_the_session_or_the_decoder_raise(
    events: list[dict[str, object]],
) -> None:
    feed = subscribed(["AAPL.US"])
    feed.read(json.dumps(events).encode())
    for _, push in feed.routed:
        POLYGON.decode(push, 0)


# -- codes, frames and requests --------------------------------------------------------------------
def test_codes_round_trip_with_share_classes() -> None:
    for ticker in ("AAPL", "BRK.B", "BF.B"):
        code = POLYGON.canonical(ticker)
        assert code == f"{ticker}.US" and POLYGON.vendor_code(code) == ticker
    assert POLYGON.cannot_carry("BRK.B.US") is None
    assert "600519.SH" in (POLYGON.cannot_carry("600519.SH") or "")
    with pytest.raises(ValueError, match="not a US code"):
        POLYGON.vendor_code("700.HK")


@pytest.mark.parametrize("variant", [0, 1, 2, 3])
def test_every_synthetic_trade_shape_decodes_to_the_trade(variant: int) -> None:
    push = POLYGON.trade_frame(Trade("BRK.B.US", 123456789, 1700000000123, 412.37, 300, 1, variant))
    assert POLYGON.decode(push, 1) == Tick("BRK.B.US", 123456789, 1700000000123 * 10**6, 1,
                                           412.37, 300.0, 412.37 * 300, 0)  # fmt: skip


def test_a_synthetic_book_keeps_its_best_level() -> None:
    push = POLYGON.book_frame("AAPL.US", 7, 1700000000123, [(1.5, 100), (1.4, 5)], [])
    assert POLYGON.decode(push, 0) == Depth("AAPL.US", 7, 1700000000123 * 10**6, 0,
                                            [(1.5, 100.0)], [])  # fmt: skip


def test_pushes_are_packed_in_arrays_and_split_back() -> None:
    pushes = [POLYGON.trade_frame(Trade("AAPL.US", i, 1, 1.5, 1, 0, i % 4)) for i in range(250)]
    messages = POLYGON.pack(pushes)
    assert [len(json.loads(m)) for m in messages] == [100, 100, 50]
    assert [p for m in messages for _, p in POLYGON.split(m)] == pushes
    assert POLYGON.split(messages[0])[0][0] == Peek("AAPL.US", False)


def test_request_codes_are_those_a_subscribe_asks_for() -> None:
    assert POLYGON.request_codes(b'{"action":"subscribe","params":"T.AAPL,Q.AAPL,T.BRK.B"}') == [
        "AAPL.US", "BRK.B.US"]  # fmt: skip
    assert POLYGON.request_codes(b'{"action":"unsubscribe","params":"T.AAPL"}') == []
    assert POLYGON.request_codes(b"not json") == []
    assert POLYGON.replay_token("/stocks", {}) == ""


def test_a_refused_handshake_is_classified_by_its_status() -> None:
    assert POLYGON.handshake_failure(401, b"Unauthorized").kind == "token"
    assert POLYGON.handshake_failure(404, None).kind == "not_websocket"
    assert POLYGON.handshake_failure(503, None).kind == "transient"
