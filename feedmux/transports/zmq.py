"""ZeroMQ socket constructors with the options feedmux relies on."""

from __future__ import annotations

import zmq

Sock = zmq.Socket[bytes]
Ctx = zmq.Context[Sock]

BUS_HWM = 10_000  # messages (each a batch of ticks) queued per shard before backpressure
PUB_HWM = 50_000  # messages per slow subscriber before PUB drops for that subscriber


def context() -> Ctx:
    return zmq.Context()


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


def pull(ctx: Ctx, endpoint: str) -> Sock:
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, BUS_HWM)
    sock.bind(endpoint)
    return sock


def pub(ctx: Ctx, endpoint: str, hwm: int = PUB_HWM) -> Sock:
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    return sock


def sub(ctx: Ctx, endpoints: list[str], topics: list[bytes], hwm: int = PUB_HWM) -> Sock:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.LINGER, 0)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    for endpoint in endpoints:
        sock.connect(endpoint)
    return sock


def router(ctx: Ctx, endpoint: str) -> Sock:
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    return sock


def req(ctx: Ctx, endpoint: str) -> Sock:
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock
