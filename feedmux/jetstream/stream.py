"""The stream feedmux publishes to: created when missing, checked when it exists.

An existing stream is left as it is when it can hold feedmux's messages: its subjects take
``<prefix>.>``, it keeps messages by limits (a work-queue or interest stream would delete them
once one consumer took them), and it deduplicates (a duplicate window). Different limits or
replicas (another instance may have made it) are reported, not changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext, api

from feedmux.errors import ConfigError, StoreError
from feedmux.jetstream.client import connect
from feedmux.passwords import mask_passwords

STREAM_NAME_IN_USE = 10058  # JetStream's error: made meanwhile, with other settings
MIN_MSG_SIZE = 64 * 1024  # a deep book with its headers stays well under it
DUPLICATE_WINDOW_S = 120.0  # JetStream's default: a retry or a restart within it is one message


@dataclass(frozen=True)
class StreamSpec:
    name: str
    prefix: str
    max_age_s: float = 0.0  # 0: no limit
    max_bytes: int = -1  # -1: no limit
    replicas: int = 1

    @property
    def duplicate_window_s(self) -> float:
        """JetStream's default, or the max age if shorter (it must not be longer)."""
        return min(DUPLICATE_WINDOW_S, self.max_age_s) if self.max_age_s else DUPLICATE_WINDOW_S

    @property
    def subjects(self) -> list[str]:
        return [f"{self.prefix}.>"]

    def config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.name, subjects=self.subjects, retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE, discard=api.DiscardPolicy.OLD,
            max_age=self.max_age_s or None, max_bytes=self.max_bytes,
            num_replicas=self.replicas, duplicate_window=self.duplicate_window_s,
        )  # fmt: skip


def _covers(subjects: list[str], prefix: str) -> bool:
    """Whether a stream's subjects take every feedmux subject under ``prefix``
    (``<prefix>.<family>.<market>.<symbol>``)."""
    shape = [*prefix.split("."), "*", "*", "*"]  # "*": any token there
    for pattern in subjects:
        tokens = pattern.split(".")
        for i, token in enumerate(tokens):
            if token == ">":
                if i < len(shape):
                    return True
                break
            if i >= len(shape) or (token != "*" and token != shape[i]):
                break
        else:
            if len(tokens) == len(shape):
                return True
    return False


def _limit(value: float, unit: str) -> str:
    return "none" if value <= 0 else f"{value:,g} {unit}"


def problems(spec: StreamSpec, found: api.StreamConfig) -> tuple[list[str], list[str]]:
    """What makes ``found`` unusable for ``spec`` (errors), and where it differs harmlessly
    from what feedmux would have made (notes)."""
    errors, notes = [], []
    if not _covers(found.subjects or [], spec.prefix):
        errors.append(f"its subjects {found.subjects} do not take {spec.prefix}.>")
    if found.retention not in (None, api.RetentionPolicy.LIMITS):
        errors.append(f"it deletes messages once consumed (retention {found.retention}), so a "
                      "late consumer could not read them")  # fmt: skip
    if found.duplicate_window is not None and found.duplicate_window <= 0:
        errors.append("it keeps no duplicate window, so a retried message would be stored twice")
    if found.sealed:
        errors.append("it is sealed")
    if found.no_ack:
        errors.append("it acks no publish (no_ack), and feedmux waits for JetStream's acks")
    if found.max_msg_size is not None and 0 < found.max_msg_size < MIN_MSG_SIZE:
        errors.append(f"it takes messages of at most {found.max_msg_size} bytes (feedmux needs "
                      f"{MIN_MSG_SIZE:,} for a deep book): bigger ones would be refused for "
                      "ever")  # fmt: skip
    want = spec.config()
    copies = found.num_replicas or 1
    if copies < spec.replicas:  # the loss of a server would lose what it alone holds
        errors.append(f"it keeps {copies} cop{'y' if copies == 1 else 'ies'} where "
                      f"--nats-replicas asks {spec.replicas} (raise it with `nats stream edit "
                      f"{spec.name} --replicas {spec.replicas}`, or ask fewer)")  # fmt: skip
    if copies > spec.replicas:
        notes.append(f"replicas {copies} (asked {spec.replicas})")
    age, asked_age = found.max_age or 0.0, want.max_age or 0.0
    if age != asked_age:
        notes.append(f"max age {_limit(age, 's')} (asked {_limit(asked_age, 's')})")
    size, asked_size = found.max_bytes or -1, want.max_bytes or -1
    if size != asked_size:
        notes.append(f"max bytes {_limit(size, 'bytes')} (asked {_limit(asked_size, 'bytes')})")
    per_subject = found.max_msgs_per_subject or -1
    if per_subject > 0:
        notes.append(f"keeps {per_subject} message{'s' if per_subject > 1 else ''} per subject: "
                     "a consumer finds no history before that")  # fmt: skip
    window = found.duplicate_window or 0.0
    if 0 < window < spec.duplicate_window_s:
        notes.append(f"duplicate window {window:g} s (feedmux's {spec.duplicate_window_s:g} s): "
                     "a retry after that is stored twice")  # fmt: skip
    if found.storage != api.StorageType.FILE:
        notes.append(f"storage {found.storage}: a server restart loses it")
    if found.discard == api.DiscardPolicy.NEW:
        notes.append("discard new: once full, publishes fail and feedmux waits, retrying")
    return errors, notes


async def ensure(js: JetStreamContext, spec: StreamSpec) -> tuple[str, list[str]]:
    """Create the stream or check the one there: ``("created" | "found", notes)``. Raises
    ConfigError when it exists but cannot serve, StoreError when JetStream does not answer."""
    try:
        info = await js.stream_info(spec.name)
    except nats.js.errors.NotFoundError:
        info = None
    except (nats.errors.Error, TimeoutError) as exc:
        raise StoreError(f"JetStream does not answer ({exc or type(exc).__name__}); is the "
                         "server started with JetStream (-js)?") from exc  # fmt: skip
    if info is None:
        try:
            await js.add_stream(spec.config())
            return "created", []
        except nats.js.errors.APIError as exc:  # the server refused these settings
            if exc.err_code != STREAM_NAME_IN_USE:
                raise ConfigError(f"cannot create NATS stream {spec.name}: "
                                  f"{exc.description}") from exc  # fmt: skip
            info = await js.stream_info(spec.name)  # another instance made it just now
        except (nats.errors.Error, TimeoutError) as exc:
            raise StoreError(f"cannot create NATS stream {spec.name}: "
                             f"{exc or type(exc).__name__}") from exc  # fmt: skip
    errors, notes = problems(spec, info.config)
    if errors:
        raise ConfigError(f"NATS stream {spec.name} exists but cannot take feedmux's messages: "
                          f"{'; '.join(errors)}; pass another --nats-stream, or fix or delete "
                          "that stream")  # fmt: skip
    return "found", notes


def prepare(urls: list[str], spec: StreamSpec, say: Callable[[str], None]) -> None:
    """Before the shards start: the stream exists and can take feedmux's messages, or a clear
    error (StoreError: no server; ConfigError: a stream that cannot serve)."""
    shown = mask_passwords(",".join(urls))

    async def check() -> tuple[str, list[str]]:
        client = await connect(urls, "feedmux-run", shown=shown)
        try:
            return await ensure(client.jetstream(), spec)
        finally:
            await client.close()

    done, notes = asyncio.run(check())
    limits = (f"max age {spec.max_age_s:g} s" if spec.max_age_s else "no max age") + (
        f", max {spec.max_bytes:,} bytes" if spec.max_bytes >= 0 else ""
    )
    if done == "created":
        say(f"NATS: created stream {spec.name} ({spec.prefix}.>, file, {limits}, "
            f"{spec.replicas} replica{'s' if spec.replicas > 1 else ''}) at {shown}")  # fmt: skip
    else:
        kept = f"; kept as it is: {', '.join(notes)}" if notes else ""
        say(f"NATS: publishing to stream {spec.name} ({spec.prefix}.>) at {shown}{kept}")
