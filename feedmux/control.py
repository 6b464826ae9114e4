"""Live subscription changes: the receiver's side (``ControlDesk``, pure) and the caller's
(``Control``), plus the desired universe persisted in the data directory."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from feedmux import instance, wire
from feedmux.config import RunPaths
from feedmux.consumer import SnapshotClient
from feedmux.errors import ConfigError, ConsumerError, SubscriptionError
from feedmux.subscriptions import SubscriptionManager
from feedmux.symbols import parse_symbols
from feedmux.transports import zmq as zt
from feedmux.writes import health

UNIVERSE_FILE = "subscriptions.json"
CONFIRM_TIMEOUT_NS = 60_000_000_000
ALIVE_CHECK_S = 0.5  # while waiting for the receiver, check this often that the run lives


def silent_codes(
    confirmed_age_s: dict[str, float], last_tick_age_s: dict[str, float], threshold_s: float
) -> dict[str, float | None]:
    """Codes subscribed for longer than ``threshold_s`` with no tick in that time: each with
    the seconds since its last tick, None if it never ticked."""
    return {
        code: last_tick_age_s.get(code)
        for code, age in sorted(confirmed_age_s.items())
        if age > threshold_s and last_tick_age_s.get(code, threshold_s + 1) > threshold_s
    }


# -- the persisted desired universe ---------------------------------------------------------------
class _Universe(msgspec.Struct):
    codes: list[str]
    refused: dict[str, str] = {}  # code -> why the vendor refused it (not in ``codes``)


def universe_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / UNIVERSE_FILE


def save_universe(
    data_dir: str | Path, codes: list[str], refused: dict[str, str] | None = None
) -> None:
    path = universe_path(data_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.encode(_Universe(codes, dict(refused or {}))))
    os.replace(tmp, path)  # a crash mid-write never leaves half a file


def keep_universe(
    data_dir: str | Path, codes: list[str], refused: dict[str, str] | None = None
) -> bool:
    """``save_universe`` for a running receiver: a failed write (a full disk) is counted and
    reported once, never fatal; False tells the caller to try again later."""
    try:
        save_universe(data_dir, codes, refused)
    except OSError as exc:
        health.failed("universe", exc)
        return False
    health.ok("universe")
    return True


def load_universe(data_dir: str | Path) -> list[str] | None:
    path = universe_path(data_dir)
    try:
        return msgspec.json.decode(path.read_bytes(), type=_Universe).codes
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"cannot read the saved subscriptions {path}: {exc}; "
                          "delete it or give --symbols-file") from exc  # fmt: skip


# -- the receiver's side --------------------------------------------------------------------------
@dataclass
class _Waiter:
    ident: bytes
    codes: list[str]
    subscribed: bool
    since_ns: int  # when the change was made: a request sent later carried it
    deadline_ns: int


class ControlDesk:
    """Applies control requests to the manager and answers each once the server agrees."""

    def __init__(self, manager: SubscriptionManager) -> None:
        self.manager = manager
        self._waiting: list[_Waiter] = []
        self._checked_version = -1  # the manager's state the waiters were last checked against
        self._known = set(manager.owner)  # every code subscribed since this receiver started

    def reply(self, now_ns: int, error: str = "", codes: list[str] | None = None) -> bytes:
        manager = self.manager
        rejected = manager.rejected if codes is None else {
            c: manager.rejected[c] for c in codes if c in manager.rejected
        }  # fmt: skip
        ages = {c: (now_ns - t) / 1e9 for c, t in manager.confirmed_at.items()
                if c in manager.owner}  # fmt: skip
        return wire.encode(wire.ControlReply(error, manager.desired(), rejected, ages))

    def submit(self, ident: bytes, raw: bytes, now_ns: int) -> tuple[bytes | None, bool]:
        """Handle one request: ``(reply now or None, whether the desired set changed)``."""
        try:
            request = wire.control_request_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            return self.reply(now_ns, f"bad control request: {exc}"), False
        if isinstance(request, wire.ListSubscriptions):
            return self.reply(now_ns), False
        subscribed = isinstance(request, wire.Subscribe)
        if subscribed:
            self._known.update(request.codes)
        elif unknown := [c for c in request.codes if c not in self._known]:
            # All or nothing: a typo must not half-apply. A code removed earlier is no error:
            # a waiting call may confirm changes sent with wait=False.
            return self.reply(now_ns, "never subscribed: " + " ".join(unknown)), False
        if subscribed:
            self.manager.subscribe(request.codes)
        else:
            self.manager.unsubscribe(request.codes)
        if not request.wait:
            return self.reply(now_ns, codes=request.codes), True
        self._waiting.append(_Waiter(ident, request.codes, subscribed, now_ns,
                                     now_ns + CONFIRM_TIMEOUT_NS))  # fmt: skip
        return None, True

    def answers(self, now_ns: int) -> list[tuple[bytes, bytes]]:
        """Replies due now: changes the server confirmed, refused for good (its ``ret`` and
        ``msg``), or that timed out (with the last refusal, if one is being retried: a retry
        that succeeds answers the call as confirmed)."""
        if not self._waiting:
            return []
        manager = self.manager
        changed = manager.version != self._checked_version
        self._checked_version = manager.version
        out, still = [], []
        for w in self._waiting:
            if changed and manager.settled(w.codes, w.subscribed):
                out.append((w.ident, self.reply(now_ns, codes=w.codes)))
            elif changed and (why := manager.refusal(w.codes, w.subscribed, w.since_ns,
                                                     retried=False)):  # fmt: skip
                out.append((w.ident, self.reply(now_ns, why, w.codes)))
            elif now_ns >= w.deadline_ns:
                error = f"not confirmed by the server within {CONFIRM_TIMEOUT_NS // 10**9} s"
                why = manager.refusal(w.codes, w.subscribed, w.since_ns, retried=True)
                out.append((w.ident, self.reply(now_ns, f"{error}: {why}" if why else error,
                                                w.codes)))  # fmt: skip
            else:
                still.append(w)
        self._waiting = still
        return out


# -- the caller's side ----------------------------------------------------------------------------
class Control:
    """Change a running ``feedmux run``'s subscriptions; each call returns once the vendor
    confirmed the change, or raises (``SubscriptionError`` names each refused code)."""

    def __init__(self, run_dir: str | Path = Path("feedmux-data") / "run",
                 timeout: float = 90.0) -> None:  # fmt: skip
        self.paths = RunPaths.of_run(Path(run_dir))
        self.timeout = timeout

    def _request(self, request: wire.ControlRequest) -> wire.ControlReply:
        instance.require(self.paths.root)  # nothing runs: say so now, not after the timeout
        ctx = zt.context()
        try:
            sock = zt.req(ctx, self.paths.control)
            sock.send(wire.encode(request))
            if not self._answered(sock):
                raise ConsumerError(f"no answer from the receiver within {self.timeout} s: is "
                                    f"feedmux running with run dir {self.paths.root}?")  # fmt: skip
            reply = wire.control_reply_decoder.decode(sock.recv())
        finally:
            ctx.destroy(linger=0)
        if reply.error:
            raise ConsumerError(reply.error)
        return reply

    def _answered(self, sock: zt.Sock) -> bool:
        """Wait for the reply; an instance that stops meanwhile ends the wait at once."""
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            if sock.poll(int(min(left, ALIVE_CHECK_S) * 1000)):
                return True
            instance.require(self.paths.root)
        return False

    def _change(self, request: wire.Subscribe | wire.Unsubscribe) -> list[str]:
        reply = self._request(request)
        if reply.rejected:
            raise SubscriptionError(reply.rejected)
        return request.codes

    def subscribe(self, codes: list[str], wait: bool = True) -> list[str]:
        """Add codes (any spelling); returns them in canonical form once subscribed.

        ``wait=False`` returns once the receiver has queued the change: AllTick wants any two
        subscription requests of a token 3 s apart, so a burst of changes is faster sent
        without waiting, then confirmed with one waiting call. A waiting call whose change
        the vendor refused raises ``ConsumerError`` with the vendor's ``ret`` and ``msg``: at
        once if the request is not sent again, after 60 s if every retry is refused.
        """
        return self._change(wire.Subscribe(parse_symbols(codes), wait))

    def unsubscribe(self, codes: list[str], wait: bool = True) -> list[str]:
        """Remove codes; returns them in canonical form once the server stopped them."""
        return self._change(wire.Unsubscribe(parse_symbols(codes), wait))

    def subscriptions(self) -> list[str]:
        """The desired codes of the running instance."""
        return self._request(wire.ListSubscriptions()).codes

    def silent(self, threshold_s: float = 60.0) -> dict[str, float | None]:
        """Codes the server confirmed more than ``threshold_s`` ago that had no tick since:
        code -> seconds since its last tick (None: never ticked). "Subscribed but silent" is
        how a vendor-side problem with a code usually shows."""
        confirmed = self._request(wire.ListSubscriptions()).confirmed_age_s
        if not confirmed:
            return {}
        now = time.time_ns()
        latest = SnapshotClient(self.paths.root, timeout=self.timeout).get(list(confirmed))
        ages = {code: (now - quote.tick.recv_ns) / 1e9 for code, quote in latest.items()}
        return silent_codes(confirmed, ages, threshold_s)

    def rejected(self) -> dict[str, str]:
        """Codes the vendor or a plan limit refused, with the reasons."""
        return self._request(wire.ListSubscriptions()).rejected
