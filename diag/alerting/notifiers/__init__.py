"""Channels: each `send(channel, payload, key, settings)` delivers one stored payload or
raises DeliveryError (`permanent` when retrying cannot help, like a 400 answer)."""

from __future__ import annotations

from typing import Any


class DeliveryError(Exception):
    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def send(channel: dict[str, Any], payload: Any, key: str, settings: Any, deadline: float = 10.0) -> str:
    """Deliver through the channel's notifier within `deadline` seconds (HTTP channels; mail
    keeps smtp.timeout); returns a short outcome detail."""
    from diag.alerting.notifiers import alertmanager, chat, email, webhook

    kind = channel["type"]
    if kind == "webhook":
        return webhook.send(channel, payload, key, settings, deadline)
    if kind == "email":
        return email.send(channel, payload, key, settings)
    if kind == "alertmanager":
        return alertmanager.send(channel, payload, key, settings, deadline)
    if kind in ("dingtalk", "wecom", "slack", "feishu"):
        return chat.send(channel, payload, key, settings, deadline)
    raise DeliveryError(f"unknown channel type {kind!r}", permanent=True)
