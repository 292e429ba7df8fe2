"""The service's own database (events, instances, reports, and later policies):
low-volume, transactional rows beside the metric store, in `data_dir/diag.db`.

One connection per thread (SQLite connections are not shared across threads), WAL so
readers never wait for the writer, and a process-wide lock around writes so two web
threads never interleave a read-modify-write.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from diag.store.schema import is_full_error
from diag.store.types import StoreFullError

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '{}',
    first_seen REAL NOT NULL,
    last_seen REAL,
    monitoring INTEGER NOT NULL DEFAULT 1,
    local INTEGER NOT NULL DEFAULT 0,
    health_status TEXT,
    health_reasons TEXT NOT NULL DEFAULT '[]',
    health_at REAL,
    interval REAL
);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    type TEXT NOT NULL,
    level TEXT NOT NULL,
    status TEXT NOT NULL,
    publish_time REAL NOT NULL,
    not_before REAL,
    finish_time REAL,
    last_time REAL NOT NULL,
    fold_key TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_by_instance ON events (instance_id, publish_time);
CREATE INDEX IF NOT EXISTS events_by_fold ON events (instance_id, type, fold_key, last_time);
CREATE TABLE IF NOT EXISTS reports (
    report_id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    window_start REAL NOT NULL,
    window_end REAL NOT NULL,
    health_status TEXT NOT NULL,
    summary TEXT NOT NULL,
    checks TEXT NOT NULL,
    full INTEGER NOT NULL DEFAULT 1,
    health_reasons TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS reports_by_instance ON reports (instance_id, created_at);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Batch ids seen while the samples go to an engine behind --store-url (the embedded store
-- keeps its own): a retried batch must not record its signals and events twice.
CREATE TABLE IF NOT EXISTS ingested_batches (batch_id TEXT PRIMARY KEY, at REAL NOT NULL);
-- Top processes, the busiest collection of each 5 minutes (diag/process_history.py).
CREATE TABLE IF NOT EXISTS process_snapshots (
    instance_id TEXT NOT NULL,
    ts REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (instance_id, ts)
);
-- The kernel lines of each instance, its system log (diag/kernel_lines.py): the newest
-- lines per instance, within the age kept. (ts, seq) names a line within its instance, so
-- a batch an agent sends again adds none twice.
CREATE TABLE IF NOT EXISTS kernel_lines (
    instance_id TEXT NOT NULL,
    ts REAL NOT NULL,
    seq INTEGER NOT NULL,
    level INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (instance_id, ts, seq)
);
-- Retention deletes by age across instances: without it, a scan of every kept line.
CREATE INDEX IF NOT EXISTS kernel_lines_by_age ON kernel_lines (ts);
"""


# Columns added after a table was first released: (table, column, definition). CREATE TABLE
# IF NOT EXISTS leaves an existing table as it was, so a database made by an older version
# gets them here, once. Only additive changes, so an older version still reads the file.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("reports", "health_reasons", "TEXT NOT NULL DEFAULT '[]'"),
    ("instances", "interval", "REAL"),  # an agent's own collection interval
)


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Add the missing ADDED_COLUMNS; returns what was added as `table.column`."""
    added = []
    for table, column, definition in ADDED_COLUMNS:
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            added.append(f"{table}.{column}")
    return added


class DatabaseFullError(StoreFullError, sqlite3.OperationalError):
    """The disk under diag.db is full. Still a sqlite3.OperationalError, for the callers
    that already keep going past one."""


class Database:
    # Why the last write failed for want of room; None once one succeeds (/healthz reads it).
    full: str | None = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        with self._write_lock:
            self._conn().executescript(SCHEMA)  # executescript manages its own transaction
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                migrate(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            self._all.append(conn)
        return conn

    def read(self, sql: str, args: tuple | list = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, args).fetchall()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises.

        A full disk raises DatabaseFullError (a StoreFullError: the routes answer 507)."""
        conn = self._conn()
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:  # SQLite may have rolled back itself (SQLITE_FULL)
                        conn.execute("ROLLBACK")
                    raise
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                if is_full_error(e) and not isinstance(e, DatabaseFullError):
                    self.full = f"{self.path.name}: {e}"
                    raise DatabaseFullError(f"{self.path.name} cannot write now: {e}") from e
                raise
            self.full = None

    def get_kv(self, key: str) -> Any:
        rows = self.read("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else None

    def set_kv(self, key: str, value: Any) -> None:
        with self.write() as c:
            self.set_kv_in(c, key, value)

    @staticmethod
    def set_kv_in(c: sqlite3.Connection, key: str, value: Any) -> None:
        """`set_kv` within a transaction the caller holds."""
        c.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                  (key, json.dumps(value)))

    def close(self) -> None:
        for conn in self._all:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._all.clear()
        self._local = threading.local()
