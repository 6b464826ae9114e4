from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedmux.errors import StoreError
from feedmux.ingest.journal import (
    BLOCK,
    EVENT,
    FRAME_BINARY,
    FRAME_TEXT,
    MAGIC,
    MAGIC_V1,
    OPCODE_TEXT,
    SENT,
    JournalWriter,
    Record,
    journal_codes,
    journal_files,
    journal_pushes,
    journal_vendor,
    read_journal,
    write_journal_file,
)
from feedmux.providers import provider
from feedmux.simulator.market import Market

TOKEN = "s3cret-token-value"
DAY_NS = 86_400 * 10**9
T0 = 1_763_000_000 * 10**9  # 2025-11-13 02:13 UTC = 10:13 in Shanghai


def test_frames_events_and_requests_read_back_in_order_with_the_token_redacted(
    tmp_path: Path,
) -> None:
    market = Market(["600519.SH", "000001.SZ"], seed=3)
    journal = JournalWriter(tmp_path, TOKEN)
    journal.event(T0, 0, "connect", url=f"wss://x/y?token={TOKEN}")
    journal.sent(T0 + 1, 0, b'{"cmd_id":22004,"data":{"symbol_list":[{"code":"600519.SH"}]}}')
    frames = [market.trade(code, 1_700_000_000_000) for code in ("600519.SH", "000001.SZ")]
    for i, frame in enumerate(frames):
        journal.message(T0 + 2 + i, 1, False, frame)
    journal.message(T0 + 9, 1, False, b'{"echo":"' + TOKEN.encode() + b'"}')
    journal.close()
    records = list(read_journal(tmp_path))
    assert [(r.kind, r.recv_ns, r.conn) for r in records] == [
        (EVENT, T0, 0), (SENT, T0 + 1, 0), (FRAME_TEXT, T0 + 2, 1), (FRAME_TEXT, T0 + 3, 1),
        (FRAME_TEXT, T0 + 9, 1),
    ]  # fmt: skip
    assert [r.payload for r in records[2:4]] == frames
    everything = b"".join(r.payload for r in records)  # as written, before compression
    assert TOKEN.encode() not in everything and b"token=***" in everything
    assert [(p.code, p.book) for p in journal_pushes(tmp_path)] == [
        ("600519.SH", False), ("000001.SZ", False)
    ]  # the reply-less echo frame is no push  # fmt: skip
    assert journal_codes(tmp_path) == ["000001.SZ", "600519.SH"]


def test_files_rotate_by_size_on_disk_and_by_trading_day_in_exchange_time(
    tmp_path: Path,
) -> None:
    noise = random.Random(1)  # incompressible: a block on disk is as large as its records
    journal = JournalWriter(tmp_path, TOKEN, max_bytes=1000, block_bytes=250)
    for i in range(30):  # 30 * (19 + 100) bytes in blocks of about 250: files of about 1000
        journal.message(T0 + i, 0, False, noise.randbytes(100))
    midnight_shanghai = (T0 // DAY_NS + 1) * DAY_NS - 8 * 3600 * 10**9
    journal.message(midnight_shanghai - 1, 0, False, b"before")
    journal.message(midnight_shanghai, 0, False, b"after")
    journal.close()
    days = sorted(p.name for p in tmp_path.iterdir())
    assert days == ["2025-11-13", "2025-11-14"]
    assert len(list((tmp_path / days[0]).iterdir())) >= 3 and journal.files >= 4
    sizes = [p.stat().st_size for p in journal_files(tmp_path)]
    assert all(size <= 1000 + 3 * 119 + 100 for size in sizes)  # max_bytes and one block
    assert journal.bytes == sum(sizes)  # bytes on disk
    payloads = [r.payload for r in read_journal(tmp_path)]
    assert payloads[-2:] == [b"before", b"after"] and len(payloads) == 32
    assert [r.payload for r in read_journal(tmp_path / days[1])] == [b"after"]


def test_a_record_cut_short_by_a_crash_ends_an_fmj1_file_quietly(tmp_path: Path) -> None:
    path = tmp_path / "old.fmj"
    write_journal_file(path, [Record(FRAME_TEXT, T0 + i, 0, b"frame %d" % i) for i in range(3)],
                       version=1)  # fmt: skip
    assert path.read_bytes()[:4] == MAGIC_V1
    path.write_bytes(path.read_bytes()[:-3])
    assert [r.payload for r in read_journal(tmp_path)] == [b"frame 0", b"frame 1"]


def _records(count: int, seed: int = 5) -> list[Record]:
    market = Market(["600519.SH", "000001.SZ", "300750.SZ"], seed=seed)
    codes = ["600519.SH", "000001.SZ", "300750.SZ"]
    return [Record(FRAME_TEXT, T0 + i, i % 3, market.trade(codes[i % 3], 1_763_000_000_000 + i))
            for i in range(count)]  # fmt: skip


def _blocks(data: bytes) -> list[tuple[int, int, int]]:
    """Where each block of an FMJ2 file starts and ends, and how many records it holds."""
    blocks, offset = [], len(MAGIC)
    while offset < len(data):
        packed, _raw, count, _crc, _head_crc = BLOCK.unpack_from(data, offset)
        end = offset + BLOCK.size + packed
        blocks.append((offset, end, count))
        offset = end
    return blocks


RECORDS = _records(300)


@pytest.fixture(scope="module")
def blocked(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """An FMJ2 file of RECORDS in blocks of about 4 KiB."""
    path = tmp_path_factory.mktemp("blocked") / "journal.fmj"
    assert write_journal_file(path, RECORDS, block_bytes=4096) == len(RECORDS)
    return path.read_bytes()


def test_records_round_trip_through_compressed_blocks(blocked: bytes, tmp_path: Path) -> None:
    assert blocked[:4] == MAGIC == b"FMJ2"
    blocks = _blocks(blocked)
    assert len(blocks) >= 4 and sum(count for *_, count in blocks) == len(RECORDS)
    assert blocks[-1][1] == len(blocked)
    path = tmp_path / "j.fmj"
    path.write_bytes(blocked)
    assert list(read_journal(path)) == RECORDS
    raw = sum(19 + len(r.payload) for r in RECORDS)
    assert len(blocked) * 4 < raw  # compressed


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=10**6))
def test_a_file_cut_anywhere_yields_every_complete_block_and_never_raises(
    blocked: bytes, tmp_path_factory: pytest.TempPathFactory, cut: int
) -> None:
    cut %= len(blocked) + 1
    path = tmp_path_factory.mktemp("cut") / "journal.fmj"
    path.write_bytes(blocked[:cut])
    whole = sum(count for _, end, count in _blocks(blocked) if end <= cut)
    assert list(read_journal(path)) == RECORDS[:whole]


@settings(max_examples=200, deadline=None)
@given(at=st.integers(min_value=0, max_value=10**6), flip=st.integers(min_value=1, max_value=255))
def test_a_damaged_byte_loses_its_block_only_and_never_raises(
    blocked: bytes, tmp_path_factory: pytest.TempPathFactory, at: int, flip: int
) -> None:
    at = len(MAGIC) + at % (len(blocked) - len(MAGIC))
    damaged = bytearray(blocked)
    damaged[at] ^= flip
    path = tmp_path_factory.mktemp("damaged") / "journal.fmj"
    path.write_bytes(damaged)
    blocks = _blocks(blocked)
    hit = next(i for i, (start, end, _) in enumerate(blocks) if start <= at < end)
    first = [sum(count for *_, count in blocks[:i]) for i in range(len(blocks) + 1)]
    read = list(read_journal(path))
    if at < blocks[hit][0] + BLOCK.size:  # a header: where the next block starts is unknown
        assert read == RECORDS[: first[hit]]
    else:  # the compressed bytes: that block is skipped, the others read
        assert read == RECORDS[: first[hit]] + RECORDS[first[hit + 1] :]


def test_a_damaged_block_is_skipped_with_a_warning_naming_the_file(
    blocked: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start, end, count = _blocks(blocked)[1]
    damaged = bytearray(blocked)
    damaged[end - 10] ^= 0xFF
    path = tmp_path / "journal.fmj"
    path.write_bytes(damaged)
    with caplog.at_level(logging.WARNING):
        read = list(read_journal(path))
    assert len(read) == len(RECORDS) - count
    assert str(path) in caplog.text and f"byte {start}" in caplog.text


def test_old_and_new_journals_read_together_in_time_order(tmp_path: Path) -> None:
    old, new = RECORDS[:100], RECORDS[100:]
    write_journal_file(tmp_path / "2025-11-13" / f"journal-{T0:020d}.fmj", old, version=1)
    write_journal_file(tmp_path / "2025-11-13" / f"journal-{T0 + 100:020d}.fmj", new)
    assert list(read_journal(tmp_path)) == RECORDS
    assert journal_codes(tmp_path) == ["000001.SZ", "300750.SZ", "600519.SH"]
    assert len(list(journal_pushes(tmp_path))) == len(RECORDS)


def test_a_file_a_crash_left_empty_reads_as_no_records(tmp_path: Path) -> None:
    (tmp_path / "journal-1.fmj").write_bytes(b"")  # opened, nothing written yet
    (tmp_path / "journal-2.fmj").write_bytes(MAGIC[:2])
    write_journal_file(tmp_path / "journal-3.fmj", RECORDS[:5])
    assert list(read_journal(tmp_path)) == RECORDS[:5]


def test_records_wait_in_a_block_until_flush_every_ns_passes(tmp_path: Path) -> None:
    journal = JournalWriter(tmp_path, TOKEN, flush_every_ns=100)
    journal.flush(T0)
    journal.messages(T0 + 1, 0, [(1, b"one"), (1, b"two")])
    journal.message(T0 + 50, 0, False, b"three")
    [path] = journal_files(tmp_path)
    assert journal.records == 3 and path.stat().st_size == 0 and journal.bytes == 0
    journal.messages(T0 + 100, 0, [(1, b"four")])  # due: the block is written
    assert [r.payload for r in read_journal(path)] == [b"one", b"two", b"three", b"four"]
    assert len(_blocks(path.read_bytes())) == 1 and journal.bytes == path.stat().st_size
    journal.message(T0 + 101, 0, False, b"five")
    journal.flush(T0 + 150)  # the receiver's stats turn: due or not, the block goes
    assert [r.payload for r in read_journal(path)][-1] == b"five"
    assert len(_blocks(path.read_bytes())) == 2
    journal.close()


def test_a_block_is_written_once_its_records_reach_block_bytes(tmp_path: Path) -> None:
    journal = JournalWriter(tmp_path, TOKEN, block_bytes=1000)
    journal.flush(T0)
    for i in range(20):  # 20 * (19 + 100): two blocks of 1000 or more, 3 records left
        journal.messages(T0 + i, 0, [(1, b"%03d" % i + b"x" * 97)])
    [path] = journal_files(tmp_path)
    assert [count for *_, count in _blocks(path.read_bytes())] == [9, 9]
    journal.close()
    assert [count for *_, count in _blocks(path.read_bytes())] == [9, 9, 2]
    assert journal.records == 20 and journal.bytes == path.stat().st_size


def test_no_journal_writes_nothing_and_a_foreign_file_is_an_error(tmp_path: Path) -> None:
    journal = JournalWriter(tmp_path / "j", TOKEN, enabled=False)
    journal.message(T0, 0, False, b"x")
    journal.close()
    assert not (tmp_path / "j").exists()
    (tmp_path / "bogus.fmj").write_bytes(b"nope")
    with pytest.raises(StoreError, match="not a feedmux journal"):
        list(read_journal(tmp_path / "bogus.fmj"))
    with pytest.raises(StoreError, match="no journal files"):
        journal_files(tmp_path / "j")


def test_a_failing_disk_stops_the_journal_not_the_caller(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the journal directory should be")
    journal = JournalWriter(blocker, TOKEN)
    journal.message(T0, 0, False, b"x")  # cannot create the directory: no exception
    journal.message(T0 + 1, 0, False, b"y")
    assert "cannot open journal" in journal.error and journal.records == 0
    assert journal.lost == 2  # counted, not silently missing


def test_a_journal_that_failed_writes_again_once_the_disk_takes_writes(tmp_path: Path) -> None:
    blocker = tmp_path / "j"
    blocker.write_text("in the way, like a full disk")
    journal = JournalWriter(blocker, TOKEN, retry_every_ns=10)
    journal.message(T0, 0, False, b"lost")
    journal.messages(T0 + 1, 0, [(1, b"lost too")])
    blocker.unlink()
    journal.message(T0 + 5, 0, False, b"too soon: not retried yet")
    journal.messages(T0 + 20, 0, [(1, b"kept")])
    journal.close()
    assert journal.error == "" and journal.lost == 3
    assert [r.payload for r in read_journal(blocker)] == [b"kept"]


def test_a_socket_read_is_journaled_as_one_write_with_the_same_records(tmp_path: Path) -> None:
    journal = JournalWriter(tmp_path, TOKEN)
    read = [(1, b"trade one"), (9, b"ping"), (2, b"\x00binary"), (1, b"trade two")]
    journal.messages(T0, 3, read)
    journal.messages(T0 + 1, 3, [(1, b'{"leak":"' + TOKEN.encode() + b'"}')])  # redacted path
    journal.close()
    records = [(r.kind, r.recv_ns, r.conn, r.payload) for r in read_journal(tmp_path)]
    assert records == [
        (FRAME_TEXT, T0, 3, b"trade one"), (FRAME_BINARY, T0, 3, b"\x00binary"),
        (FRAME_TEXT, T0, 3, b"trade two"), (FRAME_TEXT, T0 + 1, 3, b'{"leak":"***"}'),
    ]  # fmt: skip
    assert journal.records == 4


def full_disk_at(root: Path, first_recv_ns: int) -> Path:
    """Where the journal's next file goes, linked to /dev/full: opens fine, flushes fail."""
    path = root / "2025-11-13" / f"journal-{first_recv_ns:020d}.fmj"
    path.parent.mkdir(parents=True)
    path.symlink_to("/dev/full")
    return path


def test_records_buffered_when_a_flush_fails_count_as_lost_not_journaled(
    tmp_path: Path,
) -> None:
    full_disk_at(tmp_path, T0)
    journal = JournalWriter(tmp_path, TOKEN, flush_every_ns=100, retry_every_ns=1000)
    journal.messages(T0, 0, [(1, b"one"), (2, b"two")])  # buffered, flushed: the flush fails
    assert "No space left" in journal.error
    journal.message(T0 + 1, 0, False, b"paused")
    assert journal.records == 0 and journal.lost == 3
    journal.message(T0 + 2000, 0, False, b"kept")  # a new file, on a disk with room
    journal.close()
    assert journal.error == "" and journal.records == 1 and journal.lost == 3
    assert [r.payload for r in read_journal(tmp_path)] == [b"kept"]


def test_a_failed_flush_loses_every_record_gathered_since_the_last_one(tmp_path: Path) -> None:
    full_disk_at(tmp_path, T0 + 1)
    journal = JournalWriter(tmp_path, TOKEN, flush_every_ns=10**9)
    journal.flush(T0)  # the receiver's once-a-second flush (nothing to flush yet)
    for i in range(4):
        journal.message(T0 + 1 + i, 0, False, b"buffered")  # within the flush interval
    journal.flush(T0 + 10**9)  # the next one fails: all four are lost
    assert journal.error and journal.records == 0 and journal.lost == 4


def test_written_blocks_stay_journaled_when_a_later_block_cannot_be_written(
    tmp_path: Path,
) -> None:
    full_disk_at(tmp_path, T0 + 4)  # the second file
    journal = JournalWriter(tmp_path, TOKEN, max_bytes=1)  # a new file after every block
    journal.flush(T0)
    journal.message(T0 + 1, 0, False, b"kept one")
    journal.messages(T0 + 2, 0, [(1, b"kept two")])
    journal.flush(T0 + 3)  # a block in the first file
    written = journal.bytes
    journal.message(T0 + 4, 0, False, b"lost one")  # a new file's first block: written at once
    assert "No space left" in journal.error
    journal.messages(T0 + 5, 0, [(1, b"lost two")])  # paused
    assert journal.records == 2 and journal.lost == 2 and journal.bytes == written
    journal.close()
    assert [r.payload for r in read_journal(tmp_path)] == [b"kept one", b"kept two"]
    assert sum(p.stat().st_size for p in journal_files(tmp_path)) == written


def test_a_short_token_is_redacted_where_it_stands_alone_never_inside_market_data(
    tmp_path: Path,
) -> None:
    journal = JournalWriter(tmp_path, "1234")
    trade = b'{"cmd_id":22998,"data":{"code":"301234.SZ","seq":"438123417001","price":"12340.00"}}'
    journal.message(T0, 1, False, trade)
    journal.messages(T0 + 1, 1, [(1, trade)])  # one socket read: the fast path
    journal.message(T0 + 2, 1, False, b'{"ret":401,"msg":"token 1234 invalid"}')
    journal.event(T0 + 3, 0, "connect", url="ws://x/quote-stock-b-ws-api?token=1234")
    journal.close()
    records = list(read_journal(tmp_path))
    assert [r.payload for r in records[:2]] == [trade, trade]  # replayable as received
    assert records[2].payload == b'{"ret":401,"msg":"token *** invalid"}'
    assert b"1234" not in records[3].payload and b"quote-stock-b-ws-api" in records[3].payload


def test_a_journals_codes_are_those_it_subscribed_not_only_those_that_ticked(
    tmp_path: Path,
) -> None:
    journal = JournalWriter(tmp_path, TOKEN)
    journal.sent(T0, 0, b'{"cmd_id":22004,"seq_id":1,"trace":"t","data":{"symbol_list":'
                        b'[{"code":"600519.SH"},{"code":"000001.SZ"}]}}')  # fmt: skip
    journal.message(T0 + 1, 0, False, Market(["600519.SH"], seed=3).trade("600519.SH", 1))
    journal.close()  # 000001.SZ never ticked: a replay must still list it, or refuse it
    assert journal_codes(tmp_path) == ["000001.SZ", "600519.SH"]


def test_a_journal_knows_its_vendor_and_splits_its_messages_into_pushes(tmp_path: Path) -> None:
    polygon = provider("polygon")
    market = Market(["AAPL.US", "BRK.B.US"], vendor=polygon)
    pushes = [market.trade(code, 1_780_000_000_000) for code in ("AAPL.US", "BRK.B.US") * 3]
    journal = JournalWriter(tmp_path, "k1, k2")
    journal.event(T0, 0, "connect", url="ws://x/stocks", provider="polygon")
    journal.messages(T0, 0, [(OPCODE_TEXT, m) for m in polygon.pack(pushes)])  # one message
    journal.close()
    assert journal_vendor(tmp_path) == "polygon"
    served = list(journal_pushes(tmp_path, polygon))
    assert [p.payload for p in served] == pushes  # each push alone, as its server packs again
    assert [p.code for p in served] == ["AAPL.US", "BRK.B.US"] * 3
    assert journal_codes(tmp_path, polygon) == ["AAPL.US", "BRK.B.US"]
    assert list(journal_pushes(tmp_path)) == []  # read as another vendor's: nothing
