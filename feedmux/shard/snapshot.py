"""The latest tick (and order book) of each code, with the publish sequence of the tick."""

from __future__ import annotations

from feedmux.model import Depth, Tick


class SnapshotCache:
    """Takes only items newer than the held one: the shard's re-send filters (by identity,
    feedmux/identity.py) decide that before, so no comparison is repeated here."""

    __slots__ = ("_books", "_latest", "first_recv_ns", "last_pub_seq", "pub_seqs")

    def __init__(self) -> None:
        self._latest: dict[str, Tick] = {}
        self._books: dict[str, Depth] = {}
        self.first_recv_ns: dict[str, int] = {}  # when each code's first tick arrived
        self.pub_seqs: dict[str, int] = {}  # the pub_seq its latest tick went out with
        self.last_pub_seq = 0

    def __len__(self) -> int:
        return len(self._latest)

    def apply(self, pub_seq: int, tick: Tick) -> None:
        """Record ``tick``, newer than its code's held one, published as ``pub_seq``."""
        self.last_pub_seq = pub_seq
        if tick.code not in self._latest:
            self.first_recv_ns[tick.code] = tick.recv_ns
        self._latest[tick.code] = tick
        self.pub_seqs[tick.code] = pub_seq

    def apply_book(self, book: Depth) -> None:
        """Record ``book``, newer than its code's held one."""
        self._books[book.code] = book

    def books(self, codes: list[str] | None = None) -> list[Depth]:
        if codes is None:
            return list(self._books.values())
        return [b for c in codes if (b := self._books.get(c)) is not None]

    def get(self, codes: list[str] | None = None) -> list[Tick]:
        if codes is None:
            return list(self._latest.values())
        return [t for c in codes if (t := self._latest.get(c)) is not None]
