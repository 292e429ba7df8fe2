"""Facts of each instance (interfaces, routes, listeners, firewall): this host's snapshots,
taken within a deadline, and the ones agents push; the last of each is kept in diag.db."""

from __future__ import annotations

import logging
import time

from collectors import facts
from collectors.roots import Roots
from diag.db import Database

log = logging.getLogger(__name__)


class Facts:
    def __init__(self, db: Database, *, local_id: str, roots: Roots, service_ports: list[int], every: float) -> None:
        self._db = db
        self._local_id = local_id
        self._roots = roots
        self._service_ports = service_ports
        self._every = every
        self._held: dict[str, tuple[dict, float]] = {}
        self._snapshots: facts.Snapshots | None = None  # built with the first snapshot
        self._late = False

    def take(self, now: float | None = None) -> dict | None:
        """A new snapshot of this host's facts, within the facts deadline. When none can be
        taken in time (netlink or a tool hangs) the last one stays, with its age, and None
        is returned without one; logged once until a snapshot succeeds again."""
        if self._snapshots is None:
            self._snapshots = facts.Snapshots()
        try:
            snap = self._snapshots.take(self._roots, now, self._service_ports)
        except facts.FactsTimeout as e:
            if not self._late:
                self._late = True
                log.warning("%s: diagnoses use the last snapshot, with its age", e)
            held = self._held.get(self._local_id)
            return held[0] if held else None
        if self._late:
            self._late = False
            log.warning("facts snapshots are taken in time again")
        self.set(self._local_id, snap, snap["taken_at"])
        return snap

    def set(self, instance_id: str, snap: dict, taken_at: float) -> None:
        self._held[instance_id] = (snap, taken_at)
        self._db.set_kv(f"facts:{instance_id}", {"facts": snap, "taken_at": taken_at})

    def of(self, instance_id: str) -> tuple[dict | None, float | None]:
        """The instance's last facts and when they were taken; this host's are retaken once
        older than the facts interval."""
        if instance_id not in self._held:
            stored = self._db.get_kv(f"facts:{instance_id}")
            if stored is None:
                if instance_id != self._local_id or self.take() is None:
                    return None, None
            else:
                self._held[instance_id] = (stored["facts"], stored["taken_at"])
        snap, taken = self._held[instance_id]
        if instance_id == self._local_id and time.time() - taken > self._every:
            self.take()
            snap, taken = self._held[instance_id]
        return snap, taken

    def forget(self, instance_id: str) -> None:
        self._held.pop(instance_id, None)
