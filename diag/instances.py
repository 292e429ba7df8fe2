"""The instances this service knows: the local one and every machine that pushes to it."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from diag.db import Database


def _row(r) -> dict[str, Any]:
    return {"instance_id": r["instance_id"], "hostname": r["hostname"], "labels": json.loads(r["labels"]),
            "first_seen": r["first_seen"], "last_seen": r["last_seen"], "local": bool(r["local"]),
            "monitoring": bool(r["monitoring"]), "health_status": r["health_status"] or "Initializing",
            "health_reasons": json.loads(r["health_reasons"]), "evaluated_at": r["health_at"],
            "interval": r["interval"]}


# kv key of a forgotten instance's tombstone: when it was forgotten, so an engine behind
# --store-url that still holds its old samples does not bring it back (Service.sync_instances).
FORGOTTEN = "forgotten:"

# An agent pushes every 10 s; writing its last_seen at most this often keeps diag.db's one
# write lock free for the rest, while readers see the newer value from memory (below).
SEEN_FLUSH_EVERY = 5.0


class Instances:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        # What the row already says, so a repeat register() of an unchanged agent (every
        # ingest) writes nothing: instance id -> (hostname, labels json, local, interval).
        self._registered: dict[str, tuple[str, str, bool, float | None]] = {}
        # instance id -> (newest last_seen known, the value last written to the row)
        self._seen: dict[str, tuple[float, float | None]] = {}
        self._flushed_at: dict[str, float] = {}
        # Bumped whenever a stored health state changes, so a cached /metrics body that
        # shows the states knows it is out of date without reading the table.
        self.health_generation = 0

    def register(self, instance_id: str, *, hostname: str = "", labels: dict[str, str] | None = None,
                 local: bool = False, interval: float | None = None, now: float | None = None) -> None:
        labels_json = json.dumps(labels or {}, sort_keys=True)
        known = self._registered.get(instance_id)
        # Empty hostname/labels and no interval never overwrite the row (see the upsert), so
        # they change nothing either.
        if known is not None and (not hostname or hostname == known[0]) and \
                (labels_json == "{}" or labels_json == known[1]) and (not local or known[2]) and \
                (interval is None or interval == known[3]):
            return
        now = time.time() if now is None else now
        with self.db.write() as c:
            c.execute(
                "INSERT INTO instances (instance_id, hostname, labels, first_seen, local, interval) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(instance_id) DO UPDATE SET "
                "hostname = CASE WHEN excluded.hostname != '' THEN excluded.hostname ELSE instances.hostname END, "
                "labels = CASE WHEN excluded.labels != '{}' THEN excluded.labels ELSE instances.labels END, "
                "local = MAX(instances.local, excluded.local), "
                "interval = COALESCE(excluded.interval, instances.interval)",
                (instance_id, hostname, labels_json, now, int(local), interval))
            row = c.execute("SELECT hostname, labels, local, interval FROM instances WHERE instance_id = ?",
                            (instance_id,)).fetchone()
            c.execute("DELETE FROM kv WHERE key = ?", (FORGOTTEN + instance_id,))  # it reports again: known anew
        self._registered[instance_id] = (row["hostname"], row["labels"], bool(row["local"]), row["interval"])

    def seen(self, instance_id: str, ts: float, now: float | None = None) -> None:
        """The newest sample time of an instance; kept in memory, written at most every
        SEEN_FLUSH_EVERY seconds per instance (and by flush())."""
        now = time.monotonic() if now is None else now
        with self._lock:
            newest, written = self._seen.get(instance_id, (ts, None))
            newest = max(newest, ts)
            self._seen[instance_id] = (newest, written)
            due = now - self._flushed_at.get(instance_id, -SEEN_FLUSH_EVERY) >= SEEN_FLUSH_EVERY
            if due:
                self._flushed_at[instance_id] = now
        if due:
            self._write_seen(instance_id, newest)

    def _write_seen(self, instance_id: str, ts: float) -> None:
        with self.db.write() as c:
            c.execute("UPDATE instances SET last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE instance_id = ?",
                      (ts, instance_id))
        with self._lock:
            newest, written = self._seen.get(instance_id, (ts, None))
            self._seen[instance_id] = (newest, max(ts, written or ts))

    def flush(self) -> None:
        """Write every last_seen still only in memory (on close)."""
        with self._lock:
            todo = [(i, n) for i, (n, w) in self._seen.items() if w is None or n > w]
        for instance_id, newest in todo:
            self._write_seen(instance_id, newest)

    def set_health(self, instance_id: str, status: str, reasons: list[dict[str, Any]], at: float) -> str | None:
        """Store the new state; returns the previous one."""
        with self.db.write() as c:
            prev = c.execute("SELECT health_status FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
            c.execute("UPDATE instances SET health_status = ?, health_reasons = ?, health_at = ? WHERE instance_id = ?",
                      (status, json.dumps(reasons), at, instance_id))
        if prev is None or prev["health_status"] != status:
            self.health_generation += 1
        return prev["health_status"] if prev else None

    def health_states(self) -> list[tuple[str, str]]:
        """(instance id, stored health state) of every instance, in one query: what /metrics
        exports on every scrape, so no diagnosis and no JSON decoding here."""
        return [(r["instance_id"], r["health_status"] or "Initializing")
                for r in self.db.read("SELECT instance_id, health_status FROM instances ORDER BY instance_id")]

    def set_monitoring(self, instance_id: str, enabled: bool) -> None:
        with self.db.write() as c:
            c.execute("UPDATE instances SET monitoring = ? WHERE instance_id = ?", (int(enabled), instance_id))

    def forget(self, instance_id: str, now: float | None = None) -> bool:
        """Drop the instance from every list; False when it was not known. Its samples, events,
        reports and kernel lines stay, keyed by its id, until their retention deletes them.
        Its last facts go with it: they describe a machine that no longer exists."""
        now = time.time() if now is None else now
        with self.db.write() as c:
            if c.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,)).rowcount == 0:
                return False
            c.execute("DELETE FROM kv WHERE key = ?", (f"facts:{instance_id}",))
            c.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                      (FORGOTTEN + instance_id, json.dumps(now)))
        with self._lock:  # else a push that brings it back would be taken for a known, unchanged one
            self._registered.pop(instance_id, None)
            self._seen.pop(instance_id, None)
            self._flushed_at.pop(instance_id, None)
        self.health_generation += 1  # a cached /metrics body still lists it
        return True

    def forgotten_at(self, instance_id: str) -> float | None:
        """When the instance was forgotten, unless it reported again since."""
        return self.db.get_kv(FORGOTTEN + instance_id)

    def get(self, instance_id: str) -> dict[str, Any] | None:
        rows = self.db.read("SELECT * FROM instances WHERE instance_id = ?", (instance_id,))
        return self._fresh(_row(rows[0])) if rows else None

    def list(self) -> list[dict[str, Any]]:
        return [self._fresh(_row(r)) for r in self.db.read("SELECT * FROM instances ORDER BY local DESC, instance_id")]

    def _fresh(self, inst: dict[str, Any]) -> dict[str, Any]:
        """The row, with a last_seen newer than the row's when memory has one not yet written."""
        mem = self._seen.get(inst["instance_id"])
        if mem is not None and (inst["last_seen"] is None or mem[0] > inst["last_seen"]):
            inst["last_seen"] = mem[0]
        return inst
