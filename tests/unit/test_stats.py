"""Stats files on a full disk: written over in place within their space, never cut short."""

from __future__ import annotations

from pathlib import Path

from feedmux.stats import read_stats, write_stats
from feedmux.writes import health


def no_new_files(stats_dir: Path, name: str) -> None:
    """The temporary file cannot be made, as on a full disk."""
    (stats_dir / f".{name}.json.tmp").mkdir()


def test_stats_that_outgrow_their_file_keep_the_old_numbers_rather_than_half_new_ones(
    tmp_path: Path,
) -> None:
    assert write_stats(tmp_path, "shard-0", {"stored": 1})
    no_new_files(tmp_path, "shard-0")
    room = (tmp_path / "shard-0.json").stat().st_size
    assert not write_stats(tmp_path, "shard-0", {"stored": 2, "note": "x" * room})
    assert health.failing("stats")  # counted and reported, not silent
    assert (tmp_path / "shard-0.json").stat().st_size == room  # not grown on a full disk
    assert read_stats(tmp_path)["shard-0"] == {"stored": 1}  # still valid JSON: still shown
    assert write_stats(tmp_path, "shard-0", {"stored": 3})  # what fits is written in place
    assert read_stats(tmp_path)["shard-0"] == {"stored": 3} and not health.failing("stats")


def test_a_stats_file_has_room_to_say_what_is_failing_once_the_disk_is_full(
    tmp_path: Path,
) -> None:
    assert write_stats(tmp_path, "receiver", {"ticks": 1, "failing_writes": []})
    no_new_files(tmp_path, "receiver")
    failing = [{"kind": kind, "reason": "disk full", "failures": 123_456, "failing": True,
                "error": f"cannot write {kind} {'/data/dir' * 8}: [Errno 28] No space left"}
               for kind in ("journal", "spill", "stats", "log", "universe")]  # fmt: skip
    assert write_stats(tmp_path, "receiver", {"ticks": 99_999_999, "failing_writes": failing})
    assert read_stats(tmp_path)["receiver"]["failing_writes"] == failing
