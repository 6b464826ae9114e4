"""A tick's ``seq`` where iTick gives none: feedmux's own, from its time and its arrival.

iTick numbers nothing, yet stores keep one tick per ``(code, trading day, seq)`` and a shard
publishes (and puts in bars) only a tick above its code's highest ``seq`` so far (a lower or
equal one is a re-send). So::

    seq = t_ms << 16 | k

- ``t_ms``: the trade's time (``t``, ms): a later ms always has a higher seq;
- ``k`` (0..65535): how many pushes of the code with that same ``t_ms`` this connection had
  already, whatever their content. It is connection state: the receiver counts it
  (``Arrivals``) and hands it to the stateless decode in the push's bytes (``mark``/``unmark``).

What that gives: (a) a push re-sent on a new connection (after a reconnect: vendors push the
latest trade again on a subscribe) counts from 0 again, so its seq is one already stored or
lower, and it is dropped as a re-send; (b) two genuine trades of one code in one ms, identical
ones too, get ``k`` 0 and 1 on their connection: both are stored and published, in the order
they came; (c) seqs grow with time and, within a ms, with arrival.

Its costs:

- A trade sent twice on one connection is two trades: nothing in the message tells a repeat
  from a second identical trade.
- A trade in the very ms of an earlier one of its code that this connection did not get (lost
  with the old connection, or a second one of that ms pushed again on a resubscribe) is taken
  for a re-send of the first: lost. It needs two trades of one code in one ms, one of them
  caught in a reconnect.
- A trade whose ``t`` goes back on its connection (a ms that comes again after a later one) is
  taken for a re-send: only each code's current ms is kept.
- Memory: per code and connection, its current ms and count (two ints in a dict entry).
- CPU: one dict lookup and store per push in the receiver; the marker is 0 bytes for a code's
  first push in a ms, 2 to 6 bytes for the others.

Books: a depth push names no time (its ``t`` if one comes, else the ms it was read in), so a
book sent again is a new snapshot anyway; a book's seq is the same layout, its arrivals
counted apart.

The marker: a push whose arrival is above 0 travels to the shard as ``b"<k> "`` followed by the
vendor's bytes (``b"2 {...}"``); with 0 it travels as it came.
"""

from __future__ import annotations

ARRIVALS = 1 << 16  # k's bits
_TIME_SHIFT = 16
_DIGITS = frozenset(b"0123456789")


def seq_of(t_ms: int, arrival: int) -> int:
    """A tick's (or book's) seq."""
    return (t_ms << _TIME_SHIFT) | arrival


class Arrivals:
    """Per code, its current ms and the pushes read in it on this connection."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int]] = {}  # code -> (ms, pushes in it)

    def count(self, code: str, t_ms: int) -> int:
        """This push's arrival in its ms (0 for the first), and remember it."""
        seen = self._seen.get(code)
        arrival = 0 if seen is None or seen[0] != t_ms else seen[1]
        self._seen[code] = (t_ms, arrival + 1)
        return arrival if arrival < ARRIVALS else ARRIVALS - 1

    def clear(self) -> None:
        """A new connection counts afresh."""
        self._seen.clear()

    def forget(self, codes: tuple[str, ...]) -> None:
        """Subscribed again: the vendor may push their latest trade again, a re-send."""
        for code in codes:
            self._seen.pop(code, None)


def mark(payload: bytes, arrival: int) -> bytes:
    """The push as the shard gets it: its arrival in front when above 0."""
    return b"%d %b" % (arrival, payload) if arrival else payload


def unmark(payload: bytes) -> tuple[int, bytes] | None:
    """``(arrival, vendor bytes)`` of a push from the receiver; None for a bad marker."""
    if not payload or payload[0] not in _DIGITS:
        return 0, payload
    head, space, rest = payload.partition(b" ")
    if not space or not head.isdigit() or not 0 < int(head) < ARRIVALS:
        return None
    return int(head), rest
