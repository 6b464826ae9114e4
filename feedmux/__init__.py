"""feedmux: a whole stock market's real-time feed into Python.

Library API: ``Subscriber`` (live ticks), ``SnapshotClient`` (latest tick per code),
``read_ticks`` (stored ticks as pandas), ``StreamReader`` (the Redis Streams copy, resumable),
``NatsSubscriber`` (NATS JetStream, on any host: live, from a sequence or a time, and snapshots),
``Tick`` (the message shape), ``FeedmuxError`` and ``GapError`` (a subscriber missed messages).
Imported lazily so worker processes, which import ``feedmux.*`` modules, never load pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feedmux.client.control import Control
    from feedmux.client.jetstream import NatsMessage, NatsSnapshot, NatsSubscriber
    from feedmux.client.reader import read_bars, read_books, read_ticks
    from feedmux.client.streams import StreamReader
    from feedmux.client.subscriber import MarketSnapshot, Quote, SnapshotClient, Subscriber
    from feedmux.errors import FeedmuxError, GapError
    from feedmux.model import Depth, Tick

_EXPORTS = {
    "Control": "feedmux.client.control",
    "SnapshotClient": "feedmux.client.subscriber",
    "Subscriber": "feedmux.client.subscriber",
    "FeedmuxError": "feedmux.errors",
    "GapError": "feedmux.errors",
    "MarketSnapshot": "feedmux.client.subscriber",
    "Quote": "feedmux.client.subscriber",
    "Tick": "feedmux.model",
    "read_ticks": "feedmux.client.reader",
    "read_bars": "feedmux.client.reader",
    "read_books": "feedmux.client.reader",
    "Depth": "feedmux.model",
    "StreamReader": "feedmux.client.streams",
    "NatsSubscriber": "feedmux.client.jetstream",
    "NatsMessage": "feedmux.client.jetstream",
    "NatsSnapshot": "feedmux.client.jetstream",
}
__all__ = [
    "Control", "Depth", "FeedmuxError", "GapError", "MarketSnapshot", "NatsMessage",
    "NatsSnapshot", "NatsSubscriber", "Quote", "SnapshotClient", "StreamReader", "Subscriber",
    "Tick", "read_bars", "read_books", "read_ticks",
]  # fmt: skip
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'feedmux' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
