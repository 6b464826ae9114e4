"""The vendor boundary: what the receiver, the subscription manager and the replay server need
from a market-data vendor, and the typed events a vendor's code hands back.

A vendor lives in ``feedmux/providers/<vendor>/`` and is named once, in the registry
(``feedmux.providers``). Everything here is sans-I/O: no sockets, threads or clocks (callers pass
``now_ns``/``recv_ns``).

Hot path: a session hands each push to the receiver's route with its key (``Peek``: its
code, and whether it is a book), read from the raw bytes without decoding the tick, and
``Provider.decode`` turns one push into a ``Tick`` or ``Depth`` with no connection state, so
that full decoding can run in another process (a shard) while the receiver routes on the key.
A vendor message may carry several pushes (``Provider.split`` gives them one by one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import msgspec

from feedmux.model import Depth, Tick
from feedmux.transports.frames import Message

# -- connection policy --------------------------------------------------------------------------
Auth = Literal["query", "header", "message"]  # token in the URL, in a handshake header, or sent
SubscribeModel = Literal["replace", "add_remove"]  # a request replaces the list, or changes it
ListKind = Literal["trades", "books"]


@dataclass(frozen=True)
class Pacing:
    """When requests may go out, in nanoseconds. Each vendor gives its defaults
    (``Provider.pacing``); the run's settings may override them."""

    request_interval_ns: int  # between any two requests of one connection, heartbeats included
    cross_interval_ns: int  # between any two subscription requests of the token
    spacing_max_ns: int  # the cross interval widens up to this after "too many requests"
    heartbeat_interval_ns: int  # 0: the vendor needs no application heartbeat
    reconnect_spacing_ns: int  # after any close of the token's connections
    reconnect_max_ns: int  # backoff cap; reconnecting never stops
    watchdog_ns: int  # no message at all for this long: tear down, reconnect


# -- why a connection failed: permanent (stop after --give-up-after) or transient (retry) -----
EXIT_GAVE_UP = 3  # the receiver's exit status for a permanent failure; the run's too
BODY_LINE_MAX = 120  # a server's body is quoted by one line of at most this many characters
FailureKind = Literal[
    "token", "plan", "connections", "not_websocket", "handshake", "codes", "transient"
]


class Failure(msgspec.Struct, frozen=True):
    """One classified failure. ``detail`` is one short line ("HTTP 404", "ret=401 token
    invalid") compared to tell identical failures apart; ``body`` a first line of what the
    server said, for the log only."""

    kind: FailureKind
    detail: str
    body: str = ""

    @property
    def permanent(self) -> bool:
        return self.kind != "transient"


class GiveUp(msgspec.Struct, frozen=True):
    """A permanent failure seen ``count`` times in a row: the run stops with ``message``."""

    kind: FailureKind
    message: str
    count: int


def first_line(body: bytes | str | None, limit: int = BODY_LINE_MAX) -> str:
    """The first non-blank line of a server's body, cut to ``limit`` characters."""
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def handshake_status(status: int, line: str) -> Failure:
    """An HTTP status of a refused WebSocket handshake, classified. 401/403: the token;
    404/410 or any 2xx page: no WebSocket there; other 4xx: refused for good; 408, 429 and
    5xx: the server's trouble, retried."""
    detail = f"HTTP {status}"
    if status in (401, 403):
        return Failure("token", detail, line)
    if status in (404, 410) or 200 <= status < 300:
        return Failure("not_websocket", detail, line)
    if 400 <= status < 500 and status not in (408, 429):
        return Failure("handshake", detail, line)
    return Failure("transient", detail, line)


def give_up_message(failure: Failure, count: int, url: str) -> str:
    """What the run says when it stops for ``failure``; ``url`` must hold no token."""
    times = f"{count} time{'s' if count != 1 else ''}"
    if failure.kind == "token":
        return f"vendor refused the token ({failure.detail}) {times}: check --token / FEEDMUX_TOKEN"
    if failure.kind == "plan":
        return (f"vendor refused the request for the plan ({failure.detail}) {times}: "
                "check the token's plan, --max-codes-per-conn, --depth")  # fmt: skip
    if failure.kind == "connections":
        return (f"vendor refused the connection: too many for the token ({failure.detail}) "
                f"{times}: is another client using it? check --max-conns")  # fmt: skip
    if failure.kind == "not_websocket":
        return f"{url} is not a WebSocket endpoint: {failure.detail} {times}: check --url"
    if failure.kind == "handshake":
        return f"{url} refused the WebSocket handshake: {failure.detail} {times}: check --url"
    return f"{failure.detail}: check --codes / --symbols-file"  # codes: one verdict, no count


def tokens_of(token: str) -> list[str]:
    """The tokens of a ``--token`` value: several, comma-separated (spaces around them are no
    part of them), where a vendor caps the connections of one."""
    return [t.strip() for t in token.split(",") if t.strip()]


def market_refusal(vendor: str, markets: frozenset[str], code: str) -> str | None:
    """``code`` outside the markets a vendor carries: why, naming both; else None."""
    market = code.rpartition(".")[2]
    if market in markets:
        return None
    return f"{vendor} cannot carry {code}: it serves {', '.join(sorted(markets))} codes only"


# -- events a session hands back ----------------------------------------------------------------
RequestKind = Literal["trades", "books", "heartbeat", "auth"]
# What a vendor's answer means for the manager: applied; sent too often (space the token's
# requests more, then send the same again); a code in the list is bad (find it); refused.
Verdict = Literal["ok", "retry_later", "bad_code", "refused"]


class Request(msgspec.Struct, frozen=True):
    """One of our requests, as the manager sees it: for ``trades``/``books`` the whole list the
    connection carries once the vendor applies it (empty: none, e.g. AllTick's cancel)."""

    kind: RequestKind
    codes: tuple[str, ...] = ()
    label: str = ""  # the vendor's name of it, for logs: "cmd 22004"


class Reply(msgspec.Struct, frozen=True):
    """The vendor's answer to ``request`` (None: to nothing we know), classified by the vendor.
    ``failure``: a refusal no retry can fix (a bad token, the plan); ``envelope``: the request's
    envelope was refused as a whole (a one-off, retried after a backoff unless ``failure``)."""

    verdict: Verdict
    ret: int
    msg: str
    request: Request | None
    envelope: bool = False
    failure: Failure | None = None
    label: str = ""  # what was refused, for a log line: "cmd 22005"

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def what(self) -> str:
        """The refused request, for a log line."""
        return self.label

    def error(self) -> str:
        """One short line: "ret=606 too many requests"."""
        return f"ret={self.ret} {first_line(self.msg)}"


class BadMessage(msgspec.Struct, frozen=True):
    """A vendor message that was counted and skipped; ``sample`` is truncated for logging."""

    kind: str
    detail: str
    sample: bytes


Event = Reply | BadMessage
SAMPLE_BYTES = 200  # a bad message's sample, for the log


def unreadable(payload: bytes, max_frame_bytes: int) -> BadMessage | None:
    """Why a text message cannot be read at all (larger than ``max_frame_bytes``, or not
    UTF-8), or None."""
    if len(payload) > max_frame_bytes:
        detail = f"{len(payload)} bytes > {max_frame_bytes}"
        return BadMessage("oversized", detail, payload[:SAMPLE_BYTES])
    if payload.isascii():  # vendors' JSON is ASCII: only others pay for a decode
        return None
    try:  # msgspec checks only the strings it keeps, not those it skips
        payload.decode()
    except UnicodeDecodeError as exc:
        detail = f"text frame is not UTF-8 ({exc.reason} at {exc.start})"
        return BadMessage("utf8", detail, payload[:SAMPLE_BYTES])
    return None


class Peek(msgspec.Struct, frozen=True, gc=False):
    """A push's route key, read without decoding the tick: its canonical code, and whether it
    is an order book."""

    code: str
    book: bool


# Where a session hands a push, undecoded: (its key, its bytes, when they were read). The
# receiver routes it by code; the shard decodes it (``Provider.decode``).
Route = Callable[[Peek, bytes, int], None]


# -- the protocols --------------------------------------------------------------------------------
class Session(Protocol):
    """The protocol state of one connection (requests in flight, what is subscribed)."""

    events: list[Event]  # replies and bad messages since the caller last cleared it
    bad_messages: dict[str, int]  # skipped messages by kind
    ready: bool  # subscriptions may go out (False until an auth message is answered)

    def opening(self, token: str) -> list[bytes]:
        """Messages to send right after the connection opens (an auth message), if any."""
        ...

    def subscribe(self, kind: ListKind, codes: list[str], levels: int) -> list[bytes]:
        """Requests that make this connection's ``kind`` list exactly ``codes`` (canonical);
        a replace-model vendor sends the list, an add/remove one the difference. The vendor's
        answer comes back as one ``Reply`` whose request carries ``codes``."""
        ...

    def heartbeat(self, wall_ns: int) -> bytes | None:
        """An application heartbeat (``wall_ns``: the time of day, for a vendor that wants it
        in the message), or None when the vendor needs none."""
        ...

    def pending(self) -> int:
        """Requests still waiting for their answer."""
        ...

    def reset(self) -> None:
        """The connection is gone: forget requests in flight and what was subscribed."""
        ...

    def receive(self, payload: bytes, recv_ns: int) -> Tick | Depth | None:
        """Decode one text message: a tick or book, or None with any event appended."""
        ...

    def receive_read(self, messages: list[Message], recv_ns: int, route: Route) -> bool:
        """The messages of one socket read: each push (for a code subscribed here) handed to
        ``route`` undecoded, with its ``Peek``; replies and bad messages as ``events``. True
        when one was a push or a reply (what shows the feed is alive)."""
        ...

    def bad_binary(self, payload: bytes) -> None:
        """Count a binary message a text-only vendor sent."""
        ...


class SessionOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What a run may set of each connection's protocol; ``Provider.options`` are the vendor's
    defaults."""

    max_frame_bytes: int  # a larger message is refused (close 1009)
    codes_per_request: int  # a subscription message names at most this many codes; more: several
    subscribe_model: SubscribeModel  # a request replaces the list, or changes it


class ServerRules(msgspec.Struct, frozen=True, kw_only=True):
    """A plan's limits, as the replay server enforces them (each token has them all)."""

    token: str  # the tokens clients may present, comma-separated
    max_codes_per_conn: int
    max_conns: int
    request_interval_ns: int
    cross_interval_ns: int
    heartbeat_timeout_ns: int
    reconnect_spacing_ns: int

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(tokens_of(self.token))


class Violation(msgspec.Struct, frozen=True):
    """A rule a client broke, as the replay server recorded it."""

    time_ns: int
    conn: int
    rule: str
    detail: str


@dataclass
class Outcome:
    """The replay server's answer to one request (or to a new connection, or a timeout):
    ``replies`` sent in order, then, if ``close``, the WebSocket closed with ``close_code``."""

    replies: list[bytes] = field(default_factory=list)
    close: bool = False
    envelope_error: bool = False  # answered with the vendor's envelope error (not applied)
    close_code: int = 1000
    close_reason: str = ""
    evict: list[int] = field(default_factory=list)  # others it closes (a token's older one)


Subscribers = dict[str, tuple[int, ...]]  # code -> connections that get its trades
BookSubscribers = dict[str, tuple[tuple[int, int], ...]]  # code -> (connection, levels)
ConnLists = Iterable[tuple[int, Iterable[str], Iterable[tuple[str, int]]]]


def subscriber_maps(lists: ConnLists) -> tuple[Subscribers, BookSubscribers]:
    """Who gets each code's trades and books, from each connection's lists: ``(connection,
    its trade codes, its (book code, levels))``; what a simulator hands the replay server."""
    trades: dict[str, list[int]] = {}
    books: dict[str, list[tuple[int, int]]] = {}
    for conn, trade_codes, book_codes in lists:
        for code in trade_codes:
            trades.setdefault(code, []).append(conn)
        for code, levels in book_codes:
            books.setdefault(code, []).append((conn, levels))
    return ({code: tuple(c) for code, c in trades.items()},
            {code: tuple(c) for code, c in books.items()})  # fmt: skip


class Simulator(Protocol):
    """The vendor's server side, sans-I/O: the replay server's rules."""

    violations: list[Violation]
    subscribers: Subscribers
    book_subscribers: BookSubscribers

    def open(self, conn: int, token: str, now_ns: int) -> Outcome:
        """A new connection: what the server says at once (a greeting); ``close``: refused."""
        ...

    def close(self, conn: int, now_ns: int) -> None: ...
    def expired(self, now_ns: int) -> list[tuple[int, Outcome]]:
        """Connections the server hangs up on now (no heartbeat, no auth in time), each with
        what it says before it closes them; each is a violation."""
        ...

    def receive(self, conn: int, message: bytes | str, now_ns: int, *,
                envelope_error: bool = False) -> Outcome: ...  # fmt: skip
    @property
    def subscription_requested(self) -> bool: ...
    def settling(self, now_ns: int) -> bool: ...
    def subscriptions(self) -> dict[int, list[str]]: ...
    def book_subscriptions(self) -> dict[int, list[str]]: ...


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One synthetic trade, for a vendor to encode as its push."""

    code: str
    seq: int
    time_ms: int
    price: float
    volume: int
    direction: int  # 0 unknown, 1 buy, 2 sell (feedmux's meaning)
    variant: int  # 0..3, random: a vendor may vary the push's shape with it


class Provider(Protocol):
    """One market-data vendor."""

    name: str
    markets: frozenset[str]  # the exchanges whose codes it carries: SH, SZ, BJ, HK, US
    whole_market: str | None  # the code that subscribes every code it carries (``*.US``)
    default_url: str  # its production endpoint, without the token
    auth: Auth
    subscribe_model: SubscribeModel
    pacing: Pacing  # its documented spacing, with a margin
    max_codes_per_conn: int  # per connection and list kind
    max_depth_levels: int  # the most levels a side of its books has (--depth)
    max_conns: int  # per token
    max_frame_bytes: int  # a larger message is refused (close 1009)
    codes_per_request: int  # per subscription message; a longer change goes in several
    replay_path: str  # where its replay server serves the WebSocket
    replay_plan: ServerRules  # the plan its replay server enforces unless told otherwise
    replay_ping_s: float | None  # its replay server pings this often (None: never)

    def connect_url(self, url: str, token: str) -> str:
        """The URL to open (``auth == "query"`` puts the token in it)."""
        ...

    def connect_headers(self, token: str) -> list[str]:
        """Handshake headers (``auth == "header"``)."""
        ...

    def session(self, name: str, options: SessionOptions) -> Session:
        """A new connection's protocol state."""
        ...

    def split(self, payload: bytes) -> list[tuple[Peek, bytes]]:
        """The pushes one received text message carries, each with its key, without decoding
        the ticks ([] for a reply or a bad message): a journal served again, its codes."""
        ...

    def pack(self, pushes: list[bytes]) -> list[bytes]:
        """The text messages that carry ``pushes`` to one connection, as the vendor's server
        sends them (one each, or several in one message)."""
        ...

    def decode(self, payload: bytes, recv_ns: int) -> Tick | Depth | BadMessage:
        """One push, fully, with no connection state: runs in any process."""
        ...

    def canonical(self, vendor_code: str) -> str:
        """feedmux's code (600519.SH, AAPL.US, 700.HK) for the vendor's spelling."""
        ...

    def vendor_code(self, code: str) -> str:
        """The vendor's spelling of a canonical code."""
        ...

    def cannot_carry(self, code: str) -> str | None:
        """Why the vendor cannot carry a canonical code (naming both), or None if it can."""
        ...

    def request_codes(self, payload: bytes) -> list[str]:
        """The codes a request we sent (e.g. from a journal) asks for; [] for others."""
        ...

    def handshake_failure(self, status: int, body: bytes | str | None) -> Failure:
        """A refused WebSocket handshake, classified (the vendor's own verdict in a body
        wins over the status)."""
        ...

    def simulator(self, rules: ServerRules, universe: set[str]) -> Simulator:
        """The replay server's rules for this vendor."""
        ...

    def replay_universe(self, seed: int) -> list[str]:
        """The codes its replay server's synthetic market lists (the same for one seed)."""
        ...

    def replay_token(self, path: str, headers: dict[str, str]) -> str:
        """The token a client presented to the replay server ("" before an auth message)."""
        ...

    def trade_frame(self, trade: Trade) -> bytes:
        """A synthetic trade as this vendor pushes it."""
        ...

    def book_frame(self, code: str, seq: int, time_ms: int, bids: list[tuple[float, int]],
                   asks: list[tuple[float, int]]) -> bytes:  # fmt: skip
        """A synthetic order book as this vendor pushes it."""
        ...

    garbage_frames: tuple[tuple[int, bytes], ...]  # broken messages, each counted and skipped
