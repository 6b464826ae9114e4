"""Output that cannot be written (a full disk, /dev/full) is said once, never a traceback."""

from __future__ import annotations

import errno
import io
import sys
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from feedmux.ops import cli
from feedmux.ops.cli import main
from feedmux.ops.cli_show import show_snapshot


class FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_command_whose_output_cannot_be_written_says_so_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdout", FullDisk())
    assert main(["config", "show"], env={}) == 1
    assert capsys.readouterr().err == (
        "feedmux config: cannot write the output: [Errno 28] No space left on device\n"
    )


def test_any_other_os_error_is_not_taken_for_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> int:
        raise OSError(errno.EIO, "a disk of the store")

    monkeypatch.setitem(cli.COMMANDS, "config", broken)
    with pytest.raises(OSError, match="a disk of the store"):
        main(["config", "show"], env={})


class NoQuotes:
    """A SnapshotClient whose shards hold no tick yet."""

    def get(self, codes: list[str]) -> dict[str, object]:
        return {}

    def dataframe(self, quotes: list[object]) -> pd.DataFrame:
        return pd.DataFrame()


def test_snapshot_of_a_quiet_code_under_a_whole_market_does_not_call_it_unsubscribed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    subscribed = ["*.US", "600519.SH"]
    code = show_snapshot(NoQuotes(), ["AAPL.US", "600519.SH", "600000.SH"], "csv",  # type: ignore[arg-type]
                         ZoneInfo("UTC"), lambda: subscribed)  # fmt: skip
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        "AAPL.US: subscribed, no tick yet",
        "600519.SH: subscribed, no tick yet",
        "600000.SH: not subscribed",
    ]
