"""The running service: collectors, store, event log and diagnosis, wired for one host
that may also receive other machines' data."""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from prometheus_client import Histogram

from collectors import registry
from collectors.runner import CollectionCycle
from checks import plugin as plugin_checks
from diag import diagnosis, health, lifecycle
from diag.config import Config
from diag.db import Database
from diag.events import COUNTER_EVENTS, EventLog
from diag.instances import Instances
from diag.model import Batch, SampleColumns
from diag.kernel_lines import KernelLog
from diag.process_history import ProcessHistory
from diag.reports import Reports
from diag.reserve import Reserve
from diag.store import MaintenanceReport, ReadStore, sides

log = logging.getLogger(__name__)

# How long a batch id is remembered with --store-url: longer than an agent buffers (a day by default).
BATCH_IDS_KEPT = 7 * 86400
# A collection takes milliseconds, a diagnosis of many instances seconds; past 60 s a
# job overruns any interval the service would be set to.
JOB_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)


class Service:
    """Owns what a collection cycle needs and what the web app reads.

    `store` is a ReadStore (diag.store), the embedded SqliteStore by default. Its other
    sides are told apart once here: `writer` is None for an engine behind --store-url (it
    scrapes our /metrics instead), and `engine_instances` is the engine that lists
    instances of its own, if any.
    """

    def __init__(self, config: Config, store: ReadStore | None = None) -> None:
        self.config = config
        self.instance_id = config.resolved_instance_id()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        settings = config.collector_settings()
        if settings.state_dir is not None:
            settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.cycle = CollectionCycle(registry.build(config.roots, settings), interval=config.interval)
        ours = [config.data_dir / name for name in ("metrics.db", "diag.db")
                if (store is None and not config.store_url) or name == "diag.db"]
        for path in ours:  # all before any is opened: opening one makes it non-empty
            lifecycle.check_held(path)
        damaged = [m for m in map(lifecycle.check_database, ours) if m]
        self.store, self.writer, self.engine_instances = sides(store if store is not None else _open_store(config))
        self.db = Database(config.data_dir / "diag.db")
        for path in ours:
            lifecycle.mark_held(path)
        self.events = EventLog(self.db)
        self.instances = Instances(self.db)
        self.processes = ProcessHistory(self.db)
        self.kernel_log = KernelLog(self.db, config.store.kernel_log_lines, config.store.kernel_log_keep)
        self.reports = Reports(self.db)
        from diag.fleet import Fleet  # fleet: activations and agent tokens

        self.fleet = Fleet(self.db)
        self.instances.register(self.instance_id, hostname=socket.gethostname(), local=True,
                                interval=config.interval)
        for message in damaged:
            self.events.detected(self.instance_id, "Store.Error", time.time(), message, fold_key=message)
        self._running = False
        self.last_batch: Batch | None = None
        self.collections = 0
        self.started_at = time.time()
        self.job_outcomes: Counter[tuple[str, str]] = Counter()
        # Filled by the scheduler's job wrapper; registered by the web app's registry.
        # `task`, not `job`: a scrape's own `job` label would clash with it.
        self.job_durations = Histogram("diag_job_duration_seconds", "Wall time of scheduled job runs, by task.",
                                       ["task"], registry=None, buckets=JOB_BUCKETS)
        self.last_error: str | None = None
        self.store_failing: str | None = None  # why the last collection's samples were not stored
        self.reserve = Reserve(config.data_dir / "reserve")
        self._lock = threading.Lock()
        self._facts: dict[str, tuple[dict, float]] = {}
        self._snapshots = None  # collectors.facts.Snapshots, built with the first snapshot
        self._facts_late = False
        # Before alerting: its default policies take their thresholds from these.
        from diag.plugins import Plugins, specs  # plugin checks: run off the collection thread

        plugin_specs = specs(config.plugins)
        self.plugins = Plugins(plugin_specs, instance_id=self.instance_id, store=self.writer, db=self.db)
        self.checks = diagnosis.configured(config.checks) + list(plugin_checks.make(plugin_specs.values()))
        self.stopped_after = next(c.thresholds["seconds"] for c in self.checks if c.id == "state.stopped")
        from diag.alerting import Alerting  # alerting hook: policies, evaluator, outbox

        self.alerting = Alerting(self)
        from diag.commands import attach  # remote commands hook: None unless enabled

        self.commands = attach(self)

    def start(self) -> None:
        """This process is now the running service of its data dir (`diag serve`)."""
        if lifecycle.mark_running(self.config.data_dir):
            self.events.detected(self.instance_id, "Service.UncleanStop", time.time(),
                                 "the previous run of the service did not stop cleanly", fold_key="unclean")
            # If the machine rebooted under it, that reboot was no routine one.
            self.db.set_kv(f"unclean_stop:{self.instance_id}", True)
        self.reserve.ensure()
        self._running = True
        if self.commands is not None:  # remote commands hook: settle records of the last run
            self.commands.start()

    # -- jobs ------------------------------------------------------------------------------

    def collect(self, now: float | None = None) -> Batch:
        """One cycle: read every source, store the samples durably, record its events."""
        from diag.store import StoreError, StoreFullError

        with self._lock:
            batch = self.cycle.run(now)
            try:
                if self.writer is not None:
                    self.writer.write(self.instance_id, batch.samples)
            except StoreError as e:
                # Keep collecting and answering: the samples of this cycle are lost, and said so.
                self.last_error = self.store_failing = f"store: {e}"
                if isinstance(e, StoreFullError):
                    self.reserve.release()  # so the event below can be written on the same full disk
                message = f"cannot store samples: {e}"
                self._bookkeep(lambda: self.events.detected(
                    self.instance_id, "Store.Error", batch.ts, message, fold_key="write"))
            else:
                if self.store_failing is not None:
                    self.store_failing = None
                    self.reserve.ensure()
            self._bookkeep(lambda: self.events.record_batch(self.instance_id, batch))
            if self.collections == 0:  # only the first reboot seen counts
                self._bookkeep(lambda: self.db.set_kv(f"unclean_stop:{self.instance_id}", False))
            self._bookkeep(lambda: self.instances.seen(self.instance_id, batch.ts))
            self._bookkeep(lambda: self.processes.add(self.instance_id, batch.ts, batch.processes))
            self._bookkeep(lambda: self.kernel_log.add(self.instance_id, batch.kernel_lines))
            # Even when nothing above could be written, /metrics and /healthz see this cycle.
            self.last_batch = batch
            self.collections += 1
            return batch

    def _bookkeep(self, write: Callable[[], object]) -> None:
        """A write to diag.db that a full disk must not turn into a failed collection."""
        try:
            write()
        except sqlite3.OperationalError as e:
            self.last_error = f"database: {e}"
            log.warning("collection bookkeeping not written: %s", e)

    def ingest(self, instance_id: str, samples: SampleColumns, signals: list, *, batch_id: str | None = None,
               hostname: str = "", labels: dict[str, str] | None = None, facts: dict | None = None,
               interval: float | None = None, processes: dict | None = None,
               extra_events: list[dict] | None = None, kernel_lines: list | None = None) -> bool:
        """A batch pushed by an agent or a user; False when `batch_id` was already stored.

        Two databases take a batch: the samples go to the store, the rest to diag.db. A batch
        is done only once both hold it: each write is idempotent by batch id (the store keeps
        its own batch ids; facts, processes and last_seen overwrite), and the batch is marked
        done in diag.db in the transaction of its events, last. So a retry after a failure
        between the two completes the batch instead of being taken for a duplicate."""
        if batch_id is not None and self.db.read("SELECT 1 FROM ingested_batches WHERE batch_id = ?", (batch_id,)):
            return False
        # With an engine behind --store-url the samples reach it by scraping; signals, facts
        # and last-seen still come through here, once per batch id.
        if self.writer is not None:
            # False: an earlier try stored the samples, then failed before the end.
            self.writer.write_columns(instance_id, samples.keys, np.array(samples.ts, np.float64),
                                      np.array(samples.values, np.float64), batch_id=batch_id)
        self.instances.register(instance_id, hostname=hostname, labels=labels, interval=interval)
        newest = max(samples.ts, default=time.time())
        self.instances.seen(instance_id, newest)
        if facts is not None:
            self.set_facts(instance_id, facts, facts.get("taken_at", newest))
        if processes:
            self.processes.add(instance_id, newest, processes)
        if kernel_lines:  # idempotent by (ts, seq): a retry after a failure below adds none twice
            self.kernel_log.add(instance_id, kernel_lines)
        counters = samples.samples(COUNTER_EVENTS)  # the only samples events look at
        return self.events.record_batch(instance_id, Batch(ts=newest, samples=counters, signals=list(signals)),
                                        batch_id=batch_id, extra=extra_events or ()) is not None

    def maintain(self, now: float | None = None) -> MaintenanceReport:
        now = time.time() if now is None else now
        with self.db.write() as c:  # an agent retries for as long as it buffers: a day by default
            c.execute("DELETE FROM ingested_batches WHERE at < ?", (now - BATCH_IDS_KEPT,))
        report = self.store.maintain(now)
        self.events.expire(now)
        self.reports.expire(now)
        self.processes.expire(now)
        self.kernel_log.expire(now)
        for d in report.deletions:
            if d.reason == "size_cap":
                self.events.detected(
                    self.instance_id, "Store.SizeCap", now,
                    f"the store reached its size cap: {d.points} points older than {d.before:.0f} deleted",
                    labels={"level": str(d.level)}, fold_key="size_cap")
        if report.disk_full:
            self.events.detected(self.instance_id, "Store.Error", now, "the disk is full: compaction deferred",
                                 fold_key="disk_full")
        return report

    def take_facts(self, now: float | None = None) -> dict | None:
        """A new snapshot of this host's facts, within the facts deadline. When none can be
        taken in time (netlink or a tool hangs) the last one stays, with its age, and None
        is returned without one; logged once until a snapshot succeeds again."""
        from collectors import facts

        if self._snapshots is None:
            self._snapshots = facts.Snapshots()
        try:
            snap = self._snapshots.take(self.config.roots, now, self.config.service_ports)
        except facts.FactsTimeout as e:
            if not self._facts_late:
                self._facts_late = True
                log.warning("%s: diagnoses use the last snapshot, with its age", e)
            held = self._facts.get(self.instance_id)
            return held[0] if held else None
        if self._facts_late:
            self._facts_late = False
            log.warning("facts snapshots are taken in time again")
        self.set_facts(self.instance_id, snap, snap["taken_at"])
        return snap

    def set_facts(self, instance_id: str, snap: dict, taken_at: float) -> None:
        self._facts[instance_id] = (snap, taken_at)
        self.db.set_kv(f"facts:{instance_id}", {"facts": snap, "taken_at": taken_at})

    def facts_of(self, instance_id: str) -> tuple[dict | None, float | None]:
        if instance_id not in self._facts:
            stored = self.db.get_kv(f"facts:{instance_id}")
            if stored is None:
                if instance_id != self.instance_id or self.take_facts() is None:
                    return None, None
            else:
                self._facts[instance_id] = (stored["facts"], stored["taken_at"])
        snap, taken = self._facts[instance_id]
        if instance_id == self.instance_id and time.time() - taken > self.config.facts_every:
            self.take_facts()
            snap, taken = self._facts[instance_id]
        return snap, taken

    # -- diagnosis and health --------------------------------------------------------------

    def diagnose(self, instance_id: str | None = None, window: float = 12 * 3600,
                 check_ids: list[str] | None = None, now: float | None = None,
                 fresh_facts: bool = False) -> dict[str, Any]:
        """Run checks over the window ending now; the report is stored and, when it covers
        every check, sets the instance's health.

        `fresh_facts`: a diagnosis someone asked for (API, CLI) judges this host's
        interfaces, routes, listeners and firewall as they are now, not as the scheduled
        snapshot saw them minutes ago. An agent's facts come with its batches."""
        now = time.time() if now is None else now
        instance_id = instance_id or self.instance_id
        inst = self.instances.get(instance_id)
        if inst is None:
            raise KeyError(instance_id)
        if fresh_facts and instance_id == self.instance_id:
            self.take_facts()
        checks = diagnosis.select(self.checks, check_ids)
        caps = {s: (c.inbound, c.outbound) for s, c in self.config.network.bandwidth_caps.items()}
        ctx = diagnosis.StoreContext(
            store=self.store, events=self.events, instance_id=instance_id, start=now - window, end=now, now=now,
            interval=self.interval_of(inst), monitoring_since=inst["first_seen"], bandwidth_caps=caps,
            service_ports=self.config.service_ports, facts=lambda: self.facts_of(instance_id),
            processes=lambda at: self.processes.at(instance_id, at),
            # A plugin runs on this host and judges it only: not another instance.
            plugins=self.plugins.result if instance_id == self.instance_id else plugin_checks.elsewhere)
        found = diagnosis.diagnose(ctx, checks, full=len(checks) == len(self.checks),
                                   judge=lambda results, report_id: self._judge(inst, results, report_id, now))
        report = found.report.to_json()
        self.reports.save(report)
        self.events.raised(instance_id, found.events, now)
        if found.report.full:
            self._set_health(instance_id, found.health.status, found.health.reasons, now)
        return report

    def diagnose_all(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.events.tick(now)
        self.sync_instances()
        for inst in self.instances.list():
            if inst["last_seen"] is None or not inst["monitoring"]:
                # Registered but never sent a sample: nothing to judge yet (it stays
                # Initializing), and a fleet of agents that only poll costs nothing here.
                # Monitoring switched off: NotApplicable, and nothing runs for it.
                continue
            try:
                self.diagnose(inst["instance_id"], now=now)
            except Exception:  # noqa: BLE001 - one instance must not stop the others
                log.exception("diagnosis of %s failed", inst["instance_id"])

    def set_monitoring(self, instance_id: str, enabled: bool, now: float | None = None) -> dict[str, Any]:
        """Switch monitoring of an instance off (NotApplicable: no scheduled diagnosis, no
        alerts; its data is still stored) or on again. Returns its health now."""
        now = time.time() if now is None else now
        inst = self.instances.get(instance_id)
        if inst is None:
            raise KeyError(instance_id)
        self.instances.set_monitoring(instance_id, enabled)
        health = self.health_of(instance_id, now)  # stores the change, and its event, once a report exists
        assert health is not None
        stored = self.instances.get(instance_id)
        if stored is not None and stored["health_status"] != health["health_status"]:
            # A never-diagnosed (Initializing) instance: health_of stored nothing, yet the
            # switch is a change of state all the same.
            self.instances.set_health(instance_id, health["health_status"], health["health_reasons"], now)
            self._health_changed(instance_id, inst["health_status"], health["health_status"], now)
        if inst["monitoring"] != enabled:
            self._state_changed(instance_id, ("Monitored", "monitoring switched on") if enabled
                                else ("Unmonitored", "monitoring switched off"), now)
        return health

    def forget_instance(self, instance_id: str, now: float | None = None) -> int:
        """Forget an instance that no longer exists: it leaves the lists, /metrics and the
        alert evaluation, its firing alerts resolve; its history stays until retention.
        Returns the number of alerts resolved. If it reports again it is registered anew
        (first seen then, Initializing), its old history visible beside the new."""
        now = time.time() if now is None else now
        inst = self.instances.get(instance_id)
        if inst is None:
            raise KeyError(instance_id)
        if instance_id == self.instance_id:
            raise ValueError(f"instance {instance_id} is this server itself: it cannot be forgotten while it runs")
        resolved = self.alerting.forget_instance(instance_id, now)  # while its hostname is still known
        self.instances.forget(instance_id, now)
        self._facts.pop(instance_id, None)
        # An evaluation between the two steps still saw it listed and may have fired an alert again.
        return resolved + self.alerting.forget_instance(instance_id, now)

    def interval_of(self, inst: dict[str, Any]) -> float:
        """How often the instance sends: what its agent said, else this service's own interval."""
        return inst.get("interval") or self.config.interval

    def health_of(self, instance_id: str, now: float | None = None) -> dict[str, Any] | None:
        """The health state now: the latest full report, seen through today's freshness and
        maintenance (so a silent agent turns InsufficientData without waiting for a diagnosis)."""
        now = time.time() if now is None else now
        inst = self.instances.get(instance_id)
        if inst is None:
            return None
        latest = self.reports.latest_full(instance_id)
        state = self._judge(inst, latest["checks"] if latest else None, latest["report_id"] if latest else None, now)
        if latest is not None and (state.status != inst["health_status"]
                                   or health.running_change(inst["health_reasons"], state.reasons)):
            self._set_health(instance_id, state.status, state.reasons, now)
        return state.to_json()

    def _judge(self, inst: dict[str, Any], checks: list[dict[str, Any]] | None, report_id: str | None,
               now: float) -> health.HealthState:
        return health.judge(inst, checks, report_id, maintenance=self.events.maintaining(inst["instance_id"], now),
                            now=now, interval=self.interval_of(inst), stopped_after=self.stopped_after)

    def _set_health(self, instance_id: str, state: str, reasons: list[dict], now: float) -> None:
        before = self.instances.get(instance_id)
        prev = self.instances.set_health(instance_id, state, reasons, now)
        if prev is not None and prev != state:
            self._health_changed(instance_id, prev, state, now)
        if before is not None:
            change = health.running_change(before["health_reasons"], reasons)
            if change:
                self._state_changed(instance_id, change, now)

    def _state_changed(self, instance_id: str, change: tuple[str, str], now: float) -> None:
        """The seed's Instance:StateChange: the service saw the machine (or its monitoring) go or come back."""
        state, cause = change
        self.events.detected(instance_id, "Instance.StateChange", now, f"{state}: {cause}",
                             labels={"state": state, "cause": cause}, fold_key=f"{now}")

    def _health_changed(self, instance_id: str, prev: str, state: str, now: float) -> None:
        self.events.detected(instance_id, "Instance.HealthChanged", now, f"health {prev} -> {state}",
                             level="WARN" if state in ("Impaired", "Warning") else "INFO",
                             labels={"from": prev, "to": state}, fold_key=f"{now}")

    # -- service -------------------------------------------------------------------------------

    def store_size(self) -> int | None:
        try:
            return self.store.size_bytes()
        except Exception:  # noqa: BLE001 - a size we cannot read is simply not exported
            return None

    def close(self) -> None:
        if self.commands is not None:  # remote commands hook: kill local runs first
            self.commands.close()
        self.plugins.close()
        with self._lock:
            self.store.close()
            try:
                self.instances.flush()  # last_seen values held back in memory
                self.processes.flush()  # the open 5 minutes of top processes
            except sqlite3.OperationalError as e:
                log.warning("last-seen times not written: %s", e)
            self.db.close()
            if self._running:
                lifecycle.mark_stopped(self.config.data_dir)


    def sync_instances(self) -> None:
        """With an engine behind --store-url: every `instance_id` it has data of is an
        instance here, last seen at its newest sample (so a silent one turns stale)."""
        if self.engine_instances is None:
            return
        from diag.store import StoreError

        try:
            ids, seen = self.engine_instances.instance_ids(), self.engine_instances.last_seen()
        except StoreError as e:
            self.last_error = f"store: {e}"
            log.warning("cannot list the engine's instances: %s", e)
            return
        for iid in ids:
            if self.instances.get(iid) is None:
                gone = self.instances.forgotten_at(iid)
                if gone is not None and seen.get(iid, 0.0) <= gone:
                    continue  # forgotten: the engine keeps its old samples until its retention
                self.instances.register(iid)
            if iid in seen:
                self.instances.seen(iid, seen[iid])


def _open_store(config: Config) -> ReadStore:
    if config.store_url:
        from diag.store.prometheus import PrometheusStore

        return PrometheusStore(config.store_url)
    from diag.store import Retention, SqliteStore

    r = config.store.retention
    return SqliteStore(
        config.data_dir / "metrics.db",
        head_span=config.store.head_span,
        retention=Retention(raw=r.raw, m1=r.m1, m5=r.m5, h1=r.h1, d1=r.d1),
        size_cap_bytes=config.store.size_cap,
    )
