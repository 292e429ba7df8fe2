"""An alert policy as an HTML form and back.

The form's inputs are data (`Field`): one entry gives the input's name, words, widget and
how its text becomes the body's value, so a new policy setting is one entry here and the
template draws it. Input names are the API's field paths (`conditions[0].threshold`), so
each problem the validator names (`PolicyError.errors`) is shown beside its input, all at
once. Empty condition rows are skipped; an error's index is mapped back to the row the
user typed it in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import MultiDict

from dashboards import alert_text, routing_form
from diag import catalogue
from diag.alerting.policy import COMPARISONS, MISSING, SEVERITIES, STATISTICS

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SILENCES = ("5m", "15m", "30m", "1h", "3h", "6h", "12h", "24h")
MAX_ROWS = 20
_ROW = re.compile(r"^(conditions|event_conditions)\[(\d+)\](.*)$")


@dataclass(frozen=True)
class Field:
    """One input. `kind` says how it reads and shows: text, list (comma-separated), pairs
    (`k=v, k2=v2`), duration, number, integer, checkbox, select, metric (the catalogue's
    list). `before`/`after` are the words around the input ("for" 3 "periods in a row")."""

    name: str
    label: str
    kind: str = "text"
    default: Any = ""
    choices: tuple[tuple[str, str], ...] = ()
    hint: str = ""
    before: str = ""
    after: str = ""
    placeholder: str = ""
    size: int = 0
    maxlength: int = 0
    datalist: str = ""  # the id of the suggestions the page lists for it


def _same(*values: str) -> tuple[tuple[str, str], ...]:
    return tuple((v, v) for v in values)


HEAD = (
    Field("name", "Name", size=40, maxlength=200),
    Field("description", "Description", size=40),
    Field("enabled", "Enabled", "checkbox", True, after="evaluate this policy"),
    Field("targets.instances", "Instances", "list", ("*",), placeholder="*", datalist="instance-ids",
          hint="* for every instance, or instance ids separated by commas"),
    Field("targets.labels", "Label selector", "pairs", placeholder="role=db, env=prod",
          hint="only instances with all these labels"),
)
CONDITION = (
    Field("metric", "Metric", "metric"),
    Field("labels", "Labels", "pairs", placeholder="scope=public", size=10),
    Field("statistic", "Statistic", "select", "avg", _same(*STATISTICS)),
    Field("period", "Period", "duration", "5m", before="over", size=4),
    Field("comparison", "Compare", "select", ">=", _same(*COMPARISONS)),
    Field("threshold", "Threshold", "number", size=6),
    Field("consecutive", "Repeat", "integer", 1, before="for", after="periods in a row", size=2),
    Field("severity", "Severity", "select", "warning", _same(*SEVERITIES)),
)
EVENT_FIELDS = ("type", "level", "severity")
TAIL = (
    Field("match", "Combine", "select", "any", (("any", "any condition fires the policy"),
                                                 ("all", "all conditions must hold"))),
    Field("silence", "Notify again after", "duration", "24h", size=6, datalist="silence-durations",
          hint="while still firing: 5m to 24h"),
    Field("notify_recovery", "Recovery", "checkbox", True, after="notify when it recovers"),
    Field("missing_data", "Missing data", "select", "insufficient", tuple(zip(MISSING, (
        "insufficient data (no change)", "treat as ok", "treat as breaching", "keep the last state")))),
)
POLICY_FIELDS = HEAD + TAIL
COND_FIELDS = tuple(f.name for f in CONDITION)


def _pairs(text: str) -> tuple[dict[str, str], str | None]:
    """`k=v, k2=v2` -> {"k": "v", "k2": "v2"}, or the part that is not name=value."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, sep, v = part.partition("=")
        if not sep or not k.strip():
            return {}, f"{part!r} is not name=value"
        out[k.strip()] = v.strip()
    return out, None


def _number(text: str, kind: type) -> Any:
    """A number when it reads as one; else the text, for the validator to name the field."""
    try:
        return kind(text)
    except ValueError:
        return text


def _read(f: Field, form: MultiDict, key: str, errors: dict[str, str]) -> Any:
    """The body's value of one input (a problem the form itself sees goes to `errors`)."""
    if f.kind == "checkbox":
        return form.get(key) == "on"
    text = form.get(key, "").strip()
    if f.kind == "list":
        return [s.strip() for s in text.split(",") if s.strip()] or list(f.default)
    if f.kind == "pairs":
        value, problem = _pairs(text)
        if problem:
            errors[key] = problem
        return value
    if not text:
        return f.default
    if f.kind in ("number", "integer"):
        return _number(text, float if f.kind == "number" else int)
    return text


def _put(body: dict[str, Any], path: str, value: Any) -> None:
    """`targets.instances` -> body["targets"]["instances"]."""
    *outer, last = path.split(".")
    for part in outer:
        body = body.setdefault(part, {})
    body[last] = value


def _get(body: dict[str, Any], path: str, default: Any) -> Any:
    for part in path.split("."):
        if not isinstance(body, dict) or part not in body:
            return default
        body = body[part]
    return body


def rows(form: MultiDict, prefix: str, default: int) -> int:
    try:
        n = int(form.get(f"{prefix}_rows", default))
    except ValueError:
        n = default
    return max(0, min(n, MAX_ROWS))


def to_body(form: MultiDict) -> tuple[dict[str, Any], dict[str, list[int]], dict[str, str]]:
    """The policy body; for each list the form row of each kept entry; and the problems the
    form itself sees, by input name (the validator is asked about the rest all the same)."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {"contact_groups": [v for v in form.getlist("contact_groups") if v]}
    for f in POLICY_FIELDS:
        _put(body, f.name, _read(f, form, f.name, errors))
    body["routing"] = routing_form.body(form)
    if not body["name"]:
        errors["name"] = "give the policy a name"
    kept: dict[str, list[int]] = {"conditions": [], "event_conditions": []}
    conditions = []
    for i in range(rows(form, "conditions", 1)):
        p = f"conditions[{i}]."
        if not (form.get(p + "metric", "").strip() or form.get(p + "threshold", "").strip()):
            continue
        c = {f.name: _read(f, form, p + f.name, errors) for f in CONDITION}
        for name, problem in (("metric", "pick a metric"), ("threshold", "give a threshold")):
            if c[name] == "":
                errors[p + name] = problem
        conditions.append(c)
        kept["conditions"].append(i)
    events = []
    for i in range(rows(form, "event_conditions", 1)):
        p = f"event_conditions[{i}]."
        # A severity alone keeps the row, so the validator says it needs a type or level
        # instead of the choice vanishing.
        if not any(form.get(p + f, "").strip() for f in EVENT_FIELDS):
            continue
        events.append({f: form.get(p + f, "").strip() or None for f in EVENT_FIELDS})
        kept["event_conditions"].append(i)
    body["conditions"], body["event_conditions"] = conditions, events
    if form.get("effective.on") == "on":
        g = lambda k, d: form.get(k, "").strip() or d  # noqa: E731
        body["effective"] = {"days": form.getlist("effective.days"), "start": g("effective.start", "00:00"),
                             "end": g("effective.end", "24:00"), "timezone": g("effective.timezone", "UTC")}
    return body, kept, errors


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


# Where a problem of a whole part is shown: beside the input that part starts with.
_ALIASES = {"targets": "targets.instances"}
_GROUP = re.compile(r"^contact_groups\[\d+\]$")


def _places(rows_: dict[str, int]) -> set[str]:
    """Every key an error can be shown beside, for a form of these many rows."""
    out = {f.name for f in POLICY_FIELDS} | {"conditions", "event_conditions", "contact_groups", "effective",
                                             "effective.days", "effective.start", "effective.end", "effective.timezone"}
    for i in range(rows_["conditions"]):
        out |= {f"conditions[{i}].{f}" for f in COND_FIELDS}
    for i in range(rows_["event_conditions"]):
        out |= {f"event_conditions[{i}]"} | {f"event_conditions[{i}].{f}" for f in EVENT_FIELDS}
    return out


def merge_errors(errors: dict[str, str], problems: Iterable[dict[str, str]], kept: dict[str, list[int]],
                 form: MultiDict) -> None:
    """Add the validator's problems to the form's own, each under the input it is shown
    beside, the rest under `_form` (the notice above the form); the form's word on an
    input comes first."""
    places = _places({k: rows(form, k, 1) for k in ("conditions", "event_conditions")})
    for p in problems:
        key = form_field(p.get("field"), kept) or "_form"
        key = "contact_groups" if _GROUP.match(key) else _ALIASES.get(key, key)
        message = p["message"]
        if key not in places:
            key, message = "_form", (f"{p['field']}: " if p.get("field") else "") + message
        if key == "_form" and "_form" in errors:
            if message not in errors["_form"]:
                errors["_form"] += "; " + message
        else:
            errors.setdefault(key, message)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return str(seconds)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{seconds:g}s"


def _show(f: Field, value: Any) -> Any:
    """A stored value as its input shows it."""
    if f.kind == "checkbox":
        return bool(value)
    if f.kind == "list":
        return ", ".join(value or [])
    if f.kind == "pairs":
        return ", ".join(f"{k}={v}" for k, v in (value or {}).items())
    if f.kind == "duration":
        return _duration(value)
    return "" if value is None else value


def to_values(policy: dict[str, Any] | None) -> dict[str, Any]:
    """The values the form shows for a stored policy (or a new one)."""
    policy = policy or {}
    out = {f.name: _show(f, _get(policy, f.name, f.default)) for f in POLICY_FIELDS}
    eff = policy.get("effective") or {}
    out.update({
        "contact_groups": policy.get("contact_groups", []),
        "conditions": [{f.name: _show(f, c.get(f.name, f.default)) for f in CONDITION}
                       for c in policy.get("conditions", [])] or [{}],
        "event_conditions": [{f: e.get(f) or "" for f in EVENT_FIELDS}
                             for e in policy.get("event_conditions", [])] or [{}],
        "effective.on": bool(eff), "effective.days": eff.get("days", list(DAYS)),
        "effective.start": eff.get("start", "00:00"), "effective.end": eff.get("end", "24:00"),
        "effective.timezone": eff.get("timezone", "UTC"), **routing_form.values(policy.get("routing")),
    })
    return out


def values_from_form(form: MultiDict, extra: str | None = None) -> dict[str, Any]:
    """What the user typed, shown back (with a blank row more when asked)."""
    g = lambda k: form.get(k, "")  # noqa: E731
    out: dict[str, Any] = {f.name: (form.get(f.name) == "on" if f.kind == "checkbox" else g(f.name))
                           for f in POLICY_FIELDS}
    out.update({k: g(k) for k in ("effective.start", "effective.end", "effective.timezone")})
    out.update(contact_groups=form.getlist("contact_groups"), **{"effective.on": form.get("effective.on") == "on",
                                                                  "effective.days": form.getlist("effective.days")},
               **routing_form.from_form(form))
    out["conditions"] = [{f: g(f"conditions[{i}].{f}") for f in COND_FIELDS}
                         for i in range(rows(form, "conditions", 1))]
    out["event_conditions"] = [{f: g(f"event_conditions[{i}].{f}") for f in EVENT_FIELDS}
                               for i in range(rows(form, "event_conditions", 1))]
    if extra in ("conditions", "event_conditions") and len(out[extra]) < MAX_ROWS:
        out[extra].append({})
    return out


@dataclass(frozen=True)
class MetricChoice:
    name: str
    unit: str  # as it reads after a number: "%", "B/s"; "" for a count
    description: str


def _area_label(area: str) -> str:
    return area.upper() if len(area) <= 3 else area.capitalize()


_BASE_TEXT = {"ratio": "0-1", "seconds": "s", "bytes": "B", "bytes_per_second": "B/s", "per_second": "/s"}


def metric_groups(known: Iterable[str], chosen: Iterable[str]) -> list[tuple[str, list[MetricChoice]]]:
    """The metrics a condition may pick, by catalogue area in the catalogue's order; the
    names the store holds beyond the catalogue; and what a row names that is neither, so
    the user's choice is shown back (and the validator says why it is wrong)."""
    groups: dict[str, list[MetricChoice]] = {}
    for name, m in catalogue.BY_NAME.items():
        groups.setdefault(_area_label(m.area), []).append(
            MetricChoice(name, alert_text.unit_of(name).strip(), m.description))
    # A policy takes the /metrics name too, its threshold in that name's unit (issue 17).
    groups["On /metrics, in base units"] = [
        MetricChoice(m.exposition_name, _BASE_TEXT.get(m.base_unit, m.base_unit), f"{m.name} as Prometheus scrapes it")
        for m in catalogue.METRICS if m.exposition_name]
    out = list(groups.items())
    others = sorted(set(known) - set(catalogue.BY_NAME) - set(catalogue.BY_EXPOSED))
    if others:
        out.append(("Other stored metrics", [MetricChoice(n, "", "stored by an agent or import; not in the catalogue")
                                             for n in others]))
    unknown = sorted({c for c in chosen if c} - set(catalogue.BY_NAME) - set(catalogue.BY_EXPOSED) - set(others))
    if unknown:
        out.append(("Not known", [MetricChoice(n, "", "neither in the catalogue nor ever stored") for n in unknown]))
    return out
