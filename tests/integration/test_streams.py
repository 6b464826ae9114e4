"""Redis Streams against the real Redis: a run publishes every tick to its shard's stream, and
a StreamReader resumes after the last entry it processed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feedmux import StreamReader, families, wire
from feedmux.model import Bar, Depth, Tick
from feedmux.shard.streams import StreamPublisher
from feedmux.stats.shard import ShardStats
from tests.conftest import wait_for
from tests.integration.helpers import (
    end_feed,
    sent_ticks,
    shards_in,
    start_sampled_run,
    stop,
)
from tests.services import redis_prefix

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_target() -> Iterator[tuple[str, str]]:
    yield from redis_prefix()


def _publication(shard: int, pub_seq: int, code: str = "600519.SH") -> tuple[bytes, bytes]:
    tick = Tick(code, pub_seq, 1, 2, 10.0, 100.0, 1000.0, 1)
    return families.TRADES.topic(code), wire.encode(wire.Published(shard, pub_seq, tick))


def test_a_reader_resumes_after_the_last_batch_it_processed(
    tmp_path: Path, redis_target: tuple[str, str]
) -> None:
    url, prefix = redis_target
    publishers = [StreamPublisher(url, shard, prefix) for shard in range(2)]
    for shard, publisher in enumerate(publishers):
        publisher.write_publications([_publication(shard, s) for s in range(1, 4)])
    checkpoint = tmp_path / "reader.json"
    with StreamReader(url, 2, checkpoint=checkpoint, prefix=prefix) as reader:
        got = reader.read(block_ms=100)
    assert sorted((m.shard, m.message.pub_seq) for m in got) == [
        (s, q) for s in range(2) for q in (1, 2, 3)]  # fmt: skip
    assert all(isinstance(m.message, wire.Published) and m.topic == b"T|600519.SH" for m in got)
    publishers[1].write_publications([_publication(1, 4)])
    # A consumer that fails mid-batch gets that batch again; one that finishes does not.
    with pytest.raises(RuntimeError), StreamReader(url, 2, checkpoint=checkpoint,
                                                   prefix=prefix) as failing:  # fmt: skip
        assert [(m.shard, m.message.pub_seq) for m in failing.read(block_ms=100)] == [(1, 4)]
        raise RuntimeError("consumer crashed")
    with StreamReader(url, 2, checkpoint=checkpoint, prefix=prefix) as again:
        assert [(m.shard, m.message.pub_seq) for m in again.read(block_ms=100)] == [(1, 4)]
    with StreamReader(url, 2, checkpoint=checkpoint, prefix=prefix) as last:
        assert last.read(block_ms=100) == []


def test_a_reader_decodes_every_family_a_shard_sends_to_redis(
    redis_target: tuple[str, str],
) -> None:
    """Bars go to Redis too: the reader used to decode every entry but books as a trade, and a
    bar entry raised ValidationError. An entry of a family this version does not know is
    counted and read past."""
    url, prefix = redis_target
    tick = Tick("600519.SH", 7, 1, 2, 10.0, 100.0, 1000.0, 1)
    book = Depth("600519.SH", 8, 1, 2, [(9.9, 100.0)], [(10.1, 200.0)])
    bar = Bar("600519.SH", 60_000_000_000, 10.0, 10.5, 9.5, 10.2, 300.0, 3000.0, 3)
    StreamPublisher(url, 0, prefix).write_publications([
        (families.TRADES.topic(tick.code), wire.encode(wire.Published(0, 1, tick))),
        (b"X|600519.SH", b"from a newer feedmux"),
        (families.BOOKS.topic(book.code), wire.encode(wire.PublishedDepth(0, 1, book))),
        (families.BARS.topic(bar.code), wire.encode(wire.PublishedBar(0, 1, bar))),
    ])  # fmt: skip
    with StreamReader(url, 1, prefix=prefix) as reader:
        got = reader.read(block_ms=100)
        assert [m.message.item for m in got] == [tick, book, bar]
        assert [m.message.seq for m in got] == [1, 1, 1]
        assert reader.skipped == 1


def test_a_run_publishes_every_tick_to_redis_in_order(
    tmp_path: Path, redis_target: tuple[str, str]
) -> None:
    url, prefix = redis_target
    replay, report, run, run_dir, _, _ = start_sampled_run(
        tmp_path, 3000, 2, "--redis", url, "--redis-prefix", prefix)  # fmt: skip

    def shards() -> list[ShardStats]:
        return shards_in(run_dir)

    def published() -> int:
        return sum(s.redis.published for s in shards() if s.redis is not None)

    def all_in_redis(ticks: int) -> bool:
        """Every tick published, and Redis holds all each shard published: its ticks and,
        once the feed crossed a minute, its bars."""
        stats = shards()
        return sum(s.published for s in stats) == ticks and all(
            s.redis is not None and s.redis.published == s.published + s.bars.published
            for s in stats
        )

    try:
        wait_for(lambda: published() > 3000, 60, "ticks in Redis")
        end_feed(replay, report)
        sent = sent_ticks(tmp_path / "sent.log")
        wait_for(lambda: all_in_redis(len(sent)), 30, "every tick in Redis")
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    reader = StreamReader(url, 2, prefix=prefix)
    entries = []
    while batch := reader.read(block_ms=200):
        entries.extend(batch)
    reader.close()
    ticks = [m.message.tick for m in entries if isinstance(m.message, wire.Published)]
    assert sorted((t.code, t.seq) for t in ticks) == sorted((t.code, t.seq) for t in sent)
    for shard in range(2):  # each stream holds its shard's publications in publish order
        for family in (families.TRADES, families.BOOKS, families.BARS):  # numbered apart
            seqs = [m.message.seq for m in entries
                    if m.shard == shard and families.of_topic(m.topic) is family]  # fmt: skip
            assert seqs == list(range(1, len(seqs) + 1)), family.name
