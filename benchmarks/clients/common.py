"""What every baseline client needs and is not what it measures: arguments, AllTick's pacing
rules (the replay server enforces them), progress numbers and a commit log."""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import websocket

from benchmarks.clients.stats import ClientStats
from feedmux.shard.stores.commit_log import CommitLog

MAX_CODES_PER_CONN = 3000
CROSS_INTERVAL_S = 3.3  # AllTick: requests of different connections 3 s apart (+10 %)
HEARTBEAT_S = 10.0
STATS_EVERY_S = 0.1


# An AllTick trade push, typed: what the strong and best baselines decode (strict=False takes
# the vendor's quoted numbers).
class Trade(msgspec.Struct):
    code: str
    seq: int
    tick_time: int
    price: float
    volume: float
    turnover: float = 0.0
    trade_direction: int = 0


class Push(msgspec.Struct):
    cmd_id: int
    data: Trade | None = None


decode = msgspec.json.Decoder(Push, strict=False).decode


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--url", required=True, help="ws://host:port/quote-stock-b-ws-api")
    p.add_argument("--codes-file", required=True)
    p.add_argument("--out", required=True, help="directory for stats.json, commits.bin, db")
    return p.parse_args()


def token() -> str:
    return os.environ["FEEDMUX_TOKEN"]


def code_chunks(codes_file: str) -> list[list[str]]:
    codes = Path(codes_file).read_text().split()
    return [codes[i : i + MAX_CODES_PER_CONN] for i in range(0, len(codes), MAX_CODES_PER_CONN)]


def subscribe_request(seq_id: int, codes: list[str]) -> str:
    return json.dumps({"cmd_id": 22004, "seq_id": seq_id, "trace": f"bench-{seq_id}",
                       "data": {"symbol_list": [{"code": c} for c in codes]}})  # fmt: skip


def heartbeat_request(seq_id: int) -> str:
    return json.dumps({"cmd_id": 22000, "seq_id": seq_id, "trace": f"hb-{seq_id}", "data": {}})


def paced(chunks: list[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """(connection index, its codes), sleeping between connections as AllTick requires."""
    for i, chunk in enumerate(chunks):
        if i:
            time.sleep(CROSS_INTERVAL_S)
        yield i, chunk


def connect_all(url: str, codes_file: str) -> dict[int, websocket.WebSocket]:
    """One subscribed websocket-client connection per chunk of codes, by socket fd."""
    links: dict[int, websocket.WebSocket] = {}
    for i, codes in paced(code_chunks(codes_file)):
        ws = websocket.create_connection(f"{url}?token={token()}", skip_utf8_validation=True)
        ws.send(subscribe_request(i + 1, codes))
        links[ws.sock.fileno()] = ws
    return links


class Heartbeats:
    """AllTick drops a connection silent for 30 s: a 22000 request on each every 10 s."""

    def __init__(self) -> None:
        self._next = time.monotonic() + HEARTBEAT_S
        self._seq_id = 100

    def maybe_send(self, connections: Iterable[Any]) -> None:
        """Send one on every connection (anything with ``send(str)``) when it is time."""
        if time.monotonic() < self._next:
            return
        self._next += HEARTBEAT_S
        for connection in connections:
            self._seq_id += 1
            connection.send(heartbeat_request(self._seq_id))


class Progress:
    """``<out>/stats.json``: received and stored counts, CPU and peak RSS, every 100 ms."""

    def __init__(self, out: str) -> None:
        self.dir = Path(out)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.received = 0
        self.stored = 0
        self._next = 0.0

    def maybe_write(self, final: bool = False) -> None:
        now = time.monotonic()
        if now < self._next and not final:
            return
        self._next = now + STATS_EVERY_S
        usage = resource.getrusage(resource.RUSAGE_SELF)
        stats = ClientStats(received=self.received, stored=self.stored, final=final,
                            cpu_s=usage.ru_utime + usage.ru_stime,
                            max_rss_kb=usage.ru_maxrss)  # fmt: skip
        tmp = self.dir / ".stats.json.tmp"
        tmp.write_bytes(msgspec.json.encode(stats))
        tmp.replace(self.dir / "stats.json")

    def commit_log(self) -> CommitLog:
        return CommitLog(self.dir / "commits.bin")
