import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedmux.model import Depth, Tick
from feedmux.providers.base import (
    BadMessage,
    Failure,
    Peek,
    Reply,
    Request,
    SessionOptions,
    SubscribeModel,
    Trade,
)
from feedmux.providers.itick import identity
from feedmux.providers.itick.protocol import ITickClient
from feedmux.providers.itick.provider import PROVIDER as ITICK
from feedmux.transports.frames import OPCODE_BINARY, OPCODE_TEXT

T = 1731689407000  # ms
GREETING = b'{"code":1,"msg":"Connected Successfully"}'
AUTHENTICATED = b'{"code":1,"resAc":"auth","msg":"authenticated","data":{"params":"tok"}}'
AUTH_FAILED = b'{"code":0,"resAc":"auth","msg":"auth failed"}'
ACK = b'{"code":1,"resAc":"subscribe","msg":"subscribe Successfully"}'
LIMIT = b'{"code":0,"resAc":"subscribe","msg":"exceeding the maximum subscription limit"}'
UNRESOLVED = b'{"code":0,"resAc":"subscribe","msg":"cannot be resolved action"}'
Routed = list[tuple[Peek, bytes, int]]


def tick(s: str = "AAPL.US", ld: float = 225.21, t: int = T, v: int = 100, d: int = 2,
         te: int = 0) -> bytes:  # fmt: skip
    return (b'{"code":1,"data":{"s":"%s","ld":%r,"t":%d,"v":%d,"d":%d,"te":%d,"type":"tick"}}'
            % (s.encode(), ld, t, v, d, te))  # fmt: skip


def client(per_request: int = 500, model: SubscribeModel = "add_remove", *,
           only_subscribed: bool = True) -> ITickClient:  # fmt: skip
    options = SessionOptions(max_frame_bytes=ITICK.max_frame_bytes,
                             codes_per_request=per_request, subscribe_model=model)  # fmt: skip
    return ITickClient("c", options, only_subscribed=only_subscribed)


def read(session: ITickClient, *payloads: bytes, recv_ns: int = 0) -> tuple[bool, Routed]:
    routed: Routed = []
    messages = [(OPCODE_TEXT, p) for p in payloads]
    alive = session.receive_read(messages, recv_ns, lambda k, b, r: routed.append((k, b, r)))
    return alive, routed


def replies(session: ITickClient) -> list[Reply]:
    out = [e for e in session.events if isinstance(e, Reply)]
    session.events.clear()
    return out


def subscribed(codes: list[str]) -> ITickClient:
    """An authenticated session whose trade list the server acked."""
    session = client()
    read(session, GREETING, AUTHENTICATED)
    for _ in session.subscribe("trades", codes, 0):
        read(session, ACK)
    session.events.clear()
    return session


def decoded(session: ITickClient, *payloads: bytes, recv_ns: int = 0) -> list[Tick | Depth]:
    """Pushes as the receiver hands them on, decoded as a shard does."""
    out = []
    for _, payload, at in read(session, *payloads, recv_ns=recv_ns)[1]:
        item = ITICK.decode(payload, at)
        assert not isinstance(item, BadMessage), item
        out.append(item)
    return out


# -- the conversation ------------------------------------------------------------------------------
def test_the_token_goes_in_a_header_and_the_session_waits_for_the_servers_verdict() -> None:
    assert ITICK.auth == "header" and ITICK.connect_headers("T") == ["token: T"]
    assert ITICK.connect_url("wss://api.itick.org/stock", "T") == "wss://api.itick.org/stock"
    session = client()
    assert session.opening("T") == [] and not session.ready
    alive, routed = read(session, GREETING)  # the greeting only says the link is up
    assert alive and routed == [] and not session.ready and session.events == []
    assert read(session, AUTHENTICATED)[0] and session.ready
    assert replies(session) == [Reply("ok", 1, "authenticated", Request("auth", label="auth"),
                                      label="auth")]  # fmt: skip
    session.reset()  # a new connection authenticates anew
    assert not session.ready


def test_a_refused_token_is_a_permanent_failure() -> None:
    session = client()
    read(session, GREETING, AUTH_FAILED)
    [reply] = replies(session)
    assert not session.ready and reply.verdict == "refused"
    assert reply.failure == Failure("token", "code=0 auth failed")


def test_a_change_is_sent_in_chunks_and_answered_by_one_reply() -> None:
    session = client(per_request=2)
    read(session, GREETING, AUTHENTICATED)
    session.events.clear()
    codes = ["600519.SH", "700.HK", "AAPL.US", "000001.SZ", "BRK.B.US"]
    messages = [json.loads(m) for m in session.subscribe("trades", codes, 0)]
    assert messages == [
        {"ac": "subscribe", "params": "600519$SH,700$HK", "types": "tick"},
        {"ac": "subscribe", "params": "AAPL$US,000001$SZ", "types": "tick"},
        {"ac": "subscribe", "params": "BRK.B$US", "types": "tick"},
    ]
    assert session.pending() == 3
    for _ in range(2):
        assert read(session, ACK)[0] and replies(session) == []  # not all answered yet
    read(session, ACK)
    [reply] = replies(session)
    assert reply.ok and reply.request == Request("trades", tuple(codes), "tick subscription")
    assert session.pending() == 0


def test_add_remove_sends_the_difference_removals_first() -> None:
    session = subscribed(["600519.SH", "700.HK", "AAPL.US"])
    messages = session.subscribe("trades", ["700.HK", "AAPL.US", "MSFT.US"], 0)
    assert [json.loads(m) for m in messages] == [
        {"ac": "unsubscribe", "params": "600519$SH", "types": "tick"},
        {"ac": "subscribe", "params": "MSFT$US", "types": "tick"},
    ]
    read(session, b'{"code":1,"resAc":"unsubscribe","msg":"unsubscribe Successfully"}', ACK)
    [reply] = replies(session)
    assert reply.ok and reply.request is not None
    assert reply.request.codes == ("700.HK", "AAPL.US", "MSFT.US")
    # nothing to change: no message, an "ok" at once
    assert session.subscribe("trades", ["MSFT.US", "700.HK", "AAPL.US"], 0) == []
    [same] = replies(session)
    assert same.ok and same.request is not None and set(same.request.codes) == {
        "MSFT.US", "700.HK", "AAPL.US"}  # fmt: skip


def test_books_are_their_own_list_with_type_depth() -> None:
    session = subscribed(["700.HK"])
    [message] = session.subscribe("books", ["700.HK"], 5)
    assert json.loads(message) == {"ac": "subscribe", "params": "700$HK", "types": "depth"}
    read(session, ACK)
    [reply] = replies(session)
    assert reply.ok and reply.request == Request("books", ("700.HK",), "depth subscription")


def test_replace_sends_the_whole_list_in_one_message_and_unsubscribes_for_none() -> None:
    session = client(per_request=1, model="replace")
    read(session, GREETING, AUTHENTICATED)
    session.subscribe("trades", ["600519.SH", "700.HK"], 0)
    read(session, ACK)
    [second] = session.subscribe("trades", ["700.HK", "AAPL.US"], 0)
    assert json.loads(second) == {"ac": "subscribe", "params": "700$HK,AAPL$US", "types": "tick"}
    read(session, ACK)
    assert [r.ok for r in replies(session)] == [True, True, True]
    messages = session.subscribe("trades", [], 0)  # a list replaced whole cannot be empty
    assert [json.loads(m) for m in messages] == [
        {"ac": "unsubscribe", "params": p, "types": "tick"} for p in ("700$HK", "AAPL$US")
    ]


def test_the_plans_cap_refuses_the_change_at_once_and_only_once() -> None:
    session = client(per_request=1)
    read(session, GREETING, AUTHENTICATED)
    session.events.clear()
    session.subscribe("trades", ["600519.SH", "700.HK", "AAPL.US"], 0)
    read(session, ACK, LIMIT)
    [reply] = replies(session)
    assert reply.verdict == "refused" and reply.request is not None
    assert reply.request.codes == ("600519.SH", "700.HK", "AAPL.US")
    assert reply.failure == Failure("plan", "code=0 exceeding the maximum subscription limit")
    assert reply.what() == "subscribe tick (1 codes)"
    read(session, ACK)  # the change's last answer: no second Reply
    assert replies(session) == [] and session.pending() == 0
    # what the server did accept stays expected; the refused code does not
    assert read(session, tick("600519.SH"))[1] and not read(session, tick("700.HK"))[1]


def test_a_refusal_naming_no_code_is_a_one_off_then_a_bad_code_if_it_comes_again() -> None:
    session = client()
    read(session, GREETING, AUTHENTICATED)
    session.events.clear()
    session.subscribe("trades", ["600519.SH", "688999.SH"], 0)
    read(session, UNRESOLVED)
    [reply] = replies(session)  # sent again after a backoff by the manager
    assert reply.verdict == "refused" and reply.failure is None and reply.envelope
    session.subscribe("trades", ["600519.SH", "688999.SH"], 0)
    read(session, UNRESOLVED)
    [reply] = replies(session)  # the same codes refused twice: one is bad (the manager halves)
    assert reply.verdict == "bad_code" and not reply.envelope
    session.subscribe("trades", ["600519.SH"], 0)
    read(session, ACK)
    assert [r.verdict for r in replies(session)] == ["ok"]


def test_a_code_subscribed_again_numbers_its_pushes_anew() -> None:
    """The vendor may push a code's latest trade again when it is subscribed again, on the
    same connection: that push is a re-send, its seq one already stored."""
    session = subscribed(["AAPL.US"])
    [first] = decoded(session, tick())
    session.subscribe("trades", [], 0)
    read(session, ACK)
    session.subscribe("trades", ["AAPL.US"], 0)
    read(session, ACK)
    [again] = decoded(session, tick())
    assert again.seq == first.seq


def test_an_answer_to_no_request_names_none() -> None:
    session = client()
    read(session, ACK)
    [reply] = replies(session)
    assert reply.ok and reply.request is None


# -- heartbeat -------------------------------------------------------------------------------------
def test_a_pong_must_name_the_last_ping() -> None:
    session = client()
    ms = 1_780_000_000_000
    # the documented params: the time in ms; a second ping in the same ms names the next
    assert json.loads(session.heartbeat(ms * 10**6 + 7)) == {"ac": "ping", "params": str(ms)}
    assert session.pending() == 1
    assert read(session, b'{"resAc":"pong","data":{"params":"%d"}}' % ms)[0]
    assert session.pending() == 0 and session.bad_messages == {}
    assert json.loads(session.heartbeat(ms * 10**6)) == {"ac": "ping", "params": str(ms + 1)}
    assert not read(session, b'{"resAc":"pong","data":{"params":"%d"}}' % ms)[0]  # a stale one
    assert read(session, b'{"resAc":"pong","data":{"params":"%d"}}' % (ms + 1))[0]
    assert not read(session, b'{"resAc":"pong","data":{"params":"%d"}}' % (ms + 1))[0]  # none
    assert session.bad_messages == {"pong": 2}
    assert [e.kind for e in session.events if isinstance(e, BadMessage)] == ["pong", "pong"]


# -- pushes ----------------------------------------------------------------------------------------
def test_a_tick_is_normalised_with_its_direction_mapped() -> None:
    session = subscribed(["AAPL.US"])
    buy, sell, neutral = decoded(session, tick(d=2), tick(d=1, v=200), tick(d=0, v=300),
                                 recv_ns=9)  # fmt: skip
    assert (buy.direction, sell.direction, neutral.direction) == (1, 2, 0)  # type: ignore[union-attr]
    assert buy == Tick("AAPL.US", buy.seq, T * 10**6, 9, 225.21, 100.0, 22521.0, 1)


def test_a_book_is_sorted_by_position() -> None:
    book = (b'{"code":1,"data":{"s":"700.HK","type":"depth",'
            b'"a":[{"po":2,"p":350.4,"v":200,"o":2},{"po":1,"p":350.2,"v":100,"o":1}],'
            b'"b":[{"po":3,"p":349.6,"v":5,"o":1},{"po":1,"p":350.0,"v":7,"o":1},'
            b'{"po":2,"p":349.8,"v":6,"o":1}]}}')  # fmt: skip
    session = subscribed([])
    session.subscribe("books", ["700.HK"], 5)
    read(session, ACK)
    [depth] = decoded(session, book, recv_ns=T * 10**6 + 5)
    assert isinstance(depth, Depth) and depth.code == "700.HK"
    assert depth.bids == [(350.0, 7.0), (349.8, 6.0), (349.6, 5.0)]
    assert depth.asks == [(350.2, 100.0), (350.4, 200.0)]
    assert depth.time_ns == T * 10**6 + 5  # no time in a book: when it was read
    assert depth.seq >> 16 == T


def test_books_of_one_ms_keep_the_order_they_came_in() -> None:
    session = subscribed([])
    session.subscribe("books", ["700.HK"], 5)
    read(session, ACK)
    books = [b'{"code":1,"data":{"s":"700.HK","a":[{"po":1,"p":%d.0,"v":1,"o":1}],"b":[],'
             b'"type":"depth"}}' % price for price in range(300, 340)]  # fmt: skip
    _, routed = read(session, *books, recv_ns=T * 10**6)
    assert routed[0][1] == books[0] and routed[1][1] == b"1 " + books[1]
    seqs = [ITICK.decode(payload, at).seq for _, payload, at in routed]  # type: ignore[union-attr]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(books)
    assert {seq >> 16 for seq in seqs} == {T}


SPELLINGS = [
    ("600519", "600519.SH"), ("600519.SH", "600519.SH"), ("000001", "000001.SZ"),
    ("300750.sz", "300750.SZ"), ("700", "700.HK"), ("00700", "700.HK"), ("700.HK", "700.HK"),
    ("00700.HK", "700.HK"), ("AAPL", "AAPL.US"), ("AAPL.US", "AAPL.US"),
    ("BRK.B", "BRK.B.US"), ("BRK.B.US", "BRK.B.US"), ("700$HK", "700.HK"),
]  # fmt: skip


@pytest.mark.parametrize(("s", "code"), SPELLINGS)
def test_every_spelling_has_one_canonical_code_in_peek_and_decode(s: str, code: str) -> None:
    session = subscribed([code])
    session.subscribe("books", [code], 5)
    read(session, ACK)
    book = b'{"code":1,"data":{"s":"%s","a":[],"b":[],"type":"depth"}}' % s.encode()
    _, routed = read(session, tick(s), book)
    assert [key for key, _, _ in routed] == [Peek(code, False), Peek(code, True)]
    assert [ITICK.decode(payload, 0).code for _, payload, _ in routed] == [code, code]  # type: ignore[union-attr]
    assert ITICK.split(tick(s)) == [(Peek(code, False), tick(s))]
    assert ITICK.canonical(s) == code


def test_a_code_of_no_region_served_is_a_bad_message_in_both_places() -> None:
    session = client(only_subscribed=False)
    for s in ("920118", "0", "AAPL.JP", "!!"):
        assert session.receive(tick(s), 0) is None
        decoded = ITICK.decode(tick(s), 0)
        assert isinstance(decoded, BadMessage) and decoded.kind == "code"
    assert session.bad_messages == {"code": 4}
    with pytest.raises(ValueError, match="not a code"):
        ITICK.canonical("920118")


# -- identity --------------------------------------------------------------------------------------
def reconnected(session: ITickClient) -> ITickClient:
    session.reset()  # the link dropped; a new one subscribes again
    read(session, GREETING, AUTHENTICATED)
    session.subscribe("trades", ["AAPL.US"], 0)
    read(session, ACK)
    return session


def test_a_push_sent_again_after_a_reconnect_has_the_same_seq() -> None:
    session = subscribed(["AAPL.US"])
    pushes = [tick(), tick(), tick(v=300)]
    before = [t.seq for t in decoded(session, *pushes)]
    assert [t.seq for t in decoded(reconnected(session), *pushes)] == before
    # one re-sent alone counts from 0 again: a seq already stored, and not above the code's
    # highest, so the shard drops it as a re-send
    assert [t.seq for t in decoded(reconnected(session), pushes[2])] == [before[0]]


def test_identical_trades_on_one_connection_are_distinct() -> None:
    session = subscribed(["AAPL.US"])
    first, second, third = decoded(session, tick(), tick(), tick())
    assert [first.seq & 0xFFFF, second.seq & 0xFFFF, third.seq & 0xFFFF] == [0, 1, 2]
    assert first.seq < second.seq < third.seq  # each above the last: each published
    assert first.seq >> 16 == second.seq >> 16 == T  # the same time
    # the marker the shard reads: nothing for the first, "<n> " for the others
    _, routed = read(session, tick(t=T + 1), tick(t=T + 1))
    assert routed[0][1] == tick(t=T + 1) and routed[1][1] == b"1 " + tick(t=T + 1)


def test_seqs_keep_time_order_whatever_the_content() -> None:
    session = subscribed(["AAPL.US"])
    items = decoded(session, tick(ld=999.0, v=9999, t=T), tick(ld=0.01, v=1, t=T + 1),
                    tick(ld=500.0, t=T + 2, te=2))  # fmt: skip
    assert [t.seq for t in items] == sorted(t.seq for t in items)
    assert [t.seq >> 16 for t in items] == [T, T + 1, T + 2]


def test_different_trades_in_one_ms_keep_their_order_of_arrival() -> None:
    session = subscribed(["AAPL.US"])
    items = decoded(session, tick(ld=500.0), tick(ld=0.01, v=1), tick(ld=250.0, te=2))
    assert [t.seq for t in items] == [(T << 16) + k for k in range(3)]
    assert [t.price for t in items] == [500.0, 0.01, 250.0]


def test_arrivals_only_remember_each_codes_current_ms() -> None:
    seen = identity.Arrivals()
    assert [seen.count("A", T) for _ in range(3)] == [0, 1, 2]
    assert seen.count("B", T) == 0
    assert seen.count("A", T + 1) == 0
    assert seen.count("A", T) == 0  # its ms came back: afresh (a re-send, by the rule)
    seen.clear()
    assert seen.count("A", T + 1) == 0


@pytest.mark.parametrize("marker", [b"0 ", b"65536 ", b"1x ", b"7"])
def test_a_bad_marker_is_a_bad_message(marker: bytes) -> None:
    decoded = ITICK.decode(marker + tick(), 0)
    assert isinstance(decoded, BadMessage) and decoded.kind == "marker"


# -- bad and other messages ------------------------------------------------------------------------
def test_a_quote_is_counted_without_a_warning_and_not_routed() -> None:
    quote = (
        b'{"code":1,"data":{"s":"AAPL.US","ld":225.2,"o":226.27,"h":226.92,"l":224.44,'
        b'"t":1731689407000,"v":16742235,"tu":3774688301.4,"ts":0,"type":"quote"}}'
    )
    session = subscribed(["AAPL.US"])
    alive, routed = read(session, quote)
    assert alive and routed == [] and session.bad_messages == {"quote": 1}
    assert session.events == []
    assert isinstance(ITICK.decode(quote, 0), BadMessage) and ITICK.split(quote) == []


@pytest.mark.parametrize(("opcode", "frame"), ITICK.garbage_frames)
def test_every_garbage_frame_is_counted_and_skipped(opcode: int, frame: bytes) -> None:
    session = subscribed(["600519.SH"])
    session.heartbeat()  # a ping outstanding: a pong naming another is still counted
    routed: Routed = []
    alive = session.receive_read([(opcode, frame)], 0, lambda k, b, r: routed.append((k, b, r)))
    if routed:  # read whole only where decoded: a shard counts it
        [(_, payload, _)] = routed
        assert isinstance(ITICK.decode(payload, 0), BadMessage)
    else:
        assert not alive and sum(session.bad_messages.values()) == 1
    # the connection goes on: the next good push is routed
    assert read(session, tick("600519.SH"))[1]


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (b"{not json", "json"),
        (b"", "json"),
        (b"[1,2]", "schema"),
        (b'{"code":1,"data":{"s":"AAPL.US","type":"kline@1"}}', "unknown_type"),
        (b'{"code":1,"data":{"s":"AAPL.US","ld":0,"t":1,"v":1,"type":"tick"}}', "schema"),
        (b'{"code":1,"data":{"s":"AAPL.US","ld":1,"t":1,"v":1,"d":3,"type":"tick"}}', "schema"),
        (b'{"code":1,"data":{"s":"AAPL.US","ld":1,"t":2199023255552,"v":1,"type":"tick"}}',
         "schema"),
        (b'{"code":0,"msg":"internal error"}', "error"),
        (b'{"code":1,"resAc":"news","msg":"x"}', "unknown"),
        (b'{"code":1,"data":{"s":"AAPL.US","ld":1,"t":1,"v":1,"type":"tick","x":"\xff"}}',
         "utf8"),
    ],
)  # fmt: skip
def test_bad_messages_are_counted_and_skipped(message: bytes, kind: str) -> None:
    session = client(only_subscribed=False)
    assert session.receive(message, 0) is None
    assert session.bad_messages == {kind: 1}
    [event] = session.events
    assert isinstance(event, BadMessage) and event.kind == kind and len(event.sample) <= 200
    assert session.receive(tick(), 0) is not None


def test_oversized_and_binary_messages_are_counted() -> None:
    session = client(only_subscribed=False)
    padded = tick()[:-2] + b',"pad":"' + b"x" * ITICK.max_frame_bytes + b'"}}'
    assert session.receive(padded, 0) is None
    session.receive_read([(OPCODE_BINARY, b"\x00\x01")], 0, lambda k, b, r: None)
    assert session.bad_messages == {"oversized": 1, "binary": 1}


def test_pushes_for_codes_not_subscribed_here_are_counted_and_skipped() -> None:
    session = subscribed(["600519.SH", "AAPL.US"])
    assert read(session, tick("AAPL.US"))[1]
    session.subscribe("trades", ["600519.SH"], 0)  # AAPL.US dropped: expected until answered
    assert read(session, tick("AAPL.US"))[1]
    read(session, b'{"code":1,"resAc":"unsubscribe","msg":"unsubscribe Successfully"}')
    assert not read(session, tick("AAPL.US"))[1] and not read(session, tick("MSFT.US"))[1]
    session.reset()
    assert not read(session, tick("600519.SH"))[1]
    assert session.bad_messages == {"unsubscribed": 3}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_no_bytes_make_the_decoders_raise(message: bytes) -> None:
    item = client(only_subscribed=False).receive(message, 0)
    assert item is None or isinstance(item, Tick | Depth)
    ITICK.decode(message, 0)
    ITICK.split(message)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                   max_size=4),
        max_leaves=12,
    ),
    st.sampled_from(["tick", "depth", "quote", "x", None]),
    st.sampled_from(["auth", "subscribe", "pong", ""]),
)  # fmt: skip
def test_no_json_shape_makes_the_session_raise(data: object, kind: str | None,
                                               res_ac: str) -> None:  # fmt: skip
    body = data if not isinstance(data, dict) or kind is None else {**data, "type": kind}
    message = json.dumps({"code": 1, "resAc": res_ac, "data": body}).encode()
    client(only_subscribed=False).receive(message, 0)
    ITICK.decode(message, 0)


# -- the provider ----------------------------------------------------------------------------------
def test_codes_requests_and_markets() -> None:
    assert ITICK.vendor_code("700.HK") == "700$HK" and ITICK.vendor_code("BRK.B.US") == "BRK.B$US"
    session = client()
    [request] = session.subscribe("trades", ["600519.SH", "AAPL.US"], 0)
    assert ITICK.request_codes(request) == ["600519.SH", "AAPL.US"]
    assert ITICK.request_codes(session.heartbeat()) == []
    assert ITICK.cannot_carry("AAPL.US") is None
    assert ITICK.cannot_carry("920118.BJ") == (
        "itick cannot carry 920118.BJ: it serves HK, SH, SZ, US codes only"
    )
    universe = ITICK.replay_universe(7)
    assert universe == ITICK.replay_universe(7) and len(universe) == len(set(universe))
    assert {c.rpartition(".")[2] for c in universe} == {"SH", "SZ", "HK", "US"}
    assert ITICK.replay_token("/stock", {"Token": "abc", "Host": "h"}) == "abc"
    assert ITICK.replay_token("/stock", {}) == ""


def test_a_handshake_refused_for_the_token_is_the_tokens_failure() -> None:
    assert ITICK.handshake_failure(403, b"").kind == "token"
    failure = ITICK.handshake_failure(400, b'{"code":0,"msg":"auth failed"}')
    assert failure.kind == "token" and failure.detail == "HTTP 400, auth failed"
    assert ITICK.handshake_failure(502, b"bad gateway").kind == "transient"


def test_synthetic_frames_decode_to_the_trade_they_encode() -> None:
    for variant in range(4):
        for code in ("600519.SH", "000001.SZ", "700.HK", "BRK.B.US"):
            trade = Trade(code, 1, T, 12.34, 500, 1 + variant % 2, variant)
            item = ITICK.decode(ITICK.trade_frame(trade), 0)
            assert isinstance(item, Tick)
            assert (item.code, item.time_ns, item.price, item.volume, item.direction) == (
                code, T * 10**6, 12.34, 500.0, trade.direction)  # fmt: skip
    book = ITICK.decode(ITICK.book_frame("AAPL.US", 1, T, [(1.0, 100)], [(1.1, 200)]), 5)
    assert isinstance(book, Depth) and (book.bids, book.asks) == ([(1.0, 100.0)], [(1.1, 200.0)])
