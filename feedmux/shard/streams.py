"""A shard's writer to Redis Streams (feedmux/client/streams.py has the format and the reader):
batched, pipelined and retried like a store by its lane (feedmux/shard/lanes.py), so a shard
acknowledges a tick only once Redis holds it too."""

from __future__ import annotations

import redis

from feedmux.client.streams import (
    DEFAULT_MAXLEN,
    DEFAULT_PREFIX,
    TIMEOUT_S,
    stream_name,
)
from feedmux.errors import StoreError
from feedmux.passwords import mask_passwords
from feedmux.shard.state import Publication
from feedmux.shard.stores.base import WriteResult


class StreamPublisher:
    """XADDs one shard's publications to its stream, a batch per round trip."""

    def __init__(self, url: str, shard: int, prefix: str = DEFAULT_PREFIX,
                 maxlen: int = DEFAULT_MAXLEN) -> None:  # fmt: skip
        self.shown = mask_passwords(url)
        self.stream = stream_name(prefix, shard)
        self.maxlen = maxlen
        self._client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S,
                                            socket_connect_timeout=TIMEOUT_S)  # fmt: skip
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise StoreError(f"cannot reach Redis {self.shown}: {exc}") from exc

    def write_publications(self, publications: list[Publication]) -> WriteResult:
        pipe = self._client.pipeline(transaction=False)
        for topic, payload in publications:
            pipe.xadd(self.stream, {"topic": topic, "payload": payload}, maxlen=self.maxlen,
                      approximate=True)  # fmt: skip
        try:
            pipe.execute()
        except redis.RedisError as exc:  # the client reconnects on the retry
            raise StoreError(f"Redis XADD to {self.stream} at {self.shown} failed: {exc}") from exc
        return WriteResult(len(publications), 0)

    def close(self) -> None:
        self._client.close()
