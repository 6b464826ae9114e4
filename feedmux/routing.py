"""Which shard owns a code: ``crc32(code) % n``, the same in every process and on every run.

Python's ``hash()`` is salted per process, so it must never be used for routing.
"""

from __future__ import annotations

from zlib import crc32


def shard_of(code: str, shards: int) -> int:
    return crc32(code.encode()) % shards


class Router:
    """``shard_of`` with a per-code cache: a dict lookup is cheaper than a crc32 on the hot path."""

    __slots__ = ("_cache", "shards")

    def __init__(self, shards: int) -> None:
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.shards = shards
        self._cache: dict[str, int] = {}

    def __call__(self, code: str) -> int:
        shard = self._cache.get(code)
        if shard is None:
            shard = self._cache[code] = shard_of(code, self.shards)
        return shard
