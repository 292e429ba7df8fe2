"""Roll-ups answer from the first minute: a query at any level (1m, 5m, 1h, 1d) covers
points not yet compacted (still in the raw head), so a 31-day view of an instance that
has run 17 minutes shows its 17 minutes, through the store, the query API and the page.
And each level's retention is reported by GET /api/v1/status."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from diag.model import Sample
from diag.store import LEVELS, Retention, SqliteStore
from diag.store.query import choose_level

DAY = 86400.0
MONTH = 31 * DAY


def _write_minutes(store: SqliteStore, instance_id: str, end: float, minutes: float, every: float = 10.0,
                   metric: str = "cpu_usage") -> tuple[np.ndarray, np.ndarray]:
    ts = end - minutes * 60 + every * np.arange(int(minutes * 60 / every))
    vals = np.round(20 + 10 * np.sin(ts / 97.0), 2)
    for t, v in zip(ts.tolist(), vals.tolist()):
        store.write(instance_id, [Sample(metric, {}, v, t)])
    return ts, vals


def _count(store: SqliteStore, start: float, end: float, step: float) -> float:
    return float(store.query("cpu_usage", instance_id="i", start=start, end=end, step=step, agg="count").value.sum())


def test_17_minutes_of_raw_data_answer_a_31_day_query_at_every_level(tmp_path: Path) -> None:
    now = time.time()
    with SqliteStore(tmp_path / "s.db") as store:
        ts, vals = _write_minutes(store, "i", now, 17)
        n = ts.size
        assert n == 102
        (rollups,) = store.writer.submit(_call(lambda c: c.execute("SELECT count(*) FROM rollups").fetchone()))
        assert rollups == 0  # nothing compacted: every point is in the head
        start = now - MONTH
        for step in (*LEVELS, 21600.0):  # 21600: the dashboard's 31-day step
            level = choose_level(step, start, now, store.retention)
            assert level != 0 and step % level == 0  # answered by a roll-up level, not raw chunks
            frame = store.query("cpu_usage", instance_id="i", start=start, end=now, step=step, agg="count")
            assert not frame.empty, step
            assert frame.value.sum() == n, step  # every point, once
            avg = store.query("cpu_usage", instance_id="i", start=start, end=now, step=step, agg="avg")
            # per bucket, the mean of the raw points in it
            for b, v in zip(avg.ts.tolist(), avg.value.tolist()):
                inside = (ts >= b) & (ts < b + step)
                assert v == pytest.approx(vals[inside].mean()), (step, b)
            mx = store.query("cpu_usage", instance_id="i", start=start, end=now, step=step, agg="max")
            assert mx.value.max() == pytest.approx(vals.max())
        # 1-minute buckets: one for each minute the instance ran (17, or 18 when not aligned)
        m1 = store.query("cpu_usage", instance_id="i", start=start, end=now, step=60, agg="count")
        assert len(m1) in (17, 18)


def test_compacted_and_head_points_together_count_once_at_every_level(tmp_path: Path) -> None:
    now = 1_800_000_000.0 + 1234.0
    with SqliteStore(tmp_path / "s.db", head_span=3600) as store:
        ts, _ = _write_minutes(store, "i", now, 3 * 60)
        rep = store.maintain(now)
        assert rep.compacted_points > 0 and rep.compacted_points < ts.size  # part compacted, part in the head
        (blocks,) = store.writer.submit(_call(
            lambda c: c.execute("SELECT count(DISTINCT level) FROM rollups").fetchone()))
        assert blocks == len(LEVELS)
        for step in (*LEVELS, 21600.0):
            assert _count(store, now - MONTH, now + 1, step) == ts.size, step


def test_a_new_instance_has_points_in_the_31_day_view_of_the_api_and_the_page(tmp_path: Path) -> None:
    from dashboards import data
    from diag.config import load
    from diag.service import Service
    from diag.web.app import create_app

    s = Service(load(env={}, data_dir=str(tmp_path / "data"),
                     store={"retention": {"raw": "24h", "m1": "14d", "m5": "31d", "h1": "62d", "d1": "400d"}}))
    try:
        now = time.time()
        _write_minutes(s.store, "young", now, 17)
        client = create_app(s).test_client()
        r = client.get("/api/v1/query?metric=cpu_usage&instance_id=young&start=-31d")
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        assert body["step"] == 21600 and len(body["series"]) == 1 and body["series"][0]["points"]
        # 1m over 31 days would be 44,640 points a series, past the API's 11,000: 7 days there
        for step, start in (("1m", "-7d"), ("5m", "-31d"), ("1h", "-31d"), ("1d", "-31d")):
            r = client.get(f"/api/v1/query?metric=cpu_usage&instance_id=young&start={start}&step={step}&agg=count")
            assert r.status_code == 200, r.get_json()
            assert sum(v for _, v in r.get_json()["series"][0]["points"]) == 102, step
        rng = data.pick_range({"range": "31d"})
        figs, _, err = data.chart_figures(s.store, s.events, "young", rng)
        assert err is None
        total = next(t for t in figs["cpu"]["data"] if t["name"] == "total")
        assert [y for y in total["y"] if y is not None]  # the chart is not empty

        status = client.get("/api/v1/status")
        assert status.status_code == 200
        st = status.get_json()
        levels = {lv["level"]: lv for lv in st["store"]["levels"]}
        assert {k: v["retention_seconds"] for k, v in levels.items()} == {
            "raw": DAY, "1m": 14 * DAY, "5m": 31 * DAY, "1h": 62 * DAY, "1d": 400 * DAY}
        assert {k: v["resolution_seconds"] for k, v in levels.items()} == {
            "raw": None, "1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
        assert st["store"]["kind"] == "embedded"
        assert st["kernel_log"] == {"lines_per_instance": 5000, "retention_seconds": 7 * DAY}
        assert s.store.retention == Retention(raw=DAY, m1=14 * DAY, m5=31 * DAY, h1=62 * DAY, d1=400 * DAY)
    finally:
        s.close()


def _call(fn):
    from diag.store.writer import Call

    return Call(fn=fn)
