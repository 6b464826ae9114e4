"""A shard worker's logic without sockets: bus messages in, publications and rows out."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import msgspec

from feedmux import families, wire
from feedmux.families import Family
from feedmux.identity import ResendFilter
from feedmux.model import Bar, Depth, Tick
from feedmux.providers.base import BadMessage
from feedmux.shard.bars import BarBuilder
from feedmux.shard.histogram import LATENCY_BUCKETS_S, Histogram
from feedmux.shard.moves import BookMoves, TradeMoves
from feedmux.shard.snapshot import SnapshotCache

# A publication: (topic, payload) as one PUB multipart message; the payload decodes to a
# wire.Payload.
Publication = tuple[bytes, bytes]
Decode = Callable[[bytes, int], Tick | Depth | BadMessage]


def _no_decoder(payload: bytes, recv_ns: int) -> BadMessage:
    return BadMessage("no_decoder", "this shard was given no vendor decoder", payload[:200])


class Output(msgspec.Struct):
    """What a bus message (or a timer's turn) produced, for the worker to hand on: the
    publications for the PUB socket; the same, in order, of the families that are relayed
    (``Family.relayed``); and the rows for each kind's stores."""

    published: list[Publication] = []
    relayed: list[Publication] = []
    ticks: list[Tick] = []
    books: list[Depth] = []
    bars: list[Bar] = []


class ShardState:
    """Takes bus messages strictly in seq order, and says what is committed.

    A fresh state holds nothing and waits for a Resume; it asks for one at once (the first
    feedback is a Rewind with epoch 0). A message beyond the next expected seq is ignored and a
    resend asked for (once per hole); one already seen is ignored. ``committed`` turns the
    writers' progress into Acks, so the receiver keeps each message until it is in the store
    (and on every relay).

    Its counters of what it handed out (``ticks_added``, ``books_added``,
    ``relayed_total``) are
    positions in each lane's rows (feedmux/shard/lanes.py): the worker hands every row and
    publication of an ``Output`` to its lane, in order, so a lane's "written" compares with them.
    """

    def __init__(self, shard: int, wall_clock: Callable[[], int] = time.time_ns, *,
                 min_move: dict[str, float] | None = None,
                 decode: Decode = _no_decoder, bars: BarBuilder | None = None) -> None:  # fmt: skip
        """``bars``: the bar builder (default: plain clock minutes on ``wall_clock``)."""
        self.shard = shard
        self._decode = decode  # the vendor's (Provider.decode): pushes come undecoded
        moves = min_move or {}
        self.trade_moves = TradeMoves(moves["trades"]) if "trades" in moves else None
        self.book_moves = BookMoves(moves["books"]) if "books" in moves else None
        self.move_seqs = dict.fromkeys(families.MOVES, 0)
        self.bars = bars if bars is not None else BarBuilder(wall_clock)
        # By identity (feedmux/identity.py): the one re-send check; bars and snapshot trust it.
        self.resend_filter = ResendFilter()
        self.book_filter = ResendFilter()
        self._wall_clock = wall_clock
        self.receive_to_publish_s = Histogram(LATENCY_BUCKETS_S)  # per bus message
        self.bar_seq = 0
        self.snapshot = SnapshotCache()
        self.pub_seq = 0
        self.book_seq = 0
        self.epoch = 0
        self.expected_bus_seq: int | None = None  # None until the receiver says where we are
        self._relay_until = 0  # bus seqs below it: the resend of an earlier incarnation's
        self._resending = False  # the bus message being taken is in that resend
        self.received = 0
        self.resent_dropped = 0
        self.received_books = 0
        self.bus_gaps = 0  # seqs that will never come (dropped on overflow by --overflow drop)
        self.bus_ignored = 0  # messages seen twice or out of order (a resend follows)
        self.rewinds_asked = 0
        self.bad_messages = 0  # bus messages that did not decode
        self.bad_pushes: dict[str, int] = {}  # vendor pushes that did not decode, by kind
        self.bad_samples: list[BadMessage] = []  # the first of each kind, for the log
        self.ended = False
        self.ticks_added = 0  # handed to the stores, ever
        self.books_added = 0
        self.relayed_total = 0  # handed to the relays, ever (Output.relayed)
        self._relayed_acked = 0  # relayed_total up to the last one of a family that is ``acked``
        self._asked_from: int | None = None
        # Per bus message taken: (its next seq, ticks_added, books_added, _relayed_acked) after it.
        self._marks: deque[tuple[int, int, int, int]] = deque()
        self.marked = 0  # bus messages taken, ever: an ack may be due when it grows
        self._acked = 0
        self._feedback: list[bytes] = [wire.encode(wire.Rewind(shard, 0, 0))]

    def restore(self, ticks: list[Tick], books: list[Depth], *, restarted: bool = False) -> None:
        """Seed the snapshot and the re-send filter from the store (first-seen times are
        approximate). ``restarted``: an earlier incarnation of this shard ran in this run, so
        the receiver's resend of what it was sent goes to the relays again (``_relay_again``);
        a new run's shard relays no re-send."""
        self.resend_filter.seed(ticks)
        self.book_filter.seed(books)
        if not restarted:
            self._forget_stored()
        for tick in ticks:  # one per code: the highest stored
            self.snapshot.apply(0, tick)
        for book in books:
            self.snapshot.apply_book(book)

    def take_feedback(self) -> list[bytes]:
        """Rewind requests for the receiver, oldest first."""
        feedback, self._feedback = self._feedback, []
        return feedback

    def committed(
        self, ticks_written: int, books_written: int, relays_written: int | None = None
    ) -> bytes | None:
        """An Ack when the writers' totals cover more bus messages than acknowledged so far.

        ``ticks_written``, ``books_written``: the first rows of ``Output.ticks`` (``.books``)
        every store holds; ``relays_written``: the first publications of ``Output.relayed``
        every relay holds (None: no relay). A message is covered once its ticks and books are stored
        and every relay holds its publications: bars and other families that are not ``acked`` may
        sit between them on a relay, and are waited for only as far as they come before."""
        marks = self._marks
        latest = None
        while (marks and marks[0][1] <= ticks_written and marks[0][2] <= books_written
               and (relays_written is None or marks[0][3] <= relays_written)):  # fmt: skip
            latest = marks.popleft()[0]
        if latest is None or latest == self._acked:
            return None
        self._acked = latest
        return wire.encode(wire.Ack(self.shard, self.epoch, latest))

    def _ask(self, expected: int) -> None:
        self.bus_ignored += 1
        if self._asked_from != expected:  # once per hole; the Resume that answers resets it
            self._asked_from = expected
            self.rewinds_asked += 1
            self._feedback.append(wire.encode(wire.Rewind(self.shard, self.epoch, expected)))

    def _resume(self, msg: wire.Resume) -> None:
        self._asked_from = None
        if self.expected_bus_seq is None or msg.epoch != self.epoch:
            # Only a fresh shard's first Resume answers for an earlier incarnation's messages;
            # a new receiver numbers anew and never resends an old one's.
            self._relay_until = msg.until if self.expected_bus_seq is None else 0
            if self._relay_until <= msg.next_seq:
                self._forget_stored()
            self.epoch = msg.epoch  # a fresh shard, or a new receiver: start where it says
            self.expected_bus_seq = msg.next_seq
            self._marks.clear()
            self._acked = 0
            self.ended = False
        elif msg.next_seq > self.expected_bus_seq:
            self.bus_gaps += msg.next_seq - self.expected_bus_seq
            self.expected_bus_seq = msg.next_seq

    def on_bus(self, raw: bytes) -> Output:
        """One bus message → what to publish and the rows to store."""
        try:
            msg = wire.bus_decoder.decode(raw)
        except msgspec.DecodeError:  # a bad internal message must not kill the shard
            self.bad_messages += 1
            return Output()
        if type(msg) is wire.Pushes and len(msg.payloads) != len(msg.recv_ns):
            self.bad_messages += 1
            return Output()
        if type(msg) is wire.Resume:
            self._resume(msg)
            return Output()
        expected = self.expected_bus_seq
        if expected is None:
            self.bus_ignored += 1  # before the first Resume: it will all come again
            return Output()
        if type(msg) is wire.End:
            if msg.next_seq == expected:
                self.ended = True
            elif msg.next_seq > expected:
                self._ask(expected)
            return Output()
        if type(msg) is wire.Pushes:
            first, count = msg.first_seq, len(msg.payloads)
        elif type(msg) is wire.Lost:
            first, count = msg.first_seq, msg.count
        else:
            assert type(msg) is wire.Burst
            first, count = msg.first_seq, len(msg.ticks) + len(msg.books)
        if first > expected:
            self._ask(expected)
            return Output()
        if first + count <= expected:
            self.bus_ignored += 1  # already taken (a resend overlapping what we had)
            return Output()
        skip = expected - first
        self.expected_bus_seq = first + count
        if type(msg) is wire.Lost:
            self.bus_gaps += count - skip
            self._mark(first + count)
            return Output()
        if type(msg) is wire.Pushes:
            in_ticks, in_books = self._decoded(msg, skip)
        else:
            assert type(msg) is wire.Burst
            in_ticks = msg.ticks[skip:] if skip else msg.ticks
            in_books = msg.books[max(0, skip - len(msg.ticks)) :]
        self._resending = first < self._relay_until
        out = self._take(in_ticks, in_books)
        self._mark(first + count)
        if self._relay_until and first + count >= self._relay_until:
            self._forget_stored()  # caught up: a re-send from now on was relayed when it came
        return out

    def _forget_stored(self) -> None:
        self.resend_filter.forget_stored()
        self.book_filter.forget_stored()
        self._relay_until = 0
        self._resending = False

    def _decoded(self, msg: wire.Pushes, skip: int) -> tuple[list[Tick], list[Depth]]:
        """The pushes of a message (from ``skip``), decoded; one that does not decode is
        counted by kind and skipped (its bus seq is still taken)."""
        decode, ticks, books = self._decode, [], []
        payloads, recv_ns = msg.payloads, msg.recv_ns
        if skip:
            payloads, recv_ns = payloads[skip:], recv_ns[skip:]
        for payload, at in zip(payloads, recv_ns, strict=True):
            item = decode(payload, at)
            if type(item) is Tick:
                ticks.append(item)
            elif type(item) is Depth:
                books.append(item)
            else:
                assert isinstance(item, BadMessage)
                kinds = self.bad_pushes
                if item.kind not in kinds:
                    self.bad_samples.append(item)
                kinds[item.kind] = kinds.get(item.kind, 0) + 1
        return ticks, books

    def _mark(self, next_seq: int) -> None:
        """Bus messages before ``next_seq`` are covered once the lanes have this much."""
        self._marks.append((next_seq, self.ticks_added, self.books_added, self._relayed_acked))
        self.marked += 1

    def _emit(self, out: Output, family: Family, publication: Publication) -> None:
        """A publication: to PUB, and to the relays if its family goes there."""
        out.published.append(publication)
        if family.relayed:
            out.relayed.append(publication)
            self.relayed_total += 1
            if family.acked:
                self._relayed_acked = self.relayed_total

    def _bars_out(self, bars: list[Bar], out: Output) -> Output:
        """Publish closed or amended bars; they go to the stores too."""
        for bar in bars:
            self.bar_seq += 1
            payload = wire.encode(wire.PublishedBar(self.shard, self.bar_seq, bar))
            self._emit(out, families.BARS, (families.BARS.topic(bar.code), payload))
        out.bars.extend(bars)
        return out

    def bars_due(self) -> Output:
        """Bars whose minute ended (the timer's turn)."""
        return self._bars_out(self.bars.due(), Output())

    def end_day(self, at_ns: int) -> Output:
        """The run's trading day ended at ``at_ns`` (feedmux/market/eod.py): its last bars
        close, and per-code state of the day is reset (bars, threshold moves), so the next
        session starts clean. The snapshot keeps each code's latest; the re-send filter keeps
        each code's highest identity (a re-send after the day ended must still be known)."""
        for moves in (self.trade_moves, self.book_moves):
            if moves is not None:
                moves.reset()
        return self._bars_out(self.bars.end_day(at_ns), Output())

    def close_bars(self) -> Output:
        """Every open bar, at shutdown."""
        return self._bars_out(self.bars.close_all(), Output())

    def restore_bars(self, ticks: list[Tick], latest: list[Tick] | None = None) -> list[Bar]:
        """Rebuild the recent bars from stored ticks (``latest``: each code's last one, for
        its flat bars); the ones that closed meanwhile."""
        return self.bars.restore(ticks, latest)

    def _take(self, in_ticks: list[Tick], in_books: list[Depth]) -> Output:
        if in_ticks:  # its oldest tick: how long the receiver and the bus took
            self.receive_to_publish_s.observe((self._wall_clock() - in_ticks[0].recv_ns) / 1e9)
        self.received += len(in_ticks)
        self.received_books += len(in_books)
        # Every tick and book goes to the stores: they keep one copy by identity, and a store
        # that lagged before a restart still gets it.
        out = Output(ticks=in_ticks, books=in_books)
        self.ticks_added += len(in_ticks)
        self.books_added += len(in_books)
        shard, snapshot, encode, emit = self.shard, self.snapshot, wire.encode, self._emit
        add_bar = self.bars.add
        trades = families.TRADES
        trade_moves = self.trade_moves
        closed_bars: list[Bar] = []
        pub_seq = self.pub_seq
        is_new = self.resend_filter.is_new
        for tick in in_ticks:
            if not is_new(tick):
                self.resent_dropped += 1  # a re-send (resubscribe, re-run): published once,
                self._relay_again(out, trades, tick, self.resend_filter)  # in bars once
                continue
            pub_seq += 1
            snapshot.apply(pub_seq, tick)
            payload = encode(wire.Published(shard, pub_seq, tick))
            emit(out, trades, (trades.topic(tick.code), payload))
            if trade_moves is not None and trade_moves.passes(tick):
                self._move(out, families.TRADE_MOVES, tick.code, tick)
            closed = add_bar(tick)  # new by the filter above: bars take no other check
            if closed:
                closed_bars.extend(closed)
        self.pub_seq = pub_seq
        book_is_new = self.book_filter.is_new
        for book in in_books:
            if not book_is_new(book):  # a re-send: published once
                self._relay_again(out, families.BOOKS, book, self.book_filter)
                continue
            self.book_seq += 1
            snapshot.apply_book(book)
            payload = encode(wire.PublishedDepth(shard, self.book_seq, book))
            emit(out, families.BOOKS, (families.BOOKS.topic(book.code), payload))
            if self.book_moves is not None and self.book_moves.passes(book):
                self._move(out, families.BOOK_MOVES, book.code, book)
        return self._bars_out(closed_bars, out)

    def _relay_again(self, out: Output, family: Family, item: Tick | Depth,
                     resends: ResendFilter) -> None:  # fmt: skip
        """A re-send that an earlier incarnation of this shard stored before it died may never
        have reached the relays (acks wait for both, but the lanes write apart): relay it again,
        with seq 0 (not on PUB). JetStream keeps it once (its message id is the identity); a
        Redis stream may then hold it twice."""
        if not self._resending or not family.relayed or not resends.stored_before(item):
            return
        if isinstance(item, Tick):
            payload = wire.encode(wire.Published(self.shard, 0, item))
        else:
            payload = wire.encode(wire.PublishedDepth(self.shard, 0, item))
        out.relayed.append((family.topic(item.code), payload))
        self.relayed_total += 1
        self._relayed_acked = self.relayed_total

    def _move(self, out: Output, family: Family, code: str, item: Tick | Depth) -> None:
        """A publication on a move family, numbered in that family."""
        seq = self.move_seqs[family] + 1
        self.move_seqs[family] = seq
        if isinstance(item, Tick):
            payload = wire.encode(wire.Published(self.shard, seq, item))
        else:
            payload = wire.encode(wire.PublishedDepth(self.shard, seq, item))
        self._emit(out, family, (family.topic(code), payload))

    def heartbeat(self) -> Publication:
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
