"""Per-process counters, written once a second as JSON files in ``<run_dir>/stats``.

Files (not sockets) so that ``feedmux status`` and the supervisor can read them without a
connection, and a dead process leaves its last numbers behind. Each role's numbers are one
Struct (``receiver``, ``shard``, ``replay`` modules here), written by the worker and decoded
with their type by every reader.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import msgspec

from feedmux.stats.process import ProcessStats
from feedmux.stats.receiver import ReceiverStats
from feedmux.stats.replay import ReplayStats
from feedmux.stats.shard import ShardStats
from feedmux.writes import health

_encode = msgspec.json.Encoder().encode
_process = msgspec.json.Decoder(ReceiverStats | ShardStats)
_replay = msgspec.json.Decoder(ReplayStats)
T = TypeVar("T")
# Files are padded with blanks (JSON allows them) to leave this much room at least, rounded up
# to whole disk blocks (which a file takes anyway): on a full disk, the numbers and the
# failing writes they then list still fit in place.
_HEADROOM = 2048
_BLOCK = 4096
_READS = 5  # a file being written over: read again, at most this often, until two agree


@dataclass
class RunStats:
    """Every worker's latest stats in a run directory."""

    receiver: ReceiverStats | None = None  # None: no stats (yet)
    shards: dict[int, ShardStats] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # file name -> why it was skipped

    def processes(self) -> list[ProcessStats]:
        """Every worker's, in the order of their names."""
        found: list[ProcessStats] = [*self.shards.values()]
        if self.receiver is not None:
            found.append(self.receiver)
        return sorted(found, key=lambda s: s.name)


def write_stats(stats_dir: Path, stats: ProcessStats) -> bool:
    """Replace this process's stats file (named after it); False if the disk refused."""
    return write_json(stats_dir / f"{stats.name}.json", stats)


def write_json(path: Path, stats: msgspec.Struct) -> bool:
    """Replace the JSON file ``path``; False if the disk refused (counted, logged once).

    Written over in place when it fits (the file is padded): a new file renamed over the old
    one made ext4 write it out at once, ~0.6 ms of CPU a second in every idle process, more
    than all else they do. Readers read until two reads agree (``_read``), so a read that
    overlaps a write is never taken. A file that must grow is made anew and renamed; on a full
    disk, where no new file can be made, the old one's space still takes the numbers."""
    data = _encode(stats)
    if _write_in_place(path, data):
        health.ok("stats")
        return True
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data.ljust(-(-(len(data) + _HEADROOM) // _BLOCK) * _BLOCK))
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # a half-written file: give its space back
        health.failed("stats", exc)
        return False
    health.ok("stats")
    return True


def _write_in_place(path: Path, data: bytes) -> bool:
    """Overwrite ``path`` within the space it has, padded with blanks (JSON allows them).

    Never beyond it: growing a file needs space a full disk may not have, and a short write
    would leave new JSON followed by the old one's end, which no reader can parse."""
    try:
        with path.open("r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if len(data) > size:
                return False
            f.seek(0)
            f.write(data.ljust(size))
    except OSError:
        return False
    return True


def read_stats(stats_dir: Path) -> RunStats:
    """Every process's latest stats; files that do not decode are skipped (and said why)."""
    out = RunStats()
    for path in sorted(stats_dir.glob("*.json")):
        try:
            stats = _read(path, _process)
        except (OSError, msgspec.DecodeError) as exc:
            out.unreadable[path.name] = str(exc)
            continue
        if path.stem != stats.name:
            out.unreadable[path.name] = f"a {stats.name}'s stats in the wrong file"
        elif isinstance(stats, ReceiverStats):
            out.receiver = stats
        else:
            out.shards[stats.shard] = stats
    return out


def read_json(path: Path, decoder: msgspec.json.Decoder[T]) -> T | None:
    """A Struct file written by ``write_json``; None until there is one that decodes."""
    try:
        return _read(path, decoder)
    except (OSError, msgspec.DecodeError):
        return None


def read_replay(path: Path) -> ReplayStats | None:
    """The replay server's report (``--report``); None until there is one that decodes."""
    try:
        return _read(path, _replay)
    except (OSError, msgspec.DecodeError):
        return None


def _read(path: Path, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode a file its writer overwrites in place: two reads that agree are not torn."""
    data = path.read_bytes()
    for _ in range(_READS):
        again = path.read_bytes()
        if again == data:
            break
        data = again
    return decoder.decode(data)
