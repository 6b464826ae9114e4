"""The latest tick of each code, with the publish sequence it was last updated at."""

from __future__ import annotations

from feedmux.model import Tick


class SnapshotCache:
    __slots__ = ("_latest", "first_recv_ns", "last_pub_seq")

    def __init__(self) -> None:
        self._latest: dict[str, Tick] = {}
        self.first_recv_ns: dict[str, int] = {}  # when each code's first tick arrived
        self.last_pub_seq = 0

    def __len__(self) -> int:
        return len(self._latest)

    def apply(self, pub_seq: int, tick: Tick) -> bool:
        """Record ``tick`` unless an equal or newer vendor seq is held; True if it was newer."""
        self.last_pub_seq = pub_seq
        held = self._latest.get(tick.code)
        if held is None:
            self.first_recv_ns[tick.code] = tick.recv_ns
        elif held.seq >= tick.seq:
            return False
        self._latest[tick.code] = tick
        return True

    def get(self, codes: list[str] | None = None) -> list[Tick]:
        if codes is None:
            return list(self._latest.values())
        return [t for c in codes if (t := self._latest.get(c)) is not None]
