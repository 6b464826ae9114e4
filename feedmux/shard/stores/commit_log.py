"""When each tick was committed: an instrument for the benchmarks (``feedmux run --commit-log``).

One binary file per shard, ``<run_dir>/commits/shard-i.bin``; per committed batch the wall-clock
commit time, the row count and each row's vendor ``seq`` (int64). The benchmark data numbers
``seq`` by the frame's index in the journal it serves, so send time → commit time is a lookup.
"""

from __future__ import annotations

import struct
import time
from array import array
from collections.abc import Callable
from pathlib import Path

from feedmux.model import Tick
from feedmux.shard.stores.base import WriteResult

_BATCH = struct.Struct("<qI")
WriteTicks = Callable[[list[Tick]], WriteResult]


class CommitLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab", buffering=1 << 16)  # noqa: SIM115 - closed by close()

    def wrap(
        self, write: Callable[[list[Tick]], WriteResult]
    ) -> Callable[[list[Tick]], WriteResult]:
        """``write``, then the batch's commit time and seqs in the log."""

        def write_and_log(batch: list[Tick]) -> WriteResult:
            result = write(batch)
            self.record([t.seq for t in batch])
            return result

        return write_and_log

    def record(self, seqs: list[int]) -> None:
        """These seqs were committed just now."""
        self._file.write(_BATCH.pack(time.time_ns(), len(seqs)) + array("q", seqs).tobytes())

    def close(self) -> None:
        self._file.close()


def read_commit_log(path: Path) -> list[tuple[int, array[int]]]:
    """(commit_ns, seqs) per batch."""
    data = path.read_bytes()
    out: list[tuple[int, array[int]]] = []
    at = 0
    while at + _BATCH.size <= len(data):
        commit_ns, n = _BATCH.unpack_from(data, at)
        at += _BATCH.size
        seqs = array("q")
        seqs.frombytes(data[at : at + 8 * n])
        at += 8 * n
        out.append((commit_ns, seqs))
    return out
