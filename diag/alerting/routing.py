"""Notification groups, as Alertmanager's route: the alerts of a policy (or of every policy
notifying one contact group) that share the `group_by` label values go out as one notice.

- A new group waits `group_wait` so that the alerts starting together (ten disks of one
  machine) arrive in its first notice.
- After a notice the group is looked at every `group_interval`: it is sent again only when
  its alerts changed (one more firing, one resolved, one silenced) ...
- ... or, unchanged and still firing, when `repeat_interval` has passed since its last
  notice, unless every firing alert in it is acknowledged.

Only chat, webhook and email channels get group notices; an Alertmanager channel keeps
receiving each alert (Alertmanager groups them itself). The groups are rows of
alert_groups, written in the transaction that changes the alerts, and a flush writes its
notices to the outbox and the group's new state in one transaction: a restart neither
loses a pending group nor sends one twice.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from typing import Any

from diag.alerting.policy import Policy, Route
from diag.db import Database

GROUPED_TYPES = ("webhook", "email", "dingtalk", "wecom", "slack", "feishu")
MAX_LISTED = 50  # alerts named in one notice's text; the count says how many more


def route_for(policy_id: str, p: Policy, group_body: Callable[[str], dict[str, Any] | None]) -> tuple[str, Route] | None:
    """(owner, route): the policy's own routing, else its first contact group's, else None
    (one notice per alert, repeated by the policy's `silence`, as before routing existed)."""
    if p.routing is not None:
        return f"policy:{policy_id}", p.routing
    for gid in p.contact_groups:
        g = group_body(gid)
        if g and g.get("routing"):
            return f"group:{gid}", Route.model_validate(g["routing"])
    return None


def group_labels(route: Route, labels: dict[str, str]) -> dict[str, str]:
    if "..." in route.group_by:
        return dict(labels)
    return {k: labels.get(k, "") for k in route.group_by}


def group_key(owner: str, contact_groups: list[str], glabels: dict[str, str]) -> str:
    raw = json.dumps([owner, sorted(contact_groups), sorted(glabels.items())])
    return "grp-" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def add(c: sqlite3.Connection, owner: str, route: Route, policy_id: str, contact_groups: list[str],
        labels: dict[str, str], notice: dict[str, Any], now: float) -> str:
    """Put an alert's notice in its group (inside the caller's transaction); a new group is
    first looked at after group_wait."""
    glabels = group_labels(route, labels)
    key = group_key(owner, contact_groups, glabels)
    row = c.execute("SELECT members FROM alert_groups WHERE group_key = ?", (key,)).fetchone()
    members = json.loads(row["members"]) if row else {}
    members[notice["alert_id"]] = {"status": notice["status"], "labels": labels, "notice": notice}
    if row is None:
        c.execute("INSERT INTO alert_groups (group_key, owner, policy_id, route, labels, contact_groups, members, "
                  "created_at, next_flush_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (key, owner, policy_id, route.model_dump_json(), json.dumps(glabels), json.dumps(contact_groups),
                   json.dumps(members), now, now + route.group_wait))
    else:
        c.execute("UPDATE alert_groups SET members = ?, route = ? WHERE group_key = ?",
                  (json.dumps(members), route.model_dump_json(), key))
    return key


def _digest(members: dict[str, dict[str, Any]]) -> str:
    return ",".join(sorted(f"{aid}:{m['status']}" for aid, m in members.items()))


def decide(g: dict[str, Any], members: dict[str, dict[str, Any]], states: dict[str, str],
           quiet: Callable[[str, dict[str, str]], bool], acked: Callable[[str], bool],
           now: float) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """(the notice kind to send or None, the members it lists). Pure: the rules above."""
    route = Route.model_validate_json(g["route"])
    sent = set(filter(None, g["sent_digest"].split(",")))
    listed: dict[str, dict[str, Any]] = {}
    for aid, m in members.items():
        if quiet(aid, m["labels"]):
            continue
        if m["status"] == "firing" and states.get(aid) == "firing":
            listed[aid] = m
        elif m["status"] == "resolved" and f"{aid}:firing" in sent:  # only what was announced firing
            listed[aid] = m
    if not listed:
        return None, listed
    digest = _digest(listed)
    if digest != g["sent_digest"]:
        return ("firing" if any(m["status"] == "firing" for m in listed.values()) else "resolved"), listed
    due = g["last_sent_at"] is not None and now - g["last_sent_at"] >= route.repeat_interval
    if due and any(not acked(aid) for aid, m in listed.items() if m["status"] == "firing"):
        return "repeat", listed
    return None, listed


def notice(g: dict[str, Any], kind: str, listed: dict[str, dict[str, Any]], now: float) -> dict[str, Any]:
    """One notice for the group, shaped like an alert's (so every channel renders it) with
    `alerts` listing each alert's own notice; the text names every alert, firing first."""
    order = sorted(listed.values(), key=lambda m: (m["status"] != "firing", m["notice"]["instance_id"],
                                                   m["notice"]["condition"]))
    firing = [m for m in order if m["status"] == "firing"]
    base = dict((firing or order)[0]["notice"])
    status = "firing" if firing else "resolved"
    n_res = len(order) - len(firing)
    head = f"{len(firing)} firing" + (f", {n_res} resolved" if n_res else "")
    glabels = json.loads(g["labels"])
    about = " ".join(f"{k}={v}" for k, v in glabels.items() if v) or "all alerts"
    lines = [f"{m['status'].upper()}: {m['notice'].get('text') or m['notice']['message']}"
             for m in order[:MAX_LISTED]]
    if len(order) > MAX_LISTED:
        lines.append(f"... and {len(order) - MAX_LISTED} more")
    text = "\n".join(lines)
    sev_rank = {"critical": 0, "warning": 1, "info": 2}
    base.update(kind=kind, status=status, alert_id=g["group_key"], episode=0, seq=g["sends"] + 1,
                created_at=now, condition="group", group_key=g["group_key"], group_labels=glabels,
                severity=min((m["notice"]["severity"] for m in (firing or order)), key=lambda s: sev_rank.get(s, 3)),
                summary=f"[{head}] {base['policy_name']}: {about}",
                message=f"[{status.upper()}: {head}] {about}\n{text}\nDetails: {base['url']}",
                text=text, alerts=[m["notice"] for m in order])
    return base


def flush(db: Database, now: float, *, states: dict[str, str], quiet: Callable[[str, dict[str, str]], bool],
          acked: Callable[[str], bool], send: Callable[[sqlite3.Connection, dict[str, Any], list[str]], int]) -> int:
    """Look at every group due now; `send(c, notice, contact_groups)` enqueues a group notice
    in the same transaction. Returns the notices enqueued."""
    sent = 0
    for g in db.read("SELECT * FROM alert_groups WHERE next_flush_at <= ? ORDER BY next_flush_at", (now,)):
        g = dict(g)
        route = Route.model_validate_json(g["route"])
        members = json.loads(g["members"])
        kind, listed = decide(g, members, states, quiet, acked, now)
        # What stays: the alerts still firing. A resolved one leaves once announced (a resolved
        # member in `listed` always makes a notice) or at once if it was never announced firing.
        keep = {aid: m for aid, m in members.items() if m["status"] == "firing" and states.get(aid) == "firing"}
        with db.write() as c:
            if kind is not None:
                sent += send(c, notice(g, kind, listed, now), json.loads(g["contact_groups"]))
                c.execute("UPDATE alert_groups SET sent_digest = ?, last_sent_at = ?, sends = sends + 1 "
                          "WHERE group_key = ?", (_digest({a: m for a, m in keep.items() if a in listed}), now,
                                                  g["group_key"]))
            if not keep:  # nothing firing is left: the group ends; a new one starts with group_wait again
                c.execute("DELETE FROM alert_groups WHERE group_key = ?", (g["group_key"],))
            else:
                c.execute("UPDATE alert_groups SET members = ?, next_flush_at = ? WHERE group_key = ?",
                          (json.dumps(keep), now + route.group_interval, g["group_key"]))
    return sent


def groups(db: Database) -> list[dict[str, Any]]:
    """The open groups, for the API and the dashboard."""
    out = []
    for r in db.read("SELECT * FROM alert_groups ORDER BY created_at, group_key"):
        members = json.loads(r["members"])
        out.append({"group_key": r["group_key"], "owner": r["owner"], "policy_id": r["policy_id"],
                    "labels": json.loads(r["labels"]), "route": json.loads(r["route"]),
                    "alerts": {aid: m["status"] for aid, m in members.items()}, "created_at": r["created_at"],
                    "next_flush_at": r["next_flush_at"], "last_sent_at": r["last_sent_at"], "sends": r["sends"]})
    return out
