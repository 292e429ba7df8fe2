"""The store's and diag.db's upkeep: compaction, retention and size cap, each history's
expiry, and the events that say what was deleted or deferred."""

from __future__ import annotations

import time

from diag.events import EventLog
from diag.ingest import Ingest
from diag.kernel_lines import KernelLog
from diag.process_history import ProcessHistory
from diag.reports import Reports
from diag.store import MaintenanceReport, ReadStore


class Upkeep:
    def __init__(self, store: ReadStore, *, local_id: str, ingest: Ingest, events: EventLog, reports: Reports,
                 processes: ProcessHistory, kernel_log: KernelLog) -> None:
        self._store = store
        self._local_id = local_id
        self._ingest = ingest
        self._events = events
        self._reports = reports
        self._processes = processes
        self._kernel_log = kernel_log

    def maintain(self, now: float | None = None) -> MaintenanceReport:
        now = time.time() if now is None else now
        self._ingest.expire(now)
        report = self._store.maintain(now)
        for history in (self._events, self._reports, self._processes, self._kernel_log):
            history.expire(now)
        for d in report.deletions:
            if d.reason == "size_cap":
                self._events.detected(
                    self._local_id, "Store.SizeCap", now,
                    f"the store reached its size cap: {d.points} points older than {d.before:.0f} deleted",
                    labels={"level": str(d.level)}, fold_key="size_cap")
        if report.disk_full:
            self._events.detected(self._local_id, "Store.Error", now, "the disk is full: compaction deferred",
                                  fold_key="disk_full")
        return report
