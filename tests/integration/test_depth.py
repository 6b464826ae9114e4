"""Order books end to end: feedmux run --depth 5 against the replay server."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedmux import SnapshotClient, Subscriber, read_books, read_ticks
from feedmux.model import Depth, Tick
from feedmux.simulator.market import a_share_universe
from tests.conftest import scaled, wait_for
from tests.integration.helpers import (
    end_feed,
    feedmux,
    receiver_in,
    replay_report,
    sent_messages,
    start_replay,
    stop,
)

pytestmark = pytest.mark.integration


def test_books_are_stored_published_and_snapshotted(tmp_path: Path) -> None:
    codes = a_share_universe()[::18]  # 302 codes: one connection
    symbols = tmp_path / "symbols.txt"
    symbols.write_text(" ".join(codes))
    # The feed waits 3 s after the first subscription, so the subscriber is connected to every
    # shard before the first tick (checked below, not assumed).
    replay, report, url = start_replay(tmp_path, "--rate", "1000", "--warmup", "3",
                                       "--symbols-file", str(symbols))  # fmt: skip
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    subscriber = Subscriber(run_dir=run_dir, shards=4, books=True)
    run = feedmux("run", "--url", url, "--symbols-file", str(symbols), "--shards", "4",
                  "--depth", "5", "--data-dir", str(data_dir),
                  "--run-dir", str(run_dir))  # fmt: skip
    got: list[Tick | Depth] = []
    try:
        assert subscriber.wait_ready(scaled(30))
        assert replay_report(report).ticks_sent == 0, "the feed began before the subscriber"
        wait_for(lambda: len(replay_report(report).books) == len(codes), 30,
                 "the order books to be subscribed")  # fmt: skip
        wait_for(lambda: replay_report(report).books_sent > 500, 30, "some books")
        end_feed(replay, report)
        sent = replay_report(report).frames_sent
        wait_for(lambda: _routed(run_dir) == sent, 15, "the receiver to read every frame")
        while (item := subscriber.recv(timeout=1.0)) is not None:
            got.append(item)
        last_books = SnapshotClient(run_dir).books()
    finally:
        subscriber.close()
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    sent_ticks, sent_books = sent_messages(tmp_path / "sent.log")
    assert {v.rule for v in replay_report(report).violations} == set()
    # stored once each, with their levels; an empty side stays empty
    books = read_books(data_dir)
    assert len(books) == len(sent_books) > 500
    by_key = {(b.code, b.seq): b for b in sent_books}
    for row in books.itertuples():
        sent_book = by_key[(row.code, row.seq)]
        assert row.bids == [list(level) for level in sent_book.bids]
        assert row.asks == [list(level) for level in sent_book.asks]
    assert len(read_ticks(data_dir)) == len(sent_ticks)
    # the subscriber saw every book and every trade
    key = lambda m: (type(m).__name__, m.code, m.seq)  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, sent_ticks + sent_books))
    # the snapshot holds each code's last book
    last: dict[str, Depth] = {}
    for b in sent_books:
        last[b.code] = b
    assert {c: (b.seq, b.bids, b.asks) for c, b in last_books.items()} == {
        c: (b.seq, b.bids, b.asks) for c, b in last.items()
    }


def _routed(run_dir: Path) -> int:
    receiver = receiver_in(run_dir)
    return receiver.ticks + receiver.books
