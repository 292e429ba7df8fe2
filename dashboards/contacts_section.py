"""The contacts section of the Alerts page: the contacts and groups as listed, and the two
forms' values. A channel's secrets show masked (diag.alerting.secrets): a robot's URL as
`https://host/***`, a stored secret as `***`.
"""

from __future__ import annotations

from typing import Any

from flask import abort, request

from dashboards import routing_form
from dashboards.blueprint import alerting
from diag.alerting.policy import CHAT, SIGNED
from diag.alerting import secrets

CHANNEL_TYPES = (("webhook", "Webhook"), ("email", "E-mail"), ("alertmanager", "Alertmanager"),
                 ("dingtalk", "DingTalk robot"), ("wecom", "WeCom robot"), ("slack", "Slack webhook"),
                 ("feishu", "Feishu / Lark robot"))
FIELDS = ("type", "url", "address", "format", "secret")


def describe(ch: dict[str, Any]) -> str:
    """One masked line per channel, as the contacts table shows it."""
    ch = secrets.mask_channel(ch)
    if ch["type"] == "email":
        return f"e-mail {ch.get('address')}"
    kind = dict(CHANNEL_TYPES).get(ch["type"], ch["type"])
    if ch["type"] == "webhook" and ch.get("format", "json") != "json":
        kind += f" ({ch['format']})"
    return f"{kind} {ch.get('url')}" + (" · signed" if ch.get("secret") else "")


def context(contact_values: dict[str, Any] | None = None, group_values: dict[str, Any] | None = None,
            errors: dict[str, str] | None = None, tested: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the page's contacts section needs: the lists, the two forms' values and errors."""
    a = alerting()
    contacts = a.repo.list("contact")
    groups = a.repo.list("contact_group")
    editing_contact = request.args.get("contact") if contact_values is None else contact_values.get("id")
    if contact_values is None:
        cur = a.repo.get("contact", editing_contact) if editing_contact else None
        if editing_contact and cur is None:
            abort(404, f"no contact {editing_contact}")
        contact_values = contact_form_values(cur)
    editing_group = request.args.get("group") if group_values is None else group_values.get("id")
    if group_values is None:
        cur = a.repo.get("contact_group", editing_group) if editing_group else None
        if editing_group and cur is None:
            abort(404, f"no contact group {editing_group}")
        group_values = {"id": editing_group, "name": (cur or {}).get("name", ""),
                        "contacts": (cur or {}).get("contacts", []), **routing_form.values((cur or {}).get("routing"))}
    in_groups: dict[str, list[str]] = {}
    for g in groups:
        for cid in g.get("contacts", []):
            in_groups.setdefault(cid, []).append(g["name"])
    names = {c["contact_id"]: c["name"] for c in contacts}
    return {"contacts": [{**c, "lines": [describe(ch) for ch in c["channels"]], "groups": in_groups.get(c["contact_id"], [])}
                         for c in contacts],
            "contact_groups": [{**g, "names": [names.get(c, c) for c in g.get("contacts", [])]} for g in groups],
            "cv": contact_values, "gv": group_values, "cerrors": errors or {}, "channel_types": CHANNEL_TYPES,
            "signed_types": SIGNED, "chat_types": CHAT, "tested": tested,
            "group_rerrors": {k.removeprefix("group."): v for k, v in (errors or {}).items() if k.startswith("group.routing")},
            "routing_text": routing_form.describe}


def contact_form_values(contact: dict[str, Any] | None) -> dict[str, Any]:
    """The form's values: each stored channel masked, then one empty row to add a channel."""
    rows = [secrets.mask_channel(ch) for ch in (contact or {}).get("channels", [])]
    rows = [{k: r.get(k) or "" for k in FIELDS} for r in rows]
    rows.append({k: "" for k in FIELDS})
    return {"id": (contact or {}).get("contact_id"), "name": (contact or {}).get("name", ""), "channels": rows}
