"""What the instance page shows first: the machine now, as Glances or Netdata open with.

Cores, CPU and load against the cores, memory and swap, uptime, pressure (PSI), traffic per
interface and the top processes, each from its latest sample (none older than a few
intervals: a silent machine shows dashes, not old numbers as if they were now).
"""

from __future__ import annotations

from typing import Any

from checks.windows import fmt_duration
from diag.process_history import ProcessHistory
from diag.settings.stale import NOW_STRIP_FLOOR, stale_after
from diag.store import ReadStore

TOP_INTERFACES = 4
TOP_PROCESSES = 5


def _latest(store: ReadStore, instance_id: str, metric: str, max_age: float) -> Any:
    try:
        frame = store.latest(metric, instance_id=instance_id, max_age=max_age)
    except Exception:  # noqa: BLE001 - a store that cannot answer shows dashes, not a broken page
        return None
    return None if frame is None or frame.empty else frame


def _one(store: ReadStore, instance_id: str, metric: str, max_age: float) -> float | None:
    frame = _latest(store, instance_id, metric, max_age)
    return None if frame is None else float(frame["value"].iloc[-1])


def bits(v: float | None) -> str:
    if v is None:
        return "–"
    for unit, size in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if v >= size:
            return f"{v / size:.3g} {unit}"
    return f"{v:.0f} bit/s"


def gib(v: float | None) -> str:
    return "–" if v is None else f"{v / 2**30:.3g} GiB"


def now_strip(store: ReadStore, processes: ProcessHistory, instance_id: str, interval: float) -> dict[str, Any]:
    max_age = stale_after(interval, NOW_STRIP_FLOOR)
    one = lambda m: _one(store, instance_id, m, max_age)  # noqa: E731
    cores_frame = _latest(store, instance_id, "cpu_core_usage", max_age)
    cores = None if cores_frame is None or "cpu" not in cores_frame else int(cores_frame["cpu"].nunique())
    load = [one(m) for m in ("load_1", "load_5", "load_15")]
    uptime = one("uptime")
    out: dict[str, Any] = {
        "cores": cores, "cpu": one("cpu_usage"), "load": load,
        "load_per_core": None if load[0] is None or not cores else load[0] / cores,
        "mem_used": gib(one("mem_used")), "mem_total": gib(one("mem_total")), "mem_usage": one("mem_usage"),
        "swap_usage": one("swap_usage"), "uptime": None if uptime is None else fmt_duration(uptime),
        "psi": {"cpu": one("psi_cpu_some"), "memory": one("psi_memory_some"), "io": one("psi_io_some")},
    }
    rates: dict[str, dict[str, float]] = {}
    for metric in ("net_in", "net_out"):
        frame = _latest(store, instance_id, metric, max_age)
        if frame is not None and "interface" in frame:
            for iface, v in zip(frame["interface"], frame["value"]):
                rates.setdefault(str(iface), {})[metric] = float(v)
    busiest = sorted(rates.items(), key=lambda kv: -(kv[1].get("net_in", 0) + kv[1].get("net_out", 0)))
    out["interfaces"] = [{"name": name, "in": bits(r.get("net_in")), "out": bits(r.get("net_out"))}
                         for name, r in busiest[:TOP_INTERFACES]]
    out["more_interfaces"] = max(0, len(busiest) - TOP_INTERFACES)
    try:
        snap = processes.at(instance_id) or {}
    except Exception:  # noqa: BLE001 - the strip without its process lists
        snap = {}
    out["by_cpu"] = (snap.get("by_cpu") or [])[:TOP_PROCESSES]
    out["by_memory"] = (snap.get("by_memory") or [])[:TOP_PROCESSES]
    out["processes_at"] = snap.get("ts")
    return out
