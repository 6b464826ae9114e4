"""A shard worker's logic without sockets: bus messages in, publications and batches out."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import msgspec

from feedmux import families, wire
from feedmux.families import Family
from feedmux.identity import ResendFilter
from feedmux.model import Bar, Depth, Tick
from feedmux.shard.bars import BarBuilder
from feedmux.shard.batching import Batcher
from feedmux.shard.histogram import LATENCY_BUCKETS_S, Histogram
from feedmux.shard.moves import BookMoves, TradeMoves
from feedmux.shard.snapshot import SnapshotCache

BusResult = tuple[list[tuple[bytes, bytes]], list[list[Tick]], list[list[Depth]], list[list[Bar]]]
_NOTHING: BusResult = ([], [], [], [])


class ShardState:
    """Takes bus messages strictly in seq order, and says what is committed.

    A fresh state holds nothing and waits for a Resume; it asks for one at once (the first
    report is a Rewind with stream 0). A message beyond the next expected seq is ignored and a
    resend asked for (once per hole); one already seen is ignored. ``committed`` turns the
    writers' progress into Acks, so the receiver keeps each message until it is in the store.
    """

    def __init__(self, shard: int, batch_rows: int, batch_delay_ns: int, clock: Callable[[], int],
                 wall_clock: Callable[[], int] = time.time_ns, *,
                 min_move: dict[str, float] | None = None) -> None:  # fmt: skip
        self.shard = shard
        moves = min_move or {}
        self.trade_moves = TradeMoves(moves["trades"]) if "trades" in moves else None
        self.book_moves = BookMoves(moves["books"]) if "books" in moves else None
        self.move_seqs = dict.fromkeys(families.MOVES, 0)
        self.bars = BarBuilder(wall_clock)
        # By identity (feedmux/identity.py): the one re-send check; bars and snapshot trust it.
        self.resend_filter = ResendFilter()
        self.book_filter = ResendFilter()
        self._wall_clock = wall_clock
        self.receive_to_publish_s = Histogram(LATENCY_BUCKETS_S)  # per bus message
        self.bar_batcher: Batcher[Bar] = Batcher(batch_rows, batch_delay_ns, clock)
        self.bar_seq = 0
        self.snapshot = SnapshotCache()
        self.batcher: Batcher[Tick] = Batcher(batch_rows, batch_delay_ns, clock)
        self.book_batcher: Batcher[Depth] = Batcher(batch_rows, batch_delay_ns, clock)
        self.pub_seq = 0
        self.book_seq = 0
        self.stream = 0
        self.expected_bus_seq: int | None = None  # None until the receiver says where we are
        self.received = 0
        self.resent_dropped = 0
        self.received_books = 0
        self.bus_gaps = 0  # seqs that will never come (dropped on overflow by --overflow drop)
        self.bus_ignored = 0  # messages seen twice or out of order (a resend follows)
        self.rewinds_asked = 0
        self.bad_messages = 0
        self.ended = False
        self.ticks_added = 0  # handed to the batcher, ever
        self.books_added = 0
        self._asked_from: int | None = None
        self._marks: deque[tuple[int, int, int]] = deque()  # (next_seq, ticks, books added)
        self._acked = 0
        self._reports: list[bytes] = [wire.encode(wire.Rewind(shard, 0, 0))]

    def restore(self, ticks: list[Tick], books: list[Depth]) -> None:
        """Seed the snapshot and the re-send filter from the store after a restart (first-seen
        times are approximate)."""
        self.resend_filter.seed(ticks)
        self.book_filter.seed(books)
        for tick in ticks:  # one per code: the highest stored
            self.snapshot.apply(0, tick)
        for book in books:
            self.snapshot.apply_book(book)

    def take_reports(self) -> list[bytes]:
        """Rewind requests for the receiver, oldest first."""
        reports, self._reports = self._reports, []
        return reports

    def committed(
        self, ticks_written: int, books_written: int, frames_written: int | None = None
    ) -> bytes | None:
        """An Ack when the writers' totals cover more bus messages than acknowledged so far.
        ``frames_written``: published ticks and books the Redis publisher has (when on)."""
        marks = self._marks
        latest = None
        frames = frames_written
        while (marks and marks[0][1] <= ticks_written and marks[0][2] <= books_written
               and (frames is None or marks[0][1] + marks[0][2] <= frames)):  # fmt: skip
            latest = marks.popleft()[0]
        if latest is None or latest == self._acked:
            return None
        self._acked = latest
        return wire.encode(wire.Ack(self.shard, self.stream, latest))

    def _ask(self, expected: int) -> None:
        self.bus_ignored += 1
        if self._asked_from != expected:  # once per hole; the Resume that answers resets it
            self._asked_from = expected
            self.rewinds_asked += 1
            self._reports.append(wire.encode(wire.Rewind(self.shard, self.stream, expected)))

    def _resume(self, msg: wire.Resume) -> None:
        self._asked_from = None
        if self.expected_bus_seq is None or msg.stream != self.stream:
            self.stream = msg.stream  # a fresh shard, or a new receiver: start where it says
            self.expected_bus_seq = msg.next_seq
            self._marks.clear()
            self._acked = 0
            self.ended = False
        elif msg.next_seq > self.expected_bus_seq:
            self.bus_gaps += msg.next_seq - self.expected_bus_seq
            self.expected_bus_seq = msg.next_seq

    def on_bus(self, raw: bytes) -> BusResult:
        """One bus message → (PUB frames to send, full tick batches, full book batches)."""
        try:
            msg = wire.bus_decoder.decode(raw)
        except msgspec.DecodeError:  # a bad internal message must not kill the shard
            self.bad_messages += 1
            return _NOTHING
        if type(msg) is wire.Resume:
            self._resume(msg)
            return _NOTHING
        expected = self.expected_bus_seq
        if expected is None:
            self.bus_ignored += 1  # before the first Resume: it will all come again
            return _NOTHING
        if type(msg) is wire.End:
            if msg.next_seq == expected:
                self.ended = True
            elif msg.next_seq > expected:
                self._ask(expected)
            return _NOTHING
        if type(msg) is wire.Lost:
            first, count = msg.first_seq, msg.count
        else:
            assert type(msg) is wire.Batch
            first, count = msg.first_seq, len(msg.ticks) + len(msg.books)
        if first > expected:
            self._ask(expected)
            return _NOTHING
        if first + count <= expected:
            self.bus_ignored += 1  # already taken (a resend overlapping what we had)
            return _NOTHING
        skip = expected - first
        self.expected_bus_seq = first + count
        if type(msg) is wire.Lost:
            self.bus_gaps += count - skip
            self._marks.append((first + count, self.ticks_added, self.books_added))
            return _NOTHING
        assert type(msg) is wire.Batch
        in_ticks = msg.ticks[skip:] if skip else msg.ticks
        in_books = msg.books[max(0, skip - len(msg.ticks)) :]
        result = self._take(in_ticks, in_books)
        self._marks.append((first + count, self.ticks_added, self.books_added))
        return result

    def _bars_out(self, bars: list[Bar], publish: list[tuple[bytes, bytes]],
                  full: list[list[Bar]]) -> None:  # fmt: skip
        """Publish closed or amended bars and batch them for the stores."""
        for bar in bars:
            self.bar_seq += 1
            payload = wire.encode(wire.PublishedBar(self.shard, self.bar_seq, bar))
            publish.append((families.BARS.topic(bar.code), payload))
            batch = self.bar_batcher.add(bar)
            if batch is not None:
                full.append(batch)

    def bars_due(self) -> tuple[list[tuple[bytes, bytes]], list[list[Bar]]]:
        """Bars whose minute ended (the timer's turn): publications and full batches."""
        publish: list[tuple[bytes, bytes]] = []
        full: list[list[Bar]] = []
        self._bars_out(self.bars.due(), publish, full)
        return publish, full

    def close_bars(self) -> tuple[list[tuple[bytes, bytes]], list[list[Bar]]]:
        """Every open bar, at shutdown."""
        publish: list[tuple[bytes, bytes]] = []
        full: list[list[Bar]] = []
        self._bars_out(self.bars.close_all(), publish, full)
        return publish, full

    def restore_bars(self, ticks: list[Tick]) -> list[Bar]:
        """Rebuild the recent bars from stored ticks; the ones that closed meanwhile."""
        return self.bars.restore(ticks)

    def _take(self, in_ticks: list[Tick], in_books: list[Depth]) -> BusResult:
        if in_ticks:  # its oldest tick: how long the receiver and the bus took
            self.receive_to_publish_s.observe((self._wall_clock() - in_ticks[0].recv_ns) / 1e9)
        self.received += len(in_ticks)
        self.received_books += len(in_books)
        publish: list[tuple[bytes, bytes]] = []
        full: list[list[Tick]] = []
        shard, snapshot, batcher, encode = self.shard, self.snapshot, self.batcher, wire.encode
        add_bar = self.bars.add
        trade_topic = families.TRADES.topic
        trade_moves = self.trade_moves
        closed_bars: list[Bar] = []
        pub_seq = self.pub_seq
        added = 0
        is_new = self.resend_filter.is_new
        for tick in in_ticks:
            added += 1  # every tick goes to the stores: they keep one copy by identity, and a
            batch = batcher.add(tick)  # store that lagged before a restart still gets it
            if batch is not None:
                full.append(batch)
            if not is_new(tick):
                self.resent_dropped += 1  # a re-send (resubscribe, re-run): published once,
                continue  # in bars once
            pub_seq += 1
            snapshot.apply(pub_seq, tick)
            publish.append((trade_topic(tick.code), encode(wire.Published(shard, pub_seq, tick))))
            if trade_moves is not None and trade_moves.passes(tick):
                publish.append(self._move(families.TRADE_MOVES, tick.code, tick))
            closed = add_bar(tick)  # new by the filter above: bars take no other check
            if closed:
                closed_bars.extend(closed)
        self.pub_seq = pub_seq
        self.ticks_added += added
        self.books_added += len(in_books)
        full_books: list[list[Depth]] = []
        book_is_new = self.book_filter.is_new
        for book in in_books:
            books = self.book_batcher.add(book)  # to the stores, as every tick
            if books is not None:
                full_books.append(books)
            if not book_is_new(book):  # a re-send: published once
                continue
            self.book_seq += 1
            snapshot.apply_book(book)
            payload = encode(wire.PublishedDepth(shard, self.book_seq, book))
            publish.append((families.BOOKS.topic(book.code), payload))
            if self.book_moves is not None and self.book_moves.passes(book):
                publish.append(self._move(families.BOOK_MOVES, book.code, book))
        full_bars: list[list[Bar]] = []
        self._bars_out(closed_bars, publish, full_bars)
        return publish, full, full_books, full_bars

    def _move(self, family: Family, code: str, item: Tick | Depth) -> tuple[bytes, bytes]:
        """A publication on a move family, numbered in that family."""
        seq = self.move_seqs[family] + 1
        self.move_seqs[family] = seq
        if isinstance(item, Tick):
            return family.topic(code), wire.encode(wire.Published(self.shard, seq, item))
        return family.topic(code), wire.encode(wire.PublishedDepth(self.shard, seq, item))

    def heartbeat(self) -> tuple[bytes, bytes]:
        return families.HEARTBEAT_TOPIC, wire.encode(wire.Heartbeat(self.shard, self.pub_seq))

    def snapshot_reply(self, raw: bytes) -> bytes:
        try:
            codes = wire.snapshot_request_decoder.decode(raw).codes
        except msgspec.DecodeError:  # answer with everything rather than not at all
            codes = None
        ticks = self.snapshot.get(codes)
        first = self.snapshot.first_recv_ns
        first_seen = {t.code: first[t.code] for t in ticks}
        books = self.snapshot.books(codes)
        pub_seqs = {t.code: self.snapshot.pub_seqs.get(t.code, 0) for t in ticks}
        moves = {family.prefix.decode(): seq for family, seq in self.move_seqs.items()}
        return wire.encode(wire.SnapshotReply(self.shard, self.pub_seq, ticks, first_seen, books,
                                              self.book_seq, pub_seqs, moves))  # fmt: skip
