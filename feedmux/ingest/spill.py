"""A FIFO of bus messages on disk: where a shard's queue overflows to under ``--overflow spill``.

One file per shard, records ``<first_seq, end_seq, length, flags>`` + payload; the flag ``LOST``
marks a Lost marker (seqs accounted for, no ticks held). Appends go to the end,
reads come from a cursor; once the reader has caught up the file is truncated, so it only ever
holds what a slow shard has not taken yet. The file is made at the first append, so a full
disk fails an append (a StoreError the ledger handles), never the receiver's start.
"""

from __future__ import annotations

import errno
import struct
from pathlib import Path
from typing import IO

from feedmux.errors import StoreError

_HEADER = struct.Struct("<qqIB")
_LOST = 1  # the payload is a Lost marker: its weight (ticks held) is 0


class SpillFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._read_at = 0
        self._write_at = 0
        self.entries = 0
        self.items = 0

    def __len__(self) -> int:
        return self.entries

    def _open(self) -> IO[bytes]:
        if self._file is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Unbuffered: a failed write leaves nothing behind to fail a later read.
                self._file = open(self.path, "w+b", buffering=0)  # noqa: SIM115 - as long as this
            except OSError as exc:
                raise StoreError(f"cannot open spill file {self.path}: {exc}") from exc
        return self._file

    def append(self, first: int, end: int, payload: bytes, weight: int) -> None:
        """Add a record at the end; a StoreError (disk full) leaves the file as it was.

        ``weight``: the ticks ``payload`` holds, ``end - first``, or 0 for a Lost marker."""
        file = self._open()
        try:
            file.seek(self._write_at)
            record = _HEADER.pack(first, end, len(payload), 0 if weight else _LOST) + payload
            if file.write(record) != len(record):  # the disk filled up mid-record
                raise OSError(errno.ENOSPC, "short write")
        except OSError as exc:
            raise StoreError(f"cannot write spill file {self.path}: {exc}") from exc
        self._write_at += _HEADER.size + len(payload)
        self.entries += 1
        self.items += weight

    def pop(self) -> tuple[int, int, bytes, int]:
        """The oldest record as ``(first, end, payload, weight)``; the caller checks ``len``."""
        f = self._file
        assert f is not None, "pop of an empty spill"
        f.seek(self._read_at)
        first, end, size, flags = _HEADER.unpack(f.read(_HEADER.size))
        payload = f.read(size)
        self._read_at += _HEADER.size + size
        weight = 0 if flags & _LOST else end - first
        self.entries -= 1
        self.items -= weight
        if not self.entries:  # caught up: give the disk space back
            f.truncate(0)
            self._read_at = self._write_at = 0
        return first, end, payload, weight

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self.path.unlink(missing_ok=True)
