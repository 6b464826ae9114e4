"""Each store keeps one bar label: bars are keyed by code and time, so start- and end-labelled
bars of one minute would be two rows. The first run records the label (SQLite: a file beside
the shard files; PostgreSQL: ``feedmux_meta``); a store with bars but no record was written
before labels existed, by their start. ``--bar-label`` unset takes the stores' label (end for a
new store), so an upgraded deployment keeps its bars as they were; set, a store with the other
label refuses the run before any worker starts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from feedmux.errors import StoreError
from feedmux.shard.stores.urls import SQLITE, Store

LABEL_FILE = "bar-label"  # in <store>/ticks/, beside the shard files: "start" or "end"
LABELS = ("start", "end")
NEW_STORE = "end"  # A-share tools label a bar by its end


def resolve_bar_label(stores: list[Store], asked: str) -> str:
    """The label of this run's bars: ``asked`` ("" for the stores'), recorded in every store
    that has none yet. Raises ``StoreError`` naming the store and the fix on a conflict."""
    kept = {store: _label(store, None) for store in stores}
    labels = {label for label in kept.values() if label is not None}
    if not asked and len(labels) > 1:
        listed = ", ".join(f"{s.shown} by their {kept[s]}" for s in stores if kept[s])
        raise StoreError(f"the stores label their bars differently ({listed}): choose one "
                         "with --bar-label, or use other stores")  # fmt: skip
    label = asked or (labels.pop() if labels else NEW_STORE)
    for store, held in kept.items():
        if held is None:
            _label(store, label)
        elif held != label:
            raise StoreError(f"{store.shown} keeps bars labelled by their {held} (--bar-label "
                             f"{held}); this run asks for --bar-label {label}: run without "
                             "--bar-label or with its label, or use another store (one "
                             "minute's bar would be stored twice, under two times)")  # fmt: skip
    return label


def stored_bar_label(location: Path) -> str:
    """The label of a SQLite store's bars (the archive's export reads it): "start" unless
    recorded otherwise."""
    return _read_file(location / "ticks" / LABEL_FILE) or "start"


def _label(store: Store, record: str | None) -> str | None:
    if store.kind != SQLITE:
        from feedmux.shard.stores import postgres  # noqa: PLC0415 (psycopg only when asked for)

        return postgres.bar_label(store.location, record)
    from feedmux.shard.stores import sqlite  # noqa: PLC0415

    folder = Path(store.location) / sqlite.TICKS_DIR
    path = folder / LABEL_FILE
    held = _read_file(path)
    if held is not None:
        return held
    if any(sqlite.has_bars(f) for f in sorted(folder.glob("shard-*.sqlite"))):
        record = "start"
    if record is not None:
        _write_file(path, record)
    return record


def _read_file(path: Path) -> str | None:
    """The recorded label; None when there is none (no file, or an empty one: a write cut
    short)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if text and text not in LABELS:
        raise StoreError(f"{path} says {text[:20]!r}, not start or end: write the label of "
                         "its bars there (start if unsure: the one before labels)")  # fmt: skip
    return text or None


def _write_file(path: Path, label: str) -> None:
    """Atomically: a crash leaves the old file or the new one, never half of it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{LABEL_FILE}-")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(label + "\n")
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    except OSError as e:
        raise StoreError(f"cannot write {path}: {e.strerror or e}") from None
