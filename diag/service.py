"""The running service's lifecycle: its parts are built by diag.wiring; this starts and
closes them, and names them and their use cases for the CLI, the scheduler and tests."""

from __future__ import annotations

import logging
import sqlite3
import time

from diag import lifecycle, wiring
from diag.model import Batch
from diag.settings.model import Config
from diag.store import ReadStore

log = logging.getLogger(__name__)


class Service:
    def __init__(self, config: Config, store: ReadStore | None = None) -> None:
        self.parts = p = wiring.build(config, store)
        self.config, self.instance_id, self.db, self.store = p.config, p.instance_id, p.db, p.store
        self.events, self.instances, self.reports, self.fleet = p.events, p.instances, p.reports, p.fleet
        self.processes, self.kernel_log, self.plugins, self.checks = p.processes, p.kernel_log, p.plugins, p.checks
        self.alerting, self.commands, self.cycle = p.alerting, p.commands, p.collection.cycle
        self.stopped_after = p.diagnoser.stopped_after
        # The use cases, for the CLI, tools and tests (the scheduler and the web app take the parts).
        self.collect, self.ingest, self.maintain = p.collection.collect, p.ingest.ingest, p.upkeep.maintain
        self.take_facts, self.set_facts = p.facts.take, p.facts.set
        self.diagnose, self.diagnose_all, self.health_of = p.diagnoser.diagnose, p.diagnoser.diagnose_all, \
            p.diagnoser.health_of
        self.set_monitoring, self.sync_instances = p.diagnoser.set_monitoring, p.diagnoser.sync_instances
        self.forget_instance = p.roster.forget
        self._running = False

    @property
    def last_batch(self) -> Batch | None:
        return self.parts.collection.last_batch

    def start(self) -> None:
        """This process is now the running service of its data dir (`diag serve`)."""
        if lifecycle.mark_running(self.config.data_dir):
            self.events.detected(self.instance_id, "Service.UncleanStop", time.time(),
                                 "the previous run of the service did not stop cleanly", fold_key="unclean")
            # If the machine rebooted under it, that reboot was no routine one.
            self.db.set_kv(f"unclean_stop:{self.instance_id}", True)
        self.parts.collection.reserve.ensure()
        self._running = True
        if self.commands is not None:  # settle the records of the last run
            self.commands.start()

    def close(self) -> None:
        if self.commands is not None:  # kill local runs first
            self.commands.close()
        self.plugins.close()
        with self.parts.collection.lock:  # after the collection under way, if any
            self.store.close()
            try:
                self.instances.flush()  # last_seen values held back in memory
                self.processes.flush()  # the open 5 minutes of top processes
            except sqlite3.OperationalError as e:
                log.warning("last-seen times not written: %s", e)
            self.db.close()
            if self._running:
                lifecycle.mark_stopped(self.config.data_dir)
