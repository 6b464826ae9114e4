"""Output that cannot be written (a full disk, /dev/full) is said once, never a traceback."""

from __future__ import annotations

import errno
import io
import sys

import pytest

from feedmux.ops import cli
from feedmux.ops.cli import main


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
