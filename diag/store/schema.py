"""SQLite layout and connection setup of the store.

- `series`: one row per (instance, metric, sorted labels) -> integer id.
- `head`: one row per acknowledged batch (ids, ts, values in one zstd blob), the
  durable copy of the in-memory head; removed when its points move to chunks.
- `chunks`: per-series runs of raw points (delta/decimal encoded, see encoding.py).
- `rollups`: per-series, per-level blocks of bucket aggregates (see rollups.py).
- `batch_ids`: ids of stored batches, so a retried batch is stored once.
- `meta`: `gen`, bumped by every compaction in the same transaction; a reader checks
  it against the in-memory head it holds, so it never counts a point twice.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1
# 64 KiB pages: roll-up blocks (2-10 KiB) and chunks (~1 KiB) pack many to a page
# instead of one per page plus overflow. Measured on the benchmark day: 2.91 bytes
# per raw point for the whole file against 3.54 with 4 KiB pages (ingest 1.2 vs 1.4
# million points/s). Only takes effect when the file is created.
PAGE_SIZE = 65536

DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    labels TEXT NOT NULL,
    UNIQUE (instance_id, metric, labels)
);
CREATE TABLE IF NOT EXISTS head (
    seq INTEGER PRIMARY KEY,
    ts_min REAL NOT NULL,
    ts_max REAL NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_ids (batch_id TEXT PRIMARY KEY, ts REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    t_min REAL NOT NULL,
    t_max REAL NOT NULL,
    n INTEGER NOT NULL,
    ts BLOB NOT NULL,
    vals BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_series ON chunks (series_id, t_max);
CREATE INDEX IF NOT EXISTS chunks_by_age ON chunks (t_max);
CREATE TABLE IF NOT EXISTS rollups (
    id INTEGER PRIMARY KEY,
    level INTEGER NOT NULL,
    series_id INTEGER NOT NULL,
    block REAL NOT NULL,
    t_max REAL NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (level, series_id, block)
);
CREATE INDEX IF NOT EXISTS rollups_by_age ON rollups (level, t_max);
INSERT OR IGNORE INTO meta VALUES ('gen', 0), ('schema', 1);
"""


# The WAL is checkpointed at this size, and cut back to it after a larger transaction.
WAL_LIMIT_BYTES = 4 << 20


def connect(path: Path, *, synchronous: str = "FULL", writer: bool = False) -> sqlite3.Connection:
    """One connection per thread; the writer's also creates the schema.

    check_same_thread is off only so `close()` can close every reader; each
    connection is still used by the one thread that opened it.

    WAL lets readers keep a snapshot while the writer commits, so neither waits on
    the other. auto_vacuum=INCREMENTAL lets retention give space back to the disk
    (it must be set before the first table exists, hence here).
    """
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    if writer:
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        # The WAL file is truncated back to this after a checkpoint, so it cannot
        # keep the disk space of one big compaction forever.
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
        # SQLite's default checkpoints after 1,000 pages: 64 MiB of WAL with our pages, on
        # top of what store.size_cap allows, enough to fill a small disk by itself.
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_LIMIT_BYTES // PAGE_SIZE}")
        conn.executescript(DDL)
    else:
        conn.execute("PRAGMA query_only = 1")
    conn.execute("PRAGMA cache_size = -65536")
    return conn


def is_full_error(exc: BaseException) -> bool:
    """SQLITE_FULL (disk or max_page_count) and ENOSPC surfacing as an I/O error."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL:
            return True
        msg = str(exc).lower()
        return "database or disk is full" in msg or "no space" in msg
    if isinstance(exc, OSError):
        import errno

        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return False
