"""The desired universe, kept in the data directory: what a restarted run subscribes to."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from feedmux.errors import ConfigError
from feedmux.writes import health

UNIVERSE_FILE = "subscriptions.json"


class _Universe(msgspec.Struct):
    codes: list[str]
    refused: dict[str, str] = {}  # code -> why the vendor refused it (not in ``codes``)


def universe_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / UNIVERSE_FILE


def save_universe(
    data_dir: str | Path, codes: list[str], refused: dict[str, str] | None = None
) -> None:
    path = universe_path(data_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.encode(_Universe(codes, dict(refused or {}))))
    os.replace(tmp, path)  # a crash mid-write never leaves half a file


def keep_universe(
    data_dir: str | Path, codes: list[str], refused: dict[str, str] | None = None
) -> bool:
    """``save_universe`` for a running receiver: a failed write (a full disk) is counted and
    reported once, never fatal; False tells the caller to try again later."""
    try:
        save_universe(data_dir, codes, refused)
    except OSError as exc:
        health.failed("universe", exc)
        return False
    health.ok("universe")
    return True


def load_universe(data_dir: str | Path) -> list[str] | None:
    path = universe_path(data_dir)
    try:
        return msgspec.json.decode(path.read_bytes(), type=_Universe).codes
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"cannot read the saved subscriptions {path}: {exc}; "
                          "delete it or give --symbols-file") from exc  # fmt: skip
