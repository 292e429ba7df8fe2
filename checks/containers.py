"""Container checks: a container near its memory limit, or OOM-killed inside it, named.

The series come from collectors/cgroups.py (labels container, runtime, cgroup); the
kernel's OOM lines (Kernel.OOMKill events, whose `memcg` is the task_memcg path) name
kills the collector missed because the container's cgroup was gone before the next
cycle, matched to a container by its cgroup path.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from checks.base import Check, CheckContext, CheckResult, Status, two_level
from checks.happenings import event_json, event_time, events_for, happening_status
from checks.windows import fmt_time, thresholds
from diag.settings.stale import SERIES_FLOOR, stale_after

MiB = 1024 * 1024
_RANK = {"ok": 0, "warning": 1, "critical": 2}

# A message is read on a phone: a host where twenty test cgroups were OOM-killed names
# the first few and counts the rest.
MESSAGE_ITEMS = 5


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [] if frame.empty else frame.to_dict("records")


def _who(c: dict[str, Any]) -> str:
    return f"{c['container']} ({c['runtime']})" if c.get("runtime") else c["container"]


def _owner(memcg: str, known: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container whose cgroup holds `memcg` (the longest matching path), else the path itself."""
    best = None
    for path, labels in known.items():
        if (memcg == path or memcg.startswith(path.rstrip("/") + "/")) and (best is None or len(path) > len(best)):
            best = path
    if best is None:
        return {"container": memcg, "runtime": "", "cgroup": memcg}
    return dict(known[best])


def _container_memory(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    count = ctx.latest("containers")
    usage = ctx.series("container_memory_usage", check.lookback)
    kills = ctx.series("container_oom_kills", check.lookback)
    memcg_events = [e for e in (event_json(e) for e in events_for(ctx, check, ["Kernel.OOMKill"]))
                    if e["labels"].get("constraint") == "CONSTRAINT_MEMCG" and e["labels"].get("memcg")]
    if count.empty and usage.empty and kills.empty and not memcg_events:
        return CheckResult("not_applicable", "no cgroup filesystem was read on this machine (no containers series), "
                                             "so there are no containers to check", {"thresholds": th})
    n = float(count["value"].iloc[-1]) if not count.empty else None
    if n == 0 and usage.empty and kills.empty and not memcg_events:
        return CheckResult("not_applicable", "no containers, services or other cgroups under /sys/fs/cgroup",
                           {"thresholds": th, "containers": 0})

    # Every container seen in the lookback, by cgroup path, to name the kernel's OOM lines.
    known: dict[str, dict[str, str]] = {}
    for frame in (usage, kills, ctx.series("container_memory_used", check.lookback)):
        for r in _rows(frame.drop_duplicates("cgroup") if not frame.empty else frame):
            known[r["cgroup"]] = {"container": r["container"], "runtime": r["runtime"], "cgroup": r["cgroup"]}

    limits = {r["cgroup"]: float(r["value"]) for r in _rows(ctx.latest("container_memory_limit"))}
    near: list[dict[str, Any]] = []
    statuses: list[Status] = []
    if not usage.empty:
        newest = float(usage["ts"].max())
        for path, g in usage.groupby("cgroup", sort=False):
            g = g.sort_values("ts")
            last = g.iloc[-1]
            peak = g.loc[g["value"].idxmax()]
            current = float(last["ts"]) >= newest - stale_after(ctx.interval, SERIES_FLOOR)
            status = two_level(float(last["value"]), th["warning"], th["critical"], check.severity) if current else "ok"
            if status == "ok" and float(peak["value"]) >= th["warning"]:
                status = "warning"  # near its limit earlier in the lookback
            if status == "ok":
                continue
            statuses.append(status)
            near.append({"container": last["container"], "runtime": last["runtime"], "cgroup": path,
                         "status": status, "percent": round(float(last["value"]), 2), "at": float(last["ts"]),
                         "current": current, "peak": round(float(peak["value"]), 2), "peak_at": float(peak["ts"]),
                         "limit_bytes": limits.get(path)})

    killed: dict[str, dict[str, Any]] = {}
    times: list[float] = []
    if not kills.empty:
        rose = kills[kills["value"] > 0]
        for path, g in rose.groupby("cgroup", sort=False):
            row = g.iloc[-1]
            killed[path] = {"container": row["container"], "runtime": row["runtime"], "cgroup": path,
                            "kills": float(g["value"].sum()), "last_time": float(g["ts"].max()), "processes": []}
            times.append(float(g["ts"].max()))
    by_event: dict[str, dict[str, Any]] = {}
    for e in memcg_events:
        who = _owner(e["labels"]["memcg"], known)
        k = by_event.setdefault(who["cgroup"], {**who, "kills": 0.0, "last_time": 0.0, "processes": []})
        k["kills"] += e["count"]
        k["last_time"] = max(k["last_time"], event_time(e))
        k["processes"].append(f"{e['labels'].get('process', '?')} (pid {e['labels'].get('pid', '?')})")
        times.append(event_time(e))
    for path, k in by_event.items():  # one kill is both a counter rise and a kernel line
        mine = killed.get(path)
        if mine is None:
            killed[path] = k
        else:
            mine["kills"] = max(mine["kills"], k["kills"])
            mine["last_time"] = max(mine["last_time"], k["last_time"])
            mine["processes"] = k["processes"]
    oom_status, oom_now = happening_status(ctx, check, times)
    if killed:
        statuses.append(oom_status)

    ev: dict[str, Any] = {"thresholds": th, "containers": n, "near_limit": near,
                          "oom_kills": sorted(killed.values(), key=lambda k: -k["last_time"])}
    status = max(statuses, key=lambda s: _RANK.get(s, 0), default="ok")
    if status == "ok":
        return CheckResult("ok", f"no container reached {th['warning']:g} % of its memory limit or was OOM-killed "
                                 "in the lookback" + (f" ({n:g} containers and services)" if n is not None else ""), ev)
    parts = []
    for k in ev["oom_kills"]:
        when = "in the last 15 minutes" if oom_now and k["last_time"] >= max(times) - 1 else f"last at {fmt_time(k['last_time'])}"
        procs = f": {', '.join(k['processes'])}" if k["processes"] else ""
        parts.append(f"{_who(k)} had {k['kills']:g} process(es) OOM-killed at its memory limit, {when}{procs}")
    for c in sorted(near, key=lambda c: -c["percent"]):
        lim = f" of its {c['limit_bytes'] / MiB:.0f} MiB limit" if c.get("limit_bytes") else " of its memory limit"
        if c["current"] and c["percent"] >= th["warning"]:
            parts.append(f"{_who(c)} uses {c['percent']:.1f} %{lim}")
        else:
            parts.append(f"{_who(c)} reached {c['peak']:.1f} %{lim} at {fmt_time(c['peak_at'])}")
    first = (ev["oom_kills"] or sorted(near, key=lambda c: -c["percent"]))[0]
    # The latest kills and the fullest containers lead; the evidence keeps every one.
    shown = parts[:MESSAGE_ITEMS] + ([f"and {len(parts) - MESSAGE_ITEMS} more (see the evidence)"]
                                     if len(parts) > MESSAGE_ITEMS else [])
    return CheckResult(status, "; ".join(shown), ev, _advice(first))


def _advice(c: dict[str, Any]) -> str:
    name, runtime = c["container"], c.get("runtime", "")
    how = {
        "docker": f"`docker stats {name}` shows its use; raise the limit with `docker update --memory <size> "
                  f"--memory-swap <size> {name}` (and in its compose file or run command)",
        "podman": f"`podman stats {name}` shows its use; raise the limit with `podman update --memory <size> {name}`",
        "containerd": f"`kubectl top pod` shows its use; raise resources.limits.memory of {name} (namespace/pod/"
                      f"container) in its manifest",
        "cri-o": f"`kubectl top pod` shows its use; raise resources.limits.memory of {name} in its manifest",
        "systemd": f"`systemctl status {name}` and `systemd-cgtop` show its use; raise the limit with "
                   f"`systemctl set-property {name} MemoryMax=<size>` (or MemoryLimit= on cgroup v1)",
    }.get(runtime, f"`cat /sys/fs/cgroup/memory{c['cgroup']}/memory.usage_in_bytes` (v1) or "
                   f"`/sys/fs/cgroup{c['cgroup']}/memory.current` (v2) shows its use; raise its memory limit where "
                   f"it is set")
    return (f"{name} is at its own memory limit, not the machine's: the kernel reclaims its page cache, then "
            f"OOM-kills inside it. {how}; or find what grows in it (a leak: restart it and report it; a cache or "
            f"heap sized beyond the limit: lower it). The kill itself is in `dmesg -T | grep -A20 'invoked oom-killer'`.")


CHECKS: tuple[Check, ...] = (
    Check("performance.container_memory", "performance", "Container memory", "critical",
          "Containers, systemd services and other cgroups near their own memory limit (working set against "
          "memory.max or memory.limit_in_bytes) or with processes OOM-killed inside them, named.",
          "Raise the container's memory limit or reduce what it holds; read the OOM report in dmesg.",
          _container_memory,
          thresholds={"warning": 90, "critical": 97}),
)
