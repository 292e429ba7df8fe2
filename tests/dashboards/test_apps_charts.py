"""The instance page's Applications charts: the top groups stacked, the rest as "other",
from a real service that collected this machine (Flask test client), and the folding exact."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboards import figures
from diag.web.app import create_app
from tests.conftest import collected_service, own_kmsg


def test_groups_beyond_the_top_are_summed_into_other_per_time():
    # 5 groups and the collector's own "other"; "c" was out of the collector's top at t=20.
    rows = [("a", 10, 50.0), ("a", 20, 70.0), ("b", 10, 30.0), ("b", 20, 30.0), ("c", 10, 40.0),
            ("d", 10, 1.0), ("d", 20, 3.0), ("e", 10, 2.0), ("e", 20, 2.0), ("other", 10, 5.0), ("other", 20, 45.0)]
    frame = pd.DataFrame(rows, columns=["app", "ts", "value"])
    traces = figures.series_of(figures.Line("app_cpu_usage", "", label="app", top=2), frame)
    # means: a 60, c 40, b 30, e 2, d 2: "other" (mean 25) is never a top group of its own
    assert traces == [("a", [10000, 20000], [50.0, 70.0]), ("c", [10000], [40.0]),
                      ("other", [10000, 20000], [30.0 + 1 + 2 + 5, 30.0 + 3 + 2 + 45])]
    assert figures.series_of(figures.Line("app_cpu_usage", "", label="app", top=9), frame)[-1][0] == "other"
    assert [n for n, _, _ in figures.series_of(figures.Line("app_cpu_usage", "", label="app", top=9),
                                               frame[frame["app"] != "other"])] == ["a", "c", "b", "d", "e"]


def test_stacked_figure_greys_other_and_is_valid_plotly():
    chart = figures.BY_KEY["apps_memory"]
    fig = figures.figure(chart, [("postgres", [0, 1000], [2e9, 2.1e9]), ("other", [0, 1000], [5e8, None])],
                         0, 1)
    go.Figure(fig)
    assert [t["stackgroup"] for t in fig["data"]] == ["one", "one"]
    assert fig["data"][1]["line"]["color"] == figures.OTHER_COLOUR != fig["data"][0]["line"]["color"]
    assert fig["layout"]["yaxis"]["tickformat"] == "~s"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("apps")
    s = collected_service(tmp / "data", collections=3, pause=0.3, paths={"kmsg": str(own_kmsg(tmp))})
    yield s
    s.close()


def test_the_instance_page_charts_applications_with_this_test_process(service):
    client = create_app(service).test_client()
    page = client.get(f"/instances/{service.instance_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'aria-label="Applications: CPU (%)"' in html and 'aria-label="Applications: memory (B)"' in html
    r = client.get(f"/instances/{service.instance_id}/charts?range=1h")
    assert r.status_code == 200
    figs = r.get_json()["figures"]
    me = Path("/proc/self/comm").read_text().rstrip("\n")
    for key in ("apps_cpu", "apps_memory"):
        fig = figs[key]
        go.Figure(fig)
        names = [t["name"] for t in fig["data"]]
        assert 0 < len(names) <= figures.APP_TOP + 1 and len(set(names)) == len(names), names
        assert all(t["stackgroup"] == "one" for t in fig["data"])
        points = [y for t in fig["data"] for y in t["y"] if y is not None]
        assert points and all(y >= 0 for y in points)
    # This process (pytest's interpreter, with pandas and plotly loaded) is one of the
    # machine's larger ones: its executable is a group of its own on the memory chart.
    mem = {t["name"]: t for t in figs["apps_memory"]["data"]}
    assert me in mem, list(mem)
    statm = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert max(y for y in mem[me]["y"] if y is not None) >= statm / 4
    # Stacked CPU shares of one machine stay within its 100 %.
    cpu = figs["apps_cpu"]["data"]
    by_time: dict[int, float] = {}
    for t in cpu:
        for x, y in zip(t["x"], t["y"]):
            by_time[x] = by_time.get(x, 0.0) + (y or 0.0)
    assert by_time and all(v <= 100.5 for v in by_time.values())
    for key in ("apps_cpu", "apps_memory"):
        assert f'<div class="plot" id="chart-{key}" data-key="{key}"' in html
    # The page embeds the same figures the auto-refresh endpoint serves.
    embedded = json.loads(re.search(r'<script type="application/json" id="figures">(.*?)</script>', html, re.S).group(1))
    assert any(y is not None for t in embedded["apps_memory"]["data"] for y in t["y"])
