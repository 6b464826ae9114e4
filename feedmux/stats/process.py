"""What every worker's stats file says, whatever its role."""

from __future__ import annotations

import msgspec

from feedmux.writes import WriteFailure


class ProcessStats(msgspec.Struct, kw_only=True, tag_field="role"):
    """A worker's numbers, rewritten once a second. ``role`` (the tag) says which kind.

    Readers ignore fields they do not know (a newer writer's); a file missing one of these
    does not decode and is skipped (``RunStats.unreadable`` says why)."""

    final: bool  # written at the process's orderly exit: its counts are complete
    time_ns: int  # wall clock of this writing: rates are measured between two of them
    cpu_s: float
    max_rss_kb: int
    failing_writes: list[WriteFailure]  # each kind of write that failed (a full disk)

    @property
    def name(self) -> str:
        """The process's name: its stats file's, its logs', its metrics' ``process`` label."""
        raise NotImplementedError
