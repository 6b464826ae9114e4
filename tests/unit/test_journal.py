from __future__ import annotations

from pathlib import Path

import pytest

from feedmux.errors import StoreError
from feedmux.ingest.journal import (
    EVENT,
    FRAME_BINARY,
    FRAME_TEXT,
    OPCODE_TEXT,
    SENT,
    JournalWriter,
    journal_codes,
    journal_files,
    journal_pushes,
    journal_vendor,
    read_journal,
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
    everything = b"".join(p.read_bytes() for p in journal_files(tmp_path))
    assert TOKEN.encode() not in everything and b"token=***" in everything
    assert [(p.code, p.book) for p in journal_pushes(tmp_path)] == [
        ("600519.SH", False), ("000001.SZ", False)
    ]  # the reply-less echo frame is no push  # fmt: skip
    assert journal_codes(tmp_path) == ["000001.SZ", "600519.SH"]


def test_files_rotate_by_size_and_by_trading_day_in_exchange_time(tmp_path: Path) -> None:
    journal = JournalWriter(tmp_path, TOKEN, max_bytes=1000)
    for i in range(30):  # 30 * (19 + 100) bytes: several files of about 1000 bytes
        journal.message(T0 + i, 0, False, b"x" * 100)
    midnight_shanghai = (T0 // DAY_NS + 1) * DAY_NS - 8 * 3600 * 10**9
    journal.message(midnight_shanghai - 1, 0, False, b"before")
    journal.message(midnight_shanghai, 0, False, b"after")
    journal.close()
    days = sorted(p.name for p in tmp_path.iterdir())
    assert days == ["2025-11-13", "2025-11-14"]
    assert len(list((tmp_path / days[0]).iterdir())) >= 4 and journal.files >= 5
    assert all(p.stat().st_size <= 1000 + 119 for p in journal_files(tmp_path))
    payloads = [r.payload for r in read_journal(tmp_path)]
    assert payloads[-2:] == [b"before", b"after"] and len(payloads) == 32
    assert [r.payload for r in read_journal(tmp_path / days[1])] == [b"after"]


def test_a_record_cut_short_by_a_crash_ends_the_file_quietly(tmp_path: Path) -> None:
    journal = JournalWriter(tmp_path, TOKEN)
    for i in range(3):
        journal.message(T0 + i, 0, False, b"frame %d" % i)
    journal.close()
    [path] = journal_files(tmp_path)
    path.write_bytes(path.read_bytes()[:-3])
    assert [r.payload for r in read_journal(tmp_path)] == [b"frame 0", b"frame 1"]


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
