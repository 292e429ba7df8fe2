"""Batches pushed by agents and users: samples into the store, the rest into diag.db, once
per batch id."""

from __future__ import annotations

import time

import numpy as np

from diag.db import Database
from diag.events import COUNTER_EVENTS, EventLog
from diag.host_facts import Facts
from diag.instances import Instances
from diag.kernel_lines import KernelLog
from diag.model import Batch, SampleColumns
from diag.process_history import ProcessHistory
from diag.store import WriteStore

# How long a batch id is remembered: longer than an agent buffers (a day by default).
BATCH_IDS_KEPT = 7 * 86400


class Ingest:
    def __init__(self, db: Database, *, writer: WriteStore | None, events: EventLog, instances: Instances,
                 facts: Facts, processes: ProcessHistory, kernel_log: KernelLog) -> None:
        self._db = db
        self._writer = writer
        self._events = events
        self._instances = instances
        self._facts = facts
        self._processes = processes
        self._kernel_log = kernel_log

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
        if batch_id is not None and self._db.read("SELECT 1 FROM ingested_batches WHERE batch_id = ?", (batch_id,)):
            return False
        # With an engine behind --store-url the samples reach it by scraping; signals, facts
        # and last-seen still come through here, once per batch id.
        if self._writer is not None:
            # False: an earlier try stored the samples, then failed before the end.
            self._writer.write_columns(instance_id, samples.keys, np.array(samples.ts, np.float64),
                                       np.array(samples.values, np.float64), batch_id=batch_id)
        self._instances.register(instance_id, hostname=hostname, labels=labels, interval=interval)
        newest = max(samples.ts, default=time.time())
        self._instances.seen(instance_id, newest)
        if facts is not None:
            self._facts.set(instance_id, facts, facts.get("taken_at", newest))
        if processes:
            self._processes.add(instance_id, newest, processes)
        if kernel_lines:  # idempotent by (ts, seq): a retry after a failure below adds none twice
            self._kernel_log.add(instance_id, kernel_lines)
        counters = samples.samples(COUNTER_EVENTS)  # the only samples events look at
        return self._events.record_batch(instance_id, Batch(ts=newest, samples=counters, signals=list(signals)),
                                         batch_id=batch_id, extra=extra_events or ()) is not None

    def expire(self, now: float) -> None:
        """Batch ids past the time an agent retries for (it retries for as long as it buffers)."""
        with self._db.write() as c:
            c.execute("DELETE FROM ingested_batches WHERE at < ?", (now - BATCH_IDS_KEPT,))
