"""Finding processes by name under a /proc tree: one read of `comm` per process.

`cmdline` and `stat` are read only for the few processes whose name matched, so a scan
of a busy host costs one small read per pid.

Reading another process's `cmdline` takes its memory lock (access_remote_vm): a process
stuck in a page fault on a hung mount holds it, and the read sleeps in the kernel until
the mount answers, maybe never. So `cmdline` runs on a DeadlineWorker: a stuck read
costs one snapshot CMDLINE_DEADLINE_S, is logged once, and that pid is skipped (not
stacked on) until the read returns. `comm` and `stat` take no such lock.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from collectors.base import DeadlineWorker, Stalled, read_bytes

log = logging.getLogger(__name__)

# The kernel keeps 15 characters of a process name (TASK_COMM_LEN - 1):
# systemd-networkd shows up as "systemd-network".
COMM_LEN = 15
# A cmdline read answers in microseconds unless the process's memory lock is held; a few
# DHCP clients a snapshot, each waited on at most this, fit the snapshot's own deadline.
CMDLINE_DEADLINE_S = 1.0


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    comm: str


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # the process exited while we looked, or it is not ours to read
        return None


def scan(proc: Path) -> list[Proc]:
    """Every process in the tree with its name; raises when the tree itself is unreadable."""
    out: list[Proc] = []
    top = str(proc)
    for entry in os.scandir(top):
        if not entry.name.isdigit():
            continue
        data = _read(f"{top}/{entry.name}/comm")
        if data is not None:
            out.append(Proc(int(entry.name), data.decode("utf-8", "replace").rstrip("\n")))
    out.sort(key=lambda p: p.pid)
    return out


def named(procs: list[Proc], names: tuple[str, ...]) -> list[Proc]:
    """The processes whose name is one of `names` (compared as the kernel truncates them)."""
    wanted = {n[:COMM_LEN] for n in names}
    return [p for p in procs if p.comm in wanted]


class _Cmdlines:
    """The worker that reads cmdline files, and how many reads it gave up on.

    One per process: a stuck read's pid must stay known across snapshots, or each
    snapshot would stack a new thread on it. The lock keeps DeadlineWorker (which is not
    thread-safe) to one caller; snapshots run one at a time anyway (facts.Snapshots).
    """

    def __init__(self) -> None:
        self.worker = DeadlineWorker("cmdline", CMDLINE_DEADLINE_S, log)
        self.stalls = 0  # reads abandoned or skipped because one was stuck
        self.lock = threading.Lock()


CMDLINES = _Cmdlines()


def cmdline(proc: Path, pid: int) -> str:
    """The command line with NULs as spaces; "" for a kernel thread or a vanished process.
    Raises Stalled when the read did not answer in time, or one of the same pid is stuck."""
    path = f"{proc}/{pid}/cmdline"
    with CMDLINES.lock:
        try:
            data = CMDLINES.worker.call(path, read_bytes, path)
        except Stalled:
            CMDLINES.stalls += 1  # the worker logged the pid once, when it gave up on it
            raise
        except OSError:  # the process exited while we looked, or it is not ours to read
            return ""
    return data.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace") if data else ""


def ppid(proc: Path, pid: int) -> int | None:
    data = _read(f"{proc}/{pid}/stat")
    if not data:
        return None
    # comm may hold spaces and parentheses: the fields that follow start after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None
