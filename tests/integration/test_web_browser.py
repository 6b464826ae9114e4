"""The live market page in a real browser (Debian's chromium, driven by Selenium), against a
replay of a compressed A-share morning: every code shown, moves flash, a code's chart opens,
and once the feed stops the table shows what the shards' snapshot says.

Screenshots of the page are kept in ``$FEEDMUX_TEST_ARTIFACTS`` (default ``test-artifacts/`` in
the working directory).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from feedmux import SnapshotClient
from feedmux.simulator.market import a_share_universe
from tests.conftest import wait_for
from tests.integration.helpers import end_feed, feedmux, shards_in, start_replay, stop
from tests.integration.web_pages import start_web, watch_pages
from tests.services import browser

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a browser and a compressed morning: CI
CODES = 5430
ARTIFACTS = Path(os.environ.get("FEEDMUX_TEST_ARTIFACTS") or "test-artifacts")


@dataclass
class Live:
    replay: subprocess.Popen[str]
    report: Path
    run_dir: Path
    url: str
    driver: Any

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, script: str, timeout: float, what: str) -> None:
        wait_for(lambda: bool(self.js(script)), timeout, what, step=0.1)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("page")
    symbols = tmp / "symbols.txt"
    symbols.write_text(" ".join(a_share_universe()))
    # A morning in 16 wall minutes per day: a simulated minute, and so a bar, every 4 s.
    replay, report, url = start_replay(
        tmp, "--symbols-file", str(symbols), "--sessions", "--session-date", "2026-12-03",
        "--day-minutes", "16", "--session-start", "09:29", "--rate", "1500",
    )  # fmt: skip
    run_dir, data_dir = tmp / "run", tmp / "data"
    run = feedmux("run", "--url", url, "--symbols-file", str(symbols), "--shards", "2",
                  "--min-move", "trades=0.01", "--bar-sessions", "exchange", "--bar-label", "end",
                  "--data-dir", str(data_dir), "--run-dir", str(run_dir))  # fmt: skip
    web = None
    try:
        wait_for(lambda: sum(s.bars.stored for s in shards_in(run_dir)) > 0, 120,
                 "the first bars to be stored")  # fmt: skip
        web = start_web(run_dir, data_dir)
        for driver in browser():
            driver.get(web.url)
            yield Live(replay, report, run_dir, web.url, driver)
    finally:
        if web is not None:
            web.stop()
        stop(run)
        stop(replay)


def test_the_page_shows_every_code_and_moves_flash(live: Live) -> None:
    live.wait("return document.body.dataset.conn === 'live'", 30, "the page to connect")
    live.wait(f"return window.feedmux.lines.size === {CODES}", 30, "every code on the page")
    assert "5,430 codes" in live.driver.find_element("css selector", "#count").text
    live.wait("return document.querySelector('td.price.flash-up, td.price.flash-down')", 30,
              "a move to flash")  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    live.driver.save_screenshot(str(ARTIFACTS / "web-page.png"))
    errors = [e for e in live.driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors


def test_search_keeps_only_matching_codes_and_a_click_opens_the_chart(live: Live) -> None:
    search = live.driver.find_element("css selector", "#search")
    search.clear()
    search.send_keys("600519")
    shown = "[...document.querySelectorAll('#table tbody tr[data-code]')].map(r => r.dataset.code)"
    live.wait(f"return {shown}.join() === '600519.SH'", 10, "the search to filter")
    live.driver.find_element("css selector", "tr[data-code='600519.SH']").click()
    live.wait("const c = document.querySelector('#chart.open'); "
              "return c && c.dataset.code === '600519.SH' && +c.dataset.bars > 0", 30,
              "the chart with bars")  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    live.driver.save_screenshot(str(ARTIFACTS / "web-chart.png"))
    live.driver.find_element("css selector", "#chart-close").click()
    live.js(
        "const s = document.querySelector('#search'); s.value = '';"
        "s.dispatchEvent(new Event('input'))"
    )  # every code again, for the next test


def test_once_the_feed_stops_the_table_shows_the_snapshot(live: Live) -> None:
    end_feed(live.replay, live.report)
    quiet = {"lines": -1, "since": 0}

    def settled() -> bool:  # the page applied nothing new for two seconds
        received = live.js("return window.feedmux.received")
        if received != quiet["lines"]:
            quiet.update(lines=received, since=int(live.js("return Date.now()")))
        return int(live.js("return Date.now()")) - quiet["since"] > 2000

    wait_for(settled, 60, "the page to settle")
    quotes = SnapshotClient(live.run_dir).get()
    shown = live.js("return Object.fromEntries([...window.feedmux.lines].filter(([c, r]) => r[1])"
                    ".map(([c, r]) => [c, r[1]]))")  # fmt: skip
    page = asyncio.run(watch_pages(live.url.replace("http://", "ws://") + "ws", 1, 0.5))[0]
    expected = {code: q.tick.price for code, q in quotes.items()}
    assert {c: line.price for c, line in page.lines.items() if line.price} == expected
    assert shown == expected
    for code in sorted(quotes)[:: len(quotes) // 25]:  # and the table's cells say so
        assert live.js("return window.feedmux.scrollToCode(arguments[0])", code)
        cell = live.driver.find_element("css selector", f"tr[data-code='{code}'] td.price")
        assert cell.text == f"{quotes[code].tick.price:.2f}"
