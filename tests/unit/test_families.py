"""The topic-family table: one definition that publishers and readers agree on."""

from __future__ import annotations

from feedmux import families, wire
from feedmux.model import Bar, Depth, Tick

TICK = Tick("600519.SH", 7, 1, 2, 10.0, 100.0, 1000.0, 1)
BOOK = Depth("600519.SH", 8, 1, 2, [(9.9, 100.0)], [(10.1, 200.0)])
BAR = Bar("600519.SH", 60_000_000_000, 10.0, 10.5, 9.5, 10.2, 300.0, 3000.0, 3)


def test_no_prefix_starts_another_so_a_topic_names_one_family() -> None:
    prefixes = [f.prefix for f in families.FAMILIES] + [families.HEARTBEAT_TOPIC]
    assert len(set(prefixes)) == len(prefixes)
    for a in prefixes:
        assert not any(b != a and b.startswith(a) for b in prefixes)
    assert len({f.name for f in families.FAMILIES}) == len(families.FAMILIES)
    assert len({f.option for f in families.FAMILIES}) == len(families.FAMILIES)


def test_each_family_reads_what_its_publisher_writes() -> None:
    written = {
        families.TRADES: wire.Published(2, 5, TICK),
        families.BOOKS: wire.PublishedDepth(2, 6, BOOK),
        families.BARS: wire.PublishedBar(2, 7, BAR),
        families.TRADE_MOVES: wire.Published(2, 8, TICK),
        families.BOOK_MOVES: wire.PublishedDepth(2, 9, BOOK),
    }
    assert set(written) == set(families.FAMILIES)
    for family, message in written.items():
        topic = family.topic("600519.SH")
        assert families.of_topic(topic) is family
        read = family.decoder.decode(wire.encode(message))
        assert (read.shard, read.seq, read.item) == (2, message.seq, message.item)


def test_the_heartbeat_and_unknown_prefixes_are_no_family() -> None:
    assert families.of_topic(families.HEARTBEAT_TOPIC) is None
    assert families.of_topic(b"X|600519.SH") is None
    assert families.of_topic(b"no bar at all") is None


def test_only_ticks_and_books_hold_an_acknowledgement_back() -> None:
    assert [f.name for f in families.FAMILIES if f.acked] == ["trades", "books"]
    assert all(f.relayed for f in families.FAMILIES if f.acked)
