"""Known points through head, chunks and every roll-up level; aggregates by hand."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diag.model import Sample
from diag.store import AGGS, Retention, SqliteStore

T0 = 1_700_006_400  # a UTC midnight: every level's buckets start here
HOUR = 3600.0


def _points() -> list[tuple[str, float, float]]:
    """(cpu label, ts, value): 3 h of irregular points, many exactly on bucket edges."""
    rng = np.random.default_rng(42)
    out = []
    for cpu in ("0", "1"):
        ts = T0 + np.sort(rng.choice(np.arange(0, 3 * 3600 * 4), size=900, replace=False)) / 4.0
        edges = T0 + np.array([0, 59.75, 60, 299.75, 300, 3599.75, 3600, 7200, 10799.75])
        for t in np.union1d(ts, edges):
            out.append((cpu, float(t), float(np.round(rng.normal(50, 20), 2))))
    return out


POINTS = _points()


def _expected(step: float, agg: str, cpu: str, lo: float, hi: float) -> pd.Series:
    """The aggregate per bucket, computed with pandas from the points themselves."""
    df = pd.DataFrame([(t, v) for c, t, v in POINTS if c == cpu], columns=["ts", "value"])
    df["bucket"] = np.floor(df.ts / step) * step
    df = df[(df.bucket >= math.floor(lo / step) * step) & (df.bucket < hi)].sort_values("ts", kind="stable")
    g = df.groupby("bucket")["value"]
    res = {"avg": g.mean(), "min": g.min(), "max": g.max(), "sum": g.sum(), "count": g.count(), "last": g.last()}[agg]
    return res.astype(float)


def _write_all(store: SqliteStore) -> None:
    # Batches shaped like collections: both series at one instant where they coincide.
    by_ts: dict[float, list[Sample]] = {}
    for cpu, t, v in POINTS:
        by_ts.setdefault(t, []).append(Sample("cpu_core_usage", {"cpu": cpu}, v, t))
    for i, (t, samples) in enumerate(sorted(by_ts.items())):
        assert store.write("host-a", samples, batch_id=f"b{i}") is True


def _check(store: SqliteStore, steps: tuple[float, ...], lo: float = T0, hi: float = T0 + 3 * HOUR) -> None:
    for step in steps:
        for agg in AGGS:
            df = store.query("cpu_core_usage", labels={"cpu": "1"}, start=lo, end=hi, step=step, agg=agg)
            exp = _expected(step, agg, "1", lo, hi)
            got = df.set_index("ts")["value"]
            assert list(got.index) == list(exp.index), (step, agg)
            np.testing.assert_allclose(got.to_numpy(), exp.to_numpy(), rtol=1e-12, err_msg=f"{step} {agg}")
            assert (df.ts % step == 0).all()
            assert set(df.instance_id) == {"host-a"} and set(df.cpu) == {"1"}


STEPS = (10.0, 15.0, 60.0, 120.0, 300.0, 900.0, HOUR, 86400.0)


def test_head_only(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db", head_span=HOUR) as store:
        _write_all(store)
        assert store.head.points == len(POINTS)  # nothing compacted: every answer comes from the head
        _check(store, STEPS)


def test_head_and_chunks_each_point_once(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db", head_span=HOUR) as store:
        _write_all(store)
        rep = store.maintain(T0 + 3 * HOUR)  # compacts [T0, T0+2h); the last hour stays in the head
        assert rep.compacted_points > 0 and store.head.points > 0
        _check(store, STEPS)
        # A range that starts in chunks and ends in the head, not aligned to anything.
        _check(store, (10.0, 60.0, 300.0), lo=T0 + 1.5 * HOUR + 7, hi=T0 + 2.5 * HOUR + 13)
        total = store.query("cpu_core_usage", start=T0, end=T0 + 4 * HOUR, step=86400, agg="count")
        assert total["value"].sum() == len(POINTS)


def test_all_compacted_and_reopened(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db", head_span=HOUR) as store:
        _write_all(store)
        store.maintain(T0 + 5 * HOUR)
        assert store.head.points == 0
    with SqliteStore(tmp_path / "s.db", head_span=HOUR) as store:
        _check(store, STEPS)


def test_rollups_alone_answer_after_raw_expired(tmp_path: Path) -> None:
    """Raw retention removes the chunks; every roll-up level still gives exact answers."""
    ret = Retention(raw=HOUR)
    with SqliteStore(tmp_path / "s.db", head_span=HOUR, retention=ret) as store:
        _write_all(store)
        store.maintain(T0 + 5 * HOUR)
        rep = store.maintain(T0 + 5 * HOUR)
        assert store.query("cpu_core_usage", start=T0, end=T0 + 3 * HOUR, step=10).empty
        del rep
        _check(store, (60.0, 120.0, 300.0, 900.0, HOUR, 86400.0))


def test_restart_keeps_head(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db", head_span=HOUR) as store:
        _write_all(store)
        assert store.write("host-a", [], batch_id="b0") is False  # retry after restart too
    with SqliteStore(tmp_path / "s.db", head_span=HOUR) as store:
        assert store.write("host-a", [Sample("cpu_core_usage", {"cpu": "1"}, 1.0, T0)], batch_id="b3") is False
        _check(store, STEPS)


def test_label_filters_series_latest(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as store:
        samples = [
            Sample("net_in", {"interface": "eth0", "scope": "public"}, 1.0, T0),
            Sample("net_in", {"scope": "private", "interface": "eth1"}, 2.0, T0),
            Sample("net_in", {"interface": "lo", "scope": "private"}, 3.0, T0),
            Sample("mem_usage", {}, 40.0, T0),
        ]
        store.write("a", samples)
        store.write("b", [Sample("mem_usage", {}, 41.0, T0 + 10), Sample("mem_usage", {}, 42.0, T0 + 20)])
        df = store.query("net_in", labels={"interface": re.compile(r"eth\d")}, start=T0, end=T0 + 10, step=10)
        assert sorted(df.interface) == ["eth0", "eth1"] and set(df.columns) >= {"scope", "instance_id"}
        df = store.query("net_in", labels={"scope": "private"}, start=T0, end=T0 + 10, step=10)
        assert sorted(df.value) == [2.0, 3.0]
        assert store.query("net_in", labels={"scope": re.compile("pub")}, start=T0, end=T0 + 10, step=10).empty
        assert store.metric_names() == ["mem_usage", "net_in"]
        assert store.metric_names("b") == ["mem_usage"]
        assert {"instance_id": "a", "metric": "net_in", "labels": {"interface": "eth1", "scope": "private"}} in (
            store.series("net_in")
        )
        latest = store.latest("mem_usage")
        assert dict(zip(latest.instance_id, latest.value)) == {"a": 40.0, "b": 42.0}
        assert store.latest("mem_usage", max_age=15, now=T0 + 25).instance_id.tolist() == ["b"]
        store.maintain(T0 + 5 * 86400)  # everything compacted
        latest = store.latest("mem_usage", instance_id="b")
        assert latest.ts.tolist() == [T0 + 20] and latest.value.tolist() == [42.0]


def test_a_series_keeps_one_point_per_ts(tmp_path: Path) -> None:
    """Issue 15 (9): a replayed point was stored again each time, so count and sum grew.
    The first point at a ts stays, whether the repeat is in its batch, in the head or in
    chunks, and after a reopen."""
    def agg(store, how: str) -> list[float]:
        return store.query("load_1", start=T0, end=T0 + 10, step=10, agg=how).value.tolist()

    with SqliteStore(tmp_path / "s.db") as store:
        store.write("a", [Sample("load_1", {}, 1.0, T0), Sample("load_1", {}, 3.0, T0)])
        assert (agg(store, "count"), agg(store, "last")) == ([1.0], [1.0])
        for _ in range(3):  # in the head
            store.write("a", [Sample("load_1", {}, 5.0, T0), Sample("load_1", {}, 2.0, T0 + 1)])
        assert (agg(store, "count"), agg(store, "sum")) == ([2.0], [3.0])
        store.maintain(T0 + 5 * 3600)  # into chunks
        store.write("a", [Sample("load_1", {}, 7.0, T0), Sample("load_1", {}, 4.0, T0 + 2)])
        assert (agg(store, "count"), agg(store, "sum")) == ([3.0], [7.0])
    with SqliteStore(tmp_path / "s.db") as store:
        store.write("a", [Sample("load_1", {}, 9.0, T0 + 2), Sample("load_1", {}, 9.0, T0 + 1)])
        assert (agg(store, "count"), agg(store, "sum")) == ([3.0], [7.0])
        store.maintain(T0 + 10 * 3600)
        assert (agg(store, "count"), agg(store, "sum")) == ([3.0], [7.0])


def test_bad_arguments(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as store:
        with pytest.raises(ValueError):
            store.query("x", start=T0, end=T0 + 10, step=10, agg="median")
        with pytest.raises(ValueError):
            store.query("x", start=T0, end=T0 + 10, step=0)
        with pytest.raises(ValueError):
            store.write("a", [Sample("x", {}, 1.0, math.inf)])
        assert store.query("nothing", start=T0, end=T0 + 10, step=10).empty


def test_sqlite_store_is_a_store(tmp_path: Path) -> None:
    from diag.store import Store

    with SqliteStore(tmp_path / "s.db") as store:
        assert isinstance(store, Store)
