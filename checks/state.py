"""State checks: kernel faults, reboots, and an instance that stopped reporting.

Recommendations follow the seeds' kernel chapter (Tencent CVM "内核问题定位及处理":
hung_task, soft lockup, panic and the *_panic sysctls) and the self-check's state items.
"""

from __future__ import annotations

import numpy as np

from checks.base import Check, CheckContext, CheckResult, level_status
from checks.happenings import event_json, event_time, events_for, happening_status, kernel_log_read_at, kernel_log_unread
from checks.windows import fmt_duration, fmt_time, thresholds

FAULTS = ("Kernel.HungTask", "Kernel.Panic", "Kernel.SoftLockup", "Kernel.HardLockup")
REBOOTS = ("Instance.Reboot", "InstanceFailure.Reboot")

_ADVICE = {
    "Kernel.HungTask": ("a task stayed in D state (uninterruptible I/O wait) longer than kernel.hung_task_timeout_secs "
                        "(120 s by default): {who}. It almost always waits on storage or a network filesystem: check "
                        "storage.io_hang and storage.io_errors, `dmesg -T` around the report, and NFS/iSCSI servers. "
                        "With kernel.hung_task_panic=1 the machine reboots on it."),
    "Kernel.SoftLockup": ("a CPU ran kernel code without yielding for over 2 x kernel.watchdog_thresh: {who}. Look at "
                          "the stack in the log lines, heavy interrupt or I/O load at that time, and known bugs of the "
                          "running kernel (`uname -r`); update the kernel. kernel.softlockup_panic=1 turns it into a "
                          "reboot."),
    "Kernel.HardLockup": ("a CPU stopped taking interrupts (NMI watchdog): {who}. This is a kernel or hardware/"
                          "hypervisor fault: update the kernel and firmware; on a VM report it to the provider."),
    "Kernel.Panic": ("the kernel panicked or oopsed: {who}. Keep the log lines (and /sys/fs/pstore, or a kdump "
                     "vmcore: install kdump-tools/kexec-tools to capture the next one), check whether a hung task or "
                     "soft lockup panic sysctl triggered it, and update the kernel or the faulty driver."),
}


def _who(e: dict) -> str:
    lab = e["labels"]
    if lab.get("task"):
        return f"task {lab['task']} (pid {lab.get('pid', '?')})"
    if lab.get("process"):
        return f"{lab['process']} (pid {lab.get('pid', '?')}) on CPU {lab.get('cpu', '?')}"
    if lab.get("cpu"):
        return f"CPU {lab['cpu']}"
    return lab.get("reason") or e["message"] or "see the log lines"


def _kernel_fault(ctx: CheckContext, check: Check) -> CheckResult:
    events = events_for(ctx, check, FAULTS)
    evs = [event_json(e) for e in events]
    status, now = happening_status(ctx, check, [event_time(e) for e in events])
    ev = {"events": evs, "by_type": {t: sum(e["count"] for e in evs if e["type"] == t) for t in FAULTS},
          "kernel_log_read_at": kernel_log_read_at(ctx, check)}
    if not evs:
        if ev["kernel_log_read_at"] is None:
            return CheckResult("unknown", kernel_log_unread(ctx, check, "hung tasks, lockups or panics"), ev)
        return CheckResult("ok", "no hung task, soft or hard lockup, or panic in the lookback", ev)
    last = max(evs, key=lambda e: e["last_time"])
    kinds = ", ".join(f"{t.split('.')[1]} x{n}" for t, n in ev["by_type"].items() if n)
    when = "in the last 15 minutes" if now else f"last at {fmt_time(last['last_time'])}"
    msg = f"kernel faults in the lookback ({kinds}), {when}: {last['message']}"
    seen, parts = set(), []
    for e in reversed(evs):
        if e["type"] not in seen:
            seen.add(e["type"])
            parts.append(_ADVICE[e["type"]].format(who=_who(e)))
    rec = "The kernel log shows: " + " Also, ".join(parts)
    return CheckResult(status, msg, ev, rec)


def _boot_time(ctx: CheckContext) -> float | None:
    lat = ctx.latest("uptime")
    if lat.empty:
        return None
    row = lat.sort_values("ts").iloc[-1]
    return float(row["ts"]) - float(row["value"])


def _reboot(ctx: CheckContext, check: Check) -> CheckResult:
    events = events_for(ctx, check, REBOOTS)
    evs = [event_json(e) for e in events]
    boot = _boot_time(ctx)
    since = ctx.monitoring_since
    ev = {"reboots": [{"time": e["time"], "type": e["type"], "cause": e["labels"].get("cause", ""),
                       "boot_id": e["labels"].get("boot_id", ""), "message": e["message"]} for e in evs],
          "boot_time": boot, "monitoring_since": since}
    if evs:
        failures = [e for e in evs if e["type"] == "InstanceFailure.Reboot"]
        last = evs[-1]
        msg = f"{len(evs)} reboot(s) in the lookback, last at {fmt_time(last['time'])}"
        if failures:
            causes = ", ".join(sorted({e["labels"].get("cause", "") or "unknown cause" for e in failures}))
            msg += f"; {len(failures)} after a failure ({causes})"
            rec = ("The machine restarted after a failure: see state.kernel_fault and the log lines kept in "
                   "/sys/fs/pstore or `journalctl -b -1 -p warning` (the boot before), and fix the cause before it "
                   "repeats.")
        else:
            rec = ("The machine restarted. If nobody planned it, read `last -x reboot shutdown` and "
                   "`journalctl -b -1 -n 100` (the end of the previous boot) to learn who or what restarted it.")
        return CheckResult(level_status(check, False, True), msg, ev, rec)
    if boot is None:
        return CheckResult("unknown", "no reboot events and no uptime sample to tell the boot time", ev)
    if since is not None and boot < since:
        return CheckResult("ok", f"booted at {fmt_time(boot)}, before monitoring began at {fmt_time(since)}", ev)
    return CheckResult("ok", f"no reboot in the lookback (booted at {fmt_time(boot)})", ev)


def _last_sample(ctx: CheckContext) -> float | None:
    last = None
    for m in ("uptime", "cpu_usage"):
        lat = ctx.latest(m)
        if not lat.empty:
            t = float(lat["ts"].max())
            last = t if last is None else max(last, t)
    return last


# Stalls are read in buckets: a 12 h lookback of raw points of every collector would cost
# a diagnosis tens of thousands of rows for a series that is almost always 0.
STALL_STEP = 60.0
# A cycle this many intervals after the one before came late: the collection overran.
LATE_FACTOR = 1.5


def _stalls(ctx: CheckContext, check: Check) -> list[dict]:
    """Collectors whose calls hung in the lookback (`collector_stalled`): while one is
    stalled its readings are missing, and that absence is no sign of health."""
    frame = ctx.series("collector_stalled", check.lookback, step=STALL_STEP, agg="max")
    if frame.empty or "collector" not in frame:
        return []
    out = []
    for name, g in frame.groupby("collector"):
        g = g.sort_values("ts")
        ts, hit = g["ts"].to_numpy(dtype=float), g["value"].to_numpy(dtype=float) > 0
        if not hit.any():
            continue
        now = bool(hit[-1])
        clear = np.flatnonzero(~hit)
        # Since: the first bucket of the run that is still going on, else of the last run.
        last_hit = int(np.flatnonzero(hit)[-1])
        before = clear[clear < last_hit]
        first = int(before[-1]) + 1 if before.size else 0
        out.append({"collector": str(name), "stalled_now": now, "since": float(ts[first]),
                    "until": None if now else float(ts[last_hit]) + STALL_STEP,
                    "stalled_minutes": int(hit.sum()) * STALL_STEP / 60})
    return sorted(out, key=lambda s: (not s["stalled_now"], -s["since"]))


def _late_cycles(ctx: CheckContext, d: np.ndarray, limit: float) -> dict:
    """Intervals between samples longer than the collection interval, short of a gap: cycles
    that overran or were skipped while the previous one still ran."""
    late = d[(d > LATE_FACTOR * ctx.interval) & (d < limit)] if d.size and ctx.interval else d[:0]
    return {"count": int(late.size), "longest_seconds": float(late.max()) if late.size else None}


def _stopped(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    limit = th["seconds"]
    last = _last_sample(ctx)
    if last is None:
        return CheckResult("unknown", "no sample ever received from this instance", {"thresholds": th})
    age = float(ctx.now) - last
    frame = ctx.series("uptime", check.lookback)
    gaps = []
    d = np.empty(0)
    if len(frame) > 1:
        ts = np.sort(frame["ts"].to_numpy(dtype=float))
        d = np.diff(ts)
        for i in np.flatnonzero(d >= limit):
            gaps.append({"from": float(ts[i]), "to": float(ts[i + 1]), "seconds": float(d[i])})
    stalls = _stalls(ctx, check)
    ev = {"thresholds": th, "last_sample": last, "age_seconds": round(age, 3), "gaps": gaps,
          "stalled_collectors": stalls, "late_cycles": _late_cycles(ctx, d, limit)}
    if age >= limit:
        return CheckResult(level_status(check, True, True),
                           f"no sample for {fmt_duration(age)} (last at {fmt_time(last)})", ev,
                           "The instance stopped reporting: check that it is powered on and reachable (ping, the "
                           "console or VNC), then that `diag agent` runs there (its service status and log) and "
                           "can reach the server.")
    stuck = [x for x in stalls if x["stalled_now"]]
    if stuck:
        names = ", ".join(f"{x['collector']} (since {fmt_time(x['since'])})" for x in stuck)
        return CheckResult(level_status(check, False, True),
                           f"reporting, but without the readings of stalled collector(s): {names}", ev,
                           _STALL_ADVICE)
    if gaps:
        g = max(gaps, key=lambda x: x["seconds"])
        return CheckResult(level_status(check, False, True),
                           f"reporting now, but silent for {fmt_duration(g['seconds'])} from {fmt_time(g['from'])} "
                           f"({len(gaps)} gap(s) in the lookback)", ev,
                           "The instance or its agent was down for a while: compare with state.reboot and the agent's "
                           "log for that time.")
    if stalls:
        names = ", ".join(f"{x['collector']} ({fmt_time(x['since'])} to {fmt_time(x['until'])})" for x in stalls)
        return CheckResult(level_status(check, False, True),
                           f"reporting now, but collector(s) stalled earlier in the lookback, their readings "
                           f"missing meanwhile: {names}", ev, _STALL_ADVICE)
    return CheckResult("ok", f"reporting (last sample {fmt_duration(age)} ago)", ev)


_STALL_ADVICE = ("A collector's call did not return (the service's log names it): most often a hung mount (NFS, "
                 "FUSE, sshfs, s3fs whose server or daemon is gone) or a process stuck in D state. See "
                 "storage.io_hang, `findmnt` and `cat /proc/<pid>/stack` of tasks in D state; the collector "
                 "resumes by itself once the call returns.")


CHECKS: tuple[Check, ...] = (
    Check("state.kernel_fault", "state", "Kernel faults", "critical",
          "Hung tasks, soft or hard lockups, and kernel panics in the kernel log.",
          "Read the log lines, check storage for hung tasks, and update the kernel.",
          _kernel_fault),
    Check("state.reboot", "state", "Reboots", "non_critical",
          "The machine restarted (the boot id changed) in the lookback.",
          "If nobody planned the reboot, read `last -x` and the previous boot's journal.",
          _reboot),
    Check("state.stopped", "state", "Stopped reporting", "critical",
          "No sample from the instance for 5 minutes.",
          "Check that the instance is on and that its agent runs and reaches the server.",
          _stopped, thresholds={"seconds": 300}),
)
