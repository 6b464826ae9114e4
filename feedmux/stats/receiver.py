"""The receiver's stats: its connections, what it routed, and what it holds for each shard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from feedmux.providers.base import GiveUp
from feedmux.stats.process import ProcessStats

if TYPE_CHECKING:
    from feedmux.ingest.delivery import ShardQueue

RECEIVER = "receiver"


class ConnectionStats(msgspec.Struct, kw_only=True):
    """One vendor connection."""

    state: Literal["up", "down"]
    codes: int  # codes it should carry
    confirmed: int  # codes the vendor confirmed on it
    # Renamed fields keep their JSON names: a running older instance's stats still decode.
    messages: int = msgspec.field(name="frames")  # vendor messages read since the start
    last_message_age_s: float | None = msgspec.field(name="last_frame_age_s")  # None: none yet
    reconnects: int
    watchdog_trips: int  # reconnects because the link was silent
    bad_messages: dict[str, int] = msgspec.field(name="bad_frames")  # by kind: skipped
    error: str  # the last one, token redacted


class QueueStats(msgspec.Struct, kw_only=True):
    """What the receiver holds for one shard until the shard confirms it stored it (ticks)."""

    held: int  # in flight + in memory + spilled: everything not yet acknowledged
    inflight: int  # sent, not yet acknowledged
    pending: int  # in memory, not yet sent
    spilled: int  # on disk (--overflow spill): a part of ``held``
    spilled_total: int
    dropped_total: int  # --overflow drop, or a spill that failed for too long
    peak: int  # the most ``held`` at once
    rewinds: int  # resends the shard asked for

    @classmethod
    def of(cls, queue: ShardQueue) -> QueueStats:
        return cls(held=queue.held_items, inflight=queue.inflight_items,
                   pending=queue.pending_items, spilled=queue.spilled_items,
                   spilled_total=queue.spilled_total, dropped_total=queue.dropped_total,
                   peak=queue.peak_items, rewinds=queue.rewinds)  # fmt: skip


class JournalStats(msgspec.Struct, kw_only=True):
    """The journal of raw vendor messages (--journal)."""

    path: str  # the file written now ("" if none)
    records: int
    bytes: int  # on disk (compressed: FMJ2 zstd blocks)
    files: int
    error: str  # set while writing fails
    lost: int  # records not journaled because writing failed


class ReceiverStats(ProcessStats, tag=RECEIVER, kw_only=True):
    ticks: int  # trades decoded and routed to the shards
    books: int  # order books decoded and routed
    bus_messages: int  # messages sent to the shards
    unconfirmed: int  # routed ticks and books no shard has confirmed stored yet
    # feedback (acks, rewinds) from the shards that made no sense; named so in the JSON, which
    # readers of older instances decode
    bad_feedback: int = msgspec.field(name="bad_reports")
    overflow: str  # the --overflow policy
    bus: list[QueueStats]  # by shard
    journal: JournalStats
    codes_desired: int
    codes_subscribed: int  # confirmed by the vendor
    codes_rejected: int  # refused by the vendor, or no connection had room
    rejected: list[str]  # the first few of them
    gave_up: GiveUp | None  # a permanent failure stopped the receiver
    connections: list[ConnectionStats]

    @property
    def name(self) -> str:
        return RECEIVER
