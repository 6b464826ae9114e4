"""Every benchmark runs, tiny, so none can rot: the harness, each client, the table and chart."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest

from tests.conftest import scaled
from tests.nats_servers import Target, local_target

pytestmark = pytest.mark.integration


def run_benchmark(module: str, out: Path, *args: str,
                  timeout: float = 120) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """``python -m benchmarks.<module> ARGS --json OUT``, which must exit 0: what it printed
    (its table) and its JSON."""
    run = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args, "--json",
                          str(out)], check=False, capture_output=True, text=True,
                         timeout=scaled(timeout))  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    doc: dict[str, Any] = json.loads(out.read_text())
    return run.stdout, doc


@pytest.mark.slow
def test_the_benchmark_harness_runs_every_client_tiny(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    chart = tmp_path / "bench.png"
    stdout, doc = run_benchmark("pipeline", out, "--tiny", "--only", "ceiling", "naive", "best",
                                "feedmux 2", "--png", str(chart), timeout=300)  # fmt: skip
    results = {r["kind"] + str(r["shards"]): r for r in doc["results"]}
    assert set(results) == {"bare0", "naive0", "best0", "feedmux2"}
    assert doc["environment"]["versions"]["msgspec"] and doc["params"]["codes"] == 60
    for name in ("bare0", "best0", "feedmux2"):
        assert results[name]["max_rate"] > 0, results[name]
    for name in ("naive0", "best0", "feedmux2"):  # each stored every tick of its latency run
        r = results[name]
        assert r["lost"] == 0 and r["latency_ms"]["commit"]["p50"] > 0, r
        assert r["burst_s"]["commit"] > 0 and r["cpu_us_per_tick"] and r["max_rss_mb"], r
    feedmux = results["feedmux2"]
    assert feedmux["latency_ms"]["publish"]["p99"] > 0 and feedmux["burst_s"]["publish"] > 0
    assert set(feedmux["cpu_us_per_tick"]) == {"receiver", "shard-0", "shard-1"}
    assert "feedmux 2 shards" in stdout and "max ticks/s" in stdout  # the table
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rates = {s["store"]: s.get("rows_per_s") for s in doc["stores"]}  # PostgreSQL next to SQLite
    assert rates["sqlite"], doc["stores"]
    if os.environ.get("FEEDMUX_REQUIRE_SERVICES") == "1":  # elsewhere it may say "skipped"
        assert rates["postgresql"], doc["stores"]
    assert "stores" in stdout and "postgresql" in stdout


def test_the_frame_benchmark_runs_tiny_and_compares_before_now_and_websockets(
    tmp_path: Path,
) -> None:
    out = tmp_path / "frames.json"
    stdout, doc = run_benchmark("frames", out, "--tiny")
    results = doc["results"]
    assert len(results) == 11  # 3 parsers x 2 read sizes, 5 UTF-8 check timings
    for r in results:  # "before" needs the base commit in git (a shallow clone lacks it)
        assert r.get("ns_per_frame", 0) > 0 or ("before" in r["what"] and r["skipped"]), r
    assert "websockets ClientProtocol" in stdout and "verdict:" in stdout


def test_the_bar_benchmark_runs_tiny_in_every_bar_mode(tmp_path: Path) -> None:
    out = tmp_path / "bars.json"
    _, doc = run_benchmark("bars", out, "--tiny")
    results = {r["mode"]: r for r in doc["results"]}
    assert set(results) == {"plain", "exchange", "extended"}
    assert all(r["us_per_tick"] > 0 for r in results.values()), results


def test_the_vendor_benchmark_runs_tiny_for_every_vendor(tmp_path: Path) -> None:
    out = tmp_path / "vendors.json"
    stdout, doc = run_benchmark("vendors", out, "--tiny")
    results = {r["vendor"]: r for r in doc["results"]}
    assert set(results) == {"alltick", "polygon", "itick"}
    for r in results.values():
        assert r["receiver_us"] > 0 and r["shard_us"] > 0 and r["bus_bytes"] > 0, r
    assert results["itick"]["identity_us"] > 0 and results["itick"]["identity_bytes_per_code"] > 0
    assert "identity" in stdout


def test_the_journal_benchmark_runs_tiny_and_fmj2_is_smaller(tmp_path: Path) -> None:
    out = tmp_path / "journal.json"
    stdout, doc = run_benchmark("journal", out, "--tiny")
    results = {r["name"]: r for r in doc["results"]}
    assert len(results) == 8 and doc["environment"]["versions"]["zstandard"]
    for r in results.values():  # "before" needs the base commit in git (a shallow clone lacks it)
        if "skipped" in r:
            assert "before" in r["name"], r
            continue
        assert r["ticks"] == 5000 and r["bytes_per_tick"] > 0, r
        assert r["write_us_per_tick"] > 0 and r["read_records_per_s"] > 0, r
        assert r["pushes_per_s"] > 0 and r["read_peak_kb"] > 0, r
    default = results["FMJ2 level 1 (default)"]
    assert default["format"] == "FMJ2" and default["block_call_ms"] > 0
    assert default["bytes_per_tick"] < default["raw_bytes_per_tick"]  # the records uncompressed
    if "skipped" not in results["FMJ1 (before)"]:
        assert doc["ratio"] > 1 and results["FMJ1 (before)"]["read_now_records_per_s"] > 0
    assert "B/tick" in stdout and "FMJ2 level 1 (default)" in stdout


@pytest.mark.slow
def test_the_soak_runs_two_tiny_days_and_stores_every_tick_once(tmp_path: Path) -> None:
    out, chart = tmp_path / "soak.json", tmp_path / "soak.png"
    stdout, doc = run_benchmark("soak", out, "--tiny", "--days", "2", "--day-minutes", "0.5",
                                "--png", str(chart), timeout=300)  # fmt: skip
    assert doc["dates"] == ["2026-12-02", "2026-12-03"] and doc["params"]["codes"] == 300
    assert doc["environment"]["versions"]["msgspec"] and doc["commit"]
    ticks = doc["ticks"]
    assert ticks["stored_once"] and ticks["duplicates"] == ticks["missing"] == 0, ticks
    # Day 2's seqs start again from day 1's: only the trading day keeps them apart.
    assert ticks["stored_by_day"] == ticks["sent_by_day"] and len(ticks["sent_by_day"]) == 2
    assert all(n > 300 * 237 for n in ticks["sent_by_day"].values())  # every code every minute
    names = {r["name"] for r in doc["processes"]}
    assert {"supervisor", "receiver", "shard-0", "shard-1"} <= names, names
    for r in [*doc["processes"], doc["server"]]:
        assert r["rss_warm_mb"] > 0 and r["rss_max_mb"] >= r["rss_warm_mb"], r
        assert isinstance(r["flat"], bool) and r["restarts"] == 0, r
    assert isinstance(doc["flat"], bool) and doc["warmup"]["t_s"] > 0
    assert doc["disk"]["journal_bytes_per_tick"] > 0 and doc["disk"]["store_bytes_per_tick"] > 0
    series = doc["series"]
    assert set(series["rss_mb"]) >= names and len(series["rss_mb"]["receiver"]) == len(
        series["t_s"])  # fmt: skip
    assert "every tick stored once" in stdout and "growth %" in stdout  # the table
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def nats_target() -> Iterator[Target]:
    yield from local_target()  # skipped with the reason when the machine's NATS is absent


async def _missing(url: str, streams: list[str]) -> list[str]:
    """Which of ``streams`` the server no longer has."""
    client = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=1)
    gone = []
    try:
        for name in streams:
            try:
                await client.jetstream().stream_info(name)
            except nats.js.errors.NotFoundError:
                gone.append(name)
    finally:
        await client.close()
    return gone


@pytest.mark.slow
def test_the_nats_benchmark_runs_tiny_on_and_off_and_deletes_its_streams(
    tmp_path: Path, nats_target: Target
) -> None:
    out = tmp_path / "nats.json"
    stdout, doc = run_benchmark("nats", out, "--tiny", "--nats", nats_target.url, timeout=180)
    runs = doc["runs"]
    assert sorted((r["mode"], r["rate"]) for r in runs) == [("off", 0.0), ("off", 300.0),
                                                            ("on", 0.0), ("on", 300.0)]  # fmt: skip
    for r in runs:
        assert r["load"] >= 0 and bool(r["stream"]) == (r["mode"] == "on"), r
        if not r["rate"]:  # the ramp: every trade stored (and, on, in the stream) at each step
            assert r["max_rate"] > 0, r
        else:
            cost = r["cost"]
            assert cost["kept_up"] and cost["total_us_per_tick"] > 0, r
            assert {"feedmux-receiver", "feedmux-shard-0", "feedmux-shard-1"} <= set(
                cost["us_per_tick"]), r  # fmt: skip
    on = [r["stream"] for r in runs if r["mode"] == "on"]
    assert sorted(doc["streams_deleted"]) == sorted(on)
    assert sorted(asyncio.run(_missing(nats_target.url, on))) == sorted(on)  # each deleted
    assert doc["environment"]["versions"]["nats-py"]
    assert "peak lossless ticks/s" in stdout and "CPU us per tick" in stdout


@pytest.mark.slow
def test_the_web_benchmark_runs_quick_gateway_forwarder_and_browser(tmp_path: Path) -> None:
    out = tmp_path / "web.json"
    stdout, doc = run_benchmark("web", out, "--quick", timeout=300)
    assert doc["benchmark"] == "web" and doc["commit"] and doc["params"]["codes"] == 300
    assert doc["environment"]["versions"]["websockets"] and doc["params"]["pages"] == [0, 2]
    windows = {(w["server"], w["feed"], w["pages"]): w for w in doc["windows"]}
    assert set(windows) == {("gateway", "trades", 0), ("gateway", "trades", 2),
                            ("gateway", "moves", 0), ("gateway", "moves", 2),
                            ("forward", "trades", 0), ("forward", "trades", 2)}  # fmt: skip
    for (server, _feed, pages), w in windows.items():
        assert w["ticks_per_s"] > 0 and w["cpu_pct"] > 0 and w["us_per_tick"] > 0, w
        assert 0 <= w["loop_pct"] <= w["cpu_pct"] and w["feed_us_per_tick"] >= 0, w
        assert w["pipeline_lag_ms"]["p99"] >= 0 and w["others_pct"] >= 0, w
        if server == "gateway":  # its own /stats: what it sent in the window
            assert w["ms_per_update"] >= 0 and w["lines_per_update"] > 0 and w["start_s"] > 0, w
        if pages:
            assert w["lines_per_s"] > 0 and w["updates_per_s"] > 0 and w["us_per_line"] >= 0, w
            assert isinstance(w["every_update"], bool) and w["pages_cpu_pct"] >= 0, w
            assert set(w["lag_ms"]) == {"p50", "p90", "p99", "max"} and w["repeats_per_s"] >= 0, w
        else:
            assert w["every_update"] is None and w["lines_per_s"] is None, w
    for feed in ("trades", "moves"):  # two pages at 1,000 ticks/s: every update, in order
        w = windows["gateway", feed, 2]
        assert w["every_update"] and w["missing"] == 0 and w["updates_sent"] > 0, w
        assert w["delivery_ms"]["p50"] >= 0 and w["lag_ms"]["p50"] > 0, w
    assert set(doc["marginal"]) == {"gateway trades", "gateway moves", "forward trades"}
    browser = doc["browser"]
    if os.environ.get("FEEDMUX_REQUIRE_SERVICES") == "1":  # elsewhere chromium may be missing
        assert "skipped" not in browser, browser
    if "skipped" not in browser:
        assert browser["lines"] > 0 and browser["lag_ms"]["p50"] > 0, browser
        assert browser["gateway_cpu_pct"] > 0 and browser["page"]["messages_per_s"] > 0, browser
    assert "every update" in stdout and "marginal CPU of a page" in stdout  # the table
