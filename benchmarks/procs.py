"""A client's processes from /proc: its process tree, each process's role and CPU seconds.

Only what Linux shows of any process is used (no feedmux internals): the tree from each
process's parent pid, the role from its command line (feedmux's workers set process titles
such as ``feedmux-receiver`` and ``feedmux-shard-3``; the ``feedmux run`` process itself is the
supervisor), CPU as ``utime + stime`` of ``/proc/<pid>/stat`` (every thread's, those that ended
included; 10 ms resolution per process), resident memory from ``/proc/<pid>/statm``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PROC = Path("/proc")
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds of every thread of ``pid``; None once it has gone."""
    fields = _stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) * TICK_S  # utime, stime (fields 14 and 15)


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` now (``/proc/<pid>/statm``); None once it has gone."""
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return None


def descendants(root: int) -> list[int]:
    """``root`` and every process under it, parents first."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo += sorted(children.get(pid, []))
    return found


def role(pid: int, root: int, root_role: str) -> str:
    """What a process of the tree is: ``root_role`` for the root, its process title for a
    feedmux worker, "resource-tracker" for multiprocessing's helper, else its command."""
    if pid == root:
        return root_role
    try:
        words = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").split()
    except OSError:
        return f"pid-{pid}"
    text = b" ".join(words).decode(errors="replace")
    if "resource_tracker" in text:
        return "resource-tracker"
    return text.split()[0] if text else f"pid-{pid}"


def sample(root: int, root_role: str) -> dict[str, float]:
    """CPU seconds so far by role, for ``root``'s whole tree (roles are unique per tree; a
    repeated one gets its pid appended)."""
    seconds = {name: cpu_s(pid) for name, pid in pids_by_role(root, root_role).items()}
    return {name: s for name, s in seconds.items() if s is not None}  # None: it has gone


def pids_by_role(root: int, root_role: str) -> dict[str, int]:
    """The pid of each role of ``root``'s tree (for a profiler)."""
    out: dict[str, int] = {}
    for pid in descendants(root):
        name = role(pid, root, root_role)
        out[name if name not in out else f"{name}-{pid}"] = pid
    return out


def listener(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` (any address), if this user may see
    it: a local server's CPU (e.g. nats-server's) can then be read like a client's."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()  # local address "IP:PORT" in hex, state 0A is LISTEN
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(f"socket:[{fields[9]}]")
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or not inodes:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):  # closed meanwhile
                if os.readlink(fd) in inodes:
                    return int(entry.name)
    return None


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent busy since boot (``/proc/stat``: all
    but idle and iowait), to see what other processes took over a window."""
    fields = (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
    jiffies = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(jiffies) - jiffies[3] - jiffies[4]) * TICK_S


def own_tree_s() -> float:
    """CPU seconds of this process and of every descendant it (or they) waited for: subtracted
    from ``machine_busy_s`` over a run, what the rest of the machine took."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
