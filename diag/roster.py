"""Forgetting an instance that no longer exists, in every part that lists it."""

from __future__ import annotations

import time
from typing import Protocol

from diag.host_facts import Facts
from diag.instances import Instances


class AlertsOf(Protocol):
    def forget_instance(self, instance_id: str, now: float | None = None) -> int: ...


class Roster:
    def __init__(self, instances: Instances, *, local_id: str, alerts: AlertsOf, facts: Facts) -> None:
        self._instances = instances
        self._local_id = local_id
        self._alerts = alerts
        self._facts = facts

    def forget(self, instance_id: str, now: float | None = None) -> int:
        """Forget an instance that no longer exists: it leaves the lists, /metrics and the
        alert evaluation, its firing alerts resolve; its history stays until retention.
        Returns the number of alerts resolved. If it reports again it is registered anew
        (first seen then, Initializing), its old history visible beside the new."""
        now = time.time() if now is None else now
        if self._instances.get(instance_id) is None:
            raise KeyError(instance_id)
        if instance_id == self._local_id:
            raise ValueError(f"instance {instance_id} is this server itself: it cannot be forgotten while it runs")
        resolved = self._alerts.forget_instance(instance_id, now)  # while its hostname is still known
        self._instances.forget(instance_id, now)
        self._facts.forget(instance_id)
        # An evaluation between the two steps still saw it listed and may have fired an alert again.
        return resolved + self._alerts.forget_instance(instance_id, now)
