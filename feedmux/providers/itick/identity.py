"""A tick's ``seq`` where iTick gives none: feedmux's own, from the push's content.

iTick numbers nothing, yet stores keep one tick per ``(code, trading day, seq)``. So::

    seq = t_ms << 22 | content_hash << 6 | occurrence

- ``t_ms``: the trade's time (``t``, ms), so seqs keep a code's time order;
- ``content_hash``: the top 16 bits of CRC-32 over the normalised content: price, volume,
  direction (feedmux's: 1 buy, 2 sell) and session (``te``), as little-endian doubles and
  bytes (the same in any process, Python version and machine);
- ``occurrence`` (0..63): how many pushes of the same code, ``t`` and hash this connection
  already received. It is connection state: the receiver counts it (``Occurrences``) and
  hands it to the stateless decode in the push's bytes (``mark``/``unmark``).

What that gives: (a) a push re-sent on a new connection (after a reconnect) gets the seq it
had, so it is stored once; (b) two genuine identical trades in one connection get two seqs;
(c) seqs grow with time. Its costs:

- Collisions: two different trades of one code in the same ms whose contents hash alike get
  the same seq (one lost) only when they arrive on different connections (a reconnect between
  them); on one connection the second counts as an occurrence and is kept. Per such pair,
  1/65,536.
- A genuine identical trade split by a reconnect (its twin before, itself after) is collapsed
  into its twin: the new connection counts from 0 again.
- Out of order: only the current ms is kept per code; an identical trade whose ms comes back
  after a later one counts from 0 again (collapsed). A 65th identical push in one ms keeps
  occurrence 63 (collapsed).
- The shard publishes (and puts in bars) only ticks above a code's highest seq. Within one ms
  the hash, not the arrival, orders seqs: a second, different trade in the same ms is stored
  but, half of the time, not published nor counted in bars.
- Memory: per code, its current ms and first push's content (about 300 bytes with the
  entry); while a ms has several pushes, a small dict of counts by hash too.
- CPU: a code's first push in a ms takes no hash in the receiver; the shard always takes one
  (about 0.15 us).
- Range: ``t_ms << 22`` fits a signed 64-bit integer until 2^41 ms (September 2039).

Books: a depth push names no time (its ``t`` if one comes, else the ms it was read in), so a
book sent again is a new snapshot anyway, and books keep the order they came in::

    seq = time_ms << 22 | arrival << 16 | book_hash

``arrival`` (0..63) counts the code's books already read in that ms on this connection
(``Arrivals``; the 64th and later keep 63, ordered by hash); ``book_hash`` is 16 bits of the
levels.

The marker: a push whose occurrence (a tick's) or arrival (a book's) is above 0 travels to
the shard as ``b"<n> "`` followed by the vendor's bytes (``b"2 {...}"``); with 0 it travels
as it came.
"""

from __future__ import annotations

import struct
import zlib

OCCURRENCES = 64  # 6 bits
_TIME_SHIFT = 22
_HASH_SHIFT = 6
_ARRIVAL_SHIFT = 16
_DIGITS = frozenset(b"0123456789")
_pack_content = struct.Struct("<ddBB").pack
_crc32 = zlib.crc32


def content_hash(price: float, volume: float, direction: int, session: int) -> int:
    """16 bits of a trade's normalised content (the same in any process, version, machine)."""
    return _crc32(_pack_content(price, volume, direction, session)) >> 16


def book_hash(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> int:
    """16 bits of a book's levels, best first, bids then asks."""
    flat = [x for level in bids for x in level]
    flat.append(-1.0)  # a level cannot move from one side to the other unseen
    flat += [x for level in asks for x in level]
    return _crc32(struct.pack(f"<{len(flat)}d", *flat)) >> 16


def seq_of(t_ms: int, content: int, occurrence: int) -> int:
    """A tick's seq."""
    return (t_ms << _TIME_SHIFT) | (content << _HASH_SHIFT) | occurrence


def book_seq_of(time_ms: int, arrival: int, content: int) -> int:
    """A book's seq."""
    return (time_ms << _TIME_SHIFT) | (arrival << _ARRIVAL_SHIFT) | content


Content = tuple[float, float, int, int]  # price, volume, direction (feedmux's), session


class Occurrences:
    """Per code, the pushes of its current ms already seen on this connection, by hash.

    The usual case, a code's first push in a new ms, is occurrence 0 whatever its content: it
    is kept as it came (no hash taken); a second push in the same ms hashes both and counts
    from then on, in a small dict that goes with that ms."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        # code -> (ms, its first push's content, {hash: pushes} once the ms has a second)
        self._seen: dict[str, tuple[int, Content, dict[int, int] | None]] = {}

    def count(self, code: str, t_ms: int, content: Content) -> int:
        """This push's occurrence (0 for the first of its content), and remember it."""
        seen = self._seen.get(code)
        if seen is None or seen[0] != t_ms:
            self._seen[code] = (t_ms, content, None)
            return 0
        counts = seen[2]
        if counts is None:
            counts = {content_hash(*seen[1]): 1}
            self._seen[code] = (t_ms, seen[1], counts)
        content_key = content_hash(*content)
        occurrence = counts.get(content_key, 0)
        counts[content_key] = occurrence + 1
        return occurrence if occurrence < OCCURRENCES else OCCURRENCES - 1

    def clear(self) -> None:
        """A new connection counts afresh."""
        self._seen.clear()


class Arrivals:
    """Per code, its current ms and the books read in it on this connection."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int]] = {}  # code -> (ms, books)

    def count(self, code: str, time_ms: int) -> int:
        """This book's arrival in its ms (0 for the first), and remember it."""
        seen = self._seen.get(code)
        arrival = 0 if seen is None or seen[0] != time_ms else seen[1]
        self._seen[code] = (time_ms, arrival + 1)
        return arrival if arrival < OCCURRENCES else OCCURRENCES - 1

    def clear(self) -> None:
        self._seen.clear()


def mark(payload: bytes, occurrence: int) -> bytes:
    """The push as the shard gets it: its occurrence (or arrival) in front when above 0."""
    return b"%d %b" % (occurrence, payload) if occurrence else payload


def unmark(payload: bytes) -> tuple[int, bytes] | None:
    """``(occurrence, vendor bytes)`` of a push from the receiver; None for a bad marker."""
    if not payload or payload[0] not in _DIGITS:
        return 0, payload
    head, space, rest = payload.partition(b" ")
    if not space or not head.isdigit() or not 0 < int(head) < OCCURRENCES:
        return None
    return int(head), rest
