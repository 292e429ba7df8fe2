"""GPU checks (issue 20): memory near full, temperature, uncorrected ECC errors, Xid errors.

Each reads the series of collectors/gpu.py (NVML) and the GPU.XidError events of the
kernel log. A machine without an NVIDIA GPU, its driver or nvidia-ml-py has no GPU series,
and every check is `not_applicable` saying so; the Xid check still reports Xid lines if
the kernel log has any (a GPU that fell off the bus may be gone from NVML too).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from checks.base import Check, CheckContext, CheckResult, Status, level_status
from checks.happenings import (event_json, event_time, events_for, happening_status, kernel_log_read_at,
                               kernel_log_unread)
from checks.windows import fmt_time, groups, thresholds
from diag.settings.stale import SERIES_FLOOR, stale_after

NO_GPU = ("no GPU metrics in the lookback: NVML reports no NVIDIA GPU on this machine, or the NVIDIA driver "
          "(libnvidia-ml.so.1) or the nvidia-ml-py package is not installed")
KEYS = ["gpu", "name", "uuid", "pci"]
_RANK = {"ok": 0, "warning": 1, "critical": 2}


def _worst(statuses: list[Status]) -> Status:
    return max(statuses, key=lambda s: _RANK.get(s, 0), default="ok")


def _who(labels: dict[str, str]) -> str:
    name = f" {labels['name']}" if labels.get("name") else ""
    pci = f" at {labels['pci']}" if labels.get("pci") else ""
    return f"GPU {labels.get('gpu', '?')}{name}{pci}"


def _gpus(ctx: CheckContext, check: Check) -> dict[str, dict[str, str]]:
    """The GPUs that reported in the lookback, by PCI address (as Xid lines name them)."""
    f = ctx.series("gpu_memory_total", check.lookback)
    out: dict[str, dict[str, str]] = {}
    for labels, _, _ in groups(f, [k for k in KEYS if k in f]):
        out[str(labels.get("pci", "")).lower() or labels.get("gpu", "")] = labels
    return out


# -- hardware.gpu_memory ---------------------------------------------------------------------

def _memory(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    step = th["window_seconds"]
    frame = ctx.series("gpu_memory_usage", check.lookback, step=step, agg="avg")
    if frame.empty:
        return CheckResult("not_applicable", NO_GPU, {"thresholds": th})
    newest = float(frame["ts"].max())
    rows, statuses, parts = [], [], []
    for labels, ts, v in groups(frame, [k for k in KEYS if k in frame]):
        current = bool(ts[-1] >= newest - stale_after(ctx.interval, SERIES_FLOOR))
        over = v >= th["percent"]
        i = int(np.nanargmax(v))
        row: dict[str, Any] = {**labels, "last": round(float(v[-1]), 2), "peak": round(float(v[i]), 2),
                               "peak_at": float(ts[i]), "windows_over": int(over.sum()), "current": current}
        rows.append(row)
        if not over.any():
            continue
        now_hit = bool(current and over[-1])
        statuses.append(level_status(check, now_hit, True))
        if now_hit:
            parts.append(f"{_who(labels)}: memory {row['last']:.1f} % used ({step / 60:g}-min average)")
        else:
            parts.append(f"{_who(labels)}: memory peaked at {row['peak']:.1f} % at {fmt_time(row['peak_at'])}, "
                         f"{row['last']:.1f} % now")
    ev = {"thresholds": th, "gpus": rows}
    if not parts:
        top = max(rows, key=lambda r: r["peak"])
        return CheckResult("ok", f"{len(rows)} GPU(s), memory below {th['percent']:g} % (peak {top['peak']:.1f} % on "
                                 f"{_who(top)})", ev)
    return CheckResult(_worst(statuses), "; ".join(parts), ev)


# -- hardware.gpu_temperature ----------------------------------------------------------------

def _temperature(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    frame = ctx.series("gpu_temperature", check.lookback)
    if frame.empty:
        return CheckResult("not_applicable", NO_GPU, {"thresholds": th})
    newest = float(frame["ts"].max())
    limits: dict[str, float] = {}
    lat = ctx.latest("gpu_temperature_slowdown")
    for r in ([] if lat.empty else lat.to_dict("records")):
        limits[str(r.get("gpu", ""))] = float(r["value"])
    keys = [k for k in KEYS if k in frame]
    rows, statuses, parts = [], [], []
    for labels, ts, v in groups(frame, keys):
        current = bool(ts[-1] >= newest - stale_after(ctx.interval, SERIES_FLOOR))
        slowdown = limits.get(str(labels.get("gpu", "")))
        i = int(np.nanargmax(v))
        row: dict[str, Any] = {**labels, "last": float(v[-1]), "peak": float(v[i]), "peak_at": float(ts[i]),
                               "slowdown": slowdown, "current": current}
        rows.append(row)
        if slowdown is not None and (v >= slowdown).any():
            now_hit = bool(current and v[-1] >= slowdown)
            statuses.append(level_status(check, now_hit, True))
            when = "now" if now_hit else f"peak {row['peak']:g} °C at {fmt_time(row['peak_at'])}"
            parts.append(f"{_who(labels)} at or over its slowdown temperature {slowdown:g} °C ({when}, "
                         f"{row['last']:g} °C last)")
        elif (v >= th["warning"]).any():
            statuses.append("warning")
            parts.append(f"{_who(labels)} reached {row['peak']:g} °C at {fmt_time(row['peak_at'])} (warning at "
                         f"{th['warning']:g} °C; {row['last']:g} °C last)")
    ev = {"thresholds": th, "gpus": rows}
    if not parts:
        hottest = max(rows, key=lambda r: r["last"])
        return CheckResult("ok", f"{len(rows)} GPU(s) below {th['warning']:g} °C and their slowdown temperatures; "
                                 f"hottest {_who(hottest)} at {hottest['last']:g} °C", ev)
    return CheckResult(_worst(statuses), "; ".join(parts), ev)


# -- hardware.gpu_ecc ------------------------------------------------------------------------

def _ecc(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    ue = ctx.series("gpu_ecc_uncorrected_errors", check.lookback)
    ce = ctx.series("gpu_ecc_corrected_errors", check.lookback)
    if ue.empty and ce.empty:
        if ctx.series("gpu_memory_total", check.lookback).empty:
            return CheckResult("not_applicable", NO_GPU, {"thresholds": th})
        return CheckResult("not_applicable", "no GPU here reports ECC errors (a board without ECC memory, or ECC "
                                             "turned off: `nvidia-smi -q -d ECC`)", {"thresholds": th})
    rows: dict[str, dict[str, Any]] = {}
    for frame, what in ((ue, "uncorrected"), (ce, "corrected")):
        if frame.empty:
            continue
        for labels, ts, v in groups(frame, [k for k in KEYS if k in frame]):
            row = rows.setdefault(labels.get("gpu", ""), {**labels, "uncorrected": 0.0, "corrected": 0.0,
                                                          "last_uncorrected": None, "last_corrected": None})
            rose = v > 0
            row[what] = float(np.nansum(v[rose]))
            row[f"last_{what}"] = float(ts[rose].max()) if rose.any() else None
    gpus = sorted(rows.values(), key=lambda r: r.get("gpu", ""))
    ev = {"thresholds": th, "gpus": gpus}
    bad = [r for r in gpus if r["uncorrected"] >= th["uncorrected"]]
    if not bad:
        corrected = sum(r["corrected"] for r in gpus)
        note = f" ({corrected:.0f} corrected, which ECC handled)" if corrected else ""
        return CheckResult("ok", f"no uncorrected ECC error in the lookback on {len(gpus)} GPU(s){note}", ev)
    status, _ = happening_status(ctx, check, [r["last_uncorrected"] for r in bad])
    msg = "; ".join(f"{_who(r)}: {r['uncorrected']:.0f} uncorrected ECC error(s), last at "
                    f"{fmt_time(r['last_uncorrected'])}" for r in bad)
    return CheckResult(status, msg, ev)


# -- hardware.gpu_xid ------------------------------------------------------------------------

def _xid(ctx: CheckContext, check: Check) -> CheckResult:
    events = events_for(ctx, check, ["GPU.XidError"])
    gpus = _gpus(ctx, check)
    evs = [event_json(e) for e in events]
    for e in evs:
        g = gpus.get(str(e["labels"].get("pci", "")).lower())
        e["gpu"] = dict(g) if g else None  # the GPU the Xid names, when NVML knows it by that address
    read_at = kernel_log_read_at(ctx, check)
    ev = {"events": evs, "kernel_log_read_at": read_at, "gpus": sorted(gpus)}
    if not evs:
        if not gpus:
            return CheckResult("not_applicable", NO_GPU + ", and the kernel log has no NVIDIA Xid line", ev)
        if read_at is None:
            return CheckResult("unknown", kernel_log_unread(ctx, check, "NVIDIA Xid errors"), ev)
        return CheckResult("ok", f"no NVIDIA Xid error in the kernel log in the lookback ({len(gpus)} GPU(s))", ev)
    hard = [e for e in events if e.get("level") == "CRITICAL"]
    if hard:
        status, _ = happening_status(ctx, check, [event_time(e) for e in hard])
    else:
        status = "warning"  # Xids an application usually causes: its own bug, or a sign to watch
    parts = []
    for e in sorted(evs, key=lambda e: (e["level"] != "CRITICAL", -e["last_time"])):
        lab = e["labels"]
        where = _who(e["gpu"]) if e["gpu"] else f"GPU at {lab.get('pci', '?')}"
        proc = f", {lab['process']} (pid {lab.get('pid', '?')})" if lab.get("process") else ""
        parts.append(f"Xid {lab.get('xid', '?')} on {where}{proc} x{e['count']}, last at {fmt_time(e['last_time'])}: "
                     f"{lab.get('detail') or e['message']}")
    return CheckResult(status, "; ".join(parts), ev, _xid_advice(evs))


_XID_ADVICE = {
    "79": "Xid 79: the GPU fell off the bus and no longer answers. Reboot to get it back; if it recurs, check its "
          "power cables and the power supply, its temperature under load, reseat it, and update the system BIOS "
          "and the driver; a GPU that keeps falling off needs service.",
    "48": "Xid 48: a double-bit ECC error; the application using that memory got wrong data or was stopped. Reset "
          "the GPU (`nvidia-smi -r` with no process on it) or reboot so the page is retired or the row remapped; "
          "see `nvidia-smi -q -d ECC,ROW_REMAPPER` or `-d PAGE_RETIREMENT`.",
    "63": "Xid 63: a page was retired or a row marked for remapping: reset the GPU (`nvidia-smi -r`) or reboot to "
          "activate it.",
    "64": "Xid 64: retiring a page or remapping a row failed: the GPU memory is failing; plan its replacement.",
    "74": "Xid 74: an NVLink error: `nvidia-smi nvlink -s` and `-e` show the link; reset the GPUs, and have a "
          "recurring one serviced.",
    "95": "Xid 95: an uncontained ECC error: reset the GPU (or reboot) before using it again.",
    "119": "Xid 119/120: the GPU's system processor (GSP) timed out or failed: reset the GPU or reboot, and "
           "update the driver.",
}
_XID_ADVICE["120"] = _XID_ADVICE["119"]


def _xid_advice(evs: list[dict[str, Any]]) -> str:
    seen = {str(e["labels"].get("xid", "")) for e in evs}
    parts = list(dict.fromkeys(_XID_ADVICE[x] for x in ("79", "48", "63", "64", "74", "95", "119", "120") if x in seen))
    if not parts or seen - set(_XID_ADVICE):
        parts.append("Look the number up in NVIDIA's \"Xid Errors\" catalogue: application Xids (13, 31, 43, 45) "
                     "point at the program named in the line (out-of-range access, a killed context); the others "
                     "at the driver or the board. `nvidia-smi -q` shows the GPU's state, and "
                     "`nvidia-bug-report.sh` collects what NVIDIA support asks for.")
    return " ".join(parts)


CHECKS: tuple[Check, ...] = (
    Check("hardware.gpu_memory", "hardware", "GPU memory", "non_critical",
          "GPU memory (NVML) in use at or over the threshold as a 5-minute average, now (warning) or earlier in "
          "the lookback (warning).",
          "See which processes hold GPU memory: `nvidia-smi --query-compute-apps=pid,process_name,used_memory "
          "--format=csv`. Free what is idle, lower the batch size or model size, or move work to another GPU; "
          "frameworks that reserve all memory up front (TensorFlow, JAX) show full GPUs by design: cap them "
          "(TF_FORCE_GPU_ALLOW_GROWTH, XLA_PYTHON_CLIENT_MEM_FRACTION) if other work must share the GPU.",
          _memory, thresholds={"percent": 90, "window_seconds": 300}),
    Check("hardware.gpu_temperature", "hardware", "GPU temperature", "critical",
          "A GPU at or over its own slowdown temperature (critical while it holds, warning when it held earlier in "
          "the lookback), or over the warning threshold (warning).",
          "Check the GPU's cooling: its fans (`nvidia-smi -q -d TEMPERATURE,PERFORMANCE` shows the temperature "
          "and why clocks are slowed), dust, the air flow through the chassis and the room temperature; a power "
          "limit (`nvidia-smi -pl`) lowers the heat of a sustained load.",
          _temperature, thresholds={"warning": 85}),
    Check("hardware.gpu_ecc", "hardware", "GPU memory errors (ECC)", "critical",
          "Uncorrected (double-bit) ECC errors of GPU memory in the lookback: critical within the last 15 minutes, "
          "warning earlier.",
          "Reset the GPU (`nvidia-smi -r`, with no process on it) or reboot so the page is retired or the row "
          "remapped (`nvidia-smi -q -d ECC,ROW_REMAPPER,PAGE_RETIREMENT`); rerun the work that used it, its "
          "results may be wrong. A GPU whose errors recur, or whose remapping fails (Xid 64), needs replacing.",
          _ecc, thresholds={"uncorrected": 1}),
    Check("hardware.gpu_xid", "hardware", "GPU Xid errors", "critical",
          "NVIDIA Xid errors in the kernel log: the Xids that need a GPU reset, a reboot or service (48, 63, 64, "
          "74, 79 fallen off the bus, 95, 119, 120...) are critical within the last 15 minutes and warning "
          "earlier; the others (usually the application's, 13, 31, 43) a warning.",
          "Look up the Xid number in NVIDIA's \"Xid Errors\" catalogue; `nvidia-smi -q` shows the GPU's state.",
          _xid),
)
