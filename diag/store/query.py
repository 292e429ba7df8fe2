"""The read path: pick a level, gather chunks/roll-ups and head, bucket, frame.

Runs on the caller's own connection (one per thread). Consistency with the head:
the reader takes the head view first, then opens a read transaction and compares
`meta.gen` with the view's gen; if a compaction committed in between, it retries.
So a point is read either from the head or from chunks/roll-ups, never both, never
neither (see head.py).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import re2

from . import encoding, rollups
from .head import Head, HeadView
from .series import SeriesInfo
from .types import AGGS, BLOCK, LEVELS, RAW, Retention, StoreError

_IN_MAX = 30000  # below SQLite's bound-parameter limit

# A label regex comes from whoever can send a query. Python's `re` backtracks, so `(.+)+!`
# against a long label held the GIL and froze the whole service; RE2 (as PromQL uses)
# matches in time linear in the input and refuses what it cannot do so (backreferences,
# lookaround). Its memory per pattern is bounded too, and the pattern's length.
MAX_PATTERN = 1024
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a user's bad pattern is their 400, not a line on our stderr
_RE2_OPTIONS.max_mem = 8 << 20


class Matcher(Protocol):
    """A compiled label regex: `fullmatch` as PromQL's anchored `=~`, and its `pattern`."""

    pattern: str

    def fullmatch(self, text: str) -> Any: ...


def compile_matcher(pattern: str) -> Matcher:
    """A user's label regex, compiled by RE2. ValueError with RE2's reason when refused."""
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"longer than {MAX_PATTERN} characters")
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else e
        raise ValueError(reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)) from None


# The step rules of a query from a user (the API's GET /api/v1/query, the dashboard's
# charts and PromQL range queries alike): how many points a series may have, and the step when none is given.
MAX_POINTS = 11_000  # per series, as Prometheus' query_range refuses beyond it


def default_step(start: float, end: float) -> float:
    """About 300 points per series, on a round step."""
    want = (end - start) / 300
    for s in (10, 60, 300, 900, 3600, 21600, 86400):
        if s >= want:
            return s
    return 86400.0


def choose_level(step: float, start: float, now: float, retention: Retention) -> int:
    """The coarsest level whose resolution divides `step` and still covers `start`.

    Roll-up buckets then nest exactly in the step's buckets. If no dividing level
    reaches back to `start` (say step=90 s over last month), the coarsest level not
    wider than the step that covers it is used: buckets are then approximate.
    """
    fits = [lv for lv in LEVELS if lv <= step + 1e-9]
    dividing = [lv for lv in fits if abs(step / lv - round(step / lv)) < 1e-9]
    for lv in sorted(dividing, reverse=True) + [RAW]:
        if start >= now - retention.for_level(lv):
            return lv
    for lv in sorted(fits, reverse=True):
        if start >= now - retention.for_level(lv):
            return lv
    return max(dividing, default=RAW)


def _in_batches(sids: Sequence[int]) -> list[list[int]]:
    return [list(sids[i : i + _IN_MAX]) for i in range(0, len(sids), _IN_MAX)]


def read_chunks(conn: sqlite3.Connection, sids: Sequence[int], lo: float, hi: float) -> tuple[np.ndarray, ...]:
    out_s, out_t, out_v = [], [], []
    for part in _in_batches(sids):
        marks = ",".join("?" * len(part))
        for sid, tsb, vb in conn.execute(
            f"SELECT series_id, ts, vals FROM chunks WHERE series_id IN ({marks}) AND t_max >= ? AND t_min < ?",
            (*part, lo, hi),
        ):
            t = encoding.decode_ts(tsb)
            out_t.append(t)
            out_v.append(encoding.decode_floats(vb))
            out_s.append(np.full(t.size, sid, dtype=np.int64))
    if not out_t:
        e = np.empty(0)
        return e.astype(np.int64), e, e
    s, t, v = np.concatenate(out_s), np.concatenate(out_t), np.concatenate(out_v)
    keep = (t >= lo) & (t < hi)
    if not keep.all():
        s, t, v = s[keep], t[keep], v[keep]
    return s, t, v


def read_blocks(
    conn: sqlite3.Connection, level: int, block: int, sids: Sequence[int], lo: float, hi: float, need: tuple[str, ...]
) -> rollups.Partials:
    parts = []
    first = math.floor(lo / block) * block
    for part in _in_batches(sids):
        marks = ",".join("?" * len(part))
        for sid, data in conn.execute(
            f"SELECT series_id, data FROM rollups WHERE level = ? AND series_id IN ({marks}) "
            "AND block >= ? AND block < ?",
            (level, *part, first, hi),
        ):
            p = rollups.unpack_block(data, need)
            p["sid"] = np.full(p["bucket"].size, sid, dtype=np.int64)
            parts.append(p)
    p = rollups.concat(parts, need)
    if p["sid"].size:
        keep = (p["bucket"] >= lo) & (p["bucket"] < hi)
        if not keep.all():
            p = {k: a[keep] for k, a in p.items()}
    return p


def consistent_read(conn: sqlite3.Connection, head: Head, fn: Callable[[HeadView], Any]) -> Any:
    """Run fn(view) inside a read transaction whose snapshot matches the head view.

    A mismatch means a compaction committed between taking the view and opening the
    snapshot; the writer publishes the matching view right after, so a retry or two
    suffices. The bound only guards against a writer that died in between.
    """
    for attempt in range(1000):
        if attempt:
            time.sleep(0.001)
        view = head.view()
        conn.execute("BEGIN")
        try:
            (gen,) = conn.execute("SELECT value FROM meta WHERE key = 'gen'").fetchone()
            if gen == view.gen:
                return fn(view)
        finally:
            conn.execute("COMMIT")
    raise StoreError("the in-memory head does not match the database; reopen the store")


def frame(
    series: list[SeriesInfo], sid: np.ndarray, ts: np.ndarray, value: np.ndarray, keys: list[str] | None = None
) -> pd.DataFrame:
    """Long form: instance_id, ts, value, one column per label key of the matched series."""
    if keys is None:
        keys = sorted({k for s in series for k in s.labels})
    cols: dict[str, Any] = {}
    if sid.size:
        uniq, inverse = np.unique(sid, return_inverse=True)
        by_sid = {s.sid: s for s in series}
        infos = [by_sid[int(u)] for u in uniq]
        cols["instance_id"] = np.array([s.instance_id for s in infos], dtype=object)[inverse]
        cols["ts"] = ts
        cols["value"] = value
        for k in keys:
            cols[k] = np.array([s.labels.get(k) for s in infos], dtype=object)[inverse]
    else:
        cols = {"instance_id": np.empty(0, object), "ts": np.empty(0), "value": np.empty(0)}
        cols.update({k: np.empty(0, object) for k in keys})
    return pd.DataFrame(cols, copy=False)


def bucket_range(start: float, end: float, step: float, agg: str) -> tuple[float, float]:
    """The aligned span [floor(start/step)*step, ceil(end/step)*step) a query covers; both
    stores answer the same buckets, so checks and charts see the same data from either."""
    if agg not in AGGS:
        raise ValueError(f"agg must be one of {', '.join(AGGS)}, not {agg!r}")
    if not step > 0 or not math.isfinite(step):
        raise ValueError("step must be a positive number of seconds")
    if not end > start:
        raise ValueError("end must be after start")
    return math.floor(start / step) * step, math.ceil(end / step) * step


def _owner(series: list[SeriesInfo]) -> str | None:
    """The one instance all these series belong to (its head records alone are read)."""
    owners = {s.instance_id for s in series}
    return owners.pop() if len(owners) == 1 else None


def run_query(
    conn: sqlite3.Connection,
    head: Head,
    series: list[SeriesInfo],
    *,
    start: float,
    end: float,
    step: float,
    agg: str,
    now: float,
    retention: Retention,
) -> pd.DataFrame:
    lo, hi = bucket_range(start, end, step, agg)
    sids = sorted(s.sid for s in series)
    sid_arr = np.array(sids, dtype=np.int64)
    need = rollups.needs(agg)
    level = choose_level(step, start, now, retention)

    owner = _owner(series)

    def gather(view: HeadView) -> rollups.Partials:
        hs, ht, hv = view.select(sid_arr, lo, hi, owner)
        if level == RAW:
            cs, ct, cv = read_chunks(conn, sids, lo, hi)
            return rollups.from_points(np.concatenate([cs, hs]), np.concatenate([ct, ht]), np.concatenate([cv, hv]), step, need)

        stored = read_blocks(conn, level, BLOCK[level], sids, lo, hi, need)
        fresh = rollups.from_points(hs, ht, hv, step, need)
        return rollups.combine(rollups.concat([stored, fresh], need), res=step, need=need)

    p = consistent_read(conn, head, gather) if sids else rollups.empty()
    return frame(series, p["sid"], p["bucket"], rollups.value_of(p, agg) if p["sid"].size else np.empty(0))


def run_latest(
    conn: sqlite3.Connection, head: Head, series: list[SeriesInfo], *, since: float | None
) -> pd.DataFrame:
    sids = sorted(s.sid for s in series)
    lo = -math.inf if since is None else since

    owner = _owner(series)

    def gather(view: HeadView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hs, ht, hv = view.select(np.array(sids, dtype=np.int64), lo, math.inf, owner)
        found = set(np.unique(hs).tolist())
        parts = [(hs, ht, hv)]
        for sid in sids:
            if sid in found:
                continue
            row = conn.execute(
                "SELECT ts, vals FROM chunks WHERE series_id = ? AND t_max >= ? ORDER BY t_max DESC LIMIT 1",
                (sid, lo),
            ).fetchone()
            if row:
                t, v = encoding.decode_ts(row[0]), encoding.decode_floats(row[1])
                parts.append((np.full(t.size, sid, dtype=np.int64), t, v))
        s = np.concatenate([p[0] for p in parts])
        t = np.concatenate([p[1] for p in parts])
        v = np.concatenate([p[2] for p in parts])
        if s.size == 0:
            return s, t, v
        order = np.lexsort((t, s))
        s, t, v = s[order], t[order], v[order]
        last = np.append(s[1:] != s[:-1], True)
        return s[last], t[last], v[last]

    s, t, v = consistent_read(conn, head, gather) if sids else (np.empty(0, np.int64), np.empty(0), np.empty(0))
    return frame(series, s, t, v)


def run_points(
    conn: sqlite3.Connection, head: Head, series: list[SeriesInfo], *, start: float, end: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw points of these series with start <= ts < end, from the chunks and the head
    (read consistently, as run_query does), sorted by series id then ts: what a PromQL
    evaluation needs, which applies its own windows to the samples themselves."""
    sids = sorted(s.sid for s in series)
    if not sids or not end > start:
        e = np.empty(0)
        return e.astype(np.int64), e, e
    owner = _owner(series)

    def gather(view: HeadView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hs, ht, hv = view.select(np.array(sids, dtype=np.int64), start, end, owner)
        cs, ct, cv = read_chunks(conn, sids, start, end)
        return np.concatenate([cs, hs]), np.concatenate([ct, ht]), np.concatenate([cv, hv])

    s, t, v = consistent_read(conn, head, gather)
    order = np.lexsort((t, s))
    return s[order], t[order], v[order]


def run_rollup_points(
    conn: sqlite3.Connection, series: list[SeriesInfo], *, level: int, start: float, end: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One real point per roll-up bucket of `level`: the bucket's last (its ts and value), for
    start <= ts < end, sorted by series id then ts. Where raw points are past retention this
    is the series downsampled to the level: every point one the raw series had."""
    sids = sorted(s.sid for s in series)
    e = np.empty(0)
    if not sids or not end > start:
        return e.astype(np.int64), e, e
    conn.execute("BEGIN")
    try:
        p = read_blocks(conn, level, BLOCK[level], sids, math.floor(start / level) * level, end, ("last",))
    finally:
        conn.execute("COMMIT")
    if not p["sid"].size:
        return e.astype(np.int64), e, e
    s, t, v = p["sid"], p["last_ts"], p["last"]
    keep = (t >= start) & (t < end)
    s, t, v = s[keep], t[keep], v[keep]
    order = np.lexsort((t, s))
    return s[order], t[order], v[order]
