"""Top processes by CPU and by memory, from /proc/<pid>/stat alone.

The costliest collector (one kernel-generated file per process), so it reads only
`stat`, with raw os calls, and on the live system keeps each file open between cycles:
a `pread` on an open /proc/<pid>/stat costs about a third of open + read + close.
An open stat file stays bound to the process it was opened for: once that process is
gone it reads ESRCH, even if its pid was reused, so the kept descriptor never mixes up
two processes.
"""

from __future__ import annotations

import heapq
import os
import resource
import weakref

from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch

USER_HZ = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# 52 fields of at most 20 digits plus a 64-byte comm fit well inside this.
_READ = 4096
# Fields after the ')' that ends comm: 0 = state (field 3 in proc(5)).
_UTIME, _STIME, _START, _RSS = 11, 12, 19, 21


def _fd_budget() -> int:
    """How many stat files to keep open: a quarter of the soft fd limit, at most 4096."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(0, min(soft // 4, 4096))


def _close_all(fds: dict[str, int]) -> None:
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()


def _comm(data: bytes) -> str:
    head = data[: data.rindex(b")")]
    return head[head.index(b"(") + 1 :].decode("utf-8", "replace")


class ProcessesCollector:
    name = "processes"

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self._top = settings.top_processes
        self._fd_budget = _fd_budget()
        self._fds: dict[str, int] = {}
        self._fds_proc = roots.proc  # the /proc the kept descriptors were opened under
        # pid -> (stat line, starttime, utime + stime, rss pages); starttime tells a reused
        # pid from the old process.
        self._prev: dict[str, tuple[bytes, bytes, int, int]] = {}
        self._prev_now: float | None = None
        self._finalizer = weakref.finalize(self, _close_all, self._fds)

    def close(self) -> None:
        """Close the kept stat files; later cycles still work, opening each file anew."""
        self._finalizer()
        self._fd_budget = 0

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        prev, prev_now = self._prev, self._prev_now
        interval = now - prev_now if prev_now is not None else 0.0
        cur: dict[str, tuple[bytes, bytes, int, int]] = {}
        # (ticks this interval, pid, rss pages, raw stat) per process
        rows: list[tuple[int | None, str, int, bytes]] = []
        if self.roots.proc != self._fds_proc:
            _close_all(self._fds)
            self._fds_proc = self.roots.proc
        # Only the kernel's own /proc regenerates a file on pread; a fixture file is read anew.
        budget = self._fd_budget if self.roots.is_live else 0
        fds, proc = self._fds, str(self.roots.proc)
        pread, open_, read, close, rdonly = os.pread, os.open, os.read, os.close, os.O_RDONLY
        for pid in os.listdir(proc):
            if not pid.isdigit():
                continue
            # Inlined reading: a method call per process is a measurable share of the cycle.
            fd = fds.get(pid)
            data = None
            if fd is not None:
                try:
                    data = pread(fd, _READ, 0)
                except OSError:  # ESRCH: that process is gone (the pid may belong to a new one)
                    del fds[pid]
                    close(fd)
            if data is None:
                try:
                    fd = open_(f"{proc}/{pid}/stat", rdonly)
                except OSError:  # exited since the listing
                    continue
                try:
                    data = read(fd, _READ)
                except OSError:
                    data = b""
                if data and len(fds) < budget:
                    fds[pid] = fd
                else:
                    close(fd)
            if not data:
                continue
            before = prev.get(pid)
            if before is not None and before[0] == data:
                # Most processes sleep through a cycle and their stat line does not change.
                cur[pid] = before
                rows.append((0 if interval > 0 else None, pid, before[3], data))
                continue
            # comm may hold spaces and ')': the fields start after the last ')'.
            f = data[data.rindex(b")") + 1 :].split(None, 22)
            ticks = int(f[_UTIME]) + int(f[_STIME])
            start, rss = f[_START], int(f[_RSS])
            cur[pid] = (data, start, ticks, rss)
            if interval <= 0:
                used = None
            elif before is None or before[1] != start:
                used = ticks  # started since the last cycle: all its time is in this interval
            elif ticks >= before[2]:
                used = ticks - before[2]
            else:
                used = None
            rows.append((used, pid, rss, data))

        for pid in [p for p in self._fds if p not in cur]:
            os.close(self._fds.pop(pid))
        self._prev, self._prev_now = cur, now  # pids that disappeared are forgotten here

        def row(r: tuple[int | None, str, int, bytes]) -> dict[str, object]:
            used = r[0]
            pct = None if used is None else used * 100.0 / USER_HZ / interval
            return {"pid": int(r[1]), "name": _comm(r[3]), "cpu_percent": pct, "rss_bytes": r[2] * PAGE_SIZE}

        # Idle processes are no evidence of CPU use: by_cpu lists only those that ran.
        busy = [r for r in rows if r[0]]
        by_cpu = heapq.nlargest(self._top, busy, key=lambda r: r[0])
        by_mem = heapq.nlargest(self._top, rows, key=lambda r: r[2])
        batch.processes = {"by_cpu": [row(r) for r in by_cpu], "by_memory": [row(r) for r in by_mem]}
        return batch
