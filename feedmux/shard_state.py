"""A shard worker's logic without sockets: bus messages in, publications and batches out."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from feedmux import wire
from feedmux.batching import Batcher
from feedmux.model import Depth, Tick
from feedmux.snapshot import SnapshotCache


class ShardState:
    def __init__(self, shard: int, batch_rows: int, batch_delay_ns: int, clock: Callable[[], int]):
        self.shard = shard
        self.snapshot = SnapshotCache()
        self.batcher: Batcher[Tick] = Batcher(batch_rows, batch_delay_ns, clock)
        self.book_batcher: Batcher[Depth] = Batcher(batch_rows, batch_delay_ns, clock)
        self.pub_seq = 0
        self.book_seq = 0
        self.expected_bus_seq = 1
        self.received = 0
        self.resent_dropped = 0
        self.received_books = 0
        self.bus_gaps = 0  # ticks missing between bus batches (issue 4 recovers them)
        self.bad_messages = 0
        self.ended = False

    def on_bus(
        self, raw: bytes
    ) -> tuple[list[tuple[bytes, bytes]], list[list[Tick]], list[list[Depth]]]:
        """One bus message → (PUB frames to send, full tick batches, full book batches)."""
        try:
            msg = wire.bus_decoder.decode(raw)
        except msgspec.DecodeError:  # a bad internal message must not kill the shard
            self.bad_messages += 1
            return [], [], []
        if type(msg) is wire.End:
            self.ended = True
            return [], [], []
        assert type(msg) is wire.Batch
        if msg.first_seq != self.expected_bus_seq:
            self.bus_gaps += max(0, msg.first_seq - self.expected_bus_seq)
        self.expected_bus_seq = msg.first_seq + len(msg.ticks) + len(msg.books)
        self.received += len(msg.ticks)
        self.received_books += len(msg.books)
        publish: list[tuple[bytes, bytes]] = []
        full: list[list[Tick]] = []
        shard, snapshot, batcher, encode = self.shard, self.snapshot, self.batcher, wire.encode
        pub_seq = self.pub_seq
        for tick in msg.ticks:
            if snapshot.latest_seq(tick.code) == tick.seq:
                self.resent_dropped += 1  # a re-send (e.g. on resubscribe): published once
                continue
            pub_seq += 1
            snapshot.apply(pub_seq, tick)
            publish.append(
                (wire.trade_topic(tick.code), encode(wire.Published(shard, pub_seq, tick)))
            )
            batch = batcher.add(tick)
            if batch is not None:
                full.append(batch)
        self.pub_seq = pub_seq
        full_books: list[list[Depth]] = []
        for book in msg.books:
            self.book_seq += 1
            snapshot.apply_book(book)
            payload = encode(wire.PublishedDepth(shard, self.book_seq, book))
            publish.append((wire.depth_topic(book.code), payload))
            books = self.book_batcher.add(book)
            if books is not None:
                full_books.append(books)
        return publish, full, full_books

    def heartbeat(self) -> tuple[bytes, bytes]:
        return wire.HEARTBEAT_TOPIC, wire.encode(wire.Heartbeat(self.shard, self.pub_seq))

    def snapshot_reply(self, raw: bytes) -> bytes:
        try:
            codes = wire.snapshot_request_decoder.decode(raw).codes
        except msgspec.DecodeError:  # answer with everything rather than not at all
            codes = None
        ticks = self.snapshot.get(codes)
        first = self.snapshot.first_recv_ns
        first_seen = {t.code: first[t.code] for t in ticks}
        books = self.snapshot.books(codes)
        return wire.encode(
            wire.SnapshotReply(self.shard, self.snapshot.last_pub_seq, ticks, first_seen, books)
        )
