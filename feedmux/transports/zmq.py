"""ZeroMQ socket constructors with the options feedmux relies on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from feedmux.errors import ConfigError

Sock = zmq.Socket[bytes]
Ctx = zmq.Context[Sock]

BUS_HWM = 10_000  # messages (each a batch of ticks) queued per shard before backpressure
PUB_HWM = 50_000  # messages per slow subscriber before PUB drops for that subscriber


def context() -> Ctx:
    return zmq.Context()


@dataclass(frozen=True)
class CurveKeys:
    """One side's CURVE key pair (z85) and, for a client, the server's public key."""

    public: bytes
    secret: bytes
    server: bytes = b""


def load_keys(secret_file: str | Path) -> CurveKeys:
    """A key pair from a ``feedmux keygen`` secret file."""
    try:
        public, secret = zmq.auth.load_certificate(secret_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read CURVE key: {exc}") from None
    if secret is None:
        raise ConfigError(f"{secret_file} holds no secret key: give the .key_secret file")
    return CurveKeys(public, secret)


def load_keys_public(public_file: str | Path) -> bytes:
    """The public key in a ``feedmux keygen`` .key (or .key_secret) file."""
    try:
        return zmq.auth.load_certificate(public_file)[0]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read CURVE key: {exc}") from None


def ephemeral_keys(server: bytes) -> CurveKeys:
    """A throwaway client key pair: enough when the server lets any client in."""
    public, secret = zmq.curve_keypair()
    return CurveKeys(public, secret, server)


def curve_server(ctx: Ctx, clients_dir: str) -> ThreadAuthenticator:
    """Authenticate CURVE clients of ``ctx``'s sockets: those whose public key is in
    ``clients_dir`` ("": any client that knows the server's key, encryption only)."""
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=clients_dir or zmq.auth.CURVE_ALLOW_ANY)
    return auth


def _secure(sock: Sock, keys: CurveKeys | None, *, server: bool) -> None:
    if keys is None:
        return
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    if server:
        sock.curve_server = True
    else:
        sock.curve_serverkey = keys.server


def push(ctx: Ctx, endpoint: str, linger_ms: int = -1, *, immediate: bool = True) -> Sock:
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, BUS_HWM)
    sock.setsockopt(zmq.LINGER, linger_ms)  # -1: on close, deliver everything queued
    # immediate: queue only to a live peer, so what was meant for a dead shard stays in the
    # delivery ledger (and is resent) instead of going to a pipe nobody will read. Without
    # it, messages wait for a peer that is not there yet (a shard's acks before the receiver).
    sock.setsockopt(zmq.IMMEDIATE, int(immediate))
    sock.connect(endpoint)
    return sock


def _bind(sock: Sock, endpoint: str) -> None:
    """Bind, or a ConfigError naming the endpoint (a port in use is a start-up error)."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise ConfigError(f"cannot listen on {endpoint}: {exc.strerror} (another program, or "
                          "another run, uses it: pick another --public/--internal "
                          "port)") from exc  # fmt: skip


def pull(ctx: Ctx, endpoint: str) -> Sock:
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, BUS_HWM)
    _bind(sock, endpoint)
    return sock


def pub(ctx: Ctx, endpoint: str, hwm: int = PUB_HWM, curve: CurveKeys | None = None) -> Sock:
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.LINGER, 0)
    _secure(sock, curve, server=True)
    _bind(sock, endpoint)
    return sock


def sub(ctx: Ctx, endpoints: list[str], topics: list[bytes], hwm: int = PUB_HWM,
        curve: CurveKeys | None = None) -> Sock:  # fmt: skip
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.LINGER, 0)
    _secure(sock, curve, server=False)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    for endpoint in endpoints:
        sock.connect(endpoint)
    return sock


def router(ctx: Ctx, endpoint: str, curve: CurveKeys | None = None) -> Sock:
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    _secure(sock, curve, server=True)
    _bind(sock, endpoint)
    return sock


def req(ctx: Ctx, endpoint: str, curve: CurveKeys | None = None) -> Sock:
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    _secure(sock, curve, server=False)
    sock.connect(endpoint)
    return sock
