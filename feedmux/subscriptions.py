"""Which codes each connection carries, and when each request may go out.

Pure state driven by an injected ``now_ns``. It enforces AllTick's pacing (spec rules 1-3):
- a subscribe REPLACES the connection's list, so every request carries the full desired list;
- at most one request per ``request_interval`` per connection, heartbeats included;
- subscription requests across connections at least ``cross_interval`` apart;
- a heartbeat every ``heartbeat_interval``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from feedmux.providers.alltick import (
    CMD_CANCEL,
    CMD_SUBSCRIBE_TRADES,
    RET_RATE_LIMIT,
    AllTickClient,
    Reply,
)

_NEVER = -(2**62)
REPLY_TIMEOUT_NS = 10_000_000_000  # an unanswered request is retried after this


def assign(codes: list[str], max_codes_per_conn: int) -> list[list[str]]:
    """Split codes into the fewest connections under the cap, evenly."""
    if max_codes_per_conn < 1:
        raise ValueError("max_codes_per_conn must be >= 1")
    count = max(1, math.ceil(len(codes) / max_codes_per_conn))
    size = math.ceil(len(codes) / count)
    return [codes[i * size : (i + 1) * size] for i in range(count)]


@dataclass
class ConnectionState:
    index: int
    client: AllTickClient
    desired: list[str]
    confirmed: list[str] = field(default_factory=list)
    connected: bool = False
    inflight_since: int | None = None
    last_request_ns: int = _NEVER
    last_heartbeat_ns: int = _NEVER
    retry_at_ns: int = _NEVER
    refused: list[str] | None = None  # a list the server refused; not retried until it changes
    last_error: str = ""
    connect_at_ns: int = _NEVER  # when to (re)connect while disconnected
    last_subscription_ns: int = _NEVER
    reconnects: int = 0

    def needs_request(self) -> bool:
        return (
            self.connected
            and self.inflight_since is None
            and self.desired not in (self.confirmed, self.refused)
        )


@dataclass(frozen=True)
class Pacing:
    request_interval_ns: int = 1_100_000_000  # spec: 1 s; 10 % margin for network jitter
    cross_interval_ns: int = 3_300_000_000  # spec: 3 s across connections of one token
    heartbeat_interval_ns: int = 10_000_000_000
    reconnect_spacing_ns: int = 3_300_000_000  # spec: 3 s on paid plans (10 s free)


class SubscriptionManager:
    def __init__(
        self, codes: list[str], max_codes_per_conn: int, pacing: Pacing, name: str = "feedmux"
    ) -> None:
        self.pacing = pacing
        self.connections = [
            ConnectionState(i, AllTickClient(f"{name}-c{i}"), part)
            for i, part in enumerate(assign(codes, max_codes_per_conn))
        ]
        self._last_close_ns = _NEVER

    # -- connection lifecycle -------------------------------------------------------------------
    def on_connected(self, index: int, now_ns: int) -> None:
        conn = self.connections[index]
        conn.connected = True
        conn.confirmed = []  # a new connection starts with nothing subscribed
        conn.refused = None
        conn.inflight_since = None
        conn.last_heartbeat_ns = now_ns  # the first heartbeat is due one interval after connect

    def on_disconnected(self, index: int, now_ns: int, error: str = "") -> None:
        """The link is gone (or never came up): reconnect after the vendor's spacing."""
        conn = self.connections[index]
        if conn.connected:
            self._last_close_ns = now_ns
            conn.reconnects += 1
        conn.connected = False
        conn.inflight_since = None
        conn.confirmed = []
        conn.client.reset()
        conn.last_error = error or conn.last_error
        # The server counts spacing from the last close of ANY connection of the token.
        conn.connect_at_ns = max(now_ns, self._last_close_ns) + self.pacing.reconnect_spacing_ns

    def connect_due(self, now_ns: int) -> list[int]:
        """Connections to open now."""
        return [c.index for c in self.connections if not c.connected and c.connect_at_ns <= now_ns]

    # -- outgoing -------------------------------------------------------------------------------
    def _subscription_time(self, conn: ConnectionState) -> int:
        # The 3 s rule is across connections: this connection's own last request only
        # holds it back by the per-connection interval.
        others = max(
            (c.last_subscription_ns for c in self.connections if c is not conn), default=_NEVER
        )
        return max(
            conn.last_request_ns + self.pacing.request_interval_ns,
            others + self.pacing.cross_interval_ns,
            conn.retry_at_ns,
        )

    def _heartbeat_time(self, conn: ConnectionState) -> int:
        return max(
            conn.last_heartbeat_ns + self.pacing.heartbeat_interval_ns,
            conn.last_request_ns + self.pacing.request_interval_ns,
        )

    def due(self, now_ns: int) -> list[tuple[int, bytes]]:
        """Requests to send now, as ``(connection index, frame)``."""
        out: list[tuple[int, bytes]] = []
        for conn in self.connections:
            if not conn.connected:
                continue
            if conn.inflight_since is not None and now_ns - conn.inflight_since > REPLY_TIMEOUT_NS:
                conn.inflight_since = None  # lost reply: the full list is simply sent again
            if conn.needs_request() and self._subscription_time(conn) <= now_ns:
                if conn.desired:
                    frame = conn.client.subscribe_trades(conn.desired)
                else:
                    frame = conn.client.cancel()
                conn.inflight_since = now_ns
                conn.last_request_ns = conn.last_subscription_ns = now_ns
                out.append((conn.index, frame))
            elif self._heartbeat_time(conn) <= now_ns:
                conn.last_request_ns = conn.last_heartbeat_ns = now_ns
                out.append((conn.index, conn.client.heartbeat()))
        return out

    def next_deadline(self) -> int | None:
        """The earliest time at which ``due`` may return something."""
        times = []
        for conn in self.connections:
            if not conn.connected:
                times.append(conn.connect_at_ns)
                continue
            if conn.needs_request():
                times.append(self._subscription_time(conn))
            elif conn.inflight_since is not None:
                times.append(conn.inflight_since + REPLY_TIMEOUT_NS)
            times.append(self._heartbeat_time(conn))
        return min(times) if times else None

    # -- replies --------------------------------------------------------------------------------
    def on_reply(self, index: int, reply: Reply, now_ns: int) -> None:
        conn = self.connections[index]
        request = reply.request
        if request is None or request.cmd_id not in (CMD_SUBSCRIBE_TRADES, CMD_CANCEL):
            return  # heartbeat replies and unknown seq_ids change nothing here
        conn.inflight_since = None
        if request.cmd_id == CMD_CANCEL:
            sent: list[str] = []
        else:
            symbol_list = request.data["symbol_list"]
            assert isinstance(symbol_list, list)
            sent = [entry["code"] for entry in symbol_list]
        if reply.ok:
            conn.confirmed = sent
            conn.last_error = ""
        elif reply.ret == RET_RATE_LIMIT:
            conn.retry_at_ns = now_ns + self.pacing.request_interval_ns
            conn.last_error = f"ret={reply.ret} {reply.msg}"
        else:
            conn.refused = sent
            conn.last_error = f"ret={reply.ret} {reply.msg}"

    # -- status ---------------------------------------------------------------------------------
    def all_confirmed(self) -> bool:
        return all(c.connected and c.confirmed == c.desired for c in self.connections)

    def confirmed_codes(self) -> int:
        return sum(len(c.confirmed) for c in self.connections)
