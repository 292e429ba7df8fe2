"""Past raw retention, PromQL reads the roll-ups: one real point per bucket (the bucket's
last), so a range longer than the raw points are kept still shows its whole history."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from diag.model import Sample
from diag.promql import Engine
from diag.store import Retention, SqliteStore

NOW = (int(time.time()) // 60) * 60
START = NOW - 3 * 3600


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = SqliteStore(tmp_path_factory.mktemp("s") / "m.db", head_span=600, retention=Retention(raw=3600))
    for i, ts in enumerate(range(START, NOW, 10)):
        s.write("web-1", [Sample("queue_depth", {}, float(i % 7), float(ts)),
                          Sample("jobs_total", {}, float(10 * i), float(ts))])
    s.maintain(time.time())
    s.maintain(time.time())  # compaction made chunks of the old points; now retention drops them
    yield s
    s.close()


def test_raw_points_are_gone_before_retention_and_roll_ups_stand_in(store):
    now = time.time()
    cut = math.ceil((now - 3600) / 60) * 60  # raw points from the first whole minute of raw retention
    _, ts, _ = store.points(store.series_infos("queue_depth"), start=START, end=NOW, now=now)
    assert ts.min() >= START
    old, recent = ts[ts < cut], ts[ts >= cut]
    assert old.size > 60 and np.all(np.diff(old) == 60)  # one point a minute back there,
    assert np.all((old - START) % 60 == 50)  # each the last of its minute, as it was
    assert recent[0] == cut and np.all(np.diff(recent) == 10)  # every point since


def test_a_gauge_back_there_is_the_last_point_of_its_minute(store):
    e = Engine(store)
    t = START + 3600 + 30  # mid-minute: the newest point at or before it is the previous minute's last
    got = e.instant("queue_depth", t * 1000).data["result"]
    i = (t - 40 - START) // 10
    assert got[0]["value"] == [t, str(i % 7)]


def test_rates_and_a_range_across_the_cut_are_whole(store):
    e = Engine(store)
    got = e.instant("rate(jobs_total[5m])", (START + 3600) * 1000).data["result"]
    assert math.isclose(float(got[0]["value"][1]), 1.0)
    res = e.range("rate(jobs_total[5m])", (START + 600) * 1000, (NOW - 60) * 1000, 60_000).data["result"]
    values = [float(v) for _, v in res[0]["values"]]
    assert len(values) == (NOW - 60 - START - 600) // 60 + 1
    # exact wherever a window holds one resolution; the five 5 m windows over the seam
    # (a point a minute, then every 10 s) extrapolate less, as Prometheus would on such data
    off = [v for v in values if not math.isclose(v, 1.0)]
    assert len(off) <= 5 and all(0.8 < v < 1.0 for v in off)
