"""The receiver's journal: every vendor message as it arrived, and what happened to the links.

A production capture becomes a benchmark input and a regression test: ``feedmux replay
--journal PATH`` serves one back over the same protocol.

Layout: ``<data_dir>/journal/<YYYY-MM-DD>/journal-<first recv_ns>.fmj``, a new file per trading
day (``feedmux.market.day.trading_day`` of the run's main market: the market of most of its
codes) and once one holds ``max_bytes`` on disk (compressed; a file passes it by at most one
block). File names sort in time order. A record is::

    kind (u8) | recv_ns (i64, wall clock) | conn (u16) | length (u32) | payload

kinds: 1 text message received, 2 binary message received, 3 request sent, 4 event (JSON:
connect, disconnect, subscription change). The token is redacted from everything written.

A file is the magic ``FMJ2`` then blocks, each a header and one zstd frame of records::

    compressed length (u32) | raw length (u32) | records (u32) | crc32 of the compressed bytes
    (u32) | crc32 of these first 16 bytes (u32) | zstd frame

(about 8 times smaller than the records on the synthetic market: docs/benchmarks.md). A block
is written when its records reach ``block_bytes`` or ``flush_every_ns`` has passed: a crash
loses at most that much journal, never a tick (the store does not depend on it). A block cut
short by a crash ends its file's reading; one whose bytes are damaged is skipped (both logged);
neither fails it. Files of the first format (``FMJ1``: the magic, then records uncompressed)
are still read, alone or in a directory with new ones.

A write that fails (a full disk) pauses the journal, not the feed: records meanwhile, and
those of the block it could not write, are counted in ``lost`` (not in ``records``), and every
``retry_every_ns`` a new file is tried.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from io import FileIO
from pathlib import Path
from typing import IO, Any
from zlib import crc32

import msgspec
import zstandard

from feedmux.errors import StoreError
from feedmux.market.day import trading_day
from feedmux.ops.config import redact, redact_bytes, token_pattern
from feedmux.providers import provider
from feedmux.providers.base import Provider, tokens_of
from feedmux.writes import health

OPCODE_TEXT, OPCODE_BINARY = 0x1, 0x2  # WebSocket opcodes, as the links return them
MAGIC = b"FMJ2"  # what is written: records in zstd blocks
MAGIC_V1 = b"FMJ1"  # the first format, records uncompressed: read, and written on request
SUFFIX = ".fmj"
FRAME_TEXT, FRAME_BINARY, SENT, EVENT = 1, 2, 3, 4
# zstd level 1: smaller than 3 on market data and cheaper, -1 no cheaper (benchmarks/journal.py).
# Blocks of 64 KiB compress as well as 1 MiB ones, the call that writes one takes 0.12 ms
# instead of 1.7 (the receiver reads nothing meanwhile), and a reader holds 92 KB, not 1.3 MB.
LEVEL = 1
BLOCK_BYTES = 64 << 10
_HEADER = struct.Struct("<BqHI")  # a record's
BLOCK = struct.Struct("<IIIII")  # a block's: see the module's docstring
_BLOCK_CHECKED = BLOCK.size - 4  # the header's crc32 covers the bytes before it
_KIND_OF_OPCODE = {OPCODE_TEXT: FRAME_TEXT, OPCODE_BINARY: FRAME_BINARY}
_encode_json = msgspec.json.Encoder().encode
log = logging.getLogger(__name__)


class Record(msgspec.Struct, frozen=True, gc=False):
    """One journal record (a Struct: made about 6 times faster than a frozen dataclass, whose
    making was most of a reader's time per record)."""

    kind: int
    recv_ns: int
    conn: int
    payload: bytes


class JournalWriter:
    def __init__(
        self,
        root: Path,
        token: str,
        *,
        max_bytes: int = 256 << 20,
        market: str = "SH",  # whose trading day names the folders
        flush_every_ns: int = 1_000_000_000,
        enabled: bool = True,  # False (--no-journal): the same calls, nothing written
        retry_every_ns: int = 5_000_000_000,  # after a failed write, try a new file this often
        level: int = LEVEL,  # zstd's
        block_bytes: int = BLOCK_BYTES,  # a block is written once its records reach this
    ) -> None:
        self.root = root
        self._token = token
        self._token_bytes = token.encode() if token else b""  # or several, comma-separated
        self._tokens = [t.encode() for t in tokens_of(token)]
        self.max_bytes = max_bytes
        self._day_code = "." + market  # trading_day takes a code: its suffix names the market
        self._flush_every_ns = flush_every_ns
        self._compress = zstandard.ZstdCompressor(level=level).compress
        self._block_bytes = block_bytes
        self._block: list[bytes] = []  # the open block's records, packed
        self._block_size = 0  # their bytes
        self._file: FileIO | None = None  # unbuffered: a block is one write
        self._day = -1
        self._size = 0  # the file's bytes on disk
        self._last_flush_ns = 0
        self.path: Path | None = None
        self.records = 0  # journaled (on disk, or in the open block: see _unflushed)
        self._unflushed = 0  # of ``records``, those in the open block: lost if its write fails
        self.bytes = 0  # on disk (compressed), in every file
        self.files = 0
        self.error = ""  # set while writing fails; the journal pauses, the feed does not
        self.lost = 0  # records not journaled because writing failed
        self._retry_every_ns = retry_every_ns
        self._retry_at = 0
        self.enabled = enabled

    def message(self, recv_ns: int, conn: int, binary: bool, data: bytes) -> None:
        self._write(FRAME_BINARY if binary else FRAME_TEXT, recv_ns, conn, data)

    def messages(self, recv_ns: int, conn: int, messages: list[tuple[int, bytes]]) -> None:
        """The text and binary messages of one socket read, as one write (the hot path)."""
        if not self.enabled:
            return
        if self.error and self._paused(recv_ns):
            self.lost += sum(1 for opcode, _ in messages if opcode in _KIND_OF_OPCODE)
            return
        pack = _HEADER.pack
        parts: list[bytes] = []
        kinds = _KIND_OF_OPCODE
        for opcode, data in messages:
            kind = kinds.get(opcode)
            if kind is not None:  # pings, pongs and closes are the link's, not the feed's
                parts += (pack(kind, recv_ns, conn & 0xFFFF, len(data)), data)
        if not parts:
            return
        blob = b"".join(parts)
        day = trading_day(recv_ns, self._day_code)
        if (
            self._file is None
            or day != self._day
            or self._size >= self.max_bytes
            or any(token in blob and token_pattern(token).search(blob) for token in self._tokens)
        ):  # rotate or redact: the careful path, one record at a time
            for opcode, data in messages:
                if opcode in kinds:
                    self.message(recv_ns, conn, opcode == OPCODE_BINARY, data)
            return
        self._block.append(blob)  # compressed a block at a time, not a read at a time
        self._block_size += len(blob)
        self.records += len(parts) // 2
        self._unflushed += len(parts) // 2
        if (
            self._block_size >= self._block_bytes
            or recv_ns - self._last_flush_ns >= self._flush_every_ns
        ):
            self.flush(recv_ns)

    def sent(self, recv_ns: int, conn: int, request: bytes) -> None:
        self._write(SENT, recv_ns, conn, request)

    def event(self, recv_ns: int, conn: int, name: str, **detail: Any) -> None:
        text = redact(_encode_json({"event": name, **detail}).decode(), self._token)
        self._write(EVENT, recv_ns, conn, text.encode())

    def _write(self, kind: int, recv_ns: int, conn: int, payload: bytes) -> None:
        if not self.enabled:
            return
        if self.error and self._paused(recv_ns):
            self.lost += 1
            return
        try:
            self._append(kind, recv_ns, conn, payload)
        except StoreError as exc:  # e.g. disk full: the feed goes on, the journal pauses
            self._failed(exc, recv_ns, 1)

    def _paused(self, now_ns: int) -> bool:
        """After a failure: True until the next try is due (then the error is cleared)."""
        if now_ns < self._retry_at:
            return True
        self.error = ""
        return False

    def _failed(self, exc: StoreError, now_ns: int, records: int) -> None:
        """Counted and reported (once per episode); a new file is tried later."""
        self.error = str(exc)
        self.lost += records + self._unflushed  # the open block's: counted as journaled until now
        self.records -= self._unflushed
        self._block, self._block_size, self._unflushed = [], 0, 0
        self._retry_at = now_ns + self._retry_every_ns
        health.failed("journal", exc)
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):  # unbuffered: nothing of it is left to write
                file.close()
        with contextlib.suppress(OSError):  # a file that never got its first block
            if self.path is not None and self.path.stat().st_size <= len(MAGIC):
                self.path.unlink()

    def _append(self, kind: int, recv_ns: int, conn: int, payload: bytes) -> None:
        payload = redact_bytes(payload, self._token_bytes)
        day = trading_day(recv_ns, self._day_code)
        if self._file is None or day != self._day or self._size >= self.max_bytes:
            self._rotate(recv_ns, day)
        self._block += (_HEADER.pack(kind, recv_ns, conn & 0xFFFF, len(payload)), payload)
        self._block_size += _HEADER.size + len(payload)
        self.records += 1
        self._unflushed += 1
        if (
            self._block_size >= self._block_bytes
            or recv_ns - self._last_flush_ns >= self._flush_every_ns
        ):
            self.flush(recv_ns)

    def flush(self, now_ns: int = 0) -> None:
        """The open block, compressed, to disk (the page cache: a process crash loses none)."""
        if self._file is not None and self._unflushed:
            data = _pack_block(self._compress, b"".join(self._block), self._unflushed)
            if not self._size:
                data = MAGIC + data  # with the first block: a file is never only a magic
            try:
                _write_all(self._file, data)
            except OSError as exc:
                self._failed(StoreError(f"cannot write journal {self.path}: {exc}"), now_ns, 0)
            else:
                self._size += len(data)
                self.bytes += len(data)
                self._block, self._block_size, self._unflushed = [], 0, 0
                health.ok("journal")  # on disk: it works again
        self._last_flush_ns = now_ns

    def _rotate(self, recv_ns: int, day: int) -> None:
        self.close()
        if self.error:  # the last block could not be written: no new file before the retry
            raise StoreError(self.error)
        date = dt.date(1970, 1, 1) + dt.timedelta(days=day)
        path = self.root / date.isoformat() / f"journal-{recv_ns:020d}{SUFFIX}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed on rotate
        except OSError as exc:
            raise StoreError(f"cannot open journal {path}: {exc}") from exc
        self.path, self._day, self._size = path, day, 0
        self.files += 1

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            if self._file is not None:
                self._file.close()
            self._file = None


def _pack_block(compress: Callable[[bytes], bytes], raw: bytes, records: int) -> bytes:
    """One block: its header, then ``raw`` (packed records) as one zstd frame."""
    packed = compress(raw)
    head = BLOCK.pack(len(packed), len(raw), records, crc32(packed), 0)[:_BLOCK_CHECKED]
    return head + crc32(head).to_bytes(4, "little") + packed


def _write_all(file: FileIO, data: bytes) -> None:
    view = memoryview(data)
    while view:  # an unbuffered write may take part of it
        view = view[file.write(view) :]


def write_journal_file(
    path: Path, records: Iterable[Record], *, version: int = 2, level: int = LEVEL,
    block_bytes: int = BLOCK_BYTES,
) -> int:  # fmt: skip
    """A journal file made of ``records`` (e.g. a seeded benchmark input); how many.
    ``version=1`` writes the first format (uncompressed), as a feedmux before FMJ2 did."""
    count = 0
    compress = zstandard.ZstdCompressor(level=level).compress
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb", buffering=1 << 20) as f:
            f.write(MAGIC_V1 if version == 1 else MAGIC)
            block: list[bytes] = []
            size = in_block = 0
            for r in records:
                record = _HEADER.pack(r.kind, r.recv_ns, r.conn, len(r.payload)) + r.payload
                count += 1
                if version == 1:
                    f.write(record)
                    continue
                block.append(record)
                size += len(record)
                in_block += 1
                if size >= block_bytes:
                    f.write(_pack_block(compress, b"".join(block), in_block))
                    block, size, in_block = [], 0, 0
            if block:
                f.write(_pack_block(compress, b"".join(block), in_block))
    except OSError as exc:
        raise StoreError(f"cannot write journal {path}: {exc}") from exc
    return count


def journal_files(path: Path) -> list[Path]:
    """One journal file, or every journal file under a directory, in time order."""
    if path.is_file():
        return [path]
    files = sorted(path.rglob(f"*{SUFFIX}"), key=lambda p: p.name)
    if not files:
        raise StoreError(f"no journal files (*{SUFFIX}) under {path}")
    return files


def read_journal(path: Path) -> Iterator[Record]:
    """Every record of a journal file or directory, in order, either format; a block at a
    time (memory: one block). A block or record cut short by a crash ends its file's reading,
    a damaged block is skipped: neither fails it."""
    for file in journal_files(path):
        try:
            with open(file, "rb") as f:
                magic = f.read(len(MAGIC))
                if magic == MAGIC:
                    yield from _read_blocks(f, file)
                elif magic == MAGIC_V1:
                    yield from _read_records(f)
                elif not MAGIC.startswith(magic):  # shorter: a crash before the first block
                    raise StoreError(f"{file} is not a feedmux journal")
        except OSError as exc:
            raise StoreError(f"cannot read journal {file}: {exc}") from exc


def _read_records(f: IO[bytes]) -> Iterator[Record]:
    """The records of an FMJ1 file, after its magic."""
    while len(header := f.read(_HEADER.size)) == _HEADER.size:
        kind, recv_ns, conn, size = _HEADER.unpack(header)
        payload = f.read(size)
        if len(payload) < size:
            break
        yield Record(kind, recv_ns, conn, payload)


def _read_blocks(f: IO[bytes], file: Path) -> Iterator[Record]:
    """The records of an FMJ2 file, after its magic, a block at a time."""
    decompress = zstandard.ZstdDecompressor().decompress
    unpack, record_size = _HEADER.unpack_from, _HEADER.size
    offset = len(MAGIC)
    while head := f.read(BLOCK.size):
        if len(head) < BLOCK.size:
            _unreadable(f, file, offset, "a block cut short, as a crash leaves one")
            return
        packed_size, raw_size, _, crc, head_crc = BLOCK.unpack(head)
        if crc32(head[:_BLOCK_CHECKED]) != head_crc:  # nothing says where the next one starts
            _unreadable(f, file, offset, "a damaged block header")
            return
        packed = f.read(packed_size)
        if len(packed) < packed_size:
            _unreadable(f, file, offset, "a block cut short, as a crash leaves one")
            return
        raw = b""
        if crc32(packed) == crc:
            with contextlib.suppress(zstandard.ZstdError):
                raw = decompress(packed, max_output_size=raw_size)
        if len(raw) != raw_size:
            log.warning("journal %s: the block at byte %d is damaged; skipped (%d bytes)",
                        file, offset, BLOCK.size + packed_size)  # fmt: skip
            raw = b""
        offset += BLOCK.size + packed_size
        at, end = 0, len(raw) - record_size
        while at <= end:
            kind, recv_ns, conn, size = unpack(raw, at)
            at += record_size
            yield Record(kind, recv_ns, conn, raw[at : at + size])
            at += size


def _unreadable(f: IO[bytes], file: Path, offset: int, what: str) -> None:
    left = os.fstat(f.fileno()).st_size - offset
    log.warning("journal %s: %s at byte %d; its last %d bytes are not read", file, what,
                offset, left)  # fmt: skip


class Push(msgspec.Struct, frozen=True, gc=False):
    """A trade or book message from a journal, ready to serve again."""

    recv_ns: int
    code: str
    book: bool
    payload: bytes


def journal_pushes(path: Path, vendor: Provider | None = None) -> Iterator[Push]:
    """The trade and book messages of a journal (what a server pushed), in order."""
    split = (vendor or provider()).split
    for record in read_journal(path):
        if record.kind != FRAME_TEXT:
            continue
        # A reply or a bad message has none: the replay server makes its own.
        for key, payload in split(record.payload):
            yield Push(record.recv_ns, key.code, key.book, payload)


class _Connect(msgspec.Struct):
    event: str
    provider: str = ""


_event_decoder = msgspec.json.Decoder(_Connect)


def journal_vendor(path: Path) -> str | None:
    """The vendor a journal was recorded from (its first connection says; None if none
    does: a journal of a feedmux before vendors were named)."""
    for record in read_journal(path):
        if record.kind == EVENT:
            try:
                event = _event_decoder.decode(record.payload)
            except msgspec.DecodeError:
                continue
            if event.event == "connect":
                return event.provider or None
    return None


def journal_codes(path: Path, vendor: Provider | None = None) -> list[str]:
    """The captured run's universe: every code it subscribed (a code that never ticked
    included, or a replay would refuse it) and every code pushed."""
    vendor = vendor or provider()
    codes: set[str] = set()
    for record in read_journal(path):
        if record.kind == SENT:
            codes.update(vendor.request_codes(record.payload))
        elif record.kind == FRAME_TEXT:
            codes.update(key.code for key, _ in vendor.split(record.payload))
    return sorted(codes)
