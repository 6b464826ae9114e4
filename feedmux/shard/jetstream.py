"""A shard's writer to NATS JetStream (feedmux/jetstream has the subjects and the stream):
batched and retried like a store by its lane (feedmux/shard/lanes.py), so a shard acknowledges
a tick only once JetStream holds it too.

A batch goes out as async publishes, one ack awaited for each (at most a batch in flight); if
any fails or times out the whole batch fails and is retried, and JetStream's duplicate window
turns what was already stored into "duplicate" acks (each message's Nats-Msg-Id is the item's
identity), so the stream holds every message once.
"""

from __future__ import annotations

import asyncio
import logging

import nats.errors

from feedmux import families
from feedmux.errors import StoreError
from feedmux.jetstream import subjects
from feedmux.jetstream.client import CONNECT_TIMEOUT_S, connect
from feedmux.jetstream.loop import LoopThread
from feedmux.passwords import mask_passwords
from feedmux.shard.state import Publication
from feedmux.shard.stores.base import WriteResult

ACK_TIMEOUT_S = 10.0  # a cluster electing a new stream leader takes a few seconds
MSG_ID = "Nats-Msg-Id"

log = logging.getLogger(__name__)


class JetStreamPublisher:
    """Publishes one shard's publications to JetStream, a batch at a time."""

    def __init__(self, urls: list[str], prefix: str, vendor: str, shard: int) -> None:
        self.shown = mask_passwords(",".join(urls))
        self.prefix = prefix
        self.vendor = vendor
        self._loop = LoopThread(f"nats-shard-{shard}")
        try:
            self._client = self._loop.run(connect(urls, f"feedmux-shard-{shard}",
                                                  shown=self.shown))  # fmt: skip
        except StoreError:
            self._loop.stop()
            raise
        self._js = self._client.jetstream()

    def messages(self, publications: list[Publication]) -> list[tuple[str, bytes, str]]:
        """(subject, payload, message id) of each publication."""
        out = []
        for topic, payload in publications:
            family = families.of_topic(topic)
            name = subjects.of_topic(self.prefix, topic)
            assert family is not None and name is not None, topic  # only relayed families come
            out.append(
                (
                    name,
                    payload,
                    subjects.message_id(self.vendor, family, family.decoder.decode(payload)),
                )
            )
        return out

    async def _publish(self, publications: list[Publication]) -> WriteResult:
        acks = []
        for name, payload, msg_id in self.messages(publications):
            acks.append(await self._js.publish_async(name, payload, headers={MSG_ID: msg_id}))
        if not acks:
            return WriteResult(0, 0)
        done, pending = await asyncio.wait(acks, timeout=ACK_TIMEOUT_S)
        for ack in pending:
            ack.cancel()
        if pending:
            raise StoreError(f"JetStream acked {len(done)} of {len(acks)} messages within "
                             f"{ACK_TIMEOUT_S:g} s ({self.shown})")  # fmt: skip
        failed = [a.exception() for a in acks if a.exception() is not None]
        if failed:
            raise StoreError(f"JetStream refused {len(failed)} of {len(acks)} messages: "
                             f"{failed[0]} ({self.shown})")  # fmt: skip
        duplicates = sum(1 for a in acks if a.result().duplicate)
        return WriteResult(len(acks) - duplicates, duplicates)

    def write_publications(self, publications: list[Publication]) -> WriteResult:
        try:
            return self._loop.run(self._publish(publications), ACK_TIMEOUT_S * 2)
        except (nats.errors.Error, OSError, TimeoutError) as exc:  # reconnecting; retried
            raise StoreError(f"JetStream publish failed ({self.shown}): "
                             f"{exc or type(exc).__name__}") from exc  # fmt: skip

    def close(self) -> None:
        try:
            self._loop.run(self._client.close(), CONNECT_TIMEOUT_S)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            log.info("closing the NATS connection: %s", exc)
        self._loop.stop()
