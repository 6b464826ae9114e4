"""Receiver side of the bus: group ticks by shard and stamp per-shard sequence numbers."""

from __future__ import annotations

from feedmux import wire
from feedmux.model import Tick
from feedmux.routing import Router


class ShardOutbox:
    """Ticks of one read burst, grouped by shard, ready to be sent as one message per shard."""

    __slots__ = ("_next_seq", "_pending", "pending", "routed", "router")

    def __init__(self, router: Router) -> None:
        self.router = router
        self._pending: list[list[Tick]] = [[] for _ in range(router.shards)]
        self._next_seq = [1] * router.shards
        self.pending = 0
        self.routed = 0  # ticks handed to the bus so far

    def add(self, tick: Tick) -> None:
        self._pending[self.router(tick.code)].append(tick)
        self.pending += 1

    def drain(self) -> list[tuple[int, bytes]]:
        """One encoded ``Batch`` per shard that has ticks; their bus seqs are now taken."""
        out: list[tuple[int, bytes]] = []
        for shard, ticks in enumerate(self._pending):
            if ticks:
                first = self._next_seq[shard]
                self._next_seq[shard] = first + len(ticks)
                out.append((shard, wire.encode(wire.Batch(first, ticks))))
                self._pending[shard] = []
        self.routed += self.pending
        self.pending = 0
        return out

    def end(self) -> list[tuple[int, bytes]]:
        """The last message for every shard: nothing follows from this receiver."""
        return [(s, wire.encode(wire.End(seq))) for s, seq in enumerate(self._next_seq)]
