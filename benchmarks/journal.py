"""What the journal costs and saves: FMJ1 (records as received) against FMJ2 (zstd blocks).

    python -m benchmarks.journal [--ticks N] [--seed S] [--json PATH] [--tiny]

The input is the synthetic market of the pipeline benchmark (``benchmarks.data``: seeded
AllTick trade frames of the 5,430 A-share codes, 50 per millisecond of exchange time), fed to
the receiver's ``JournalWriter.messages`` (its hot path) in socket reads of 50 frames, as the
receiver does. Each configuration runs in its own process:

- FMJ1: the journal module before FMJ2 (feedmux/ingest/journal.py at BASE, taken from git),
  its writer and its readers; and today's reader on the same file (old journals stay readable);
- FMJ2 at zstd levels -1, 1 (the default) and 3 in blocks of 64 KiB (the default), level 1 in
  blocks of 256 KiB and 1 MiB, and the default at 1,000 and 100 ticks/s, where a block is
  written every second (``flush_every_ns``) before it fills.

Measured: bytes per tick on disk (and of the records uncompressed); the writer's CPU µs per
tick (process CPU time, the writes included) and, in a pass of its own, the median wall time
of a call that writes a block; reading: records/s of ``read_journal`` and
pushes/s of ``journal_pushes`` (what ``feedmux replay --journal`` serves), CPU time, best of
several rounds; and the reader's peak memory (tracemalloc, in a pass of its own): one block,
not the file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.data import codes_for, market_file
from feedmux.ingest import journal as now_journal
from feedmux.ingest.journal import Record, read_journal

BASE = "15151a5"  # the journal before FMJ2
REPO = Path(__file__).resolve().parent.parent
PER_READ = 50  # frames in one socket read
RECORD_HEADER = 19  # bytes: kind, recv_ns, conn, length
TOKEN = "benchmark-token-0123456789"


@dataclass(frozen=True)
class Config:
    name: str
    version: int = 2
    level: int = now_journal.LEVEL
    block_bytes: int = now_journal.BLOCK_BYTES
    rate: float = 0.0  # ticks per second of receive time; 0: the input's (50,000)


CONFIGS = (
    Config("FMJ1 (before)", version=1, level=0, block_bytes=0),
    Config("FMJ2 level -1", level=-1),
    Config("FMJ2 level 1 (default)"),
    Config("FMJ2 level 3", level=3),
    Config("FMJ2 level 1, 256 KiB blocks", block_bytes=256 << 10),
    Config("FMJ2 level 1, 1 MiB blocks", block_bytes=1 << 20),
    Config("FMJ2 default at 1,000 ticks/s", rate=1000.0),
    Config("FMJ2 default at 100 ticks/s", rate=100.0),
)
DEFAULT = "FMJ2 level 1 (default)"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _reads(records: list[Record], rate: float) -> list[tuple[int, list[tuple[int, bytes]]]]:
    """The records as the receiver's socket reads: (recv_ns, messages), PER_READ a read."""
    first = records[0].recv_ns
    reads = []
    for i in range(0, len(records), PER_READ):
        recv_ns = first + int(i * 1e9 / rate) if rate else records[i].recv_ns
        reads.append((recv_ns, [(r.kind, r.payload) for r in records[i : i + PER_READ]]))
    return reads


def _best(run: Callable[[], Any], rounds: int) -> float:
    """The least CPU time of ``rounds`` passes (the shared machine's turns do not count)."""
    best = float("inf")
    for _ in range(rounds):
        began = time.process_time()
        run()
        best = min(best, time.process_time() - began)
    return best


def _count(records: Iterator[Any]) -> int:
    return sum(1 for _ in records)


def _block_call_ms(writer_class: Any, options: dict[str, int],
                   reads: list[tuple[int, list[tuple[int, bytes]]]]) -> float:  # fmt: skip
    """The median wall time of a ``messages`` call that writes a block (a pass of its own):
    how long the receiver reads nothing while one is compressed."""
    calls = []
    with tempfile.TemporaryDirectory(prefix="feedmux-journal-") as tmp:
        journal = writer_class(Path(tmp), TOKEN, **options)
        journal.flush(reads[0][0])
        clock = time.perf_counter
        for recv_ns, read in reads:
            written, began = journal.bytes, clock()
            journal.messages(recv_ns, 0, read)
            if journal.bytes != written:
                calls.append(clock() - began)
        journal.close()
    return statistics.median(calls) * 1e3 if calls else 0.0


def measure(config: Config, source: Path, rounds: int, before: Path) -> dict[str, Any]:
    """One configuration, in this process."""
    records = list(read_journal(source))
    reads = _reads(records, config.rate)
    ticks = len(records)
    module = _load(before / "journal.py", "journal_before") if config.version == 1 else None
    options = {} if module else {"level": config.level, "block_bytes": config.block_bytes}
    writer_class = (module or now_journal).JournalWriter
    with tempfile.TemporaryDirectory(prefix="feedmux-journal-") as tmp:
        written: dict[str, Any] = {}

        def write() -> None:
            root = Path(tempfile.mkdtemp(dir=tmp))
            journal = writer_class(root, TOKEN, **options)
            journal.flush(reads[0][0])  # the receiver's first stats turn
            messages = journal.messages
            for recv_ns, read in reads:
                messages(recv_ns, 0, read)
            journal.close()
            written.update(root=root, bytes=journal.bytes, records=journal.records)

        write_s = _best(write, rounds)
        root = written["root"]
        on_disk = sum(p.stat().st_size for p in root.rglob("*.fmj"))
        assert written["records"] == ticks, (config, written)
        reader = module or now_journal
        read_s = _best(lambda: _count(reader.read_journal(root)), rounds)
        pushes_s = _best(lambda: _count(reader.journal_pushes(root)), rounds)
        stall_ms = None if module else _block_call_ms(writer_class, options, reads)
        tracemalloc.start()
        assert _count(reader.read_journal(root)) == ticks
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        result = {
            "name": config.name, "format": f"FMJ{config.version}", "level": config.level,
            "block_bytes": config.block_bytes, "rate": config.rate, "ticks": ticks,
            "bytes": on_disk, "bytes_per_tick": on_disk / ticks,
            "raw_bytes_per_tick": sum(RECORD_HEADER + len(r.payload) for r in records) / ticks,
            "write_us_per_tick": write_s / ticks * 1e6,
            "read_records_per_s": ticks / read_s, "pushes_per_s": ticks / pushes_s,
            "read_peak_kb": peak / 1024, "block_call_ms": stall_ms,
        }  # fmt: skip
        if module:  # old journals, read by today's reader
            now_s = _best(lambda: _count(now_journal.read_journal(root)), rounds)
            result["read_now_records_per_s"] = ticks / now_s
    return result


def _before_module(into: Path) -> str:
    """The journal module at BASE, from git, into ``into``; "" or why it could not be had."""
    shown = subprocess.run(["git", "show", f"{BASE}:feedmux/ingest/journal.py"], cwd=REPO,
                           capture_output=True, check=False)  # fmt: skip
    if shown.returncode != 0:
        return shown.stderr.decode(errors="replace").strip() or "git show failed"
    (into / "journal.py").write_bytes(shown.stdout)
    return ""


def _commit() -> str:
    head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                          capture_output=True, text=True, check=False)  # fmt: skip
    return head.stdout.strip()


def run(codes: int, ticks: int, seed: int, rounds: int) -> dict[str, Any]:
    """Every configuration, each in a fresh subprocess."""
    source = market_file(codes_for(codes, seed), ticks, seed)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="feedmux-journal-before-") as before:
        missing = _before_module(Path(before))
        for config in CONFIGS:
            if missing and config.version == 1:
                results.append({"name": config.name, "skipped": missing})
                continue
            proc = subprocess.run([sys.executable, "-m", "benchmarks.journal", "--one",
                                   config.name, "--source", str(source), "--rounds",
                                   str(rounds), "--before", before],
                                  capture_output=True, text=True, check=False)  # fmt: skip
            if proc.returncode != 0:
                results.append({"name": config.name, "skipped": proc.stderr.strip()[-300:]})
            else:
                results.append(json.loads(proc.stdout))
    sizes = {r["name"]: r.get("bytes_per_tick") for r in results}
    old, new = sizes.get(CONFIGS[0].name), sizes.get(DEFAULT)
    return {"commit": _commit(), "base": BASE, "codes": codes, "ticks": ticks, "seed": seed,
            "rounds": rounds, "per_read": PER_READ,
            "ratio": round(old / new, 2) if old and new else None,
            "results": results}  # fmt: skip


def table(doc: dict[str, Any]) -> str:
    lines = [f"journal at {doc['commit']} ({doc['ticks']:,} trade frames of {doc['codes']:,} "
             f"codes, {doc['per_read']} a read; best of {doc['rounds']}; before = "
             f"{doc['base']}); FMJ2 is {doc['ratio']}x smaller than FMJ1",
             f"{'configuration':<32}{'B/tick':>8}{'vs FMJ1':>9}{'write µs/tick':>15}"
             f"{'block ms':>10}{'read rec/s':>12}{'pushes/s':>11}"
             f"{'read peak KB':>14}"]  # fmt: skip
    base = next((r for r in doc["results"] if r.get("format") == "FMJ1"), None)
    for r in doc["results"]:
        if "skipped" in r:
            lines.append(f"{r['name']:<32} skipped: {r['skipped']}")
            continue
        ratio = f"{base['bytes_per_tick'] / r['bytes_per_tick']:.2f}x" if base else "-"
        stall = "-" if r["block_call_ms"] is None else f"{r['block_call_ms']:.2f}"
        lines.append(f"{r['name']:<32}{r['bytes_per_tick']:>8.1f}{ratio:>9}"
                     f"{r['write_us_per_tick']:>15.3f}{stall:>10}"
                     f"{r['read_records_per_s']:>12,.0f}"
                     f"{r['pushes_per_s']:>11,.0f}{r['read_peak_kb']:>14,.0f}")  # fmt: skip
        if "read_now_records_per_s" in r:
            lines.append(f"{'  the same, read by FMJ2 code':<32}{'':>8}{'':>9}{'':>25}"
                         f"{r['read_now_records_per_s']:>12,.0f}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the journal's size and cost, FMJ1 and FMJ2")
    ap.add_argument("--ticks", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    ap.add_argument("--one", choices=[c.name for c in CONFIGS], help=argparse.SUPPRESS)
    ap.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--before", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        config = next(c for c in CONFIGS if c.name == args.one)
        print(json.dumps(measure(config, args.source, args.rounds, args.before)))
        return 0
    import zstandard  # noqa: PLC0415

    from benchmarks.harness import environment, save_json  # noqa: PLC0415

    doc = run(60, 5000, args.seed, 1) if args.tiny else run(5430, args.ticks, args.seed,
                                                             args.rounds)  # fmt: skip
    doc["environment"] = environment()
    doc["environment"]["versions"]["zstandard"] = zstandard.__version__
    print(table(doc))
    if args.json:
        save_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
