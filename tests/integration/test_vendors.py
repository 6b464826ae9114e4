"""Every vendor beyond the default one, end to end against its own replay simulator, from the
CLI in subprocesses: the pipeline test (every tick sent stored once, a Subscriber sees every
tick, snapshots equal the last ticks, zero violations), the fault tests and a journal served
again."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from feedmux import SnapshotClient, StreamReader, Subscriber, read_bars, read_ticks
from feedmux.model import Depth, Tick
from feedmux.providers import DEFAULT_VENDOR, VENDORS, provider
from feedmux.providers.base import Peek, Provider, SessionOptions
from feedmux.routing import shard_of
from feedmux.transports.frames import OPCODE_TEXT
from tests.conftest import scaled, wait_for
from tests.integration.helpers import (
    TOKEN,
    end_feed,
    feedmux,
    receiver_in,
    replay_report,
    shards_in,
    start_replay,
    stop,
    stop_at_full_load,
)
from tests.services import postgres_schema, redis_prefix

pytestmark = pytest.mark.integration
OTHERS = [name for name in VENDORS if name != DEFAULT_VENDOR]
# Quicker pacing on both sides, within the vendor's rules as the simulator checks them.
QUICK = ["--cross-interval-ms", "300", "--request-interval-ms", "300"]
QUICK_REPLAY = ["--cross-interval-ms", "250", "--request-interval-ms", "250"]


def _universe(vendor: Provider, every: int = 1) -> list[str]:
    """The vendor's synthetic market, the codes it carries, every ``every``-th (and the first
    few, which include the codes a garbage push names and dotted US tickers)."""
    carried = [c for c in vendor.replay_universe(7) if vendor.cannot_carry(c) is None]
    return sorted({*carried[::every], *carried[:5]})


def _tokens(vendor: Provider, codes: list[str]) -> str:
    """As many tokens as the plan needs for ``codes``."""
    count = math.ceil(len(codes) / (vendor.max_codes_per_conn * vendor.max_conns))
    return ",".join(f"{TOKEN}-{i}" for i in range(max(1, count)))


def sent_by(vendor: Provider, path: Path, codes: list[str]) -> tuple[list[Tick], list[Depth]]:
    """Every trade and book the server sent (its ``--sent-messages``), read through a session
    of the vendor's as feedmux reads them, then decoded as a shard decodes them."""
    options = SessionOptions(max_frame_bytes=vendor.max_frame_bytes,
                             codes_per_request=vendor.codes_per_request,
                             subscribe_model=vendor.subscribe_model)  # fmt: skip
    session = vendor.session("checker", options)
    session.subscribe("trades", codes, 0)
    session.subscribe("books", codes, 1)
    routed: list[bytes] = []

    def route(key: Peek, payload: bytes, recv_ns: int) -> None:
        routed.append(payload)

    for line in path.read_bytes().splitlines():
        messages = [(OPCODE_TEXT, m) for m in vendor.pack([line])]
        session.receive_read(messages, 0, route)
    items = [vendor.decode(payload, 0) for payload in routed]
    assert all(isinstance(i, Tick | Depth) for i in items), session.bad_messages
    return [i for i in items if isinstance(i, Tick)], [i for i in items if isinstance(i, Depth)]


def _market(tmp_path: Path, name: str, every: int = 1) -> tuple[Provider, list[str], str, Path]:
    """The vendor, its codes (every ``every``-th), enough tokens for them, and a symbols file
    listing them."""
    vendor = provider(name)
    codes = _universe(vendor, every)
    symbols = tmp_path / "symbols.txt"
    symbols.write_text("\n".join(codes) + "\n")
    return vendor, codes, _tokens(vendor, codes), symbols


def _keys(ticks: list[Tick]) -> Counter[tuple[str, int]]:
    return Counter((t.code, t.seq) for t in ticks)


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_a_full_market_through_8_shards_loses_nothing(tmp_path: Path, name: str) -> None:
    vendor, codes, tokens, symbols = _market(tmp_path, name)
    replay, report, url = start_replay(
        tmp_path, "--provider", name, "--symbols-file", str(symbols), "--rate", "3000",
        "--duration", "3", "--burst", "--warmup", str(scaled(4)), *QUICK_REPLAY, token=tokens,
    )  # fmt: skip
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    subscriber = Subscriber(run_dir=run_dir, shards=8)
    run = feedmux("run", "--provider", name, "--url", url, "--symbols-file", str(symbols),
                  "--shards", "8", "--data-dir", str(data_dir), "--run-dir", str(run_dir),
                  *QUICK, token=tokens)  # fmt: skip
    seen: list[Tick] = []
    try:
        assert subscriber.wait_ready(scaled(30)), "not every shard's heartbeat reached us"
        wait_for(lambda: replay_report(report).feed == "done", 120, "the feed to end")
        sent, _ = sent_by(vendor, tmp_path / "sent.log", codes)
        deadline = time.monotonic() + scaled(60)
        while len(seen) < len(sent) and time.monotonic() < deadline:
            tick = subscriber.recv(timeout=0.5)
            if tick is not None:
                seen.append(tick)
        status = replay_report(report)
        assert status.subscribed == sorted(codes)
        assert len(sent) == status.ticks_sent > len(codes)  # the burst, then the stream
        assert _keys(seen) == _keys(sent)  # every tick, once, to a subscriber from the start
        assert subscriber.gaps == 0
        last = {t.code: t for t in sent}
        for reply in SnapshotClient(run_dir).replies():
            shard = {c for c in last if shard_of(c, 8) == reply.shard}
            assert {t.code for t in reply.ticks} == shard
            for tick in reply.ticks:
                assert (tick.seq, tick.price) == (last[tick.code].seq, last[tick.code].price)
        assert status.violations == []
    finally:
        subscriber.close()
        code, output = stop(run)
        _, replay_output = stop(replay)
    assert code == 0, output
    assert "stopped cleanly" in output
    stored = read_ticks(data_dir)
    assert Counter(zip(stored["code"], stored["seq"], strict=True)) == _keys(sent)
    assert set(stored["code"]) == set(codes)  # dotted tickers (BRK.B.US) round-trip too
    for secret in tokens.split(","):
        assert secret not in output and secret not in replay_output


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_faults_reconnect_within_the_rules_and_lose_nothing(tmp_path: Path, name: str) -> None:
    """A stall (the watchdog trips), an abrupt drop, a clean close, garbage among the pushes,
    each code's latest trade sent again on every (re)subscription and, where the vendor
    numbers its trades, duplicates: each is counted, no rule of the vendor's is broken, and
    every trade is stored once. (iTick numbers nothing: a trade sent twice on one connection
    is two trades to feedmux, so it gets no duplicates; its re-sends after a reconnect are
    what must not be stored twice.)"""
    vendor, codes, tokens, symbols = _market(tmp_path, name, 12)
    # A stall the 3 s watchdog trips on, then each fault well after the reconnect of the one
    # before (the vendor's reconnect spacing, doubled by the backoff, and a second).
    gap = 2 * vendor.pacing.reconnect_spacing_ns / 1e9 + 1
    drop = 7 + gap
    faults = ["--stall-after", "1", "--stall-for", "6", "--drop-after", f"{drop:g}",
              "--close-after", f"{drop + gap:g}", "--garbage-every", "40",
              "--resend-on-subscribe"]  # fmt: skip
    numbered = name != "itick"
    if numbered:
        faults += ["--duplicate-every", "25"]
    replay, report, url = start_replay(tmp_path, "--provider", name, "--rate", "800",
                                       "--symbols-file", str(symbols), *faults, *QUICK_REPLAY,
                                       token=tokens)  # fmt: skip
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    run = feedmux("run", "--provider", name, "--url", url, "--symbols-file", str(symbols),
                  "--shards", "2", "--data-dir", str(data_dir), "--run-dir", str(run_dir),
                  "--watchdog", "3", *QUICK, token=tokens)  # fmt: skip
    try:
        wait_for(lambda: sum(c.reconnects for c in receiver_in(run_dir).connections) >= 3, 90,
                 "the stall, the drop and the close to be over")  # fmt: skip
        sent_before = replay_report(report).ticks_sent
        wait_for(lambda: replay_report(report).ticks_sent > sent_before + 1000, 60,
                 "the feed to flow again")  # fmt: skip
        end_feed(replay, report)
        sent, _ = sent_by(vendor, tmp_path / "sent.log", codes)
        wait_for(lambda: sum(s.stored for s in shards_in(run_dir)) >= len(sent), 30,
                 "every trade sent to be stored")  # fmt: skip
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    final = replay_report(report)
    assert final.violations == []
    receiver = receiver_in(run_dir)
    assert sum(c.watchdog_trips for c in receiver.connections) >= 1
    bad = sum(sum(c.bad_messages.values()) for c in receiver.connections)
    bad += sum(sum(s.bad_pushes.values()) for s in shards_in(run_dir))
    assert bad == final.garbage_sent > 10
    dropped = sum(s.resent_dropped for s in shards_in(run_dir))
    assert final.resent > 100  # three resubscriptions: after the stall, the drop, the close
    assert dropped > final.resent if numbered else dropped == final.resent
    stored = read_ticks(data_dir)
    assert Counter(zip(stored["code"], stored["seq"], strict=True)) == _keys(sent)


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_sigterm_under_a_burst_stores_every_received_tick(tmp_path: Path, name: str) -> None:
    vendor, codes, tokens, symbols = _market(tmp_path, name, 3)
    replay, _, url = start_replay(tmp_path, "--provider", name, "--rate", "20000", "--burst",
                                  "--symbols-file", str(symbols), *QUICK_REPLAY,
                                  token=tokens)  # fmt: skip
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    run = feedmux("run", "--provider", name, "--url", url, "--symbols-file", str(symbols),
                  "--shards", "2", "--data-dir", str(data_dir), "--run-dir", str(run_dir),
                  *QUICK, token=tokens)  # fmt: skip
    stored = stop_at_full_load(run, replay, run_dir, data_dir, 20_000)
    assert stored <= set(_keys(sent_by(vendor, tmp_path / "sent.log", codes)[0]))


def _stored_after_feed(tmp: Path, name: str, symbols: Path, tokens: str,
                       *replay_args: str) -> pd.DataFrame:  # fmt: skip
    """Run the pipeline against the vendor's replay server (``replay_args`` name it, or a
    journal of its) until its feed is done and stored; the stored ticks."""
    tmp.mkdir()
    replay, report, url = start_replay(tmp, "--symbols-file", str(symbols), *replay_args,
                                       *QUICK_REPLAY, token=tokens)  # fmt: skip
    run = feedmux("run", "--provider", name, "--url", url, "--symbols-file", str(symbols),
                  "--shards", "2", "--data-dir", str(tmp / "data"), "--run-dir",
                  str(tmp / "run"), *QUICK, token=tokens)  # fmt: skip
    try:
        wait_for(lambda: replay_report(report).feed == "done", 90, "the feed to end")
        expected = replay_report(report).ticks_sent
        wait_for(lambda: sum(s.stored for s in shards_in(tmp / "run")) >= expected, 30,
                 "every trade to be stored")  # fmt: skip
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    return read_ticks(tmp / "data")


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_a_captured_run_served_again_stores_the_same_ticks(tmp_path: Path, name: str) -> None:
    _, _, tokens, symbols = _market(tmp_path, name, 20)
    first = _stored_after_feed(tmp_path / "recorded", name, symbols, tokens, "--provider", name,
                               "--rate", "1500", "--duration", "3")  # fmt: skip
    journal = tmp_path / "recorded" / "data" / "journal"
    # No --provider: the journal says whose it is.
    again = _stored_after_feed(tmp_path / "served", name, symbols, tokens, "--journal",
                               str(journal), "--speed", "max")  # fmt: skip
    columns = ["code", "seq", "time", "price", "volume", "direction"]
    first, again = (s[columns].sort_values(["code", "seq"]).reset_index(drop=True)
                    for s in (first, again))  # fmt: skip
    assert len(first) > 1000 and first.equals(again)


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_a_refused_key_stops_the_run_with_a_clear_message(tmp_path: Path, name: str) -> None:
    replay, report, url = start_replay(tmp_path, "--provider", name, "--codes", "AAPL")
    try:
        run = feedmux("run", "--provider", name, "--url", url, "--codes", "AAPL",
                      "--data-dir", str(tmp_path / "data"), "--give-up-after", "2",
                      token="not-the-key")  # fmt: skip
        run.wait(scaled(60))  # it stops by itself
        code, output = stop(run)
    finally:
        stop(replay)
    assert code == 3, output
    assert "vendor refused the token" in output and "2 times" in output
    assert "not-the-key" not in output
    assert [v.rule for v in replay_report(report).violations] == ["token", "token"]


@pytest.mark.slow
def test_a_second_connection_of_a_polygon_key_stops_that_run_not_the_first(
    tmp_path: Path,
) -> None:
    replay, report, url = start_replay(tmp_path, "--provider", "polygon", "--codes", "AAPL,MSFT")
    first = feedmux("run", "--provider", "polygon", "--url", url, "--codes", "AAPL",
                    "--data-dir", str(tmp_path / "one"))  # fmt: skip
    try:
        wait_for(lambda: replay_report(report).subscribed == ["AAPL.US"], 30, "the first run")
        second = feedmux("run", "--provider", "polygon", "--url", url, "--codes", "MSFT",
                         "--data-dir", str(tmp_path / "two"), "--give-up-after", "2")  # fmt: skip
        assert second.wait(scaled(60)) == 3
        output = second.communicate()[0]
        assert "too many for the token" in output and "--max-conns" in output
        assert first.poll() is None and replay_report(report).subscribed == ["AAPL.US"]
    finally:
        code, first_output = stop(first)
        stop(replay)
    assert code == 0, first_output


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_schema()


@pytest.fixture
def redis_streams() -> Iterator[tuple[str, str]]:
    yield from redis_prefix()


@pytest.mark.slow
def test_dotted_us_tickers_round_trip_through_every_store_topic_and_the_archive(
    tmp_path: Path, pg_url: str, redis_streams: tuple[str, str]
) -> None:
    redis_url, prefix = redis_streams
    codes = ["AAPL.US", "BRK.A.US", "BRK.B.US", "BF.B.US"]
    replay, report, url = start_replay(tmp_path, "--provider", "polygon", "--codes",
                                       "AAPL,BRK.A,BRK-B,bf.b", "--rate", "400")  # fmt: skip
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    subscriber = Subscriber(["BRK.B"], run_dir=run_dir, shards=2)  # the topic T|BRK.B.US
    run = feedmux("run", "--provider", "polygon", "--url", url, "--codes", ",".join(codes),
                  "--shards", "2", "--data-dir", str(data_dir), "--run-dir", str(run_dir),
                  "--store", "sqlite://", "--store", pg_url, "--redis", redis_url,
                  "--redis-prefix", prefix)  # fmt: skip
    seen: list[Tick] = []
    try:
        assert subscriber.wait_ready(scaled(30))
        wait_for(lambda: replay_report(report).ticks_sent > 800, 60, "some feed")
        end_feed(replay, report)
        sent, _ = sent_by(provider("polygon"), tmp_path / "sent.log", codes)
        wait_for(lambda: sum(s.stored for s in shards_in(run_dir)) >= len(sent), 30,
                 "every trade stored")  # fmt: skip
        brk_b = sum(1 for t in sent if t.code == "BRK.B.US")
        while len(seen) < brk_b and (tick := subscriber.recv(timeout=5)) is not None:
            seen.append(tick)
    finally:
        subscriber.close()
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    assert len(seen) == brk_b > 0 and {t.code for t in seen} == {"BRK.B.US"}
    sqlite = read_ticks(data_dir)
    assert set(sqlite["code"]) == set(codes) and len(sqlite) == len(sent)
    pd.testing.assert_frame_equal(read_ticks(pg_url), sqlite)
    archive = tmp_path / "archive"
    for day in sorted({t.tz_convert("America/New_York").date() for t in sqlite["time"]}):
        exported = feedmux("export", "--date", day.isoformat(), "--data-dir", str(data_dir),
                           "--out", str(archive), "--tz", "America/New_York")  # fmt: skip
        assert exported.wait(60) == 0, exported.communicate()[0]
    pd.testing.assert_frame_equal(read_ticks(archive), sqlite)
    assert set(read_bars(archive)["code"]) == set(read_bars(pg_url)["code"]) == set(codes)
    reader = StreamReader(redis_url, 2, prefix=prefix)
    streamed = {m.message.item.code for m in reader.read(count=100_000, block_ms=None)}
    assert streamed == set(codes)


@pytest.mark.slow
def test_the_whole_us_market_with_one_wildcard_is_stored_and_never_silent(tmp_path: Path) -> None:
    run = feedmux("run", "--provider", "polygon", "--replay", "--all-codes", "--shards", "2",
                  "--replay-burst", "--data-dir", str(tmp_path / "data"), "--stop-after", "6",
                  "--silent-after", "2", "--display", "plain")  # fmt: skip
    run.wait(scaled(60))  # it stops by itself
    code, output = stop(run)
    assert code == 0, output
    assert "receiver up: every US code from polygon" in output and "silent" not in output
    stored = read_ticks(tmp_path / "data")
    assert set(stored["code"]) == set(provider("polygon").replay_universe(7))  # the burst: all
