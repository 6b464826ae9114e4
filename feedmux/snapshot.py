"""The latest tick (and order book) of each code, with the publish sequence of the tick."""

from __future__ import annotations

from feedmux.identity import identity
from feedmux.model import Depth, Tick


class SnapshotCache:
    __slots__ = ("_books", "_latest", "first_recv_ns", "last_pub_seq", "pub_seqs")

    def __init__(self) -> None:
        self._latest: dict[str, Tick] = {}
        self._books: dict[str, Depth] = {}
        self.first_recv_ns: dict[str, int] = {}  # when each code's first tick arrived
        self.pub_seqs: dict[str, int] = {}  # the pub_seq its latest tick went out with
        self.last_pub_seq = 0

    def __len__(self) -> int:
        return len(self._latest)

    def latest_seq(self, code: str) -> int | None:
        held = self._latest.get(code)
        return None if held is None else held.seq

    def apply(self, pub_seq: int, tick: Tick) -> bool:
        """Record ``tick`` unless one of equal or higher identity (trading day, seq) is held;
        True if it was newer."""
        self.last_pub_seq = pub_seq
        held = self._latest.get(tick.code)
        if held is None:
            self.first_recv_ns[tick.code] = tick.recv_ns
        elif identity(held) >= identity(tick):
            return False
        self._latest[tick.code] = tick
        self.pub_seqs[tick.code] = pub_seq
        return True

    def apply_book(self, book: Depth) -> bool:
        """Record ``book`` unless an equal or newer one is held; True if it was newer."""
        held = self._books.get(book.code)
        if held is not None and identity(held) >= identity(book):
            return False
        self._books[book.code] = book
        return True

    def books(self, codes: list[str] | None = None) -> list[Depth]:
        if codes is None:
            return list(self._books.values())
        return [b for c in codes if (b := self._books.get(c)) is not None]

    def get(self, codes: list[str] | None = None) -> list[Tick]:
        if codes is None:
            return list(self._latest.values())
        return [t for c in codes if (t := self._latest.get(c)) is not None]
