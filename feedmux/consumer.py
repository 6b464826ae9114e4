"""Consume a running pipeline from Python: live ticks (``Subscriber``) and snapshots."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import msgspec

from feedmux import wire
from feedmux.config import RunPaths, read_manifest
from feedmux.errors import ConsumerError
from feedmux.model import Depth, Tick
from feedmux.symbols import parse_symbols
from feedmux.transports import zmq as zt

DEFAULT_RUN_DIR = Path("feedmux-data") / "run"


def _shard_count(run_dir: Path, shards: int | None) -> int:
    return shards if shards is not None else read_manifest(run_dir).shards


class Subscriber:
    """Live ticks (and order books) from every shard of a running ``feedmux run``.

    ``codes`` limits the stream to those codes (any spelling ``feedmux.symbols`` accepts);
    None means the whole market. ``trades`` and ``books`` choose what arrives: ``Tick`` and,
    with ``feedmux run --depth``, ``Depth`` objects. ``shards`` may be given to subscribe
    before the run starts (otherwise it is read from the run directory). Iterating blocks
    until the next message.

    ``gaps`` counts published messages this subscriber missed (only measurable for the whole
    market, where each shard's ``pub_seq`` and ``book_seq`` must arrive without holes).
    """

    def __init__(
        self,
        codes: list[str] | None = None,
        run_dir: str | Path = DEFAULT_RUN_DIR,
        shards: int | None = None,
        *,
        trades: bool = True,
        books: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.shards = _shard_count(self.run_dir, shards)
        self.codes = parse_symbols(codes) if codes is not None else None
        topics = [wire.HEARTBEAT_TOPIC]
        kinds = [(wire.TRADE_PREFIX, wire.trade_topic)] if trades else []
        if books:
            kinds.append((wire.DEPTH_PREFIX, wire.depth_topic))
        for prefix, topic_of in kinds:
            if self.codes is None:
                topics.append(prefix)
            else:
                topics.extend(topic_of(c) for c in self.codes)
        paths = RunPaths(self.run_dir)
        self._ctx = zt.context()
        self._sock = zt.sub(self._ctx, [paths.shard_pub(s) for s in range(self.shards)], topics)
        self._last_seq: dict[tuple[int, bytes], int] = {}  # (shard, kind) -> last seq
        self.heard_from: set[int] = set()  # shards whose heartbeat or tick arrived
        self.gaps = 0
        self.received = 0
        self._early: deque[Tick | Depth] = deque()  # arrived during wait_ready

    def recv(self, timeout: float | None = None) -> Tick | Depth | None:
        """The next tick or book, or None after ``timeout`` seconds (None waits forever)."""
        if self._early:
            return self._early.popleft()
        return self._recv(timeout)

    def _recv(self, timeout: float | None) -> Tick | Depth | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self._sock
        while True:
            wait_ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not sock.poll(wait_ms):
                return None
            topic, payload = sock.recv_multipart()
            try:
                if topic == wire.HEARTBEAT_TOPIC:
                    self.heard_from.add(wire.heartbeat_decoder.decode(payload).shard)
                    continue
                if topic.startswith(wire.DEPTH_PREFIX):
                    book = wire.published_depth_decoder.decode(payload)
                    self._track(book.shard, wire.DEPTH_PREFIX, book.book_seq)
                    self.received += 1
                    return book.depth
                msg = wire.published_decoder.decode(payload)
            except msgspec.DecodeError as exc:
                raise ConsumerError(f"undecodable message on topic {topic!r}: {exc}") from exc
            self._track(msg.shard, wire.TRADE_PREFIX, msg.pub_seq)
            self.received += 1
            return msg.tick

    def _track(self, shard: int, kind: bytes, seq: int) -> None:
        self.heard_from.add(shard)
        last = self._last_seq.get((shard, kind))
        if last is not None and self.codes is None and seq > last + 1:
            self.gaps += seq - last - 1
        self._last_seq[shard, kind] = seq

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Wait until every shard has been heard from (its heartbeat arrives once a second).

        Ticks that arrive meanwhile are kept and returned by later ``recv`` calls.
        """
        deadline = time.monotonic() + timeout
        while len(self.heard_from) < self.shards:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            tick = self._recv(min(left, 0.1))
            if tick is not None:
                self._early.append(tick)
        return True

    def __iter__(self) -> Iterator[Tick | Depth]:
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
        self, run_dir: str | Path = DEFAULT_RUN_DIR, shards: int | None = None, timeout: float = 5.0
    ) -> None:
        self.run_dir = Path(run_dir)
        self.shards = _shard_count(self.run_dir, shards)
        self.timeout = timeout
        self._paths = RunPaths(self.run_dir)

    def replies(self, codes: list[str] | None = None) -> list[wire.SnapshotReply]:
        """Each shard's reply: its ticks and the ``pub_seq`` they are current at."""
        wanted = parse_symbols(codes) if codes is not None else None
        request = wire.encode(wire.SnapshotRequest(wanted))
        ctx = zt.context()
        try:
            socks = [zt.req(ctx, self._paths.shard_snapshot(s)) for s in range(self.shards)]
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

    def get(self, codes: list[str] | None = None) -> dict[str, Tick]:
        """Latest tick by code; all codes seen so far when ``codes`` is None."""
        return {t.code: t for reply in self.replies(codes) for t in reply.ticks}

    def books(self, codes: list[str] | None = None) -> dict[str, Depth]:
        """Latest order book by code (with ``feedmux run --depth``)."""
        return {b.code: b for reply in self.replies(codes) for b in reply.books}
