"""Connecting to NATS: ``connect`` for the run's start-up check and consumers (a server must
answer now), ``Link`` for a shard (connected in the background and kept, whatever happens)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec
import nats.errors
from nats.aio.client import Client

from feedmux.errors import FeedmuxError, StoreError
from feedmux.passwords import mask_passwords

CONNECT_TIMEOUT_S = 5  # one server, reconnecting
GREETING_S = 2  # one server's TCP connect and INFO greeting, at the first connect
FIRST_CONNECT_S = 5.0  # every server, at the first connect
RECONNECT_WAIT_S = 1  # between two attempts at one server
# A server that died without closing, or stopped (SIGSTOP, a frozen VM), is noticed when two
# pings in a row go unanswered: within three intervals, 15 s.
PING_INTERVAL_S = 5
MAX_OUTSTANDING_PINGS = 2
CLOSE_S = 3.0  # closing waits this long for the server (gone or stopped: not longer)

log = logging.getLogger(__name__)


def _said(exc: BaseException) -> str:
    return mask_passwords(str(exc)) or type(exc).__name__


def _options(urls: list[str], name: str, **more: Any) -> dict[str, Any]:
    """What every feedmux client asks of nats-py (and ``more``): try every server, for ever (the
    callers bound the first connect, or want for ever), and notice a dead server within
    seconds."""
    return {"servers": urls, "name": name, "connect_timeout": CONNECT_TIMEOUT_S,
            "allow_reconnect": True, "max_reconnect_attempts": -1,
            "reconnect_time_wait": RECONNECT_WAIT_S, "ping_interval": PING_INTERVAL_S,
            "max_outstanding_pings": MAX_OUTSTANDING_PINGS} | more  # fmt: skip


def _url(client: Client, shown: str) -> str:
    """The server ``client`` is connected to, masked (``shown``: the URLs it was given)."""
    url = client.connected_url  # a ParseResult: its str() is no URL, and nothing in it masked
    return mask_passwords(url.geturl()) if url is not None else shown


def why(exc: BaseException) -> str:
    """A connection error as a person can act on it (passwords and tokens masked)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server up, and is that its port?)"
    if isinstance(exc, TimeoutError):
        return f"no NATS server answered within {GREETING_S:g} s (is that a NATS port?)"
    return _said(exc)


async def _insists_on_tls(url: str) -> str | None:
    """Why a ``tls://`` server must not get our credentials, or None. nats-py upgrades to TLS
    only when the server's greeting requires it, and otherwise sends CONNECT (a password, a
    token) in clear: so read the greeting first."""
    parts = urlsplit(url)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port or 4222), GREETING_S
        )
        try:
            line = await asyncio.wait_for(reader.readline(), GREETING_S)
        finally:
            writer.close()
    except (OSError, TimeoutError):
        return None  # unreachable: connect says why
    try:
        info = msgspec.json.decode(line.removeprefix(b"INFO ").strip(), type=_Greeting)
    except msgspec.DecodeError:
        return None  # not NATS: connect says so
    if info.tls_required:
        return None
    return (
        f"{mask_passwords(url)} does not require TLS, so nothing would be encrypted: "
        "feedmux sends no credentials in clear (give nats:// if that is meant)"
    )


class _Greeting(msgspec.Struct):
    tls_required: bool = False


async def connect(urls: list[str], name: str, *, shown: str,
                  error: type[FeedmuxError] = StoreError) -> Client:  # fmt: skip
    """A client that reconnects for ever once connected. ``error`` (with the last reason:
    refused, not NATS, bad credentials) when no server answers within FIRST_CONNECT_S, or at
    once when every server refused the connection: at start a wrong URL is a mistake to report,
    not an outage to wait out."""
    last: list[BaseException] = []
    refused = asyncio.Event()

    async def failed(exc: Exception) -> None:
        last.append(exc)
        log.debug("NATS: %s", why(exc))
        if sum(isinstance(e, ConnectionRefusedError) for e in last) >= len(urls):
            refused.set()

    async def disconnected() -> None:
        if not client.is_closed:  # closing says so too
            log.warning("NATS connection lost; reconnecting")

    async def reconnected() -> None:
        log.warning("NATS reconnected to %s", _url(client, shown))

    for url in urls:
        if url.startswith("tls://") and (refusal := await _insists_on_tls(url)) is not None:
            raise error(f"cannot use NATS: {refusal}")
    client = Client()
    connecting = asyncio.ensure_future(client.connect(**_options(
        urls, name, connect_timeout=GREETING_S, error_cb=failed, disconnected_cb=disconnected,
        reconnected_cb=reconnected)))  # fmt: skip
    gave_up = asyncio.ensure_future(refused.wait())
    await asyncio.wait([connecting, gave_up], timeout=FIRST_CONNECT_S,
                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    gave_up.cancel()
    problem: BaseException | None = TimeoutError()
    if connecting.done():
        problem = connecting.exception()
    else:
        connecting.cancel()
    if problem is not None:
        await client.close()
        raise error(f"cannot reach NATS at {shown}: {why(last[-1] if last else problem)}")
    return client


class Link:
    """A shard's connection to NATS for its whole life: made in the background (a shard
    started while NATS is down starts all the same) and kept, reconnecting for ever. Says once
    when the connection is lost (or cannot be made) and once when it is back; remembers the
    last error, for the StoreError of a publish meanwhile. Every method runs on the loop."""

    def __init__(self, urls: list[str], name: str, shown: str, *,
                 on_connect: Callable[[Client], Awaitable[None]],
                 on_lost: Callable[[str], None]) -> None:  # fmt: skip
        self.client = Client()
        self.shown = shown
        self._urls = urls
        self._name = name
        self._on_connect = on_connect  # once, after the first connect (subscriptions persist)
        self._on_lost = on_lost  # fails what waits on the connection
        self._task: asyncio.Task[None] | None = None
        self._ready = False  # connected once, and on_connect done
        self._started = False
        self._closing = False
        self.last_error = ""
        self._outage = False  # said to be down, not yet said to be back
        self._down_since = time.monotonic()  # not connected yet

    @property
    def ready(self) -> bool:
        return self._ready and self.client.is_connected

    def down(self) -> str:
        """Why a publish cannot go now. nats-py may tell of a lost connection late (its
        disconnect callback waits for the socket to close, which a stopped server holds up):
        a publish that finds the connection down says so first."""
        if self._ready:
            self._lost_now()
        what = "NATS connection lost" if self._ready else "not connected to NATS yet"
        since = time.monotonic() - self._down_since
        return (f"{what} ({self.shown}; {since:.0f} s, last error: "
                f"{self.last_error or 'none yet'}); retried until it is back")  # fmt: skip

    def open(self) -> None:
        """Start connecting (in the background)."""
        self._task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        self._started = True
        try:
            await self.client.connect(**_options(
                self._urls, self._name, error_cb=self._error, disconnected_cb=self._lost,
                reconnected_cb=self._back, skip_subject_validation=True,  # feedmux's are valid
                pending_size=0))  # disconnected: a publish fails at once, none is kept  # fmt: skip
            await self._on_connect(self.client)
        except (nats.errors.Error, OSError) as exc:  # closed meanwhile, or a bug of ours
            self.last_error = _said(exc)
            log.error("NATS connection to %s not made: %s", self.shown, self.last_error)
            return
        self._ready = True
        self._back_up("connected to")

    async def _error(self, exc: Exception) -> None:
        """Each failed attempt (nats-py retries): remembered; said once per outage."""
        self.last_error = _said(exc)
        if isinstance(exc, TimeoutError) and not str(exc):  # a server that does not answer
            self.last_error = f"no answer to connecting within {CONNECT_TIMEOUT_S} s"
        if not self._ready and not self._outage and not self._closing:
            self._outage = True
            log.warning("NATS not reachable at %s (%s); publishes fail and are retried until "
                        "it is", self.shown, self.last_error)  # fmt: skip
        else:
            log.debug("NATS: %s", self.last_error)

    def _lost_now(self) -> None:
        if self._outage or self._closing or self.client.is_closed:
            return
        self._outage = True
        self._down_since = time.monotonic()
        self.last_error = self.last_error or "no answer to pings, or closed by the server"
        log.warning("NATS connection to %s lost (%s); publishes fail and are retried until "
                    "it is back", self.shown, self.last_error)  # fmt: skip

    async def _lost(self) -> None:
        self._lost_now()
        if not self._closing:
            self._on_lost(self.down())

    async def _back(self) -> None:
        self._back_up("connection back to")

    def _back_up(self, what: str) -> None:
        url = _url(self.client, self.shown)
        if self._outage:
            log.warning("NATS %s %s after %.1f s", what, url, time.monotonic() - self._down_since)
        else:
            log.info("NATS %s %s", what, url)
        self._outage = False
        self.last_error = ""

    async def close(self) -> None:
        """Bounded, whether the server answers, is gone or is stopped."""
        self._closing = True
        if self._task is not None and not self._task.done():
            self._task.cancel()  # still connecting
            await asyncio.wait([self._task], timeout=CLOSE_S)
        if not self._started:
            return  # nats-py cannot close what never began to connect
        try:
            await asyncio.wait_for(self.client.close(), CLOSE_S)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            log.info("closing the NATS connection to %s: %s", self.shown, _said(exc))
