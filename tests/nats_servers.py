"""NATS for the tests: the machine's server (127.0.0.1:4222, skipped with a reason when absent,
failed under FEEDMUX_REQUIRE_SERVICES=1), and private servers or a JetStream cluster started
from the ``nats-server`` binary on free loopback ports, each with its own store directory.

Each test takes its own stream name and subject prefix, deleted afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors

from tests.conftest import wait_for
from tests.services import _absent

NATS_URL = os.environ.get("FEEDMUX_TEST_NATS", "nats://127.0.0.1:4222")


@dataclass(frozen=True)
class Target:
    """Where a test publishes: servers, and its own stream and prefix."""

    url: str  # one or several, comma-separated (as --nats takes them)
    stream: str
    prefix: str

    @property
    def urls(self) -> list[str]:
        return self.url.split(",")

    def flags(self) -> list[str]:
        return ["--nats", self.url, "--nats-stream", self.stream, "--nats-prefix", self.prefix]


def fresh_names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"FEEDMUX_TEST_{tag}", f"fmtest-{tag}"


async def _delete(urls: list[str], stream: str) -> None:
    client = await nats.connect(servers=urls, connect_timeout=3, max_reconnect_attempts=1,
                                error_cb=_quiet)  # fmt: skip
    try:
        with contextlib.suppress(nats.errors.Error):  # never made, or already gone
            await client.jetstream().delete_stream(stream)
    finally:
        await client.close()


async def _quiet(exc: Exception) -> None:
    pass  # the caller reports what matters; nats-py would print a traceback


async def _reachable(url: str) -> str | None:
    try:
        client = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=1,
                                    allow_reconnect=False, error_cb=_quiet)  # fmt: skip
    except Exception as exc:  # any reason is the reason to skip
        return str(exc) or type(exc).__name__
    try:
        await client.jetstream().account_info()
    except Exception as exc:
        return f"no JetStream: {exc or type(exc).__name__}"
    finally:
        await client.close()
    return None


def local_target() -> Iterator[Target]:
    """The machine's server, a fresh stream and prefix; the stream deleted afterwards."""
    why = asyncio.run(_reachable(NATS_URL))
    if why is not None:
        _absent(f"NATS with JetStream at {NATS_URL}", why, "FEEDMUX_TEST_NATS")
    stream, prefix = fresh_names()
    try:
        yield Target(NATS_URL, stream, prefix)
    finally:
        asyncio.run(_delete([NATS_URL], stream))


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Node:
    """One nats-server process of ours."""

    name: str
    port: int
    store: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default=Path())

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = self.store.parent / f"{self.name}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: asyncio.run(_reachable(self.url)) is None or self.proc.poll() is not None,
                 30, f"nats-server {self.name} to serve JetStream")  # fmt: skip
        assert self.proc.poll() is None, self.log.read_text()[-2000:]

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _binary() -> str:
    found = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if found is None:
        _absent("the nats-server binary", "not on PATH", "PATH")
        raise AssertionError  # unreachable
    return found


def private_server(tmp: Path) -> Node:
    """A single JetStream server of the test's own (started), to stop and start at will."""
    (port,) = free_ports(1)
    store = tmp / "nats-solo"
    node = Node("solo", port, store, [_binary(), "-a", "127.0.0.1", "-p", str(port), "-js",
                                      "-sd", str(store), "-n", "solo"])  # fmt: skip
    node.start()
    return node


def cluster(tmp: Path, size: int = 3) -> list[Node]:
    """A JetStream cluster of ``size`` servers on loopback (started, every one serving)."""
    ports = free_ports(2 * size)
    client_ports, routes = ports[:size], ports[size:]
    route_urls = ",".join(f"nats://127.0.0.1:{p}" for p in routes)
    nodes = []
    for i in range(size):
        name = f"n{i}"
        store = tmp / f"nats-{name}"
        args = [_binary(), "-a", "127.0.0.1", "-p", str(client_ports[i]), "-js", "-sd",
                str(store), "-n", name, "--cluster_name", "feedmux-test", "--cluster",
                f"nats://127.0.0.1:{routes[i]}", "--routes", route_urls]  # fmt: skip
        nodes.append(Node(name, client_ports[i], store, args))
    procs = []
    for node in nodes:  # all at once: JetStream waits for its peers to form a meta group
        node.log = tmp / f"{node.name}.log"
        with node.log.open("ab") as out:
            node.proc = subprocess.Popen(node.args, stdout=out, stderr=subprocess.STDOUT)
        procs.append(node.proc)
    for node in nodes:
        wait_for(lambda n=node: asyncio.run(_reachable(n.url)) is None, 60,
                 f"cluster node {node.name} to serve JetStream")  # fmt: skip
    return nodes


def stop_all(nodes: list[Node]) -> None:
    for node in nodes:
        node.stop()
