"""Failing disk writes: counted always, logged once per kind, shown by status and metrics."""

from __future__ import annotations

import errno
import io
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from feedmux.errors import StoreError
from feedmux.ops.metrics import StatsCollector
from feedmux.ops.status import build_status, progress_line, render
from feedmux.stats import read_stats, write_stats
from feedmux.writes import LogFileHandler, WriteHealth, reason_of
from tests.stats_samples import shard_stats, store_stats

FULL = OSError(errno.ENOSPC, "No space left on device")


def test_a_failing_kind_is_logged_when_it_starts_and_when_it_recovers_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = WriteHealth()
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            health.failed("store", StoreError("SQLite write failed: database or disk is full"),
                          "ticks")  # fmt: skip
        health.failed("store", FULL, "books")
        health.ok("store", "ticks")
        assert health.failing("store")  # the books writer still fails
        health.ok("store", "books")
    assert not health.failing("store")
    [failure] = health.failures()
    assert (failure.kind, failure.reason, failure.failures) == ("store", "disk full", 6)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "store writes failing", "store writes work again after 6 failures"]  # fmt: skip


def test_reasons_are_read_through_the_causes() -> None:
    try:
        try:
            raise FULL
        except OSError as exc:
            raise StoreError("cannot write journal j") from exc
    except StoreError as wrapped:
        assert reason_of(wrapped) == "disk full"
    assert reason_of(OSError(errno.EROFS, "ro")) == "read-only file system"
    assert reason_of(StoreError("boom\nmore")) == "boom"


def test_stats_that_cannot_be_replaced_are_written_over_in_place(tmp_path: Path) -> None:
    assert write_stats(tmp_path, shard_stats(0, stored=1, stores={"sqlite:///d": store_stats()}))
    (tmp_path / ".shard-0.json.tmp").mkdir()  # a new file cannot be made, as on a full disk
    assert write_stats(tmp_path, shard_stats(0, stored=2))
    assert read_stats(tmp_path).shards[0].stored == 2
    (tmp_path / ".shard-1.json.tmp").mkdir()
    assert not write_stats(tmp_path, shard_stats(1))  # no old file: counted, no raise


def test_status_and_metrics_say_what_is_failing(tmp_path: Path) -> None:
    health = WriteHealth()
    health.failed("store", FULL)
    write_stats(tmp_path, shard_stats(0, time_ns=1, failing_writes=health.failures()))
    stats = read_stats(tmp_path)
    status = build_status(None, stats, 1, wall_ns=1)
    assert status.failing == ["shard-0: store failing: disk full (1 failed writes)"]
    assert "store failing: disk full" in progress_line(status, 1.0)
    console = Console(width=140, record=True, file=io.StringIO())
    console.print(render(status))
    assert "shard-0: store failing: disk full" in console.export_text()
    registry = CollectorRegistry()
    registry.register(StatsCollector(tmp_path))
    text = generate_latest(registry).decode()
    labels = 'kind="store",process="shard-0",reason="disk full"'
    assert f"feedmux_disk_writes_failing{{{labels}}} 1.0" in text
    assert f"feedmux_disk_write_failures_total{{{labels}}} 1.0" in text


def test_a_bad_log_call_is_logging_s_problem_not_the_callers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = LogFileHandler(tmp_path / "feedmux.log", encoding="utf-8")
    log = logging.getLogger("test.bad-call")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("%d ticks", "many")  # a TypeError inside logging: reported, not raised
        log.warning("still %s", "logging")
    finally:
        log.removeHandler(handler)
        handler.close()
    assert "still logging" in (tmp_path / "feedmux.log").read_text()
    assert "TypeError" in capsys.readouterr().err


def test_a_failing_relay_says_what_happens_meanwhile_and_its_error_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = WriteHealth()
    with caplog.at_level(logging.WARNING):
        health.failed("nats", StoreError("cannot reach NATS at nats://h:4222: refused"), "0")
    [record] = caplog.records
    assert record.getMessage() == (
        "nats writes failing: cannot reach NATS at nats://h:4222: refused; publications are "
        "kept in memory and retried until they work again"
    )
