"""What goes on the wire for one notice, per channel: plain JSON, the Alertmanager
webhook body, the Alibaba event-notification shape, an email, and the Alertmanager v2
`POST /api/v2/alerts` body.

A notice (built by notices.py) is a flat dict: kind (firing/repeat/resolved), status
(firing/resolved), alert_id, policy_id, policy_name, instance_id, hostname, condition,
severity, metric..., value, message, url, and `event` for event conditions.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from diag.events import alibaba_shape

ZERO_TIME = "0001-01-01T00:00:00Z"  # what Alertmanager writes for "not ended"
LEVELS = {"critical": "CRITICAL", "warning": "WARN", "info": "INFO"}


def rfc3339(ts: float | None) -> str:
    if ts is None:
        return ZERO_TIME
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def labels_of(n: dict[str, Any]) -> dict[str, str]:
    out = {"alertname": n["policy_name"], "severity": n["severity"], "instance_id": n["instance_id"],
           "policy_id": n["policy_id"], "condition": n["condition"]}
    if n.get("metric"):
        out["metric"] = n["metric"]
    if n.get("event"):
        out["event_type"] = n["event"]["type"]
    if n.get("hostname"):
        out["hostname"] = n["hostname"]
    return out


def annotations_of(n: dict[str, Any]) -> dict[str, str]:
    return {"summary": n["summary"], "description": n["message"], "dashboard": n["url"]}


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def alertmanager_alert(n: dict[str, Any], *, for_v2: bool = False) -> dict[str, Any]:
    labels = labels_of(n)
    ends = n.get("resolved_at") if n["status"] == "resolved" else None
    if for_v2 and ends is None:
        # Alertmanager resolves an alert nobody re-sends; we re-send only when the
        # silence period ends, so the alert must outlive it.
        ends = n["created_at"] + n["silence"] + 3600
    alert = {"status": n["status"], "labels": labels, "annotations": annotations_of(n),
             "startsAt": rfc3339(n.get("fired_at") or n["created_at"]), "endsAt": rfc3339(ends),
             "generatorURL": n["url"], "fingerprint": fingerprint(labels)}
    if for_v2:  # the v2 API takes only these
        return {k: alert[k] for k in ("labels", "annotations", "startsAt", "endsAt", "generatorURL")}
    return alert


def alertmanager_webhook(n: dict[str, Any], receiver: str, external_url: str) -> dict[str, Any]:
    """Alertmanager's own webhook body (version 4), with this one alert."""
    alert = alertmanager_alert(n)
    group = {"alertname": alert["labels"]["alertname"], "instance_id": n["instance_id"]}
    group_key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}"
    return {"receiver": receiver, "status": n["status"], "alerts": [alert], "groupLabels": group,
            "commonLabels": alert["labels"], "commonAnnotations": alert["annotations"],
            "externalURL": external_url, "version": "4", "groupKey": group_key, "truncatedAlerts": 0}


def alibaba(n: dict[str, Any]) -> dict[str, Any]:
    """The Alibaba event-notification shape: the event itself for event conditions,
    the alert in the same envelope for metric conditions."""
    if n.get("event"):
        body = alibaba_shape(n["event"])
        body["content"] = {**body["content"], "alert": _plain(n)}
        return body
    # A notice carries no notification_id (the outbox makes it after rendering): the id is the
    # notice's own identity, the same on every retry.
    nid = n.get("notification_id") or f"{n['alert_id']}:{n['episode']}:{n['seq']}:{n['kind']}"
    return {"id": nid, "eventTime": n["created_at"], "level": LEVELS[n["severity"]],
            "name": f"Instance:Alert:{n['status']}", "product": "diag", "resourceId": n["instance_id"],
            "content": _plain(n)}


def _plain(n: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in n.items() if k not in ("silence",)}


def email(n: dict[str, Any]) -> dict[str, str]:
    subject = f"[diag] {n['status'].upper()} {n['severity']}: {n['policy_name']} on {n['hostname'] or n['instance_id']}"
    lines = [n["message"], "", f"Dashboard: {n['url']}", "",
             f"policy: {n['policy_name']} ({n['policy_id']})", f"alert: {n['alert_id']} {n['condition']}",
             f"instance: {n['instance_id']}", f"severity: {n['severity']}"]
    return {"subject": subject, "text": "\n".join(lines)}


def render(channel: dict[str, Any], n: dict[str, Any], receiver: str, external_url: str) -> Any:
    """The body stored in the outbox for this channel; retries send exactly it."""
    if channel["type"] == "email":
        return email(n)
    if channel["type"] == "alertmanager":
        return [alertmanager_alert(n, for_v2=True)]
    fmt = channel.get("format", "json")
    if fmt == "alertmanager":
        return alertmanager_webhook(n, receiver, external_url)
    if fmt == "alibaba":
        return alibaba(n)
    return _plain(n)
