"""The receiver's delivery ledger: every bus message is kept until its shard has committed it.

Per shard, messages move ``pending`` (or the spill file) → ``inflight`` (sent, not yet
acknowledged) → forgotten (acked: committed to the store). A shard that restarts, or sees a
hole, sends a Rewind and gets everything unacknowledged again, preceded by a Resume marker.
So a ``kill -9`` of a shard loses nothing, and the WebSocket read loop never waits for one:

- ``window_items``: at most this many ticks are in flight per shard; beyond it, messages wait.
- ``memory_items``: at most this many ticks are held in memory per shard. Beyond it the
  overflow policy applies: ``spill`` (default, lossless) appends to a file on disk and sends
  from there in order once the shard catches up; ``drop`` discards and sends a ``Lost`` marker
  in their place, so the shard counts the hole as a gap.
- A spill that cannot be written (a full disk) keeps messages in memory behind the spilled
  ones, up to another ``memory_items``; beyond that they are dropped as above (counted, a gap).
  A new message tries the spill again at most every ``SPILL_RETRY_NS`` (a failing write, and
  open, at every message would slow the WebSocket read loop); once it takes writes, what
  waited goes there first, Lost markers included, so from then on nothing more is dropped.

No sockets here: the receiver asks ``peek`` what to send next and says ``sent`` when it went.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec

from feedmux import wire
from feedmux.errors import StoreError
from feedmux.ingest.spill import SpillFile
from feedmux.writes import health

log = logging.getLogger(__name__)

Overflow = Literal["spill", "drop"]
OVERFLOW_POLICIES: tuple[Overflow, ...] = ("spill", "drop")
SPILL_RETRY_NS = 200_000_000  # after a failed spill write, the next try is this much later

# (first_seq, end_seq, payload, weight): weight is how many ticks the payload holds (0 for
# Lost markers); seqs first..end-1 are what the entry accounts for.
_Entry = tuple[int, int, bytes, int]


class ShardQueue:
    """One shard's outbound messages, in seq order, until acknowledged."""

    def __init__(
        self,
        shard: int,
        window_items: int,
        memory_items: int,
        spill: SpillFile | None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.shard = shard
        self.window_items = window_items
        self.memory_items = memory_items
        self._spill = spill  # None: the drop policy
        self._clock = clock
        self._spill_retry_at = 0  # after a failed spill write: no new try before this (ns)
        self._source = f"shard-{shard}"  # whose spill, for the write health
        self._inflight: deque[_Entry] = deque()
        self._pending: deque[_Entry] = deque()
        self._control: deque[bytes] = deque()  # Resume/End markers go before pending data
        # After a failed spill write: what comes after the spill, in memory, sent after it.
        self._unspilled: deque[_Entry] = deque()
        self.inflight_items = 0
        self.pending_items = 0  # in memory, not yet sent
        self.unspilled_items = 0
        self.next_seq = 1  # the seq the next routed message starts at
        self.acked = 1  # every seq below this is committed
        self.spilled_total = 0
        self.dropped_total = 0
        self.rewinds = 0
        self.peak_items = 0

    @property
    def spilled_items(self) -> int:
        return self._spill.items if self._spill is not None else 0

    @property
    def held_items(self) -> int:
        """Ticks held for this shard: in flight, in memory and on disk."""
        return self.inflight_items + self.pending_items + self.spilled_items + self.unspilled_items

    def put(self, first: int, end: int, payload: bytes) -> None:
        """A new message carrying seqs ``first..end-1``."""
        assert first == self.next_seq, "bus seqs must be put in order"
        self.next_seq = end
        weight = end - first
        spill = self._spill
        in_memory = self.inflight_items + self.pending_items
        overflowing = in_memory + weight > self.memory_items
        if spill is not None and (len(spill) or self._unspilled or overflowing):
            # Keeps order: once spilling, all new goes there (or behind it, if it fails).
            self._respill(spill)
            if not self._unspilled and self._spill_append(spill, (first, end, payload, weight)):
                self.spilled_total += weight
            elif self.unspilled_items + weight <= self.memory_items:
                self._unspilled.append((first, end, payload, weight))
                self.unspilled_items += weight
            else:
                self._put_lost(first, end, self._unspilled)
        elif spill is None and overflowing:
            self._put_lost(first, end, self._pending)
        else:
            self._pending.append((first, end, payload, weight))
            self.pending_items += weight
        self.peak_items = max(self.peak_items, self.held_items)

    def _respill(self, spill: SpillFile) -> None:
        """Move what a failed spill left in memory to the spill, in order (Lost markers too),
        once it takes writes again."""
        unspilled = self._unspilled
        while unspilled and self._spill_append(spill, unspilled[0]):
            weight = unspilled.popleft()[3]
            self.unspilled_items -= weight
            self.spilled_total += weight

    def _spill_append(self, spill: SpillFile, entry: _Entry) -> bool:
        """Write ``entry`` to the spill; False if it failed, or failed lately (not tried)."""
        if self._spill_retry_at and self._clock() < self._spill_retry_at:
            return False
        try:
            spill.append(*entry)
        except StoreError as exc:  # a full disk: counted, logged once, kept in memory
            health.failed("spill", exc, self._source)
            self._spill_retry_at = self._clock() + SPILL_RETRY_NS
            return False
        if self._spill_retry_at:
            self._spill_retry_at = 0
            health.ok("spill", self._source)  # once every shard's spill works again
        return True

    def _put_lost(self, first: int, end: int, queue: deque[_Entry]) -> None:
        self.dropped_total += end - first
        last = queue[-1] if queue else None
        if last is not None and last[3] == 0 and last[1] == first:  # extend the last marker
            first = last[0]
            queue.pop()
        lost = wire.encode(wire.Lost(first, end - first))
        queue.append((first, end, lost, 0))

    def put_control(self, payload: bytes, front: bool = False) -> None:
        if front:
            self._control.appendleft(payload)
        else:
            self._control.append(payload)

    def peek(self) -> bytes | None:
        """The next message to send now, or None (nothing waiting, or the window is full)."""
        if self._control:
            return self._control[0]
        if self.inflight_items >= self.window_items:
            return None
        if not self._pending and self._spill is not None and len(self._spill):
            entry = self._spill.pop()
            self._pending.append(entry)
            self.pending_items += entry[3]
        elif not self._pending and self._unspilled:
            entry = self._unspilled.popleft()
            self._pending.append(entry)
            self.pending_items += entry[3]
            self.unspilled_items -= entry[3]
        return self._pending[0][2] if self._pending else None

    def sent(self) -> None:
        """The message ``peek`` returned went out."""
        if self._control:
            self._control.popleft()
            return
        entry = self._pending.popleft()
        self.pending_items -= entry[3]
        self._inflight.append(entry)
        self.inflight_items += entry[3]

    def idle(self) -> bool:
        """Nothing left to send (in-flight messages may still await their ack)."""
        return (
            not self._control
            and not self._pending
            and not self.spilled_items
            and not self._unspilled
        )

    def ack(self, next_seq: int) -> None:
        """Every seq below ``next_seq`` is committed: forget those messages."""
        inflight = self._inflight
        while inflight and inflight[0][1] <= next_seq:
            self.inflight_items -= inflight.popleft()[3]
        self.acked = max(self.acked, min(next_seq, self.next_seq))

    def rewind(self) -> int:
        """Send every unacknowledged message again; returns the seq the resend starts at."""
        self.rewinds += 1
        while self._inflight:
            entry = self._inflight.pop()
            self.inflight_items -= entry[3]
            self._pending.appendleft(entry)
            self.pending_items += entry[3]
        # Acks fall on message boundaries, so with nothing in memory the resend starts at acked.
        return self._pending[0][0] if self._pending else self.acked

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()


class Delivery:
    """All shards' queues of one receiver run (its ``epoch``), and the feedback the shards sent."""

    def __init__(
        self,
        shards: int,
        epoch: int,
        *,
        window_items: int,
        memory_items: int,
        overflow: Overflow = "spill",
        spill_dir: Path | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if overflow == "spill" and spill_dir is None:
            raise ValueError("the spill policy needs a spill directory")
        self.epoch = epoch
        self.queues = [
            ShardQueue(
                s,
                window_items,
                memory_items,
                SpillFile(spill_dir / f"shard-{s}.spill")
                if overflow == "spill" and spill_dir is not None
                else None,
                clock,
            )
            for s in range(shards)
        ]
        self.bad_feedback = 0
        for queue in self.queues:  # a shard may be mid-stream from an earlier receiver
            queue.put_control(wire.encode(wire.Resume(epoch, 1)))

    def on_feedback(self, raw: bytes) -> None:
        """An Ack or Rewind from a shard."""
        try:
            feedback = wire.feedback_decoder.decode(raw)
        except msgspec.DecodeError:
            self.bad_feedback += 1
            return
        if not 0 <= feedback.shard < len(self.queues):
            self.bad_feedback += 1
            return
        queue = self.queues[feedback.shard]
        if type(feedback) is wire.Ack:
            if feedback.epoch == self.epoch:
                queue.ack(feedback.next_seq)
        # epoch 0: the shard just started
        elif type(feedback) is wire.Rewind and feedback.epoch in (self.epoch, 0):
            start = queue.rewind()
            resume = wire.Resume(self.epoch, start, until=queue.next_seq)
            queue.put_control(wire.encode(resume), front=True)
            log.info("shard %d asked for a resend from %d (%s); resending from %d",
                     feedback.shard, feedback.from_seq,
                     "it restarted" if feedback.epoch == 0 else "it saw a hole",
                     start)  # fmt: skip

    def end(self, shard: int) -> None:
        queue = self.queues[shard]
        queue.put_control(wire.encode(wire.End(queue.next_seq)))

    def unconfirmed(self) -> int:
        """Ticks and books routed but not yet confirmed committed, over all shards."""
        return sum(q.next_seq - q.acked for q in self.queues)

    def close(self) -> None:
        for queue in self.queues:
            queue.close()
