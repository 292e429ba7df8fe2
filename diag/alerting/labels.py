"""An alert's identity as labels, the way Prometheus and Alertmanager see one.

An alert is one (policy, condition, instance, series): the series is the labels of the
metric's series that breach (mountpoint, device, interface...), so two full filesystems
are two alerts. `series_key` is the canonical text of those labels, kept in the alerts
table; `alert_labels` is the one label set every channel, the rules export, grouping and
silences use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from diag.alerting.policy import Policy

# Labels that name the alert itself: a series label of the same name never replaces them.
OWN = ("alertname", "severity", "instance_id", "policy_id", "condition")


def series_key(labels: Mapping[str, str]) -> str:
    """Canonical text of a series' labels ('' for a metric with one series per instance)."""
    return json.dumps(dict(sorted(labels.items())), separators=(",", ":")) if labels else ""


def series_labels(key: str) -> dict[str, str]:
    return json.loads(key) if key else {}


def alertname(p: Policy, condition: str) -> str:
    """A stable identifier (a valid Prometheus metric name) from the policy's name, with the
    suffix of the exported rule the condition becomes, so that Alertmanager routes and
    silences match the same alert whether the service or Prometheus evaluates it."""
    words = re.findall(r"[A-Za-z0-9]+", p.name)
    base = "".join(w[:1].upper() + w[1:] for w in words) or "DiagAlert"
    if base[0].isdigit():
        base = "Diag" + base
    if condition.startswith("event_conditions["):
        return f"{base}_event{condition[len('event_conditions['):-1]}"
    if condition.startswith("conditions[") and p.match != "all" and len(p.conditions) > 1:
        return f"{base}_{condition[len('conditions['):-1]}"
    return base


def alert_labels(row: Mapping[str, Any], p: Policy, hostname: str = "") -> dict[str, str]:
    """The labels of an alert row (or of a notice, which carries the same fields): alertname,
    severity, instance_id, policy_id, condition and the series labels; with `hostname` when
    given (silences and inhibition rules may match it; channels carry the instance apart)."""
    series = row.get("series") or {}
    if isinstance(series, str):
        series = series_labels(series)
    own = {"alertname": alertname(p, row["condition"]), "severity": row["severity"],
           "instance_id": row["instance_id"], "policy_id": row["policy_id"], "condition": row["condition"]}
    if hostname:
        own["hostname"] = hostname
    return {**{k: str(v) for k, v in series.items() if k not in OWN and k != "hostname"}, **own}
