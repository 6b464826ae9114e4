"""Live subscription changes, the receiver's side: ``ControlDesk`` applies each request to the
subscription manager and answers once the vendor agreed. ``serve`` moves the bytes of a ROUTER
socket (or a fake); the rest is pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import zmq

from feedmux import wire
from feedmux.ingest.subscriptions import SubscriptionManager

CONFIRM_TIMEOUT_NS = 60_000_000_000


class Router(Protocol):
    """A ROUTER socket: ``recv_multipart(zmq.NOBLOCK)`` raises ``zmq.Again`` when empty."""

    def recv_multipart(self, flags: int = ...) -> list[Any]: ...
    def send_multipart(self, msg_parts: list[bytes], flags: int = ...) -> Any: ...


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
        vendor = self.manager.provider
        if subscribed and (refused := [w for c in request.codes if (w := vendor.cannot_carry(c))]):
            return self.reply(now_ns, "; ".join(refused)), False  # all or nothing, as below
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

    @property
    def waiting(self) -> bool:
        """Changes wait for the server's word: a reply may answer them."""
        return bool(self._waiting)

    def serve(self, sock: Router, now_ns: int) -> bool:
        """Take every waiting request and send the answers due; True when the desired set
        changed (the caller saves the universe)."""
        changed = False
        while True:
            try:
                ident, empty, raw = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            answer, changed_now = self.submit(ident, raw, now_ns)
            changed |= changed_now
            if answer is not None:
                sock.send_multipart([ident, empty, answer])
        for ident, answer in self.answers(now_ns):
            sock.send_multipart([ident, b"", answer])
        return changed

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
