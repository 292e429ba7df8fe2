"""Sensors and hardware: hwmon temperatures and fans, CPU thermal throttling, EDAC memory
errors, and software RAID from /proc/mdstat.

Formats as node_exporter reads them (collector/hwmon_linux.go, thermal_throttle in
cpu_linux.go, edac_linux.go, and procfs' mdstat.go): hwmon values are millidegrees
Celsius and RPM, `temp<N>_label` names a sensor, `name` names the chip.

Which files exist changes only with hotplug or a driver load, so the file lists are
found once and again every REDISCOVER_EVERY cycles (or the cycle after a file vanished);
a cycle then costs one small read per sensor and nothing else.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from collectors.base import DeadlineWorker, Parts, Rates, Stalled, read_bytes, read_text
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch

log = logging.getLogger(__name__)

# ~10 min at the default 10 s interval: a new disk's drivetemp or a loaded EDAC driver is
# seen within that, and the directory walks cost nothing the other 59 cycles.
REDISCOVER_EVERY = 60
# Throttle counters are one file per core: a 128-core server would read 130 files a cycle.
# Past this many, the cores are read in turn, so each is read every few cycles and the
# rise is counted when it is read (nothing is lost, a rise is only seen a little later).
THROTTLE_FILES_PER_CYCLE = 32
# Bounds for a box with hundreds of sensors (big BMC-less servers, GPU farms).
MAX_SENSORS = 256
# These drivers ask a device over its bus on each read (a SMART query for drivetemp, an
# admin command for nvme, the GPU's firmware for amdgpu): a hung disk or GPU blocks the
# read, so they are read on a DeadlineWorker. On-die and Super-I/O sensors answer from
# registers and are read inline.
DEVICE_CHIPS = frozenset({"drivetemp", "nvme", "amdgpu", "radeon", "nouveau", "i915", "xe"})
DEVICE_DEADLINE_S = 2.0

_SENSOR = re.compile(r"^(temp|fan)(\d+)_input$")
_MD_STATUS = re.compile(r"\[(\d+)/(\d+)\]\s+\[([U_]+)\]")
_MD_SYNC = re.compile(r"\b(resync|recovery|check|reshape|repair)\s*=\s*([\d.]+)%")
_MD_PENDING = re.compile(r"\b(resync|recovery|check|reshape|repair)\s*=\s*(PENDING|DELAYED)")


# -- /proc/mdstat ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MdArray:
    name: str
    state: str  # the word after the colon: active, inactive (read-only flags dropped)
    level: str  # raid1, raid5, linear, ... ("" for an inactive array that names none)
    disks: int  # the [n/m] n: members the array needs (raid0/linear: its members)
    active: int  # the [n/m] m: members in sync
    failed: int  # members marked (F)
    spares: int  # members marked (S)
    down: int  # `_` in [UU_]
    action: str = ""  # resync, recovery, check, reshape, repair; "" when none runs
    progress: float | None = None  # percent done; None when none runs or it is pending

    @property
    def degraded(self) -> bool:
        return self.state == "active" and (self.active < self.disks or self.down > 0)


def parse_mdstat(text: str) -> list[MdArray]:
    """Every array of /proc/mdstat: `mdN : state [(ro flags)] [level] member[i](F|S)...`,
    then an indented status line (`... [2/1] [U_]`) and maybe bitmap and sync lines."""
    lines = text.splitlines()
    out: list[MdArray] = []
    for i, line in enumerate(lines):
        if not line or line[0].isspace() or " : " not in line or line.startswith(("Personalities", "unused")):
            continue
        name, _, rest = line.partition(" : ")
        words = [w for w in rest.split() if not w.startswith("(")]  # (auto-read-only), (read-only)
        if not words:
            continue
        state = words[0]
        level = words[1] if len(words) > 1 and "[" not in words[1] else ""
        members = [w for w in rest.split() if "[" in w]
        failed = sum("(F)" in w for w in members)
        spares = sum("(S)" in w for w in members)
        body = []
        for follow in lines[i + 1:]:
            if not follow.strip() or not follow[0].isspace():
                break
            body.append(follow)
        status = _MD_STATUS.search(body[0]) if body else None
        if status and state == "active":
            disks, active, down = int(status.group(1)), int(status.group(2)), status.group(3).count("_")
        elif state == "active" and members:
            # raid0 and linear print no [n/m]: every member is needed and present.
            disks = active = len(members) - spares - failed
            down = 0
        else:
            disks = active = down = 0
        action, progress = "", None
        for b in body[1:]:
            m = _MD_SYNC.search(b)
            if m:
                action, progress = m.group(1), float(m.group(2))
                break
            m = _MD_PENDING.search(b)
            if m:
                action = m.group(1)
                break
        out.append(MdArray(name.strip(), state, level, disks, active, failed, spares, down, action, progress))
    return out


# -- discovery -------------------------------------------------------------------------------

@dataclass(slots=True)
class Sensor:
    kind: str  # temp or fan
    chip: str
    sensor: str
    path: str  # its *_input file
    crit: float | None = None  # degrees Celsius, from temp*_crit at discovery
    max: float | None = None


@dataclass(slots=True)
class Chip:
    name: str
    on_device: bool
    sensors: list[Sensor] = field(default_factory=list)


def _read_str(path: str) -> str | None:
    try:
        return read_text(path).strip()
    except OSError:
        return None


def _read_milli(path: str) -> float | None:
    """A millidegree limit; None when absent, unreadable or not a real limit (0, negative:
    drivers that do not know one print 0 or -273000)."""
    s = _read_str(path)
    try:
        v = int(s) / 1000.0 if s is not None else None
    except ValueError:
        return None
    return v if v is not None and v > 0 else None


def discover_hwmon(sys_root: Path) -> list[Chip]:
    """Every hwmon chip with its temp and fan inputs. A chip's sensor files are in its
    hwmonN directory, or on old drivers in hwmonN/device (node_exporter reads both)."""
    base = sys_root / "class" / "hwmon"
    try:
        entries = sorted(os.listdir(base), key=lambda n: (len(n), n))
    except OSError:
        return []
    found: list[tuple[str, str, str]] = []  # (name, device id, dir holding the sensor files)
    for entry in entries:
        d = str(base / entry)
        name = _read_str(f"{d}/name") or _read_str(f"{d}/device/name") or entry
        try:
            dev = os.path.basename(os.path.realpath(f"{d}/device")) if os.path.lexists(f"{d}/device") else entry
        except OSError:
            dev = entry
        for where in (d, f"{d}/device"):
            try:
                if any(_SENSOR.match(f) for f in os.listdir(where)):
                    found.append((name, dev, where))
                    break
            except OSError:
                continue
    names = [n for n, _, _ in found]
    chips: list[Chip] = []
    total = 0
    for name, dev, where in found:
        # Two coretemp packages or two NVMe drives share a name; their device tells them apart.
        chip = name if names.count(name) == 1 else f"{name}:{dev}"
        c = Chip(chip, name in DEVICE_CHIPS)
        files = sorted(os.listdir(where), key=lambda f: (len(f), f))
        labels: dict[str, str] = {}
        for f in files:
            m = _SENSOR.match(f)
            if not m or total >= MAX_SENSORS:
                continue
            kind, n = m.group(1), m.group(2)
            stem = f"{kind}{n}"
            label = _read_str(f"{where}/{stem}_label") or stem
            if label in labels.values():
                label = f"{label} ({stem})"
            labels[stem] = label
            s = Sensor(kind, chip, label, f"{where}/{f}")
            if kind == "temp":
                s.crit = _read_milli(f"{where}/{stem}_crit")
                s.max = _read_milli(f"{where}/{stem}_max")
            c.sensors.append(s)
            total += 1
        if c.sensors:
            chips.append(c)
    return chips


def discover_edac(sys_root: Path) -> list[tuple[str, str, str]]:
    """(controller, ce_count path, ue_count path) of every EDAC memory controller."""
    base = sys_root / "devices" / "system" / "edac" / "mc"
    try:
        names = sorted((n for n in os.listdir(base) if re.fullmatch(r"mc\d+", n)), key=lambda n: int(n[2:]))
    except OSError:
        return []
    return [(n, str(base / n / "ce_count"), str(base / n / "ue_count")) for n in names
            if os.path.exists(base / n / "ce_count")]


def discover_throttle(sys_root: Path) -> tuple[list[str], list[str]]:
    """(one core_throttle_count per physical core, one package_throttle_count per package).
    Hyperthread siblings share a core's count, so one CPU per (package, core) is read."""
    base = sys_root / "devices" / "system" / "cpu"
    try:
        cpus = sorted((n for n in os.listdir(base) if re.fullmatch(r"cpu\d+", n)), key=lambda n: int(n[3:]))
    except OSError:
        return [], []
    cores: dict[tuple[str, str], str] = {}
    packages: dict[str, str] = {}
    for cpu in cpus:
        tt = base / cpu / "thermal_throttle"
        if not os.path.exists(tt / "core_throttle_count"):
            continue
        pkg = _read_str(str(base / cpu / "topology" / "physical_package_id")) or "0"
        core = _read_str(str(base / cpu / "topology" / "core_id")) or cpu
        cores.setdefault((pkg, core), str(tt / "core_throttle_count"))
        if os.path.exists(tt / "package_throttle_count"):
            packages.setdefault(pkg, str(tt / "package_throttle_count"))
    return list(cores.values()), list(packages.values())


# A removed device's attributes answer ENODEV through a file kept open; a path gone since
# discovery answers ENOENT.
_GONE = (errno.ENOENT, errno.ENODEV, errno.ENXIO)
# Files kept open at once; the rest are opened on each read. Bounded so that a big server
# (256 sensors, hundreds of cores) does not hold hundreds of descriptors.
OPEN_FILES_MAX = 96


class OpenFiles:
    """sysfs attributes kept open and read again with pread at offset 0, which makes sysfs
    produce the value anew: an open and a close cost ~4 us of a ~5 us read, and a cycle
    reads a few dozen of them. Used from the collector's own thread only."""

    def __init__(self, limit: int = OPEN_FILES_MAX) -> None:
        self.limit = limit
        self._fds: dict[str, int] = {}

    def read(self, path: str) -> bytes:
        fd = self._fds.get(path)
        if fd is None:
            if len(self._fds) >= self.limit:
                return read_bytes(path)
            fd = self._fds[path] = os.open(path, os.O_RDONLY)
        try:
            return os.pread(fd, 4096, 0)
        except OSError:
            del self._fds[path]
            os.close(fd)
            raise

    def close(self) -> None:
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)

    def __del__(self) -> None:
        self.close()


def _read_number(files: OpenFiles, path: str) -> float:
    return float(files.read(path))


# -- the collector ---------------------------------------------------------------------------

class HardwareCollector:
    name = "hardware"
    sources = ('/sys/class/hwmon', '/sys/devices/system/cpu/cpu*/thermal_throttle', '/sys/devices/system/edac/mc', '/proc/mdstat')

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self.settings = settings
        self.parts = Parts(log)
        self.rates = Rates()
        self.device_reads = DeadlineWorker("hwmon read", DEVICE_DEADLINE_S, log)
        self.files = OpenFiles()
        self._cycles = 0
        self._rediscover = True
        self._chips: list[Chip] = []
        self._edac: list[tuple[str, str, str]] = []
        self._cores: list[str] = []
        self._packages: list[str] = []
        self._core_last: dict[str, float] = {}  # last value read per core file, for the total
        self._package_last: dict[str, float] = {}
        self._cursor = 0
        self._has_mdstat = False
        self._stuck_chips: dict[str, object] = {}  # chip -> key of the abandoned call stuck on it

    def discover(self) -> None:
        sys_root = self.roots.sys
        self.files.close()  # a file kept open from before may belong to a device now gone
        self._chips = discover_hwmon(sys_root)
        self._edac = discover_edac(sys_root)
        self._cores, self._packages = discover_throttle(sys_root)
        # /proc/mdstat exists only while the md driver is loaded; loading it is seen at the
        # next discovery, as a new sensor is.
        self._has_mdstat = os.path.exists(self.roots.proc / "mdstat")
        keep = set(self._cores)
        self._core_last = {k: v for k, v in self._core_last.items() if k in keep}
        keep = set(self._packages)
        self._package_last = {k: v for k, v in self._package_last.items() if k in keep}

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        if self._rediscover or self._cycles % REDISCOVER_EVERY == 0:
            self._rediscover = False
            self.discover()
        self._cycles += 1
        for chip in self._chips:
            if not chip.on_device:
                self._emit(batch, chip, _read_all(chip.sensors, self.files))
        self._device_sensors(batch, [c for c in self._chips if c.on_device])
        self._edac_counts(batch, now)
        self._throttles(batch, now)
        self._mdstat(batch)
        return batch

    def _gone(self, batch: Batch, part: str, path: str, e: BaseException) -> None:
        if isinstance(e, OSError) and e.errno in _GONE:
            self._rediscover = True  # a chip or controller went away: look again next cycle
        self.parts.failed(batch, part, path, e)

    def _device_sensors(self, batch: Batch, chips: list[Chip]) -> None:
        """Chips that ask their device, read in one call on the worker: one thread handoff
        a cycle, not one per chip. The call notes which chip it is reading, so when one
        hangs the chips read before it still count, and later cycles skip only that chip
        while its call is stuck."""
        if not chips:
            return
        if self._stuck_chips:
            stuck = self.device_reads.stuck()
            self._stuck_chips = {n: k for n, k in self._stuck_chips.items() if k in stuck}
        todo = []
        for chip in chips:
            if chip.name in self._stuck_chips:
                self.parts.failed(batch, f"hwmon/{chip.name}", chip.sensors[0].path,
                                  Stalled(f"hwmon read {chip.name}: still blocked"))
            else:
                todo.append(chip)
        if not todo:
            return
        at: list[str | None] = [None]
        done: list[list[float | BaseException]] = []
        key = ("hwmon", self._cycles)
        try:
            self.device_reads.call(key, _read_chips, todo, at, done)
        except Stalled as e:
            if at[0] is not None:
                self._stuck_chips[at[0]] = key
            name = at[0] or todo[0].name
            self.parts.failed(batch, f"hwmon/{name}", next(c for c in todo if c.name == name).sensors[0].path, e)
        for chip, values in zip(todo, list(done)):
            self._emit(batch, chip, values)

    def _emit(self, batch: Batch, chip: Chip, values: list[float | BaseException]) -> None:
        for s, v in zip(chip.sensors, values):
            if isinstance(v, BaseException):
                self._gone(batch, f"hwmon/{chip.name}", s.path, v)
                continue
            if s.kind == "fan":
                batch.add("hw_fan_speed", v, chip=s.chip, sensor=s.sensor)
                continue
            batch.add("hw_temperature", v / 1000.0, chip=s.chip, sensor=s.sensor)
            if s.crit is not None:
                batch.add("hw_temperature_crit", s.crit, chip=s.chip, sensor=s.sensor)
            if s.max is not None:
                batch.add("hw_temperature_max", s.max, chip=s.chip, sensor=s.sensor)

    def _edac_counts(self, batch: Batch, now: float) -> None:
        delta = self.rates.delta
        for mc, ce_path, ue_path in self._edac:
            for path, metric in ((ce_path, "edac_correctable_errors"), (ue_path, "edac_uncorrectable_errors")):
                try:
                    v = _read_number(self.files, path)
                except (OSError, ValueError) as e:
                    self._gone(batch, f"edac/{mc}", path, e)
                    continue
                batch.add_total(f"{metric}_total", v, controller=mc)
                batch.add(metric, delta(path, v, now), controller=mc)

    def _throttles(self, batch: Batch, now: float) -> None:
        if not self._cores:
            return
        files = self._cores + self._packages
        n = len(files)
        if n <= THROTTLE_FILES_PER_CYCLE:
            todo = files
        else:
            start = self._cursor % n
            todo = (files[start:] + files[:start])[:THROTTLE_FILES_PER_CYCLE]
            self._cursor = start + THROTTLE_FILES_PER_CYCLE
        packages = set(self._packages)
        # Deltas only once every file had its baseline: each file's first reading is one.
        ready = len(self._core_last) == len(self._cores) and len(self._package_last) == len(self._packages)
        core_rose = package_rose = 0.0
        for path in todo:
            is_package = path in packages
            last = self._package_last if is_package else self._core_last
            try:
                v = _read_number(self.files, path)
            except (OSError, ValueError) as e:
                self._gone(batch, "thermal_throttle", path, e)
                continue
            prev = last.get(path)
            last[path] = v
            # A count that went down (a CPU offlined and back) starts a new baseline.
            if prev is not None and v >= prev:
                if is_package:
                    package_rose += v - prev
                else:
                    core_rose += v - prev
        if ready:
            batch.add("cpu_core_throttles", core_rose)
            if self._packages:
                batch.add("cpu_package_throttles", package_rose)
        if len(self._core_last) == len(self._cores):
            batch.add_total("cpu_core_throttles_total", sum(self._core_last.values()))
        if self._packages and len(self._package_last) == len(self._packages):
            batch.add_total("cpu_package_throttles_total", sum(self._package_last.values()))

    def _mdstat(self, batch: Batch) -> None:
        if not self._has_mdstat:
            return
        path = self.roots.proc / "mdstat"
        try:
            text = read_text(path)
        except OSError as e:
            if e.errno in _GONE:
                self._rediscover = True  # the md driver was unloaded
            self.parts.failed(batch, "mdstat", str(path), e)
            return
        for a in parse_mdstat(text):
            batch.add("md_disks", a.disks, array=a.name)
            batch.add("md_disks_active", a.active, array=a.name)
            batch.add("md_disks_failed", a.failed, array=a.name)
            batch.add("md_degraded", 1.0 if a.degraded else 0.0, array=a.name)
            if a.action:
                batch.add("md_sync_progress", a.progress if a.progress is not None else 0.0,
                          array=a.name, action=a.action)

    def close(self) -> None:
        self.device_reads.close()
        self.files.close()


def _read_chips(chips: list[Chip], at: list[str | None], done: list[list[float | BaseException]]) -> None:
    """On the worker: each chip's values appended to `done` as soon as read, `at` naming
    the chip being read. Not through OpenFiles: an abandoned call may still run here."""
    for chip in chips:
        at[0] = chip.name
        done.append(_read_all(chip.sensors, None))
    at[0] = None


def _read_all(sensors: list[Sensor], files: OpenFiles | None) -> list[float | BaseException]:
    """Each sensor's raw value, or the error its read raised (one failing sensor, EIO or
    ENODATA from a driver that lost its device, costs only its own reading)."""
    out: list[float | BaseException] = []
    for s in sensors:
        try:
            out.append(float(files.read(s.path) if files is not None else read_bytes(s.path)))
        except (OSError, ValueError) as e:
            out.append(e)
    return out

