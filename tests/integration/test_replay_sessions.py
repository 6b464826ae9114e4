"""`feedmux replay --sessions`, end to end with a real WebSocket client: the end of a compressed
A-share day (14:54-15:30 in about 6 s), its trades checked by their exchange time phase by
phase against what the server says it sent."""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import websocket

from feedmux.model import Tick
from feedmux.providers.alltick.protocol import AllTickClient, HeartbeatReply, parse
from tests.conftest import scaled
from tests.integration.helpers import TOKEN, replay_report, sent_ticks, start_replay, stop

pytestmark = pytest.mark.integration
CODES = ["600519.SH", "000001.SZ", "688981.SH", "300750.SZ", "920118.BJ"]
LATE_BOARDS = {"688981.SH", "300750.SZ", "920118.BJ"}  # STAR, ChiNext, BJ
MUTED = "000001.SZ"
SHANGHAI = ZoneInfo("Asia/Shanghai")
HEARTBEAT_EVERY_S = 2.0


def clock(tick: Tick) -> str:
    """The tick's exchange time, HH:MM:SS.mmm in Shanghai."""
    return dt.datetime.fromtimestamp(tick.time_ns / 1e9, SHANGHAI).strftime("%H:%M:%S.%f")[:-3]


def read_day(url: str, report: Path, deadline_s: float) -> tuple[list[Tick], int, int]:
    """Subscribe to CODES and read until the server's feed is done and everything it sent
    arrived: the trades, and the heartbeats sent and answered (the server answers them
    whatever the market's phase)."""
    client = AllTickClient("sessions-test")
    ws = websocket.create_connection(f"{url}?token={TOKEN}", timeout=scaled(10))
    ws.settimeout(0.2)
    ws.send(client.subscribe_trades(CODES))
    ticks: list[Tick] = []
    heartbeats = answered = 0
    next_heartbeat = time.monotonic() + HEARTBEAT_EVERY_S
    deadline = time.monotonic() + scaled(deadline_s)
    try:
        while time.monotonic() < deadline:
            if time.monotonic() >= next_heartbeat:
                ws.send(client.heartbeat())
                heartbeats += 1
                next_heartbeat += HEARTBEAT_EVERY_S
            try:
                message = ws.recv()
            except websocket.WebSocketTimeoutException:
                status = replay_report(report)
                if status.feed == "done" and len(ticks) >= status.ticks_sent:
                    break
                continue
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                break  # the server is gone: what it sent before has arrived
            if not message:  # its close frame
                break
            payload = message.encode() if isinstance(message, str) else message
            if isinstance(parse(payload, 1 << 20), HeartbeatReply):
                answered += 1
            item = client.receive(payload, time.time_ns())
            if isinstance(item, Tick):
                ticks.append(item)
    finally:
        ws.close(timeout=1)
        ws.shutdown()  # type: ignore[no-untyped-call]  # close() skips it after the server's
    return ticks, heartbeats, answered


def test_a_compressed_day_end_follows_the_sessions_phase_by_phase(tmp_path: Path) -> None:
    replay, report, url = start_replay(
        tmp_path, "--codes", ",".join(CODES), "--sessions", "--session-date", "2026-12-03",
        "--day-minutes", "1", "--session-start", "14:54", "--rate", "40",
        "--mute", f"{MUTED}@14:55", "--exit-when-done",
    )  # fmt: skip
    try:
        ticks, heartbeats, answered = read_day(url, report, 60)
        assert replay.wait(scaled(30)) == 0  # --exit-when-done: the day is over
    finally:
        code, output = stop(replay)
    assert code == 0, output
    sent = sent_ticks(tmp_path / "sent.log")
    key = [(t.code, t.seq, t.time_ns, t.price) for t in sent]
    assert [(t.code, t.seq, t.time_ns, t.price) for t in ticks] == key  # all of it, in order
    by_code: dict[str, list[Tick]] = defaultdict(list)
    for tick in ticks:
        by_code[tick.code].append(tick)
    for name, mine in by_code.items():  # each code's seq and time grow together
        assert [t.seq for t in mine] == sorted({t.seq for t in mine}), name
        assert [t.time_ns for t in mine] == sorted(t.time_ns for t in mine), name

    times = [(clock(t), t.code) for t in ticks]
    continuous = [(c, code) for c, code in times if c < "14:57"]
    # Every code trades in every continuous minute (the muted one until its mute).
    minutes = {(c[:5], code) for c, code in continuous}
    expected = {(m, code) for m in ("14:54", "14:55", "14:56") for code in CODES}
    assert minutes == expected - {("14:55", MUTED), ("14:56", MUTED)}
    assert not [c for c, _ in times if "14:57" <= c < "15:00"]  # the closing call is silent
    match = sorted(code for c, code in times if c == "15:00:00.000")
    assert match == sorted(set(CODES) - {MUTED})  # the closing match: once each, at 15:00
    assert not [c for c, _ in times if "15:00:00.000" < c < "15:05"]
    late = [(c, code) for c, code in times if c >= "15:05"]
    assert {code for _, code in late} == LATE_BOARDS
    assert sorted(code for c, code in late if c == "15:05:00.000") == sorted(LATE_BOARDS)
    assert max(c for c, _ in times) < "15:30"
    assert not [c for c, code in times if code == MUTED and c >= "14:55"]

    status = replay_report(report)
    assert status.feed == "done" and status.violations == []
    assert status.ticks_sent == len(sent)
    assert status.sessions is not None
    assert status.sessions.date == "2026-12-03"
    assert status.sessions.factor == pytest.approx(380.0)
    assert status.sessions.now_ns == status.sessions.end_ns
    assert status.sessions.sent["closing_auction"] == len(CODES) - 1
    assert sum(status.sessions.sent.values()) == len(sent)
    assert status.sessions.muted[MUTED] >= 3  # 14:55, 14:56 and the match at least
    assert heartbeats >= 2 and answered == heartbeats


@pytest.mark.slow
def test_two_days_play_back_to_back_each_numbered_anew(tmp_path: Path) -> None:
    """Day 1 from 14:56 then the whole of day 2 (Friday after Thursday) at 1,900x: about 14 s."""
    replay, report, url = start_replay(
        tmp_path, "--codes", ",".join(CODES), "--sessions", "--session-date", "2026-12-03",
        "--session-days", "2", "--day-minutes", "0.2", "--session-start", "14:56",
        "--rate", "40", "--exit-when-done",
    )  # fmt: skip
    try:
        ticks, _, _ = read_day(url, report, 90)
        assert replay.wait(scaled(30)) == 0
    finally:
        code, output = stop(replay)
    assert code == 0, output
    sent = sent_ticks(tmp_path / "sent.log")
    assert [(t.code, t.seq, t.time_ns) for t in ticks] == [(t.code, t.seq, t.time_ns) for t in sent]
    days: dict[str, list[Tick]] = defaultdict(list)
    for tick in ticks:
        days[dt.datetime.fromtimestamp(tick.time_ns / 1e9, SHANGHAI).date().isoformat()].append(
            tick)  # fmt: skip
    assert sorted(days) == ["2026-12-03", "2026-12-04"]
    one, two = days["2026-12-03"], days["2026-12-04"]
    assert min(clock(t) for t in one) >= "14:56" and max(clock(t) for t in one) < "15:30"
    assert min(clock(t) for t in two) == "09:25:00.000"  # day 2 from its opening auction
    assert sum(1 for t in two if clock(t).startswith("09:25:00")) == len(CODES)
    assert {clock(t)[:5] for t in two if t.code == CODES[0]} >= {"09:30", "11:29", "13:00",
                                                                  "14:56"}  # fmt: skip
    for name in CODES:  # each day numbered from the same first seq; growing within it
        seqs = [[t.seq for t in day if t.code == name] for day in (one, two)]
        assert seqs[0][0] == seqs[1][0], name
        assert all(s == sorted(set(s)) for s in seqs), name
    status = replay_report(report)
    assert status.sessions is not None
    assert status.sessions.dates == ["2026-12-03", "2026-12-04"]
    assert status.sessions.day_index == 1 and status.sessions.date == "2026-12-04"
    assert status.sessions.sent_by_day == {"2026-12-03": len(one), "2026-12-04": len(two)}
    assert status.ticks_sent == len(ticks)
