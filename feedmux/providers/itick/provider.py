"""iTick as a ``providers.base.Provider``: endpoint, pacing, caps and codes."""

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
from feedmux.providers.itick import market, protocol, server, symbols, wire

URL = f"wss://api.itick.org{server.PATH}"
# iTick documents no request spacing: these are UNCONFIRMED, conservative, with a 10 % margin
# over the replay server's request interval (it enforces no cross interval nor reconnect
# spacing: iTick documents neither).
PACING = Pacing(
    request_interval_ns=1_100_000_000,  # UNCONFIRMED: 1 s per connection
    cross_interval_ns=1_100_000_000,  # UNCONFIRMED: 1 s between subscription requests of a token
    spacing_max_ns=30_000_000_000,
    heartbeat_interval_ns=30_000_000_000,  # the vendor's examples ping every 30 s
    reconnect_spacing_ns=3_000_000_000,  # UNCONFIRMED
    reconnect_max_ns=60_000_000_000,
    watchdog_ns=90_000_000_000,  # three heartbeats with no answer at all
)
# The replay universe's size beyond the A-shares: as many HK and US codes.
REPLAY_HK, REPLAY_US = 300, 500


class ITick:
    name = "itick"
    markets = symbols.REGIONS  # BJ: UNCONFIRMED, not carried
    whole_market = None  # no wildcard: the codes are listed
    default_url = URL
    auth: Auth = "header"
    subscribe_model: SubscribeModel = "add_remove"  # UNCONFIRMED: a subscribe adds
    pacing = PACING
    max_codes_per_conn = 500  # "单个WS最大订阅数为500"
    max_conns = 1  # per token, on the paid plan: a newer connection disconnects the older
    max_depth_levels = 10  # UNCONFIRMED: a depth push carries the levels iTick sends
    max_frame_bytes = wire.DEFAULT_MAX_FRAME_BYTES
    codes_per_request = 500
    replay_path = server.PATH
    replay_plan = server.plan_rules("")
    replay_ping_s = None  # the heartbeat is the client's ping
    garbage_frames = market.GARBAGE_FRAMES

    def connect_url(self, url: str, token: str) -> str:
        return url  # the token goes in a header

    def connect_headers(self, token: str) -> list[str]:
        return [f"token: {token}"]

    def session(self, name: str, options: SessionOptions) -> protocol.ITickClient:
        return protocol.ITickClient(name, options)

    def split(self, payload: bytes) -> list[tuple[Peek, bytes]]:
        key = wire.peek(payload)
        return [] if key is None else [(key, payload)]

    def pack(self, pushes: list[bytes]) -> list[bytes]:
        return pushes  # a message per push

    def decode(self, payload: bytes, recv_ns: int) -> Tick | Depth | BadMessage:
        return wire.decode_push(payload, recv_ns, self.max_frame_bytes)

    def canonical(self, vendor_code: str) -> str:
        code = symbols.canonical(vendor_code)
        if code is None:
            raise ValueError(f"not a code iTick serves here: {vendor_code!r}")
        return code

    def vendor_code(self, code: str) -> str:
        return symbols.vendor_code(code)

    def cannot_carry(self, code: str) -> str | None:
        return market_refusal(self.name, self.markets, code)

    def request_codes(self, payload: bytes) -> list[str]:
        """The codes a subscribe request we sent asks for (an unsubscribe asks for none)."""
        req = wire.request(payload)
        if req is None or req.ac != "subscribe":
            return []
        return [c for c in symbols.parse_params(req.params) if c is not None]

    def handshake_failure(self, status: int, body: bytes | str | None) -> Failure:
        """A refused handshake, classified; a body saying ``auth failed`` is the token's."""
        failure = handshake_status(status, first_line(body))
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body or ""
        if "auth failed" in text:
            return Failure("token", f"{failure.detail}, auth failed", failure.body)
        return failure

    def simulator(self, rules: ServerRules, universe: set[str]) -> server.ITickServer:
        return server.ITickServer(rules, universe)

    def replay_universe(self, seed: int) -> list[str]:
        """The A-shares iTick carries (no BJ), then Hong Kong and US codes."""
        from feedmux.simulator.market import (  # noqa: PLC0415 (imports us)
            a_share_universe,
            hk_universe,
            us_universe,
        )

        a_shares = [c for c in a_share_universe(seed) if self.cannot_carry(c) is None]
        return a_shares + hk_universe(seed, REPLAY_HK) + us_universe(seed, REPLAY_US)

    def replay_token(self, path: str, headers: dict[str, str]) -> str:
        return server.token_of(headers)

    def trade_frame(self, trade: Trade) -> bytes:
        return market.trade_frame(trade)

    def book_frame(self, code: str, seq: int, time_ms: int, bids: list[tuple[float, int]],
                   asks: list[tuple[float, int]]) -> bytes:  # fmt: skip
        return market.book_frame(code, seq, time_ms, bids, asks)


PROVIDER = ITick()
