"""Retention per level and the size cap (run on the write thread).

Retention drops whole chunks / roll-up blocks older than the level's horizon and
rewrites the one that straddles it, so a query over an expired range is empty,
not merely thinner. The size cap then removes the oldest raw chunks (then the
oldest roll-up blocks, finest level first) until the used size is under the cap;
each removal is returned so the caller can raise an event.
"""

from __future__ import annotations

import sqlite3

import numpy as np

from . import encoding, rollups
from .compaction import FINE_LEVELS
from .types import LEVELS, RAW, Deletion, Retention


def used_bytes(conn: sqlite3.Connection) -> int:
    """Pages holding data (free pages are reused before the file grows)."""
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    (size,) = conn.execute("PRAGMA page_size").fetchone()
    return (pages - free) * size


def _trim_chunks(conn: sqlite3.Connection, cutoff: float) -> tuple[int, int]:
    rows = conn.execute(
        "SELECT id, ts, vals FROM chunks WHERE t_min < ? AND t_max >= ?", (cutoff, cutoff)
    ).fetchall()
    dropped = 0
    for cid, tsb, vb in rows:
        ts, vals = encoding.decode_ts(tsb), encoding.decode_floats(vb)
        keep = ts >= cutoff
        dropped += int((~keep).sum())
        ts, vals = ts[keep], vals[keep]
        conn.execute(
            "UPDATE chunks SET t_min = ?, n = ?, ts = ?, vals = ? WHERE id = ?",
            (float(ts.min()), int(ts.size), encoding.encode_ts(ts), encoding.encode_floats(vals), cid),
        )
    return len(rows), dropped


def _trim_blocks(conn: sqlite3.Connection, level: int, cutoff: float) -> int:
    cutoff = float(np.ceil(cutoff / level) * level)  # buckets starting before it go
    rows = conn.execute(
        "SELECT id, data FROM rollups WHERE level = ? AND block < ? AND t_max > ?", (level, cutoff, cutoff)
    ).fetchall()
    dropped = 0
    for rid, data in rows:
        cols = rollups.unpack_block(data)
        keep = cols["bucket"] >= cutoff
        if keep.all():
            continue
        dropped += int((~keep).sum())
        bucket = cols["bucket"][keep]
        blob = rollups.pack_block(bucket, {f: cols[f][keep] for f in rollups.FIELDS}, level in FINE_LEVELS)
        conn.execute("UPDATE rollups SET n = ?, data = ? WHERE id = ?", (int(bucket.size), blob, rid))
    return dropped


def apply_retention(conn: sqlite3.Connection, now: float, retention: Retention) -> list[Deletion]:
    out: list[Deletion] = []
    conn.execute("BEGIN IMMEDIATE")
    cutoff = now - retention.raw
    rows, points, size = conn.execute(
        "SELECT count(*), coalesce(sum(n), 0), coalesce(sum(length(ts) + length(vals)), 0) "
        "FROM chunks WHERE t_max < ?",
        (cutoff,),
    ).fetchone()
    conn.execute("DELETE FROM chunks WHERE t_max < ?", (cutoff,))
    _, trimmed = _trim_chunks(conn, cutoff)
    if rows or trimmed:
        out.append(Deletion("retention", RAW, cutoff, rows, points + trimmed, size))
    # A retried batch older than raw retention is stored again; that is what
    # keeping its id any longer than its data would prevent, and it is harmless.
    conn.execute("DELETE FROM batch_ids WHERE ts < ?", (cutoff,))
    for level in LEVELS:
        cutoff = now - retention.for_level(level)
        rows, points, size = conn.execute(
            "SELECT count(*), coalesce(sum(n), 0), coalesce(sum(length(data)), 0) "
            "FROM rollups WHERE level = ? AND t_max <= ?",
            (level, cutoff),
        ).fetchone()
        conn.execute("DELETE FROM rollups WHERE level = ? AND t_max <= ?", (level, cutoff))
        trimmed = _trim_blocks(conn, level, cutoff)
        if rows or trimmed:
            out.append(Deletion("retention", level, cutoff, rows, points + trimmed, size))
    conn.execute("COMMIT")
    return out


def _oldest(conn: sqlite3.Connection, level: int, need: int) -> tuple[list[int], float, int, int]:
    """Ids of the oldest rows of a level whose bytes add up to `need`."""
    if level == RAW:
        sql = "SELECT id, t_max, n, length(ts) + length(vals) + 48 FROM chunks ORDER BY t_max, id"
        args: tuple = ()
    else:
        sql = "SELECT id, t_max, n, length(data) + 48 FROM rollups WHERE level = ? ORDER BY t_max, id"
        args = (level,)
    ids, before, points, got = [], 0.0, 0, 0
    for rid, t_max, n, size in conn.execute(sql, args):
        ids.append(rid)
        before, points, got = t_max, points + n, got + size
        if got >= need:
            break
    return ids, before, points, got


def apply_size_cap(conn: sqlite3.Connection, cap: int) -> list[Deletion]:
    out: list[Deletion] = []
    for level in (RAW,) + LEVELS:
        for _ in range(20):  # the estimate of freed bytes is rough: measure and go again
            used = used_bytes(conn)
            if used <= cap:
                return out
            # Free a little more than needed, so the next batches do not trip it again.
            need = used - int(cap * 0.9)
            conn.execute("BEGIN IMMEDIATE")
            ids, before, points, got = _oldest(conn, level, need)
            if not ids:
                conn.execute("COMMIT")
                break
            table = "chunks" if level == RAW else "rollups"
            conn.executemany(f"DELETE FROM {table} WHERE id = ?", [(i,) for i in ids])
            conn.execute("COMMIT")
            conn.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page only
            out.append(Deletion("size_cap", level, before, len(ids), points, got))
    return out
