"""What ``--nats`` costs: feedmux's peak lossless ticks/s and CPU per tick with NATS JetStream on
against off, in one run.

    python -m benchmarks.nats [--tiny] [--nats URL] [--shards N] [--rounds N]
                              [--rate R ...] [--seconds S] [--no-ramp] [--json PATH]

Both modes run the same configuration (``feedmux run`` with ``--shards``, journal, SQLite,
acknowledgements) against the same seeded replay as ``benchmarks.pipeline``; "on" adds
``--nats URL`` with a stream and subject prefix of its own for that one run, deleted afterwards
(feedmux creates it, as users get it). The modes alternate within every round (off then on,
then on then off, ...) so that the machine's noise falls on both; every run is fresh processes.

1. Peak: the throughput ramp of ``benchmarks.harness.ramp``. With NATS on, a step is kept up
   with only when the stream holds every trade sent so far too (its trades subjects' message
   count, from the server), besides the store; the reason names the one behind.
2. CPU per tick at each ``--rate``: the steady-state window of ``benchmarks.cost`` (``utime +
   stime`` of every process of the client's tree from /proc over ``--seconds``, divided by the
   frames the server wrote meanwhile), by role. The NATS server's own CPU over the same window
   is reported apart when it runs on this machine (it may serve others too), like the replay
   server's; "others" is what every other process of the machine took meanwhile (the noise).

The 1-minute load average is noted before every run, and what the rest of the machine took
during it ("others", % of a core: busy CPU from /proc/stat less this benchmark's processes, its
waited-for descendants included, and the NATS server's).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors

from benchmarks import cost, procs
from benchmarks.cost import CostParams, RateCost
from benchmarks.data import codes_for, market_file
from benchmarks.harness import TINY, Config, Params, environment, ramp, save_json
from benchmarks.labels import rate_label
from feedmux.errors import FeedmuxError
from feedmux.jetstream.client import connect
from feedmux.jetstream.loop import LoopThread
from feedmux.passwords import mask_passwords

NATS = os.environ.get("FEEDMUX_BENCH_NATS", "nats://127.0.0.1:4222")
RATES = (2_000.0, 10_000.0)
MODES = ("off", "on")


@dataclass(frozen=True)
class Stream:
    """One run's stream and subject prefix."""

    name: str
    prefix: str

    @classmethod
    def fresh(cls) -> Stream:
        tag = uuid.uuid4().hex[:10]
        return cls(f"FEEDMUX_BENCH_{tag}", f"fmbench-{tag}")


class Server:
    """The benchmark's own connection to NATS: counts a stream's trades, deletes streams."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = mask_passwords(url)
        self._loop = LoopThread("nats-bench")
        try:
            self._client = self._loop.run(connect(url.split(","), "feedmux-bench",
                                                  shown=self.shown))  # fmt: skip
            self._js = self._client.jetstream()
            self._loop.run(self._js.account_info(), 10)
        except BaseException:
            self._loop.stop()
            raise
        self.deleted: list[str] = []

    def trades(self, stream: Stream) -> int:
        """Trade messages in ``stream`` (0 before feedmux has made it)."""

        async def count() -> int:
            try:
                info = await self._js.stream_info(stream.name, f"{stream.prefix}.trades.>")
            except nats.js.errors.NotFoundError:
                return 0
            return sum((info.state.subjects or {}).values())

        return self._loop.run(count(), 30)

    def delete(self, stream: Stream) -> None:
        async def drop() -> None:
            with contextlib.suppress(nats.js.errors.NotFoundError):  # feedmux never made it
                await self._js.delete_stream(stream.name)

        self._loop.run(drop(), 30)
        self.deleted.append(stream.name)

    def pid(self) -> int | None:
        """The local server's process (for its CPU), when the URL is one loopback server."""
        parts = urlsplit(self.url if "://" in self.url else f"nats://{self.url}")
        if "," in self.url or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            return None
        return procs.listener(parts.port or 4222)

    def close(self) -> None:
        with contextlib.suppress(nats.errors.Error, OSError, TimeoutError):  # nothing to lose
            self._loop.run(self._client.close(), 10)
        self._loop.stop()


@dataclass
class Run:
    """One measurement: a ramp (``rate`` 0) or a fixed rate's CPU window."""

    round: int
    mode: str  # off | on
    load: float  # the 1-minute load average just before it
    others_pct: float = 0.0  # % of a core the rest of the machine took during the whole run
    stream: str = ""  # on: its stream (deleted afterwards)
    max_rate: float = 0.0
    ramp_stop: str = ""
    rate: float = 0.0
    cost: RateCost | None = None


@dataclass
class Report:
    url: str
    shards: int
    rounds: int
    rates: list[float]
    runs: list[Run] = field(default_factory=list)
    streams_deleted: list[str] = field(default_factory=list)


@contextmanager
def mode_config(base: Config, mode: str, server: Server) -> Iterator[tuple[Config, Stream | None]]:
    """The configuration of a run in ``mode``; on: with a fresh stream, deleted afterwards."""
    if mode == "off":
        yield base, None
        return
    stream = Stream.fresh()
    flags = ("--nats", server.url, "--nats-stream", stream.name, "--nats-prefix", stream.prefix)
    try:
        yield replace(base, name=f"{base.name}, --nats", args=(*base.args, *flags)), stream
    finally:
        server.delete(stream)


def order(round_: int) -> tuple[str, ...]:
    """Off then on, then on then off, ...: neither mode always runs first."""
    return MODES if round_ % 2 == 0 else MODES[::-1]


def _ours(apart: dict[str, int]) -> float:
    """CPU seconds of this benchmark's processes and of the NATS server (not the noise)."""
    return procs.own_tree_s() + sum(procs.cpu_s(pid) or 0.0 for pid in apart.values())


def run(report: Report, server: Server, p: Params, cp: CostParams, *, ramps: bool,
        data: Path, codes_file: Path, tmp: Path) -> None:  # fmt: skip
    base = Config(f"feedmux {report.shards} shards", "feedmux", report.shards)
    nats_pid = server.pid()
    apart = {"nats-server": nats_pid} if nats_pid is not None else {}
    k = 0
    for r in range(report.rounds):
        for rate in ([0.0] if ramps else []) + sorted(cp.rates):
            for mode in order(r):
                k += 1
                work = tmp / f"{k}-{mode}"
                work.mkdir()
                one = Run(r + 1, mode, round(os.getloadavg()[0], 2), rate=rate)
                t0, busy0, ours0 = time.monotonic(), procs.machine_busy_s(), _ours(apart)
                with mode_config(base, mode, server) as (config, stream):
                    held = None if stream is None else (lambda s=stream: server.trades(s))
                    one.stream = "" if stream is None else stream.name
                    what = "ramp" if not rate else f"{rate:,.0f}/s"
                    print(f"round {r + 1}, NATS {mode}, {what} (load {one.load}) ...", flush=True)
                    if not rate:
                        one.max_rate, one.ramp_stop = ramp(config, p, data, codes_file, work,
                                                           held=held)  # fmt: skip
                        print(f"    {rate_label(one.max_rate, one.ramp_stop)} ticks/s "
                              f"({one.ramp_stop})", flush=True)  # fmt: skip
                    else:
                        one.cost, _ = cost.measure(config, p, cp, rate, data=data,
                                                   codes_file=codes_file, work=work, idle=False,
                                                   held=held, apart=apart)  # fmt: skip
                        print(f"    {one.cost.total_us_per_tick:.1f} us/tick"
                              f"{'' if one.cost.kept_up else ' (fell behind)'}",
                              flush=True)  # fmt: skip
                others = procs.machine_busy_s() - busy0 - (_ours(apart) - ours0)
                one.others_pct = round(max(0.0, others) / (time.monotonic() - t0) * 100, 1)
                report.runs.append(one)
    report.streams_deleted = server.deleted


# -- report ----------------------------------------------------------------------------------
def _parts(c: RateCost) -> tuple[float, float, float]:
    """(receiver, every shard, receiver + shards) µs per tick."""
    receiver = c.us_per_tick.get("feedmux-receiver", 0.0)
    shards = sum(v for k, v in c.us_per_tick.items() if k.startswith("feedmux-shard-"))
    return receiver, shards, receiver + shards


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(report: Report) -> str:
    lines = [f"NATS JetStream on against off: feedmux {report.shards} shards at {report.url}, "
             f"{report.rounds} round(s), the modes alternating"]  # fmt: skip
    peaks = [r for r in report.runs if not r.rate]
    if peaks:
        lines.append(f"{'peak lossless ticks/s':<24} {'round':>5} {'off':>11} {'on':>11} "
                     f"{'on/off':>7} {'load off/on':>12} {'others% off/on':>15}")  # fmt: skip
        by_round: dict[int, dict[str, Run]] = {}
        for r in peaks:
            by_round.setdefault(r.round, {})[r.mode] = r
        for n, pair in sorted(by_round.items()):
            off, on = pair.get("off"), pair.get("on")
            if off is None or on is None:
                continue
            ratio = f"{on.max_rate / off.max_rate:.2f}x" if off.max_rate else "-"
            lines.append(f"{'':<24} {n:>5} {rate_label(off.max_rate, off.ramp_stop):>11} "
                         f"{rate_label(on.max_rate, on.ramp_stop):>11} {ratio:>7} "
                         f"{off.load:>6.2f}/{on.load:<5.2f} "
                         f"{off.others_pct:>7.1f}/{on.others_pct:<7.1f}")  # fmt: skip
        off_m, on_m = (_median([r.max_rate for r in peaks if r.mode == m]) for m in MODES)
        ratio = f"{on_m / off_m:.2f}x" if off_m else "-"
        shown = [("" if any(r.mode == m and r.ramp_stop.startswith("fell behind")
                            for r in peaks) else ">=") + f"{rate:,.0f}"
                 for m, rate in zip(MODES, (off_m, on_m), strict=True)]  # fmt: skip
        lines.append(f"{'':<24} {'median':>5} {shown[0]:>11} {shown[1]:>11} {ratio:>7}")
    costs = [r for r in report.runs if r.cost is not None]
    if costs:
        lines.append(f"{'CPU us per tick':<16} {'rate/s':>7} {'nats':>4} {'round':>5} "
                     f"{'total':>7} {'recv':>6} {'shards':>7} {'r+s':>7} {'nats-srv':>8} "
                     f"{'replay':>6} {'others%':>7} {'load':>5}")  # fmt: skip
        for r in costs:
            assert r.cost is not None
            receiver, shards, both = _parts(r.cost)
            srv = r.cost.apart_us_per_tick.get("nats-server")
            shown = "-" if srv is None or r.mode == "off" else f"{srv:.1f}"
            note = "" if r.cost.kept_up else "  fell behind"
            lines.append(f"{'':<16} {r.rate:>7,.0f} {r.mode:>4} {r.round:>5} "
                         f"{r.cost.total_us_per_tick:>7.1f} {receiver:>6.1f} {shards:>7.1f} "
                         f"{both:>7.1f} {shown:>8} "
                         f"{r.cost.server_us_per_tick:>6.1f} {r.cost.others_pct:>7.1f} "
                         f"{r.load:>5.2f}{note}")  # fmt: skip
        lines.append(f"{'medians':<16} {'rate/s':>7} {'':>4} {'':>5} {'total':>7} {'recv':>6} "
                     f"{'shards':>7} {'r+s':>7} {'nats-srv':>8}")  # fmt: skip
        for rate in sorted({r.rate for r in costs}):
            for mode in MODES:
                these = [r.cost for r in costs if r.rate == rate and r.mode == mode and r.cost]
                srv = _median([c.apart_us_per_tick["nats-server"] for c in these
                               if "nats-server" in c.apart_us_per_tick])  # fmt: skip
                lines.append(
                    f"{'':<16} {rate:>7,.0f} {mode:>4} {'':>5} "
                    f"{_median([c.total_us_per_tick for c in these]):>7.1f} "
                    f"{_median([_parts(c)[0] for c in these]):>6.1f} "
                    f"{_median([_parts(c)[1] for c in these]):>7.1f} "
                    f"{_median([_parts(c)[2] for c in these]):>7.1f} "
                    f"{'-' if mode == 'off' else f'{srv:.1f}':>8}"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="feedmux with --nats on against off: peak "
                                             "lossless ticks/s and CPU per tick")  # fmt: skip
    ap.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    ap.add_argument("--nats", default=NATS, metavar="URL",
                    help=f"the NATS server (default {NATS}; FEEDMUX_BENCH_NATS)")  # fmt: skip
    ap.add_argument("--shards", type=int, help="feedmux's shards (default 8; tiny: 2)")
    ap.add_argument("--rounds", type=int, help="on/off pairs of every run (default 3; tiny: 1)")
    ap.add_argument("--rate", nargs="*", type=float,
                    help="ticks/s of the CPU windows (default 2000 10000; tiny: 300); none: "
                         "no CPU runs")  # fmt: skip
    ap.add_argument("--seconds", type=float, help="each CPU window (default 10)")
    ap.add_argument("--no-ramp", action="store_true", help="only the CPU windows")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    args = ap.parse_args(argv)
    p, cp = (TINY, cost.TINY_COST) if args.tiny else (Params(), CostParams())
    rates = tuple(args.rate if args.rate is not None else cp.rates if args.tiny else RATES)
    cp = replace(cp, rates=rates, seconds=args.seconds or cp.seconds)
    needed = int(max(rates, default=0) * (cp.seconds + cp.settle_s + 5))
    if needed > p.ticks:  # the data file must outlast the window
        p = replace(p, ticks=needed)
    report = Report(mask_passwords(args.nats), args.shards or (2 if args.tiny else 8),
                    args.rounds or (1 if args.tiny else 3), list(rates))  # fmt: skip
    try:
        server = Server(args.nats)
    except (FeedmuxError, nats.errors.Error, OSError, TimeoutError) as exc:
        why = mask_passwords(str(exc)) or type(exc).__name__
        print(f"NATS with JetStream at {report.url} is not reachable: {why}", file=sys.stderr)
        return 2
    codes = codes_for(p.codes, p.seed)
    data = market_file(codes, p.ticks, p.seed)
    doc: dict[str, Any] = {"environment": environment(), "params": asdict(p),
                           "cost_params": asdict(cp), "load_at_start": os.getloadavg()}  # fmt: skip
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="feedmux-nats-") as tmp:
            codes_file = Path(tmp) / "codes.txt"
            codes_file.write_text("\n".join(codes))
            run(report, server, p, cp, ramps=not args.no_ramp, data=data,
                codes_file=codes_file, tmp=Path(tmp))  # fmt: skip
    finally:
        server.close()
    doc |= {"load_at_end": os.getloadavg(), "seconds": round(time.monotonic() - started),
            **asdict(report)}  # fmt: skip
    print(table(report))
    if args.json:
        save_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
