"""Top processes kept as evidence: one snapshot per instance and 5-minute bucket, the one
with the most CPU in use, so a report can name the processes at a CPU or memory peak
hours after it, for an agent's machine as for the local one.

Collections arrive every few seconds; the busiest of a bucket is held in memory and
written to diag.db when the next bucket starts (or on flush), and snapshots older than
the longest lookback are deleted by expire().
"""

from __future__ import annotations

import json
import threading
from typing import Any

from diag.db import Database

BUCKET = 300.0  # seconds: the windows the CPU and memory checks average over
KEEP = 12 * 3600.0  # the checks' lookback

# {"by_cpu": [...], "by_memory": [...], "ts": when it was taken}
Snapshot = dict[str, Any]


def _score(snap: Snapshot) -> float:
    return sum(float(p.get("cpu_percent") or 0.0) for p in snap.get("by_cpu") or [])


class ProcessHistory:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        # instance id -> (bucket start, score, ts, snapshot): the busiest of the open bucket
        self._open: dict[str, tuple[float, float, float, Snapshot]] = {}
        self._latest: dict[str, tuple[float, Snapshot]] = {}

    def add(self, instance_id: str, ts: float, snap: Snapshot) -> None:
        if not snap or not (snap.get("by_cpu") or snap.get("by_memory")):
            return
        snap = {"by_cpu": snap.get("by_cpu") or [], "by_memory": snap.get("by_memory") or [], "ts": ts}
        bucket = ts - ts % BUCKET
        score = _score(snap)
        done = None
        with self._lock:
            self._latest[instance_id] = (ts, snap)
            held = self._open.get(instance_id)
            if held is None or held[0] != bucket:
                done = held
                self._open[instance_id] = (bucket, score, ts, snap)
            elif score > held[1]:
                self._open[instance_id] = (bucket, score, ts, snap)
        if done is not None:
            self._write(instance_id, done[2], done[3])

    def _write(self, instance_id: str, ts: float, snap: Snapshot) -> None:
        with self.db.write() as c:
            c.execute("INSERT OR REPLACE INTO process_snapshots VALUES (?, ?, ?)",
                      (instance_id, ts, json.dumps(snap)))

    def at(self, instance_id: str, ts: float | None = None) -> Snapshot:
        """The snapshot of the bucket holding `ts`, or the latest when `ts` is None; {} when
        none was kept (a time before monitoring began, or older than KEEP)."""
        with self._lock:
            latest = self._latest.get(instance_id)
            held = self._open.get(instance_id)
        if ts is None:
            return latest[1] if latest else {}
        bucket = ts - ts % BUCKET
        if held is not None and held[0] == bucket:
            return held[3]
        rows = self.db.read("SELECT body FROM process_snapshots WHERE instance_id = ? AND ts >= ? AND ts < ? "
                            "ORDER BY ts DESC LIMIT 1", (instance_id, bucket, bucket + BUCKET))
        return json.loads(rows[0]["body"]) if rows else {}

    def flush(self) -> None:
        """Write every open bucket (on close)."""
        with self._lock:
            held = list(self._open.items())
            self._open.clear()
        for instance_id, (_, _, ts, snap) in held:
            self._write(instance_id, ts, snap)

    def expire(self, now: float) -> None:
        with self.db.write() as c:
            c.execute("DELETE FROM process_snapshots WHERE ts < ?", (now - KEEP,))
