"""Receiver side of the bus: group pushes by shard and stamp per-shard sequences.

The receiver routes a vendor's push on its code alone (``Provider.peek``) and forwards its
bytes: the shards decode them, in parallel. Decoded ticks and books (``add``) go as a typed
``Burst``, for tools and tests that have them already.
"""

from __future__ import annotations

from feedmux import wire
from feedmux.model import Depth, Tick
from feedmux.providers.base import Peek
from feedmux.routing import Router


class ShardOutbox:
    """Messages of one read burst, grouped by shard, ready to go as one message per shard."""

    __slots__ = ("_books", "_next_seq", "_payloads", "_recv_ns", "_ticks", "pending",
                 "routed_books", "routed_ticks", "router")  # fmt: skip

    def __init__(self, router: Router) -> None:
        self.router = router
        shards = range(router.shards)
        self._payloads: list[list[bytes]] = [[] for _ in shards]
        self._recv_ns: list[list[int]] = [[] for _ in shards]
        self._ticks: list[list[Tick]] = [[] for _ in shards]
        self._books: list[list[Depth]] = [[] for _ in shards]
        self._next_seq = [1] * router.shards
        self.pending = 0
        self.routed_ticks = 0  # handed to the bus so far
        self.routed_books = 0

    def route(self, key: Peek, payload: bytes, recv_ns: int) -> None:
        """A push, undecoded, to the shard of its code."""
        shard = self.router(key.code)
        self._payloads[shard].append(payload)
        self._recv_ns[shard].append(recv_ns)
        if key.book:
            self.routed_books += 1
        else:
            self.routed_ticks += 1
        self.pending += 1

    def add(self, item: Tick | Depth) -> None:
        """A decoded tick or book."""
        shard = self.router(item.code)
        if type(item) is Tick:
            self._ticks[shard].append(item)
            self.routed_ticks += 1
        else:
            assert type(item) is Depth
            self._books[shard].append(item)
            self.routed_books += 1
        self.pending += 1

    def drain(self) -> list[tuple[int, int, int, bytes]]:
        """One encoded message per shard that has pushes (and one more for decoded items),
        as ``(shard, first_seq, end_seq, payload)``; the bus seqs ``first_seq..end_seq-1``
        are now taken."""
        out: list[tuple[int, int, int, bytes]] = []
        encode = wire.encode
        for shard in range(self.router.shards):
            ticks, books, payloads = self._ticks[shard], self._books[shard], self._payloads[shard]
            if ticks or books:
                first = self._next_seq[shard]
                end = self._next_seq[shard] = first + len(ticks) + len(books)
                out.append((shard, first, end, encode(wire.Burst(first, ticks, books))))
                self._ticks[shard], self._books[shard] = [], []
            if payloads:
                first = self._next_seq[shard]
                end = self._next_seq[shard] = first + len(payloads)
                message = wire.Pushes(first, payloads, self._recv_ns[shard])
                out.append((shard, first, end, encode(message)))
                self._payloads[shard], self._recv_ns[shard] = [], []
        self.pending = 0
        return out
