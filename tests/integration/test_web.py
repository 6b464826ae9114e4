"""`feedmux web` against a replay run: what pages receive, a hundred of them, and its mistakes.

The tests share one run (5,430 codes, --min-move) and one gateway; the last one ends the feed.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from feedmux import SnapshotClient
from feedmux.web import protocol as p
from tests.conftest import scaled, wait_for
from tests.integration.helpers import end_feed, feedmux, shards_in, start_sampled_run, stop

pytestmark = pytest.mark.integration
RATE = 1500
CODES = 5430


@dataclass
class Market:
    tmp: Path
    replay: subprocess.Popen[str]
    report: Path
    run: subprocess.Popen[str]
    run_dir: Path
    data_dir: Path
    web: subprocess.Popen[str]
    url: str  # http://127.0.0.1:PORT/

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "ws"

    def stats(self) -> p.WebStats:
        with urllib.request.urlopen(self.url + "stats", timeout=5) as answer:
            return p.stats_decoder.decode(answer.read())


def start_web(run_dir: Path, data_dir: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    web = feedmux("web", "--port", "0", "--run-dir", str(run_dir), "--data-dir", str(data_dir),
                  *args)  # fmt: skip
    assert web.stdout is not None
    said = []
    while found := web.stdout.readline():  # it serves once the whole market is loaded
        said.append(found)
        if url := re.search(r"serving (http://\S+/)", found):
            return web, url.group(1)
    raise AssertionError("".join(said) + web.communicate(timeout=10)[0])


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
        web, url = start_web(run_dir, data_dir)
        yield Market(tmp, replay, report, run, run_dir, data_dir, web, url)
    finally:
        if web is not None:
            stop(web)
        stop(run)
        stop(replay)


@dataclass
class Page:
    """A page as the browser's would be: the model of lines, and what the updates looked like."""

    lines: dict[str, p.Line] = field(default_factory=dict)
    hello: p.Hello | None = None
    snapshots: int = 0
    updates: int = 0
    lines_seen: int = 0
    repeated: int = 0  # a code twice in one update (conflation broken)
    last_server_ms: float = 0.0
    skipped: int = 0  # updates never received (the gateway skipped this page)
    last_seq: int = 0
    gaps_ms: list[float] = field(default_factory=list)  # between consecutive updates
    lag_ms: list[float] = field(default_factory=list)  # arrival - the update's server time

    def take(self, raw: str | bytes) -> p.ServerMessage:
        message = p.server_decoder.decode(raw)
        if isinstance(message, p.Hello):
            self.hello = message
        elif isinstance(message, p.Snapshot):
            self.snapshots += 1
            self.lines = {line.code: line for line in message.lines}
        elif isinstance(message, p.Update):
            self.updates += 1
            if self.last_seq:
                self.skipped += message.seq - self.last_seq - 1
            self.last_seq = message.seq
            codes = [line.code for line in message.lines]
            self.repeated += len(codes) - len(set(codes))
            self.lines.update((line.code, line) for line in message.lines)
            self.lines_seen += len(codes)
            if self.last_server_ms:
                self.gaps_ms.append(message.server_ms - self.last_server_ms)
            self.last_server_ms = message.server_ms
            self.lag_ms.append(time.time() * 1000 - message.server_ms)
        return message


async def watch_pages(url: str, count: int, seconds: float) -> list[Page]:
    pages = [Page() for _ in range(count)]

    async def one(page: Page) -> None:
        async with connect(url, max_size=None) as ws:
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                try:
                    page.take(await asyncio.wait_for(ws.recv(), left))
                except TimeoutError:
                    return

    await asyncio.gather(*(one(page) for page in pages))
    return pages


def test_a_hundred_pages_each_get_the_market_then_conflated_updates(market: Market) -> None:
    before = market.stats()
    pages = asyncio.run(watch_pages(market.ws, 100, scaled(6.0)))
    interval = pages[0].hello.interval_ms if pages[0].hello else 0
    assert interval == 250
    for page in pages:
        assert page.snapshots == 1 and len(page.lines) == CODES
        assert page.updates >= 5 and page.lines_seen > 0
        assert page.repeated == 0  # one line per code per update
        assert min(page.gaps_ms) >= interval * 0.9  # and updates no more often than that
        assert max(page.lag_ms[-3:]) < scaled(5000)  # no backlog builds up behind a page
        assert page.skipped == 0  # every update sent while it was open
    after = market.stats()
    # A hundred pages cost the pipeline what one does: the gateway's one subscriber and its
    # one snapshot, taken when it started, and the shards publish every tick they take.
    assert after.snapshots_asked == before.snapshots_asked == 1
    assert after.pages_served - before.pages_served == 100
    assert after.pages == 0 and after.pipeline == "up"
    for shard in shards_in(market.run_dir):
        assert shard.published == shard.received


def test_the_page_and_stats_need_the_token_when_one_is_set(market: Market) -> None:
    web, url = start_web(market.run_dir, market.data_dir, "--web-token", "s3cret-web")
    try:
        ws = url.replace("http://", "ws://") + "ws"

        async def refused() -> int:
            with pytest.raises(InvalidStatus) as error:
                async with connect(ws):
                    pass
            return error.value.response.status_code

        assert asyncio.run(refused()) == 401
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(url + "stats", timeout=5)
        assert error.value.code == 401
        pages = asyncio.run(watch_pages(ws + "?token=s3cret-web", 1, scaled(1.0)))
        assert len(pages[0].lines) == CODES
        with urllib.request.urlopen(url, timeout=5) as answer:  # the page itself holds no data
            assert b"<html" in answer.read().lower()
    finally:
        code, output = stop(web)
    assert code == 0 and "s3cret-web" not in output


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
    code, out = run_web("--port", market.url.rsplit(":", 1)[1].strip("/"), *where)  # taken
    assert code == 2 and "cannot serve on 127.0.0.1" in out and "Traceback" not in out
    code, out = run_web("--feed", "trades", "--web-interval", "0", *where)
    assert code == 2 and "--web-interval" in out


def test_the_page_equals_the_shards_snapshot_once_the_feed_stops(market: Market) -> None:
    async def follow() -> Page:
        page = Page()
        async with connect(market.ws, max_size=None) as ws:
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
