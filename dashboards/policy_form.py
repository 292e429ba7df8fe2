"""An alert policy as an HTML form and back.

Input names are the API's field paths (`conditions[0].threshold`), so the field a
validation error names (`PolicyError.field`) is the input it is shown beside.
Empty condition rows are skipped; an error's index is mapped back to the row the
user typed it in.
"""

from __future__ import annotations

import re
from typing import Any

from werkzeug.datastructures import MultiDict

from dashboards import routing_form

COND_FIELDS = ("metric", "labels", "statistic", "period", "comparison", "threshold", "consecutive", "severity")
EVENT_FIELDS = ("type", "level", "severity")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SILENCES = ("5m", "15m", "30m", "1h", "3h", "6h", "12h", "24h")
MAX_ROWS = 20
_ROW = re.compile(r"^(conditions|event_conditions)\[(\d+)\](.*)$")


class FormError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def _pairs(text: str, field: str) -> dict[str, str]:
    """`k=v, k2=v2` -> {"k": "v", "k2": "v2"}."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, sep, v = part.partition("=")
        if not sep or not k.strip():
            raise FormError(field, f"{part!r} is not name=value")
        out[k.strip()] = v.strip()
    return out


def _number(text: str, kind: type) -> Any:
    """A number when it reads as one; else the text, for the validator to name the field."""
    try:
        return kind(text)
    except ValueError:
        return text


def rows(form: MultiDict, prefix: str, default: int) -> int:
    try:
        n = int(form.get(f"{prefix}_rows", default))
    except ValueError:
        n = default
    return max(0, min(n, MAX_ROWS))


def to_body(form: MultiDict) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """The policy body, and for each list the form row of each kept entry."""
    g = lambda k: form.get(k, "").strip()  # noqa: E731
    body: dict[str, Any] = {"name": g("name"), "description": g("description"),
                            "enabled": form.get("enabled") == "on", "match": g("match") or "any",
                            "silence": g("silence") or "24h", "notify_recovery": form.get("notify_recovery") == "on",
                            "missing_data": g("missing_data") or "insufficient",
                            "contact_groups": [v for v in form.getlist("contact_groups") if v],
                            "routing": routing_form.body(form)}
    instances = [s.strip() for s in g("targets.instances").split(",") if s.strip()] or ["*"]
    body["targets"] = {"instances": instances, "labels": _pairs(g("targets.labels"), "targets.labels")}
    kept: dict[str, list[int]] = {"conditions": [], "event_conditions": []}
    conditions = []
    for i in range(rows(form, "conditions", 1)):
        p = f"conditions[{i}]."
        if not (g(p + "metric") or g(p + "threshold")):
            continue
        c: dict[str, Any] = {"metric": g(p + "metric"), "labels": _pairs(g(p + "labels"), p + "labels"),
                             "statistic": g(p + "statistic") or "avg", "period": g(p + "period") or "5m",
                             "comparison": g(p + "comparison") or ">=",
                             "threshold": _number(g(p + "threshold"), float) if g(p + "threshold") else None,
                             "consecutive": _number(g(p + "consecutive") or "1", int),
                             "severity": g(p + "severity") or "warning"}
        if c["threshold"] is None:
            raise FormError(p + "threshold", "give a threshold")
        conditions.append(c)
        kept["conditions"].append(i)
    events = []
    for i in range(rows(form, "event_conditions", 1)):
        p = f"event_conditions[{i}]."
        # A severity alone keeps the row, so the validator says it needs a type or level
        # instead of the choice vanishing.
        if not any(g(p + f) for f in EVENT_FIELDS):
            continue
        events.append({f: g(p + f) or None for f in EVENT_FIELDS})
        kept["event_conditions"].append(i)
    body["conditions"], body["event_conditions"] = conditions, events
    if form.get("effective.on") == "on":
        body["effective"] = {"days": form.getlist("effective.days"), "start": g("effective.start") or "00:00",
                             "end": g("effective.end") or "24:00", "timezone": g("effective.timezone") or "UTC"}
    return body, kept


def form_field(field: str | None, kept: dict[str, list[int]]) -> str | None:
    """The input an API error path belongs to: `conditions[1].threshold` may be the third row."""
    if field is None:
        return None
    m = _ROW.match(field)
    if m:
        lst, idx, rest = m.group(1), int(m.group(2)), m.group(3)
        rows_ = kept.get(lst, [])
        if idx < len(rows_):
            return f"{lst}[{rows_[idx]}]{rest}"
    return field


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return str(seconds)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{seconds:g}s"


def _labels_text(labels: dict[str, str] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (labels or {}).items())


def to_values(policy: dict[str, Any] | None) -> dict[str, Any]:
    """The values the form shows for a stored policy (or a new one)."""
    if policy is None:
        return {"name": "", "description": "", "enabled": True, "match": "any", "silence": "24h",
                "notify_recovery": True, "missing_data": "insufficient", "contact_groups": [],
                "targets.instances": "*", "targets.labels": "", "conditions": [{}], "event_conditions": [{}],
                "effective.on": False, "effective.days": list(DAYS), "effective.start": "00:00",
                "effective.end": "24:00", "effective.timezone": "UTC", **routing_form.values(None)}
    eff = policy.get("effective") or {}
    return {
        "name": policy.get("name", ""), "description": policy.get("description", ""),
        "enabled": policy.get("enabled", True), "match": policy.get("match", "any"),
        "silence": _duration(policy.get("silence", 86400)), "notify_recovery": policy.get("notify_recovery", True),
        "missing_data": policy.get("missing_data", "insufficient"),
        "contact_groups": policy.get("contact_groups", []),
        "targets.instances": ", ".join(policy.get("targets", {}).get("instances", ["*"])),
        "targets.labels": _labels_text(policy.get("targets", {}).get("labels")),
        "conditions": [{**c, "labels": _labels_text(c.get("labels")), "period": _duration(c.get("period"))}
                       for c in policy.get("conditions", [])] or [{}],
        "event_conditions": [{f: e.get(f) or "" for f in EVENT_FIELDS}
                             for e in policy.get("event_conditions", [])] or [{}],
        "effective.on": bool(eff), "effective.days": eff.get("days", list(DAYS)),
        "effective.start": eff.get("start", "00:00"), "effective.end": eff.get("end", "24:00"),
        "effective.timezone": eff.get("timezone", "UTC"), **routing_form.values(policy.get("routing")),
    }


def values_from_form(form: MultiDict, extra: str | None = None) -> dict[str, Any]:
    """What the user typed, shown back (with a blank row more when asked)."""
    g = lambda k: form.get(k, "")  # noqa: E731
    out: dict[str, Any] = {k: g(k) for k in ("name", "description", "match", "silence", "missing_data",
                                              "targets.instances", "targets.labels", "effective.start",
                                              "effective.end", "effective.timezone")}
    out.update(enabled=form.get("enabled") == "on", notify_recovery=form.get("notify_recovery") == "on",
               contact_groups=form.getlist("contact_groups"), **{"effective.on": form.get("effective.on") == "on",
                                                                  "effective.days": form.getlist("effective.days")},
               **routing_form.from_form(form))
    out["conditions"] = [{f: g(f"conditions[{i}].{f}") for f in COND_FIELDS}
                         for i in range(rows(form, "conditions", 1))]
    out["event_conditions"] = [{f: g(f"event_conditions[{i}].{f}") for f in EVENT_FIELDS}
                               for i in range(rows(form, "event_conditions", 1))]
    if extra in ("conditions", "event_conditions") and len(out[extra]) < MAX_ROWS:
        out[extra].append({})
    return out
