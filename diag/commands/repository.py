"""The command tables in diag.db: saved commands, invocations, their instances and records."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from diag.commands import records
from diag.commands.states import FINAL
from diag.db import Database

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS commands (command_id TEXT PRIMARY KEY, body TEXT NOT NULL, "
    "saved INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL, updated_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS invocations (invoke_id TEXT PRIMARY KEY, command_id TEXT, kind TEXT NOT NULL, "
    "spec TEXT NOT NULL, repeat_mode TEXT NOT NULL, frequency TEXT NOT NULL DEFAULT '', periodic INTEGER NOT NULL, "
    "created_at REAL NOT NULL, audit TEXT NOT NULL, stopped INTEGER NOT NULL DEFAULT 0, next_run REAL)",
    "CREATE INDEX IF NOT EXISTS invocations_due ON invocations (next_run)",
    "CREATE TABLE IF NOT EXISTS invocation_instances (invoke_id TEXT NOT NULL, instance_id TEXT NOT NULL, "
    "boot_id TEXT, repeats INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (invoke_id, instance_id))",
    "CREATE TABLE IF NOT EXISTS command_records (task_id TEXT PRIMARY KEY, invoke_id TEXT NOT NULL, "
    "instance_id TEXT NOT NULL, status TEXT NOT NULL, exit_code INTEGER, output BLOB NOT NULL DEFAULT x'', "
    "dropped INTEGER NOT NULL DEFAULT 0, error_code TEXT, error_info TEXT, created_at REAL NOT NULL, "
    "start_time REAL, finish_time REAL, delivered_at REAL, script TEXT, timeout REAL NOT NULL, env TEXT)",
    "CREATE INDEX IF NOT EXISTS records_by_instance ON command_records (instance_id, status)",
    "CREATE INDEX IF NOT EXISTS records_by_invoke ON command_records (invoke_id, instance_id, created_at)",
)
# The boot_id a NextRebootOnly invocation keeps for an instance once it has fired there.
FIRED_ONCE = "!fired"
KEEP_RECORDS = 100  # per invocation and instance: a periodic one must not grow without end


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def record_env(r: Any) -> dict[str, str]:
    """A record's parameter variables (see parameters.substitute)."""
    return json.loads(r["env"]) if r["env"] else {}


def record_json(r: Any) -> dict[str, Any]:
    return {"task_id": r["task_id"], "status": r["status"], "exit_code": r["exit_code"],
            "output": bytes(r["output"]).decode("utf-8", "replace"), "dropped": r["dropped"],
            "error_code": r["error_code"], "error_info": r["error_info"], "created_at": r["created_at"],
            "start_time": r["start_time"], "finish_time": r["finish_time"]}


class Repository:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.sinks: tuple[str, ...] = ()  # where finished records go (records.RecordOutbox sets them)
        with db.write() as c:
            for stmt in SCHEMA:
                c.execute(stmt)
            # Stores from before parameters travelled as variables: their records' scripts
            # carry the values inline and run as they are.
            columns = {row[1] for row in c.execute("PRAGMA table_info(command_records)")}
            if "env" not in columns:
                c.execute("ALTER TABLE command_records ADD COLUMN env TEXT")
            # The agent process (its session) a record was handed to: another one polling
            # means that one is gone with the run.
            if "delivered_to" not in columns:
                c.execute("ALTER TABLE command_records ADD COLUMN delivered_to TEXT")

    # -- commands --------------------------------------------------------------------------

    def save_command(self, command_id: str, body: dict[str, Any], now: float, saved: bool = True) -> None:
        with self.db.write() as c:
            c.execute("INSERT INTO commands (command_id, body, saved, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                      "ON CONFLICT(command_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                      (command_id, json.dumps(body), int(saved), now, now))

    def command(self, command_id: str, saved_only: bool = True) -> dict[str, Any] | None:
        rows = self.db.read("SELECT * FROM commands WHERE command_id = ?" + (" AND saved = 1" if saved_only else ""),
                            (command_id,))
        return self._command(rows[0]) if rows else None

    def commands(self) -> list[dict[str, Any]]:
        return [self._command(r) for r in self.db.read("SELECT * FROM commands WHERE saved = 1 ORDER BY created_at")]

    def contents_named(self, name: str) -> set[str]:
        """The contents ever saved under a name, deleted commands included."""
        return {c["content"] for c in (self._command(r) for r in self.db.read("SELECT * FROM commands"))
                if c["name"] == name}

    def delete_command(self, command_id: str) -> bool:
        with self.db.write() as c:
            return c.execute("UPDATE commands SET saved = 0 WHERE command_id = ? AND saved = 1",
                             (command_id,)).rowcount > 0  # kept unsaved: its invocations still name it

    @staticmethod
    def _command(r: Any) -> dict[str, Any]:
        # check_ids default: commands saved before the field existed have none in their body.
        return {"command_id": r["command_id"], "check_ids": [], **json.loads(r["body"]), "created_at": r["created_at"],
                "updated_at": r["updated_at"]}

    # -- invocations -----------------------------------------------------------------------

    def add_invocation(self, inv: dict[str, Any], instance_ids: list[str]) -> None:
        with self.db.write() as c:
            c.execute("INSERT INTO invocations (invoke_id, command_id, kind, spec, repeat_mode, frequency, periodic, "
                      "created_at, audit, next_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (inv["invoke_id"], inv["command_id"], inv["kind"], json.dumps(inv["spec"]), inv["repeat_mode"],
                       inv["frequency"], int(inv["periodic"]), inv["created_at"], json.dumps(inv["audit"]),
                       inv["next_run"]))
            c.executemany("INSERT INTO invocation_instances (invoke_id, instance_id, boot_id) VALUES (?, ?, ?)",
                          [(inv["invoke_id"], i, inv["boot_ids"].get(i)) for i in instance_ids])

    def invocation(self, invoke_id: str) -> dict[str, Any] | None:
        rows = self.db.read("SELECT * FROM invocations WHERE invoke_id = ?", (invoke_id,))
        return self._invocation(rows[0]) if rows else None

    def invocations(self, command_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM invocations", []
        if command_id:
            sql += " WHERE command_id = ?"
            args.append(command_id)
        rows = self.db.read(sql + " ORDER BY created_at DESC LIMIT ?", [*args, limit])
        return [self._invocation(r) for r in rows]

    def due(self, now: float) -> list[dict[str, Any]]:
        rows = self.db.read("SELECT * FROM invocations WHERE next_run IS NOT NULL AND next_run <= ? AND stopped = 0",
                            (now,))
        return [self._invocation(r) for r in rows]

    def set_next_run(self, invoke_id: str, next_run: float | None) -> None:
        with self.db.write() as c:
            c.execute("UPDATE invocations SET next_run = ? WHERE invoke_id = ?", (next_run, invoke_id))

    def mark_stopped(self, invoke_id: str) -> None:
        with self.db.write() as c:
            c.execute("UPDATE invocations SET stopped = 1, next_run = NULL WHERE invoke_id = ?", (invoke_id,))

    def instances_of(self, invoke_id: str) -> list[Any]:
        return self.db.read("SELECT * FROM invocation_instances WHERE invoke_id = ? ORDER BY instance_id",
                            (invoke_id,))

    def boot_watchers(self, instance_id: str) -> list[Any]:
        return self.db.read(
            "SELECT ii.invoke_id, ii.boot_id, i.repeat_mode FROM invocation_instances ii "
            "JOIN invocations i USING (invoke_id) WHERE ii.instance_id = ? AND i.stopped = 0 "
            "AND (i.repeat_mode = 'EveryReboot' OR (i.repeat_mode = 'NextRebootOnly' AND "
            "COALESCE(ii.boot_id, '') != ?))", (instance_id, FIRED_ONCE))

    def set_boot(self, invoke_id: str, instance_id: str, boot_id: str) -> None:
        """The boot an instance's reboot invocation last saw (FIRED_ONCE: a NextRebootOnly done)."""
        with self.db.write() as c:
            c.execute("UPDATE invocation_instances SET boot_id = ? WHERE invoke_id = ? AND instance_id = ?",
                      (boot_id, invoke_id, instance_id))

    @staticmethod
    def _invocation(r: Any) -> dict[str, Any]:
        return {"invoke_id": r["invoke_id"], "command_id": r["command_id"], "kind": r["kind"],
                "spec": json.loads(r["spec"]), "repeat_mode": r["repeat_mode"], "frequency": r["frequency"],
                "periodic": bool(r["periodic"]), "created_at": r["created_at"], "audit": json.loads(r["audit"]),
                "stopped": bool(r["stopped"]), "next_run": r["next_run"]}

    # -- records ---------------------------------------------------------------------------

    def add_record(self, task_id: str, invoke_id: str, instance_id: str, script: str | None, timeout: float,
                   now: float, env: dict[str, str] | None = None) -> None:
        with self.db.write() as c:
            c.execute("INSERT INTO command_records (task_id, invoke_id, instance_id, status, created_at, script, "
                      "timeout, env) VALUES (?, ?, ?, 'Pending', ?, ?, ?, ?)",
                      (task_id, invoke_id, instance_id, now, script, timeout, json.dumps(env) if env else None))
            c.execute("UPDATE invocation_instances SET repeats = repeats + 1 WHERE invoke_id = ? AND instance_id = ?",
                      (invoke_id, instance_id))
            c.execute("DELETE FROM command_records WHERE task_id IN (SELECT task_id FROM command_records "
                      "WHERE invoke_id = ? AND instance_id = ? AND status IN ('Finished', 'Failed', 'Stopped') "
                      "ORDER BY created_at DESC LIMIT -1 OFFSET ?)", (invoke_id, instance_id, KEEP_RECORDS))

    def record(self, task_id: str) -> Any | None:
        rows = self.db.read("SELECT * FROM command_records WHERE task_id = ?", (task_id,))
        return rows[0] if rows else None

    def records(self, invoke_id: str, instance_id: str) -> list[Any]:
        return self.db.read("SELECT * FROM command_records WHERE invoke_id = ? AND instance_id = ? "
                            "ORDER BY created_at, rowid", (invoke_id, instance_id))

    def records_where(self, sql: str, args: tuple | list = ()) -> list[Any]:
        return self.db.read("SELECT * FROM command_records WHERE " + sql, args)

    def set_status(self, task_id: str, status: str, *, only_if: tuple[str, ...] = (), **fields: Any) -> bool:
        cols = ", ".join(["status = ?", *(f"{k} = ?" for k in fields)])
        sql = f"UPDATE command_records SET {cols} WHERE task_id = ?"
        args: list[Any] = [status, *fields.values(), task_id]
        if only_if:
            sql += f" AND status IN ({','.join('?' * len(only_if))})"
            args += list(only_if)
        with self.db.write() as c:
            changed = c.execute(sql, args).rowcount > 0
            if changed and status in FINAL and self.sinks:
                # The same transaction: a finished record is never without its deliveries.
                records.enqueue(c, task_id, self.sinks, time.time())
            return changed
