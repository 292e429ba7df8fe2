"""The agent's disk buffer: batches waiting for the server, oldest first, bounded.

An append-only SQLite table: a batch is one row with an increasing sequence number, so
order survives restarts, and deleting the oldest rows when full is one statement. A
batch leaves the buffer only once the server acknowledged it (202), so a crash between
send and delete resends it, and its `batch_id` makes the server store it once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Buffer:
    def __init__(self, path: Path, max_batches: int) -> None:
        self.max_batches = max_batches
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a power cut may lose the last batch, never corrupt
        self._db.executescript(SCHEMA)

    def append(self, body: dict[str, Any]) -> int:
        """Keep one batch; when over the bound, drop the oldest and count them. Returns how many were dropped."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT INTO batches (body) VALUES (?)", (json.dumps(body, separators=(",", ":")),))
                (n,) = self._db.execute("SELECT COUNT(*) FROM batches").fetchone()
                over = max(0, n - self.max_batches)
                if over:
                    self._db.execute("DELETE FROM batches WHERE seq IN (SELECT seq FROM batches ORDER BY seq LIMIT ?)",
                                     (over,))
                    self._db.execute("INSERT INTO meta VALUES ('dropped', ?) "
                                     "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value", (over,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return over

    def oldest(self) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            row = self._db.execute("SELECT seq, body FROM batches ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def ack(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM batches WHERE seq = ?", (seq,))

    def dropped(self) -> int:
        """Batches dropped since the server last heard about it."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        return row[0] if row else 0

    def reported(self, n: int) -> None:
        with self._lock:
            self._db.execute("UPDATE meta SET value = MAX(0, value - ?) WHERE key = 'dropped'", (n,))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
