"""The archive: one trading day of every shard's ticks as a hive-partitioned dataset,
``<out>/ticks/date=YYYY-MM-DD/part-0.parquet`` (zstd) or ``.csv``, sorted by code and time.

A day is a calendar day in the exchange's time zone (Asia/Shanghai unless told). Codes are
exported in groups of ``GROUP_CODES``, each group read from every shard's file by primary key
and written as its own row groups, so memory stays bounded whatever the size of the day.
pandas, pyarrow, DuckDB and Polars read the result as is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from feedmux.client.query import Filters, shard_files, shard_rows
from feedmux.errors import StoreError
from feedmux.market.day import DAY_NS, trading_days
from feedmux.market.sessions import MINUTE_NS
from feedmux.shard.stores.labels import stored_bar_label
from feedmux.shard.stores.sqlite import TICKS_DIR

EXCHANGE_TZ = "Asia/Shanghai"
GROUP_CODES = 250
_UTC_NS = pa.timestamp("ns", tz="UTC")
TICKS_SCHEMA = pa.schema([
    ("code", pa.string()), ("seq", pa.int64()), ("time", _UTC_NS), ("recv_time", _UTC_NS),
    ("price", pa.float64()), ("volume", pa.float64()), ("turnover", pa.float64()),
    ("direction", pa.int8()),
])  # fmt: skip
BARS_SCHEMA = pa.schema([
    ("code", pa.string()), ("minute", _UTC_NS), ("open", pa.float64()), ("high", pa.float64()),
    ("low", pa.float64()), ("close", pa.float64()), ("volume", pa.float64()),
    ("turnover", pa.float64()), ("count", pa.int64()),
])  # fmt: skip
SCHEMAS = {"ticks": TICKS_SCHEMA, "bars": BARS_SCHEMA}
_TIME = {"ticks": "time", "bars": "minute"}
_PARTITIONING = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")


class Exported(NamedTuple):
    rows: int
    codes: int
    path: Path


def day_bounds(day: date, tz: str = EXCHANGE_TZ) -> tuple[int, int]:
    """[start, end) of ``day`` in ``tz``, as nanoseconds UTC."""
    start = pd.Timestamp(day).tz_localize(tz)
    end = pd.Timestamp(day + timedelta(days=1)).tz_localize(tz)
    return int(start.value), int(end.value)


def _shard_files(data_dir: Path) -> list[Path]:
    files = shard_files(data_dir)
    if not files:
        raise StoreError(f"no SQLite store in {data_dir} (expected {data_dir / TICKS_DIR})")
    return files


def _group_table(files: list[Path], codes: list[str], where: str, params: list[Any]) -> pa.Table:
    marks = ",".join("?" * len(codes))
    sql = ("SELECT code, seq, time_ns, recv_ns, price, volume, turnover, direction FROM {table} "
           f"WHERE code IN ({marks}) AND {where}")  # fmt: skip
    rows = shard_rows(files, "ticks", sql, [*codes, *params])
    columns: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 8
    table = pa.table({
        "code": pa.array(columns[0], pa.string()), "seq": pa.array(columns[1], pa.int64()),
        "time": pa.array(columns[2], pa.int64()).cast(_UTC_NS),
        "recv_time": pa.array(columns[3], pa.int64()).cast(_UTC_NS),
        "price": pa.array(columns[4], pa.float64()), "volume": pa.array(columns[5], pa.float64()),
        "turnover": pa.array(columns[6], pa.float64()),
        "direction": pa.array(columns[7], pa.int8()),
    })  # fmt: skip
    # A tick stored by two shards (the shard count changed between runs) appears once, by its
    # identity (code, trading day, seq): a day in another --tz may span two trading days.
    table = table.sort_by([("code", "ascending"), ("time", "ascending"), ("seq", "ascending")])
    days = pa.array(trading_days(table["code"].to_pandas(),
                                 pc.cast(table["time"], pa.int64()).to_numpy()))  # fmt: skip
    keys = pc.binary_join_element_wise(table["code"], pc.cast(days, pa.string()),
                                       pc.cast(table["seq"], pa.string()), "|")  # fmt: skip
    if len(pc.unique(keys)) != len(keys):
        df = table.to_pandas()
        df = df[~pd.Series(keys.to_pylist()).duplicated().to_numpy()]
        table = pa.Table.from_pandas(df, schema=TICKS_SCHEMA, preserve_index=False)
    return table


def export(
    data_dir: Path,
    day: date,
    out: Path,
    *,
    fmt: str = "parquet",
    tz: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Exported:
    """Write ``day``'s ticks of every shard under ``out/ticks/date=YYYY-MM-DD/``: the ticks
    whose trading day it is (``feedmux.market.day``: each code's exchange decides), or with
    ``tz`` those of that calendar day in ``tz``. Its bars go to ``out/bars/date=…/`` alike.
    A file that cannot be written (a path through a file, a full disk) is a StoreError."""
    try:
        return _export(data_dir, day, out, fmt=fmt, tz=tz, progress=progress)
    except OSError as exc:
        where = exc.filename or out
        raise StoreError(f"cannot write the archive at {where}: {exc.strerror or exc}") from exc


def _export(data_dir: Path, day: date, out: Path, *, fmt: str, tz: str | None,
            progress: Callable[[int, int], None] | None) -> Exported:  # fmt: skip
    if fmt not in ("parquet", "csv"):
        raise StoreError(f"--format must be parquet or csv, got {fmt!r}")
    files = _shard_files(data_dir)
    number = (day - date(1970, 1, 1)).days
    if tz is None:
        where, params = "trading_day = ?", [number]
    else:
        where, params = "time_ns >= ? AND time_ns < ?", list(day_bounds(day, tz))
    distinct = f"SELECT DISTINCT code FROM {{table}} WHERE {where}"
    codes = sorted({row[0] for row in shard_rows(files, "ticks", distinct, params)})
    if not codes:  # an empty partition would read as "that day had no trades"
        which = "trading day" if tz is None else f"calendar day in {tz}"
        raise StoreError(f"no ticks on {day.isoformat()} (the {which}) in {data_dir}: nothing "
                         "exported (is it the right --date and --data-dir?)")  # fmt: skip
    folder = out / "ticks" / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"part-0.{fmt}"
    partial = folder / f".part-0.{fmt}.tmp"  # readers never see a half-written file
    rows = 0
    groups = [codes[i : i + GROUP_CODES] for i in range(0, len(codes), GROUP_CODES)] or [[]]
    writer: pq.ParquetWriter | pacsv.CSVWriter
    if fmt == "parquet":
        writer = pq.ParquetWriter(partial, TICKS_SCHEMA, compression="zstd")
    else:
        writer = pacsv.CSVWriter(partial, TICKS_SCHEMA)
    try:
        for done, group in enumerate(groups, 1):
            table = (
                _group_table(files, group, where, params) if group else TICKS_SCHEMA.empty_table()
            )
            writer.write_table(table)
            rows += table.num_rows
            if progress is not None:
                progress(done, len(groups))
    finally:
        writer.close()
    partial.replace(final)
    _export_bars(data_dir, files, day, out, fmt=fmt, tz=tz)
    return Exported(rows, len(codes), final)


def _export_bars(data_dir: Path, files: list[Path], day: date, out: Path, *, fmt: str,
                 tz: str | None) -> None:  # fmt: skip
    """The day's bars (small: one row per code and minute) as ``out/bars/date=…/``: a bar
    belongs to the trading day of its first minute (an end-labelled bar's time is its end)."""
    sql = "SELECT * FROM {table} WHERE minute_ns >= ? AND minute_ns < ?"
    label_ns = MINUTE_NS if stored_bar_label(data_dir) == "end" else 0  # by its first minute
    if tz is not None:
        start_ns, end_ns = day_bounds(day, tz)
        rows = shard_rows(files, "bars", sql, (start_ns + label_ns, end_ns + label_ns))
    else:  # every zone's day lies within a day and a half of UTC's
        start_ns, end_ns = day_bounds(day, "UTC")
        rows = shard_rows(files, "bars", sql, (start_ns - DAY_NS // 2, end_ns + DAY_NS // 2))
        number = (day - date(1970, 1, 1)).days
        if rows:
            days = trading_days([r[0] for r in rows], np.array([r[1] - label_ns for r in rows]))
            rows = [row for row, d in zip(rows, days, strict=True) if d == number]
    columns: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 9
    arrays = [pa.array(values, type=field.type if field.name != "minute" else pa.int64())
              for values, field in zip(columns, BARS_SCHEMA, strict=True)]  # fmt: skip
    arrays[1] = arrays[1].cast(_UTC_NS)
    table = pa.Table.from_arrays(arrays, schema=BARS_SCHEMA)
    table = table.sort_by([("code", "ascending"), ("minute", "ascending")])
    folder = out / "bars" / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".part-0.{fmt}.tmp"
    if fmt == "parquet":
        pq.write_table(table, partial, compression="zstd")
    else:
        pacsv.write_csv(table, partial)
    partial.replace(folder / f"part-0.{fmt}")


def is_archive(path: Path) -> bool:
    """True for a directory ``export`` wrote to (``ticks/date=…/``)."""
    return any((path / "ticks").glob("date=*"))


def read(root: Path, table: str, filters: Filters) -> pd.DataFrame:
    """Rows of ``root/<table>`` matching ``filters`` (pushed down to the scan), with the
    reader's column names."""
    folder = root / table
    schema, time = SCHEMAS[table], _TIME[table]
    if not folder.is_dir():
        raise StoreError(f"no {table} in the archive {root}")
    csv = any(folder.glob("date=*/*.csv"))
    fileformat: Any = "parquet"
    if csv:
        fileformat = ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(column_types=schema))
    # Hidden files (a part being written) are skipped: the default ignore prefixes "." "_".
    dataset = ds.dataset(folder, format=fileformat, partitioning=_PARTITIONING)
    expr = None
    if filters.codes is not None:
        expr = _and(expr, pc.field("code").isin(filters.codes))
    if filters.start_ns is not None:
        expr = _and(expr, pc.field(time) >= pa.scalar(filters.start_ns, _UTC_NS))
    if filters.end_ns is not None:
        expr = _and(expr, pc.field(time) < pa.scalar(filters.end_ns, _UTC_NS))
    df: pd.DataFrame = dataset.to_table(filter=expr, columns=schema.names).to_pandas()
    df["code"] = df["code"].astype(object)
    return df


def _and(left: Any, right: Any) -> Any:
    return right if left is None else left & right


def print_progress(done: int, total: int) -> None:
    """A one-line progress bar on stderr, only when it is a terminal."""
    if not sys.stderr.isatty():
        return
    width = 30
    filled = width * done // max(1, total)
    end = "\n" if done == total else ""
    sys.stderr.write(f"\rexporting [{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}")
    sys.stderr.flush()
