"""Redis Streams: a durable copy of what each shard publishes, for consumers on other machines
that must not miss data. One stream per shard (``<prefix>:shard:<i>``), XADD with an
approximate MAXLEN; each entry holds the PUB socket's topic and msgpack payload unchanged, for
every family that is relayed (``Family.relayed``: trades, books, bars).

``StreamReader`` is the consumer helper: it reads every shard's stream in order and resumes
after the last entry it processed. The writing side is a shard's (feedmux/shard/streams.py);
the stream naming here is shared by both.

Entry ids are Redis's own (``*``): an entry is a publication, and a shard publishes a tick once
by its identity (feedmux/identity.py). Only a resend after a crash can repeat one; the tick's
``(code, trading day, seq)`` recognises it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import redis

from feedmux import families, wire
from feedmux.errors import ConsumerError
from feedmux.passwords import mask_passwords

DEFAULT_PREFIX = "feedmux"
DEFAULT_MAXLEN = 1_000_000  # entries kept per shard stream (approximately)
TIMEOUT_S = 5.0


def stream_name(prefix: str, shard: int) -> str:
    return f"{prefix}:shard:{shard}"


def _replies(raw: Any) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """XREAD's reply as redis-py gives it without decode_responses (bytes throughout)."""
    return list(raw or [])


class StreamMessage(NamedTuple):
    shard: int
    id: str  # the Redis entry id, e.g. "1764000000000-0"
    topic: bytes
    message: wire.Payload  # .shard, .seq, .item: a Tick, Depth or Bar by its family


class StreamReader:
    """Reads every shard's stream in order, from where it left off.

    ``checkpoint``: a JSON file of the last entry id processed per shard. Ids are saved when the
    next read starts (the previous batch was processed), so a restarted reader resumes after the
    last batch it finished: at least once, and in order per shard. Without a checkpoint, reading
    starts at ``start`` ("0": the oldest entry kept; "$": only new ones).
    """

    def __init__(self, url: str, shards: int, *, checkpoint: str | Path | None = None,
                 start: str = "0", prefix: str = DEFAULT_PREFIX) -> None:  # fmt: skip
        if shards < 1:
            raise ConsumerError("shards must be >= 1")
        self.shown = mask_passwords(url)
        self._client = redis.Redis.from_url(url, socket_timeout=None,
                                            socket_connect_timeout=TIMEOUT_S)  # fmt: skip
        self._checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.ids = {stream_name(prefix, s): start for s in range(shards)}
        self._shard_of = {stream_name(prefix, s): s for s in range(shards)}
        if self._checkpoint is not None and self._checkpoint.exists():
            try:
                saved: dict[str, Any] = json.loads(self._checkpoint.read_text())
            except (OSError, ValueError) as exc:
                raise ConsumerError(f"cannot read checkpoint {self._checkpoint}: {exc}") from exc
            self.ids.update({k: str(v) for k, v in saved.items() if k in self.ids})
        self.skipped = 0  # entries of a family this version does not know

    def read(self, count: int = 1000, block_ms: int | None = 1000) -> list[StreamMessage]:
        """The next entries of every shard (up to ``count`` each), waiting up to ``block_ms``
        for any; saves the checkpoint of the previous read first."""
        self.save()
        try:
            replies = self._client.xread(self.ids, count=count, block=block_ms)  # type: ignore[arg-type]
        except redis.RedisError as exc:
            raise ConsumerError(f"Redis XREAD at {self.shown} failed: {exc}") from exc
        out: list[StreamMessage] = []
        for name, entries in _replies(replies):
            stream = name.decode()
            shard = self._shard_of[stream]
            for entry_id, fields in entries:
                topic, payload = fields[b"topic"], fields[b"payload"]
                ident = entry_id.decode()
                self.ids[stream] = ident
                family = families.of_topic(topic)
                if family is None:  # written by a newer feedmux: counted, and read past
                    self.skipped += 1
                    continue
                try:
                    decoded: wire.Payload = family.decoder.decode(payload)
                except msgspec.DecodeError as exc:
                    raise ConsumerError(f"undecodable entry {ident} of {stream}: {exc}") from exc
                out.append(StreamMessage(shard, ident, topic, decoded))
        return out

    def __iter__(self) -> Iterator[StreamMessage]:
        """Every entry, forever (blocking between them)."""
        while True:
            yield from self.read()

    def save(self) -> None:
        if self._checkpoint is None:
            return
        tmp = self._checkpoint.with_name(f".{self._checkpoint.name}.tmp")
        tmp.write_text(json.dumps(self.ids))
        os.replace(tmp, self._checkpoint)

    def close(self) -> None:
        """Close without saving: what the last read returned counts as unprocessed."""
        self._client.close()

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:  # left cleanly: the last batch was processed
            self.save()
        self.close()
