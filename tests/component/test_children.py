"""Worker processes started by the supervisor: Ctrl-C (the whole process group gets SIGINT)
is the supervisor's to act on, even while a worker is still starting."""

from __future__ import annotations

import os
import signal
import threading
import time
from multiprocessing.connection import Connection as Pipe

from feedmux.ops.children import Child


def _ready_worker(ready: Pipe) -> int:
    ready.send("up")
    time.sleep(0.5)  # SIGINTs keep arriving meanwhile
    return 0


def test_sigint_while_a_worker_starts_does_not_kill_it() -> None:
    child = Child("sigint-probe", _ready_worker, ())
    stop = threading.Event()

    def interrupt() -> None:  # Ctrl-C repeatedly, from the moment the process exists
        while not stop.is_set():
            process = child.process
            if process is not None and process.pid is not None:
                try:
                    os.kill(process.pid, signal.SIGINT)
                except ProcessLookupError:
                    return
            time.sleep(0.001)

    thread = threading.Thread(target=interrupt)
    thread.start()
    try:
        assert child.start() == "up"  # it started, and said so
        assert child.process is not None
        child.process.join(10)
        assert child.process.exitcode == 0  # and the SIGINTs after that did not end it either
    finally:
        stop.set()
        thread.join()


def _stopping_worker(ready: Pipe) -> int:
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())  # as StopFlag does
    ready.send("up")
    stopped.wait(10)  # the orderly stop; SIGTERMs keep arriving, as when a whole group gets it
    return 0


def test_a_sigterm_after_a_worker_stopped_in_order_does_not_kill_it() -> None:
    """`timeout`, systemd and `kill -TERM -PGID` signal every process of the run, and the
    supervisor then asks each shard too: a SIGTERM while the finished worker's interpreter
    shut down (its handler gone) ended it by the signal, and the run exited 1."""
    child = Child("sigterm-probe", _stopping_worker, ())
    assert child.start() == "up"
    process = child.process
    assert process is not None and process.pid is not None
    while process.exitcode is None:
        try:
            os.kill(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            break
        time.sleep(0.0002)
    process.join(10)
    assert process.exitcode == 0
