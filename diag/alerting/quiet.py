"""What keeps an alert's notice from going out now: a silence covering it, or an inhibition
rule whose source fires; and the flush of the notification groups (routing.py), which
asks the same. Functions of the `Alerting` they are given, kept out of its module."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from diag.alerting import inhibition, routing
from diag.alerting.evaluator import acknowledged
from diag.alerting.labels import alert_labels, alertname
from diag.alerting.notices import recipients
from diag.alerting.policy import Policy
from diag.alerting.repository import muted


def labels(row: dict[str, Any], policy: Policy | None, instances: dict[str, dict]) -> dict[str, str]:
    """alert_labels, with the instance's hostname and the event type of an event alert, which
    silences and inhibition rules may match as well."""
    hostname = instances.get(row["instance_id"], {}).get("hostname", "")
    if policy is None:  # the policy was deleted while its alert is shown
        out = {"policy_id": row["policy_id"], "instance_id": row["instance_id"], "severity": row.get("severity") or "",
               "condition": row["condition"], **({"hostname": hostname} if hostname else {})}
    else:
        out = alert_labels(row, policy, hostname)
    detail = row.get("detail") or {}
    if isinstance(detail, str):
        detail = json.loads(detail or "{}")
    if detail.get("event_type"):
        out["event_type"] = str(detail["event_type"])
    return out


def labels_of(a: Any, alert: dict[str, Any]) -> dict[str, str]:
    inst = a.instances.get(alert["instance_id"]) or {}
    return labels(alert, dict(a.policies()).get(alert["policy_id"]), {alert["instance_id"]: inst})


def inhibitor(a: Any, instances: dict[str, dict], now: float,
              planned: list[dict[str, Any]] = ()) -> inhibition.Inhibitor | None:
    """This cycle's inhibition: the rules over the instance facts and the firing alerts,
    `planned` being the alert rows about to be written (they count from this cycle on)."""
    rules = a.inhibit_rules.compiled()
    if not rules:
        return None
    policies = dict(a.policies())
    held = a._held if a._held is not None else {iid for iid in instances if a.events.maintaining(iid, now)}
    sources = inhibition.instance_sources(list(instances.values()), held)
    # Only the alerts of policies whose name some rule's source could match are sources:
    # with the default rule, none, so a storm of 50,000 alerts costs no labels here.
    maybe = {pid for pid, p in policies.items() if any(r.could_be_source(n) for r in rules for n in _alertnames(p))}
    if maybe:
        rows = {r["alert_id"]: r for r in a.repo.alert_rows().values()} | {r["alert_id"]: r for r in planned}
        sources += [labels(r, policies[r["policy_id"]], instances) for r in rows.values()
                    if r["state"] == "firing" and r["policy_id"] in maybe]
    return inhibition.Inhibitor(rules, sources)


def _alertnames(p: Policy) -> set[str]:
    return ({alertname(p, f"conditions[{i}]") for i in range(len(p.conditions))}
            | {alertname(p, f"event_conditions[{i}]") for i in range(len(p.event_conditions))})


def _active_silences(a: Any, now: float) -> list[dict[str, Any]]:
    return [s for s in a.repo.silences(now) if s["starts_at"] <= now]


def check(a: Any, instances: dict[str, dict], now: float,
          planned: list[dict[str, Any]] = ()) -> Callable[[dict[str, Any], dict[str, str]], str | None]:
    """`why(row, labels)`: the reason an alert sends no notice now, as its history says it
    ("muted by s-…", "inhibited by i-…"), or None."""
    silences = _active_silences(a, now)
    inh = inhibitor(a, instances, now, planned)

    def why(row: dict[str, Any], lab: dict[str, str]) -> str | None:
        s = muted(silences, row["alert_id"], row["policy_id"], row["instance_id"], lab, now) if silences else None
        if s is not None:
            return f"muted by {s['silence_id']}" + (f" ({s['comment']})" if s["comment"] else "")
        hit = inh.inhibits(lab) if inh else None
        if hit is not None:
            rule, source = hit
            return (f"inhibited by {rule.rule_id} ({rule.name}): {source.get('alertname', '')} on "
                    f"{source.get('instance_id', '')}")
        return None

    return why


def covering(a: Any, now: float) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`cover(alert)`: its labels, the silence covering it and the inhibition (rule and
    source) holding it, for the pages and GET /alerts."""
    instances = {i["instance_id"]: i for i in a.instances.list() if i["monitoring"]}
    silences = _active_silences(a, now)
    inh = inhibitor(a, instances, now)
    policies = dict(a.policies())

    def cover(alert: dict[str, Any]) -> dict[str, Any]:
        lab = labels(alert, policies.get(alert["policy_id"]), instances)
        s = muted(silences, alert["alert_id"], alert["policy_id"], alert["instance_id"], lab, now) if silences else None
        hit = inh.inhibits(lab) if inh and alert["state"] == "firing" else None
        return {"labels": lab, "silence": s,
                "inhibited_by": {"rule_id": hit[0].rule_id, "name": hit[0].name, "source": hit[1]} if hit else None}

    return cover


def flush_groups(a: Any, instances: dict[str, dict], now: float) -> int:
    """Send the notification groups that are due; returns the notices enqueued."""
    if not a.db.read("SELECT 1 FROM alert_groups WHERE next_flush_at <= ? LIMIT 1", (now,)):
        return 0
    rows = {r["alert_id"]: r for r in a.repo.alert_rows().values()}
    why = check(a, instances, now)
    who: dict[tuple[str, ...], list[dict[str, Any]]] = {}

    def send(c: Any, notice: dict[str, Any], groups: list[str]) -> int:
        key = tuple(groups)
        if key not in who:
            who[key] = recipients(a.repo, groups)
        return sum(a.outbox.enqueue(c, notice, contact, idx, a.base_url, now) for contact in who[key]
                   for idx, chan in enumerate(contact["channels"]) if chan["type"] in routing.GROUPED_TYPES)

    return routing.flush(a.db, now, states={aid: r["state"] for aid, r in rows.items()},
                         quiet=lambda aid, lab: aid in rows and why(rows[aid], lab) is not None,
                         acked=lambda aid: acknowledged(rows.get(aid), now), send=send)
