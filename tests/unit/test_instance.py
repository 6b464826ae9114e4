"""feedmux.ops.instance: one run per run/data directory, held by an OS lock that dies with its
holders (a pickled Lock keeps it held in a spawned worker)."""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

import pytest

from feedmux.errors import NotRunningError
from feedmux.ops import instance
from tests.conftest import scaled


def _dirs(tmp_path: Path, run: str = "run") -> tuple[Path, Path]:
    run_dir, data_dir = tmp_path / run, tmp_path / "data"
    run_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(exist_ok=True)
    return run_dir, data_dir


def test_nobody_runs_in_a_fresh_or_released_directory(tmp_path: Path) -> None:
    run_dir, data_dir = _dirs(tmp_path)
    assert instance.running(run_dir) is None
    assert instance.running(tmp_path / "missing") is None
    with pytest.raises(NotRunningError, match="no feedmux run in"):
        instance.require(run_dir)
    instance.acquire(run_dir, data_dir).release()
    assert instance.running(run_dir) is None  # the lock file stays; the lock does not


def test_a_second_instance_is_refused_naming_the_first(tmp_path: Path) -> None:
    run_dir, data_dir = _dirs(tmp_path)
    lock = instance.acquire(run_dir, data_dir)
    try:
        holder = instance.require(run_dir)
        assert holder.pid == os.getpid() and holder.supervisor_alive()
        with pytest.raises(instance.InstanceRunningError,
                           match=rf"pid {os.getpid()}, since .*run directory"):  # fmt: skip
            instance.acquire(run_dir, data_dir, wait_s=0.05)
        other_run, _ = _dirs(tmp_path, "other-run")  # the same data dir, another run dir
        with pytest.raises(instance.InstanceRunningError, match="data directory"):
            instance.acquire(other_run, data_dir, wait_s=0.05)
        assert instance.running(other_run) is None  # the refused one left nothing held
    finally:
        lock.release()


def _hold(lock: instance.Lock, pipe: Pipe) -> None:
    pipe.send("holding")
    pipe.recv()  # until the test lets go


def test_a_worker_given_the_lock_keeps_the_directory_busy_after_the_supervisor(
    tmp_path: Path,
) -> None:
    run_dir, data_dir = _dirs(tmp_path)
    lock = instance.acquire(run_dir, data_dir)
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    worker = spawn.Process(target=_hold, args=(lock, theirs))
    worker.start()
    try:
        assert ours.poll(scaled(30)) and ours.recv() == "holding"
        lock.release()  # the supervisor is gone; its worker is not
        holder = instance.require(run_dir)
        assert holder.pid == os.getpid()
        with pytest.raises(instance.InstanceRunningError):
            instance.acquire(run_dir, data_dir, wait_s=0.05)
        ours.send("go")
        worker.join(scaled(10))
        assert instance.running(run_dir) is None  # gone with its last holder
        instance.acquire(run_dir, data_dir).release()
    finally:
        if worker.is_alive():
            worker.kill()
            worker.join()


def test_two_runs_writing_one_sqlite_store_directory_are_refused(tmp_path: Path) -> None:
    store = tmp_path / "shared-store"
    store.mkdir()
    first_run, first_data = _dirs(tmp_path / "first")
    second_run, second_data = _dirs(tmp_path / "second")
    lock = instance.acquire(first_run, first_data, [store, first_data])  # a dir twice: fine
    try:
        with pytest.raises(instance.InstanceRunningError, match="store directory"):
            instance.acquire(second_run, second_data, [store], wait_s=0.05)
    finally:
        lock.release()
