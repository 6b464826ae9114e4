"""Topic families: every kind of message a shard publishes, defined once.

A family is a topic prefix (a topic is the prefix and the code), the payload it carries, the
sequence that numbers its messages per shard, the ``Subscriber`` option that asks for it, and
where it goes besides the PUB socket. The shard, ``Subscriber``, ``StreamReader``, ``feedmux
tail``, status and metrics all read this table, so adding a family touches this module and the
code that produces it.

``relayed``: copied to Redis Streams (and any other relay) for consumers elsewhere.
``acked``: derived from the receiver's bus messages one to one (ticks, books), so a shard
acknowledges a bus message only once every relay holds its publication too. Bars and moves are
derived from many ticks and can be built again: they never hold an acknowledgement back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from feedmux import wire


@dataclass(frozen=True)
class Family:
    name: str  # the one word for it in gaps, status, metrics, `feedmux tail`
    prefix: bytes
    option: str  # the Subscriber keyword that asks for it
    decoder: msgspec.msgpack.Decoder[Any]  # payload -> a wire.Payload
    relayed: bool
    acked: bool

    def topic(self, code: str) -> bytes:
        return self.prefix + code.encode()


TRADES = Family("trades", b"T|", "trades", msgspec.msgpack.Decoder(wire.Published),
                relayed=True, acked=True)  # fmt: skip
BOOKS = Family("books", b"D|", "books", msgspec.msgpack.Decoder(wire.PublishedDepth),
               relayed=True, acked=True)  # fmt: skip
BARS = Family("bars", b"B|", "bars", msgspec.msgpack.Decoder(wire.PublishedBar),
              relayed=True, acked=False)  # fmt: skip
# --min-move: trades that moved the price by the step or more; books whose best bid or ask did.
TRADE_MOVES = Family("trade moves", b"MT|", "trade_moves", TRADES.decoder,
                     relayed=False, acked=False)  # fmt: skip
BOOK_MOVES = Family("book moves", b"MD|", "book_moves", BOOKS.decoder,
                    relayed=False, acked=False)  # fmt: skip
FAMILIES = (TRADES, BOOKS, BARS, TRADE_MOVES, BOOK_MOVES)
MOVES = (TRADE_MOVES, BOOK_MOVES)
HEARTBEAT_TOPIC = b"H|"  # not a family: a shard's "still here, pub_seq is at N", once a second

_BY_PREFIX = {f.prefix: f for f in FAMILIES}


def of_topic(topic: bytes) -> Family | None:
    """The family of a published topic (or of a bare prefix); None for the heartbeat or a
    prefix this version does not know."""
    return _BY_PREFIX.get(topic[: topic.find(b"|") + 1])
