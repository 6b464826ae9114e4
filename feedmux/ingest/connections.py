"""The receiver's connection table: opens each connection's link when the manager says so,
sends what is due, reads what arrives (pushes to ``route``), and drops a link that failed, was
refused or went silent. Every connection's state is its ``Connection`` (``connection.py``);
this only moves bytes between links, sessions, the manager and the journal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import msgspec
import zmq

from feedmux.ingest.connection import Connection, Link
from feedmux.ingest.journal import JournalWriter
from feedmux.ingest.subscriptions import SubscriptionManager
from feedmux.ops.config import redact
from feedmux.providers.base import BadMessage, Failure, Reply, Route, first_line, tokens_of
from feedmux.stats.receiver import ConnectionStats
from feedmux.transports.ws import HandshakeRefused, LinkErrors


class Poller(Protocol):
    """Where link descriptors are watched (``zmq.Poller``, or a fake)."""

    def register(self, socket: int, flags: int = ...) -> object: ...
    def unregister(self, socket: int) -> object: ...


Clock = Callable[[], int]


def _trades_confirmed(reply: Reply) -> bool:
    """A trade list (not a cancel) the vendor accepted."""
    request = reply.request
    return reply.ok and request is not None and request.kind == "trades" and bool(request.codes)


class ConnectionTable:
    def __init__(
        self,
        manager: SubscriptionManager,
        poller: Poller,
        open_link: Callable[[str], Link],  # with a token; raises HandshakeRefused, LinkErrors
        journal: JournalWriter,
        log: logging.Logger,
        *,
        token: str,  # one, or several comma-separated (connection i: manager.token_index(i))
        url: str,  # for the journal and logs: no token
        route: Route,  # where pushes go, undecoded (to the shard of their code)
        on_events: Callable[[], None] = lambda: None,  # after each batch of replies
        clock: Clock = time.monotonic_ns,
        wall: Clock = time.time_ns,
    ) -> None:
        self.manager = manager
        self.poller = poller
        self.open_link = open_link
        self.journal = journal
        self.log = log
        self.token = token
        self.tokens = tokens_of(token)
        self.url = url
        self.route = route
        self.on_events = on_events
        self.clock = clock
        self.wall = wall
        self.by_fd: dict[int, Connection] = {}
        # Set when anything but ticks happened (a connect, send, reply or drop): the manager's
        # next deadline may have moved. The loop clears it when it asks again.
        self.changed = True
        self._logged_kinds: set[str] = set()  # bad-message kinds logged once; counters say more

    @property
    def connections(self) -> list[Connection]:
        return self.manager.connections  # grows when live changes need another connection

    # -- opening and sending --------------------------------------------------------------------
    def connect_due(self) -> None:
        """Open every connection the manager wants up now."""
        for i in self.manager.connect_due(self.clock()):
            self.changed = True
            conn = self.connections[i]
            token = self.tokens[self.manager.token_index(i)]
            try:
                link = self.open_link(token)
            except HandshakeRefused as exc:  # one short line, classified
                self.drop(conn, f"connect failed: {exc}", exc.failure)
                continue
            except LinkErrors as exc:  # refused, reset, timed out: retried for ever
                self.drop(conn, f"connect failed: {exc}")
                continue
            conn.link = link
            self.by_fd[link.fileno()] = conn
            self.poller.register(link.fileno(), zmq.POLLIN)
            self.manager.on_connected(i, self.clock())
            self.log.info("connection %d up", i)
            self.journal.event(self.wall(), i, "connect", url=self.url,
                               provider=self.manager.provider.name)  # fmt: skip
            self._send(conn, conn.session.opening(token), journaled=False)  # holds the token

    def send_due(self) -> None:
        """Subscription requests and heartbeats due now."""
        for i, request in self.manager.due(self.clock(), self.wall()):
            self._send(self.connections[i], [request])

    def _send(self, conn: Connection, payloads: list[bytes], journaled: bool = True) -> None:
        self.changed = True
        for payload in payloads:
            link = conn.link
            if link is None:  # dropped by the failed send of an earlier payload
                return
            try:
                link.send_text(payload)
            except LinkErrors as exc:
                self.drop(conn, f"send failed: {exc}")
                return
            if journaled:
                self.journal.sent(self.wall(), conn.index, payload)

    # -- reading --------------------------------------------------------------------------------
    def on_ready(self, fd: int, flags: int) -> None:
        """A link's descriptor is readable (or broken): every message it holds, decoded."""
        conn = self.by_fd.get(fd)
        link = conn.link if conn is not None else None
        if conn is None or link is None:
            return
        if flags & zmq.POLLERR and not flags & zmq.POLLIN:
            self.drop(conn, "socket closed")
            return
        try:
            messages = link.read()
        except LinkErrors as exc:
            self.drop(conn, f"read failed: {exc!r}")
            return
        recv_ns = self.wall()  # when these bytes were read off the socket
        conn.messages += len(messages)
        self.journal.messages(recv_ns, conn.index, messages)
        session = conn.session
        if session.receive_read(messages, recv_ns, self.route):
            conn.last_message_ns = self.clock()  # the watchdog's "alive"
        if session.events:
            self._handle_events(conn)
        if conn.failure is not None:  # e.g. ret 401: the link is useless, count it
            self.drop(conn, f"refused: {conn.failure.detail}")
        elif link.ended is not None:  # the server closed, or sent what we refuse
            if link.refused is not None:  # counted with the bad messages it is
                bad = session.bad_messages
                bad[link.refused] = bad.get(link.refused, 0) + 1
            self.drop(conn, link.ended)

    def _handle_events(self, conn: Connection) -> None:
        self.changed = True
        session, i = conn.session, conn.index
        for event in session.events:
            if isinstance(event, Reply):
                now = self.clock()
                self.manager.on_reply(i, event, now)
                if not event.ok:
                    msg = redact(first_line(event.msg), self.token)  # one short line
                    retry_s = (conn.retry_at_ns - now) / 1e9
                    self.log.warning("connection %d: %s refused: ret=%d %s%s", i, event.what(),
                                     event.ret, msg, f"; sent again in {retry_s:.1f} s"
                                     if retry_s > 0 else "")  # fmt: skip
                elif _trades_confirmed(event):
                    self.log.info("connection %d: %d codes subscribed", i, len(conn.confirmed))
            elif isinstance(event, BadMessage) and event.kind not in self._logged_kinds:
                self._logged_kinds.add(event.kind)  # once per kind; the counters say how many
                sample = redact(event.sample.decode("utf-8", "replace"), self.token)
                self.log.warning("bad message (%s), skipped: %s; sample: %r", event.kind,
                                 event.detail, sample)  # fmt: skip
        session.events.clear()
        self.on_events()

    # -- dropping -------------------------------------------------------------------------------
    def drop(self, conn: Connection, why: str, failure: Failure | None = None) -> None:
        """Close the link (if up) and tell the manager, which schedules the reconnect."""
        self.changed = True
        self._close_link(conn)
        token = self.token
        if failure is not None:  # a server's words may quote the token: never keep it
            failure = msgspec.structs.replace(failure, detail=redact(failure.detail, token),
                                              body=redact(failure.body, token))  # fmt: skip
        shown = redact(why, token)
        self.manager.on_disconnected(conn.index, self.clock(), shown, failure)
        self.journal.event(self.wall(), conn.index, "disconnect", reason=why)
        if self.manager.fatal is None:
            wait_s = (conn.connect_at_ns - self.clock()) / 1e9
            self.log.warning("connection %d down (%s); reconnecting in %.1f s", conn.index,
                             shown, wait_s)  # fmt: skip
        else:
            self.log.warning("connection %d down (%s)", conn.index, shown)

    def _close_link(self, conn: Connection) -> None:
        link, conn.link = conn.link, None
        if link is not None:
            fd = link.fileno()
            self.poller.unregister(fd)
            del self.by_fd[fd]
            link.close()

    def drop_stale(self, watchdog_s: float) -> None:
        """Links silent for the watchdog time: torn down (and counted by the manager)."""
        for i in self.manager.stale(self.clock()):
            self.drop(self.connections[i], f"watchdog: no message for {watchdog_s:g} s")

    def close(self) -> None:
        """At exit: close every link, without telling the manager (nothing reconnects)."""
        for conn in self.connections:
            self._close_link(conn)

    def stats(self, now_ns: int) -> list[ConnectionStats]:
        return [conn.stats(now_ns, self.token) for conn in self.connections]
