"""SqliteStore: the embedded time-series store (one SQLite file, WAL mode).

Writes: `write()` turns samples into arrays in the caller's thread, then the one
write thread commits the batch as one head row and publishes it (writer.py).
Reads: each calling thread has its own connection; see query.py for how a read is
kept consistent with the in-memory head without locks.

A point whose series already has one at its ts is dropped at ingest (the first one
stays; writer.py), within a batch and against the head and chunks, so a replay never
counts twice. Retries of one batch are made idempotent by `batch_id`.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from operator import attrgetter
from pathlib import Path

import numpy as np
import pandas as pd

from diag.model import Sample

from . import compaction, query, retention
from .head import Head, unpack_record
from .schema import connect, is_full_error
from .series import Catalogue
from .types import LEVELS, RAW, MaintenanceReport, Retention, StoreClosedError, StoreFullError
from .writer import Call, Ingest, Writer

Labels = Mapping[str, "str | re.Pattern[str]"] | None
_VALUE = attrgetter("value")
_TS = attrgetter("ts")


class SqliteStore:
    def __init__(
        self,
        path: Path,
        *,
        head_span: float = 7200,
        retention: Retention | None = None,
        size_cap_bytes: int | None = None,
        synchronous: str = "NORMAL",
    ) -> None:
        """`synchronous`: with WAL, NORMAL (the default) keeps every acknowledged batch
        through a killed process (SIGKILL, OOM kill, crash) and never corrupts the file;
        only a power loss or kernel crash may drop the last commits. FULL fsyncs every
        commit so those survive too, at about twice the commit cost (bench/store.py
        measures both). VictoriaMetrics and the Prometheus head make the same trade."""
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be NORMAL, FULL or EXTRA")
        if head_span <= 0:
            raise ValueError("head_span must be positive")
        self.path = Path(path)
        self.head_span = float(head_span)
        self.retention = retention or Retention()
        self.size_cap_bytes = size_cap_bytes
        self.catalogue = Catalogue()
        self.head = Head()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._latest_seen = 0.0
        self.full: str | None = None  # why the last write failed for want of room (/healthz)
        conn = connect(self.path, synchronous=synchronous, writer=True)
        self.catalogue.load(conn)
        self._recover(conn)
        newest = self._newest(conn)
        self.writer = Writer(conn, self.head, self.catalogue)
        self.writer.newest = newest

    def _newest(self, conn: sqlite3.Connection) -> np.ndarray:
        """Per series id, its newest stored ts (head and chunks): what ingest dedups against."""
        top = max(self.catalogue.info, default=-1) + 1
        newest = np.full(top, -np.inf)
        for sid, t in conn.execute("SELECT series_id, MAX(t_max) FROM chunks GROUP BY series_id"):
            if sid < top:
                newest[sid] = t
        v = self.head.view()
        if v.n:
            np.maximum.at(newest, v.ids[: v.n], v.ts[: v.n])
        return newest

    def _recover(self, conn: sqlite3.Connection) -> None:
        """Rebuild the in-memory head from the durable head rows."""
        (gen,) = conn.execute("SELECT value FROM meta WHERE key = 'gen'").fetchone()
        for seq, n, data in conn.execute("SELECT seq, n, data FROM head ORDER BY seq"):
            ids, ts, vals = unpack_record(data, n)
            info = self.catalogue.info.get(int(ids[0])) if n else None  # a batch is one instance's
            self.head.append(seq, ids, ts, vals, info.instance_id if info else None)
            self._latest_seen = max(self._latest_seen, float(ts.max()))
        self.head.set_gen(int(gen))

    # -- writes ------------------------------------------------------------------

    def write(self, instance_id: str, samples: Iterable[Sample], *, batch_id: str | None = None) -> bool:
        """Store one batch durably; blocks until committed.

        Returns False when `batch_id` was stored before (a retry), True otherwise.
        Raises StoreFullError when the disk is full (nothing of the batch is stored).
        """
        if not isinstance(samples, list):
            samples = list(samples)
        n = len(samples)
        keys = [(s.metric, *s.labels.items()) for s in samples]
        ts = np.fromiter(map(_TS, samples), np.float64, n)
        vals = np.fromiter(map(_VALUE, samples), np.float64, n)
        return self.write_columns(instance_id, keys, ts, vals, batch_id=batch_id)

    def write_columns(self, instance_id: str, keys: list[tuple], ts: np.ndarray, vals: np.ndarray, *,
                      batch_id: str | None = None) -> bool:
        if self._closed:
            raise StoreClosedError("store is closed")
        # The sum is non-finite if any ts is (or, harmlessly, if it overflows).
        if ts.size and not math.isfinite(float(ts.sum())) and not np.isfinite(ts).all():
            raise ValueError("sample timestamps must be finite")
        req = Ingest(instance_id=instance_id, batch_id=batch_id, ts=ts, vals=vals)
        shape = self.catalogue.shapes.get(instance_id)
        if shape is not None and shape[0] == keys:
            # Same series in the same order as this instance's last batch (every
            # collection is): comparing the lists is cheaper than n dict lookups.
            req.id_arr = shape[1]
        else:
            fast = self.catalogue.fast.get(instance_id, {})
            req.ids = list(map(fast.get, keys))
            req.keys = keys
        try:
            result = self.writer.submit(req)
        except StoreFullError as e:
            self.full = str(e)
            raise
        self.full = None
        if ts.size:
            self._latest_seen = max(self._latest_seen, float(ts.max()))
        return bool(result)

    def series_count(self, instance_id: str) -> int:
        return self.catalogue.per_instance.get(instance_id, 0)

    def unknown_series(self, instance_id: str, keys: list[tuple]) -> list[int]:
        # The write thread only ever adds to these; reading them from another thread is safe.
        shape = self.catalogue.shapes.get(instance_id)
        if shape is not None and shape[0] == keys:
            return []
        fast = self.catalogue.fast.get(instance_id, {})
        return [i for i, k in enumerate(keys) if k not in fast]

    def maintain(self, now: float) -> MaintenanceReport:
        """Compaction, roll-ups, retention, size cap; on the write thread, in that order
        of commits (retention first, so a full disk gets room before compacting)."""
        if self._closed:
            raise StoreClosedError("store is closed")

        def run(conn: sqlite3.Connection) -> MaintenanceReport:
            t0 = time.perf_counter()
            rep = MaintenanceReport(now=now, size_before=retention.used_bytes(conn))
            rep.deletions += retention.apply_retention(conn, now, self.retention)
            cutoff = math.floor((now - self.head_span) / self.head_span) * self.head_span
            try:
                res = compaction.compact(conn, self.head, cutoff, self.head_span)
            except sqlite3.Error as exc:
                if not is_full_error(exc):
                    raise
                # The head stays as it is (nothing committed); the size cap below may
                # make room, and the next run compacts it.
                conn.execute("ROLLBACK")
                rep.disk_full = True
                res = compaction.CompactionResult()
            rep.compacted_batches, rep.compacted_points = res.batches, res.points
            rep.chunks_written, rep.rollup_blocks_written = res.chunks, res.blocks
            # Compaction and retention free pages (head rows, old chunks): give them back.
            conn.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page only
            if self.size_cap_bytes is not None:
                rep.deletions += retention.apply_size_cap(conn, self.size_cap_bytes)
            # PASSIVE: never waits for readers (a TRUNCATE would); the WAL is cut back to
            # journal_size_limit when it next restarts.
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            rep.size_after = retention.used_bytes(conn)
            rep.seconds = time.perf_counter() - t0
            return rep

        self._latest_seen = max(self._latest_seen, now)
        return self.writer.submit(Call(fn=run))

    # -- reads -------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreClosedError("store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def query(
        self,
        metric: str,
        *,
        instance_id: str | None = None,
        labels: Labels = None,
        start: float,
        end: float,
        step: float,
        agg: str = "avg",
    ) -> pd.DataFrame:
        """Aligned buckets [floor(start/step)*step, end), each aggregating all its points.

        Long form: instance_id, ts (bucket start), value, one column per label key.
        Rows only for buckets with data (an empty bucket is missing, never zero).
        """
        matched = self.catalogue.match(metric, instance_id, labels)
        return query.run_query(
            self._reader(),
            self.head,
            matched,
            start=float(start),
            end=float(end),
            step=float(step),
            agg=agg,
            now=self._latest_seen or time.time(),
            retention=self.retention,
        )

    def latest(
        self, metric: str, *, instance_id: str | None = None, labels: Labels = None, max_age: float | None = None,
        now: float | None = None,
    ) -> pd.DataFrame:
        """The last point of each matched series (ts is the point's own ts)."""
        matched = self.catalogue.match(metric, instance_id, labels)
        since = None
        if max_age is not None:
            since = (time.time() if now is None else now) - max_age
        return query.run_latest(self._reader(), self.head, matched, since=since)

    def series_infos(self, metric: str | None = None, *, instance_id: str | None = None) -> list:
        """The catalogue's entries (SeriesInfo: sid, instance_id, metric, labels) of a metric,
        or of every metric: the PromQL API matches its own selectors on them."""
        return self.catalogue.match(metric, instance_id, None)

    def points(self, series: list, *, start: float, end: float,
               now: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points (series id, ts, value) of these SeriesInfo with start <= ts < end, sorted by
        series id then ts: the raw points within raw retention; before it, where retention
        has deleted them, one point per bucket of the finest roll-up level still kept (the
        bucket's last point, as it was), so a long range reads as the series downsampled."""
        conn = self._reader()
        start, end = float(start), float(end)
        now = time.time() if now is None else now
        # Each source covers whole buckets of the next finer one: the raw points start at a
        # minute, so the last point of the minute before is the roll-up's, and no point is
        # missing at the seam. A boundary moves later, never earlier, so its data are kept.
        cut = math.ceil((now - self.retention.raw) / LEVELS[0]) * LEVELS[0]
        parts = []
        if end > cut:
            parts.append(query.run_points(conn, self.head, series, start=max(start, cut), end=end))
        for i, level in enumerate(LEVELS):
            keep = now - self.retention.for_level(level)
            if i + 1 < len(LEVELS):
                keep = math.ceil(keep / LEVELS[i + 1]) * LEVELS[i + 1]
            keep = min(keep, cut)
            lo, hi = max(start, keep), min(end, cut)
            if hi > lo:
                parts.append(query.run_rollup_points(conn, series, level=level, start=lo, end=hi))
            cut = keep
        if len(parts) == 1:
            return parts[0]
        if not parts:
            e = np.empty(0)
            return e.astype(np.int64), e, e
        s, t, v = (np.concatenate([p[i] for p in parts]) for i in range(3))
        order = np.lexsort((t, s))
        return s[order], t[order], v[order]

    def series(self, metric: str | None = None, *, instance_id: str | None = None, labels: Labels = None) -> list[dict]:
        return [
            {"instance_id": s.instance_id, "metric": s.metric, "labels": dict(s.labels)}
            for s in self.catalogue.match(metric, instance_id, labels)
        ]

    def metric_names(self, instance_id: str | None = None) -> list[str]:
        if instance_id is None:
            return sorted(self.catalogue.by_metric)
        return sorted({s.metric for s in self.catalogue.match(None, instance_id, None)})

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate it (waits for readers)."""
        self.writer.submit(Call(fn=lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()))

    def keeps(self) -> dict:
        names = {RAW: "raw", 60: "1m", 300: "5m", 3600: "1h", 86400: "1d"}
        return {"kind": "embedded", "head_span_seconds": self.head_span,
                "levels": [{"level": names[lv], "resolution_seconds": lv or None,
                            "retention_seconds": self.retention.for_level(lv)} for lv in (RAW, *LEVELS)],
                "size_cap_bytes": self.size_cap_bytes}

    def size_bytes(self) -> int:
        """Bytes on disk: the database file plus its WAL."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(str(self.path) + suffix)
            except FileNotFoundError:
                pass
        return total

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.writer.stop()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def __enter__(self) -> "SqliteStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["SqliteStore", "StoreFullError"]
