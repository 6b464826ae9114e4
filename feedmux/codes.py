"""Parse the many spellings of a stock code into feedmux's canonical form (a vendor's provider
maps it to the vendor's spelling).

Canonical forms: ``600519.SH``, ``000001.SZ``, ``920118.BJ``, ``700.HK`` (no leading zeros),
``AAPL.US``. A bare six-digit code gets its exchange from its prefix; a bare five-digit one is
Hong Kong's (HKEX writes ``00700``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from feedmux.errors import ConfigError, SymbolError

# Stock prefixes that name the exchange of a bare six-digit code.
_A_SHARE_PREFIXES: dict[str, str] = {
    **dict.fromkeys(("600", "601", "603", "605", "688", "689", "900"), "SH"),
    **dict.fromkeys(("000", "001", "002", "003", "300", "301", "200"), "SZ"),
    "920": "BJ",
}
_BJ_LEGACY_PREFIXES = ("43", "83", "87")
# Index prefixes, accepted only where the exchange is spelled out (000001.SH is the SSE Composite).
_INDEX_PREFIXES = {"SH": ("000",), "SZ": ("399",), "BJ": ("899",)}

_EXCHANGE_ALIASES = {
    "SH": "SH", "SS": "SH", "SSE": "SH", "SHSE": "SH", "XSHG": "SH",
    "SZ": "SZ", "SZSE": "SZ", "XSHE": "SZ",
    "BJ": "BJ", "BSE": "BJ", "BJSE": "BJ",
    "HK": "HK", "HKEX": "HK", "SEHK": "HK", "XHKG": "HK",
    "US": "US", "NASDAQ": "US", "NYSE": "US", "AMEX": "US", "ARCA": "US", "BATS": "US",
}  # fmt: skip

_PREFIXED = re.compile(r"^(SH|SZ|BJ)(\d{6})$")
_SUFFIXED = re.compile(r"^([A-Z0-9][A-Z0-9.\-]*)\.([A-Z]+)$")
_COLON = re.compile(r"^([A-Z]+):([A-Z0-9][A-Z0-9.\-]*)$")
_SIX_DIGITS = re.compile(r"^\d{6}$")
_HK_DIGITS = re.compile(r"^\d{1,5}$")
_HK_FIVE_DIGITS = re.compile(r"^\d{5}$")
_US_TICKER = re.compile(r"^[A-Z][A-Z0-9]{0,5}([.\-][A-Z])?$")


WHOLE_MARKET = "*"  # ``*.US``: every code of a market, where a vendor can subscribe it so


def is_whole_market(code: str) -> bool:
    """``*.US``: a subscription to a whole market, not one code."""
    return code.startswith(WHOLE_MARKET + ".")


def infer_exchange(digits: str) -> str | None:
    """The exchange of a bare six-digit A-share stock code, or None if no prefix matches."""
    exchange = _A_SHARE_PREFIXES.get(digits[:3])
    if exchange is None and digits.startswith(_BJ_LEGACY_PREFIXES):
        exchange = "BJ"
    return exchange


def _a_share(digits: str, exchange: str | None) -> str:
    inferred = infer_exchange(digits)
    if exchange is None:
        if inferred is None:
            raise ValueError("no A-share exchange uses this prefix")
        return f"{digits}.{inferred}"
    if inferred != exchange and not digits.startswith(_INDEX_PREFIXES[exchange]):
        where = f"it is a {inferred} code" if inferred else "no such prefix there"
        raise ValueError(f"{digits} is not listed on {exchange} ({where})")
    return f"{digits}.{exchange}"


def _with_exchange(body: str, alias: str) -> str:
    exchange = _EXCHANGE_ALIASES.get(alias)
    if exchange is None:
        raise ValueError(f"unknown exchange {alias!r}")
    if exchange in ("SH", "SZ", "BJ"):
        if not _SIX_DIGITS.match(body):
            raise ValueError(f"{exchange} codes have six digits")
        return _a_share(body, exchange)
    if exchange == "HK":
        if not _HK_DIGITS.match(body) or int(body) == 0:
            raise ValueError("HK codes have one to five digits")
        return f"{int(body)}.HK"
    if not _US_TICKER.match(body):
        raise ValueError("not a US ticker")
    return f"{body.replace('-', '.')}.US"


def normalize(raw: str) -> str:
    """The canonical code for one user spelling; ValueError says why it is not one."""
    text = raw.strip().upper()
    if not text:
        raise ValueError("empty code")
    if _SIX_DIGITS.match(text):
        return _a_share(text, None)
    if _HK_FIVE_DIGITS.match(text):
        return _with_exchange(text, "HK")
    if m := _PREFIXED.match(text):
        return _a_share(m.group(2), m.group(1))
    if m := _COLON.match(text):
        return _with_exchange(m.group(2), m.group(1))
    if _US_TICKER.match(text):  # before suffixes: BRK.B is a share class, not an exchange
        return f"{text.replace('-', '.')}.US"  # BRK-B is BRK.B, as vendors send it
    if m := _SUFFIXED.match(text):
        return _with_exchange(m.group(1), m.group(2))
    raise ValueError("not a recognised code spelling")


def parse_code_entries(entries: Iterable[tuple[str, str]]) -> list[str]:
    """Normalise ``(where, raw)`` pairs, deduplicated in first-seen order.

    Raises SymbolError with every bad entry, or ConfigError when nothing is left.
    """
    seen: dict[str, None] = {}
    problems: list[tuple[str, str, str]] = []
    for where, raw in entries:
        try:
            seen.setdefault(normalize(raw))
        except ValueError as exc:
            problems.append((where, raw, str(exc)))
    if problems:
        raise SymbolError(problems)
    if not seen:
        raise ConfigError("the code list is empty: give at least one code")
    return list(seen)


def parse_codes(raw_codes: Iterable[str]) -> list[str]:
    """Normalise codes given as arguments (e.g. on the command line)."""
    return parse_code_entries((f"argument {i}", raw) for i, raw in enumerate(raw_codes, 1))


def read_symbols_file(path: Path) -> list[str]:
    """Codes from a text file: whitespace or comma separated, ``#`` starts a comment."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not a code
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read symbols file {path}: {exc}") from exc
    entries: list[tuple[str, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for raw in line.split("#", 1)[0].replace(",", " ").split():
            entries.append((f"{path}:{lineno}", raw))
    if not entries:
        raise ConfigError(f"symbols file {path} lists no codes")
    return parse_code_entries(entries)
