"""What each vendor's protocol costs per push, and what iTick's own identity adds.

    python -m benchmarks.vendors [--pushes N] [--seed S] [--json PATH] [--tiny]

For each vendor, in its own process (one cannot warm the other's caches): a seeded synthetic
market's trades in that vendor's frames (as its replay server sends them: Polygon packs many
events in one message), then

- receiver: the connection's session reading them, 50 pushes a socket read
  (``Session.receive_read``: each push peeked for its code and handed on undecoded), µs per
  push;
- shard: ``Provider.decode`` of what the receiver handed on, µs per push;
- bus bytes: the average push as it goes to the shard;
- identity (iTick): the part of the receiver's time spent numbering pushes (``Arrivals.count``
  and the marker), and the memory it keeps per code (tracemalloc).

Several trades of one code share a millisecond here (the market's clock steps 1 ms every 50
pushes), so iTick's numbering takes its slower path too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from typing import Any

from benchmarks.harness import environment
from feedmux.providers import VENDORS, provider
from feedmux.providers.base import Peek, SessionOptions
from feedmux.simulator.market import Market
from feedmux.transports.frames import OPCODE_TEXT

PUSHES_PER_MS = 50
ROUNDS = 5  # the best of these: the least disturbed by the shared machine


def _options(name: str) -> SessionOptions:
    vendor = provider(name)
    return SessionOptions(max_frame_bytes=vendor.max_frame_bytes,
                          codes_per_request=vendor.codes_per_request,
                          subscribe_model=vendor.subscribe_model)  # fmt: skip


def _messages(name: str, pushes: int, seed: int) -> tuple[list[str], list[bytes]]:
    """The carried codes (a thousand) and ``pushes`` trades in the vendor's messages."""
    vendor = provider(name)
    codes = [c for c in vendor.replay_universe(seed) if vendor.cannot_carry(c) is None][:1000]
    market = Market(codes, seed, vendor=vendor)
    start_ms = 1_780_000_000_000
    frames = [market.trade(codes[i % len(codes) if i % 7 else 0], start_ms + i // PUSHES_PER_MS)
              for i in range(pushes)]  # fmt: skip
    messages = []
    for first in range(0, len(frames), PUSHES_PER_MS):
        messages += vendor.pack(frames[first : first + PUSHES_PER_MS])
    return codes, messages


def measure(name: str, pushes: int, seed: int) -> dict[str, Any]:
    """One vendor's costs, in this process."""
    vendor = provider(name)
    codes, messages = _messages(name, pushes, seed)
    per_read = max(1, PUSHES_PER_MS * len(messages) // pushes)  # what one socket read holds
    reads = [[(OPCODE_TEXT, m) for m in messages[i : i + per_read]]
             for i in range(0, len(messages), per_read)]  # fmt: skip
    receiver_s = shard_s = float("inf")
    routed: list[bytes] = []
    keep = routed.append

    def route(key: Peek, payload: bytes, recv_ns: int) -> None:
        keep(payload)

    for _ in range(ROUNDS):
        session = vendor.session("bench", _options(name))
        session.subscribe("trades", codes, 0)
        routed.clear()
        began = time.perf_counter()
        for read in reads:
            session.receive_read(read, 0, route)
        receiver_s = min(receiver_s, time.perf_counter() - began)
        decode = vendor.decode
        began = time.perf_counter()
        for payload in routed:
            decode(payload, 0)
        shard_s = min(shard_s, time.perf_counter() - began)
    assert len(routed) == pushes, (name, len(routed), session.bad_messages)
    result: dict[str, Any] = {
        "vendor": name, "pushes": pushes, "messages": len(messages),
        "receiver_us": receiver_s / pushes * 1e6, "shard_us": shard_s / pushes * 1e6,
        "bus_bytes": sum(map(len, routed)) / pushes,
    }  # fmt: skip
    if name == "itick":
        result.update(_identity(codes, pushes))
    return result


def _identity(codes: list[str], pushes: int) -> dict[str, Any]:
    """iTick's numbering alone: its time per push, and its memory per code."""
    from feedmux.providers.itick import identity  # noqa: PLC0415 (the one vendor that needs it)

    keys = [(codes[i % len(codes) if i % 7 else 0], 1_780_000_000_000 + i // PUSHES_PER_MS)
            for i in range(pushes)]  # fmt: skip
    best = float("inf")
    for _ in range(ROUNDS):
        arrivals = identity.Arrivals()
        count, mark = arrivals.count, identity.mark
        began = time.perf_counter()
        for code, t_ms in keys:
            mark(b"{}", count(code, t_ms))
        best = min(best, time.perf_counter() - began)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    arrivals = identity.Arrivals()
    for code in codes:
        arrivals.count(code, 1_780_000_000_000)
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"identity_us": best / pushes * 1e6, "identity_bytes_per_code": kept / len(codes)}


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'vendor':<10}{'receiver µs':>13}{'shard µs':>10}{'bus bytes':>11}"
             f"{'identity µs':>13}{'identity B/code':>17}"]  # fmt: skip
    for r in results:
        identity = (f"{r['identity_us']:>13.3f}{r['identity_bytes_per_code']:>17.0f}"
                    if "identity_us" in r else f"{'-':>13}{'-':>17}")  # fmt: skip
        lines.append(f"{r['vendor']:<10}{r['receiver_us']:>13.3f}{r['shard_us']:>10.3f}"
                     f"{r['bus_bytes']:>11.0f}{identity}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="each vendor's protocol cost per push")
    ap.add_argument("--pushes", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tiny", action="store_true", help="a few thousand pushes (the smoke test)")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    ap.add_argument("--one", choices=tuple(VENDORS), help=argparse.SUPPRESS)  # a child's job
    args = ap.parse_args(argv)
    pushes = 5000 if args.tiny else args.pushes
    if args.one:
        print(json.dumps(measure(args.one, pushes, args.seed)))
        return 0
    results = []
    for name in VENDORS:  # each in a fresh process
        child = subprocess.run([sys.executable, "-m", "benchmarks.vendors", "--one", name,
                                "--pushes", str(pushes), "--seed", str(args.seed)],
                               check=True, capture_output=True, text=True)  # fmt: skip
        results.append(json.loads(child.stdout))
    print(table(results))
    if args.json:
        doc = {"environment": environment(), "seed": args.seed, "results": results}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
