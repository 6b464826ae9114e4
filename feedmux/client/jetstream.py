"""``NatsSubscriber``: the trades, books and bars ``feedmux run --nats`` publishes to JetStream,
read on any host from now, a stream sequence or a time; ``snapshot()`` gives each code's
latest from JetStream's last message per subject, complete up to one stream sequence.

Pull consumers, for bounded memory. nats-py's push consumers answer JetStream's flow control by
themselves (a stalled consumer's idle heartbeat carries a reply nats-py sends at once), so a
reader slower than the feed lets the client buffer the whole stream: one that paused for 40 s
held all 300,000 messages (45 MB) of a test stream. A pull consumer sends only what it was asked
for: each consumer here asks for BATCH messages, and for more only once the reader took half.

One consumer per code (up to MAX_CONSUMERS), else one for all. nats-server 2.9 gives a consumer
one filter subject. A few codes get a consumer each (``<prefix>.<family or *>.<market>.<symbol>``)
so the server sends only them; more codes, markets or the whole market share one consumer on the
narrowest wildcard (``subjects.filter_subject``) and the rest is filtered here. Either way one
code's trades, books and bars come through one consumer, in stream order.

Ordered like nats-py's ordered consumers: a consumer sequence that jumps (messages lost on the
way), a consumer gone (its server lost, or removed after INACTIVE_S without a request while the
reader paused) or a request gone silent (no heartbeat) makes a new consumer that starts after the
last stream sequence received: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api

from feedmux import wire
from feedmux.codes import parse_codes
from feedmux.errors import ConfigError, ConsumerError
from feedmux.jetstream import subjects
from feedmux.jetstream.client import FIRST_CONNECT_S, connect, why
from feedmux.jetstream.loop import LoopThread
from feedmux.model import Bar, Depth, Tick
from feedmux.passwords import mask_passwords

DEFAULT_STREAM = "FEEDMUX"
DEFAULT_PREFIX = "feedmux"
MAX_CONSUMERS = 16  # codes (or markets) read by a consumer each; more share one
BATCH = 512  # messages a pull request asks for: a consumer holds at most 1.5 x BATCH, and
# a batch more waits decoded for the reader
EXPIRES_S = 10.0  # a pull request's life (asked again when it ends)
HEARTBEAT_S = 1.0  # JetStream's sign of life while a request waits for messages
DEAD_AFTER_S = 3.5  # a request without a message or heartbeat this long: a new consumer
INACTIVE_S = 60.0  # JetStream removes a consumer asked nothing this long (a paused reader's)
API_TIMEOUT_S = 5.0  # a JetStream API request
WAIT_S = 1.0  # a blocking recv wakes this often (Ctrl-C is seen)

_URL = re.compile(r"^(nats|tls|ws|wss)://[^,\s]+$")
_STREAM = re.compile(r"^[A-Za-z0-9_-]+$")
_STATUS, _DESCRIPTION, _HEARTBEAT = "Status", "Description", "100"
_parse = lru_cache(maxsize=1 << 16)(subjects.parse)  # a subject's (family, code), once each
_deleting: set[asyncio.Future[None]] = set()  # consumers being removed in the background

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Position:
    """Where a consumer starts in the stream."""

    policy: api.DeliverPolicy
    seq: int = 0
    time: datetime | None = None

    def config(self) -> dict[str, Any]:
        return {"deliver_policy": self.policy, "opt_start_seq": self.seq or None,
                "opt_start_time": self.time}  # fmt: skip


LIVE = Position(api.DeliverPolicy.NEW)  # made "from the stream's next sequence" at the start
ALL = Position(api.DeliverPolicy.ALL)


def parse_start(start: str | int | datetime) -> Position:
    """``"live"`` (only what is published from now), ``"all"`` (from the oldest message kept), a
    stream sequence, or a time (a datetime with its zone, or ISO 8601 text)."""
    if isinstance(start, datetime):
        if start.tzinfo is None:
            raise ConfigError(f"a start time needs its zone (e.g. {start.isoformat()}+08:00, "
                              "or Z for UTC)")  # fmt: skip
        return Position(api.DeliverPolicy.BY_START_TIME, time=start)
    if isinstance(start, int) and not isinstance(start, bool):
        if start < 1:
            raise ConfigError(f"a start sequence is 1 or more, not {start}")
        return Position(api.DeliverPolicy.BY_START_SEQUENCE, seq=start)
    text = str(start).strip()
    if text in ("live", "all"):
        return LIVE if text == "live" else ALL
    if text.isdigit():
        return parse_start(int(text))
    try:
        return parse_start(datetime.fromisoformat(text))
    except ValueError:
        raise ConfigError(f"start is live, all, a stream sequence or an ISO time "
                          f"(2026-03-02T09:30:00+08:00), not {start!r}") from None  # fmt: skip


class NatsMessage(NamedTuple):
    family: str  # "trades", "books" or "bars"
    code: str
    seq: int  # its stream sequence
    time: datetime  # when JetStream stored it (UTC)
    message: wire.Payload  # the PUB payload: .shard, .seq (the shard's), .item

    @property
    def item(self) -> Tick | Depth | Bar:
        return self.message.item


@dataclass(frozen=True)
class NatsSnapshot:
    """Each code's latest trade, book and bar as of stream sequence ``seq``: the stream from
    ``seq + 1`` on adds exactly what came after (``NatsSubscriber(start=seq + 1)``)."""

    seq: int
    ticks: dict[str, Tick]
    books: dict[str, Depth]
    bars: dict[str, Bar]


Delivered = tuple[str, bytes, int, datetime]  # subject, payload, stream sequence, stored at


class Pull:
    """One ephemeral pull consumer on one filter subject, read in order (on the loop thread).

    ``once``: the snapshot's, whose requests end with "no more messages" (``drained``)."""

    def __init__(self, js: JetStreamContext, client: Client, stream: str, subject: str,
                 start: Position, *, wake: asyncio.Event, once: bool = False) -> None:  # fmt: skip
        self._js, self._client, self._stream, self.subject = js, client, stream, subject
        self._start, self._wake, self._once = start, wake, once
        self.held: deque[Delivered] = deque()
        self.after = 0  # the stream sequence of the last message received
        self.name = ""
        self._sub: Subscription | None = None
        self._generation = 0  # messages of an earlier consumer are dropped
        self._next = 1  # the consumer sequence expected next
        self.asked = 0  # messages asked for and not come yet (0: no request out)
        self.heard = self.asked_at = time.monotonic()
        self.drained = False
        self.broken = False  # needs a new consumer
        self.closed = False  # for good

    async def open(self) -> None:
        start = self._start
        if self.after:
            start = Position(api.DeliverPolicy.BY_START_SEQUENCE, seq=self.after + 1)
        config = api.ConsumerConfig(
            filter_subject=self.subject, ack_policy=api.AckPolicy.NONE, mem_storage=True,
            num_replicas=1, inactive_threshold=INACTIVE_S, **start.config(),
        )  # fmt: skip
        info = await self._js.add_consumer(self._stream, config, timeout=API_TIMEOUT_S)
        if self.closed:  # closed meanwhile (a snapshot's restart under the watchdog's reset)
            await self._delete(info.name)
            return
        self._generation += 1
        generation = self._generation

        async def on_msg(msg: Msg) -> None:
            if generation == self._generation:
                await self._on_msg(msg)

        self.name, self._next, self.asked, self.broken = info.name, 1, 0, False
        self._sub = await self._client.subscribe(self._client.new_inbox(), cb=on_msg)

    async def ask(self) -> None:
        """Ask for BATCH more once the reader took half of what came (one request at a time)."""
        if self.asked or self._sub is None or self.broken or self.drained or self.closed:
            return
        if len(self.held) > BATCH // 2:
            return
        if not self._once and time.monotonic() - self.asked_at > INACTIVE_S / 2:
            self.broken = True  # the server may have removed it meanwhile: the watchdog's
            return
        request: dict[str, Any] = {"batch": BATCH, "no_wait": True}
        if not self._once:
            request = {"batch": BATCH, "expires": int(EXPIRES_S * 1e9),
                       "idle_heartbeat": int(HEARTBEAT_S * 1e9)}  # fmt: skip
        self.asked, self.heard = BATCH, time.monotonic()
        self.asked_at = self.heard
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self.name}"
        await self._client.publish(subject, json.dumps(request).encode(), reply=self._sub.subject)

    async def _on_msg(self, msg: Msg) -> None:
        self.heard = time.monotonic()
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is not None:
            if status == _HEARTBEAT:
                return
            # The request ended: 404 nothing more (no_wait), 408 expired, 409 the consumer was
            # deleted or its leader changed, 503 no one answers for the consumer.
            self.asked = 0
            if self._once and status in ("404", "408"):
                self.drained = True
            elif (
                self._once
                or status == "503"
                or (status == "409" and "Deleted" in (msg.headers or {}).get(_DESCRIPTION, ""))
            ):
                self.broken = True  # a snapshot cut short says so; a stream is made again
            else:
                await self.ask()
            self._wake.set()
            return
        meta = msg.metadata
        if meta.sequence.consumer != self._next:  # lost on the way: start again after .after
            self.broken = True
            self._wake.set()
            return
        self._next += 1
        self.asked -= 1
        self.after = meta.sequence.stream
        self.held.append((msg.subject, msg.data, self.after, meta.timestamp))
        self._wake.set()
        if not self.asked:
            await self.ask()

    def take(self, limit: int) -> list[Delivered]:
        out: list[Delivered] = []
        while self.held and len(out) < limit:
            out.append(self.held.popleft())
        return out

    async def reset(self) -> None:
        """A new consumer, from after the last message received."""
        await self._drop(wait=False)
        self.asked_at = time.monotonic()
        await self.open()
        log.info("NATS consumer on %s made again after stream sequence %d", self.subject,
                 self.after)  # fmt: skip

    async def close(self) -> None:
        self.closed = True
        await self._drop(wait=True)

    async def _drop(self, *, wait: bool) -> None:
        sub, name = self._sub, self.name
        self._sub, self.name, self.asked = None, "", 0
        self._generation += 1
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        if name:  # JetStream would remove it after INACTIVE_S anyway
            delete = asyncio.ensure_future(self._delete(name))
            _deleting.add(delete)  # a task only the loop refers to may be collected midway
            delete.add_done_callback(_deleting.discard)
            if wait:
                await delete

    async def _delete(self, name: str) -> None:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await asyncio.wait_for(self._js.delete_consumer(self._stream, name), 2.0)


def _items(given: str | Iterable[str] | None) -> list[str] | None:
    """A list as given, or text of comma or space separated items; None stays None."""
    if given is None:
        return None
    listed = given.replace(",", " ").split() if isinstance(given, str) else list(given)
    return [item.strip() for item in listed if item.strip()]


def consumer_subjects(prefix: str, names: Sequence[str], codes: Iterable[str] | None,
                      markets: Iterable[str] | None) -> list[str]:  # fmt: skip
    """The filter subject of each consumer: one per code (or market) when there are at most
    MAX_CONSUMERS, else one that covers them all."""
    asked = names if len(set(names)) < len(subjects.RELAYED) else ()
    if codes is not None:
        wanted = sorted(c for c in codes if markets is None or subjects.split_code(c)[0] in markets)
        if not wanted:
            raise ConfigError("no code of codes= is in markets=")
        if len(wanted) <= MAX_CONSUMERS:
            return [subjects.filter_subject(prefix, asked, [code]) for code in wanted]
        return [subjects.filter_subject(prefix, asked, wanted, markets or ())]
    if markets is not None and len(set(markets)) <= MAX_CONSUMERS:
        return [subjects.filter_subject(prefix, asked, (), [m]) for m in sorted(set(markets))]
    return [subjects.filter_subject(prefix, asked, (), markets or ())]


class NatsSubscriber:
    """Trades, books and bars from NATS JetStream, as ``feedmux run --nats`` publishes them
    (every instance publishing into the stream, from any host).

    ``url``: one server or several of a cluster. ``families``: of "trades", "books", "bars"
    (default: all three). ``codes``, ``markets`` (e.g. "SH", "US"): only these (default: all).
    Each a list, or text with commas. ``start``: "live" (what is published from now, the
    default), "all" (from the oldest message the stream keeps), a stream sequence, or a time (a
    datetime with its zone, or ISO text). ``stream``, ``prefix``: the run's ``--nats-stream``
    and ``--nats-prefix``.

    Iterating blocks until the next message (a ``NatsMessage``); ``recv(timeout)`` returns None
    after ``timeout`` seconds. A code's messages come in stream order. ``snapshot()`` gives each
    code's latest and moves the stream to just after it. Errors are ``ConsumerError`` (no server
    there, no such stream) or ``ConfigError`` (bad arguments); a connection lost later is
    retried for ever, and reading resumes where it was.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        families: Iterable[str] | None = None,
        codes: Iterable[str] | None = None,
        markets: Iterable[str] | None = None,
        start: str | int | datetime = "live",
        *,
        stream: str = DEFAULT_STREAM,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.urls = _items(url) or []
        self.shown = mask_passwords(",".join(self.urls))
        bad = [u for u in self.urls if not _URL.match(u)]
        if not self.urls or bad:
            raise ConfigError(f"a NATS URL is nats://HOST:PORT (or tls://, ws://, wss://), not "
                              f"{mask_passwords(bad[0]) if bad else repr(url)}")  # fmt: skip
        if not _STREAM.match(stream):
            raise ConfigError(f"a stream name is letters, digits, - and _, not {stream!r}")
        try:
            self.prefix = subjects.check_prefix(prefix)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.stream = stream
        names = list(dict.fromkeys(_items(families) or subjects.RELAYED))
        unknown = [n for n in names if n not in subjects.RELAYED]
        if unknown or (families is not None and not _items(families)):
            raise ConfigError(f"families are of {', '.join(subjects.RELAYED)}, not "
                              f"{unknown or families!r}")  # fmt: skip
        self.families = frozenset(names)
        listed_codes, listed_markets = _items(codes), _items(markets)
        self.codes = frozenset(parse_codes(listed_codes)) if listed_codes is not None else None
        self.markets = (frozenset(m.upper() for m in listed_markets)
                        if listed_markets is not None else None)  # fmt: skip
        if self.markets is not None and not self.markets:
            raise ConfigError("markets= names none")
        start_at = parse_start(start)
        self._subjects = consumer_subjects(self.prefix, names, self.codes, self.markets)
        self.skipped = 0  # messages on subjects this version does not know
        self.bad = 0  # messages on its subjects that did not decode (skipped)
        self._ready: deque[NatsMessage] = deque()
        self._pulls: list[Pull] = []
        self._turn = 0
        self._watch: asyncio.Task[None] | None = None
        self._loop = LoopThread("nats-subscriber")
        try:
            try:
                self._client = self._loop.run(connect(self.urls, "feedmux-subscriber",
                                                      shown=self.shown, error=ConsumerError),
                                              FIRST_CONNECT_S + API_TIMEOUT_S)  # fmt: skip
            except TimeoutError:
                raise ConsumerError(f"cannot reach NATS at {self.shown}: no answer") from None
            self._js = self._client.jetstream(timeout=API_TIMEOUT_S)
            self._wake = asyncio.Event()  # bound to the loop it is first awaited on
            self._call(self._open(start_at))
        except BaseException:
            self.close()
            raise

    # The synchronous side: every call runs a coroutine on the loop thread.

    def recv(self, timeout: float | None = None) -> NatsMessage | None:
        """The next message, or None after ``timeout`` seconds (None: wait for ever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready:
            left = WAIT_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return None
            self._accept(self._call(self._take(BATCH, min(left, WAIT_S)), WAIT_S + API_TIMEOUT_S))
        return self._ready.popleft()

    def __iter__(self) -> Iterator[NatsMessage]:
        while True:
            message = self.recv()
            if message is not None:
                yield message

    def snapshot(self, timeout: float = 30.0) -> NatsSnapshot:
        """Each code's latest trade, book and bar (of this subscriber's families, codes and
        markets) from JetStream's last message per subject, as of one stream sequence; the
        stream then goes on from the next (what was waiting unread is dropped: the snapshot
        holds it or what replaced it)."""
        seq, delivered = self._call(self._snapshot(), timeout)
        latest: dict[str, dict[str, Any]] = {name: {} for name in subjects.RELAYED}
        for message in self._decode(delivered):  # in stream order: the last one stays
            latest[message.family][message.code] = message.item
        self._ready.clear()
        self._call(self._restart(Position(api.DeliverPolicy.BY_START_SEQUENCE, seq=seq + 1)))
        return NatsSnapshot(seq, latest["trades"], latest["books"], latest["bars"])

    @property
    def held(self) -> int:
        """Messages received from JetStream and not yet returned: at most 1.5 x BATCH per
        consumer and a BATCH more, however slow the reader."""
        return len(self._ready) + sum(len(p.held) for p in self._pulls)

    def close(self) -> None:
        """Remove this subscriber's consumers and disconnect (also on leaving a ``with``)."""
        if getattr(self, "_client", None) is not None:
            with contextlib.suppress(TimeoutError, nats.errors.Error, OSError):
                self._loop.run(self._shutdown(), API_TIMEOUT_S)
            self._client = None  # type: ignore[assignment]
        self._loop.stop()

    def __enter__(self) -> NatsSubscriber:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = API_TIMEOUT_S * 3) -> T:
        if getattr(self, "_client", None) is None:
            coro.close()
            raise ConsumerError("this NatsSubscriber is closed")
        try:
            return self._loop.run(coro, timeout)
        except TimeoutError:
            raise ConsumerError(f"NATS at {self.shown} did not answer within {timeout:g} s"
                                ) from None  # fmt: skip
        except nats.js.errors.APIError as exc:
            raise ConsumerError(f"JetStream at {self.shown} refused: {exc.description}"
                                ) from exc  # fmt: skip
        except nats.errors.Error as exc:
            raise ConsumerError(f"NATS at {self.shown}: {why(exc)}") from exc

    def _accept(self, delivered: list[Delivered]) -> None:
        self._ready.extend(self._decode(delivered))

    def _decode(self, delivered: list[Delivered]) -> Iterator[NatsMessage]:
        """What this subscriber asked for (a shared consumer brings more), decoded."""
        codes, markets, wanted = self.codes, self.markets, self.families
        for subject, data, seq, when in delivered:
            parsed = _parse(self.prefix, subject)
            if parsed is None:
                self.skipped += 1
                continue
            family, code = parsed
            if family.name not in wanted or (codes is not None and code not in codes):
                continue
            if markets is not None and subjects.split_code(code)[0] not in markets:
                continue
            try:
                payload: wire.Payload = family.decoder.decode(data)
            except msgspec.DecodeError as exc:  # another publisher's: the rest still comes
                self.bad += 1
                if self.bad == 1:
                    log.warning("NATS message %d on %s in stream %s does not decode (%s): "
                                "counted in .bad and skipped", seq, subject, self.stream,
                                exc)  # fmt: skip
                continue
            yield NatsMessage(family.name, code, seq, when, payload)

    # The loop thread's side.

    async def _stream_info(self) -> api.StreamInfo:
        try:
            return await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            pass
        except (nats.errors.Error, TimeoutError) as exc:
            raise ConsumerError(f"JetStream at {self.shown} does not answer ({why(exc)}); "
                                "is the server started with -js?") from exc  # fmt: skip
        there = ""
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            names = [s.config.name for s in await self._js.streams_info()]
            there = f" (streams there: {', '.join(sorted(n for n in names if n)) or 'none'})"
        raise ConsumerError(f"no stream {self.stream} at {self.shown}{there}: give the run's "
                            "--nats-stream")  # fmt: skip

    async def _open(self, start: Position) -> None:
        info = await self._stream_info()
        if start is LIVE:  # one start for every consumer: the stream's next message
            start = Position(api.DeliverPolicy.BY_START_SEQUENCE, seq=info.state.last_seq + 1)
        self._pulls = [Pull(self._js, self._client, self.stream, s, start, wake=self._wake)
                       for s in self._subjects]  # fmt: skip
        try:
            for pull in self._pulls:
                await pull.open()
                await pull.ask()
        except nats.js.errors.APIError as exc:
            raise ConsumerError(f"cannot read {pull.subject} from stream {self.stream}: "
                                f"{exc.description} (is --nats-prefix the run's, "
                                f"{self.prefix}?)") from exc  # fmt: skip
        if self._watch is None:
            self._watch = asyncio.ensure_future(self._watchdog())

    async def _restart(self, start: Position) -> None:
        for pull in self._pulls:
            await pull.close()
        await self._open(start)

    async def _take(self, limit: int, wait: float) -> list[Delivered]:
        """Up to ``limit`` messages, from each consumer in turn, waiting up to ``wait``."""
        deadline = time.monotonic() + wait
        while True:
            out: list[Delivered] = []
            count = len(self._pulls)
            for i in range(count):
                pull = self._pulls[(self._turn + i) % count]
                out.extend(pull.take(limit - len(out)))
                await pull.ask()
            self._turn += 1
            left = deadline - time.monotonic()
            if out or left <= 0:
                return out
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    async def _watchdog(self) -> None:
        """A consumer whose messages were lost, or that went silent, is made again."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            for pull in self._pulls:
                silent = pull.asked and time.monotonic() - pull.heard > DEAD_AFTER_S
                if pull.closed or not (pull.broken or silent or pull.name == ""):
                    continue
                try:
                    await pull.reset()
                    await pull.ask()
                except nats.js.errors.NotFoundError:
                    log.warning("NATS stream %s is gone; waiting for it", self.stream)
                except (nats.errors.Error, TimeoutError) as exc:  # retried at the next turn
                    log.info("NATS consumer on %s not made again yet: %s", pull.subject,
                             why(exc))  # fmt: skip

    async def _snapshot(self) -> tuple[int, list[Delivered]]:
        """Each subject's last message up to the stream's last sequence once every consumer
        exists (then each subject's last before it was delivered, and every later one comes in
        order after it: read until past that sequence or until there is no more)."""
        wake = asyncio.Event()
        pulls = [Pull(self._js, self._client, self.stream, s,
                      Position(api.DeliverPolicy.LAST_PER_SUBJECT), wake=wake, once=True)
                 for s in self._subjects]  # fmt: skip
        try:
            for pull in pulls:
                await pull.open()
            last = (await self._stream_info()).state.last_seq
            out: list[Delivered] = []
            for pull in pulls:
                await pull.ask()
                while True:
                    got = pull.take(BATCH)
                    out.extend(d for d in got if d[2] <= last)
                    if pull.broken:
                        raise ConsumerError("the snapshot lost messages on the way; try again")
                    if (got and got[-1][2] > last) or (pull.drained and not pull.held):
                        break
                    if not got:
                        wake.clear()
                        await wake.wait()
                    await pull.ask()
            return last, out
        finally:
            for pull in pulls:
                await pull.close()

    async def _shutdown(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for pull in self._pulls:
            await pull.close()
        await self._client.close()
