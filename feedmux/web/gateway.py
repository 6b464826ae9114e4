"""``feedmux web``'s server: the page's files, its WebSocket, and the updates pushed to it.

Every ``interval`` the lines changed since the last update are encoded once and written to
each page; a page whose socket cannot take them (its write buffer is over ``_BEHIND_BYTES``)
is skipped and, once it drains, gets a whole snapshot instead: the latest wins, nothing piles
up, and a slow page never holds the others or the pipeline back.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from feedmux.market.sessions import Sessions
from feedmux.model import Bar
from feedmux.web import protocol as p
from feedmux.web.board import Board, page_bar
from feedmux.web.feed import Feed

_log = logging.getLogger("feedmux.web")
_BEHIND_BYTES = 4 << 20  # a page with this much unsent is skipped until it drains
_DRAINED_BYTES = 256 << 10
_GIVE_UP_S = 30.0  # a page behind for this long is closed (it reconnects and starts afresh)
_QUIET_S = 1.0  # an update at least this often, lines or not: the page shows the data's age
_STATIC = {
    "/": ("index.html", "text/html"),
    "/index.html": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
}
_STATE_WORDS = {
    "up": "up: following it again",
    "stale": "stale: no shard heartbeat for 3 s",
    "stopped": "stopped: the page keeps its last prices",
}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""  # required of every page when set (a secret: never logged)
    interval_s: float = 0.25
    max_pages: int = 200
    silent_after_s: float = 60.0


@dataclass
class _Page:
    ws: ServerConnection
    watch: str | None = None
    behind_since: float = 0.0  # monotonic time it was first skipped; 0: in step
    closing: bool = False


class Gateway:
    def __init__(self, settings: WebSettings, board: Board, feed: Feed, lock: threading.Lock,
                 *, sessions: Sessions) -> None:  # fmt: skip
        self.settings = settings
        self.board = board
        self.feed = feed
        self.lock = lock
        self.sessions = sessions
        self.followed = feed.followed  # what the pages were told they follow
        self.pages: dict[ServerConnection, _Page] = {}
        self.updates = 0
        self.lines_sent = 0
        self.pages_served = 0
        self.hosts: set[str] = set()  # Host headers accepted on loopback (set once serving)
        self._snapshot_cache: bytes | None = None  # valid until the board's next take
        static = resources.files("feedmux.web").joinpath("static")
        self._files = {path: (static.joinpath(name).read_bytes(), kind)
                       for path, (name, kind) in _STATIC.items()}  # fmt: skip
        self._closing: set[asyncio.Task[None]] = set()

    def serving_on(self, port: int) -> None:
        """On loopback, only these Host names: another page's script reaching this one
        through a name of its own (DNS rebinding) is refused."""
        self.hosts = {f"{name}:{port}" for name in (*LOOPBACK_NAMES, self.settings.host)}

    # HTTP: the page's files, /stats and the WebSocket at /ws; the token guards the last two.
    def http(self, connection: ServerConnection, request: Request) -> Response | None:
        refused = self._refused(request)
        if refused:
            return connection.respond(HTTPStatus.FORBIDDEN, refused + "\n")
        url = urlsplit(request.path)
        if url.path in ("/ws", "/stats") and not self._allowed(url.query, request.headers):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "a valid token is needed\n")
        if url.path == "/ws":
            if len(self.pages) >= self.settings.max_pages:
                _log.warning("a page refused: %d open (--max-pages)", len(self.pages))
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many pages\n")
            return None
        if url.path == "/stats":
            return _response(p.encode(self.stats()), "application/json")
        file = self._files.get(url.path)
        if file is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        return _response(*file)

    def _refused(self, request: Request) -> str:
        """Why a request from a browser is not this page's own (empty: it is)."""
        host = request.headers.get("Host", "")
        if self.hosts and host not in self.hosts:
            return f"not served as {host!r}: use http://{self.settings.host}"
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != host:
            return "a page of another site may not read this one"
        return ""

    def _allowed(self, query: str, headers: Headers) -> bool:
        token = self.settings.token
        if not token:
            return True
        given = parse_qs(query).get("token", [""])[0] or headers.get("X-Feedmux-Token", "")
        return hmac.compare_digest(given.encode(), token.encode())

    def stats(self) -> p.WebStats:
        behind = sum(1 for page in self.pages.values() if page.behind_since)
        return p.WebStats(len(self.pages), self.pages_served, self.updates, self.lines_sent,
                          self.feed.snapshots, behind, self.feed.pipeline)  # fmt: skip

    async def handle(self, ws: ServerConnection) -> None:
        page = _Page(ws)
        hello = p.Hello(p.PROTOCOL_VERSION, round(self.settings.interval_s * 1000),
                        "moves" if self.feed.moves else "trades", self.feed.step,
                        self.settings.silent_after_s,
                        "end" if self.board.end_label else "start")  # fmt: skip
        try:
            await ws.send(p.encode(hello), text=True)
            # The snapshot is written and the page joins in one step of the loop: no update
            # can come between them (its lines would be in neither).
            broadcast([ws], self._snapshot(), text=True)
            self.pages[ws] = page
            self.pages_served += 1
            async for raw in ws:
                try:
                    message = p.client_decoder.decode(raw)
                except msgspec.DecodeError:
                    await ws.send(p.encode(p.Error("not a message of feedmux's page")), text=True)
                    continue
                await self._watch(page, message.code)
        except ConnectionClosed:
            pass
        finally:
            self.pages.pop(ws, None)
            self._rewatch()

    async def _watch(self, page: _Page, code: str | None) -> None:
        page.watch = code
        self._rewatch()
        if code is None:
            return
        bars = await asyncio.get_running_loop().run_in_executor(None, self.feed.chart, code)
        if page.watch == code:
            message = p.Bars(code, [page_bar(b) for b in bars], whole=True)
            await page.ws.send(p.encode(message), text=True)

    def _rewatch(self) -> None:
        watched = set()
        for page in self.pages.values():
            if page.watch is not None:
                watched.add(page.watch)
        with self.lock:
            self.feed.watched = watched

    def _snapshot(self) -> bytes:
        """Every line, encoded once until the board's next take (the changes since are in
        that take, which every page in step gets)."""
        if self._snapshot_cache is None:
            with self.lock:
                lines = self.board.lines()
            snapshot = p.Snapshot(time.time_ns() / 1e6, lines, self._phases())
            self._snapshot_cache = p.encode(snapshot)
        return self._snapshot_cache

    def _phases(self) -> dict[str, str]:
        now = self.board.now_ns
        with self.lock:
            markets = sorted(self.board.markets)
        return {m: str(self.sessions.phase(m, now)) for m in markets}

    async def push(self) -> None:
        """Every interval: the changed lines to every page in step, a snapshot to those that
        caught up, the closed bars to the pages charting their code."""
        quiet = rolled = 0.0
        said = self.feed.pipeline
        interval = self.settings.interval_s
        taken = time.monotonic()
        while True:  # an interval from one take to the next, however late one ran
            await asyncio.sleep(max(0.0, taken + interval - time.monotonic()))
            taken, taken_ms = time.monotonic(), time.time_ns() / 1e6
            with self.lock:
                if taken - rolled >= 1.0:
                    rolled = taken
                    self.board.roll(self.board.now_ns)
                lines = self.board.take()
                bars = self.feed.take_bars()
                newest = self.board.newest_recv_ns
            if self.feed.pipeline != said:
                said = self.feed.pipeline
                _log.warning("the run is %s", _STATE_WORDS[said])
            if self.feed.followed != self.followed:
                self._tell_pages_to_come_again()
            if lines:
                self._snapshot_cache = None
            if bars:
                self._send_bars(bars)
            if not lines and taken - quiet < _QUIET_S:
                continue
            quiet = taken
            self.updates += 1
            update = p.Update(taken_ms, lines, self._phases(), self.feed.pipeline,
                              newest / 1e6, self.updates)  # fmt: skip
            self._send(p.encode(update), taken)
            self.lines_sent += len(lines)

    def _tell_pages_to_come_again(self) -> None:
        """The run now publishes other moves: each page reconnects and is told so (hello)."""
        self.followed = self.feed.followed
        self._snapshot_cache = None
        for page in self.pages.values():
            page.closing = True
            task = asyncio.create_task(page.ws.close(1012, "the run restarted: reconnect"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _send(self, update: bytes, now: float) -> None:
        in_step: list[ServerConnection] = []
        caught_up: list[ServerConnection] = []
        for page in self.pages.values():
            transport = page.ws.transport
            buffered = transport.get_write_buffer_size() if transport else 0
            if page.behind_since:
                if buffered < _DRAINED_BYTES:
                    page.behind_since = 0.0
                    caught_up.append(page.ws)
                elif now - page.behind_since > _GIVE_UP_S and not page.closing:
                    page.closing = True
                    task = asyncio.create_task(page.ws.close(1013, "too slow for the feed"))
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)
            elif buffered > _BEHIND_BYTES:
                page.behind_since = now
                _log.warning("a page is behind (%d bytes unsent): it gets a snapshot once it "
                             "drains", buffered)  # fmt: skip
            else:
                in_step.append(page.ws)
        broadcast(in_step, update, text=True)
        if caught_up:
            broadcast(caught_up, self._snapshot(), text=True)

    def _send_bars(self, bars: Iterable[Bar]) -> None:
        by_code: dict[str, list[p.PageBar]] = {}
        for bar in bars:
            by_code.setdefault(bar.code, []).append(page_bar(bar))
        for page in self.pages.values():
            if page.watch in by_code and not page.behind_since:
                message = p.Bars(page.watch, by_code[page.watch], whole=False)
                broadcast([page.ws], p.encode(message), text=True)


def _response(body: bytes, kind: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", f"{kind}; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(HTTPStatus.OK, "OK", headers, body)
