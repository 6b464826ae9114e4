"""Receiver side of the bus: group ticks and books by shard and stamp per-shard sequences."""

from __future__ import annotations

from feedmux import wire
from feedmux.model import Depth, Tick
from feedmux.routing import Router


class ShardOutbox:
    """Messages of one read burst, grouped by shard, ready to go as one message per shard."""

    __slots__ = ("_books", "_next_seq", "_ticks", "pending", "routed_books", "routed_ticks",
                 "router")  # fmt: skip

    def __init__(self, router: Router) -> None:
        self.router = router
        self._ticks: list[list[Tick]] = [[] for _ in range(router.shards)]
        self._books: list[list[Depth]] = [[] for _ in range(router.shards)]
        self._next_seq = [1] * router.shards
        self.pending = 0
        self.routed_ticks = 0  # handed to the bus so far
        self.routed_books = 0

    def add(self, item: Tick | Depth) -> None:
        shard = self.router(item.code)
        if type(item) is Tick:
            self._ticks[shard].append(item)
        else:
            assert type(item) is Depth
            self._books[shard].append(item)
        self.pending += 1

    def drain(self) -> list[tuple[int, int, int, bytes]]:
        """One encoded ``Burst`` per shard that has messages, as ``(shard, first_seq, end_seq,
        payload)``; the bus seqs ``first_seq..end_seq-1`` are now taken."""
        out: list[tuple[int, int, int, bytes]] = []
        for shard in range(self.router.shards):
            ticks, books = self._ticks[shard], self._books[shard]
            if ticks or books:
                first = self._next_seq[shard]
                end = self._next_seq[shard] = first + len(ticks) + len(books)
                out.append((shard, first, end, wire.encode(wire.Burst(first, ticks, books))))
                self._ticks[shard], self._books[shard] = [], []
                self.routed_ticks += len(ticks)
                self.routed_books += len(books)
        self.pending = 0
        return out
