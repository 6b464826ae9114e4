"""`feedmux web` against a replay run: what pages receive, a hundred of them, and its mistakes.

The tests share one run (5,430 codes, --min-move) and one gateway; the last one ends the feed.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from feedmux import SnapshotClient
from feedmux.routing import shard_of
from feedmux.web import protocol as p
from tests.conftest import scaled, wait_for
from tests.integration.helpers import end_feed, feedmux, shards_in, start_sampled_run, stop
from tests.integration.web_pages import Page, Web, start_web, watch_pages

pytestmark = pytest.mark.integration
RATE = 1500
CODES = 5430


@dataclass
class Market:
    replay: subprocess.Popen[str]
    report: Path
    run_dir: Path
    data_dir: Path
    web: Web


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    tmp = tmp_path_factory.mktemp("web")
    replay, report, run, run_dir, data_dir, codes = start_sampled_run(
        tmp, RATE, 2, "--min-move", "trades=0.01", every=1
    )
    assert len(codes) == CODES
    web = None
    try:
        wait_for(lambda: sum(s.received for s in shards_in(run_dir)) > RATE, 60,
                 "the run to take ticks")  # fmt: skip
        web = start_web(run_dir, data_dir)
        yield Market(replay, report, run_dir, data_dir, web)
    finally:
        if web is not None:
            web.stop()
        stop(run)
        stop(replay)


def test_a_hundred_pages_each_get_the_market_then_conflated_updates(market: Market) -> None:
    before = market.web.stats()
    pages = asyncio.run(watch_pages(market.web.ws, 100, scaled(6.0)))
    interval = pages[0].hello.interval_ms if pages[0].hello else 0
    assert interval == 250
    for page in pages:
        assert page.snapshots == 1 and len(page.lines) == CODES
        assert page.updates >= 5 and page.lines_seen > 0
        assert page.repeated == 0  # one line per code per update
        assert min(page.gaps_ms) >= interval * 0.9  # and updates no more often than that
        assert max(page.lag_ms[-3:]) < scaled(5000)  # no backlog builds up behind a page
        assert page.skipped == 0  # every update sent while it was open
    after = market.web.stats()
    # A hundred pages cost the pipeline what one does: the gateway's one subscriber and its
    # one snapshot, taken when it started, and the shards publish every tick they take.
    assert after.snapshots_asked == before.snapshots_asked == 1
    assert after.pages_served - before.pages_served == 100
    wait_for(lambda: market.web.stats().pages == 0, 10, "the pages to be gone")
    assert after.pipeline == "up"
    for shard in shards_in(market.run_dir):
        assert shard.published == shard.received


def test_the_page_and_stats_need_the_token_when_one_is_set(market: Market) -> None:
    web = start_web(market.run_dir, market.data_dir, "--web-token", "s3cret-web")
    try:
        assert asyncio.run(refused(web.ws)) == 401
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(web.url + "stats", timeout=5)
        assert error.value.code == 401
        pages = asyncio.run(watch_pages(web.ws + "?token=s3cret-web", 1, scaled(1.0)))
        assert len(pages[0].lines) == CODES
        with urllib.request.urlopen(web.url, timeout=5) as answer:  # the page holds no data
            assert b"<html" in answer.read().lower()
    finally:
        code, output = web.stop()
    assert code == 0 and "s3cret-web" not in output


async def refused(url: str, **headers: str) -> int:
    with pytest.raises(InvalidStatus) as error:
        async with connect(url, additional_headers=headers):
            pass
    return error.value.response.status_code


def test_another_sites_page_cannot_read_the_market(market: Market) -> None:
    """A script of a page the user visits elsewhere may open a WebSocket to 127.0.0.1: the
    browser says where it came from, and the gateway refuses it."""
    assert asyncio.run(refused(market.web.ws, Origin="http://evil.example")) == 403
    port = market.web.url.rsplit(":", 1)[1].strip("/")
    rebound = urllib.request.Request(market.web.url + "stats",
                                     headers={"Host": f"evil.example:{port}"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(rebound, timeout=5)
    assert error.value.code == 403
    own = market.web.url.rstrip("/")
    pages = asyncio.run(watch_pages(market.web.ws, 1, scaled(0.5), Origin=own))
    assert len(pages[0].lines) == CODES


def run_web(*args: str) -> tuple[int, str]:
    proc = feedmux("web", *args)
    out, _ = proc.communicate(timeout=scaled(30))
    return proc.returncode, out


def test_mistakes_end_in_a_clear_message_and_exit_code(market: Market, tmp_path: Path) -> None:
    where = ("--run-dir", str(market.run_dir), "--data-dir", str(market.data_dir))
    code, out = run_web("--run-dir", str(tmp_path / "nothing"), "--port", "0")
    assert code == 1 and "no feedmux run" in out and "Traceback" not in out
    code, out = run_web("--host", "0.0.0.0", "--port", "0", *where)
    assert code == 2 and "--web-token" in out
    code, out = run_web("--port", market.web.url.rsplit(":", 1)[1].strip("/"), *where)  # taken
    assert code == 2 and "cannot serve on 127.0.0.1" in out and "Traceback" not in out
    code, out = run_web("--feed", "trades", "--web-interval", "0", *where)
    assert code == 2 and "--web-interval" in out


def test_the_page_equals_the_shards_snapshot_once_the_feed_stops(market: Market) -> None:
    async def follow() -> Page:
        page = Page()
        async with connect(market.web.ws, max_size=None) as ws:
            page.take(await ws.recv())
            page.take(await ws.recv())
            end_feed(market.replay, market.report)  # blocks a moment: messages wait for us
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < scaled(2.0):
                message = page.take(await asyncio.wait_for(ws.recv(), scaled(5)))
                if isinstance(message, p.Update) and message.lines:
                    quiet_since = time.monotonic()
        return page

    page = asyncio.run(follow())
    quotes = SnapshotClient(market.run_dir).get()
    assert len(page.lines) == CODES and quotes  # (the quietest codes may not have traded yet)
    # (On the moves feed a trade at the same price is not sent: the time shown is the move's.)
    shown = {c: line.price for c, line in page.lines.items() if line.price}
    assert shown == {c: q.tick.price for c, q in quotes.items()}


@dataclass
class Restart:
    """A gateway following a run that was stopped and started again (at ``started_ms``);
    ``stopped``: the gateway's exit code and output, once the ``restarted`` block is left."""

    web: Web
    started_ms: float
    stopped: tuple[int, str] | None = None


@contextmanager
def restarted(tmp_path: Path, before: tuple[str, ...], after: tuple[str, ...]) -> Iterator[Restart]:
    """A small run with the flags ``before``, `feedmux web` on it, then the run stopped and
    started again with ``after``; both stopped at the end, the run whatever the gateway does."""
    data_dir, run_dir = tmp_path / "data", tmp_path / "data" / "run"
    codes = ("--codes", "600519.SH,000001.SZ,300750.SZ", "--replay-rate", "300")
    where = ("--data-dir", str(data_dir), "--run-dir", str(run_dir))
    run = feedmux("run", "--replay", *before, *codes, *where)
    web = None
    try:
        wait_for(lambda: sum(s.received for s in shards_in(run_dir)) > 100, 60, "ticks")
        web = start_web(run_dir, data_dir)
        assert stop(run)[0] == 0
        restart = Restart(web, time.time() * 1000)
        run = feedmux("run", "--replay", *after, *codes, *where)
        yield restart
    finally:
        try:
            stopped = web.stop() if web is not None else None
        finally:
            stop(run)
    restart.stopped = stopped


@pytest.mark.slow
def test_a_run_restarted_without_moves_is_followed_trade_by_trade(tmp_path: Path) -> None:
    moves = ("--shards", "2", "--min-move", "trades=0.01")
    with restarted(tmp_path, moves, ("--shards", "2")) as restart:

        async def follow() -> p.Hello | None:
            async with connect(restart.web.ws, max_size=None) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    while True:  # until the gateway says: come again
                        await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            page = (await watch_pages(restart.web.ws, 1, scaled(3.0)))[0]
            assert page.lines_seen > 0  # trades of the new run, every one of them
            return page.hello

        hello = asyncio.run(asyncio.wait_for(follow(), scaled(60)))
        assert hello is not None and hello.feed == "trades" and hello.min_move == 0.0
        assert restart.web.stats().pipeline == "up"
    assert restart.stopped is not None and restart.stopped[0] == 0, restart.stopped
    assert "following every trade" in restart.stopped[1]


@pytest.mark.slow
def test_a_run_restarted_with_another_shard_count_is_followed(tmp_path: Path) -> None:
    code = "300750.SZ"
    assert shard_of(code, 3) == 2  # after the restart, only the new third shard has it
    with restarted(tmp_path, ("--shards", "2"), ("--shards", "3")) as restart:

        def traded_again() -> bool:  # a page opened now shows the code's trade since
            page = asyncio.run(watch_pages(restart.web.ws, 1, scaled(1.0)))[0]
            line = page.lines.get(code)
            return line is not None and line.recv_ms > restart.started_ms

        wait_for(traded_again, 60, f"{code}'s trades from the restarted run's third shard")
        assert restart.web.stats().pipeline == "up"
    assert restart.stopped is not None and restart.stopped[0] == 0, restart.stopped
    assert "the run restarted with 3 shards: following them" in restart.stopped[1]
