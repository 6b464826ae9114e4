"""The stream's creation and check against the machine's NATS server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import nats
import pytest

from feedmux.errors import ConfigError
from feedmux.jetstream.stream import StreamSpec, ensure
from tests.nats_servers import Target, local_target


@pytest.fixture
def target() -> Iterator[Target]:
    yield from local_target()


def test_two_instances_starting_together_both_use_the_one_stream(target: Target) -> None:
    """Both find no stream and create it, with different limits: one makes it, the other finds
    it and says where it differs. A max age shorter than the duplicate window shortens the
    window (JetStream refuses a longer one)."""

    async def both() -> list[tuple[str, list[str]]]:
        clients = [await nats.connect(target.url) for _ in range(2)]
        try:
            return list(
                await asyncio.gather(
                    ensure(clients[0].jetstream(), StreamSpec(target.stream, target.prefix, 60)),
                    ensure(clients[1].jetstream(), StreamSpec(target.stream, target.prefix, 600)),
                )
            )
        finally:
            for client in clients:
                await client.close()

    results = sorted(asyncio.run(both()))
    assert [done for done, _ in results] == ["created", "found"]
    assert results[1][1][0].startswith("max age ")


def test_a_stream_the_server_refuses_is_a_config_error_with_the_server_s_reason(
    target: Target,
) -> None:
    async def make() -> None:
        client = await nats.connect(target.url)
        try:
            await ensure(client.jetstream(), StreamSpec(target.stream, target.prefix, replicas=3))
        finally:
            await client.close()

    with pytest.raises(ConfigError, match=f"cannot create NATS stream {target.stream}: replicas"):
        asyncio.run(make())
