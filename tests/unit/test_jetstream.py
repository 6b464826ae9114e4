"""NATS JetStream without a server: subjects and their escape, message ids, filters, and the
check of a stream that exists already."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.js import api

from feedmux import families, wire
from feedmux.jetstream import subjects
from feedmux.jetstream.client import _url
from feedmux.jetstream.stream import StreamSpec, problems
from feedmux.model import Bar, Depth, Tick

T = families.TRADES


@pytest.mark.parametrize(("code", "name"), [
    ("600519.SH", "feedmux.trades.SH.600519"),
    ("AAPL.US", "feedmux.trades.US.AAPL"),
    ("700.HK", "feedmux.trades.HK.700"),
    ("BRK.B.US", "feedmux.trades.US.BRK%2EB"),
    ("BF-B.US", "feedmux.trades.US.BF-B"),
])  # fmt: skip
def test_a_code_s_subject_and_back(code: str, name: str) -> None:
    assert subjects.subject("feedmux", T, code) == name
    assert subjects.parse("feedmux", name) == (T, code)


@given(st.text(min_size=1))
def test_any_symbol_is_one_subject_token_and_comes_back(symbol: str) -> None:
    token = subjects.escape(symbol)
    assert token and not any(c in token for c in ".*> \t\r\n")
    assert subjects.unescape(token) == symbol


def test_subjects_of_other_prefixes_families_or_shapes_are_not_feedmux_s() -> None:
    for name in ("other.trades.SH.600519", "feedmux.moves.SH.600519", "feedmux.trades.SH",
                 "feedmux.trades.SH.600519.x"):  # fmt: skip
        assert subjects.parse("feedmux", name) is None
    assert subjects.of_topic("p", b"MT|600519.SH") is None  # moves are not relayed
    assert subjects.of_topic("p.q", b"B|AAPL.US") == "p.q.bars.US.AAPL"


@pytest.mark.parametrize(("names", "codes", "markets", "want"), [
    ((), (), (), "p.*.*.*"),
    (("trades",), (), (), "p.trades.*.*"),
    (("trades",), (), ("SH",), "p.trades.SH.*"),
    (("trades", "books"), ("BRK.B.US",), (), "p.*.US.BRK%2EB"),
    (("trades",), ("600519.SH", "000001.SZ"), (), "p.trades.*.*"),
    (("trades",), ("600519.SH", "601318.SH"), (), "p.trades.SH.*"),
    (("trades",), (), ("SH", "SZ"), "p.trades.*.*"),
])  # fmt: skip
def test_a_filter_covers_what_is_asked(names: tuple[str, ...], codes: tuple[str, ...],
                                       markets: tuple[str, ...], want: str) -> None:  # fmt: skip
    assert subjects.filter_subject("p", names, codes, markets) == want


def test_message_ids_are_the_identity_so_a_republication_is_the_same_message() -> None:
    tick = Tick("600519.SH", 42, 1_764_000_000 * 10**9, 1, 10.0, 1.0, 10.0, 1)
    first = subjects.message_id("alltick", T, wire.Published(0, 7, tick))
    assert first == subjects.message_id("alltick", T, wire.Published(3, 0, tick))  # restarted
    assert first != subjects.message_id("itick", T, wire.Published(0, 7, tick))  # two vendors
    book = Depth("600519.SH", 42, tick.time_ns, 1, [], [])
    assert subjects.message_id("alltick", families.BOOKS, wire.PublishedDepth(0, 1, book)) != first
    bar = Bar("600519.SH", 60 * 10**9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3, last=(5, 9))
    amended = Bar("600519.SH", 60 * 10**9, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 4, last=(6, 10))
    bars = families.BARS
    assert subjects.message_id("a", bars, wire.PublishedBar(0, 1, bar)) != subjects.message_id(
        "a", bars, wire.PublishedBar(0, 2, amended)
    )  # an amended bar is published again


def existing(**changes: object) -> api.StreamConfig:
    config = StreamSpec("FEEDMUX", "feedmux").config()
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def test_an_existing_stream_that_takes_feedmux_s_subjects_is_used_as_it_is() -> None:
    spec = StreamSpec("FEEDMUX", "feedmux")
    assert problems(spec, existing()) == ([], [])
    assert problems(spec, existing(subjects=[">"])) == ([], [])
    for takes in (["feedmux.*.>", "x.>"], ["feedmux.*.*.*"], ["*.>"]):
        assert problems(spec, existing(subjects=takes))[0] == [], takes
    errors, notes = problems(spec, existing(num_replicas=3, storage=api.StorageType.MEMORY))
    assert errors == [] and notes[0] == "replicas 3 (asked 1)" and "storage" in notes[1]


@pytest.mark.parametrize(("changes", "why"), [
    ({"subjects": ["feedmux.trades.>"]}, "do not take feedmux.>"),
    ({"subjects": ["other.>"]}, "do not take feedmux.>"),
    ({"subjects": ["feedmux.*.*"]}, "do not take feedmux.>"),
    ({"subjects": ["feedmux.*.*.*.>"]}, "do not take feedmux.>"),
    ({"retention": api.RetentionPolicy.WORK_QUEUE}, "deletes messages once consumed"),
    ({"duplicate_window": 0.0}, "no duplicate window"),
    ({"sealed": True}, "sealed"),
    ({"no_ack": True}, "acks no publish"),
    ({"max_msg_size": 64}, "messages of at most 64 bytes"),
])  # fmt: skip
def test_an_existing_stream_that_cannot_serve_is_an_error_naming_why(
    changes: dict[str, object], why: str
) -> None:
    errors, _ = problems(StreamSpec("FEEDMUX", "feedmux"), existing(**changes))
    assert len(errors) == 1 and why in errors[0]


def test_settings_that_lose_history_or_shorten_the_duplicate_window_are_said() -> None:
    spec = StreamSpec("FEEDMUX", "feedmux", max_age_s=86400)
    errors, notes = problems(spec, existing(max_msgs_per_subject=1, duplicate_window=1.0,
                                            max_age=0.0))  # fmt: skip
    assert errors == []
    assert notes == ["max age none (asked 86,400 s)",
                     "keeps 1 message per subject: a consumer finds no history before that",
                     "duplicate window 1 s (feedmux's 120 s): a retry after that is stored "
                     "twice"]  # fmt: skip


def test_fewer_copies_than_asked_is_an_error_more_a_note() -> None:
    """--nats-replicas 3 promises that a server's loss loses nothing: a stream with one copy
    cannot keep it; one with more copies than asked keeps it better."""
    errors, _ = problems(StreamSpec("FEEDMUX", "feedmux", replicas=3), existing(num_replicas=1))
    assert errors == ["it keeps 1 copy where --nats-replicas asks 3 (raise it with `nats stream "
                      "edit FEEDMUX --replicas 3`, or ask fewer)"]  # fmt: skip


def test_the_server_a_client_is_connected_to_is_shown_masked() -> None:
    for url, shown in (("nats://feed:s3cret@h:4222", "nats://feed:***@h:4222"),
                       ("nats://T0KEN@h:4222", "nats://***@h:4222")):  # fmt: skip
        client = SimpleNamespace(connected_url=urlparse(url))  # as nats-py keeps it
        assert _url(client, "given") == shown  # type: ignore[arg-type]
    assert _url(SimpleNamespace(connected_url=None), "given") == "given"  # type: ignore[arg-type]
