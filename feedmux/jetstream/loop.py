"""An asyncio event loop on a thread of its own, for nats-py in synchronous code.

The client keeps its connection alive (pings, reconnects, acks) on this loop while the caller
does other things; the caller runs a coroutine on it and waits for the result with ``run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

STOP_S = 2.0  # cancelled tasks get this long to finish, the thread as long to end


class LoopThread:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """``coro``'s result; TimeoutError (and the coroutine cancelled) after ``timeout``."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` on the loop without waiting for it (``stop`` cancels it if need be)."""
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        """Cancel what still runs (after closing the client on it), stop the loop and join its
        thread: bounded, whatever state the connection is in."""
        if self._thread.is_alive():
            with contextlib.suppress(TimeoutError):
                self.run(_cancel_others(), STOP_S * 2)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(STOP_S)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_others() -> None:
    """Every task but this one cancelled, so none is destroyed pending when the loop closes."""
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=STOP_S)
