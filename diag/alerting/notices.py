"""The text and fields of a notification, and who receives it.

The message says which instance, which metric and statistic, the value against the
threshold, for how long, and links to the instance's page, so it reads the same in a
mail, a chat webhook or Alertmanager.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from checks.happenings import source
from diag.alerting.labels import series_labels
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


def zone(name: str | None) -> tzinfo | None:
    """The configured zone (alerting.timezone), or None for the server's own."""
    return ZoneInfo(name) if name else None


def _at(ts: float, tz_name: str | None) -> datetime:
    at = datetime.fromtimestamp(ts, timezone.utc)
    return at.astimezone(zone(tz_name)) if tz_name else at.astimezone()


def seed_time(ts: float, tz_name: str | None = None) -> str:
    """The time as the seed's event notices write it: `20181226T220114.058+0800`."""
    at = _at(ts, tz_name)
    return at.strftime("%Y%m%dT%H%M%S.") + f"{at.microsecond // 1000:03d}" + at.strftime("%z")


def local_time(ts: float | None, tz_name: str | None = None) -> str:
    """The time for a person, with its offset: `2018-12-26 22:01:14 +0800`."""
    return "-" if ts is None else _at(ts, tz_name).strftime("%Y-%m-%d %H:%M:%S %z")


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
                   summary=f"{p.name}: {who}", message=f"[{head}] {p.name} on {who}: {body}", text=body,
                   metric=first.metric, statistic=first.statistic, period=first.period,
                   comparison=first.comparison, threshold=first.threshold, consecutive=first.consecutive,
                   conditions=[describe(c) for _, c, _ in conds])


def event_notice(policy_id: str, p: Policy, ec: EventCondition, event: dict[str, Any], *, alert: dict[str, Any],
                 kind: str, instance: dict[str, Any], base_url: str, now: float) -> dict[str, Any]:
    who = instance.get("hostname") or alert["instance_id"]
    msg = (event.get("details") or {}).get("message", "")
    text = f"event {event['type']} ({event['level']}) at {fmt_time(event['publish_time'])}: {msg}".rstrip(": ")
    return _notice(policy_id, p, alert, "firing", kind, instance, base_url, now,
                   summary=f"{p.name}: {event['type']} on {who}", message=f"[FIRING] {p.name} on {who}: {text}",
                   text=text, event=event)


def state_notice(policy_id: str, p: Policy, alert: dict[str, Any], *, status: str, kind: str, text: str,
                 summary: str | None, instance: dict[str, Any], base_url: str, now: float) -> dict[str, Any]:
    """A notice from the alert row alone, when no fresh reading is behind it: a resend to
    Alertmanager, or a resolve because the policy or the instance went away."""
    who = instance.get("hostname") or alert["instance_id"]
    head = {"firing": "FIRING", "resolved": "RESOLVED"}[status]
    extra: dict[str, Any] = {}
    m = re.fullmatch(r"conditions\[(\d+)\]", alert["condition"])
    i = int(m.group(1)) if m else 0
    if (m or alert["condition"] == "all") and i < len(p.conditions):  # the metric, as metric_notice gives it
        extra["metric"] = p.conditions[i].metric
    return _notice(policy_id, p, alert, status, kind, instance, base_url, now, summary=summary or f"{p.name}: {who}",
                   message=f"[{head}] {p.name} on {who}: {text}", text=text, **extra)


def _notice(policy_id: str, p: Policy, alert: dict[str, Any], status: str, kind: str, instance: dict[str, Any],
            base_url: str, now: float, **extra: Any) -> dict[str, Any]:
    iid = alert["instance_id"]
    url = f"{base_url.rstrip('/')}/instances/{iid}"
    extra["message"] = f"{extra['message']}. Details: {url}"
    return {"kind": kind, "status": status, "alert_id": alert["alert_id"], "policy_id": policy_id,
            "policy_name": p.name, "instance_id": iid, "hostname": instance.get("hostname", ""),
            "condition": alert["condition"], "series": series_labels(alert.get("series") or ""),
            "severity": alert["severity"], "value": alert.get("value"),
            "started_at": alert.get("started_at"), "fired_at": alert.get("fired_at"),
            "resolved_at": alert.get("resolved_at"), "created_at": now, "silence": p.silence,
            "episode": alert.get("episode", 0), "seq": alert.get("notices", 0),
            "url": url, **extra}


def test_notice(contact_name: str, instance: dict[str, Any], base_url: str, now: float) -> dict[str, Any]:
    """A notice that says it is a test, rendered like a real one, for a contact's test-send."""
    iid = instance.get("instance_id", "")
    who = instance.get("hostname") or iid
    text = f"a test notification from diag to {contact_name}: this channel works"
    url = f"{base_url.rstrip('/')}/alerts"
    return {"kind": "test", "status": "firing", "alert_id": "test", "policy_id": "test",
            "policy_name": "Test notification", "instance_id": iid, "hostname": instance.get("hostname", ""),
            "condition": "test", "severity": "info", "value": None, "started_at": now, "fired_at": now,
            "resolved_at": None, "created_at": now,
            # Alertmanager keeps an alert until its endsAt (created_at + silence + 1 h): a test ends in 5 minutes.
            "silence": -3300, "episode": 0, "seq": 0, "url": url, "summary": f"Test notification: {who}",
            "message": f"[TEST] {text}. Details: {url}", "text": text}


def mark_test(n: dict[str, Any]) -> dict[str, Any]:
    """A notice built the real way, marked as a test wherever a reader sees it: the message
    and summary say TEST, chat titles too (kind), and Alertmanager lets it end in 5 minutes."""
    n.update(kind="test", silence=-3300, summary=f"[TEST] {n['summary']}",
             message=re.sub(r"^(\[[A-Z]+\] )?", "[TEST] ", n["message"], count=1))
    return n


# The check each default policy's metric or event reads (defaults.py), so that a notice
# can carry that check's recommendation; a policy names another in its description
# ("storage.readonly: ..."), an event raised by a check carries its source.
CHECK_OF_METRIC = {"cpu_usage": "performance.cpu", "mem_usage": "performance.memory",
                   "bandwidth_usage_in": "network.bandwidth", "bandwidth_usage_out": "network.bandwidth",
                   "fs_usage": "storage.disk_usage", "fs_inode_usage": "storage.inode_usage"}
CHECK_OF_EVENT = {"Kernel.HungTask": "state.kernel_fault", "Kernel.Panic": "state.kernel_fault",
                  "Kernel.SoftLockup": "state.kernel_fault", "Kernel.HardLockup": "state.kernel_fault",
                  "InstanceFailure.Reboot": "state.reboot", "Kernel.OOMKill": "performance.oom",
                  "Disk.Full": "storage.disk_usage", "Disk.ReadOnly": "storage.readonly",
                  "Disk.IOHang": "storage.io_hang", "Disk.IOError": "storage.io_errors"}
_CHECK_ID = re.compile(r"^([a-z_]+\.[a-z0-9_]+):")


def check_of(n: dict[str, Any], p: Policy, known: set[str]) -> str | None:
    """The check this notice is about, if any (one of `known`, the service's checks)."""
    event = n.get("event")
    candidates = []
    if event:
        candidates.append(source(event))
    m = _CHECK_ID.match(p.description)
    candidates.append(m.group(1) if m else None)
    candidates.append(CHECK_OF_EVENT.get(event["type"]) if event else CHECK_OF_METRIC.get(n.get("metric") or ""))
    return next((c for c in candidates if c in known), None)


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
