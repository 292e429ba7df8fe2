"""Range picking and the chart figures, over a real store the service filled."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest

from dashboards import data, figures
from dashboards.diagnosis_views import diff
from tests.conftest import collected_service
from diag.store.query import default_step

NOW = 2_000_000_000.0


@pytest.mark.parametrize("key, step, level", [("1h", 60, "1 min roll-ups"), ("6h", 300, "5 min roll-ups"),
                                              ("24h", 300, "5 min roll-ups"), ("7d", 3600, "1 h roll-ups"),
                                              ("31d", 21600, "1 h roll-ups")])
def test_each_range_picks_the_query_apis_step_and_its_level(key, step, level):
    rng = data.pick_range({"range": key}, NOW)
    assert rng.end == NOW and rng.start == NOW - data.RANGES[key]
    assert rng.step == default_step(rng.start, rng.end) == step
    assert data.level_name(rng.step) == level and rng.live and rng.error is None


def test_custom_range_is_utc_and_a_bad_one_says_why():
    rng = data.pick_range({"range": "custom", "start": "2033-05-18T00:00", "end": "2033-05-18T01:00"}, NOW)
    assert (rng.start, rng.end, rng.key, rng.live) == (1999987200.0, 1999990800.0, "custom", False)
    bad = data.pick_range({"range": "custom", "start": "2033-05-18T02:00", "end": "2033-05-18T01:00"}, NOW)
    assert bad.key == "24h" and "before" in bad.error
    assert data.pick_range({"range": "custom", "start": "yesterday"}, NOW).error
    assert data.pick_range({"range": "1y"}, NOW).error == "unknown range '1y'"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    s = collected_service(tmp_path_factory.mktemp("d"), collections=3, pause=0.2)  # rates need ticks between
    yield s
    s.close()


def test_every_figure_is_valid_plotly_and_charts_hold_this_machines_data(service):
    rng = data.pick_range({"range": "1h"})
    figs, _, _ = data.chart_figures(service.store, service.events, service.instance_id, rng)
    assert set(figs) == {c.key for c in figures.CHARTS}
    for key, fig in figs.items():
        go.Figure(fig)  # plotly's own validator: raises on any bad property
    for key in ("cpu", "memory", "disk_iops", "fs_usage"):
        assert any(len(t["x"]) > 0 and any(v is not None for v in t["y"]) for t in figs[key]["data"]), key
    total = next(t for t in figs["cpu"]["data"] if t["name"] == "total")
    assert all(0 <= v <= 100 for v in total["y"] if v is not None)
    assert figs["cpu"]["layout"]["yaxis"]["ticksuffix"] == " %"


def test_bandwidth_is_summed_by_scope(service):
    rng = data.pick_range({"range": "1h"})
    frame = service.store.query("net_in", instance_id=service.instance_id, start=rng.start, end=rng.end,
                                step=rng.step)
    traces = figures.series_of(figures.Line("net_in", "in", by="scope"), frame)
    scopes = sorted(set(frame["scope"])) if not frame.empty else []
    assert [name for name, _, _ in traces] == [f"in {s}" for s in scopes]
    for name, xs, ys in traces:
        scope = name.split()[-1]
        want = frame[frame["scope"] == scope].groupby("ts")["value"].sum()
        assert xs == [int(t * 1000) for t in want.index]
        assert ys == [float(f"{v:.4g}") for v in want]


def test_events_are_markers_with_their_text_on_the_kernel_chart_only():
    ev = {"publish_time": NOW - 60, "level": "CRITICAL", "type": "Kernel.OOMKill", "details": {"message": "<b>x</b>"}}
    fig = figures.figure(figures.BY_KEY["kernel"], [("OOM kills", [int((NOW - 60) * 1000)], [1.0])], NOW - 3600, NOW,
                         [ev])
    go.Figure(fig)
    marker = fig["data"][-1]
    assert marker["name"] == "events" and marker["x"] == [int((NOW - 60) * 1000)]
    assert marker["text"][0].startswith("Kernel.OOMKill (CRITICAL)") and "%{text}" in marker["hovertemplate"]
    cpu = figures.figure(figures.BY_KEY["cpu"], [("total", [int((NOW - 60) * 1000)], [1.0])], NOW - 3600, NOW, [ev])
    assert [t["name"] for t in cpu["data"]] == ["total"] and not cpu["layout"].get("shapes")


def test_report_diff_says_what_got_better_and_worse():
    def rep(**st):
        return {"checks": [{"id": k.replace("_", "."), "name": k, "status": v, "message": v} for k, v in st.items()]}

    old = rep(storage_disk="ok", performance_cpu="critical", state_reboot="warning", access_sshd="ok")
    new = rep(storage_disk="warning", performance_cpu="ok", state_reboot="warning", network_bw="ok")
    d = diff(old, new)
    assert [e["id"] for e in d["worse"]] == ["storage.disk"]
    assert [e["id"] for e in d["better"]] == ["performance.cpu"]
    assert [e["id"] for e in d["added"]] == ["network.bw"] and [e["id"] for e in d["removed"]] == ["access.sshd"]
    assert d["same_status"] == []
    assert d["changed"] == []


def test_report_diff_keeps_changed_messages_of_passing_checks_apart():
    def check(cid, status, message):
        return {"id": cid, "name": cid, "status": status, "message": message}

    old = {"checks": [check("performance.cpu", "ok", "CPU 12 %"), check("storage.disk", "warning", "92 % full"),
                      check("state.reboot", "ok", "no reboot needed"), check("network.x", "not_applicable", "no NIC")]}
    new = {"checks": [check("performance.cpu", "ok", "CPU 14 %"), check("storage.disk", "warning", "93 % full"),
                      check("state.reboot", "ok", "no reboot needed"), check("network.x", "not_applicable", "none")]}
    d = diff(old, new)
    assert [e["id"] for e in d["changed"]] == ["performance.cpu", "network.x"]
    assert [e["id"] for e in d["same_status"]] == ["storage.disk"]
    assert d["worse"] == d["better"] == d["added"] == d["removed"] == []


def test_every_chart_has_one_height_and_its_legend_rows_say_last_min_max(service):
    rng = data.pick_range({"range": "1h"})
    figs, _, _ = data.chart_figures(service.store, service.events, service.instance_id, rng)
    for key, fig in figs.items():
        lay = fig["layout"]
        # the legend is the page's table, not plotly's: the plots of a row line up
        assert lay["showlegend"] is False and lay["height"] == figures.TOP + figures.PLOT_HEIGHT + figures.TICKS, key
        for t in fig["data"]:
            assert set(t["meta"]) == ({"count"} if t["name"] == "events" else {"last", "min", "max"}), (key, t["name"])
    chart = figures.BY_KEY["disk_bps"]
    fig = figures.figure(chart, [("vda read", [1, 2, 3], [2_000_000.0, 512.0, None])], NOW - 3600, NOW)
    assert fig["data"][0]["meta"] == {"last": "512 B/s", "min": "512 B/s", "max": "2 MB/s"}
    assert figures.legend_stats(figures.BY_KEY["cpu"], [None]) == {"last": "–", "min": "–", "max": "–"}
    assert figures.value_text(12.345, figures.BY_KEY["cpu"]) == "12.35 %"


def test_many_filesystems_fold_into_the_fullest_of_the_rest():
    import pandas as pd

    line = figures.BY_KEY["fs_usage"].lines[0]
    frame = pd.DataFrame([{"ts": t, "mountpoint": f"/m{i}", "value": float(i + t)}
                          for i in range(9) for t in (0.0, 10.0)])
    traces = figures.series_of(line, frame)
    assert [n for n, _, _ in traces] == ["/m8", "/m7", "/m6", "/m5", "/m4", figures.OTHER]
    assert traces[-1][2] == [3.0, 13.0]  # the fullest of /m0../m3 at each time, not a sum of shares
    fig = figures.figure(figures.BY_KEY["fs_usage"], traces, NOW - 3600, NOW)
    assert fig["data"][-1]["line"]["color"] == figures.OTHER_COLOUR


def test_a_young_instances_preset_range_starts_at_its_data_and_a_custom_one_is_kept(service):
    inst = service.instances.get(service.instance_id)
    hour = data.pick_range({"range": "1h"})
    fitted = data.fit_to_data(service.store, inst, hour)
    first = float(service.store.query("cpu_usage", instance_id=service.instance_id, start=hour.start, end=hour.end,
                                      step=10)["ts"].min())
    assert fitted.fitted and fitted.key == "1h" and fitted.live
    assert hour.start < fitted.start < first <= fitted.start + 30 and fitted.end == hour.end
    assert fitted.step == default_step(fitted.start, fitted.end)
    custom = data.pick_range({"range": "custom", "start": "-1h", "end": "now"})
    assert data.fit_to_data(service.store, inst, custom) == custom
    old = {**inst, "first_seen": hour.start - 60}  # history older than the range: nothing to fit
    assert data.fit_to_data(service.store, old, hour) == hour
