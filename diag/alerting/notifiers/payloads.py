"""What goes on the wire for one notice, per channel: plain JSON, the Alertmanager
webhook body, the Alibaba event-notification shape, an email, the Alertmanager v2
`POST /api/v2/alerts` body, and the chat robots' messages (DingTalk, WeCom, Slack, Feishu).

A notice (built by notices.py) is a flat dict: kind (firing/repeat/resolved), status
(firing/resolved), alert_id, policy_id, policy_name, instance_id, hostname, condition,
severity, metric..., value, message, text (the message without its head and link), url,
`event` for event conditions, and what Alerting.enrich adds: instance_name, time_zone,
event_time (the seed's format), dashboard_url (only with alerting.external_url set),
check_id and recommendation.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from diag.alerting.notices import local_time, seed_time
from diag.events import alibaba_shape

ZERO_TIME = "0001-01-01T00:00:00Z"  # what Alertmanager writes for "not ended"
LEVELS = {"critical": "CRITICAL", "warning": "WARN", "info": "INFO"}
VER = "1.0"  # the seed's notification format version


def rfc3339(ts: float | None) -> str:
    if ts is None:
        return ZERO_TIME
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def labels_of(n: dict[str, Any]) -> dict[str, str]:
    """The alert's labels (labels.alert_labels, set by Alerting.enrich) and what describes it
    further: the metric, the event type, the host name."""
    out = dict(n.get("labels") or {"alertname": n["policy_name"], "severity": n["severity"],
                                   "instance_id": n["instance_id"], "policy_id": n["policy_id"],
                                   "condition": n["condition"]})
    if n.get("metric"):
        out["metric"] = n["metric"]
    if n.get("event"):
        out["event_type"] = n["event"]["type"]
    if n.get("hostname"):
        out["hostname"] = n["hostname"]
    return out


def annotations_of(n: dict[str, Any]) -> dict[str, str]:
    out = {"summary": n["summary"], "description": n["message"], "dashboard": n["url"]}
    if n.get("recommendation"):
        out["recommendation"] = n["recommendation"]
    return out


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def alertmanager_alert(n: dict[str, Any], *, for_v2: bool = False) -> dict[str, Any]:
    labels = labels_of(n)
    ends = n.get("resolved_at") if n["status"] == "resolved" else None
    if for_v2 and ends is None:
        # Alertmanager resolves an alert that is not re-sent before its endsAt: Alerting
        # re-sends firing alerts every minute with `ends_at` a few minutes ahead (resend.py).
        ends = n.get("ends_at") or n["created_at"] + n["silence"] + 3600
    alert = {"status": n["status"], "labels": labels, "annotations": annotations_of(n),
             "startsAt": rfc3339(n.get("fired_at") or n["created_at"]), "endsAt": rfc3339(ends),
             "generatorURL": n["url"], "fingerprint": fingerprint(labels)}
    if for_v2:  # the v2 API takes only these
        return {k: alert[k] for k in ("labels", "annotations", "startsAt", "endsAt", "generatorURL")}
    return alert


def alertmanager_webhook(n: dict[str, Any], receiver: str, external_url: str) -> dict[str, Any]:
    """Alertmanager's own webhook body (version 4), with this one alert, or a group's alerts."""
    alerts = [alertmanager_alert(x) for x in n.get("alerts") or [n]]
    alert = alertmanager_alert(n)
    group = n.get("group_labels") or {"alertname": alert["labels"]["alertname"], "instance_id": n["instance_id"]}
    group_key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}"
    return {"receiver": receiver, "status": n["status"], "alerts": alerts, "groupLabels": group,
            "commonLabels": _common([a["labels"] for a in alerts]),
            "commonAnnotations": _common([a["annotations"] for a in alerts]),
            "externalURL": external_url, "version": "4", "groupKey": group_key, "truncatedAlerts": 0}


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    """The pairs every map has (Alertmanager's commonLabels of a group)."""
    return {k: v for k, v in maps[0].items() if all(m.get(k) == v for m in maps[1:])}


def alibaba(n: dict[str, Any]) -> dict[str, Any]:
    """The Alibaba event-notification shape (seed 001, "事件通知概述"): `ver`, `id`,
    `eventTime` as `20181226T220114.058+0800` in alerting.timezone, `level`, `name`,
    `product`, `resourceId`, and a `content` naming the instance by id and name, with the
    check's recommendation. The event itself for event conditions, the alert in the same
    envelope for metric conditions."""
    tz = n.get("time_zone")
    about = {"instanceId": n["instance_id"], "instanceName": n.get("instance_name") or n.get("hostname") or
             n["instance_id"]}
    if n.get("recommendation"):
        about["recommendation"] = n["recommendation"]
    if n.get("event"):
        body = alibaba_shape(n["event"])
        body["eventTime"] = seed_time(n["event"]["publish_time"], tz)
        body["content"] = {**body["content"], **about, "alert": _plain(n)}
        return {"ver": VER, **body}
    # A notice carries no notification_id (the outbox makes it after rendering): the id is the
    # notice's own identity, the same on every retry.
    nid = n.get("notification_id") or f"{n['alert_id']}:{n['episode']}:{n['seq']}:{n['kind']}"
    return {"ver": VER, "id": nid, "eventTime": seed_time(n["created_at"], tz), "level": LEVELS[n["severity"]],
            "name": f"Instance:Alert:{n['status']}", "product": "diag", "resourceId": n["instance_id"],
            "content": {**_plain(n), **about}}


def _plain(n: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in n.items() if k not in ("silence",)}


def email(n: dict[str, Any]) -> dict[str, str]:
    subject = f"[diag] {n['status'].upper()} {n['severity']}: {n['policy_name']} on {n['hostname'] or n['instance_id']}"
    lines = [n["message"], "", f"Dashboard: {n['url']}", "",
             f"policy: {n['policy_name']} ({n['policy_id']})", f"alert: {n['alert_id']} {n['condition']}",
             f"instance: {n.get('instance_name') or n['instance_id']} ({n['instance_id']})",
             f"severity: {n['severity']}"]
    if n.get("series"):
        lines.append("series: " + ", ".join(f"{k}={v}" for k, v in n["series"].items()))
    if n.get("recommendation"):
        lines += ["", f"Recommendation: {n['recommendation']}"]
    return {"subject": subject, "text": "\n".join(lines)}


# -- chat robots ------------------------------------------------------------------------------

TEXT_MAX = 1500  # characters of the finding in a chat message: the robots cap a message at 4-20 KB
WECOM_BYTES = 4096  # WeCom refuses longer markdown (errcode 40058), which no retry would mend
DINGTALK_BYTES = 20000


def _cap_bytes(text: str, limit: int) -> str:
    """`text` cut to `limit` UTF-8 bytes at a character boundary, marked when cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit - len("…".encode())].decode("utf-8", "ignore") + "…"


def _chat_parts(n: dict[str, Any], finding: str | None = None) -> tuple[str, list[tuple[str, str]], str | None]:
    """The title, the (label, value) lines and the dashboard link of a chat message (with
    `finding` for the notice's text when given). The title starts with "diag": a DingTalk
    robot secured by keyword can take "diag" as its keyword."""
    name = n.get("instance_name") or n.get("hostname") or n["instance_id"]
    who = name if name == n["instance_id"] else f"{name} ({n['instance_id']})"
    head = "TEST" if n["kind"] == "test" else n["status"].upper()
    title = f"diag {head} {n['severity']}: {n['policy_name']} on {name}"
    text = finding if finding is not None else n.get("text") or n["message"]
    if len(text) > TEXT_MAX:
        text = text[:TEXT_MAX - 1] + "…"
    tz = n.get("time_zone")
    lines = [("Instance", who), ("Severity", n["severity"]), ("Finding", text)]
    if n["status"] == "resolved":
        lines.append(("Resolved at", local_time(n.get("resolved_at") or n["created_at"], tz)))
    else:
        lines.append(("Since", local_time(n.get("fired_at") or n["created_at"], tz)))
    if n.get("recommendation"):
        lines.append(("Recommendation", n["recommendation"]))
    return title, lines, n.get("dashboard_url")


def _fitted(n: dict[str, Any], build: Any, limit: int) -> str:
    """The message `build` makes from the chat parts, within `limit` UTF-8 bytes: the finding
    is shortened first, so the instance, the recommendation and the link stay."""
    out = build(*_chat_parts(n))
    over = len(out.encode()) - limit
    if over > 0:
        finding = _chat_parts(n)[1][2][1]
        out = build(*_chat_parts(n, _cap_bytes(finding, max(0, len(finding.encode()) - over - 8))))
    return _cap_bytes(out, limit)


def _dingtalk_text(title: str, lines: list[tuple[str, str]], link: str | None) -> str:
    # DingTalk's markdown needs a blank line between paragraphs, or they run together.
    return "\n\n".join([f"#### {title}", *(f"**{k}**: {v}" for k, v in lines)]
                        + ([f"[Open in diag]({link})"] if link else []))


def dingtalk(n: dict[str, Any]) -> dict[str, Any]:
    title = _chat_parts(n)[0]
    return {"msgtype": "markdown", "markdown": {"title": title, "text": _fitted(n, _dingtalk_text, DINGTALK_BYTES)}}


def wecom(n: dict[str, Any]) -> dict[str, Any]:
    colour = "info" if n["status"] == "resolved" else "warning"  # the two colours WeCom's markdown knows

    def build(title: str, lines: list[tuple[str, str]], link: str | None) -> str:
        return "\n".join([f'**<font color="{colour}">{title}</font>**', *(f"> {k}: {v}" for k, v in lines)]
                         + ([f"[Open in diag]({link})"] if link else []))

    return {"msgtype": "markdown", "markdown": {"content": _fitted(n, build, WECOM_BYTES)}}


def slack(n: dict[str, Any]) -> dict[str, Any]:
    title, lines, link = _chat_parts(n)
    fields = "\n".join(f"*{k}*: {v}" for k, v in lines)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": fields[:3000]}}]
    if link:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Open in diag>"}]})
    # `text` is what notifications and clients without blocks show.
    return {"text": f"{title}: {n.get('text') or n['message']}"[:3000], "blocks": blocks}


FEISHU_COLOURS = {"critical": "red", "warning": "orange", "info": "blue"}


def feishu(n: dict[str, Any]) -> dict[str, Any]:
    title, lines, link = _chat_parts(n)
    elements: list[dict[str, Any]] = [
        {"tag": "div", "text": {"tag": "lark_md", "content": "\n".join(f"**{k}**: {v}" for k, v in lines)}}]
    if link:
        elements.append({"tag": "action", "actions": [{"tag": "button", "type": "default", "url": link,
                                                         "text": {"tag": "plain_text", "content": "Open in diag"}}]})
    template = "green" if n["status"] == "resolved" else FEISHU_COLOURS[n["severity"]]
    return {"msg_type": "interactive", "card": {
        "config": {"wide_screen_mode": True},
        "header": {"title": {"tag": "plain_text", "content": title}, "template": template},
        "elements": elements}}


CHAT = {"dingtalk": dingtalk, "wecom": wecom, "slack": slack, "feishu": feishu}


def render(channel: dict[str, Any], n: dict[str, Any], receiver: str, external_url: str) -> Any:
    """The body stored in the outbox for this channel; retries send exactly it (a robot's
    signature is added at each attempt, notifiers/chat.py)."""
    if channel["type"] == "email":
        return email(n)
    if channel["type"] in CHAT:
        return CHAT[channel["type"]](n)
    if channel["type"] == "alertmanager":
        return [alertmanager_alert(n, for_v2=True)]
    fmt = channel.get("format", "json")
    if fmt == "alertmanager":
        return alertmanager_webhook(n, receiver, external_url)
    if fmt == "alibaba":
        return alibaba(n)
    return _plain(n)
