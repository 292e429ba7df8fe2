"""The text and fields of a notification, and who receives it.

The message says which instance, which metric and statistic, the value against the
threshold, for how long, and links to the instance's page, so it reads the same in a
mail, a chat webhook or Alertmanager.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from diag.alerting.policy import Condition, EventCondition, Policy

UNITS = {"percent": " %", "bytes": " B", "bit/s": " bit/s", "ms": " ms", "s": " s"}


def fmt_period(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def fmt_value(v: float | None, metric: str) -> str:
    from diag import catalogue

    if v is None:
        return "no data"
    m = catalogue.BY_NAME.get(metric)
    unit = UNITS.get(m.unit, f" {m.unit}" if m and m.unit else "") if m else ""
    return f"{v:.4g}{unit}"


def fmt_time(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe(c: Condition) -> str:
    """`cpu_usage avg over 5m >= 90 %, 3 periods in a row`."""
    labels = "".join(f" {k}={v}" for k, v in c.labels.items())
    return (f"{c.metric}{labels} {c.statistic} over {fmt_period(c.period)} {c.comparison} "
            f"{fmt_value(c.threshold, c.metric)}, {c.consecutive} period{'s' if c.consecutive > 1 else ''} in a row")


def metric_notice(policy_id: str, p: Policy, key: str, conds: list[tuple[int, Condition, dict]], *,
                  alert: dict[str, Any], status: str, kind: str, instance: dict[str, Any], base_url: str,
                  now: float) -> dict[str, Any]:
    """`conds` is [(index, condition, its outcome: value, labels, run)]: one for `any`, all for `all`."""
    who = instance.get("hostname") or alert["instance_id"]
    parts = []
    for _, c, out in conds:
        where = "".join(f" {k}={v}" for k, v in (out.get("series") or {}).items())
        lasted = fmt_period(max(1, out.get("run", 0)) * c.period)
        parts.append(f"{c.metric}{where} {c.statistic} over {fmt_period(c.period)} is "
                     f"{fmt_value(out.get('value'), c.metric)} ({c.comparison} {fmt_value(c.threshold, c.metric)}"
                     + (f", for {lasted}" if status == "firing" else "") + ")")
    head = {"firing": "FIRING", "resolved": "RESOLVED"}[status]
    note = alert.get("note")
    body = "; ".join(parts) + (f"; {note}" if note else "")
    first = conds[0][1]
    return _notice(policy_id, p, alert, status, kind, instance, base_url, now,
                   summary=f"{p.name}: {who}", message=f"[{head}] {p.name} on {who}: {body}",
                   metric=first.metric, statistic=first.statistic, period=first.period,
                   comparison=first.comparison, threshold=first.threshold, consecutive=first.consecutive,
                   conditions=[describe(c) for _, c, _ in conds])


def event_notice(policy_id: str, p: Policy, ec: EventCondition, event: dict[str, Any], *, alert: dict[str, Any],
                 kind: str, instance: dict[str, Any], base_url: str, now: float) -> dict[str, Any]:
    who = instance.get("hostname") or alert["instance_id"]
    msg = (event.get("details") or {}).get("message", "")
    return _notice(policy_id, p, alert, "firing", kind, instance, base_url, now,
                   summary=f"{p.name}: {event['type']} on {who}",
                   message=f"[FIRING] {p.name} on {who}: event {event['type']} ({event['level']}) at "
                           f"{fmt_time(event['publish_time'])}: {msg}".rstrip(": "),
                   event=event)


def _notice(policy_id: str, p: Policy, alert: dict[str, Any], status: str, kind: str, instance: dict[str, Any],
            base_url: str, now: float, **extra: Any) -> dict[str, Any]:
    iid = alert["instance_id"]
    url = f"{base_url.rstrip('/')}/instances/{iid}"
    extra["message"] = f"{extra['message']}. Details: {url}"
    return {"kind": kind, "status": status, "alert_id": alert["alert_id"], "policy_id": policy_id,
            "policy_name": p.name, "instance_id": iid, "hostname": instance.get("hostname", ""),
            "condition": alert["condition"], "severity": alert["severity"], "value": alert.get("value"),
            "started_at": alert.get("started_at"), "fired_at": alert.get("fired_at"),
            "resolved_at": alert.get("resolved_at"), "created_at": now, "silence": p.silence,
            "episode": alert.get("episode", 0), "seq": alert.get("notices", 0),
            "url": url, **extra}


def recipients(repo: Any, group_ids: list[str]) -> list[dict[str, Any]]:
    """Every contact of these groups, once each (a contact in two groups gets one copy)."""
    seen: dict[str, dict[str, Any]] = {}
    for gid in group_ids:
        g = repo.get("contact_group", gid)
        if g is None:
            continue
        for cid in g.get("contacts", []):
            c = repo.get("contact", cid)
            if c is not None:
                seen.setdefault(cid, c)
    return list(seen.values())
