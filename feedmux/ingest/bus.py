"""The receiver's side of the bus: routed ticks go into the delivery ledger and out of one PUSH
socket per shard; the shards' acks and rewinds come back on one PULL socket."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import zmq

from feedmux.ingest.delivery import Delivery
from feedmux.ingest.fanout import ShardOutbox

END_WAIT_S = 20  # at exit, wait this long for the shards to confirm they stored everything


class Pusher(Protocol):
    """A PUSH socket (or a fake): ``send`` with ``zmq.NOBLOCK`` raises ``zmq.Again`` when full."""

    def send(self, data: bytes, flags: int = ...) -> Any: ...


class Puller(Protocol):
    """A PULL socket (or a fake): ``recv`` with ``zmq.NOBLOCK`` raises ``zmq.Again`` if empty."""

    def recv(self, flags: int = ...) -> Any: ...


class BusSender:
    """Outbox → ledger → sockets, and the acks back. Never waits on a shard: a full socket
    (a slow or restarting shard) leaves the message in the ledger for the next turn."""

    def __init__(self, delivery: Delivery, outbox: ShardOutbox, pushes: Sequence[Pusher],
                 acks: Puller) -> None:  # fmt: skip
        if len(pushes) != len(delivery.queues):
            raise ValueError("one PUSH socket per shard queue")
        self.delivery = delivery
        self.outbox = outbox
        self.pushes = pushes
        self.acks = acks
        self.messages = 0  # bus messages sent (resends included)

    def flush(self) -> None:
        """Move the outbox (one read burst's ticks, a message per shard) into the ledger."""
        for shard, first, end, payload in self.outbox.drain():
            self.delivery.queues[shard].put(first, end, payload)

    def send(self) -> None:
        """Flush the outbox and send what each shard's window allows."""
        self.flush()
        for queue, sock in zip(self.delivery.queues, self.pushes, strict=True):
            while (message := queue.peek()) is not None:
                try:
                    sock.send(message, zmq.NOBLOCK)
                except zmq.Again:  # the shard is slow or restarting: the ledger keeps it
                    break
                queue.sent()
                self.messages += 1

    def take_feedback(self) -> None:
        """Every ack and rewind request the shards have sent."""
        while True:
            try:
                feedback = self.acks.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.delivery.on_feedback(feedback)

    def finish(self, wait: Callable[[], object], log: logging.Logger,
               clock: Callable[[], float] = time.monotonic) -> bool:  # fmt: skip
        """Hand every shard its last ticks and an End, and wait (``wait`` between turns) until
        each confirms it stored them; a shard restarting now still gets its resend. False
        when some were not confirmed within END_WAIT_S."""
        delivery = self.delivery
        end_sent_at: list[int | None] = [None] * len(delivery.queues)  # rewinds seen when queued
        give_up = clock() + END_WAIT_S
        while clock() < give_up:
            self.take_feedback()
            self.send()
            for shard, queue in enumerate(delivery.queues):
                if queue.idle() and end_sent_at[shard] != queue.rewinds:
                    end_sent_at[shard] = queue.rewinds  # again after a rewind: End follows data
                    delivery.end(shard)
            self.send()
            if delivery.unconfirmed() == 0 and all(q.idle() for q in delivery.queues):
                return True
            wait()
        log.error("%d routed ticks and books were not confirmed stored by the shards within "
                  "%d s", delivery.unconfirmed(), END_WAIT_S)  # fmt: skip
        return False
