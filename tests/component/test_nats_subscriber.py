"""NatsSubscriber against the machine's NATS server: what a shard's JetStreamPublisher put in a
stream comes back typed, filtered and in order, from now, a sequence, a time or the start; a
snapshot taken while a publisher keeps publishing joins the stream with no gap and no
duplicate; a slow reader holds a bounded number of messages; a consumer lost under the reader
is made again; a wrong URL, a port that is not NATS, a missing stream fail within seconds."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import nats
import pytest

from feedmux import families, wire
from feedmux.client import jetstream
from feedmux.client.jetstream import NatsMessage, NatsSubscriber, consumer_subjects
from feedmux.errors import ConfigError, ConsumerError
from feedmux.families import Family
from feedmux.jetstream import subjects
from feedmux.jetstream.stream import StreamSpec, prepare
from feedmux.model import Bar, Depth, Tick
from feedmux.shard.jetstream import JetStreamPublisher
from tests.conftest import scaled, wait_for
from tests.nats_servers import Target, free_ports, local_target

T0 = 1_764_000_000 * 10**9
NAMED = ["600519.SH", "000001.SZ", "AAPL.US", "BRK.B.US"]
CODES = NAMED + [f"{2 + i:06d}.SZ" for i in range(20)]  # more than MAX_CONSUMERS
Sent = tuple[Family, str, Tick | Depth | Bar]


@pytest.fixture
def target() -> Iterator[Target]:
    yield from local_target()


def item(family: Family, code: str, n: int) -> Tick | Depth | Bar:
    if family is families.TRADES:
        return Tick(code, n, T0 + n, T0 + n + 1, 10.0 + n, 100.0, 1000.0, 1)
    if family is families.BOOKS:
        return Depth(code, n, T0 + n, T0 + n + 1, [(9.5, 1.0)], [(10.5, float(n))])
    return Bar(code, T0 + n * 60 * 10**9, 1.0, 2.0, 0.5, 1.5, 10.0, 15.0, n)


def payload(family: Family, sent: Tick | Depth | Bar, n: int) -> bytes:
    if isinstance(sent, Tick):
        return wire.encode(wire.Published(0, n, sent))
    if isinstance(sent, Depth):
        return wire.encode(wire.PublishedDepth(0, n, sent))
    return wire.encode(wire.PublishedBar(0, n, sent))


def market(rounds: int, first: int = 1) -> list[Sent]:
    """Round after round, each code's trade and book, and every other round its bar."""
    out: list[Sent] = []
    for n in range(first, first + rounds):
        for code in CODES:
            out.append((families.TRADES, code, item(families.TRADES, code, n)))
            out.append((families.BOOKS, code, item(families.BOOKS, code, n)))
            if n % 2 == 0:
                out.append((families.BARS, code, item(families.BARS, code, n)))
    return out


@contextlib.contextmanager
def publisher(target: Target) -> Iterator[JetStreamPublisher]:
    prepare(target.urls, StreamSpec(target.stream, target.prefix), lambda _: None)
    shard = JetStreamPublisher(target.urls, target.prefix, "alltick", 0)
    try:
        wait_for(lambda: shard.connected, scaled(10), "the shard's publisher to connect")
        yield shard
    finally:
        shard.close()


def publish(shard: JetStreamPublisher, items: list[Sent]) -> None:
    """As a shard does: each family's topic and PUB payload, one batch at a time."""
    for start in range(0, len(items), 1000):
        batch = items[start : start + 1000]
        shard.write_publications([(f.topic(code), payload(f, it, start + i + 1))
                                  for i, (f, code, it) in enumerate(batch)])  # fmt: skip


def subscriber(target: Target, **kw: object) -> NatsSubscriber:
    return NatsSubscriber(target.url, stream=target.stream, prefix=target.prefix, **kw)  # type: ignore[arg-type]


def read(sub: NatsSubscriber, count: int) -> list[NatsMessage]:
    out = []
    for _ in range(count):
        message = sub.recv(scaled(10))
        assert message is not None, f"{len(out)} of {count} arrived"
        out.append(message)
    assert sub.recv(0.3) is None  # and nothing more
    return out


def plain(messages: list[NatsMessage]) -> list[Sent]:
    return [(families.FAMILIES[[f.name for f in families.FAMILIES].index(m.family)], m.code,
             m.item) for m in messages]  # fmt: skip


def test_every_family_and_code_comes_back_typed_in_stream_order(target: Target) -> None:
    sent = market(4)
    with publisher(target) as shard:
        publish(shard, sent)
    with subscriber(target, start="all") as sub:
        got = read(sub, len(sent))
    with pytest.raises(ConsumerError, match="this NatsSubscriber is closed"):
        sub.recv(1)
    assert plain(got) == sent
    assert [m.seq for m in got] == list(range(1, len(sent) + 1))
    assert got[0].message == wire.Published(0, 1, sent[0][2])  # type: ignore[arg-type]
    assert all(isinstance(m.time, datetime) and m.time.tzinfo is not None for m in got)


@pytest.mark.parametrize(("kw", "consumers"), [
    ({"families": ["trades"], "codes": ["BRK.B.US", "600519.SH"]}, 2),
    ({"families": ["books", "bars"], "markets": ["us"]}, 1),
    ({"families": ["trades", "bars"], "codes": CODES[4:]}, 1),
    ({"codes": NAMED, "markets": ["SH", "SZ"]}, 2),
    ({"families": "trades", "codes": "BRK.B.US, 600519.SH"}, 2),  # text, as on a command line
])  # fmt: skip
def test_filters_by_family_code_and_market(target: Target, kw: dict[str, object],
                                           consumers: int) -> None:  # fmt: skip
    sent = market(4)

    def listed(key: str) -> list[str] | None:
        value = kw.get(key)
        return value.replace(",", " ").split() if isinstance(value, str) else value  # type: ignore[return-value]

    names, codes, markets = listed("families") or list(subjects.RELAYED), listed("codes"), listed(
        "markets")  # fmt: skip
    wanted = [s for s in sent if s[0].name in names and (codes is None or s[1] in codes)
              and (markets is None or s[1].rsplit(".", 1)[1] in [m.upper() for m in markets])
              ]  # fmt: skip
    with publisher(target) as shard:
        publish(shard, sent)
    with subscriber(target, start="all", **kw) as sub:
        assert len(sub._subjects) == consumers
        got = read(sub, len(wanted))
    by_seq = sorted(got, key=lambda m: m.seq)
    assert plain(by_seq) == wanted  # each once
    for code in {m.code for m in got}:  # a code's messages in stream order
        seqs = [m.seq for m in got if m.code == code]
        assert seqs == sorted(seqs)


def test_a_consumer_per_code_while_few_one_for_many() -> None:
    assert consumer_subjects("p", ["trades"], ["BRK.B.US", "600519.SH"], None) == [
        "p.trades.SH.600519", "p.trades.US.BRK%2EB"]  # fmt: skip
    assert consumer_subjects("p", ["trades", "books", "bars"], ["AAPL.US"], None) == [
        "p.*.US.AAPL"]  # fmt: skip
    assert consumer_subjects("p", ["books"], CODES[4:], None) == ["p.books.SZ.*"]
    assert consumer_subjects("p", ["trades", "books"], None, ["SH", "US"]) == [
        "p.*.SH.*", "p.*.US.*"]  # fmt: skip
    assert consumer_subjects("p", ["bars"], None, None) == ["p.bars.*.*"]
    with pytest.raises(ConfigError, match="no code of codes= is in markets="):
        consumer_subjects("p", ["trades"], ["AAPL.US"], ["SH"])


def test_start_live_at_a_sequence_at_a_time_or_from_the_start(target: Target) -> None:
    before, after = market(2), market(2, first=3)
    with publisher(target) as shard:
        publish(shard, before)
        between = datetime.now(UTC)  # after JetStream stored the first part, before the rest
        live = subscriber(target)
        publish(shard, after)
    starts: list[object] = [len(before) + 1, str(len(before) + 1), between, between.isoformat()]
    with live:
        assert plain(read(live, len(after))) == after
    for start in starts:
        with subscriber(target, start=start) as sub:
            assert plain(read(sub, len(after))) == after, start
    with subscriber(target, start="all") as sub:
        assert plain(read(sub, len(before) + len(after))) == before + after


class Feed(threading.Thread):
    """Publishes each code's trade and book, round after round until stopped, keeping each
    message's stream sequence from JetStream's ack."""

    def __init__(self, target: Target) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.sent: list[tuple[int, Family, str, Tick | Depth | Bar]] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        client = await nats.connect(self.target.url)
        js = client.jetstream()
        try:
            n = 0
            while not self.stopping.is_set():
                n += 1
                for code in NAMED:
                    for family in (families.TRADES, families.BOOKS):
                        sent = item(family, code, n)
                        ack = await js.publish(subjects.subject(self.target.prefix, family, code),
                                               payload(family, sent, n))  # fmt: skip
                        self.sent.append((ack.seq, family, code, sent))
        except BaseException as exc:
            self.error = exc
        finally:
            await client.close()


@pytest.mark.parametrize("kw", [{}, {"codes": ["BRK.B.US", "600519.SH"]}])
def test_a_snapshot_while_publishing_then_the_stream_has_no_gap_and_no_duplicate(
    target: Target, kw: dict[str, list[str]]
) -> None:
    prepare(target.urls, StreamSpec(target.stream, target.prefix), lambda _: None)
    feed = Feed(target)
    feed.start()
    try:
        wait_for(lambda: len(feed.sent) > 400, 20, "a first part published")
        with subscriber(target, **kw) as sub:  # a late joiner
            snap = sub.snapshot()
            wait_for(lambda: len(feed.sent) > snap.seq + 400, 20, "more published")
            feed.stopping.set()
            feed.join(scaled(10))
            codes = kw.get("codes", NAMED)
            mine = [s for s in feed.sent if s[2] in codes]
            later = [s for s in mine if s[0] > snap.seq]
            got = read(sub, len(later))
    finally:
        feed.stopping.set()
        feed.join(scaled(10))
    assert feed.error is None
    assert later and snap.seq < feed.sent[-1][0]  # it was published to while it was taken
    assert [(m.seq, m.family, m.code, m.item) for m in sorted(got, key=lambda m: m.seq)] == [
        (seq, f.name, code, it) for seq, f, code, it in later]  # fmt: skip
    for family, taken in ((families.TRADES, snap.ticks), (families.BOOKS, snap.books)):
        latest = {code: it for seq, f, code, it in mine if f is family and seq <= snap.seq}
        assert taken == latest
    assert snap.bars == {}


@pytest.mark.slow
def test_a_slow_reader_holds_a_bounded_number_and_misses_nothing(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader stops, longer than JetStream keeps an idle consumer: at most a batch and a
    half waits in the client, and a batch for the reader; reading on gives every message once."""
    monkeypatch.setattr(jetstream, "INACTIVE_S", 1.0)  # the server removes it after 1 s
    sent = market(60)  # 3,600 messages, 7 batches
    with publisher(target) as shard:
        publish(shard, sent)
    with subscriber(target, start="all") as sub:
        first = [sub.recv(scaled(10)) for _ in range(10)]
        deadline = time.monotonic() + 3  # a pause: nothing to poll for, only to wait out
        most = 0
        while time.monotonic() < deadline:
            most = max(most, sub.held)
            time.sleep(0.1)
        assert 0 < most <= jetstream.BATCH * 5 // 2
        got = first + read(sub, len(sent) - len(first))
    assert [m.seq for m in got if m is not None] == list(range(1, len(sent) + 1))


@pytest.mark.slow
def test_a_consumer_removed_under_the_reader_is_made_again_from_where_it_was(
    target: Target,
) -> None:
    sent = market(40)
    with publisher(target) as shard:
        publish(shard, sent)

    async def remove_consumers() -> int:
        client = await nats.connect(target.url)
        try:
            js = client.jetstream()
            names = [c.name for c in await js.consumers_info(target.stream)]
            for name in names:
                await js.delete_consumer(target.stream, name)
            return len(names)
        finally:
            await client.close()

    with subscriber(target, start="all") as sub:
        first = [sub.recv(scaled(10)) for _ in range(100)]
        assert asyncio.run(remove_consumers()) == 1
        got = first + read(sub, len(sent) - len(first))
    assert [m.seq for m in got if m is not None] == list(range(1, len(sent) + 1))


def test_a_message_that_does_not_decode_is_counted_and_skipped_not_the_rest(
    target: Target,
) -> None:
    sent = market(1)[:6]
    with publisher(target) as shard:
        publish(shard, sent[:2])

        async def garbage() -> None:
            client = await nats.connect(target.url)
            try:
                subject = subjects.subject(target.prefix, families.TRADES, "600519.SH")
                await client.jetstream().publish(subject, b"\xc1 not msgpack")
            finally:
                await client.close()

        asyncio.run(garbage())
        publish(shard, sent[2:])
    with subscriber(target, start="all") as sub:
        got = read(sub, len(sent))
    assert plain(got) == sent and sub.bad == 1


def test_a_tls_url_to_a_server_without_tls_sends_no_credentials(target: Target) -> None:
    """nats-py would fall back to plain text (and send the password): refused first."""
    url = target.url.replace("nats://", "tls://feed:s3cret@")
    with pytest.raises(ConsumerError, match="does not require TLS") as err:
        NatsSubscriber(url, stream=target.stream, prefix=target.prefix)
    assert "s3cret" not in str(err.value)


def test_a_refused_port_fails_at_once_without_showing_a_password_or_token() -> None:
    (port,) = free_ports(1)
    for url, secret in ((f"nats://feed:s3cret@127.0.0.1:{port}", "s3cret"),
                        (f"nats://T0KEN@127.0.0.1:{port}", "T0KEN")):  # fmt: skip
        began = time.monotonic()
        with pytest.raises(ConsumerError, match=r"cannot reach NATS at nats://.*refused") as err:
            NatsSubscriber(url)
        assert time.monotonic() - began < 3
        assert secret not in str(err.value)


@pytest.mark.slow
def test_a_port_that_is_not_nats_fails_within_seconds() -> None:
    with socket.socket() as silent:  # accepts and says nothing, as Redis or a web server
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        began = time.monotonic()
        with pytest.raises(ConsumerError, match="no NATS server answered"):
            NatsSubscriber(f"nats://127.0.0.1:{silent.getsockname()[1]}")
        assert time.monotonic() - began < jetstream.FIRST_CONNECT_S + 2


def test_a_missing_stream_or_another_prefix_is_said(target: Target) -> None:
    with pytest.raises(ConsumerError, match=f"no stream {target.stream} at {target.url}"):
        subscriber(target)
    with publisher(target):
        pass
    with pytest.raises(ConsumerError, match="is --nats-prefix the run's, other"):
        NatsSubscriber(target.url, stream=target.stream, prefix="other")


@pytest.mark.parametrize(("kw", "why"), [
    ({"url": "http://127.0.0.1:4222"}, "a NATS URL is nats://"),
    ({"families": ["moves"]}, "families are of trades, books, bars"),
    ({"start": 0}, "a start sequence is 1 or more"),
    ({"start": datetime(2026, 3, 2, 9, 30)}, "a start time needs its zone"),
    ({"start": "yesterday"}, "start is live, all"),
    ({"prefix": "a..b"}, "a subject prefix is tokens"),
    ({"markets": [""]}, "markets= names none"),
])  # fmt: skip
def test_wrong_arguments_are_config_errors(kw: dict[str, object], why: str) -> None:
    args = {"url": "nats://127.0.0.1:1", **kw}
    with pytest.raises(ConfigError, match=why):
        NatsSubscriber(**args)  # type: ignore[arg-type]
