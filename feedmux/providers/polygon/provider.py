"""Polygon.io (now Massive) stocks as a ``providers.base.Provider``: endpoint, pacing, caps and
codes."""

from __future__ import annotations

from feedmux.model import Depth, Tick
from feedmux.providers.base import (
    Auth,
    BadMessage,
    Failure,
    Pacing,
    Peek,
    ServerRules,
    SessionOptions,
    SubscribeModel,
    Trade,
    first_line,
    handshake_status,
    market_refusal,
)
from feedmux.providers.polygon import market, protocol, server, wire

URL = f"wss://socket.massive.com{server.PATH}"  # legacy: wss://socket.polygon.io/stocks
# Nothing documents a request rate: UNCONFIRMED defaults, conservative.
PACING = Pacing(
    # UNCONFIRMED: 1 message per 100 ms. Twice that: a server that reads late (busy sending a
    # burst) sees two messages closer than they left, and 10 % was seen not to cover it.
    request_interval_ns=200_000_000,
    cross_interval_ns=200_000_000,  # one connection per account: the same rule
    spacing_max_ns=10_000_000_000,
    heartbeat_interval_ns=0,  # the server pings; the link answers: no application heartbeat
    reconnect_spacing_ns=1_000_000_000,  # undocumented; with the manager's backoff
    reconnect_max_ns=60_000_000_000,
    watchdog_ns=60_000_000_000,  # a quiet ticker list may be silent a while; pings still come
)


class Polygon:
    name = "polygon"
    markets = frozenset(("US",))
    whole_market = wire.WHOLE_MARKET  # T.*: every ticker's trades
    default_url = URL
    auth: Auth = "message"
    subscribe_model: SubscribeModel = "add_remove"
    pacing = PACING
    max_codes_per_conn = 100_000  # no documented cap: the whole market rides one connection
    max_conns = 1  # one connection per cluster per account
    max_depth_levels = 1  # a quote (NBBO) is a one-level book
    max_frame_bytes = wire.DEFAULT_MAX_FRAME_BYTES
    codes_per_request = protocol.DEFAULT_CODES_PER_REQUEST
    replay_path = server.PATH
    replay_plan = server.plan_rules("")
    replay_ping_s = 10.0  # the server pings; a client that does not answer is dropped
    garbage_frames = market.GARBAGE_FRAMES

    def connect_url(self, url: str, token: str) -> str:
        return url  # the key goes in the auth message

    def connect_headers(self, token: str) -> list[str]:
        return []

    def session(self, name: str, options: SessionOptions) -> protocol.PolygonClient:
        return protocol.PolygonClient(name, codes_per_request=options.codes_per_request,
                                      max_frame_bytes=options.max_frame_bytes,
                                      subscribe_model=options.subscribe_model)  # fmt: skip

    def split(self, payload: bytes) -> list[tuple[Peek, bytes]]:
        return wire.split_frame(payload, self.max_frame_bytes)

    def pack(self, pushes: list[bytes]) -> list[bytes]:
        return market.pack(pushes)

    def decode(self, payload: bytes, recv_ns: int) -> Tick | Depth | BadMessage:
        return wire.decode_push(payload, recv_ns, self.max_frame_bytes)

    def canonical(self, vendor_code: str) -> str:
        return wire.canonical(vendor_code)

    def vendor_code(self, code: str) -> str:
        return wire.vendor_code(code)

    def cannot_carry(self, code: str) -> str | None:
        return market_refusal(self.name, self.markets, code)

    def request_codes(self, payload: bytes) -> list[str]:
        return wire.request_codes(payload)

    def handshake_failure(self, status: int, body: bytes | str | None) -> Failure:
        return handshake_status(status, first_line(body))

    def simulator(self, rules: ServerRules, universe: set[str]) -> server.PolygonServer:
        return server.PolygonServer(rules, universe)

    def replay_universe(self, seed: int) -> list[str]:
        from feedmux.simulator.market import us_universe  # noqa: PLC0415 (imports us)

        return us_universe(seed)

    def replay_token(self, path: str, headers: dict[str, str]) -> str:
        return ""  # the key comes in the auth message

    def trade_frame(self, trade: Trade) -> bytes:
        return market.trade_frame(trade)

    def book_frame(self, code: str, seq: int, time_ms: int, bids: list[tuple[float, int]],
                   asks: list[tuple[float, int]]) -> bytes:  # fmt: skip
        return market.book_frame(code, seq, time_ms, bids, asks)


PROVIDER = Polygon()
