"""Webhook delivery: one JSON POST, with the notification's idempotency key."""

from __future__ import annotations

from typing import Any

import requests

from diag.alerting.notifiers import DeliveryError

TIMEOUT = 10.0


def post_json(url: str, body: Any, key: str, headers: dict[str, str] | None = None,
              timeout: float = TIMEOUT) -> requests.Response:
    h = {"Content-Type": "application/json", "User-Agent": "diag-alerting", "Idempotency-Key": key,
         **(headers or {})}
    try:
        r = requests.post(url, json=body, headers=h, timeout=timeout)
    except requests.RequestException as e:
        raise DeliveryError(f"{type(e).__name__}: {e}") from None
    if r.status_code >= 300:
        # A 4xx other than timeout/throttling will not succeed on a retry.
        permanent = 400 <= r.status_code < 500 and r.status_code not in (408, 425, 429)
        raise DeliveryError(f"HTTP {r.status_code}: {r.text[:200]}", permanent=permanent)
    return r


def send(channel: dict[str, Any], payload: Any, key: str, settings: Any) -> str:
    r = post_json(channel["url"], payload, key, channel.get("headers"))
    return f"HTTP {r.status_code}"
