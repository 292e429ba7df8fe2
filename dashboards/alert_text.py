"""Alert conditions as the pages say them.

An alert row names its condition by a path into its policy (`conditions[0]`,
`event_conditions[1]`, or `all` for a policy whose conditions must all hold), so what
fired is read back from the policy here rather than stored twice. Values are shown with
four significant digits everywhere, with the metric's unit from the catalogue.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from diag import catalogue

_PATH = re.compile(r"^(conditions|event_conditions)\[(\d+)\]$")
# Catalogue units as they read after a number; a count needs no word after it.
_UNITS = {"percent": " %", "count": "", "bool": "", "bytes": " B", "bytes/s": " B/s"}
_LEVEL_SEVERITY = {"CRITICAL": "critical", "WARN": "warning", "INFO": "info"}


def number(v: Any) -> str:
    """`%.4g`, or a dash for no value: the one number format of the alert tables."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "–"
    return f"{v:.4g}"


def unit_of(metric: str | None) -> str:
    m = catalogue.BY_NAME.get(metric or "")
    if m is None or not m.unit:
        return ""
    return _UNITS.get(m.unit, f" {m.unit}")


def value_text(v: Any, metric: str | None = None) -> str:
    text = number(v)
    return text if text == "–" else text + unit_of(metric)


def period_text(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        return str(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def metric_condition_text(c: dict[str, Any]) -> str:
    """`cpu_usage avg over 5m >= 90 %`, with its labels and how many periods in a row."""
    metric = c.get("metric", "?")
    labels = "".join(f" {k}={v}" for k, v in (c.get("labels") or {}).items())
    text = (f"{metric}{labels} {c.get('statistic', 'avg')} over {period_text(c.get('period', 300))} "
            f"{c.get('comparison', '?')} {value_text(c.get('threshold'), metric)}")
    n = c.get("consecutive") or 1
    return text + (f" for {n} periods in a row" if n > 1 else "")


def event_severity(e: dict[str, Any]) -> str:
    """The severity an event condition fires with: its own, else its level's (as the evaluator does)."""
    return e.get("severity") or _LEVEL_SEVERITY.get(e.get("level") or "", "warning")


def event_condition_text(e: dict[str, Any]) -> str:
    """`event Kernel.* at CRITICAL`, or `event of any type at WARN`."""
    text = f"event {e['type']}" if e.get("type") else "event of any type"
    return text + (f" at {e['level']}" if e.get("level") else "")


def condition_text(policy: dict[str, Any] | None, path: str) -> str:
    """What an alert's condition path means in its policy; the path itself when the policy
    is gone or no longer has that condition (it was edited since the alert fired)."""
    if policy is None:
        return path
    if path == "all":
        conds = policy.get("conditions") or []
        return " and ".join(metric_condition_text(c) for c in conds) if conds else path
    m = _PATH.match(path)
    if m is None:
        return path
    items = policy.get(m.group(1)) or []
    i = int(m.group(2))
    if i >= len(items):
        return path
    return metric_condition_text(items[i]) if m.group(1) == "conditions" else event_condition_text(items[i])


def metric_of(policy: dict[str, Any] | None, path: str) -> str | None:
    """The metric whose unit an alert's value is in (the first condition for `all`)."""
    conds = (policy or {}).get("conditions") or []
    if path == "all":
        return conds[0].get("metric") if conds else None
    m = _PATH.match(path)
    if m and m.group(1) == "conditions" and int(m.group(2)) < len(conds):
        return conds[int(m.group(2))].get("metric")
    return None


def condition_of(policy: dict[str, Any] | None, path: str) -> dict[str, Any] | None:
    """The metric condition an alert's path names (the first one for `all`), or None."""
    conds = (policy or {}).get("conditions") or []
    m = _PATH.match(path)
    i = 0 if path == "all" else int(m.group(2)) if m and m.group(1) == "conditions" else None
    return conds[i] if i is not None and i < len(conds) else None


SEVERITY_ORDER = ("critical", "warning", "info")


def _rank(a: dict[str, Any]) -> tuple:
    sev = a.get("severity")
    return (a.get("state") != "firing", SEVERITY_ORDER.index(sev) if sev in SEVERITY_ORDER else 9,
            a.get("started_at") or 0)


def _series_text(a: dict[str, Any]) -> str:
    """Which series an alert is about (`, on mountpoint=/data device=vdb`), for a metric with several."""
    series = a.get("series") or {}
    return ", on " + " ".join(f"{k}={v}" for k, v in series.items()) if series else ""


def annotate(alerts: Iterable[dict[str, Any]], policies: Iterable[dict[str, Any]],
             current: Callable[[str, dict[str, Any]], float | None] | None = None) -> list[dict[str, Any]]:
    """One row per policy and instance, at its highest severity (a warning and a critical
    condition of one policy on one machine are one problem), firing before pending, the most
    severe first. Each row has `policy_name`, `condition_text`, `value_text` (the value when it
    fired, which the evaluator keeps) and `now_text` (the latest sample now, from `current(instance,
    condition)`), and `also`: the other conditions of the row."""
    by_id = {p["policy_id"]: p for p in policies}
    rows: dict[tuple, dict[str, Any]] = {}
    for a in sorted(alerts, key=_rank):
        p = by_id.get(a.get("policy_id"))
        path = str(a.get("condition", ""))
        key = (a.get("policy_id"), a.get("instance_id"))
        text = condition_text(p, path) + _series_text(a)
        if key in rows:
            rows[key]["also"].append(text)
            continue
        metric = metric_of(p, path)
        cond = condition_of(p, path)
        now = current(str(a.get("instance_id")), cond) if current is not None and cond is not None else None
        rows[key] = {**a, "policy_name": p["name"] if p else a.get("policy_id"), "condition_text": text,
                     "value_text": value_text(a.get("value"), metric), "now": now,
                     "now_text": value_text(now, metric) if now is not None else None, "also": []}
    return list(rows.values())


def unheard(policies: Iterable[dict[str, Any]], firing: Iterable[dict[str, Any]],
            channels_of: Callable[[list[str]], int]) -> dict[str, list[dict[str, Any]]]:
    """Enabled policies whose contact groups reach no channel (none set, or groups and contacts
    without one): they fire silently. `firing` are alert rows; `channels_of(group ids)` counts
    the channels those groups reach."""
    firing_ids = {a.get("policy_id") for a in firing if a.get("state") == "firing"}
    silent = [p for p in policies if p.get("enabled", True) and channels_of(list(p.get("contact_groups") or [])) == 0]
    return {"silent": silent, "firing": [p for p in silent if p["policy_id"] in firing_ids]}
