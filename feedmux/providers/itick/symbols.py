"""iTick's spellings of a stock code, to and from feedmux's canonical form.

Requests name a code ``symbol$region`` (``600519$SH``, ``700$HK``, ``AAPL$US``). Pushes name it
in ``s`` in several ways: ``AAPL.US``, ``700.HK`` or ``00700.HK``, or bare: ``600519`` (an
A-share: its exchange from its prefix), ``700`` / ``00700`` (Hong Kong), ``AAPL`` (US).
``canonical`` is the one reading of ``s``: the receiver's peek and the shard's decode both call
it, so a push's route key and its decoded code are always the same.
"""

from __future__ import annotations

from functools import lru_cache

from feedmux.codes import infer_exchange, normalize

REGIONS = frozenset(("SH", "SZ", "HK", "US"))  # BJ: UNCONFIRMED, not carried
_CACHED = 1 << 16  # distinct spellings remembered (a hostile feed cannot grow it further)


@lru_cache(maxsize=_CACHED)
def canonical(s: str) -> str | None:
    """feedmux's code for a push's ``s`` (or a request's ``symbol$region``); None when it is
    no code of a region iTick serves here."""
    text = s.strip().upper()
    symbol, dollar, region = text.rpartition("$")
    if dollar:
        text = f"{symbol}.{region}"
    if text.isdigit() and len(text) <= 5:  # HKEX: 1 to 5 digits
        text += ".HK"
    elif text.isdigit() and infer_exchange(text) not in ("SH", "SZ"):
        return None  # six digits of no carried board (a BJ code among them)
    try:
        code = normalize(text)
    except ValueError:
        return None
    return code if code.rpartition(".")[2] in REGIONS else None


def vendor_code(code: str) -> str:
    """iTick's request spelling of a canonical code: ``700.HK`` -> ``700$HK``."""
    symbol, _, region = code.rpartition(".")
    return f"{symbol}${region}"


def request_params(codes: list[str]) -> str:
    """A request's ``params``: the codes, comma-separated, in iTick's spelling."""
    return ",".join(vendor_code(c) for c in codes)


def parse_params(params: str) -> list[str | None]:
    """A request's codes, canonical (None where one is no code), in order."""
    return [canonical(p) for p in params.split(",") if p.strip()]
