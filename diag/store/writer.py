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
                cur = conn.execute(
                    "INSERT INTO head (ts_min, ts_max, n, data) VALUES (?, ?, ?, ?)",
                    (float(req.ts.min()), float(req.ts.max()), n, pack_record(id_arr, req.ts, req.vals)),
                )
                staged.append((int(cur.lastrowid), id_arr, req))
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
        for seq, id_arr, req in staged:
            self.head.append(seq, id_arr, req.ts, req.vals, req.instance_id)
            if req.keys is not None:
                self.catalogue.shapes[req.instance_id] = (req.keys, id_arr)
        for req in group:
            req.finish()
