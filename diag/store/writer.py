"""The one write thread: every change to the database goes through its queue.

Callers enqueue a request and wait on it; the thread takes whatever is queued,
commits consecutive ingests in one transaction (group commit: concurrent senders
share one fsync), then publishes the new points to the in-memory head and wakes the
callers. Maintenance runs on the same thread, so it never races an ingest.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import encoding
from .head import Head, pack_record
from .series import Catalogue
from .types import StoreError, StoreFullError
from .schema import is_full_error

GROUP_MAX = 64


def _locked() -> Any:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(slots=True)
class Request:
    # A held lock that the write thread releases: the cheapest one-shot signal in
    # CPython (an Event adds a Condition around it), and ingest pays it per batch.
    done: Any = field(default_factory=_locked)
    result: Any = None
    error: BaseException | None = None
    finished: bool = False

    def finish(self) -> None:
        self.finished = True
        self.done.release()

    def wait(self) -> Any:
        self.done.acquire()
        if self.error is not None:
            raise self.error
        return self.result


@dataclass(slots=True)
class Ingest(Request):
    instance_id: str = ""
    batch_id: str | None = None
    ids: list[int | None] = field(default_factory=list)
    keys: list[tuple] | None = None  # with `ids`, when the batch's shape is new
    id_arr: np.ndarray | None = None  # instead of ids/keys: a known shape's ids
    ts: np.ndarray = field(default_factory=lambda: np.empty(0))
    vals: np.ndarray = field(default_factory=lambda: np.empty(0))


@dataclass(slots=True)
class Call(Request):
    """Run fn(conn) on the write thread (maintenance, tests)."""

    fn: Callable[[sqlite3.Connection], Any] | None = None


_STOP = object()


def translate(exc: BaseException) -> BaseException:
    if is_full_error(exc):
        err = StoreFullError(f"store is full: {exc}")
        err.__cause__ = exc
        return err
    return exc


class Writer:
    def __init__(self, conn: sqlite3.Connection, head: Head, catalogue: Catalogue) -> None:
        self.conn = conn
        self.head = head
        self.catalogue = catalogue
        # Series id -> the newest ts stored for it (head or chunks), -inf when none: a point
        # newer than that is new for sure, so only a late or repeated one is looked up.
        # Only ever too high (set before a commit that may fail), which costs a look-up only.
        self.newest = np.full(0, -np.inf)
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def submit(self, req: Request) -> Any:
        self.queue.put(req)
        return req.wait()

    def stop(self) -> None:
        self.queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        q = self.queue
        pending: Any = None
        while True:
            item = pending if pending is not None else q.get()
            pending = None
            if item is _STOP:
                self.conn.close()
                return
            if isinstance(item, Ingest):
                group = [item]
                while len(group) < GROUP_MAX:
                    try:
                        nxt = q.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(nxt, Ingest):
                        group.append(nxt)
                    else:
                        pending = nxt
                        break
                try:
                    self._ingest(group)
                except BaseException as exc:  # after the commit: never leave a caller waiting
                    self._fail(group, exc)
            else:
                self._call(item)

    @staticmethod
    def _fail(group: list[Ingest], exc: BaseException) -> None:
        for req in group:
            if not req.finished:
                req.error = StoreError(f"write failed: {exc!r}")
                req.finish()

    def _call(self, req: Call) -> None:
        try:
            assert req.fn is not None
            req.result = req.fn(self.conn)
        except BaseException as exc:  # handed to the caller, never kills the thread
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            req.error = translate(exc)
        req.finish()

    def _ingest(self, group: list[Ingest]) -> None:
        conn = self.conn
        created: list[tuple[int, str, tuple]] = []
        staged: list[tuple[int, np.ndarray, Ingest]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            canon_pending: dict[tuple[str, str, str], int] = {}
            for req in group:
                n = req.ts.size
                if req.batch_id is not None:
                    ts_ref = float(req.ts.max()) if n else 0.0
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO batch_ids VALUES (?, ?)", (req.batch_id, ts_ref)
                    )
                    if cur.rowcount == 0:
                        req.result = False
                        continue
                req.result = True
                if n == 0:
                    continue
                id_arr = req.id_arr
                if id_arr is None:
                    ids = req.ids
                    if None in ids:
                        assert req.keys is not None
                        ids = list(ids)
                        for i, sid in enumerate(ids):
                            if sid is None:
                                key = req.keys[i]
                                sid, new = self.catalogue.resolve(conn, req.instance_id, key, canon_pending)
                                if new:
                                    created.append((sid, req.instance_id, key))
                                ids[i] = sid
                    id_arr = np.fromiter(ids, np.int32, len(ids))
                if req.keys is not None:
                    req.id_arr = id_arr  # the shape of the whole batch, duplicates included
                ids_kept, ts, vals = self._new_points(conn, req.instance_id, id_arr, req.ts, req.vals, staged)
                if ids_kept.size == 0:
                    continue
                cur = conn.execute(
                    "INSERT INTO head (ts_min, ts_max, n, data) VALUES (?, ?, ?, ?)",
                    (float(ts.min()), float(ts.max()), ids_kept.size, pack_record(ids_kept, ts, vals)),
                )
                staged.append((int(cur.lastrowid), ids_kept, ts, vals, req))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            err = translate(exc)
            for req in group:
                req.error = err if isinstance(err, StoreError) else StoreError(f"write failed: {exc}")
                req.finish()
            return
        # Only now, after the commit, do readers get to see new series and points.
        # (If this raised, memory and file would disagree: _run fails the callers and
        # the head is rebuilt from the file at the next open.)
        for sid, inst, key in created:
            self.catalogue.publish(sid, inst, key)
        for seq, id_arr, ts, vals, req in staged:
            self.head.append(seq, id_arr, ts, vals, req.instance_id)
        for req in group:
            if req.keys is not None and req.id_arr is not None and req.result:
                self.catalogue.shapes[req.instance_id] = (req.keys, req.id_arr)
        for req in group:
            req.finish()

    def _new_points(self, conn: sqlite3.Connection, instance_id: str, ids: np.ndarray, ts: np.ndarray,
                    vals: np.ndarray, staged: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The batch without the points whose (series, ts) is stored already (head, chunks,
        or earlier in this group) or repeated within it (the first one stays). A sender's
        replay of one point would otherwise count again in every count, sum and average."""
        n = ids.size
        one_ts = bool(ts[0] == ts[-1] and (ts == ts[0]).all())
        top = int(ids.max()) + 1
        if top > self.newest.size:
            self.newest = np.concatenate([self.newest, np.full(max(top, 2 * self.newest.size) - self.newest.size,
                                                               -np.inf)])
        newest = self.newest
        keep = None
        # Within the batch: with one ts (a collection), a repeat is a repeated series id.
        if not one_ts or np.unique(ids).size < n:
            order = np.lexsort((ts, ids))  # stable: the first of equal points comes first
            si, st = ids[order], ts[order]
            same = (si[1:] == si[:-1]) & (st[1:] == st[:-1])
            if same.any():
                keep = np.ones(n, dtype=bool)
                keep[order[1:][same]] = False
        stale = ts <= newest[ids]
        if keep is not None:
            stale &= keep
        if stale.any():
            found = self._stored(conn, instance_id, ids[stale], ts[stale], staged)
            if found.any():
                if keep is None:
                    keep = np.ones(n, dtype=bool)
                keep[np.flatnonzero(stale)[found]] = False
        if keep is not None:
            ids, ts, vals = ids[keep], ts[keep], vals[keep]
        if ids.size:
            if one_ts:
                newest[ids] = np.maximum(newest[ids], ts[0])
            else:
                np.maximum.at(newest, ids, ts)
        return ids, ts, vals

    def _stored(self, conn: sqlite3.Connection, instance_id: str, ids: np.ndarray, ts: np.ndarray,
                staged: list) -> np.ndarray:
        """Which of these (series, ts) points the store holds: the late or repeated points
        of a batch, few; looked up in this instance's head records, its chunks and the
        records staged earlier in the same commit."""
        lo, hi = float(ts.min()), float(ts.max())
        sids = np.unique(ids).astype(np.int64)
        h_ids, h_ts, _ = self.head.view().select(sids, lo, np.nextafter(hi, np.inf), owner=instance_id)
        have = set(zip(h_ids.tolist(), h_ts.tolist()))
        for sid in sids.tolist():
            for (blob,) in conn.execute("SELECT ts FROM chunks WHERE series_id = ? AND t_max >= ? AND t_min <= ?",
                                        (sid, lo, hi)):
                have.update((sid, t) for t in encoding.decode_ts(blob).tolist() if lo <= t <= hi)
        for _seq, s_ids, s_ts, _vals, req in staged:
            if req.instance_id == instance_id:
                have.update(zip(s_ids.tolist(), s_ts.tolist()))
        return np.fromiter(((i, t) in have for i, t in zip(ids.tolist(), ts.tolist())), bool, ids.size)
