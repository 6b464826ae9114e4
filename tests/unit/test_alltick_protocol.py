import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedmux.model import Tick
from feedmux.providers.alltick.protocol import AllTickClient, peek
from feedmux.providers.alltick.provider import PROVIDER as ALLTICK
from feedmux.providers.base import BadMessage, Peek, Reply, Request

SPEC_TRADE_STRINGS = (
    b'{"cmd_id":22998,"data":{"code":"600519.SH","seq":"1605509068000001",'
    b'"tick_time":"1605509068","price":"1745.50","volume":"300","turnover":"523650.00",'
    b'"trade_direction":1}}'
)
SPEC_TRADE_INTS = (
    b'{"cmd_id":22998,"data":{"code":"AAPL.US","seq":30841439,"tick_time":1677831545217,'
    b'"price":"151.03","volume":"100","turnover":"15103.0","trade_direction":2}}'
)


def test_trade_with_string_fields_and_seconds_is_normalised() -> None:
    tick = AllTickClient("t", only_subscribed=False).receive(SPEC_TRADE_STRINGS, recv_ns=42)
    assert tick == Tick("600519.SH", 1605509068000001, 1605509068 * 10**9, 42, 1745.5, 300.0,
                        523650.0, 1)  # fmt: skip


def test_trade_with_int_fields_and_milliseconds_is_normalised() -> None:
    tick = AllTickClient("t", only_subscribed=False).receive(SPEC_TRADE_INTS, recv_ns=7)
    assert tick == Tick("AAPL.US", 30841439, 1677831545217 * 10**6, 7, 151.03, 100.0, 15103.0, 2)


def test_unknown_vendor_fields_are_tolerated() -> None:
    message = json.loads(SPEC_TRADE_INTS)
    message["data"]["new_field"] = {"x": 1}
    message["extra"] = 5
    tick = AllTickClient("t", only_subscribed=False).receive(json.dumps(message).encode(), 0)
    assert tick is not None and tick.code == "AAPL.US"


def test_subscribe_request_carries_the_full_replacing_list() -> None:
    client = AllTickClient("feedmux-c0")
    request = json.loads(client.subscribe_trades(["600519.SH", "AAPL.US"]))
    assert request == {
        "cmd_id": 22004, "seq_id": 1, "trace": "feedmux-c0-1",
        "data": {"symbol_list": [{"code": "600519.SH"}, {"code": "AAPL.US"}]},
    }  # fmt: skip
    heartbeat = json.loads(client.heartbeat())
    assert heartbeat == {"cmd_id": 22000, "seq_id": 2, "trace": "feedmux-c0-2", "data": {}}


def test_ack_is_matched_to_its_request() -> None:
    client = AllTickClient("c")
    client.subscribe_trades(["600519.SH"])
    ack = b'{"ret":200,"msg":"ok","cmd_id":22005,"seq_id":1,"trace":"c-1","data":{}}'
    assert client.receive(ack, 0) is None
    [reply] = client.events
    assert isinstance(reply, Reply) and reply.ok and reply.what() == "cmd 22005"
    assert reply.request == Request("trades", ("600519.SH",), "cmd 22004")
    assert client.pending() == 0


def test_error_reply_is_an_event_not_an_exception() -> None:
    client = AllTickClient("c")
    client.subscribe_trades(["XXX.SH"])
    client.receive(b'{"ret":600,"msg":"code invalid","cmd_id":22005,"seq_id":1,"trace":"c-1"}', 0)
    [reply] = client.events
    assert isinstance(reply, Reply) and not reply.ok and reply.ret == 600


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (b"{not json", "json"),
        (b"", "json"),
        (b'{"cmd_id":12345,"data":{}}', "unknown_cmd"),
        (b'{"cmd_id":22998,"data":{"code":"600519.SH","seq":1}}', "schema"),
        (b'{"cmd_id":22998,"data":{"code":"600519.SH","seq":1,"tick_time":1,"price":"0",'
         b'"volume":"1"}}', "schema"),
        (b'{"cmd_id":22998,"data":{"code":"600519.SH","seq":1,"tick_time":1,"price":"-3",'
         b'"volume":"1"}}', "schema"),
        (b'{"cmd_id":22998,"data":{"code":"600519.SH","seq":1,"tick_time":1,"price":"abc",'
         b'"volume":"1"}}', "schema"),
        (b'{"cmd_id":22998,"data":{"code":"","seq":1,"tick_time":1,"price":"1",'
         b'"volume":"1"}}', "schema"),
        (b'[1,2,3]', "schema"),
    ],
)  # fmt: skip
def test_bad_messages_are_counted_and_skipped(message: bytes, kind: str) -> None:
    client = AllTickClient("c", only_subscribed=False)
    assert client.receive(message, 0) is None
    assert client.bad_messages == {kind: 1}
    [event] = client.events
    assert isinstance(event, BadMessage) and event.kind == kind and len(event.sample) <= 200
    # the connection goes on: the next good message decodes
    assert client.receive(SPEC_TRADE_INTS, 0) is not None


def test_pushes_for_codes_not_subscribed_here_are_counted_and_skipped() -> None:
    client = AllTickClient("c")
    assert client.receive(SPEC_TRADE_INTS, 0) is None  # AAPL.US: never asked for
    client.subscribe_trades(["AAPL.US", "600519.SH"])
    assert client.receive(SPEC_TRADE_INTS, 0) is not None  # asked for: may precede the ack
    client.subscribe_trades(["600519.SH"])  # AAPL.US removed: still expected until the ack
    assert client.receive(SPEC_TRADE_INTS, 0) is not None
    ack = b'{"ret":200,"msg":"ok","cmd_id":22005,"seq_id":%d,"trace":"","data":{}}'
    client.receive(ack % 1, 0)
    assert client.receive(SPEC_TRADE_INTS, 0) is not None  # the replacing list is not acked
    client.receive(ack % 2, 0)
    assert client.receive(SPEC_TRADE_INTS, 0) is None
    assert client.receive(SPEC_TRADE_STRINGS, 0) is not None
    client.reset()  # a new connection starts with nothing subscribed
    assert client.receive(SPEC_TRADE_STRINGS, 0) is None
    assert client.bad_messages == {"unsubscribed": 3}


def test_oversized_frames_are_counted_before_decoding() -> None:
    client = AllTickClient("c", max_frame_bytes=1024, only_subscribed=False)
    padded = SPEC_TRADE_INTS[:-2] + b',"pad":"' + b"x" * 2000 + b'"}}'
    assert client.receive(padded, 0) is None
    [event] = client.events
    assert isinstance(event, BadMessage) and event.kind == "oversized" and len(event.sample) <= 200


def test_binary_frame_is_counted() -> None:
    client = AllTickClient("c")
    client.bad_binary(b"\x00\x01")
    assert client.bad_messages == {"binary": 1}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_no_bytes_make_the_decoder_raise(message: bytes) -> None:
    client = AllTickClient("c", only_subscribed=False)
    tick = client.receive(message, 0)
    assert tick is None or tick.price > 0


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                   max_size=4),
        max_leaves=12,
    ),
    st.sampled_from([22998, 22999, 22001, 22005, 1]),
)  # fmt: skip
def test_no_json_shape_makes_the_decoder_raise(data: object, cmd_id: int) -> None:
    message = json.dumps({"cmd_id": cmd_id, "data": data}).encode()
    AllTickClient("c", only_subscribed=False).receive(message, 0)


def test_peek_reads_the_route_key_without_decoding_the_tick() -> None:
    assert peek(SPEC_TRADE_STRINGS) == Peek("600519.SH", book=False)
    depth = b'{"cmd_id":22999,"data":{"code":"700.HK","seq":1,"tick_time":1,"bids":[],"asks":[]}}'
    assert peek(depth) == Peek("700.HK", book=True)
    # Fields the route does not need are not parsed: a broken price still routes (the full
    # decode, wherever it runs, counts it as a bad message).
    broken = SPEC_TRADE_STRINGS.replace(b'"1745.50"', b'"abc"')
    assert peek(broken) == Peek("600519.SH", book=False)
    bad = ALLTICK.decode(broken, 0)
    assert isinstance(bad, BadMessage) and bad.kind == "schema" and bad.sample == broken
    ack = b'{"ret":200,"msg":"ok","cmd_id":22005,"seq_id":1,"trace":"c-1","data":{}}'
    assert peek(ack) is None and peek(b"not json") is None


def test_decode_needs_no_connection_and_agrees_with_the_session() -> None:
    session = AllTickClient("t", only_subscribed=False)
    for message in (SPEC_TRADE_STRINGS, SPEC_TRADE_INTS):
        assert ALLTICK.decode(message, 5) == session.receive(message, 5)
    ack = b'{"ret":200,"msg":"ok","cmd_id":22005,"seq_id":1,"trace":"c-1","data":{}}'
    decoded = ALLTICK.decode(ack, 0)
    assert isinstance(decoded, BadMessage) and decoded.kind == "not_push"


def test_the_token_goes_in_the_query_and_codes_are_canonical() -> None:
    assert ALLTICK.auth == "query" and ALLTICK.subscribe_model == "replace"
    assert ALLTICK.connect_url("wss://h/p", "T") == "wss://h/p?token=T"
    assert ALLTICK.connect_url("wss://h/p?x=1", "T") == "wss://h/p?x=1&token=T"
    assert ALLTICK.connect_headers("T") == [] and AllTickClient("c").opening("T") == []
    assert ALLTICK.vendor_code("700.HK") == "700.HK" == ALLTICK.canonical("700.HK")
    request = AllTickClient("c").subscribe_trades(["600519.SH", "AAPL.US"])
    assert ALLTICK.request_codes(request) == ["600519.SH", "AAPL.US"]
    assert ALLTICK.request_codes(AllTickClient("c").heartbeat()) == []


def test_an_empty_list_is_a_cancel_of_its_kind() -> None:
    session = AllTickClient("c")
    [trades] = session.subscribe("trades", [], 0)
    [books] = session.subscribe("books", [], 5)
    assert json.loads(trades)["data"] == {"cancel_type": 2}
    assert json.loads(books)["data"] == {"cancel_type": 1}
