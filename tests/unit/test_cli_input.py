"""Small mistakes people make on the command line: each gets a clear answer, none a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedmux import __version__
from feedmux.codes import read_symbols_file
from feedmux.errors import SymbolError
from feedmux.ops import cli
from feedmux.ops.cli import Command, build_parser, main


def test_a_symbols_file_with_a_bom_and_crlf_lines_is_read(tmp_path: Path) -> None:
    path = tmp_path / "watch.txt"
    path.write_bytes(b"\xef\xbb\xbf600519.SH\r\n000001.SZ, 300750\r\n# note\r\n")
    assert read_symbols_file(path) == ["600519.SH", "000001.SZ", "300750.SZ"]


def test_empty_codes_is_an_error_not_the_whole_market(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--replay", "--codes", "", "--data-dir", str(tmp_path)], env={})
    assert code == 2
    assert "empty" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing started


def test_many_bad_codes_print_a_summary_and_the_first_twenty() -> None:
    error = SymbolError([(f"f.txt:{i}", f"BAD{i}X", "not a recognised code spelling")
                         for i in range(1, 16_001)])  # fmt: skip
    lines = str(error).splitlines()
    assert len(lines) < 25
    assert "16,000 invalid symbols" in lines[0]
    assert "f.txt:20: 'BAD20X'" in str(error) and "f.txt:21:" not in str(error)
    assert "15,980 more" in lines[-1]
    assert len(error.problems) == 16_000  # the whole list stays available to callers


@pytest.mark.parametrize("level", ["info", "Debug", "WARNING"])
def test_log_level_is_case_insensitive(level: str) -> None:
    args = build_parser().parse_args(["run", "--log-level", level])
    assert args.log_level == level.upper()
    args = build_parser().parse_args(["replay", "--log-level", level])
    assert args.log_level == level.upper()


def test_a_bad_log_level_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--codes", "600519", "--log-level", "loud"], env={})
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown log level 'loud'" in err and "INFO" in err


def test_a_bad_log_level_in_the_environment_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"FEEDMUX_TOKEN": "x", "FEEDMUX_LOG_LEVEL": "chatty"}
    assert main(["run", "--codes", "600519", "--data-dir", str(tmp_path)], env=env) == 2
    assert "unknown log level 'chatty'" in capsys.readouterr().err


def test_keygen_into_a_missing_directory_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no" / "such"
    assert main(["keygen", str(missing)], env={}) == 2
    assert f"no such directory: {missing}" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"], env={})
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"feedmux {__version__}"


def test_run_help_groups_its_options() -> None:
    listed: list[Command] = []
    build_parser(listed)
    text = next(parser for name, _, parser in listed if name == "feedmux run").format_help()
    for group in ("vendor:", "sharding:", "stores:", "publishing:", "limits:", "display:",
                  "network:", "replay server:"):  # fmt: skip
        assert f"\n{group}\n" in text, group
    assert "\noptions:\n" in text  # -h and --config stay on their own


def test_a_broken_pipe_that_is_not_stdouts_is_an_error_not_a_quiet_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def worker_pipe_broke(args: object, env: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")  # e.g. a database connection, not our reader

    monkeypatch.setitem(cli.COMMANDS, "status", worker_pipe_broke)
    with pytest.raises(BrokenPipeError):
        main(["status"], env={})


@pytest.mark.parametrize("value", ["0", "-5"])
def test_stop_after_must_be_a_positive_time(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--replay", "--codes", "600519", "--stop-after", value], env={})
    assert exit_.value.code == 2
    assert "must be > 0" in capsys.readouterr().err
