"""NATS JetStream against the machine's server, from the CLI in subprocesses: every trade a
run received is in the stream once, readable by a consumer that knows only nats-py and the
documented payload; two instances share one stream; a stream that cannot serve stops the start."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import nats
import pytest

from feedmux import read_ticks
from feedmux.stats.shard import ShardStats
from tests.conftest import scaled, wait_for
from tests.integration.helpers import (
    end_feed,
    feedmux,
    sent_ticks,
    shards_in,
    start_replay,
    start_sampled_run,
    stop,
)
from tests.integration.test_vendors import QUICK, QUICK_REPLAY, _market
from tests.nats_servers import Target, local_target, read_stream

pytestmark = pytest.mark.integration


@pytest.fixture
def target() -> Iterator[Target]:
    yield from local_target()


def stream_trades(target: Target) -> list[tuple[str, str, list[object]]]:
    """(subject, Nats-Msg-Id, payload as plain msgpack) of every trade in the stream."""
    return [(m.subject, m.msg_id, msgspec.msgpack.decode(m.data))
            for m in read_stream(target.url, f"{target.prefix}.trades.>")]  # fmt: skip


def in_stream(stats: list[ShardStats]) -> int:
    return sum(s.nats.published for s in stats if s.nats is not None)


def all_in_stream(stats: list[ShardStats], ticks: int) -> bool:
    """Every tick published, and JetStream holds all each shard published: its trades and,
    once the feed crossed a minute, its bars."""
    return sum(s.published for s in stats) == ticks and all(
        s.nats is not None and s.nats.published == s.published + s.bars.published for s in stats
    )


def test_every_trade_a_run_received_is_in_the_stream_once(tmp_path: Path,
                                                          target: Target) -> None:  # fmt: skip
    replay, report, run, run_dir, data_dir, _ = start_sampled_run(
        tmp_path, 3000, 2, *target.flags()
    )
    try:
        wait_for(lambda: in_stream(shards_in(run_dir)) > 3000, 60, "trades in JetStream")
        end_feed(replay, report)
        sent = sent_ticks(tmp_path / "sent.log")
        wait_for(lambda: all_in_stream(shards_in(run_dir), len(sent)), 30,
                 "every trade in JetStream")  # fmt: skip
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    assert f"NATS: created stream {target.stream} ({target.prefix}.>" in output
    got = stream_trades(target)
    # [shard, pub_seq, [code, seq, time_ns, recv_ns, price, volume, turnover, direction]]
    trades = [(payload[2], subject, msg_id) for subject, msg_id, payload in got]  # type: ignore[index]
    assert Counter((t[0], t[1]) for t, _, _ in trades) == Counter((t.code, t.seq) for t in sent)
    assert len({msg_id for _, _, msg_id in trades}) == len(trades)  # an id is one message
    for tick, subject, _ in trades:
        symbol, market = tick[0].split(".")
        assert subject == f"{target.prefix}.trades.{market}.{symbol}"
    stored = read_ticks(data_dir)  # the payload is the tick as the stores keep it
    rows = zip(stored["code"], stored["seq"], stored["time"].astype("int64"),
               stored["recv_time"].astype("int64"), stored["price"], stored["volume"],
               stored["turnover"], stored["direction"], strict=True)  # fmt: skip
    assert Counter(tuple(t) for t, _, _ in trades) == Counter(rows)


def test_two_instances_share_one_stream_without_collisions(tmp_path: Path,
                                                           target: Target) -> None:  # fmt: skip
    """An A-share run (AllTick) and a US one (Polygon, dotted tickers among its codes) publish
    into the same stream under the same prefix: each one's every stored trade is there once,
    on its market's subjects, and nothing else."""
    a_dir, us_dir = tmp_path / "a", tmp_path / "us"
    a_dir.mkdir()
    us_dir.mkdir()
    a_replay, a_report, a_run, a_run_dir, a_data, _ = start_sampled_run(
        a_dir, 2000, 2, *target.flags(), every=20)  # fmt: skip
    _, codes, tokens, symbols = _market(us_dir, "polygon", every=80)
    assert any("." in code.removesuffix(".US") for code in codes)  # BRK.B and the like
    us_replay, us_report, url = start_replay(us_dir, "--provider", "polygon", "--symbols-file",
                                             str(symbols), "--rate", "2000", *QUICK_REPLAY,
                                             token=tokens)  # fmt: skip
    us_data, us_run_dir = us_dir / "data", us_dir / "run"
    us_run = feedmux("run", "--provider", "polygon", "--url", url, "--symbols-file",
                     str(symbols), "--shards", "2", "--data-dir", str(us_data), "--run-dir",
                     str(us_run_dir), *QUICK, *target.flags(), token=tokens)  # fmt: skip
    try:
        for run_dir in (a_run_dir, us_run_dir):
            wait_for(lambda d=run_dir: in_stream(shards_in(d)) > 1000, 60, "trades in JetStream")
        end_feed(a_replay, a_report)
        end_feed(us_replay, us_report)
        for run_dir, sent in ((a_run_dir, a_dir / "sent.log"), (us_run_dir, us_dir / "sent.log")):
            wait_for(
                lambda d=run_dir: all(
                    s.nats is not None and s.nats.backlog == 0 for s in shards_in(d)
                ),
                30,
                "JetStream to catch up",
            )
            assert sent.exists()
    finally:
        results = [stop(a_run), stop(us_run)]
        stop(a_replay)
        stop(us_replay)
    for code, output in results:
        assert code == 0, output
    got = Counter((payload[2][0], payload[2][1]) for _, _, payload in stream_trades(target))  # type: ignore[index]
    stored = Counter()
    for data in (a_data, us_data):
        ticks = read_ticks(data)
        stored.update(zip(ticks["code"], ticks["seq"], strict=True))
    assert got == stored
    assert any(code.endswith(".US") for code, _ in got) and any(
        code.endswith(".SH") or code.endswith(".SZ") for code, _ in got
    )


def test_a_stream_that_cannot_take_feedmux_s_messages_stops_the_start(
    tmp_path: Path, target: Target
) -> None:
    async def make() -> None:
        client = await nats.connect(target.url)
        await client.jetstream().add_stream(name=target.stream, subjects=[f"{target.prefix}-x.>"])
        await client.close()

    asyncio.run(make())
    run = feedmux("run", "--replay", "--data-dir", str(tmp_path / "d"), "--stop-after", "30",
                  *target.flags())  # fmt: skip
    run.wait(scaled(30))  # it stops by itself, at once
    code, output = stop(run)
    assert code == 2, output
    assert "stopping" not in output  # nothing had started
    assert (
        f"NATS stream {target.stream} exists but cannot take feedmux's messages: its "
        f"subjects ['{target.prefix}-x.>'] do not take {target.prefix}.>"
    ) in output
