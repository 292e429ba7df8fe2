"""Retention and the size cap really delete; a full disk is an error, not a crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from diag.model import Sample
from diag.store import LEVELS, Retention, SqliteStore, StoreFullError
from diag.store.writer import Call

T0 = 1_700_006_400
DAY = 86400.0


def _load(store: SqliteStore, hours: float, nser: int = 20, every: float = 10.0) -> int:
    rng = np.random.default_rng(3)
    n = int(hours * 3600 / every)
    for b in range(n):
        vals = np.round(rng.normal(50, 10, nser), 2).tolist()
        store.write("a", [Sample("cpu_core_usage", {"cpu": str(i)}, v, T0 + every * b) for i, v in enumerate(vals)])
    return n * nser


def _count(store: SqliteStore, lo: float, hi: float, step: float) -> float:
    return float(store.query("cpu_core_usage", start=lo, end=hi, step=step, agg="count").value.sum())


def test_retention_per_level(tmp_path: Path) -> None:
    ret = Retention(raw=6 * 3600, m1=12 * 3600, m5=18 * 3600, h1=DAY, d1=3 * DAY)
    with SqliteStore(tmp_path / "s.db", head_span=3600, retention=ret) as store:
        total = _load(store, 24, every=60)
        end = T0 + DAY
        store.maintain(end)
        assert _count(store, T0, end, 60) == total
        now = end + 4 * 3600
        rep = store.maintain(now)
        got = {d.level: d for d in rep.deletions if d.reason == "retention"}
        assert set(got) == {0, 60, 300, 3600}  # the daily level keeps 3 days: untouched
        assert got[300].before == now - ret.m5
        # Raw: nothing left before now - 6 h, everything after it still there.
        raw_cut = now - ret.raw
        assert store.query("cpu_core_usage", start=T0, end=raw_cut, step=10).empty
        assert _count(store, raw_cut, end, 10) == 20 * (end - raw_cut) / 60
        assert store.query("cpu_core_usage", start=T0, end=now - ret.m1, step=60).empty
        assert _count(store, now - ret.m1, end, 60) == 20 * (end - (now - ret.m1)) / 60
        # 3 days later: every level but the daily one is gone.
        store.maintain(end + 2 * DAY)
        for level in LEVELS[:-1]:
            assert store.query("cpu_core_usage", start=T0, end=end, step=level).empty, level
        assert _count(store, T0, end, DAY) == total
        store.maintain(end + 4 * DAY)
        assert store.query("cpu_core_usage", start=T0, end=end, step=DAY).empty
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT count(*) FROM chunks").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM rollups").fetchone() == (0,)


def test_size_cap_deletes_oldest_raw_first(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(path, head_span=3600) as store:
        _load(store, 12, nser=50)
        store.maintain(T0 + 14 * 3600)
        used = store.maintain(T0 + 14 * 3600).size_after
    with sqlite3.connect(path) as conn:
        (raw,) = conn.execute("SELECT sum(length(ts) + length(vals)) FROM chunks").fetchone()
    cap = used - raw // 2  # room enough once about half the raw data is gone
    with SqliteStore(path, head_span=3600, size_cap_bytes=cap) as store:
        rep = store.maintain(T0 + 14 * 3600)
        assert rep.size_cap_hit and rep.size_after <= cap
        cut = [d for d in rep.deletions if d.reason == "size_cap"]
        assert {d.level for d in cut} == {0} and sum(d.points for d in cut) > 0
        before = max(d.before for d in cut)
        assert store.query("cpu_core_usage", start=T0, end=T0 + 3600, step=10).empty
        assert not store.query("cpu_core_usage", start=T0 + 11 * 3600, end=T0 + 12 * 3600, step=10).empty
        # Roll-ups were not touched: the oldest hour is still there at 1 min.
        assert _count(store, T0, T0 + 3600, 60) == 50 * 360
        assert store.size_bytes() > 0


def test_full_disk_is_reported_and_recovers(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as store:
        store.write("a", [Sample("load_1", {}, 1.0, T0)])
        pages = store.writer.submit(Call(fn=lambda c: c.execute("PRAGMA page_count").fetchone()[0]))
        # max_page_count is SQLite's own "disk is full": the same SQLITE_FULL path.
        store.writer.submit(Call(fn=lambda c: c.execute(f"PRAGMA max_page_count = {pages + 2}").fetchall()))
        big = [Sample("cpu_core_usage", {"cpu": str(i)}, float(i), T0 + 10) for i in range(5000)]
        with pytest.raises(StoreFullError):
            for b in range(50):
                store.write("a", [Sample(s.metric, s.labels, s.value, T0 + 10 * (b + 1)) for s in big])
        assert store.latest("load_1").value.tolist() == [1.0]  # reads still work
        store.writer.submit(Call(fn=lambda c: c.execute("PRAGMA max_page_count = 1073741823").fetchall()))
        assert store.write("a", [Sample("load_1", {}, 2.0, T0 + 1)], batch_id="after") is True
        assert store.latest("load_1").value.tolist() == [2.0]
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
