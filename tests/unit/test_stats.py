"""Stats files: typed, read back tolerantly, and on a full disk written over in place within
their space, never cut short."""

from __future__ import annotations

from pathlib import Path

import msgspec

from feedmux.stats import RunStats, read_stats, write_stats
from feedmux.stats.shard import NatsStats, RedisStats
from feedmux.writes import WriteFailure, health
from tests.stats_samples import connection_stats, receiver_stats, shard_stats, store_stats


def no_new_files(stats_dir: Path, name: str) -> None:
    """The temporary file cannot be made, as on a full disk."""
    (stats_dir / f".{name}.json.tmp").mkdir()


def test_stats_that_outgrow_their_file_keep_the_old_numbers_rather_than_half_new_ones(
    tmp_path: Path,
) -> None:
    assert write_stats(tmp_path, shard_stats(0, stored=1))
    no_new_files(tmp_path, "shard-0")
    room = (tmp_path / "shard-0.json").stat().st_size
    codes = [f"{i:06}.SZ" for i in range(room // 10)]  # more than the file has room for
    assert not write_stats(
        tmp_path, shard_stats(0, stored=2, stores={c: store_stats() for c in codes})
    )
    assert health.failing("stats")  # counted and reported, not silent
    assert (tmp_path / "shard-0.json").stat().st_size == room  # not grown on a full disk
    assert read_stats(tmp_path).shards[0].stored == 1  # still valid JSON: still shown
    assert write_stats(tmp_path, shard_stats(0, stored=3))  # what fits is written in place
    assert read_stats(tmp_path).shards[0].stored == 3 and not health.failing("stats")


def test_a_stats_file_has_room_to_say_what_is_failing_once_the_disk_is_full(
    tmp_path: Path,
) -> None:
    assert write_stats(tmp_path, receiver_stats(ticks=1))
    no_new_files(tmp_path, "receiver")
    failing = [WriteFailure(kind=kind, reason="disk full", failures=123_456, failing=True,
                            error=f"cannot write {kind} {'/data/dir' * 8}: [Errno 28] No space")
               for kind in ("journal", "spill", "stats", "log", "universe")]  # fmt: skip
    assert write_stats(tmp_path, receiver_stats(ticks=99_999_999, failing_writes=failing))
    stats = read_stats(tmp_path).receiver
    assert stats is not None and stats.failing_writes == failing


def test_stats_are_read_back_with_their_type_and_a_newer_writers_fields_are_ignored(
    tmp_path: Path,
) -> None:
    write_stats(tmp_path, receiver_stats(ticks=7))
    write_stats(tmp_path, shard_stats(1, stored=5))
    newer = msgspec.json.decode((tmp_path / "shard-1.json").read_bytes())
    (tmp_path / "shard-1.json").write_bytes(msgspec.json.encode({**newer, "new_counter": 3}))
    stats = read_stats(tmp_path)
    assert stats.receiver == receiver_stats(ticks=7)
    assert stats.shards == {1: shard_stats(1, stored=5)} and stats.unreadable == {}
    assert [s.name for s in stats.processes()] == ["receiver", "shard-1"]


def test_a_stats_file_that_does_not_decode_is_skipped_and_says_why(tmp_path: Path) -> None:
    write_stats(tmp_path, shard_stats(0, stored=5))
    older = msgspec.json.decode((tmp_path / "shard-0.json").read_bytes())
    del older["stored"]
    (tmp_path / "shard-0.json").write_bytes(msgspec.json.encode(older))
    (tmp_path / "shard-1.json").write_bytes(b'{"role": "shard", "shard"')  # cut short
    write_stats(tmp_path, shard_stats(2))
    (tmp_path / "shard-2.json").rename(tmp_path / "receiver.json")
    stats = read_stats(tmp_path)
    assert stats.receiver is None and stats.shards == {}
    assert "missing required field `stored`" in stats.unreadable["shard-0.json"]
    assert "truncated" in stats.unreadable["shard-1.json"]
    assert "a shard-2's stats" in stats.unreadable["receiver.json"]
    assert read_stats(tmp_path / "nothing") == RunStats()


def test_a_restarted_shard_carries_its_earlier_totals_on() -> None:
    before = shard_stats(0, received=100, stored=90, books_stored=4, restarts=1, batches=9)
    now = shard_stats(0, received=10, stored=8, books_stored=1, batches=2)
    carried = now.carry(before)
    assert (carried.received, carried.stored, carried.books_stored) == (110, 98, 5)
    assert carried.restarts == 2 and carried.batches == 2  # batches: since this start
    assert now.carry(None) == now


def test_a_restarted_shard_carries_its_relay_totals_on() -> None:
    before = shard_stats(0, redis=RedisStats(published=50, backlog=3, failures=2),
                         nats=NatsStats(published=40, duplicates=1, backlog=9, failures=4,
                                        last_ack_ns=7))  # fmt: skip
    now = shard_stats(0, redis=RedisStats(published=5, backlog=1, failures=0),
                      nats=NatsStats(published=30, duplicates=10, backlog=2, failures=0,
                                     last_ack_ns=0))  # fmt: skip
    carried = now.carry(before)
    assert carried.redis == RedisStats(published=55, backlog=1, failures=2)
    assert carried.nats == NatsStats(published=70, duplicates=11, backlog=2, failures=4,
                                     last_ack_ns=7)  # fmt: skip
    assert shard_stats(0).carry(before).nats is None  # a restart without the lane has none


def test_renamed_fields_keep_their_json_names_so_a_running_older_instance_is_still_read(
    tmp_path: Path,
) -> None:
    link = connection_stats(messages=7, last_message_age_s=0.5, bad_messages={"json": 2})
    assert write_stats(tmp_path, receiver_stats(bad_feedback=3, connections=[link]))
    raw = (tmp_path / "receiver.json").read_bytes()
    for old_name in (b'"bad_reports":3', b'"frames":7', b'"last_frame_age_s":0.5',
                     b'"bad_frames":{"json":2}'):  # fmt: skip
        assert old_name in raw
    stats = read_stats(tmp_path).receiver
    assert stats is not None and stats.bad_feedback == 3 and stats.connections == [link]
