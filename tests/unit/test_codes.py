from pathlib import Path

import pytest

from feedmux.codes import normalize, parse_codes, read_symbols_file
from feedmux.errors import ConfigError, SymbolError


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("600519", "600519.SH"), ("sh600519", "600519.SH"), ("SH600519", "600519.SH"),
        ("600519.SH", "600519.SH"), ("SSE:600519", "600519.SH"), ("600519.XSHG", "600519.SH"),
        ("000001.SZ", "000001.SZ"), ("000001", "000001.SZ"), ("SZSE:000001", "000001.SZ"),
        ("000001.XSHE", "000001.SZ"), ("000001.SH", "000001.SH"), ("300750", "300750.SZ"),
        ("688981", "688981.SH"), ("920118.BJ", "920118.BJ"), ("920118", "920118.BJ"),
        ("430047", "430047.BJ"), ("AAPL", "AAPL.US"), ("AAPL.US", "AAPL.US"),
        ("aapl.us", "AAPL.US"), ("NASDAQ:AAPL", "AAPL.US"), ("BRK.B", "BRK.B.US"),
        ("700.HK", "700.HK"), ("00700.HK", "700.HK"), (" 600519 ", "600519.SH"),
        ("00700", "700.HK"), ("09988", "9988.HK"), ("BRK.B.US", "BRK.B.US"),
        ("BRK-B", "BRK.B.US"), ("brk-b.us", "BRK.B.US"),
    ],
)  # fmt: skip
def test_spellings_normalise(raw: str, code: str) -> None:
    assert normalize(raw) == code


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"), ("123456", "no A-share exchange"), ("600519.SZ", "not listed on SZ"),
        ("FOO.XX", "unknown exchange"), ("00000.HK", "one to five digits"),
        ("60051.SH", "six digits"), ("TOOLONGTICKER", "not a recognised"),
        ("6005199", "not a recognised"), ("00000", "one to five digits"),
    ],
)  # fmt: skip
def test_bad_spellings_say_why(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalize(raw)


def test_parse_deduplicates_in_order() -> None:
    assert parse_codes(["600519", "sh600519", "AAPL", "600519.SH"]) == ["600519.SH", "AAPL.US"]


def test_every_bad_code_is_named() -> None:
    with pytest.raises(SymbolError) as info:
        parse_codes(["600519", "bad!", "123456"])
    assert [p[1] for p in info.value.problems] == ["bad!", "123456"]


def test_empty_list_is_an_error() -> None:
    with pytest.raises(ConfigError, match="empty"):
        parse_codes([])


def test_symbols_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "codes.txt"
    path.write_text("# watch list\n600519, 000001\n\nAAPL.US 999999\n")
    with pytest.raises(SymbolError) as info:
        read_symbols_file(path)
    assert f"{path}:4: '999999'" in str(info.value)


def test_symbols_file_reads_codes(tmp_path: Path) -> None:
    path = tmp_path / "codes.txt"
    path.write_text("600519  # Moutai\n000001,700.HK\n")
    assert read_symbols_file(path) == ["600519.SH", "000001.SZ", "700.HK"]


def test_empty_symbols_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "codes.txt"
    path.write_text("# nothing here\n\n")
    with pytest.raises(ConfigError, match="lists no codes"):
        read_symbols_file(path)


def test_missing_symbols_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read symbols file"):
        read_symbols_file(tmp_path / "nope.txt")
