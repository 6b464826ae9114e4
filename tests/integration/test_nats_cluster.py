"""A 3-node JetStream cluster started by the test, an R3 stream, a run publishing to it: the
stream leader killed (-9) mid-run loses and duplicates nothing (a consumer on another node reads
every trade once, as stored), and, restarted, its replica catches up."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from feedmux import read_ticks, wire
from feedmux.model import Tick
from tests.conftest import wait_for
from tests.integration.helpers import (
    end_feed,
    receiver_in,
    sent_ticks,
    shards_in,
    start_sampled_run,
    stop,
)
from tests.nats_servers import (
    Node,
    Target,
    cluster,
    fresh_names,
    read_stream,
    replicas_in_sync,
    stop_all,
    stream_info,
    stream_leader,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a cluster, a run, a kill: ~1 min


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    started = cluster(tmp_path)
    try:
        yield started
    finally:
        stop_all(started)


def in_stream(run_dir: Path) -> int:
    return sum(s.nats.published for s in shards_in(run_dir) if s.nats is not None)


def all_confirmed(run_dir: Path, sent: int) -> bool:
    """The receiver read every trade sent and every shard acknowledged them, which a shard
    does once its stores and JetStream hold them."""
    received = receiver_in(run_dir)
    return received.ticks == sent and received.unconfirmed == 0


def assert_every_trade_once(url: str, prefix: str, sent: list[Tick], data_dir: Path) -> None:
    """The stream, read on the server at ``url``, holds every trade sent exactly once (each
    message its own id), each as the stores keep it."""
    got = read_stream(url, f"{prefix}.trades.>")
    ticks = [msgspec.msgpack.decode(m.data, type=wire.Published).tick for m in got]
    assert Counter((t.code, t.seq) for t in ticks) == Counter((t.code, t.seq) for t in sent)
    assert len({m.msg_id for m in got}) == len(got)
    stored = read_ticks(data_dir)
    rows = zip(stored["code"], stored["seq"], stored["time"].astype("int64"),
               stored["recv_time"].astype("int64"), stored["price"], stored["volume"],
               stored["turnover"], stored["direction"], strict=True)  # fmt: skip
    assert Counter(msgspec.structs.astuple(t) for t in ticks) == Counter(rows)


def test_the_stream_leader_killed_mid_run_loses_nothing_and_catches_up_on_restart(
    tmp_path: Path, nodes: list[Node]
) -> None:
    stream, prefix = fresh_names()
    target = Target(",".join(n.url for n in nodes), stream, prefix)
    replay, report, run, run_dir, data_dir, _ = start_sampled_run(
        tmp_path, 2000, 2, *target.flags(), "--nats-replicas", "3"
    )
    try:
        wait_for(lambda: in_stream(run_dir) > 3000, 60, "trades in JetStream")
        name = stream_leader(nodes[0].url, stream)
        leader = next(n for n in nodes if n.name == name)
        others = [n for n in nodes if n is not leader]
        leader.kill()
        at_kill = in_stream(run_dir)
        wait_for(lambda: in_stream(run_dir) > at_kill + 3000, 60,
                 "publishing to go on without the old leader")  # fmt: skip
        assert stream_leader(others[0].url, stream) in {n.name for n in others}
        end_feed(replay, report)
        sent = sent_ticks(tmp_path / "sent.log")
        wait_for(lambda: all_confirmed(run_dir, len(sent)), 60,
                 "every trade acknowledged: stored, and in JetStream")  # fmt: skip
    finally:
        code, output = stop(run)
        stop(replay)
    assert code == 0, output
    assert f"NATS: created stream {stream} ({prefix}.>, file, " in output and "3 replicas" in output
    assert_every_trade_once(others[1].url, prefix, sent, data_dir)  # a node never killed

    leader.start()  # its store as it was at the kill
    wait_for(lambda: replicas_in_sync(others[0].url, stream, 3), 60,
             "the restarted node's replica to be current")  # fmt: skip
    state = stream_info(others[0].url, stream).state
    try:  # a loaded machine once took over 30 s (CI): 60, and what each node held if not
        wait_for(lambda: leader.replica(stream) == others[0].replica(stream), 60,
                 "the restarted node's replica to hold what the others hold", step=0.5)  # fmt: skip
    except AssertionError as exc:
        held = [(n.name, n.replica(stream)) for n in nodes]
        raise AssertionError(
            f"{exc}: {held}; the leader's view: {stream_info(others[0].url, stream).cluster}"
        ) from None
    copy = leader.replica(stream)
    assert copy is not None and (copy.messages, copy.last_seq) == (state.messages, state.last_seq)
