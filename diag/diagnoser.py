"""Diagnoses and health: checks run over a window of an instance's data, the report is
stored, and when it covers every check it sets the instance's health state (and its events)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from checks import plugin as plugin_checks
from checks.base import Check
from collectors.settings import BandwidthCap
from diag import diagnosis, health
from diag.events import EventLog
from diag.host_facts import Facts
from diag.instances import Instances
from diag.process_history import ProcessHistory
from diag.reports import Reports
from diag.store import InstanceSource, ReadStore, StoreError

log = logging.getLogger(__name__)


class Diagnoser:
    def __init__(self, store: ReadStore, *, local_id: str, interval: float, checks: Sequence[Check],
                 plugin_result: Callable[[str], dict[str, Any] | None], events: EventLog, instances: Instances, reports: Reports,
                 processes: ProcessHistory, facts: Facts, bandwidth_caps: Mapping[str, BandwidthCap],
                 service_ports: list[int], engine_instances: InstanceSource | None = None) -> None:
        self._store = store
        self._local_id = local_id
        self._interval = interval
        self.checks = list(checks)
        self._plugin_result = plugin_result
        self._events = events
        self._instances = instances
        self._reports = reports
        self._processes = processes
        self._facts = facts
        self._caps = dict(bandwidth_caps)
        self._service_ports = service_ports
        self._engine_instances = engine_instances
        self.stopped_after = next(c.thresholds["seconds"] for c in self.checks if c.id == "state.stopped")

    def diagnose(self, instance_id: str | None = None, window: float = 12 * 3600,
                 check_ids: list[str] | None = None, now: float | None = None,
                 fresh_facts: bool = False) -> dict[str, Any]:
        """Run checks over the window ending now; the report is stored and, when it covers
        every check, sets the instance's health.

        `fresh_facts`: a diagnosis someone asked for (API, CLI) judges this host's
        interfaces, routes, listeners and firewall as they are now, not as the scheduled
        snapshot saw them minutes ago. An agent's facts come with its batches."""
        now = time.time() if now is None else now
        instance_id = instance_id or self._local_id
        inst = self._instances.get(instance_id)
        if inst is None:
            raise KeyError(instance_id)
        if fresh_facts and instance_id == self._local_id:
            self._facts.take()
        checks = diagnosis.select(self.checks, check_ids)
        ctx = diagnosis.StoreContext(
            store=self._store, events=self._events, instance_id=instance_id, start=now - window, end=now, now=now,
            interval=self.interval_of(inst), monitoring_since=inst["first_seen"], bandwidth_caps=self._caps,
            service_ports=self._service_ports, facts=lambda: self._facts.of(instance_id),
            processes=lambda at: self._processes.at(instance_id, at),
            # A plugin runs on this host and judges it only: not another instance.
            plugins=self._plugin_result if instance_id == self._local_id else plugin_checks.elsewhere)
        found = diagnosis.diagnose(ctx, checks, full=len(checks) == len(self.checks),
                                   judge=lambda results, report_id: self._judge(inst, results, report_id, now))
        report = found.report.to_json()
        self._reports.save(report)
        self._events.raised(instance_id, found.events, now)
        if found.report.full:
            self._set_health(instance_id, found.health.status, found.health.reasons, now)
        return report

    def diagnose_all(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._events.tick(now)
        self.sync_instances()
        for inst in self._instances.list():
            if inst["last_seen"] is None or not inst["monitoring"]:
                # Registered but never sent a sample: nothing to judge yet (it stays
                # Initializing), and a fleet of agents that only poll costs nothing here.
                # Monitoring switched off: NotApplicable, and nothing runs for it.
                continue
            try:
                self.diagnose(inst["instance_id"], now=now)
            except Exception:  # noqa: BLE001 - one instance must not stop the others
                log.exception("diagnosis of %s failed", inst["instance_id"])

    def sync_instances(self) -> None:
        """With an engine behind --store-url: every `instance_id` it has data of is an
        instance here, last seen at its newest sample (so a silent one turns stale)."""
        if self._engine_instances is None:
            return
        try:
            ids, seen = self._engine_instances.instance_ids(), self._engine_instances.last_seen()
        except StoreError as e:
            log.warning("cannot list the engine's instances: %s", e)
            return
        for iid in ids:
            if self._instances.get(iid) is None:
                gone = self._instances.forgotten_at(iid)
                if gone is not None and seen.get(iid, 0.0) <= gone:
                    continue  # forgotten: the engine keeps its old samples until its retention
                self._instances.register(iid)
            if iid in seen:
                self._instances.seen(iid, seen[iid])

    def set_monitoring(self, instance_id: str, enabled: bool, now: float | None = None) -> dict[str, Any]:
        """Switch monitoring of an instance off (NotApplicable: no scheduled diagnosis, no
        alerts; its data is still stored) or on again. Returns its health now."""
        now = time.time() if now is None else now
        inst = self._instances.get(instance_id)
        if inst is None:
            raise KeyError(instance_id)
        self._instances.set_monitoring(instance_id, enabled)
        health_now = self.health_of(instance_id, now)  # stores the change, and its event, once a report exists
        assert health_now is not None
        stored = self._instances.get(instance_id)
        if stored is not None and stored["health_status"] != health_now["health_status"]:
            # A never-diagnosed (Initializing) instance: health_of stored nothing, yet the
            # switch is a change of state all the same.
            self._instances.set_health(instance_id, health_now["health_status"], health_now["health_reasons"], now)
            self._health_changed(instance_id, inst["health_status"], health_now["health_status"], now)
        if inst["monitoring"] != enabled:
            self._state_changed(instance_id, ("Monitored", "monitoring switched on") if enabled
                                else ("Unmonitored", "monitoring switched off"), now)
        return health_now

    def interval_of(self, inst: dict[str, Any]) -> float:
        """How often the instance sends: what its agent said, else this service's own interval."""
        return inst.get("interval") or self._interval

    def health_of(self, instance_id: str, now: float | None = None) -> dict[str, Any] | None:
        """The health state now: the latest full report, seen through today's freshness and
        maintenance (so a silent agent turns InsufficientData without waiting for a diagnosis)."""
        now = time.time() if now is None else now
        inst = self._instances.get(instance_id)
        if inst is None:
            return None
        latest = self._reports.latest_full(instance_id)
        state = self._judge(inst, latest["checks"] if latest else None, latest["report_id"] if latest else None, now)
        if latest is not None and (state.status != inst["health_status"]
                                   or health.running_change(inst["health_reasons"], state.reasons)):
            self._set_health(instance_id, state.status, state.reasons, now)
        return state.to_json()

    def _judge(self, inst: dict[str, Any], checks: list[dict[str, Any]] | None, report_id: str | None,
               now: float) -> health.HealthState:
        return health.judge(inst, checks, report_id, maintenance=self._events.maintaining(inst["instance_id"], now),
                            now=now, interval=self.interval_of(inst), stopped_after=self.stopped_after)

    def _set_health(self, instance_id: str, state: str, reasons: list[dict], now: float) -> None:
        before = self._instances.get(instance_id)
        prev = self._instances.set_health(instance_id, state, reasons, now)
        if prev is not None and prev != state:
            self._health_changed(instance_id, prev, state, now)
        if before is not None:
            change = health.running_change(before["health_reasons"], reasons)
            if change:
                self._state_changed(instance_id, change, now)

    def _state_changed(self, instance_id: str, change: tuple[str, str], now: float) -> None:
        """The seed's Instance:StateChange: the service saw the machine (or its monitoring) go or come back."""
        state, cause = change
        self._events.detected(instance_id, "Instance.StateChange", now, f"{state}: {cause}",
                              labels={"state": state, "cause": cause}, fold_key=f"{now}")

    def _health_changed(self, instance_id: str, prev: str, state: str, now: float) -> None:
        self._events.detected(instance_id, "Instance.HealthChanged", now, f"health {prev} -> {state}",
                              level="WARN" if state in ("Impaired", "Warning") else "INFO",
                              labels={"from": prev, "to": state}, fold_key=f"{now}")
