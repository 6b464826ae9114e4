"""NATS for the tests: the machine's server (127.0.0.1:4222, skipped with a reason when absent,
failed under FEEDMUX_REQUIRE_SERVICES=1), and private servers or a JetStream cluster started
from the ``nats-server`` binary on free loopback ports, each with its own store directory.

Each test takes its own stream name and subject prefix, deleted afterwards. Readers of what a
stream holds (``read_stream``, ``stream_info``, a node's own replica: ``Node.replica``) and
what a cluster test does to it (``Node.pause``, ``Node.kill``, ``step_down``) are here too."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import msgspec
import nats
import nats.errors
from nats.js import api

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


def serving(url: str) -> bool:
    """Whether the server at ``url`` answers, with JetStream."""
    return asyncio.run(_reachable(url)) is None


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


class ReplicaState(msgspec.Struct):
    """What one server's copy of a stream holds (its monitoring endpoint's ``/jsz``)."""

    messages: int
    last_seq: int


class _StreamDetail(msgspec.Struct):
    name: str
    state: ReplicaState


class _Account(msgspec.Struct):
    stream_detail: list[_StreamDetail] = []


class _Jsz(msgspec.Struct):
    account_details: list[_Account] = []


@dataclass
class Node:
    """One nats-server process of ours."""

    name: str
    port: int
    store: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default=Path())
    monitor_port: int = 0  # its HTTP monitoring (0: none)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def pause(self) -> None:
        """SIGSTOP: a server that hangs (its connections stay open, nothing answers)."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def replica(self, stream: str) -> ReplicaState | None:
        """This server's own copy of ``stream`` (None: it holds none, or does not answer)."""
        assert self.monitor_port, "started without monitoring"
        url = f"http://127.0.0.1:{self.monitor_port}/jsz?streams=true"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                jsz = msgspec.json.decode(reply.read(), type=_Jsz)
        except OSError:
            return None
        found = [d.state for a in jsz.account_details for d in a.stream_detail if d.name == stream]
        return found[0] if found else None

    def start(self) -> None:
        self.log = self.store.parent / f"{self.name}.log"
        with self.log.open("ab") as out:
            proc = self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: serving(self.url) or proc.poll() is not None, 30,
                 f"nats-server {self.name} to serve JetStream")  # fmt: skip
        assert proc.poll() is None, self.log.read_text()[-2000:]

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()  # a paused server would not hear SIGTERM
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


def private_server(tmp: Path, *, start: bool = True) -> Node:
    """A single JetStream server of the test's own (started, unless not ``start``), to stop
    and start at will, on the same port and store."""
    port, monitor = free_ports(2)
    store = tmp / "nats-solo"
    node = Node("solo", port, store, [_binary(), "-a", "127.0.0.1", "-p", str(port), "-js",
                                      "-sd", str(store), "-n", "solo", "-m", str(monitor)],
                monitor_port=monitor)  # fmt: skip
    if start:
        node.start()
    return node


def cluster(tmp: Path, size: int = 3) -> list[Node]:
    """A JetStream cluster of ``size`` servers on loopback (started, every one serving)."""
    ports = free_ports(3 * size)
    client_ports, routes, monitors = ports[:size], ports[size : 2 * size], ports[2 * size :]
    route_urls = ",".join(f"nats://127.0.0.1:{p}" for p in routes)
    nodes = []
    for i in range(size):
        name = f"n{i}"
        store = tmp / f"nats-{name}"
        args = [_binary(), "-a", "127.0.0.1", "-p", str(client_ports[i]), "-js", "-sd",
                str(store), "-n", name, "--cluster_name", "feedmux-test", "--cluster",
                f"nats://127.0.0.1:{routes[i]}", "--routes", route_urls, "-m",
                str(monitors[i])]  # fmt: skip
        nodes.append(Node(name, client_ports[i], store, args, monitor_port=monitors[i]))
    procs = []
    for node in nodes:  # all at once: JetStream waits for its peers to form a meta group
        node.log = tmp / f"{node.name}.log"
        with node.log.open("ab") as out:
            node.proc = subprocess.Popen(node.args, stdout=out, stderr=subprocess.STDOUT)
        procs.append(node.proc)
    for node in nodes:
        wait_for(partial(serving, node.url), 60, f"cluster node {node.name} to serve JetStream")
    return nodes


def stop_all(nodes: list[Node]) -> None:
    for node in nodes:
        node.stop()


class Stored(NamedTuple):
    """A message as a stream holds it."""

    subject: str
    msg_id: str  # its Nats-Msg-Id
    data: bytes
    seq: int  # the stream's sequence


async def _read(url: str, subject: str) -> list[Stored]:
    client = await nats.connect(url, error_cb=_quiet)
    try:
        for attempt in range(6):  # a cluster that just lost its leader may not answer yet
            try:
                sub = await client.jetstream().subscribe(
                    subject, ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL
                )
                break
            except nats.errors.TimeoutError:
                if attempt == 5:
                    raise
        info = await sub.consumer_info()  # delivery began already: count what went, too
        went = info.delivered.consumer_seq if info.delivered is not None else 0
        out = []
        for _ in range((info.num_pending or 0) + (went or 0)):
            msg = await sub.next_msg(timeout=10)
            out.append(Stored(msg.subject, (msg.headers or {}).get("Nats-Msg-Id", ""), msg.data,
                              msg.metadata.sequence.stream))  # fmt: skip
        return out
    finally:
        await client.close()


def read_stream(url: str, subject: str) -> list[Stored]:
    """Every message the stream holds on ``subject`` (wildcards allowed), in order, read by an
    ordered consumer on the server at ``url`` as a consumer without feedmux would."""
    return asyncio.run(_read(url, subject))


async def _stream_info(url: str, stream: str) -> api.StreamInfo:
    client = await nats.connect(url, error_cb=_quiet)
    try:
        return await client.jetstream().stream_info(stream)
    finally:
        await client.close()


def stream_info(url: str, stream: str) -> api.StreamInfo:
    """The stream as its leader sees it (its state, its cluster's leader and replicas)."""
    return asyncio.run(_stream_info(url, stream))


def stream_leader(url: str, stream: str) -> str:
    """The name of the server that leads ``stream`` ("" while it elects one)."""
    cluster = stream_info(url, stream).cluster
    return (cluster.leader or "") if cluster is not None else ""


def replicas_in_sync(url: str, stream: str, size: int) -> bool:
    """A leader and ``size - 1`` other replicas, each current (none behind, none offline)."""
    try:
        cluster = stream_info(url, stream).cluster
    except (nats.errors.Error, TimeoutError):  # electing a leader: ask again
        return False
    if cluster is None or not cluster.leader:
        return False
    replicas = cluster.replicas or []
    return len(replicas) == size - 1 and all(
        r.current and not r.offline and not r.lag for r in replicas
    )


class _Done(msgspec.Struct):
    """JetStream's answer to an API request that only succeeds or not."""

    success: bool = False


def step_down(url: str, stream: str) -> None:
    """Ask the stream's leader to hand over to another replica (a leader election)."""

    async def ask() -> None:
        client = await nats.connect(url, error_cb=_quiet)
        try:
            reply = await client.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", 5)
            assert msgspec.json.decode(reply.data, type=_Done).success, reply.data
        finally:
            await client.close()

    asyncio.run(ask())
