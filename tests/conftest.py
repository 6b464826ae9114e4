"""Shared test helpers. Timeouts are multiples of a unit scaled by FEEDMUX_TEST_TIME_SCALE."""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

# HYPOTHESIS_PROFILE=ci (.ci/run) runs the property tests on fixed examples: a red CI means a
# change broke something. A developer's run explores new ones and keeps any failure to replay.
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

TIME_SCALE = float(os.environ.get("FEEDMUX_TEST_TIME_SCALE", "1"))
# The slowest scenario tests (marked ``slow``) run where there is time: CI sets this (.ci/run),
# a developer's default run stays within a few minutes without them.
SLOW = os.environ.get("FEEDMUX_SLOW_TESTS") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if SLOW:
        return
    skip = pytest.mark.skip(reason="slow: CI runs it (.ci/run sets FEEDMUX_SLOW_TESTS=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def scaled(seconds: float) -> float:
    return seconds * TIME_SCALE


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    """Poll ``condition`` until true; fail with ``what`` after ``timeout`` (scaled) seconds."""
    deadline = time.monotonic() + scaled(timeout)
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {scaled(timeout):.0f} s waiting for {what}")
        time.sleep(step)


class FakeClock:
    def __init__(self, start_ns: int = 1_000_000_000_000) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> int:
        self.now += int(seconds * 1e9)
        return self.now


@contextlib.contextmanager
def http_serving(handler: type[http.server.BaseHTTPRequestHandler], path: str) -> Iterator[str]:
    """A plain HTTP server on loopback where a WebSocket URL points: yields ws://…``path``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"ws://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
        server.server_close()
