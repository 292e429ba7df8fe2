"""Performance checks: CPU, CPU steal, memory (5-minute averages over the lookback) and OOM kills.

Recommendations follow the seeds' "CPU or memory usage high" chapters (Tencent CVM: find
the process with `top`, decide whether it is business, abnormal or malware, then
optimise or upgrade; Alibaba: CPU load persistently high, consider more vCPUs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from checks.base import Check, CheckContext, CheckResult, level_status
from checks.happenings import event_json, event_time, events_for, happening_status, kernel_log_read_at, kernel_log_unread
from checks.windows import fmt_time, thresholds, window_peaks

MiB = 1024 * 1024


def _procs(ctx: CheckContext, key: str, at: float | None = None) -> tuple[list[dict[str, Any]], float | None]:
    """The top processes by `key` in the 5 minutes holding `at` (else at the latest
    collection), and when they were taken."""
    try:
        snap = (ctx.top_processes(at) if at is not None else None) or ctx.top_processes() or {}
        return list(snap.get(key) or []), snap.get("ts")
    except Exception:  # noqa: BLE001 - process evidence is a bonus; the verdict stands without it
        return [], None


def _proc_text(p: dict[str, Any], key: str) -> str:
    if key == "by_cpu":
        return f"{p.get('name', '?')} (pid {p.get('pid', '?')}, {float(p.get('cpu_percent') or 0):.0f} % CPU)"
    return f"{p.get('name', '?')} (pid {p.get('pid', '?')}, {float(p.get('rss_bytes') or 0) / MiB:.0f} MiB resident)"


def _window_check(metric: str, what: str, procs_key: str | None, advice: Any) -> Any:
    def evaluate(ctx: CheckContext, check: Check) -> CheckResult:
        th = thresholds(check)
        peaks, seen = window_peaks(ctx, metric, check, th["percent"])
        if not peaks:
            msg = (f"no full {th.get('window_seconds', 300):g}-second window of {metric} yet" if seen
                   else f"no {metric} samples in the lookback")
            return CheckResult("unknown", msg, {"thresholds": th})
        p = max(peaks, key=lambda x: x.value)
        ev: dict[str, Any] = {"thresholds": th, "peak": round(p.value, 3), "peak_at": p.at,
                              "windows_over": p.buckets_over, "windows": p.buckets}
        procs, taken = _procs(ctx, procs_key, p.at) if procs_key else ([], None)
        if procs_key:
            ev["top_processes"], ev["top_processes_at"] = procs, taken
        win = f"{th.get('window_seconds', 300) / 60:g}-min"
        if p.partial:
            return CheckResult("ok", f"less than one full {win} window of {metric} so far (average {p.value:.1f} %); "
                                     f"judged once {win} of data exist", {**ev, "partial": True})
        if p.buckets_over == 0:
            return CheckResult("ok", f"{what} {win} average stayed below {th['percent']:g} % "
                                     f"(peak {p.value:.1f} % at {fmt_time(p.at)})", ev)
        msg = (f"{what} {win} average reached {p.value:.1f} % at {fmt_time(p.at)} "
               f"({p.buckets_over} of {p.buckets} windows at or above {th['percent']:g} %)")
        lead = _proc_text(procs[0], procs_key) if procs and procs_key else None
        return CheckResult(level_status(check, False, True), msg, ev, advice(lead, p.value))
    return evaluate


def _cpu_advice(lead: str | None, peak: float) -> str:
    who = (f"At the latest collection the busiest process was {lead}. " if lead else "")
    return (f"{who}Confirm with `top -c` (sort by %CPU) or `pidstat -u 1 5`, then decide whether it is expected "
            f"business load (optimise it, spread it, or add vCPUs), a runaway or stuck process (restart it), or "
            f"something unknown (check its binary and `ls -l /proc/<pid>/exe`; unknown miners are a common cause).")


def _steal_advice(lead: str | None, peak: float) -> str:
    return ("The hypervisor gave this machine's CPU time to other guests (the `st` column of `top` and `sar -u`). "
            "Nothing inside the machine fixes it: on a burstable or shared-core instance the CPU credits ran out "
            "(move to a dedicated-core type); on your own host, find the guests competing for the same cores and "
            "reserve or pin CPUs.")


def _memory_advice(lead: str | None, peak: float) -> str:
    who = (f"At the latest collection the largest process was {lead}. " if lead else "")
    return (f"{who}Confirm with `ps aux --sort=-rss | head` and `free -m`; check whether it grows without bound "
            f"(a leak: restart it and report it) or needs the memory (limit its caches, add swap as a buffer, or add "
            f"RAM). Memory near 100 % ends in OOM kills (see performance.oom).")


def _oom(ctx: CheckContext, check: Check) -> CheckResult:
    events = events_for(ctx, check, ["Kernel.OOMKill"])
    evs = [event_json(e) for e in events]
    counts = ctx.series("oom_kills", check.lookback)
    kills = [{"time": e["time"], "last_time": e["last_time"], "process": e["labels"].get("process", ""),
              "pid": e["labels"].get("pid", ""), "anon_rss_kb": e["labels"].get("anon_rss_kb", ""),
              "trigger": e["labels"].get("trigger", ""), "constraint": e["labels"].get("constraint", ""),
              "count": e["count"], "message": e["message"], "lines": e["lines"]} for e in evs]
    times = [event_time(e) for e in events]
    counted = 0.0
    if not counts.empty:
        v = counts["value"].to_numpy(dtype=float)
        rose = v > 0
        counted = float(np.nansum(v[rose]))
        times += counts["ts"].to_numpy(dtype=float)[rose].tolist()
    status, now = happening_status(ctx, check, times)
    read_at = kernel_log_read_at(ctx, check)
    ev = {"kills": kills, "oom_kills_counted": counted, "counter_available": not counts.empty,
          "kernel_log_read_at": read_at}
    if status == "ok":
        # vmstat's oom_kill counter sees every kill without the kernel log; with neither
        # source there is no telling.
        if counts.empty and read_at is None:
            return CheckResult("unknown", "no oom_kills samples in the lookback, and "
                               + kernel_log_unread(ctx, check, "OOM kills"), ev)
        if read_at is None:
            return CheckResult("ok", "no OOM kill in the lookback (by the oom_kills counter; the kernel log, which "
                                     "names the victims, was not read)", ev)
        return CheckResult("ok", "no OOM kill in the lookback", ev)
    names = ", ".join(f"{k['process'] or '?'} (pid {k['pid'] or '?'})" for k in kills) or "process names not logged"
    n = max(counted, float(sum(k["count"] for k in kills)))
    when = "in the last 15 minutes" if now else f"last at {fmt_time(max(times))}"
    msg = f"the OOM killer killed {n:g} process(es), {when}: {names}"
    victim = kills[-1] if kills else None
    who = f"{victim['process']} (pid {victim['pid']})" if victim else "a process"
    memcg = (victim or {}).get("constraint") == "CONSTRAINT_MEMCG"
    rec = (f"The kernel ran out of memory and killed {who}. Read the report with "
           f"`dmesg -T | grep -iE -A20 'invoked oom-killer'` (the task list shows who held the memory)"
           + ("; the kill was inside a memory cgroup, so that container or service reached its own memory limit: "
              "raise the limit or reduce its use" if memcg else
              "; find the largest users with `ps aux --sort=-rss | head`, reduce or limit them, add swap or RAM")
           + ", and protect critical services with `OOMScoreAdjust=-500` (or /proc/<pid>/oom_score_adj).")
    return CheckResult(status, msg, ev, rec)


CHECKS: tuple[Check, ...] = (
    Check("performance.cpu", "performance", "CPU usage", "non_critical",
          "CPU usage, as 5-minute averages over the lookback.",
          "Find the process using the CPU with `top -c` and optimise it or add vCPUs.",
          _window_check("cpu_usage", "CPU usage", "by_cpu", _cpu_advice),
          thresholds={"percent": 90, "window_seconds": 300}),
    Check("performance.cpu_steal", "performance", "CPU steal", "non_critical",
          "CPU time the hypervisor gave to other guests (the cloud's base-CPU check).",
          "Move to a dedicated-core instance or reduce contention on the host.",
          _window_check("cpu_steal", "CPU steal", None, _steal_advice),
          thresholds={"percent": 10, "window_seconds": 300}),
    Check("performance.memory", "performance", "Memory usage", "non_critical",
          "Memory usage, as 5-minute averages over the lookback.",
          "Find the process using the memory with `ps aux --sort=-rss | head`.",
          _window_check("mem_usage", "memory usage", "by_memory", _memory_advice),
          thresholds={"percent": 90, "window_seconds": 300}),
    Check("performance.oom", "performance", "OOM kills", "critical",
          "The kernel's OOM killer killed processes.",
          "Read the OOM report in dmesg and reduce or limit the memory of the largest processes.",
          _oom),
)
