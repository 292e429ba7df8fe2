"""Memory: /proc/meminfo levels, PSI memory and io, OOM kills from /proc/vmstat.

Each file is read apart: one that cannot be read costs only its own readings.
"""

from __future__ import annotations

import logging

from collectors.base import Parts, Rates, read_bytes
from collectors.cpu import psi_counters, psi_percent, read_psi_totals
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch

log = logging.getLogger(__name__)


def _vmstat_value(text: bytes, key: str) -> float | None:
    """One field of /proc/vmstat, found without parsing its ~180 other lines."""
    at = text.find(f"\n{key} ".encode())
    if at < 0:
        return None
    start = at + len(key) + 2
    end = text.find(b"\n", start)
    return float(text[start:end if end >= 0 else None])


# The meminfo fields read below; the other ~50 lines are not parsed.
_MEMINFO_KEYS = ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapTotal", "SwapFree")


def _meminfo(text: bytes) -> dict[str, float]:
    """`_MEMINFO_KEYS` of /proc/meminfo (kB), each found by name; a key the kernel lacks is absent."""
    text = b"\n" + text
    out: dict[str, float] = {}
    for key in _MEMINFO_KEYS:
        at = text.find(f"\n{key}:".encode())
        if at < 0:
            continue
        start = at + len(key) + 2
        end = text.find(b"\n", start)
        parts = text[start:end if end >= 0 else None].split()
        if parts:
            try:
                out[key] = float(parts[0])
            except ValueError:
                continue
    return out


class MemoryCollector:
    name = "memory"
    sources = ('/proc/meminfo', '/proc/pressure/memory', '/proc/pressure/io', '/proc/vmstat')

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self._raw = settings.raw_counters
        self._rates = Rates()
        self.parts = Parts(log)

    def _meminfo(self, batch: Batch, proc: str, now: float) -> None:
        mem = _meminfo(read_bytes(f"{proc}/meminfo"))  # kB
        total = mem["MemTotal"] * 1024
        available = mem.get("MemAvailable")
        if available is None:
            # Kernels before 3.14 have no MemAvailable; this is what it approximates.
            available = mem.get("MemFree", 0) + mem.get("Buffers", 0) + mem.get("Cached", 0)
        available *= 1024
        batch.add("mem_total", total)
        batch.add("mem_available", available)
        batch.add("mem_used", total - available)
        batch.add("mem_usage", (total - available) * 100.0 / total if total else None)
        swap_total = mem.get("SwapTotal", 0)
        swap_used = swap_total - mem.get("SwapFree", 0)
        batch.add("swap_usage", swap_used * 100.0 / swap_total if swap_total > 0 else 0.0)

    def _psi(self, batch: Batch, proc: str, now: float, resource: str) -> None:
        psi = read_psi_totals(f"{proc}/pressure/{resource}")
        if psi is None:
            return
        if self._raw:
            psi_counters(batch.counters, resource, psi)
        for kind in ("some", "full"):
            key = f"{resource}.{kind}"
            batch.add(f"psi_{resource}_{kind}", psi_percent(self._rates, key, psi.get(kind), now))

    def _psi_memory(self, batch: Batch, proc: str, now: float) -> None:
        self._psi(batch, proc, now, "memory")

    def _psi_io(self, batch: Batch, proc: str, now: float) -> None:
        self._psi(batch, proc, now, "io")

    def _vmstat(self, batch: Batch, proc: str, now: float) -> None:
        # oom_kill appeared in 4.13; older kernels give no sample rather than a zero.
        oom = _vmstat_value(read_bytes(f"{proc}/vmstat"), "oom_kill")
        if oom is not None:
            batch.counters["vmstat.oom_kill"] = oom
            batch.add_total("oom_kills_total", oom)
            batch.add("oom_kills", self._rates.delta("oom_kill", oom, now))

    _PARTS = (("meminfo", _meminfo), ("pressure/memory", _psi_memory), ("pressure/io", _psi_io),
              ("vmstat", _vmstat))

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        proc = str(self.roots.proc)  # string paths: a Path join per file costs more than its read
        self.parts.read_each(self, batch, proc, now, self._PARTS)
        return batch
