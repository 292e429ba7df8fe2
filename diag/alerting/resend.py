"""Alertmanager's view of an alert kept true, as Prometheus keeps it.

Alertmanager considers an alert resolved once its `endsAt` passes. Prometheus re-sends
every firing alert every `resend_delay` (1m) with endsAt = now + 4 x max(evaluation
interval, resend delay), so an alert stays active exactly while it is re-sent, and
sends endsAt = now when it resolves. Here the same: `due` picks the firing alerts whose
last send to Alertmanager is a resend delay old; Alerting queues them through the
persisted outbox, to the Alertmanager channels only (people are re-notified by the
policy's silence period, not every minute). The alert's detail keeps `am`: when it was
last sent there and the text it carried, so a resend repeats it and a resolve is sent
only to an Alertmanager that knows the alert.
"""

from __future__ import annotations

import json
from typing import Any

RESEND_DELAY = 60.0  # seconds, Prometheus' --rules.alert.resend-delay default


def ends_at(now: float, interval: float) -> float:
    return now + 4 * max(float(interval), RESEND_DELAY)


def am_channels(contact: dict[str, Any]) -> list[int]:
    return [i for i, ch in enumerate(contact["channels"]) if ch.get("type") == "alertmanager"]


def detail_of(row: dict[str, Any]) -> dict[str, Any]:
    raw = row.get("detail") or "{}"
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def known(row: dict[str, Any]) -> dict[str, Any] | None:
    """What Alertmanager was last sent about this alert's episode, or None if nothing."""
    return detail_of(row).get("am")


def mark(row: dict[str, Any], notice: dict[str, Any], now: float) -> None:
    """Record in the row that Alertmanager was sent this notice now."""
    detail = detail_of(row)
    detail["am"] = {"at": now, "text": notice.get("text", ""), "summary": notice.get("summary")}
    row["detail"] = json.dumps(detail)


def due(rows: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """Firing alerts whose last Alertmanager send is a resend delay old (or that it never got)."""
    out = []
    for r in rows:
        if r["state"] != "firing":
            continue
        am = known(r)
        # A little slack: a cycle that comes a moment early must not skip a minute.
        if am is None or now - float(am.get("at", 0)) >= RESEND_DELAY - 1:
            out.append(r)
    return out
