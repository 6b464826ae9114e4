"""The receiver's journal: every vendor message as it arrived, and what happened to the links.

A production capture becomes a benchmark input and a regression test: ``feedmux replay
--journal PATH`` serves one back over the same protocol.

Layout: ``<data_dir>/journal/<YYYY-MM-DD>/journal-<first recv_ns>.fmj``, a new file per trading
day (``feedmux.market.day.trading_day`` of the run's main market: the market of most of its
codes) and whenever one passes ``max_bytes``. File names sort in time order. A file is the
magic ``FMJ1`` then records::

    kind (u8) | recv_ns (i64, wall clock) | conn (u16) | length (u32) | payload

kinds: 1 text message received, 2 binary message received, 3 request sent, 4 event (JSON:
connect, disconnect, subscription change). The token is redacted from everything written.
Writes are buffered and flushed at least every ``flush_every_ns``: a crash loses at most that
much journal, never a tick (the store does not depend on it). A write that fails (a full disk)
pauses the journal, not the feed: records meanwhile, and those still buffered when it failed,
are counted in ``lost`` (not in ``records``), and every ``retry_every_ns`` a new file is tried.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

from feedmux.errors import StoreError
from feedmux.market.day import trading_day
from feedmux.ops.config import redact, redact_bytes, token_pattern
from feedmux.providers import provider
from feedmux.providers.base import Provider, tokens_of
from feedmux.writes import health

OPCODE_TEXT, OPCODE_BINARY = 0x1, 0x2  # WebSocket opcodes, as the links return them
MAGIC = b"FMJ1"
SUFFIX = ".fmj"
FRAME_TEXT, FRAME_BINARY, SENT, EVENT = 1, 2, 3, 4
_HEADER = struct.Struct("<BqHI")
_KIND_OF_OPCODE = {OPCODE_TEXT: FRAME_TEXT, OPCODE_BINARY: FRAME_BINARY}
_encode_json = msgspec.json.Encoder().encode
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
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
    ) -> None:
        self.root = root
        self._token = token
        self._token_bytes = token.encode() if token else b""  # or several, comma-separated
        self._tokens = [t.encode() for t in tokens_of(token)]
        self.max_bytes = max_bytes
        self._day_code = "." + market  # trading_day takes a code: its suffix names the market
        self._flush_every_ns = flush_every_ns
        self._file: IO[bytes] | None = None
        self._day = -1
        self._size = 0
        self._last_flush_ns = 0
        self.path: Path | None = None
        self.records = 0  # journaled (on disk, or buffered: see _unflushed)
        self._unflushed = 0  # of ``records``, those still in the buffer: lost if a flush fails
        self.bytes = 0
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
        try:
            self._file.write(blob)
        except OSError as exc:
            self._failed(StoreError(f"cannot write journal {self.path}: {exc}"), recv_ns,
                         len(parts) // 2)  # fmt: skip
            return
        self._size += len(blob)
        self.bytes += len(blob)
        self.records += len(parts) // 2
        self._unflushed += len(parts) // 2
        if recv_ns - self._last_flush_ns >= self._flush_every_ns:
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
        self.lost += records
        self._retry_at = now_ns + self._retry_every_ns
        health.failed("journal", exc)
        file, self._file = self._file, None
        if file is not None:
            try:  # a last try to write what it buffered
                file.close()
            except OSError:  # lost with it: counted as such, no longer as journaled
                self.records -= self._unflushed
                self.lost += self._unflushed
        self._unflushed = 0
        with contextlib.suppress(OSError):  # a file that never got its first record
            if self.path is not None and self.path.stat().st_size <= len(MAGIC):
                self.path.unlink()

    def _append(self, kind: int, recv_ns: int, conn: int, payload: bytes) -> None:
        payload = redact_bytes(payload, self._token_bytes)
        day = trading_day(recv_ns, self._day_code)
        if self._file is None or day != self._day or self._size >= self.max_bytes:
            self._rotate(recv_ns, day)
        assert self._file is not None
        try:
            self._file.write(_HEADER.pack(kind, recv_ns, conn & 0xFFFF, len(payload)))
            self._file.write(payload)
        except OSError as exc:
            raise StoreError(f"cannot write journal {self.path}: {exc}") from exc
        size = _HEADER.size + len(payload)
        self._size += size
        self.bytes += size
        self.records += 1
        self._unflushed += 1
        if recv_ns - self._last_flush_ns >= self._flush_every_ns:
            self.flush(recv_ns)

    def flush(self, now_ns: int = 0) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self._failed(StoreError(f"cannot write journal {self.path}: {exc}"), now_ns, 0)
            else:
                self._unflushed = 0
                health.ok("journal")  # on disk, not only buffered: it works again
        self._last_flush_ns = now_ns

    def _rotate(self, recv_ns: int, day: int) -> None:
        self.close()
        date = dt.date(1970, 1, 1) + dt.timedelta(days=day)
        path = self.root / date.isoformat() / f"journal-{recv_ns:020d}{SUFFIX}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "ab", buffering=1 << 20)  # noqa: SIM115 - closed on rotate
            self._file.write(MAGIC)
        except OSError as exc:
            raise StoreError(f"cannot open journal {path}: {exc}") from exc
        self.path, self._day, self._size = path, day, len(MAGIC)
        self.files += 1

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            if self._file is not None:
                self._file.close()
            self._file = None


def write_journal_file(path: Path, records: Iterable[Record]) -> int:
    """A journal file made of ``records`` (e.g. a seeded benchmark input); how many."""
    count = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb", buffering=1 << 20) as f:
            f.write(MAGIC)
            for r in records:
                f.write(_HEADER.pack(r.kind, r.recv_ns, r.conn, len(r.payload)) + r.payload)
                count += 1
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
    """Every record of a journal file or directory, in order. A record cut short by a crash
    ends its file's reading; it does not fail it."""
    for file in journal_files(path):
        try:
            with open(file, "rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    raise StoreError(f"{file} is not a feedmux journal")
                while len(header := f.read(_HEADER.size)) == _HEADER.size:
                    kind, recv_ns, conn, size = _HEADER.unpack(header)
                    payload = f.read(size)
                    if len(payload) < size:
                        break
                    yield Record(kind, recv_ns, conn, payload)
        except OSError as exc:
            raise StoreError(f"cannot read journal {file}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Push:
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
