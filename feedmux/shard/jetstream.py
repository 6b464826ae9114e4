"""A shard's writer to NATS JetStream (feedmux/jetstream has the subjects and the stream):
batched and retried like a store by its lane (feedmux/shard/lanes.py), so a shard acknowledges
a tick only once JetStream holds it too.

A batch goes out as plain publishes with a reply subject, JetStream's acks come back to one
wildcard inbox of the publisher's and are counted into one future for the batch (cheaper than
nats-py's ``publish_async``, a future and a dict entry per message). At most a batch is in
flight; if any message is refused or not acked within ACK_TIMEOUT_S, or the connection is
lost, the whole batch fails and is retried, and JetStream's duplicate window turns what was
already stored into "duplicate" acks (each message's Nats-Msg-Id is the item's identity), so
the stream holds every message once. While NATS is unreachable a batch fails at once, with the
last error, and nothing is kept in nats-py's buffers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from feedmux import families
from feedmux.errors import StoreError
from feedmux.families import Family
from feedmux.jetstream import subjects
from feedmux.jetstream.client import CLOSE_S, Link
from feedmux.jetstream.loop import LoopThread
from feedmux.market.day import trading_day
from feedmux.passwords import mask_passwords
from feedmux.shard.state import Publication
from feedmux.shard.stores.base import WriteResult

ACK_TIMEOUT_S = 10.0  # a cluster electing a new stream leader takes a few seconds
MSG_ID = "Nats-Msg-Id"
NO_RESPONDERS = "503"  # the Status header of an empty reply: nothing took the subject

log = logging.getLogger(__name__)


class ApiError(msgspec.Struct, frozen=True):
    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct, frozen=True):
    """JetStream's answer to a publish: where it stored it, or why not (``error``)."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: ApiError | None = None


_PUB_ACK = msgspec.json.Decoder(PubAck)


class _ItemKey(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The leading fields of a Tick or a Depth: what its message id needs. The rest is not
    decoded: a book's levels cost most (10 a side: 1.7 us a message whole, 0.6 us so)."""

    code: str
    seq: int
    time_ns: int


class _Keyed(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A trade's or book's payload ``[shard, seq, item]``, as far as its message id needs."""

    shard: int
    seq: int
    item: _ItemKey


_KEYED = msgspec.msgpack.Decoder(_Keyed)


def _stored(msg: Msg) -> bool:
    """An ack saying JetStream has the message (not a status, not an error), read cheaply:
    only for acks that come after their batch was decided."""
    return bool(msg.data) and b'"error"' not in msg.data


class Route(NamedTuple):
    """Where a topic's publications go, and the start of their message ids."""

    subject: str
    family: Family
    id_prefix: str  # "<vendor>:<family>:<code>:" (trades, books); "" for bars: decoded whole


class Message(NamedTuple):
    subject: str
    payload: bytes
    msg_id: str


class _Batch:
    """The acks a batch waits for. Its messages are numbered ``first`` .. ``first + size - 1``
    (a message's reply subject ends with its number), so a late ack of an earlier, failed
    batch is told apart and ignored."""

    __slots__ = ("acked", "done", "duplicates", "first", "future", "messages")

    def __init__(self, first: int, messages: list[Message], future: asyncio.Future[None]) -> None:
        self.first = first
        self.messages = messages
        self.future = future
        self.acked = 0
        self.duplicates = 0
        self.done: list[int] = []  # the messages JetStream stored (or had), by index

    def fail(self, error: StoreError) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class JetStreamPublisher:
    """Publishes one shard's publications to JetStream, a batch at a time."""

    def __init__(self, urls: list[str], prefix: str, vendor: str, shard: int) -> None:
        self.shown = mask_passwords(",".join(urls))
        self.prefix = prefix
        self.vendor = vendor
        self._routes: dict[bytes, Route] = {}  # by topic: the shard's codes x families
        self._batch: _Batch | None = None
        # Since the last batch that worked: the ids JetStream acked in batches that failed. A
        # retry leaves them out, so only a message whose ack was lost relies on the duplicate
        # window (a refusal or an election can outlast it).
        self._failed: _Batch | None = None
        self._stored: set[str] = set()
        self._next = 1  # the next message's number
        self._reply = ""  # "<inbox>.": a message's reply subject is this and its number
        self._closed = False
        self._loop = LoopThread(f"nats-shard-{shard}")
        self._link = Link(urls, f"feedmux-shard-{shard}", self.shown,
                          on_connect=self._subscribe, on_lost=self._lost)  # fmt: skip
        self._loop.loop.call_soon_threadsafe(self._link.open)

    @property
    def connected(self) -> bool:
        """Connected now (it connects in the background; a batch fails fast until then)."""
        return self._link.ready

    async def _subscribe(self, client: Client) -> None:
        inbox = client.new_inbox()
        await client.subscribe(f"{inbox}.*", cb=self._on_ack)  # replayed on every reconnect
        self._reply = f"{inbox}."

    def _lost(self, why: str) -> None:
        if self._batch is not None:
            self._batch.fail(StoreError(why))

    def _route(self, topic: bytes) -> Route:
        family = families.of_topic(topic)
        subject = subjects.of_topic(self.prefix, topic)
        assert family is not None and subject is not None, topic  # only relayed families come
        code = topic[len(family.prefix) :].decode()
        keyed = family is not families.BARS
        route = Route(subject, family, f"{self.vendor}:{family.name}:{code}:" if keyed else "")
        self._routes[topic] = route
        return route

    def messages(self, publications: list[Publication]) -> list[Message]:
        """The message of each publication; ids as subjects.message_id makes them."""
        out = []
        routes = self._routes
        for topic, payload in publications:
            route = routes.get(topic) or self._route(topic)
            if route.id_prefix:
                item = _KEYED.decode(payload).item
                msg_id = f"{route.id_prefix}{trading_day(item.time_ns, item.code)}:{item.seq}"
            else:
                family = route.family
                msg_id = subjects.message_id(self.vendor, family, family.decoder.decode(payload))
            out.append(Message(route.subject, payload, msg_id))
        return out

    async def _on_ack(self, msg: Msg) -> None:
        tail = msg.subject[len(self._reply) :]
        number = int(tail) if tail.isdigit() else -1
        batch = self._batch
        if batch is None or not 0 <= number - batch.first < len(batch.messages):
            self._late(msg, number)
            return
        index = number - batch.first
        if batch.future.done():  # failed already: what it stored still counts for the retry
            if _stored(msg):
                batch.done.append(index)
            return
        subject = batch.messages[index].subject
        if not msg.data:  # a status: nothing took the subject, or other trouble
            status = (msg.headers or {}).get("Status", "")
            why = (f"no stream takes {subject} (none has its subjects, or its replicas are "
                   "electing a leader)" if status == NO_RESPONDERS else
                   f"status {status or 'empty'} for {subject}")  # fmt: skip
            batch.fail(StoreError(f"JetStream: {why} ({self.shown})"))
            return
        try:
            ack = _PUB_ACK.decode(msg.data)
        except msgspec.DecodeError as exc:
            batch.fail(StoreError(f"JetStream's ack for {subject} unreadable: {exc}"))
            return
        if ack.error is not None:
            batch.fail(StoreError(f"JetStream refused {subject}: {ack.error.description} "
                                  f"(code {ack.error.code}, error {ack.error.err_code}; "
                                  f"{self.shown})"))  # fmt: skip
            return
        batch.acked += 1
        batch.duplicates += ack.duplicate
        batch.done.append(index)
        if batch.acked == len(batch.messages):
            batch.future.set_result(None)

    def _late(self, msg: Msg, number: int) -> None:
        """An ack of the batch that failed last, come after it failed: the retry leaves that
        message out."""
        failed = self._failed
        if failed is None or not 0 <= number - failed.first < len(failed.messages):
            return
        if _stored(msg):
            self._stored.add(failed.messages[number - failed.first].msg_id)

    async def _publish(self, given: list[Message]) -> WriteResult:
        messages = [m for m in given if m.msg_id not in self._stored] if self._stored else given
        earlier = len(given) - len(messages)  # stored by a batch that failed
        if not messages:
            self._stored.clear()
            return WriteResult(earlier, 0)
        if not self._link.ready:
            raise StoreError(self._link.down())
        batch = _Batch(self._next, messages, asyncio.get_running_loop().create_future())
        self._next += len(messages)
        self._batch = batch
        publish, reply = self._link.client.publish, self._reply
        try:
            for number, (subject, payload, msg_id) in enumerate(messages, batch.first):
                await publish(subject, payload, f"{reply}{number}", {MSG_ID: msg_id})
            await asyncio.wait_for(batch.future, ACK_TIMEOUT_S)
        except TimeoutError as exc:
            raise StoreError(f"JetStream acked {batch.acked} of {len(messages)} messages within "
                             f"{ACK_TIMEOUT_S:g} s ({self.shown})") from exc  # fmt: skip
        except (nats.errors.Error, OSError) as exc:  # lost while publishing
            why = self._link.down() if not self._link.ready else mask_passwords(str(exc))
            raise StoreError(f"JetStream publish failed: {why}") from exc
        finally:
            self._batch = None
            if not batch.future.done():
                batch.future.cancel()
            elif not batch.future.cancelled():
                batch.future.exception()  # seen: not "never retrieved"
            if batch.acked < len(messages):  # failed: keep what JetStream has
                self._failed = batch
                self._stored.update(messages[i].msg_id for i in batch.done)
        self._failed = None
        self._stored.clear()
        return WriteResult(len(messages) - batch.duplicates + earlier, batch.duplicates)

    def write_publications(self, publications: list[Publication]) -> WriteResult:
        messages = self.messages(publications)
        try:  # _publish bounds itself; this bounds a loop that would not answer
            return self._loop.run(self._publish(messages), ACK_TIMEOUT_S + CLOSE_S)
        except TimeoutError as exc:
            raise StoreError(f"JetStream publish did not end ({self.shown})") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._link.close(), CLOSE_S * 3)
        except TimeoutError:
            log.info("closing the NATS connection to %s: no end in %g s", self.shown, CLOSE_S * 3)
        self._loop.stop()
