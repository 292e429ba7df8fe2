"""State checks: kernel faults, reboots, and an instance that stopped reporting.

Recommendations follow the seeds' kernel chapter (Tencent CVM "内核问题定位及处理":
hung_task, soft lockup, panic and the *_panic sysctls) and the self-check's state items.
"""

from __future__ import annotations

import numpy as np

from checks.base import Check, CheckContext, CheckResult, level_status
from checks.happenings import event_json, event_time, events_for, happening_status, kernel_log_read_at, kernel_log_unread
from checks.windows import fmt_duration, fmt_time, thresholds
from diag.settings.stale import SERIES_FLOOR, stale_after

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


def silent(last: float | None, now: float, limit: float) -> bool:
    """state.stopped's "now" part: no sample ever, or none for `limit` seconds. Health judges
    it too, from the instance's last sample, so a silent agent turns Impaired between diagnoses."""
    return last is None or now - last >= limit


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
    if silent(last, float(ctx.now), limit):
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


# -- state.failed_units ---------------------------------------------------------------------

# What systemd's Result of a failed unit means, and where to look first.
_RESULTS = {
    "exit-code": "its process exited with an error status: its own log lines say why (a bad config, a port in use, "
                 "a missing file or dependency)",
    "signal": "its process was killed by a signal (the OOM killer? see `journalctl -k | grep -i oom`)",
    "core-dump": "its process crashed and dumped core: `coredumpctl info {unit}` shows the stack",
    "timeout": "it did not start or stop within TimeoutStartSec/TimeoutStopSec: something it waits for (the "
               "network, a mount, a socket) never came, or it starts too slowly",
    "start-limit-hit": "it failed too often in a row and systemd gave up restarting it (StartLimitBurst): fix the "
                       "first failure in its log, then `systemctl reset-failed {unit}`",
    "watchdog": "it stopped answering systemd's watchdog (WatchdogSec): it hung",
    "oom-kill": "the kernel's OOM killer killed it: see performance.memory and its MemoryMax",
    "resources": "systemd could not set it up (a user, directory, file or namespace it needs is missing)",
    "exec-condition": "its ExecCondition refused to start it",
}


def _units_facts(ctx: CheckContext) -> dict:
    snap = ctx.facts()
    got = snap.get("systemd") if isinstance(snap, dict) else None
    return got if isinstance(got, dict) else {}


def _failed_units(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    sd = _units_facts(ctx)
    ev: dict = {"thresholds": th}
    if sd:
        ev["facts_age_seconds"] = ctx.facts_age()
    count = ctx.series("systemd_units_failed", check.lookback)
    if count.empty:
        if sd.get("present") is False:
            return CheckResult("not_applicable", sd.get("reason") or "systemd is not running on this machine", ev)
        if sd.get("error"):
            return CheckResult("unknown", f"systemd runs, but its units could not be listed: {sd['error']}", ev)
        return CheckResult("unknown", "no systemd unit readings in the lookback, and no facts to tell whether "
                                      "systemd runs here", ev)
    stale = stale_after(ctx.interval, SERIES_FLOOR)
    last = count.loc[count["ts"].idxmax()]
    current = float(last["ts"]) >= float(ctx.end) - stale
    ev["failed_now"] = int(last["value"]) if current else None
    by_name = {u["unit"]: u for key in ("failed", "restarting") for u in sd.get(key) or [] if isinstance(u, dict)}

    units = []
    frame = ctx.series("systemd_unit_failed", check.lookback)
    if not frame.empty:
        for name, g in frame.groupby("unit", sort=True):
            g = g.sort_values("ts")
            hit = g[g["value"] >= 1]
            if hit.empty:
                continue
            row = g.iloc[-1]
            now = current and float(row["value"]) >= 1 and float(row["ts"]) >= float(ctx.end) - stale
            f = by_name.get(str(name), {})
            u = {"unit": str(name), "result": str(hit.iloc[-1]["result"]), "failed_now": bool(now),
                 "last_seen_failed": float(hit["ts"].max()), "since": f.get("since", "")}
            for k in ("lines", "lines_error"):
                if k in f:
                    u[k] = f[k]
            units.append(u)
    units.sort(key=lambda u: (not u["failed_now"], u["unit"]))
    loops = []
    # A loop is a present condition: restarts in the lookback's last hour, not over 12 h.
    loop_window = th["restart_window_seconds"]
    restarts = ctx.series("systemd_unit_restarts", min(check.lookback, loop_window))
    if not restarts.empty:
        for name, n in restarts.groupby("unit", sort=True)["value"].sum().items():
            if n >= th["restarts"]:
                f = by_name.get(str(name), {})
                loop = {"unit": str(name), "restarts": int(n), "sub_state": f.get("sub_state", ""),
                        "result": f.get("result", "")}
                for k in ("lines", "lines_error"):
                    if k in f:
                        loop[k] = f[k]
                loops.append(loop)
    loops.sort(key=lambda x: -x["restarts"])
    ev["units"], ev["restart_loops"] = units, loops

    now_failed = [u for u in units if u["failed_now"]]
    hidden = (ev["failed_now"] or 0) - len(now_failed)  # beyond the per-unit bound
    window = fmt_duration(check.lookback)
    parts = []
    if now_failed or hidden > 0:
        names = ", ".join(f"{u['unit']} ({u['result']})" for u in now_failed)
        more = f"{' and ' if names else ''}{hidden} more" if hidden > 0 else ""
        parts.append(f"{ev['failed_now']} failed unit(s) now: {names}{more}")
    earlier = [u for u in units if not u["failed_now"]]
    if earlier:
        parts.append("failed earlier in the last " + window + ": " +
                     ", ".join(f"{u['unit']} ({u['result']}, last at {fmt_time(u['last_seen_failed'])})" for u in earlier))
    if loops:
        parts.append("restarting in a loop: " + ", ".join(f"{x['unit']} restarted {x['restarts']} times in the last "
                                                          f"{fmt_duration(loop_window)}" for x in loops))
    if not parts:
        return CheckResult("ok", f"no failed unit and no restart loop in the last {window}", ev)
    status = "critical" if (now_failed or hidden > 0) and check.severity == "critical" else "warning"
    recs = []
    for u in (now_failed or earlier)[:3]:
        why = _RESULTS.get(u["result"], f"its result is {u['result']}").format(unit=u["unit"])
        recs.append(f"{u['unit']} failed: {why}. Read `systemctl status {u['unit']}` and `journalctl -u {u['unit']} -b "
                    f"-n 50` (its last lines are in the evidence), fix the cause, then `systemctl restart {u['unit']}`; "
                    f"a unit no longer needed is `systemctl disable --now` and `systemctl reset-failed`.")
    for x in loops[:3]:
        recs.append(f"{x['unit']} fails soon after each start and its Restart= setting brings it back "
                    f"({x['restarts']} restarts in the last {fmt_duration(loop_window)}): read `journalctl -u {x['unit']} -b` for the "
                    f"failure and fix its cause (often a dependency that is not up, or a config error); RestartSec= "
                    f"and StartLimitBurst= decide how fast it loops.")
    return CheckResult(status, "; ".join(parts), ev, " ".join(recs))


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
    Check("state.failed_units", "state", "Failed systemd units", "critical",
          "systemd units in the failed state, and services that restart in a loop (their NRestarts rising).",
          "Read the unit's status and journal, fix the cause, then restart it (or reset-failed a unit no longer needed).",
          _failed_units, thresholds={"restarts": 3, "restart_window_seconds": 3600}),
)
