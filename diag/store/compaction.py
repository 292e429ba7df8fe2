"""Head -> chunks + roll-ups, in one transaction (runs on the write thread).

The records taken from the head are written as per-series chunks (split at
`chunk_span`-aligned windows, so retention can drop whole chunks), their partial
aggregates are merged into the stored roll-up blocks of every level, the head rows
are deleted and `meta.gen` is bumped, all in one commit. A crash before the commit
leaves the head rows in place (the next run compacts them again); after it, they
are gone. Either way every acknowledged point exists exactly once.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np

from . import encoding, rollups
from .head import Head
from .types import BLOCK, LEVELS

FINE_LEVELS = (60, 300)  # stored column-encoded (small); 1 h and 1 d plain (fast to read)


@dataclass(slots=True)
class CompactionResult:
    batches: int = 0
    points: int = 0
    chunks: int = 0
    blocks: int = 0


def _group_starts(*keys: np.ndarray) -> np.ndarray:
    n = keys[0].size
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
        for k in keys:
            change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def write_chunks(conn: sqlite3.Connection, sid: np.ndarray, ts: np.ndarray, vals: np.ndarray, span: float) -> int:
    window = np.floor(ts / span)
    # lexsort is stable: two points of one series at one ts keep their arrival order.
    order = np.lexsort((ts, window, sid))
    sid, ts, vals, window = sid[order], ts[order], vals[order], window[order]
    starts = _group_starts(sid, window)
    ends = np.append(starts[1:], sid.size)
    rows = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        t = ts[a:b]
        rows.append(
            (int(sid[a]), float(t[0]), float(t[-1]), b - a, encoding.encode_ts(t), encoding.encode_floats(vals[a:b]))
        )
    conn.executemany("INSERT INTO chunks (series_id, t_min, t_max, n, ts, vals) VALUES (?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def merge_rollups(conn: sqlite3.Connection, level: int, new: rollups.Partials, digits: int | None) -> int:
    """Merge new partials into the stored blocks of one level (read, combine, rewrite).

    `digits`: the new points are all exact decimals with that many digits (or None).
    """
    if new["sid"].size == 0:
        return 0
    span = BLOCK[level]
    blocks = np.floor(new["bucket"] / span) * span
    wanted = set(zip(new["sid"].tolist(), blocks.tolist()))
    old_parts = []
    for block in sorted(set(blocks.tolist())):
        for sid, data in conn.execute(
            "SELECT series_id, data FROM rollups WHERE level = ? AND block = ?", (level, block)
        ):
            if (sid, block) not in wanted:
                continue
            cols = rollups.unpack_block(data)
            p = {f: np.asarray(cols[f]) for f in rollups.FIELDS}
            p["bucket"] = np.asarray(cols["bucket"])
            p["sid"] = np.full(p["bucket"].size, sid, dtype=np.int64)
            old_parts.append(p)
    if old_parts and digits is not None:
        old_digits = encoding.decimal_digits(np.concatenate([p["sum"] for p in old_parts]))
        digits = None if old_digits is None else max(digits, old_digits)
    merged = rollups.round_sums(rollups.combine(rollups.concat(old_parts + [new])), digits)
    mblock = np.floor(merged["bucket"] / span) * span
    starts = _group_starts(merged["sid"], mblock)
    ends = np.append(starts[1:], merged["sid"].size)
    compact = level in FINE_LEVELS
    rows = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        cols = {f: merged[f][a:b] for f in rollups.FIELDS}
        blob = rollups.pack_block(merged["bucket"][a:b], cols, compact)
        t_max = float(merged["bucket"][b - 1]) + level
        rows.append((level, int(merged["sid"][a]), float(mblock[a]), t_max, b - a, blob))
    conn.executemany(
        "INSERT INTO rollups (level, series_id, block, t_max, n, data) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (level, series_id, block) DO UPDATE SET t_max = excluded.t_max, "
        "n = excluded.n, data = excluded.data",
        rows,
    )
    return len(rows)


def compact(conn: sqlite3.Connection, head: Head, cutoff: float, chunk_span: float) -> CompactionResult:
    seqs, sid, ts, vals = head.take(cutoff)
    res = CompactionResult()
    if not seqs:
        return res
    conn.execute("BEGIN IMMEDIATE")
    res.chunks = write_chunks(conn, sid, ts, vals, chunk_span)
    # Each level from the one below it: the levels nest (60 | 300 | 3600 | 86400), so
    # re-bucketing partials is exact and sorts ever fewer rows.
    digits = encoding.decimal_digits(vals)
    partials = rollups.round_sums(rollups.from_points(sid, ts, vals, LEVELS[0]), digits)
    for level in LEVELS:
        if level != LEVELS[0]:
            partials = rollups.round_sums(rollups.combine(partials, res=level), digits)
        res.blocks += merge_rollups(conn, level, partials, digits)
    conn.executemany("DELETE FROM head WHERE seq = ?", [(s,) for s in seqs])
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'gen'")
    (gen,) = conn.execute("SELECT value FROM meta WHERE key = 'gen'").fetchone()
    conn.execute("COMMIT")
    head.drop(seqs, int(gen))
    res.batches, res.points = len(seqs), int(sid.size)
    return res
