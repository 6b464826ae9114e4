"""The one exception tree of feedmux.

Every error feedmux raises on purpose derives from :class:`FeedmuxError`, so callers can catch
the whole family with one ``except``. Messages never contain the vendor token.

    FeedmuxError
    ├── ConfigError          bad settings, flags, paths or environment (fix the invocation)
    │   ├── SymbolError      one or more codes that cannot be parsed (names each code and line)
    │   └── InstanceRunningError  another feedmux run holds the run or data directory
    ├── ProtocolError        a vendor message feedmux cannot accept
    ├── VendorError          the vendor answered a request with ret != 200
    │   └── SubscriptionError    codes the vendor (or a plan limit) refused, with the reasons
    ├── StoreError           a sink could not write or read
    └── ConsumerError        a Subscriber / SnapshotClient could not reach a running pipeline
        ├── NotRunningError  no feedmux run holds that run directory (clients answer at once)
        └── GapError         a Subscriber missed messages (or a shard restarted): resync
"""

from __future__ import annotations


class FeedmuxError(Exception):
    """Base class of every error feedmux raises on purpose."""


class ConfigError(FeedmuxError):
    """The settings cannot work; the message says what to change."""


class SymbolError(ConfigError):
    """Codes that cannot be parsed; ``problems`` lists ``(where, code, reason)`` for each."""

    SHOWN = 20  # a list of thousands is a wrong file, not thousands of typos: show the start

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        lines = [f"{where}: {code!r}: {reason}" for where, code, reason in problems[: self.SHOWN]]
        head = "invalid symbols:"
        if len(problems) > self.SHOWN:
            head = f"{len(problems):,} invalid symbols; the first {self.SHOWN}:"
            lines.append(f"... and {len(problems) - self.SHOWN:,} more")
        super().__init__(head + "\n  " + "\n  ".join(lines))


class InstanceRunningError(ConfigError):
    """Another ``feedmux run`` holds the run or data directory (its pid is in the message)."""


class ProtocolError(FeedmuxError):
    """A message from the vendor that does not follow the protocol."""


class VendorError(FeedmuxError):
    """The vendor refused a request (``ret`` != 200)."""

    def __init__(self, ret: int, msg: str, cmd_id: int) -> None:
        self.ret = ret
        self.msg = msg
        self.cmd_id = cmd_id
        super().__init__(f"vendor refused cmd {cmd_id}: ret={ret} {msg}")


class SubscriptionError(VendorError):
    """Codes that could not be subscribed; ``rejected`` maps each to its reason."""

    def __init__(self, rejected: dict[str, str]) -> None:
        self.rejected = rejected
        FeedmuxError.__init__(
            self, "not subscribed: " + "; ".join(f"{c}: {why}" for c, why in rejected.items())
        )
        self.ret, self.msg, self.cmd_id = 0, str(self), 0


class StoreError(FeedmuxError):
    """A sink could not write or read."""


class ConsumerError(FeedmuxError):
    """A consumer could not reach or understand a running pipeline."""


class NotRunningError(ConsumerError):
    """No ``feedmux run`` holds the run directory: nothing there can answer."""


class GapError(ConsumerError):
    """A ``Subscriber`` missed published messages, or a shard restarted and numbers anew.

    ``shard`` says where; ``missed`` how many messages (None for a restart, where it cannot
    be known). The message that revealed the gap is kept: the next ``recv`` returns it. Call
    ``Subscriber.snapshot()`` to catch up from each shard's latest state.
    """

    def __init__(self, shard: int, kind: str, missed: int | None) -> None:
        self.shard = shard
        self.kind = kind
        self.missed = missed
        what = "restarted (its numbering began again)" if missed is None else f"{missed} missed"
        super().__init__(f"gap in shard {shard}'s {kind}: {what}; resync with snapshot()")
