"""Store throughput: rows/s of each sink's ``write_batch`` in 100-row batches, as a shard writes.

    python -m benchmarks.stores [--rows N] [--json PATH]

Each store runs in its own subprocess on the same seeded ticks (5,430 codes, random order, as
a shard sees them): SQLite in a temporary directory (merges included), PostgreSQL in a fresh
schema of ``FEEDMUX_BENCH_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``),
dropped afterwards. A store that cannot be reached is reported as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.data import codes_for
from feedmux.model import Tick

POSTGRES = os.environ.get("FEEDMUX_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BATCH = 100


def _ticks(rows: int, seed: int = 7) -> list[Tick]:
    codes = codes_for(5430, seed)
    rng = random.Random(seed)
    seqs = dict.fromkeys(codes, 0)
    out = []
    for i in range(rows):
        code = rng.choice(codes)
        seqs[code] += 1
        t = 1_763_000_000_000_000_000 + i * 20_000
        out.append(Tick(code, seqs[code], t, t + 1000, 10.0 + rng.random(), 100.0, 1000.0, 1))
    return out


def _measure(kind: str, rows: int) -> dict[str, Any]:
    """In this process: write ``rows`` ticks to one store, 100 at a time."""
    ticks = _ticks(rows)
    with tempfile.TemporaryDirectory(prefix="feedmux-stores-") as tmp:
        if kind == "sqlite":
            from feedmux.shard.stores.sqlite import SqliteSink, shard_db_path  # noqa: PLC0415

            sink: Any = SqliteSink(shard_db_path(Path(tmp), 0))
            cleanup = None
        else:
            import psycopg  # noqa: PLC0415

            from feedmux.shard.stores.postgres import PostgresSink  # noqa: PLC0415

            schema = f"feedmux_bench_{uuid.uuid4().hex[:8]}"
            try:
                admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
            except psycopg.Error as exc:
                return {"store": kind, "skipped": str(exc).strip().splitlines()[0]}
            admin.execute(f"CREATE SCHEMA {schema}")
            sink = PostgresSink(f"{POSTGRES}?options=-csearch_path%3D{schema}")

            def cleanup() -> None:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")
                admin.close()

        start, cpu = time.perf_counter(), time.process_time()
        written = 0
        for i in range(0, rows, BATCH):
            written += sum(sink.write_batch(ticks[i : i + BATCH]))
        if kind == "sqlite":
            written += sum(sink.write_batch([]))  # the last merge, as a shard does at exit
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        sink.close()
        if cleanup is not None:
            cleanup()
    assert written == rows, (written, rows)
    return {"store": kind, "rows": rows, "rows_per_s": round(rows / wall),
            "cpu_us_per_row": round(cpu / rows * 1e6, 2)}  # fmt: skip


def run(rows: int) -> list[dict[str, Any]]:
    """Each store in a fresh subprocess."""
    results = []
    for kind in ("sqlite", "postgresql"):
        proc = subprocess.run([sys.executable, "-m", "benchmarks.stores", "--one", kind,
                               "--rows", str(rows)], capture_output=True, text=True,
                              check=False)  # fmt: skip
        if proc.returncode != 0:
            results.append({"store": kind, "skipped": proc.stderr.strip()[-300:]})
        else:
            results.append(json.loads(proc.stdout))
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'store':<12} {'rows/s':>10} {'CPU us/row':>11}  (100-row batches, this process)"]
    for r in results:
        if "skipped" in r:
            lines.append(f"{r['store']:<12} skipped: {r['skipped']}")
        else:
            lines.append(f"{r['store']:<12} {r['rows_per_s']:>10,} {r['cpu_us_per_row']:>11}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description="store throughput, rows/s")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--one", choices=("sqlite", "postgresql"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(_measure(args.one, args.rows)))
        return 0
    results = run(args.rows)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
