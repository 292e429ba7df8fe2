"""Execution records delivered (seed 001: 执行记录投递): each finished record - command,
parameters, instance, exit code, output, times - appended to a JSON-lines file and/or
POSTed to a webhook (`commands.records` in the config).

The outbox pattern of diag/alerting/outbox.py: the outbox row is inserted in the same
transaction that gives the record its final state (Repository.set_status), so a crash
keeps both or neither, and `deliver` sends due rows until each succeeds. Delivery is
at-least-once: a crash after the line was written (or the webhook answered) and before
the row was marked delivered sends it again after the restart, with the same
`delivery_id` (the `Idempotency-Key` header of the webhook), by which a reader drops the
repeat. A webhook that answers a 4xx other than 408/425/429 will not take the record on
a retry: that row is marked failed; anything else is retried with backoff
(retry_base * 2^attempts, capped at retry_cap) until give_up_after.

Each sink is a lane of its own in a thread, so a hung webhook never holds the file, nor
the engine's tick that starts the lanes.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from typing import Any

from diag.db import Database

log = logging.getLogger(__name__)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS command_record_outbox (delivery_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, "
    "sink TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', "
    "attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, created_at REAL NOT NULL, "
    "delivered_at REAL, last_error TEXT)",
    "CREATE INDEX IF NOT EXISTS command_record_outbox_due ON command_record_outbox (state, next_attempt_at)",
)
DEADLINE = 10.0  # one webhook attempt, seconds
BATCH = 200
KEEP_DELIVERED = 86400.0  # delivered rows are dropped after a day; failed ones stay for the operator


def enqueue(c: sqlite3.Connection, task_id: str, sinks: tuple[str, ...], now: float) -> None:
    """Inside the transaction that finished the record: one outbox row per sink."""
    r = c.execute("SELECT r.*, i.command_id, i.kind, i.spec, i.repeat_mode FROM command_records r "
                  "JOIN invocations i USING (invoke_id) WHERE r.task_id = ?", (task_id,)).fetchone()
    if r is None:
        return
    spec = json.loads(r["spec"])
    base = {"task_id": r["task_id"], "invoke_id": r["invoke_id"], "command_id": r["command_id"], "kind": r["kind"],
            "name": spec.get("name") or spec.get("file_name"), "type": spec.get("type", "RunShellScript")
            if r["kind"] == "command" else None, "parameters": spec.get("values", {}),
            "repeat_mode": r["repeat_mode"], "instance_id": r["instance_id"], "status": r["status"],
            "exit_code": r["exit_code"], "error_code": r["error_code"], "error_info": r["error_info"],
            "output": bytes(r["output"] or b"").decode("utf-8", "replace"), "dropped": r["dropped"],
            "created_at": r["created_at"], "start_time": r["start_time"], "finish_time": r["finish_time"]}
    for sink in sinks:
        delivery_id = f"{task_id}:{sink}"
        c.execute("INSERT OR IGNORE INTO command_record_outbox (delivery_id, task_id, sink, payload, next_attempt_at, "
                  "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                  (delivery_id, task_id, sink, json.dumps({"delivery_id": delivery_id, **base}), now, now))


class RecordOutbox:
    def __init__(self, db: Database, settings: Any) -> None:
        self.db = db
        self.settings = settings  # config.commands.records
        with db.write() as c:
            for stmt in SCHEMA:
                c.execute(stmt)
        self.sinks: tuple[str, ...] = tuple(s for s in ("file", "webhook") if getattr(settings, s, None))
        self.deadline = DEADLINE
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._threads: list[threading.Thread] = []
        self.outcomes: Counter[tuple[str, str]] = Counter()

    def backoff(self, attempts: int) -> float:
        return float(min(self.settings.retry_cap, self.settings.retry_base * 2 ** max(0, attempts - 1)))

    def kick(self, now: float | None = None) -> list[threading.Thread]:
        """Start a lane for each sink with due rows and none in flight; never waits."""
        now = time.time() if now is None else now
        started = []
        with self._lock:
            for sink in self.sinks:
                if sink in self._busy:
                    continue
                rows = self.db.read("SELECT * FROM command_record_outbox WHERE state = 'pending' AND sink = ? AND "
                                    "next_attempt_at <= ? ORDER BY created_at, rowid LIMIT ?", (sink, now, BATCH))
                if not rows:
                    continue
                self._busy.add(sink)
                t = threading.Thread(target=self._lane, args=(sink, rows, now), name=f"records {sink}", daemon=True)
                t.start()
                started.append(t)
            self._threads = [t for t in self._threads if t.is_alive()] + started
        return started

    def deliver(self, now: float | None = None, wait: float = DEADLINE + 1) -> None:
        """kick, then wait up to `wait` seconds for the lanes started (tests, shutdown)."""
        end = time.monotonic() + wait
        for t in self.kick(now):
            t.join(max(0.0, end - time.monotonic()))

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(0.0, end - time.monotonic()))

    def prune(self, now: float) -> None:
        with self.db.write() as c:
            c.execute("DELETE FROM command_record_outbox WHERE state = 'delivered' AND delivered_at < ?",
                      (now - KEEP_DELIVERED,))

    def counts(self) -> dict[str, int]:
        return {f"{r['sink']}:{r['state']}": r["n"] for r in self.db.read(
            "SELECT sink, state, COUNT(*) AS n FROM command_record_outbox GROUP BY sink, state")}

    def _lane(self, sink: str, rows: list[Any], now: float) -> None:
        try:
            if sink == "file":
                self._append(rows, now)
            else:
                for r in rows:
                    if self._post(r, now) == "retry":  # failing now: the rest wait for a later pass
                        break
        except Exception:  # noqa: BLE001 - e.g. the database closed under a late lane at shutdown
            log.exception("record delivery lane %s stopped", sink)
        finally:
            with self._lock:
                self._busy.discard(sink)

    def _append(self, rows: list[Any], now: float) -> None:
        path = self.settings.file
        data = "".join(r["payload"] + "\n" for r in rows).encode()
        try:
            # O_APPEND: whole lines land at the end even with another writer (logrotate's copytruncate).
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            detail = f"cannot append to {path}: {e.strerror or e}"
            for r in rows:
                self._mark(r, "retry", detail, now)
            return
        for r in rows:
            self._mark(r, "delivered", f"appended to {path}", now)

    def _post(self, r: Any, now: float) -> str:
        from diag.alerting.notifiers import DeliveryError
        from diag.alerting.notifiers.webhook import post_json

        try:
            answer = post_json(self.settings.webhook, json.loads(r["payload"]), r["delivery_id"],
                               dict(self.settings.headers), timeout=self.deadline)
            outcome, detail = "delivered", f"HTTP {answer.status_code}"
        except DeliveryError as e:
            late = now - r["created_at"] > self.settings.give_up_after
            outcome, detail = ("failed" if e.permanent or late else "retry"), str(e)[:500]
        return self._mark(r, outcome, detail, now)

    def _mark(self, r: Any, outcome: str, detail: str, now: float) -> str:
        attempts = r["attempts"] + 1
        at = max(now, time.time())
        with self.db.write() as c:
            if outcome == "delivered":
                c.execute("UPDATE command_record_outbox SET state = 'delivered', attempts = ?, delivered_at = ?, "
                          "last_error = NULL WHERE delivery_id = ?", (attempts, at, r["delivery_id"]))
            elif outcome == "failed":
                c.execute("UPDATE command_record_outbox SET state = 'failed', attempts = ?, last_error = ? "
                          "WHERE delivery_id = ?", (attempts, detail, r["delivery_id"]))
            else:
                c.execute("UPDATE command_record_outbox SET attempts = ?, next_attempt_at = ?, last_error = ? "
                          "WHERE delivery_id = ?", (attempts, at + self.backoff(attempts), detail, r["delivery_id"]))
        if outcome != "delivered":
            log.warning("execution record %s to %s: %s (%s)", r["task_id"], r["sink"], outcome, detail)
        with self._lock:
            self.outcomes[(r["sink"], outcome)] += 1
        return outcome
