"""CPU: /proc/stat time shares, /proc/loadavg, PSI cpu, run queue.

The three files are read apart: one that cannot be read costs only its own readings.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from collectors.base import Parts, Rates, read_bytes
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch

log = logging.getLogger(__name__)

USER_HZ = os.sysconf("SC_CLK_TCK")

# /proc/stat column order. guest and guest_nice are already inside user and nice,
# so they are left out of every total.
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_IDLE, _IOWAIT = 3, 4
# "cpu", "cpu0"... -> `stat.<name>.<mode>` counter names, built once per line name.
_stat_keys: dict[str, tuple[str, ...]] = {}


def stat_keys(name: str) -> tuple[str, ...]:
    keys = _stat_keys.get(name)
    if keys is None:
        keys = _stat_keys[name] = tuple(f"stat.{name}.{m}" for m in MODES)
    return keys


def psi_counters(counters: dict[str, float], resource: str, totals: dict[str, int]) -> None:
    """PSI stall totals (µs) by the file's own words: `pressure.cpu.some.total`."""
    for kind, total in totals.items():
        counters[f"pressure.{resource}.{kind}.total"] = total


def read_psi_totals(path: str | Path) -> dict[str, int] | None:
    """`some`/`full` stall totals (µs) of one /proc/pressure file.

    None when the kernel has no PSI (file absent, or psi=0 gives EOPNOTSUPP on read):
    a missing reading, not an error.
    """
    try:
        text = read_bytes(path)
    except OSError:
        return None
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[-1].startswith(b"total="):
            out[parts[0].decode("utf-8", "replace")] = int(parts[-1][6:])
    return out


def psi_percent(rates: Rates, key: str, total_us: int | None, now: float) -> float | None:
    """Stall share of the interval from the µs counter: exact over our interval, unlike avg10."""
    if total_us is None:
        return None
    elapsed = rates.elapsed(key, now)
    d = rates.delta(key, total_us, now)
    if d is None or not elapsed:
        return None
    # Our interval is measured on the wall clock and the kernel's on its own; clamp the jitter.
    return min(100.0, d / (elapsed * 1e6) * 100.0)


def _shares(prev: list[int], cur: list[int]) -> list[float] | None:
    """Per-mode share (%) of the interval, or None when the total did not move forward."""
    deltas = [c - p for c, p in zip(cur, prev)]
    if sum(deltas) <= 0:
        return None  # counters reset (CPU hot-plug, a different tree): new baseline
    # iowait (and idle on some nohz kernels) may step back a little: count it as zero.
    deltas = [d if d > 0 else 0 for d in deltas]
    total = sum(deltas)
    return [d * 100.0 / total for d in deltas]


class CpuCollector:
    name = "cpu"
    sources = ('/proc/stat', '/proc/loadavg', '/proc/pressure/cpu')

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self._raw = settings.raw_counters
        self._prev: dict[str, list[int]] = {}
        self._rates = Rates()
        self.parts = Parts(log)

    def _stat(self, batch: Batch, proc: str, now: float) -> None:
        cpus: dict[str, list[int]] = {}
        for line in read_bytes(f"{proc}/stat").decode("utf-8", "replace").splitlines():
            if line.startswith("cpu"):
                parts = line.split()
                cpus[parts[0]] = list(map(int, parts[1:9]))
            elif line.startswith("procs_"):
                key, value = line.split()
                batch.add(key, int(value))  # procs_running, procs_blocked

        if self._raw:
            counters = batch.counters
            for name, jiffies in cpus.items():
                counters.update(zip(stat_keys(name), jiffies))

        total = cpus.get("cpu")
        if total is not None:
            for mode, jiffies in zip(MODES, total):
                batch.add_total("cpu_seconds_total", jiffies / USER_HZ, mode=mode)
            prev = self._prev.get("cpu")
            shares = _shares(prev, total) if prev else None
            if shares:
                user, nice, system, idle, iowait, irq, softirq, steal = shares
                # With no idle time in the interval the float sum can land an ulp above 100.
                batch.add("cpu_usage", min(100.0, user + nice + system + irq + softirq + steal))
                batch.add("cpu_user", user + nice)
                batch.add("cpu_system", system + irq + softirq)
                batch.add("cpu_iowait", iowait)
                batch.add("cpu_steal", steal)
        for name, cur in cpus.items():
            if name == "cpu":
                continue
            prev = self._prev.get(name)
            shares = _shares(prev, cur) if prev else None
            if shares:
                batch.add("cpu_core_usage", 100.0 - shares[_IDLE] - shares[_IOWAIT], cpu=name[3:])
        self._prev = cpus  # an offlined core drops out here and restarts its baseline

    def _loadavg(self, batch: Batch, proc: str, now: float) -> None:
        load1, load5, load15 = read_bytes(f"{proc}/loadavg").split()[:3]
        batch.add("load_1", float(load1))
        batch.add("load_5", float(load5))
        batch.add("load_15", float(load15))

    def _psi(self, batch: Batch, proc: str, now: float) -> None:
        psi = read_psi_totals(f"{proc}/pressure/cpu")
        if psi is not None:
            if self._raw:
                psi_counters(batch.counters, "cpu", psi)
            batch.add("psi_cpu_some", psi_percent(self._rates, "cpu.some", psi.get("some"), now))

    _PARTS = (("stat", _stat), ("loadavg", _loadavg), ("pressure/cpu", _psi))

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        proc = str(self.roots.proc)  # string paths: a Path join per file costs more than its read
        self.parts.read_each(self, batch, proc, now, self._PARTS)
        return batch
