"""Consume a running pipeline from Python: live ticks (``Subscriber``) and snapshots."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

import msgspec
import zmq

from feedmux import families, wire
from feedmux.codes import parse_codes
from feedmux.errors import ConfigError, ConsumerError, GapError, NotRunningError
from feedmux.families import Family
from feedmux.model import TICK_COLUMNS, Bar, Depth, Tick
from feedmux.ops import instance
from feedmux.ops.config import RunPaths, read_manifest, tcp_port
from feedmux.transports import zmq as zt

if TYPE_CHECKING:
    import pandas as pd

Item = Tick | Depth | Bar
DEFAULT_RUN_DIR = Path("feedmux-data") / "run"


@dataclass(frozen=True)
class Endpoints:
    """Where a running instance's consumer sockets are, and the CURVE keys to use."""

    paths: RunPaths
    shards: int
    curve: zt.CurveKeys | None

    @classmethod
    def of(cls, run_dir: Path, shards: int | None, endpoint: str | None,
           server_key: str | Path | None, client_key: str | Path | None) -> Endpoints:  # fmt: skip
        """From the run directory's manifest, or from ``endpoint`` (the run's ``--public``
        tcp://HOST:PORT, on another host) and ``shards``."""
        manifest_key = ""
        if endpoint:
            if shards is None:
                raise ConfigError("with endpoint=, give shards= (the run's --shards)")
            paths = RunPaths(run_dir, public=tcp_port(endpoint, 0))
        else:
            paths = RunPaths.of_run(run_dir)
            try:
                manifest = read_manifest(run_dir)
            except (ConfigError, NotRunningError):
                if shards is None:
                    raise
            else:  # CURVE on the run's own host: its public key is in run.json
                shards = manifest.shards if shards is None else shards
                manifest_key = manifest.curve_server_key
        server = zt.load_keys_public(server_key) if server_key else manifest_key.encode()
        curve = None
        if client_key is not None:
            keys = zt.load_keys(client_key)
            curve = zt.CurveKeys(keys.public, keys.secret, server)
        elif server:
            curve = zt.ephemeral_keys(server)
        if curve is not None and not curve.server:
            raise ConfigError("CURVE needs the server's public key: give server_key=")
        return cls(paths, shards, curve)


@dataclass(frozen=True)
class MarketSnapshot:
    """What ``Subscriber.snapshot`` returns: the latest tick and book of each code."""

    ticks: dict[str, Tick]
    books: dict[str, Depth]


class Subscriber:
    """Live ticks (and order books) from every shard of a running ``feedmux run``.

    ``codes`` limits the stream to those codes (any spelling ``feedmux.codes`` accepts);
    None means the whole market. ``trades`` and ``books`` choose what arrives: ``Tick`` and,
    with ``feedmux run --depth``, ``Depth`` objects. ``trade_moves`` and ``book_moves`` are
    the ``--min-move`` families: only trades (books) whose price (best bid or ask) moved by at
    least the run's step since the last one sent there. ``bars`` adds the 1-minute ``Bar`` of
    each code as it closes (and again when a late tick amends it). ``shards`` may be given to
    subscribe before the run starts (otherwise it is read from the run directory, and one where
    nothing runs raises ``NotRunningError`` at once). Iterating blocks
    until the next message. ``queue`` is how many messages may wait unread before the
    publisher drops for this subscriber alone (the pipeline never waits for a consumer).

    Gaps: each shard numbers what it publishes. A whole-market subscriber sees every hole
    (``missed``); any subscriber sees a shard restart. With ``on_gap="raise"`` (default)
    ``recv`` raises ``GapError`` once per gap, keeping the message that revealed it for the
    next call; with ``"count"`` it only counts (``gaps``, ``gap_events``). Either way,
    ``snapshot()`` catches up: each shard's latest state, after which only newer messages
    arrive (snapshot-then-stream: no gap, no duplicate).
    """

    def __init__(
        self,
        codes: list[str] | None = None,
        run_dir: str | Path = DEFAULT_RUN_DIR,
        shards: int | None = None,
        *,
        trades: bool = True,
        books: bool = False,
        trade_moves: bool = False,
        book_moves: bool = False,
        bars: bool = False,
        on_gap: Literal["raise", "count"] = "raise",
        queue: int = zt.PUB_HWM,
        endpoint: str | None = None,
        server_key: str | Path | None = None,
        client_key: str | Path | None = None,
    ) -> None:
        if on_gap not in ("raise", "count"):
            raise ConfigError(f"on_gap must be 'raise' or 'count', not {on_gap!r}")
        self.run_dir = Path(run_dir)
        if endpoint is None and shards is None:  # a stopped instance would never send a thing
            instance.require(self.run_dir)  # (with shards= one may subscribe before the start)
        self._endpoints = Endpoints.of(self.run_dir, shards, endpoint, server_key, client_key)
        self.shards = self._endpoints.shards
        self.codes = parse_codes(codes) if codes is not None else None
        self.on_gap = on_gap
        self.trades = trades
        asked = {"trades": trades, "books": books, "trade_moves": trade_moves,
                 "book_moves": book_moves, "bars": bars}  # fmt: skip
        topics = [families.HEARTBEAT_TOPIC]
        for family in families.FAMILIES:
            if not asked[family.option]:
                continue
            if self.codes is None:
                topics.append(family.prefix)
            else:
                topics.extend(family.topic(c) for c in self.codes)
        paths = self._endpoints.paths
        self._ctx = zt.context()
        self._sock = zt.sub(self._ctx, [paths.shard_pub(s) for s in range(self.shards)], topics,
                            hwm=queue, curve=self._endpoints.curve)  # fmt: skip
        self._last_seq: dict[tuple[int, Family], int] = {}  # (shard, family) -> last seq
        self._floor: dict[tuple[int, Family], int] = {}  # (shard, family) -> in the snapshot
        self.heard_from: set[int] = set()  # shards whose heartbeat or tick arrived
        self.gaps = 0  # messages missed, over all gaps
        self.gap_events: list[GapError] = []
        self.received = 0
        self.heard_at = time.monotonic()  # when a shard's heartbeat last arrived (once a second)
        self._early: deque[Item] = deque()  # arrived during wait_ready, or at a gap

    def recv(self, timeout: float | None = None) -> Item | None:
        """The next tick or book, or None after ``timeout`` seconds (None waits forever).

        Raises ``GapError`` (with ``on_gap="raise"``) when messages were missed."""
        if self._early:
            return self._early.popleft()
        return self._recv(timeout)

    def _recv(self, timeout: float | None) -> Item | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self._sock
        while True:
            try:  # what is queued is taken without a poll: a burst costs no system call each
                topic, payload = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                wait_ms = (-1 if deadline is None
                           else max(0, int((deadline - time.monotonic()) * 1000)))  # fmt: skip
                if not sock.poll(wait_ms):
                    return None
                continue
            item: Item
            try:
                if topic == families.HEARTBEAT_TOPIC:
                    self.heard_at = time.monotonic()
                    beat = wire.heartbeat_decoder.decode(payload)
                    self.heard_from.add(beat.shard)
                    self._check_heartbeat(beat)
                    continue
                family = families.of_topic(topic)
                if family is None:  # a newer publisher's family: not asked for, never sent
                    continue
                msg: wire.Payload = family.decoder.decode(payload)
                shard, seq, item = msg.shard, msg.seq, msg.item
            except msgspec.DecodeError as exc:
                raise ConsumerError(f"undecodable message on topic {topic!r}: {exc}") from exc
            self.heard_from.add(shard)
            if self._in_snapshot(shard, family, seq):
                continue
            gap = self._track(shard, family, seq)
            self.received += 1
            if gap is not None:
                if self.on_gap == "raise":
                    self._early.append(item)  # the next recv returns it
                self._handle_gap(gap)
            return item

    def _in_snapshot(self, shard: int, family: Family, seq: int) -> bool:
        floor = self._floor.get((shard, family))
        if floor is None:
            return False
        if seq <= floor:
            return True  # already part of what snapshot() returned
        del self._floor[shard, family]
        return False

    def _track(self, shard: int, family: Family, seq: int) -> GapError | None:
        key = (shard, family)
        last = self._last_seq.get(key)
        self._last_seq[key] = seq
        if last is None:
            return None
        if seq <= last:
            return GapError(shard, family.name, None)
        if self.codes is None and seq > last + 1:  # only the whole market is numbered densely
            return GapError(shard, family.name, seq - last - 1)
        return None

    def _check_heartbeat(self, beat: wire.Heartbeat) -> None:
        """A heartbeat says how far a shard's trades went: a hole at the end of a burst shows
        here (whole-market trade subscribers only)."""
        key = (beat.shard, families.TRADES)
        if self.codes is not None or not self.trades or key in self._floor:
            return
        last = self._last_seq.get(key)
        self._last_seq[key] = beat.last_pub_seq
        if last is None or beat.last_pub_seq == last:
            return
        missed = beat.last_pub_seq - last if beat.last_pub_seq > last else None
        self._handle_gap(GapError(beat.shard, families.TRADES.name, missed))

    def _handle_gap(self, gap: GapError) -> None:
        self.gaps += gap.missed or 0
        self.gap_events.append(gap)
        if self.on_gap == "raise":
            raise gap

    def snapshot(self, timeout: float = 10.0) -> MarketSnapshot:
        """Each shard's latest tick (and book) per code, for this subscriber's codes.

        Afterwards ``recv`` returns only messages newer than the snapshot, so applying the
        snapshot and then the stream misses nothing and repeats nothing. Call it at start
        or after a ``GapError``."""
        if not self.wait_ready(timeout):
            raise ConsumerError(f"not every shard answered within {timeout} s: is feedmux "
                                f"running with run dir {self.run_dir}?")  # fmt: skip
        replies = SnapshotClient(self.run_dir, self.shards, timeout,
                                 endpoints=self._endpoints).replies(self.codes)  # fmt: skip
        for reply in replies:
            moves = [(families.of_topic(prefix.encode()), seq)
                     for prefix, seq in reply.move_seqs.items()]  # fmt: skip
            for family, seq in ((families.TRADES, reply.last_pub_seq),
                                (families.BOOKS, reply.last_book_seq), *moves):  # fmt: skip
                if family is None:  # a newer publisher's family
                    continue
                self._floor[reply.shard, family] = seq
                self._last_seq[reply.shard, family] = seq
        self._early.clear()  # anything that waited is older than the snapshot or comes again
        return MarketSnapshot(
            {t.code: t for r in replies for t in r.ticks},
            {b.code: b for r in replies for b in r.books},
        )

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Wait until every shard has been heard from (its heartbeat arrives once a second).

        Ticks that arrive meanwhile are kept and returned by later ``recv`` calls.
        """
        deadline = time.monotonic() + timeout
        while len(self.heard_from) < self.shards:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                tick = self._recv(min(left, 0.1))
            except GapError:
                continue  # counted; the message that showed it is in _early already
            if tick is not None:
                self._early.append(tick)
        return True

    def __iter__(self) -> Iterator[Item]:
        while True:
            tick = self.recv()
            if tick is not None:
                yield tick

    def close(self) -> None:
        self._ctx.destroy(linger=0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SnapshotClient:
    """The latest tick of each code, asked from each shard of a running ``feedmux run``."""

    def __init__(
        self,
        run_dir: str | Path = DEFAULT_RUN_DIR,
        shards: int | None = None,
        timeout: float = 5.0,
        *,
        endpoint: str | None = None,
        server_key: str | Path | None = None,
        client_key: str | Path | None = None,
        endpoints: Endpoints | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self._endpoints = endpoints or Endpoints.of(self.run_dir, shards, endpoint, server_key,
                                                    client_key)  # fmt: skip
        self.shards = self._endpoints.shards
        self.timeout = timeout
        self._paths = self._endpoints.paths
        # Found by its run dir alone: a stopped run is said at once, not after the timeout.
        self._local = endpoint is None and shards is None and endpoints is None

    def replies(self, codes: list[str] | None = None) -> list[wire.SnapshotReply]:
        """Each shard's reply: its ticks and the ``pub_seq`` they are current at."""
        if self._local:
            instance.require(self.run_dir)
        wanted = parse_codes(codes) if codes is not None else None
        request = wire.encode(wire.SnapshotRequest(wanted))
        ctx = zt.context()
        try:
            socks = [zt.req(ctx, self._paths.shard_snapshot(s), curve=self._endpoints.curve)
                     for s in range(self.shards)]  # fmt: skip
            for sock in socks:
                sock.send(request)
            out = []
            for shard, sock in enumerate(socks):
                if not sock.poll(int(self.timeout * 1000)):
                    raise ConsumerError(
                        f"shard {shard} did not answer a snapshot request within "
                        f"{self.timeout} s: is feedmux running with run dir {self.run_dir}?"
                    )
                out.append(wire.snapshot_reply_decoder.decode(sock.recv()))
            return out
        finally:
            ctx.destroy(linger=0)

    def get(self, codes: list[str] | None = None) -> dict[str, Quote]:
        """Latest tick (and book) by code with its sequence numbers; every code seen so far
        when ``codes`` is None. Codes without a tick yet are left out."""
        out = {}
        for reply in self.replies(codes):
            books = {b.code: b for b in reply.books}
            for tick in reply.ticks:
                seq = reply.pub_seqs.get(tick.code, 0)
                out[tick.code] = Quote(tick.code, tick, reply.shard, seq, books.get(tick.code))
        return out

    def books(self, codes: list[str] | None = None) -> dict[str, Depth]:
        """Latest order book by code (with ``feedmux run --depth``)."""
        return {b.code: b for reply in self.replies(codes) for b in reply.books}

    def all(self) -> pd.DataFrame:
        """The whole market's latest ticks, one row per code (sorted): the columns of
        ``read_ticks`` plus shard, pub_seq and, with --depth, the best bid and ask."""
        return self.dataframe(sorted(self.get().values(), key=lambda q: q.code))

    @staticmethod
    def dataframe(quotes: list[Quote]) -> pd.DataFrame:
        """Quotes as the DataFrame ``all`` returns."""
        import pandas as pd  # noqa: PLC0415 (workers import this module; they never need pandas)

        rows = [
            (q.code, q.tick.seq, q.tick.time_ns, q.tick.recv_ns, q.tick.price, q.tick.volume,
             q.tick.turnover, q.tick.direction, q.shard, q.pub_seq, *_best(q.book))
            for q in quotes
        ]  # fmt: skip
        df = pd.DataFrame(rows, columns=list(QUOTE_COLUMNS))
        df["time"] = pd.to_datetime(df["time"].astype("int64"), unit="ns", utc=True)
        df["recv_time"] = pd.to_datetime(df["recv_time"].astype("int64"), unit="ns", utc=True)
        return df


QUOTE_COLUMNS = (*TICK_COLUMNS, "shard", "pub_seq", "bid", "bid_volume", "ask", "ask_volume")
_NO_BOOK = (math.nan, math.nan, math.nan, math.nan)


def _best(book: Depth | None) -> tuple[float, float, float, float]:
    if book is None:
        return _NO_BOOK
    bid = book.bids[0] if book.bids else (math.nan, math.nan)
    ask = book.asks[0] if book.asks else (math.nan, math.nan)
    return bid[0], bid[1], ask[0], ask[1]


@dataclass(frozen=True)
class Quote:
    """A code's latest state in a shard's snapshot: its tick, the ``pub_seq`` the tick was
    published with (0: restored from the store after a restart) and its latest book."""

    code: str
    tick: Tick
    shard: int
    pub_seq: int
    book: Depth | None = None
