"""Alerting tables in diag.db, created idempotently at start."""

from __future__ import annotations

import re
import sqlite3

from diag.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_policies (
    policy_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'api',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_contacts (
    contact_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_contact_groups (
    contact_group_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- One row per (policy, condition, instance, series): the state machine's memory. `series` is
-- labels.series_key of the breaching series' labels, '' for none.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    policy_id TEXT NOT NULL,
    condition TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    series TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    value REAL,
    started_at REAL,
    fired_at REAL,
    resolved_at REAL,
    last_notified_at REAL,
    updated_at REAL NOT NULL,
    episode INTEGER NOT NULL DEFAULT 0,
    notices INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '{}',
    UNIQUE (policy_id, condition, instance_id, series)
);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state);
CREATE TABLE IF NOT EXISTS alert_history (
    history_id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    alert_id TEXT,
    policy_id TEXT,
    instance_id TEXT,
    condition TEXT,
    from_state TEXT,
    to_state TEXT,
    value REAL,
    notification_id TEXT,
    channel TEXT,
    outcome TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alert_history_by_ts ON alert_history (ts);
CREATE TABLE IF NOT EXISTS alert_silences (
    silence_id TEXT PRIMARY KEY,
    alert_id TEXT,
    policy_id TEXT,
    instance_id TEXT,
    comment TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    ends_at REAL NOT NULL
);
-- Alertmanager-style inhibition rules: a firing source mutes the notices of the matching
-- targets that share its `equal` labels. The body is {name, source, target, equal, comment}.
CREATE TABLE IF NOT EXISTS alert_inhibit_rules (
    rule_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- Notification groups (routing.py): the alerts waiting for or already in a grouped notice,
-- and when the group is next looked at, so a restart neither loses nor re-sends one.
CREATE TABLE IF NOT EXISTS alert_groups (
    group_key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    route TEXT NOT NULL,
    labels TEXT NOT NULL,
    contact_groups TEXT NOT NULL,
    members TEXT NOT NULL,
    created_at REAL NOT NULL,
    next_flush_at REAL NOT NULL,
    last_sent_at REAL,
    sent_digest TEXT NOT NULL DEFAULT '',
    sends INTEGER NOT NULL DEFAULT 0
);
-- The persisted outbox: one row per (notification, channel). `key` is the idempotency key
-- sent with each attempt, so a receiver can drop the copy a crash may resend.
CREATE TABLE IF NOT EXISTS alert_outbox (
    notification_id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    alert_id TEXT,
    kind TEXT NOT NULL,
    contact_id TEXT,
    channel TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    created_at REAL NOT NULL,
    delivered_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS alert_outbox_by_alert ON alert_outbox (alert_id);
"""


# Columns added after the first release: (table, column, definition).
ADDED = (
    ("alert_silences", "matchers", "TEXT NOT NULL DEFAULT '[]'"),
    ("alert_silences", "starts_at", "REAL"),
    ("alert_silences", "created_by", "TEXT NOT NULL DEFAULT ''"),
)
# The alerts table's definition above, for rebuilding an older one.
_ALERTS = re.search(r"CREATE TABLE IF NOT EXISTS alerts \(.*?\n\);", SCHEMA, re.S).group(0)  # type: ignore[union-attr]
_OLD_COLUMNS = ("alert_id, policy_id, condition, instance_id, state, severity, value, started_at, fired_at, "
                "resolved_at, last_notified_at, updated_at, episode, notices, detail")


def create(db: Database) -> None:
    """Create the tables, or bring an older database to this shape, in one transaction: a
    process killed half-way leaves the database as it was, and the next start migrates it."""
    with db.write() as c:
        _migrate(c)
        for stmt in SCHEMA.split(";"):
            if stmt.strip():
                c.execute(stmt)
        for table, column, definition in ADDED:
            if column not in {r[1] for r in c.execute(f"PRAGMA table_info({table})")}:
                c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def _migrate(c: sqlite3.Connection) -> None:
    cols = {r["name"] for r in c.execute("PRAGMA table_info(alerts)")}
    if cols and "series" not in cols:
        # Alerts became per series: the UNIQUE constraint changes, which SQLite can only do
        # by rebuilding the table. The existing alerts are the series-less ones they were.
        c.execute(_ALERTS.replace(" alerts (", " alerts_new (", 1).rstrip(";"))
        c.execute(f"INSERT INTO alerts_new ({_OLD_COLUMNS}) SELECT {_OLD_COLUMNS} FROM alerts")
        c.execute("DROP TABLE alerts")
        c.execute("ALTER TABLE alerts_new RENAME TO alerts")
