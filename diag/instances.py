"""The instances this service knows: the local one and every machine that pushes to it."""

from __future__ import annotations

import json
import time
from typing import Any

from diag.db import Database


def _row(r) -> dict[str, Any]:
    return {"instance_id": r["instance_id"], "hostname": r["hostname"], "labels": json.loads(r["labels"]),
            "first_seen": r["first_seen"], "last_seen": r["last_seen"], "local": bool(r["local"]),
            "monitoring": bool(r["monitoring"]), "health_status": r["health_status"] or "Initializing",
            "health_reasons": json.loads(r["health_reasons"]), "evaluated_at": r["health_at"]}


class Instances:
    def __init__(self, db: Database) -> None:
        self.db = db

    def register(self, instance_id: str, *, hostname: str = "", labels: dict[str, str] | None = None,
                 local: bool = False, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.db.write() as c:
            c.execute(
                "INSERT INTO instances (instance_id, hostname, labels, first_seen, local) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(instance_id) DO UPDATE SET "
                "hostname = CASE WHEN excluded.hostname != '' THEN excluded.hostname ELSE instances.hostname END, "
                "labels = CASE WHEN excluded.labels != '{}' THEN excluded.labels ELSE instances.labels END, "
                "local = MAX(instances.local, excluded.local)",
                (instance_id, hostname, json.dumps(labels or {}, sort_keys=True), now, int(local)))

    def seen(self, instance_id: str, ts: float) -> None:
        with self.db.write() as c:
            c.execute("UPDATE instances SET last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE instance_id = ?",
                      (ts, instance_id))

    def set_health(self, instance_id: str, status: str, reasons: list[dict[str, Any]], at: float) -> str | None:
        """Store the new state; returns the previous one."""
        with self.db.write() as c:
            prev = c.execute("SELECT health_status FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
            c.execute("UPDATE instances SET health_status = ?, health_reasons = ?, health_at = ? WHERE instance_id = ?",
                      (status, json.dumps(reasons), at, instance_id))
        return prev["health_status"] if prev else None

    def set_monitoring(self, instance_id: str, enabled: bool) -> None:
        with self.db.write() as c:
            c.execute("UPDATE instances SET monitoring = ? WHERE instance_id = ?", (int(enabled), instance_id))

    def get(self, instance_id: str) -> dict[str, Any] | None:
        rows = self.db.read("SELECT * FROM instances WHERE instance_id = ?", (instance_id,))
        return _row(rows[0]) if rows else None

    def list(self) -> list[dict[str, Any]]:
        return [_row(r) for r in self.db.read("SELECT * FROM instances ORDER BY local DESC, instance_id")]
