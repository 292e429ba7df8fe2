"""POST /alert-policies/{id}/test: the policy evaluated now, or on a sample event, and the
messages that would go out, rendered for each channel. Nothing is stored or sent here;
the dashboard's test of an event-only policy then sends them, marked as a test
(Alerting.simulate_event)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, WithJsonSchema

from diag.alerting import evaluator, semantics
from diag.alerting.notices import mark_test, recipients
from diag.alerting.notifiers import payloads
from diag.alerting.policy import Policy, PolicyError, parse
from diag.events import LEVELS
from diag.events import TYPES


def _known_type(v: Any) -> str:
    if not isinstance(v, str) or v not in TYPES:
        raise ValueError("must be a known event type, like Kernel.HungTask")
    return v


def _level(v: Any) -> str:
    if v not in LEVELS:
        raise ValueError(f"must be one of {', '.join(LEVELS)}")
    return v


def _text(message: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError(message)
        return v
    return check


class SampleEvent(BaseModel):
    """A sample event to test the policy on: its type, and optionally its level (default: the
    type's own), instance (default: this server) and message."""

    type: Annotated[str, BeforeValidator(_known_type), WithJsonSchema({"type": "string", "enum": list(TYPES)})]
    level: Annotated[str, BeforeValidator(_level), WithJsonSchema({"type": "string", "enum": list(LEVELS)})] = \
        None  # type: ignore[assignment]
    instance_id: Annotated[str, BeforeValidator(_text("must be an instance id"))] = None  # type: ignore[assignment]
    message: Annotated[str, BeforeValidator(_text("must be a string"))] = None  # type: ignore[assignment]


def sample(policy_id: str, body: dict[str, Any], default_instance: str, now: float) -> dict[str, Any]:
    """A whole event from the few fields a user gives (SampleEvent)."""
    try:
        e = parse(SampleEvent, body)
    except PolicyError as bad:  # the first problem, named inside the request's `event`
        raise PolicyError(f"event.{bad.field}", bad.message) from None
    level = e.level or TYPES[e.type][0]
    iid = default_instance if e.instance_id is None else e.instance_id
    message = f"sample {e.type} event for a policy test" if e.message is None else e.message
    return {"event_id": "e-test-" + uuid.uuid4().hex[:8], "instance_id": iid, "type": e.type, "level": level,
            "status": "Executed", "publish_time": now, "not_before": now, "finish_time": now, "last_time": now,
            "details": {"message": message, "labels": {}, "count": 1, "lines": []}}


def event_sample(p: Policy, instance_id: str) -> dict[str, Any] | None:
    """What an event-only policy's test simulates: an event its first event condition takes
    that the server knows (a family's or a level's first type, one raised at that level if
    any), at the condition's level or the type's own; None when only custom log-rule events
    would match."""
    for ec in p.event_conditions:
        takes = [t for t in TYPES if ec.matches(t, ec.level or TYPES[t][0])]
        etype = next((t for t in takes if ec.level in (None, TYPES[t][0])), takes[0] if takes else None)
        if etype is not None:
            return {"type": etype, "level": ec.level or TYPES[etype][0], "instance_id": instance_id,
                    "message": f"simulated {etype} event, a test of the policy {p.name!r}"}
    return None


def preview(alerting: Any, policy_id: str, event_body: dict[str, Any] | None, now: float,
            as_test: bool = False) -> dict[str, Any]:
    repo = alerting.repo
    if repo.get("policy", policy_id) is None:
        raise PolicyError(None, f"no policy {policy_id}", 404)
    event = None
    if event_body is not None:
        if not isinstance(event_body, dict):
            raise PolicyError("event", "must be an object with type, level, instance_id")
        event = sample(policy_id, event_body, alerting.local_id, now)
    stats: dict[str, float] = {}
    with alerting._lock:
        changes, instances = alerting._changes(now, policy_id, stats, sample_event=event)
        alerts = alerting._alerts
    if event is not None:
        changes = [c for c in changes if c.event is not None]
    results = []
    for ch in changes:
        prev = alerts.get(ch.key)
        plan = alerting._plan(ch, now)
        row = plan[0] if plan else dict(prev) if prev else {
            "alert_id": evaluator.alert_id(*ch.key), "instance_id": ch.key[2], "condition": ch.key[1],
            "series": ch.key[3],
            "state": "ok", "severity": ch.severity, "started_at": ch.started_at, "episode": 0, "notices": 0}
        row.setdefault("severity", ch.severity)
        row["value"] = ch.value
        status = "resolved" if ch.verdict in (semantics.OK, semantics.INSUFFICIENT) else "firing"
        kind = plan[2] if plan else None
        notice = alerting.notice_for(ch, {**row, "fired_at": row.get("fired_at") or now}, status, kind or status,
                                     instances.get(ch.key[2], {}), now)
        if as_test:
            mark_test(notice)
        sends = []
        for contact in recipients(repo, ch.policy.contact_groups):
            for ch_ in contact["channels"]:
                sends.append({"contact_id": contact["contact_id"], "channel": ch_,
                              "payload": payloads.render(ch_, notice, contact["name"], alerting.base_url)})
        results.append({"instance_id": ch.key[2], "condition": ch.key[1], "verdict": ch.verdict,
                        "state_before": prev["state"] if prev else "ok", "state_after": plan[0]["state"] if plan else
                        (prev["state"] if prev else "ok"), "would_notify": kind, "value": ch.value,
                        "severity": row["severity"], "message": notice["message"], "notifications": sends})
    return {"policy_id": policy_id, "evaluated_at": now, "sent": False, "results": results,
            "store_seconds": stats.get("store_seconds", 0.0)}
