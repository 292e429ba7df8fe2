"""Prometheus Alertmanager through its v2 API: `POST {url}/api/v2/alerts` with a list
of postable alerts. Alertmanager deduplicates by label set, so a resend is harmless."""

from __future__ import annotations

from typing import Any

from diag.alerting.notifiers.webhook import TIMEOUT, post_json


def endpoint(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/api/v2/alerts") else url + "/api/v2/alerts"


def send(channel: dict[str, Any], payload: Any, key: str, settings: Any, deadline: float = TIMEOUT) -> str:
    r = post_json(endpoint(channel["url"]), payload, key, channel.get("headers"), timeout=deadline)
    return f"HTTP {r.status_code}"
