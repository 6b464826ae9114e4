"""A FIFO of bus messages on disk: where a shard's queue overflows to under ``--overflow spill``.

One file per shard, records ``<first_seq, end_seq, length>`` + payload. Appends go to the end,
reads come from a cursor; once the reader has caught up the file is truncated, so it only ever
holds what a slow shard has not taken yet.
"""

from __future__ import annotations

import struct
from pathlib import Path

from feedmux.errors import StoreError

_HEADER = struct.Struct("<qqI")


class SpillFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "w+b")  # noqa: SIM115 - lives as long as this object
        except OSError as exc:
            raise StoreError(f"cannot open spill file {path}: {exc}") from exc
        self._read_at = 0
        self._write_at = 0
        self.entries = 0
        self.items = 0

    def __len__(self) -> int:
        return self.entries

    def append(self, first: int, end: int, payload: bytes) -> None:
        try:
            self._file.seek(self._write_at)
            self._file.write(_HEADER.pack(first, end, len(payload)))
            self._file.write(payload)
        except OSError as exc:
            raise StoreError(f"cannot write spill file {self.path}: {exc}") from exc
        self._write_at += _HEADER.size + len(payload)
        self.entries += 1
        self.items += end - first

    def pop(self) -> tuple[int, int, bytes]:
        """The oldest record; the caller checks ``len`` first."""
        f = self._file
        f.seek(self._read_at)
        first, end, size = _HEADER.unpack(f.read(_HEADER.size))
        payload = f.read(size)
        self._read_at += _HEADER.size + size
        self.entries -= 1
        self.items -= end - first
        if not self.entries:  # caught up: give the disk space back
            f.truncate(0)
            self._read_at = self._write_at = 0
        return first, end, payload

    def close(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)
