"""The shard's JetStream publisher against real servers: the machine's, and private ones stopped,
killed and paused (SIGSTOP) under it. A batch either is in the stream (once, however often it
is retried) or fails with a StoreError saying why, at once while NATS is unreachable."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import nats
import pytest
from nats.js import api

from feedmux import families, wire
from feedmux.errors import StoreError
from feedmux.jetstream import subjects
from feedmux.jetstream.stream import StreamSpec, prepare
from feedmux.model import Bar, Depth, Tick
from feedmux.shard.jetstream import JetStreamPublisher
from feedmux.shard.state import Publication
from feedmux.shard.stores.base import WriteResult
from tests.conftest import scaled, wait_for
from tests.nats_servers import (
    Node,
    Target,
    free_ports,
    fresh_names,
    local_target,
    private_server,
    read_stream,
)

T0 = 1_700_000_000_000_000_000
FAST_S = 2.0  # "at once": no ack wait (10 s), only the machine's own slowness


@pytest.fixture
def target() -> Iterator[Target]:
    yield from local_target()


@pytest.fixture
def solo(tmp_path: Path) -> Iterator[Node]:
    node = private_server(tmp_path, start=False)
    try:
        yield node
    finally:
        node.stop()


def trades(first: int, count: int, code: str = "600519.SH") -> list[Publication]:
    return [(families.TRADES.topic(code), msgspec.msgpack.encode(wire.Published(
        0, seq, Tick(code, seq, T0 + seq, T0 + seq + 5, 10.0, 100.0, 1000.0, 1))))
        for seq in range(first, first + count)]  # fmt: skip


def make_stream(url: str, stream: str, prefix: str) -> None:
    prepare([url], StreamSpec(stream, prefix), lambda _: None)


def write_when_up(publisher: JetStreamPublisher, batch: list[Publication],
                  timeout: float = 30) -> WriteResult:  # fmt: skip
    """Retry ``batch`` as its lane does until it is written."""
    results: list[WriteResult] = []

    def attempt() -> bool:
        try:
            results.append(publisher.write_publications(batch))
        except StoreError:
            return False
        return True

    wait_for(attempt, timeout, "JetStream to take the batch", step=0.2)
    return results[0]


def failing(publisher: JetStreamPublisher, batch: list[Publication]) -> tuple[str, float]:
    """The StoreError's text of writing ``batch``, and how long it took to fail."""
    began = time.monotonic()
    with pytest.raises(StoreError) as failed:
        publisher.write_publications(batch)
    return str(failed.value), time.monotonic() - began


def seqs_in(url: str, prefix: str) -> Counter[int]:
    """How often the stream holds each trade seq."""
    got = read_stream(url, f"{prefix}.>")
    return Counter(msgspec.msgpack.decode(m.data, type=wire.Published).pub_seq for m in got)


def test_message_ids_are_subjects_message_id_from_a_partial_decode() -> None:
    tick = Tick("BRK.B.US", 7, T0, T0 + 5, 1.0, 2.0, 2.0, 1)
    depth = Depth("600519.SH", 9, T0, T0 + 5, [(1.0, 2.0)], [(1.1, 3.0)])
    bar = Bar("600519.SH", T0, 1.0, 1.2, 0.9, 1.1, 10.0, 11.0, 3, (T0, 1), (T0 + 9, 4))
    published: list[tuple[families.Family, str, wire.Payload]] = [
        (families.TRADES, tick.code, wire.Published(1, 3, tick)),
        (families.BOOKS, depth.code, wire.PublishedDepth(1, 4, depth)),
        (families.BARS, bar.code, wire.PublishedBar(1, 5, bar)),
    ]
    publisher = JetStreamPublisher([f"nats://127.0.0.1:{free_ports(1)[0]}"], "p", "alltick", 0)
    try:
        got = publisher.messages([(f.topic(code), msgspec.msgpack.encode(payload))
                                  for f, code, payload in published])  # fmt: skip
    finally:
        publisher.close()
    assert [(m.subject, m.msg_id) for m in got] == [
        (subjects.subject("p", f, code), subjects.message_id("alltick", f, payload))
        for f, code, payload in published
    ]
    assert got[0].subject == "p.trades.US.BRK%2EB"


def test_a_batch_is_stored_once_however_often_it_is_sent(target: Target) -> None:
    make_stream(target.url, target.stream, target.prefix)
    publisher = JetStreamPublisher(target.urls, target.prefix, "alltick", 0)
    try:
        batch = trades(1, 100)
        assert write_when_up(publisher, batch) == WriteResult(100, 0)
        assert publisher.write_publications(batch) == WriteResult(0, 100)
        assert publisher.write_publications(batch[:10] + trades(101, 5)) == WriteResult(5, 10)
    finally:
        publisher.close()
    assert seqs_in(target.url, target.prefix) == Counter(range(1, 106))


def test_no_stream_for_the_subjects_fails_the_batch_at_once(target: Target) -> None:
    publisher = JetStreamPublisher(target.urls, target.prefix, "alltick", 0)
    try:
        wait_for(lambda: "no stream takes" in failing(publisher, trades(1, 3))[0], 10,
                 "JetStream to say no stream takes the subject")  # fmt: skip
        text, took = failing(publisher, trades(1, 3))
    finally:
        publisher.close()
    assert f"no stream takes {target.prefix}.trades.SH.600519" in text
    assert took < scaled(FAST_S)


def test_a_refused_message_fails_the_batch_with_jetstream_s_reason(target: Target) -> None:
    """A stream full with discard "new" refuses more: the batch fails (and is retried)."""
    spec = StreamSpec(target.stream, target.prefix).config()
    spec.max_msgs, spec.discard = 5, api.DiscardPolicy.NEW

    async def make() -> None:
        client = await nats.connect(target.url)
        await client.jetstream().add_stream(spec)
        await client.close()

    asyncio.run(make())
    publisher = JetStreamPublisher(target.urls, target.prefix, "alltick", 0)
    try:
        write_when_up(publisher, trades(1, 5))
        text, _ = failing(publisher, trades(6, 3))
    finally:
        publisher.close()
    assert f"JetStream refused {target.prefix}.trades.SH.600519: maximum messages" in text


def test_a_retry_leaves_out_what_jetstream_stored_of_a_batch_that_failed(target: Target) -> None:
    """A batch refused halfway (a full stream, an election) may be retried after the duplicate
    window: what JetStream acked of it is not sent again, so it cannot be stored twice."""
    spec = StreamSpec(target.stream, target.prefix).config()
    spec.max_msgs, spec.discard = 5, api.DiscardPolicy.NEW

    async def stream(change: bool) -> None:
        client = await nats.connect(target.url)
        js = client.jetstream()
        if change:
            spec.max_msgs = -1
            await js.update_stream(spec)
        else:
            await js.add_stream(spec)
        await client.close()

    asyncio.run(stream(change=False))
    publisher = JetStreamPublisher(target.urls, target.prefix, "alltick", 0)
    try:
        wait_for(lambda: publisher.connected, scaled(10), "the publisher to connect")
        batch = trades(1, 10)
        assert "maximum messages" in failing(publisher, batch)[0]  # 1-5 stored, 6 refused
        asyncio.run(stream(change=True))  # room again
        assert publisher.write_publications(batch) == WriteResult(10, 0)  # 1-5 not sent again
        assert publisher.write_publications(batch) == WriteResult(0, 10)  # and then all are
    finally:
        publisher.close()
    assert seqs_in(target.url, target.prefix) == Counter(range(1, 11))


def test_a_shard_started_while_nats_is_down_starts_fails_fast_then_publishes(
    solo: Node, caplog: pytest.LogCaptureFixture
) -> None:
    stream, prefix = fresh_names()
    url = f"nats://feed:secret@127.0.0.1:{solo.port}"
    caplog.set_level(logging.INFO)
    began = time.monotonic()
    publisher = JetStreamPublisher([url], prefix, "alltick", 0)  # NATS not there: no wait
    try:
        assert time.monotonic() - began < scaled(FAST_S)
        wait_for(lambda: "Connect call failed" in failing(publisher, trades(1, 10))[0], 10,
                 "the connection's error in the publish's")  # fmt: skip
        text, took = failing(publisher, trades(1, 10))
        assert took < scaled(FAST_S)
        assert text.startswith("not connected to NATS yet (nats://feed:***@127.0.0.1:")
        assert "secret" not in text
        solo.start()  # without authorization: the user and password are not asked for
        make_stream(solo.url, stream, prefix)
        assert write_when_up(publisher, trades(1, 10)) == WriteResult(10, 0)
    finally:
        publisher.close()
    assert seqs_in(solo.url, prefix) == Counter(range(1, 11))
    said = [r.getMessage() for r in caplog.records if r.name.startswith("feedmux.jetstream")]
    assert [line.split(" (")[0] for line in said if "not reachable" in line] == [
        "NATS not reachable at nats://feed:***@127.0.0.1:" + str(solo.port)
    ]  # once, however many attempts and failed batches
    assert sum("NATS connected to" in line for line in said) == 1
    assert not any("secret" in line for line in said)


@pytest.mark.slow
def test_a_server_killed_and_restarted_loses_and_duplicates_nothing(
    solo: Node, caplog: pytest.LogCaptureFixture
) -> None:
    stream, prefix = fresh_names()
    solo.start()
    make_stream(solo.url, stream, prefix)
    publisher = JetStreamPublisher([solo.url], prefix, "alltick", 0)
    try:
        write_when_up(publisher, trades(1, 50))
        solo.kill()
        wait_for(lambda: "NATS connection lost" in failing(publisher, trades(51, 50))[0], 10,
                 "the lost connection to fail publishes")  # fmt: skip
        for _ in range(5):  # many batches fail meanwhile, each at once
            text, took = failing(publisher, trades(51, 50))
            assert took < scaled(FAST_S), text
        solo.start()  # same port, same store
        assert write_when_up(publisher, trades(51, 50)) == WriteResult(50, 0)
        assert publisher.write_publications(trades(1, 100)) == WriteResult(0, 100)
    finally:
        publisher.close()
    assert seqs_in(solo.url, prefix) == Counter(range(1, 101))
    said = [r.getMessage() for r in caplog.records
            if r.name.startswith("feedmux.jetstream") and r.levelno >= logging.WARNING]  # fmt: skip
    assert len([line for line in said if "lost" in line]) == 1, said
    assert len([line for line in said if "connection back" in line]) == 1, said


@pytest.mark.slow
def test_a_paused_server_is_noticed_batches_fail_fast_then_resume(solo: Node) -> None:
    """SIGSTOP: the connection stays open and nothing answers. The batch in flight fails at
    its ack timeout, the stale connection is noticed by pings (15 s), then batches fail at
    once; resumed, every batch is in the stream once."""
    stream, prefix = fresh_names()
    solo.start()
    make_stream(solo.url, stream, prefix)
    publisher = JetStreamPublisher([solo.url], prefix, "alltick", 0)
    try:
        write_when_up(publisher, trades(1, 50))
        solo.pause()
        text, _ = failing(publisher, trades(51, 50))
        assert "acked 0 of 50 messages within 10 s" in text or "lost" in text, text
        wait_for(lambda: "NATS connection lost" in failing(publisher, trades(51, 50))[0], 30,
                 "pings to notice the stopped server")  # fmt: skip
        assert failing(publisher, trades(51, 50))[1] < scaled(FAST_S)
        solo.resume()
        write_when_up(publisher, trades(51, 50))
        solo.pause()
        began = time.monotonic()
        publisher.close()  # bounded with the server stopped
        assert time.monotonic() - began < scaled(12)
    finally:
        publisher.close()  # again: nothing more to do
        solo.resume()
    assert seqs_in(solo.url, prefix) == Counter(range(1, 101))


def test_close_is_bounded_with_a_stopped_server(solo: Node) -> None:
    solo.start()
    publisher = JetStreamPublisher([solo.url], "p", "alltick", 0)
    try:
        wait_for(lambda: "no stream takes" in failing(publisher, trades(1, 1))[0], 10,
                 "the publisher to connect")  # fmt: skip
        solo.pause()
        began = time.monotonic()
        publisher.close()
        assert time.monotonic() - began < scaled(12)
    finally:
        solo.resume()


def test_close_is_quick_while_still_connecting() -> None:
    publisher = JetStreamPublisher([f"nats://127.0.0.1:{free_ports(1)[0]}"], "p", "alltick", 0)
    began = time.monotonic()
    publisher.close()
    assert time.monotonic() - began < scaled(FAST_S)
