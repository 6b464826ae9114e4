"""``--store URL`` values: which stores a run writes to, and opening one shard's sink on each."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from feedmux.errors import ConfigError
from feedmux.passwords import mask_passwords
from feedmux.shard.stores.base import Sink

SQLITE = "sqlite"
POSTGRES = "postgresql"
ACCEPTED = (
    "sqlite://DIR (sqlite:///abs/dir an absolute path, sqlite://rel/dir relative to the "
    "working directory, sqlite:// alone the data directory) or postgresql://USER@HOST/DB"
)


class Store(NamedTuple):
    kind: str  # sqlite | postgresql
    location: str  # a directory for sqlite, the connection URL for postgresql

    @property
    def shown(self) -> str:
        """For logs and status: a PostgreSQL URL with its password masked."""
        if self.kind == SQLITE:
            return f"sqlite://{self.location}"

        return mask_passwords(self.location)


def parse_store(url: str, data_dir: str) -> Store:
    """``sqlite://PATH`` or ``postgresql://…`` (see ``ACCEPTED``).

    Everything after ``sqlite://`` is the directory as written, as in ``file:///abs``:
    ``sqlite:///abs/dir`` is ``/abs/dir`` (SQLAlchemy's ``sqlite:////abs/dir`` too), and
    ``sqlite://rel/dir`` is relative. (SQLAlchemy reads ``sqlite:///x`` as relative; a leading
    slash that silently means "relative to wherever you started" surprised users more.)"""
    scheme, sep, rest = url.partition("://")
    if sep and scheme == SQLITE:
        return Store(SQLITE, "/" + rest.lstrip("/") if rest.startswith("/") else rest or data_dir)
    if sep and scheme in (POSTGRES, "postgres"):
        return Store(POSTGRES, url)
    shown = f"{scheme}://{rest.rsplit('@', maxsplit=1)[-1]}" if sep else url  # no password
    what = f"the scheme {scheme!r} is not supported" if sep else "it is not a URL"
    raise ConfigError(f"--store {shown!r}: {what}; use {ACCEPTED}")


def open_sink(store: Store, shard: int) -> Sink:
    """One shard's sink on ``store`` (raises StoreError when it cannot be opened)."""
    if store.kind == SQLITE:
        from feedmux.shard.stores.sqlite import SqliteSink, shard_db_path  # noqa: PLC0415

        return SqliteSink(shard_db_path(Path(store.location), shard))
    from feedmux.shard.stores.postgres import PostgresSink  # noqa: PLC0415 (only when asked for)

    return PostgresSink(store.location)
