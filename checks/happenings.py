"""Events as check evidence, and the "now vs earlier in the lookback" rule for happenings."""

from __future__ import annotations

from typing import Any, Sequence

from checks.base import RECENT, SOURCE_LABEL, Check, CheckContext, Status, level_status
from checks.windows import fmt_time


def event_time(event: dict[str, Any]) -> float:
    """When a happening last happened: repeats fold into one event and move its last_time."""
    return float(event.get("last_time") or event["publish_time"])


def source(event: dict[str, Any]) -> str | None:
    """The check that raised this event, None for a happening the machine reported."""
    return ((event.get("details") or {}).get("labels") or {}).get(SOURCE_LABEL)


def event_json(event: dict[str, Any]) -> dict[str, Any]:
    d = event.get("details") or {}
    return {"event_id": event.get("event_id", ""), "type": event["type"], "level": event.get("level", ""),
            "time": float(event["publish_time"]), "last_time": event_time(event),
            "message": d.get("last_message") or d.get("message", ""), "count": int(d.get("count", 1)),
            "labels": dict(d.get("labels") or {}), "lines": list(d.get("lines") or []), "kind": d.get("kind", "")}


def recent_ref(ctx: CheckContext) -> float:
    """"Now" for a diagnosis: the end of its window (equal to ctx.now for a live report)."""
    return float(ctx.end)


def happening_status(ctx: CheckContext, check: Check, times: Sequence[float]) -> tuple[Status, bool]:
    """(status, happened within RECENT of the window end) for the times of a check's happenings."""
    if not times:
        return "ok", False
    now_hit = max(times) >= recent_ref(ctx) - RECENT
    return level_status(check, now_hit, True), now_hit


def events_for(ctx: CheckContext, check: Check, types: Sequence[str]) -> list[dict[str, Any]]:
    return ctx.events(list(types), check.lookback)


# The kernel-log collector adds a `kernel_signals` point per kind on every cycle in which it
# read /dev/kmsg, zero or not, and none when it could not (the cycle counts its error).
# So a point in the lookback is the evidence that "nothing in the kernel log" was looked for.
KERNEL_LOG_METRIC = "kernel_signals"
KERNEL_LOG_UNREAD = ("the kernel log was not read in the lookback (no {metric} samples since {since}), so {what} "
                     "cannot be seen: the collector needs read access to /dev/kmsg (root, or CAP_SYSLOG when "
                     "kernel.dmesg_restrict=1)")


def kernel_log_read_at(ctx: CheckContext, check: Check) -> float | None:
    """When the kernel log was last read within the check's lookback, or None if it was not."""
    lat = ctx.latest(KERNEL_LOG_METRIC)
    if lat.empty:
        return None
    last = float(lat["ts"].max())
    return last if last >= lookback_start(ctx, check) else None


def lookback_start(ctx: CheckContext, check: Check) -> float:
    return max(float(ctx.start), float(ctx.end) - check.lookback)


def kernel_log_unread(ctx: CheckContext, check: Check, what: str) -> str:
    return KERNEL_LOG_UNREAD.format(metric=KERNEL_LOG_METRIC, since=fmt_time(lookback_start(ctx, check)), what=what)
