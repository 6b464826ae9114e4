"""Connecting to NATS, one way for the shards, the run's start-up check and consumers."""

from __future__ import annotations

import asyncio
import logging

import nats.errors
from nats.aio.client import Client

from feedmux.errors import StoreError
from feedmux.passwords import mask_passwords

CONNECT_TIMEOUT_S = 5  # one server
FIRST_CONNECT_S = 10.0  # at start: then it is a mistake to report, not an outage to wait out

log = logging.getLogger(__name__)


async def connect(urls: list[str], name: str, *, shown: str) -> Client:
    """A client that reconnects for ever (the lane retries meanwhile); StoreError when no server
    answers at first."""

    async def disconnected() -> None:
        if not client.is_closed:  # closing says so too
            log.warning("NATS connection lost; reconnecting (publishes wait and are retried)")

    async def reconnected() -> None:
        log.warning("NATS reconnected to %s", mask_passwords(str(client.connected_url or "")))

    async def error(exc: Exception) -> None:
        log.info("NATS: %s", mask_passwords(str(exc) or type(exc).__name__))

    client = Client()
    try:  # every server tried until the timeout (the client itself would try for ever)
        await asyncio.wait_for(client.connect(
            servers=urls, name=name, connect_timeout=CONNECT_TIMEOUT_S,
            max_reconnect_attempts=-1, reconnect_time_wait=1, allow_reconnect=True,
            disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error,
        ), FIRST_CONNECT_S)  # fmt: skip
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        await client.close()
        why = mask_passwords(str(exc)) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            why = f"no answer in {FIRST_CONNECT_S:g} s"
        raise StoreError(f"cannot reach NATS at {shown}: {why}") from exc
    return client
