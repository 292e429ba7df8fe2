"""Alerting in /metrics: alerts by state and severity, the outbox by state, and delivery
attempts by channel type and outcome."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from diag.alerting.policy import SEVERITIES

STATES = ("pending", "firing", "resolved")


class AlertsCollector(Collector):
    def __init__(self, alerting: Any) -> None:
        self._a = alerting

    def collect(self) -> Iterator[Metric]:
        counts = self._a.repo.counts()
        g = GaugeMetricFamily("diag_alerts", "Alerts by state and severity (one per policy, condition and instance).",
                              labels=["state", "severity"])
        for st in STATES:
            for sev in SEVERITIES:
                g.add_metric([st, sev], counts.get((st, sev), 0))
        yield g
        ob = self._a.outbox.counts()
        o = GaugeMetricFamily("diag_alert_outbox", "Notifications in the outbox by state.", labels=["state"])
        for st in ("pending", "delivered", "failed"):
            o.add_metric([st], ob.get(st, 0))
        yield o
        d = CounterMetricFamily("diag_alert_deliveries", "Notification delivery attempts since start, by outcome.",
                                labels=["channel", "outcome"])
        for (channel, outcome), n in sorted(self._a.outbox.outcomes.items()):
            d.add_metric([channel, outcome], n)
        yield d
        secs = self._a.last_stats.get("seconds")
        if secs is not None:
            e = GaugeMetricFamily("diag_alert_evaluation_seconds", "Wall time of the last evaluation cycle.")
            e.add_metric([], secs)
            yield e

    def describe(self) -> Iterable[Metric]:
        return []
