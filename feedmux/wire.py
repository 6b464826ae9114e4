"""Internal and public wire formats (msgpack, never pickle).

Receiver → shard (PUSH/PULL), one message per read burst and shard:
    Pushes: ``["P", first_seq, [push, ...], [recv_ns, ...]]`` — the vendor's messages,
    undecoded (the shard decodes them), with bus sequence numbers ``first_seq, first_seq + 1,
    …`` stamped per shard by the receiver.
    Burst: ``["B", first_seq, [tick, ...], [depth, ...]]`` — the same for decoded ticks then
    books (tools and tests).
    End:   ``["E", next_seq]`` — the receiver is stopping; nothing follows.
    Resume: ``["R", epoch, next_seq]`` — what follows starts at ``next_seq`` of the receiver's
    ``epoch`` (a fresh id per receiver start). Sent first by every receiver and after every
    rewind, so a restarted shard knows where it stands.
    Lost:  ``["L", first_seq, count]`` — under ``--overflow drop`` these seqs will never come.

Shard → receiver (PUSH/PULL at ``<run_dir>/acks``), the delivery ledger's feedback:
    Ack:    ``["A", shard, epoch, next_seq]`` — every bus seq below ``next_seq`` is committed to
            the store (or deliberately skipped); the receiver may forget it.
    Rewind: ``["W", shard, epoch, from_seq]`` — send again from ``from_seq``; a starting shard
            sends ``epoch`` 0 ("I hold nothing: send everything you still have").

Shard → consumers (PUB/SUB), one multipart message per item, a publication:
``[topic, payload]``; the topic families (prefix, payload, sequence, where each goes) are
defined in ``feedmux/families.py``.
    topic:   ``b"T|" + code`` (UTF-8), so ``b"T|"`` subscribes to every trade and
             ``b"T|600519.SH"`` to one code.
    payload: msgpack ``[shard, pub_seq, tick]``; ``pub_seq`` counts this shard's published
             messages from 1 without holes, so a consumer can tell "quiet" from "lost".
    Order books (with ``--depth``): topic ``b"D|" + code``, payload
             ``[shard, book_seq, depth]``, ``book_seq`` numbered apart from ``pub_seq``.
    Heartbeat: topic ``b"H|"``, payload ``[shard, last_pub_seq]``, once a second.
    Moves (with ``--min-move``): topic ``b"MT|" + code``, payload ``[shard, move_seq, tick]``,
             only trades whose price is at least the step away from the code's last one sent
             there; ``b"MD|" + code``, ``[shard, move_seq, depth]`` likewise for the best bid
             or ask. Each family numbers its messages from 1 per shard, without holes.

Snapshot (REQ → shard ROUTER): request ``["S", [code, ...] | None]``,
    reply ``[shard, last_pub_seq, [tick, ...], {code: first_recv_ns}, [depth, ...],
    last_book_seq, {code: pub_seq}, {move prefix: seq}]`` — the latest tick (and book) of each
    code, when its first tick arrived, the sequences they are current at (apply only stream
    messages with a higher seq), the pub_seq each tick was published with (0: restored from
    the store) and how far each move family ("MT|", "MD|") went.

Control (REQ → receiver ROUTER at ``<run_dir>/control``): ``["sub", [code, ...], wait]``,
    ``["unsub", [code, ...], wait]`` or ``["list"]``; reply ``[error, codes, rejected, ages]``:
    ``error`` is "" on success, ``codes`` the desired codes, ``rejected`` {code: reason},
    ``ages`` {code: seconds since the server confirmed it}. A sub/unsub reply comes when the
    server has confirmed the change (with ``wait`` false: once the change is queued).
"""

from __future__ import annotations

import msgspec

from feedmux.model import Bar, Depth, Tick


class Burst(msgspec.Struct, array_like=True, tag="B", frozen=True):
    first_seq: int
    ticks: list[Tick]
    books: list[Depth] = []  # numbered after the ticks: first_seq + len(ticks), ...


class Pushes(msgspec.Struct, array_like=True, tag="P", frozen=True):
    """Vendor pushes as they came off the socket, routed by code and not yet decoded: the
    shard decodes them (``Provider.decode``). ``recv_ns[i]`` is when ``payloads[i]`` was read."""

    first_seq: int
    payloads: list[bytes]
    recv_ns: list[int]


class End(msgspec.Struct, array_like=True, tag="E", frozen=True):
    next_seq: int


class Resume(msgspec.Struct, array_like=True, tag="R", frozen=True):
    epoch: int
    next_seq: int
    until: int = 0  # answering a Rewind: the seqs before this were sent before (a resend)


class Lost(msgspec.Struct, array_like=True, tag="L", frozen=True):
    first_seq: int
    count: int


BusMessage = Burst | Pushes | End | Resume | Lost


class Ack(msgspec.Struct, array_like=True, tag="A", frozen=True):
    shard: int
    epoch: int
    next_seq: int


class Rewind(msgspec.Struct, array_like=True, tag="W", frozen=True):
    shard: int
    epoch: int  # 0: a starting shard that holds nothing
    from_seq: int


ShardFeedback = Ack | Rewind


# What a shard publishes (feedmux/families.py says which family carries which): each has its
# shard, its family's sequence (``seq``) and the item itself (``item``).
class Published(msgspec.Struct, array_like=True, frozen=True):
    shard: int
    pub_seq: int  # or the move_seq on the trade moves family
    tick: Tick

    @property
    def seq(self) -> int:
        return self.pub_seq

    @property
    def item(self) -> Tick:
        return self.tick


class PublishedDepth(msgspec.Struct, array_like=True, frozen=True):
    shard: int
    book_seq: int  # counts this shard's published books from 1, apart from trades
    depth: Depth

    @property
    def seq(self) -> int:
        return self.book_seq

    @property
    def item(self) -> Depth:
        return self.depth


class PublishedBar(msgspec.Struct, array_like=True, frozen=True):
    shard: int
    bar_seq: int  # counts this shard's published bars from 1 (an amended bar is sent again)
    bar: Bar

    @property
    def seq(self) -> int:
        return self.bar_seq

    @property
    def item(self) -> Bar:
        return self.bar


# A PUB payload, decoded (its family's decoder says which); the (topic, payload bytes) pair a
# shard sends is a publication (feedmux/shard/state.py).
Payload = Published | PublishedDepth | PublishedBar


class Heartbeat(msgspec.Struct, array_like=True, frozen=True):
    shard: int
    last_pub_seq: int


class SnapshotRequest(msgspec.Struct, array_like=True, tag="S", frozen=True):
    codes: list[str] | None = None


class SnapshotReply(msgspec.Struct, array_like=True, frozen=True):
    shard: int
    last_pub_seq: int
    ticks: list[Tick]
    first_recv_ns: dict[str, int] = {}  # when each code's first tick arrived (wall clock ns)
    books: list[Depth] = []  # the latest order book of each code (with --depth)
    last_book_seq: int = 0  # the book_seq the books are current at
    pub_seqs: dict[str, int] = {}  # the pub_seq each tick was published with (0: from the store)
    move_seqs: dict[str, int] = {}  # per move family ("MT|", "MD|"): the seq it is current at


encode = msgspec.msgpack.Encoder().encode
bus_decoder: msgspec.msgpack.Decoder[BusMessage] = msgspec.msgpack.Decoder(BusMessage)
feedback_decoder: msgspec.msgpack.Decoder[ShardFeedback] = msgspec.msgpack.Decoder(ShardFeedback)
heartbeat_decoder = msgspec.msgpack.Decoder(Heartbeat)
snapshot_request_decoder = msgspec.msgpack.Decoder(SnapshotRequest)
snapshot_reply_decoder = msgspec.msgpack.Decoder(SnapshotReply)


class Subscribe(msgspec.Struct, array_like=True, tag="sub", frozen=True):
    codes: list[str]
    wait: bool = True  # False: answer once queued, not once the server confirmed


class Unsubscribe(msgspec.Struct, array_like=True, tag="unsub", frozen=True):
    codes: list[str]
    wait: bool = True


class ListSubscriptions(msgspec.Struct, array_like=True, tag="list", frozen=True):
    pass


ControlRequest = Subscribe | Unsubscribe | ListSubscriptions


class ControlReply(msgspec.Struct, array_like=True, frozen=True):
    error: str
    codes: list[str]
    rejected: dict[str, str]
    confirmed_age_s: dict[str, float]


control_request_decoder: msgspec.msgpack.Decoder[ControlRequest] = msgspec.msgpack.Decoder(
    ControlRequest
)
control_reply_decoder = msgspec.msgpack.Decoder(ControlReply)
