"""A whole-market feedmux.Subscriber that notes when each tick arrived (for the latency run)."""

from __future__ import annotations

import argparse
import signal
import time
from array import array
from pathlib import Path

from feedmux import Subscriber


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--shards", type=int, required=True)
    p.add_argument("--out", required=True, help="file of (arrival ns, seq) int64 pairs")
    args = p.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    arrivals = array("q")
    with Subscriber(run_dir=args.run_dir, shards=args.shards, on_gap="count") as sub:
        ready = Path(args.out).with_suffix(".ready")
        while not stop and not sub.wait_ready(0.5):
            pass
        ready.write_text("ready")
        while not stop:
            tick = sub.recv(timeout=0.1)
            if tick is not None:
                arrivals.extend((time.time_ns(), tick.seq))
        Path(args.out).write_bytes(arrivals.tobytes())
        Path(args.out).with_suffix(".gaps").write_text(str(sub.gaps))


if __name__ == "__main__":
    main()
