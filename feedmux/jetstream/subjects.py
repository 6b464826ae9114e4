"""Subjects and message ids on JetStream: ``<prefix>.<family>.<market>.<symbol>``.

``600519.SH``'s trades are ``feedmux.trades.SH.600519``, ``AAPL.US``'s books
``feedmux.books.US.AAPL``. A subject token cannot hold ``.``, ``*``, ``>`` or white space, so a
symbol's characters other than ASCII letters, digits, ``-`` and ``_`` are written ``%XX`` (each
UTF-8 byte in upper-case hex): ``BRK.B.US`` → ``feedmux.trades.US.BRK%2EB``. docs/wire.md
documents both; a consumer without feedmux reverses the escape with ``urllib.parse.unquote``.

Each message's ``Nats-Msg-Id`` is the identity of what it carries, so JetStream stores it once
however often it is published within the stream's duplicate window (a retried batch, a
restarted shard, a second instance of the same vendor on the same codes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import unquote

from feedmux import families, wire
from feedmux.families import Family
from feedmux.market.day import trading_day

# The families that go to JetStream (every relayed one), by their one word.
RELAYED: dict[str, Family] = {f.name: f for f in families.FAMILIES if f.relayed}
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")  # a prefix token, as feedmux accepts one


def escape(symbol: str) -> str:
    """``symbol`` as one subject token."""
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), symbol)


def unescape(token: str) -> str:
    return unquote(token)


def check_prefix(prefix: str) -> str:
    """A prefix is one or more dot-separated tokens of letters, digits, ``-`` and ``_``."""
    if not all(_TOKEN.match(part) for part in prefix.split(".")):
        raise ValueError(f"a subject prefix is tokens of letters, digits, - and _ joined by "
                         f"dots, not {prefix!r}")  # fmt: skip
    return prefix


def split_code(code: str) -> tuple[str, str]:
    """``(market, symbol)`` of a canonical code: ``600519.SH`` → ``("SH", "600519")``."""
    symbol, dot, market = code.rpartition(".")
    if not dot or not symbol or not market:
        return "", code
    return market, symbol


def subject(prefix: str, family: Family, code: str) -> str:
    market, symbol = split_code(code)
    return f"{prefix}.{family.name}.{escape(market) or '_'}.{escape(symbol)}"


@lru_cache(maxsize=1 << 16)  # a shard's codes x families: built once each, not per message
def of_topic(prefix: str, topic: bytes) -> str | None:
    """The subject of a PUB topic (``b"T|600519.SH"``); None for a family not relayed."""
    family = families.of_topic(topic)
    if family is None or not family.relayed:
        return None
    return subject(prefix, family, topic[len(family.prefix) :].decode())


def parse(prefix: str, name: str) -> tuple[Family, str] | None:
    """``(family, code)`` of a subject under ``prefix``; None for anything else."""
    if not name.startswith(prefix + "."):
        return None
    parts = name[len(prefix) + 1 :].split(".")
    if len(parts) != 3 or parts[0] not in RELAYED:
        return None
    market, symbol = unescape(parts[1]), unescape(parts[2])
    return RELAYED[parts[0]], f"{symbol}.{market}" if market != "_" else symbol


def filter_subject(prefix: str, names: Iterable[str] = (), codes: Iterable[str] = (),
                   markets: Iterable[str] = ()) -> str:  # fmt: skip
    """The narrowest one subject (with wildcards) that covers the families ``names``, the
    ``codes`` and the ``markets`` (each empty: all); ``matches`` narrows further."""
    names, codes, markets = sorted(set(names)), sorted(set(codes)), sorted(set(markets))
    family = names[0] if len(names) == 1 else "*"
    pairs = {split_code(code) for code in codes}
    code_markets = {market for market, _ in pairs}
    if len(code_markets) == 1 and (not markets or markets == sorted(code_markets)):
        market = escape(code_markets.pop())
    else:
        market = escape(markets[0]) if len(markets) == 1 and not codes else "*"
    symbol = escape(next(iter(pairs))[1]) if len(pairs) == 1 else "*"
    return f"{prefix}.{family}.{market}.{symbol}"


def message_id(vendor: str, family: Family, payload: wire.Payload) -> str:
    """What JetStream deduplicates on: the vendor, the family and the item's identity (a
    trade's or book's trading day and seq, like the stores' keys; a bar's minute and what it
    holds, since an amended bar is published again)."""
    if isinstance(payload, wire.PublishedBar):
        bar = payload.bar
        return f"{vendor}:{family.name}:{bar.code}:{bar.minute_ns}:{bar.count}:{bar.last[1]}"
    item = payload.item
    return f"{vendor}:{family.name}:{item.code}:{trading_day(item.time_ns, item.code)}:{item.seq}"
