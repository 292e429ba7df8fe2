"""Events as check evidence, and the "now vs earlier in the lookback" rule for happenings."""

from __future__ import annotations

from typing import Any, Sequence

from checks.base import RECENT, Check, CheckContext, Status, level_status


def event_time(event: dict[str, Any]) -> float:
    """When a happening last happened: repeats fold into one event and move its last_time."""
    return float(event.get("last_time") or event["publish_time"])


def event_json(event: dict[str, Any]) -> dict[str, Any]:
    d = event.get("details") or {}
    return {"event_id": event.get("event_id", ""), "type": event["type"], "level": event.get("level", ""),
            "time": float(event["publish_time"]), "last_time": event_time(event),
            "message": d.get("last_message") or d.get("message", ""), "count": int(d.get("count", 1)),
            "labels": dict(d.get("labels") or {}), "lines": list(d.get("lines") or [])}


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
