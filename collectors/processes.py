"""Top processes by CPU and by memory, from /proc/<pid>/stat.

The costliest collector (kernel-generated files per process), so it reads with raw os
calls, and on the live system keeps each file open between cycles: a `pread` on an
open /proc/<pid>/stat costs about a third of open + read + close. An open file stays
bound to the process it was opened for: once that process is gone it reads ESRCH, even
if its pid was reused, so a kept descriptor never mixes up two processes.

The values always come from stat. /proc/<pid>/schedstat only decides whether stat
needs reading: for a single-threaded process it holds the run time of the whole
process in nanoseconds, and costs a third of stat to generate, so an unchanged
schedstat proves the process has not run and its stat ticks are unchanged. It is no
substitute for stat: it counts the leader thread only (a threaded process would show a
fraction of its CPU), and statm's resident pages are an exact sum on 6.x kernels where
stat's rss is the per-CPU counters' cheap reading. Reclaim can shrink a sleeping
process's RSS, so each skipped process still has its stat read once in REFRESH_CYCLES.

Neither stat nor schedstat takes the process's memory lock (fs/proc/array.c reads the
mm's counters without it), so a process stuck in a page fault on a hung mount does not
block them. /proc/<pid>/cmdline does (access_remote_vm), and it is read only to name a
top process whose 15-character comm the kernel truncated (as psutil's name() does), once
per process, on a DeadlineWorker: a stuck read costs one cycle CMDLINE_DEADLINE_S, then
that pid keeps its comm until the read returns.
"""

from __future__ import annotations

import logging
import operator
import os
import resource
import weakref

from collectors.apps import OTHER, AppGroups
from collectors.base import DeadlineWorker, Parts, Stalled, read_bytes
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch, Sample

log = logging.getLogger(__name__)

USER_HZ = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# 52 fields of at most 20 digits plus a 64-byte comm fit well inside this.
_READ = 4096
_SCHED_READ = 128  # three numbers of at most 20 digits
# Fields after the ')' that ends comm: 0 = state (field 3 in proc(5)).
_UTIME, _STIME, _THREADS, _START, _RSS = 11, 12, 17, 19, 21
# An idle process skipped on its schedstat has its stat line (RSS, which reclaim can
# shrink while it sleeps) read anew at least once in this many cycles, a share each cycle.
REFRESH_CYCLES = 6
# The kernel keeps 15 bytes of a process name (TASK_COMM_LEN - 1).
COMM_LEN = 15
# A cmdline read answers in microseconds unless the process's memory lock is held by a
# page fault on a hung mount; then it may sleep for minutes.
CMDLINE_DEADLINE_S = 0.5
# pid -> (stat line, starttime, utime + stime, rss pages, single-threaded, schedstat,
# its kept descriptor (both None unless single-threaded and kept), the cycle phase
# of its stat refresh, its application group, the offset of the ')' ending comm in the
# stat line the group was named from, or -1 while its full name could not be read)
_Seen = tuple[bytes, bytes, int, int, bool, "bytes | None", "int | None", int, str, int]
# Field 9 of stat (after the ')': 6), PF_KTHREAD in include/linux/sched.h.
_FLAGS = 6
PF_KTHREAD = 0x00200000


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


def _close_all_of(kept: tuple[dict[str, int], ...]) -> None:
    for fds in kept:
        _close_all(fds)


_first = operator.itemgetter(0)


def _comm(data: bytes) -> str:
    head = data[: data.rindex(b")")]
    return head[head.index(b"(") + 1 :].decode("utf-8", "replace")


def full_name(comm: str, cmdline: bytes) -> str:
    """The name the kernel cut to 15 bytes, from argv[0] when it starts with it
    (systemd-network -> systemd-networkd); otherwise comm, since a process may rewrite
    its argv (postgres: checkpointer) and that is no name."""
    exe = cmdline.split(b"\0", 1)[0].rsplit(b"/", 1)[-1].decode("utf-8", "replace")
    return exe if exe.startswith(comm) and len(exe) <= 64 else comm


class ProcessesCollector:
    name = "processes"
    sources = ('/proc/<pid>/stat', '/proc/<pid>/schedstat', '/proc/<pid>/cmdline (with a deadline, for truncated names)')

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self._top = settings.top_processes
        self._fd_budget = _fd_budget()
        self._fds: dict[str, int] = {}
        self._sched_fds: dict[str, int] = {}
        self._cycle = 0
        self._fds_proc = roots.proc  # the /proc the kept descriptors were opened under
        # starttime tells a reused pid from the old process.
        self._prev: dict[str, _Seen] = {}
        self._prev_now: float | None = None
        self._finalizer = weakref.finalize(self, _close_all_of, (self._fds, self._sched_fds))
        self.parts = Parts(log)
        # How cmdline is read: a test gives a reader that blocks, as a hung mount would.
        self.read_cmdline = read_bytes
        self.cmdlines = DeadlineWorker("cmdline", CMDLINE_DEADLINE_S, log)
        # (pid, starttime) -> full name of a process whose comm was cut
        self._names: dict[tuple[str, bytes], str] = {}
        self._groups = AppGroups(settings.app_groups)
        self._top_apps = settings.top_apps
        self._cpus: tuple[str, int] | None = None  # (proc root, CPUs its stat lists)
        self._stalled: set[str] = set()  # pids whose cmdline read was stuck this cycle
        # Resident pages and processes per group over the processes in _prev, kept up to
        # date from the processes that changed: a sum over every process each cycle cost
        # 0.1-0.2 ms with 400 processes, most of which did not run.
        self._app_rss: dict[str, int] = {}
        self._app_count: dict[str, int] = {}

    def close(self) -> None:
        """Close the kept stat files; later cycles still work, opening each file anew."""
        self._finalizer()
        self._fd_budget = 0
        self.cmdlines.close()

    def _name(self, batch: Batch, pid: str, seen: _Seen) -> str:
        comm = _comm(seen[0])
        if len(comm.encode()) < COMM_LEN:
            return comm
        return self._full_name(batch, pid, seen[1], comm) or comm

    def _full_name(self, batch: Batch, pid: str, start: bytes, comm: str) -> str | None:
        """The name of a process whose comm was cut; None while its cmdline read is stuck."""
        key = (pid, start)
        name = self._names.get(key)
        if name is None:
            path = f"{self.roots.proc}/{pid}/cmdline"
            try:
                name = full_name(comm, self.cmdlines.call(pid, self.read_cmdline, path))
            except Stalled:
                if pid not in self._stalled:  # asked for its group and again as a top process
                    self._stalled.add(pid)
                    batch.errors.append("pid/cmdline:Stalled")  # DeadlineWorker logged the pid once
                return None  # not remembered: read again once the stuck read returns
            except OSError:
                name = comm  # exited, or not ours to read
            # Every long-named process is named once for its group; a bound, not an
            # eviction policy: a process keeps its group in _prev, and tops are read anew.
            if len(self._names) >= 4 * self._top + 1024:
                self._names.clear()
            self._names[key] = name
        return name

    def _app(self, batch: Batch, pid: str, data: bytes, cut: int, flags: bytes, start: bytes) -> tuple[str, int]:
        """The group of a process whose comm is new (a new process, or an exec), and the
        `cut` to store with it (-1 to name it again next time, its cmdline being stuck)."""
        comm = data[data.index(b"(") + 1 : cut].decode("utf-8", "replace")
        kthread = bool(int(flags) & PF_KTHREAD)
        if kthread or cut - data.index(b"(") - 1 < COMM_LEN:
            return self._groups.of(comm, kthread), cut
        name = self._full_name(batch, pid, start, comm)
        return self._groups.of(name or comm), cut if name is not None else -1

    def _cpu_count(self) -> int:
        """CPUs the kernel counts in /proc/stat (cpu_usage's 100 %), read once per root."""
        proc = str(self.roots.proc)
        if self._cpus is None or self._cpus[0] != proc:
            n = 0
            try:
                with open(f"{proc}/stat", "rb") as f:
                    for line in f:
                        if line.startswith(b"cpu") and line[3:4].isdigit():
                            n += 1
                        elif n:
                            break
            except OSError:
                pass
            self._cpus = (proc, n or os.cpu_count() or 1)
        return self._cpus[1]

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        self._stalled.clear()
        prev, prev_now = self._prev, self._prev_now
        interval = now - prev_now if prev_now is not None else 0.0
        cur: dict[str, _Seen] = {}
        # Per-process work is kept to dict stores: one tuple per row and a Python key
        # function per row in the ranking were a measurable share with a few hundred pids.
        rss_of: dict[str, int] = {}  # every process, in listing order (ties rank by it)
        used_of: dict[str, int | None] = {}  # only processes whose stat line changed
        busy: list[tuple[int, str]] = []  # (ticks this interval, pid) for those that ran
        if self.roots.proc != self._fds_proc:
            _close_all(self._fds)
            _close_all(self._sched_fds)
            self._fds_proc = self.roots.proc
        # Only the kernel's own /proc regenerates a file on pread; a fixture file is read anew.
        live = self.roots.is_live
        budget = self._fd_budget if live else 0
        phase = self._cycle % REFRESH_CYCLES
        self._cycle += 1
        fds, sfds, proc = self._fds, self._sched_fds, str(self.roots.proc)
        pread, open_, read, close, rdonly = os.pread, os.open, os.read, os.close, os.O_RDONLY
        prev_get, fds_get = prev.get, fds.get
        app_rss, app_count = self._app_rss, self._app_count
        app_rss_get, app_count_get = app_rss.get, app_count.get
        for pid in os.listdir(proc):
            # Inlined reading: a method call per process is a measurable share of the cycle.
            before = prev_get(pid)
            sched = sfd = None
            if before is not None:
                sfd = before[6]
                if sfd is not None:
                    # A single-threaded process's schedstat holds its whole run time and
                    # costs a third of stat to read: unchanged, the process has not run since.
                    try:
                        sched = pread(sfd, _SCHED_READ, 0)
                    except OSError:  # gone; a reused pid opens its own files below
                        del sfds[pid]
                        close(sfd)
                        sfd = None
                    else:
                        if sched == before[5] and before[7] != phase:
                            cur[pid] = before
                            rss_of[pid] = before[3]
                            continue
            if sfd is None and (before is None or before[4]) and live and pid.isdigit() \
                    and len(fds) + len(sfds) < budget:
                try:
                    sfd = open_(f"{proc}/{pid}/schedstat", rdonly)
                except OSError:
                    pass
                else:
                    try:
                        sched = read(sfd, _SCHED_READ)
                    except OSError:
                        sched = None
                    sfds[pid] = sfd
            fd = fds_get(pid)
            data = None
            if fd is not None:
                try:
                    data = pread(fd, _READ, 0)
                except OSError:  # ESRCH: that process is gone (the pid may belong to a new one)
                    del fds[pid]
                    close(fd)
            elif not pid.isdigit():  # a kept fd already proves the name is a pid
                continue
            if data is None:
                try:
                    fd = open_(f"{proc}/{pid}/stat", rdonly)
                except OSError:  # exited since the listing
                    continue
                try:
                    data = read(fd, _READ)
                except OSError:
                    data = b""
                if data and len(fds) + len(sfds) < budget:
                    fds[pid] = fd
                else:
                    close(fd)
            if not data:
                continue
            if before is not None and before[0] == data:
                # Most processes sleep through a cycle and their stat line does not change.
                cur[pid] = before if sched == before[5] and sfd == before[6] else \
                    (*before[:5], sched, sfd, *before[7:])
                rss_of[pid] = before[3]
                continue
            # comm may hold spaces and ')': the fields start after the last ')'.
            try:
                cut = data.rindex(b")")
                f = data[cut + 1 :].split(None, 22)
                ticks = int(f[_UTIME]) + int(f[_STIME])
                start, rss, single = f[_START], int(f[_RSS]), f[_THREADS] == b"1"
            except (ValueError, IndexError) as e:  # one odd stat line costs only that process
                self.parts.failed(batch, "pid/stat", f"{proc}/{pid}/stat", e)
                continue
            if not single and sfd is not None:
                del sfds[pid]
                close(sfd)
                sfd = sched = None
            # comm changes only at exec or prctl: the group is named again only then.
            if before is not None and before[9] == cut and before[1] == start and before[0][:cut] == data[:cut]:
                app, named = before[8], cut
            else:
                try:
                    app, named = self._app(batch, pid, data, cut, f[_FLAGS], start)
                except (ValueError, IndexError) as e:
                    self.parts.failed(batch, "pid/stat", f"{proc}/{pid}/stat", e)
                    continue
            # schedstat read before this stat line vouches for it; read after, it would not.
            cur[pid] = (data, start, ticks, rss, single, sched, sfd,
                        before[7] if before is not None else hash(pid) % REFRESH_CYCLES, app, named)
            if before is None:
                app_rss[app] = app_rss_get(app, 0) + rss
                app_count[app] = app_count_get(app, 0) + 1
            elif before[8] != app or before[3] != rss:
                app_rss[before[8]] -= before[3]
                app_rss[app] = app_rss_get(app, 0) + rss
                if before[8] != app:
                    app_count[before[8]] -= 1
                    app_count[app] = app_count_get(app, 0) + 1
            rss_of[pid] = rss
            if interval <= 0:
                used = None
            elif before is None or before[1] != start:
                used = ticks  # started since the last cycle: all its time is in this interval
            elif ticks >= before[2]:
                used = ticks - before[2]
            else:
                used = None
            used_of[pid] = used
            if used:
                busy.append((used, pid))

        for kept in (fds, sfds):
            for pid in [p for p in kept if p not in cur]:
                close(kept.pop(pid))
        for pid in prev.keys() - cur.keys():  # exited (or unreadable): out of their group
            gone = prev[pid]
            app_rss[gone[8]] -= gone[3]
            app_count[gone[8]] -= 1
        for app in [a for a, n in app_count.items() if n == 0]:
            del app_count[app], app_rss[app]
        self._prev, self._prev_now = cur, now  # pids that disappeared are forgotten here

        # An unchanged stat line means no ticks this interval (none without an interval).
        unchanged = 0 if interval > 0 else None

        def row(pid: str) -> dict[str, object]:
            used = used_of.get(pid, unchanged)
            pct = None if used is None else used * 100.0 / USER_HZ / interval
            rss = rss_of[pid] * PAGE_SIZE
            return {"pid": int(pid), "name": self._name(batch, pid, cur[pid]), "cpu_percent": pct, "rss_bytes": rss}

        # sorted(..., reverse=True)[:n] is what heapq.nlargest is documented to equal (ties
        # keep listing order), with the key lookups done in C. Idle processes are no
        # evidence of CPU use: by_cpu lists only those that ran.
        top = self._top
        by_cpu = [pid for _, pid in sorted(busy, key=_first, reverse=True)[:top]]
        by_mem = sorted(rss_of, key=rss_of.__getitem__, reverse=True)[:top]
        batch.processes = {"by_cpu": [row(p) for p in by_cpu], "by_memory": [row(p) for p in by_mem]}
        self._app_samples(batch, now, cur, busy, interval)
        return batch

    def _app_samples(self, batch: Batch, now: float, cur: dict[str, _Seen], busy: list[tuple[int, str]],
                     interval: float) -> None:
        """app_cpu_usage, app_memory_rss and app_processes of the top groups by CPU and by
        memory, from this cycle's readings; every other group summed into "other"."""
        rss, count = dict(self._app_rss), dict(self._app_count)
        ticks: dict[str, int] = {}
        for used, pid in busy:
            app = cur[pid][8]
            ticks[app] = ticks.get(app, 0) + used
        n = self._top_apps
        kept = set(sorted(rss, key=rss.__getitem__, reverse=True)[:n])
        kept.update(sorted(ticks, key=ticks.__getitem__, reverse=True)[:n])
        rest = [a for a in rss if a not in kept]
        if rest:
            # No operator group is called "other", but an executable may be: it joins the rest.
            kept.discard(OTHER)
            rest = [a for a in rss if a not in kept]
            rss[OTHER] = sum(rss[a] for a in rest)
            count[OTHER] = sum(count[a] for a in rest)
            ticks[OTHER] = sum(ticks.get(a, 0) for a in rest)
            kept.add(OTHER)
        pct = 100.0 / USER_HZ / interval / self._cpu_count() if interval > 0 else None
        out = batch.samples
        for app in sorted(kept):
            labels = {"app": app}
            if pct is not None:
                out.append(Sample("app_cpu_usage", labels, ticks.get(app, 0) * pct, now))
            out.append(Sample("app_memory_rss", labels, float(rss[app] * PAGE_SIZE), now))
            out.append(Sample("app_processes", labels, float(count[app]), now))
