"""``--store URL`` values: which stores a run writes to, and opening one shard's sink on each."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from feedmux.errors import ConfigError
from feedmux.sinks.base import Sink

SQLITE = "sqlite"
POSTGRES = "postgresql"


class Store(NamedTuple):
    kind: str  # sqlite | postgresql
    location: str  # a directory for sqlite, the connection URL for postgresql

    @property
    def shown(self) -> str:
        """For logs and status: a PostgreSQL URL with its password masked."""
        if self.kind == SQLITE:
            return f"sqlite:///{self.location}"
        from feedmux.sinks.postgres import redact_url  # noqa: PLC0415 (psycopg loads lazily)

        return redact_url(self.location)


def parse_store(url: str, data_dir: str) -> Store:
    """``sqlite:///DIR`` (relative; ``sqlite:////DIR`` absolute, ``sqlite://`` alone the data
    directory) or ``postgresql://…``."""
    if url.startswith("sqlite://"):
        return Store(SQLITE, url.removeprefix("sqlite://").removeprefix("/") or data_dir)
    if url.startswith(("postgresql://", "postgres://")):
        return Store(POSTGRES, url)
    shown = url.rsplit("@", maxsplit=1)[-1] if "@" in url else url  # never echo a password
    raise ConfigError(f"--store must be sqlite:///DIR or postgresql://..., got {shown!r}")


def open_sink(store: Store, shard: int) -> Sink:
    """One shard's sink on ``store`` (raises StoreError when it cannot be opened)."""
    if store.kind == SQLITE:
        from feedmux.sinks.sqlite import SqliteSink, shard_db_path  # noqa: PLC0415

        return SqliteSink(shard_db_path(Path(store.location), shard))
    from feedmux.sinks.postgres import PostgresSink  # noqa: PLC0415 (only when asked for)

    return PostgresSink(store.location)
