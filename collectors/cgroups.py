"""Containers and cgroups: CPU, memory, OOM kills, memory pressure and I/O per container,
for cgroup v1 (one hierarchy per controller, v2 beside it for pressure files in hybrid
mode) and cgroup v2.

A unit is a container (Docker, containerd/Kubernetes, CRI-O, Podman), a systemd service
or scope, or any other cgroup found where containers live: named from its cgroup path
and, where the runtime leaves them, its metadata files (Docker's config.v2.json, Podman's
containers.json, the kubelet's /var/log/containers links).

Bounded for a host with hundreds of containers:
- the walk descends only the levels that hold units (slices, docker/, kubepods/, pods)
  and never into a unit; it runs every REFRESH_CYCLES cycles, and at once when the
  host's OOM counter rose, so a short-lived container that was OOM-killed is seen;
- each unit's CPU and memory counters (two small files, kept open and re-read with
  pread, a tenth of open + read + close) are read once in REFRESH_CYCLES cycles, a
  share of the units each cycle, and every cycle for the units reported last cycle:
  a rate over several intervals is still the right average;
- the OOM counters are read only in a cycle where /proc/vmstat's oom_kill rose;
- only the reported units, the top N by CPU and by memory plus those near their limit
  or OOM-killed this interval, have memory.stat (the working set), I/O and pressure
  read, their metadata looked up and series written.
"""

from __future__ import annotations

import errno
import heapq
import json
import logging
import os
import re
import resource
import weakref
from dataclasses import dataclass
from pathlib import Path

from collectors.base import DeadlineWorker, Parts, Rates, Stalled, read_bytes
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch

log = logging.getLogger(__name__)

REFRESH_CYCLES = 10
# A limit rarely changes (docker update, systemctl set-property): read once in this many visits.
LIMIT_VISITS = 3
# A cgroup removed under us: its path is gone (ENOENT) or a kept file of it reads ENODEV.
_GONE = (errno.ENOENT, errno.ENODEV)
# Units kept above the top N because they are near their limit: a bound for the day every
# container is (a cluster-wide limit set too low), most loaded first.
MAX_OVER = 50
# Memory limits at or above this are "no limit" (v1 writes PAGE_COUNTER_MAX pages).
UNLIMITED = 1 << 62
WALK_DEPTH = 6
METADATA_DEADLINE_S = 1.0
NAME_CACHE_MAX = 4096

_HEX = r"([0-9a-f]{64})"
# <runtime prefix>-<id>.scope, as systemd-driven runtimes name a container's scope.
_SCOPE = re.compile(r"^(docker|cri-containerd|crio|libpod)-" + _HEX + r"\.scope$")
_SCOPE_RUNTIME = {"docker": "docker", "cri-containerd": "containerd", "crio": "cri-o", "libpod": "podman"}
_BARE = re.compile("^" + _HEX + "$")
_LIBPOD = re.compile(r"^libpod-" + _HEX + "$")
# Levels that hold units, not units themselves (the cgroupfs drivers' parents).
_GROUPS = {"docker": "docker", "kubepods": "containerd", "burstable": "containerd", "besteffort": "containerd",
           "libpod_parent": "podman", "machine": "cgroup"}


def classify(parent_runtime: str | None, name: str) -> tuple[str, str] | str | None:
    """What the cgroup directory `name` is, below a level of `parent_runtime` (None at the top):
    "descend" for a level that holds units, (runtime, id) for a unit, None to skip it."""
    m = _SCOPE.match(name)
    if m:
        return _SCOPE_RUNTIME[m.group(1)], m.group(2)
    if name.endswith(".slice"):
        return "descend"
    if "-conmon-" in name:
        return None  # a runtime's monitor process beside its container, not a container
    if name.endswith((".service", ".scope")):
        return "systemd", name
    if parent_runtime in ("docker", "containerd", "podman"):
        if _BARE.match(name):
            return parent_runtime, name
        m = _LIBPOD.match(name)
        if m:
            return "podman", m.group(1)
        if parent_runtime == "containerd" and (name in _GROUPS or name.startswith("pod")):
            return "descend"
    if parent_runtime is None and name in _GROUPS:
        return "descend"
    return "cgroup", name


def group_runtime(parent_runtime: str | None, name: str) -> str | None:
    """The runtime a descended level implies for bare ids below it."""
    if name.endswith(".slice"):
        return parent_runtime
    return _GROUPS.get(name, parent_runtime if name.startswith("pod") else None)


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each controller's hierarchy is; every unit is the same relative path in each."""

    version: str  # "v1" or "v2"
    walk: str  # the hierarchy walked for units: memory's, else cpu's
    cpu: str | None
    memory: str | None
    io: str | None
    pressure: tuple[str, ...]  # where memory.pressure files may be (v1 memory, hybrid unified)


def find_layout(sys_root: Path) -> Layout | None:
    base = sys_root / "fs" / "cgroup"
    if (base / "cgroup.controllers").exists():
        b = str(base)
        return Layout("v2", b, b, b, b, (b,))
    mem = base / "memory"
    cpu = next((base / n for n in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu") if (base / n / "cpuacct.usage").exists()), None)
    mem_s = str(mem) if (mem / "memory.usage_in_bytes").exists() else None
    if mem_s is None and cpu is None:
        return None
    io = base / "blkio"
    unified = base / "unified"
    pressure = tuple(p for p in (mem_s, str(unified) if (unified / "cgroup.procs").exists() else None) if p)
    return Layout("v1", mem_s or str(cpu), str(cpu) if cpu else None, mem_s, str(io) if io.is_dir() else None, pressure)


class _Unit:
    __slots__ = ("path", "runtime", "id", "phase", "fds", "rates", "cpu_pct", "used", "limit", "oom", "oom_delta",
                 "read_at", "oom_at", "visits", "inactive", "psi", "no_cpu")

    def __init__(self, path: str, runtime: str, uid: str, phase: int) -> None:
        self.path, self.runtime, self.id, self.phase = path, runtime, uid, phase
        self.fds: dict[str, int] = {}
        self.rates = Rates()  # the unit's own baselines, gone with it
        self.cpu_pct: float | None = None
        self.used: float | None = None  # bytes charged, page cache included
        self.limit: float | None = None
        self.oom: float | None = None
        self.oom_delta: float | None = None  # valid in the cycle of oom_at
        self.read_at = -1.0
        self.no_cpu = False
        self.oom_at = -1.0
        self.visits = 0
        self.inactive: float | None = None  # inactive page cache, from memory.stat
        self.psi: str | None = None  # where its memory.pressure is; "" for nowhere


    def limit_due(self, phase: int) -> bool:
        """Whether this read also reads the limit: the first one, then one phase visit in LIMIT_VISITS."""
        if self.visits and phase != self.phase:
            return False  # read for being reported, not on its own phase
        self.visits += 1
        return self.visits % LIMIT_VISITS == 1


def _close_units(units: dict[str, _Unit]) -> None:
    for u in units.values():
        for fd in u.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        u.fds.clear()


def _close_all(units: dict[str, _Unit], vmstat: list[int | None]) -> None:
    _close_units(units)
    if vmstat[0] is not None:
        os.close(vmstat[0])
        vmstat[0] = None


def _field(text: bytes, key: bytes) -> float | None:
    """`key value` in a flat-keyed file (memory.stat, memory.events, cpu.stat)."""
    text = b"\n" + text
    at = text.find(b"\n" + key + b" ")
    if at < 0:
        return None
    start = at + len(key) + 2
    end = text.find(b"\n", start)
    return float(text[start:end if end >= 0 else None])


def _io_v2(text: bytes) -> tuple[float, float]:
    rd = wr = 0.0
    for line in text.splitlines():
        for kv in line.split()[1:]:
            k, _, v = kv.partition(b"=")
            if k == b"rbytes":
                rd += float(v)
            elif k == b"wbytes":
                wr += float(v)
    return rd, wr


def _io_v1(text: bytes) -> tuple[float, float]:
    rd = wr = 0.0
    for line in text.splitlines():
        f = line.split()
        if len(f) == 3:
            if f[1] == b"Read":
                rd += float(f[2])
            elif f[1] == b"Write":
                wr += float(f[2])
    return rd, wr


def _psi_totals(text: bytes) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        f = line.split()
        if f and f[-1].startswith(b"total="):
            out[f[0].decode()] = float(f[-1][6:])
    return out


class Names:
    """Container names from the runtimes' metadata files under `root`, cached by id.

    The files are other processes' (a runtime may be rewriting them, the disk may hang),
    so each lookup runs on a DeadlineWorker; a unit not yet named keeps its short id.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.worker = DeadlineWorker("container-metadata", METADATA_DEADLINE_S, log)
        self._cache: dict[tuple[str, str], str] = {}
        self._podman: tuple[float, dict[str, str]] = (-1.0, {})

    def name(self, runtime: str, uid: str) -> str:
        if runtime in ("systemd", "cgroup"):
            return uid
        got = self._cache.get((runtime, uid))
        if got is None:
            try:
                got = self.worker.call(runtime, self._lookup, runtime, uid) or uid[:12]
            except Stalled:
                return uid[:12]  # not cached: looked up again once the stuck read returns
            except Exception:  # noqa: BLE001 - metadata is a nicety; the short id names it too
                got = uid[:12]
            if len(self._cache) >= NAME_CACHE_MAX:
                self._cache.clear()
            self._cache[(runtime, uid)] = got
        return got

    def _lookup(self, runtime: str, uid: str) -> str | None:
        if runtime == "docker":
            try:
                cfg = json.loads(read_bytes(self.root / "var/lib/docker/containers" / uid / "config.v2.json"))
            except (OSError, ValueError):
                return None
            name = cfg.get("Name") if isinstance(cfg, dict) else None
            return name.lstrip("/") or None if isinstance(name, str) else None
        if runtime == "podman":
            return self._podman_names().get(uid)
        # The kubelet links each container's log as <pod>_<namespace>_<container>-<id>.log.
        try:
            for entry in os.listdir(self.root / "var/log/containers"):
                if entry.endswith(f"-{uid}.log"):
                    pod, ns, cont = entry[: -len(uid) - 5].split("_", 2)
                    return f"{ns}/{pod}/{cont}"
        except (OSError, ValueError):
            return None
        return None

    def _podman_names(self) -> dict[str, str]:
        path = self.root / "var/lib/containers/storage/overlay-containers/containers.json"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return {}
        if mtime != self._podman[0]:
            try:
                rows = json.loads(read_bytes(path))
                names = {r["id"]: r["names"][0] for r in rows if r.get("names")}
            except (OSError, ValueError, KeyError, TypeError):
                names = {}
            self._podman = (mtime, names)
        return self._podman[1]


def _fd_budget() -> int:
    """Kept files: two per unit, at most a sixteenth of the soft fd limit and 1024."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1024 if soft == resource.RLIM_INFINITY else max(0, min(soft // 16, 1024))


class CgroupsCollector:
    name = "cgroups"
    sources = ('/sys/fs/cgroup (v1 and v2)', 'runtime metadata (Docker config.v2.json, Podman containers.json, kubelet links)')

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self.top = settings.top_containers
        self.over = settings.containers_over_percent / 100.0
        self.parts = Parts(log)
        self.names = Names(roots.root)
        self.layout: Layout | None = None
        self.units: dict[str, _Unit] = {}
        self.cycle = 0
        self._walked = False
        self._host_oom: float | None = None
        self._vmstat_fd: list[int | None] = [None]  # a holder the finalizer shares
        self._reported: list[str] = []
        self._phases: list[list[str]] = []  # unit paths by the cycle phase they are read in
        self._live = roots.sys == Path("/sys")
        self._budget = _fd_budget() if self._live else 0
        self._kept = 0
        self._finalizer = weakref.finalize(self, _close_all, self.units, self._vmstat_fd)

    def close(self) -> None:
        self._finalizer()
        self._budget = 0
        self.names.worker.close()

    # -- discovery ----------------------------------------------------------------------

    def _walk(self, lay: Layout) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        todo: list[tuple[str, str | None, int]] = [("", None, 0)]
        while todo:
            rel, runtime, depth = todo.pop()
            try:
                with os.scandir(lay.walk + rel) as it:
                    entries = [e.name for e in it if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for name in entries:
                what = classify(runtime, name)
                if what is None:
                    continue
                path = f"{rel}/{name}"
                if what == "descend":
                    if depth + 1 < WALK_DEPTH:
                        todo.append((path, group_runtime(runtime, name), depth + 1))
                elif what[0] == "cgroup":
                    found[path] = ("cgroup", path)  # no runtime to name it: its path does
                else:
                    found[path] = what  # type: ignore[assignment]
        return found

    def _sync(self, found: dict[str, tuple[str, str]]) -> list[_Unit]:
        gone = [p for p in self.units if p not in found]
        for p in gone:
            self._drop(p)
        new = []
        for path, (runtime, uid) in found.items():
            if path not in self.units:
                u = self.units[path] = _Unit(path, runtime, uid, hash(path) % REFRESH_CYCLES)
                new.append(u)
        self._phases = [[] for _ in range(REFRESH_CYCLES)]
        for u in self.units.values():
            self._phases[u.phase].append(u.path)
        return new

    def _drop(self, path: str) -> None:
        u = self.units.pop(path, None)
        if u is not None:
            self._kept -= len(u.fds)
            _close_units({path: u})

    # -- reading ------------------------------------------------------------------------

    def _read(self, u: _Unit, kind: str, path: str, size: int = 256) -> bytes:
        """A file of `u`, through its kept descriptor when there is room for one: on this
        kind of VM an open of a cgroup file costs several times a pread of a kept one."""
        fd = u.fds.get(kind)
        if fd is not None:
            return os.pread(fd, size, 0)
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.read(fd, size)
        except BaseException:
            os.close(fd)
            raise
        if self._kept < self._budget:
            u.fds[kind] = fd
            self._kept += 1
        else:
            os.close(fd)
        return data

    def _counters(self, lay: Layout, u: _Unit, now: float, phase_visit: bool = True) -> None:
        """CPU and memory usage, the two readings every unit needs for the ranking."""
        v2 = lay.version == "v2"
        if lay.cpu is not None and not (u.no_cpu and not phase_visit):
            u.no_cpu = False
            try:
                if v2:
                    ns = _field(self._read(u, "cpu", f"{lay.cpu}{u.path}/cpu.stat"), b"usage_usec")
                    ns = None if ns is None else ns * 1000
                else:
                    ns = float(self._read(u, "cpu", f"{lay.cpu}{u.path}/cpuacct.usage"))
            except FileNotFoundError:
                # v1: a cgroup made in the memory hierarchy only (or not yet in cpuacct):
                # looked for again on its phase, not every cycle it is reported.
                ns = None
                u.no_cpu = True
            if ns is not None:
                r = u.rates.rate("cpu", ns, now)
                if r is not None:
                    u.cpu_pct = r / 1e7  # ns per second -> percent of one CPU
        if lay.memory is not None:
            u.used = float(self._read(u, "mem", f"{lay.memory}{u.path}/" + ("memory.current" if v2 else "memory.usage_in_bytes")))
        u.read_at = now

    def _limit(self, lay: Layout, u: _Unit) -> None:
        if lay.memory is None:
            return
        raw = self._read(u, "limit", f"{lay.memory}{u.path}/" + ("memory.max" if lay.version == "v2" else "memory.limit_in_bytes")).strip()
        value = None if raw == b"max" else float(raw)
        u.limit = value if value is not None and value < UNLIMITED else None

    def _oom(self, lay: Layout, u: _Unit, now: float, counts_new: bool) -> None:
        if lay.memory is None:
            return
        v2 = lay.version == "v2"
        text = read_bytes(f"{lay.memory}{u.path}/" + ("memory.events" if v2 else "memory.oom_control"))
        count = _field(text, b"oom_kill")
        if count is None:
            return  # v1 before 4.13 has no oom_kill line
        if u.oom is None:
            # A unit that appeared since the last walk had all its kills since then.
            u.oom_delta = count if counts_new and count > 0 else None
        else:
            u.oom_delta = count - u.oom if count >= u.oom else None
        u.oom, u.oom_at = count, now

    def _host_oom_rose(self, batch: Batch) -> bool:
        try:
            if self._vmstat_fd[0] is None:
                self._vmstat_fd[0] = os.open(f"{self.roots.proc}/vmstat", os.O_RDONLY)
            # Kept open: a pread of /proc/vmstat costs three quarters of open + read + close.
            count = _field(os.pread(self._vmstat_fd[0], 65536, 0), b"oom_kill")  # ~5 kB, one read
        except (OSError, ValueError) as e:
            self.parts.failed(batch, "cgroups:vmstat", f"{self.roots.proc}/vmstat", e)
            return True  # without the host's counter every cycle must look
        prev, self._host_oom = self._host_oom, count
        return count is None or prev is None or count != prev

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        if self.layout is None:
            if self.cycle % (REFRESH_CYCLES * 6) == 0:  # a cgroup fs mounted later is found within minutes
                self.layout = find_layout(self.roots.sys)
            if self.layout is None:
                self.cycle += 1
                return batch
        lay = self.layout
        phase = self.cycle % REFRESH_CYCLES
        self.cycle += 1
        oom_rose = self._host_oom_rose(batch) if lay.memory is not None else False
        first = not self._walked
        new: list[_Unit] = []
        if first or oom_rose or phase == 0:
            new = self._sync(self._walk(lay))
            self._walked = True
        batch.add("containers", float(len(self.units)))
        todo = {u.path: u for u in new}
        for group in (self._phases[phase] if phase < len(self._phases) else (), self._reported):
            for path in group:
                u = self.units.get(path)
                if u is not None:
                    todo[path] = u
        for u in todo.values():
            try:
                self._counters(lay, u, now, phase_visit=u.phase == phase or u.visits == 0)
                if u.limit_due(phase):
                    self._limit(lay, u)
            except OSError as e:
                if e.errno in _GONE:
                    self._drop(u.path)  # removed since the walk
                    continue
                self.parts.failed(batch, "cgroup", f"{lay.walk}{u.path}", e)
            except ValueError as e:
                self.parts.failed(batch, "cgroup", f"{lay.walk}{u.path}", e)
        if oom_rose or new:
            counts_new = not first
            for u in list(self.units.values()) if oom_rose else new:
                try:
                    self._oom(lay, u, now, counts_new=counts_new and u.path in todo and u in new)
                except (OSError, ValueError) as e:
                    if not (isinstance(e, OSError) and e.errno in _GONE):
                        self.parts.failed(batch, "cgroup/oom", f"{lay.walk}{u.path}", e)
        chosen = self._choose(now)
        self._reported = [u.path for u in chosen]
        for u in chosen:
            self._report(batch, lay, u, now, phase)
        return batch

    def _choose(self, now: float) -> list[_Unit]:
        units = list(self.units.values())
        top = self.top
        # An idle container is no top CPU user: on a host of idle ones that halves what is read.
        busy = [u for u in units if u.cpu_pct]
        by_cpu = heapq.nlargest(top, busy, key=lambda u: u.cpu_pct)  # type: ignore[arg-type, return-value]
        sized = [u for u in units if u.used is not None]
        by_mem = heapq.nlargest(top, sized, key=lambda u: u.used)  # type: ignore[arg-type, return-value]
        near = [u for u in sized if u.limit and u.used >= self.over * u.limit]  # type: ignore[operator]
        near = sorted(near, key=lambda u: u.used / u.limit, reverse=True)[:MAX_OVER]  # type: ignore[operator]
        killed = [u for u in units if u.oom_at == now and u.oom_delta]
        out: dict[str, _Unit] = {}
        for u in (*by_cpu, *by_mem, *near, *killed):
            out.setdefault(u.path, u)
        return list(out.values())

    def _report(self, batch: Batch, lay: Layout, u: _Unit, now: float, phase: int) -> None:
        try:
            if u.read_at != now:
                self._counters(lay, u, now, phase_visit=False)
            self._report_read(batch, lay, u, now, phase)
        except OSError as e:
            if e.errno not in _GONE:
                raise
            self._drop(u.path)  # removed since it was read: the next walk would drop it too

    def _report_read(self, batch: Batch, lay: Layout, u: _Unit, now: float, phase: int) -> None:
        labels = {"container": self.names.name(u.runtime, u.id), "runtime": u.runtime, "cgroup": u.path}
        add = batch.add
        add("container_cpu_usage", u.cpu_pct, **labels)
        v2 = lay.version == "v2"
        used = u.used
        if lay.memory is not None and used is not None:
            # The kernel reclaims inactive page cache before it OOM-kills: without it, a
            # container that writes files sits at its limit and is fine. memory.stat is the
            # costliest file here: read each cycle only near the limit, else on the unit's phase.
            if u.inactive is None or u.phase == phase or (u.limit and used >= self.over * u.limit):
                try:
                    stat = self._read(u, "stat", f"{lay.memory}{u.path}/memory.stat", 16384)
                    u.inactive = _field(stat, b"inactive_file" if v2 else b"total_inactive_file")
                except ValueError as e:
                    self.parts.failed(batch, "cgroup/memory.stat", f"{lay.memory}{u.path}/memory.stat", e)
            if u.inactive is not None:
                used = max(0.0, used - u.inactive)
            add("container_memory_used", used, **labels)
            if u.limit:
                add("container_memory_limit", u.limit, **labels)
                add("container_memory_usage", used * 100.0 / u.limit, **labels)
        if u.oom is not None:
            add("container_oom_kills", u.oom_delta if u.oom_delta is not None else 0.0, **labels)
            batch.add_total("container_oom_kills_total", u.oom, **labels)
        if lay.io is not None:
            try:
                if v2:
                    rd, wr = _io_v2(self._read(u, "io", f"{lay.io}{u.path}/io.stat", 16384))
                else:
                    rd, wr = _io_v1(self._read(u, "io", f"{lay.io}{u.path}/blkio.throttle.io_service_bytes_recursive", 16384))
                add("container_io_read_bps", u.rates.rate("read", rd, now), **labels)
                add("container_io_write_bps", u.rates.rate("write", wr, now), **labels)
            except FileNotFoundError:
                pass  # v1: not in the blkio hierarchy
            except ValueError as e:
                self.parts.failed(batch, "cgroup/io", f"{lay.io}{u.path}", e)
        if u.psi is None:
            # v1 has per-cgroup PSI only with cgroup1 PSI on; hybrid mode has it in the v2
            # twin if systemd made one. Looked for once per unit.
            u.psi = next((b for b in lay.pressure if os.path.exists(f"{b}{u.path}/memory.pressure")), "")
        for base in (u.psi,) if u.psi else ():
            try:
                psi = _psi_totals(self._read(u, "psi", f"{base}{u.path}/memory.pressure"))
            except ValueError as e:
                self.parts.failed(batch, "cgroup/memory.pressure", f"{base}{u.path}", e)
                break
            for kind in ("some", "full"):
                if kind in psi:
                    r = u.rates.rate(kind, psi[kind], now)  # µs stalled per second
                    add(f"container_psi_memory_{kind}", None if r is None else min(100.0, r / 1e4), **labels)
            break
