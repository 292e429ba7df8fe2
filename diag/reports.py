"""Stored diagnosis reports: history per instance, and the latest full one."""

from __future__ import annotations

import json
from typing import Any

from diag.db import Database

RETENTION = 60 * 86400


def _summary_row(r) -> dict[str, Any]:
    return {"report_id": r["report_id"], "instance_id": r["instance_id"], "created_at": r["created_at"],
            "window": {"start": r["window_start"], "end": r["window_end"]}, "health_status": r["health_status"],
            "summary": json.loads(r["summary"]), "full": bool(r["full"])}


class Reports:
    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, report: dict[str, Any]) -> None:
        with self.db.write() as c:
            c.execute("INSERT INTO reports (report_id, instance_id, created_at, window_start, window_end, "
                      "health_status, summary, checks, full, health_reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (report["report_id"], report["instance_id"], report["created_at"], report["window"]["start"],
                       report["window"]["end"], report["health_status"], json.dumps(report["summary"]),
                       json.dumps(report["checks"]), int(report.get("full", True)),
                       json.dumps(report.get("health_reasons", []))))

    def get(self, report_id: str) -> dict[str, Any] | None:
        rows = self.db.read("SELECT * FROM reports WHERE report_id = ?", (report_id,))
        if not rows:
            return None
        out = _summary_row(rows[0])
        # Reports stored before the column existed have [] (its default): their reasons were not kept.
        out["health_reasons"] = json.loads(rows[0]["health_reasons"])
        out["checks"] = json.loads(rows[0]["checks"])
        return out

    def list(self, instance_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM reports", []
        if instance_id:
            sql += " WHERE instance_id = ?"
            args.append(instance_id)
        sql += " ORDER BY created_at DESC LIMIT ?"
        args.append(limit)
        return [_summary_row(r) for r in self.db.read(sql, args)]

    def latest_full(self, instance_id: str) -> dict[str, Any] | None:
        rows = self.db.read("SELECT report_id FROM reports WHERE instance_id = ? AND full = 1 "
                            "ORDER BY created_at DESC LIMIT 1", (instance_id,))
        return self.get(rows[0]["report_id"]) if rows else None

    def expire(self, now: float) -> int:
        with self.db.write() as c:
            return c.execute("DELETE FROM reports WHERE created_at < ?", (now - RETENTION,)).rowcount
