"""The receiver's frame layer: our FrameParser, before and now, against websockets' sans-I/O
ClientProtocol; and what checking text frames for UTF-8 costs.

    python -m benchmarks.frames [--tiny] [--json PATH]

The input is a seeded stream of AllTick trade frames (the simulator's Market, framed as the
vendor sends them), cut into socket-read-sized chunks: 256 KiB (what one receiver read takes
under load) and 4 KiB (a trickle). Each configuration runs in a fresh subprocess, best of
several passes (CPU time): MB/s of stream and ns per frame. "before" is the module at BASE
(issue 13's starting point), taken from git into a temporary file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.data import T0_MS, codes_for
from feedmux.simulator.market import Market, text_frame

BASE = "23cdd0e"  # the parser and AllTickClient before issue 13
REPO = Path(__file__).resolve().parent.parent
MAX_FRAME_BYTES = 64 * 1024  # the receiver's default --max-frame-bytes
CHUNKS = (256 * 1024, 4096)
PARSERS = ("FrameParser before", "FrameParser now", "websockets ClientProtocol")
CHECKS = ("receive before (no UTF-8 check)", "receive now (isascii, decode if not)",
          "isascii alone", "decode alone", "the loop alone")  # fmt: skip


def frames(count: int, seed: int = 7) -> list[bytes]:
    """``count`` trade payloads of random codes of the A-share universe, seeded."""
    codes = codes_for(5430, seed)
    market, rng = Market(codes, seed), random.Random(seed)
    return [market.trade(rng.choice(codes), T0_MS + i // 50) for i in range(count)]


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # msgspec resolves the Structs' annotations through it
    spec.loader.exec_module(module)
    return module


def _best(run: Callable[[], int], repeats: int) -> float:
    """The least CPU time of ``repeats`` passes: on a shared machine, wall time also counts
    the other processes' turns."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best


def _parse_with(name: str, before: Path | None) -> Callable[[list[bytes]], int]:
    """A function that parses every chunk with a fresh parser and returns the messages."""
    if name == "websockets ClientProtocol":
        from websockets.client import ClientProtocol  # noqa: PLC0415
        from websockets.frames import Opcode  # noqa: PLC0415
        from websockets.protocol import State  # noqa: PLC0415
        from websockets.uri import parse_uri  # noqa: PLC0415

        uri, text, cont = parse_uri("ws://127.0.0.1/"), Opcode.TEXT, Opcode.CONT

        def with_websockets(chunks: list[bytes]) -> int:
            proto = ClientProtocol(uri, state=State.OPEN, max_size=MAX_FRAME_BYTES)
            out: list[tuple[int, Any]] = []
            parts: list[Any] = []
            for chunk in chunks:
                proto.receive_data(chunk)
                for f in proto.events_received():
                    if f.fin and f.opcode is text:  # the usual: one whole text frame
                        out.append((1, f.data))
                    elif f.opcode is cont or not f.fin:  # fragments, joined as we do
                        parts.append(f.data)
                        if f.fin:
                            out.append((1, b"".join(parts)))
                            parts = []
                    else:
                        out.append((int(f.opcode), f.data))
            return len(out)

        return with_websockets
    if name == "FrameParser before":
        assert before is not None
        module = _load(before / "frames.py", "frames_before")
    else:
        from feedmux.transports import frames as module  # noqa: PLC0415

    def with_frame_parser(chunks: list[bytes]) -> int:
        parser = module.FrameParser(MAX_FRAME_BYTES)
        feed, count = parser.feed, 0
        for chunk in chunks:
            count += len(feed(chunk))
        return count

    return with_frame_parser


def measure_parser(name: str, chunk: int, count: int, repeats: int,
                   before: Path | None) -> dict[str, Any]:  # fmt: skip
    """In this process: parse the framed stream in ``chunk``-byte reads."""
    stream = b"".join(text_frame(f) for f in frames(count))
    chunks = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    parse = _parse_with(name, before)
    assert parse(chunks) == count, name
    wall = _best(lambda: parse(chunks), repeats)
    return {"what": name, "chunk": chunk, "frames": count, "bytes": len(stream),
            "mb_per_s": round(len(stream) / wall / 1e6, 1),
            "ns_per_frame": round(wall / count * 1e9, 1)}  # fmt: skip


def measure_check(name: str, count: int, repeats: int, before: Path | None) -> dict[str, Any]:
    """In this process: the per-frame cost of the UTF-8 check, alone and inside receive()."""
    payloads = frames(count)
    if name.startswith("receive"):
        if name.startswith("receive before"):
            assert before is not None
            client = _load(before / "alltick.py", "alltick_before").AllTickClient(
                "b", only_subscribed=False)  # fmt: skip
        else:
            from feedmux.providers.alltick.protocol import AllTickClient  # noqa: PLC0415

            client = AllTickClient("n", only_subscribed=False)
        receive = client.receive

        def run() -> int:
            return sum(1 for p in payloads if receive(p, 0) is not None)

    elif name == "isascii alone":

        def run() -> int:
            return sum(1 for p in payloads if p.isascii())

    elif name == "the loop alone":  # what "alone" figures include besides the check

        def run() -> int:
            return sum(1 for p in payloads if p)

    else:

        def run() -> int:
            return sum(1 for p in payloads if p.decode())

    assert run() == count, name
    wall = _best(run, repeats)
    size = sum(map(len, payloads))
    return {"what": name, "frames": count, "bytes": size,
            "mb_per_s": round(size / wall / 1e6, 1),
            "ns_per_frame": round(wall / count * 1e9, 1)}  # fmt: skip


def _before_modules(into: Path) -> str:
    """The modules at BASE, from git, into ``into``; "" or why they could not be had."""
    for source, target in (("feedmux/transports/frames.py", "frames.py"),
                           ("feedmux/providers/alltick/protocol.py", "alltick.py")):  # fmt: skip
        shown = subprocess.run(["git", "show", f"{BASE}:{source}"], cwd=REPO,
                               capture_output=True, check=False)  # fmt: skip
        if shown.returncode != 0:
            return shown.stderr.decode(errors="replace").strip() or "git show failed"
        (into / target).write_bytes(shown.stdout)
    return ""


def run(count: int, repeats: int) -> dict[str, Any]:
    """Every configuration, each in a fresh subprocess."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="feedmux-frames-") as tmp:
        missing = _before_modules(Path(tmp))
        jobs = [["--parser", name, "--chunk", str(chunk)] for chunk in CHUNKS for name in PARSERS]
        jobs += [["--check", name] for name in CHECKS]
        for job in jobs:
            if missing and "before" in job[1]:
                results.append({"what": job[1], "skipped": missing})
                continue
            proc = subprocess.run([sys.executable, "-m", "benchmarks.frames", *job, "--frames",
                                   str(count), "--repeats", str(repeats), "--before", tmp],
                                  capture_output=True, text=True, check=False)  # fmt: skip
            if proc.returncode != 0:
                results.append({"what": job[1], "skipped": proc.stderr.strip()[-300:]})
            else:
                results.append(json.loads(proc.stdout))
    return {"commit": _commit(), "base": BASE, "frames": count, "repeats": repeats,
            "max_frame_bytes": MAX_FRAME_BYTES, "results": results}  # fmt: skip


def _commit() -> str:
    head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                          capture_output=True, text=True, check=False)  # fmt: skip
    return head.stdout.strip()


def table(doc: dict[str, Any]) -> str:
    lines = [f"frame layer at {doc['commit']} ({doc['frames']:,} trade frames, best of "
             f"{doc['repeats']}; before = {doc['base']})",
             f"{'parser':<28} {'read size':>9} {'MB/s':>8} {'ns/frame':>9} "
             f"{'vs before':>9}"]  # fmt: skip
    parsers = [r for r in doc["results"] if "chunk" in r or r["what"] in PARSERS]
    for r in parsers:
        if "skipped" in r:
            lines.append(f"{r['what']:<28} skipped: {r['skipped']}")
            continue
        base = next((b for b in parsers if b["what"] == "FrameParser before"
                     and b.get("chunk") == r["chunk"] and "ns_per_frame" in b), None)  # fmt: skip
        ratio = f"{base['ns_per_frame'] / r['ns_per_frame']:.2f}x" if base else "-"
        size = f"{r['chunk'] // 1024} KiB"
        lines.append(f"{r['what']:<28} {size:>9} {r['mb_per_s']:>8,.0f} "
                     f"{r['ns_per_frame']:>9,.0f} {ratio:>9}")  # fmt: skip
    lines.append(f"{'UTF-8 check (per payload)':<38} {'MB/s':>8} {'ns/frame':>9}")
    for r in doc["results"]:
        if r["what"] in CHECKS:
            if "skipped" in r:
                lines.append(f"{r['what']:<38} skipped: {r['skipped']}")
            else:
                lines.append(f"{r['what']:<38} {r['mb_per_s']:>8,.0f} {r['ns_per_frame']:>9,.0f}")
    return "\n".join(lines)


def verdict(doc: dict[str, Any]) -> str:
    """Issue 13: keep our parser only while it is faster than ClientProtocol."""
    ns = {(r["what"], r.get("chunk")): r.get("ns_per_frame") for r in doc["results"]}
    pairs = [(ns.get(("FrameParser now", c)), ns.get(("websockets ClientProtocol", c)))
             for c in CHUNKS]  # fmt: skip
    if any(ours is None or theirs is None for ours, theirs in pairs):
        return "verdict: incomplete"
    if all(ours is not None and theirs is not None and ours < theirs for ours, theirs in pairs):
        return "verdict: FrameParser is faster than ClientProtocol at every read size: keep it"
    return "verdict: ClientProtocol is as fast or faster: switch to it"


def main() -> int:
    ap = argparse.ArgumentParser(description="frame parsing and UTF-8 checking, per frame")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    ap.add_argument("--parser", choices=PARSERS, help=argparse.SUPPRESS)
    ap.add_argument("--check", choices=CHECKS, help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=CHUNKS[0], help=argparse.SUPPRESS)
    ap.add_argument("--frames", type=int, default=200_000, help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=7, help=argparse.SUPPRESS)
    ap.add_argument("--before", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.parser:
        print(json.dumps(measure_parser(args.parser, args.chunk, args.frames, args.repeats,
                                        args.before)))  # fmt: skip
        return 0
    if args.check:
        print(json.dumps(measure_check(args.check, args.frames, args.repeats, args.before)))
        return 0
    from benchmarks.harness import environment, save_json  # noqa: PLC0415

    doc = run(2_000, 2) if args.tiny else run(args.frames, args.repeats)
    doc["environment"] = environment()
    print(table(doc))
    print(verdict(doc))
    if args.json:
        save_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
