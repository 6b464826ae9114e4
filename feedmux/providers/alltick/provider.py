"""AllTick as a ``providers.base.Provider``: endpoint, pacing, caps and codes."""

from __future__ import annotations

from feedmux.model import Depth, Tick
from feedmux.providers.alltick import market, protocol, server
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
    market_refusal,
)

URL = f"wss://quote.alltick.co{server.PATH}"
# Spec rules 2, 3 and 6, each with a 10 % margin for network jitter.
PACING = Pacing(
    request_interval_ns=1_100_000_000,  # spec: 1 s per connection
    cross_interval_ns=3_300_000_000,  # spec: 3 s between subscription requests of a token
    spacing_max_ns=30_000_000_000,  # the cross interval widens up to this after a 606
    heartbeat_interval_ns=10_000_000_000,  # spec: every 10 s; dropped after 30 s without
    reconnect_spacing_ns=3_300_000_000,  # spec: 3 s on paid plans (10 s free)
    reconnect_max_ns=60_000_000_000,
    watchdog_ns=30_000_000_000,
)


class AllTick:
    name = "alltick"
    markets = frozenset(("SH", "SZ", "BJ", "HK", "US"))
    whole_market = None  # no wildcard: the codes are listed
    default_url = URL
    auth: Auth = "query"
    subscribe_model: SubscribeModel = "replace"
    pacing = PACING
    max_codes_per_conn = 3000  # all-market and professional plans
    max_conns = 10
    max_depth_levels = 10  # HK; A-shares 5, US 1 (the server caps each market)
    max_frame_bytes = protocol.DEFAULT_MAX_FRAME_BYTES
    codes_per_request = max_codes_per_conn  # a list is replaced whole, in one request
    replay_path = server.PATH
    replay_plan = server.plan_rules("")
    replay_ping_s = None  # the heartbeat is a request of the client's
    garbage_frames = market.GARBAGE_FRAMES

    def connect_url(self, url: str, token: str) -> str:
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}token={token}"

    def connect_headers(self, token: str) -> list[str]:
        return []

    def session(self, name: str, options: SessionOptions) -> protocol.AllTickClient:
        """A connection's protocol; AllTick replaces a list whole, in one request, whatever
        ``options`` say of requests."""
        return protocol.AllTickClient(name, options.max_frame_bytes)

    def split(self, payload: bytes) -> list[tuple[Peek, bytes]]:
        key = protocol.peek(payload)
        return [] if key is None else [(key, payload)]

    def pack(self, pushes: list[bytes]) -> list[bytes]:
        return pushes  # a message per push

    def decode(self, payload: bytes, recv_ns: int) -> Tick | Depth | BadMessage:
        return protocol.decode_push(payload, recv_ns, self.max_frame_bytes)

    def canonical(self, vendor_code: str) -> str:
        return vendor_code  # feedmux's canonical form is AllTick's

    def vendor_code(self, code: str) -> str:
        return code

    def cannot_carry(self, code: str) -> str | None:
        return market_refusal(self.name, self.markets, code)

    def request_codes(self, payload: bytes) -> list[str]:
        return protocol.request_codes(payload)

    def handshake_failure(self, status: int, body: bytes | str | None) -> Failure:
        return protocol.handshake_failure(status, body)

    def simulator(self, rules: ServerRules, universe: set[str]) -> server.AllTickServer:
        return server.AllTickServer(rules, universe)

    def replay_universe(self, seed: int) -> list[str]:
        from feedmux.simulator.market import a_share_universe  # noqa: PLC0415 (imports us)

        return a_share_universe(seed)

    def replay_token(self, path: str, headers: dict[str, str]) -> str:
        return server.token_of(path)

    def trade_frame(self, trade: Trade) -> bytes:
        return market.trade_frame(trade)

    def book_frame(self, code: str, seq: int, time_ms: int, bids: list[tuple[float, int]],
                   asks: list[tuple[float, int]]) -> bytes:  # fmt: skip
        return market.book_frame(code, seq, time_ms, bids, asks)


PROVIDER = AllTick()
