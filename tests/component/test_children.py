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
