"""The page's WebSocket protocol: JSON objects with a ``type``, defined once here.

The gateway encodes these; the page (``static/app.js``) and the Python readers (tests, the
load test, the benchmark) decode them. Times are milliseconds since the epoch (UTC) as floats,
since a browser's numbers cannot hold nanoseconds exactly.

Server → page: ``hello`` once, then ``snapshot`` (every code's line), then ``update`` every
``interval_ms`` with only the lines that changed (conflated: the latest wins), at least once a
second. A page that fell behind (its socket full) is skipped and, once it drains, gets another
``snapshot`` in place of what it missed (``Update.seq`` jumps). ``bars`` answers a ``watch``
and follows each bar of the watched code as it closes.
Page → server: ``watch`` (a code, or null to stop).
"""

from __future__ import annotations

from typing import Literal

import msgspec

PROTOCOL_VERSION = 1
FeedKind = Literal["moves", "trades"]
FEEDS = ("auto", "moves", "trades")  # `feedmux web --feed`: auto takes moves when published
PipelineState = Literal["up", "stale", "stopped"]
BarLabel = Literal["end", "start"]


class Line(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One code's line of the table: ``[code, price, open, volume, turnover, time_ms,
    recv_ms]``. ``price`` 0: no trade yet. ``open``: the day's first trade (0: unknown)."""

    code: str
    price: float
    open: float
    volume: float  # the day's so far: the stored and published bars, then the trades since
    turnover: float
    time_ms: float  # exchange time of the last trade
    recv_ms: float  # when feedmux read it off the vendor's socket


class PageBar(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A 1-minute bar: ``[minute_ms, open, high, low, close, volume]`` (``minute_ms``: the
    store's label, its end by default)."""

    minute_ms: float
    open: float
    high: float
    low: float
    close: float
    volume: float


class Hello(msgspec.Struct, tag="hello", tag_field="type", frozen=True):
    version: int
    interval_ms: int  # updates come at most this often, one line per code at most
    feed: FeedKind  # "moves": the run's --min-move trades (MT|); "trades": every trade (T|)
    min_move: float  # the step of the moves feed (0 with trades)
    silent_after_s: float  # a code with no trade for this long while its market trades
    bar_label: BarLabel  # a bar's minute_ms is its "end" or its "start" (--bar-label)


class Snapshot(msgspec.Struct, tag="snapshot", tag_field="type", frozen=True):
    server_ms: float
    lines: list[Line]
    markets: dict[str, str]  # market suffix ("SH") -> its phase (feedmux.market.sessions)


class Update(msgspec.Struct, tag="update", tag_field="type", frozen=True):
    server_ms: float
    lines: list[Line]  # only those that changed since the last update
    markets: dict[str, str]
    pipeline: PipelineState  # "up", "stale" (no heartbeat for 3 s) or "stopped"
    newest_ms: float  # receive time of the newest trade (0: none yet)
    seq: int  # numbers the updates from 1: a page skipped while behind sees a jump


class Bars(msgspec.Struct, tag="bars", tag_field="type", frozen=True):
    code: str
    bars: list[PageBar]
    whole: bool  # True: the day so far (replace the chart); False: one bar closed or amended


class Error(msgspec.Struct, tag="error", tag_field="type", frozen=True):
    message: str


ServerMessage = Hello | Snapshot | Update | Bars | Error


class Watch(msgspec.Struct, tag="watch", tag_field="type", frozen=True):
    code: str | None  # None: stop


ClientMessage = Watch


class WebStats(msgspec.Struct, frozen=True):
    """``GET /stats``: the gateway's own numbers (for operators and tests)."""

    pages: int  # open now
    pages_served: int  # since the start
    updates: int  # update messages sent (each to every page in step)
    lines_sent: int  # lines in them
    snapshots_asked: int  # of the shards: one at the start, one more per gap in the feed
    pages_behind: int  # skipped now: their sockets were full
    pipeline: PipelineState


encode = msgspec.json.Encoder().encode
server_decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
client_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
stats_decoder = msgspec.json.Decoder(WebStats)
