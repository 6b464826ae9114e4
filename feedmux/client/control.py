"""Live subscription changes, the caller's side: ``Control`` asks a running ``feedmux run`` to
change its codes and waits for the vendor's answer."""

from __future__ import annotations

import time
from pathlib import Path

from feedmux import wire
from feedmux.client.subscriber import SnapshotClient
from feedmux.codes import is_whole_market, parse_codes
from feedmux.errors import ConsumerError, SubscriptionError
from feedmux.ops import instance
from feedmux.ops.config import RunPaths
from feedmux.transports import zmq as zt

ALIVE_CHECK_S = 0.5  # while waiting for the receiver, check this often that the run lives


def silent_codes(
    confirmed_age_s: dict[str, float], last_tick_age_s: dict[str, float], threshold_s: float
) -> dict[str, float | None]:
    """Codes subscribed for longer than ``threshold_s`` with no tick in that time: each with
    the seconds since its last tick, None if it never ticked. A whole market (``*.US``) is
    silent when none of its codes ticked."""
    ages = dict(last_tick_age_s)
    for code in confirmed_age_s:
        if is_whole_market(code):
            market = "." + code.rpartition(".")[2]
            within = [age for c, age in last_tick_age_s.items() if c.endswith(market)]
            if within:
                ages[code] = min(within)
    return {
        code: ages.get(code)
        for code, age in sorted(confirmed_age_s.items())
        if age > threshold_s and ages.get(code, threshold_s + 1) > threshold_s
    }


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
        return self._change(wire.Subscribe(parse_codes(codes), wait))

    def unsubscribe(self, codes: list[str], wait: bool = True) -> list[str]:
        """Remove codes; returns them in canonical form once the server stopped them."""
        return self._change(wire.Unsubscribe(parse_codes(codes), wait))

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
        # Every code's latest tick, as the shards hold them: the supervisor asks every few
        # seconds, so neither the 5,000 codes are sent nor Quotes built.
        replies = SnapshotClient(self.paths.root, timeout=self.timeout).replies(None)
        ages = {t.code: (now - t.recv_ns) / 1e9 for reply in replies for t in reply.ticks}
        return silent_codes(confirmed, ages, threshold_s)

    def rejected(self) -> dict[str, str]:
        """Codes the vendor or a plan limit refused, with the reasons."""
        return self._request(wire.ListSubscriptions()).rejected
