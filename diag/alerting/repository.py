"""Rows of the alerting tables as API objects: policies, contacts, groups, alerts,
history and silences. No validation here (policy.py does it) and no semantics
(evaluator.py): reading and writing only."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any

from diag.db import Database

_KINDS = {
    "policy": ("alert_policies", "policy_id", "p-"),
    "contact": ("alert_contacts", "contact_id", "c-"),
    "contact_group": ("alert_contact_groups", "contact_group_id", "g-"),
}


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:16]


INSERT_HISTORY = ("INSERT INTO alert_history (ts, kind, alert_id, policy_id, instance_id, condition, from_state, "
                  "to_state, value, notification_id, channel, outcome, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")


_UPSERT_ALERT = (
    "INSERT INTO alerts (alert_id, policy_id, condition, instance_id, series, state, severity, value, started_at, "
    "fired_at, resolved_at, last_notified_at, updated_at, episode, notices, detail) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(alert_id) DO UPDATE SET state = excluded.state, "
    "severity = excluded.severity, value = excluded.value, started_at = excluded.started_at, "
    "fired_at = excluded.fired_at, resolved_at = excluded.resolved_at, "
    "last_notified_at = excluded.last_notified_at, updated_at = excluded.updated_at, "
    "episode = excluded.episode, notices = excluded.notices, detail = excluded.detail")


def _alert_values(row: dict[str, Any], now: float) -> tuple:
    return (row["alert_id"], row["policy_id"], row["condition"], row["instance_id"], row.get("series", ""),
            row["state"], row["severity"], row.get("value"), row["started_at"], row["fired_at"], row["resolved_at"],
            row["last_notified_at"], now, row["episode"], row["notices"], row["detail"])


class Repository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- policies, contacts, groups: a JSON body under an id ------------------------------

    def _obj(self, kind: str, r: sqlite3.Row) -> dict[str, Any]:
        _, key, _ = _KINDS[kind]
        out = {key: r[key], **json.loads(r["body"])}
        if kind == "policy":
            out = {"policy_id": r[key], "id": r[key], **json.loads(r["body"]), "source": r["source"],
                   "created_at": r["created_at"], "updated_at": r["updated_at"]}
        else:
            out["created_at"] = r["created_at"]
        return out

    def list(self, kind: str) -> list[dict[str, Any]]:
        table, key, _ = _KINDS[kind]
        return [self._obj(kind, r) for r in self.db.read(f"SELECT * FROM {table} ORDER BY created_at, {key}")]

    def get(self, kind: str, obj_id: str) -> dict[str, Any] | None:
        table, key, _ = _KINDS[kind]
        rows = self.db.read(f"SELECT * FROM {table} WHERE {key} = ?", (obj_id,))
        return self._obj(kind, rows[0]) if rows else None

    def exists(self, kind: str, obj_id: str) -> bool:
        table, key, _ = _KINDS[kind]
        return bool(self.db.read(f"SELECT 1 FROM {table} WHERE {key} = ?", (obj_id,)))

    def put(self, kind: str, body: dict[str, Any], obj_id: str | None = None, source: str = "api",
            now: float | None = None) -> dict[str, Any]:
        """Insert or replace; keeps the creation time of a replaced object."""
        table, key, prefix = _KINDS[kind]
        now = time.time() if now is None else now
        obj_id = obj_id or new_id(prefix)
        with self.db.write() as c:
            if kind == "policy":
                c.execute("INSERT INTO alert_policies (policy_id, name, body, source, created_at, updated_at) "
                          "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(policy_id) DO UPDATE SET name = excluded.name, "
                          "body = excluded.body, source = excluded.source, updated_at = excluded.updated_at",
                          (obj_id, body["name"], json.dumps(body), source, now, now))
            else:
                c.execute(f"INSERT INTO {table} ({key}, body, created_at) VALUES (?, ?, ?) "
                          f"ON CONFLICT({key}) DO UPDATE SET body = excluded.body", (obj_id, json.dumps(body), now))
        got = self.get(kind, obj_id)
        assert got is not None
        return got

    def delete(self, kind: str, obj_id: str) -> bool:
        table, key, _ = _KINDS[kind]
        with self.db.write() as c:
            gone = c.execute(f"DELETE FROM {table} WHERE {key} = ?", (obj_id,)).rowcount > 0
            if kind == "policy" and gone:
                c.execute("DELETE FROM alerts WHERE policy_id = ?", (obj_id,))
        return gone

    def policy_bodies(self) -> list[tuple[str, dict[str, Any]]]:
        return [(r["policy_id"], json.loads(r["body"])) for r in
                self.db.read("SELECT policy_id, body FROM alert_policies ORDER BY created_at, policy_id")]

    # -- alerts --------------------------------------------------------------------------

    @staticmethod
    def alert_obj(r: sqlite3.Row | dict) -> dict[str, Any]:
        return {"alert_id": r["alert_id"], "policy_id": r["policy_id"], "instance_id": r["instance_id"],
                "condition": r["condition"], "series": json.loads(r["series"]) if r["series"] else {},
                "state": r["state"], "severity": r["severity"], "value": r["value"],
                "started_at": r["started_at"], "fired_at": r["fired_at"], "resolved_at": r["resolved_at"],
                "last_notified_at": r["last_notified_at"], "updated_at": r["updated_at"],
                "detail": json.loads(r["detail"]) if isinstance(r["detail"], str) else r["detail"]}

    def alerts(self, states: list[str] | None = None, policy_id: str | None = None,
               instance_id: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM alerts WHERE 1=1", []
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += states
        if policy_id:
            sql += " AND policy_id = ?"
            args.append(policy_id)
        if instance_id:
            sql += " AND instance_id = ?"
            args.append(instance_id)
        sql += " ORDER BY updated_at DESC, alert_id"
        return [self.alert_obj(r) for r in self.db.read(sql, args)]

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        rows = self.db.read("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,))
        return self.alert_obj(rows[0]) if rows else None

    def alert_rows(self) -> dict[tuple[str, str, str, str], dict[str, Any]]:
        """Every alert by (policy, condition, instance, series), as plain dicts for the evaluator."""
        return {(r["policy_id"], r["condition"], r["instance_id"], r["series"]): dict(r)
                for r in self.db.read("SELECT * FROM alerts")}

    def live_alert_rows(self, where: str, args: tuple) -> list[dict[str, Any]]:
        """Firing and pending alerts matching `where` (a condition on alerts' columns), as plain dicts."""
        return [dict(r) for r in self.db.read(f"SELECT * FROM alerts WHERE state IN ('firing', 'pending') AND {where}",
                                              args)]

    @staticmethod
    def alert_row(c: sqlite3.Connection, alert_id: str) -> sqlite3.Row | None:
        return c.execute("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()

    @staticmethod
    def save_alerts(c: sqlite3.Connection, rows: list[dict[str, Any]], now: float) -> None:
        c.executemany(_UPSERT_ALERT, [_alert_values(r, now) for r in rows])

    @staticmethod
    def set_states(c: sqlite3.Connection, rows: list[dict[str, Any]], now: float) -> None:
        c.executemany("UPDATE alerts SET state = ?, resolved_at = ?, updated_at = ? WHERE alert_id = ?",
                      [(r["state"], r["resolved_at"], now, r["alert_id"]) for r in rows])

    @staticmethod
    def set_detail(c: sqlite3.Connection, alert_id: str, detail: str, now: float | None = None) -> None:
        """The alert's detail (JSON); `now` also marks it updated (an acknowledgement, not a resend)."""
        if now is None:
            c.execute("UPDATE alerts SET detail = ? WHERE alert_id = ?", (detail, alert_id))
        else:
            c.execute("UPDATE alerts SET detail = ?, updated_at = ? WHERE alert_id = ?", (detail, now, alert_id))

    def counts(self) -> dict[tuple[str, str], int]:
        return {(r["state"], r["severity"]): r["n"] for r in
                self.db.read("SELECT state, severity, COUNT(*) AS n FROM alerts GROUP BY state, severity")}

    # -- history ------------------------------------------------------------------------

    @staticmethod
    def add_state_history(c: sqlite3.Connection, rows: list[tuple]) -> None:
        """History rows in INSERT_HISTORY's column order."""
        c.executemany(INSERT_HISTORY, rows)

    @staticmethod
    def add_history(c: sqlite3.Connection, ts: float, kind: str, **f: Any) -> None:
        c.execute(INSERT_HISTORY,
                  (ts, kind, f.get("alert_id"), f.get("policy_id"), f.get("instance_id"), f.get("condition"),
                   f.get("from_state"), f.get("to_state"), f.get("value"), f.get("notification_id"),
                   f.get("channel"), f.get("outcome"), f.get("detail", "")))

    def history(self, since: float | None = None, alert_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM alert_history WHERE 1=1", []
        if since is not None:
            sql += " AND ts >= ?"
            args.append(since)
        if alert_id:
            sql += " AND alert_id = ?"
            args.append(alert_id)
        sql += " ORDER BY history_id DESC LIMIT ?"
        args.append(limit)
        return [{k: r[k] for k in r.keys()} for r in self.db.read(sql, args)]

    def expire_history(self, before: float) -> int:
        with self.db.write() as c:
            return c.execute("DELETE FROM alert_history WHERE ts < ?", (before,)).rowcount

    # -- silences ------------------------------------------------------------------------

    @staticmethod
    def _silence(r: sqlite3.Row) -> dict[str, Any]:
        return {"silence_id": r["silence_id"], "alert_id": r["alert_id"], "policy_id": r["policy_id"],
                "instance_id": r["instance_id"], "matchers": json.loads(r["matchers"] or "[]"),
                "comment": r["comment"], "created_by": r["created_by"], "created_at": r["created_at"],
                "starts_at": r["starts_at"] if r["starts_at"] is not None else r["created_at"], "ends_at": r["ends_at"]}

    def add_silence(self, *, alert_id: str | None = None, policy_id: str | None = None,
                    instance_id: str | None = None, duration: float | None = None, comment: str, now: float,
                    matchers: list[dict[str, str]] | None = None, starts_at: float | None = None,
                    ends_at: float | None = None, created_by: str = "") -> dict[str, Any]:
        """A silence of one alert, policy or instance, or of the alerts its matchers match;
        from `starts_at` (default now) to `ends_at` (or for `duration`)."""
        sid = new_id("s-")
        starts = now if starts_at is None else starts_at
        ends = ends_at if ends_at is not None else starts + float(duration or 0)
        with self.db.write() as c:
            c.execute("INSERT INTO alert_silences (silence_id, alert_id, policy_id, instance_id, matchers, comment, "
                      "created_by, created_at, starts_at, ends_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (sid, alert_id, policy_id, instance_id, json.dumps(matchers or []), comment, created_by, now,
                       starts, ends))
        rows = self.db.read("SELECT * FROM alert_silences WHERE silence_id = ?", (sid,))
        return self._silence(rows[0])

    def silences(self, now: float) -> list[dict[str, Any]]:
        return [self._silence(r) for r in
                self.db.read("SELECT * FROM alert_silences WHERE ends_at > ? ORDER BY ends_at", (now,))]

    def get_silence(self, silence_id: str, now: float) -> dict[str, Any] | None:
        rows = self.db.read("SELECT * FROM alert_silences WHERE silence_id = ? AND ends_at > ?", (silence_id, now))
        return self._silence(rows[0]) if rows else None

    def delete_silence(self, silence_id: str, now: float) -> bool:
        with self.db.write() as c:
            return c.execute("DELETE FROM alert_silences WHERE silence_id = ? AND ends_at > ?",
                             (silence_id, now)).rowcount > 0

    def expire_silences(self, now: float) -> int:
        with self.db.write() as c:
            return c.execute("DELETE FROM alert_silences WHERE ends_at <= ?", (now,)).rowcount


def muted(silences: list[dict[str, Any]], alert_id: str, policy_id: str, instance_id: str,
          labels: dict[str, str] | None = None, now: float | None = None) -> dict[str, Any] | None:
    """The silence that mutes this alert, if any: by alert, by policy, by instance, or by
    matchers over its labels; a silence that has not started yet mutes nothing."""
    from diag.alerting import matchers as m

    for s in silences:
        if now is not None and s.get("starts_at", 0) > now:
            continue
        if s.get("matchers"):
            if labels is not None and m.matches(m.load(s["matchers"]), labels):
                return s
        elif s["alert_id"] == alert_id or s["policy_id"] == policy_id or s["instance_id"] == instance_id:
            return s
    return None
