"""This host's collection: one cycle of every collector, its samples into the store and
the rest (events, last seen, top processes, kernel lines) into diag.db."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from collectors.runner import CollectionCycle
from diag.db import Database
from diag.events import EventLog
from diag.instances import Instances
from diag.kernel_lines import KernelLog
from diag.model import Batch
from diag.process_history import ProcessHistory
from diag.reserve import Reserve
from diag.store import StoreError, StoreFullError, WriteStore

log = logging.getLogger(__name__)


class Collection:
    """`last_batch`, `collections` and `store_failing` are what /metrics and /healthz read."""

    def __init__(self, cycle: CollectionCycle, *, local_id: str, writer: WriteStore | None, db: Database,
                 events: EventLog, instances: Instances, processes: ProcessHistory, kernel_log: KernelLog,
                 reserve: Reserve) -> None:
        self.cycle = cycle
        self._local_id = local_id
        self._writer = writer
        self._db = db
        self._events = events
        self._instances = instances
        self._processes = processes
        self._kernel_log = kernel_log
        self.reserve = reserve
        self.last_batch: Batch | None = None
        self.collections = 0
        self.started_at = time.time()
        self.store_failing: str | None = None  # why the last collection's samples were not stored
        # Held by a cycle: closing the service waits for the one under way.
        self.lock = threading.Lock()

    def collect(self, now: float | None = None) -> Batch:
        """One cycle: read every source, store the samples durably, record its events."""
        me = self._local_id
        with self.lock:
            batch = self.cycle.run(now)
            try:
                if self._writer is not None:
                    self._writer.write(me, batch.samples)
            except StoreError as e:
                # Keep collecting and answering: the samples of this cycle are lost, and said so.
                self.store_failing = f"store: {e}"
                if isinstance(e, StoreFullError):
                    self.reserve.release()  # so the event below can be written on the same full disk
                message = f"cannot store samples: {e}"
                _bookkeep(lambda: self._events.detected(me, "Store.Error", batch.ts, message, fold_key="write"))
            else:
                if self.store_failing is not None:
                    self.store_failing = None
                    self.reserve.ensure()
            _bookkeep(lambda: self._events.record_batch(me, batch))
            if self.collections == 0:  # only the first reboot seen counts
                _bookkeep(lambda: self._db.set_kv(f"unclean_stop:{me}", False))
            _bookkeep(lambda: self._instances.seen(me, batch.ts))
            _bookkeep(lambda: self._processes.add(me, batch.ts, batch.processes))
            _bookkeep(lambda: self._kernel_log.add(me, batch.kernel_lines))
            # Even when nothing above could be written, /metrics and /healthz see this cycle.
            self.last_batch = batch
            self.collections += 1
            return batch


def _bookkeep(write: Callable[[], object]) -> None:
    """A write to diag.db that a full disk must not turn into a failed collection."""
    try:
        write()
    except sqlite3.OperationalError as e:
        log.warning("collection bookkeeping not written: %s", e)
