"""Hardware checks: software RAID, memory errors, thermal throttling, temperatures.

Each reads the series of collectors/hardware.py. A machine without the source (no md
array, no ECC memory with an EDAC driver, no thermal_throttle counters, no hwmon sensor:
a virtual machine has none of them) reports no series, and the check is `not_applicable`
naming the file that would have held it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from checks.base import Check, CheckContext, CheckResult, Status, level_status
from checks.happenings import happening_status
from checks.windows import fmt_time, groups, runs, thresholds
from diag.settings.stale import SERIES_FLOOR, stale_after

_RANK = {"ok": 0, "warning": 1, "critical": 2}
# What rebuilds redundancy or moves data: the array is weaker until it ends. A `check`
# (the monthly scrub of mdadm's checkarray) only reads, and is reported without a finding.
_REBUILDING = ("resync", "recovery", "reshape", "repair")


def _worst(statuses: list[Status]) -> Status:
    return max(statuses, key=lambda s: _RANK.get(s, 0), default="ok")


def _latest_by(ctx: CheckContext, metric: str, keys: list[str], newest: float) -> dict[tuple[str, ...], float]:
    """The latest value of each series still reporting (not gone for stale_after)."""
    lat = ctx.latest(metric)
    if lat.empty:
        return {}
    out = {}
    for r in lat.to_dict("records"):
        if float(r["ts"]) >= newest - stale_after(ctx.interval, SERIES_FLOOR):
            out[tuple(str(r.get(k) or "") for k in keys)] = float(r["value"])
    return out


# -- hardware.raid ---------------------------------------------------------------------------

def _raid(ctx: CheckContext, check: Check) -> CheckResult:
    frame = ctx.series("md_degraded", check.lookback)
    if frame.empty:
        return CheckResult("not_applicable", "no software RAID array: /proc/mdstat lists none "
                                             "(or the md driver is not loaded)", {})
    newest = float(frame["ts"].max())
    disks = _latest_by(ctx, "md_disks", ["array"], newest)
    active = _latest_by(ctx, "md_disks_active", ["array"], newest)
    failed = _latest_by(ctx, "md_disks_failed", ["array"], newest)
    syncs: dict[str, tuple[str, float]] = {}
    for (array, action), v in _latest_by(ctx, "md_sync_progress", ["array", "action"], newest).items():
        syncs[array] = (action, v)
    arrays, statuses, parts = [], [], []
    for labels, ts, v in groups(frame, ["array"]):
        name = labels["array"]
        if ts[-1] < newest - stale_after(ctx.interval, SERIES_FLOOR):
            continue  # stopped or renamed: not judged as now, and a degraded past shows below
        bad = v >= 0.5
        key = (name,)
        action, progress = syncs.get(name, ("", None))
        a: dict[str, Any] = {"array": name, "degraded": bool(bad[-1]), "disks": disks.get(key),
                             "active": active.get(key), "failed": failed.get(key), "action": action or None,
                             "progress": progress,
                             "degraded_runs": [r.to_json() for r in runs(ts, bad, v, float(ctx.interval))]}
        arrays.append(a)
        sync = f", {action} at {progress:.1f} %" if action else ""
        if bad[-1]:
            statuses.append(level_status(check, True, True))
            parts.append(f"{name} degraded: {_members(a)}{sync}")
        elif bad.any():
            statuses.append(level_status(check, False, True))
            parts.append(f"{name} was degraded from {fmt_time(a['degraded_runs'][-1]['start'])} to "
                         f"{fmt_time(a['degraded_runs'][-1]['end'])}, complete again{sync}")
        elif action in _REBUILDING:
            statuses.append("warning")
            parts.append(f"{name} {action} at {progress:.1f} %: redundancy is not whole until it ends")
        elif (a["failed"] or 0) > 0:
            statuses.append("warning")
            # md_disks is 0 only for an array that is not assembled (inactive).
            state = "inactive (not assembled)" if a["disks"] == 0 else "complete"
            parts.append(f"{name} {state}, but {a['failed']:.0f} member(s) marked failed (F) are still in it")
    ev = {"arrays": arrays}
    if not arrays:
        return CheckResult("not_applicable", "no software RAID array reports now (/proc/mdstat lists none)", ev)
    if not parts:
        checking = [f"{a['array']} {a['action']} at {a['progress']:.1f} %" for a in arrays if a["action"]]
        msg = f"{len(arrays)} array(s) complete: " + ", ".join(a["array"] for a in arrays)
        return CheckResult("ok", msg + (f" ({'; '.join(checking)})" if checking else ""), ev)
    worst = next((a for a in arrays if a["degraded"]), arrays[0])
    # The worst first: a degraded array must lead the message, whatever its name sorts as.
    order = sorted(range(len(parts)), key=lambda i: -_RANK.get(statuses[i], 0))
    return CheckResult(_worst(statuses), "; ".join(parts[i] for i in order), ev, _raid_advice(worst["array"]))


def _members(a: dict[str, Any]) -> str:
    if a["disks"] is None or a["active"] is None:
        return "fewer members in sync than it needs"
    s = f"{a['active']:.0f} of {a['disks']:.0f} members in sync"
    return s + (f", {a['failed']:.0f} failed" if a["failed"] else "")


def _raid_advice(array: str) -> str:
    return (f"Run `mdadm --detail /dev/{array}` to see which member failed or is missing, and `dmesg -T | grep -iE "
            f"'md/|{array}|I/O error'` for why. Check the disk (`smartctl -a /dev/sdX`); replace it, then "
            f"`mdadm /dev/{array} --remove /dev/sdX1` and `mdadm /dev/{array} --add /dev/sdY1` to rebuild "
            f"(`cat /proc/mdstat` shows the recovery). Until it completes another failure may lose the data: "
            f"check that the backups are current.")


# -- hardware.memory_errors ------------------------------------------------------------------

def _rises(frame: pd.DataFrame) -> dict[str, tuple[float, float | None]]:
    """Per controller: (errors in the lookback, time of the last rise)."""
    out = {}
    for labels, ts, v in groups(frame, ["controller"]):
        rose = v > 0
        out[labels["controller"]] = (float(np.nansum(v[rose])), float(ts[rose].max()) if rose.any() else None)
    return out


def _memory_errors(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    ce = ctx.series("edac_correctable_errors", check.lookback)
    ue = ctx.series("edac_uncorrectable_errors", check.lookback)
    if ce.empty and ue.empty:
        return CheckResult("not_applicable", "no EDAC memory controller: /sys/devices/system/edac/mc has none "
                                             "(no ECC memory, or its EDAC driver is not loaded)", {"thresholds": th})
    ce_by, ue_by = _rises(ce), _rises(ue)
    controllers = sorted(set(ce_by) | set(ue_by))
    rows = [{"controller": c, "correctable": ce_by.get(c, (0.0, None))[0], "uncorrectable": ue_by.get(c, (0.0, None))[0],
             "last_correctable": ce_by.get(c, (0.0, None))[1], "last_uncorrectable": ue_by.get(c, (0.0, None))[1]}
            for c in controllers]
    ev = {"thresholds": th, "controllers": rows}
    ue_rows = [r for r in rows if r["uncorrectable"] >= th["uncorrectable"]]
    ce_rows = [r for r in rows if r["correctable"] >= th["correctable"]]
    if not ue_rows and not ce_rows:
        return CheckResult("ok", f"no memory error in the lookback on {len(rows)} memory controller(s)", ev)
    parts = [f"{r['controller']}: {r['uncorrectable']:.0f} uncorrectable, last at {fmt_time(r['last_uncorrectable'])}"
             for r in ue_rows]
    parts += [f"{r['controller']}: {r['correctable']:.0f} corrected" for r in ce_rows if r not in ue_rows]
    if ue_rows:
        status, _ = happening_status(ctx, check, [r["last_uncorrectable"] for r in ue_rows])
    else:
        status = "warning"
    return CheckResult(status, "memory errors in the lookback: " + "; ".join(parts), ev)


# -- hardware.throttling ---------------------------------------------------------------------

def _throttling(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    found = {}
    for metric, what in (("cpu_core_throttles", "core"), ("cpu_package_throttles", "package")):
        f = ctx.series(metric, check.lookback)
        if not f.empty:
            v, ts = f["value"].to_numpy(dtype=float), f["ts"].to_numpy(dtype=float)
            rose = v > 0
            found[what] = {"throttles": float(np.nansum(v[rose])), "intervals": int(rose.sum()),
                           "last": float(ts[rose].max()) if rose.any() else None}
    if not found:
        return CheckResult("not_applicable", "the CPUs have no thermal_throttle counters in /sys/devices/system/cpu "
                                             "(a virtual machine, or a CPU whose driver has none)", {"thresholds": th})
    total = sum(x["throttles"] for x in found.values())
    ev = {"thresholds": th, **found, "total": total}
    if total < th["throttles"]:
        return CheckResult("ok", "no thermal throttling in the lookback", ev)
    last = max(x["last"] for x in found.values() if x["last"] is not None)
    msg = ", ".join(f"{x['throttles']:.0f} {what} throttle(s) in {x['intervals']} interval(s)"
                    for what, x in found.items() if x["throttles"])
    return CheckResult("warning", f"CPU throttled for heat or power: {msg}; last at {fmt_time(last)}", ev)


# -- hardware.temperature --------------------------------------------------------------------

def _temperature(ctx: CheckContext, check: Check) -> CheckResult:
    frame = ctx.series("hw_temperature", check.lookback)
    if frame.empty:
        return CheckResult("not_applicable", "no temperature sensor in /sys/class/hwmon (usual in a virtual machine)", {})
    newest = float(frame["ts"].max())
    crit = _latest_by(ctx, "hw_temperature_crit", ["chip", "sensor"], newest)
    high = _latest_by(ctx, "hw_temperature_max", ["chip", "sensor"], newest)
    sensors, findings, statuses = [], [], []
    for labels, ts, v in groups(frame, ["chip", "sensor"]):
        key = (labels["chip"], labels["sensor"])
        current = ts[-1] >= newest - stale_after(ctx.interval, SERIES_FLOOR)
        row: dict[str, Any] = {**labels, "value": round(float(v[-1]), 2), "peak": round(float(np.nanmax(v)), 2),
                               "crit": crit.get(key), "max": high.get(key), "current": bool(current)}
        sensors.append(row)
        if row["crit"] is not None and (v >= row["crit"]).any():
            now_hit = bool(current and v[-1] >= row["crit"])
            statuses.append(level_status(check, now_hit, True))
            when = "now" if now_hit else f"peak {row['peak']:g} °C at {fmt_time(float(ts[int(np.nanargmax(v))]))}"
            findings.append((row, f"{key[0]} {key[1]} at or over its critical {row['crit']:g} °C ({when}, "
                                  f"{row['value']:g} °C last)"))
        elif row["max"] is not None and (v >= row["max"]).any():
            statuses.append("warning")
            findings.append((row, f"{key[0]} {key[1]} reached its high limit {row['max']:g} °C "
                                  f"(peak {row['peak']:g} °C, {row['value']:g} °C last)"))
    hottest = max(sensors, key=lambda r: r["value"])
    limited = sum(1 for r in sensors if r["crit"] is not None or r["max"] is not None)
    ev = {"sensors": sensors, "with_limits": limited, "hottest": hottest}
    if not findings:
        note = f"{limited} of {len(sensors)} give limits" if limited else "none gives a limit to compare with"
        return CheckResult("ok", f"{len(sensors)} temperature sensor(s) below their limits ({note}); hottest "
                                 f"{hottest['chip']} {hottest['sensor']} at {hottest['value']:g} °C", ev)
    worst = findings[0][0]
    advice = (f"{worst['chip']} {worst['sensor']} runs too hot. Check the cooling: fans (`sensors`, the hw_fan_speed "
              f"series: 0 rpm on a fan that should turn means it failed), dust in heat sinks and filters, the air "
              f"flow and room temperature; for a CPU, what load drives it (top processes) and whether it throttles "
              f"(hardware.throttling); for an NVMe drive, its air flow and `nvme smart-log`. Sustained heat shortens "
              f"the hardware's life, and at the critical limit it throttles or powers off.")
    return CheckResult(_worst(statuses), "; ".join(m for _, m in findings), ev, advice)


CHECKS: tuple[Check, ...] = (
    Check("hardware.raid", "hardware", "Software RAID arrays whole", "critical",
          "A software RAID array (/proc/mdstat) running degraded, with fewer members in sync than it needs "
          "(critical while it holds, warning when it was degraded earlier in the lookback), or rebuilding "
          "(resync, recovery, reshape: warning with its progress); a read-only `check` is no finding.",
          "Find the failed member with `mdadm --detail /dev/mdX`, replace the disk and add the new one; watch "
          "`cat /proc/mdstat` until the recovery ends.",
          _raid),
    Check("hardware.memory_errors", "hardware", "Memory errors (EDAC)", "critical",
          "Memory errors counted by EDAC: uncorrectable ones in the lookback (critical within the last 15 "
          "minutes, warning earlier), correctable ones rising (warning: the DIMM is wearing out).",
          "Find the DIMM (`edac-util -v`, or `ras-mc-ctl --errors` with rasdaemon; /sys/devices/system/edac/mc/"
          "mc*/dimm*/dimm_label), plan its replacement, and check that the kernel log names no process killed "
          "for a memory error.",
          _memory_errors, thresholds={"correctable": 1, "uncorrectable": 1}),
    Check("hardware.throttling", "hardware", "CPU thermal throttling", "non_critical",
          "CPU cores or packages throttled for heat or power (thermal_throttle counts) rising in the lookback.",
          "The CPU slows itself to cool down: check the cooling (fans, heat sink, thermal paste, air flow, room "
          "temperature) and the temperatures (hardware.temperature); a package throttle without core heat is "
          "usually a power limit (BIOS, `turbostat`).",
          _throttling, thresholds={"throttles": 1}),
    Check("hardware.temperature", "hardware", "Temperatures within their limits", "critical",
          "A hwmon temperature at or over the critical limit its own sensor gives (temp*_crit: critical while it "
          "holds, warning when it held earlier in the lookback) or over its high limit (temp*_max: warning).",
          "Check the cooling of the part the sensor belongs to: fans, dust, air flow, room temperature, load.",
          _temperature),
)
