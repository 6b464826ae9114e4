"""Per-process counters, written once a second as JSON files in ``<run_dir>/stats``.

Files (not sockets) so that ``feedmux status`` and the supervisor can read them without a
connection, and a dead process leaves its last numbers behind.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import msgspec

from feedmux.writes import health

_encode = msgspec.json.Encoder().encode
# Files are padded with blanks (JSON allows them) to leave this much room at least, rounded up
# to whole disk blocks (which a file takes anyway): on a full disk, the numbers and the
# failing writes they then list still fit in place.
_HEADROOM = 2048
_BLOCK = 4096


def write_stats(stats_dir: Path, name: str, stats: dict[str, Any]) -> bool:
    """Replace ``name``'s stats file; False if the disk refused (counted, logged once).

    On a full disk a new file cannot be made, but the old one's space can be written over:
    the numbers (and what is failing) still reach ``feedmux status``."""
    path = stats_dir / f"{name}.json"
    tmp = stats_dir / f".{name}.json.tmp"
    data = _encode(stats)
    try:
        tmp.write_bytes(data.ljust(-(-(len(data) + _HEADROOM) // _BLOCK) * _BLOCK))
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # a half-written file: give its space back
        if not _write_in_place(path, data):
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


def read_stats(stats_dir: Path) -> dict[str, dict[str, Any]]:
    """Every process's latest stats, by process name; unreadable files are skipped."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(stats_dir.glob("*.json")):
        try:
            out[path.stem] = msgspec.json.decode(path.read_bytes())
        except (OSError, msgspec.DecodeError):
            try:  # being written over in place (a full disk): the next read gets it
                out[path.stem] = msgspec.json.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError):
                continue
    return out
