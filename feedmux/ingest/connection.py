"""One vendor connection's whole state, in one object: its link, its protocol session, what it
is subscribed to (kept by ``SubscriptionManager``) and its counters (for the stats)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from feedmux.ops.config import redact
from feedmux.providers.base import Failure, Session
from feedmux.stats.receiver import ConnectionStats
from feedmux.transports.frames import Message

NEVER = -(2**62)


class Link(Protocol):
    """An open WebSocket, as the receiver drives it (``transports.ws.WsLink``)."""

    ended: str | None  # why the link is over (then drop it)
    refused: str | None  # the bad-message kind of what the server sent and we refused

    def fileno(self) -> int: ...
    def read(self) -> list[Message]: ...
    def send_text(self, payload: bytes) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Refusal:
    """The vendor refused a subscription request of a connection."""

    sent_ns: int  # when the refused request went out: it carried changes made before
    error: str  # "ret=201 request header param invalid"
    retried: bool  # sent again after the widened spacing (else: not until the list changes)


@dataclass
class Connection:
    index: int
    session: Session
    link: Link | None = None  # None while down
    # -- counters --------------------------------------------------------------------------------
    messages: int = 0  # received over every link of this connection
    last_message_ns: int = 0  # monotonic time of the last push or reply (0: none yet)
    reconnects: int = 0
    watchdog_trips: int = 0
    # -- subscriptions (SubscriptionManager) -----------------------------------------------------
    desired: list[str] = field(default_factory=list)  # the codes assigned to this connection
    confirmed: list[str] = field(default_factory=list)  # what the server acked last
    held_back: set[str] = field(default_factory=set)  # left out while a bad code is searched
    connected: bool = False
    inflight_since: int | None = None
    last_request_ns: int = NEVER
    last_heartbeat_ns: int = NEVER
    retry_at_ns: int = NEVER
    refused: list[str] | None = None  # a list the server refused; not retried until it changes
    depth_confirmed: list[str] = field(default_factory=list)  # order-book list the server acked
    depth_refused: list[str] | None = None
    last_error: str = ""
    refusal: Refusal | None = None  # the last refusal of a subscription request, until an ack
    queued: list[bytes] = field(default_factory=list)  # the rest of a change sent in chunks
    connect_at_ns: int = NEVER  # when to (re)connect while disconnected
    connected_at_ns: int = NEVER
    failures: int = 0  # consecutive losses without a confirmed subscription in between
    last_subscription_ns: int = NEVER
    # Since when a request has been waiting to go out (a retry: since the refused one was
    # sent); the token's next slot goes to the longest wait, so no connection starves.
    waiting_since_ns: int | None = None
    failure: Failure | None = None  # a permanent refusal on this link: drop it, count it
    last_failure: Failure | None = None  # the permanent failure of the last attempts ...
    same_failures: int = 0  # ... and how many attempts in a row ended with it

    def request_list(self) -> list[str]:
        if not self.held_back:
            return self.desired
        return [c for c in self.desired if c not in self.held_back]

    def needs_request(self) -> bool:
        if not self.free():
            return False
        wanted = self.request_list()
        return wanted not in (self.confirmed, self.refused)

    def needs_depth_request(self, depth_levels: int) -> bool:
        """Order books follow the codes whose trades the server confirmed."""
        if not depth_levels or not self.free():
            return False
        return self.confirmed not in (self.depth_confirmed, self.depth_refused)

    def free(self) -> bool:
        """Up, authenticated, no request in flight and none of a change left to send (the
        session counts on those going out, refused or not): free for the next request."""
        return (self.connected and self.inflight_since is None and not self.queued
                and self.session.ready)  # fmt: skip

    def stats(self, now_ns: int, token: str) -> ConnectionStats:
        """This connection's entry in the receiver's stats file."""
        return ConnectionStats(
            state="up" if self.connected else "down", codes=len(self.desired),
            confirmed=len(self.confirmed), messages=self.messages,
            last_message_age_s=(now_ns - self.last_message_ns) / 1e9 if self.last_message_ns
            else None,
            reconnects=self.reconnects, watchdog_trips=self.watchdog_trips,
            bad_messages=self.session.bad_messages, error=redact(self.last_error, token),
        )  # fmt: skip
