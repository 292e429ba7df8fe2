"""An alert's labels: what silences, inhibition rules and routing match and group on.

One function, so every matcher and group key reads the same names (Alertmanager's
`alertname`, and `instance_id`, `severity` ...). The series labels (mountpoint, device)
join when an alert row carries them in its detail.
"""

from __future__ import annotations

from typing import Any


def alert_labels(row: dict[str, Any], policy_name: str = "", hostname: str = "") -> dict[str, str]:
    detail = row.get("detail") or {}
    if isinstance(detail, str):
        import json

        detail = json.loads(detail or "{}")
    out = {str(k): str(v) for k, v in (detail.get("series") or {}).items()}
    out.update(alertname=policy_name or row["policy_id"], policy_id=row["policy_id"],
               instance_id=row["instance_id"], severity=row.get("severity") or "", condition=row["condition"])
    if hostname:
        out["hostname"] = hostname
    if detail.get("event_type"):
        out["event_type"] = str(detail["event_type"])
    return out
